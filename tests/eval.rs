//! `mediflow eval` end to end with the real binary: task-file errors stop it before any
//! model call; a mock-teacher run is exported and its test split evaluated on the mock
//! (with malformed answers injected) next to the ICD-10-CM MCQ; a killed eval resumes
//! with every item exactly once; `eval compare` and `eval export-lm-eval` on the results.

mod common;
use common::*;
use mediflow::eval::predictions::{self, Prediction};
use mediflow::eval::report::Results;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MCQ: [&str; 2] = [
    "evals/icd10cm_description_to_code.yaml",
    "evals/icd10cm_code_to_description.yaml",
];

fn mcq_tasks() -> String {
    MCQ.iter()
        .map(|t| repo().join(t).display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn results(out: &Path) -> Results {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

fn eval_args<'a>(model: &'a str, tasks: &'a str, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "eval",
        "--model",
        model,
        "--model-name",
        "mock",
        "--tasks",
        tasks,
        "--out",
        out.to_str().unwrap(),
        "--backoff-initial-ms",
        "5",
        "--backoff-max-ms",
        "50",
    ];
    v.extend(extra);
    v
}

/// Every (task, id) appears once in the predictions.
fn assert_once(preds: &[Prediction]) -> HashSet<(String, String)> {
    let keys: HashSet<(String, String)> = preds
        .iter()
        .map(|p| (p.task.clone(), p.id.clone()))
        .collect();
    assert_eq!(keys.len(), preds.len(), "an item was written twice");
    keys
}

#[test]
fn a_bad_task_file_is_reported_before_any_model_call() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: broken\nsource:\n  kind: icd10cm_mcq\n  direction: sideways\n  n: 3\n  table: x\n",
    )
    .unwrap();
    let unknown_metric = tmp.path().join("metric.yaml");
    let text = std::fs::read_to_string(repo().join(MCQ[0]))
        .unwrap()
        .replace("kind: accuracy", "kind: bleu")
        .replace(
            "../taxonomy",
            &repo().join("taxonomy").display().to_string(),
        );
    std::fs::write(&unknown_metric, text).unwrap();
    let template = tmp.path().join("template.yaml");
    let text = std::fs::read_to_string(repo().join(MCQ[0]))
        .unwrap()
        .replace("{{ question }}", "{{ question_text }}")
        .replace(
            "../taxonomy",
            &repo().join("taxonomy").display().to_string(),
        );
    std::fs::write(&template, text).unwrap();
    // Nothing listens on port 1: a model call would fail with exit 4, not 2.
    for f in [&bad, &unknown_metric, &template] {
        let out = tmp.path().join("out");
        let o = run(&eval_args(
            "http://127.0.0.1:1/v1",
            f.to_str().unwrap(),
            &out,
            &[],
        ));
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(f.to_str().unwrap()), "{e}");
        assert!(!out.join("predictions.jsonl").exists());
    }
    let e = stderr(&run(&eval_args(
        "http://127.0.0.1:1/v1",
        template.to_str().unwrap(),
        &tmp.path().join("o"),
        &[],
    )));
    assert!(
        e.contains("question_text") || e.contains("undefined"),
        "{e}"
    );
    // A held-out task without an export directory.
    let o = run(&eval_args(
        "http://127.0.0.1:1/v1",
        repo()
            .join("evals/heldout_summarization.yaml")
            .to_str()
            .unwrap(),
        &tmp.path().join("o2"),
        &[],
    ));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--data"), "{}", stderr(&o));
}

/// A mock run of `items` json items, exported with test ratio 0.8 (one item per cell: all go to test).
fn mock_export(dir: &Path, url: &str, items: usize) -> (PathBuf, PathBuf) {
    let cfg = config(dir, url, items, "\n[plan]\nformats = [\"json\"]\n");
    let run_dir = dir.join("run");
    let o = run_to(&cfg, &run_dir, &["--quiet"]);
    assert!(o.status.success(), "run: {}", stderr(&o));
    let export = dir.join("export");
    let o = run(&[
        "export",
        "--run",
        run_dir.to_str().unwrap(),
        "--format",
        "sft-messages",
        "--splits",
        "0.2,0,0.8",
        "--out",
        export.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "export: {}", stderr(&o));
    (cfg, export)
}

/// task_type -> ids of the json rows in the export's test split.
fn test_split(export: &Path) -> BTreeMap<String, HashSet<String>> {
    let mut m: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for f in mediflow::sink::jsonl_files(&export.join("jsonl")).unwrap() {
        if !f
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("test-")
        {
            continue;
        }
        for r in mediflow::sink::read_jsonl::<Value>(&f, false).unwrap() {
            if r["output_format"] == "json" {
                m.entry(r["task_type"].as_str().unwrap().to_string())
                    .or_default()
                    .insert(r["id"].as_str().unwrap().to_string());
            }
        }
    }
    m
}

#[test]
fn mock_eval_of_an_exported_test_split_and_the_icd_benchmark() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = mock(&[]);
    let (cfg, export) = mock_export(tmp.path(), &gen.url, 80);
    let split = test_split(&export);
    assert!(split.len() >= 8, "test split covers few tasks: {split:?}");

    // The model under evaluation: the mock, a third of whose JSON answers break the schema.
    let m = mock(&["--rate-bad-answer", "0.3", "--seed", "5"]);
    edit(&cfg, &gen.url, &m.url);
    let out = tmp.path().join("eval");
    let evals = repo().join("evals");
    let t0 = Instant::now();
    // The generating mock judges open answers against the reference.
    let judge = tmp.path().join("judge.toml");
    std::fs::write(
        &judge,
        format!(
            "[teacher]\nkind = \"openai\"\nbase_urls = [\"{}\"]\nmodel = \"judge\"\n",
            gen.url
        ),
    )
    .unwrap();
    let o = run(&eval_args(
        cfg.to_str().unwrap(),
        evals.to_str().unwrap(),
        &out,
        &[
            "--data",
            export.to_str().unwrap(),
            "--limit",
            "40",
            "--quiet",
            "--judge",
            judge.to_str().unwrap(),
        ],
    ));
    assert!(o.status.success(), "eval: {}", stderr(&o));
    eprintln!("mock eval: {:.1}s", t0.elapsed().as_secs_f64());

    let r = results(&out);
    let preds = predictions::read(&out).unwrap();
    let keys = assert_once(&preds);
    assert_eq!(r.tasks.len(), 16);
    for t in &r.tasks {
        let mine: Vec<&Prediction> = preds.iter().filter(|p| p.task == t.task).collect();
        assert_eq!(t.n, mine.len());
        if let Some(tt) = t.task.strip_prefix("heldout_") {
            // Exactly the test split's json rows of that task type (at most --limit).
            let want = split.get(tt).cloned().unwrap_or_default();
            let got: HashSet<String> = mine.iter().map(|p| p.id.clone()).collect();
            if want.len() <= 40 {
                assert_eq!(got, want, "{}", t.task);
            } else {
                assert_eq!(got.len(), 40);
            }
            if t.n > 0 {
                // Schema validity is the complement of the malformed rate.
                let sv = t.metrics["schema_valid"].mean;
                assert!((sv + t.malformed_rate.unwrap() - 1.0).abs() < 1e-9, "{t:?}");
            }
        } else {
            assert_eq!(t.n, 40);
            // The mock has no completions endpoint: generation, with a note saying so.
            assert_eq!(t.modes.get("generate"), Some(&40));
            assert!(
                t.notes.iter().any(|n| n.contains("scored by generation")),
                "{:?}",
                t.notes
            );
            let acc = &t.metrics["accuracy"];
            assert!(acc.ci_low <= acc.mean && acc.mean <= acc.ci_high);
        }
        // The headline's mean is the mean of the items' scores.
        if let Some(h) = t.metrics.get(&t.headline) {
            let x: Vec<f64> = mine.iter().filter_map(|p| p.scores[&t.headline]).collect();
            assert!((h.mean - x.iter().sum::<f64>() / x.len() as f64).abs() < 1e-9);
            assert!(h.ci_low <= h.mean + 1e-12 && h.mean <= h.ci_high + 1e-12);
        }
    }
    // Malformed answers: present (rate 0.3), scored 0 everywhere, reasons kept.
    let malformed: Vec<&Prediction> = preds.iter().filter(|p| p.malformed.is_some()).collect();
    assert!(
        malformed.len() * 10 > preds.len(),
        "{} of {}",
        malformed.len(),
        preds.len()
    );
    for p in &malformed {
        assert!(p.answer.is_none());
        assert!(
            p.scores.values().all(|s| s.is_none_or(|v| v == 0.0)),
            "{p:?}"
        );
        assert!(p.malformed.as_ref().unwrap().contains("schema"), "{p:?}");
    }
    // The well-formed held-out answers are scored by the metrics, recomputed here.
    for p in preds
        .iter()
        .filter(|p| p.task == "heldout_named_entity_recognition" && p.answer.is_some())
    {
        assert_eq!(p.scores["schema_valid"], Some(1.0));
        let f = p.scores["span_f1"].unwrap();
        let (pr, rc) = (
            p.scores["span_precision"].unwrap(),
            p.scores["span_recall"].unwrap(),
        );
        let want = if pr + rc == 0.0 {
            0.0
        } else {
            2.0 * pr * rc / (pr + rc)
        };
        assert!((f - want).abs() < 1e-9);
    }
    // Judge scores: for exactly the well-formed open answers, on the 1-5 grid scaled to 0-1.
    let qa: Vec<&Prediction> = preds
        .iter()
        .filter(|p| p.task == "heldout_question_answering")
        .collect();
    assert!(!qa.is_empty());
    for p in &qa {
        match (&p.answer, p.scores.get("judge_score").copied().flatten()) {
            (Some(_), Some(g)) => assert!([0.0, 0.25, 0.5, 0.75, 1.0].contains(&g), "{g}"),
            (None, Some(g)) => assert_eq!(g, 0.0),
            (_, None) => panic!("no judge score: {p:?}"),
        }
    }
    // Parquet twin of the predictions.
    let pq = mediflow::export::write::read_parquet_rows(&out.join("predictions.parquet")).unwrap();
    assert_eq!(pq.len(), preds.len());
    let pq_keys: HashSet<(String, String)> = pq
        .iter()
        .map(|v| {
            (
                v["task"].as_str().unwrap().into(),
                v["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(pq_keys, keys);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    for t in &r.tasks {
        assert!(md.contains(&t.task));
    }
    assert!(md.contains("Macro average"));

    // Another model (a differently seeded mock): compare, paired over the same items.
    let m2 = mock(&["--seed", "9"]);
    let cfg2 = tmp.path().join("other.toml");
    std::fs::write(
        &cfg2,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(&m.url, &m2.url),
    )
    .unwrap();
    let out2 = tmp.path().join("eval2");
    let o = run(&eval_args(
        cfg2.to_str().unwrap(),
        evals.to_str().unwrap(),
        &out2,
        &[
            "--data",
            export.to_str().unwrap(),
            "--limit",
            "40",
            "--quiet",
        ],
    ));
    assert!(o.status.success(), "eval 2: {}", stderr(&o));
    let o = run(&[
        "eval",
        "compare",
        out.to_str().unwrap(),
        out2.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c: Value = serde_json::from_slice(&o.stdout).unwrap();
    let r2 = results(&out2);
    let qa2 = r2
        .tasks
        .iter()
        .find(|t| t.task == "heldout_question_answering")
        .unwrap();
    assert!(!qa2.metrics.contains_key("judge_score"));
    assert!(
        qa2.notes.iter().any(|n| n.contains("no --judge")),
        "{:?}",
        qa2.notes
    );
    let rows = c["rows"].as_array().unwrap();
    assert_eq!(rows.len(), r.tasks.iter().filter(|t| t.n > 0).count());
    for row in rows {
        let t = row["task"].as_str().unwrap();
        let (a, b) = (
            r.tasks.iter().find(|x| x.task == t).unwrap(),
            r2.tasks.iter().find(|x| x.task == t).unwrap(),
        );
        assert_eq!(row["method"], "paired");
        assert_eq!(row["n"], a.n);
        let d = row["delta"].as_f64().unwrap();
        let want = b.metrics[&b.headline].mean - a.metrics[&a.headline].mean;
        assert!((d - want).abs() < 1e-9, "{row}");
        let (lo, hi) = (
            row["ci_low"].as_f64().unwrap(),
            row["ci_high"].as_f64().unwrap(),
        );
        assert!(lo <= d + 1e-12 && d <= hi + 1e-12);
        assert_eq!(row["excludes_zero"], lo > 0.0 || hi < 0.0);
        assert_eq!(row["worse"], d < 0.0);
    }
    // Against itself: no change anywhere.
    let o = run(&[
        "eval",
        "compare",
        out.to_str().unwrap(),
        out.to_str().unwrap(),
        "--json",
    ]);
    let c: Value = serde_json::from_slice(&o.stdout).unwrap();
    for row in c["rows"].as_array().unwrap() {
        assert_eq!(row["delta"], 0.0);
        assert_eq!(row["excludes_zero"], false);
        assert_eq!(row["worse"], false);
    }
    let o = run(&[
        "eval",
        "compare",
        out.to_str().unwrap(),
        out2.to_str().unwrap(),
    ]);
    assert!(
        stdout(&o).contains("| task | metric | A | B |"),
        "{}",
        stdout(&o)
    );

    // lm-evaluation-harness export of the same tasks and items.
    let lm = tmp.path().join("lm");
    let o = run(&[
        "eval",
        "export-lm-eval",
        "--tasks",
        evals.to_str().unwrap(),
        "--data",
        export.to_str().unwrap(),
        "--limit",
        "40",
        "--out",
        lm.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(lm.join("utils.py").exists());
    for t in &r.tasks {
        let yaml = std::fs::read_to_string(lm.join(format!("{}.yaml", t.task))).unwrap();
        assert!(
            yaml.contains(&format!("task: mediflow_{}", t.task)),
            "{yaml}"
        );
        let rows: Vec<Value> =
            mediflow::sink::read_jsonl(&lm.join("data").join(format!("{}.jsonl", t.task)), false)
                .unwrap();
        assert_eq!(rows.len(), t.items);
        if t.source == "icd10cm_mcq" {
            assert!(yaml.contains("output_type: multiple_choice"));
            for row in &rows {
                let p = preds
                    .iter()
                    .find(|p| p.task == t.task && p.id == row["id"])
                    .unwrap();
                let letter = p.reference["answer"].as_str().unwrap();
                assert_eq!(
                    ["A", "B", "C", "D"][row["gold"].as_u64().unwrap() as usize],
                    letter
                );
                assert_eq!(row["choices"].as_array().unwrap().len(), 4);
            }
        } else {
            assert!(yaml.contains("process_results: !function utils.process_results"));
        }
    }
}

#[test]
fn a_killed_eval_resumes_with_every_item_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    // 40 ms per request, 2 in flight: 80 items take about 1.6 s.
    let m = mock(&["--latency-ms", "40", "--rate-500", "0.1"]);
    let out = tmp.path().join("eval");
    let tasks = mcq_tasks();
    let args = eval_args(
        &m.url,
        &tasks,
        &out,
        &["--limit", "40", "--concurrency", "2", "--quiet"],
    );
    let mut child = Command::new(bin())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = out.join("predictions.jsonl");
    let t0 = Instant::now();
    loop {
        let n = std::fs::read_to_string(&journal)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n >= 10 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = predictions::read(&out).unwrap();
    assert!(
        before.len() < 80,
        "finished before the kill: {}",
        before.len()
    );
    assert!(!out.join("results.json").exists());

    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let after = predictions::read(&out).unwrap();
    let keys = assert_once(&after);
    assert_eq!(keys.len(), 80);
    // What the first attempt wrote is kept as it was.
    for p in &before {
        assert!(after.contains(p));
    }
    let r = results(&out);
    assert_eq!(r.tasks.iter().map(|t| t.n).sum::<usize>(), 80);
    // Server errors were retried: some item needed more than one attempt.
    assert!(after.iter().any(|p| p.attempts > 1));
    // A different model in the same directory is refused.
    let o = run(&eval_args("embedded", &tasks, &out, &["--limit", "40"]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

/// A stand-in for a server with the legacy completions endpoint (`echo` + `logprobs`):
/// whitespace tokens, each with log-probability minus its length in characters.
fn echo_server() -> String {
    use axum::routing::{get, post};
    use axum::Json;
    use serde_json::json;
    async fn completions(Json(req): Json<Value>) -> Json<Value> {
        let chars: Vec<char> = req["prompt"].as_str().unwrap().chars().collect();
        let (mut offsets, mut tokens, mut lps) = (vec![], vec![], vec![]);
        let mut i = 0;
        while i < chars.len() {
            let start = i;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
            let tok: String = chars[start..i].iter().collect();
            offsets.push(start);
            lps.push(json!(-(tok.trim().chars().count() as f64)));
            tokens.push(tok);
        }
        lps[0] = Value::Null;
        // The one generated token (max_tokens = 1) follows the echoed prompt.
        offsets.push(chars.len());
        tokens.push("x".into());
        lps.push(json!(-0.5));
        Json(json!({"choices": [{"index": 0, "text": "x", "logprobs": {
            "tokens": tokens, "token_logprobs": lps, "text_offset": offsets}}]}))
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let app = axum::Router::new()
                .route(
                    "/v1/models",
                    get(|| async { Json(json!({"data": [{"id": "fake"}]})) }),
                )
                .route("/v1/completions", post(completions));
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{}/v1", rx.recv().unwrap())
}

#[test]
fn an_openai_compatible_server_with_echo_logprobs_scores_options_by_loglikelihood() {
    let tmp = tempfile::tempdir().unwrap();
    let url = echo_server();
    let out = tmp.path().join("eval");
    let tasks = mcq_tasks();
    let o = run(&eval_args(&url, &tasks, &out, &["--limit", "5", "--quiet"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let preds = predictions::read(&out).unwrap();
    assert_eq!(preds.len(), 10);
    let tasks = mediflow::eval::task::load(
        &MCQ.iter().map(|t| repo().join(t)).collect::<Vec<_>>(),
        None,
    )
    .unwrap();
    for p in &preds {
        assert_eq!(p.mode, "loglikelihood", "{p:?}");
        let item = tasks
            .iter()
            .find(|t| t.spec.name == p.task)
            .unwrap()
            .items
            .iter()
            .find(|i| i.id == p.id)
            .unwrap();
        // Exactly the option's tokens are summed: minus its non-space characters.
        let want: Vec<f64> = item
            .options
            .iter()
            .map(|o| -(o.chars().filter(|c| !c.is_whitespace()).count() as f64))
            .collect();
        assert_eq!(p.option_logprobs.as_ref().unwrap(), &want);
    }
    assert!(results(&out).tasks.iter().all(|t| t.notes.is_empty()));
}
