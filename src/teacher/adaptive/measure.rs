//! What the controller measures: a window of completions, by request kind (pipeline
//! stage), and its throughput by Little's law, comparable with another window's on a
//! common mix.

use std::time::Instant;

/// Completions of one kind of request (a pipeline stage) in a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct KindSums {
    pub(super) kind: &'static str,
    pub(super) n: u32,
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

    /// Little's law with each kind's mean tokens and latency from this window, weighted by
    /// the counts `w` (a mix shared by the two windows compared).
    pub(super) fn tps_for(&self, w: &[(&'static str, f64)]) -> f64 {
        let (mut t, mut l) = (0.0, 0.0);
        for (kind, weight) in w {
            if let Some(k) = self.kinds.iter().find(|k| k.kind == *kind) {
                t += weight * k.tokens / k.n as f64;
                l += weight * k.latency / k.n as f64;
            }
        }
        self.mean_in_flight * t / l.max(1e-9)
    }

    /// This window's throughput over `other`'s, both on the kinds they share, weighted by
    /// their combined counts; on their own mixes where they share none.
    pub(super) fn ratio_to(&self, other: &Mix) -> f64 {
        let w: Vec<(&'static str, f64)> = self
            .kinds
            .iter()
            .filter_map(|a| {
                let b = other.kinds.iter().find(|b| b.kind == a.kind)?;
                Some((a.kind, (a.n + b.n) as f64))
            })
            .collect();
        let (mine, theirs) = if w.is_empty() {
            (self.tps(), other.tps())
        } else {
            (self.tps_for(&w), other.tps_for(&w))
        };
        mine / theirs.max(1e-9)
    }
}

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
            last_event: now,
            in_flight_integral: 0.0,
            kinds: Vec::new(),
            latencies: Vec::new(),
            waiting: (0.0, 0),
            max_kv: None,
        }
    }
}
