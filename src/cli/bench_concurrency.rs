//! `mediflow bench concurrency`: how close the adaptive controller gets to a server's best
//! throughput, measured in one run on the same work: the first `--items` items of the
//! config's plan, through the whole pipeline, every time.
//!
//! 1. a plain fixed-concurrency sweep: for each level, those items run to the end with
//!    exactly that many requests in flight (at most), and their completion tokens are
//!    divided by the run's wall time. The sweep goes up the levels until one falls below
//!    `--stop-below` of the best so far (the server is past its knee); such a run is
//!    stopped once a third of its items are done and it is clearly that far below;
//! 2. mediflow's adaptive run on the same items, with no concurrency set by hand,
//!    measured the same way (its ramp-up and exploring included).
//!
//! Every run goes to the same requests in the same order, so the points differ by their
//! concurrency, not by their work. Before each run the server is left to go idle and, on
//! llama.cpp started with `--slot-save-path`, its slots' prompt caches are erased, so no
//! run profits from an earlier one's cache. It prints the adaptive tokens/s as a fraction
//! of the best sweep point. `scripts/bench-llama-server.sh` runs it against llama.cpp's
//! `llama-server`.

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
    /// Fixed concurrency levels of the sweep, in the order run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,4,8,16,32,64,128,256"
    )]
    pub levels: Vec<usize>,
    /// Stop the sweep at the first level above the best so far whose tokens/s are below
    /// this fraction of the best (0: run every level).
    #[arg(long, default_value_t = 0.75)]
    pub stop_below: f64,
    /// Items of every run (the first N of the plan).
    #[arg(long, default_value_t = 60)]
    pub items: usize,
    /// Scratch directory for the runs' outputs (default: a temporary directory, removed
    /// afterwards).
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// What one run of the bench's items measured.
struct Figures {
    seconds: f64,
    tokens: u64,
    calls: u64,
    items_done: u64,
    prompt_tokens: u64,
    cached_prompt_tokens: u64,
    slots_erased_before: usize,
    /// Stopped before its end: clearly below the best sweep point so far.
    cut_short: bool,
    controller: Option<Value>,
}

impl Figures {
    fn tokens_per_sec(&self) -> f64 {
        self.tokens as f64 / self.seconds.max(1e-9)
    }

    fn json(&self, concurrency: Value) -> Value {
        json!({
            "concurrency": concurrency,
            "seconds": self.seconds,
            "completion_tokens": self.tokens,
            "tokens_per_sec": self.tokens_per_sec(),
            "calls": self.calls,
            "items_done": self.items_done,
            "prompt_tokens": self.prompt_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens,
            "slots_erased_before": self.slots_erased_before,
            "cut_short": self.cut_short,
        })
    }
}

/// One run of the bench's items, `fixed` concurrency or adaptive (`None`), timed from its
/// start (config loaded, server reachable) to its end. With `cut_below`, a run whose tokens/s after a third
/// of its items are under that is stopped there: it is past the knee, and running it to
/// the end would only take long.
async fn run_items(
    a: &ConcurrencyBench,
    fixed: Option<usize>,
    out: PathBuf,
    mode: Mode,
    cut_below: Option<f64>,
) -> Result<Figures, Error> {
    let mut ov = a.config.overrides();
    ov.concurrency = fixed;
    let l = check::load(&a.config.config, &ov)?;
    let slots_erased_before = reset_server(&l.cfg.teacher.base_urls).await;
    let teacher = build_teacher(&l.cfg.teacher).await?;
    probe(&*teacher).await?;
    let sh = Arc::new(Shared::new(l.cfg, l.tax, l.schemas, l.prompts, teacher));
    let c = sh.progress.clone();
    let opts = RunOptions {
        out_dir: out,
        limit: Some(a.items),
        shard: None,
        mode,
    };
    let plan = l.plan;
    let started = Instant::now();
    let run = tokio::spawn(async move { engine::run(sh, &plan, opts).await });
    let mut cut_short = false;
    while !run.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let tps = c.tokens.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        let third = c.done.load(Ordering::Relaxed) as usize * 3 >= a.items;
        if third && cut_below.is_some_and(|t| tps < t) {
            run.abort();
            cut_short = true;
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let controller = match run.await {
        Ok(summary) => summary?.stats.concurrency.get("teacher").cloned(),
        Err(e) if e.is_cancelled() => None,
        Err(e) => return Err(anyhow::Error::from(e).into()),
    };
    let n = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
    Ok(Figures {
        seconds,
        tokens: n(&c.tokens),
        calls: n(&c.calls),
        items_done: n(&c.done),
        prompt_tokens: n(&c.prompt_tokens),
        cached_prompt_tokens: n(&c.cached_tokens),
        slots_erased_before,
        cut_short,
        controller,
    })
}

/// Let the servers go idle, then erase their slots' prompt caches where they allow it
/// (llama.cpp with `--slot-save-path`); returns how many slots were erased.
async fn reset_server(urls: &[String]) -> usize {
    wait_idle(urls).await;
    let client = reqwest::Client::new();
    let mut erased = 0;
    for base in urls {
        let root = server_root(base);
        let slots: Value = match client.get(format!("{root}/slots")).send().await {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
            _ => continue,
        };
        for id in slots
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["id"].as_u64())
        {
            let url = format!("{root}/slots/{id}?action=erase");
            if client
                .post(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                erased += 1;
            }
        }
    }
    erased
}

/// A base URL without its `/v1`: where llama.cpp serves `/slots` and `/metrics`.
fn server_root(base: &str) -> String {
    base.trim_end_matches('/')
        .trim_end_matches("/v1")
        .to_string()
}

/// Wait (up to ten minutes) until the teacher servers report nothing running or waiting
/// (llama.cpp `/slots`, or Prometheus `/metrics`); servers that report neither get a
/// fixed pause.
async fn wait_idle(urls: &[String]) {
    let client = reqwest::Client::new();
    for base in urls {
        let root = server_root(base);
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
    let mut sweep: Vec<Value> = Vec::new();
    // (level, tokens/s) of the best sweep point so far.
    let mut best: Option<(usize, f64)> = None;
    let cut = |best: Option<(usize, f64)>| {
        best.map(|b| b.1 * a.stop_below)
            .filter(|_| a.stop_below > 0.0)
    };
    for &level in &a.levels {
        let out = scratch.join(format!("sweep-{level}"));
        let f = run_items(&a, Some(level), out, Mode::Quiet, cut(best)).await?;
        // On stderr even with --json: a long bench shows where it is.
        eprintln!(
            "sweep: {level:>4} in flight: {:>8.1} tokens/s  ({} tokens in {:.0}s, {} calls, {} items{})",
            f.tokens_per_sec(),
            f.tokens,
            f.seconds,
            f.calls,
            f.items_done,
            if f.cut_short { "; stopped early" } else { "" }
        );
        sweep.push(f.json(json!(level)));
        let past_knee =
            best.is_some_and(|b| b.0 < level && f.tokens_per_sec() < b.1 * a.stop_below);
        if best.is_none_or(|b| f.tokens_per_sec() > b.1) {
            best = Some((level, f.tokens_per_sec()));
        }
        if past_knee {
            eprintln!(
                "sweep: {level} in flight is under {:.0}% of the best so far: past the knee, stopping",
                a.stop_below * 100.0
            );
            break;
        }
    }
    let (best_level, best_tps) = best.unwrap_or((0, 0.0));

    // The adaptive run: the config's own settings, no concurrency given.
    let mode = if a.json { Mode::Quiet } else { Mode::Lines };
    let f = run_items(&a, None, scratch.join("adaptive"), mode, None).await?;
    let fraction = f.tokens_per_sec() / best_tps.max(1e-9);
    let mut adaptive = f.json(json!("adaptive"));
    adaptive["fraction_of_best"] = json!(fraction);
    adaptive["controller"] = json!(f.controller);
    if a.scratch.is_none() {
        let _ = std::fs::remove_dir_all(&own_scratch);
    }
    let report = json!({
        "items": a.items,
        "sweep": sweep,
        "best_sweep_point": { "concurrency": best_level, "tokens_per_sec": best_tps },
        "adaptive": adaptive,
    });
    if a.json {
        super::print_json(&report);
        return Ok(());
    }
    let limits: Vec<String> = f
        .controller
        .as_ref()
        .and_then(|c| c["endpoints"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|e| format!("{} (final limit {})", e["base_url"], e["limit"]))
        .collect();
    println!("best fixed concurrency: {best_level} in flight, {best_tps:.1} tokens/s");
    println!(
        "adaptive ({} items, {:.0}s; {}): {:.1} tokens/s = {:.1}% of the best sweep point",
        a.items,
        f.seconds,
        limits.join(", "),
        f.tokens_per_sec(),
        100.0 * fraction
    );
    Ok(())
}
