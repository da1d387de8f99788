//! Pipeline throughput against the mock teacher (not a timed test; prints its figures).
//!
//! The mock serves `CAPACITY` requests at once with a fixed `LATENCY`, so its theoretical
//! maximum is CAPACITY / LATENCY requests/s, i.e. CAPACITY / (3 x LATENCY) items/s (three
//! teacher calls per item). The pipeline runs as its own process; we report its achieved
//! items/s (generation phase, from its own summary, and wall clock including start-up), CPU
//! time per item and peak RSS (getrusage of the waited child). Goal: >= 95% of the maximum.
//!
//! Run: `cargo bench --bench pipeline` (env BENCH_ITEMS, BENCH_LATENCY_MS, BENCH_CAPACITY).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_mediflow");
    let repo = env!("CARGO_MANIFEST_DIR");
    let items = env_or("BENCH_ITEMS", 3000);
    let latency_ms = env_or("BENCH_LATENCY_MS", 50);
    let capacity = env_or("BENCH_CAPACITY", 32);
    // Keep the server's queue non-empty: a few more in flight than it serves at once.
    let concurrency = capacity + capacity / 4;

    let mut mock = Command::new(bin)
        .args([
            "mock-teacher",
            "--addr",
            "127.0.0.1:0",
            "--latency-ms",
            &latency_ms.to_string(),
        ])
        .args(["--capacity", &capacity.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start mock");
    let mut banner = String::new();
    BufReader::new(mock.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let url = banner.trim().rsplit(' ').next().unwrap().to_string();

    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bench.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"bench\"\nseed = 1\nitems = {items}\ntaxonomy_dir = \"{repo}/taxonomy\"\n\
             templates_dir = \"{repo}/templates\"\nschemas_dir = \"{repo}/schemas\"\n\
             [teacher]\nkind = \"openai\"\nbase_urls = [\"{url}\"]\nmodel = \"mock\"\n\
             [engine]\nconcurrency = {concurrency}\nshard_size = 1000\n"
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");

    let started = Instant::now();
    let o = Command::new(bin)
        .args([
            "run",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
            "--json",
        ])
        .output()
        .expect("run pipeline");
    let wall = started.elapsed().as_secs_f64();
    let _ = mock.kill();
    let _ = mock.wait();
    assert!(
        o.status.success(),
        "pipeline failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();

    // SAFETY: getrusage only writes into the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let cpu = ru.ru_utime.tv_sec as f64
        + ru.ru_utime.tv_usec as f64 / 1e6
        + ru.ru_stime.tv_sec as f64
        + ru.ru_stime.tv_usec as f64 / 1e6;
    let peak_mb = ru.ru_maxrss as f64 / 1024.0;

    let max_items_s = capacity as f64 / (3.0 * latency_ms as f64 / 1000.0);
    let gen_items_s = summary["items_per_sec"].as_f64().unwrap();
    let wall_items_s = items as f64 / wall;
    println!("pipeline vs mock teacher: {items} items, mock latency {latency_ms} ms, capacity {capacity}, pipeline concurrency {concurrency}");
    println!("  theoretical maximum       {max_items_s:>9.1} items/s");
    println!(
        "  achieved (generation)     {gen_items_s:>9.1} items/s   {:>5.1}% of maximum",
        100.0 * gen_items_s / max_items_s
    );
    println!(
        "  achieved (wall, incl. start-up) {wall_items_s:>6.1} items/s   {:>5.1}% of maximum",
        100.0 * wall_items_s / max_items_s
    );
    println!(
        "  CPU time per item         {:>9.3} ms  (pipeline process, user + system)",
        1000.0 * cpu / items as f64
    );
    println!("  peak RSS                  {peak_mb:>9.1} MB");
    println!(
        "  accepted {} / rejected {}",
        summary["accepted"], summary["rejected"]
    );
    println!(
        "  goal >= 95% of maximum: {}",
        if gen_items_s >= 0.95 * max_items_s {
            "met"
        } else {
            "NOT met"
        }
    );
}
