//! Progress reporting behind one small type: an indicatif bar on a terminal, plain log
//! lines otherwise, nothing with `--quiet`. Counters are atomics shared with the workers.

use crate::teacher::Teacher;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Counters {
    pub done: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub in_flight: AtomicUsize,
    pub retries: AtomicU64,
    /// Completion tokens received this session.
    pub tokens: AtomicU64,
    /// Items of the run known so far, done or not (grows as quota refills are scheduled).
    pub total: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bar,
    Lines,
    Quiet,
}

impl Mode {
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// Spawns a ticker that renders the counters until `stop` is called.
pub struct Reporter {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl Reporter {
    /// `teacher`'s status line (e.g. each endpoint's concurrency limit) is shown too.
    pub fn start(
        mode: Mode,
        c: Arc<Counters>,
        total: u64,
        already: u64,
        teacher: Arc<dyn Teacher>,
    ) -> Reporter {
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(async move {
            if mode == Mode::Quiet {
                return;
            }
            let started = Instant::now();
            let bar = (mode == Mode::Bar).then(|| {
                let b = ProgressBar::new(total);
                b.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} items  {msg}  ETA {eta}",
                    )
                    .expect("valid template"),
                );
                b.set_position(already);
                b.reset_eta();
                b
            });
            let tick = if bar.is_some() {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            };
            let mut last = false;
            loop {
                let total = c.total.load(Ordering::Relaxed).max(total);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let done = c.done.load(Ordering::Relaxed);
                let tok_s = c.tokens.load(Ordering::Relaxed) as f64 / secs;
                let mut msg = format!(
                    "in flight {}  accepted {}  rejected {}  retries {}  {:.0} tok/s",
                    c.in_flight.load(Ordering::Relaxed),
                    c.accepted.load(Ordering::Relaxed),
                    c.rejected.load(Ordering::Relaxed),
                    c.retries.load(Ordering::Relaxed),
                    tok_s
                );
                if let Some(line) = teacher.status_line() {
                    msg.push_str("  [");
                    msg.push_str(&line);
                    msg.push(']');
                }
                match &bar {
                    Some(b) => {
                        b.set_length(total);
                        b.set_position(already + done);
                        b.set_message(msg);
                    }
                    None => {
                        let rate = done as f64 / secs;
                        let left = total.saturating_sub(already + done) as f64;
                        let eta = if rate > 0.0 {
                            format!("{:.0}s", left / rate)
                        } else {
                            "?".into()
                        };
                        eprintln!(
                            "[{:>6.0}s] {}/{} items  {msg}  ETA {eta}",
                            secs,
                            already + done,
                            total
                        );
                    }
                }
                if last {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    // Render once more on stop, so the last line shows the final counts.
                    _ = rx.changed() => last = true,
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
        });
        Reporter { stop, handle }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}
