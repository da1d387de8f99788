//! One writer per output directory. `run`, `merge`, `dedup` and `export` hold an advisory
//! lock (`flock` on Unix, through `std::fs::File::try_lock`) on `<dir>/.mediflow.lock` for
//! as long as they write there, so a second process pointed at the same directory stops at
//! once with the holder's pid instead of interleaving its records with the first's (two
//! runs on one directory used to both proceed: 300 planned items ended as 465 record
//! lines). The kernel drops the lock when its process dies, however it dies, so a lock
//! left by a killed run never blocks the next one; the pid in the file is only for the
//! message. A holder removes the file when it is done.

use crate::error::Error;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a locked directory.
pub const LOCK_FILE: &str = ".mediflow.lock";

/// Who holds a lock, as its file says: `pid <n>\ncommand <what>\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    pub command: Option<String>,
}

/// An exclusive lock on a directory, released (and its file removed) on drop.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// Lock `dir` (created if missing) for `command` (`"run"`, `"merge"`, ...), or fail at
    /// once with `Error::Busy` naming the process that holds it.
    pub fn acquire(dir: &Path, command: &str) -> Result<DirLock, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(LOCK_FILE);
        let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io("opening", e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => return Err(busy(dir, &holder_of(&mut file))),
                Err(TryLockError::Error(e)) => return Err(io("locking", e)),
            }
            // A holder removes the file before it unlocks: if that happened between our
            // open and our lock, ours is a lock on a file no one else will open. Lock the
            // file that is at the path now instead.
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0).map_err(|e| io("writing", e))?;
            file.rewind().map_err(|e| io("writing", e))?;
            // One write, so a reader sees all of it or nothing.
            let text = format!("pid {}\ncommand {command}\n", std::process::id());
            file.write_all(text.as_bytes())
                .map_err(|e| io("writing", e))?;
            return Ok(DirLock { file, path });
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Remove, then unlock (closing the file unlocks it): a process that opened the old
        // file meanwhile sees that it is gone once it has the lock, and retries.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Fail with `Error::Busy` if a process holds the lock of `dir` now (a run still writing
/// the directory another command is about to read). Takes no lock and creates nothing.
pub fn ensure_free(dir: &Path) -> Result<(), Error> {
    let Ok(mut file) = File::open(dir.join(LOCK_FILE)) else {
        return Ok(());
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Ok(())
        }
        Err(TryLockError::WouldBlock) => Err(busy(dir, &holder_of(&mut file))),
        Err(TryLockError::Error(e)) => Err(Error::io(
            format!("checking the lock of {}", dir.display()),
            e,
        )),
    }
}

/// Whether `dir` holds anything but its lock file (an output directory that must start
/// empty is checked with this once it is locked).
pub fn has_content(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|d| d.flatten().any(|e| e.file_name() != LOCK_FILE))
}

/// What the lock file of `dir` says about its holder (`None` fields where it says nothing).
pub fn holder(dir: &Path) -> Option<Holder> {
    let mut f = File::open(dir.join(LOCK_FILE)).ok()?;
    Some(holder_of(&mut f))
}

fn holder_of(file: &mut File) -> Holder {
    // The holder writes its pid right after locking: give it a moment if it has not yet.
    let mut text = String::new();
    for _ in 0..20 {
        text.clear();
        let _ = file.rewind();
        let _ = file.read_to_string(&mut text);
        if text.contains('\n') {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .map(|v| v.trim().to_string())
    };
    Holder {
        pid: field("pid").and_then(|p| p.parse().ok()),
        command: field("command"),
    }
}

fn busy(dir: &Path, h: &Holder) -> Error {
    let who = match (&h.command, h.pid) {
        (Some(c), Some(p)) => format!("`mediflow {c}` (pid {p})"),
        (None, Some(p)) => format!("another mediflow process (pid {p})"),
        (_, None) => "another mediflow process (its pid is not recorded)".to_string(),
    };
    Error::Busy(format!(
        "{} is in use by {who}; two processes writing one directory would mix their \
         output. Wait for it to finish, stop it, or use another directory ({} holds the lock)",
        dir.display(),
        dir.join(LOCK_FILE).display()
    ))
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_holder_and_release_frees_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let first = DirLock::acquire(&dir, "run").unwrap();
        let h = holder(&dir).unwrap();
        assert_eq!(h.pid, Some(std::process::id()));
        assert_eq!(h.command.as_deref(), Some("run"));
        // flock locks belong to the open file: a second open in this process conflicts
        // as another process's would.
        let e = DirLock::acquire(&dir, "export").unwrap_err();
        assert_eq!(e.exit_code(), 5);
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("`mediflow run` (pid {})", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&dir.display().to_string()), "{msg}");
        assert!(ensure_free(&dir).unwrap_err().to_string().contains("pid"));
        drop(first);
        assert!(!dir.join(LOCK_FILE).exists(), "the holder removes its file");
        ensure_free(&dir).unwrap();
        let again = DirLock::acquire(&dir, "merge").unwrap();
        assert_eq!(holder(&dir).unwrap().command.as_deref(), Some("merge"));
        drop(again);
    }

    #[test]
    fn a_lock_file_left_behind_does_not_block() {
        // What a killed holder leaves: the file with its pid, and no lock (the kernel
        // released it with the process).
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(LOCK_FILE), "pid 999999999\ncommand run\n").unwrap();
        ensure_free(tmp.path()).unwrap();
        let l = DirLock::acquire(tmp.path(), "run").unwrap();
        assert_eq!(holder(tmp.path()).unwrap().pid, Some(std::process::id()));
        drop(l);
    }
}
