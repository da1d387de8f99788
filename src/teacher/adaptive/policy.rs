//! The controller's policy: from a window's measurement, the next limit (slow start,
//! refine, hold; back-offs), and the record of each change.

use super::measure::{Measurement, Mix, Window};
use super::{Controller, Decision, HOLD_SECS, HOLD_WINDOWS, KEEP_DECISIONS, SLOTS_KEEP};
use std::time::Instant;

#[derive(Debug, Clone)]
pub(super) struct Point {
    limit: usize,
    mix: Mix,
}

/// What a refine window measures.
#[derive(Debug, Clone)]
pub(super) enum Stage {
    Center,
    Up { center: Mix },
    Down { center: Mix },
}

#[derive(Debug, Clone)]
pub(super) enum Phase {
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

impl Controller {
    /// The window a probe is compared with: the level before in slow start, the center
    /// in refine.
    pub(super) fn reference(&self) -> Option<&Mix> {
        match &self.phase {
            Phase::SlowStart { last: Some(p) } => Some(&p.mix),
            Phase::Refine {
                stage: Stage::Up { center } | Stage::Down { center },
                ..
            } => Some(center),
            _ => None,
        }
    }

    /// The server stated its parallel slots (the ceiling is theirs).
    fn slots_stated(&self) -> bool {
        self.signals.slots.is_some_and(|n| n > 0)
    }

    fn set(&mut self, now: Instant, to: usize, reason: String, m: Option<Measurement>) {
        let to = to.clamp(self.lim.min, self.ceiling);
        let reason = match self.runaway.take() {
            Some(why) => format!("{why}; {reason}"),
            None => reason,
        };
        let changed = to != self.limit;
        if changed {
            self.decision_count += 1;
            self.decisions.push_back(Decision {
                at_secs: now.saturating_duration_since(self.started).as_secs_f64(),
                from: self.limit,
                to,
                reason,
                tokens_per_sec: m.as_ref().map(|m| m.tps),
                p50_latency_ms: m.as_ref().map(|m| m.p50_latency * 1000.0),
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

    pub(super) fn decide(&mut self, now: Instant, m: Measurement) {
        let here = Point {
            limit: self.limit,
            mix: m.mix.clone(),
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
        match self.phase.clone() {
            Phase::SlowStart { last } => {
                let vs_last = last.as_ref().map(|p| here.mix.ratio_to(&p.mix));
                let gained = vs_last.is_none_or(|r| r >= 1.05);
                // Every level before gained on the one before it: the best is here or last.
                // Stated slots reached by doubling are kept unless clearly worse.
                let keep = if self.slots_stated() && self.limit == self.ceiling {
                    SLOTS_KEEP
                } else {
                    1.0
                };
                let best = match &last {
                    Some(p) if vs_last.is_some_and(|r| r < keep) => p.clone(),
                    _ => here.clone(),
                };
                if gained && full.is_none() && self.limit < self.ceiling {
                    self.phase = Phase::SlowStart { last: Some(here) };
                    let to = (self.limit * 2).min(self.ceiling);
                    return self.set(now, to, "slow start: doubling".into(), Some(m));
                }
                let gap = last
                    .as_ref()
                    .map_or(self.limit / 2, |p| self.limit.abs_diff(p.limit));
                let step = (gap / 4).max(1);
                let why = full.unwrap_or_else(|| {
                    if gained {
                        "at the maximum".into()
                    } else {
                        format!("doubling gained under 5%: best {}", best.limit)
                    }
                });
                // The stated slots were best: nothing above them to probe, and below
                // them the hold's periodic re-probe looks in its time.
                if self.slots_stated() && best.limit == self.ceiling {
                    return self.hold(now, best.limit, why, Some(m));
                }
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
                Stage::Up { center: c } if here.mix.ratio_to(&c) > 1.02 && full.is_none() => {
                    let why = format!("up to {} paid", self.limit);
                    self.probe_up(now, here, step, m, why);
                }
                Stage::Up { center: c } => {
                    let c = Point {
                        limit: center,
                        mix: c,
                    };
                    let why = full.unwrap_or_else(|| "up did not pay".into());
                    self.probe_down(now, c, step, m, why);
                }
                // An even result favours the lower level: same tokens, less latency.
                Stage::Down { center: c } if here.mix.ratio_to(&c) >= 1.0 => {
                    let why = format!("down to {} paid", self.limit);
                    self.probe_down(now, here, step, m, why);
                }
                Stage::Down { center: c } => {
                    let c = Point {
                        limit: center,
                        mix: c,
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

    pub(super) fn hold(&mut self, now: Instant, limit: usize, why: String, m: Option<Measurement>) {
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
            stage: Stage::Up { center: c.mix },
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
            stage: Stage::Down { center: c.mix },
        };
        self.set(now, down, why, Some(m));
    }

    /// Neither side of `c` paid: halve the step (re-measuring `c`), or hold when it is
    /// already fine enough.
    fn narrow(&mut self, now: Instant, c: Point, step: usize, m: Measurement, why: String) {
        if step / 2 >= (c.limit / 4).max(1) {
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
