//! Per-item predictions: appended to `predictions.jsonl` as each item finishes (the
//! journal a resumed eval starts from), and written as `predictions.parquet` at the end.

use crate::export::write::to_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub const JSONL: &str = "predictions.jsonl";
pub const PARQUET: &str = "predictions.parquet";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub task: String,
    pub id: String,
    /// `generate` or `loglikelihood`.
    pub mode: String,
    /// The model's text (generation).
    pub raw: Option<String>,
    /// The parsed, schema-valid answer (None when malformed).
    pub answer: Option<Value>,
    /// Why the answer is malformed (None when it is not).
    pub malformed: Option<String>,
    pub reference: Value,
    /// Score name -> value (None where undefined for this item).
    pub scores: BTreeMap<String, Option<f64>>,
    /// Log-likelihood scoring: each option's summed log-probability.
    pub option_logprobs: Option<Vec<f64>>,
    pub attempts: u32,
    pub latency_ms: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Every prediction in `dir` (a torn last line left by a killed eval is cut off).
pub fn read(dir: &Path) -> anyhow::Result<Vec<Prediction>> {
    crate::sink::read_jsonl(&dir.join(JSONL), true)
}

fn schema() -> SchemaRef {
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let u = |n: &str| Field::new(n, DataType::UInt64, false);
    Arc::new(Schema::new(vec![
        s("task", false),
        s("id", false),
        s("mode", false),
        s("raw", true),
        s("answer", true),
        s("malformed", true),
        s("reference", false),
        s("scores", false),
        Field::new(
            "option_logprobs",
            DataType::List(Arc::new(Field::new("item", DataType::Float64, false))),
            true,
        ),
        Field::new("attempts", DataType::UInt32, false),
        u("latency_ms"),
        u("prompt_tokens"),
        u("completion_tokens"),
    ]))
}

/// Write `rows` as Parquet (JSON-valued columns as JSON text), via a temporary name.
pub fn write_parquet(path: &Path, rows: &[Prediction]) -> anyhow::Result<()> {
    let schema = schema();
    let batches = rows.chunks(4096).map(|chunk| {
        let values: Vec<Value> = chunk
            .iter()
            .map(|p| {
                json!({
                    "task": p.task, "id": p.id, "mode": p.mode, "raw": p.raw,
                    "answer": p.answer.as_ref().map(Value::to_string),
                    "malformed": p.malformed, "reference": p.reference.to_string(),
                    "scores": serde_json::to_string(&p.scores).expect("serializable"),
                    "option_logprobs": p.option_logprobs, "attempts": p.attempts,
                    "latency_ms": p.latency_ms, "prompt_tokens": p.prompt_tokens,
                    "completion_tokens": p.completion_tokens,
                })
            })
            .collect();
        to_batch(&schema, &values)
    });
    crate::sink::write_batches(path, schema.clone(), batches)
}
