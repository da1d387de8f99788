//! `mediflow check` and `mediflow run`: the same pre-flight (inputs, then a teacher probe),
//! then generation with progress and a final summary.

use super::ConfigArgs;
use clap::Args;
use mediflow::check;
use mediflow::engine::{self, progress::Mode, RetryRejects, RunOptions, Shared, Summary};
use mediflow::error::Error;
use mediflow::shard::ShardSpec;
#[cfg(feature = "mock")]
use mediflow::teacher::mock;
use std::path::PathBuf;
use std::sync::Arc;

/// Building and probing the teacher: the library's pre-flight, shared by the commands.
pub(super) use mediflow::check::{build_teacher, probe};

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Skip the teacher probe (inputs only).
    #[arg(long)]
    pub no_probe: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Output directory (default: `<out_root>/<name>` from the config).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only the first N planned items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Process shard I of N (0-based) of the plan, in `<out>/shards/I-of-N`; combine the
    /// shards with `mediflow merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<ShardSpec>,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the final summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Start the built-in mock teacher on 127.0.0.1 and use it (a demo without a model).
    #[cfg(feature = "mock")]
    #[arg(long)]
    pub with_mock_teacher: bool,
    /// Which rejects an earlier attempt of this run left to try again: `transient` (the
    /// server failed: rate_limited, server_error, timeout, connection_error,
    /// bad_response), `all`, or `none`. The new outcome replaces the reject.
    #[arg(long, value_name = "WHICH", default_value = "transient")]
    pub retry_rejects: RetryRejects,
}

pub async fn check(a: CheckArgs) -> Result<(), Error> {
    let l = check::load(&a.config.config, &a.config.overrides())?;
    check::api_keys(&l.cfg, &a.config.config)?;
    let teacher_status = if a.no_probe {
        "not probed".to_string()
    } else {
        let teacher = build_teacher(&l.cfg.teacher).await?;
        let status = probe(&*teacher).await?;
        check::teacher_fits(&l.cfg, &a.config.config, &*teacher, None)?;
        status
    };
    let report = serde_json::json!({
        "config": a.config.config,
        "taxonomy": { "tasks": l.tax.tasks.len(), "documents": l.tax.documents.len(), "cells": l.tax.cell_count() },
        "plan_items": l.plan.items.len(),
        "teacher": teacher_status,
        "ok": true,
    });
    if a.json {
        super::print_json(&report);
    } else {
        println!(
            "ok: config, taxonomy ({} tasks x {} documents, {} cells), templates and schemas are valid; plan has {} items",
            l.tax.tasks.len(),
            l.tax.documents.len(),
            l.tax.cell_count(),
            l.plan.items.len()
        );
        println!("teacher: {teacher_status}");
    }
    Ok(())
}

pub async fn exec(a: RunArgs) -> Result<(), Error> {
    #[allow(unused_mut)]
    let mut ov = a.config.overrides();
    // The demo mock is started before loading so its URL replaces the configured ones.
    #[cfg(feature = "mock")]
    let _mock = if a.with_mock_teacher {
        let server = mock::start(([127, 0, 0, 1], 0).into(), mock::MockOptions::default())
            .await
            .map_err(|e| Error::io("starting the mock teacher", e))?;
        ov.teacher_urls = vec![server.base_url()];
        Some(server)
    } else {
        None
    };
    let l = check::load(&a.config.config, &ov)?;
    check::api_keys(&l.cfg, &a.config.config)?;
    let teacher = build_teacher(&l.cfg.teacher).await?;
    probe(&*teacher).await?;
    let judge_teacher = match &l.cfg.judge.teacher {
        Some(t) if l.cfg.judge.enabled => {
            let jt = build_teacher(t).await?;
            probe(&*jt).await?;
            Some(jt)
        }
        _ => None,
    };
    check::teacher_fits(
        &l.cfg,
        &a.config.config,
        &*teacher,
        judge_teacher.as_deref(),
    )?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| l.cfg.out_root.join(&l.cfg.name));
    let out = match a.shard {
        Some(spec) => spec.dir(&out),
        None => out,
    };
    let plan = l.plan;
    let mut sh = Shared::new(l.cfg, l.tax, l.schemas, l.prompts, teacher);
    if let Some(schema) = l.judge_schema {
        sh = sh.with_judge(judge_teacher, schema);
    }
    // The judge's calibration figure, or why its scores do not select (also in stats.json).
    if let Some(j) = &sh.judge {
        eprintln!("{}", j.selection.message());
    }
    let sh = Arc::new(sh);
    let summary = engine::run(
        sh,
        &plan,
        RunOptions {
            out_dir: out,
            limit: a.limit,
            shard: a.shard,
            mode: Mode::detect(a.quiet),
            retry_rejects: a.retry_rejects,
        },
    )
    .await?;
    if a.json {
        super::print_json(&summary);
    } else if !a.quiet {
        print_summary(&summary);
    }
    Ok(())
}

fn print_summary(s: &Summary) {
    println!(
        "done: {} accepted, {} rejected of {} items attempted ({} planned; yield {:.1}%){}",
        s.accepted,
        s.rejected,
        s.attempted,
        s.planned,
        100.0 * s.accepted as f64 / s.attempted.max(1) as f64,
        if s.resumed_from > 0 {
            format!(", {} resumed from an earlier attempt", s.resumed_from)
        } else {
            String::new()
        }
    );
    println!(
        "time: {:.1}s, {:.2} items/s, {:.0} completion tokens/s; teacher calls {} ({} repairs), tokens {} prompt + {} completion",
        s.elapsed_secs,
        s.items_per_sec,
        s.completion_tokens_per_sec,
        s.stats.teacher.calls,
        s.stats.teacher.repairs,
        s.stats.teacher.prompt_tokens,
        s.stats.teacher.completion_tokens
    );
    if s.session_cached_prompt_tokens > 0 {
        println!(
            "prefix cache: {} of {} prompt tokens this attempt ({:.1}%) were served from the server's cache",
            s.session_cached_prompt_tokens,
            s.session_prompt_tokens,
            100.0 * s.session_cached_prompt_tokens as f64 / s.session_prompt_tokens.max(1) as f64
        );
    }
    if s.rejected > 0 {
        println!(
            "rejected: {} transient (the server failed: {}; `run` again retries them), {} content (the teacher's output was not kept)",
            s.rejected_transient,
            mediflow::teacher::TRANSIENT_REASONS.join(", "),
            s.rejected_content
        );
    }
    if let Some(r) = s.stats.retried.as_ref().filter(|r| r.retried + r.kept > 0) {
        println!(
            "retried {} earlier reject(s) ({}): {} accepted, {} rejected again for a transient reason, {} for content{}",
            r.retried,
            r.mode,
            r.accepted,
            r.rejected_transient,
            r.rejected_content,
            if r.kept > 0 {
                format!("; {} kept (their cell had met its quota)", r.kept)
            } else {
                String::new()
            }
        );
    }
    let mut reasons: Vec<(&String, &u64)> = s.stats.rejected_by_reason.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    if !reasons.is_empty() {
        let top: Vec<String> = reasons
            .iter()
            .take(5)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        println!("top rejection reasons: {}", top.join(", "));
    }
    let j = &s.stats.judge;
    if j.judged > 0 {
        let means = |m: &std::collections::BTreeMap<String, f64>| -> String {
            let v: Vec<String> = m.iter().map(|(d, x)| format!("{d} {x:.2}")).collect();
            v.join(", ")
        };
        println!(
            "judge: {} judged, mean spread {:.2}; means over the judged: {}{}",
            j.judged,
            j.mean_spread,
            means(&j.mean_judged),
            if j.mean_accepted.is_empty() {
                String::new()
            } else {
                format!("; over the accepted: {}", means(&j.mean_accepted))
            }
        );
    }
    if !s.cells_short.is_empty() {
        println!("{} cell(s) short of their quota:", s.cells_short.len());
        for (cell, why) in s.cells_short.iter().take(10) {
            println!("  {cell}: {why}");
        }
    }
    println!("output: {}", s.out_dir.display());
}
