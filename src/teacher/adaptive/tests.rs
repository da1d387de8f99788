//! The controller against simulated servers (knees, mixes, stated slots, drift, collapses)
//! and its policy's single decisions.

use super::measure::KindSums;
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

/// Request kinds of a mixed workload: (service-time factor, completion tokens), like
/// a pipeline's long documents, short instructions and mid-sized answers.
const MIX: [(&str, f64, u64); 3] = [
    ("document", 4.0, 190),
    ("instruction", 0.25, 30),
    ("answer", 1.5, 120),
];

/// The work of a simulation: unlimited for `secs` of simulated time, or a fixed
/// number of requests; of one kind (100 tokens each) or, when `mixed`, of kinds drawn
/// at random from `MIX`.
struct Work {
    secs: f64,
    requests: Option<usize>,
    mixed: bool,
    /// The parallel slots the server states (llama.cpp `/slots`), if any.
    slots: Option<usize>,
    /// Seeds the draws of mixed work and of the server's speed.
    seed: u64,
    /// The server's speed varies: each 30 s of simulated time it is scaled by a factor
    /// drawn from 1 +- `drift` (a shared machine; 0: steady).
    drift: f64,
}

/// What a simulation ended with.
struct Sim {
    limit: usize,
    /// Tokens/s over the second half of the time (unlimited work).
    tps_late: f64,
    /// Tokens/s from start to the last answer.
    tps_whole: f64,
    decisions: Vec<Decision>,
    /// Each entry into hold: (seconds, windows measured so far, the level held).
    holds: Vec<(f64, u64, usize)>,
}

/// Drive a controller against a simulated server whose service time for a request
/// sent with `n` in flight is `service(n)`.
fn simulate(service: impl Fn(usize) -> f64, lim: Limits, work: Work) -> Sim {
    simulate_at(|n, _| service(n), lim, work)
}

/// The same with a server that changes: `service(n, t)` at `t` seconds.
fn simulate_at(service: impl Fn(usize, f64) -> f64, lim: Limits, work: Work) -> Sim {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(work.seed);
    let t0 = Instant::now();
    let mut c = Controller::new(lim, t0);
    if let Some(n) = work.slots {
        let slots = Signals {
            slots: Some(n),
            ..Default::default()
        };
        c.on_signals(slots);
    }
    let mut now = 0.0f64;
    // (finish time, sent time, ticket, kind, tokens) of requests in flight.
    let mut flying: Vec<(f64, f64, u64, &'static str, u64)> = Vec::new();
    let (mut sent_n, mut tokens, mut tokens_late) = (0usize, 0u64, 0u64);
    let mut holds = Vec::new();
    let mut holding = false;
    let at = |s: f64| t0 + Duration::from_secs_f64(s);
    // The server's speed factor of each 30 s period.
    let mut speed: Vec<f64> = Vec::new();
    while now < work.secs {
        let period = (now / 30.0) as usize;
        while speed.len() <= period {
            let d = work.drift;
            speed.push(if d > 0.0 {
                rng.random_range(1.0 - d..1.0 + d)
            } else {
                1.0
            });
        }
        // A burst of sends raises the load at once: every request in it is served at
        // the load the burst brings about (not at the lower counts on the way up,
        // which would make a step up look cheap).
        let left = work.requests.map_or(usize::MAX, |r| r - sent_n);
        let load = c.limit().min(flying.len().saturating_add(left));
        while flying.len() < c.limit() && work.requests.is_none_or(|r| sent_n < r) {
            // Mixed work also varies within a kind: +-30% in time and in tokens.
            let (kind, factor, tokens) = if work.mixed {
                let (kind, factor, tokens) = MIX[rng.random_range(0..MIX.len())];
                let tokens = (tokens as f64 * rng.random_range(0.7..1.3)).round() as u64;
                (kind, factor * rng.random_range(0.7..1.3), tokens)
            } else {
                ("one", 1.0, 100)
            };
            let st = factor * service(load, now) / speed[period];
            let ticket = c.on_send(at(now));
            flying.push((now + st, now, ticket, kind, tokens));
            sent_n += 1;
        }
        if flying.is_empty() {
            break;
        }
        flying.sort_by(|a, b| a.0.total_cmp(&b.0));
        // The endpoint monitor's tick, every second with nothing sent or done.
        let before = c.limit();
        while now + 1.0 < flying[0].0 && c.limit() == before {
            now += 1.0;
            c.on_tick(at(now));
        }
        if c.limit() != before {
            continue;
        }
        let (fin, sent, ticket, kind, n) = flying.remove(0);
        now = fin;
        c.on_done(at(now), ticket, at(sent), n, kind);
        let hold = c.phase_name() == "hold";
        if hold && !holding {
            holds.push((now, c.period, c.limit()));
        }
        holding = hold;
        tokens += n;
        if now > work.secs / 2.0 {
            tokens_late += n;
        }
    }
    Sim {
        limit: c.limit(),
        tps_late: tokens_late as f64 / (work.secs / 2.0),
        tps_whole: tokens as f64 / now,
        decisions: c.decisions.into_iter().collect(),
        holds,
    }
}

fn unlimited(secs: f64, mixed: bool) -> Work {
    Work {
        secs,
        requests: None,
        mixed,
        slots: None,
        seed: 7,
        drift: 0.0,
    }
}

fn lim(min: usize, max: usize, initial: usize) -> Limits {
    Limits {
        min,
        max,
        initial,
        max_latency_secs: 0.0,
    }
}

/// The best fixed level's tokens/s: one kind, or the `MIX` in equal shares.
fn best_tps(knee: usize, mixed: bool) -> f64 {
    best_below(knee, mixed, 512)
}

#[test]
fn converges_near_the_knee_from_below_and_above() {
    for (knee, initial) in [(24, 1), (24, 8), (64, 8), (6, 32)] {
        let sim = simulate(
            |n| service_time(n, knee),
            lim(1, 256, initial),
            unlimited(600.0, false),
        );
        let (limit, tps) = (sim.limit, sim.tps_late);
        let best = best_tps(knee, false);
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
fn converges_on_a_mixed_workload() {
    // Long, short and mid-sized requests at random: single windows see different
    // mixes, which the comparison on a common mix has to see through.
    for (knee, initial) in [(4, 8), (24, 1), (24, 8), (64, 8)] {
        let sim = simulate(
            |n| service_time(n, knee),
            lim(1, 256, initial),
            unlimited(1200.0, true),
        );
        let (limit, tps) = (sim.limit, sim.tps_late);
        let best = best_tps(knee, true);
        assert!(
            tps >= 0.95 * best,
            "mixed, knee {knee} from {initial}: {tps:.0} tok/s vs best {best:.0} (limit {limit})"
        );
    }
}

/// Service time at `n` in flight of a server whose tokens/s follow `curve` (points
/// at 1, 2, 4, ...; linear in log2 n between them, flat past the last).
fn curve_service(curve: &[f64], n: usize) -> f64 {
    let x = (n as f64).log2();
    let i = (x.floor() as usize).min(curve.len() - 1);
    let t = if i + 1 < curve.len() {
        curve[i] + (curve[i + 1] - curve[i]) * (x - i as f64)
    } else {
        curve[i]
    };
    n as f64 * 100.0 / t
}

#[test]
fn below_stated_slots_finds_the_knee_or_the_slots() {
    // A llama.cpp server states its slots: the climb stops at a knee below them, and
    // at the slots (no further) where the knee lies above them.
    for (knee, slots, mixed) in [
        (8, 64, false),
        (24, 128, false),
        (64, 64, true),
        (200, 64, true),
    ] {
        let work = Work {
            slots: Some(slots),
            ..unlimited(1200.0, mixed)
        };
        let sim = simulate(|n| service_time(n, knee), lim(1, 256, 8), work);
        let (limit, tps) = (sim.limit, sim.tps_late);
        let best = best_below(knee, mixed, slots);
        assert!(
            tps >= 0.95 * best,
            "knee {knee}, {slots} slots: {tps:.0} tok/s vs best {best:.0} (limit {limit})"
        );
        assert!(
            limit <= slots && limit as f64 >= knee.min(slots) as f64 * 0.6,
            "knee {knee}, {slots} slots: limit {limit}"
        );
    }
}

/// The best fixed level's tokens/s at `slots` in flight or fewer: one kind, or the
/// `MIX` in equal shares.
fn best_below(knee: usize, mixed: bool, slots: usize) -> f64 {
    let (factor, tokens) = if mixed {
        let n = MIX.len() as f64;
        (
            MIX.iter().map(|k| k.1).sum::<f64>() / n,
            MIX.iter().map(|k| k.2 as f64).sum::<f64>() / n,
        )
    } else {
        (1.0, 100.0)
    };
    (1..=slots)
        .map(|n| n as f64 * tokens / (factor * service_time(n, knee)))
        .fold(0.0, f64::max)
}

#[test]
fn short_runs_on_a_slow_server() {
    // Shaped like the 2-core llama-server of `scripts/bench-llama-server.sh`: tokens/s
    // at 1, 2, 4, ... in flight as measured there; seconds per request. A run of fixed
    // work, all of it measured (ramp-up, exploring and tail), against the best fixed
    // level on the same work. The curve: fixed-level runs of 20 items at 1..16, with
    // a flat top and a fall added; once with the server's slots unknown, once with 64
    // slots stated, where the climb must stop at the top, not go on to the slots.
    let curve: &[f64] = &[28.2, 34.7, 40.4, 44.0, 50.2, 52.0, 45.0];
    let cases = [(curve, None, 540), (curve, Some(64), 800)];
    for (curve, slots, requests) in cases {
        let work = || Work {
            secs: f64::INFINITY,
            requests: Some(requests),
            mixed: true,
            slots,
            seed: 7,
            drift: 0.0,
        };
        let best = (0..curve.len())
            .map(|k| {
                let l = 1 << k;
                simulate(|n| curve_service(curve, n), lim(l, l, l), work()).tps_whole
            })
            .fold(0.0, f64::max);
        let sim = simulate(|n| curve_service(curve, n), lim(1, 256, 8), work());
        assert!(
            sim.tps_whole >= 0.95 * best,
            "slots {slots:?}: {:.1} tok/s vs best fixed {best:.1} (limit {}): {:?}",
            sim.tps_whole,
            sim.limit,
            sim.decisions
                .iter()
                .map(|d| format!("{:.0}s {}->{} {}", d.at_secs, d.from, d.to, d.reason))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_probe_past_a_collapse_ends_before_its_requests_return() {
    // Up to 16 in flight the server scales; past it every request takes 20 minutes
    // (a server with more slots than it can serve). The doubling to 32 must end on
    // the stalled requests' waiting alone, long before any of them returns.
    let service = |n: usize| if n <= 16 { 1.0 } else { 1200.0 };
    let sim = simulate(service, lim(1, 256, 8), unlimited(7200.0, false));
    let d = &sim.decisions;
    let up = d.iter().position(|d| d.from == 16 && d.to == 32);
    let up = up.expect("a doubling from 16 to 32");
    let next = &d[up + 1];
    assert!(next.reason.contains("latency ran away"), "{next:?}");
    assert!(next.to < 32, "{next:?}");
    // The 16-in-flight window had a latency of 1 s: the probe ends within a minute.
    assert!(next.at_secs - d[up].at_secs < 60.0, "{d:?}");
    // So does every later probe past 16 (the exploration's, the re-probes'): none waits
    // for its requests to return (it may wait for the requests sent before it to drain).
    for (a, b) in d.iter().zip(d.iter().skip(1)) {
        if a.to > 16 {
            assert!(b.reason.contains("latency ran away"), "{a:?} then {b:?}");
            assert!(b.p50_latency_ms.unwrap() < 60_000.0, "{a:?} then {b:?}");
        }
    }
    let held = sim
        .holds
        .last()
        .unwrap_or_else(|| panic!("a hold: {d:#?}"))
        .2;
    assert!((12..=16).contains(&held), "held {held}: {d:?}");
    // Each probe past the collapse costs the time its requests take to drain (20 min):
    // the exploration bisects the gap to it once, and no re-probe goes there again.
    let past = d.iter().filter(|d| d.to > 16).count();
    assert!(past <= 4, "{past} probes past 16: {d:?}");
}

#[test]
fn windows_compare_on_a_common_mix() {
    let k = |kind, n: u32, tokens, latency| KindSums {
        kind,
        n: n as f64,
        tokens,
        latency,
    };
    // Same level, same per-kind speeds, different mixes: equal on a common mix,
    // although each window's own Little's-law figure differs by 15%.
    let a = Mix {
        mean_in_flight: 4.0,
        kinds: vec![k("doc", 16, 3200.0, 160.0), k("verdict", 4, 40.0, 4.0)],
    };
    let b = Mix {
        mean_in_flight: 4.0,
        kinds: vec![k("doc", 4, 800.0, 40.0), k("verdict", 16, 160.0, 16.0)],
    };
    assert!((a.tps() / b.tps() - 1.152).abs() < 0.001);
    assert!((a.ratio_to(&b).unwrap() - 1.0).abs() < 1e-9);
    // Twice the level at the same per-request speed is twice the throughput.
    let c = Mix {
        mean_in_flight: 8.0,
        ..b.clone()
    };
    assert!((c.ratio_to(&a).unwrap() - 2.0).abs() < 1e-9);
    // A kind one window lacks is left out of the comparison.
    let d = Mix {
        mean_in_flight: 4.0,
        kinds: vec![k("doc", 3, 600.0, 30.0), k("judge", 5, 10.0, 50.0)],
    };
    assert!((d.ratio_to(&a).unwrap() - 1.0).abs() < 1e-9);
    // Windows that share no kind with a few completions in each are not comparable.
    let e = Mix {
        mean_in_flight: 4.0,
        kinds: vec![k("doc", 2, 400.0, 20.0), k("judge", 9, 18.0, 90.0)],
    };
    assert_eq!(e.ratio_to(&a), None);
}

#[test]
fn a_window_waits_for_every_common_stage() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut c = Controller::new(lim(2, 2, 2), t0);
    let mut t = 0;
    let mut one = |c: &mut Controller, kind| {
        let k = c.on_send(at(t));
        t += 100;
        c.on_done(at(t), k, at(t - 100), 100, kind);
    };
    for _ in 0..40 {
        one(&mut c, "document");
    }
    let kinds = |c: &Controller| -> Vec<&str> {
        let m = c.last_measurement.as_ref().expect("a window closed");
        m.mix.kinds.iter().map(|k| k.kind).collect()
    };
    assert_eq!(kinds(&c), ["document"]);
    // The items moved on to their answers together: answers alone do not close a
    // window while documents are half of the run's requests.
    for _ in 0..40 {
        one(&mut c, "answer");
        assert!(kinds(&c).contains(&"document"), "{:?}", kinds(&c));
    }
    // One document closes the window that began with answers.
    one(&mut c, "document");
    assert_eq!(kinds(&c), ["answer", "document"]);
}

#[test]
fn respects_bounds_and_backs_off_on_overload() {
    let sim = simulate(
        |n| service_time(n, 200),
        lim(2, 16, 4),
        unlimited(120.0, false),
    );
    let top = sim.decisions.iter().map(|d| d.to).max();
    assert_eq!(top, Some(16), "a knee past max stops at max");
    let at_16 = 16.0 * 100.0 / service_time(16, 200);
    assert!(sim.tps_late >= 0.95 * at_16, "{} vs {at_16}", sim.tps_late);
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
        mix: Mix {
            mean_in_flight: 4.0,
            kinds: Vec::new(),
        },
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
        mix: Mix {
            mean_in_flight: 4.8,
            kinds: Vec::new(),
        },
        p50_latency: 0.1,
        saturation: 0.3,
        mean_waiting: None,
        max_kv: None,
    };
    c.decide(t0, m);
    assert_eq!(c.limit(), 16);
    assert_eq!(c.phase_name(), "climb");
}

#[test]
fn a_flat_curve_topped_at_the_stated_slots() {
    // The 2-core proof server with 16 slots: tokens/s at 1..16 in flight, the means of
    // four rounds of fixed-level runs; its speed drifting +-15% every 30 s, as a
    // shared machine's does. Over runs of the bench's length (a few hundred requests)
    // the adaptive run stays near fixed 16 on the same work.
    let curve: &[f64] = &[32.8, 31.7, 32.0, 32.2, 34.3];
    let ratios: Vec<f64> = (1..=20u64)
        .map(|seed| {
            let work = || Work {
                secs: f64::INFINITY,
                requests: Some(600),
                mixed: true,
                slots: Some(16),
                seed,
                drift: 0.15,
            };
            let fixed = simulate(|n| curve_service(curve, n), lim(16, 16, 16), work());
            let sim = simulate(|n| curve_service(curve, n), lim(1, 256, 8), work());
            sim.tps_whole / fixed.tps_whole
        })
        .collect();
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    assert!(
        mean >= 0.97,
        "adaptive / fixed 16: mean {mean:.3} of {ratios:.3?}"
    );
}

/// A saturated window of one kind of request whose throughput is 10 x `in_flight`.
fn window(in_flight: f64) -> Measurement {
    let one = KindSums {
        kind: "one",
        n: 16.0,
        tokens: 1600.0,
        latency: 160.0,
    };
    Measurement {
        tps: 10.0 * in_flight,
        mix: Mix {
            mean_in_flight: in_flight,
            kinds: vec![one],
        },
        p50_latency: 1.0,
        saturation: 1.0,
        mean_waiting: None,
        max_kv: None,
    }
}

#[test]
fn a_doubling_to_the_stated_slots_holds_there_unless_clearly_worse() {
    let t0 = Instant::now();
    // Worse than 8 by more: explore from 8, below it first.
    for (ratio, limit) in [(0.95, 16), (1.03, 16), (0.85, 6)] {
        let mut c = Controller::new(lim(1, 256, 8), t0);
        c.on_signals(Signals {
            slots: Some(16),
            ..Default::default()
        });
        c.decide(t0, window(8.0));
        assert_eq!(c.limit(), 16, "slow start doubles");
        c.decide(t0, window(8.0 * ratio));
        assert_eq!(c.limit(), limit, "16 slots at {ratio} of 8");
        let phase = if limit == 16 { "hold" } else { "explore" };
        assert_eq!(c.phase_name(), phase, "16 slots at {ratio} of 8");
    }
}

/// The smallest step the exploration takes around `level` (`policy`): "one step".
fn one_step(level: usize) -> usize {
    (level / 8).max(1)
}

#[test]
fn converges_to_within_one_step_of_the_knee_in_a_few_windows() {
    // The mock teacher's server (`mock-teacher --knee K`, `service_time`): service time
    // grows with the load, and past K with its square; from the default initial 8, on one
    // kind of request and on the pipeline-like mix (+-30% in time and tokens).
    for knee in [8, 24, 96] {
        for mixed in [false, true] {
            let sim = simulate(
                |n| service_time(n, knee),
                lim(1, 256, 8),
                unlimited(600.0, mixed),
            );
            let &(secs, window, held) = sim.holds.first().expect("a hold");
            assert!(
                window <= 12,
                "knee {knee}, mixed {mixed}: first hold after {window} windows ({secs:.0}s): {:?}",
                sim.decisions
            );
            assert!(
                held.abs_diff(knee) <= one_step(knee),
                "knee {knee}, mixed {mixed}: held {held}: {:?}",
                sim.decisions
            );
        }
    }
}

#[test]
fn follows_a_knee_that_moves() {
    // Knee 24, then 12 from 300 s (the server got slower: a longer context, another
    // tenant), then 40 from 600 s (faster again).
    let knee_at = |t: f64| match t {
        t if t < 300.0 => 24,
        t if t < 600.0 => 12,
        _ => 40,
    };
    for mixed in [false, true] {
        let sim = simulate_at(
            |n, t| service_time(n, knee_at(t)),
            lim(1, 256, 8),
            unlimited(900.0, mixed),
        );
        for (from, knee) in [(0.0, 24), (300.0, 12), (600.0, 40)] {
            // The first hold near the new knee, and how many windows it took to get there.
            let windows_before = sim.holds.iter().filter(|h| h.0 < from).map(|h| h.1).max();
            let found = sim
                .holds
                .iter()
                .find(|h| h.0 >= from && h.2.abs_diff(knee) <= one_step(knee));
            let &(secs, window, held) = found.unwrap_or_else(|| {
                panic!(
                    "mixed {mixed}: no hold near {knee} after {from}s: {:?}",
                    sim.holds
                )
            });
            let took = window - windows_before.unwrap_or(0);
            assert!(
                took <= 40 && secs - from < 120.0,
                "mixed {mixed}: knee {knee} from {from}s: held {held} after {took} windows, at {secs:.0}s"
            );
        }
    }
}
