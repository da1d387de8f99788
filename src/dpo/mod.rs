//! Preference pairs for DPO: what `mediflow dpo` writes (`<run>/dpo/<strategy>.jsonl`) and
//! `mediflow export` reads. Column names follow MediFlow's DPO split (`output` is the
//! chosen answer, `rejected_output` the rejected one, `error_type` for injected errors).

use serde::{Deserialize, Serialize};

/// Where a run's pairs live: `<run>/dpo/<strategy>.jsonl`.
pub const DPO_DIR: &str = "dpo";

/// Judge scores of one answer (medians over the judge's samples).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub quality: f64,
    pub alignment: f64,
    pub coherence: f64,
    pub realism: f64,
    pub difficulty: f64,
}

/// One preference pair with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// Stable: derived from the strategy, the source record id and the pair's variant.
    pub id: String,
    /// The accepted record the pair was built from.
    pub record_id: String,
    /// `error_injection`, `best_of_n` or `on_policy`.
    pub strategy: String,
    pub task_type: String,
    pub input_data: String,
    pub output_format: String,
    pub difficulty_level: u8,
    pub instruction: String,
    pub input: String,
    /// The chosen answer.
    pub output: String,
    pub rejected_output: String,
    /// The injected error (`error_injection` only).
    pub error_type: Option<String>,
    pub chosen_scores: Option<Scores>,
    pub rejected_scores: Option<Scores>,
    /// Score difference (chosen - rejected) the pair was admitted with.
    pub margin: Option<f64>,
    /// Who wrote each answer (teacher model, student model, or `reference`).
    pub chosen_model: String,
    pub rejected_model: String,
    pub judge_model: Option<String>,
}

/// The error types `error_injection` can inject, with the one-line description the
/// template gives the teacher.
pub const ERROR_TYPES: [(&str, &str); 8] = [
    ("factual_error", "one stated fact (a finding, value, laterality, date or diagnosis) is changed so that it contradicts the document"),
    ("omission", "one key finding or element the instruction asks for is left out"),
    ("hallucinated_finding", "one finding, result or diagnosis that the document does not contain is added as if it were documented"),
    ("wrong_code_or_dose", "one code (e.g. an ICD-10-CM code) or one medication dose, unit or frequency is replaced by a wrong but plausible one"),
    ("ambiguity", "one precise statement is made vague or ambiguous (hedged, unclear referent or missing qualifier)"),
    ("partially_correct", "the answer is only partly correct: one part of what the instruction asks for is answered wrongly"),
    ("unsafe_advice", "one recommendation is changed into clinically unsafe advice (e.g. a contraindicated drug, a missed urgent referral)"),
    ("schema_violation", "the JSON answer no longer conforms to the task's JSON Schema (json answers only)"),
];

/// The description of a known error type.
pub fn error_description(name: &str) -> Option<&'static str> {
    ERROR_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
}

/// `[dpo]` in the run config: settings of `mediflow dpo` (not part of the generation
/// fingerprint: pairs are built after the run).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoConfig {
    /// Source records for `error_injection` need at least this judge quality (records not
    /// yet judged are judged first).
    #[serde(default = "d_min_quality")]
    pub min_quality: f64,
    /// The error types `error_injection` picks from (per record, deterministically).
    #[serde(default = "d_error_types")]
    pub error_types: Vec<String>,
    /// Answers sampled per record by `best_of_n`.
    #[serde(default = "d_samples")]
    pub samples: u32,
    /// Minimum difference of the mean of the five judge medians (chosen - rejected).
    #[serde(default = "d_min_margin")]
    pub min_margin: f64,
    /// The student model of `on_policy` (an OpenAI-compatible server or the embedded model).
    #[serde(default)]
    pub student: Option<crate::teacher::TeacherConfig>,
    /// Records processed at once.
    #[serde(default = "d_concurrency")]
    pub concurrency: usize,
}

impl Default for DpoConfig {
    fn default() -> Self {
        DpoConfig {
            min_quality: d_min_quality(),
            error_types: d_error_types(),
            samples: d_samples(),
            min_margin: d_min_margin(),
            student: None,
            concurrency: d_concurrency(),
        }
    }
}

fn d_min_quality() -> f64 {
    4.0
}
fn d_error_types() -> Vec<String> {
    ERROR_TYPES.iter().map(|(n, _)| n.to_string()).collect()
}
fn d_samples() -> u32 {
    4
}
fn d_min_margin() -> f64 {
    1.0
}
fn d_concurrency() -> usize {
    8
}

impl DpoConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !(0.0..=5.0).contains(&self.min_quality) {
            p.push(format!(
                "`dpo.min_quality` must be within 0..=5, got {}",
                self.min_quality
            ));
        }
        if self.error_types.is_empty() {
            p.push("`dpo.error_types` is empty".into());
        }
        for e in &self.error_types {
            if error_description(e).is_none() {
                let known: Vec<&str> = ERROR_TYPES.iter().map(|(n, _)| *n).collect();
                p.push(format!(
                    "`dpo.error_types`: unknown error type {e:?} (known: {})",
                    known.join(", ")
                ));
            }
        }
        if self.samples < 2 {
            p.push("`dpo.samples` must be at least 2".into());
        }
        if !(self.min_margin >= 0.0 && self.min_margin.is_finite()) {
            p.push(format!(
                "`dpo.min_margin` must be a number of at least 0, got {}",
                self.min_margin
            ));
        }
        if self.concurrency == 0 {
            p.push("`dpo.concurrency` must be at least 1".into());
        }
        if let Some(s) = &self.student {
            for m in s.validate() {
                p.push(format!("dpo.student: {m}"));
            }
        }
        p
    }
}
