//! What the controller measures: a window of completions, by request kind (pipeline
//! stage), and its throughput by Little's law, comparable with another window's on a
//! common mix.

use std::time::Instant;

/// Completions of one kind of request (a pipeline stage) in a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct KindSums {
    pub(super) kind: &'static str,
    /// Completions (fractional once older windows are decayed in `Mix::merge`).
    pub(super) n: f64,
    pub(super) tokens: f64,
    pub(super) latency: f64,
}

/// A window's throughput, comparable with another window's on a common request mix.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    pub(super) mean_in_flight: f64,
    pub(super) kinds: Vec<KindSums>,
}

impl Mix {
    /// Little's law over this window's own mix.
    pub(super) fn tps(&self) -> f64 {
        let (t, l) = self
            .kinds
            .iter()
            .fold((0.0, 0.0), |(t, l), k| (t + k.tokens, l + k.latency));
        self.mean_in_flight * t / l.max(1e-9)
    }

    /// Little's law on a given mix: this window's mean latency of each kind, weighted by
    /// `w` (kind, count, tokens per request).
    pub(super) fn tps_for(&self, w: &[(&'static str, f64, f64)]) -> f64 {
        let (mut t, mut l) = (0.0, 0.0);
        for (kind, weight, tokens) in w {
            if let Some(k) = self.kinds.iter().find(|k| k.kind == *kind) {
                t += weight * tokens;
                l += weight * k.latency / k.n;
            }
        }
        self.mean_in_flight * t / l.max(1e-9)
    }

    /// Completions in the mix.
    pub(super) fn count(&self) -> f64 {
        self.kinds.iter().map(|k| k.n).sum()
    }

    /// `older`, its weight scaled by `keep`, followed by `self`: the estimate of a level
    /// over several windows, the recent ones weighing more (a server's speed drifts).
    pub(super) fn merge(&self, older: &Mix, keep: f64) -> Mix {
        let mut kinds: Vec<KindSums> = older
            .kinds
            .iter()
            .map(|k| KindSums {
                n: k.n * keep,
                tokens: k.tokens * keep,
                latency: k.latency * keep,
                ..*k
            })
            .collect();
        for k in &self.kinds {
            match kinds.iter_mut().find(|o| o.kind == k.kind) {
                Some(o) => {
                    o.n += k.n;
                    o.tokens += k.tokens;
                    o.latency += k.latency;
                }
                None => kinds.push(*k),
            }
        }
        let (a, b) = (older.count() * keep, self.count());
        let mean_in_flight = if a + b > 0.0 {
            (older.mean_in_flight * a + self.mean_in_flight * b) / (a + b)
        } else {
            self.mean_in_flight
        };
        Mix {
            mean_in_flight,
            kinds,
        }
    }

    /// This window's throughput over `other`'s, both on the kinds they share with at
    /// least `MIN_SHARED` completions each, weighted by their combined counts, each kind
    /// with its tokens per request over both windows: tokens per request are the work's,
    /// not the level's (a window that drew long answers did not make the server faster;
    /// on the mock server, at one level, windows' own figures ranged 18k-54k tokens/s).
    /// None where they share no such kind: two windows of different stages are not
    /// comparable. A window that saw its latency run away (no throughput) is 0.
    pub(super) fn ratio_to(&self, other: &Mix) -> Option<f64> {
        if self.mean_in_flight == 0.0 {
            return Some(0.0);
        }
        let w: Vec<(&'static str, f64, f64)> = self
            .kinds
            .iter()
            .filter_map(|a| {
                let b = other.kinds.iter().find(|b| b.kind == a.kind)?;
                let n = a.n + b.n;
                (a.n >= MIN_SHARED && b.n >= MIN_SHARED).then_some((
                    a.kind,
                    n,
                    (a.tokens + b.tokens) / n,
                ))
            })
            .collect();
        if w.is_empty() {
            return None;
        }
        Some(self.tps_for(&w) / other.tps_for(&w).max(1e-9))
    }
}

/// Completions of a kind both windows need for it to count in their comparison.
const MIN_SHARED: f64 = 3.0;

/// What one window measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Little's law over the window's own mix (what the report shows).
    pub tps: f64,
    pub mix: Mix,
    pub p50_latency: f64,
    /// Mean requests in flight / limit.
    pub saturation: f64,
    pub mean_waiting: Option<f64>,
    pub max_kv: Option<f64>,
}

#[derive(Debug)]
pub(super) struct Window {
    /// The ticket of the first request sent in this window.
    pub(super) first_ticket: u64,
    /// Requests sent before a change of the limit that are still in flight: measurement
    /// begins once they are done, so it sees only the new level.
    pub(super) settling: usize,
    /// When measurement began.
    pub(super) began: Option<Instant>,
    /// The first ticket whose completion counts: requests sent once the settling ones
    /// were done.
    pub(super) counted_from: u64,
    pub(super) last_event: Instant,
    pub(super) in_flight_integral: f64,
    pub(super) kinds: Vec<KindSums>,
    pub(super) latencies: Vec<f64>,
    pub(super) waiting: (f64, u32),
    pub(super) max_kv: Option<f64>,
}

impl Window {
    /// A window opened at `now` with `settling` earlier requests in flight; requests from
    /// ticket `first_ticket` on belong to it.
    pub(super) fn new(now: Instant, first_ticket: u64, settling: usize) -> Window {
        Window {
            first_ticket,
            settling,
            began: (settling == 0).then_some(now),
            counted_from: first_ticket,
            last_event: now,
            in_flight_integral: 0.0,
            kinds: Vec::new(),
            latencies: Vec::new(),
            waiting: (0.0, 0),
            max_kv: None,
        }
    }
}
