//! Rejects a later attempt tries again. A reject is taken out of `rejects.jsonl` before
//! its item runs again, so the item's new outcome replaces it (every item stays exactly
//! once across the records and the rejects); the reject itself moves to
//! `rejects-retried.jsonl`, the history of rejects replaced by a retry (not part of the
//! dataset: `merge`, `export` and the stats never read it).
//!
//! Crash safety: the history is appended and synced first, then `rejects.jsonl` is
//! replaced by a copy without the released lines (written aside, synced, renamed). Killed
//! before the rename, the rejects are still there and are released again by the next
//! attempt (lines already in the history are not written twice); killed after it, their
//! items are simply not done yet.

use super::REJECTS;
use anyhow::Context;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

/// The history of rejects replaced by a retry.
pub const RETRIED: &str = "rejects-retried.jsonl";

/// The fields of a reject line this module needs.
#[derive(serde::Deserialize)]
struct Line {
    id: String,
    reason: String,
}

/// Every line of a (complete) JSONL file, with its id and reason.
fn for_each_line(
    path: &Path,
    mut f: impl FnMut(&[u8], Line) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut r = BufReader::new(file);
    let mut buf = Vec::new();
    let mut lineno = 0;
    loop {
        buf.clear();
        if r.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        lineno += 1;
        let line: Line = serde_json::from_slice(&buf)
            .with_context(|| format!("{}:{lineno}: not a reject", path.display()))?;
        if !buf.ends_with(b"\n") {
            buf.push(b'\n');
        }
        f(&buf, line)?;
    }
}

/// Move the rejects of `ids` from `dir/rejects.jsonl` to `dir/rejects-retried.jsonl`;
/// returns how many lines moved. The caller reopens its appender on `rejects.jsonl`.
pub fn release(dir: &Path, ids: &HashSet<String>) -> anyhow::Result<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let path = dir.join(REJECTS);
    let tmp = dir.join(format!("{REJECTS}.tmp"));
    let mut kept =
        BufWriter::new(File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?);
    let mut released: Vec<Vec<u8>> = Vec::new();
    for_each_line(&path, |bytes, line| {
        if ids.contains(&line.id) {
            released.push(bytes.to_vec());
        } else {
            kept.write_all(bytes)?;
        }
        Ok(())
    })?;
    let kept = kept.into_inner().map_err(|e| e.into_error())?;
    kept.sync_all()?;

    let history = dir.join(RETRIED);
    // A line torn by a kill while the history was appended to is cut first.
    super::for_each_jsonl(&history, true, |_: serde::de::IgnoredAny| Ok(()))?;
    let mut logged: HashSet<u64> = HashSet::new();
    for_each_line(&history, |bytes, _| {
        logged.insert(xxhash_rust::xxh3::xxh3_64(bytes));
        Ok(())
    })?;
    let mut h = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&history)
        .with_context(|| format!("opening {}", history.display()))?;
    for line in &released {
        if !logged.contains(&xxhash_rust::xxh3::xxh3_64(line)) {
            h.write_all(line)?;
        }
    }
    h.sync_all()?;

    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
    // The rename itself is durable once the directory is synced.
    File::open(dir).and_then(|d| d.sync_all()).ok();
    Ok(released.len())
}

/// The ids in `dir/rejects-retried.jsonl`, each with the reason of its latest reject
/// there.
pub fn retried(dir: &Path) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for_each_line(&dir.join(RETRIED), |_, line| {
        out.insert(line.id, line.reason);
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, reason: &str) -> String {
        format!(
            "{{\"id\":\"{id}\",\"stage\":\"answer\",\"reason\":\"{reason}\",\"detail\":\"x\"}}\n"
        )
    }

    /// Released lines leave `rejects.jsonl` for the history, once however often the
    /// release is repeated (as after a kill between its two steps).
    #[test]
    fn released_rejects_move_to_the_history_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let all = [
            line("a", "server_error"),
            line("b", "schema_invalid"),
            line("c", "timeout"),
        ]
        .concat();
        std::fs::write(d.join(REJECTS), &all).unwrap();
        let ids: HashSet<String> = ["a".to_string(), "c".to_string()].into();
        assert_eq!(release(d, &ids).unwrap(), 2);
        let left = std::fs::read_to_string(d.join(REJECTS)).unwrap();
        assert_eq!(left, line("b", "schema_invalid"));
        let hist = std::fs::read_to_string(d.join(RETRIED)).unwrap();
        assert_eq!(
            hist,
            [line("a", "server_error"), line("c", "timeout")].concat()
        );

        // Killed before the rename: the rejects are back; releasing again logs nothing twice.
        std::fs::write(d.join(REJECTS), &all).unwrap();
        assert_eq!(release(d, &ids).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(d.join(RETRIED)).unwrap(), hist);
        let r = retried(d).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r["c"], "timeout");
        assert!(!d.join(format!("{REJECTS}.tmp")).exists());
    }
}
