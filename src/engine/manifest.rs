//! `manifest.json` (what produced this run: resolved config, input hashes, versions,
//! counts) and `stats.json`. A resumed run must match the manifest's fingerprint.

use super::{Shared, Summary};
use crate::config::RunConfig;
use crate::error::Error;
use crate::plan::Plan;
use crate::prompt::Prompts;
use crate::schemas::Schemas;
use crate::shard::ShardSpec;
use crate::taxonomy::Taxonomy;
use anyhow::Context;
use serde_json::{json, Value};
use std::path::Path;

pub const MANIFEST: &str = "manifest.json";
pub const STATS: &str = "stats.json";

/// What must not change between attempts of one run (or between the shards of one).
pub fn fingerprint(cfg: &RunConfig, tax: &Taxonomy, prompts: &Prompts, schemas: &Schemas) -> Value {
    json!({
        "generation": cfg.generation_fingerprint(),
        "taxonomy_hash": tax.hash,
        "templates_hash": prompts.hash,
        "schemas_hash": schemas.hash,
    })
}

/// Keys earlier versions put in the fingerprint that are operational now: ignored when
/// a recorded fingerprint is compared, so those runs still resume (and merge).
const NO_LONGER_FINGERPRINTED: [&[&str]; 1] = [&["generation", "engine", "max_attempts"]];

/// How the fingerprint `now` differs from the recorded `was` (`path: was X, now Y`);
/// empty when they are one run's.
pub fn differences(was: &Value, now: &Value) -> Vec<String> {
    let mut was = was.clone();
    for path in NO_LONGER_FINGERPRINTED {
        let (last, parents) = path.split_last().expect("non-empty");
        let mut v = Some(&mut was);
        for k in parents {
            v = v.and_then(|v| v.get_mut(*k));
        }
        if let Some(Value::Object(m)) = v {
            m.remove(*last);
        }
    }
    let mut out = Vec::new();
    diff("", &was, now, &mut out);
    out
}

fn diff(prefix: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                diff(
                    &p,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{prefix}: was {a}, now {b}")),
        _ => {}
    }
}

pub fn write_json(path: &Path, v: &Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(v)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

pub fn read(dir: &Path) -> anyhow::Result<Option<Value>> {
    let p = dir.join(MANIFEST);
    match std::fs::read(&p) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b).with_context(|| format!("parsing {}", p.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// Check an existing manifest against this run (refusing to mix runs), or write a new one.
pub fn begin(
    dir: &Path,
    sh: &Shared,
    plan: &Plan,
    limit: Option<usize>,
    shard: Option<ShardSpec>,
) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let fp = fingerprint(&sh.cfg, &sh.tax, &sh.prompts, &sh.schemas);
    let mut manifest = match read(dir)? {
        Some(old) => {
            let diffs = differences(&old["fingerprint"], &fp);
            if !diffs.is_empty() {
                return Err(Error::RunMismatch(format!(
                    "{} holds a run made with different settings; refusing to mix them.\n  {}\n\
                     Use another --out directory (or restore the original settings to resume).",
                    dir.display(),
                    diffs.join("\n  ")
                )));
            }
            old
        }
        None => json!({
            "mediflow_version": env!("CARGO_PKG_VERSION"),
            "created_at": chrono::Utc::now().to_rfc3339(),
            "fingerprint": fp,
        }),
    };
    manifest["config"] = serde_json::to_value(&sh.cfg).context("serializing config")?;
    manifest["teacher_backend"] = json!(sh.teacher.backend());
    manifest["plan"] = plan.summary();
    // What this attempt covers: `merge` checks shards against it.
    manifest["run"] = json!({ "limit": limit, "shard": shard });
    manifest["status"] = json!("running");
    manifest["updated_at"] = json!(chrono::Utc::now().to_rfc3339());
    write_json(&dir.join(MANIFEST), &manifest)?;
    Ok(())
}

pub fn finish(dir: &Path, s: &Summary) -> Result<(), Error> {
    let mut manifest = read(dir)?.unwrap_or_else(|| json!({}));
    // Every scheduled item is done (a cell short of its quota says so in the stats).
    manifest["status"] = json!("complete");
    manifest["updated_at"] = json!(chrono::Utc::now().to_rfc3339());
    manifest["counts"] = json!({
        "planned": s.planned, "attempted": s.attempted,
        "accepted": s.accepted, "rejected": s.rejected,
        "rejected_transient": s.rejected_transient, "rejected_content": s.rejected_content,
        "cells_short": s.cells_short.len(),
    });
    write_json(&dir.join(MANIFEST), &manifest)?;
    write_json(
        &dir.join(STATS),
        &serde_json::to_value(&s.stats).context("serializing stats")?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::differences;
    use serde_json::json;

    /// Runs made when `engine.max_attempts` was part of the fingerprint still resume,
    /// whatever it was set to; other differences still refuse.
    #[test]
    fn the_retry_settings_earlier_versions_fingerprinted_are_ignored() {
        let now = json!({"generation": {"seed": 7, "engine": {"repair_attempts": 1}}});
        let was = json!({"generation": {"seed": 7,
            "engine": {"repair_attempts": 1, "max_attempts": 2}}});
        assert!(differences(&was, &now).is_empty());
        let other = json!({"generation": {"seed": 8,
            "engine": {"repair_attempts": 1, "max_attempts": 2}}});
        assert_eq!(differences(&other, &now), ["generation.seed: was 8, now 7"]);
    }
}
