//! Benchmarks behind `mediflow bench`: each one measures a part of the pipeline and hands
//! back a [`Report`] (its JSON and the lines a person reads); the command prints one of
//! them. Progress of a long bench goes to stderr as it runs.
//!
//! - [`teacher`]: the embedded teacher's prompt and generation tokens/s (and llama.cpp's
//!   `llama-bench` on the same file);
//! - [`dedup`]: the streaming deduplicator on synthetic records with planted duplicates
//!   (and datasketch's results on them);
//! - [`concurrency`]: the adaptive controller against a fixed-concurrency sweep on a server;
//! - [`gate`]: records per second through the quality gate without a judge.

pub mod concurrency;
pub mod dedup;
pub mod gate;
pub mod teacher;

/// What a bench measured: the report as JSON (`--json`), and as the lines it prints
/// otherwise (each ending in a newline).
#[derive(Debug, Clone)]
pub struct Report {
    pub json: serde_json::Value,
    pub text: String,
}

/// Append one formatted line to a `String` (writing to a `String` cannot fail).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}
pub(crate) use outln;

/// Peak resident memory of this process so far in MB (getrusage's ru_maxrss: Linux's VmHWM).
pub fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    ru.ru_maxrss as f64 / 1024.0
}
