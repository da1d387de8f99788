//! The generation engine: streams plan items through the stages with a cap on teacher
//! requests in flight, sends outcomes over a bounded channel to one writer, and resumes
//! from what a killed attempt left on disk (every planned item ends exactly once in the
//! records or the rejects).

pub mod manifest;
pub mod progress;
pub mod stats;
pub mod worker;

use crate::config::RunConfig;
use crate::error::Error;
use crate::plan::{Plan, PlanItem};
use crate::prompt::Prompts;
use crate::record::{Record, Rejection};
use crate::schemas::Schemas;
use crate::sink::{Found, Sinks};
use crate::taxonomy::Taxonomy;
use crate::teacher::retry::Backoff;
use crate::teacher::Teacher;
use anyhow::Context;
use progress::{Counters, Mode, Reporter};
use stats::Stats;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

/// Everything a worker needs, shared read-only across items.
pub struct Shared {
    pub cfg: RunConfig,
    pub tax: Taxonomy,
    pub schemas: Schemas,
    pub prompts: Prompts,
    pub teacher: Arc<dyn Teacher>,
    pub requests: Semaphore,
    pub backoff: Backoff,
    pub progress: Arc<Counters>,
}

impl Shared {
    pub fn new(
        cfg: RunConfig,
        tax: Taxonomy,
        schemas: Schemas,
        prompts: Prompts,
        teacher: Arc<dyn Teacher>,
    ) -> Self {
        let e = &cfg.engine;
        Shared {
            requests: Semaphore::new(e.concurrency),
            backoff: Backoff {
                initial: Duration::from_millis(e.backoff_initial_ms),
                max: Duration::from_millis(e.backoff_max_ms),
            },
            progress: Arc::new(Counters::default()),
            cfg,
            tax,
            schemas,
            prompts,
            teacher,
        }
    }
}

pub struct RunOptions {
    pub out_dir: PathBuf,
    pub limit: Option<usize>,
    pub mode: Mode,
}

/// What a finished run reports.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub out_dir: PathBuf,
    pub planned: u64,
    pub resumed_from: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub elapsed_secs: f64,
    pub items_per_sec: f64,
    pub completion_tokens_per_sec: f64,
    pub stats: Stats,
}

enum Outcome {
    Accepted(Record),
    Rejected(Rejection),
}

/// Generate every planned item not already on disk in `opts.out_dir`.
pub async fn run(sh: Arc<Shared>, plan: &Plan, opts: RunOptions) -> Result<Summary, Error> {
    let items: Vec<PlanItem> = match opts.limit {
        Some(n) => plan.items.iter().take(n).cloned().collect(),
        None => plan.items.clone(),
    };
    let out = &opts.out_dir;
    manifest::begin(out, &sh, plan)?;

    let mut stats = Stats {
        planned: items.len() as u64,
        ..Default::default()
    };
    let mut done: HashSet<String> = HashSet::new();
    let planned_ids: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let mut sinks = Sinks::open(out, sh.cfg.engine.shard_size, |found| {
        let id = match found {
            Found::Record(r) if planned_ids.contains(r.id.as_str()) => {
                stats.add_record(r);
                &r.id
            }
            Found::Reject(j) if planned_ids.contains(j.id.as_str()) => {
                stats.add_reject(j);
                &j.id
            }
            Found::Record(r) => &r.id,
            Found::Reject(j) => &j.id,
        };
        done.insert(id.clone());
    })
    .context("opening the output sinks")?;
    let todo: Vec<PlanItem> = items
        .into_iter()
        .filter(|i| !done.contains(&i.id))
        .collect();
    let resumed_from = stats.done();
    if resumed_from > 0 && opts.mode != Mode::Quiet {
        eprintln!(
            "resuming: {resumed_from} item(s) already done, {} to go",
            todo.len()
        );
    }

    let started = Instant::now();
    let reporter = Reporter::start(opts.mode, sh.progress.clone(), stats.planned, resumed_from);
    let cap = sh.cfg.engine.concurrency;
    let (tx, mut rx) = mpsc::channel::<Outcome>(cap * 2);

    // Writer: the only owner of the sinks; counts outcomes as they become durable.
    let counters = sh.progress.clone();
    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<(Stats, Sinks)> {
        while let Some(o) = rx.blocking_recv() {
            match o {
                Outcome::Accepted(r) => {
                    sinks.accept(r.clone())?;
                    stats.add_record(&r);
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Rejected(j) => {
                    sinks.reject(&j)?;
                    stats.add_reject(&j);
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
            counters.done.fetch_add(1, Ordering::Relaxed);
        }
        Ok((stats, sinks))
    });

    // Producer: admit items while their number in progress stays bounded; each item
    // flows through its stages on its own (no batch barriers).
    let admission = Arc::new(Semaphore::new(cap * 2));
    let mut tasks = tokio::task::JoinSet::new();
    for item in todo {
        let permit = admission
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let (sh, tx) = (sh.clone(), tx.clone());
        tasks.spawn(async move {
            let outcome = match worker::process(&sh, &item).await {
                Ok(r) => Outcome::Accepted(r),
                Err(j) => Outcome::Rejected(j),
            };
            let _ = tx.send(outcome).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(tx);
    while let Some(r) = tasks.join_next().await {
        r.context("a worker task panicked")?;
    }
    let (stats, sinks) = writer.await.context("writer task")??;
    sinks.finish()?;
    reporter.stop().await;

    let elapsed = started.elapsed().as_secs_f64();
    let new_done = stats.done() - resumed_from;
    let summary = Summary {
        out_dir: out.clone(),
        planned: stats.planned,
        resumed_from,
        accepted: stats.accepted,
        rejected: stats.rejected,
        elapsed_secs: elapsed,
        items_per_sec: new_done as f64 / elapsed.max(1e-9),
        completion_tokens_per_sec: sh.progress.tokens.load(Ordering::Relaxed) as f64
            / elapsed.max(1e-9),
        stats,
    };
    manifest::finish(out, &summary)?;
    Ok(summary)
}
