//! Run statistics: per stage `total / kept / dropped_<reason>`, teacher usage, and
//! per-task / per-format counts. Fed by every outcome, including those found on resume.

use crate::record::{Record, Rejection};
use indexmap::IndexMap;
use serde::Serialize;
use std::collections::BTreeMap;

/// The stages an item passes, in order.
pub const STAGES: [&str; 4] = ["document", "instruction", "answer", "validate"];

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
        }
    }
}

impl Stats {
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
        self.usage(&j.record);
    }

    pub fn done(&self) -> u64 {
        self.accepted + self.rejected
    }
}
