//! End-to-end runs of the binary against the mock teacher over loopback.

mod common;
use common::*;
use mediflow::sink::read_parquet;

#[test]
fn full_small_run_writes_valid_records_parquet_manifest_and_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&[]);
    let cfg = config(tmp.path(), &m.url, 16, "");
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--json"]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["planned"], 16);
    assert_eq!(summary["accepted"], 16, "{summary}");

    let recs = records(&out);
    assert_exactly_once(&out, &planned_ids(&cfg, None));
    let tax = mediflow::taxonomy::load(&repo().join("taxonomy")).unwrap();
    let schemas = mediflow::schemas::Schemas::load(&repo().join("schemas"), &tax).unwrap();
    let mut formats = std::collections::BTreeSet::new();
    for r in &recs {
        assert!(!r.instruction.is_empty() && !r.input.is_empty() && !r.output.is_empty());
        assert_eq!(r.attempts, 3, "one call per stage without faults");
        assert!(r.template_document.contains('@') && r.teacher_backend == "openai");
        if r.output_format == "json" {
            let v: serde_json::Value = serde_json::from_str(&r.output).unwrap();
            mediflow::schemas::validate(schemas.get(&r.task_type).unwrap(), &v).unwrap();
            assert!(
                r.instruction
                    .contains(&schemas.get(&r.task_type).unwrap().pretty),
                "json instructions carry their schema"
            );
        }
        formats.insert(r.output_format.clone());
    }
    assert_eq!(formats.len(), 2, "both output formats are planned");
    // `response_format: json_schema` went with exactly the json answers (server mode).
    let json_items = recs.iter().filter(|r| r.output_format == "json").count() as u64;
    assert_eq!(
        mock_stats(&m.url)["with_response_format"].as_u64().unwrap(),
        json_items
    );

    // Parquet holds the same rows as the JSONL shard.
    let pq = read_parquet(&out.join("data/part-00000.parquet")).unwrap();
    assert_eq!(pq, recs);

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["counts"]["accepted"], 16);
    assert!(
        manifest["fingerprint"]["taxonomy_hash"]
            .as_str()
            .unwrap()
            .len()
            == 64
    );
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["stages"]["document"]["total"], 16);
    assert_eq!(stats["stages"]["validate"]["kept"], 16);
    assert_eq!(stats["teacher"]["calls"], 48);

    let o = run(&["inspect", out.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("16 records, 0 rejects"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn faults_are_retried_or_rejected_and_every_item_is_accounted_for() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&[
        "--rate-429",
        "0.1",
        "--rate-500",
        "0.1",
        "--rate-invalid-json",
        "0.05",
        "--rate-truncate",
        "0.05",
        "--rate-bad-answer",
        "0.3",
        "--rate-timeout",
        "0.03",
        "--hang-ms",
        "3000",
    ]);
    let cfg = config(
        tmp.path(),
        &m.url,
        40,
        "max_attempts = 2\nrepair_attempts = 1\n",
    );
    // A short timeout so the hanging requests time out quickly.
    edit(&cfg, "timeout_secs = 5", "timeout_secs = 1");
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    assert_exactly_once(&out, &planned_ids(&cfg, None));

    let recs = records(&out);
    let rejs = rejects(&out);
    assert!(!recs.is_empty(), "some items survive the faults");
    assert!(
        !rejs.is_empty(),
        "with 2 attempts some items must be rejected"
    );
    assert!(
        recs.iter().any(|r| r.attempts > 3),
        "some records needed retries"
    );
    let known = [
        "rate_limited",
        "server_error",
        "timeout",
        "bad_response",
        "truncated",
        "schema_invalid",
        "invalid_json",
    ];
    for j in &rejs {
        assert!(
            known.contains(&j.reason.as_str()),
            "unexpected reason {}",
            j.reason
        );
        assert!(!j.detail.is_empty());
        assert_eq!(j.record.id, j.id);
    }
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(
        stats["accepted"].as_u64().unwrap() + stats["rejected"].as_u64().unwrap(),
        40
    );
    let dropped: u64 = stats["stages"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|s| {
            s.as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.starts_with("dropped_"))
                .map(|(_, v)| v.as_u64().unwrap())
        })
        .sum();
    assert_eq!(dropped, rejs.len() as u64);
    // Repairs happened for schema-violating answers.
    assert!(recs
        .iter()
        .chain(rejs.iter().map(|j| &j.record))
        .any(|r| r.repairs > 0));
}

#[test]
fn sigkill_mid_run_then_resume_gives_every_item_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&["--latency-ms", "40", "--rate-500", "0.05"]);
    let cfg = config(tmp.path(), &m.url, 60, "shard_size = 7\n");
    let out = tmp.path().join("out");
    let args = [
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--concurrency",
        "4",
    ];
    let mut child = std::process::Command::new(bin())
        .args(args)
        .spawn()
        .unwrap();
    // Wait until some records are on disk, then SIGKILL.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n = records(&out).len();
        if n >= 10 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "run made no progress");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = records(&out).len() + rejects(&out).len();
    assert!(before < 60, "killed before the end");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "running");

    let o = run(&args);
    assert!(o.status.success(), "resume failed: {}", stderr(&o));
    assert_exactly_once(&out, &planned_ids(&cfg, None));
    // Closed shards have their Parquet twins, holding exactly the JSONL rows.
    let mut from_parquet = Vec::new();
    for f in mediflow::sink::shard_files(&out).unwrap() {
        from_parquet.extend(read_parquet(&f.with_extension("parquet")).unwrap());
    }
    assert_eq!(from_parquet, records(&out));
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
    assert_eq!(
        stats["accepted"].as_u64().unwrap() + stats["rejected"].as_u64().unwrap(),
        60
    );
}

#[test]
fn resume_refuses_a_different_config_and_limit_extends_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&[]);
    let cfg = config(tmp.path(), &m.url, 12, "");
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--quiet", "--limit", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_exactly_once(&out, &planned_ids(&cfg, Some(5)));
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_exactly_once(&out, &planned_ids(&cfg, None));

    let o = run_to(&cfg, &out, &["--quiet", "--seed", "8"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("generation.seed: was 7, now 8"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn two_endpoints_share_the_load_prompt_only_schemas_work_and_the_api_key_stays_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (mock(&["--latency-ms", "20"]), mock(&["--latency-ms", "20"]));
    let cfg = config(tmp.path(), &a.url, 20, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            &format!("base_urls = [\"{}\"]", a.url),
            &format!("base_urls = [\"{}\", \"{}\"]", a.url, b.url),
        )
        .replace(
            "timeout_secs = 5",
            "timeout_secs = 5\napi_key_env = \"MEDIFLOW_TEST_KEY\"\nresponse_format = \"prompt\"",
        );
    std::fs::write(&cfg, text).unwrap();
    let out = tmp.path().join("out");
    let o = std::process::Command::new(bin())
        .args([
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
        ])
        .env("MEDIFLOW_TEST_KEY", "sk-test-SECRET-4242")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_exactly_once(&out, &planned_ids(&cfg, None));
    let rejected: Vec<String> = rejects(&out)
        .iter()
        .map(|r| format!("{}: {}", r.reason, r.detail))
        .collect();
    assert_eq!(
        rejected.len(),
        0,
        "prompt-only schemas still give valid JSON from the mock: {rejected:?}"
    );
    let (sa, sb) = (mock_stats(&a.url), mock_stats(&b.url));
    let (na, nb) = (
        sa["served"].as_u64().unwrap(),
        sb["served"].as_u64().unwrap(),
    );
    assert_eq!(na + nb, 60);
    assert!(na >= 15 && nb >= 15, "load is spread: {na} vs {nb}");
    assert_eq!(
        sa["with_auth"].as_u64().unwrap() + sb["with_auth"].as_u64().unwrap(),
        60,
        "the key is sent"
    );
    assert_eq!(
        sa["with_response_format"].as_u64().unwrap() + sb["with_response_format"].as_u64().unwrap(),
        0
    );
    // ...and never written anywhere.
    for e in walk(&out) {
        let bytes = std::fs::read(&e).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("SECRET-4242"),
            "API key leaked into {}",
            e.display()
        );
    }
    assert!(!String::from_utf8_lossy(&o.stderr).contains("SECRET-4242"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn response_format_off_adds_the_schema_nowhere() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&[]);
    let cfg = config(tmp.path(), &m.url, 12, "");
    edit(
        &cfg,
        "timeout_secs = 5",
        "timeout_secs = 5\nresponse_format = \"off\"",
    );
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recs = records(&out);
    assert!(recs.iter().any(|r| r.output_format == "json"));
    for r in recs.iter().filter(|r| r.output_format == "json") {
        assert!(
            !r.instruction.contains("JSON Schema:\n```json"),
            "off mode leaves the instruction as written"
        );
    }
    assert_eq!(mock_stats(&m.url)["with_response_format"], 0);
}

#[test]
fn text_cut_at_the_token_cap_is_trimmed_and_flagged_not_retried() {
    let tmp = tempfile::tempdir().unwrap();
    // Every reply is cut in half with finish_reason=length. The mock's documents keep whole
    // sentences; its instructions (task name, description, request) keep theirs when the
    // cut leaves enough words, else the item is rejected without a retry; answers are
    // tried once more at twice their cap (1024 -> 2048) and then rejected.
    let m = mock(&["--rate-truncate", "1.0"]);
    let cfg = config(tmp.path(), &m.url, 8, "max_attempts = 2\n");
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    assert_exactly_once(&out, &planned_ids(&cfg, None));
    assert!(records(&out).is_empty());
    let rejs = rejects(&out);
    assert_eq!(rejs.len(), 8);
    for j in &rejs {
        let r = &j.record;
        assert_eq!(j.reason, "truncated");
        assert!(r.document_truncated);
        assert!(
            r.input.ends_with(['.', '!', '?']) || r.input.contains('\n'),
            "{}",
            r.input
        );
        match j.stage.as_str() {
            "instruction" => {
                assert!(j.detail.contains("complete sentences"), "{}", j.detail);
                assert!(!r.instruction_truncated);
                assert_eq!(
                    r.attempts, 2,
                    "a cut document or instruction is not regenerated"
                );
            }
            "answer" => {
                let bare = mediflow::record::bare_instruction(&r.instruction);
                assert!(
                    r.instruction_truncated && bare.ends_with(['.', '!', '?']),
                    "{bare}"
                );
                assert_eq!(r.attempts, 4, "document 1 + instruction 1 + answer 2");
                assert!(
                    j.detail.contains("(2048 tokens), already raised once"),
                    "{}",
                    j.detail
                );
            }
            other => panic!("rejected at {other}"),
        }
    }
}

#[test]
fn items_on_the_command_line_override_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&[]);
    let cfg = config(tmp.path(), &m.url, 40, "");
    let c = cfg.to_str().unwrap();
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--quiet", "--items", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan = run(&["plan", "--config", c, "--json", "--items", "5"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let planned: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(planned.len(), 5);
    assert_exactly_once(&out, &planned);
    // The count is part of what the run generates: without it, the directory holds
    // another run.
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("items"), "{}", stderr(&o));
}

#[test]
fn rate_limits_and_503s_wait_without_using_up_attempts() {
    let tmp = tempfile::tempdir().unwrap();
    // Half the requests are answered 429 and a further fifth 503, each with a Retry-After
    // of 20 ms; one attempt per call is all a 500 would get.
    let m = mock(&[
        "--rate-429",
        "0.5",
        "--rate-503",
        "0.2",
        "--retry-after-ms",
        "20",
    ]);
    let cfg = config(tmp.path(), &m.url, 12, "max_attempts = 1\n");
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--quiet", "--concurrency", "4"]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    assert_exactly_once(&out, &planned_ids(&cfg, None));
    let rejected: Vec<String> = rejects(&out)
        .iter()
        .map(|j| format!("{}: {}", j.reason, j.detail))
        .collect();
    assert!(rejected.is_empty(), "{rejected:?}");
    let faults = &mock_stats(&m.url)["faults"];
    assert!(faults["rate_limited"].as_u64().unwrap() >= 10, "{faults}");
    assert!(faults["unavailable"].as_u64().unwrap() >= 3, "{faults}");
    assert!(
        records(&out).iter().any(|r| r.attempts >= 6),
        "items waited through several 429s / 503s each"
    );

    // A 500 does use up the attempt: the same run against 500s loses items.
    let m = mock(&["--rate-500", "0.5"]);
    let cfg = config(tmp.path(), &m.url, 12, "max_attempts = 1\n");
    let out = tmp.path().join("out-500");
    let o = run_to(&cfg, &out, &["--quiet", "--concurrency", "4"]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    let rejs = rejects(&out);
    assert!(!rejs.is_empty());
    for j in &rejs {
        assert_eq!(j.reason, "server_error");
        assert!(j.detail.contains("engine.max_attempts = 1"), "{}", j.detail);
    }
}

/// A flaky server (20% of requests get a transient fault: 429 and 503 with Retry-After,
/// 500, connection resets, stalls, cut and empty bodies) that also goes away for 30 s in
/// the middle of the run, on the same port: the items in flight wait for it instead of
/// failing, no item is rejected for a transient reason, and a SIGKILL after the outage
/// and a resume still account for every planned item exactly once.
#[test]
fn a_flaky_server_and_a_30s_outage_lose_no_items_and_a_killed_run_resumes_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let flaky = [
        "--rate-faults",
        "0.2",
        "--latency-ms",
        "50",
        "--hang-ms",
        "3000",
        "--retry-after-ms",
        "100",
    ];
    let first = mock(&flaky);
    let addr = mock_addr(&first.url);
    let cfg = config(tmp.path(), &first.url, 80, "shard_size = 9\n");
    // Stalled answers time out after 1 s; a drained endpoint is probed every 0.25 s.
    edit(
        &cfg,
        "timeout_secs = 5",
        "timeout_secs = 1\n\n[teacher.health]\ninterval_secs = 0.25",
    );
    let out = tmp.path().join("out");
    let args = [
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--concurrency",
        "4",
    ];
    let planned = planned_ids(&cfg, None);
    let mut child = std::process::Command::new(bin())
        .args(args)
        .spawn()
        .unwrap();
    let wait_for = |n: usize, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while outcomes(&out) < n {
            assert!(std::time::Instant::now() < deadline, "{what}: no progress");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    wait_for(10, "before the outage");
    let mut faults = mock_stats(&first.url)["faults"].clone();
    drop(first); // the server goes away (killed), its port closed
    let down = outcomes(&out);
    std::thread::sleep(std::time::Duration::from_secs(30));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run waits for the server instead of ending"
    );
    let during = outcomes(&out);
    assert!(
        during < planned.len(),
        "{during} done while the server was down"
    );
    let second = mock_at(&addr, &flaky);
    assert_eq!(second.url, format!("http://{addr}/v1"));
    wait_for(during + 10, "after the outage");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed_at = outcomes(&out);
    assert!(killed_at < planned.len(), "killed before the end");
    // (A resume would retry transient rejects: look at them before it, too.)
    let lost = || -> Vec<String> {
        rejects(&out)
            .iter()
            .filter(|j| mediflow::teacher::is_transient(&j.reason))
            .map(|j| format!("{} at {}: {}", j.reason, j.stage, j.detail))
            .collect()
    };
    assert!(lost().is_empty(), "lost to transient faults: {:?}", lost());
    let o = run(&args);
    assert!(o.status.success(), "resume failed: {}", stderr(&o));
    assert_exactly_once(&out, &planned);
    assert!(lost().is_empty(), "lost to transient faults: {:?}", lost());
    let stats = json_file(&out, "stats.json");
    assert_eq!(
        stats["rejected_transient"], 0,
        "{}",
        stats["rejected_by_reason"]
    );
    assert_eq!(
        stats["accepted"].as_u64().unwrap() + stats["rejected"].as_u64().unwrap(),
        80
    );
    // Every kind of fault was served (by one server or the other), and retried past.
    let after = &mock_stats(&second.url)["faults"];
    for (kind, n) in faults.as_object_mut().unwrap() {
        *n = (n.as_u64().unwrap() + after[kind.as_str()].as_u64().unwrap()).into();
    }
    for (kind, n) in faults.as_object().unwrap() {
        assert!(n.as_u64().unwrap() > 0, "no {kind} fault served: {faults}");
    }
    assert!(records(&out).iter().any(|r| r.attempts > 3));
    eprintln!(
        "outage: {down} outcomes when the server went away, {during} when it came back \
         after 30 s, {killed_at} at the SIGKILL, 80 after the resume; faults {faults}"
    );
}

#[test]
fn run_again_retries_transient_rejects_in_place_and_keeps_content_ones() {
    let tmp = tempfile::tempdir().unwrap();
    // One attempt per call and no repair: 500s reject items for a transient reason, answers
    // that violate their schema reject them for content.
    let flaky = mock(&["--rate-500", "0.25", "--rate-bad-answer", "0.6"]);
    let cfg = config(
        tmp.path(),
        &flaky.url,
        24,
        "max_attempts = 1\nrepair_attempts = 0\n",
    );
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let planned = planned_ids(&cfg, None);
    assert_exactly_once(&out, &planned);
    let before = rejects(&out);
    let (t, c): (Vec<_>, Vec<_>) = before
        .iter()
        .partition(|j| mediflow::teacher::is_transient(&j.reason));
    assert!(!t.is_empty() && !c.is_empty(), "{before:?}");
    assert!(c.iter().all(|j| j.reason == "schema_invalid"));
    let stats = json_file(&out, "stats.json");
    assert_eq!(stats["rejected_transient"], t.len());
    assert_eq!(stats["rejected_content"], c.len());
    let rejects_file = || std::fs::read(out.join("rejects.jsonl")).unwrap();
    let original = rejects_file();

    // The same run against a healthy server (another URL: where the teacher runs is not
    // part of the run's identity).
    let healthy = mock(&[]);
    let cfg = config(
        tmp.path(),
        &healthy.url,
        24,
        "max_attempts = 1\nrepair_attempts = 0\n",
    );
    let summary = |o: &std::process::Output| -> serde_json::Value {
        assert!(o.status.success(), "{}", stderr(o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let s = summary(&run_to(&cfg, &out, &["--json", "--retry-rejects", "none"]));
    assert_eq!(s["stats"]["retried"]["retried"], 0, "{s}");
    assert_eq!(
        rejects_file(),
        original,
        "none: the rejects stay as they are"
    );
    assert_eq!(healthy_served(&healthy), 0);

    let s = summary(&run_to(&cfg, &out, &["--json"]));
    let r = &s["stats"]["retried"];
    assert_eq!(r["mode"], "transient");
    assert_eq!(r["retried"], t.len(), "{r}");
    assert_eq!(
        r["accepted"],
        t.len(),
        "a healthy server accepts them all: {r}"
    );
    assert_eq!(s["rejected_transient"], 0);
    assert_eq!(s["rejected_content"], c.len());
    assert_exactly_once(&out, &planned);
    // The content rejects are the same lines as before; the transient ones moved to the
    // history of retried rejects.
    let lines = |b: &[u8]| -> std::collections::BTreeSet<String> {
        String::from_utf8_lossy(b)
            .lines()
            .map(String::from)
            .collect()
    };
    let kept: std::collections::BTreeSet<String> = lines(&original)
        .into_iter()
        .filter(|l| {
            c.iter()
                .any(|j| l.contains(&format!("\"id\":\"{}\"", j.id)))
        })
        .collect();
    assert_eq!(lines(&rejects_file()), kept);
    let history: Vec<mediflow::record::Rejection> =
        mediflow::sink::read_jsonl(&out.join("rejects-retried.jsonl"), false).unwrap();
    let mut moved: Vec<&str> = history.iter().map(|j| j.id.as_str()).collect();
    let mut want: Vec<&str> = t.iter().map(|j| j.id.as_str()).collect();
    moved.sort();
    want.sort();
    assert_eq!(moved, want);
    let stats = json_file(&out, "stats.json");
    assert_eq!(stats["rejected_transient"], 0);
    assert_eq!(stats["accepted"], 24 - c.len());

    // `all` retries the content rejects too, and says so.
    let o = run_to(&cfg, &out, &["--retry-rejects", "all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!(
            "retried {n} earlier reject(s) (all): {n} accepted",
            n = c.len()
        )),
        "{}",
        stdout(&o)
    );
    assert_exactly_once(&out, &planned);
    assert!(rejects(&out).is_empty());
    // Nothing is left to retry: a further run does nothing.
    let s = summary(&run_to(&cfg, &out, &["--json"]));
    assert_eq!(s["stats"]["retried"]["retried"], 0);
    assert_eq!(s["resumed_from"], 24);
}

fn healthy_served(m: &Mock) -> u64 {
    mock_stats(&m.url)["served"].as_u64().unwrap()
}
