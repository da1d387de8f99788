//! Per-cell scheduling. Each cell has a target of accepted records and an item budget.
//! Without `[quota]` both equal the cell's planned count (every item once). With it, a
//! cell whose items are rejected gets refill items (new stable ids: indexes past the
//! plan's quota for the cell) until it has exactly its target or its budget is spent.
//! A cell never has more items open (queued or in flight) than it still needs, so the
//! target is never overshot.

use crate::config::QuotaConfig;
use crate::plan::{Cell, Plan, PlanItem};
use crate::taxonomy::Taxonomy;
use std::collections::{BTreeMap, HashSet, VecDeque};

#[derive(Debug, Clone)]
pub struct CellState {
    pub target: usize,
    pub budget: usize,
    /// Items of this cell attempted or scheduled (found on disk, queued, in flight, done).
    pub issued: usize,
    pub accepted: usize,
    /// Queued or in flight.
    open: usize,
    /// The first index refills may use (the plan's quota for the cell).
    refill_from: u32,
    next_refill: u32,
}

pub struct Scheduler {
    pub cells: BTreeMap<Cell, CellState>,
    exact: bool,
    planned: HashSet<String>,
    queue: VecDeque<PlanItem>,
}

impl Scheduler {
    /// Cells, targets and budgets for `items` (the plan, or its `--limit` prefix).
    pub fn new(plan: &Plan, items: &[PlanItem], quota: &QuotaConfig) -> Scheduler {
        let mut counts: BTreeMap<Cell, usize> = BTreeMap::new();
        for it in items {
            *counts.entry(it.cell()).or_default() += 1;
        }
        let cells = counts
            .into_iter()
            .map(|(cell, n)| {
                let (target, budget) = quota.cell(n).unwrap_or((n, n));
                let refill_from = plan.quotas.get(&cell).copied().unwrap_or(n) as u32;
                let state = CellState {
                    target,
                    budget,
                    issued: 0,
                    accepted: 0,
                    open: 0,
                    refill_from,
                    next_refill: refill_from,
                };
                (cell, state)
            })
            .collect();
        Scheduler {
            cells,
            exact: quota.target_accepted.is_some(),
            planned: items.iter().map(|i| i.id.clone()).collect(),
            queue: VecDeque::new(),
        }
    }

    /// Whether an outcome found on disk belongs to this run: a planned item, or a refill
    /// of one of its cells.
    pub fn belongs(&self, id: &str, cell: &Cell, index: u32) -> bool {
        let Some(c) = self.cells.get(cell) else {
            return false;
        };
        let refill =
            self.exact && index >= c.refill_from && ((index - c.refill_from) as usize) < c.budget;
        self.planned.contains(id) || refill
    }

    /// Whether an outcome found on disk belongs to this run (`belongs`), counting it if so.
    pub fn found(&mut self, id: &str, cell: &Cell, index: u32, accepted: bool) -> bool {
        if !self.belongs(id, cell, index) {
            return false;
        }
        let c = self.cells.get_mut(cell).expect("belongs");
        c.issued += 1;
        c.accepted += accepted as usize;
        true
    }

    /// An earlier attempt rejected `item` (it `belongs` to this run) for a reason worth
    /// another try, and every outcome on disk has been `found`: queue it again, ahead of
    /// the items not yet tried, if its cell still needs accepted items (always, without
    /// quotas); else it stays a reject, counted as found. Call before `start`, whose
    /// `done` must then hold `item`'s id either way.
    pub fn retry(&mut self, item: PlanItem) -> bool {
        let c = self.cells.get_mut(&item.cell()).expect("belongs");
        c.issued += 1;
        if c.accepted + c.open >= c.target {
            return false;
        }
        c.open += 1;
        self.queue.push_back(item);
        true
    }

    /// Queue the planned items not yet done, then the refills the cells already need.
    pub fn start(
        &mut self,
        items: Vec<PlanItem>,
        plan: &Plan,
        tax: &Taxonomy,
        done: &HashSet<String>,
    ) {
        for it in items {
            if done.contains(&it.id) {
                continue;
            }
            let c = self
                .cells
                .get_mut(&it.cell())
                .expect("cell of a planned item");
            // A cell that met its target on disk needs none of its remaining items.
            if c.accepted + c.open >= c.target {
                continue;
            }
            c.issued += 1;
            c.open += 1;
            self.queue.push_back(it);
        }
        let cells: Vec<Cell> = self.cells.keys().cloned().collect();
        for cell in cells {
            self.refill(&cell, plan, tax, done);
        }
    }

    /// Schedule refills while the cell needs more than it has open and budget is left.
    fn refill(&mut self, cell: &Cell, plan: &Plan, tax: &Taxonomy, done: &HashSet<String>) {
        if !self.exact {
            return;
        }
        let c = self.cells.get_mut(cell).expect("known cell");
        while c.accepted + c.open < c.target && c.issued < c.budget {
            let item = plan.item(tax, cell, c.next_refill);
            c.next_refill += 1;
            // Done on disk (an earlier attempt) and already counted by `found`.
            if done.contains(&item.id) {
                continue;
            }
            c.issued += 1;
            c.open += 1;
            self.queue.push_back(item);
        }
    }

    pub fn next_item(&mut self) -> Option<PlanItem> {
        self.queue.pop_front()
    }

    /// An item of `cell` was committed (accepted or not); schedule a refill if needed.
    pub fn committed(
        &mut self,
        cell: &Cell,
        accepted: bool,
        plan: &Plan,
        tax: &Taxonomy,
        done: &HashSet<String>,
    ) {
        let c = self.cells.get_mut(cell).expect("known cell");
        c.open -= 1;
        c.accepted += accepted as usize;
        if !accepted {
            self.refill(cell, plan, tax, done);
        }
    }

    /// Items of the run so far: found on disk, queued, in flight or done.
    pub fn issued(&self) -> u64 {
        self.cells.values().map(|c| c.issued as u64).sum()
    }

    pub fn quotas_on(&self) -> bool {
        self.exact
    }
}

/// Why a cell ended short of its target, or `met`.
pub fn status(c: &CellState, rejected: &BTreeMap<String, u64>) -> String {
    if c.accepted >= c.target {
        return "met".into();
    }
    let mut top: Vec<(&String, &u64)> = rejected.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let top: Vec<String> = top
        .iter()
        .take(3)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    format!(
        "short by {}: item budget of {} spent, acceptance rate {:.0}% (top reasons: {})",
        c.target - c.accepted,
        c.budget,
        100.0 * c.accepted as f64 / c.issued.max(1) as f64,
        top.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PlanConfig, PlanWord};

    /// With quotas, an earlier reject is tried again only where its cell is still short:
    /// a cell whose refill made up for it keeps the reject (counted against its budget);
    /// a short one queues it ahead of the items not yet tried, and no refill reissues it.
    #[test]
    fn retries_go_to_cells_still_short_of_their_quota() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("taxonomy");
        let tax = crate::taxonomy::load(&dir).unwrap();
        let plan = crate::plan::build(&tax, 7, 4, &PlanConfig::default()).unwrap();
        let items = plan.items.clone();
        let cells: std::collections::BTreeSet<Cell> = items.iter().map(|i| i.cell()).collect();
        assert_eq!(cells.len(), 4, "one item per cell");
        let quota = QuotaConfig {
            target_accepted: Some(crate::config::QuotaTarget::Plan(PlanWord::Plan)),
            budget_factor: 2.0,
        };
        let mut s = Scheduler::new(&plan, &items, &quota);
        let (a, b) = (&items[0], &items[1]);
        let refill = |it: &PlanItem| plan.item(&tax, &it.cell(), plan.quotas[&it.cell()] as u32);
        let (ra, rb) = (refill(a), refill(b));
        // On disk: a and b rejected (to retry); a's refill accepted, b's rejected.
        assert!(s.belongs(&a.id, &a.cell(), a.cell_index));
        assert!(s.belongs(&rb.id, &rb.cell(), rb.cell_index));
        assert!(s.found(&ra.id, &ra.cell(), ra.cell_index, true));
        assert!(s.found(&rb.id, &rb.cell(), rb.cell_index, false));
        assert!(
            !s.retry(a.clone()),
            "a's cell met its quota: the reject stays"
        );
        assert!(s.retry(b.clone()), "b's cell is short: b runs again");
        let done: HashSet<String> = [&a.id, &ra.id, &b.id, &rb.id]
            .into_iter()
            .cloned()
            .collect();
        s.start(items.clone(), &plan, &tax, &done);
        let order: Vec<String> = std::iter::from_fn(|| s.next_item().map(|i| i.id)).collect();
        assert_eq!(
            order,
            [b.id.clone(), items[2].id.clone(), items[3].id.clone()]
        );
        // Every item of a and b's budget of 2 is used: b rejected again gets no refill.
        s.committed(&b.cell(), false, &plan, &tax, &done);
        assert!(s.next_item().is_none());
        assert_eq!(s.issued(), 2 + 2 + 1 + 1);
    }
}
