//! One streaming pass over a run directory (`rejects.jsonl`, `data/*.jsonl`, `dpo/*.jsonl`)
//! or an audit output (`verdicts.jsonl`): every chart's aggregate, the browser's sample,
//! and the judge's side of each reviewed record. Memory is bounded by the sample and the
//! number of cells, tasks and duplicate clusters, not by the number of records.

use super::sample::{Item, Outcome, Sampler};
use crate::engine::stats::Stats;
use crate::error::{Error, Problem};
use crate::quality::calibration::Calibration;
use crate::quality::judge::DIMENSIONS;
use crate::record::{Record, Rejection};
use crate::sink::{for_each_jsonl, jsonl_files, shard_files, REJECTS};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// What the report was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Run,
    Audit,
}

/// How many records the browser embeds, and the sample's seed.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub accepted: usize,
    pub rejected: usize,
    pub seed: u64,
}

/// Counts in bins of fixed width from `lo` (values outside go to the end bins).
#[derive(Debug, Clone)]
pub struct Bins {
    pub lo: f64,
    pub width: f64,
    pub counts: Vec<u64>,
}

impl Bins {
    pub fn new(lo: f64, hi: f64, width: f64) -> Bins {
        let n = ((hi - lo) / width).round() as usize + 1;
        Bins {
            lo,
            width,
            counts: vec![0; n],
        }
    }
    pub fn add(&mut self, v: f64) {
        let i = ((v - self.lo) / self.width).round().max(0.0) as usize;
        let last = self.counts.len() - 1;
        self.counts[i.min(last)] += 1;
    }
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Counts in power-of-two bins (bin k holds 2^(k-1) ..= 2^k - 1; bin 0 holds 0).
#[derive(Debug, Clone)]
pub struct Log2 {
    pub counts: [u64; 65],
}

impl Default for Log2 {
    fn default() -> Log2 {
        Log2 { counts: [0; 65] }
    }
}

impl Log2 {
    pub fn add(&mut self, v: u64) {
        self.counts[(64 - v.leading_zeros()) as usize] += 1;
    }
}

/// A kept record and the rejects that duplicate it.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub exact: u64,
    pub near: u64,
    /// The first few duplicates' ids and instructions.
    pub members: Vec<(String, String)>,
}

/// Margins of one strategy's preference pairs.
#[derive(Debug, Clone)]
pub struct Margins {
    pub pairs: u64,
    pub without: u64,
    pub bins: Bins,
    pub by_error: BTreeMap<String, u64>,
}

/// The judge's side of a reviewed record: its scores, and whether the gate kept it
/// (None: it stopped before the gate, at generation or validation).
#[derive(Debug, Clone, Default)]
pub struct JudgeSide {
    pub scores: Option<[f64; 5]>,
    pub accepted: Option<bool>,
}

pub struct Collected {
    pub kind: Kind,
    pub dir: PathBuf,
    /// `stats.json`, `manifest.json`, and an audit's `summary.json` as written.
    pub stats_file: Option<Value>,
    pub manifest: Option<Value>,
    pub summary: Option<Value>,
    pub calibration: Option<Calibration>,
    /// The engine's statistics rebuilt from the records read (a run); for an audit only
    /// its accepted and rejected counts, per task and reason (its stages are in `stats.json`).
    pub stats: Stats,
    /// Document type -> family, as the records name them.
    pub families: BTreeMap<String, String>,
    pub scores: Vec<Bins>,
    pub spread: Bins,
    pub prompt_tokens: Log2,
    pub completion_tokens: Log2,
    pub latency_ms: Log2,
    pub clusters: BTreeMap<String, Cluster>,
    pub margins: BTreeMap<String, Margins>,
    pub accepted_sample: Vec<Item>,
    pub rejected_sample: Vec<Item>,
    pub accepted_seen: u64,
    pub rejected_seen: u64,
    pub judged: HashMap<String, JudgeSide>,
}

/// The stages at which a reject is the gate's decision (the judge's side of kappa).
const GATE: [&str; 3] = ["filter", "judge", "dedup"];
/// Duplicate clusters whose members are listed.
const CLUSTER_MEMBERS: usize = 5;

fn read_json(p: &Path) -> Result<Option<Value>, Error> {
    match std::fs::read(p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Input(vec![Problem::at(p, Some(e.line()), e.to_string())])),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", p.display()), e)),
    }
}

/// A malformed line (`for_each_jsonl` names file and line) is bad input.
fn bad_line(path: &Path) -> impl Fn(anyhow::Error) -> Error + '_ {
    move |e| Error::Input(vec![Problem::new(path, format!("{e:#}"))])
}

pub fn scores_of(r: &Record) -> Option<[f64; 5]> {
    match (r.quality, r.alignment, r.coherence, r.realism, r.difficulty) {
        (Some(q), Some(a), Some(c), Some(re), Some(d)) if r.judge_samples > 0 => {
            Some([q, a, c, re, d])
        }
        _ => None,
    }
}

impl Collected {
    fn new(kind: Kind, dir: &Path) -> Collected {
        Collected {
            kind,
            dir: dir.to_path_buf(),
            stats_file: None,
            manifest: None,
            summary: None,
            calibration: None,
            stats: Stats::default(),
            families: BTreeMap::new(),
            scores: DIMENSIONS
                .iter()
                .map(|_| Bins::new(1.0, 5.0, 0.5))
                .collect(),
            spread: Bins::new(0.0, 4.0, 0.5),
            prompt_tokens: Log2::default(),
            completion_tokens: Log2::default(),
            latency_ms: Log2::default(),
            clusters: BTreeMap::new(),
            margins: BTreeMap::new(),
            accepted_sample: Vec::new(),
            rejected_sample: Vec::new(),
            accepted_seen: 0,
            rejected_seen: 0,
            judged: HashMap::new(),
        }
    }

    /// What every record adds to the charts (run records, with usage and document type).
    fn chart(&mut self, r: &Record) {
        if let Some(s) = scores_of(r) {
            for (b, v) in self.scores.iter_mut().zip(s) {
                b.add(v);
            }
            self.spread.add(r.judge_spread.unwrap_or(0.0));
        }
        if self.kind == Kind::Run {
            self.prompt_tokens.add(r.prompt_tokens);
            self.completion_tokens.add(r.completion_tokens);
            self.latency_ms.add(r.latency_ms);
            if !self.families.contains_key(&r.input_data) {
                self.families
                    .insert(r.input_data.clone(), r.document_family.clone());
            }
        }
    }
}

/// Read `dir` (a run or an audit output) in one pass.
pub fn collect(dir: &Path, limits: Limits, reviewed: &HashSet<String>) -> Result<Collected, Error> {
    let kind = if dir.join(crate::audit::VERDICTS).is_file() {
        Kind::Audit
    } else if ["manifest.json", REJECTS, "data"]
        .iter()
        .any(|f| dir.join(f).exists())
    {
        Kind::Run
    } else {
        return Err(Error::Input(vec![Problem::new(
            dir,
            "neither a run directory (manifest.json, data/*.jsonl, rejects.jsonl) nor an \
             audit output (verdicts.jsonl)",
        )]));
    };
    let mut c = Collected::new(kind, dir);
    c.stats_file = read_json(&dir.join(crate::engine::manifest::STATS))?;
    c.manifest = read_json(&dir.join(crate::engine::manifest::MANIFEST))?;
    c.summary = read_json(&dir.join(crate::audit::SUMMARY))?;
    c.calibration = calibration(dir, c.manifest.as_ref())?;
    let mut acc = Sampler::new(limits.accepted, limits.seed);
    let mut rej = Sampler::new(limits.rejected, limits.seed);
    match kind {
        Kind::Run => run(&mut c, &mut acc, &mut rej, reviewed)?,
        Kind::Audit => audit(&mut c, &mut acc, &mut rej, reviewed)?,
    }
    c.accepted_seen = acc.seen();
    c.rejected_seen = rej.seen();
    c.accepted_sample = acc.finish();
    c.rejected_sample = rej.finish();
    if kind == Kind::Audit {
        audited_texts([&mut c.accepted_sample, &mut c.rejected_sample]);
    }
    Ok(c)
}

/// `calibration.json` of an audit, or the one a run's judge was configured with.
fn calibration(dir: &Path, manifest: Option<&Value>) -> Result<Option<Calibration>, Error> {
    let own = dir.join(crate::audit::CALIBRATION);
    let path = match manifest.and_then(|m| m["config"]["judge"]["calibration"].as_str()) {
        _ if own.is_file() => own,
        Some(p) if Path::new(p).is_file() => PathBuf::from(p),
        _ => return Ok(None),
    };
    Calibration::load(&path)
        .map(Some)
        .map_err(|p| Error::Input(vec![p]))
}

fn run(
    c: &mut Collected,
    acc: &mut Sampler,
    rej: &mut Sampler,
    reviewed: &HashSet<String>,
) -> Result<(), Error> {
    let planned = c
        .stats_file
        .as_ref()
        .and_then(|s| s["planned"].as_u64())
        .unwrap_or(0);
    let mut stats = Stats::new(planned, &[]);
    let path = c.dir.join(REJECTS);
    for_each_jsonl::<Rejection>(&path, false, |j| {
        stats.add_reject(&j);
        c.chart(&j.record);
        if reviewed.contains(&j.id) {
            let side = JudgeSide {
                scores: scores_of(&j.record),
                accepted: GATE.contains(&j.stage.as_str()).then_some(false),
            };
            c.judged.insert(j.id.clone(), side);
        }
        if let (true, Some(of)) = (
            j.reason.ends_with("_duplicate"),
            j.detail.strip_prefix("duplicate of "),
        ) {
            let cl = c.clusters.entry(of.to_string()).or_default();
            match j.reason.as_str() {
                "exact_duplicate" => cl.exact += 1,
                _ => cl.near += 1,
            }
            if cl.members.len() < CLUSTER_MEMBERS {
                let text = crate::record::bare_instruction(&j.record.instruction);
                cl.members
                    .push((j.id.clone(), text.chars().take(160).collect()));
            }
        }
        let task = j.record.task_type.clone();
        let outcome = Outcome {
            stage: j.stage,
            reason: j.reason,
            detail: j.detail,
        };
        rej.offer(&j.id, &task, || Item::new(j.record, Some(outcome)));
        Ok(())
    })
    .map_err(bad_line(&path))?;
    let files = shard_files(&c.dir).map_err(Error::Other)?;
    for f in &files {
        for_each_jsonl::<Record>(f, false, |r| {
            stats.add_record(&r);
            c.chart(&r);
            if reviewed.contains(&r.id) {
                let side = JudgeSide {
                    scores: scores_of(&r),
                    accepted: Some(true),
                };
                c.judged.insert(r.id.clone(), side);
            }
            let (id, task) = (r.id.clone(), r.task_type.clone());
            acc.offer(&id, &task, || Item::new(r, None));
            Ok(())
        })
        .map_err(bad_line(f))?;
    }
    c.stats = stats;
    let dpo = jsonl_files(&c.dir.join(crate::dpo::DPO_DIR)).map_err(Error::Other)?;
    for f in &dpo {
        let strategy = f
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let m = c.margins.entry(strategy).or_insert_with(|| Margins {
            pairs: 0,
            without: 0,
            bins: Bins::new(-4.0, 4.0, 0.5),
            by_error: BTreeMap::new(),
        });
        for_each_jsonl::<crate::dpo::Pair>(f, false, |p| {
            m.pairs += 1;
            match p.margin {
                Some(v) => m.bins.add(v),
                None => m.without += 1,
            }
            if let Some(e) = p.error_type {
                *m.by_error.entry(e).or_default() += 1;
            }
            Ok(())
        })
        .map_err(bad_line(f))?;
    }
    Ok(())
}

/// One line of an audit's `verdicts.jsonl` (the fields the report shows).
#[derive(Deserialize)]
struct VerdictLine {
    row: u64,
    id: Option<String>,
    accepted: bool,
    reasons: Vec<String>,
    details: Vec<String>,
    quality: Option<f64>,
    alignment: Option<f64>,
    coherence: Option<f64>,
    realism: Option<f64>,
    difficulty: Option<f64>,
    judge_samples: u32,
    judge_spread: Option<f64>,
    judge_rationale: Option<String>,
    task_type: String,
    file: String,
    line: usize,
}

fn audit(
    c: &mut Collected,
    acc: &mut Sampler,
    rej: &mut Sampler,
    reviewed: &HashSet<String>,
) -> Result<(), Error> {
    // Counts per task and reason (the stages are in the audit's stats.json); verdicts
    // carry no usage, document type or text.
    let mut stats = Stats::default();
    let path = c.dir.join(crate::audit::VERDICTS);
    for_each_jsonl::<VerdictLine>(&path, false, |v| {
        let id = v.id.clone().unwrap_or_else(|| format!("row-{}", v.row));
        let record = Record {
            id: id.clone(),
            task_type: v.task_type,
            quality: v.quality,
            alignment: v.alignment,
            coherence: v.coherence,
            realism: v.realism,
            difficulty: v.difficulty,
            judge_samples: v.judge_samples,
            judge_spread: v.judge_spread,
            judge_rationale: v.judge_rationale,
            ..Record::default()
        };
        let source = (v.file, v.line);
        c.chart(&record);
        if reviewed.contains(&id) {
            let side = JudgeSide {
                scores: scores_of(&record),
                accepted: Some(v.accepted),
            };
            c.judged.insert(id.clone(), side);
        }
        let task = record.task_type.clone();
        match v.accepted {
            true => {
                stats.accepted += 1;
                *stats.accepted_by_task.entry(task.clone()).or_default() += 1;
                acc.offer(&id, &task, || Item::new(record, None).with_source(source))
            }
            false => {
                let outcome = Outcome {
                    stage: String::new(),
                    reason: v.reasons.join(", "),
                    detail: v.details.join("; "),
                };
                stats.rejected += 1;
                *stats
                    .rejected_by_reason
                    .entry(v.reasons.first().cloned().unwrap_or_default())
                    .or_default() += 1;
                rej.offer(&id, &task, || {
                    Item::new(record, Some(outcome)).with_source(source)
                })
            }
        }
        Ok(())
    })
    .map_err(bad_line(&path))?;
    c.stats = stats;
    Ok(())
}

/// Read the sampled audited rows' text back from the audit's inputs (`verdicts.jsonl`
/// keeps none), where those files are still readable; the others stay without text.
fn audited_texts(samples: [&mut Vec<Item>; 2]) {
    let mut wanted: HashMap<(String, usize), (usize, usize)> = HashMap::new();
    for (k, items) in samples.iter().enumerate() {
        for (i, it) in items.iter().enumerate() {
            if let Some(src) = &it.source {
                wanted.insert(src.clone(), (k, i));
            }
        }
    }
    let files: BTreeSet<&String> = wanted.keys().map(|(f, _)| f).collect();
    let files: Vec<PathBuf> = files
        .into_iter()
        .map(PathBuf::from)
        .filter(|f| f.is_file())
        .collect();
    for row in crate::audit::read::Rows::new(files).flatten() {
        let key = (row.file.display().to_string(), row.line);
        let Some(&(k, i)) = wanted.get(&key) else {
            continue;
        };
        let (it, r) = (&mut samples[k][i], row.record);
        it.record = Record {
            instruction: r.instruction,
            input: r.input,
            output: r.output,
            input_data: r.input_data,
            output_format: r.output_format,
            difficulty_level: r.difficulty_level,
            ..std::mem::take(&mut it.record)
        };
        it.prepare();
    }
}
