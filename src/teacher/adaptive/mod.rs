//! Adaptive concurrency for one teacher endpoint: find and track the number of requests in
//! flight that maximises completed tokens/s without letting latency run away.
//!
//! Self-hosted servers (vLLM, llama.cpp, SGLang) do not answer 429 when overloaded; they
//! get slower, and past a knee their throughput falls. So the controller measures. Each
//! measurement window starts once the requests sent at the new level have begun to
//! complete, and estimates throughput by Little's law: mean requests in flight x (tokens
//! / latency summed over the window's completions), which holds however bursty the
//! completions are. A window closes after max(limit, 12) completions and at least one
//! median latency. Two windows are compared on the same mix of request kinds (pipeline
//! stages): a window that happened to see more short verdicts than long documents would
//! otherwise look faster or slower than its level is. A window also waits until it has
//! seen every stage that makes up a tenth of the run's requests: items go through their
//! stages in step after a start or a change of the limit, and a window of long-prompt
//! answers alone would rank the stage, not the level. The limit then moves by a hill
//! climb on that comparison:
//!
//! - **slow start**: double while a doubling gains at least 5%, then go to the best level
//!   measured. Where a doubling reached a server's stated parallel slots (llama.cpp's
//!   `/slots`) and they measured within 10% of the level before, hold there (nothing
//!   above them; the hold's re-probe looks below): the server batches all its slots, and
//!   single windows are noisier than that (on the 2-core proof server, fixed 16 = its
//!   slots was the best level in every round, while the adaptive run left 16 after one
//!   window's comparison with 8 and drifted down to 4). It never jumps: a
//!   server with more slots than it can serve well (long prompts, many slots) collapses
//!   past its knee, and one window there could last many minutes. Nor does it pass a
//!   level that did not gain in the hope of a rise further up: on real servers the
//!   levels past a plateau were worse, and reaching them cost more than any rise there
//!   could repay (the README's proof runs);
//! - **refine**: step up, then down, around the best point (first a quarter of the last
//!   doubling's gap: the knee lies between its two levels), halving the step when neither
//!   side gains 2% (an even result keeps the lower level: same tokens, less latency)
//!   while half of it is still a quarter of the level (finer steps cost more windows
//!   than they can gain);
//! - **hold**: stay at the best level, re-measuring it, and refine again after a while
//!   (12 windows and 30 s), so the limit tracks a server whose speed changes.
//!
//! A probe whose estimate is already a quarter below the level it is compared with ends
//! its window early (past a knee, latency runs away and a full window would take long);
//! so does one whose requests, still in flight, have waited longer than Little's law
//! allows for a level within a quarter of that one (checked on every event and on the
//! endpoint monitor's tick). A 429 / 503 (or a Retry-After), or a request that ran into
//! the client's timeout, cuts the limit to 70% at once; so does a window whose
//! median latency exceeds `max_latency_secs` when set. Where the server exposes load
//! signals, a non-empty server queue or a nearly full KV cache stops any increase, and a
//! llama.cpp slot count caps the limit. A window in which fewer requests were in flight
//! than allowed (not enough work) decides nothing.

mod events;
mod measure;
mod policy;
#[cfg(test)]
mod tests;

use measure::Window;
pub use measure::{Measurement, Mix};
use policy::Phase;
use serde::Serialize;
use std::collections::VecDeque;
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
/// Windows and seconds held with no change before the best level is probed again.
const HOLD_WINDOWS: u32 = 12;
const HOLD_SECS: f64 = 30.0;
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
            phase: Phase::SlowStart { last: None },
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
            Phase::SlowStart { .. } => "slow-start",
            Phase::Refine { .. } => "refine",
            Phase::Hold { .. } => "hold",
        }
    }
}
