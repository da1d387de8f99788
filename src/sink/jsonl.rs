//! Line-oriented JSON files: an appender that writes one whole line per record, and a
//! reader that can cut a torn last line left by a killed process.

use anyhow::Context;
use serde::{de::DeserializeOwned, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

pub struct JsonlAppender {
    path: PathBuf,
    file: File,
}

impl JsonlAppender {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(JsonlAppender {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Append one record as a single write of `json + "\n"` (it reaches the OS at once,
    /// so a SIGKILL after this returns cannot lose it).
    pub fn append<T: Serialize>(&mut self, v: &T) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(v)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    pub fn sync(&mut self) -> anyhow::Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("syncing {}", self.path.display()))
    }
}

/// Read every line of a JSONL file (missing file = empty). With `repair`, a torn last line
/// (no trailing newline) is cut off the file; a bad line anywhere else is an error.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path, repair: bool) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    for_each_jsonl(path, repair, |v| {
        out.push(v);
        Ok(())
    })?;
    Ok(out)
}

/// Like `read_jsonl`, but hands each value to `f` instead of collecting them (memory stays
/// bounded by one line whatever the file's size).
pub fn for_each_jsonl<T: DeserializeOwned>(
    path: &Path,
    repair: bool,
    mut f: impl FnMut(T) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let mut reader = BufReader::new(file);
    let mut good_len: u64 = 0;
    let mut buf = Vec::new();
    let mut lineno = 0;
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        lineno += 1;
        let complete = buf.last() == Some(&b'\n');
        match serde_json::from_slice::<T>(&buf) {
            Ok(v) if complete => {
                f(v)?;
                good_len += n as u64;
            }
            _ if !complete && repair => {
                tracing::warn!(
                    "{}: cutting a torn last line ({n} bytes) left by an interrupted run",
                    path.display()
                );
                let file = OpenOptions::new().write(true).open(path)?;
                file.set_len(good_len)?;
                file.sync_all()?;
                break;
            }
            Ok(v) => f(v)?,
            Err(e) => anyhow::bail!("{}:{lineno}: not a valid record: {e}", path.display()),
        }
    }
    Ok(())
}
