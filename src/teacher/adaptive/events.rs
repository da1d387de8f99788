//! The controller's signal handling: requests sent and done, overload answers, the
//! monitor's tick and the server's load signals feed the current window; a window that
//! is complete (or a probe whose latency ran away) goes to the policy to decide.

use super::measure::{KindSums, Measurement, Mix};
use super::{Controller, Signals, CLEARLY_WORSE};
use std::time::Instant;

impl Controller {
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
        self.sent.push_back((self.tickets, now));
        self.tickets += 1;
        self.tickets - 1
    }

    /// A request of `kind` (its pipeline stage) sent at `sent` finished with `tokens`
    /// completion tokens (failures that are not overload pass 0 tokens: they took a slot
    /// and produced nothing).
    pub fn on_done(
        &mut self,
        now: Instant,
        ticket: u64,
        sent: Instant,
        tokens: u64,
        kind: &'static str,
    ) {
        self.advance(now);
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(i) = self.sent.iter().position(|(t, _)| *t == ticket) {
            self.sent.remove(i);
        }
        let latency = now.saturating_duration_since(sent).as_secs_f64();
        match self.seen.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.seen.push((kind, 1)),
        }
        if self.end_runaway_probe(now) {
            return;
        }
        if self.win.began.is_none() {
            if ticket < self.win.first_ticket {
                self.win.settling = self.win.settling.saturating_sub(1);
            }
            if self.win.settling == 0 {
                self.win.began = Some(now);
                self.win.counted_from = self.tickets;
            }
            return;
        }
        // Sent while the load was still moving to the new level (a burst after a step
        // up, on a server that sets a request's pace as it arrives): not this level's.
        if ticket < self.win.counted_from {
            return;
        }
        let i = match self.win.kinds.iter().position(|k| k.kind == kind) {
            Some(i) => i,
            None => {
                self.win.kinds.push(KindSums {
                    kind,
                    n: 0.0,
                    tokens: 0.0,
                    latency: 0.0,
                });
                self.win.kinds.len() - 1
            }
        };
        let k = &mut self.win.kinds[i];
        k.n += 1.0;
        k.tokens += tokens as f64;
        k.latency += latency;
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

    /// Time passed with no request sent or done (the endpoint monitor calls this every
    /// tick): a probe whose requests stall ends here, not at their timeouts.
    pub fn on_tick(&mut self, now: Instant) {
        self.advance(now);
        self.end_runaway_probe(now);
    }

    /// End a probe whose latency has run away before its requests complete. By Little's
    /// law, the probe's level sustains the reference's request rate x `CLEARLY_WORSE`
    /// only with a mean latency under `limit / (that rate)`; once half the level's
    /// requests sent in this window (and at least 4) have waited twice that, the mean is
    /// past it, so the probe is clearly worse. Past a knee a full window could take many
    /// minutes, and its requests would run into the client's timeout. Returns whether it
    /// ended one.
    fn end_runaway_probe(&mut self, now: Instant) -> bool {
        // Only a probe above its reference: below it, long requests of a mixed workload
        // are no runaway (and the fence would shut the levels above).
        let Some((_, r)) = self.reference().filter(|(l, _)| *l < self.limit) else {
            return false;
        };
        let (n, latency) = r
            .kinds
            .iter()
            .fold((0.0, 0.0), |(n, l), k| (n + k.n, l + k.latency));
        if n == 0.0 || latency <= 0.0 {
            return false;
        }
        let rate = r.mean_in_flight * n / latency;
        let bound = 2.0 * self.limit as f64 / (CLEARLY_WORSE * rate);
        let first = self.win.first_ticket;
        let waited: Vec<f64> = self
            .sent
            .iter()
            .filter(|(t, _)| *t >= first)
            .map(|(_, s)| now.saturating_duration_since(*s).as_secs_f64())
            .collect();
        let stalled = waited.iter().filter(|w| **w > bound).count();
        // Half the level, and never fewer than a window's smallest sample: at a few in
        // flight, one long request of a mixed workload is no runaway.
        if stalled < (self.limit / 2).max(4) {
            return false;
        }
        // What the window measured: its completions, if any, at the requests in flight.
        let mix = Mix {
            mean_in_flight: self.in_flight as f64,
            kinds: self.win.kinds.clone(),
        };
        let mut sorted = waited;
        sorted.sort_by(f64::total_cmp);
        let m = Measurement {
            tps: mix.tps(),
            saturation: 1.0,
            mix: Mix {
                // Nothing is comparable: no tokens at this level (the decision below sees
                // a ratio of 0 to the reference).
                mean_in_flight: 0.0,
                ..mix
            },
            p50_latency: sorted[sorted.len() / 2],
            mean_waiting: None,
            max_kv: self.win.max_kv,
        };
        self.last_p50 = m.p50_latency;
        // No probe at this level or above again: each would cost the time its requests
        // take to drain, and past a collapse that is long.
        self.fence = Some(self.fence.map_or(self.limit, |f| f.min(self.limit)));
        self.runaway = Some(format!(
            "latency ran away: {stalled} requests waiting over {bound:.1}s"
        ));
        self.last_measurement = Some(m.clone());
        self.decide(now, m);
        true
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
        // `/slots` is read once; later readings keep its count for the report.
        self.signals = Signals {
            slots: s.slots.or(self.signals.slots),
            ..s
        };
    }

    fn close_window_if_done(&mut self, now: Instant) {
        let began = self.win.began.expect("window began");
        let n = self.win.latencies.len();
        // The climb compares levels twice apart (gains of 60% or 5%); the exploration
        // compares neighbours (2%) and needs more completions to tell them apart.
        let need = self.limit.max(if self.climbing() { 12 } else { 24 });
        let mut sorted = self.win.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let p50 = sorted[n / 2];
        let span = now.saturating_duration_since(began).as_secs_f64();
        if n < 4 || span <= 0.0 {
            return;
        }
        let mix = Mix {
            mean_in_flight: self.win.in_flight_integral / span,
            kinds: self.win.kinds.clone(),
        };
        let m = Measurement {
            tps: mix.tps(),
            saturation: mix.mean_in_flight / self.limit as f64,
            mix,
            p50_latency: p50,
            mean_waiting: (self.win.waiting.1 > 0)
                .then(|| self.win.waiting.0 / self.win.waiting.1 as f64),
            max_kv: self.win.max_kv,
        };
        // A probe that is clearly worse than the level it is compared with ends early,
        // once it has half its completions: where latency runs away (a server past its
        // knee), a full window would take long.
        let clearly_worse = n >= need / 2
            && self
                .reference()
                .and_then(|(_, r)| m.mix.ratio_to(r))
                .is_some_and(|r| r < CLEARLY_WORSE);
        if (n < need || span < p50 || !self.covers_common_kinds()) && !clearly_worse {
            return;
        }
        self.last_p50 = p50;
        self.last_measurement = Some(m.clone());
        self.decide(now, m);
    }

    /// Whether the window has seen every kind of request that makes up a tenth of the
    /// run's completions. A pipeline's items go through their stages together after a
    /// start or a change, so a window of one stage alone would rank the stage, not the
    /// level: a long-prompt stage generates fewer tokens per second than a short one.
    fn covers_common_kinds(&self) -> bool {
        let total: u64 = self.seen.iter().map(|(_, n)| n).sum();
        self.seen
            .iter()
            .filter(|(_, n)| *n * 10 >= total)
            .all(|(k, _)| self.win.kinds.iter().any(|w| w.kind == *k))
    }
}
