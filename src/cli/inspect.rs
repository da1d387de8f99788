//! `mediflow inspect DIR`: counts, a few sample rows, rejection reasons.

use clap::Args;
use mediflow::engine::manifest;
use mediflow::error::Error;
use mediflow::record::{Record, Rejection};
use mediflow::sink;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args)]
pub struct InspectArgs {
    /// A run directory (e.g. outputs/quickstart).
    pub dir: PathBuf,
    /// Sample rows to show.
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
    #[arg(long)]
    pub json: bool,
}

fn clip(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() > n {
        one_line.chars().take(n).collect::<String>() + "..."
    } else {
        one_line
    }
}

pub fn exec(a: InspectArgs) -> Result<(), Error> {
    let m = manifest::read(&a.dir)?.ok_or_else(|| {
        Error::Input(vec![mediflow::Problem::new(
            &a.dir,
            "not a mediflow run directory (no manifest.json)",
        )])
    })?;
    let mut records: Vec<Record> = Vec::new();
    for f in sink::shard_files(&a.dir)? {
        records.extend(sink::read_jsonl::<Record>(&f, false)?);
    }
    let rejects: Vec<Rejection> = sink::read_jsonl(&a.dir.join(sink::REJECTS), false)?;
    let mut by_task: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &records {
        *by_task.entry(&r.task_type).or_default() += 1;
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for j in &rejects {
        *reasons
            .entry(format!("{}/{}", j.stage, j.reason))
            .or_default() += 1;
    }
    if a.json {
        super::print_json(&serde_json::json!({
            "status": m["status"], "records": records.len(), "rejects": rejects.len(),
            "by_task": by_task, "rejection_reasons": reasons,
            "samples": records.iter().take(a.samples).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    println!(
        "{}: status {}, {} records, {} rejects",
        a.dir.display(),
        m["status"],
        records.len(),
        rejects.len()
    );
    println!(
        "teacher: {} / {}",
        m["teacher_backend"], m["config"]["teacher"]["model"]
    );
    for (t, n) in &by_task {
        println!("  {t:<28} {n}");
    }
    if !reasons.is_empty() {
        println!("rejection reasons (stage/reason):");
        for (r, n) in &reasons {
            println!("  {r:<40} {n}");
        }
    }
    for r in records.iter().take(a.samples) {
        println!(
            "\n--- {} | {} | {} | difficulty {} | {}",
            r.id, r.task_type, r.input_data, r.difficulty_level, r.output_format
        );
        println!("instruction: {}", clip(&r.instruction, 300));
        println!("input:       {}", clip(&r.input, 300));
        println!("output:      {}", clip(&r.output, 300));
    }
    Ok(())
}
