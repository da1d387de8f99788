//! Exact and near-duplicate removal (placeholder: to be written).

use crate::record::Record;
use serde::{Deserialize, Serialize};

/// `[dedup]` in the run config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {}

impl DedupConfig {
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    /// `exact_duplicate` or `near_duplicate`.
    pub reason: &'static str,
    /// The id of the kept record this one duplicates.
    pub of: String,
}

pub struct Dedup;

impl Dedup {
    pub fn new(_cfg: &DedupConfig) -> Self {
        Dedup
    }
    /// Check `text` against the kept records; keep (insert) it if it is no duplicate.
    pub fn check_insert(&mut self, _id: &str, _text: &str) -> Result<(), Duplicate> {
        Ok(())
    }
}

/// The text a record is deduplicated on: the bare instruction and the input.
pub fn record_text(rec: &Record) -> String {
    format!(
        "{}\n{}",
        crate::record::bare_instruction(&rec.instruction),
        rec.input
    )
}
