//! `mediflow audit` end to end with the real binary: the gate over JSONL, Parquet and chat
//! rows (one verdict per row, in order, with the reasons), unreadable input, duplicates,
//! agreement with `run` on its own records, the judge's calibration against the mock
//! teacher, and a run whose judge is near chance.

mod common;
use common::*;
use mediflow::record::Record;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/audit/labelled.jsonl")
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// `mediflow audit --in IN... --out OUT EXTRA...` (from the repository root).
fn audit(inputs: &[&Path], out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = vec!["audit".into()];
    for i in inputs {
        args.extend(["--in".into(), i.display().to_string()]);
    }
    args.extend(["--out".into(), out.display().to_string(), "--quiet".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args)
}

fn audit_ok(inputs: &[&Path], out: &Path, extra: &[&str]) -> Vec<Value> {
    let o = audit(inputs, out, extra);
    assert!(o.status.success(), "audit failed: {}", stderr(&o));
    lines(&out.join("verdicts.jsonl"))
}

/// The fixture's rows; `kind` is the reason a junk row must be rejected for.
fn fixture_rows() -> Vec<Value> {
    lines(&fixture())
}

fn as_record(v: &Value) -> Record {
    let mut r = Record::default();
    for (k, f) in [
        ("id", &mut r.id),
        ("task_type", &mut r.task_type),
        ("input_data", &mut r.input_data),
        ("output_format", &mut r.output_format),
        ("instruction", &mut r.instruction),
        ("input", &mut r.input),
        ("output", &mut r.output),
    ] {
        *f = v[k].as_str().unwrap().to_string();
    }
    r.difficulty_level = v["difficulty_level"].as_u64().unwrap() as u8;
    r
}

fn accepted(vs: &[Value]) -> Vec<bool> {
    vs.iter()
        .map(|v| v["accepted"].as_bool().unwrap())
        .collect()
}

#[test]
fn jsonl_rows_get_one_verdict_each_in_order_with_their_reasons() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("a");
    let vs = audit_ok(&[&fixture()], &out, &[]);
    let rows = fixture_rows();
    assert_eq!(vs.len(), rows.len());
    for (i, (v, r)) in vs.iter().zip(&rows).enumerate() {
        assert_eq!(v["row"], i as u64);
        assert_eq!(v["id"], r["id"]);
        assert_eq!(v["line"], i as u64 + 1);
        let reasons: Vec<&str> = v["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap())
            .collect();
        assert_eq!(reasons.len(), v["details"].as_array().unwrap().len());
        if r["label"] == "good" {
            assert_eq!(v["accepted"], true, "{v}");
            assert!(reasons.is_empty());
        } else {
            assert_eq!(v["accepted"], false, "{v}");
            let want = r["kind"].as_str().unwrap();
            assert!(
                reasons.contains(&want),
                "row {i}: want {want}, got {reasons:?}"
            );
        }
        assert_eq!(v["quality"], Value::Null, "no judge without a teacher");
    }
    // The near duplicate names the earlier accepted row.
    let dup = vs.iter().find(|v| v["id"] == "junk-duplicate").unwrap();
    assert_eq!(dup["details"][0], "dedup: duplicate of good-a");

    let s = read_json(&out.join("summary.json"));
    assert_eq!(
        (
            s["rows"].as_u64(),
            s["accepted"].as_u64(),
            s["rejected"].as_u64()
        ),
        (Some(12), Some(6), Some(6))
    );
    assert_eq!(s["by_reason"]["refusal"], 1);
    assert_eq!(s["by_task"]["summarization"]["rows"], 11);
    assert_eq!(s["by_task"]["question_answering"]["accepted"], 1);
    assert_eq!(s["labels"]["junk"]["rejected"], 6);
    assert_eq!(s["judge"], Value::Null);
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(stats["accepted"], 6);
    assert_eq!(stats["rejected"], 6);
    assert_eq!(stats["stages"]["dedup"]["dropped_near_duplicate"], 1);
}

#[test]
fn parquet_and_chat_rows_are_audited_like_jsonl() {
    let tmp = tempfile::tempdir().unwrap();
    let want = accepted(&audit_ok(&[&fixture()], &tmp.path().join("j"), &[]));
    let recs: Vec<Record> = fixture_rows().iter().map(as_record).collect();

    // Our own Parquet (every Record column).
    let pq = tmp.path().join("rows.parquet");
    mediflow::sink::write_parquet(&pq, &recs).unwrap();
    let vs = audit_ok(&[&pq], &tmp.path().join("p"), &[]);
    assert_eq!(accepted(&vs), want);
    assert_eq!(vs[3]["id"], "good-d");

    // Chat rows as `export --format sft-messages` writes them, split over two files: rows
    // are numbered over all inputs in order.
    let (a, b) = (
        tmp.path().join("chat-a.jsonl"),
        tmp.path().join("chat-b.jsonl"),
    );
    let chat = |rs: &[Record]| -> String {
        rs.iter()
            .map(|r| mediflow::export::sft::messages_row(r).to_string() + "\n")
            .collect()
    };
    std::fs::write(&a, chat(&recs[..5])).unwrap();
    std::fs::write(&b, chat(&recs[5..])).unwrap();
    let vs = audit_ok(&[&a, &b], &tmp.path().join("c"), &[]);
    assert_eq!(accepted(&vs), want);
    assert_eq!(vs[5]["row"], 5);
    assert_eq!(vs[5]["line"], 1);
    assert!(vs[5]["file"].as_str().unwrap().ends_with("chat-b.jsonl"));

    // Someone else's chat rows: no task_type, so task-specific checks are skipped and said so.
    let foreign = tmp.path().join("foreign.jsonl");
    let rows: String = recs
        .iter()
        .map(|r| {
            let mut v = mediflow::export::sft::messages_row(r);
            v.as_object_mut().unwrap().retain(|k, _| k == "messages");
            v.to_string() + "\n"
        })
        .collect();
    std::fs::write(&foreign, rows).unwrap();
    let out = tmp.path().join("f");
    let vs = audit_ok(&[&foreign], &out, &[]);
    let off = &vs[9];
    assert_eq!(off["task_type"], "unknown");
    assert!(
        off["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "task_type_missing"),
        "{off}"
    );
    // Without a task type the task-specific cue and shape checks are skipped; a request
    // that is no clinical NLP task at all (a translation into French) is still caught.
    let details = off["details"].as_array().unwrap();
    assert!(
        !details
            .iter()
            .any(|d| d.as_str().unwrap().contains("has no cue of")),
        "task check skipped: {off}"
    );
    let s = read_json(&out.join("summary.json"));
    assert!(
        s["skipped_checks"][0]
            .as_str()
            .unwrap()
            .contains("task-specific"),
        "{s}"
    );

    // A json answer that breaks the summarization schema fails the schema check with its
    // task and passes it without one (the schema check is task-specific).
    let mut off_schema = recs[1].clone();
    off_schema.id = "off-schema".into();
    off_schema.output_format = "json".into();
    off_schema.output = r#"{"verdict": "stable"}"#.into();
    let mut with_task = recs.clone();
    with_task.push(off_schema);
    let own = tmp.path().join("own.jsonl");
    std::fs::write(&own, chat(&with_task)).unwrap();
    let vs = audit_ok(&[&own], &tmp.path().join("o"), &[]);
    assert_eq!(vs[12]["reasons"][0], "schema_invalid", "{}", vs[12]);
    let foreign2 = tmp.path().join("foreign2.jsonl");
    let rows: String = with_task
        .iter()
        .map(|r| {
            let mut v = mediflow::export::sft::messages_row(r);
            v.as_object_mut().unwrap().retain(|k, _| k == "messages");
            v.to_string() + "\n"
        })
        .collect();
    std::fs::write(&foreign2, rows).unwrap();
    let vs = audit_ok(&[&foreign2], &tmp.path().join("f2"), &[]);
    let row = &vs[12];
    assert_eq!(row["task_type"], "unknown");
    let notes = row["notes"].as_array().unwrap();
    for n in ["task_type_missing", "output_format_inferred"] {
        assert!(notes.iter().any(|x| x == n), "{n}: {row}");
    }
    let reasons = row["reasons"].as_array().unwrap();
    assert!(
        !reasons.iter().any(|r| r == "schema_invalid"),
        "the schema check is skipped: {row}"
    );

    // A foreign Parquet with only the three required columns.
    use arrow::array::{ArrayRef, StringArray};
    let col = |k: &str| -> ArrayRef {
        std::sync::Arc::new(StringArray::from(
            fixture_rows()
                .iter()
                .map(|r| r[k].as_str().unwrap().to_string())
                .collect::<Vec<_>>(),
        ))
    };
    let batch = arrow::record_batch::RecordBatch::try_from_iter([
        ("instruction", col("instruction")),
        ("input", col("input")),
        ("output", col("output")),
    ])
    .unwrap();
    let bare = tmp.path().join("bare.parquet");
    let f = std::fs::File::create(&bare).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let vs = audit_ok(&[&bare], &tmp.path().join("b"), &[]);
    assert_eq!(vs.len(), 12);
    assert_eq!(vs[0]["accepted"], true, "{}", vs[0]);
    assert_eq!(vs[0]["id"], Value::Null);
    assert!(vs[6]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "refusal"));
    let json_row = &vs[10];
    assert!(json_row["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "output_format_inferred"));
}

#[test]
fn unreadable_input_names_the_file_and_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = fixture_rows();
    let bad = tmp.path().join("bad.jsonl");
    let text = format!("{}\n{}\n{{not json\n", rows[0], rows[1]);
    std::fs::write(&bad, text).unwrap();
    let out = tmp.path().join("o");
    let o = audit(&[&bad], &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{}:3:", bad.display())),
        "{}",
        stderr(&o)
    );
    assert!(!out.join("verdicts.jsonl").exists(), "nothing is written");

    let mut row = rows[0].clone();
    row.as_object_mut().unwrap().remove("output");
    let missing = tmp.path().join("missing.jsonl");
    std::fs::write(&missing, format!("{}\n\n{row}\n", rows[1])).unwrap();
    let o = audit(&[&missing], &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{}:3:", missing.display())) && e.contains("`output`"),
        "{e}"
    );

    let garbage = tmp.path().join("garbage.parquet");
    std::fs::write(&garbage, "this is not parquet").unwrap();
    let o = audit(&[&garbage], &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("garbage.parquet") && stderr(&o).contains("Parquet"),
        "{}",
        stderr(&o)
    );

    let o = audit(&[&tmp.path().join("absent.jsonl")], &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));
}

#[test]
fn an_exact_duplicate_of_an_accepted_row_is_rejected_but_not_one_of_a_rejected_row() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = fixture_rows();
    let (good, junk) = (&rows[1], &rows[6]);
    let mut again = good.clone();
    again["id"] = "again".into();
    let mut junk_again = junk.clone();
    junk_again["id"] = "junk-again".into();
    let f = tmp.path().join("dups.jsonl");
    std::fs::write(&f, format!("{good}\n{junk}\n{again}\n{junk_again}\n")).unwrap();
    let vs = audit_ok(&[&f], &tmp.path().join("o"), &[]);
    assert_eq!(accepted(&vs), [true, false, false, false]);
    assert_eq!(vs[2]["reasons"], serde_json::json!(["exact_duplicate"]));
    assert_eq!(vs[2]["details"][0], "dedup: duplicate of good-b");
    assert_eq!(
        vs[3]["reasons"],
        serde_json::json!(["refusal"]),
        "only accepted rows are indexed"
    );
}

#[test]
fn audit_accepts_every_record_a_run_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&["--rate-duplicate", "0.3"]);
    let cfg = config(tmp.path(), &m.url, 24, "");
    let out = tmp.path().join("run");
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    let kept = records(&out).len();
    assert!(kept > 0);
    let cfg_s = cfg.display().to_string();
    let vs = audit_ok(&[&out], &tmp.path().join("a"), &["--config", &cfg_s]);
    assert_eq!(vs.len(), kept);
    for v in &vs {
        assert_eq!(v["accepted"], true, "the same gate: {v}");
    }
}

fn auc(good: &[f64], junk: &[f64]) -> f64 {
    let mut w = 0.0;
    for g in good {
        for j in junk {
            w += if g > j {
                1.0
            } else if g == j {
                0.5
            } else {
                0.0
            };
        }
    }
    w / (good.len() * junk.len()) as f64
}

#[test]
fn calibration_with_the_mock_teacher_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&["--rate-low-judge", "0.5"]);
    let out = tmp.path().join("cal");
    let o = audit(
        &[&fixture()],
        &out,
        &[
            "--calibrate",
            "--teacher-url",
            &m.url,
            "--model",
            "mock",
            "--judge-samples",
            "3",
        ],
    );
    assert!(o.status.success(), "calibrate failed: {}", stderr(&o));
    assert!(stderr(&o).contains("not calibrated"), "{}", stderr(&o));
    let vs = lines(&out.join("verdicts.jsonl"));
    assert_eq!(vs.len(), 12);
    for v in &vs {
        assert_eq!(
            v["judge_samples"], 3,
            "every labelled row is judged, gate or not: {v}"
        );
        assert!(
            !v["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == "judge_below_threshold"),
            "{v}"
        );
    }
    let cal = read_json(&out.join("calibration.json"));
    assert_eq!(
        (
            cal["n"].as_u64(),
            cal["n_good"].as_u64(),
            cal["n_junk"].as_u64()
        ),
        (Some(12), Some(6), Some(6))
    );
    assert_eq!(cal["judge_model"], "mock");
    assert!(cal["template"].as_str().unwrap().starts_with("judge.j2@"));
    // The figures are those of the verdicts' scores.
    let split = |f: &dyn Fn(&Value) -> f64| -> (Vec<f64>, Vec<f64>) {
        let pick = |l: &str| vs.iter().filter(|v| v["label"] == l).map(f).collect();
        (pick("good"), pick("junk"))
    };
    let dims = ["quality", "alignment", "coherence", "realism", "difficulty"];
    for d in dims {
        let (g, j) = split(&|v| v[d].as_f64().unwrap());
        let got = cal["dimensions"][d]["auc"].as_f64().unwrap();
        assert!((got - auc(&g, &j)).abs() < 1e-9, "{d}: {got}");
    }
    let (g, j) = split(&|v| dims.iter().map(|d| v[*d].as_f64().unwrap()).sum::<f64>() / 5.0);
    let mean = &cal["dimensions"]["mean"];
    let a = mean["auc"].as_f64().unwrap();
    assert!((a - auc(&g, &j)).abs() < 1e-9);
    let t = mean["threshold"].as_f64().unwrap();
    let right = g.iter().filter(|s| **s >= t).count() + j.iter().filter(|s| **s < t).count();
    assert!((mean["accuracy"].as_f64().unwrap() - right as f64 / 12.0).abs() < 1e-9);
    assert_eq!(
        cal["verdict"],
        if a >= 0.7 { "usable" } else { "near_chance" }
    );
    let s = read_json(&out.join("summary.json"));
    assert_eq!(s["calibration"]["verdict"], cal["verdict"]);

    // Without a judge there is nothing to calibrate.
    let o = audit(&[&fixture()], &tmp.path().join("x"), &["--calibrate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("needs a judge"), "{}", stderr(&o));
}

#[test]
fn audit_with_a_judge_selects_only_when_calibrated() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&["--rate-low-judge", "1.0"]);
    let cfg = config(
        tmp.path(),
        &m.url,
        1,
        "\n[judge]\nenabled = true\nsamples = 3\n",
    );
    let audit_with = |cfg: &Path, name: &str| {
        let cfg = cfg.display().to_string();
        let out = tmp.path().join(name);
        let o = audit(&[&fixture()], &out, &["--config", &cfg]);
        assert!(o.status.success(), "audit failed: {}", stderr(&o));
        (
            lines(&out.join("verdicts.jsonl")),
            stderr(&o),
            read_json(&out.join("stats.json")),
        )
    };
    // Uncalibrated: the good rows are scored low and still accepted.
    let (vs, err, stats) = audit_with(&cfg, "plain");
    assert!(err.contains("thresholds not applied"), "{err}");
    assert_eq!(stats["judge"]["selection"]["thresholds_applied"], false);
    let good: Vec<&Value> = vs.iter().filter(|v| v["label"] == "good").collect();
    for v in &good {
        assert_eq!(v["accepted"], true, "{v}");
        assert!(v["quality"].as_f64().unwrap() <= 2.0, "{v}");
    }
    // Gate rejects are not judged outside calibration.
    assert_eq!(vs[6]["judge_samples"], 0);
    // Usable calibration: the judge rejects them.
    let cal = judge_calibration(tmp.path(), "usable", 0.9, 3.0);
    edit(
        &cfg,
        "samples = 3\n",
        &format!("samples = 3\ncalibration = {cal:?}\n"),
    );
    let (vs, err, stats) = audit_with(&cfg, "calibrated");
    assert!(err.contains("AUC 0.90, usable"), "{err}");
    assert_eq!(stats["judge"]["selection"]["thresholds_applied"], true);
    for v in vs.iter().filter(|v| v["label"] == "good") {
        assert_eq!(
            v["reasons"],
            serde_json::json!(["judge_below_threshold"]),
            "{v}"
        );
    }
}

#[test]
fn a_run_with_a_near_chance_judge_records_scores_but_rejects_nothing_on_them() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&["--rate-low-judge", "0.5"]);
    let cal = judge_calibration(tmp.path(), "near_chance", 0.55, 3.0);
    let judge = format!(
        "\n[plan]\ntasks = [\"summarization\", \"question_answering\"]\n\n[judge]\nenabled = true\nsamples = 3\ncalibration = {cal:?}\n"
    );
    let cfg = config(tmp.path(), &m.url, 12, &judge);
    let out = tmp.path().join("near");
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("near chance: mean-score AUC 0.55") && err.contains("thresholds not applied"),
        "{err}"
    );
    assert!(
        rejects(&out).iter().all(|j| j.stage != "judge"),
        "no judge rejects"
    );
    let low = records(&out)
        .iter()
        .filter(|r| r.quality.unwrap() < 3.0)
        .count();
    assert!(low > 0, "low-scored records are kept (and scored)");
    let stats = read_json(&out.join("stats.json"));
    assert_eq!(
        stats["judge"]["selection"]["thresholds_applied"], false,
        "{}",
        stats["judge"]
    );

    // The same run with a usable calibration and its calibrated (mean) threshold rejects them.
    let usable = judge_calibration(tmp.path(), "usable", 0.9, 3.5);
    edit(
        &cfg,
        &format!("calibration = {cal:?}"),
        &format!("calibration = {usable:?}\nthresholds = \"calibrated\""),
    );
    let out = tmp.path().join("usable");
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    let judged: Vec<_> = rejects(&out)
        .into_iter()
        .filter(|j| j.reason == "judge_below_threshold")
        .collect();
    assert!(!judged.is_empty(), "{}", stderr(&o));
    assert!(
        judged
            .iter()
            .all(|j| j.detail.starts_with("mean ") && j.detail.ends_with("< 3.5")),
        "{:?}",
        judged[0].detail
    );
    assert!(records(&out).iter().all(|r| r.quality.unwrap() >= 3.0));
}
