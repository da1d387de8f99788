//! The one Record that flows through every stage, its Arrow schema (documented in
//! docs/outputs.md), and the Rejection that carries a record-so-far with its reason.

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// A generated example. MediFlow's column names come first, then provenance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub task_type: String,
    /// The document type (MediFlow calls this column `input_data`).
    pub input_data: String,
    pub output_format: String,
    pub difficulty_level: u8,
    pub instruction: String,
    pub input: String,
    pub output: String,
    // Judge scores (null until a judge has scored the record).
    pub quality: Option<f64>,
    pub alignment: Option<f64>,
    pub coherence: Option<f64>,
    pub realism: Option<f64>,
    pub difficulty: Option<f64>,
    /// Valid judge samples behind the scores (0 = not judged).
    #[serde(default)]
    pub judge_samples: u32,
    /// Largest max - min of a dimension over the judge samples.
    #[serde(default)]
    pub judge_spread: Option<f64>,
    /// The rationale of the judge sample closest to the median scores.
    #[serde(default)]
    pub judge_rationale: Option<String>,
    // Seed attributes.
    pub document_family: String,
    pub specialty: String,
    pub age_band: String,
    pub sex: String,
    pub care_setting: String,
    pub writing_style: String,
    pub concept_code: String,
    pub concept_description: String,
    // Provenance.
    pub run_seed: u64,
    pub cell_index: u32,
    pub teacher_backend: String,
    pub teacher_model: String,
    pub temperature: f64,
    pub top_p: f64,
    pub request_seed: Option<u64>,
    pub template_document: String,
    pub template_instruction: String,
    pub template_answer: String,
    /// Teacher calls made for this record, retries and repairs included.
    pub attempts: u32,
    pub repairs: u32,
    /// The document hit its token cap and was cut back to its last complete sentence.
    #[serde(default)]
    pub document_truncated: bool,
    /// The same for the instruction.
    #[serde(default)]
    pub instruction_truncated: bool,
    pub latency_ms: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A cell of the plan: one task type, document type, difficulty and output format.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cell {
    pub task: String,
    pub document: String,
    pub difficulty: u8,
    pub format: String,
}

impl Record {
    /// The plan cell this record belongs to.
    pub fn cell(&self) -> Cell {
        Cell {
            task: self.task_type.clone(),
            document: self.input_data.clone(),
            difficulty: self.difficulty_level,
            format: self.output_format.clone(),
        }
    }
}

/// What the engine appends to a stored `json` instruction (followed by the schema).
pub const SCHEMA_NOTE: &str =
    "\n\nAnswer with a single JSON object that conforms to this JSON Schema:\n```json\n";

/// The instruction without the schema note the engine appended (what the teacher wrote).
pub fn bare_instruction(instruction: &str) -> &str {
    instruction
        .find(SCHEMA_NOTE)
        .map_or(instruction, |i| &instruction[..i])
}

/// A record that did not make it, with the stage and the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub id: String,
    pub stage: String,
    pub reason: String,
    pub detail: String,
    pub record: Record,
}

/// The Arrow schema of `Record` (Parquet columns, in this order).
pub fn arrow_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        use DataType::*;
        let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
        let s = |n: &str| f(n, Utf8, false);
        Arc::new(Schema::new(vec![
            s("id"),
            s("task_type"),
            s("input_data"),
            s("output_format"),
            f("difficulty_level", UInt8, false),
            s("instruction"),
            s("input"),
            s("output"),
            f("quality", Float64, true),
            f("alignment", Float64, true),
            f("coherence", Float64, true),
            f("realism", Float64, true),
            f("difficulty", Float64, true),
            f("judge_samples", UInt32, false),
            f("judge_spread", Float64, true),
            f("judge_rationale", Utf8, true),
            s("document_family"),
            s("specialty"),
            s("age_band"),
            s("sex"),
            s("care_setting"),
            s("writing_style"),
            s("concept_code"),
            s("concept_description"),
            f("run_seed", UInt64, false),
            f("cell_index", UInt32, false),
            s("teacher_backend"),
            s("teacher_model"),
            f("temperature", Float64, false),
            f("top_p", Float64, false),
            f("request_seed", UInt64, true),
            s("template_document"),
            s("template_instruction"),
            s("template_answer"),
            f("attempts", UInt32, false),
            f("repairs", UInt32, false),
            f("document_truncated", Boolean, false),
            f("instruction_truncated", Boolean, false),
            f("latency_ms", UInt64, false),
            f("prompt_tokens", UInt64, false),
            f("completion_tokens", UInt64, false),
        ]))
    })
    .clone()
}

/// Records -> one Arrow RecordBatch (via arrow-json's serde decoder against our schema).
pub fn to_batch(records: &[Record]) -> anyhow::Result<arrow::record_batch::RecordBatch> {
    let schema = arrow_schema();
    let mut decoder = arrow::json::ReaderBuilder::new(schema.clone())
        .with_batch_size(records.len().max(1))
        .build_decoder()?;
    decoder.serialize(records)?;
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| arrow::record_batch::RecordBatch::new_empty(schema)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_matches_serialized_fields_in_order() {
        let v = serde_json::to_value(Record::default()).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        let schema = arrow_schema();
        let names: Vec<&String> = schema.fields().iter().map(|f| f.name()).collect();
        let mut sorted_names = names.clone();
        sorted_names.sort();
        let mut sorted_keys = keys.clone();
        sorted_keys.sort();
        assert_eq!(sorted_keys, sorted_names);
        let r = Record {
            id: "x".into(),
            quality: Some(4.0),
            ..Default::default()
        };
        let b = to_batch(&[r.clone(), Record::default()]).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.num_columns(), names.len());
    }
}
