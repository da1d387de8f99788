//! `mediflow export`: a run's records (or its DPO pairs) as a training dataset in the
//! Hugging Face datasets layout: stratified, decontaminated train / validation / test
//! splits as Parquet (`data/`) with JSONL twins (`jsonl/`) and a dataset card
//! (`README.md`); optionally general-domain rows mixed into train and a chat-template
//! check of the SFT examples. The reviewers' decisions, where there are any, are applied
//! first (`reviewed`).

pub mod card;
pub mod dpo;
pub mod reviewed;
pub mod sft;
pub mod splits;
pub mod template_check;
pub mod write;

use crate::engine::manifest;
use crate::error::{Error, Problem};
use crate::quality::dedup::record_text;
use crate::record::Record;
use crate::sink;
use arrow::datatypes::SchemaRef;
use serde_json::{json, Value};
use splits::{Decontaminate, Split, Unit};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `messages`: system (role + instruction), user (input), assistant (output).
    SftMessages,
    /// `prompt` (role + instruction + input) and `completion` (output).
    SftPromptCompletion,
    /// `prompt` / `chosen` / `rejected` from `<run>/dpo/*.jsonl`.
    Dpo,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::SftMessages => "sft-messages",
            Format::SftPromptCompletion => "sft-prompt-completion",
            Format::Dpo => "dpo",
        }
    }
}

/// General-domain rows to mix into train.
#[derive(Debug, Clone)]
pub struct Mix {
    pub file: PathBuf,
    /// Share of the final train rows, in [0, 1).
    pub ratio: f64,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub run: PathBuf,
    pub format: Format,
    /// Default `<run>/export/<format>`; must be absent or empty.
    pub out: Option<PathBuf>,
    /// train, validation, test.
    pub ratios: [f64; 3],
    pub seed: u64,
    pub decontaminate: Decontaminate,
    /// DPO only: message lists instead of strings.
    pub conversational: bool,
    pub mix: Option<Mix>,
    /// `Some(None)`: the embedded default model's template; `Some(Some(dir))`: a tokenizer
    /// directory.
    pub check_template: Option<Option<PathBuf>>,
    pub max_length: usize,
}

/// What an export did (printed as JSON by the CLI).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub format: &'static str,
    pub out: PathBuf,
    pub input: usize,
    pub splits: BTreeMap<&'static str, usize>,
    pub files: Vec<String>,
    pub decontamination: splits::DeconReport,
    pub mix: Option<sft::MixReport>,
    pub template_check: Option<template_check::Report>,
    /// The reviewers' decisions applied (absent: the run has no review journal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<reviewed::Counts>,
}

fn input_error(path: &Path, msg: impl Into<String>) -> Error {
    Error::Input(vec![Problem::new(path, msg)])
}

fn validate(o: &Options) -> Result<PathBuf, Error> {
    if !o.run.join(sink::DATA_DIR).is_dir() {
        return Err(input_error(
            &o.run,
            "not a mediflow run directory (no data/)",
        ));
    }
    if o.conversational && o.format != Format::Dpo {
        return Err(input_error(&o.run, "--conversational is for --format dpo"));
    }
    if let Some(m) = &o.mix {
        if o.format != Format::SftMessages {
            return Err(input_error(&m.file, "--mix is for --format sft-messages"));
        }
        if !(0.0..1.0).contains(&m.ratio) {
            return Err(input_error(&m.file, "--mix-ratio must be in [0, 1)"));
        }
    }
    if o.check_template.is_some() && o.format == Format::Dpo {
        return Err(input_error(
            &o.run,
            "--check-template is for the sft formats",
        ));
    }
    Ok(o.out
        .clone()
        .unwrap_or_else(|| o.run.join("export").join(o.format.name())))
}

fn records(run: &Path) -> anyhow::Result<Vec<Record>> {
    let mut v = Vec::new();
    for f in sink::shard_files(run)? {
        v.extend(sink::read_jsonl::<Record>(&f, false)?);
    }
    Ok(v)
}

/// What the splitter sees of every unit, and the rows of each unit.
struct Prepared {
    units: Vec<Unit>,
    rows: Vec<Vec<Value>>,
    /// Per unit: each row's taxonomy coverage.
    coverage: Vec<Vec<card::Coverage>>,
    items: Vec<Vec<template_check::Item>>,
    judge: Vec<card::JudgeMeans>,
    schema: SchemaRef,
    task_categories: Vec<&'static str>,
}

const DIMS: [&str; 5] = ["quality", "alignment", "coherence", "realism", "difficulty"];

/// Means of the dimensions over the scored entries.
fn means(label: &str, scored: impl Iterator<Item = [f64; 5]>) -> card::JudgeMeans {
    let mut sum = [0.0; 5];
    let mut n = 0;
    for s in scored {
        n += 1;
        for (a, b) in sum.iter_mut().zip(s) {
            *a += b;
        }
    }
    let m = DIMS
        .iter()
        .zip(sum)
        .map(|(d, s)| (d.to_string(), s / n.max(1) as f64))
        .collect();
    card::JudgeMeans {
        label: label.to_string(),
        judged: n,
        means: m,
    }
}

fn prepare_sft(recs: &[Record], format: Format) -> Prepared {
    let mut p = Prepared {
        units: Vec::with_capacity(recs.len()),
        rows: Vec::with_capacity(recs.len()),
        coverage: Vec::with_capacity(recs.len()),
        items: Vec::with_capacity(recs.len()),
        judge: Vec::new(),
        schema: match format {
            Format::SftMessages => sft::messages_schema(),
            _ => sft::prompt_completion_schema(),
        },
        task_categories: vec!["text-generation", "question-answering"],
    };
    for r in recs {
        p.units.push(Unit {
            id: r.id.clone(),
            cell: r.cell().key(),
            text: record_text(r),
        });
        p.rows.push(vec![match format {
            Format::SftMessages => sft::messages_row(r),
            _ => sft::prompt_completion_row(r),
        }]);
        p.coverage.push(vec![card::Coverage {
            task: r.task_type.clone(),
            format: r.output_format.clone(),
            difficulty: r.difficulty_level,
            family: r.document_family.clone(),
        }]);
        p.items.push(vec![template_check::Item {
            id: r.id.clone(),
            messages: sft::messages(r),
            instruction: r.instruction.clone(),
            input: r.input.clone(),
        }]);
    }
    let judged = recs.iter().filter(|r| r.judge_samples > 0).map(|r| {
        [r.quality, r.alignment, r.coherence, r.realism, r.difficulty].map(|v| v.unwrap_or(0.0))
    });
    p.judge.push(means("records", judged));
    p
}

fn prepare_dpo(pairs: &[crate::dpo::Pair], recs: &[Record], conversational: bool) -> Prepared {
    let family: HashMap<&str, &str> = recs
        .iter()
        .map(|r| (r.id.as_str(), r.document_family.as_str()))
        .collect();
    // One unit per source record: its pairs share the prompt, so they share a split.
    let mut groups: BTreeMap<&str, Vec<&crate::dpo::Pair>> = BTreeMap::new();
    for pr in pairs {
        groups.entry(&pr.record_id).or_default().push(pr);
    }
    let mut p = Prepared {
        units: Vec::new(),
        rows: Vec::new(),
        coverage: Vec::new(),
        items: Vec::new(),
        judge: Vec::new(),
        schema: dpo::schema(conversational),
        task_categories: vec!["text-generation"],
    };
    for (rid, prs) in groups {
        let first = prs[0];
        let cell = crate::plan::Cell {
            task: first.task_type.clone(),
            document: first.input_data.clone(),
            difficulty: first.difficulty_level,
            format: first.output_format.clone(),
        };
        p.units.push(Unit {
            id: rid.to_string(),
            cell: cell.key(),
            text: format!(
                "{}\n{}",
                crate::record::bare_instruction(&first.instruction),
                first.input
            ),
        });
        p.rows
            .push(prs.iter().map(|x| dpo::row(x, conversational)).collect());
        p.coverage.push(
            prs.iter()
                .map(|x| card::Coverage {
                    task: x.task_type.clone(),
                    format: x.output_format.clone(),
                    difficulty: x.difficulty_level,
                    family: family.get(rid).unwrap_or(&"unknown").to_string(),
                })
                .collect(),
        );
        p.items.push(Vec::new());
    }
    let arr =
        |s: &crate::dpo::Scores| [s.quality, s.alignment, s.coherence, s.realism, s.difficulty];
    p.judge.push(means(
        "chosen",
        pairs
            .iter()
            .filter_map(|x| x.chosen_scores.as_ref().map(arr)),
    ));
    p.judge.push(means(
        "rejected",
        pairs
            .iter()
            .filter_map(|x| x.rejected_scores.as_ref().map(arr)),
    ));
    p
}

pub fn export(o: &Options) -> Result<Summary, Error> {
    let out = validate(o)?;
    // Not while a run still writes the source; one export at a time into `out`, which
    // must be empty once it is ours (checked after locking, so two exports cannot both
    // find it empty).
    crate::dirlock::ensure_free(&o.run)?;
    let _lock = crate::dirlock::DirLock::acquire(&out, "export")?;
    if crate::dirlock::has_content(&out) {
        return Err(input_error(
            &out,
            "output directory exists and is not empty; choose another --out",
        ));
    }
    let general = match &o.mix {
        Some(m) => {
            Some(sft::read_mix(&m.file).map_err(|e| input_error(&m.file, format!("{e:#}")))?)
        }
        None => None,
    };
    let target = match &o.check_template {
        Some(dir) => Some(template_check::Target::load(dir.as_deref())?),
        None => None,
    };
    let recs = records(&o.run)?;
    let (recs, review) = reviewed::apply(&o.run, recs)?;
    let mut ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(input_error(
            &o.run,
            format!("record id {} occurs more than once", w[0]),
        ));
    }
    let p = match o.format {
        Format::Dpo => {
            let mut pairs = dpo::read_pairs(&o.run)?;
            if review.is_some() {
                // The pairs of records the reviewers rejected go with them.
                let kept: std::collections::HashSet<&str> =
                    recs.iter().map(|r| r.id.as_str()).collect();
                pairs.retain(|p| kept.contains(p.record_id.as_str()));
            }
            if pairs.is_empty() {
                return Err(input_error(
                    &o.run.join(crate::dpo::DPO_DIR),
                    "no DPO pairs (run `mediflow dpo` first)",
                ));
            }
            prepare_dpo(&pairs, &recs, o.conversational)
        }
        f => prepare_sft(&recs, f),
    };
    if p.units.is_empty() {
        return Err(input_error(
            &o.run,
            "the run has no accepted records to export",
        ));
    }
    let assigned = splits::assign(&p.units, o.ratios, o.seed);
    let (assigned, decon) = splits::decontaminate(&p.units, &assigned, o.decontaminate);

    let mut by_split: BTreeMap<Split, Vec<Value>> = BTreeMap::new();
    let mut coverage = Vec::new();
    let mut items = Vec::new();
    for (k, split) in assigned.iter().enumerate() {
        let Some(split) = split else { continue };
        by_split
            .entry(*split)
            .or_default()
            .extend(p.rows[k].iter().cloned());
        coverage.extend(p.coverage[k].iter().cloned());
        items.extend(p.items[k].iter().cloned());
    }
    // Mixing (sft-messages only, checked in validate).
    let mix = match (&o.mix, general) {
        (Some(m), Some(general)) => {
            let train = by_split.entry(Split::Train).or_default();
            let (mixed, with_replacement) = sft::mix(train, &general, m.ratio, o.seed);
            for row in train.iter().filter(|r| r["source"] == sft::SOURCE_GENERAL) {
                items.push(template_check::Item {
                    id: row["id"].as_str().unwrap_or_default().to_string(),
                    messages: serde_json::from_value(row["messages"].clone()).unwrap_or_default(),
                    instruction: String::new(),
                    input: String::new(),
                });
            }
            Some(sft::MixReport {
                file: m.file.display().to_string(),
                ratio: m.ratio,
                available: general.len(),
                mixed,
                train_rows: train.len(),
                with_replacement,
            })
        }
        _ => None,
    };

    for sub in ["data", "jsonl"] {
        let d = out.join(sub);
        std::fs::create_dir_all(&d)
            .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
    }
    let mut split_files = Vec::new();
    let mut counts = BTreeMap::new();
    for (split, rows) in &by_split {
        if rows.is_empty() {
            continue;
        }
        let files = write::write_split(&out, split.name(), &p.schema, rows)?;
        counts.insert(split.name(), rows.len());
        let bytes = files
            .iter()
            .map(|f| std::fs::metadata(out.join(f)).map_or(0, |m| m.len()))
            .sum();
        split_files.push(card::SplitFiles {
            name: split.name().to_string(),
            files,
            rows: rows.len(),
            bytes,
        });
    }
    let manifest = manifest::read(&o.run)?;
    let export_settings = json!({
        "format": o.format.name(),
        "splits": o.ratios,
        "seed": o.seed,
        "stratified_by": "taxonomy cell (task/document/difficulty/format)",
        "decontaminate": format!("{:?}", o.decontaminate).to_lowercase(),
        "decontamination": decon,
        "mix": mix,
    });
    let card = card::render(&card::CardInput {
        format: o.format.name(),
        schema: &p.schema,
        splits: &split_files,
        task_categories: &p.task_categories,
        coverage: &coverage,
        judge: &p.judge,
        manifest: manifest.as_ref(),
        export: &export_settings,
        review: review.as_ref(),
    })?;
    let readme = out.join("README.md");
    std::fs::write(&readme, card)
        .map_err(|e| Error::io(format!("writing {}", readme.display()), e))?;

    let template_check = target.map(|t| template_check::check(&t, &items, o.max_length));
    Ok(Summary {
        format: o.format.name(),
        out,
        input: p.rows.iter().map(Vec::len).sum(),
        splits: counts,
        files: split_files.into_iter().flat_map(|s| s.files).collect(),
        decontamination: decon,
        mix,
        template_check,
        review,
    })
}
