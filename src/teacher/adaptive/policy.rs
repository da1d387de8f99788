//! The controller's policy: from each window's measurement, the next limit. A small state
//! machine, documented in docs/adaptive-concurrency.md:
//!
//! - **climb**: from the initial level, x2 while each step gains at least 60% (the server
//!   still scales nearly linearly), x1.5 once a step gains less (the knee is near), and
//!   stop at the first step that gains under 5%;
//! - **explore**: around the best level seen (the center), measure the level a step below,
//!   then the one a step above; move to a neighbour as soon as it beats the center by 2%,
//!   halve the step when neither does, and hold once the step would fall under an eighth
//!   of the level. Levels measured in the last few windows are not measured again;
//! - **hold**: stay at the center, and explore again (one small step each way) every
//!   `HOLD_WINDOWS` windows, or at once when two windows in a row are 15% off the
//!   center's estimate, either way (the server slowed down or sped up: its knee moved).
//!
//! Every window goes into the book of estimates per level (`record`), older windows
//! weighing half as much with each newer one, so a comparison rests on all the recent
//! windows of both levels, on the request mix they share.

use super::measure::{Measurement, Mix};
use super::{
    Controller, Decision, FRESH_WINDOWS, HOLD_SHIFT, HOLD_WINDOWS, KEEP_DECISIONS, SLOTS_KEEP,
};
use std::time::Instant;

/// What is known of one level.
#[derive(Debug, Clone)]
pub(super) struct Estimate {
    /// The level's windows merged (`Mix::merge`).
    pub(super) mix: Mix,
    /// The window (control period) that measured it last.
    pub(super) period: u64,
    /// Windows merged into it.
    pub(super) windows: u32,
}

#[derive(Debug, Clone)]
pub(super) enum Phase {
    /// Growing from the initial level; `prev` is the level measured before this one.
    Climb { prev: Option<usize> },
    /// Measuring the neighbours of the best level.
    Explore(Explore),
    /// At the best level: `windows` since the last exploration, `off` windows in a row
    /// off the level's estimate when the hold began (`base`; negative: under it).
    Hold {
        windows: u32,
        off: i32,
        base: Option<Mix>,
    },
}

/// Where an exploration stands: the neighbours of `center` at `step` are measured,
/// `down_first` the side below first; `moving`: the last step was a move that way (down:
/// true), and another move the same way doubles the step; `confirm`: a neighbour that
/// beats the center is measured twice before the move (a held level's re-probe: one
/// window of a mixed workload is noisier than the 2% a move needs).
#[derive(Debug, Clone, Copy)]
pub(super) struct Explore {
    center: usize,
    step: usize,
    down_first: bool,
    moving: Option<bool>,
    confirm: bool,
}

impl Explore {
    fn around(center: usize, step: usize, down_first: bool) -> Explore {
        Explore {
            center,
            step,
            down_first,
            moving: None,
            confirm: false,
        }
    }
}

/// Windows of a level after which it is compared on its own mix where it shares none.
const UNSHARED: u32 = 3;
/// A step that gains this much (x2 in level) continues to double.
const SCALING: f64 = 1.6;
/// A climbing step must gain this much to go on.
const CLIMB_GAIN: f64 = 1.05;
/// A neighbour must beat the center by this much to become the center.
const MOVE_GAIN: f64 = 1.02;

impl Controller {
    /// The level a probe is compared with and its estimate: the level before in the
    /// climb, the center while exploring (none while measuring the center itself, or
    /// holding).
    pub(super) fn reference(&self) -> Option<(usize, &Mix)> {
        let level = match self.phase {
            Phase::Climb { prev } => prev?,
            Phase::Explore(e) if e.center != self.limit => e.center,
            _ => return None,
        };
        self.book.get(&level).map(|e| (level, &e.mix))
    }

    pub(super) fn climbing(&self) -> bool {
        matches!(self.phase, Phase::Climb { .. })
    }

    /// The server stated its parallel slots (the ceiling is theirs).
    fn slots_stated(&self) -> bool {
        self.signals.slots.is_some_and(|n| n > 0)
    }

    fn set(&mut self, now: Instant, to: usize, reason: String, m: Option<&Measurement>) {
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
                window: self.period,
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
        // Any decision (even "stay") starts a new window. After a change, the requests
        // sent at the old level settle first, and the window counts only the requests
        // sent after them (`Window::counted_from`): a step up's burst goes out while the
        // old ones are still in the server, each at a load between the two levels.
        let settling = if changed { self.in_flight } else { 0 };
        self.win = super::measure::Window::new(now, self.tickets, settling);
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

    /// Adds a window of `level` to the book (merged with the level's estimate while that is
    /// fresh).
    fn record(&mut self, level: usize, mix: &Mix) {
        let period = self.period;
        // A stale estimate is replaced: the server may have changed since.
        let (mix, windows) = match self.book.get(&level) {
            Some(e) if self.fresh(level) => (mix.merge(&e.mix, 0.5), e.windows + 1),
            _ => (mix.clone(), 1),
        };
        self.book.insert(
            level,
            Estimate {
                mix,
                period,
                windows,
            },
        );
    }

    fn fresh(&self, level: usize) -> bool {
        self.book
            .get(&level)
            .is_some_and(|e| self.period - e.period <= FRESH_WINDOWS)
    }

    /// Level `a`'s throughput over level `b`'s, on the book (None: one is not in it, or
    /// their windows are not comparable yet). Where `a` has been measured `UNSHARED`
    /// times and still shares no stage with `b`, each on its own mix: better a rough
    /// comparison than none.
    fn ratio(&self, a: usize, b: usize) -> Option<f64> {
        let (ea, eb) = (self.book.get(&a)?, self.book.get(&b)?);
        ea.mix
            .ratio_to(&eb.mix)
            .or_else(|| (ea.windows >= UNSHARED).then(|| ea.mix.tps() / eb.mix.tps().max(1e-9)))
    }

    /// The highest level a probe may go to now: under the fence, within the ceiling.
    fn top(&self) -> usize {
        match self.fence {
            Some(f) => f.saturating_sub(1).min(self.ceiling),
            None => self.ceiling,
        }
    }

    /// The smallest step explored around `level`.
    fn min_step(level: usize) -> usize {
        (level / 8).max(1)
    }

    pub(super) fn decide(&mut self, now: Instant, m: Measurement) {
        self.period += 1;
        tracing::debug!(
            target: "mediflow::adaptive",
            window = self.period,
            level = self.limit,
            tps = m.tps,
            in_flight = m.mix.mean_in_flight,
            p50_ms = m.p50_latency * 1000.0,
            kinds = ?m.mix.kinds.iter().map(|k| (k.kind, k.n, k.tokens / k.n, 1000.0 * k.latency / k.n)).collect::<Vec<_>>(),
            "window"
        );
        if self.lim.max_latency_secs > 0.0 && m.p50_latency > self.lim.max_latency_secs {
            let to = ((self.limit as f64 * 0.7).floor() as usize).max(self.lim.min);
            let why = format!(
                "median latency {:.2}s above max_latency_secs",
                m.p50_latency
            );
            return self.hold(now, to, why, Some(&m));
        }
        // Too little work to fill the limit: this window says nothing about the server.
        if m.saturation < 0.85 {
            return self.set(now, self.limit, String::new(), None);
        }
        let level = self.limit;
        self.record(level, &m.mix);
        let full = self.server_full(&m);
        match self.phase.clone() {
            Phase::Climb { prev } => self.climb(now, level, prev, full, &m),
            Phase::Explore(at) => self.explore(now, at, full, String::new(), &m),
            Phase::Hold { windows, off, base } => {
                // Windows in a row off the estimate the hold began with, by more than
                // `HOLD_SHIFT` either way (negative: under it).
                let r = base.as_ref().and_then(|b| m.mix.ratio_to(b)).unwrap_or(1.0);
                let dir = if r < 1.0 / HOLD_SHIFT {
                    -1
                } else if r > HOLD_SHIFT {
                    1
                } else {
                    0
                };
                let off = if dir != 0 && off.signum() == dir {
                    off + dir
                } else {
                    dir
                };
                if off.abs() >= 2 {
                    // The server changed: what the book says is stale, this level's
                    // estimate too (it is measured again first).
                    self.book.clear();
                    self.fence = None;
                    let why = format!(
                        "two windows {:.0}% {} the estimate: exploring again",
                        (HOLD_SHIFT - 1.0) * 100.0,
                        if off < 0 { "under" } else { "over" }
                    );
                    let at = Explore::around(level, (level / 4).max(1), off < 0);
                    return self.explore(now, at, full, why, &m);
                }
                if windows + 1 >= HOLD_WINDOWS {
                    let why = "periodic re-probe".to_string();
                    // Alternate the side tried first, so both get their turn.
                    self.reprobe_down = !self.reprobe_down;
                    let at = Explore {
                        confirm: true,
                        ..Explore::around(level, Self::min_step(level), self.reprobe_down)
                    };
                    return self.explore(now, at, full, why, &m);
                }
                self.phase = Phase::Hold {
                    windows: windows + 1,
                    off,
                    base,
                };
                self.set(now, level, String::new(), Some(&m));
            }
        }
    }

    fn climb(
        &mut self,
        now: Instant,
        level: usize,
        prev: Option<usize>,
        full: Option<String>,
        m: &Measurement,
    ) {
        let gain = match prev.map(|p| self.ratio(level, p)) {
            // Not comparable with the level before yet: measure this one again.
            Some(None) => return self.set(now, level, String::new(), Some(m)),
            g => g.flatten(),
        };
        // A climb that reached the stated slots holds there unless clearly worse: the
        // server batches all its slots, and single windows are noisier than that (on the
        // 2-core proof server, fixed 16 = its slots was the best level in every round).
        if self.slots_stated() && level == self.ceiling && gain.is_none_or(|g| g >= SLOTS_KEEP) {
            return self.hold(now, level, "at the server's stated slots".into(), Some(m));
        }
        let gained = gain.is_none_or(|g| g >= CLIMB_GAIN);
        if gained && full.is_none() && level < self.top() {
            let factor = if gain.is_none_or(|g| g >= SCALING) {
                2.0
            } else {
                1.5
            };
            let to = ((level as f64 * factor).ceil() as usize)
                .max(level + 1)
                .min(self.top());
            self.phase = Phase::Climb { prev: Some(level) };
            let why = match gain {
                Some(g) => format!(
                    "climb x{factor}: the last step gained {:.0}%",
                    (g - 1.0) * 100.0
                ),
                None => format!("climb x{factor}"),
            };
            return self.set(now, to, why, Some(m));
        }
        // The climb is over: the best is the better end of the last step (within 2%, the
        // lower: the same tokens at less latency), and the knee lies within that step of
        // it. Explore a quarter of the step each way, the cheaper side (below: shorter
        // latency, no collapse) first; half of it after an even step (within 5% either
        // way), whose two ends may have the peak anywhere between them.
        let gap = prev.map_or(level, |p| level.abs_diff(p));
        let best = match (prev, gain) {
            (Some(p), Some(g)) if g < MOVE_GAIN => p,
            _ => level,
        };
        let even = gain.is_some_and(|g| g > 1.0 / CLIMB_GAIN && g < CLIMB_GAIN);
        let step = if even { gap / 2 } else { gap / 4 };
        let why = full.unwrap_or_else(|| match gain {
            Some(g) if !gained => format!(
                "the step to {level} gained {:.0}%: exploring around {best}",
                (g - 1.0) * 100.0
            ),
            _ => "at the maximum".into(),
        });
        let at = Explore::around(best, step.max(1), true);
        self.explore(now, at, self.server_full(m), why, m)
    }

    /// Explore around the center: measure the next neighbour the book lacks, move to one
    /// that beats the center, halve the step when none does, or hold.
    fn explore(
        &mut self,
        now: Instant,
        mut at: Explore,
        full: Option<String>,
        mut why: String,
        m: &Measurement,
    ) {
        let join = |why: &mut String, more: String| {
            *why = if why.is_empty() {
                more
            } else {
                format!("{why}; {more}")
            };
        };
        // Each pass measures, moves, halves or holds. Comparisons on different common
        // mixes need not be transitive (28 beat 32, 24 beat 28, 32 beat 24): a move goes
        // only to a level not yet the center in this pass, so the loop ends.
        let mut visited = vec![at.center];
        loop {
            let Explore {
                center,
                step,
                down_first,
                moving,
                ..
            } = at;
            if !self.fresh(center) {
                self.phase = Phase::Explore(at);
                join(&mut why, format!("measuring {center}"));
                return self.set(now, center, why, Some(m));
            }
            let down = center.saturating_sub(step).max(self.lim.min);
            // Up to the ceiling, but not to the fence: a step that would reach it waits
            // for a smaller step.
            let up = (center + step).min(self.ceiling);
            let up = if up <= self.top() { up } else { center };
            let sides = if down_first { [down, up] } else { [up, down] };
            let mut moved = None;
            for side in sides {
                if side == center || (side > center && full.is_some()) {
                    continue;
                }
                // Measured long ago, or not comparable with the center yet: (again).
                let Some(r) = self.ratio(side, center).filter(|_| self.fresh(side)) else {
                    self.phase = Phase::Explore(at);
                    return self.set(now, side, why, Some(m));
                };
                if r >= MOVE_GAIN && !visited.contains(&side) {
                    if at.confirm && self.book[&side].windows < 2 {
                        self.phase = Phase::Explore(at);
                        return self.set(now, side, why, Some(m));
                    }
                    join(
                        &mut why,
                        format!("{side} beat {center} by {:.0}%", (r - 1.0) * 100.0),
                    );
                    moved = Some(side);
                    break;
                }
            }
            at = match moved {
                // Keep going the way that paid, twice as far after two moves that way.
                Some(side) => {
                    visited.push(side);
                    let down = side < center;
                    let step = if moving == Some(down) {
                        (step * 2).min((side / 2).max(1))
                    } else {
                        step
                    };
                    Explore {
                        center: side,
                        step,
                        down_first: down,
                        moving: Some(down),
                        confirm: false,
                    }
                }
                None if step / 2 >= Self::min_step(center) => Explore {
                    step: step / 2,
                    moving: None,
                    ..at
                },
                None => {
                    join(&mut why, format!("neither side paid: holding {center}"));
                    return self.hold(now, center, why, Some(m));
                }
            };
        }
    }

    pub(super) fn hold(
        &mut self,
        now: Instant,
        limit: usize,
        why: String,
        m: Option<&Measurement>,
    ) {
        let base = self.book.get(&limit).map(|e| e.mix.clone());
        self.phase = Phase::Hold {
            windows: 0,
            off: 0,
            base,
        };
        self.set(now, limit, why, m);
    }
}
