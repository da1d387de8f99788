//! `eval compare A B`: the two result sets side by side, per task, on the task's headline
//! score: the delta (B - A) with a 95% bootstrap interval of the difference, paired over
//! the items both scored (the usual case: same tasks, same items), unpaired when they
//! share no item. Tasks that got worse are flagged; `WORSE` when the interval excludes 0.

use super::bootstrap::{self, Estimate};
use super::predictions;
use super::report::{self, Results, LEVEL};
use crate::error::{Error, Problem};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

/// (task, item id) -> the item's scores.
type ItemScores = HashMap<(String, String), BTreeMap<String, Option<f64>>>;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub task: String,
    pub metric: String,
    pub a: f64,
    pub b: f64,
    pub delta: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// `paired` or `unpaired`.
    pub method: &'static str,
    /// Items the interval is computed over (paired: the items both scored).
    pub n: usize,
    pub excludes_zero: bool,
    pub worse: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub rows: Vec<Row>,
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
    pub macro_a: Option<f64>,
    pub macro_b: Option<f64>,
}

fn load(dir: &Path) -> Result<(Results, ItemScores), Error> {
    let r =
        report::read(dir).map_err(|e| Error::Input(vec![Problem::new(dir, format!("{e:#}"))]))?;
    let preds = predictions::read(dir)
        .map_err(|e| Error::Input(vec![Problem::new(dir, format!("{e:#}"))]))?
        .into_iter()
        .map(|p| ((p.task, p.id), p.scores))
        .collect();
    Ok((r, preds))
}

pub fn compare(
    a_dir: &Path,
    b_dir: &Path,
    resamples: usize,
    seed: u64,
) -> Result<Comparison, Error> {
    let (ra, pa) = load(a_dir)?;
    let (rb, pb) = load(b_dir)?;
    let mut rows = Vec::new();
    let mut only_in_a = Vec::new();
    for ta in &ra.tasks {
        let Some(tb) = rb.tasks.iter().find(|t| t.task == ta.task) else {
            only_in_a.push(ta.task.clone());
            continue;
        };
        let m = &ta.headline;
        let (Some(ma), Some(mb)) = (ta.metrics.get(m), tb.metrics.get(m)) else {
            continue;
        };
        let scores = |p: &ItemScores| -> BTreeMap<String, f64> {
            p.iter()
                .filter(|((t, _), _)| *t == ta.task)
                .filter_map(|((_, id), s)| s.get(m).copied().flatten().map(|v| (id.clone(), v)))
                .collect()
        };
        let (sa, sb) = (scores(&pa), scores(&pb));
        let common: Vec<&String> = sa.keys().filter(|k| sb.contains_key(*k)).collect();
        let seed = seed ^ crate::util::seed_from(&ta.task);
        let (est, method, n): (Option<Estimate>, _, _) = if common.is_empty() {
            let a: Vec<f64> = sa.values().copied().collect();
            let b: Vec<f64> = sb.values().copied().collect();
            (
                bootstrap::unpaired_diff_ci(&a, &b, resamples, LEVEL, seed),
                "unpaired",
                a.len().min(b.len()),
            )
        } else {
            let a: Vec<f64> = common.iter().map(|k| sa[*k]).collect();
            let b: Vec<f64> = common.iter().map(|k| sb[*k]).collect();
            (
                bootstrap::paired_diff_ci(&a, &b, resamples, LEVEL, seed),
                "paired",
                common.len(),
            )
        };
        let Some(e) = est else { continue };
        rows.push(Row {
            task: ta.task.clone(),
            metric: m.clone(),
            a: ma.mean,
            b: mb.mean,
            delta: e.mean,
            ci_low: e.low,
            ci_high: e.high,
            method,
            n,
            excludes_zero: e.low > 0.0 || e.high < 0.0,
            worse: e.mean < 0.0,
        });
    }
    let only_in_b = rb
        .tasks
        .iter()
        .filter(|t| !ra.tasks.iter().any(|a| a.task == t.task))
        .map(|t| t.task.clone())
        .collect();
    Ok(Comparison {
        rows,
        only_in_a,
        only_in_b,
        macro_a: ra.macro_average,
        macro_b: rb.macro_average,
    })
}

pub fn markdown(c: &Comparison, a: &Path, b: &Path) -> String {
    let mut s = format!(
        "A: {}\nB: {}\n\n| task | metric | A | B | delta (B-A) | 95% CI of delta | method (n) | |\n\
         |---|---|---:|---:|---:|---|---|---|\n",
        a.display(),
        b.display()
    );
    for r in &c.rows {
        let flag = match (r.worse, r.excludes_zero) {
            (true, true) => "WORSE",
            (true, false) => "worse (CI includes 0)",
            (false, true) => "better",
            (false, false) => "",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} | {:.3} | {:+.3} | [{:+.3}, {:+.3}] | {} ({}) | {flag} |",
            r.task, r.metric, r.a, r.b, r.delta, r.ci_low, r.ci_high, r.method, r.n
        );
    }
    if let (Some(x), Some(y)) = (c.macro_a, c.macro_b) {
        let _ = writeln!(
            s,
            "\nMacro average: A {x:.3}, B {y:.3}, delta {:+.3}",
            y - x
        );
    }
    let worse: Vec<&str> = c
        .rows
        .iter()
        .filter(|r| r.worse)
        .map(|r| r.task.as_str())
        .collect();
    if !worse.is_empty() {
        let _ = writeln!(s, "\nTasks that got worse: {}", worse.join(", "));
    }
    for (side, v) in [("A", &c.only_in_a), ("B", &c.only_in_b)] {
        if !v.is_empty() {
            let _ = writeln!(s, "Only in {side}: {}", v.join(", "));
        }
    }
    s
}
