//! Output sinks. Records go to JSONL shards (appended line by line: the durable journal)
//! and to Parquet shards written when a shard closes; rejects go to `rejects.jsonl`.
//! `open` scans what a previous attempt left, cuts any torn last line, and returns the
//! outcomes already on disk so a resumed run skips them; `release` takes rejects out
//! that a new attempt retries (`rejects`).

mod jsonl;
mod parquet;
pub mod rejects;

pub use jsonl::{for_each_jsonl, read_jsonl, JsonlAppender};
pub use parquet::{read_parquet, write_batches, write_parquet};

use crate::record::{Record, Rejection};
use anyhow::Context;
use std::path::{Path, PathBuf};

pub const DATA_DIR: &str = "data";
pub const REJECTS: &str = "rejects.jsonl";

fn shard_path(dir: &Path, k: usize, ext: &str) -> PathBuf {
    dir.join(DATA_DIR).join(format!("part-{k:05}.{ext}"))
}

/// List the JSONL shards of a run directory in order.
pub fn shard_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    jsonl_files(&dir.join(DATA_DIR))
}

/// The `.jsonl` files directly in `dir`, in name order (none if `dir` does not exist).
pub fn jsonl_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    v.sort();
    Ok(v)
}

/// Writes accepted records (JSONL + Parquet shards) and rejects.
pub struct Sinks {
    dir: PathBuf,
    shard_size: usize,
    shard: usize,
    buffer: Vec<Record>,
    jsonl: JsonlAppender,
    rejects: JsonlAppender,
}

/// An outcome a previous attempt left on disk.
#[derive(Clone, Copy)]
pub enum Found<'a> {
    Record(&'a Record),
    Reject(&'a Rejection),
}

impl Sinks {
    /// Open (or create) the sinks in `dir`, recovering from an interrupted attempt; every
    /// outcome already on disk is passed to `found` (one shard in memory at a time).
    pub fn open(
        dir: &Path,
        shard_size: usize,
        mut found: impl FnMut(Found<'_>),
    ) -> anyhow::Result<Sinks> {
        std::fs::create_dir_all(dir.join(DATA_DIR))
            .with_context(|| format!("creating {}", dir.display()))?;
        let files = shard_files(dir)?;
        let mut last: Option<Vec<Record>> = None;
        for (k, f) in files.iter().enumerate() {
            let rows: Vec<Record> = read_jsonl(f, true)?;
            let full = rows.len() >= shard_size;
            let is_last = k + 1 == files.len();
            // A closed shard whose Parquet twin is missing (killed while closing): write it now.
            if (full || !is_last) && !shard_path(dir, k, "parquet").exists() {
                write_parquet(&shard_path(dir, k, "parquet"), &rows)?;
            }
            if is_last && !full {
                last = Some(rows.clone());
            }
            rows.iter().for_each(|r| found(Found::Record(r)));
        }
        for_each_jsonl(&dir.join(REJECTS), true, |j: Rejection| {
            found(Found::Reject(&j));
            Ok(())
        })?;
        // Continue the last shard if it is not full, else start the next one.
        let (shard, buffer) = match last {
            Some(rows) => (files.len() - 1, rows),
            None => (files.len(), vec![]),
        };
        let jsonl = JsonlAppender::open(&shard_path(dir, shard, "jsonl"))?;
        let rejects_w = JsonlAppender::open(&dir.join(REJECTS))?;
        let sinks = Sinks {
            dir: dir.to_path_buf(),
            shard_size,
            shard,
            buffer,
            jsonl,
            rejects: rejects_w,
        };
        Ok(sinks)
    }

    pub fn accept(&mut self, r: Record) -> anyhow::Result<()> {
        self.jsonl.append(&r)?;
        self.buffer.push(r);
        if self.buffer.len() >= self.shard_size {
            self.close_shard()?;
            self.shard += 1;
            self.jsonl = JsonlAppender::open(&shard_path(&self.dir, self.shard, "jsonl"))?;
        }
        Ok(())
    }

    pub fn reject(&mut self, r: &Rejection) -> anyhow::Result<()> {
        self.rejects.append(r)
    }

    /// Take the rejects of `ids` out of `rejects.jsonl` (into the history of retried
    /// rejects, `rejects::RETRIED`) before their items run again, so their new outcomes
    /// replace them.
    pub fn release(&mut self, ids: &std::collections::HashSet<String>) -> anyhow::Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.rejects.sync()?;
        let n = rejects::release(&self.dir, ids)?;
        self.rejects = JsonlAppender::open(&self.dir.join(REJECTS))?;
        Ok(n)
    }

    fn close_shard(&mut self) -> anyhow::Result<()> {
        self.jsonl.sync()?;
        write_parquet(&shard_path(&self.dir, self.shard, "parquet"), &self.buffer)?;
        self.buffer.clear();
        Ok(())
    }

    /// Write the Parquet twin of the open shard and sync everything.
    pub fn finish(mut self) -> anyhow::Result<()> {
        if !self.buffer.is_empty() {
            self.close_shard()?;
        } else {
            // An empty open shard file is noise: remove it (and never leave an empty Parquet).
            self.jsonl.sync()?;
            let p = shard_path(&self.dir, self.shard, "jsonl");
            if std::fs::metadata(&p).map(|m| m.len() == 0).unwrap_or(false) {
                std::fs::remove_file(&p).ok();
            }
        }
        self.rejects.sync()
    }
}
