//! The audit's feeder: rows of JSONL or Parquet files (or of a run directory's `data/`
//! shards), one at a time, as Records. A row has our Record columns (`instruction`,
//! `input` and `output` required; `task_type`, `input_data`, `output_format`,
//! `difficulty_level` and the seed columns optional; others ignored) or is a chat row
//! (`messages`, as `export --format sft-messages` writes them, mapped back: the system
//! message less the role line is the instruction, the user message the document, the last
//! assistant message the answer). A row that cannot be read is a Problem naming the file
//! and the line (JSONL) or row (Parquet).

use crate::error::Problem;
use crate::export::sft::ROLE;
use crate::record::Record;
use crate::sink;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the reader inferred or could not know about a row (in its verdict's `notes`).
pub const NO_TASK_TYPE: &str = "task_type_missing";
pub const OUTPUT_FORMAT_INFERRED: &str = "output_format_inferred";
pub const NO_DIFFICULTY: &str = "difficulty_level_missing";
pub const NO_SYSTEM_MESSAGE: &str = "chat_without_system_message";
pub const MULTI_TURN: &str = "chat_multi_turn";

/// One row to audit.
#[derive(Debug, Clone)]
pub struct Row {
    pub file: Arc<Path>,
    /// 1-based: the line of a JSONL file, the row of a Parquet file.
    pub line: usize,
    /// The row's `id` column (a number is taken as its decimal text).
    pub id: Option<String>,
    /// The row's `label` column, where it is a string.
    pub label: Option<String>,
    pub record: Record,
    pub notes: Vec<&'static str>,
}

/// The files behind `--in` arguments: a file as it is, a run directory's JSONL shards.
pub fn expand(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, Problem> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let shards = sink::shard_files(p).map_err(|e| Problem::new(p, format!("{e:#}")))?;
            if shards.is_empty() {
                return Err(Problem::new(
                    p,
                    "a directory, but not a run with data/*.jsonl",
                ));
            }
            out.extend(shards);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(Problem::new(p, "no such file"));
        }
    }
    Ok(out)
}

fn is_parquet(p: &Path) -> bool {
    p.extension().is_some_and(|x| x == "parquet")
}

enum Source {
    Jsonl {
        lines: std::io::Lines<BufReader<File>>,
        line: usize,
    },
    Parquet {
        reader: ParquetRecordBatchReader,
        pending: VecDeque<Value>,
        row: usize,
    },
}

/// Every row of the files in order. Yields `Err` for a row (or a file) that cannot be
/// read; iteration may go on after it with the next row.
pub struct Rows {
    files: VecDeque<PathBuf>,
    current: Option<(Arc<Path>, Source)>,
}

impl Rows {
    pub fn new(files: Vec<PathBuf>) -> Rows {
        Rows {
            files: files.into(),
            current: None,
        }
    }

    fn open(path: &Path) -> Result<Source, Problem> {
        let file = File::open(path).map_err(|e| Problem::new(path, format!("cannot open: {e}")))?;
        if is_parquet(path) {
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .and_then(|b| b.build())
                .map_err(|e| Problem::new(path, format!("not a readable Parquet file: {e}")))?;
            Ok(Source::Parquet {
                reader,
                pending: VecDeque::new(),
                row: 0,
            })
        } else {
            Ok(Source::Jsonl {
                lines: BufReader::new(file).lines(),
                line: 0,
            })
        }
    }

    /// The next raw value of the current source: `None` at its end.
    fn next_value(path: &Path, src: &mut Source) -> Option<Result<(usize, Value), Problem>> {
        match src {
            Source::Jsonl { lines, line } => loop {
                *line += 1;
                let text = match lines.next()? {
                    Ok(t) => t,
                    Err(e) => {
                        return Some(Err(Problem::at(
                            path,
                            Some(*line),
                            format!("cannot read: {e}"),
                        )))
                    }
                };
                if text.trim().is_empty() {
                    continue;
                }
                return Some(
                    serde_json::from_str(&text)
                        .map(|v| (*line, v))
                        .map_err(|e| {
                            Problem::at(path, Some(*line), format!("not a JSON line: {e}"))
                        }),
                );
            },
            Source::Parquet {
                reader,
                pending,
                row,
            } => {
                while pending.is_empty() {
                    let batch = match reader.next()? {
                        Ok(b) => b,
                        Err(e) => {
                            return Some(Err(Problem::new(
                                path,
                                format!("row {}: unreadable Parquet data: {e}", *row + 1),
                            )))
                        }
                    };
                    match batch_rows(&batch) {
                        Ok(rows) => pending.extend(rows),
                        Err(e) => {
                            return Some(Err(Problem::new(
                                path,
                                format!("row {}: cannot convert Parquet rows: {e}", *row + 1),
                            )))
                        }
                    }
                }
                *row += 1;
                Some(Ok((*row, pending.pop_front().expect("not empty"))))
            }
        }
    }
}

/// A record batch as JSON objects (null columns left out).
fn batch_rows(batch: &arrow::record_batch::RecordBatch) -> anyhow::Result<Vec<Value>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(batch)?;
        w.finish()?;
    }
    buf.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| Ok(serde_json::from_slice(l)?))
        .collect()
}

impl Iterator for Rows {
    type Item = Result<Row, Problem>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let path = self.files.pop_front()?;
                match Rows::open(&path) {
                    Ok(src) => self.current = Some((Arc::from(path.as_path()), src)),
                    Err(p) => return Some(Err(p)),
                }
            }
            let (path, src) = self.current.as_mut().expect("open");
            match Rows::next_value(path, src) {
                None => self.current = None,
                Some(Err(p)) => {
                    // A Parquet file that fails once is not read further.
                    if matches!(src, Source::Parquet { .. }) {
                        self.current = None;
                    }
                    return Some(Err(p));
                }
                Some(Ok((line, v))) => {
                    let path = path.clone();
                    return Some(
                        to_row(v)
                            .map(|(id, label, record, notes)| Row {
                                file: path.clone(),
                                line,
                                id,
                                label,
                                record,
                                notes,
                            })
                            .map_err(|m| where_(&path, line, m)),
                    );
                }
            }
        }
    }
}

/// A problem at a row: `file:line: ...` for JSONL, `file: row N: ...` for Parquet.
fn where_(path: &Path, line: usize, msg: String) -> Problem {
    if is_parquet(path) {
        Problem::new(path, format!("row {line}: {msg}"))
    } else {
        Problem::at(path, Some(line), msg)
    }
}

/// The Record columns read from a row (the judge scores, provenance and counters are the
/// audit's own, so an input's are ignored).
const STRING_COLUMNS: [&str; 13] = [
    "task_type",
    "input_data",
    "output_format",
    "instruction",
    "input",
    "output",
    "document_family",
    "specialty",
    "age_band",
    "sex",
    "care_setting",
    "writing_style",
    "concept_code",
];
const REQUIRED: [&str; 3] = ["instruction", "input", "output"];

type Converted = (Option<String>, Option<String>, Record, Vec<&'static str>);

fn text<'v>(o: &'v Map<String, Value>, k: &str) -> Result<Option<&'v str>, String> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(format!("column `{k}` must be a string, got {v}")),
    }
}

/// One row's value as a Record (with its id, label and notes), or why it cannot be.
pub fn to_row(v: Value) -> Result<Converted, String> {
    let Value::Object(mut o) = v else {
        return Err("a row must be a JSON object".into());
    };
    let mut notes = Vec::new();
    if let Some(m) = o.remove("messages") {
        let (instruction, input, output) = chat(m, &mut notes)?;
        for (k, s) in [
            ("instruction", instruction),
            ("input", input),
            ("output", output),
        ] {
            o.insert(k.into(), Value::String(s));
        }
    }
    let mut rec = Record::default();
    for k in REQUIRED {
        if text(&o, k)?.is_none() {
            return Err(format!(
                "missing required column `{k}` (rows need instruction, input and output, or messages)"
            ));
        }
    }
    for k in STRING_COLUMNS {
        let Some(s) = text(&o, k)? else { continue };
        let s = s.to_string();
        match k {
            "task_type" => rec.task_type = s,
            "input_data" => rec.input_data = s,
            "output_format" => rec.output_format = s,
            "instruction" => rec.instruction = s,
            "input" => rec.input = s,
            "output" => rec.output = s,
            "document_family" => rec.document_family = s,
            "specialty" => rec.specialty = s,
            "age_band" => rec.age_band = s,
            "sex" => rec.sex = s,
            "care_setting" => rec.care_setting = s,
            "writing_style" => rec.writing_style = s,
            _ => rec.concept_code = s,
        }
    }
    if let Some(s) = text(&o, "concept_description")? {
        rec.concept_description = s.to_string();
    }
    if rec.task_type.trim().is_empty() {
        rec.task_type = "unknown".into();
        notes.push(NO_TASK_TYPE);
    }
    if rec.output_format.trim().is_empty() {
        rec.output_format = if parses_as_object(&rec.output) {
            "json"
        } else {
            "plain_text"
        }
        .into();
        notes.push(OUTPUT_FORMAT_INFERRED);
    }
    match o.get("difficulty_level") {
        None | Some(Value::Null) => notes.push(NO_DIFFICULTY),
        Some(v) => {
            rec.difficulty_level =
                v.as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| {
                        format!("column `difficulty_level` must be an integer 0-255, got {v}")
                    })?
        }
    }
    match o.get("request_seed") {
        None | Some(Value::Null) => {}
        Some(v) => {
            rec.request_seed = Some(v.as_u64().ok_or_else(|| {
                format!("column `request_seed` must be an unsigned integer, got {v}")
            })?)
        }
    }
    let id = match o.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()).filter(|s| !s.is_empty()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(v) => return Err(format!("column `id` must be a string or a number, got {v}")),
    };
    let label = o.get("label").and_then(Value::as_str).map(str::to_string);
    Ok((id, label, rec, notes))
}

/// A whole answer that is a JSON object (optionally in a code fence).
fn parses_as_object(output: &str) -> bool {
    let t = output.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|r| r.trim_end().strip_suffix("```"))
        .unwrap_or(t);
    serde_json::from_str::<Value>(t.trim()).is_ok_and(|v| v.is_object())
}

/// A chat row's (instruction, input, output): the inverse of `export::sft::messages`.
fn chat(m: Value, notes: &mut Vec<&'static str>) -> Result<(String, String, String), String> {
    let Value::Array(msgs) = m else {
        return Err("`messages` must be a list of {role, content}".into());
    };
    let mut turns = Vec::new();
    for (i, msg) in msgs.iter().enumerate() {
        let role = msg["role"].as_str();
        let content = msg["content"].as_str();
        let (Some(role), Some(content)) = (role, content) else {
            return Err(format!("`messages[{i}]` needs string `role` and `content`"));
        };
        turns.push((role, content));
    }
    let Some((&("assistant", answer), before)) = turns.split_last() else {
        return Err("`messages` must end with an assistant message (the answer)".into());
    };
    let system: Vec<&str> = before
        .iter()
        .filter(|t| t.0 == "system")
        .map(|t| t.1)
        .collect();
    let user: Vec<&str> = before
        .iter()
        .filter(|t| t.0 == "user")
        .map(|t| t.1)
        .collect();
    if user.is_empty() {
        return Err("`messages` has no user message".into());
    }
    if before.iter().any(|t| t.0 == "assistant") || user.len() > 1 {
        notes.push(MULTI_TURN);
    }
    let prefix = format!("{ROLE}\n\n");
    Ok(if system.is_empty() {
        // Someone else's layout: the user turn asks; there is no separate document.
        notes.push(NO_SYSTEM_MESSAGE);
        (user.join("\n\n"), String::new(), answer.to_string())
    } else {
        let system = system.join("\n\n");
        let instruction = system.strip_prefix(&prefix).unwrap_or(&system).to_string();
        (instruction, user.join("\n\n"), answer.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_rows_invert_the_sft_export() {
        let r = Record {
            instruction: "Summarize the note.".into(),
            input: "Patient seen today.".into(),
            output: "A visit.".into(),
            task_type: "summarization".into(),
            output_format: "plain_text".into(),
            ..Default::default()
        };
        let row = crate::export::sft::messages_row(&r);
        let (id, _, got, notes) = to_row(row).unwrap();
        assert_eq!(id, None, "an empty id is none");
        assert_eq!(
            (
                got.instruction.as_str(),
                got.input.as_str(),
                got.output.as_str()
            ),
            ("Summarize the note.", "Patient seen today.", "A visit.")
        );
        assert_eq!(got.task_type, "summarization");
        assert!(notes.is_empty(), "{notes:?}");
        // No system message: the user turn is the instruction.
        let (_, _, got, notes) = to_row(json!({"messages": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"}]}))
        .unwrap();
        assert_eq!(
            (got.instruction.as_str(), got.input.as_str()),
            ("What is 2+2?", "")
        );
        assert_eq!(got.task_type, "unknown");
        assert!(notes.contains(&NO_SYSTEM_MESSAGE) && notes.contains(&NO_TASK_TYPE));
        let e = to_row(json!({"messages": [{"role": "user", "content": "hi"}]})).unwrap_err();
        assert!(e.contains("assistant"), "{e}");
    }

    #[test]
    fn record_rows_tolerate_missing_optional_columns() {
        let (id, label, r, notes) = to_row(json!({"id": 7, "instruction": "i", "input": "d",
            "output": " {\"a\": 1} ", "label": "junk", "quality": 5, "extra": [1]}))
        .unwrap();
        assert_eq!((id.as_deref(), label.as_deref()), (Some("7"), Some("junk")));
        assert_eq!((r.output_format.as_str(), r.difficulty_level), ("json", 0));
        assert_eq!(r.quality, None, "input scores are not the audit's");
        assert_eq!(
            notes,
            vec![NO_TASK_TYPE, OUTPUT_FORMAT_INFERRED, NO_DIFFICULTY]
        );
        let (_, _, r, _) =
            to_row(json!({"instruction": "i", "input": "d", "output": "plain"})).unwrap();
        assert_eq!(r.output_format, "plain_text");
        let e = to_row(json!({"instruction": "i", "input": "d"})).unwrap_err();
        assert!(e.contains("`output`"), "{e}");
        let e = to_row(
            json!({"instruction": "i", "input": "d", "output": "o", "difficulty_level": "x"}),
        )
        .unwrap_err();
        assert!(e.contains("difficulty_level"), "{e}");
        assert!(to_row(json!([1])).is_err());
    }
}
