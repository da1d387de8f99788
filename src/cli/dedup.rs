//! `mediflow dedup RUN_DIR`: drop exact and near duplicates from a run's accepted records
//! (in id order, so any record order gives the same survivors; see quality::dedup) into a
//! new run directory: survivors as records, duplicates as rejects of stage `dedup`.
//! Holds every record's id and dedup text in memory, and one record at a time otherwise.

use clap::Args;
use mediflow::config::EngineConfig;
use mediflow::dirlock;
use mediflow::engine::manifest;
use mediflow::error::{Error, Problem};
use mediflow::quality::dedup::{dedup_sorted, record_text, DedupConfig, Duplicate};
use mediflow::record::{Record, Rejection};
use mediflow::sink::{self, Sinks};
use mediflow::util;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
pub struct DedupArgs {
    /// A run directory (e.g. outputs/quickstart).
    pub dir: PathBuf,
    /// The new run directory (default: `<RUN_DIR>-dedup`); must be absent or empty.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A run config whose `[dedup]` table to use (default: the defaults).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// The `[dedup]` table of a run config; the other tables are not this command's business.
#[derive(Deserialize)]
struct DedupSection {
    #[serde(default)]
    dedup: DedupConfig,
}

fn load_config(path: &Path) -> Result<DedupConfig, Error> {
    let s: DedupSection = util::load_toml(path).map_err(|p| Error::Input(vec![p]))?;
    s.dedup
        .validate()
        .map_err(|m| Error::Input(vec![Problem::new(path, m)]))?;
    Ok(s.dedup)
}

/// Every accepted record of a run, one at a time, in shard order.
fn for_each_record(
    dir: &Path,
    mut f: impl FnMut(Record) -> anyhow::Result<()>,
) -> Result<(), Error> {
    for shard in sink::shard_files(dir)? {
        sink::for_each_jsonl(&shard, false, &mut f)?;
    }
    Ok(())
}

pub fn exec(a: DedupArgs) -> Result<(), Error> {
    let t0 = Instant::now();
    let cfg = match &a.config {
        Some(p) => load_config(p)?,
        None => DedupConfig::default(),
    };
    if !a.dir.join(sink::DATA_DIR).is_dir() {
        return Err(Error::Input(vec![Problem::new(
            &a.dir,
            "not a mediflow run directory (no data/)",
        )]));
    }
    let out = match (&a.out, a.dir.file_name()) {
        (Some(o), _) => o.clone(),
        (None, Some(name)) => a
            .dir
            .with_file_name(format!("{}-dedup", name.to_string_lossy())),
        (None, None) => {
            return Err(Error::Input(vec![Problem::new(
                &a.dir,
                "cannot name the output after this directory: give --out",
            )]))
        }
    };
    // Not while a run still writes the source; one writer into `out`, which must be
    // empty once it is ours.
    dirlock::ensure_free(&a.dir)?;
    let _lock = dirlock::DirLock::acquire(&out, "dedup")?;
    if dirlock::has_content(&out) {
        return Err(Error::Input(vec![Problem::new(
            &out,
            "output directory exists and is not empty; choose another --out",
        )]));
    }

    let mut items = Vec::new();
    for_each_record(&a.dir, |r| {
        items.push((r.id.clone(), record_text(&r)));
        Ok(())
    })?;
    let input = items.len();
    items.sort_unstable();
    if let Some(w) = items.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::Input(vec![Problem::new(
            &a.dir,
            format!("record id {} occurs more than once", w[0].0),
        )]));
    }
    let mut dropped: HashMap<String, Duplicate> = dedup_sorted(items, &cfg).into_iter().collect();
    let exact = dropped
        .values()
        .filter(|d| d.reason == "exact_duplicate")
        .count();
    let near = dropped.len() - exact;

    let mut sinks = Sinks::open(&out, EngineConfig::default().shard_size, |_| {})?;
    for_each_record(&a.dir, |r| match dropped.remove(&r.id) {
        Some(d) => sinks.reject(&Rejection {
            id: r.id.clone(),
            stage: "dedup".into(),
            reason: d.reason.into(),
            detail: format!("duplicate of {}", d.of),
            record: r,
        }),
        None => sinks.accept(r),
    })?;
    sinks.finish()?;
    // Keep the source's manifest (so `inspect` reads the new run), noting the dedup.
    if let Some(mut m) = manifest::read(&a.dir)? {
        m["dedup"] = serde_json::json!({"source": a.dir, "config": cfg});
        let p = out.join(manifest::MANIFEST);
        std::fs::write(
            &p,
            serde_json::to_vec_pretty(&m).map_err(anyhow::Error::from)?,
        )
        .map_err(|e| Error::io(format!("writing {}", p.display()), e))?;
    }
    super::print_json(&serde_json::json!({
        "input_records": input,
        "kept": input - exact - near,
        "exact_duplicates": exact,
        "near_duplicates": near,
        "out": out,
        "seconds": t0.elapsed().as_secs_f64(),
        "peak_rss_mb": super::peak_rss_mb(),
    }));
    Ok(())
}
