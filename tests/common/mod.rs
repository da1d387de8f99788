//! Test helpers: run the real binary, start the real mock teacher on 127.0.0.1, write
//! configs into temporary directories, read a run's outputs back.
#![allow(dead_code)]

use mediflow::record::{Record, Rejection};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mediflow")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A mock teacher process; killed on drop.
pub struct Mock {
    pub child: Child,
    pub url: String,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn mock(args: &[&str]) -> Mock {
    mock_at("127.0.0.1:0", args)
}

/// A mock teacher on `addr` (`host:port`; port 0 picks a free one).
pub fn mock_at(addr: &str, args: &[&str]) -> Mock {
    let mut child = Command::new(bin())
        .args(["mock-teacher", "--addr", addr])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mock");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "unexpected mock banner {line:?}"
    );
    Mock { child, url }
}

/// Write a run config in `dir` pointing at the repository's taxonomy, templates and schemas.
pub fn config(dir: &Path, url: &str, items: usize, extra: &str) -> PathBuf {
    let r = repo();
    let text = format!(
        r#"name = "test"
seed = 7
items = {items}
taxonomy_dir = "{tax}"
templates_dir = "{tpl}"
schemas_dir = "{sch}"
out_root = "{out}"

[teacher]
kind = "openai"
base_urls = ["{url}"]
model = "mock"
timeout_secs = 5

[engine]
concurrency = 8
backoff_initial_ms = 5
backoff_max_ms = 50
{extra}
"#,
        tax = r.join("taxonomy").display(),
        tpl = r.join("templates").display(),
        sch = r.join("schemas").display(),
        out = dir.join("outputs").display(),
    );
    let p = dir.join("run.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run mediflow")
}

/// `mediflow run --config CFG --out OUT EXTRA...`
pub fn run_to(cfg: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    run(&args)
}

/// Replace `from` with `to` in a (config) file.
pub fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn records(out: &Path) -> Vec<Record> {
    let mut v = Vec::new();
    for f in mediflow::sink::shard_files(out).unwrap() {
        v.extend(mediflow::sink::read_jsonl::<Record>(&f, false).unwrap());
    }
    v
}

pub fn rejects(out: &Path) -> Vec<Rejection> {
    mediflow::sink::read_jsonl(&out.join("rejects.jsonl"), false).unwrap()
}

/// The planned ids (first `limit`) according to `mediflow plan --json`.
pub fn planned_ids(cfg: &Path, limit: Option<usize>) -> Vec<String> {
    let mut args = vec!["plan", "--config", cfg.to_str().unwrap(), "--json"];
    let l = limit.map(|l| l.to_string());
    if let Some(l) = &l {
        args.extend(["--limit", l]);
    }
    let o = run(&args);
    assert!(o.status.success(), "plan failed: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every planned id appears exactly once across records and rejects.
pub fn assert_exactly_once(out: &Path, planned: &[String]) {
    let mut seen: Vec<String> = records(out).into_iter().map(|r| r.id).collect();
    seen.extend(rejects(out).into_iter().map(|r| r.id));
    let n = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(n, seen.len(), "an item was written twice");
    let mut want = planned.to_vec();
    want.sort();
    assert_eq!(seen, want, "records + rejects must equal the plan");
}

/// The mock's `host:port` (from its URL).
pub fn mock_addr(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches("/v1")
        .to_string()
}

/// Outcomes on disk: records plus rejects.
pub fn outcomes(out: &Path) -> usize {
    records(out).len() + rejects(out).len()
}

/// The JSON file `name` in the run directory `out`.
pub fn json_file(out: &Path, name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join(name)).unwrap()).unwrap()
}

/// The mock teacher's `/stats` counters.
pub fn mock_stats(url: &str) -> serde_json::Value {
    // A tiny blocking GET over loopback, so the test does not need an HTTP client of its own.
    use std::io::{Read, Write};
    let hostport = mock_addr(url);
    let mut s = std::net::TcpStream::connect(&hostport).unwrap();
    write!(
        s,
        "GET /stats HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    serde_json::from_str(buf.split("\r\n\r\n").nth(1).unwrap().trim()).unwrap()
}

/// Write a judge `calibration.json` for the mock teacher's model ("mock") and this
/// repository's judge template, with `verdict` (`usable` / `near_chance`), the mean
/// score's AUC and threshold; returns its path.
pub fn judge_calibration(dir: &Path, verdict: &str, auc: f64, threshold: f64) -> PathBuf {
    let template = std::fs::read(repo().join("templates/judge.j2")).unwrap();
    let sep = serde_json::json!({"auc": auc, "threshold": threshold, "accuracy": 0.8,
        "good_kept": 0.8, "junk_rejected": 0.8});
    let cal = serde_json::json!({
        "judge_model": "mock", "judge_backend": "openai",
        "template": format!("judge.j2@{}", mediflow::util::short_hash(template)),
        "samples": 3, "n": 60, "n_good": 30, "n_junk": 30, "n_unscored": 0,
        "dimensions": {"mean": sep}, "verdict": verdict,
        "rule": "usable when the AUC of the mean score is at least 0.7",
    });
    let p = dir.join(format!("calibration-{verdict}.json"));
    std::fs::write(&p, serde_json::to_vec_pretty(&cal).unwrap()).unwrap();
    p
}
