//! Small shared helpers: content hashing and TOML loading with file/line problems.

use crate::error::Problem;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(bytes.as_ref()))
}

/// First 16 hex chars of a SHA-256: enough for ids and content tags.
pub fn short_hash(bytes: impl AsRef<[u8]>) -> String {
    sha256_hex(bytes)[..16].to_string()
}

/// A stable 64-bit seed derived from a string key.
pub fn seed_from(key: &str) -> u64 {
    let d = Sha256::digest(key.as_bytes());
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Line number (1-based) of a byte offset in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Read and parse a TOML file; a failure becomes a Problem naming the file and line.
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, Problem> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problem::new(path, format!("cannot read: {e}")))?;
    toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| line_of(&text, s.start));
        Problem::at(path, line, e.message().to_string())
    })
}

/// SHA-256 over the relative paths and contents of every file under `dir`, in sorted order.
pub fn hash_dir(dir: &Path) -> String {
    let mut files = Vec::new();
    fn walk(d: &Path, out: &mut Vec<std::path::PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
    }
    walk(dir, &mut files);
    files.sort();
    let mut buf = Vec::new();
    for f in files {
        buf.extend_from_slice(
            f.strip_prefix(dir)
                .unwrap_or(&f)
                .to_string_lossy()
                .as_bytes(),
        );
        buf.push(0);
        buf.extend_from_slice(&std::fs::read(&f).unwrap_or_default());
        buf.push(0);
    }
    sha256_hex(buf)
}

/// Every file under `dir` (at any depth) whose extension is `ext`, sorted; unreadable
/// folders are skipped (whoever reads the files reports them).
pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
