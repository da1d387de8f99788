//! `mediflow dpo` end to end against the mock teacher: a judged run, then preference pairs
//! by error injection (verified corruptions, resumable without duplicates), best-of-n
//! (margin rule, ties and small margins skipped) and on-policy (a second mock as student).

mod common;
use common::*;
use mediflow::dpo::{Pair, Scores, ERROR_TYPES};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

const RUN: &str = r#"
[plan]
tasks = ["summarization", "clinical_coding", "named_entity_recognition", "question_answering"]

[judge]
enabled = true
samples = 3
"#;

/// A judged run of `items` with a mock whose judge scores half the prompts low.
fn judged_run(dir: &Path, url: &str, items: usize) -> (PathBuf, PathBuf) {
    let cfg = config(dir, url, items, RUN);
    let out = dir.join("out");
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    assert!(records(&out).len() >= 4, "too few accepted records");
    (cfg, out)
}

fn dpo(cfg: &Path, out: &Path, strategy: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "dpo",
        "--run",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--strategy",
        strategy,
    ];
    args.extend(extra);
    let o = run(&args);
    assert!(o.status.success(), "dpo failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
}

fn pairs(path: &Path) -> Vec<Pair> {
    mediflow::sink::read_jsonl(path, false).unwrap()
}

fn mean(s: &Scores) -> f64 {
    (s.quality + s.alignment + s.coherence + s.realism + s.difficulty) / 5.0
}

fn skipped(summary: &Value) -> u64 {
    summary["skipped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

/// Every record considered ends as a pair or a skip.
fn assert_accounted(summary: &Value) {
    assert_eq!(
        summary["pairs_written"].as_u64().unwrap() + skipped(summary),
        summary["considered"].as_u64().unwrap(),
        "{summary}"
    );
}

fn assert_common(p: &Pair, strategy: &str) {
    assert_eq!(p.strategy, strategy);
    assert!(!p.id.is_empty() && !p.record_id.is_empty());
    assert!(!p.instruction.is_empty() && !p.input.is_empty());
    assert!(!p.output.is_empty() && !p.rejected_output.is_empty());
    assert_ne!(p.output, p.rejected_output);
    assert_eq!(p.judge_model.as_deref(), Some("mock"));
}

fn schema(task: &str) -> mediflow::schemas::TaskSchema {
    mediflow::schemas::compile(&repo().join(format!("schemas/{task}.schema.json"))).unwrap()
}

fn conforms(task: &str, text: &str) -> bool {
    mediflow::schemas::extract_json(text)
        .and_then(|v| mediflow::schemas::validate(&schema(task), &v))
        .is_ok()
}

#[test]
fn error_injection_pairs_are_verified_corruptions_and_a_rerun_adds_none() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&["--rate-low-judge", "0.5"]);
    let (cfg, out) = judged_run(tmp.path(), &m.url, 16);
    let summary = dpo(&cfg, &out, "error_injection", &[]);
    assert_accounted(&summary);
    let file = out.join("dpo/error_injection.jsonl");
    let ps = pairs(&file);
    assert!(!ps.is_empty(), "no pairs: {summary}");
    assert_eq!(ps.len() as u64, summary["pairs_written"].as_u64().unwrap());
    let by_id: std::collections::HashMap<String, mediflow::Record> = records(&out)
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let known: Vec<&str> = ERROR_TYPES.iter().map(|(n, _)| *n).collect();
    let mut kinds = HashSet::new();
    for p in &ps {
        assert_common(p, "error_injection");
        let rec = &by_id[&p.record_id];
        assert_eq!(p.output, rec.output, "chosen is the record's answer");
        let e = p.error_type.as_deref().expect("error type");
        assert!(known.contains(&e), "{e}");
        kinds.insert(e.to_string());
        let cs = p.chosen_scores.expect("the record's judge scores");
        assert!(cs.quality >= 4.0);
        assert_eq!(Some(cs.quality), rec.quality);
        if p.output_format == "json" {
            assert_eq!(
                conforms(&p.task_type, &p.rejected_output),
                e != "schema_violation",
                "{e}: {}",
                p.rejected_output
            );
        } else {
            assert_ne!(e, "schema_violation");
        }
    }
    assert!(kinds.len() >= 2, "one error type only: {kinds:?}");

    // A re-run skips the records that have a pair and writes no duplicate.
    let again = dpo(&cfg, &out, "error_injection", &[]);
    assert_eq!(again["already_paired"].as_u64().unwrap(), ps.len() as u64);
    assert_accounted(&again);
    let after = pairs(&file);
    let ids: HashSet<&str> = after.iter().map(|p| p.record_id.as_str()).collect();
    assert_eq!(ids.len(), after.len(), "a record was paired twice");
    assert_eq!(
        after.len() as u64,
        ps.len() as u64 + again["pairs_written"].as_u64().unwrap()
    );
}

#[test]
fn best_of_n_pairs_keep_the_margin_and_a_huge_margin_makes_none() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&["--rate-low-judge", "0.5"]);
    let (cfg, out) = judged_run(tmp.path(), &m.url, 16);
    let summary = dpo(&cfg, &out, "best_of_n", &[]);
    assert_accounted(&summary);
    let ps = pairs(&out.join("dpo/best_of_n.jsonl"));
    assert!(!ps.is_empty(), "no pairs: {summary}");
    for p in &ps {
        assert_common(p, "best_of_n");
        let (c, r) = (p.chosen_scores.unwrap(), p.rejected_scores.unwrap());
        let margin = p.margin.unwrap();
        assert!(margin >= 1.0 - 1e-9, "margin {margin}");
        assert!(mean(&c) > mean(&r));
        assert!((mean(&c) - mean(&r) - margin).abs() < 1e-9);
        if p.output_format == "json" {
            assert!(conforms(&p.task_type, &p.output));
            assert!(conforms(&p.task_type, &p.rejected_output));
        }
    }

    // No pair can clear a margin of 5 (scores are 1-5): every record is skipped.
    edit(&cfg, "[judge]", "[dpo]\nmin_margin = 5.0\n\n[judge]");
    let strict = tmp.path().join("strict.jsonl");
    let s = dpo(
        &cfg,
        &out,
        "best_of_n",
        &["--out", strict.to_str().unwrap()],
    );
    assert_eq!(s["pairs_written"], 0, "{s}");
    assert_eq!(
        s["considered"].as_u64().unwrap(),
        records(&out).len() as u64
    );
    assert_accounted(&s);
    assert!(s["skipped"].get("margin_too_small").is_some(), "{s}");
    assert!(pairs(&strict).is_empty());
}

#[test]
fn on_policy_pairs_prefer_the_reference_over_a_worse_student() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&["--rate-low-judge", "0.5"]);
    let student = mock(&["--seed", "3"]);
    let (cfg, out) = judged_run(tmp.path(), &m.url, 16);
    let summary = dpo(
        &cfg,
        &out,
        "on_policy",
        &["--student-url", &student.url, "--student-model", "student"],
    );
    assert_accounted(&summary);
    let ps = pairs(&out.join("dpo/on_policy.jsonl"));
    // The judge scores half the prompts low: some student answers lose by a margin and
    // the reference answers, accepted by the same judge, never score low.
    assert!(!ps.is_empty(), "no pairs: {summary}");
    let by_id: std::collections::HashMap<String, mediflow::Record> = records(&out)
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    for p in &ps {
        assert_common(p, "on_policy");
        assert_eq!(p.output, by_id[&p.record_id].output);
        assert_eq!(p.chosen_model, "mock");
        assert_eq!(p.rejected_model, "student");
        let margin = p.margin.unwrap();
        assert!(margin >= 1.0 - 1e-9, "margin {margin}");
        assert!(mean(&p.chosen_scores.unwrap()) > mean(&p.rejected_scores.unwrap()));
    }
    // Without a student the strategy is refused as an input error.
    let o = run(&[
        "dpo",
        "--run",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--strategy",
        "on_policy",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn dpo_config_problems_are_reported_together() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "http://127.0.0.1:9/v1",
        4,
        "\n[dpo]\nerror_types = [\"made_up\"]\nsamples = 1\nmin_margin = -1\n",
    );
    let o = run(&["check", "--config", cfg.to_str().unwrap(), "--no-probe"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    for want in ["made_up", "dpo.samples", "dpo.min_margin"] {
        assert!(err.contains(want), "{want} not in {err}");
    }
}
