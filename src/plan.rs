//! The plan: a deterministic, stratified set of work items over (task, document type,
//! difficulty, format) cells. Quotas are allocated top-down (task -> document -> difficulty
//! -> format) by weight, remainders by seeded weighted sampling, so small plans still spread
//! over many cells. Item ids are derived from the run seed, the cell and the index in it.

use crate::config::PlanConfig;
pub use crate::record::Cell;
use crate::taxonomy::Taxonomy;
use crate::util::{seed_from, short_hash};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Diversity attributes drawn for one item (deterministically from its id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedAttrs {
    pub specialty: String,
    pub age_band: String,
    pub sex: String,
    pub care_setting: String,
    pub writing_style: String,
    pub concept_code: String,
    pub concept_description: String,
    pub concept_chapter: String,
    pub concept_block: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanItem {
    pub id: String,
    pub task: String,
    pub document: String,
    pub family: String,
    pub difficulty: u8,
    pub format: String,
    /// Index of this item within its cell.
    pub cell_index: u32,
    pub seed: SeedAttrs,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    /// Items in execution order (interleaved across cells, so any prefix is stratified too).
    pub items: Vec<PlanItem>,
    /// Quota per cell (cells with a zero quota are omitted).
    pub quotas: BTreeMap<Cell, usize>,
    /// Indexes into the ICD table of the codes seed concepts are drawn from.
    concepts: Vec<usize>,
}

/// The stable id of the `index`-th item of a cell in a run with `seed`.
pub fn item_id(seed: u64, cell: &Cell, index: u32) -> String {
    short_hash(format!(
        "{seed}/{}/{}/{}/{}/{index}",
        cell.task, cell.document, cell.difficulty, cell.format
    ))
}

/// Split `total` over options by weight: floors first, the remainder by seeded weighted
/// sampling without replacement on the fractional parts (Efraimidis-Spirakis keys).
fn allocate(total: usize, weights: &[f64], rng: &mut ChaCha8Rng) -> Vec<usize> {
    let sum: f64 = weights.iter().sum();
    if total == 0 || sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<f64> = weights.iter().map(|w| total as f64 * w / sum).collect();
    let mut out: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let rest = total - out.iter().sum::<usize>();
    let mut keyed: Vec<(f64, usize)> = exact
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let frac = e - e.floor();
            let u: f64 = rng.random::<f64>().max(1e-300);
            (if frac > 0.0 { u.powf(1.0 / frac) } else { -1.0 }, i)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in keyed.into_iter().take(rest) {
        out[i] += 1;
    }
    out
}

fn rng_for(seed: u64, path: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed_from(&format!("{seed}:{path}")))
}

/// Build the plan for `n` items. `filter` restricts the taxonomy (empty lists = all).
pub fn build(tax: &Taxonomy, seed: u64, n: usize, filter: &PlanConfig) -> Result<Plan, String> {
    let keep = |list: &Vec<String>, id: &str| list.is_empty() || list.iter().any(|x| x == id);
    let tasks: Vec<usize> = (0..tax.tasks.len())
        .filter(|&i| keep(&filter.tasks, &tax.tasks[i].id))
        .collect();
    let docs_ok = |di: usize| {
        let d = &tax.documents[di];
        keep(&filter.families, &d.family) && keep(&filter.documents, &d.id)
    };
    let diffs: Vec<&crate::taxonomy::Difficulty> = tax
        .difficulties
        .iter()
        .filter(|d| filter.difficulties.is_empty() || filter.difficulties.contains(&d.level))
        .collect();
    let check_known = |list: &Vec<String>, known: Vec<&str>, what: &str| -> Result<(), String> {
        match list.iter().find(|x| !known.contains(&x.as_str())) {
            Some(x) => Err(format!("plan.{what}: unknown id {x:?}")),
            None => Ok(()),
        }
    };
    check_known(
        &filter.tasks,
        tax.tasks.iter().map(|t| t.id.as_str()).collect(),
        "tasks",
    )?;
    check_known(
        &filter.families,
        tax.families.iter().map(|t| t.id.as_str()).collect(),
        "families",
    )?;
    check_known(
        &filter.documents,
        tax.documents.iter().map(|t| t.id.as_str()).collect(),
        "documents",
    )?;
    check_known(
        &filter.formats,
        tax.formats.iter().map(|t| t.id.as_str()).collect(),
        "formats",
    )?;
    if diffs.is_empty() {
        return Err("plan.difficulties selects no difficulty level".into());
    }

    // Task weights count only tasks with at least one compatible selected document and format.
    let task_docs: Vec<Vec<usize>> = tasks
        .iter()
        .map(|&ti| {
            (0..tax.documents.len())
                .filter(|&di| tax.compat[ti][di] > 0.0 && docs_ok(di))
                .collect()
        })
        .collect();
    let task_formats: Vec<Vec<&crate::taxonomy::Format>> = tasks
        .iter()
        .map(|&ti| {
            tax.formats
                .iter()
                .filter(|f| tax.tasks[ti].formats.contains(&f.id) && keep(&filter.formats, &f.id))
                .collect()
        })
        .collect();
    let task_w: Vec<f64> = tasks
        .iter()
        .enumerate()
        .map(|(k, &ti)| {
            if task_docs[k].is_empty() || task_formats[k].is_empty() {
                0.0
            } else {
                tax.tasks[ti].weight
            }
        })
        .collect();
    if task_w.iter().all(|w| *w == 0.0) {
        return Err("the plan filters leave no compatible (task, document, format) cell".into());
    }

    let mut quotas = BTreeMap::new();
    let per_task = allocate(n, &task_w, &mut rng_for(seed, "tasks"));
    for (k, &ti) in tasks.iter().enumerate() {
        let task = &tax.tasks[ti];
        let dw: Vec<f64> = task_docs[k].iter().map(|&di| tax.compat[ti][di]).collect();
        let per_doc = allocate(
            per_task[k],
            &dw,
            &mut rng_for(seed, &format!("docs/{}", task.id)),
        );
        for (j, &di) in task_docs[k].iter().enumerate() {
            let doc = &tax.documents[di];
            let path = format!("{}/{}", task.id, doc.id);
            let per_diff = allocate(
                per_doc[j],
                &diffs.iter().map(|d| d.weight).collect::<Vec<_>>(),
                &mut rng_for(seed, &format!("diff/{path}")),
            );
            for (l, diff) in diffs.iter().enumerate() {
                let fw: Vec<f64> = task_formats[k].iter().map(|f| f.weight).collect();
                let per_fmt = allocate(
                    per_diff[l],
                    &fw,
                    &mut rng_for(seed, &format!("fmt/{path}/{}", diff.level)),
                );
                for (m, fmt) in task_formats[k].iter().enumerate() {
                    if per_fmt[m] > 0 {
                        let cell = Cell {
                            task: task.id.clone(),
                            document: doc.id.clone(),
                            difficulty: diff.level,
                            format: fmt.id.clone(),
                        };
                        quotas.insert(cell, per_fmt[m]);
                    }
                }
            }
        }
    }

    let concepts: Vec<usize> = tax
        .icd
        .codes
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.billable
                && tax
                    .seeds
                    .concept_chapters
                    .iter()
                    .any(|ch| c.code.starts_with(ch.as_str()))
        })
        .map(|(i, _)| i)
        .collect();
    let mut items = Vec::with_capacity(n);
    for (cell, &q) in &quotas {
        for index in 0..q as u32 {
            items.push(make_item(tax, &concepts, seed, cell, index));
        }
    }
    // Interleave: order by a hash of the id, so a prefix (`--limit`) is a stratified sample.
    items.sort_by_cached_key(|it| (short_hash(format!("order/{}", it.id)), it.id.clone()));
    Ok(Plan {
        seed,
        items,
        quotas,
        concepts,
    })
}

fn make_item(tax: &Taxonomy, concepts: &[usize], seed: u64, cell: &Cell, index: u32) -> PlanItem {
    let id = item_id(seed, cell, index);
    PlanItem {
        seed: draw_seed(tax, concepts, &id),
        id,
        task: cell.task.clone(),
        document: cell.document.clone(),
        family: tax
            .document(&cell.document)
            .map(|d| d.family.clone())
            .unwrap_or_default(),
        difficulty: cell.difficulty,
        format: cell.format.clone(),
        cell_index: index,
    }
}

fn draw_seed(tax: &Taxonomy, concepts: &[usize], id: &str) -> SeedAttrs {
    let mut rng = ChaCha8Rng::seed_from_u64(seed_from(&format!("seed-attrs/{id}")));
    let s = &tax.seeds;
    let mut pick = |v: &Vec<String>| v[rng.random_range(0..v.len())].clone();
    let (specialty, age_band, sex, care_setting, writing_style) = (
        pick(&s.specialties),
        pick(&s.age_bands),
        pick(&s.sexes),
        pick(&s.care_settings),
        pick(&s.writing_styles),
    );
    let c = &tax.icd.codes[concepts[rng.random_range(0..concepts.len())]];
    SeedAttrs {
        specialty,
        age_band,
        sex,
        care_setting,
        writing_style,
        concept_code: c.code.clone(),
        concept_description: c.description.clone(),
        concept_chapter: c.chapter.clone(),
        concept_block: c.block.clone(),
    }
}

impl PlanItem {
    pub fn cell(&self) -> Cell {
        Cell {
            task: self.task.clone(),
            document: self.document.clone(),
            difficulty: self.difficulty,
            format: self.format.clone(),
        }
    }
}

impl Cell {
    /// `task/document/difficulty/format`, the key of a cell in stats.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.task, self.document, self.difficulty, self.format
        )
    }
}

impl Plan {
    /// The `index`-th item of a cell: planned items are indexes `0..quota`, items beyond
    /// are refills scheduled to meet an exact quota (same id scheme, so stable too).
    pub fn item(&self, tax: &Taxonomy, cell: &Cell, index: u32) -> PlanItem {
        make_item(tax, &self.concepts, self.seed, cell, index)
    }

    /// Summary counts (per task, per family, per difficulty, per format).
    pub fn summary(&self) -> serde_json::Value {
        let mut by_task: BTreeMap<&str, usize> = BTreeMap::new();
        let mut by_family: BTreeMap<&str, usize> = BTreeMap::new();
        let mut by_diff: BTreeMap<u8, usize> = BTreeMap::new();
        let mut by_fmt: BTreeMap<&str, usize> = BTreeMap::new();
        let mut docs = std::collections::BTreeSet::new();
        for it in &self.items {
            *by_task.entry(&it.task).or_default() += 1;
            *by_family.entry(&it.family).or_default() += 1;
            *by_diff.entry(it.difficulty).or_default() += 1;
            *by_fmt.entry(&it.format).or_default() += 1;
            docs.insert(&it.document);
        }
        serde_json::json!({
            "items": self.items.len(),
            "cells": self.quotas.len(),
            "document_types": docs.len(),
            "by_task": by_task, "by_family": by_family,
            "by_difficulty": by_diff, "by_format": by_fmt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_sums_exactly_and_is_seeded() {
        let w = [1.0, 2.0, 3.0, 0.0, 0.5];
        for total in [0, 1, 3, 7, 100] {
            let a = allocate(total, &w, &mut rng_for(1, "x"));
            assert_eq!(a.iter().sum::<usize>(), total);
            assert_eq!(a[3], 0, "zero weight gets nothing");
            assert_eq!(a, allocate(total, &w, &mut rng_for(1, "x")));
        }
        let big = allocate(600, &w, &mut rng_for(1, "x"));
        // Proportional within one unit of the exact share.
        for (i, wi) in w.iter().enumerate() {
            let exact = 600.0 * wi / 6.5;
            assert!(
                (big[i] as f64 - exact).abs() < 1.0,
                "{i}: {} vs {exact}",
                big[i]
            );
        }
    }
}
