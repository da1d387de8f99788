//! `mediflow report` end to end with the real binary: the report of a judged mock run
//! (sections, counts against the run's stats.json, nothing fetched, untrusted text
//! escaped), of an audit output, with a reviewers' journal (agreement figures), its size
//! on a large synthetic run, clear errors, and the page in headless Chromium.

mod common;
use common::*;
use mediflow::record::{Record, Rejection};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

const SECTIONS: [&str; 10] = [
    "overview",
    "coverage",
    "funnel",
    "judge",
    "usage",
    "duplicates",
    "dpo",
    "quotas",
    "review",
    "samples",
];

/// A judged run (usable calibration: the judge selects) with exact quotas, near
/// duplicates and low judge scores, and error-injection preference pairs.
fn mock_run(dir: &Path) -> PathBuf {
    let m = mock(&["--rate-low-judge", "0.3", "--rate-duplicate", "0.2"]);
    let cal = judge_calibration(dir, "usable", 0.9, 3.0);
    let extra = format!(
        "[judge]\nenabled = true\nsamples = 3\ncalibration = \"{}\"\n\n\
         [quota]\ntarget_accepted = \"plan\"\nbudget_factor = 2.0\n",
        cal.display()
    );
    let cfg = config(dir, &m.url, 40, &extra);
    let out = dir.join("out");
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    let o = run(&[
        "dpo",
        "--run",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--strategy",
        "error_injection",
    ]);
    assert!(o.status.success(), "dpo failed: {}", stderr(&o));
    out
}

fn report(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["report", "--run", dir.to_str().unwrap()];
    args.extend(extra);
    run(&args)
}

fn report_ok(dir: &Path) -> String {
    let o = report(dir, &[]);
    assert!(o.status.success(), "report failed: {}", stderr(&o));
    std::fs::read_to_string(dir.join("report.html")).unwrap()
}

/// The text of a section (between its opening tag and the next section).
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no section {id}"));
    let end = html[start..].find("</section>").unwrap();
    &html[start..start + end]
}

fn assert_self_contained(html: &str) {
    // (record text is escaped: a quote in it is `&quot;`, so `src="` can only be markup)
    assert!(!html.contains("src=\""), "the page loads something");
    assert!(!html.contains("<link") && !html.contains("url("));
    assert!(!html.contains("<iframe") && !html.contains("<object") && !html.contains("<embed"));
    for (i, _) in html.match_indices("href=\"") {
        assert!(html[i + 6..].starts_with('#'), "a link leaves the page");
    }
    // (records may quote a URL, e.g. a schema's `$schema`: as text, not as a resource)
    assert!(!html.contains("@import") && !html.contains("xlink:href"));
    assert_eq!(html.matches("<script").count(), 1, "one inline script only");
}

/// A hostile record appended to the run's first data shard.
fn add_hostile_record(out: &Path) -> Record {
    let mut r = records(out).remove(0);
    r.id = "hostile".into();
    r.task_type = "summarization\"><script>alert(1)</script>".into();
    r.instruction = "Summarise </script><script>alert('x')</script>".into();
    r.input = "<img src=x onerror=\"alert(2)\"> patient & family".into();
    r.output = "</details></div><b onmouseover=alert(3)>bold</b>".into();
    let f = mediflow::sink::shard_files(out).unwrap().remove(0);
    let mut file = std::fs::OpenOptions::new().append(true).open(f).unwrap();
    writeln!(file, "{}", serde_json::to_string(&r).unwrap()).unwrap();
    r
}

#[test]
fn report_of_a_judged_mock_run_matches_its_stats_and_escapes_records() {
    let tmp = tempfile::tempdir().unwrap();
    let out = mock_run(tmp.path());
    let stats = json_file(&out, "stats.json");
    let html = report_ok(&out);
    for s in SECTIONS {
        section(&html, s);
    }
    assert_self_contained(&html);
    let (acc, rej) = (
        stats["accepted"].as_u64().unwrap(),
        stats["rejected"].as_u64().unwrap(),
    );
    assert!(rej > 0, "the mock run should reject some records");
    let overview = section(&html, "overview");
    assert!(
        overview.contains(&format!("<td>accepted</td><td>{acc} (")),
        "{overview}"
    );
    assert!(overview.contains(&format!("<td>rejected</td><td>{rej}</td>")));
    // the funnel and the reasons, counted from the records, are the run's own figures
    let funnel = section(&html, "funnel");
    for (stage, v) in stats["stages"].as_object().unwrap() {
        let (kept, total) = (v["kept"].as_u64().unwrap(), v["total"].as_u64().unwrap());
        assert!(funnel.contains(&format!(">{stage}</text>")), "{stage}");
        assert!(
            funnel.contains(&format!("{kept} kept of {total}")),
            "{stage}"
        );
    }
    for (reason, n) in stats["rejected_by_reason"].as_object().unwrap() {
        assert!(funnel.contains(&format!(">{reason}</text>")), "{reason}");
        assert!(funnel.contains(&format!(">{n} (")), "{reason}: {n}");
    }
    // near duplicates are clustered under the record they duplicate
    let dups: Vec<Rejection> = rejects(&out)
        .into_iter()
        .filter(|j| j.reason == "near_duplicate")
        .collect();
    assert!(
        !dups.is_empty(),
        "--rate-duplicate should make near duplicates"
    );
    let of = dups[0].detail.strip_prefix("duplicate of ").unwrap();
    assert!(section(&html, "duplicates").contains(&format!("<code>{of}</code>")));
    // judge histograms, the calibration, DPO margins and quota fill
    let judge = section(&html, "judge");
    assert!(judge.contains("quality (mean") && judge.contains("AUC"));
    assert!(judge.contains("thresholds applied"), "{judge}");
    let pairs = std::fs::read_to_string(out.join("dpo/error_injection.jsonl")).unwrap();
    let dpo = section(&html, "dpo");
    assert!(dpo.contains(&format!("error_injection: {} pairs", pairs.lines().count())));
    let cells = stats["cells"].as_object().unwrap();
    let met = cells.values().filter(|c| c["status"] == "met").count();
    assert!(section(&html, "quotas").contains(&format!("{met} of {} cells met", cells.len())));
    // every sampled record is shown; the sample note counts the run
    let samples = section(&html, "samples");
    assert!(samples.contains(&format!(
        "Showing {acc} of {acc} accepted and {rej} of {rej} rejected"
    )));
    assert_eq!(
        samples.matches("<details class=\"item").count() as u64,
        acc + rej
    );
    // JSON answers are pretty-printed, grounded spans marked
    assert!(
        samples.contains("{\n  &quot;"),
        "no pretty-printed JSON answer"
    );
    assert!(samples.contains("<mark>"), "no grounded span highlighted");

    // a record with markup in every field cannot break out of the page
    add_hostile_record(&out);
    let html = report_ok(&out);
    assert_self_contained(&html);
    assert!(!html.contains("<img") && !html.contains("<b onmouseover"));
    assert!(html.contains("&lt;img src=x onerror=&quot;alert(2)&quot;&gt; patient &amp; family"));
    assert!(
        html.contains("data-task=\"summarization&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\"")
    );
    assert!(html.contains("&lt;/details&gt;&lt;/div&gt;&lt;b onmouseover=alert(3)&gt;bold"));
    assert_eq!(
        html.matches("<details class=\"item").count(),
        html.matches("</details>").count()
    );
}

#[test]
fn report_of_an_audit_output() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&["--rate-duplicate", "0.3"]);
    let cfg = config(tmp.path(), &m.url, 20, "");
    let run_dir = tmp.path().join("out");
    assert!(run_to(&cfg, &run_dir, &["--quiet"]).status.success());
    let audit = tmp.path().join("audit");
    let o = run(&[
        "audit",
        "--in",
        run_dir.to_str().unwrap(),
        "--out",
        audit.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "audit failed: {}", stderr(&o));
    let summary = json_file(&audit, "summary.json");
    let out = tmp.path().join("audit-report.html");
    let o = report(&audit, &["--out", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "report failed: {}", stderr(&o));
    let w: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(w["kind"], "audit");
    assert_eq!(w["records"], summary["rows"]);
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(
        !audit.join("report.html").exists(),
        "--out is where it goes"
    );
    assert_self_contained(&html);
    for s in SECTIONS {
        section(&html, s);
    }
    let overview = section(&html, "overview");
    assert!(overview.contains(&format!(
        "<td>rows audited</td><td>{}</td>",
        summary["rows"]
    )));
    assert!(overview.contains(&format!("<td>accepted</td><td>{} (", summary["accepted"])));
    // per task: accepted of rows, as the summary counts them
    let coverage = section(&html, "coverage");
    for (task, c) in summary["by_task"].as_object().unwrap() {
        assert!(
            coverage.contains(&format!(">{}/{}</text>", c["accepted"], c["rows"])),
            "{task}"
        );
    }
    // verdicts keep no text: the browser reads the sampled rows back from the inputs
    let samples = section(&html, "samples");
    assert!(samples.contains("audited row ") && !samples.contains("not readable"));
    let unmarked = samples.replace("<mark>", "").replace("</mark>", "");
    for r in records(&run_dir) {
        let doc = mediflow::report::html::esc(&r.input);
        assert!(
            unmarked.contains(&doc[..doc.floor_char_boundary(200)]),
            "{}",
            r.id
        );
    }
    assert!(section(&html, "usage").contains("no token counts"));
    // inputs gone: the rows are named, without text
    std::fs::rename(&run_dir, tmp.path().join("moved")).unwrap();
    let o = report(&audit, &["--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "report failed: {}", stderr(&o));
    let html = std::fs::read_to_string(&out).unwrap();
    let samples = section(&html, "samples");
    let gone = samples
        .matches("not readable any more (an audit keeps no text)")
        .count();
    assert_eq!(gone as u64, summary["rows"].as_u64().unwrap());
}

/// One line of a reviewers' journal, as `mediflow review` writes it.
fn decision(id: &str, who: &str, verdict: &str, scores: Value) -> String {
    json!({"id": id, "reviewer": who, "decision": verdict, "scores": scores,
        "comment": "", "at": "2026-12-04T00:00:00.000Z"})
    .to_string()
}

#[test]
fn a_reviewers_journal_gives_counts_and_agreement_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let out = mock_run(tmp.path());
    let html = report_ok(&out);
    assert!(section(&html, "review").contains("no review yet"));
    // ann agrees with the gate on every record it judged and gives the judge's quality
    // (integers: the medians of three integer samples agree up to ties); bob rejects
    // everything ann accepts and accepts what she rejects but for the first two records;
    // only three records get a realism score.
    let gate = ["filter", "judge", "dedup"];
    let mut judged: Vec<(String, bool, f64)> = records(&out)
        .into_iter()
        .map(|r| (r.id, true, r.quality.unwrap()))
        .collect();
    judged.extend(
        rejects(&out)
            .into_iter()
            .filter(|j| gate.contains(&j.stage.as_str()) && j.record.judge_samples > 0)
            .map(|j| (j.id, false, j.record.quality.unwrap())),
    );
    let n_rejected = judged.iter().filter(|j| !j.1).count();
    assert!(
        n_rejected >= 2,
        "the mock run should have gate rejects with scores"
    );
    let mut qualities: Vec<u8> = judged.iter().map(|j| j.2 as u8).collect();
    qualities.dedup();
    assert!(qualities.len() > 1, "the judge's quality should vary");
    let mut lines = Vec::new();
    for (i, (id, kept, q)) in judged.iter().enumerate() {
        let ann = if *kept { "accept" } else { "reject" };
        let mut scores = json!({"quality": *q as u8});
        if i < 3 {
            scores["realism"] = json!(4);
        }
        lines.push(decision(id, "ann", ann, scores));
        let bob = if *kept == (i < 2) { "accept" } else { "reject" };
        lines.push(decision(id, "bob", bob, json!({})));
    }
    // a decision ann took back (her latest wins)
    lines.insert(
        0,
        decision(&judged[0].0, "ann", "reject", json!({"quality": 1})),
    );
    let dir = out.join("review");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("decisions.jsonl"), lines.join("\n") + "\n").unwrap();
    let html = report_ok(&out);
    let review = section(&html, "review");
    let n = judged.len();
    // the first two records both accept; every other one has a reject from ann or bob
    let counts = format!(
        "<td>{n}</td><td>2</td><td>0</td><td>{}</td><td>{}</td>",
        n - 2,
        2 * n + 1
    );
    assert!(review.contains(&counts), "{review}");
    // ann matches the gate, bob mostly does not: kappa over the (record, reviewer) pairs
    let pooled = mediflow::report::statistics::kappa(
        &judged
            .iter()
            .enumerate()
            .flat_map(|(i, j)| [(j.1, j.1), (j.1, j.1 == (i < 2))])
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(
        review.contains(&format!(
            "<td>Cohen&#39;s kappa, accept / reject</td><td>{pooled:.2} (n={})</td>",
            2 * n
        )),
        "{review}"
    );
    // ann's quality is the judge's: rho = 1 over ann's n; realism is too thin
    assert!(review.contains(&format!(
        "<td>Spearman&#39;s rho, quality</td><td>1.00 (n={n})</td>"
    )));
    assert!(review.contains("<td>Spearman&#39;s rho, realism</td><td>not enough data (n=3)</td>"));
    // ann vs bob: they agree on the first two records only
    assert!(review.contains("ann vs bob"));
    let pair = mediflow::report::statistics::kappa(
        &judged
            .iter()
            .enumerate()
            .map(|(i, j)| (j.1, j.1 == (i < 2)))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(review.contains(&format!("{pair:.2} (n={n})")), "{review}");
    // the browser shows each reviewer's verdict on a sampled record
    assert!(section(&html, "samples").contains("<span class=\"tag\">bob: Reject</span>"));
}

/// A large synthetic run written directly: `n` accepted records and `n / 5` rejects.
fn synthetic_run(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let doc = "Patient seen in clinic for follow-up of type 2 diabetes. ".repeat(12);
    let base = Record {
        input_data: "progress_note".into(),
        document_family: "clinical_note".into(),
        output_format: "plain_text".into(),
        difficulty_level: 3,
        instruction: "Summarise the note for the primary care physician.".into(),
        input: doc,
        output: "Follow-up of type 2 diabetes.".into(),
        quality: Some(4.0),
        alignment: Some(4.0),
        coherence: Some(5.0),
        realism: Some(4.0),
        difficulty: Some(3.0),
        judge_samples: 3,
        judge_spread: Some(1.0),
        prompt_tokens: 900,
        completion_tokens: 200,
        latency_ms: 1500,
        attempts: 3,
        ..Record::default()
    };
    let tasks = [
        "summarization",
        "simplification",
        "question_answering",
        "note_generation",
    ];
    let mut data =
        std::io::BufWriter::new(std::fs::File::create(dir.join("data/part-00000.jsonl")).unwrap());
    let mut rej =
        std::io::BufWriter::new(std::fs::File::create(dir.join("rejects.jsonl")).unwrap());
    let mut r = base.clone();
    for i in 0..n + n / 5 {
        r.id = format!("rec-{i:07}");
        r.task_type = tasks[i % tasks.len()].into();
        r.prompt_tokens = 500 + (i % 1000) as u64;
        if i < n {
            serde_json::to_writer(&mut data, &r).unwrap();
            data.write_all(b"\n").unwrap();
        } else {
            let j = json!({"id": r.id, "stage": "filter", "reason": "too_short",
                "detail": "answer has 5 words", "record": r});
            serde_json::to_writer(&mut rej, &j).unwrap();
            rej.write_all(b"\n").unwrap();
        }
    }
    std::fs::write(dir.join("manifest.json"), "{}").unwrap();
}

#[test]
fn the_page_stays_small_on_a_large_run() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sizes = Vec::new();
    for n in [5_000, 50_000] {
        let dir = tmp.path().join(format!("run-{n}"));
        synthetic_run(&dir, n);
        let t0 = Instant::now();
        let o = report(&dir, &["--json"]);
        assert!(o.status.success(), "report failed: {}", stderr(&o));
        let w: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(w["records"], (n + n / 5) as u64);
        assert_eq!(w["sampled"], 700);
        let bytes = w["bytes"].as_u64().unwrap();
        println!(
            "{} records: {bytes} bytes in {:.2} s",
            n + n / 5,
            t0.elapsed().as_secs_f64()
        );
        let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
        assert_eq!(html.len() as u64, bytes);
        assert!(html.contains(&format!(
            "Showing 500 of {n} accepted and 200 of {} rejected",
            n / 5
        )));
        assert!(section(&html, "overview").contains(&format!("<td>accepted</td><td>{n} (")));
        sizes.push(bytes);
    }
    // ten times the records, the same page (the sample and the aggregates are bounded)
    assert!(sizes[1] < 2_000_000, "{sizes:?}");
    assert!((sizes[1] as f64) < sizes[0] as f64 * 1.05, "{sizes:?}");
}

#[test]
fn clear_errors_for_what_is_not_a_run_or_a_bad_line() {
    let tmp = tempfile::tempdir().unwrap();
    let o = report(tmp.path(), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("neither a run directory"),
        "{}",
        stderr(&o)
    );
    let o = report(&tmp.path().join("missing"), &[]);
    assert_eq!(o.status.code(), Some(2));
    let dir = tmp.path().join("run");
    synthetic_run(&dir, 10);
    let f = dir.join("data/part-00000.jsonl");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push_str("{\"id\": \"broken\"\n{}\n");
    std::fs::write(&f, text).unwrap();
    let o = report(&dir, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("part-00000.jsonl:11"), "{}", stderr(&o));
    assert!(!dir.join("report.html").exists());
    // so is a bad line in the reviewers' journal
    synthetic_run(&dir, 10);
    std::fs::create_dir_all(dir.join("review")).unwrap();
    std::fs::write(dir.join("review/decisions.jsonl"), "not json\n{}\n").unwrap();
    let o = report(&dir, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("decisions.jsonl:1"), "{}", stderr(&o));
}

/// Headless Chromium, or None (the test is skipped unless `CI` is set).
fn chromium() -> Option<&'static str> {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        let ok = std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(c);
        }
    }
    assert!(std::env::var_os("CI").is_none(), "CI: chromium is required");
    eprintln!("chromium not found: skipping the browser test");
    None
}

fn headless(browser: &str, args: &[&str], url: &str) -> String {
    let o = std::process::Command::new(browser)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(o.status.success(), "chromium failed: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn the_page_works_in_a_real_browser() {
    let Some(browser) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = mock_run(tmp.path());
    add_hostile_record(&out);
    let html = report_ok(&out);
    let url = format!("file://{}", out.join("report.html").display());
    let dom = headless(browser, &["--dump-dom"], &url);
    // the script ran (and no record's markup ran instead of it or besides it)
    assert!(dom.contains("data-ready=\"1\""), "the script did not run");
    let n = html.matches("<details class=\"item").count();
    assert!(dom.contains(&format!("{n} of {n} sampled records match the filters")));
    assert!(!dom.contains("<img") && !dom.contains("onmouseover=\"") && !dom.contains("<b "));
    // a filter from the URL: the script hides every other task
    let task = records(&out)[0].task_type.clone();
    let dom = headless(browser, &["--dump-dom"], &format!("{url}#task={task}"));
    let wanted = format!("data-task=\"{task}\"");
    let items: Vec<&str> = dom.split("<details class=\"item").skip(1).collect();
    assert_eq!(items.len(), n);
    let shown: Vec<&&str> = items
        .iter()
        .filter(|i| !i[..i.find('>').unwrap()].contains("hidden"))
        .collect();
    assert!(
        !shown.is_empty() && shown.len() < n,
        "{} of {n}",
        shown.len()
    );
    assert!(shown.iter().all(|i| i.contains(&wanted)));
    let of_task = items.iter().filter(|i| i.contains(&wanted)).count();
    assert_eq!(shown.len(), of_task);
    assert!(dom.contains(&format!(
        "{of_task} of {n} sampled records match the filters"
    )));
    // and it paints
    let png = tmp.path().join("report.png");
    let shot = format!("--screenshot={}", png.display());
    headless(browser, &[&shot, "--window-size=1200,900"], &url);
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{}",
        bytes.len()
    );
}
