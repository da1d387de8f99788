//! `mediflow bench gate`: records per second through the quality gate without a judge
//! (every heuristic and grounding filter), on all cores and on one, over N records cycled
//! from labelled JSONL rows (default: the hand-labelled set in tests/fixtures/gate/).

use super::{outln, Report};
use crate::error::{Error, Problem};
use crate::quality::filters::{self, FilterCtx, FiltersConfig};
use crate::record::Record;
use crate::schemas::Schemas;
use rayon::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct GateOptions {
    /// JSONL or Parquet files of records (task_type, input_data, output_format,
    /// instruction, input, output); empty: tests/fixtures/gate/tuning.jsonl and
    /// heldout.jsonl.
    pub inputs: Vec<PathBuf>,
    /// Records to run through the gate (the input rows, cycled).
    pub records: usize,
    pub taxonomy_dir: PathBuf,
    pub schemas_dir: PathBuf,
    /// Templates whose worked examples `example_copy` compares with.
    pub templates_dir: PathBuf,
    /// Also time each filter alone (on the first 2,000 records, one thread).
    pub per_filter: bool,
}

/// CPU seconds this process has used (user + system), so the figure can be read on a
/// machine that other work shares.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

pub fn run(a: GateOptions) -> Result<Report, Error> {
    let tax = crate::taxonomy::load(&a.taxonomy_dir).map_err(Error::Input)?;
    let schemas = Schemas::load(&a.schemas_dir, &tax).map_err(Error::Input)?;
    let inputs = if a.inputs.is_empty() {
        let dir = Path::new("tests/fixtures/gate");
        vec![dir.join("tuning.jsonl"), dir.join("heldout.jsonl")]
    } else {
        a.inputs.clone()
    };
    // The reader `audit` uses: JSONL or Parquet, Record columns or chat rows.
    let files = crate::audit::read::expand(&inputs).map_err(|p| Error::Input(vec![p]))?;
    let rows: Vec<Record> = crate::audit::read::Rows::new(files)
        .map(|r| r.map(|row| row.record).map_err(|p| Error::Input(vec![p])))
        .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        return Err(Error::Input(vec![Problem::new(&inputs[0], "no records")]));
    }
    let records: Vec<Record> = (0..a.records)
        .map(|i| {
            let mut r = rows[i % rows.len()].clone();
            r.id = format!("{}-{i}", r.id);
            r
        })
        .collect();
    let cfg = FiltersConfig::default();
    let examples = crate::quality::examples::Examples::from_dir(&a.templates_dir);
    let cx = FilterCtx {
        tax: &tax,
        schemas: &schemas,
        cfg: &cfg,
        examples: Some(&examples),
    };
    // Warm the vocabulary (built once per taxonomy) outside the timing.
    let _ = filters::check(&records[0], &cx);
    let (t, cpu0) = (Instant::now(), cpu_secs());
    let kept_all = records
        .par_iter()
        .filter(|r| filters::check(r, &cx).is_ok())
        .count();
    let (all_secs, all_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - cpu0);
    let one = records.len().min(20_000);
    let t = Instant::now();
    let kept_one = records[..one]
        .iter()
        .filter(|r| filters::check(r, &cx).is_ok())
        .count();
    let one_secs = t.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    let mut per_filter = serde_json::Map::new();
    if a.per_filter {
        let sample = &records[..records.len().min(2_000)];
        let time = |cfg: &FiltersConfig| {
            let cx = FilterCtx {
                tax: &tax,
                schemas: &schemas,
                cfg,
                examples: Some(&examples),
            };
            let t = Instant::now();
            sample.iter().for_each(|r| {
                let _ = filters::check_all(r, &cx);
            });
            t.elapsed().as_secs_f64() * 1e6 / sample.len() as f64
        };
        let names: Vec<String> = filters::FILTERS
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        let only = |keep: Option<&str>| FiltersConfig {
            disable: names
                .iter()
                .filter(|n| Some(n.as_str()) != keep)
                .cloned()
                .collect(),
            ..FiltersConfig::default()
        };
        let base = time(&only(None));
        per_filter.insert("prepare_us".into(), json!((base * 10.0).round() / 10.0));
        for n in &names {
            let us = time(&only(Some(n))) - base;
            per_filter.insert(format!("{n}_us"), json!((us * 10.0).round() / 10.0));
        }
    }
    let json = json!({
        "records": records.len(),
        "distinct_rows": rows.len(),
        "threads": threads,
        "records_per_s": (records.len() as f64 / all_secs).round(),
        "records_per_cpu_s": (records.len() as f64 / all_cpu).round(),
        "kept": kept_all,
        "one_thread": {"records": one, "records_per_s": (one as f64 / one_secs).round(), "kept": kept_one},
        "goal_records_per_s": 20_000,
        "per_filter_us_per_record": per_filter,
    });
    let mut out = String::new();
    outln!(
        out,
        "gate without a judge: {} records ({} distinct rows) in {:.2} s on {threads} threads = {:.0} records/s (goal 20,000); {:.0} records per CPU-second (the wall figure on an idle machine is about this times the cores); one thread: {:.0} records/s; kept {kept_all}",
        records.len(),
        rows.len(),
        all_secs,
        records.len() as f64 / all_secs,
        records.len() as f64 / all_cpu,
        one as f64 / one_secs,
    );
    for (k, v) in &per_filter {
        outln!(out, "  {k:<22} {v} us/record");
    }
    Ok(Report { json, text: out })
}
