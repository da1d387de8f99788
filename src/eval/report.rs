//! Aggregation of per-item predictions into `results.json` and `results.md`: per task the
//! number of items scored, each score's mean with a 95% percentile-bootstrap interval
//! (seeded), the malformed-answer rate and how answers were obtained; then the macro
//! average of the tasks' headline scores.

use super::bootstrap;
use super::predictions::Prediction;
use super::task::{Scoring, SourceSpec, Task};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

pub const JSON: &str = "results.json";
pub const MARKDOWN: &str = "results.md";
pub const LEVEL: f64 = 0.95;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricResult {
    /// Items with a defined score.
    pub n: usize,
    pub mean: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    pub task: String,
    pub description: String,
    /// `export` or `icd10cm_mcq`.
    pub source: String,
    /// Items the task asked for (after `--limit`).
    pub items: usize,
    /// Items scored.
    pub n: usize,
    /// The headline score's name.
    pub headline: String,
    pub malformed: usize,
    pub malformed_rate: Option<f64>,
    /// `generate` / `loglikelihood` -> items.
    pub modes: BTreeMap<String, usize>,
    pub metrics: IndexMap<String, MetricResult>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bootstrap {
    pub resamples: usize,
    pub level: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub model: Value,
    pub bootstrap: Bootstrap,
    pub tasks: Vec<TaskResult>,
    /// Mean of the headline scores of the tasks with items.
    pub macro_average: Option<f64>,
    /// Items not scored because the model failed after every retry.
    pub unscored: usize,
}

/// Aggregate `preds` per task. `ll_unsupported` is why the backend could not score by
/// log-likelihood, if it could not; `judged` whether a judge model was given.
pub fn build(
    tasks: &[Task],
    preds: &[Prediction],
    model: Value,
    limit: Option<usize>,
    boot: Bootstrap,
    ll_unsupported: Option<&str>,
    judged: bool,
) -> Results {
    let mut by_task: BTreeMap<&str, Vec<&Prediction>> = BTreeMap::new();
    for p in preds {
        by_task.entry(&p.task).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut unscored = 0;
    for t in tasks {
        let name = t.spec.name.as_str();
        let items = limit.unwrap_or(usize::MAX).min(t.items.len());
        let ps = by_task.remove(name).unwrap_or_default();
        let mut names: Vec<String> = t
            .spec
            .metrics
            .iter()
            .flat_map(|m| m.names())
            .map(String::from)
            .collect();
        for p in &ps {
            for k in p.scores.keys() {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
        let mut metrics = IndexMap::new();
        for m in names {
            let x: Vec<f64> = ps
                .iter()
                .filter_map(|p| p.scores.get(&m).copied().flatten())
                .collect();
            let seed = boot.seed ^ crate::util::seed_from(&format!("{name}/{m}"));
            if let Some(e) = bootstrap::mean_ci(&x, boot.resamples, boot.level, seed) {
                metrics.insert(
                    m,
                    MetricResult {
                        n: x.len(),
                        mean: e.mean,
                        ci_low: e.low,
                        ci_high: e.high,
                    },
                );
            }
        }
        let malformed = ps.iter().filter(|p| p.malformed.is_some()).count();
        let mut modes = BTreeMap::new();
        for p in &ps {
            *modes.entry(p.mode.clone()).or_insert(0) += 1;
        }
        let mut notes = Vec::new();
        let generated = modes.get("generate").copied().unwrap_or(0);
        if t.spec.scoring != Scoring::Generate && generated > 0 {
            notes.push(format!(
                "{generated} item(s) scored by generation instead of log-likelihood: {}",
                ll_unsupported.unwrap_or("the backend gave no log-probabilities")
            ));
        }
        if t.judge.is_some() && !judged {
            notes.push("judge_score not computed: no --judge model given".into());
        }
        if t.skipped > 0 {
            notes.push(format!(
                "{} source row(s) left out: their reference answer is not a JSON object",
                t.skipped
            ));
        }
        if items == 0 {
            notes.push("no items in the source".into());
        } else if ps.len() < items {
            unscored += items - ps.len();
            notes.push(format!(
                "{} of {items} item(s) not scored (the model failed after every retry; run the \
                 same command again to retry them)",
                items - ps.len()
            ));
        }
        out.push(TaskResult {
            task: name.to_string(),
            description: t.spec.description.clone(),
            source: match t.spec.source {
                SourceSpec::Export { .. } => "export",
                SourceSpec::Icd10cmMcq { .. } => "icd10cm_mcq",
            }
            .into(),
            items,
            n: ps.len(),
            headline: t.headline().to_string(),
            malformed,
            malformed_rate: (!ps.is_empty()).then(|| malformed as f64 / ps.len() as f64),
            modes,
            metrics,
            notes,
        });
    }
    let heads: Vec<f64> = out
        .iter()
        .filter_map(|r| r.metrics.get(&r.headline).map(|m| m.mean))
        .collect();
    Results {
        model,
        bootstrap: boot,
        macro_average: (!heads.is_empty()).then(|| crate::text::mean(&heads)),
        tasks: out,
        unscored,
    }
}

fn ci(m: &MetricResult) -> String {
    format!("{:.3} [{:.3}, {:.3}]", m.mean, m.ci_low, m.ci_high)
}

pub fn markdown(r: &Results) -> String {
    let mut s = String::from("# Evaluation results\n\n");
    let _ = writeln!(
        s,
        "Model: `{}`. Intervals: {:.0}% percentile bootstrap over items ({} resamples, seed {}).\n",
        r.model,
        r.bootstrap.level * 100.0,
        r.bootstrap.resamples,
        r.bootstrap.seed
    );
    s.push_str("| task | n | headline | score [95% CI] | malformed | scored by | other scores |\n");
    s.push_str("|---|---:|---|---|---:|---|---|\n");
    for t in &r.tasks {
        let head = t
            .metrics
            .get(&t.headline)
            .map(ci)
            .unwrap_or_else(|| "-".into());
        let others: Vec<String> = t
            .metrics
            .iter()
            .filter(|(k, _)| **k != t.headline)
            .map(|(k, m)| format!("{k} {}", ci(m)))
            .collect();
        let modes: Vec<String> = t.modes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            t.task,
            t.n,
            t.headline,
            head,
            t.malformed_rate
                .map(|x| format!("{:.1}%", 100.0 * x))
                .unwrap_or_else(|| "-".into()),
            modes.join(", "),
            others.join("; ")
        );
    }
    match r.macro_average {
        Some(m) => {
            let _ = writeln!(s, "\nMacro average of the headline scores: {m:.3}");
        }
        None => s.push_str("\nMacro average: no task had items.\n"),
    }
    let notes: Vec<String> = r
        .tasks
        .iter()
        .flat_map(|t| t.notes.iter().map(move |n| format!("- {}: {n}", t.task)))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(s, "\nNotes:\n{}", notes.join("\n"));
    }
    s
}

pub fn write(dir: &Path, r: &Results) -> anyhow::Result<()> {
    std::fs::write(dir.join(JSON), serde_json::to_string_pretty(r)?)?;
    std::fs::write(dir.join(MARKDOWN), markdown(r))?;
    Ok(())
}

pub fn read(dir: &Path) -> anyhow::Result<Results> {
    let path = dir.join(JSON);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
