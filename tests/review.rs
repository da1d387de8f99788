//! `mediflow review` over real HTTP on 127.0.0.1 (the queue, decisions journaled before
//! the answer, validation, the token), `export` applying the decisions, and the review
//! page driven in headless Chromium through chromedriver's WebDriver API.

mod common;
use common::*;
use mediflow::record::Record;
use mediflow::review::journal::{self, Decision, Edit, Journal, Outcome, Verdict};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A judged run of 40 items with rejects (duplicates, schema-invalid answers).
fn review_run(dir: &Path) -> PathBuf {
    let m = mock(&["--rate-duplicate", "0.3", "--rate-bad-answer", "0.5"]);
    let cfg = config(
        dir,
        &m.url,
        40,
        "repair_attempts = 0\n\n[judge]\nenabled = true\nsamples = 3\n",
    );
    let out = dir.join("run");
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    assert!(records(&out).len() >= 10, "too few records");
    assert!(rejects(&out).len() >= 3, "too few rejects");
    out
}

/// A `mediflow review` process; killed on drop.
struct App {
    child: Child,
    url: String,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn review(run: &Path, extra: &[&str]) -> App {
    let mut child = Command::new(bin())
        .args(["review", "--run", run.to_str().unwrap()])
        .args(["--addr", "127.0.0.1:0"])
        .args(extra)
        .env_remove("MEDIFLOW_REVIEW_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn review");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "banner {line:?}");
    App { child, url }
}

impl App {
    /// The base URL without the page's `?token=`.
    fn base(&self) -> String {
        self.url.split('?').next().unwrap().to_string()
    }
}

fn journal_lines(run: &Path) -> Vec<Value> {
    match std::fs::read_to_string(journal::path(run)) {
        Ok(t) => t
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn get(c: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = c.get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn post(c: &reqwest::Client, url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut r = c.post(url).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_lists_the_queue_and_journals_valid_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    let run = review_run(tmp.path());
    let app = review(&run, &["--reviewer", "ann", "--include-rejects", "3"]);
    let c = reqwest::Client::new();
    let (items_url, decide) = (
        format!("{}api/items", app.base()),
        format!("{}api/decisions", app.base()),
    );

    let (status, list) = get(&c, &items_url, None).await;
    assert_eq!(status, 200, "{list}");
    let items = list["items"].as_array().unwrap();
    let recs = records(&run);
    assert_eq!(items.len(), recs.len() + 3);
    assert_eq!(list["reviewed"], 0);
    // the sampled rejects carry the gate's reason
    let reasons: BTreeMap<String, String> = rejects(&run)
        .into_iter()
        .map(|j| (j.id, j.reason))
        .collect();
    let sampled: Vec<&Value> = items.iter().filter(|i| !i["reject"].is_null()).collect();
    assert_eq!(sampled.len(), 3);
    for i in &sampled {
        assert_eq!(
            i["reject"]["reason"].as_str(),
            reasons.get(i["id"].as_str().unwrap()).map(String::as_str)
        );
    }
    // stratified: the first items are each of another cell, as many as there are cells
    let cell = |i: &Value| format!("{}/{}", i["task_type"], i["input_data"]);
    let cells: HashSet<String> = items.iter().map(cell).collect();
    let first: HashSet<String> = items[..cells.len()].iter().map(cell).collect();
    assert_eq!(first.len(), cells.len(), "the first items repeat a cell");
    let by_id: BTreeMap<&str, &Record> = recs.iter().map(|r| (r.id.as_str(), r)).collect();
    let judged = items
        .iter()
        .find(|i| !i["judge_scores"].as_object().unwrap().is_empty())
        .expect("a judged item");
    let r = by_id[judged["id"].as_str().unwrap()];
    assert_eq!(judged["judge_scores"]["quality"].as_f64(), r.quality);
    assert_eq!(judged["input"].as_str(), Some(r.input.as_str()));

    let plain = recs
        .iter()
        .find(|r| r.output_format == "plain_text")
        .unwrap();
    let json_rec = recs.iter().find(|r| r.output_format == "json").unwrap();

    // a reject, then the same reviewer's accept: both journaled, the accept wins
    let (s, v) = post(
        &c,
        &decide,
        None,
        json!({"id": plain.id, "decision": "reject"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let lines = journal_lines(&run);
    assert_eq!(lines.len(), 1, "journaled before the answer");
    assert_eq!(lines[0]["decision"], "reject");
    assert_eq!(lines[0]["reviewer"], "ann");
    let (s, v) = post(
        &c,
        &decide,
        None,
        json!({"id": plain.id, "decision": "accept", "scores": {"quality": 4, "realism": 2},
               "comment": "fine after all"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["reviewed"], 1);
    let ds = journal::read(&run).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(journal::resolve(&ds)[&plain.id], Outcome::Accepted);
    assert_eq!(ds[1].scores["realism"], 2);
    let (_, list) = get(&c, &items_url, None).await;
    let last = list["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["id"].as_str(),
        Some(plain.id.as_str()),
        "reviewed go last"
    );
    assert_eq!(last["decision"]["decision"], "accept");
    assert_eq!(list["reviewed"], 1);

    // refused, with a JSON error, and nothing journaled
    let refused = [
        (
            json!({"id": "nope", "decision": "accept"}),
            400,
            "unknown record id",
        ),
        (
            json!({"id": plain.id, "decision": "maybe"}),
            400,
            "\"decision\" must be",
        ),
        (
            json!({"id": plain.id, "decision": "accept", "scores": {"quality": 6}}),
            400,
            "from 1 to 5",
        ),
        (
            json!({"id": plain.id, "decision": "accept", "scores": {"beauty": 3}}),
            400,
            "unknown dimension",
        ),
        (
            json!({"id": plain.id, "decision": "edit"}),
            422,
            "needs a changed",
        ),
        (
            json!({"id": plain.id, "decision": "edit", "edit": {"output": plain.output}}),
            422,
            "needs a changed",
        ),
        (
            json!({"id": plain.id, "decision": "edit", "edit": {"output": "  "}}),
            422,
            "edited output is empty",
        ),
        (
            json!({"id": json_rec.id, "decision": "edit", "edit": {"output": "{\"x\": "}}),
            422,
            "not JSON",
        ),
        (
            json!({"id": json_rec.id, "decision": "edit", "edit": {"output": "{\"x\": 1}"}}),
            422,
            &format!("does not match the {} schema", json_rec.task_type),
        ),
        (
            json!({"id": plain.id, "decision": "reject", "edit": {"output": "new"}}),
            400,
            "need \"decision\": \"edit\"",
        ),
    ];
    for (body, want, msg) in refused {
        let (s, v) = post(&c, &decide, None, body.clone()).await;
        assert_eq!(s, want, "{body} -> {v}");
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(msg), "{body} -> {e}");
    }
    assert_eq!(journal_lines(&run).len(), 2);

    // another reviewer on the same run has decided nothing yet; both are journaled
    let bob = review(&run, &["--reviewer", "bob"]);
    let (_, theirs) = get(&c, &format!("{}api/items", bob.base()), None).await;
    assert_eq!(theirs["reviewed"], 0);
    assert!(theirs["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["decision"].is_null()));
    let (s, _) = post(
        &c,
        &format!("{}api/decisions", bob.base()),
        None,
        json!({"id": plain.id, "decision": "reject"}),
    )
    .await;
    assert_eq!(s, 200);
    let ds = journal::read(&run).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds[2].reviewer, "bob");
    assert_eq!(journal::resolve(&ds)[&plain.id], Outcome::Rejected);

    // a valid edit is journaled with the changed field only
    let (s, v) = post(
        &c,
        &decide,
        None,
        json!({"id": plain.id, "decision": "edit",
               "edit": {"output": "A corrected answer.", "input": plain.input}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let ds = journal::read(&run).unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(
        ds[3].edit,
        Edit {
            output: Some("A corrected answer.".into()),
            ..Edit::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_required_when_set_and_for_other_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let run = review_run(tmp.path());
    let app = review(&run, &["--reviewer", "bob", "--token", "s3cret"]);
    assert!(app.url.ends_with("/?token=s3cret"), "{}", app.url);
    let c = reqwest::Client::new();
    let items = format!("{}api/items", app.base());
    let decide = format!("{}api/decisions", app.base());
    let id = records(&run)[0].id.clone();
    assert_eq!(get(&c, &items, None).await.0, 401);
    assert_eq!(get(&c, &items, Some("s3cre")).await.0, 401);
    let (s, v) = get(&c, &items, Some("s3cret")).await;
    assert_eq!((s, v["reviewer"].as_str()), (200, Some("bob")));
    let body = json!({"id": id, "decision": "accept"});
    let (s, v) = post(&c, &decide, Some("wrong"), body.clone()).await;
    assert_eq!(s, 401);
    assert!(v["error"].as_str().unwrap().contains("token"), "{v}");
    assert!(journal_lines(&run).is_empty());
    assert_eq!(post(&c, &decide, Some("s3cret"), body).await.0, 200);
    assert_eq!(journal_lines(&run).len(), 1);
    // the page itself holds no data
    let page = c.get(app.base()).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("mediflow review"));

    // any other address without a token is refused before binding
    let o = run_cmd(&run, &["--addr", "0.0.0.0:0", "--reviewer", "bob"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a loopback address: set --token"),
        "{}",
        stderr(&o)
    );
}

fn run_cmd(run: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(["review", "--run", run.to_str().unwrap()])
        .args(extra)
        .env_remove("MEDIFLOW_REVIEW_TOKEN")
        .output()
        .unwrap()
}

fn decision(id: &str, who: &str, v: Verdict, edit: Edit) -> Decision {
    Decision {
        id: id.into(),
        reviewer: who.into(),
        decision: v,
        scores: BTreeMap::new(),
        edit,
        comment: String::new(),
        at: journal::now(),
    }
}

fn export_cmd(run_dir: &Path, out: &Path) -> std::process::Output {
    common::run(&[
        "export",
        "--run",
        run_dir.to_str().unwrap(),
        "--format",
        "sft-messages",
        "--out",
        out.to_str().unwrap(),
    ])
}

/// `export --format sft-messages` into `out`: the rows by id (JSONL twins) and the card.
fn export_rows(run: &Path, out: &Path) -> (BTreeMap<String, Value>, String) {
    let o = export_cmd(run, out);
    assert!(o.status.success(), "export failed: {}", stderr(&o));
    let mut rows = BTreeMap::new();
    for f in mediflow::sink::jsonl_files(&out.join("jsonl")).unwrap() {
        for row in mediflow::sink::read_jsonl::<Value>(&f, false).unwrap() {
            rows.insert(row["id"].as_str().unwrap().to_string(), row);
        }
    }
    (
        rows,
        std::fs::read_to_string(out.join("README.md")).unwrap(),
    )
}

fn assistant(row: &Value) -> &str {
    let m = row["messages"].as_array().unwrap();
    m.iter().find(|m| m["role"] == "assistant").unwrap()["content"]
        .as_str()
        .unwrap()
}

#[test]
fn export_drops_rejected_records_and_uses_edits() {
    let tmp = tempfile::tempdir().unwrap();
    let run = review_run(tmp.path());
    let recs = records(&run);
    let plain: Vec<&Record> = recs
        .iter()
        .filter(|r| r.output_format == "plain_text")
        .collect();
    let (rejected, edited, accepted) = (&plain[0].id, &plain[1].id, &plain[2].id);
    let mut j = Journal::open(&run).unwrap();
    let edit = Edit {
        output: Some("The reviewer's answer.".into()),
        ..Edit::default()
    };
    j.append(&decision(rejected, "ann", Verdict::Accept, Edit::default()))
        .unwrap();
    j.append(&decision(rejected, "bob", Verdict::Reject, Edit::default()))
        .unwrap();
    j.append(&decision(edited, "ann", Verdict::Edit, edit))
        .unwrap();
    j.append(&decision(accepted, "bob", Verdict::Accept, Edit::default()))
        .unwrap();
    let (rows, card) = export_rows(&run, &tmp.path().join("export"));
    assert_eq!(rows.len(), recs.len() - 1);
    assert!(!rows.contains_key(rejected.as_str()));
    assert_eq!(assistant(&rows[edited.as_str()]), "The reviewer's answer.");
    assert_eq!(assistant(&rows[accepted.as_str()]), plain[2].output);
    for line in [
        "2 reviewer(s) decided on 3 of the run's records",
        "| reviewed | 3 |",
        "| accepted | 1 |",
        "| edited | 1 |",
        "| rejected (dropped) | 1 |",
    ] {
        assert!(card.contains(line), "{line:?} not in the card:\n{card}");
    }

    // an edit that no longer validates stops the export, naming the journal and record
    let json_rec = recs.iter().find(|r| r.output_format == "json").unwrap();
    let bad = Edit {
        output: Some("{\"x\": 1}".into()),
        ..Edit::default()
    };
    j.append(&decision(&json_rec.id, "ann", Verdict::Edit, bad))
        .unwrap();
    let out = tmp.path().join("export2");
    let o = export_cmd(&run, &out);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("review/decisions.jsonl"), "{err}");
    assert!(
        err.contains(&format!("record {}: invalid edit", json_rec.id)),
        "{err}"
    );
    assert!(err.contains("schema"), "{err}");
}

// ---------------------------------------------------------------------------------------
// The page in a real browser (headless Chromium through chromedriver's WebDriver API).

/// chromedriver on a free loopback port; on drop (a failed assertion included) its
/// browser session is closed, so no Chromium outlives the test, and it is killed.
struct Driver {
    child: Child,
    port: u16,
    url: String,
    session: Option<String>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(sid) = &self.session {
            // A blocking DELETE /session/ID over loopback (drop cannot await).
            use std::io::{Read, Write};
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    s,
                    "DELETE /session/{sid} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
                     Connection: close\r\n\r\n",
                    self.port
                );
                let _ = s.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

struct Session<'a> {
    c: &'a reqwest::Client,
    base: String,
}

impl Session<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let mut r = self.c.request(method, &url);
        if !body.is_null() {
            r = r.json(&body);
        }
        let r = r.send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {v}");
        v["value"].clone()
    }
    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, body).await
    }
    async fn script(&self, js: &str) -> Value {
        self.post("/execute/sync", json!({"script": js, "args": []}))
            .await
    }
    async fn element(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        // the W3C element reference is the object's one value
        v.as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }
    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.post(&format!("/element/{e}/click"), json!({})).await;
    }
    async fn key(&self, k: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": k}, {"type": "keyUp", "value": k}]}]});
        self.post("/actions", actions).await;
    }
    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.post(&format!("/element/{e}/clear"), json!({})).await;
        self.post(&format!("/element/{e}/value"), json!({"text": text}))
            .await;
    }
    /// Polls a script until it returns something truthy.
    async fn until(&self, js: &str, what: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let v = self.script(js).await;
            if !(v.is_null() || v == false || v == "") {
                return v;
            }
            assert!(t0.elapsed() < Duration::from_secs(15), "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn wait_journal(run: &Path, n: usize) -> Vec<Value> {
    let t0 = Instant::now();
    loop {
        let lines = journal_lines(run);
        if lines.len() >= n {
            return lines;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "journal has {} lines",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_rejects_and_edits_in_headless_chromium() {
    let (Some(chromium), Some(chromedriver)) = (on_path("chromium"), on_path("chromedriver"))
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromedriver are needed in CI (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: chromium or chromedriver not on PATH");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = review_run(tmp.path());
    // a token with characters a URL must escape
    let app = review(&run, &["--reviewer", "cy", "--token", "t0k&n+/= x"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver = Driver {
        child: Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver"),
        port,
        url: format!("http://127.0.0.1:{port}"),
        session: None,
    };
    let c = reqwest::Client::new();
    let t0 = Instant::now();
    while c
        .get(format!("{}/status", driver.url))
        .send()
        .await
        .is_err()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
        "goog:chromeOptions": {"binary": chromium, "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1400,900",
            format!("--user-data-dir={}", tmp.path().join("chrome").display())]}}}});
    let r = c
        .post(format!("{}/session", driver.url))
        .json(&caps)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let sid = v["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"));
    driver.session = Some(sid.to_string());
    let s = Session {
        c: &c,
        base: format!("{}/session/{sid}", driver.url),
    };
    s.post("/url", json!({"url": app.url})).await;
    let total = s
        .until(
            "return document.getElementById('count').textContent",
            "the queue",
        )
        .await;
    assert!(total.as_str().unwrap().starts_with("0 of "), "{total}");

    // reject the first record with the keyboard, after scoring two dimensions
    let first = s.script("return data.items[0].id").await;
    s.click("#q-0").await;
    s.click("input[name='dim-quality'][value='2']").await;
    s.key("3").await; // focus moved to the next dimension
    s.key("r").await;
    let lines = wait_journal(&run, 1).await;
    assert_eq!(lines[0]["id"], first);
    assert_eq!(lines[0]["decision"], "reject");
    assert_eq!(lines[0]["reviewer"], "cy");
    assert_eq!(lines[0]["scores"], json!({"alignment": 3, "quality": 2}));
    s.until(
        "return document.getElementById('count').textContent.startsWith('1 of')",
        "progress",
    )
    .await;

    // an invalid JSON edit: the schema error shows and the reviewer's text stays
    let json_k = s
        .script("return data.items.findIndex((i, k) => k > 0 && i.output_format === 'json')")
        .await;
    s.click(&format!("#q-{json_k}")).await;
    s.key("e").await;
    s.type_into("textarea#output", "{\"codes\": ").await;
    s.click("#save").await;
    let err = s
        .until(
            "const e = document.getElementById('error'); return e.style.display === 'block' && e.textContent",
            "the edit error",
        )
        .await;
    assert!(err.as_str().unwrap().contains("not JSON"), "{err}");
    let kept = s
        .script("return document.querySelector('textarea#output').value")
        .await;
    assert_eq!(kept, "{\"codes\": ");
    assert_eq!(
        journal_lines(&run).len(),
        1,
        "an invalid edit is not journaled"
    );
    s.key("\u{E00C}").await; // Escape: cancel the edit

    // a valid edit of a plain-text answer, submitted with the button
    let k = s
        .script("return data.items.findIndex((i, k) => k > 0 && i.output_format === 'plain_text')")
        .await;
    let edited = s.script(&format!("return data.items[{k}].id")).await;
    s.click(&format!("#q-{k}")).await;
    s.click("#edit").await;
    s.type_into("textarea#output", "Edited in the browser.")
        .await;
    s.click("#save").await;
    let lines = wait_journal(&run, 2).await;
    assert_eq!(lines[1]["id"], edited);
    assert_eq!(lines[1]["decision"], "edit");
    assert_eq!(
        lines[1]["edit"],
        json!({"output": "Edited in the browser."})
    );

    // the edited record shows the edit
    s.click(&format!("#q-{k}")).await;
    let shown = s
        .script("return document.getElementById('output').textContent")
        .await;
    assert_eq!(shown, "Edited in the browser.");
    if let Some(path) = std::env::var_os("MEDIFLOW_REVIEW_SCREENSHOT") {
        s.click(&format!("#q-{json_k}")).await;
        let png = s
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let bytes = base64_decode(png.as_str().unwrap());
        std::fs::write(path, bytes).unwrap();
    }
    drop(driver);

    let (rows, _) = export_rows(&run, &tmp.path().join("export"));
    assert!(!rows.contains_key(first.as_str().unwrap()));
    assert_eq!(
        assistant(&rows[edited.as_str().unwrap()]),
        "Edited in the browser."
    );
}

/// Standard base64 (the WebDriver screenshot), without a crate for it.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && c != b'\n').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, &c)| a | (val(c) as u32) << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
