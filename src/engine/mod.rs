//! The generation engine: streams plan items through the stages with a cap on teacher
//! requests in flight; one writer commits outcomes in scheduling order (so duplicate
//! removal and quotas are deterministic whatever order items finish in), and reports
//! each commit back to the scheduler, which refills cells short of their quota. A killed
//! run resumes from what is on disk: every item scheduled ends exactly once in the
//! records or the rejects. A new attempt also tries again the rejects `--retry-rejects`
//! names (by default those for a transient reason): each is taken out of the rejects
//! before its item runs, so the new outcome replaces it.

pub mod dpo;
pub mod manifest;
pub mod progress;
pub mod quota;
pub mod stats;
pub mod worker;

use crate::config::{RunConfig, WorkOrder};
use crate::error::Error;
use crate::plan::{Cell, Plan, PlanItem};
use crate::prompt::Prompts;
use crate::quality::calibration::Selection;
use crate::quality::dedup::{self, Dedup};
use crate::record::{Record, Rejection};
use crate::schemas::{Schemas, TaskSchema};
use crate::shard::{self, ShardSpec};
use crate::sink::{self, Found, Sinks};
use crate::taxonomy::Taxonomy;
use crate::teacher::retry::{Backoff, Policy};
use crate::teacher::Teacher;
use anyhow::Context;
use progress::{Counters, Mode, Reporter};
use quota::Scheduler;
use stats::{Retried, Stats};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

/// The judge's template (`Prompts::template_for(Stage::Judge, _)` for every item).
pub const JUDGE_TEMPLATE: &str = "judge.j2";

/// Everything a worker needs, shared read-only across items.
pub struct Shared {
    pub cfg: RunConfig,
    pub tax: Taxonomy,
    pub schemas: Schemas,
    pub prompts: Prompts,
    pub teacher: Arc<dyn Teacher>,
    pub requests: Semaphore,
    pub retry: Policy,
    pub progress: Arc<Counters>,
    pub judge: Option<JudgeRuntime>,
}

/// The judge's teacher (the generator's unless `[judge.teacher]` names another, which
/// then gets its own cap on requests in flight), its verdict schema, and whether its
/// scores select (a usable calibration) or only annotate.
pub struct JudgeRuntime {
    pub teacher: Arc<dyn Teacher>,
    pub requests: Option<Semaphore>,
    pub schema: TaskSchema,
    pub selection: Selection,
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
            requests: Semaphore::new(teacher.capacity().unwrap_or(e.concurrency)),
            retry: Policy {
                max_attempts: e.max_attempts,
                budget: Duration::from_secs_f64(e.retry_budget_secs),
                backoff: Backoff {
                    initial: Duration::from_millis(e.backoff_initial_ms),
                    max: Duration::from_millis(e.backoff_max_ms),
                },
                retry_after_max: Duration::from_secs_f64(e.retry_after_max_secs),
            },
            progress: Arc::new(Counters::default()),
            judge: None,
            cfg,
            tax,
            schemas,
            prompts,
            teacher,
        }
    }

    /// Judge with `teacher` (`None`: the generator's teacher) and the verdict `schema`.
    pub fn with_judge(mut self, teacher: Option<Arc<dyn Teacher>>, schema: TaskSchema) -> Self {
        let requests = teacher
            .as_ref()
            .map(|t| Semaphore::new(t.capacity().unwrap_or(self.cfg.engine.concurrency)));
        let selection = Selection::resolve(
            &self.cfg.judge,
            &self.judge_model(),
            &self.prompts.tag(JUDGE_TEMPLATE),
        );
        self.judge = Some(JudgeRuntime {
            teacher: teacher.unwrap_or_else(|| self.teacher.clone()),
            requests,
            schema,
            selection,
        });
        self
    }

    /// The model that judges: `[judge.teacher]`'s, else the generator's.
    pub fn judge_model(&self) -> String {
        let c = &self.cfg;
        c.judge.teacher.as_ref().unwrap_or(&c.teacher).model.clone()
    }

    /// Teacher stages per item, as the progress display counts them: document,
    /// instruction and answer, and judging when the judge is on.
    pub fn stages_per_item(&self) -> u64 {
        3 + u64::from(self.judge.is_some())
    }
}

pub struct RunOptions {
    pub out_dir: PathBuf,
    pub limit: Option<usize>,
    /// Only this shard's slice of the plan (after `limit`).
    pub shard: Option<ShardSpec>,
    pub mode: Mode,
    /// Which rejects an earlier attempt left are tried again.
    pub retry_rejects: RetryRejects,
}

/// Which rejects on disk a new attempt of a run tries again (`run --retry-rejects`); the
/// new outcome replaces the reject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RetryRejects {
    /// Those for a transient reason (`teacher::TRANSIENT_REASONS`): the server failed.
    #[default]
    Transient,
    /// Every reject (content ones too: a new try samples anew only where the teacher
    /// is not seeded, see `teacher.send_seed`).
    All,
    None,
}

impl RetryRejects {
    pub fn wants(self, reason: &str) -> bool {
        match self {
            RetryRejects::Transient => crate::teacher::is_transient(reason),
            RetryRejects::All => true,
            RetryRejects::None => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RetryRejects::Transient => "transient",
            RetryRejects::All => "all",
            RetryRejects::None => "none",
        }
    }
}

impl std::str::FromStr for RetryRejects {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "transient" => Ok(RetryRejects::Transient),
            "all" => Ok(RetryRejects::All),
            "none" => Ok(RetryRejects::None),
            _ => Err(format!("{s:?}: expected transient, all or none")),
        }
    }
}

/// What a finished run reports.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub out_dir: PathBuf,
    pub planned: u64,
    /// Items attempted in all (planned and refills, this attempt and earlier ones).
    pub attempted: u64,
    pub resumed_from: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Of the rejected: for a transient reason (the server failed; `run` again retries
    /// them) and for any other (the teacher's output was not kept).
    pub rejected_transient: u64,
    pub rejected_content: u64,
    /// Cells that ended short of their quota (`task/document/difficulty/format` -> why).
    pub cells_short: BTreeMap<String, String>,
    pub elapsed_secs: f64,
    pub items_per_sec: f64,
    pub completion_tokens_per_sec: f64,
    /// This attempt's teacher calls answered, prompt tokens sent and those the server
    /// served from its prefix cache (where it reports them).
    pub session_calls: u64,
    pub session_prompt_tokens: u64,
    pub session_cached_prompt_tokens: u64,
    pub stats: Stats,
}

enum Outcome {
    Accepted(Record),
    Rejected(Rejection),
}

/// What the writer tells the scheduler after making an outcome durable.
struct Committed {
    cell: Cell,
    accepted: bool,
}

/// Generate every planned item not already on disk in `opts.out_dir` (and, with quotas,
/// the refills that cells short of their target need), holding the directory's lock.
pub async fn run(sh: Arc<Shared>, plan: &Plan, opts: RunOptions) -> Result<Summary, Error> {
    // Held to the end: a second run on this directory stops here, naming this process.
    let _lock = crate::dirlock::DirLock::acquire(&opts.out_dir, "run")?;
    let mut items: Vec<PlanItem> = match opts.limit {
        Some(n) => plan.items.iter().take(n).cloned().collect(),
        None => plan.items.clone(),
    };
    if let Some(spec) = opts.shard {
        items = shard::select(items, spec);
    }
    if sh.cfg.engine.order == WorkOrder::Grouped {
        // Consecutive requests then share long prompt prefixes (a document type's
        // instructions, a task's): servers with prefix caching reuse them.
        items.sort_by(|a, b| {
            (&a.family, &a.document, &a.task).cmp(&(&b.family, &b.document, &b.task))
        });
    }
    let out = &opts.out_dir;
    manifest::begin(out, &sh, plan, opts.limit, opts.shard)?;

    let filters = sh.cfg.filters.active();
    let mut stats = Stats::new(items.len() as u64, &filters);
    let mut sched = Scheduler::new(plan, &items, &sh.cfg.quota);
    let mut dedup = Dedup::new(&sh.cfg.dedup);
    // Outcomes on disk, and rejects of this run to try again (`--retry-rejects`).
    let mut done: HashSet<String> = HashSet::new();
    let mut again: Vec<Rejection> = Vec::new();
    let retry = opts.retry_rejects;
    let mut sinks = Sinks::open(out, sh.cfg.engine.shard_size, |found| {
        if let Found::Reject(j) = found {
            let r = &j.record;
            if retry.wants(&j.reason) && sched.belongs(&j.id, &r.cell(), r.cell_index) {
                again.push(j.clone());
                return;
            }
        }
        let (rec, accepted) = match found {
            Found::Record(r) => (r, true),
            Found::Reject(j) => (&j.record, false),
        };
        if sched.found(&rec.id, &rec.cell(), rec.cell_index, accepted) {
            match found {
                Found::Record(r) => {
                    // Kept records of earlier attempts stay kept; later ones are checked
                    // against them.
                    let _ = dedup.check_insert(&r.id, &dedup::record_text(r));
                    stats.add_record(r);
                }
                Found::Reject(j) => stats.add_reject(j),
            }
        }
        done.insert(rec.id.clone());
    })
    .context("opening the output sinks")?;
    // Items a retry is under way for: those an interrupted attempt released already (in
    // the history, not done), and the rejects queued again now (released from
    // `rejects.jsonl` before any new outcome is written, so each is replaced, not added).
    let mut retried: HashMap<String, String> = sink::rejects::retried(out)?
        .into_iter()
        .filter(|(id, _)| !done.contains(id))
        .collect();
    let mut report = Retried {
        mode: retry.as_str().into(),
        ..Default::default()
    };
    let mut released = HashSet::new();
    for j in again {
        let r = &j.record;
        let item = plan.item(&sh.tax, &r.cell(), r.cell_index);
        let same = item.id == j.id;
        if same && sched.retry(item) {
            retried.insert(j.id.clone(), j.reason.clone());
            released.insert(j.id.clone());
        } else {
            if !same {
                sched.found(&j.id, &r.cell(), r.cell_index, false);
            }
            report.kept += 1;
            stats.add_reject(&j);
        }
        done.insert(j.id);
    }
    sinks
        .release(&released)
        .context("taking the rejects to retry out of rejects.jsonl")?;
    stats.retried = Some(report);
    let resumed_from = stats.done();
    sched.start(items, plan, &sh.tax, &done);
    if !released.is_empty() && opts.mode != Mode::Quiet {
        eprintln!(
            "retrying {} earlier reject(s) (--retry-rejects {})",
            released.len(),
            retry.as_str()
        );
    }
    if resumed_from > 0 && opts.mode != Mode::Quiet {
        eprintln!("resuming: {resumed_from} item(s) already done");
    }

    sh.progress.total.store(sched.issued(), Ordering::Relaxed);
    let started = Instant::now();
    let reporter = Reporter::start(
        opts.mode,
        sh.progress.clone(),
        stats.planned,
        resumed_from,
        sh.stages_per_item(),
        sh.teacher.clone(),
    );
    let cap = sh.teacher.capacity().unwrap_or(sh.cfg.engine.concurrency);
    let (tx, rx) = mpsc::channel::<(u64, Outcome)>(cap * 2);
    let (events_tx, mut events) = mpsc::unbounded_channel::<Committed>();
    let writer = {
        let counters = sh.progress.clone();
        tokio::task::spawn_blocking(move || {
            write(rx, events_tx, sinks, stats, dedup, counters, retried)
        })
    };

    // Producer: keep at most `window` items between admission and commit; each item flows
    // through its stages on its own (no batch barriers). Twice the requests allowed in
    // flight keeps every permit busy while items move between stages. Under adaptive
    // concurrency that follows the current limit, not its maximum: hundreds of items
    // open behind a limit of 8 would all do their first stage before any did its second
    // (the first item done, and every quota's feedback, would wait for all of them), and
    // the requests would come in waves of one stage each.
    let window = || {
        sh.teacher
            .current_limit()
            .map_or(cap * 2, |l| (l * 2).clamp(4, cap * 2))
    };
    let (mut open, mut seq) = (0usize, 0u64);
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        while open < window() {
            let Some(item) = sched.next_item() else { break };
            let (sh, tx) = (sh.clone(), tx.clone());
            let n = seq;
            tasks.spawn(async move {
                let outcome = match worker::process(&sh, &item).await {
                    Ok(r) => Outcome::Accepted(r),
                    Err(j) => Outcome::Rejected(j),
                };
                let _ = tx.send((n, outcome)).await;
            });
            seq += 1;
            open += 1;
        }
        if open == 0 {
            break;
        }
        tokio::select! {
            ev = events.recv() => {
                // The writer stopped (its error is reported below).
                let Some(ev) = ev else { break };
                open -= 1;
                sched.committed(&ev.cell, ev.accepted, plan, &sh.tax, &done);
                sh.progress.total.store(sched.issued(), Ordering::Relaxed);
            }
            Some(joined) = tasks.join_next() => {
                joined.context("a worker task panicked")?;
            }
            // A limit that grew admits more items.
            _ = tick.tick() => {}
        }
    }
    drop(tx);
    while let Some(r) = tasks.join_next().await {
        r.context("a worker task panicked")?;
    }
    let (mut stats, sinks) = writer.await.context("writer task")??;
    if let Some(r) = sh.teacher.control_report() {
        stats.concurrency.insert("teacher".into(), r);
    }
    stats.judge.selection = sh.judge.as_ref().map(|j| j.selection.report());
    // A judge on other servers has its own endpoints (on the same ones, it shares them).
    if let Some(j) = sh.judge.as_ref().filter(|j| j.requests.is_some()) {
        if let Some(r) = j.teacher.control_report() {
            if Some(&r["endpoints"]) != stats.concurrency.get("teacher").map(|t| &t["endpoints"]) {
                stats.concurrency.insert("judge".into(), r);
            }
        }
    }
    sinks.finish()?;
    reporter.stop().await;

    let mut cells_short = BTreeMap::new();
    if sched.quotas_on() {
        for (cell, c) in &sched.cells {
            let cs = stats.cells.entry(cell.key()).or_default();
            let status = quota::status(c, &cs.rejected_by_reason);
            if status != "met" {
                cells_short.insert(cell.key(), status.clone());
            }
            cs.target_accepted = Some(c.target as u64);
            cs.item_budget = Some(c.budget as u64);
            cs.status = Some(status);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let new_done = stats.done() - resumed_from;
    let summary = Summary {
        out_dir: out.clone(),
        planned: stats.planned,
        attempted: stats.done(),
        resumed_from,
        accepted: stats.accepted,
        rejected: stats.rejected,
        rejected_transient: stats.rejected_transient,
        rejected_content: stats.rejected_content,
        cells_short,
        elapsed_secs: elapsed,
        items_per_sec: new_done as f64 / elapsed.max(1e-9),
        completion_tokens_per_sec: sh.progress.tokens.load(Ordering::Relaxed) as f64
            / elapsed.max(1e-9),
        session_calls: sh.progress.calls.load(Ordering::Relaxed),
        session_prompt_tokens: sh.progress.prompt_tokens.load(Ordering::Relaxed),
        session_cached_prompt_tokens: sh.progress.cached_tokens.load(Ordering::Relaxed),
        stats,
    };
    manifest::finish(out, &summary)?;
    Ok(summary)
}

/// The writer: the only owner of the sinks. Commits outcomes in sequence order, dropping
/// accepted records that duplicate an earlier kept one, and reports each commit.
fn write(
    mut rx: mpsc::Receiver<(u64, Outcome)>,
    events: mpsc::UnboundedSender<Committed>,
    mut sinks: Sinks,
    mut stats: Stats,
    mut dedup: Dedup,
    counters: Arc<Counters>,
    mut retried: HashMap<String, String>,
) -> anyhow::Result<(Stats, Sinks)> {
    let mut pending: BTreeMap<u64, Outcome> = BTreeMap::new();
    let mut next = 0u64;
    while let Some((n, o)) = rx.blocking_recv() {
        pending.insert(n, o);
        while let Some(o) = pending.remove(&next) {
            next += 1;
            let o = match o {
                Outcome::Accepted(r) => match dedup.check_insert(&r.id, &dedup::record_text(&r)) {
                    Ok(()) => Outcome::Accepted(r),
                    Err(d) => Outcome::Rejected(Rejection {
                        id: r.id.clone(),
                        stage: "dedup".into(),
                        reason: d.reason.into(),
                        detail: format!("duplicate of {}", d.of),
                        record: r,
                    }),
                },
                rejected => rejected,
            };
            let (id, rejected_for) = match &o {
                Outcome::Accepted(r) => (&r.id, None),
                Outcome::Rejected(j) => (&j.id, Some(j.reason.as_str())),
            };
            if let (Some(previous), Some(report)) = (retried.remove(id), stats.retried.as_mut()) {
                report.add(&previous, rejected_for);
            }
            let (cell, accepted) = match &o {
                Outcome::Accepted(r) => {
                    sinks.accept(r.clone())?;
                    stats.add_record(r);
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                    (r.cell(), true)
                }
                Outcome::Rejected(j) => {
                    sinks.reject(j)?;
                    stats.add_reject(j);
                    counters.rejected.fetch_add(1, Ordering::Relaxed);
                    (j.record.cell(), false)
                }
            };
            counters.done.fetch_add(1, Ordering::Relaxed);
            let _ = events.send(Committed { cell, accepted });
        }
    }
    Ok((stats, sinks))
}
