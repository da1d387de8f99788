//! The scheduler: one dedicated OS thread owns the model and serves every request
//! through a channel, so model work never runs on the async runtime's threads. It does
//! continuous batching: each step feeds every active sequence its next tokens in one
//! packed forward pass — new sequences their prompt (in fixed chunks), the others the
//! token they just sampled — and sequences join as soon as others finish, up to
//! `max_batch`. Replies go back over `tokio::sync::oneshot`; a request whose caller has
//! gone away is dropped at the next step.

use super::constrain::{apply_mask, Constrainer};
use super::model::{log_softmax, Model, Row, SeqCache, Want};
use super::sampler::{Sampler, SamplingParams};
use super::tokenizer::TextTokenizer;
use super::BadRequest;
use anyhow::{anyhow, bail, Result};
use candle_core::{IndexOp, Tensor};
use llguidance::Matcher;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Prompt tokens fed per sequence per step; a prompt's chunking depends only on its own
/// length, so a sequence computes the same thing whatever shares its batch.
const PREFILL_CHUNK: usize = 512;
/// Prompt tokens fed per step over all sequences (the first chunk always goes in).
const PREFILL_BUDGET: usize = 1024;

#[derive(Debug, Clone, Default)]
pub struct GenParams {
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    /// Stop when any of these appears in the output (it is cut off before it).
    pub stop: Vec<String>,
    /// Constrain the output to JSON valid against this schema.
    pub json_schema: Option<Value>,
    /// Never end at an end-of-turn token (benchmarks: always produce `max_tokens`).
    pub ignore_eos: bool,
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    /// "stop" (end of turn, stop string, or the JSON document closed) or "length".
    pub finish_reason: &'static str,
    pub prompt_tokens: usize,
    /// Time from admission to the first sampled token.
    pub time_to_first_token: Duration,
}

/// Running totals, for throughput figures.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub steps: AtomicU64,
    /// Nanoseconds spent in forward passes.
    pub forward_ns: AtomicU64,
}

enum Job {
    Generate {
        prompt: Vec<u32>,
        params: GenParams,
        reply: oneshot::Sender<Result<Generation>>,
    },
    Logprobs {
        prompt: Vec<u32>,
        continuations: Vec<Vec<u32>>,
        reply: oneshot::Sender<Result<Vec<f64>>>,
    },
}

pub struct Engine {
    tx: Option<mpsc::Sender<Job>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<EngineStats>,
}

struct Seq {
    cache: SeqCache,
    /// Tokens still to feed: the rest of the prompt, then the last sampled token.
    pending: Vec<u32>,
    prompt_len: usize,
    seen: Vec<u32>,
    out: Vec<u32>,
    bytes: Vec<u8>,
    sampler: Sampler,
    matcher: Option<Matcher>,
    params: GenParams,
    /// Taken when the answer is sent.
    reply: Option<oneshot::Sender<Result<Generation>>>,
    admitted: Instant,
    first_token: Option<Duration>,
}

struct Worker {
    model: Model,
    tok: Arc<TextTokenizer>,
    constrainer: Constrainer,
    max_batch: usize,
    stats: Arc<EngineStats>,
}

impl Engine {
    /// Start the engine thread; `threads` > 0 runs the model on a pool of that size.
    pub fn start(
        model: Model,
        tok: Arc<TextTokenizer>,
        constrainer: Constrainer,
        max_batch: usize,
        threads: usize,
    ) -> Result<Engine> {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(EngineStats::default());
        let worker = Worker {
            model,
            tok,
            constrainer,
            max_batch: max_batch.max(1),
            stats: stats.clone(),
        };
        let pool = match threads {
            0 => None,
            n => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("mediflow-model-{i}"))
                    .build()?,
            ),
        };
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("mediflow-engine".into())
            .spawn(move || match pool {
                Some(p) => p.install(|| worker.run(rx, &stop2)),
                None => worker.run(rx, &stop2),
            })?;
        Ok(Engine {
            tx: Some(tx),
            stop,
            thread: Some(thread),
            stats,
        })
    }

    fn send(&self, job: Job) -> Result<()> {
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(job).ok())
            .ok_or_else(|| anyhow!("the embedded model's engine thread has stopped"))
    }

    pub async fn generate(&self, prompt: Vec<u32>, params: GenParams) -> Result<Generation> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Generate {
            prompt,
            params,
            reply,
        })?;
        rx.await
            .map_err(|_| anyhow!("the embedded model's engine thread stopped"))?
    }

    /// Sum of the log-probabilities of each continuation's tokens right after `prompt`.
    pub async fn logprobs(
        &self,
        prompt: Vec<u32>,
        continuations: Vec<Vec<u32>>,
    ) -> Result<Vec<f64>> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Logprobs {
            prompt,
            continuations,
            reply,
        })?;
        rx.await
            .map_err(|_| anyhow!("the embedded model's engine thread stopped"))?
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Job>, stop: &AtomicBool) {
        let mut waiting = std::collections::VecDeque::new();
        let mut active: Vec<Seq> = Vec::new();
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if active.is_empty() && waiting.is_empty() {
                match rx.recv() {
                    Ok(j) => waiting.push_back(j),
                    Err(_) => return,
                }
            }
            while let Ok(j) = rx.try_recv() {
                waiting.push_back(j);
            }
            // Scoring jobs are short and run solo, ahead of the queue.
            let mut rest = std::collections::VecDeque::new();
            for j in waiting.drain(..) {
                match j {
                    Job::Logprobs {
                        prompt,
                        continuations,
                        reply,
                    } => {
                        if !reply.is_closed() {
                            let _ = reply.send(self.score(&prompt, &continuations));
                        }
                    }
                    j => rest.push_back(j),
                }
            }
            waiting = rest;
            while active.len() < self.max_batch {
                let Some(Job::Generate {
                    prompt,
                    params,
                    reply,
                }) = waiting.pop_front()
                else {
                    break;
                };
                match self.admit(prompt, params, reply) {
                    Ok(Some(s)) => active.push(s),
                    Ok(None) => {}
                    Err((e, reply)) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            active.retain(|s| s.reply.as_ref().is_some_and(|r| !r.is_closed()));
            if active.is_empty() {
                continue;
            }
            if let Err(e) = self.step(&mut active) {
                let msg = format!("{e:#}");
                tracing::error!("embedded model step failed: {msg}");
                for s in active.drain(..) {
                    if let Some(r) = s.reply {
                        let _ = r.send(Err(anyhow!("embedded model failed: {msg}")));
                    }
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn admit(
        &self,
        prompt: Vec<u32>,
        params: GenParams,
        reply: oneshot::Sender<Result<Generation>>,
    ) -> std::result::Result<Option<Seq>, (anyhow::Error, oneshot::Sender<Result<Generation>>)>
    {
        if reply.is_closed() {
            return Ok(None);
        }
        let n_ctx = self.model.cfg.n_ctx;
        if prompt.is_empty() || prompt.len() >= n_ctx {
            let e = anyhow!(BadRequest(format!(
                "prompt of {} tokens does not fit the context of {n_ctx}",
                prompt.len()
            )));
            return Err((e, reply));
        }
        let matcher = match &params.json_schema {
            Some(s) => match self.constrainer.matcher(s) {
                Ok(m) => Some(m),
                Err(e) => return Err((anyhow!(BadRequest(format!("{e:#}"))), reply)),
            },
            None => None,
        };
        let cap = prompt.len() + params.max_tokens.clamp(1, 256);
        let cache = match self.model.new_cache(cap) {
            Ok(c) => c,
            Err(e) => return Err((e, reply)),
        };
        Ok(Some(Seq {
            cache,
            prompt_len: prompt.len(),
            seen: prompt.clone(),
            pending: prompt,
            out: Vec::new(),
            bytes: Vec::new(),
            sampler: Sampler::new(params.sampling.clone()),
            matcher,
            params,
            reply: Some(reply),
            admitted: Instant::now(),
            first_token: None,
        }))
    }

    /// One packed forward pass over all active sequences, then sampling.
    fn step(&mut self, active: &mut Vec<Seq>) -> Result<()> {
        // How many pending tokens each sequence feeds this step.
        let mut budget = PREFILL_BUDGET;
        let mut feed = Vec::with_capacity(active.len());
        let mut any_prefill = false;
        for s in active.iter() {
            let n = if s.pending.len() == 1 && !s.out.is_empty() {
                1
            } else {
                let done = s.cache.len;
                // chunk boundaries at multiples of PREFILL_CHUNK from the prompt start
                let n = (PREFILL_CHUNK - done % PREFILL_CHUNK).min(s.pending.len());
                if any_prefill && n > budget {
                    0
                } else {
                    any_prefill = true;
                    budget = budget.saturating_sub(n);
                    n
                }
            };
            feed.push(n);
        }
        let mut rows: Vec<Row<'_>> = Vec::with_capacity(active.len());
        let mut who = Vec::with_capacity(active.len());
        for (i, s) in active.iter_mut().enumerate() {
            let n = feed[i];
            if n == 0 {
                continue;
            }
            let want = if n == s.pending.len() {
                Want::Last
            } else {
                Want::None
            };
            rows.push(Row {
                cache: &mut s.cache,
                tokens: &s.pending[..n],
                want,
            });
            who.push(i);
        }
        let t0 = Instant::now();
        let logits = self.model.forward(&mut rows)?;
        drop(rows);
        let st = &self.stats;
        st.forward_ns
            .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        st.steps.fetch_add(1, Ordering::Relaxed);

        let mut finished = vec![None; active.len()];
        for (&i, l) in who.iter().zip(logits) {
            let s = &mut active[i];
            let n = feed[i];
            if s.out.is_empty() {
                st.prompt_tokens.fetch_add(n as u64, Ordering::Relaxed);
            }
            s.pending.drain(..n);
            let Some(l) = l else { continue };
            let mut logits = l.i(0)?.to_vec1::<f32>()?;
            finished[i] = self.advance(s, &mut logits)?;
            st.generated_tokens.fetch_add(1, Ordering::Relaxed);
        }
        // Finished sequences leave; the order of the others is kept.
        let mut k = 0;
        active.retain_mut(|s| {
            let f = finished[k].take();
            k += 1;
            match f {
                None => true,
                Some(reason) => {
                    let g = finish(s, reason);
                    if let Some(r) = s.reply.take() {
                        let _ = r.send(Ok(g));
                    }
                    false
                }
            }
        });
        Ok(())
    }

    /// Sample the next token of `s` from its logits; Some(reason) when it is done.
    fn advance(&self, s: &mut Seq, logits: &mut [f32]) -> Result<Option<&'static str>> {
        if let Some(m) = s.matcher.as_mut() {
            apply_mask(m, logits)?;
        } else if s.params.ignore_eos {
            for &id in &self.tok.stop_ids {
                logits[id as usize] = f32::NEG_INFINITY;
            }
        }
        let t = s.sampler.sample(logits, &s.seen);
        if s.first_token.is_none() {
            s.first_token = Some(s.admitted.elapsed());
        }
        if let Some(m) = s.matcher.as_mut() {
            m.consume_token(t)
                .map_err(|e| anyhow!("constraint rejected token {t}: {e}"))?;
        }
        if self.tok.stop_ids.contains(&t) {
            return Ok(Some("stop"));
        }
        s.out.push(t);
        s.seen.push(t);
        let before = s.bytes.len();
        s.bytes.extend_from_slice(self.tok.bytes_of(t));
        if let Some(cut) = find_stop(&s.bytes, before, &s.params.stop) {
            s.bytes.truncate(cut);
            return Ok(Some("stop"));
        }
        if s.matcher.as_ref().is_some_and(|m| m.is_stopped()) {
            return Ok(Some("stop"));
        }
        if s.out.len() >= s.params.max_tokens || s.cache.len + 1 >= self.model.cfg.n_ctx {
            return Ok(Some("length"));
        }
        s.pending.push(t);
        Ok(None)
    }

    /// Log-probability sums of each continuation after the prompt (one solo pass for the
    /// prompt, then one per continuation over the shared prompt cache).
    fn score(&self, prompt: &[u32], conts: &[Vec<u32>]) -> Result<Vec<f64>> {
        let longest = conts.iter().map(Vec::len).max().unwrap_or(0);
        let n_ctx = self.model.cfg.n_ctx;
        if prompt.is_empty() || prompt.len() + longest > n_ctx {
            bail!(BadRequest(format!(
                "prompt and continuation do not fit the context of {n_ctx}"
            )));
        }
        let mut cache = self.model.new_cache(prompt.len() + longest)?;
        let first = self.feed(&mut cache, prompt, Want::Last)?;
        let first = log_softmax(&first)?.i(0)?;
        self.stats
            .prompt_tokens
            .fetch_add(prompt.len() as u64, Ordering::Relaxed);
        let mut out = Vec::with_capacity(conts.len());
        for c in conts {
            if c.is_empty() {
                out.push(0.0);
                continue;
            }
            let mut sum = first.i(c[0] as usize)?.to_scalar::<f32>()? as f64;
            if c.len() > 1 {
                cache.truncate(prompt.len());
                let l = self.feed(&mut cache, &c[..c.len() - 1], Want::All)?;
                let idx = Tensor::new(&c[1..], l.device())?.unsqueeze(1)?;
                let lp = log_softmax(&l)?.gather(&idx, 1)?.squeeze(1)?;
                sum += lp.to_vec1::<f32>()?.iter().map(|&x| x as f64).sum::<f64>();
            }
            out.push(sum);
        }
        Ok(out)
    }

    /// Feed `tokens` to one sequence in chunks (bounding the attention matrix) and return
    /// the last position's logits (`Want::Last`) or every position's (`Want::All`).
    fn feed(&self, cache: &mut SeqCache, tokens: &[u32], want: Want) -> Result<Tensor> {
        let mut all = Vec::new();
        let chunks: Vec<&[u32]> = tokens.chunks(PREFILL_CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let w = match want {
                Want::All => Want::All,
                _ if i + 1 == chunks.len() => want,
                _ => Want::None,
            };
            let mut rows = [Row {
                cache: &mut *cache,
                tokens: chunk,
                want: w,
            }];
            if let Some(l) = self.model.forward(&mut rows)?.remove(0) {
                all.push(l);
            }
        }
        match all.len() {
            0 => bail!("no logits"),
            1 => Ok(all.remove(0)),
            _ => Ok(Tensor::cat(&all, 0)?),
        }
    }
}

fn finish(s: &mut Seq, reason: &'static str) -> Generation {
    Generation {
        text: String::from_utf8_lossy(&s.bytes).into_owned(),
        tokens: std::mem::take(&mut s.out),
        finish_reason: reason,
        prompt_tokens: s.prompt_len,
        time_to_first_token: s.first_token.unwrap_or_default(),
    }
}

/// Where the earliest stop string that ends in the bytes added after `before` begins.
fn find_stop(bytes: &[u8], before: usize, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let s = s.as_bytes();
            let from = before.saturating_sub(s.len() - 1);
            bytes[from..]
                .windows(s.len())
                .position(|w| w == s)
                .map(|p| from + p)
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::find_stop;

    #[test]
    fn stop_strings_are_found_across_token_boundaries() {
        let stops = vec!["\n\n".to_string(), "END".to_string()];
        // "EN" came earlier, "D" now: found, cut where it starts
        assert_eq!(find_stop(b"abc EN" as &[u8], 6, &stops), None);
        assert_eq!(find_stop(b"abc END", 6, &stops), Some(4));
        assert_eq!(find_stop(b"a\n\nb\n\n", 5, &stops), Some(4));
        assert_eq!(find_stop(b"abc", 0, &[]), None);
        assert_eq!(find_stop(b"abc", 0, &[String::new()]), None);
    }
}
