//! SFT rows: `sft-messages` (system = role + instruction, user = the document, assistant =
//! the answer, as MediPhi-Instruct was trained) and `sft-prompt-completion`; and mixing
//! general-domain `messages` rows into the train split.

use crate::record::Record;
use crate::teacher::Message;
use anyhow::{bail, Context};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// The role line that opens every system message (and prompt).
pub const ROLE: &str = "You are a clinical documentation assistant. Complete the task using only \
                        the information in the clinical document provided.";

/// `source` of rows made from a run's records.
pub const SOURCE_MEDIFLOW: &str = "mediflow";
/// `source` of rows mixed in with `--mix`.
pub const SOURCE_GENERAL: &str = "general";

/// The system message: the role line, then the task instruction (as stored: a `json`
/// item's instruction ends with its schema).
pub fn system_text(instruction: &str) -> String {
    format!("{ROLE}\n\n{instruction}")
}

/// The conversation of a record: system, user (the document), assistant (the answer).
pub fn messages(r: &Record) -> Vec<Message> {
    vec![
        Message::system(system_text(&r.instruction)),
        Message::user(r.input.clone()),
        message("assistant", &r.output),
    ]
}

pub fn message(role: &str, content: &str) -> Message {
    Message {
        role: role.into(),
        content: content.into(),
    }
}

/// The prompt of `sft-prompt-completion` (and of string-form DPO): role, instruction and
/// document, separated by blank lines. The completion is the answer alone.
pub fn prompt_text(instruction: &str, input: &str) -> String {
    format!("{ROLE}\n\n{instruction}\n\n{input}")
}

/// `list<struct<role, content>>`.
pub fn messages_type() -> DataType {
    let msg = Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ]);
    DataType::List(Arc::new(Field::new("item", DataType::Struct(msg), false)))
}

/// The metadata columns every SFT row carries (nullable: mixed general rows have none).
fn metadata_fields() -> Vec<Field> {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        s("task_type"),
        s("input_data"),
        s("output_format"),
        Field::new("difficulty_level", DataType::UInt8, true),
        s("document_family"),
        s("specialty"),
        f("quality"),
        f("alignment"),
        f("coherence"),
        f("realism"),
        f("difficulty"),
        s("teacher_model"),
    ]
}

pub fn messages_schema() -> SchemaRef {
    let mut fields = vec![Field::new("messages", messages_type(), false)];
    fields.extend(metadata_fields());
    Arc::new(Schema::new(fields))
}

pub fn prompt_completion_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("prompt", DataType::Utf8, false),
        Field::new("completion", DataType::Utf8, false),
    ];
    fields.extend(metadata_fields());
    Arc::new(Schema::new(fields))
}

fn metadata(r: &Record, row: &mut serde_json::Map<String, Value>) {
    let judged = r.judge_samples > 0;
    let score = |v: Option<f64>| if judged { json!(v) } else { Value::Null };
    for (k, v) in [
        ("id", json!(r.id)),
        ("source", json!(SOURCE_MEDIFLOW)),
        ("task_type", json!(r.task_type)),
        ("input_data", json!(r.input_data)),
        ("output_format", json!(r.output_format)),
        ("difficulty_level", json!(r.difficulty_level)),
        ("document_family", json!(r.document_family)),
        ("specialty", json!(r.specialty)),
        ("quality", score(r.quality)),
        ("alignment", score(r.alignment)),
        ("coherence", score(r.coherence)),
        ("realism", score(r.realism)),
        ("difficulty", score(r.difficulty)),
        ("teacher_model", json!(r.teacher_model)),
    ] {
        row.insert(k.into(), v);
    }
}

pub fn messages_row(r: &Record) -> Value {
    let mut row = serde_json::Map::new();
    row.insert("messages".into(), json!(messages(r)));
    metadata(r, &mut row);
    Value::Object(row)
}

pub fn prompt_completion_row(r: &Record) -> Value {
    let mut row = serde_json::Map::new();
    row.insert(
        "prompt".into(),
        json!(prompt_text(&r.instruction, &r.input)),
    );
    row.insert("completion".into(), json!(r.output));
    metadata(r, &mut row);
    Value::Object(row)
}

/// A general-domain row as an `sft-messages` row (metadata null).
pub fn general_row(id: String, messages: &[Message]) -> Value {
    let mut row = serde_json::Map::new();
    row.insert("messages".into(), json!(messages));
    for f in metadata_fields() {
        row.insert(f.name().clone(), Value::Null);
    }
    row.insert("id".into(), json!(id));
    row.insert("source".into(), json!(SOURCE_GENERAL));
    Value::Object(row)
}

/// The `messages` of every row of a JSONL or Parquet file (other fields are ignored).
pub fn read_mix(path: &Path) -> anyhow::Result<Vec<Vec<Message>>> {
    if !path.is_file() {
        bail!("{}: no such file", path.display());
    }
    let rows: Vec<Value> = if path.extension().is_some_and(|x| x == "parquet") {
        super::write::read_parquet_rows(path)?
    } else {
        crate::sink::read_jsonl(path, false)?
    };
    rows.into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            serde_json::from_value::<Vec<Message>>(v["messages"].take()).with_context(|| {
                format!(
                    "{} row {}: needs `messages`, a list of {{role, content}}",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

/// How general rows were drawn into train.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MixReport {
    pub file: String,
    pub ratio: f64,
    pub available: usize,
    pub mixed: usize,
    pub train_rows: usize,
    /// More rows were wanted than the file has: every row is used, some more than once.
    pub with_replacement: bool,
}

/// Interleave general rows into `train` so they are `ratio` of the final train rows
/// (rounded to the nearest row): a seeded sample without replacement when the file has
/// enough rows, else every row as often as it fits plus a seeded sample of the rest; then
/// the whole split is shuffled with the seed.
pub fn mix(
    train: &mut Vec<Value>,
    general: &[Vec<Message>],
    ratio: f64,
    seed: u64,
) -> (usize, bool) {
    let n = train.len();
    let want = (n as f64 * ratio / (1.0 - ratio)).round() as usize;
    if general.is_empty() || want == 0 {
        return (0, false);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6d69_785f_726f_7773);
    let with_replacement = want > general.len();
    let mut picks: Vec<usize> = Vec::with_capacity(want);
    for _ in 0..want / general.len() {
        picks.extend(0..general.len());
    }
    let idx: Vec<usize> = (0..general.len()).collect();
    picks.extend(idx.choose_multiple(&mut rng, want % general.len()).copied());
    for (k, i) in picks.into_iter().enumerate() {
        train.push(general_row(format!("general-{i:06}-{k:06}"), &general[i]));
    }
    train.shuffle(&mut rng);
    (want, with_replacement)
}
