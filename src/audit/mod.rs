//! `mediflow audit`: the quality gate `run` applies, run over rows that exist already
//! (ours or anyone's): the same filters and grounding (`quality::filters`), the same judge
//! stage (`engine::worker::judge_with`) when a teacher is given, and the same duplicate
//! removal (in input order, against the rows accepted before). One code path, two feeders:
//! the engine feeds it generated records, `read` feeds it rows from files.
//!
//! Writes `verdicts.jsonl` (one line per input row, in input order), `summary.json`,
//! `stats.json` (the engine's `Stats`) and, with `calibrate`, `calibration.json`: every
//! labelled row is judged (gate or not) and `quality::calibration` measures how well the
//! scores separate `good` from `junk`. Every input row is read once before anything is
//! written, so an unreadable row stops the audit with its file and line and no output.
//! Sits between `cli` and `export` (it reads `export::sft`'s chat layout).

pub mod gate;
pub mod read;

use crate::engine::stats::Stats;
use crate::error::{Error, Problem};
use crate::quality::calibration::{self, Calibration, RULE};
use crate::quality::dedup::{record_text, Dedup};
use crate::quality::filters::Drop;
use crate::record::{Record, Rejection};
use crate::util::seed_from;
use anyhow::Context;
use futures::StreamExt;
use gate::Gate;
use read::{Row, Rows};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const VERDICTS: &str = "verdicts.jsonl";
pub const SUMMARY: &str = "summary.json";
pub const CALIBRATION: &str = "calibration.json";

/// The labels of a calibration set.
pub const GOOD: &str = "good";
pub const JUNK: &str = "junk";

/// Most row problems listed before the audit stops.
const MAX_PROBLEMS: usize = 20;

pub struct Options {
    /// JSONL / Parquet files, or run directories (their `data/*.jsonl`).
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    /// Judge every row and measure the judge against the rows' `label`s.
    pub calibrate: bool,
    /// Only the first N rows (over all inputs in order).
    pub limit: Option<usize>,
    /// A progress line on stderr every 10 s.
    pub progress: bool,
}

/// One line of `verdicts.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// 0-based, over all inputs in order.
    pub row: u64,
    pub id: Option<String>,
    pub accepted: bool,
    /// Reason codes: the filters' (every one that drops), then the judge's, then dedup's.
    pub reasons: Vec<String>,
    /// One per reason: `filter: detail`, `judge: detail`, `dedup: duplicate of ID`.
    pub details: Vec<String>,
    pub quality: Option<f64>,
    pub alignment: Option<f64>,
    pub coherence: Option<f64>,
    pub realism: Option<f64>,
    pub difficulty: Option<f64>,
    pub judge_samples: u32,
    pub judge_spread: Option<f64>,
    pub judge_rationale: Option<String>,
    pub task_type: String,
    /// What was inferred or is unknown about the row (see `read` and `gate`).
    pub notes: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub file: String,
    pub line: usize,
}

/// `summary.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Every reason of every rejected row (a row with two reasons counts in both).
    pub by_reason: BTreeMap<String, u64>,
    pub by_task: BTreeMap<String, TaskCounts>,
    pub notes: BTreeMap<String, u64>,
    /// Which checks the notes mean were skipped (only when a row has such a note).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_checks: Vec<String>,
    pub filters: Vec<String>,
    pub judge: Option<Value>,
    /// Gate outcome per label, when rows carry `label`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, TaskCounts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Value>,
    pub inputs: Vec<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskCounts {
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
}

/// Pass 1: read every row; the problems (up to `MAX_PROBLEMS`) or the row count.
fn check_inputs(files: &[PathBuf], opts: &Options) -> Result<u64, Error> {
    let mut problems = Vec::new();
    let (mut n, mut labels) = (0u64, [0u64; 2]);
    for r in Rows::new(files.to_vec()).take(opts.limit.unwrap_or(usize::MAX)) {
        match r {
            Err(p) => problems.push(p),
            Ok(row) if opts.calibrate => match row.label.as_deref() {
                Some(GOOD) => labels[0] += 1,
                Some(JUNK) => labels[1] += 1,
                other => problems.push(problem_at(
                    &row,
                    format!("--calibrate needs `label` \"good\" or \"junk\", got {other:?}"),
                )),
            },
            Ok(_) => {}
        }
        n += 1;
        if problems.len() >= MAX_PROBLEMS {
            break;
        }
    }
    if opts.calibrate && problems.is_empty() && (labels[0] == 0 || labels[1] == 0) {
        problems.push(Problem::new(
            &files[0],
            format!(
                "--calibrate needs rows of both labels, got {} good and {} junk",
                labels[0], labels[1]
            ),
        ));
    }
    match problems.is_empty() {
        true => Ok(n),
        false => Err(Error::Input(problems)),
    }
}

fn problem_at(row: &Row, msg: String) -> Problem {
    if row.file.extension().is_some_and(|x| x == "parquet") {
        Problem::new(&*row.file, format!("row {}: {msg}", row.line))
    } else {
        Problem::at(&*row.file, Some(row.line), msg)
    }
}

/// A row after the filters and the judge (before dedup, which goes in input order).
struct Gated {
    index: u64,
    row: Row,
    drops: Vec<Drop>,
    judged: Option<Result<Record, Rejection>>,
}

async fn gate_row(gate: &Gate, calibrate: bool, index: u64, mut row: Row) -> Gated {
    let rec = &mut row.record;
    rec.id = row.id.clone().unwrap_or_else(|| format!("row-{index}"));
    // Reproducible judge samples for rows without a request seed of their own.
    if rec.request_seed.is_none() && gate.cfg().teacher.send_seed {
        rec.request_seed = Some(seed_from(&record_text(rec)) & 0x7fff_ffff);
    }
    row.notes.extend(gate.unknowns(rec));
    let drops = gate.filters(rec);
    let judged = match drops.is_empty() || calibrate {
        true => gate.judge(rec.clone()).await,
        false => None,
    };
    Gated {
        index,
        row,
        drops,
        judged,
    }
}

/// Audit the inputs through `gate` into `opts.out`.
pub async fn audit(gate: &Gate, opts: &Options) -> Result<Summary, Error> {
    let t0 = Instant::now();
    if opts.calibrate && gate.shared().is_none() {
        return Err(Error::Input(vec![Problem::new(
            &opts.out,
            "--calibrate needs a judge: --config with `[judge] enabled = true`, or --teacher-url and --model",
        )]));
    }
    let files = read::expand(&opts.inputs).map_err(|p| Error::Input(vec![p]))?;
    let total = check_inputs(&files, opts)?;
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| Error::io(format!("creating {}", opts.out.display()), e))?;
    let vpath = opts.out.join(VERDICTS);
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&vpath)
            .map_err(|e| Error::io(format!("creating {}", vpath.display()), e))?,
    );

    let cfg = gate.cfg();
    let active = cfg.filters.active();
    let mut stats = Stats::new(total, &active);
    let mut dedup = Dedup::new(&cfg.dedup);
    let mut sum = Summary {
        filters: active.iter().map(|(f, _)| f.to_string()).collect(),
        inputs: files.iter().map(|f| f.display().to_string()).collect(),
        ..Default::default()
    };
    let mut scored: Vec<(bool, [f64; 5])> = Vec::new();
    let (mut judged, mut unscored) = (0u64, 0u64);
    let in_flight = gate
        .shared()
        .map_or(1, |sh| 2 * sh.requests.available_permits().max(1));
    let rows = Rows::new(files.clone()).take(opts.limit.unwrap_or(usize::MAX));
    let mut gated = futures::stream::iter(rows.enumerate())
        .map(|(i, r)| async move {
            let row = r.map_err(|p| Error::Input(vec![p]))?;
            Ok::<_, Error>(gate_row(gate, opts.calibrate, i as u64, row).await)
        })
        .buffered(in_flight);
    let mut last = Instant::now();
    while let Some(g) = gated.next().await {
        let g = g?;
        let (v, rec, stage) = decide(g, &mut dedup);
        if rec.judge_samples > 0 {
            judged += 1;
        } else if v.reasons.iter().any(|r| r == "judge_failed") {
            unscored += 1;
        }
        if let (Some(label), Some(s)) = (&v.label, scores(&rec)) {
            scored.push((label == GOOD, s));
        }
        tally(&mut sum, &v);
        match &stage {
            None => stats.add_record(&rec),
            Some(stage) => stats.add_reject(&Rejection {
                id: rec.id.clone(),
                stage: stage.to_string(),
                reason: v.reasons[0].clone(),
                detail: v.details[0].clone(),
                record: rec,
            }),
        }
        serde_json::to_writer(&mut out, &v).map_err(anyhow::Error::from)?;
        out.write_all(b"\n")
            .map_err(|e| Error::io(format!("writing {}", vpath.display()), e))?;
        if opts.progress && last.elapsed() > Duration::from_secs(10) {
            last = Instant::now();
            eprintln!(
                "audit: {} of {total} rows, {} accepted",
                sum.rows, sum.accepted
            );
        }
    }
    out.flush()
        .map_err(|e| Error::io(format!("writing {}", vpath.display()), e))?;

    let selection = gate.selection();
    stats.judge.selection = selection.map(|s| s.report());
    if let Some(sh) = gate.shared() {
        sum.judge = Some(json!({
            "model": sh.judge_model(), "backend": sh.teacher.backend(),
            "template": gate.judge_template(), "samples": cfg.judge.samples,
            "judged": judged, "failed": unscored,
            "selection": selection.map(|s| s.report()),
        }));
    }
    if sum.notes.keys().any(|n| n.starts_with("task_type")) {
        sum.skipped_checks.push(
            "rows whose task_type is missing or not in the taxonomy skip the task-specific checks \
             (schema, instruction, json_content, grounding)"
                .into(),
        );
    }
    if sum.notes.contains_key(gate::UNKNOWN_DOCUMENT) {
        sum.skipped_checks.push(
            "rows whose input_data is not in the taxonomy skip the document length check".into(),
        );
    }
    sum.seconds = t0.elapsed().as_secs_f64();
    if opts.calibrate {
        let sh = gate.shared().expect("checked above");
        let (dimensions, verdict) = calibration::measure(&scored).map_err(|m| {
            Error::Other(anyhow::anyhow!(
                "{m} ({unscored} labelled rows got no judge verdict)"
            ))
        })?;
        let cal = Calibration {
            judge_model: sh.judge_model(),
            judge_backend: sh.teacher.backend().to_string(),
            template: gate.judge_template().unwrap_or_default(),
            samples: cfg.judge.samples,
            n: scored.len(),
            n_good: scored.iter().filter(|s| s.0).count(),
            n_junk: scored.iter().filter(|s| !s.0).count(),
            n_unscored: unscored as usize,
            dimensions,
            verdict,
            rule: RULE.to_string(),
            inputs: sum.inputs.clone(),
            created_at: chrono::Utc::now().to_rfc3339(),
        };
        sum.calibration = Some(json!({
            "verdict": cal.verdict, "auc_mean": cal.mean().map(|m| m.auc),
            "file": opts.out.join(CALIBRATION),
        }));
        write_json(&opts.out.join(CALIBRATION), &cal)?;
    }
    write_json(&opts.out.join(SUMMARY), &sum)?;
    write_json(&opts.out.join(crate::engine::manifest::STATS), &stats)?;
    Ok(sum)
}

fn scores(r: &Record) -> Option<[f64; 5]> {
    match (r.quality, r.alignment, r.coherence, r.realism, r.difficulty) {
        (Some(q), Some(a), Some(c), Some(re), Some(d)) if r.judge_samples > 0 => {
            Some([q, a, c, re, d])
        }
        _ => None,
    }
}

/// The verdict of a gated row, its record (with any judge scores), and the stage of its
/// first reason (None: accepted). Accepted rows go into the dedup index.
fn decide(g: Gated, dedup: &mut Dedup) -> (Verdict, Record, Option<&'static str>) {
    let mut reasons: Vec<String> = Vec::new();
    let mut details: Vec<String> = Vec::new();
    let mut stage = None;
    for d in &g.drops {
        reasons.push(d.reason.to_string());
        details.push(format!("{}: {}", d.filter, d.detail));
        stage.get_or_insert("filter");
    }
    let rec = match g.judged {
        None => g.row.record,
        Some(Ok(rec)) => rec,
        Some(Err(j)) => {
            reasons.push(j.reason);
            details.push(format!("judge: {}", j.detail));
            stage.get_or_insert("judge");
            j.record
        }
    };
    if reasons.is_empty() {
        if let Err(d) = dedup.check_insert(&rec.id, &record_text(&rec)) {
            reasons.push(d.reason.to_string());
            details.push(format!("dedup: duplicate of {}", d.of));
            stage = Some("dedup");
        }
    }
    let v = Verdict {
        row: g.index,
        id: g.row.id,
        accepted: reasons.is_empty(),
        reasons,
        details,
        quality: rec.quality,
        alignment: rec.alignment,
        coherence: rec.coherence,
        realism: rec.realism,
        difficulty: rec.difficulty,
        judge_samples: rec.judge_samples,
        judge_spread: rec.judge_spread,
        judge_rationale: rec.judge_rationale.clone(),
        task_type: rec.task_type.clone(),
        notes: g.row.notes,
        label: g.row.label,
        file: g.row.file.display().to_string(),
        line: g.row.line,
    };
    (v, rec, stage)
}

fn tally(sum: &mut Summary, v: &Verdict) {
    let count = |c: &mut TaskCounts| {
        c.rows += 1;
        match v.accepted {
            true => c.accepted += 1,
            false => c.rejected += 1,
        }
    };
    count(sum.by_task.entry(v.task_type.clone()).or_default());
    if let Some(l) = &v.label {
        count(sum.labels.entry(l.clone()).or_default());
    }
    sum.rows += 1;
    match v.accepted {
        true => sum.accepted += 1,
        false => sum.rejected += 1,
    }
    for r in &v.reasons {
        *sum.by_reason.entry(r.clone()).or_default() += 1;
    }
    for n in &v.notes {
        *sum.notes.entry(n.to_string()).or_default() += 1;
    }
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<(), Error> {
    let bytes = serde_json::to_vec_pretty(v).context("serializing")?;
    std::fs::write(path, bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
