//! Progress reporting behind one small type: an indicatif bar on a terminal, plain log
//! lines otherwise, nothing with `--quiet`. Counters are atomics shared with the workers.
//!
//! The bar counts stages, not items (an item is its document, instruction and answer, and
//! its judging when the judge is on; the stages a rejected item never reaches count as
//! done when it is rejected), and the tokens include the prompt tokens the teacher has
//! processed, read live from the embedded teacher: a small model spends its first minutes
//! reading prompts, and the display moves from the first second instead of sitting at
//! "0/12 items, 0 tok/s" until the first item is done.

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
    /// Teacher calls answered, prompt tokens sent, and those served from a prefix cache,
    /// this session.
    pub calls: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub cached_tokens: AtomicU64,
    /// Items of the run known so far, done or not (grows as quota refills are scheduled).
    pub total: AtomicU64,
    /// Stages done this session: documents, instructions and answers written, records
    /// judged; and the stages rejected items skipped (so the bar reaches its end).
    pub documents: AtomicU64,
    pub instructions: AtomicU64,
    pub answers: AtomicU64,
    pub judged: AtomicU64,
    pub stages_skipped: AtomicU64,
}

impl Counters {
    /// Count a finished stage.
    pub fn stage_done(&self, stage: crate::prompt::Stage) {
        use crate::prompt::Stage;
        let c = match stage {
            Stage::Document => &self.documents,
            Stage::Instruction => &self.instructions,
            Stage::Answer => &self.answers,
            Stage::Judge => &self.judged,
            Stage::Repair | Stage::Inject => return,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn stages_done(&self) -> u64 {
        [
            &self.documents,
            &self.instructions,
            &self.answers,
            &self.judged,
            &self.stages_skipped,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// `12345` as `12.3k`.
fn short(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
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
    /// `teacher`'s status line (e.g. each endpoint's concurrency limit) is shown too, and
    /// its live token counts where it has them. `stages` per item: 3, or 4 with the judge.
    pub fn start(
        mode: Mode,
        c: Arc<Counters>,
        total: u64,
        already: u64,
        stages: u64,
        teacher: Arc<dyn Teacher>,
    ) -> Reporter {
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(async move {
            if mode == Mode::Quiet {
                return;
            }
            let started = Instant::now();
            let stages = stages.max(1);
            let bar = (mode == Mode::Bar).then(|| {
                let b = ProgressBar::new(total * stages);
                b.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {percent:>3}%  {msg}  ETA {eta}",
                    )
                    .expect("valid template"),
                );
                b.set_position(already * stages);
                b.reset_eta();
                b
            });
            let tick = if bar.is_some() {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            };
            // Tokens the teacher had processed before this session (a warm engine).
            let base = teacher.live_tokens().unwrap_or((0, 0));
            let mut last = false;
            loop {
                let total = c.total.load(Ordering::Relaxed).max(total);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let done = c.done.load(Ordering::Relaxed);
                let (prompt, generated) = match teacher.live_tokens() {
                    Some((p, g)) => (p.saturating_sub(base.0), g.saturating_sub(base.1)),
                    // Only what answered calls report.
                    None => (
                        c.prompt_tokens.load(Ordering::Relaxed),
                        c.tokens.load(Ordering::Relaxed),
                    ),
                };
                let tok_s = (prompt + generated) as f64 / secs;
                let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let mut msg = format!(
                    "{}/{total} items (accepted {}, rejected {})  documents {}  instructions {}  answers {}",
                    already + done,
                    load(&c.accepted),
                    load(&c.rejected),
                    load(&c.documents),
                    load(&c.instructions),
                    load(&c.answers),
                );
                if stages > 3 {
                    msg.push_str(&format!("  judged {}", load(&c.judged)));
                }
                msg.push_str(&format!(
                    "  in flight {}  retries {}  tokens {} prompt + {} generated, {:.0} tok/s",
                    c.in_flight.load(Ordering::Relaxed),
                    load(&c.retries),
                    short(prompt),
                    short(generated),
                    tok_s
                ));
                if let Some(line) = teacher.status_line() {
                    msg.push_str("  [");
                    msg.push_str(&line);
                    msg.push(']');
                }
                let steps = (already * stages + c.stages_done()).min(total * stages);
                match &bar {
                    Some(b) => {
                        b.set_length(total * stages);
                        b.set_position(steps);
                        b.set_message(msg);
                    }
                    None => {
                        let rate = (steps - already * stages) as f64 / secs;
                        let left = (total * stages).saturating_sub(steps) as f64;
                        let eta = if rate > 0.0 {
                            format!("{:.0}s", left / rate)
                        } else {
                            "?".into()
                        };
                        eprintln!("[{secs:>6.0}s] {msg}  ETA {eta}");
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
