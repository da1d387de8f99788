//! Where a task's items come from: the `json` rows of one task type in a split of a
//! `mediflow export` directory, or the built-in ICD-10-CM concept questions.

use super::icd_mcq::Direction;
use super::icd_mcq::{self, LETTERS};
use crate::error::Problem;
use crate::export::sft;
use crate::taxonomy::IcdTable;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn d_split() -> String {
    "test".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSpec {
    /// The `json` rows of one task type in a split of a `mediflow export` directory
    /// (`--format sft-messages`). `dir` is relative to the task file; `--data` overrides.
    Export {
        #[serde(default)]
        dir: Option<PathBuf>,
        #[serde(default = "d_split")]
        split: String,
        task_type: String,
        #[serde(default)]
        limit: Option<usize>,
    },
    /// ICD-10-CM concept questions from the code table under `table`.
    Icd10cmMcq {
        direction: Direction,
        n: usize,
        #[serde(default)]
        seed: u64,
        table: PathBuf,
    },
}

pub fn table_at(
    dir: &Path,
    tables: &mut HashMap<PathBuf, Arc<IcdTable>>,
) -> Result<Arc<IcdTable>, Vec<Problem>> {
    if let Some(t) = tables.get(dir) {
        return Ok(t.clone());
    }
    let t = Arc::new(IcdTable::load(dir)?);
    tables.insert(dir.to_path_buf(), t.clone());
    Ok(t)
}

/// An item before rendering: template variables and the reference answer.
pub struct Row {
    pub id: String,
    pub vars: Value,
    pub options: Vec<String>,
    pub reference: Value,
}

/// The rows of the source of the task file at `path`.
pub fn rows(
    src: &SourceSpec,
    path: &Path,
    data: Option<&Path>,
    tables: &mut HashMap<PathBuf, Arc<IcdTable>>,
) -> Result<(Vec<Row>, usize), Vec<Problem>> {
    let base = path.parent().unwrap_or(Path::new("."));
    match src {
        SourceSpec::Icd10cmMcq {
            direction,
            n,
            seed,
            table,
        } => {
            if *n == 0 {
                return Err(vec![Problem::new(path, "`source.n` must be at least 1")]);
            }
            let t = table_at(&base.join(table), tables)?;
            let rows = icd_mcq::generate(&t, *direction, *n, *seed)
                .into_iter()
                .map(|q| Row {
                    vars: json!({
                        "question": q.question, "options": q.options, "letters": LETTERS,
                        "direction": direction,
                    }),
                    reference: json!({ "answer": LETTERS[q.gold] }),
                    id: q.id,
                    options: q.options,
                })
                .collect();
            Ok((rows, 0))
        }
        SourceSpec::Export {
            dir,
            split,
            task_type,
            limit,
        } => {
            let dir = match (data, dir) {
                (Some(d), _) => d.to_path_buf(),
                (None, Some(d)) => base.join(d),
                (None, None) => {
                    return Err(vec![Problem::new(
                        path,
                        format!(
                            "task on {task_type}: no export directory (give --data DIR or \
                             `source.dir`)"
                        ),
                    )])
                }
            };
            export_rows(&dir, split, task_type, *limit).map_err(|p| vec![p])
        }
    }
}

/// The `json` rows of `task_type` in `<dir>/jsonl/<split>-*.jsonl`.
fn export_rows(
    dir: &Path,
    split: &str,
    task_type: &str,
    limit: Option<usize>,
) -> Result<(Vec<Row>, usize), Problem> {
    let files: Vec<PathBuf> = crate::sink::jsonl_files(&dir.join("jsonl"))
        .map_err(|e| Problem::new(dir, format!("{e:#}")))?
        .into_iter()
        .filter(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{split}-")))
        })
        .collect();
    if files.is_empty() {
        return Err(Problem::new(
            dir,
            format!("no `{split}` split under jsonl/ (expected a `mediflow export` directory)"),
        ));
    }
    let mut rows = Vec::new();
    let mut skipped = 0;
    for f in files {
        let mut result = Ok(());
        crate::sink::for_each_jsonl(&f, false, |r: Value| {
            if r["task_type"] != task_type || r["output_format"] != "json" {
                return Ok(());
            }
            if limit.is_some_and(|l| rows.len() >= l) {
                return Ok(());
            }
            let Some(m) = r["messages"].as_array().filter(|m| m.len() == 3) else {
                result = Err(Problem::new(
                    &f,
                    "rows have no `messages` (system, user, assistant): export with \
                     --format sft-messages",
                ));
                return Ok(());
            };
            let text = |i: usize| m[i]["content"].as_str().unwrap_or("").to_string();
            let Some(reference) = serde_json::from_str::<Value>(&text(2))
                .ok()
                .filter(Value::is_object)
            else {
                skipped += 1;
                return Ok(());
            };
            let system = text(0);
            let instruction = system
                .strip_prefix(&format!("{}\n\n", sft::ROLE))
                .unwrap_or(&system)
                .to_string();
            rows.push(Row {
                id: r["id"].as_str().unwrap_or("").to_string(),
                vars: json!({
                    "system": system, "instruction": instruction, "input": text(1),
                    "task_type": r["task_type"], "input_data": r["input_data"],
                }),
                options: Vec::new(),
                reference,
            });
            Ok(())
        })
        .map_err(|e| Problem::new(&f, format!("{e:#}")))?;
        result?;
    }
    Ok((rows, skipped))
}
