//! The dataset card (`README.md`): YAML front matter as the Hugging Face Hub reads it
//! (`configs`, `dataset_info.features` / `splits`, license, task categories) and a body
//! with taxonomy coverage, judge scores, generation settings and limits.

use anyhow::{bail, Result};
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The Hugging Face `dtype` of an Arrow primitive type.
fn dtype(t: &DataType) -> Result<&'static str> {
    Ok(match t {
        DataType::Utf8 | DataType::LargeUtf8 => "string",
        DataType::Boolean => "bool",
        DataType::UInt8 => "uint8",
        DataType::UInt16 => "uint16",
        DataType::UInt32 => "uint32",
        DataType::UInt64 => "uint64",
        DataType::Int8 => "int8",
        DataType::Int16 => "int16",
        DataType::Int32 => "int32",
        DataType::Int64 => "int64",
        DataType::Float32 => "float32",
        DataType::Float64 => "float64",
        other => bail!("no Hugging Face dtype for Arrow type {other}"),
    })
}

/// One feature: `{name, dtype}`, `{name, list: [...]}` / `{name, list: dtype}` or
/// `{name, struct: [...]}`.
fn feature(f: &Field) -> Result<Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(f.name()));
    let (k, v) = kind(f.data_type())?;
    m.insert(k.into(), v);
    Ok(Value::Object(m))
}

fn kind(t: &DataType) -> Result<(&'static str, Value)> {
    Ok(match t {
        DataType::List(item) | DataType::LargeList(item) => match item.data_type() {
            DataType::Struct(fields) => ("list", fields_value(fields.iter().map(|f| &**f))?),
            other => ("list", kind_value(other)?),
        },
        DataType::Struct(fields) => ("struct", fields_value(fields.iter().map(|f| &**f))?),
        other => ("dtype", json!(dtype(other)?)),
    })
}

/// A nested type's value as it appears under `list:` (a dtype string or a field list).
fn kind_value(t: &DataType) -> Result<Value> {
    match kind(t)? {
        ("dtype", v) => Ok(v),
        (k, v) => Ok(json!({ k: v })),
    }
}

fn fields_value<'a>(fields: impl Iterator<Item = &'a Field>) -> Result<Value> {
    Ok(Value::Array(fields.map(feature).collect::<Result<_>>()?))
}

/// `dataset_info.features` for an Arrow schema.
pub fn features(schema: &Schema) -> Result<Value> {
    fields_value(schema.fields().iter().map(|f| &**f))
}

/// Where one exported domain example sits in the taxonomy.
#[derive(Debug, Clone)]
pub struct Coverage {
    pub task: String,
    pub format: String,
    pub difficulty: u8,
    pub family: String,
}

/// Judge-score means over the judged examples of one kind (records, chosen, rejected).
#[derive(Debug, Clone)]
pub struct JudgeMeans {
    pub label: String,
    pub judged: usize,
    pub means: Vec<(String, f64)>,
}

/// What the card says besides the schema.
pub struct CardInput<'a> {
    pub format: &'a str,
    pub schema: &'a Schema,
    /// Split name, Parquet files (relative), rows.
    pub splits: &'a [SplitFiles],
    /// Task categories for the front matter.
    pub task_categories: &'a [&'a str],
    /// Every exported domain example.
    pub coverage: &'a [Coverage],
    pub judge: &'a [JudgeMeans],
    pub manifest: Option<&'a Value>,
    /// Export settings and counts (split ratios, seed, decontamination, mixing), as JSON.
    pub export: &'a Value,
    /// The reviewers' decisions applied (`None`: no review journal).
    pub review: Option<&'a super::reviewed::Counts>,
}

/// One split as written: its Parquet files (relative to the export root), rows and bytes.
pub struct SplitFiles {
    pub name: String,
    pub files: Vec<String>,
    pub rows: usize,
    pub bytes: u64,
}

fn count_table(out: &mut String, title: &str, counts: BTreeMap<String, usize>) {
    let _ = writeln!(out, "| {title} | examples |\n|---|---|");
    for (k, n) in counts {
        let _ = writeln!(out, "| {k} | {n} |");
    }
    out.push('\n');
}

/// The whole card: front matter and body.
pub fn render(c: &CardInput<'_>) -> Result<String> {
    let front = json!({
        "license": "other",
        "license_name": "TODO-choose-a-license",
        "language": ["en"],
        "task_categories": c.task_categories,
        "tags": ["medical", "clinical", "synthetic", "mediflow"],
        "pretty_name": format!("mediflow {} export", c.format),
        "size_categories": [size_category(c.splits.iter().map(|s| s.rows).sum())],
        "configs": [{
            "config_name": "default",
            "data_files": c.splits.iter()
                .map(|s| json!({"split": s.name, "path": s.files}))
                .collect::<Vec<_>>(),
        }],
        "dataset_info": {
            "features": features(c.schema)?,
            "splits": c.splits.iter()
                .map(|s| json!({"name": s.name, "num_bytes": s.bytes, "num_examples": s.rows}))
                .collect::<Vec<_>>(),
            "download_size": c.splits.iter().map(|s| s.bytes).sum::<u64>(),
        },
    });
    let mut s = format!("---\n{}---\n\n", serde_norway::to_string(&front)?);
    let _ = writeln!(
        s,
        "# mediflow synthetic clinical instructions ({})\n\nSynthetic clinical instruction \
         data generated by mediflow (MediFlow-style \
         taxonomy: task type x document type x difficulty x output format) and exported \
         with `mediflow export --format {}`.\n",
        c.format, c.format
    );
    s.push_str("## Splits\n\n| split | examples | files |\n|---|---|---|\n");
    for SplitFiles {
        name,
        files,
        rows: n,
        ..
    } in c.splits
    {
        let _ = writeln!(s, "| {name} | {n} | {} |", files.join(", "));
    }
    let _ = writeln!(
        s,
        "\nSplits are stratified by taxonomy cell and decontaminated (exact and near \
         duplicates of train held out of validation / test). Export settings:\n\n```json\n{}\n```\n",
        serde_json::to_string_pretty(c.export)?
    );
    s.push_str("## Taxonomy coverage\n\n");
    let count = |f: &dyn Fn(&Coverage) -> String| {
        let mut m = BTreeMap::new();
        for x in c.coverage {
            *m.entry(f(x)).or_insert(0) += 1;
        }
        m
    };
    count_table(&mut s, "task type", count(&|x| x.task.clone()));
    count_table(&mut s, "output format", count(&|x| x.format.clone()));
    count_table(&mut s, "difficulty", count(&|x| x.difficulty.to_string()));
    count_table(&mut s, "document family", count(&|x| x.family.clone()));
    s.push_str("## Judge scores\n\n");
    if c.judge.iter().all(|j| j.judged == 0) {
        s.push_str("No example was scored by an LLM judge.\n\n");
    } else {
        s.push_str("Means over the run's judged records / pairs (1-5 scale; medians of the judge's samples per example).\n\n| | judged | scores |\n|---|---|---|\n");
        for j in c.judge.iter().filter(|j| j.judged > 0) {
            let m: Vec<String> = j.means.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
            let _ = writeln!(s, "| {} | {} | {} |", j.label, j.judged, m.join(", "));
        }
        s.push('\n');
    }
    if let Some(r) = c.review {
        let _ = writeln!(
            s,
            "## Physician review\n\n{} reviewer(s) decided on {} of the run's records \
             (`review/decisions.jsonl`; any reviewer's reject drops a record, else the most \
             recent edit applies):\n\n| decision | records |\n|---|---|\n| reviewed | {} |\n\
             | accepted | {} |\n| edited | {} |\n| rejected (dropped) | {} |\n",
            r.reviewers, r.reviewed, r.reviewed, r.accepted, r.edited, r.rejected
        );
    }
    s.push_str("## Generation settings\n\n");
    match c.manifest {
        Some(m) => {
            let t = &m["config"]["teacher"];
            // Strings without quotes; numbers stored from f32 rounded back.
            let v = |x: &Value| match x {
                Value::String(s) => s.clone(),
                Value::Number(n) if n.is_f64() => {
                    format!("{}", (n.as_f64().unwrap_or(0.0) * 1e4).round() / 1e4)
                }
                Value::Null => "unknown".into(),
                other => other.to_string(),
            };
            let _ = writeln!(
                s,
                "- mediflow version: {}\n- teacher: {} ({}), temperature {}, top_p {}\n- \
                 run seed: {}\n- planned items: {}\n- counts: {}\n",
                v(&m["mediflow_version"]),
                v(&t["model"]),
                v(&m["teacher_backend"]),
                v(&t["temperature"]),
                v(&t["top_p"]),
                v(&m["config"]["seed"]),
                v(&m["config"]["items"]),
                v(&m["counts"]),
            );
        }
        None => s.push_str("The run directory has no `manifest.json`.\n\n"),
    }
    s.push_str(
        "## Limits\n\n\
         - Every document, instruction and answer is synthetic, written by a small teacher \
         model; it may be wrong, inconsistent or clinically implausible, and the filters and \
         judge catch only part of that.\n\
         - Small teachers (such as a 135M-parameter model) write short, repetitive text; judge \
         scores from a small judge are a weak signal.\n\
         - No real patient data went in; any resemblance to real people is coincidental.\n\
         - Not for clinical use: for research on training and evaluating models only.\n",
    );
    Ok(s)
}

fn size_category(n: usize) -> &'static str {
    match n {
        0..1_000 => "n<1K",
        1_000..10_000 => "1K<n<10K",
        10_000..100_000 => "10K<n<100K",
        100_000..1_000_000 => "100K<n<1M",
        _ => "1M<n<10M",
    }
}
