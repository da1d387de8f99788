//! Preference pairs for DPO: what `mediflow dpo` writes (`<run>/dpo/pairs.jsonl`) and
//! `mediflow export` reads. Column names follow MediFlow's DPO split (`output` is the
//! chosen answer, `rejected_output` the rejected one, `error_type` for injected errors).

use serde::{Deserialize, Serialize};

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
