//! Adaptive concurrency for one teacher endpoint: find and track the number of requests in
//! flight that maximises completed tokens/s without letting latency run away.
//!
//! Self-hosted servers (vLLM, llama.cpp, SGLang) do not answer 429 when overloaded; they
//! get slower, and past a knee their throughput falls. So the controller measures, and
//! hill-climbs on what it measures (docs/adaptive-concurrency.md has the rules and why).
//!
//! **Measuring** (`measure`, `events`): a window counts only the requests sent once those
//! of the previous level are done (a step up's burst is sent at a load between the two
//! levels), and closes after max(limit, 24)
//! completions (12 while climbing), at least one
//! median latency, and once it has seen every stage that makes up a tenth of the run's
//! requests (items go through their stages in step after a change; a window of
//! long-prompt answers alone would rank the stage, not the level). Its throughput is
//! Little's law: mean requests in flight x (tokens / latency summed over its
//! completions), which holds however bursty the completions are. Two levels are compared
//! on the request mix (pipeline stages) their windows share. Each level's windows are
//! merged into an estimate (the book), the older ones weighing half as much with each
//! newer one, so a decision rests on more than one noisy window and follows a server
//! whose speed drifts.
//!
//! **Deciding** (`policy`), once per window: climb (x2 while a step gains 60%, x1.5 once
//! it gains less, stop below a 5% gain), explore around the best level (below first, then
//! above; move to a neighbour that beats it by 2%, halve the step when none does, down to
//! an eighth of the level), hold (re-probe one small step each way every `HOLD_WINDOWS`
//! windows, explore again at once when two windows in a row are `HOLD_SHIFT` off the
//! estimate, either way).
//!
//! **Backing off**, at once: a 429 / 503 (or a Retry-After), or a request that ran into
//! the client's timeout, cuts the limit to 70% and holds; so does a window whose median
//! latency exceeds `max_latency_secs` when set. A probe whose estimate is already a
//! quarter below the level it is compared with ends its window early (past a knee,
//! latency runs away and a full window would take long); so does one whose requests,
//! still in flight, have waited longer than Little's law allows for a level within a
//! quarter of that one (checked on every event and on the endpoint monitor's tick); no
//! probe goes to that level or above it again (each would wait for its requests to
//! drain, and past a collapse that is long) until a held level's throughput drops.
//! Where the server exposes load signals, a non-empty server queue or a nearly full KV
//! cache stops any increase, and a llama.cpp slot count caps the limit; a climb that
//! reaches the stated slots holds there unless it measured 10% worse than the level
//! before. A window in which fewer requests were in flight than allowed (not enough
//! work) decides nothing.

mod events;
mod measure;
mod policy;
#[cfg(test)]
mod tests;

use measure::Window;
pub use measure::{Measurement, Mix};
use policy::{Estimate, Phase};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Bounds and targets of a controller.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub min: usize,
    pub max: usize,
    pub initial: usize,
    /// Back off when a window's median latency exceeds this (0: no latency bound).
    pub max_latency_secs: f64,
}

/// Load signals read from the server (`/metrics`, `/slots`), all optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Signals {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<f64>,
    /// KV-cache usage in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_usage: Option<f64>,
    /// Parallel slots (llama.cpp `/slots`): more in flight than this only queues.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots: Option<usize>,
    /// Tokens the server has generated so far (a counter; see `signals`). Reported only:
    /// as a window's throughput it proved noisier than Little's law on a common mix,
    /// since a window's tokens depend on which stages it caught.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_tokens: Option<f64>,
}

/// One change of the limit, as recorded in `stats.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Seconds since the controller started.
    pub at_secs: f64,
    /// Windows (control periods) measured before it.
    pub window: u64,
    pub from: usize,
    pub to: usize,
    pub reason: String,
    /// The measurement that led to it (absent for a 429/503).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_latency_ms: Option<f64>,
}

/// A probe under this fraction of the window it is compared with ends early.
const CLEARLY_WORSE: f64 = 0.75;
/// A doubling that reached the stated slots is held there down to this ratio.
const SLOTS_KEEP: f64 = 0.9;
/// Windows held before the best level's neighbours are probed again.
const HOLD_WINDOWS: u32 = 20;
/// A held level's window this far off its estimate (x or /) counts as a shift (two in a
/// row the same way: explore again).
const HOLD_SHIFT: f64 = 1.15;
/// A level measured within this many windows is not measured again while exploring.
const FRESH_WINDOWS: u64 = 8;
/// Decisions kept for the report (the count covers all).
const KEEP_DECISIONS: usize = 256;

pub struct Controller {
    lim: Limits,
    limit: usize,
    ceiling: usize,
    phase: Phase,
    win: Window,
    in_flight: usize,
    /// Ticket and send time of each request in flight.
    sent: VecDeque<(u64, Instant)>,
    tickets: u64,
    started: Instant,
    cooldown_until: Option<Instant>,
    last_p50: f64,
    /// Why a probe ended before its window closed, for the next decision's reason.
    runaway: Option<String>,
    /// Completions of each kind of request so far, over the whole run.
    seen: Vec<(&'static str, u64)>,
    /// What each level measured (the policy's book).
    book: BTreeMap<usize, Estimate>,
    /// Windows closed so far (control periods).
    period: u64,
    /// The side the last periodic re-probe tried first.
    reprobe_down: bool,
    /// The lowest level whose latency ran away: no probe goes there or above, until a
    /// held level's throughput drops (the server changed).
    fence: Option<usize>,
    pub decisions: VecDeque<Decision>,
    pub decision_count: u64,
    pub overloads: u64,
    pub last_measurement: Option<Measurement>,
    pub signals: Signals,
}

impl Controller {
    pub fn new(lim: Limits, now: Instant) -> Controller {
        let limit = lim.initial.clamp(lim.min, lim.max);
        Controller {
            lim,
            limit,
            ceiling: lim.max,
            phase: Phase::Climb { prev: None },
            // The first `limit` requests ramp up from nothing: they settle the first window.
            win: Window::new(now, limit as u64, limit),
            in_flight: 0,
            sent: VecDeque::new(),
            tickets: 0,
            started: now,
            cooldown_until: None,
            last_p50: 0.0,
            runaway: None,
            seen: Vec::new(),
            book: BTreeMap::new(),
            period: 0,
            reprobe_down: false,
            fence: None,
            decisions: VecDeque::new(),
            decision_count: 0,
            overloads: 0,
            last_measurement: None,
            signals: Signals::default(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Climb { .. } => "climb",
            Phase::Explore(_) => "explore",
            Phase::Hold { .. } => "hold",
        }
    }
}
