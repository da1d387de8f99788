//! Adaptive concurrency for one teacher endpoint: find and track the number of requests in
//! flight that maximises completed tokens/s without letting latency run away.
//!
//! Self-hosted servers (vLLM, llama.cpp, SGLang) do not answer 429 when overloaded; they
//! get slower, and past a knee their throughput falls. So the controller measures. Each
//! measurement window starts once the requests sent at the new level have begun to
//! complete, and estimates throughput by Little's law: mean requests in flight x (tokens
//! / latency summed over the window's completions), which holds however bursty the
//! completions are. The limit then moves by a hill climb on that estimate:
//!
//! - **slow start**: double while a doubling gains at least 5%;
//! - **refine**: step up, then down, around the best point, halving the step when neither
//!   side gains 2% (an even result keeps the lower level: same tokens, less latency);
//! - **hold**: stay at the best level, re-measuring it, and refine again after a while
//!   (12 windows and 30 s), so the limit tracks a server whose speed changes.
//!
//! A probe whose estimate is already a quarter below the level it is compared with ends
//! its window early (past a knee, latency runs away and a full window would take long).
//! A 429 / 503 (or a Retry-After) cuts the limit to 70% at once; so does a window whose
//! median latency exceeds `max_latency_secs` when set. Where the server exposes load
//! signals, a non-empty server queue or a nearly full KV cache stops any increase, and a
//! llama.cpp slot count caps the limit. A window in which fewer requests were in flight
//! than allowed (not enough work) decides nothing.

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

#[derive(Debug, Clone, Copy)]
struct Point {
    limit: usize,
    tps: f64,
}

/// What a refine window measures.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Center,
    Up { center_tps: f64 },
    Down { center_tps: f64 },
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    SlowStart {
        last: Option<Point>,
    },
    Refine {
        center: usize,
        step: usize,
        stage: Stage,
    },
    Hold {
        windows: u32,
        since: Instant,
    },
}

/// What one window measured.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    pub tps: f64,
    pub p50_latency: f64,
    /// Mean requests in flight / limit.
    pub saturation: f64,
    pub mean_waiting: Option<f64>,
    pub max_kv: Option<f64>,
}

#[derive(Debug)]
struct Window {
    /// The ticket of the first request sent in this window.
    first_ticket: u64,
    /// Requests sent before a change of the limit that are still in flight: measurement
    /// begins once they are done, so it sees only the new level.
    settling: usize,
    /// When measurement began.
    began: Option<Instant>,
    last_event: Instant,
    in_flight_integral: f64,
    tokens: u64,
    latency_sum: f64,
    latencies: Vec<f64>,
    waiting: (f64, u32),
    max_kv: Option<f64>,
}

impl Window {
    /// A window opened at `now` with `settling` earlier requests in flight; requests from
    /// ticket `first_ticket` on belong to it.
    fn new(now: Instant, first_ticket: u64, settling: usize) -> Window {
        Window {
            first_ticket,
            settling,
            began: (settling == 0).then_some(now),
            last_event: now,
            in_flight_integral: 0.0,
            tokens: 0,
            latency_sum: 0.0,
            latencies: Vec::new(),
            waiting: (0.0, 0),
            max_kv: None,
        }
    }
}

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
    tickets: u64,
    started: Instant,
    cooldown_until: Option<Instant>,
    last_p50: f64,
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
            tickets: 0,
            started: now,
            cooldown_until: None,
            last_p50: 0.0,
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

    fn advance(&mut self, now: Instant) {
        let dt = now
            .saturating_duration_since(self.win.last_event)
            .as_secs_f64();
        if self.win.began.is_some() {
            self.win.in_flight_integral += self.in_flight as f64 * dt;
        }
        self.win.last_event = now;
    }

    /// A request was sent: returns its ticket, to give back to `on_done`.
    pub fn on_send(&mut self, now: Instant) -> u64 {
        self.advance(now);
        self.in_flight += 1;
        self.tickets += 1;
        self.tickets - 1
    }

    /// A request sent at `sent` finished with `tokens` completion tokens (failures that
    /// are not overload pass 0 tokens: they took a slot and produced nothing).
    pub fn on_done(&mut self, now: Instant, ticket: u64, sent: Instant, tokens: u64) {
        self.advance(now);
        self.in_flight = self.in_flight.saturating_sub(1);
        let latency = now.saturating_duration_since(sent).as_secs_f64();
        if self.win.began.is_none() {
            if ticket < self.win.first_ticket {
                self.win.settling = self.win.settling.saturating_sub(1);
            }
            if self.win.settling == 0 {
                self.win.began = Some(now);
            }
            return;
        }
        self.win.tokens += tokens;
        self.win.latency_sum += latency;
        self.win.latencies.push(latency);
        self.close_window_if_done(now);
    }

    /// The server said it is overloaded (429 / 503): cut the limit at once.
    pub fn on_overload(&mut self, now: Instant, what: &str) {
        self.overloads += 1;
        if self.cooldown_until.is_some_and(|t| now < t) {
            return;
        }
        let to = ((self.limit as f64 * 0.7).floor() as usize).max(self.lim.min);
        self.hold(now, to, format!("backed off: {what}"), None);
        // One cut per latency period: a burst of 429s is one signal, not ten.
        let pause = self.last_p50.max(0.25);
        self.cooldown_until = Some(now + std::time::Duration::from_secs_f64(pause));
    }

    /// Fresh load signals from the server.
    pub fn on_signals(&mut self, s: Signals) {
        if let Some(w) = s.waiting {
            self.win.waiting.0 += w;
            self.win.waiting.1 += 1;
        }
        if let Some(k) = s.kv_usage {
            self.win.max_kv = Some(self.win.max_kv.map_or(k, |m: f64| m.max(k)));
        }
        if let Some(n) = s.slots.filter(|n| *n > 0) {
            self.ceiling = self.lim.max.min(n).max(self.lim.min);
            self.limit = self.limit.min(self.ceiling);
        }
        self.signals = s;
    }

    fn close_window_if_done(&mut self, now: Instant) {
        let began = self.win.began.expect("window began");
        let n = self.win.latencies.len();
        let need = self.limit.max(8);
        let mut sorted = self.win.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let p50 = sorted[n / 2];
        let span = now.saturating_duration_since(began).as_secs_f64();
        if n < 4 || span <= 0.0 {
            return;
        }
        let mean_in_flight = self.win.in_flight_integral / span;
        let m = Measurement {
            tps: mean_in_flight * self.win.tokens as f64 / self.win.latency_sum.max(1e-9),
            p50_latency: p50,
            saturation: mean_in_flight / self.limit as f64,
            mean_waiting: (self.win.waiting.1 > 0)
                .then(|| self.win.waiting.0 / self.win.waiting.1 as f64),
            max_kv: self.win.max_kv,
        };
        // A probe that is clearly worse than the level it is compared with ends early:
        // where latency runs away (a server past its knee), a full window would take long.
        let reference = match self.phase {
            Phase::SlowStart { last: Some(p) } => Some(p.tps),
            Phase::Refine {
                stage: Stage::Up { center_tps } | Stage::Down { center_tps },
                ..
            } => Some(center_tps),
            _ => None,
        };
        let clearly_worse = reference.is_some_and(|r| m.tps < 0.75 * r);
        if (n < need || span < p50) && !clearly_worse {
            return;
        }
        self.last_p50 = p50;
        self.last_measurement = Some(m);
        self.decide(now, m);
    }

    fn set(&mut self, now: Instant, to: usize, reason: String, m: Option<Measurement>) {
        let to = to.clamp(self.lim.min, self.ceiling);
        let changed = to != self.limit;
        if changed {
            self.decision_count += 1;
            self.decisions.push_back(Decision {
                at_secs: now.saturating_duration_since(self.started).as_secs_f64(),
                from: self.limit,
                to,
                reason,
                tokens_per_sec: m.map(|m| m.tps),
                p50_latency_ms: m.map(|m| m.p50_latency * 1000.0),
            });
            if self.decisions.len() > KEEP_DECISIONS {
                self.decisions.pop_front();
            }
            self.limit = to;
        }
        // Any decision (even "stay") starts a new window; after a change, requests sent
        // at the old level settle first.
        let settling = if changed { self.in_flight } else { 0 };
        self.win = Window::new(now, self.tickets, settling);
    }

    /// Whether the server's own signals say more in flight would only queue.
    fn server_full(&self, m: &Measurement) -> Option<String> {
        if let Some(w) = m
            .mean_waiting
            .filter(|w| *w >= (0.1 * self.limit as f64).max(1.0))
        {
            return Some(format!("server queue non-empty ({w:.1} waiting)"));
        }
        if let Some(k) = m.max_kv.filter(|k| *k >= 0.95) {
            return Some(format!("KV cache {:.0}% full", k * 100.0));
        }
        None
    }

    fn decide(&mut self, now: Instant, m: Measurement) {
        let here = Point {
            limit: self.limit,
            tps: m.tps,
        };
        if self.lim.max_latency_secs > 0.0 && m.p50_latency > self.lim.max_latency_secs {
            let to = ((self.limit as f64 * 0.7).floor() as usize).max(self.lim.min);
            let why = format!(
                "median latency {:.2}s above max_latency_secs",
                m.p50_latency
            );
            return self.hold(now, to, why, Some(m));
        }
        // Too little work to fill the limit: this window says nothing about the server.
        if m.saturation < 0.85 {
            return self.set(now, self.limit, String::new(), None);
        }
        let full = self.server_full(&m);
        match self.phase {
            Phase::SlowStart { last } => {
                let gained = last.is_none_or(|p| m.tps >= p.tps * 1.05);
                if gained && full.is_none() && self.limit < self.ceiling {
                    self.phase = Phase::SlowStart { last: Some(here) };
                    let to = (self.limit * 2).min(self.ceiling);
                    return self.set(now, to, "slow start: doubling".into(), Some(m));
                }
                // Search around the better of the last two levels.
                let best = match last {
                    Some(p) if p.tps > here.tps => p,
                    _ => here,
                };
                let gap = last.map_or(self.limit / 2, |p| self.limit.abs_diff(p.limit));
                let step = (gap / 2).max(1);
                let why = full.unwrap_or_else(|| {
                    if gained {
                        "at the maximum".into()
                    } else {
                        format!("doubling gained under 5%: best {}", best.limit)
                    }
                });
                if best.limit == self.limit {
                    self.probe_up(now, here, step, m, why);
                } else {
                    self.measure_center(now, best.limit, step, m, why);
                }
            }
            Phase::Refine {
                center,
                step,
                stage,
            } => match stage {
                Stage::Center => self.probe_up(now, here, step, m, "measured".into()),
                Stage::Up { center_tps } if m.tps > center_tps * 1.02 && full.is_none() => {
                    let why = format!("up to {} paid", self.limit);
                    self.probe_up(now, here, step, m, why);
                }
                Stage::Up { center_tps } => {
                    let c = Point {
                        limit: center,
                        tps: center_tps,
                    };
                    let why = full.unwrap_or_else(|| "up did not pay".into());
                    self.probe_down(now, c, step, m, why);
                }
                // An even result favours the lower level: same tokens, less latency.
                Stage::Down { center_tps } if m.tps >= center_tps => {
                    let why = format!("down to {} paid", self.limit);
                    self.probe_down(now, here, step, m, why);
                }
                Stage::Down { center_tps } => {
                    let c = Point {
                        limit: center,
                        tps: center_tps,
                    };
                    self.narrow(now, c, step, m, "down did not pay".into());
                }
            },
            Phase::Hold { windows, since } => {
                // A single window's drop is no reason to move: the work's mix changes too
                // (long documents, short verdicts), so only a periodic re-probe does.
                let due = windows + 1 >= HOLD_WINDOWS
                    && now.saturating_duration_since(since).as_secs_f64() >= HOLD_SECS;
                let step = (self.limit / 8).max(1);
                if due {
                    self.probe_up(now, here, step, m, "periodic re-probe".into());
                } else {
                    self.phase = Phase::Hold {
                        windows: windows + 1,
                        since,
                    };
                    self.set(now, self.limit, String::new(), Some(m));
                }
            }
        }
    }

    fn hold(&mut self, now: Instant, limit: usize, why: String, m: Option<Measurement>) {
        self.phase = Phase::Hold {
            windows: 0,
            since: now,
        };
        self.set(now, limit, why, m);
    }

    /// Go to `center` and measure it before probing around it.
    fn measure_center(
        &mut self,
        now: Instant,
        center: usize,
        step: usize,
        m: Measurement,
        why: String,
    ) {
        self.phase = Phase::Refine {
            center,
            step,
            stage: Stage::Center,
        };
        self.set(now, center, why, Some(m));
    }

    /// Probe `c + step` (or, where it cannot go up, down).
    fn probe_up(&mut self, now: Instant, c: Point, step: usize, m: Measurement, why: String) {
        let up = (c.limit + step).min(self.ceiling);
        if up <= c.limit || self.server_full(&m).is_some() {
            return self.probe_down(now, c, step, m, why);
        }
        self.phase = Phase::Refine {
            center: c.limit,
            step,
            stage: Stage::Up { center_tps: c.tps },
        };
        self.set(now, up, why, Some(m));
    }

    /// Probe `c - step` (a step past the minimum shrinks to reach it).
    fn probe_down(&mut self, now: Instant, c: Point, step: usize, m: Measurement, why: String) {
        let down = c.limit.saturating_sub(step).max(self.lim.min);
        if down >= c.limit {
            return self.narrow(now, c, step, m, why);
        }
        self.phase = Phase::Refine {
            center: c.limit,
            step,
            stage: Stage::Down { center_tps: c.tps },
        };
        self.set(now, down, why, Some(m));
    }

    /// Neither side of `c` paid: halve the step (re-measuring `c`), or hold when it is
    /// already fine enough.
    fn narrow(&mut self, now: Instant, c: Point, step: usize, m: Measurement, why: String) {
        if step / 2 >= (c.limit / 16).max(1) {
            self.measure_center(now, c.limit, step / 2, m, format!("{why}: halving step"));
        } else {
            self.hold(
                now,
                c.limit,
                format!("{why}: converged at {}", c.limit),
                Some(m),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A simulated server: service time grows with load, and past `knee` in flight it
    /// grows faster than the load, so throughput peaks at `knee`.
    fn service_time(n: usize, knee: usize) -> f64 {
        let base = 0.1 * (1.0 + 0.5 * n.min(knee) as f64 / knee as f64);
        if n <= knee {
            base
        } else {
            base * (n as f64 / knee as f64).powi(2)
        }
    }

    /// Drive a controller against the simulated server for `secs` of simulated time with
    /// unlimited work; returns (final limit, tokens/s over the last half).
    fn simulate(knee: usize, lim: Limits, secs: f64, overload_at: Option<f64>) -> (usize, f64) {
        let t0 = Instant::now();
        let mut c = Controller::new(lim, t0);
        let mut now = 0.0f64;
        // (finish time, sent time, ticket) of requests in flight.
        let mut flying: Vec<(f64, f64, u64)> = Vec::new();
        let mut tokens_late = 0u64;
        let mut overloaded = false;
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        while now < secs {
            while flying.len() < c.limit() {
                let st = service_time(flying.len() + 1, knee);
                let ticket = c.on_send(at(now));
                flying.push((now + st, now, ticket));
            }
            flying.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (fin, sent, ticket) = flying.remove(0);
            now = fin;
            c.on_done(at(now), ticket, at(sent), 100);
            if now > secs / 2.0 {
                tokens_late += 100;
            }
            if let Some(o) = overload_at.filter(|o| now >= *o && !overloaded) {
                let _ = o;
                overloaded = true;
                c.on_overload(at(now), "429");
            }
        }
        (c.limit(), tokens_late as f64 / (secs / 2.0))
    }

    fn lim(min: usize, max: usize, initial: usize) -> Limits {
        Limits {
            min,
            max,
            initial,
            max_latency_secs: 0.0,
        }
    }

    fn best_tps(knee: usize) -> f64 {
        (1..=512)
            .map(|n| n as f64 * 100.0 / service_time(n, knee))
            .fold(0.0, f64::max)
    }

    #[test]
    fn converges_near_the_knee_from_below_and_above() {
        for (knee, initial) in [(24, 1), (24, 8), (64, 8), (6, 32)] {
            let (limit, tps) = simulate(knee, lim(1, 256, initial), 600.0, None);
            let best = best_tps(knee);
            assert!(
                tps >= 0.95 * best,
                "knee {knee} from {initial}: {tps:.0} tok/s vs best {best:.0} (limit {limit})"
            );
            assert!(
                limit as f64 >= knee as f64 * 0.6 && limit as f64 <= knee as f64 * 1.3,
                "knee {knee} from {initial}: limit {limit}"
            );
        }
    }

    #[test]
    fn respects_bounds_and_backs_off_on_overload() {
        let (limit, _) = simulate(200, lim(2, 16, 4), 120.0, None);
        assert_eq!(limit, 16, "a knee past max stops at max");
        let t0 = Instant::now();
        let mut c = Controller::new(lim(2, 64, 40), t0);
        c.on_overload(t0, "429");
        assert_eq!(c.limit(), 28);
        // A burst of 429s within one latency period is one cut.
        c.on_overload(t0 + Duration::from_millis(10), "429");
        assert_eq!(c.limit(), 28);
        assert_eq!(c.decisions.len(), 1);
        assert!(c.decisions[0].reason.contains("429"));
        for k in 0..20 {
            c.on_overload(t0 + Duration::from_secs(1 + k), "503");
        }
        assert_eq!(c.limit(), 2, "never below min");
    }

    #[test]
    fn slot_count_caps_and_a_full_queue_stops_growth() {
        let t0 = Instant::now();
        let mut c = Controller::new(lim(1, 256, 64), t0);
        c.on_signals(Signals {
            slots: Some(8),
            ..Default::default()
        });
        assert_eq!(c.limit(), 8);
        let m = Measurement {
            tps: 100.0,
            p50_latency: 0.1,
            saturation: 1.0,
            mean_waiting: Some(3.0),
            max_kv: None,
        };
        let mut c = Controller::new(lim(1, 256, 4), t0);
        c.decide(t0, m);
        assert_eq!(
            c.limit(),
            3,
            "a server queue means probing down, not doubling"
        );
        assert!(c.decisions[0].reason.contains("queue"));
    }

    #[test]
    fn undersaturated_windows_decide_nothing() {
        let t0 = Instant::now();
        let mut c = Controller::new(lim(1, 256, 16), t0);
        let m = Measurement {
            tps: 10.0,
            p50_latency: 0.1,
            saturation: 0.3,
            mean_waiting: None,
            max_kv: None,
        };
        c.decide(t0, m);
        assert_eq!(c.limit(), 16);
        assert_eq!(c.phase_name(), "slow-start");
    }
}
