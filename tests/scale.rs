//! Scale: the adaptive concurrency controller against the mock teacher with a capacity
//! knee and with injected 429s, failover between endpoints when one dies (and comes
//! back), and sharded runs merged back into the unsharded plan.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn stats(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap()
}

/// The generator's endpoints in a run's stats.
fn endpoints(out: &Path) -> Vec<Value> {
    stats(out)["concurrency"]["teacher"]["endpoints"]
        .as_array()
        .expect("stats.json reports the endpoints")
        .clone()
}

#[test]
fn the_controller_finds_the_knee_without_a_hand_set_concurrency() {
    // Once by completions alone, once with the server's count of generated tokens, and
    // once from a server that states 32 parallel slots (llama.cpp's `/slots`): stated
    // slots cap the climb, they do not pull it past the knee. The mock's latency keeps
    // the server the bottleneck: at a few ms per request, a debug build of the client
    // sharing 2 cores with the other tests is, and its speed is flat across levels, so
    // a doubling past the knee can look like a gain (CI saw 32 in flight once).
    for (metrics, slots) in [(false, None), (true, None), (false, Some("32"))] {
        let tmp = tempfile::tempdir().unwrap();
        let mut args = vec!["--latency-ms", "60", "--knee", "8"];
        if metrics {
            args.push("--metrics");
        }
        if let Some(n) = slots {
            args.extend(["--slots", n]);
        }
        let m = mock(&args);
        let adaptive = "[teacher.adaptive]\ninitial = 1\nmax = 128\n";
        let cfg = config(tmp.path(), &m.url, 200, adaptive);
        let out = tmp.path().join("out");
        let o = run_to(&cfg, &out, &["--quiet"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_exactly_once(&out, &planned_ids(&cfg, None));
        let ep = &endpoints(&out)[0];
        assert_eq!(
            ep["signals"]["generated_tokens"].is_number(),
            metrics,
            "the server's count is read where it has one: {}",
            ep["signals"]
        );
        let limit = ep["limit"].as_u64().unwrap();
        assert!(
            (4..=16).contains(&limit),
            "limit {limit} should be near the knee (8); decisions: {}",
            ep["decisions"]
        );
        let decisions = ep["decisions"].as_array().unwrap();
        assert!(decisions[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("climb"));
        assert!(
            decisions.iter().any(|d| d["to"].as_u64().unwrap() >= 8),
            "it climbed to the knee: {decisions:?}"
        );
        // Past the knee throughput falls, so the climb never doubled past 16 (a probe
        // at 16 is already worse than 8); stated slots are never passed.
        let most = mock_stats(&m.url)["max_in_flight"].as_u64().unwrap();
        let bound = if slots.is_some() { 32 } else { 24 };
        assert!(
            most <= bound,
            "the server saw {most} requests at once; decisions: {}",
            ep["decisions"]
        );
        if slots.is_some() {
            assert_eq!(ep["signals"]["slots"], 32, "{}", ep["signals"]);
        }
    }
}

/// `mediflow bench concurrency` against the mock (knee at 4): a sweep measured by the
/// server's count of generated tokens (from a server without one, by the completions
/// received), and the adaptive run as a fraction of the best sweep point; over several
/// rounds, each level and the adaptive run as the means of their runs.
#[test]
fn bench_concurrency_measures_a_sweep_and_the_adaptive_run() {
    for (metrics, levels, by, confirm, rounds) in [
        (true, "1,2,4", "server counter", true, 2),
        (false, "1,4", "completions received", false, 1),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut args = vec!["--latency-ms", "40", "--knee", "4"];
        if metrics {
            args.push("--metrics");
        }
        let m = mock(&args);
        let cfg = config(tmp.path(), &m.url, 5000, "");
        let cfg = cfg.to_str().unwrap();
        let rounds_arg = rounds.to_string();
        let mut bench = vec![
            "bench",
            "concurrency",
            "--config",
            cfg,
            "--levels",
            levels,
            "--stop-below",
            "0",
            // At least 1.5 s a run even at 4 in flight (the mock's 40 ms a call), so the
            // server's count of requests running is sampled while each runs.
            "--items",
            "48",
            "--rounds",
            &rounds_arg,
            "--json",
        ];
        if confirm {
            bench.push("--confirm");
        }
        let o = run(&bench);
        assert!(o.status.success(), "{}", stderr(&o));
        let r: Value = serde_json::from_slice(&o.stdout).unwrap();
        // Every run does the same job: a plan of `--items` items.
        let items = r["items"].as_u64().unwrap();
        assert_eq!(items, 48);
        assert_eq!(r["rounds"], rounds);
        let levels: Vec<u64> = levels.split(',').map(|l| l.parse().unwrap()).collect();
        let sweep = r["sweep"].as_array().unwrap();
        // Round by round, every level in the order given.
        let order: Vec<(u64, u64)> = sweep
            .iter()
            .map(|p| {
                (
                    p["round"].as_u64().unwrap(),
                    p["concurrency"].as_u64().unwrap(),
                )
            })
            .collect();
        let expected: Vec<(u64, u64)> = (1..=rounds)
            .flat_map(|round| levels.iter().map(move |l| (round, *l)))
            .collect();
        assert_eq!(order, expected);
        let a = &r["adaptive"];
        let adaptive = a["runs"].as_array().unwrap();
        assert_eq!(adaptive.len() as u64, rounds);
        for p in sweep.iter().chain(adaptive) {
            assert_eq!(p["measured_by"], by, "{p}");
            // The job, all of it and nothing more: the plan's first `items` items.
            assert_eq!(p["items_done"].as_u64().unwrap(), items, "{p}");
            assert!(p["measured_secs"].as_f64().unwrap() > 0.0, "{p}");
        }
        if metrics {
            for p in sweep {
                // The mock's own count of requests running, sampled each second: the
                // level held, never passed (it dips between one answer and the next
                // request, more so on a loaded machine).
                let running = p["mean_running_on_server"].as_f64().unwrap();
                let level = p["concurrency"].as_f64().unwrap();
                assert!(
                    running <= level + 0.5 && running >= 0.5 * level - 0.25,
                    "{p}"
                );
            }
        }
        let tps = |p: &Value| p["tokens_per_sec"].as_f64().unwrap();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        // Each level over its runs, one per round.
        let points = r["levels"].as_array().unwrap();
        assert_eq!(points.len(), levels.len());
        for (p, level) in points.iter().zip(&levels) {
            let runs: Vec<f64> = sweep
                .iter()
                .filter(|s| s["concurrency"] == *level)
                .map(tps)
                .collect();
            assert_eq!(p["concurrency"], *level);
            assert_eq!(p["runs"].as_u64().unwrap(), rounds, "{p}");
            assert!((tps(p) - mean(&runs)).abs() < 1e-9, "{p}");
            let lo = runs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = runs.iter().copied().fold(0.0, f64::max);
            assert_eq!(p["min_tokens_per_sec"].as_f64().unwrap(), lo, "{p}");
            assert_eq!(p["max_tokens_per_sec"].as_f64().unwrap(), hi, "{p}");
        }
        // Up to the knee, more in flight is more throughput.
        assert!(
            tps(points.last().unwrap()) > 1.5 * tps(&points[0]),
            "{points:?}"
        );
        let best = &r["best_sweep_point"];
        let best_tps = tps(best);
        assert_eq!(best_tps, points.iter().map(tps).fold(0.0, f64::max));
        let best_level = best["concurrency"].clone();
        assert!(points
            .iter()
            .any(|p| p["concurrency"] == best_level && tps(p) == best_tps));
        let adaptive_tps: Vec<f64> = adaptive.iter().map(tps).collect();
        assert!((tps(a) - mean(&adaptive_tps)).abs() < 1e-9, "{a}");
        assert!((a["fraction_of_best"].as_f64().unwrap() - tps(a) / best_tps).abs() < 1e-9);
        // Each round's adaptive run against the same round's run of the best level.
        let per_round = a["fraction_of_best_per_round"].as_array().unwrap();
        assert_eq!(per_round.len() as u64, rounds);
        for (i, f) in per_round.iter().enumerate() {
            let round = i as u64 + 1;
            let level = sweep
                .iter()
                .find(|s| s["round"] == round && s["concurrency"] == best_level)
                .unwrap();
            let own = tps(&adaptive[i]) / tps(level);
            assert!((f.as_f64().unwrap() - own).abs() < 1e-9, "{a}");
            assert_eq!(adaptive[i]["round"], round);
            assert!(
                adaptive[i]["controller"]["endpoints"][0]["limit"].is_u64(),
                "{}",
                adaptive[i]["controller"]
            );
        }
        // Each adaptive run's changes of the limit, on stderr as in its controller report.
        let err = stderr(&o);
        for (i, run) in adaptive.iter().enumerate() {
            let ep = &run["controller"]["endpoints"][0];
            let tag = if rounds > 1 {
                format!("round {}/{rounds}: ", i + 1)
            } else {
                String::new()
            };
            let start = format!(
                "{tag}adaptive: {}: limit ",
                ep["base_url"].as_str().unwrap()
            );
            let line = err
                .lines()
                .find(|l| l.starts_with(&start))
                .unwrap_or_else(|| panic!("no {start:?} in {err}"));
            let decisions = ep["decisions"].as_array().unwrap();
            if decisions.is_empty() {
                assert!(
                    line.ends_with(&format!("{} throughout", ep["limit"])),
                    "{line}"
                );
            } else {
                let path: Vec<String> = decisions
                    .iter()
                    .map(|d| {
                        format!(
                            " -> {} at {:.0}s (",
                            d["to"],
                            d["at_secs"].as_f64().unwrap()
                        )
                    })
                    .collect();
                let arrows: Vec<&str> = line
                    .match_indices(" -> ")
                    .map(|(at, _)| &line[at..])
                    .collect();
                assert_eq!(arrows.len(), path.len(), "{line}");
                for (a, p) in arrows.iter().zip(&path) {
                    assert!(a.starts_with(p.as_str()), "{line}: {p}");
                }
                assert!(
                    line.starts_with(&format!("{start}{}", decisions[0]["from"])),
                    "{line}"
                );
            }
        }
        // The repeat: the best level again, on the same items; only with --confirm.
        let c = &r["confirmed_best"];
        if confirm {
            assert_eq!(c["concurrency"], best_level, "{c}");
            assert_eq!(c["measured_by"], by);
            assert_eq!(c["items_done"].as_u64().unwrap(), items, "{c}");
            let of_confirmed = a["fraction_of_confirmed"].as_f64().unwrap();
            assert!((of_confirmed - tps(a) / tps(c)).abs() < 1e-9, "{a}");
        } else {
            assert!(c.is_null(), "{c}");
            assert!(a["fraction_of_confirmed"].is_null(), "{a}");
        }
    }
}

#[test]
fn the_controller_backs_off_on_429_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&["--latency-ms", "10", "--rate-429", "0.2"]);
    let extra = "max_attempts = 12\n[teacher.adaptive]\ninitial = 32\nmax = 64\n";
    let cfg = config(tmp.path(), &m.url, 60, extra);
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_exactly_once(&out, &planned_ids(&cfg, None));
    assert!(
        !rejects(&out).iter().any(|j| j.reason == "rate_limited"),
        "429s are retried, not lost"
    );
    let ep = &endpoints(&out)[0];
    assert!(ep["overloads"].as_u64().unwrap() > 0);
    let decisions = ep["decisions"].as_array().unwrap();
    let first_backoff = decisions
        .iter()
        .find(|d| d["reason"].as_str().unwrap().starts_with("backed off"))
        .expect("a back-off decision");
    assert_eq!(first_backoff["from"], 32);
    assert_eq!(first_backoff["to"], 22, "cut to 70%");
}

/// Self-hosted servers slow down instead of answering 429: a request that runs into the
/// client's timeout cuts the limit like a 429, and does not drain an endpoint that still
/// answers its health probes (with every third failure draining, this one would be).
#[test]
fn timeouts_cut_the_limit_and_do_not_drain_a_live_server() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&[
        "--latency-ms",
        "10",
        "--rate-timeout",
        "0.3",
        "--hang-ms",
        "3000",
    ]);
    let extra = "max_attempts = 12\n[teacher.adaptive]\ninitial = 32\nmax = 64\n\
                 [teacher.health]\nfailures_to_drain = 3\n";
    let cfg = config(tmp.path(), &m.url, 40, extra);
    edit(&cfg, "timeout_secs = 5", "timeout_secs = 1");
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_exactly_once(&out, &planned_ids(&cfg, None));
    assert!(
        !rejects(&out).iter().any(|j| j.reason == "timeout"),
        "timeouts are retried, not lost"
    );
    let ep = &endpoints(&out)[0];
    assert!(ep["failures"].as_u64().unwrap() >= 3, "{ep}");
    assert_eq!(ep["drains"], 0, "{ep}");
    let cut = ep["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["reason"] == "backed off: request timed out")
        .unwrap_or_else(|| panic!("a back-off on a timeout: {ep}"));
    let from = cut["from"].as_u64().unwrap();
    assert_eq!(
        cut["to"].as_u64().unwrap(),
        from * 7 / 10,
        "cut to 70%: {cut}"
    );
}

/// A mock teacher on a fixed address (so it can be restarted there).
fn mock_at(addr: &str) -> Child {
    let mut child = Command::new(bin())
        .args(["mock-teacher", "--addr", addr, "--latency-ms", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains(addr), "mock banner {line:?}");
    child
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn an_endpoint_that_dies_is_drained_without_losing_items_and_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let b = mock(&["--latency-ms", "30"]);
    // Endpoint A on a port we can reuse after killing it.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut a = mock_at(&addr);
    let a_url = format!("http://{addr}/v1");
    let extra = "[teacher.adaptive]\ninitial = 4\nmax = 4\n\
                 [teacher.health]\ninterval_secs = 0.2\nfailures_to_drain = 2\n";
    let cfg = config(tmp.path(), &a_url, 150, extra);
    edit(
        &cfg,
        &format!("base_urls = [\"{a_url}\"]"),
        &format!("base_urls = [\"{a_url}\", \"{}\"]", b.url),
    );
    let out = tmp.path().join("out");
    let mut run = Command::new(bin())
        .args(["run", "--config", cfg.to_str().unwrap(), "--out"])
        .arg(&out)
        .arg("--quiet")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first_shard = out.join("data/part-00000.jsonl");
    let t0 = Instant::now();
    while lines(&first_shard) < 15 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "run made no progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill().unwrap();
    a.wait().unwrap();
    let done_at_kill = lines(&first_shard);
    // Let the run go on with B alone for a while, then bring A back.
    while lines(&first_shard) < done_at_kill + 20 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "run stalled after the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut a2 = mock_at(&addr);
    let status = run.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert_exactly_once(&out, &planned_ids(&cfg, None));
    assert!(
        !rejects(&out)
            .iter()
            .any(|j| j.reason == "connection_error" || j.reason == "server_error"),
        "failover loses nothing: {:?}",
        rejects(&out)
    );
    let eps = endpoints(&out);
    assert_eq!(eps[0]["base_url"], a_url.as_str());
    assert!(
        eps[0]["drains"].as_u64().unwrap() >= 1,
        "A was drained: {}",
        eps[0]
    );
    assert!(eps[1]["requests"].as_u64().unwrap() > 0);
    let served_after = mock_stats(&a_url)["served"].as_u64().unwrap();
    assert!(
        eps[0]["healthy"] == true && served_after > 0,
        "A came back and served again ({served_after} requests): {}",
        eps[0]
    );
    a2.kill().unwrap();
    a2.wait().unwrap();
}

/// Run shards `which` of `n` of `cfg` into `out` against `url`.
fn shards(cfg: &Path, out: &Path, url: &str, n: usize, which: &[usize]) {
    for i in which {
        let spec = format!("{i}/{n}");
        let o = run_to(
            cfg,
            out,
            &["--quiet", "--shard", &spec, "--teacher-url", url],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

fn merge(cfg: &Path, out: &Path) -> std::process::Output {
    run(&[
        "merge",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ])
}

type Key = (String, String, String);

fn keys(out: &Path) -> Vec<Key> {
    let mut v: Vec<Key> = records(out)
        .into_iter()
        .map(|r| (r.id, r.instruction, r.output))
        .collect();
    v.sort();
    v
}

#[test]
fn shards_merged_equal_the_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    // Quotas refill inside each shard as in the unsharded run. Near-duplicate removal
    // across shards happens at merge without refills, so it is off here (see below).
    let extra = "[quota]\ntarget_accepted = \"plan\"\nbudget_factor = 3.0\n[dedup]\nnear = false\n";
    // One fresh mock per run: the mock varies its answer to a body it has seen before.
    let (m1, m2) = (
        mock(&["--rate-bad-answer", "0.3"]),
        mock(&["--rate-bad-answer", "0.3"]),
    );
    let cfg = config(tmp.path(), &m1.url, 60, extra);
    let whole = tmp.path().join("whole");
    let o = run_to(&cfg, &whole, &["--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let sharded = tmp.path().join("sharded");
    shards(&cfg, &sharded, &m2.url, 3, &[0, 2]);
    let o = merge(&cfg, &sharded);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("missing shards: 1/3"), "{}", stderr(&o));
    shards(&cfg, &sharded, &m2.url, 3, &[1]);
    let o = merge(&cfg, &sharded);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        merge(&cfg, &sharded).status.code(),
        Some(2),
        "merging twice is refused"
    );

    // The shards split the plan: each has work, none shares an item with another.
    let mut all_ids = Vec::new();
    for i in 0..3 {
        let d = sharded.join(format!("shards/{i:04}-of-0003"));
        let mut ids: Vec<String> = records(&d).into_iter().map(|r| r.id).collect();
        ids.extend(rejects(&d).into_iter().map(|j| j.id));
        assert!(!ids.is_empty(), "shard {i} has work");
        all_ids.extend(ids);
    }
    let n = all_ids.len();
    all_ids.sort();
    all_ids.dedup();
    assert_eq!(n, all_ids.len(), "no item in two shards");

    let (a, b) = (keys(&whole), keys(&sharded));
    let only = |x: &[Key], y: &[Key]| -> Vec<String> {
        x.iter()
            .filter(|k| !y.contains(k))
            .map(|k| k.0.clone())
            .collect()
    };
    assert!(
        a == b,
        "the merged records are the unsharded run's: only unsharded {:?}, only merged {:?}",
        only(&a, &b),
        only(&b, &a)
    );
    let reject_ids = |d: &Path| {
        let mut v: Vec<String> = rejects(d).into_iter().map(|j| j.id).collect();
        v.sort();
        v
    };
    assert_eq!(
        reject_ids(&whole),
        reject_ids(&sharded),
        "and so are the rejects"
    );
    assert_eq!(n, a.len() + reject_ids(&whole).len());
    let m: Value =
        serde_json::from_slice(&std::fs::read(sharded.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "complete");
    assert_eq!(m["counts"]["accepted"].as_u64().unwrap() as usize, a.len());
    assert_eq!(
        stats(&sharded)["accepted"].as_u64().unwrap() as usize,
        a.len()
    );
}

#[test]
fn merge_removes_duplicates_across_shards() {
    let tmp = tempfile::tempdir().unwrap();
    // A third of the documents are one and the same: shards keep their own copies.
    let m = mock(&["--rate-duplicate", "0.3"]);
    let cfg = config(tmp.path(), &m.url, 60, "");
    let out = tmp.path().join("out");
    shards(&cfg, &out, &m.url, 3, &[0, 1, 2]);
    let o = merge(&cfg, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    let cross = s["cross_shard_duplicates"].as_u64().unwrap();
    assert!(cross > 0, "{s}");
    let texts: Vec<String> = records(&out)
        .iter()
        .map(mediflow::quality::dedup::record_text)
        .collect();
    let mut unique = texts.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        texts.len(),
        "no exact duplicate survives the merge"
    );
    let dropped = rejects(&out)
        .iter()
        .filter(|j| j.detail.contains("in another shard"))
        .count();
    assert_eq!(dropped as u64, cross);
    assert_exactly_once(&out, &planned_ids(&cfg, None));
}

/// The deployment examples drive a sharded run as Slurm and Kubernetes would: the Slurm
/// array script once per task id, the Indexed Job's container command once per
/// completion index, then their merge steps.
#[test]
fn the_slurm_and_kubernetes_examples_run_shards_and_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&[]);
    let cfg = config(tmp.path(), &m.url, 30, "");
    let planned = planned_ids(&cfg, None);
    let bin_dir = Path::new(bin()).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sh = |script: &str, env: &[(&str, String)]| {
        let o = Command::new("bash")
            .args(["-c", script])
            .env("PATH", &path)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        assert!(o.status.success(), "{script}: {}", stderr(&o));
    };

    // Slurm: the array script per task, then the merge script.
    let slurm = repo().join("deploy/slurm");
    let out = tmp.path().join("slurm-run");
    let common = [
        ("CONFIG", cfg.display().to_string()),
        ("OUT", out.display().to_string()),
        ("TEACHER_URLS", m.url.clone()),
    ];
    for i in 0..3 {
        let mut env = common.to_vec();
        env.push(("SLURM_ARRAY_TASK_ID", i.to_string()));
        env.push(("SLURM_ARRAY_TASK_COUNT", "3".into()));
        sh(&format!("{}/mediflow-shards.sbatch", slurm.display()), &env);
    }
    sh(
        &format!("{}/mediflow-merge.sbatch", slurm.display()),
        &common,
    );
    assert_exactly_once(&out, &planned);

    // Kubernetes: the Indexed Job's command per index, with its own env (paths replaced).
    let k8s = repo().join("deploy/kubernetes");
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(
        &std::fs::read_to_string(k8s.join("mediflow-shards.yaml")).unwrap(),
    )
    .map(|d| serde::Deserialize::deserialize(d).unwrap())
    .collect();
    let job = docs.iter().find(|d| d["kind"] == "Job").expect("a Job");
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let env_value = |c: &Value, name: &str| -> String {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("env {name}"))
            .to_string()
    };
    let shards: usize = env_value(container, "SHARDS").parse().unwrap();
    assert_eq!(
        job["spec"]["completions"], shards,
        "completions must equal SHARDS"
    );
    let mount = |c: &Value, p: &str| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| p.starts_with(v["mountPath"].as_str().unwrap()))
    };
    let (k_cfg, k_out) = (env_value(container, "CONFIG"), env_value(container, "OUT"));
    assert!(
        mount(container, &k_cfg) && mount(container, &k_out),
        "CONFIG and OUT are on volumes"
    );
    let out = tmp.path().join("k8s-run");
    let k8s_cfg = tmp.path().join("k8s.toml");
    std::fs::copy(&cfg, &k8s_cfg).unwrap();
    let command = |c: &Value| c["args"][0].as_str().unwrap().to_string();
    for i in 0..shards {
        // Each index runs its own slice of the plan.
        sh(
            &command(container),
            &[
                ("JOB_COMPLETION_INDEX", i.to_string()),
                ("SHARDS", shards.to_string()),
                ("CONFIG", k8s_cfg.display().to_string()),
                ("OUT", out.display().to_string()),
            ],
        );
    }
    let merge_doc: Value =
        serde_norway::from_str(&std::fs::read_to_string(k8s.join("mediflow-merge.yaml")).unwrap())
            .unwrap();
    let mc = &merge_doc["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_value(mc, "OUT"),
        k_out,
        "the merge reads where the shards wrote"
    );
    sh(
        &command(mc),
        &[
            ("CONFIG", k8s_cfg.display().to_string()),
            ("OUT", out.display().to_string()),
        ],
    );
    assert_exactly_once(&out, &planned);
}
