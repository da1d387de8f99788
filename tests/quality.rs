//! The quality gate end to end against the mock teacher: exact per-cell quotas under
//! rejects (bad answers, low judge scores, duplicates), judge aggregation into the
//! record columns, in-run duplicate removal that does not depend on completion order,
//! and nothing lost across a kill and resume.

mod common;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

fn cell(v: &Value) -> String {
    format!(
        "{}/{}/{}/{}",
        v["task"].as_str().unwrap(),
        v["document"].as_str().unwrap(),
        v["difficulty"],
        v["format"].as_str().unwrap()
    )
}

/// Planned items per cell according to `mediflow plan --json`.
fn planned_cells(cfg: &Path) -> BTreeMap<String, usize> {
    let o = run(&["plan", "--config", cfg.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut m = BTreeMap::new();
    for it in v["items"].as_array().unwrap() {
        *m.entry(cell(it)).or_default() += 1;
    }
    m
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Ids are unique across records and rejects, and their number is what was attempted.
fn assert_nothing_lost_or_duplicated(out: &Path) -> usize {
    let mut ids: Vec<String> = records(out).into_iter().map(|r| r.id).collect();
    ids.extend(rejects(out).into_iter().map(|j| j.id));
    let n = ids.len();
    assert_eq!(
        n,
        ids.iter().collect::<HashSet<_>>().len(),
        "an id was written twice"
    );
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(
        stats["accepted"].as_u64().unwrap() as usize,
        records(out).len()
    );
    assert_eq!(
        stats["rejected"].as_u64().unwrap() as usize,
        rejects(out).len()
    );
    n
}

const GATE: &str = r#"
[plan]
# Two tasks, so items share instructions and duplicate documents make duplicate records.
tasks = ["summarization", "question_answering"]

[engine]
concurrency = 6
backoff_initial_ms = 5
backoff_max_ms = 50
repair_attempts = 0

[judge]
enabled = true
samples = 3

[quota]
target_accepted = "plan"
budget_factor = 20.0
"#;

fn gate_config(dir: &Path, url: &str, items: usize) -> std::path::PathBuf {
    let cfg = config(dir, url, items, "");
    // The common config ends with an [engine] table; replace it with the gate's.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text = text[..text.find("[engine]").unwrap()].to_string() + GATE;
    // A judge selects only with a usable calibration (here a stand-in for the mock's).
    let cal = judge_calibration(dir, "usable", 0.9, 3.0);
    let text = text.replace(
        "samples = 3\n",
        &format!("samples = 3\ncalibration = {cal:?}\n"),
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn quotas_are_met_exactly_despite_bad_answers_low_judge_scores_and_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&[
        "--rate-bad-answer",
        "0.2",
        "--rate-low-judge",
        "0.2",
        "--rate-duplicate",
        "0.3",
    ]);
    let cfg = gate_config(tmp.path(), &m.url, 30);
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--quiet", "--json"]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();

    // Exactly the planned number of accepted records in every cell.
    let planned = planned_cells(&cfg);
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for r in records(&out) {
        let c = r.cell().key();
        *got.entry(c).or_default() += 1;
    }
    assert_eq!(got, planned, "accepted per cell != planned per cell");
    assert_eq!(summary["accepted"], 30);
    assert!(summary["cells_short"].as_object().unwrap().is_empty());

    // Rejects of every kind happened and were refilled.
    let rejs = rejects(&out);
    let reasons: HashSet<&str> = rejs.iter().map(|j| j.reason.as_str()).collect();
    for want in ["judge_below_threshold", "exact_duplicate", "near_duplicate"] {
        assert!(reasons.contains(want), "no {want} among {reasons:?}");
    }
    assert!(
        reasons.contains("schema_invalid") || reasons.contains("invalid_json"),
        "{reasons:?}"
    );
    let n = assert_nothing_lost_or_duplicated(&out);
    assert_eq!(n as u64, summary["attempted"].as_u64().unwrap());
    assert!(n > 30, "rejected cells were refilled");

    // Judge: every record scored by 3 samples, medians at or above the minimum.
    for r in records(&out) {
        assert_eq!(r.judge_samples, 3, "{}", r.id);
        for s in [r.quality, r.alignment, r.coherence, r.realism] {
            assert!(s.unwrap() >= 3.0, "{}: {s:?}", r.id);
        }
        assert!(r.difficulty.is_some());
        assert!((0.0..=4.0).contains(&r.judge_spread.unwrap()));
        assert!(!r.judge_rationale.unwrap().is_empty());
    }
    for j in rejs.iter().filter(|j| j.reason == "judge_below_threshold") {
        assert_eq!(j.stage, "judge");
        assert!(
            j.record.quality.is_some(),
            "a judged reject keeps its scores"
        );
        assert!(j.detail.contains(" < "), "{}", j.detail);
    }
    // Duplicates name a kept record.
    let kept: HashSet<String> = records(&out).into_iter().map(|r| r.id).collect();
    for j in rejs.iter().filter(|j| j.stage == "dedup") {
        let of = j.detail.strip_prefix("duplicate of ").unwrap();
        assert!(kept.contains(of), "{of} is not a kept record");
    }

    // Stats: per cell quota outcome, per filter counts, judge means.
    let stats = read_json(&out.join("stats.json"));
    for (c, v) in stats["cells"].as_object().unwrap() {
        assert_eq!(v["status"], "met", "{c}");
        assert_eq!(v["accepted"], v["target_accepted"], "{c}");
        assert!(
            v["judge"]["mean_accepted"]["quality"].as_f64().unwrap() >= 3.0,
            "{c}"
        );
    }
    for (f, v) in stats["filters"].as_object().unwrap() {
        let dropped: u64 = v
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("dropped_"))
            .map(|(_, n)| n.as_u64().unwrap())
            .sum();
        assert_eq!(
            v["total"].as_u64().unwrap(),
            v["kept"].as_u64().unwrap() + dropped,
            "{f}"
        );
    }
    assert!(stats["judge"]["mean_accepted"]["quality"].as_f64().unwrap() >= 3.0);
    assert!(stats["judge"]["judged"].as_u64().unwrap() >= 30);
}

#[test]
fn a_cell_that_cannot_meet_its_quota_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    // Every judged record scores low: nothing can be accepted.
    let m = mock(&["--rate-low-judge", "1.0"]);
    let cfg = gate_config(tmp.path(), &m.url, 3);
    edit(&cfg, "budget_factor = 20.0", "budget_factor = 2.0");
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--json"]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["accepted"], 0);
    // Budget: ceil(target * 2) items per cell, all spent.
    let planned = planned_cells(&cfg);
    let budget: usize = planned.values().map(|n| n * 2).sum();
    assert_eq!(summary["attempted"].as_u64().unwrap() as usize, budget);
    let short = summary["cells_short"].as_object().unwrap();
    assert_eq!(short.len(), planned.len());
    for why in short.values() {
        let why = why.as_str().unwrap();
        assert!(
            why.contains("budget") && why.contains("judge_below_threshold"),
            "{why}"
        );
    }
}

#[test]
fn killed_quota_run_resumes_to_exact_quotas_without_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&[
        "--latency-ms",
        "30",
        "--rate-bad-answer",
        "0.3",
        "--rate-low-judge",
        "0.2",
    ]);
    let cfg = gate_config(tmp.path(), &m.url, 40);
    let out = tmp.path().join("out");
    let args = [
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    let mut child = std::process::Command::new(bin())
        .args(args)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while records(&out).len() < 12 {
        assert!(std::time::Instant::now() < deadline, "run made no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(records(&out).len() < 40, "killed before the end");

    let o = run(&args);
    assert!(o.status.success(), "resume failed: {}", stderr(&o));
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for r in records(&out) {
        *got.entry(r.cell().key()).or_default() += 1;
    }
    assert_eq!(got, planned_cells(&cfg));
    assert_nothing_lost_or_duplicated(&out);
}

/// Survivors of a run with duplicates, as (kept ids, duplicate -> kept pairs).
fn dedup_outcome(concurrency: &str, latency: &str) -> (Vec<String>, Vec<(String, String)>) {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&["--rate-duplicate", "0.4", "--latency-ms", latency]);
    let cfg = config(
        tmp.path(),
        &m.url,
        24,
        "\n[plan]\ntasks = [\"simplification\", \"classification\"]\n",
    );
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--quiet", "--concurrency", concurrency]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    let mut kept: Vec<String> = records(&out).into_iter().map(|r| r.id).collect();
    kept.sort();
    let mut dups: Vec<(String, String)> = rejects(&out)
        .into_iter()
        .filter(|j| j.stage == "dedup")
        .map(|j| (j.id, j.detail))
        .collect();
    dups.sort();
    assert_exactly_once(&out, &planned_ids(&cfg, None));
    (kept, dups)
}

#[test]
fn in_run_dedup_keeps_the_same_records_whatever_order_items_finish_in() {
    let serial = dedup_outcome("1", "0");
    let parallel = dedup_outcome("8", "15");
    assert!(!serial.1.is_empty(), "the mock planted duplicates");
    assert_eq!(serial, parallel);
}
