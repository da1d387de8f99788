//! `mediflow audit`: the quality gate over existing rows (see `mediflow::audit`), and with
//! `--calibrate` the judge measured against labelled rows. This file only resolves the
//! settings (a run config, or defaults plus a judge server) and prints the outcome.

use super::run::{build_teacher, probe};
use clap::Args;
use mediflow::audit::{self, gate::Gate, Options, Summary};
use mediflow::config::{Overrides, RunConfig};
use mediflow::error::{Error, Problem};
use mediflow::quality::calibration::{Calibration, MEAN};
use mediflow::quality::judge::DIMENSIONS;
use std::path::PathBuf;

#[derive(Args)]
pub struct AuditArgs {
    /// Rows to audit (repeat for several): JSONL or Parquet files of Record columns or chat
    /// `messages` rows, or run directories (their data/*.jsonl).
    #[arg(long = "in", required = true, value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Where verdicts.jsonl, summary.json, stats.json (and calibration.json) go.
    #[arg(long)]
    pub out: PathBuf,
    /// A run config: its filters, dedup, taxonomy/templates/schemas and, with
    /// `[judge] enabled = true`, its judge (default: the defaults, and no judge).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The judge's OpenAI-compatible server (repeat for several); naming one turns the judge
    /// on, with `--config`'s `[judge]` settings or the defaults.
    #[arg(long = "teacher-url")]
    pub teacher_url: Vec<String>,
    /// The judge's model (overrides `teacher.model`; needed with --teacher-url alone).
    #[arg(long)]
    pub model: Option<String>,
    /// Judge samples per row (overrides `[judge] samples`).
    #[arg(long)]
    pub judge_samples: Option<u32>,
    /// Judge every row and measure the judge against the rows' `label` (good / junk):
    /// writes calibration.json.
    #[arg(long)]
    pub calibrate: bool,
    /// Only the first N rows (over all inputs in order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// No progress lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print summary.json to stdout.
    #[arg(long)]
    pub json: bool,
}

/// The settings without a config file: the defaults, and the judge server if given.
fn default_config(a: &AuditArgs) -> Result<RunConfig, Error> {
    if !a.teacher_url.is_empty() && a.model.is_none() {
        return Err(Error::Input(vec![Problem::new(
            "--teacher-url",
            "needs --model (the judge's model name on that server)",
        )]));
    }
    let v = serde_json::json!({
        "name": "audit", "items": 1,
        "teacher": { "kind": "openai", "base_urls": a.teacher_url, "model": a.model.clone().unwrap_or_default() },
    });
    Ok(serde_json::from_value(v).map_err(anyhow::Error::from)?)
}

/// The run config for this audit, with the judge switched on and set as asked.
fn resolve(a: &AuditArgs) -> Result<RunConfig, Error> {
    let mut cfg = match &a.config {
        Some(p) => RunConfig::load(
            p,
            &Overrides {
                teacher_urls: a.teacher_url.clone(),
                model: a.model.clone(),
                ..Default::default()
            },
        )?,
        None => default_config(a)?,
    };
    if !a.teacher_url.is_empty() {
        // The server named is the judge's, whatever teachers the config names.
        cfg.judge.enabled = true;
        cfg.judge.teacher = None;
    }
    if let Some(n) = a.judge_samples {
        cfg.judge.samples = n;
        cfg.judge.min_valid = None;
    }
    if cfg.judge.enabled {
        let file = a.config.clone().unwrap_or_else(|| "--teacher-url".into());
        let mut problems: Vec<Problem> = cfg
            .judge
            .validate()
            .into_iter()
            .map(|m| Problem::new(&file, m))
            .collect();
        let t = cfg.judge.teacher.as_ref().unwrap_or(&cfg.teacher);
        problems.extend(
            t.validate()
                .into_iter()
                .map(|m| Problem::new(&file, format!("judge teacher: {m}"))),
        );
        if !problems.is_empty() {
            return Err(Error::Input(problems));
        }
    }
    Ok(cfg)
}

pub async fn exec(a: AuditArgs) -> Result<(), Error> {
    let cfg = resolve(&a)?;
    let teacher = match cfg.judge.enabled {
        true => {
            let t = build_teacher(cfg.judge.teacher.as_ref().unwrap_or(&cfg.teacher)).await?;
            probe(&*t).await?;
            Some(t)
        }
        false => None,
    };
    let gate = Gate::load(cfg, teacher)?;
    // The judge's calibration figure, or why its scores do not select.
    if let Some(s) = gate.selection() {
        eprintln!("{}", s.message());
    }
    let opts = Options {
        inputs: a.inputs.clone(),
        out: a.out.clone(),
        calibrate: a.calibrate,
        limit: a.limit,
        progress: !a.quiet,
    };
    let sum = audit::audit(&gate, &opts).await?;
    if a.json {
        super::print_json(&sum);
    } else {
        print_summary(&sum, &a);
    }
    Ok(())
}

fn print_summary(s: &Summary, a: &AuditArgs) {
    println!(
        "audit: {} rows, {} accepted, {} rejected ({:.1}s)",
        s.rows, s.accepted, s.rejected, s.seconds
    );
    let mut reasons: Vec<(&String, &u64)> = s.by_reason.iter().collect();
    reasons.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
    if !reasons.is_empty() {
        let top: Vec<String> = reasons
            .iter()
            .take(8)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        println!("reasons: {}", top.join(", "));
    }
    for c in &s.skipped_checks {
        println!("note: {c}");
    }
    for (l, c) in &s.labels {
        println!(
            "label {l}: {} rows, {} accepted, {} rejected",
            c.rows, c.accepted, c.rejected
        );
    }
    if a.calibrate {
        let path = a.out.join(audit::CALIBRATION);
        if let Ok(cal) = Calibration::load(&path) {
            println!(
                "calibration: {} on {} rows ({} good, {} junk; {} without a verdict), judge {} with {}",
                cal.verdict, cal.n, cal.n_good, cal.n_junk, cal.n_unscored, cal.judge_model, cal.template
            );
            for d in DIMENSIONS.iter().chain([&MEAN]) {
                if let Some(x) = cal.dimensions.get(*d) {
                    println!(
                        "  {d:<11} AUC {:.3}  threshold {:.2}  accuracy {:.3}  (good kept {:.2}, junk rejected {:.2})",
                        x.auc, x.threshold, x.accuracy, x.good_kept, x.junk_rejected
                    );
                }
            }
        }
    }
    println!("output: {}", a.out.display());
}
