//! `mediflow merge`: combine the shards of a run into one dataset in the run directory.
//!
//! Before writing anything it checks that the shards are one run (same generation
//! fingerprint as the config, the same shard count, every index present and complete)
//! and that every item is where it belongs: each planned item exactly once across the
//! shards, in the shard its cell was dealt to, and nothing else but that cell's quota
//! refills. The merged records are then ordered as the unsharded plan orders them and
//! deduplicated across shards (a near duplicate from another shard becomes a reject of
//! stage `dedup`, as in an unsharded run), and written with rebuilt statistics.

use crate::check::Loaded;
use crate::dirlock::DirLock;
use crate::engine::manifest::{self, MANIFEST, STATS};
use crate::engine::stats::Stats;
use crate::error::{Error, Problem};
use crate::plan::{Cell, PlanItem};
use crate::quality::dedup::{record_text, Dedup};
use crate::record::{Record, Rejection};
use crate::shard::{assign, ShardSpec, SHARDS_DIR};
use crate::sink::{self, Sinks};
use anyhow::Context;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Debug, serde::Serialize)]
pub struct MergeSummary {
    pub out_dir: PathBuf,
    pub shards: usize,
    pub planned: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Records dropped because a record of another shard duplicates them.
    pub cross_shard_duplicates: u64,
}

/// One shard's directory, spec and manifest, locked while the merge reads it (so no
/// `run --shard` writes it meanwhile).
struct ShardDir {
    dir: PathBuf,
    spec: ShardSpec,
    manifest: Value,
    _lock: DirLock,
}

fn problem(path: &Path, msg: impl Into<String>) -> Error {
    Error::Input(vec![Problem::new(path, msg)])
}

/// The shard directories under `out`, checked to be one complete sharded run.
fn shard_dirs(out: &Path, fingerprint: &Value) -> Result<Vec<ShardDir>, Error> {
    let root = out.join(SHARDS_DIR);
    let entries =
        std::fs::read_dir(&root).map_err(|e| problem(&root, format!("no shards to merge: {e}")))?;
    let mut shards = Vec::new();
    let mut problems = Vec::new();
    for e in entries {
        let dir = e
            .map_err(|e| Error::io(format!("reading {}", root.display()), e))?
            .path();
        if !dir.is_dir() {
            continue;
        }
        // A shard still running is named (with its pid) before its manifest is read.
        let lock = DirLock::acquire(&dir, "merge")?;
        let Some(m) = manifest::read(&dir)? else {
            problems.push(Problem::new(
                &dir,
                "no manifest.json: not a shard (or never started)",
            ));
            continue;
        };
        let spec: Option<ShardSpec> = serde_json::from_value(m["run"]["shard"].clone()).ok();
        let Some(spec) = spec else {
            problems.push(Problem::new(
                &dir,
                "manifest has no shard (run with --shard I/N)",
            ));
            continue;
        };
        if m["status"] != "complete" {
            problems.push(Problem::new(
                &dir,
                format!(
                    "shard {spec} is not complete (status {}); run it again to finish",
                    m["status"]
                ),
            ));
        }
        if !manifest::differences(&m["fingerprint"], fingerprint).is_empty() {
            problems.push(Problem::new(
                &dir,
                format!("shard {spec} was made with other settings than this config"),
            ));
        }
        shards.push(ShardDir {
            dir,
            spec,
            manifest: m,
            _lock: lock,
        });
    }
    shards.sort_by_key(|s| s.spec.index);
    let count = shards.first().map_or(0, |s| s.spec.count);
    if shards.iter().any(|s| s.spec.count != count) {
        problems.push(Problem::new(
            &root,
            "shards of different shard counts (N) are mixed",
        ));
    } else if count > 0 {
        let missing: Vec<String> = (0..count)
            .filter(|i| !shards.iter().any(|s| s.spec.index == *i))
            .map(|i| format!("{i}/{count}"))
            .collect();
        if !missing.is_empty() {
            problems.push(Problem::new(
                &root,
                format!("missing shards: {}", missing.join(", ")),
            ));
        }
    } else {
        problems.push(Problem::new(&root, "no shards to merge"));
    }
    let limits: Vec<&Value> = shards.iter().map(|s| &s.manifest["run"]["limit"]).collect();
    if limits.windows(2).any(|w| w[0] != w[1]) {
        problems.push(Problem::new(
            &root,
            "shards were run with different --limit values",
        ));
    }
    if problems.is_empty() {
        Ok(shards)
    } else {
        Err(Error::Input(problems))
    }
}

/// An outcome read back from a shard.
enum Outcome {
    Record(Record),
    Reject(Rejection),
}

impl Outcome {
    fn record(&self) -> &Record {
        match self {
            Outcome::Record(r) => r,
            Outcome::Reject(j) => &j.record,
        }
    }
}

fn read_shard(dir: &Path) -> Result<Vec<Outcome>, Error> {
    let mut v = Vec::new();
    for f in sink::shard_files(dir)? {
        sink::for_each_jsonl(&f, false, |r: Record| {
            v.push(Outcome::Record(r));
            Ok(())
        })?;
    }
    sink::for_each_jsonl(&dir.join(sink::REJECTS), false, |j: Rejection| {
        v.push(Outcome::Reject(j));
        Ok(())
    })?;
    Ok(v)
}

/// Merge the shards under `out` into `out` itself (which must hold no merged data yet),
/// holding the locks of `out` and of every shard directory.
pub fn merge(l: &Loaded, out: &Path) -> Result<MergeSummary, Error> {
    let _lock = DirLock::acquire(out, "merge")?;
    let fp = manifest::fingerprint(&l.cfg, &l.tax, &l.prompts, &l.schemas);
    let shards = shard_dirs(out, &fp)?;
    if out.join(sink::DATA_DIR).exists() || out.join(sink::REJECTS).exists() {
        return Err(problem(
            out,
            "already holds merged data (data/ or rejects.jsonl): remove them to merge again",
        ));
    }
    let count = shards[0].spec.count;
    let limit: Option<usize> = serde_json::from_value(shards[0].manifest["run"]["limit"].clone())
        .map_err(anyhow::Error::from)?;
    let items: Vec<PlanItem> = match limit {
        Some(n) => l.plan.items.iter().take(n).cloned().collect(),
        None => l.plan.items.clone(),
    };
    let owner = assign(&items, count);
    let position: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.id.as_str(), i))
        .collect();
    let mut planned_in_cell: BTreeMap<Cell, usize> = BTreeMap::new();
    for it in &items {
        *planned_in_cell.entry(it.cell()).or_default() += 1;
    }

    // Read every outcome, checking where each belongs.
    let mut problems = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut all: Vec<(usize, Outcome)> = Vec::new();
    for s in &shards {
        for o in read_shard(&s.dir)? {
            let r = o.record();
            match owner.get(&r.cell()) {
                Some(&i) if i == s.spec.index => {}
                _ => problems.push(Problem::new(
                    &s.dir,
                    format!(
                        "item {} (cell {}) does not belong to shard {}",
                        r.id,
                        r.cell().key(),
                        s.spec
                    ),
                )),
            }
            if let Some(other) = seen.insert(r.id.clone(), s.spec.index) {
                problems.push(Problem::new(
                    &s.dir,
                    format!(
                        "item {} appears more than once (also in shard {other}/{count})",
                        r.id
                    ),
                ));
            }
            all.push((s.spec.index, o));
        }
    }
    // Every planned item is done, unless its cell met a fixed quota without it.
    let mut accepted_in_cell: BTreeMap<Cell, usize> = BTreeMap::new();
    for (_, o) in &all {
        if let Outcome::Record(r) = o {
            *accepted_in_cell.entry(r.cell()).or_default() += 1;
        }
    }
    for it in &items {
        if seen.contains_key(&it.id) {
            continue;
        }
        let cell = it.cell();
        let met = l
            .cfg
            .quota
            .cell(planned_in_cell[&cell])
            .is_some_and(|(target, _)| accepted_in_cell.get(&cell).copied().unwrap_or(0) >= target);
        if !met {
            problems.push(Problem::new(
                &shards[owner[&cell]].dir,
                format!(
                    "planned item {} is missing from shard {}/{count}",
                    it.id, owner[&cell]
                ),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::Input(problems));
    }

    // The unsharded order: planned items by plan position, then refills by cell and index.
    all.sort_by_cached_key(|(_, o)| {
        let r = o.record();
        match position.get(r.id.as_str()) {
            Some(&p) => (0, p, String::new(), 0),
            None => (1, 0, r.cell().key(), r.cell_index),
        }
    });
    let filters = l.cfg.filters.active();
    let mut stats = Stats::new(items.len() as u64, &filters);
    let mut dedup = Dedup::new(&l.cfg.dedup);
    let mut sinks = Sinks::open(out, l.cfg.engine.shard_size, |_| {})?;
    let mut cross = 0u64;
    for (_, o) in all {
        let o = match o {
            Outcome::Record(r) => match dedup.check_insert(&r.id, &record_text(&r)) {
                Ok(()) => Outcome::Record(r),
                Err(d) => {
                    cross += 1;
                    Outcome::Reject(Rejection {
                        id: r.id.clone(),
                        stage: "dedup".into(),
                        reason: d.reason.into(),
                        detail: format!("duplicate of {} (in another shard)", d.of),
                        record: r,
                    })
                }
            },
            reject => reject,
        };
        match &o {
            Outcome::Record(r) => {
                sinks.accept(r.clone())?;
                stats.add_record(r);
            }
            Outcome::Reject(j) => {
                sinks.reject(j)?;
                stats.add_reject(j);
            }
        }
    }
    sinks.finish()?;
    for s in &shards {
        let p = s.dir.join(STATS);
        if let Ok(b) = std::fs::read(&p) {
            let v: Value =
                serde_json::from_slice(&b).with_context(|| format!("parsing {}", p.display()))?;
            if let Some(c) = v.get("concurrency").filter(|c| !c.is_null()) {
                stats
                    .concurrency
                    .insert(format!("shard {}", s.spec), c.clone());
            }
        }
    }
    let mut m = shards[0].manifest.clone();
    m["status"] = json!("complete");
    m["run"] = json!({ "limit": limit, "merged_shards": count });
    m["shards"] = shards
        .iter()
        .map(|s| json!({ "shard": s.spec.to_string(), "dir": s.dir, "counts": s.manifest["counts"] }))
        .collect();
    m["counts"] = json!({
        "planned": stats.planned, "attempted": stats.done(),
        "accepted": stats.accepted, "rejected": stats.rejected,
        "cross_shard_duplicates": cross,
    });
    m["updated_at"] = json!(chrono::Utc::now().to_rfc3339());
    manifest::write_json(&out.join(MANIFEST), &m)?;
    manifest::write_json(
        &out.join(STATS),
        &serde_json::to_value(&stats).context("serializing stats")?,
    )?;
    Ok(MergeSummary {
        out_dir: out.to_path_buf(),
        shards: count,
        planned: stats.planned,
        accepted: stats.accepted,
        rejected: stats.rejected,
        cross_shard_duplicates: cross,
    })
}
