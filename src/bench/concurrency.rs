//! `mediflow bench concurrency`: how close the adaptive controller gets to a server's best
//! throughput, measured in one run on the same work: the same job every time, a plan of
//! `--items` items (default: the config's plan cut to 4 x the highest level of
//! `--levels`), through the whole pipeline, from start to finish.
//!
//! 1. a plain fixed-concurrency sweep: for each level L, the job runs with exactly L
//!    requests in flight. Every run does the same work: a run over fewer items has a
//!    different mix of stages, retries and prompt lengths, so its rate is not comparable
//!    (16 in flight read 5.3 prompt tokens per generated token over its first 33 items,
//!    5.7 over 65, and made 36.2 against 33.3 tokens/s). Nor is a run stopped once N
//!    items are done: a fixed run opens twice its level of items at once and takes them
//!    through their stages nearly in step, so at its Nth item it has begun almost no
//!    other; an adaptive run starts with a smaller window and opens items as others
//!    finish, so at its Nth it has begun many more (against llama-server, 51 documents
//!    written against 32, each a long uncached prompt) and its rate stood for a
//!    different, prompt-heavier mix of work. The sweep goes up the levels until one
//!    falls below `--stop-below` of the best so far (past the knee);
//! 2. mediflow's adaptive run, with no concurrency set by hand, on the same items: its
//!    climb and all its exploring count;
//! 3. with `--confirm`, the best sweep level again: the best point is the highest of
//!    several noisy points, and the repeat shows how far one run of a level is from the
//!    next.
//!
//! With `--rounds R`, steps 1 and 2 run R times in turn, and a level's point and the
//! adaptive figure are the means of their R runs: on a flat curve, two runs of one level
//! on a busy CPU differed by 12%, more than the margin sought, and the highest point of
//! one sweep is the luckiest draw. Each round also compares its adaptive run with its own
//! run of the best level, close in time.
//!
//! Every run is measured from its start (ramp-up included for all alike) to its end, by
//! the server's own count of generated tokens (vLLM, SGLang, llama.cpp with `--metrics`;
//! see `teacher::signals`), sampled every second; a server without one is measured by the
//! completion tokens received. Before each run the server is left to go idle and, on
//! llama.cpp started with `--slot-save-path`, its slots' prompt caches are erased, so no
//! run profits from an earlier one's cache. It prints the adaptive rate as a fraction of
//! the best sweep point (and of the repeat). `scripts/bench-llama-server.sh` runs it
//! against llama.cpp's `llama-server`.

use super::{outln, Report};
use crate::check::{self, build_teacher, probe};
use crate::config::Overrides;
use crate::engine::{self, progress::Mode, RunOptions, Shared};
use crate::error::{Error, Problem};
use crate::teacher::signals;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run: the command's flags.
#[derive(Debug, Clone)]
pub struct ConcurrencyOptions {
    /// The run configuration (TOML).
    pub config: PathBuf,
    /// The command line's overrides of it: `items` is the job's size (None: 4 x the
    /// highest level); `concurrency` is set by the bench for each run.
    pub overrides: Overrides,
    /// Fixed concurrency levels of the sweep, in the order run.
    pub levels: Vec<usize>,
    /// Stop the sweep at the first level above the best so far whose rate is below this
    /// fraction of the best (0: run every level).
    pub stop_below: f64,
    /// Run the best sweep level again after the adaptive runs.
    pub confirm: bool,
    /// Run the sweep and the adaptive run this many times, in rounds.
    pub rounds: usize,
    /// Scratch directory for the runs' outputs (None: a temporary directory, removed
    /// afterwards).
    pub scratch: Option<PathBuf>,
    /// Show the adaptive run's progress lines on stderr (with one round only).
    pub progress: bool,
}

/// One sample of a run, taken every second.
#[derive(Clone, Copy)]
struct Sample {
    secs: f64,
    /// The servers' generated-token counts summed (None: some server has no counter).
    server: Option<f64>,
    /// Completion tokens of the answers received.
    client: u64,
    /// Teacher calls answered, calls that failed, and items done.
    calls: u64,
    retries: u64,
    done: u64,
    /// Requests running on the servers (None: some server does not say).
    running: Option<f64>,
}

/// What one run measured, from its first sample to its last.
struct Figures {
    measured_secs: f64,
    tokens: f64,
    /// "server counter" or "completions received".
    source: &'static str,
    /// Requests running on the servers, on average over the measurement.
    mean_running: Option<f64>,
    /// The rate over each 30 s of the measurement (how steady it was).
    per_30s: Vec<f64>,
    calls: u64,
    /// Teacher calls that failed: an error, or an answer-stage reply cut at the token
    /// cap (each counts, whether or not it was tried again).
    retries: u64,
    items_done: u64,
    /// Prompt tokens of the whole run, and those the server served from its cache.
    prompt_tokens: u64,
    cached_prompt_tokens: u64,
    slots_erased_before: usize,
    controller: Option<Value>,
}

impl Figures {
    /// The figures from the first sample to the last.
    fn from_samples(window: &[Sample]) -> Option<Figures> {
        let (a, b) = (*window.first()?, *window.last()?);
        let measured_secs = b.secs - a.secs;
        if measured_secs <= 0.0 {
            return None;
        }
        let by_server = window.iter().all(|s| s.server.is_some());
        let count = |s: &Sample| match s.server {
            Some(x) if by_server => x,
            _ => s.client as f64,
        };
        let (tokens, source) = if by_server {
            ((count(&b) - count(&a)).max(0.0), "server counter")
        } else {
            (count(&b) - count(&a), "completions received")
        };
        let mut per_30s = Vec::new();
        let mut from = a;
        for s in window {
            if s.secs - from.secs >= 30.0 {
                per_30s.push((count(s) - count(&from)) / (s.secs - from.secs));
                from = *s;
            }
        }
        // The first sample is taken as the run starts, before a request is out, and the
        // last once it has ended: the mean over the seconds between.
        let during = &window[1..window.len() - 1];
        let mean_running = during
            .iter()
            .map(|s| s.running)
            .sum::<Option<f64>>()
            .filter(|_| !during.is_empty())
            .map(|r| r / during.len() as f64);
        Some(Figures {
            measured_secs,
            tokens,
            source,
            mean_running,
            per_30s,
            calls: b.calls - a.calls,
            retries: b.retries - a.retries,
            items_done: b.done - a.done,
            prompt_tokens: 0,
            cached_prompt_tokens: 0,
            slots_erased_before: 0,
            controller: None,
        })
    }

    fn tokens_per_sec(&self) -> f64 {
        self.tokens / self.measured_secs
    }

    /// One line for the bench's progress on stderr.
    fn summary(&self) -> String {
        format!(
            "{:>8.1} tokens/s  ({:.0} tokens, {} items, {} calls, {} retries in {:.0}s by {}; {} running on the server on average; {} of {} prompt tokens cached)",
            self.tokens_per_sec(),
            self.tokens,
            self.items_done,
            self.calls,
            self.retries,
            self.measured_secs,
            self.source,
            self.mean_running.map_or("?".into(), |r| format!("{r:.1}")),
            self.cached_prompt_tokens,
            self.prompt_tokens,
        )
    }

    fn json(&self, concurrency: Value) -> Value {
        json!({
            "concurrency": concurrency,
            "measured_secs": self.measured_secs,
            "generated_tokens": self.tokens,
            "tokens_per_sec": self.tokens_per_sec(),
            "measured_by": self.source,
            "mean_running_on_server": self.mean_running,
            "tokens_per_sec_per_30s": self.per_30s,
            "calls": self.calls,
            "retries": self.retries,
            "items_done": self.items_done,
            "prompt_tokens": self.prompt_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens,
            "slots_erased_before": self.slots_erased_before,
        })
    }
}

/// The servers' generated tokens so far and requests running now, each summed over the
/// servers (None where one of them does not tell).
async fn server_counts(client: &reqwest::Client, roots: &[String]) -> (Option<f64>, Option<f64>) {
    let (mut tokens, mut running) = (Some(0.0), Some(0.0));
    for root in roots {
        let s = signals::fetch(client, root, None, true, true)
            .await
            .signals()
            .unwrap_or_default();
        tokens = tokens.zip(s.generated_tokens).map(|(a, b)| a + b);
        running = running.zip(s.running).map(|(a, b)| a + b);
    }
    (tokens, running)
}

/// One run of the job (the plan's first `items` items), at `fixed` concurrency or
/// adaptive (`None`), sampled every second and measured from its start to its end.
async fn run_for(
    a: &ConcurrencyOptions,
    fixed: Option<usize>,
    out: PathBuf,
    mode: Mode,
    items: u64,
) -> Result<Figures, Error> {
    let mut ov = a.overrides.clone();
    ov.concurrency = fixed;
    let l = check::load(&a.config, &ov)?;
    let urls = l.cfg.teacher.base_urls.clone();
    let roots: Vec<String> = urls.iter().map(|u| server_root(u)).collect();
    let slots_erased_before = reset_server(&urls).await;
    let teacher = build_teacher(&l.cfg.teacher).await?;
    probe(&*teacher).await?;
    let sh = Arc::new(Shared::new(l.cfg, l.tax, l.schemas, l.prompts, teacher));
    let (c, teacher) = (sh.progress.clone(), sh.clone());
    let opts = RunOptions {
        out_dir: out,
        limit: Some(items as usize),
        shard: None,
        mode,
        retry_rejects: Default::default(),
    };
    let plan = l.plan;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut run = tokio::spawn(async move { engine::run(sh, &plan, opts).await });
    let mut samples: Vec<Sample> = Vec::new();
    let mut next = started;
    // Set once the run has ended; the last sample is taken after that.
    let mut ended: Option<Result<Result<_, Error>, tokio::task::JoinError>> = None;
    loop {
        let (server, running) = server_counts(&client, &roots).await;
        samples.push(Sample {
            secs: started.elapsed().as_secs_f64(),
            server,
            client: c.tokens.load(Ordering::Relaxed),
            calls: c.calls.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            done: c.done.load(Ordering::Relaxed),
            running,
        });
        if let Some(r) = ended {
            r.map_err(anyhow::Error::from)??;
            break;
        }
        next += Duration::from_secs(1);
        ended = tokio::time::timeout_at(next.into(), &mut run).await.ok();
    }
    let controller = teacher.teacher.control_report();
    let done = samples.last().map_or(0, |s| s.done);
    if done < items {
        let why = format!("the plan ran out after {done} items: the bench needs {items}");
        return Err(Error::Input(vec![Problem::new(&a.config, why)]));
    }
    let mut f = Figures::from_samples(&samples).expect("a run of at least a second");
    f.prompt_tokens = c.prompt_tokens.load(Ordering::Relaxed);
    f.cached_prompt_tokens = c.cached_tokens.load(Ordering::Relaxed);
    f.slots_erased_before = slots_erased_before;
    f.controller = controller;
    Ok(f)
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

/// The sweep, the adaptive runs and the repeat; each run's figures go to stderr as it ends.
pub async fn run(a: ConcurrencyOptions) -> Result<Report, Error> {
    let own_scratch =
        std::env::temp_dir().join(format!("mediflow-bench-concurrency-{}", std::process::id()));
    let scratch = a.scratch.clone().unwrap_or_else(|| own_scratch.clone());
    // Every run (each sweep point, the repeat, the adaptive run) is the same job: the
    // plan of `--items` items (the shared override of `items`), or else the config's
    // plan cut to 4 x the highest level.
    let items = a.overrides.items.map_or_else(
        || 4 * a.levels.iter().copied().max().unwrap_or(1) as u64,
        |n| n as u64,
    );
    let rounds = a.rounds.max(1);
    // The levels run: the first round's sweep may stop past the knee; later rounds run
    // the levels it ran.
    let mut levels = a.levels.clone();
    let mut sweep: Vec<Run> = Vec::new();
    let mut adaptive: Vec<Figures> = Vec::new();
    for round in 0..rounds {
        // (level, tokens/s) of this round's best run so far.
        let mut best: Option<(usize, f64)> = None;
        let mut ran = levels.len();
        for (i, &level) in levels.iter().enumerate() {
            // One directory per run: a level given twice is run twice, not resumed.
            let out = scratch.join(format!("round-{round}/sweep-{i}-{level}"));
            let f = run_for(&a, Some(level), out, Mode::Quiet, items).await?;
            // On stderr even with --json: a long bench shows where it is.
            eprintln!(
                "{}sweep: {level:>4} in flight: {}",
                tag(round, rounds),
                f.summary()
            );
            let tps = f.tokens_per_sec();
            sweep.push(Run { round, level, f });
            let past_knee =
                a.stop_below > 0.0 && best.is_some_and(|b| b.0 < level && tps < b.1 * a.stop_below);
            if best.is_none_or(|b| tps > b.1) {
                best = Some((level, tps));
            }
            if past_knee && round == 0 {
                eprintln!(
                    "sweep: {level} in flight is under {:.0}% of the best so far: past the knee, stopping",
                    a.stop_below * 100.0
                );
                ran = i + 1;
                break;
            }
        }
        levels.truncate(ran);
        // The adaptive run: the config's own settings, no concurrency given.
        let mode = if !a.progress || rounds > 1 {
            Mode::Quiet
        } else {
            Mode::Lines
        };
        let out = scratch.join(format!("round-{round}/adaptive"));
        let f = run_for(&a, None, out, mode, items).await?;
        eprintln!("{}adaptive: {}", tag(round, rounds), f.summary());
        eprintln!(
            "{}adaptive: {}",
            tag(round, rounds),
            limit_path(f.controller.as_ref())
        );
        adaptive.push(f);
        // After every round, so that a bench cut short still has the result so far.
        let points = points(&sweep);
        let best = best_point(&points);
        let adaptive_tps = mean(adaptive.iter().map(Figures::tokens_per_sec));
        eprintln!(
            "{}adaptive: {adaptive_tps:.1} tokens/s{} = {:.1}% of the best sweep point: {} in flight, {:.1} tokens/s{}",
            tag(round, rounds),
            of_runs(round + 1),
            100.0 * adaptive_tps / best.mean.max(1e-9),
            best.level,
            best.mean,
            of_runs(best.runs),
        );
    }
    let points = points(&sweep);
    let best = best_point(&points);
    let (best_level, best_tps) = (best.level, best.mean);
    let adaptive_tps = mean(adaptive.iter().map(Figures::tokens_per_sec));
    let fraction = adaptive_tps / best_tps.max(1e-9);
    // Each round's adaptive run against that round's run of the best level: neighbours
    // in time, so a drift of the machine's speed between rounds cancels.
    let per_round: Vec<f64> = (0..rounds)
        .map(|r| {
            let level = mean(
                sweep
                    .iter()
                    .filter(|run| run.round == r && run.level == best_level)
                    .map(|run| run.f.tokens_per_sec()),
            );
            adaptive[r].tokens_per_sec() / level.max(1e-9)
        })
        .collect();
    // After the adaptive runs, so that a bench cut short during it still has the result.
    let confirmed = if a.confirm {
        let out = scratch.join("confirm");
        let c = run_for(&a, Some(best_level), out, Mode::Quiet, items).await?;
        eprintln!("repeat: {best_level:>4} in flight: {}", c.summary());
        Some(c)
    } else {
        None
    };
    let of_confirmed = confirmed
        .as_ref()
        .map(|c| adaptive_tps / c.tokens_per_sec().max(1e-9));
    if a.scratch.is_none() {
        let _ = std::fs::remove_dir_all(&own_scratch);
    }
    let report = json!({
        "items": items,
        "rounds": rounds,
        "sweep": sweep
            .iter()
            .map(|r| with_round(r.round, r.f.json(json!(r.level))))
            .collect::<Vec<_>>(),
        "levels": points.iter().map(|p| json!({
            "concurrency": p.level,
            "runs": p.runs,
            "tokens_per_sec": p.mean,
            "min_tokens_per_sec": p.min,
            "max_tokens_per_sec": p.max,
        })).collect::<Vec<_>>(),
        "best_sweep_point": {
            "concurrency": best_level,
            "tokens_per_sec": best_tps,
            "runs": best.runs,
        },
        "confirmed_best": confirmed.as_ref().map(|c| c.json(json!(best_level))),
        "adaptive": {
            "tokens_per_sec": adaptive_tps,
            "fraction_of_best": fraction,
            "fraction_of_best_per_round": per_round,
            "fraction_of_best_per_round_min": spread(&per_round).0,
            "fraction_of_best_per_round_max": spread(&per_round).1,
            "fraction_of_confirmed": of_confirmed,
            "runs": adaptive.iter().enumerate().map(|(round, f)| {
                let mut v = with_round(round, f.json(json!("adaptive")));
                v["controller"] = json!(f.controller);
                v
            }).collect::<Vec<_>>(),
        },
    });
    let mut out = String::new();
    outln!(
        out,
        "best fixed concurrency: {best_level} in flight, {best_tps:.1} tokens/s{}",
        of_runs(best.runs)
    );
    for (round, f) in adaptive.iter().enumerate() {
        let limits: Vec<String> = f
            .controller
            .as_ref()
            .and_then(|c| c["endpoints"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|e| format!("{} (limit at the end {})", e["base_url"], e["limit"]))
            .collect();
        outln!(
        out,
            "{}adaptive ({} items, {} calls in {:.0}s; {}): {:.1} tokens/s = {:.1}% of that round's run of {best_level} in flight",
            tag(round, rounds),
            f.items_done,
            f.calls,
            f.measured_secs,
            limits.join(", "),
            f.tokens_per_sec(),
            100.0 * per_round[round]
        );
    }
    let (lo, hi) = spread(&per_round);
    outln!(
        out,
        "adaptive: {adaptive_tps:.1} tokens/s{} = {:.1}% of the best sweep point; per round vs that round's run of {best_level}: {:.1}% to {:.1}%",
        of_runs(rounds),
        100.0 * fraction,
        100.0 * lo,
        100.0 * hi
    );
    if let (Some(c), Some(r)) = (&confirmed, of_confirmed) {
        outln!(
            out,
            "best level again: {:.1} tokens/s; adaptive = {:.1}% of it",
            c.tokens_per_sec(),
            100.0 * r
        );
    }
    Ok(Report {
        json: report,
        text: out,
    })
}

/// One fixed-concurrency run of the sweep.
struct Run {
    round: usize,
    level: usize,
    f: Figures,
}

/// A sweep level over all its runs.
struct Point {
    level: usize,
    runs: usize,
    mean: f64,
    min: f64,
    max: f64,
}

/// The sweep's levels, in the order first run, each over all its runs.
fn points(sweep: &[Run]) -> Vec<Point> {
    let mut levels: Vec<usize> = Vec::new();
    for r in sweep {
        if !levels.contains(&r.level) {
            levels.push(r.level);
        }
    }
    levels
        .into_iter()
        .map(|level| {
            let tps: Vec<f64> = sweep
                .iter()
                .filter(|r| r.level == level)
                .map(|r| r.f.tokens_per_sec())
                .collect();
            Point {
                level,
                runs: tps.len(),
                mean: mean(tps.iter().copied()),
                min: tps.iter().copied().fold(f64::INFINITY, f64::min),
                max: tps.iter().copied().fold(0.0, f64::max),
            }
        })
        .collect()
}

/// The level with the best mean.
fn best_point(points: &[Point]) -> &Point {
    points
        .iter()
        .max_by(|x, y| x.mean.total_cmp(&y.mean))
        .expect("at least one level")
}

/// The smallest and largest of `xs` ((0, 0) for none).
fn spread(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// The mean of `xs` (0 for none: a figure that was not measured prints as 0).
fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let xs: Vec<f64> = xs.collect();
    match xs.is_empty() {
        true => 0.0,
        false => crate::text::mean(&xs),
    }
}

/// "round 2/3: " before a run's line when there are several rounds.
fn tag(round: usize, rounds: usize) -> String {
    if rounds > 1 {
        format!("round {}/{rounds}: ", round + 1)
    } else {
        String::new()
    }
}

/// A run's JSON with its round (counted from 1).
fn with_round(round: usize, mut v: Value) -> Value {
    v["round"] = json!(round + 1);
    v
}

/// Each endpoint's changes of the limit in one adaptive run, from a pool's control report:
/// "limit 8 -> 16 at 140s (climb x2) -> 12 at 420s (...)".
fn limit_path(controller: Option<&Value>) -> String {
    let endpoints = controller
        .and_then(|c| c["endpoints"].as_array())
        .map_or(&[][..], Vec::as_slice);
    let paths: Vec<String> = endpoints
        .iter()
        .map(|e| {
            let base = e["base_url"].as_str().unwrap_or("?");
            let decisions = e["decisions"].as_array().map_or(&[][..], Vec::as_slice);
            let Some(first) = decisions.first() else {
                return format!("{base}: limit {} throughout", e["limit"]);
            };
            // The controller keeps its latest decisions only.
            let earlier = e["decision_count"].as_u64().unwrap_or(0) > decisions.len() as u64;
            let mut path = format!(
                "{base}: limit {}{}",
                if earlier { "... " } else { "" },
                first["from"]
            );
            for d in decisions {
                path += &format!(
                    " -> {} at {:.0}s ({})",
                    d["to"],
                    d["at_secs"].as_f64().unwrap_or(0.0),
                    d["reason"].as_str().unwrap_or("")
                );
            }
            path
        })
        .collect();
    if paths.is_empty() {
        "no controller report".into()
    } else {
        paths.join("; ")
    }
}

/// " (mean of 3 runs)" after a figure over several runs.
fn of_runs(n: usize) -> String {
    if n > 1 {
        format!(" (mean of {n} runs)")
    } else {
        String::new()
    }
}
