//! One writer per output directory (src/dirlock.rs): while a run holds its directory, a
//! second run, and `merge`, `export` and `dedup` of that directory, stop with exit code 5
//! naming the holder's pid; a run killed with SIGKILL leaves its lock file behind but no
//! lock, and the next run resumes. (Before the lock, two runs on one directory both
//! proceeded: 300 planned items ended as 465 record lines with 296 unique ids.)

mod common;
use common::*;
use mediflow::dirlock;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Wait (polling, generously bounded) until `cond` holds.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn done_count(out: &Path) -> usize {
    let rejects = if out.join("rejects.jsonl").exists() {
        rejects(out).len()
    } else {
        0
    };
    records(out).len() + rejects
}

#[test]
fn a_second_writer_names_the_holder_and_a_killed_run_never_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let fast = mock(&[]);
    // Every request to this one hangs (far beyond the client's timeout): a run on it holds
    // its directory until it is killed, however slow the machine.
    let stuck = mock(&["--rate-timeout", "1", "--hang-ms", "3600000"]);
    let cfg = config(tmp.path(), &fast.url, 8, "");
    edit(&cfg, "timeout_secs = 5", "timeout_secs = 3600");
    let out = tmp.path().join("out");
    let (o, c) = (out.to_str().unwrap(), cfg.to_str().unwrap());

    // Three items done, on disk.
    let first = run_to(&cfg, &out, &["--quiet", "--limit", "3"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(done_count(&out), 3);

    // The whole plan, on the server that never answers: it resumes and holds the lock.
    let mut holder = Command::new(bin())
        .args(["run", "--config", c, "--out", o, "--quiet"])
        .args(["--teacher-url", &stuck.url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = holder.id();
    wait_for("the run holds the lock", || {
        dirlock::holder(&out).and_then(|h| h.pid) == Some(pid)
    });

    let second = run_to(&cfg, &out, &["--quiet"]);
    assert_eq!(second.status.code(), Some(5), "{}", stderr(&second));
    let err = stderr(&second);
    assert!(
        err.contains(&format!("`mediflow run` (pid {pid})")) && err.contains(o),
        "{err}"
    );
    // Readers of the run and writers into it stop the same way.
    for (what, args) in [
        ("merge", vec!["merge", "--config", c, "--out", o]),
        (
            "export",
            vec!["export", "--run", o, "--format", "sft-messages"],
        ),
        ("dedup", vec!["dedup", o]),
    ] {
        let r = run(&args);
        assert_eq!(r.status.code(), Some(5), "{what}: {}", stderr(&r));
        assert!(
            stderr(&r).contains(&format!("(pid {pid})")),
            "{what}: {}",
            stderr(&r)
        );
    }
    assert_eq!(done_count(&out), 3, "the refused commands wrote nothing");
    assert!(!tmp.path().join("out-dedup").exists());

    // SIGKILL: the file stays with the dead pid, the kernel dropped the lock.
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(dirlock::holder(&out).and_then(|h| h.pid), Some(pid));
    let resumed = run_to(&cfg, &out, &["--json"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let summary: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(summary["resumed_from"], 3, "{summary}");
    assert_exactly_once(&out, &planned_ids(&cfg, None));
    assert!(
        dirlock::holder(&out).is_none(),
        "a finished run removes its lock file"
    );
}
