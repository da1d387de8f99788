//! The endpoints of an OpenAI-compatible teacher: where each request goes, how many each
//! endpoint has in flight (its own adaptive controller, or no cap of its own when the
//! engine's fixed concurrency governs), and whether it is healthy.
//!
//! A request takes a slot on the endpoint with the most spare capacity and gives it back
//! with its outcome. Consecutive failures drain an endpoint (no new requests); a monitor
//! probes every endpoint (`GET /models`) and brings a drained one back when it answers,
//! starting its controller afresh. While every endpoint is down, requests wait for one
//! (up to `all_down_wait_secs`) instead of failing. The monitor also reads each server's
//! load signals for its controller.

use super::adaptive::{Controller, Limits};
use super::signals;
use crate::teacher::config::{AdaptiveConfig, HealthConfig};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How a request ended, for its endpoint's bookkeeping.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// An answer (possibly unusable, e.g. truncated) with its completion tokens.
    Answered { tokens: u64 },
    /// 429 or 503: the server asks for less.
    Overloaded { retry_after: Option<Duration> },
    /// No answer: connection refused or reset, other 5xx.
    Failed,
    /// No answer within the client's timeout.
    TimedOut,
    /// Refused for the request's own sake (4xx): says nothing about the endpoint.
    Refused,
}

struct State {
    ctl: Option<Controller>,
    in_flight: usize,
    healthy: bool,
    consecutive_failures: u32,
    paused_until: Option<Instant>,
    requests: u64,
    completion_tokens: u64,
    failures: u64,
    drains: u64,
    failed_probes: u32,
    /// When a request last got an answer (a busy server may be slow to answer a probe).
    last_answer: Option<Instant>,
    /// The server has no `/metrics` we understand (stop asking).
    no_metrics: bool,
    /// `/slots` was read since the endpoint (re)joined: a server read once per start.
    slots_read: bool,
}

pub struct Endpoint {
    /// Base URL ending in `/v1` (or whatever the user gave), without a trailing slash.
    pub base: String,
    /// The server root (`base` without `/v1`), where `/metrics` and `/slots` live.
    root: String,
    st: Mutex<State>,
}

/// A request's claim on an endpoint; give it back with `Pool::release`.
pub struct Slot {
    pub ep: usize,
    ticket: u64,
    sent: Instant,
}

pub struct Pool {
    pub endpoints: Vec<Endpoint>,
    limits: Option<Limits>,
    health: HealthConfig,
    signals: bool,
    notify: Notify,
    /// Requests waiting for room line up here (tokio's mutex is fair) and only the head
    /// looks for a slot, so room freed goes to the oldest waiter, as under the engine's
    /// fixed-concurrency semaphore. Without it every release woke all waiters and the
    /// scheduler's pick (often the newest) won: older items' later stages waited behind
    /// newer items' first ones, and a server's prompt cache was reused less.
    queue: tokio::sync::Mutex<()>,
    rotate: AtomicUsize,
}

/// Pools alive in this process, by their endpoints and settings: two teachers on the same
/// servers (a generator and a judge) share one pool, so each server has one controller.
static POOLS: Mutex<Vec<(String, Weak<Pool>)>> = Mutex::new(Vec::new());

impl Pool {
    /// The pool for these endpoints and settings: an existing one, or a new one (`true`).
    pub fn shared(
        base_urls: &[String],
        adaptive: &AdaptiveConfig,
        health: &HealthConfig,
    ) -> (Arc<Pool>, bool) {
        let key = format!("{base_urls:?} {adaptive:?} {health:?}");
        let mut pools = POOLS.lock().unwrap();
        pools.retain(|(_, w)| w.strong_count() > 0);
        if let Some(p) = pools
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, w)| w.upgrade())
        {
            return (p, false);
        }
        let p = Arc::new(Pool::new(base_urls, adaptive, health));
        pools.push((key, Arc::downgrade(&p)));
        (p, true)
    }

    fn new(base_urls: &[String], adaptive: &AdaptiveConfig, health: &HealthConfig) -> Pool {
        let limits = adaptive.enabled.then_some(Limits {
            min: adaptive.min,
            max: adaptive.max,
            initial: adaptive.initial,
            max_latency_secs: adaptive.max_latency_secs,
        });
        let now = Instant::now();
        let endpoints = base_urls
            .iter()
            .map(|b| {
                let base = b.trim_end_matches('/').to_string();
                Endpoint {
                    root: base.strip_suffix("/v1").unwrap_or(&base).to_string(),
                    base,
                    st: Mutex::new(State {
                        ctl: limits.map(|l| Controller::new(l, now)),
                        in_flight: 0,
                        healthy: true,
                        consecutive_failures: 0,
                        paused_until: None,
                        requests: 0,
                        completion_tokens: 0,
                        failures: 0,
                        drains: 0,
                        last_answer: None,
                        failed_probes: 0,
                        no_metrics: false,
                        slots_read: false,
                    }),
                }
            })
            .collect();
        Pool {
            endpoints,
            limits,
            health: health.clone(),
            signals: adaptive.enabled && adaptive.signals,
            notify: Notify::new(),
            queue: tokio::sync::Mutex::new(()),
            rotate: AtomicUsize::new(0),
        }
    }

    /// The most requests this pool can have in flight (None: no cap of its own).
    pub fn capacity(&self) -> Option<usize> {
        self.limits.map(|l| l.max * self.endpoints.len())
    }

    /// The requests this pool lets into flight now: its controllers' limits, summed.
    pub fn current_limit(&self) -> Option<usize> {
        self.limits?;
        let limits = self.endpoints.iter().map(|e| {
            let st = e.st.lock().unwrap();
            st.ctl.as_ref().map_or(0, |c| c.limit())
        });
        Some(limits.sum())
    }

    pub fn adaptive(&self) -> bool {
        self.limits.is_some()
    }

    /// Whether every endpoint is drained (the circuit is open): requests wait in
    /// `acquire` until a probe brings one back.
    pub fn all_down(&self) -> bool {
        !self.endpoints.iter().any(|e| e.st.lock().unwrap().healthy)
    }

    /// Whether an endpoint not in `tried` is healthy.
    pub fn healthy_untried(&self, tried: &[usize]) -> bool {
        self.endpoints
            .iter()
            .enumerate()
            .any(|(i, e)| !tried.contains(&i) && e.st.lock().unwrap().healthy)
    }

    /// Take a slot on the healthy endpoint with the most spare capacity, preferring ones
    /// not in `tried`; waits while none has room (or all are down, up to the configured
    /// wait). Waiters are served first come, first served.
    pub async fn acquire(&self, tried: &[usize]) -> Result<Slot, String> {
        let waited_since = Instant::now();
        let _turn = self.queue.lock().await;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let (slot, any_healthy, next_unpause) = self.try_take(tried, now);
            match slot {
                Some(Some(s)) => return Ok(s),
                // Another request took the last room first: look again.
                Some(None) => continue,
                None => {}
            }
            let max_wait = Duration::from_secs_f64(self.health.all_down_wait_secs);
            if !any_healthy && waited_since.elapsed() >= max_wait {
                return Err(format!(
                    "no healthy endpoint for {:.0}s ({})",
                    max_wait.as_secs_f64(),
                    self.endpoints
                        .iter()
                        .map(|e| e.base.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let nap = next_unpause
                .map(|t| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_secs(1))
                .clamp(Duration::from_millis(5), Duration::from_secs(1));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// (the slot taken, or `Some(None)` if the chosen endpoint filled up meanwhile; whether
    /// any endpoint is healthy; when the next paused one resumes).
    #[allow(clippy::type_complexity)]
    fn try_take(
        &self,
        tried: &[usize],
        now: Instant,
    ) -> (Option<Option<Slot>>, bool, Option<Instant>) {
        let n = self.endpoints.len();
        let start = self.rotate.fetch_add(1, Ordering::Relaxed) % n;
        let mut any_healthy = false;
        let mut next_unpause: Option<Instant> = None;
        // (untried, spare fraction) is the preference, highest first.
        let mut best: Option<(usize, (bool, f64))> = None;
        for k in 0..n {
            let i = (start + k) % n;
            let st = self.endpoints[i].st.lock().unwrap();
            if !st.healthy {
                continue;
            }
            any_healthy = true;
            if let Some(t) = st.paused_until.filter(|t| *t > now) {
                next_unpause = Some(next_unpause.map_or(t, |u| u.min(t)));
                continue;
            }
            let limit = st.ctl.as_ref().map_or(usize::MAX, |c| c.limit());
            if st.in_flight >= limit {
                continue;
            }
            let spare = if limit == usize::MAX {
                1.0 / (1.0 + st.in_flight as f64)
            } else {
                (limit - st.in_flight) as f64 / limit as f64
            };
            let key = (!tried.contains(&i), spare);
            if best.is_none_or(|(_, b)| key.0 & !b.0 || (key.0 == b.0 && key.1 > b.1)) {
                best = Some((i, key));
            }
        }
        let slot = best.map(|(i, _)| {
            let mut st = self.endpoints[i].st.lock().unwrap();
            let limit = st.ctl.as_ref().map_or(usize::MAX, |c| c.limit());
            if !st.healthy || st.in_flight >= limit {
                return None;
            }
            st.in_flight += 1;
            st.requests += 1;
            let ticket = st.ctl.as_mut().map_or(0, |c| c.on_send(now));
            Some(Slot {
                ep: i,
                ticket,
                sent: now,
            })
        });
        (slot, any_healthy, next_unpause)
    }

    /// Give a slot back with how its request (of `kind`: its pipeline stage) ended.
    pub fn release(&self, slot: Slot, outcome: Outcome, kind: &'static str) {
        let now = Instant::now();
        let ep = &self.endpoints[slot.ep];
        {
            let mut st = ep.st.lock().unwrap();
            st.in_flight -= 1;
            let tokens = match outcome {
                Outcome::Answered { tokens } => tokens,
                _ => 0,
            };
            if let Some(c) = st.ctl.as_mut() {
                c.on_done(now, slot.ticket, slot.sent, tokens, kind);
            }
            match outcome {
                Outcome::Answered { tokens } => {
                    st.completion_tokens += tokens;
                    st.consecutive_failures = 0;
                    st.failed_probes = 0;
                    st.last_answer = Some(now);
                }
                Outcome::Overloaded { retry_after } => {
                    st.consecutive_failures = 0;
                    if let Some(c) = st.ctl.as_mut() {
                        c.on_overload(now, "server overloaded (429/503)");
                    }
                    if let Some(d) = retry_after {
                        st.paused_until = Some(now + d.min(Duration::from_secs(60)));
                    }
                }
                Outcome::Failed => {
                    st.failures += 1;
                    st.consecutive_failures += 1;
                    if st.healthy && st.consecutive_failures >= self.health.failures_to_drain {
                        st.healthy = false;
                        st.drains += 1;
                        tracing::warn!(
                            "teacher endpoint {} drained after {} consecutive failures",
                            ep.base,
                            st.consecutive_failures
                        );
                    }
                }
                // A server that times out while it passes its health probes is slow
                // under load, not dead (self-hosted servers slow down instead of
                // answering 429): the limit is cut as for a 429, and the endpoint stays.
                // A dead one fails its probes and is drained by the monitor.
                Outcome::TimedOut => {
                    st.failures += 1;
                    if let Some(c) = st.ctl.as_mut() {
                        c.on_overload(now, "request timed out");
                    }
                }
                Outcome::Refused => {}
            }
        }
        self.notify.notify_waiters();
    }

    /// A health probe's result. A healthy endpoint is drained after `failures_to_drain`
    /// failed probes with no answer to a request between them: an endpoint that answers
    /// requests is busy, not dead, however slow its probes (a llama-server with 32
    /// requests on 16 slots left `/v1/models` unanswered for 20 s). A drained endpoint
    /// comes back on its first good probe.
    fn on_probe(&self, i: usize, ok: bool) {
        let (healthy, failed_probes) = {
            let mut st = self.endpoints[i].st.lock().unwrap();
            st.failed_probes = if ok { 0 } else { st.failed_probes + 1 };
            (st.healthy, st.failed_probes)
        };
        if ok != healthy && (ok || failed_probes >= self.health.failures_to_drain) {
            self.set_health(i, ok);
        }
    }

    fn set_health(&self, i: usize, ok: bool) {
        let ep = &self.endpoints[i];
        let mut st = ep.st.lock().unwrap();
        if ok && !st.healthy {
            st.healthy = true;
            st.consecutive_failures = 0;
            // A server that came back may be another one (restarted, resized): learn anew.
            st.ctl = self.limits.map(|l| Controller::new(l, Instant::now()));
            st.slots_read = false;
            tracing::info!("teacher endpoint {} is back", ep.base);
        } else if !ok && st.healthy {
            st.healthy = false;
            st.drains += 1;
            tracing::warn!(
                "teacher endpoint {} failed its health check: drained",
                ep.base
            );
        }
        drop(st);
        self.notify.notify_waiters();
    }

    /// One line for the progress display: each endpoint's limit and state.
    pub fn status_line(&self) -> String {
        let parts: Vec<String> = self
            .endpoints
            .iter()
            .map(|e| {
                let st = e.st.lock().unwrap();
                let host = e.root.rsplit('/').next().unwrap_or(&e.root);
                let state = if !st.healthy {
                    "drained".to_string()
                } else {
                    match &st.ctl {
                        Some(c) => format!("limit {} {}", c.limit(), c.phase_name()),
                        None => "fixed".into(),
                    }
                };
                format!("{host} {} in flight, {state}", st.in_flight)
            })
            .collect();
        parts.join(" | ")
    }

    /// Per-endpoint figures and controller decisions, for `stats.json`.
    pub fn report(&self) -> Value {
        let eps: Vec<Value> = self
            .endpoints
            .iter()
            .map(|e| {
                let st = e.st.lock().unwrap();
                let mut v = json!({
                    "base_url": e.base,
                    "healthy": st.healthy,
                    "requests": st.requests,
                    "completion_tokens": st.completion_tokens,
                    "failures": st.failures,
                    "drains": st.drains,
                });
                if let Some(c) = &st.ctl {
                    v["limit"] = json!(c.limit());
                    v["phase"] = json!(c.phase_name());
                    v["overloads"] = json!(c.overloads);
                    v["decision_count"] = json!(c.decision_count);
                    v["decisions"] = json!(c.decisions);
                    v["signals"] = json!(c.signals);
                    if let Some(m) = &c.last_measurement {
                        v["last_window"] = json!({
                            "tokens_per_sec": m.tps,
                            "p50_latency_ms": m.p50_latency * 1000.0,
                            "saturation": m.saturation,
                        });
                    }
                }
                v
            })
            .collect();
        json!({
            "mode": if self.adaptive() { "adaptive" } else { "fixed" },
            "endpoints": eps,
        })
    }
}

/// Probe health and read load signals in the background until the pool is dropped.
pub fn spawn_monitor(pool: Weak<Pool>, client: reqwest::Client, api_key: Option<String>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let mut last_health = Instant::now();
        loop {
            let Some(p) = pool.upgrade() else { return };
            let interval = Duration::from_secs_f64(p.health.interval_secs);
            let health_due = last_health.elapsed() >= interval;
            for ep in &p.endpoints {
                if let Some(c) = ep.st.lock().unwrap().ctl.as_mut() {
                    c.on_tick(Instant::now());
                }
            }
            for i in 0..p.endpoints.len() {
                monitor_one(&p, i, &client, api_key.as_deref(), health_due).await;
            }
            if health_due {
                last_health = Instant::now();
            }
            let tick = if p.signals {
                Duration::from_secs(1)
            } else {
                interval
            };
            drop(p);
            tokio::time::sleep(tick).await;
        }
    });
}

async fn monitor_one(
    p: &Arc<Pool>,
    i: usize,
    client: &reqwest::Client,
    key: Option<&str>,
    health_due: bool,
) {
    let ep = &p.endpoints[i];
    let get = |url: String| {
        let mut rb = client.get(url).timeout(Duration::from_secs(5));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        rb.send()
    };
    let (healthy, last_answer) = {
        let st = ep.st.lock().unwrap();
        (st.healthy, st.last_answer)
    };
    // A drained endpoint is probed every tick; a healthy one at the health interval,
    // unless it answered a request since the last one (it is busy, not dead).
    let interval = Duration::from_secs_f64(p.health.interval_secs);
    let answered_lately = last_answer.is_some_and(|t| t.elapsed() < interval);
    if !healthy || (health_due && !answered_lately) {
        let ok =
            matches!(get(format!("{}/models", ep.base)).await, Ok(r) if r.status().is_success());
        p.on_probe(i, ok);
        if !ok {
            return;
        }
    }
    if !p.signals {
        return;
    }
    let (no_metrics, slots_read) = {
        let st = ep.st.lock().unwrap();
        (st.no_metrics, st.slots_read)
    };
    let r = signals::fetch(client, &ep.root, key, !no_metrics, !slots_read).await;
    {
        let mut st = ep.st.lock().unwrap();
        st.no_metrics |= r.metrics.is_none();
        st.slots_read = true;
    }
    let s = r.signals();
    if let Some(sig) = s {
        if let Some(c) = ep.st.lock().unwrap().ctl.as_mut() {
            c.on_signals(sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests waiting for room get it in the order they asked, as under the engine's
    /// fixed-concurrency semaphore: a freed slot goes to the oldest waiter, not to
    /// whichever woken task the scheduler happens to run first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_requests_get_room_first_come_first_served() {
        let one = AdaptiveConfig {
            min: 1,
            max: 1,
            initial: 1,
            ..AdaptiveConfig::default()
        };
        let pool = Arc::new(Pool::new(
            &["http://127.0.0.1:9/v1".into()],
            &one,
            &HealthConfig::default(),
        ));
        let first = pool.acquire(&[]).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for n in 0..8 {
            let (pool, order) = (pool.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let slot = pool.acquire(&[]).await.unwrap();
                order.lock().unwrap().push(n);
                tokio::time::sleep(Duration::from_millis(2)).await;
                pool.release(slot, Outcome::Answered { tokens: 1 }, "test");
            }));
            // Each waiter is queued before the next asks.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        pool.release(first, Outcome::Answered { tokens: 1 }, "test");
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
    }

    /// Failed probes drain an endpoint only when nothing was answered between them: a
    /// loaded server that keeps answering requests but not its probes is busy.
    #[tokio::test]
    async fn failed_probes_drain_only_without_answers_between_them() {
        let pool = Pool::new(
            &["http://127.0.0.1:9/v1".into()],
            &AdaptiveConfig::default(),
            &HealthConfig::default(),
        );
        let healthy = |p: &Pool| p.endpoints[0].st.lock().unwrap().healthy;
        for n in 1..=4 {
            pool.on_probe(0, false);
            pool.on_probe(0, false);
            assert!(
                healthy(&pool),
                "{} failed probes, an answer after every 2",
                2 * n
            );
            let slot = pool.acquire(&[]).await.unwrap();
            pool.release(slot, Outcome::Answered { tokens: 1 }, "test");
        }
        for _ in 0..HealthConfig::default().failures_to_drain {
            pool.on_probe(0, false);
        }
        assert!(!healthy(&pool), "3 failed probes in a row with no answer");
        pool.on_probe(0, true);
        assert!(healthy(&pool), "back on its first good probe");
    }
}
