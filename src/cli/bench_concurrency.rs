//! `mediflow bench concurrency`: how close the adaptive controller gets to a server's best
//! throughput, measured in one run on the same work (the config's plan, through the whole
//! pipeline):
//!
//! 1. a plain fixed-concurrency sweep: for each level, a run with exactly that many
//!    requests in flight, measured in steady state (completion tokens/s between the end
//!    of a warm-up and the end of the measuring time, then stopped);
//! 2. mediflow's adaptive run over `--items` items with no concurrency set by hand,
//!    measured over the whole run (start to last item, ramp-up and tail included) and
//!    over its first 90% of items (without the tail where the work runs dry).
//!
//! It prints the adaptive tokens/s as a fraction of the best sweep point.
//! `scripts/bench-llama-server.sh` runs it against llama.cpp's `llama-server`.

use super::run::{build_teacher, probe};
use super::ConfigArgs;
use crate::check;
use crate::engine::{self, progress::Mode, RunOptions, Shared};
use crate::error::Error;
use crate::teacher::signals;
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ConcurrencyBench {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Fixed concurrency levels of the sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    pub levels: Vec<usize>,
    /// Warm-up before each sweep point is measured, in seconds (and at least until the
    /// first wave of requests is back).
    #[arg(long, default_value_t = 10.0)]
    pub warmup_secs: f64,
    /// Measuring time of each sweep point, in seconds (and at least until 2 x the level
    /// of calls have completed).
    #[arg(long, default_value_t = 30.0)]
    pub point_secs: f64,
    /// Items of the adaptive run (the first N of the plan).
    #[arg(long, default_value_t = 200)]
    pub items: usize,
    /// Scratch directory for the runs' outputs (default: a temporary directory, removed
    /// afterwards).
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// A shared config loaded once; each run gets its own teacher and output directory.
async fn shared(a: &ConcurrencyBench, fixed: Option<usize>) -> Result<Arc<Shared>, Error> {
    let mut ov = a.config.overrides();
    ov.concurrency = fixed;
    let l = check::load(&a.config.config, &ov)?;
    let teacher = build_teacher(&l.cfg.teacher).await?;
    probe(&*teacher).await?;
    Ok(Arc::new(Shared::new(
        l.cfg, l.tax, l.schemas, l.prompts, teacher,
    )))
}

/// Steady-state figures of a run at a fixed concurrency, stopped after measuring.
async fn sweep_point(a: &ConcurrencyBench, level: usize, out: PathBuf) -> Result<Value, Error> {
    let sh = shared(a, Some(level)).await?;
    let plan = check::load(&a.config.config, &a.config.overrides())?.plan;
    let progress = sh.progress.clone();
    let run = tokio::spawn(async move {
        let opts = RunOptions {
            out_dir: out,
            limit: None,
            shard: None,
            mode: Mode::Quiet,
        };
        engine::run(sh, &plan, opts).await
    });
    let snapshot = || {
        (
            Instant::now(),
            progress.tokens.load(Ordering::Relaxed),
            progress.calls.load(Ordering::Relaxed),
        )
    };
    // Warm up for `warmup_secs` and at least until the first wave of `level` calls is
    // back; measure for `point_secs` and at least until 2 x `level` calls (8 at least)
    // have completed, so slow levels are not cut off mid-wave (capped at 10 x).
    let begun = Instant::now();
    let secs = |x: f64| Duration::from_secs_f64(x);
    let cap = secs(a.point_secs * 10.0 + a.warmup_secs);
    while begun.elapsed() < secs(a.warmup_secs)
        || (progress.calls.load(Ordering::Relaxed) < level as u64 && begun.elapsed() < cap)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (t0, tok0, calls0) = snapshot();
    let need = (2 * level).max(8) as u64;
    while t0.elapsed() < secs(a.point_secs)
        || (progress.calls.load(Ordering::Relaxed) - calls0 < need && begun.elapsed() < cap)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (t1, tok1, calls1) = snapshot();
    let finished_early = run.is_finished();
    if finished_early {
        // Out of work (the point is still valid) or failed (it is not).
        run.await.map_err(anyhow::Error::from)??;
    } else {
        run.abort();
        let _ = run.await;
    }
    // Requests the aborted run left on the server must not slow the next point down.
    wait_idle(&a.config).await;
    let secs = (t1 - t0).as_secs_f64();
    let calls_s = (calls1 - calls0) as f64 / secs;
    Ok(json!({
        "concurrency": level,
        "tokens_per_sec": (tok1 - tok0) as f64 / secs,
        "calls_per_sec": calls_s,
        // Little's law: requests in flight / completion rate.
        "mean_latency_secs": if calls_s > 0.0 { level as f64 / calls_s } else { f64::NAN },
        "ran_out_of_work": finished_early,
    }))
}

/// Wait (up to ten minutes) until the teacher servers report nothing running or waiting
/// (llama.cpp `/slots`, or Prometheus `/metrics`); servers that report neither get a
/// fixed pause.
async fn wait_idle(c: &ConfigArgs) {
    let urls = match check::load(&c.config, &c.overrides()) {
        Ok(l) => l.cfg.teacher.base_urls,
        Err(_) => return,
    };
    let client = reqwest::Client::new();
    for base in urls {
        let root = base
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let busy = match client.get(format!("{root}/slots")).send().await {
                Ok(r) if r.status().is_success() => {
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    v.as_array()
                        .map(|a| a.iter().any(|s| s["is_processing"] == true))
                }
                _ => None,
            };
            let busy = match busy {
                Some(b) => Some(b),
                None => match client.get(format!("{root}/metrics")).send().await {
                    Ok(r) if r.status().is_success() => {
                        signals::parse_metrics(&r.text().await.unwrap_or_default())
                            .map(|s| s.running.unwrap_or(0.0) + s.waiting.unwrap_or(0.0) > 0.0)
                    }
                    _ => None,
                },
            };
            match busy {
                Some(true) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Some(_) => break,
                None => {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    break;
                }
            }
        }
    }
}

pub async fn exec(a: ConcurrencyBench) -> Result<(), Error> {
    let own_scratch =
        std::env::temp_dir().join(format!("mediflow-bench-concurrency-{}", std::process::id()));
    let scratch = a.scratch.clone().unwrap_or_else(|| own_scratch.clone());
    let mut sweep = Vec::new();
    for &level in &a.levels {
        let p = sweep_point(&a, level, scratch.join(format!("sweep-{level}"))).await?;
        // On stderr even with --json: a long bench shows where it is.
        eprintln!(
            "sweep: {level:>4} in flight: {:>9.1} tokens/s  {:>6.2} calls/s  mean latency {:.2}s",
            p["tokens_per_sec"].as_f64().unwrap_or(0.0),
            p["calls_per_sec"].as_f64().unwrap_or(0.0),
            p["mean_latency_secs"].as_f64().unwrap_or(f64::NAN)
        );
        sweep.push(p);
    }
    let best = sweep
        .iter()
        .max_by(|x, y| {
            x["tokens_per_sec"]
                .as_f64()
                .unwrap_or(0.0)
                .total_cmp(&y["tokens_per_sec"].as_f64().unwrap_or(0.0))
        })
        .cloned()
        .unwrap_or(Value::Null);
    let best_tps = best["tokens_per_sec"].as_f64().unwrap_or(0.0);

    // The adaptive run: the config's own settings, no concurrency given.
    let sh = shared(&a, None).await?;
    let adaptive = sh.cfg.teacher.adaptive.clone();
    let plan = check::load(&a.config.config, &a.config.overrides())?.plan;
    let progress = sh.progress.clone();
    let items = a.items.min(plan.items.len());
    let started = Instant::now();
    let sampler = {
        let progress = progress.clone();
        tokio::spawn(async move {
            // (seconds, items done, completion tokens) every 100 ms.
            let mut v = Vec::new();
            loop {
                v.push((
                    started.elapsed().as_secs_f64(),
                    progress.done.load(Ordering::Relaxed),
                    progress.tokens.load(Ordering::Relaxed),
                ));
                if v.len() > 1 && progress.done.load(Ordering::Relaxed) as usize >= items {
                    return v;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let summary = engine::run(
        sh,
        &plan,
        RunOptions {
            out_dir: scratch.join("adaptive"),
            limit: Some(items),
            shard: None,
            mode: if a.json { Mode::Quiet } else { Mode::Lines },
        },
    )
    .await?;
    let samples = sampler.await.map_err(anyhow::Error::from)?;
    let whole_secs = summary.elapsed_secs;
    let whole_tps = progress.tokens.load(Ordering::Relaxed) as f64 / whole_secs;
    let cut = (items as f64 * 0.9).ceil() as u64;
    let (t90, _, tok90) = samples
        .iter()
        .find(|s| s.1 >= cut)
        .copied()
        .unwrap_or((whole_secs, 0, 0));
    let first90_tps = tok90 as f64 / t90.max(1e-9);
    let report = json!({
        "sweep": sweep,
        "best_sweep_point": best,
        "adaptive": {
            "settings": adaptive,
            "items": items,
            "seconds": whole_secs,
            "tokens_per_sec_whole_run": whole_tps,
            "tokens_per_sec_first_90pct_items": first90_tps,
            "fraction_of_best_whole_run": whole_tps / best_tps.max(1e-9),
            "fraction_of_best_first_90pct": first90_tps / best_tps.max(1e-9),
            "session_prompt_tokens": summary.session_prompt_tokens,
            "session_cached_prompt_tokens": summary.session_cached_prompt_tokens,
            "controller": summary.stats.concurrency.get("teacher"),
        },
    });
    if a.scratch.is_none() {
        let _ = std::fs::remove_dir_all(&own_scratch);
    }
    if a.json {
        super::print_json(&report);
    } else {
        let eps = summary.stats.concurrency.get("teacher");
        let limits: Vec<String> = eps
            .and_then(|c| c["endpoints"].as_array())
            .map(|v| {
                v.iter()
                    .map(|e| format!("{} (final limit {})", e["base_url"], e["limit"]))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "best fixed concurrency: {} in flight, {:.1} tokens/s",
            best["concurrency"], best_tps
        );
        println!(
            "adaptive ({} items, {:.0}s; {}): {:.1} tokens/s over the whole run = {:.1}% of the best sweep point; {:.1} tokens/s over the first 90% of items = {:.1}%",
            items,
            whole_secs,
            limits.join(", "),
            whole_tps,
            100.0 * whole_tps / best_tps.max(1e-9),
            first90_tps,
            100.0 * first90_tps / best_tps.max(1e-9)
        );
    }
    Ok(())
}
