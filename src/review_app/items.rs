//! What a reviewer reviews: the run's accepted records and, optionally, a seeded sample
//! of its rejects (so judge-vs-human agreement is measured on both sides), in a
//! stratified queue.

use crate::quality::judge::DIMENSIONS;
use crate::record::{Record, Rejection};
use crate::sink;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// One record to review, with why the gate rejected it (`None`: accepted).
#[derive(Debug, Clone)]
pub struct Item {
    pub record: Record,
    pub reject: Option<RejectReason>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RejectReason {
    pub stage: String,
    pub reason: String,
    pub detail: String,
}

impl Item {
    /// The judge's scores by dimension (absent when the record was not judged).
    pub fn judge_scores(&self) -> BTreeMap<&'static str, f64> {
        let r = &self.record;
        let values = [r.quality, r.alignment, r.coherence, r.realism, r.difficulty];
        DIMENSIONS
            .iter()
            .zip(values)
            .filter_map(|(d, v)| Some((*d, v?)))
            .collect()
    }

    /// Mean judge score (`None`: not judged).
    fn judge_mean(&self) -> Option<f64> {
        let s = self.judge_scores();
        (!s.is_empty()).then(|| s.values().sum::<f64>() / s.len() as f64)
    }
}

/// The accepted records of `run` (`data/*.jsonl`) and a sample of `rejects` of its
/// rejects (`rejects.jsonl`, drawn with `seed`; records accepted later are not rejects).
pub fn load(run: &Path, rejects: usize, seed: u64) -> anyhow::Result<Vec<Item>> {
    let mut items = Vec::new();
    for f in sink::shard_files(run)? {
        for record in sink::read_jsonl::<Record>(&f, false)? {
            items.push(Item {
                record,
                reject: None,
            });
        }
    }
    if rejects > 0 {
        let accepted: HashSet<String> = items.iter().map(|i| i.record.id.clone()).collect();
        // The last line of an id wins (a retried item that was rejected again).
        let mut by_id: BTreeMap<String, Rejection> = BTreeMap::new();
        for j in sink::read_jsonl::<Rejection>(&run.join(sink::REJECTS), false)? {
            if !accepted.contains(&j.id) {
                by_id.insert(j.id.clone(), j);
            }
        }
        let mut pool: Vec<Rejection> = by_id.into_values().collect();
        pool.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        items.extend(pool.into_iter().take(rejects).map(|j| Item {
            reject: Some(RejectReason {
                stage: j.stage,
                reason: j.reason,
                detail: j.detail,
            }),
            record: j.record,
        }));
    }
    Ok(items)
}

/// Round-robin over the groups, in order, taking one from each in turn.
fn interleave<T>(groups: Vec<Vec<T>>) -> Vec<T> {
    let mut iters: Vec<_> = groups.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        for it in &mut iters {
            out.extend(it.next());
        }
        if out.len() == before {
            return out;
        }
    }
}

/// The stratified queue: round-robin over the cells task type x document type, and
/// within a cell round-robin over accepted / each reject reason, each by judge score
/// (lowest first, unjudged last); so the first items cover the run rather than one cell.
pub fn queue(items: Vec<Item>) -> Vec<Item> {
    let mut cells: BTreeMap<(String, String), BTreeMap<String, Vec<Item>>> = BTreeMap::new();
    for it in items {
        let stratum = it
            .reject
            .as_ref()
            .map_or(String::new(), |r| r.reason.clone());
        cells
            .entry((it.record.task_type.clone(), it.record.input_data.clone()))
            .or_default()
            .entry(stratum)
            .or_default()
            .push(it);
    }
    let cells = cells
        .into_values()
        .map(|strata| {
            let strata = strata
                .into_values()
                .map(|mut v| {
                    v.sort_by(|a, b| {
                        let key = |i: &Item| i.judge_mean().unwrap_or(f64::INFINITY);
                        key(a)
                            .total_cmp(&key(b))
                            .then_with(|| a.record.id.cmp(&b.record.id))
                    });
                    v
                })
                .collect();
            interleave(strata)
        })
        .collect();
    interleave(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, task: &str, doc: &str, q: Option<f64>, reason: Option<&str>) -> Item {
        Item {
            record: Record {
                id: id.into(),
                task_type: task.into(),
                input_data: doc.into(),
                quality: q,
                ..Record::default()
            },
            reject: reason.map(|r| RejectReason {
                stage: "judge".into(),
                reason: r.into(),
                detail: String::new(),
            }),
        }
    }

    #[test]
    fn the_queue_covers_every_cell_before_repeating_one() {
        let mut items = Vec::new();
        for k in 0..10 {
            items.push(item(
                &format!("a{k}"),
                "coding",
                "note",
                Some(k as f64),
                None,
            ));
        }
        items.push(item("b0", "qa", "note", None, None));
        items.push(item("c0", "qa", "letter", Some(2.0), None));
        items.push(item(
            "a-rej",
            "coding",
            "note",
            Some(1.0),
            Some("low_judge"),
        ));
        let q: Vec<String> = queue(items).into_iter().map(|i| i.record.id).collect();
        // one of each cell first; within a cell accepted and rejected alternate, lowest
        // judge score first
        assert_eq!(&q[..3], ["a0", "c0", "b0"]);
        assert_eq!(q[3], "a-rej");
        assert_eq!(q[4], "a1");
        assert_eq!(q.len(), 13);
    }
}
