//! Run statistics: per stage and per filter `total / kept / dropped_<reason>`, per cell
//! counts (with the quota outcome), judge score means, teacher usage, per-task /
//! per-format counts, rejects split into transient (the server failed) and content ones,
//! and the earlier rejects an attempt retried. Fed by every outcome, including those
//! found on resume.

use crate::quality::judge::DIMENSIONS;
use crate::record::{Record, Rejection};
use crate::teacher::{is_transient, TRANSIENT_REASONS};
use indexmap::IndexMap;
use serde::Serialize;
use std::collections::BTreeMap;

/// The stages an item passes, in order.
pub const STAGES: [&str; 7] = [
    "document",
    "instruction",
    "answer",
    "validate",
    "filter",
    "judge",
    "dedup",
];

#[derive(Debug, Default, Clone, Serialize)]
pub struct StageStats {
    pub total: u64,
    pub kept: u64,
    #[serde(flatten)]
    pub dropped: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct TeacherStats {
    pub calls: u64,
    pub repairs: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms_total: u64,
}

/// One cell's outcomes. `target_accepted` and `status` are set when quotas are on.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CellStats {
    pub attempted: u64,
    pub accepted: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_accepted: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_budget: Option<u64>,
    /// `met`, or why the cell fell short.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "JudgeStats::is_empty")]
    pub judge: JudgeStats,
}

/// Judge score means (over every judged record, and over the accepted ones: empty while
/// none is accepted).
#[derive(Debug, Default, Clone, Serialize)]
pub struct JudgeStats {
    pub judged: u64,
    pub mean_judged: BTreeMap<String, f64>,
    pub mean_accepted: BTreeMap<String, f64>,
    pub mean_spread: f64,
    /// Whether the judge's thresholds applied (a usable calibration) and why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection: Option<serde_json::Value>,
    #[serde(skip)]
    sums: [[f64; 5]; 2],
    #[serde(skip)]
    accepted: u64,
    #[serde(skip)]
    spread_sum: f64,
}

impl JudgeStats {
    fn is_empty(&self) -> bool {
        self.judged == 0
    }

    fn add(&mut self, r: &Record, accepted: bool) {
        let scores = [r.quality, r.alignment, r.coherence, r.realism, r.difficulty];
        if r.judge_samples == 0 || scores.iter().any(Option::is_none) {
            return;
        }
        self.judged += 1;
        self.spread_sum += r.judge_spread.unwrap_or(0.0);
        self.accepted += accepted as u64;
        for (i, s) in scores.iter().enumerate() {
            let s = s.unwrap_or_default();
            self.sums[0][i] += s;
            if accepted {
                self.sums[1][i] += s;
            }
        }
        let mean = |sums: &[f64; 5], n: u64| -> BTreeMap<String, f64> {
            DIMENSIONS
                .iter()
                .zip(sums)
                .map(|(d, s)| (d.to_string(), s / n.max(1) as f64))
                .collect()
        };
        self.mean_judged = mean(&self.sums[0], self.judged);
        if self.accepted > 0 {
            self.mean_accepted = mean(&self.sums[1], self.accepted);
        }
        self.mean_spread = self.spread_sum / self.judged as f64;
    }
}

/// Earlier rejects an attempt of `run` tried again (`--retry-rejects`), by their earlier
/// reason, and their new outcomes (each replaced its reject: counted once, as the new
/// outcome, everywhere else in the stats).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Retried {
    /// `transient`, `all` or `none`.
    pub mode: String,
    pub retried: u64,
    pub previous_reasons: BTreeMap<String, u64>,
    pub accepted: u64,
    pub rejected_transient: u64,
    pub rejected_content: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Rejects of the kind retried that stayed, as their cell had met its quota.
    pub kept: u64,
}

impl Retried {
    /// An item rejected before for `previous` ended accepted (`None`) or rejected again.
    pub fn add(&mut self, previous: &str, rejected_for: Option<&str>) {
        self.retried += 1;
        *self
            .previous_reasons
            .entry(previous.to_string())
            .or_default() += 1;
        match rejected_for {
            None => self.accepted += 1,
            Some(r) => {
                if is_transient(r) {
                    self.rejected_transient += 1;
                } else {
                    self.rejected_content += 1;
                }
                *self.rejected_by_reason.entry(r.to_string()).or_default() += 1;
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub planned: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// In pipeline order (see `STAGES`).
    pub stages: IndexMap<String, StageStats>,
    pub teacher: TeacherStats,
    pub accepted_by_task: BTreeMap<String, u64>,
    pub accepted_by_format: BTreeMap<String, u64>,
    pub accepted_by_difficulty: BTreeMap<u8, u64>,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Rejects for a reason in `transient_reasons` (the server failed: a later `run`
    /// tries them again) and for any other (the teacher's output was not kept).
    pub rejected_transient: u64,
    pub rejected_content: u64,
    pub transient_reasons: Vec<String>,
    /// Earlier rejects this attempt tried again, and how they came out (`run` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retried: Option<Retried>,
    #[serde(skip)]
    filter_order: Vec<(String, Vec<String>)>,
    /// Per heuristic filter, in run order: records checked, kept, dropped by reason.
    pub filters: IndexMap<String, StageStats>,
    pub judge: JudgeStats,
    /// Per cell (`task/document/difficulty/format`).
    pub cells: BTreeMap<String, CellStats>,
    /// What the teachers' load control did this attempt: per endpoint its limit,
    /// requests, failures, drains and the adaptive controller's decisions.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub concurrency: BTreeMap<String, serde_json::Value>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            planned: 0,
            accepted: 0,
            rejected: 0,
            stages: STAGES
                .iter()
                .map(|s| (s.to_string(), StageStats::default()))
                .collect(),
            teacher: TeacherStats::default(),
            accepted_by_task: BTreeMap::new(),
            accepted_by_format: BTreeMap::new(),
            accepted_by_difficulty: BTreeMap::new(),
            rejected_by_reason: BTreeMap::new(),
            rejected_transient: 0,
            rejected_content: 0,
            transient_reasons: TRANSIENT_REASONS.iter().map(|r| r.to_string()).collect(),
            retried: None,
            filter_order: Vec::new(),
            filters: IndexMap::new(),
            judge: JudgeStats::default(),
            cells: BTreeMap::new(),
            concurrency: BTreeMap::new(),
        }
    }
}

/// The stages at and after which records have passed generation and validation.
const GATED: [&str; 3] = ["filter", "judge", "dedup"];

impl Stats {
    /// Empty stats that will report the given filters (name, reasons) in this order.
    pub fn new(planned: u64, filters: &[(&str, &[&str])]) -> Stats {
        let mut s = Stats {
            planned,
            ..Default::default()
        };
        s.filter_order = filters
            .iter()
            .map(|(f, reasons)| {
                (
                    f.to_string(),
                    reasons.iter().map(|r| r.to_string()).collect(),
                )
            })
            .collect();
        s
    }

    /// Count a record that reached the filters: kept by each filter up to the one that
    /// dropped it (`dropped_by`: its reject reason at stage `filter`).
    fn add_filtered(&mut self, dropped_by: Option<&str>) {
        for (name, reasons) in &self.filter_order {
            let st = self.filters.entry(name.clone()).or_default();
            st.total += 1;
            match dropped_by {
                Some(r) if reasons.iter().any(|x| x == r) => {
                    *st.dropped.entry(format!("dropped_{r}")).or_default() += 1;
                    return;
                }
                _ => st.kept += 1,
            }
        }
    }

    fn usage(&mut self, r: &Record) {
        self.teacher.calls += r.attempts as u64;
        self.teacher.repairs += r.repairs as u64;
        self.teacher.prompt_tokens += r.prompt_tokens;
        self.teacher.completion_tokens += r.completion_tokens;
        self.teacher.latency_ms_total += r.latency_ms;
    }

    pub fn add_record(&mut self, r: &Record) {
        self.accepted += 1;
        for s in STAGES {
            let st = self.stages.entry(s.to_string()).or_default();
            st.total += 1;
            st.kept += 1;
        }
        *self
            .accepted_by_task
            .entry(r.task_type.clone())
            .or_default() += 1;
        *self
            .accepted_by_format
            .entry(r.output_format.clone())
            .or_default() += 1;
        *self
            .accepted_by_difficulty
            .entry(r.difficulty_level)
            .or_default() += 1;
        self.add_filtered(None);
        self.judge.add(r, true);
        let c = self.cells.entry(r.cell().key()).or_default();
        c.attempted += 1;
        c.accepted += 1;
        c.judge.add(r, true);
        self.usage(r);
    }

    pub fn add_reject(&mut self, j: &Rejection) {
        self.rejected += 1;
        for s in STAGES {
            let st = self.stages.entry(s.to_string()).or_default();
            st.total += 1;
            if s == j.stage {
                *st.dropped
                    .entry(format!("dropped_{}", j.reason))
                    .or_default() += 1;
                break;
            }
            st.kept += 1;
        }
        *self.rejected_by_reason.entry(j.reason.clone()).or_default() += 1;
        if is_transient(&j.reason) {
            self.rejected_transient += 1;
        } else {
            self.rejected_content += 1;
        }
        if GATED.contains(&j.stage.as_str()) {
            self.add_filtered((j.stage == "filter").then_some(j.reason.as_str()));
        }
        self.judge.add(&j.record, false);
        let c = self.cells.entry(j.record.cell().key()).or_default();
        c.attempted += 1;
        c.judge.add(&j.record, false);
        *c.rejected_by_reason.entry(j.reason.clone()).or_default() += 1;
        self.usage(&j.record);
    }

    pub fn done(&self) -> u64 {
        self.accepted + self.rejected
    }
}
