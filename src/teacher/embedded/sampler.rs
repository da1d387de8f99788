//! Picking the next token from a row of logits: repetition penalty, temperature, top-k,
//! top-p, or greedy when the temperature is 0. Each request has its own seeded RNG, so the
//! same seed gives the same answer whatever else shares the batch. Written to stay cheap
//! even unoptimized (the dev profile): no full sort of the vocabulary unless the
//! distribution is so flat that the nucleus needs it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0 = off.
    pub top_k: usize,
    /// 1.0 = off.
    pub repetition_penalty: f32,
    /// The penalty looks at the last this many tokens of the prompt and answer; 0 = all
    /// of them.
    pub repetition_last_n: usize,
    /// None = a random seed.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            repetition_penalty: 1.0,
            repetition_last_n: 0,
            seed: None,
        }
    }
}

pub struct Sampler {
    p: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(p: SamplingParams) -> Self {
        let rng = match p.seed {
            Some(s) => ChaCha8Rng::seed_from_u64(s),
            None => ChaCha8Rng::seed_from_u64(rand::random()),
        };
        Sampler { p, rng }
    }

    /// Choose a token. `logits` is modified; disallowed tokens must already be -inf.
    /// `seen` are the tokens the repetition penalty applies to (prompt and answer so far).
    pub fn sample(&mut self, logits: &mut [f32], seen: &[u32]) -> u32 {
        let rp = self.p.repetition_penalty;
        if rp != 1.0 && rp > 0.0 {
            let n = self.p.repetition_last_n;
            let recent = if n > 0 && seen.len() > n {
                &seen[seen.len() - n..]
            } else {
                seen
            };
            penalize(logits, recent, rp);
        }
        if self.p.temperature <= 0.0 {
            return fast_argmax(logits);
        }
        let probs = softmax(logits, self.p.temperature);
        let (top_k, top_p) = (self.p.top_k, self.p.top_p);
        let u: f64 = self.rng.random::<f64>();
        if top_k == 0 && top_p >= 1.0 {
            return walk(probs.iter().enumerate().map(|(i, &p)| (i as u32, p)), u);
        }
        let cands = nucleus(&probs, top_k, top_p);
        let mass: f64 = cands.iter().map(|&(_, p)| p as f64).sum();
        walk(cands.into_iter(), u * mass)
    }
}

/// The vector passes run in candle (always optimized), not in this crate's code, which
/// the dev profile leaves unoptimized.
fn fast_argmax(xs: &[f32]) -> u32 {
    let t = candle_core::Tensor::from_slice(xs, xs.len(), &candle_core::Device::Cpu);
    match t
        .and_then(|t| t.argmax(0))
        .and_then(|t| t.to_scalar::<u32>())
    {
        Ok(i) => i,
        Err(_) => argmax(xs),
    }
}

/// Normalized probabilities at `temperature` (-inf logits get 0).
fn softmax(xs: &[f32], temperature: f32) -> Vec<f32> {
    let dev = candle_core::Device::Cpu;
    let r = candle_core::Tensor::from_slice(xs, xs.len(), &dev)
        .and_then(|t| t.affine(1.0 / temperature as f64, 0.0))
        .and_then(|t| candle_nn::ops::softmax_last_dim(&t))
        .and_then(|t| t.to_vec1::<f32>());
    match r {
        Ok(p) => p,
        Err(_) => {
            let max = xs[argmax(xs) as usize];
            let e: Vec<f32> = xs
                .iter()
                .map(|&l| ((l - max) / temperature).exp())
                .collect();
            let sum: f32 = e.iter().sum();
            e.into_iter().map(|x| x / sum).collect()
        }
    }
}

fn penalize(logits: &mut [f32], seen: &[u32], rp: f32) {
    // A token seen several times is penalized once (as in transformers/llama.cpp).
    let mut done = std::collections::HashSet::with_capacity(seen.len());
    for &t in seen {
        if let Some(l) = logits.get_mut(t as usize) {
            if done.insert(t) {
                *l = if *l > 0.0 { *l / rp } else { *l * rp };
            }
        }
    }
}

pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    let mut bv = f32::NEG_INFINITY;
    for (i, &x) in xs.iter().enumerate() {
        if x > bv {
            bv = x;
            best = i;
        }
    }
    best as u32
}

/// The token at cumulative mass `target` (falls back to the last positive one).
fn walk(items: impl Iterator<Item = (u32, f32)>, target: f64) -> u32 {
    let mut acc = 0f64;
    let mut last = 0;
    for (i, p) in items {
        if p <= 0.0 {
            continue;
        }
        acc += p as f64;
        last = i;
        if acc > target {
            return i;
        }
    }
    last
}

/// The top-k / top-p candidates, most likely first. Only tokens within a factor of the
/// best are collected and sorted (a peaked distribution has few), falling back to lower
/// floors when they do not reach the nucleus mass or k.
fn nucleus(probs: &[f32], top_k: usize, top_p: f32) -> Vec<(u32, f32)> {
    let max = probs[fast_argmax(probs) as usize];
    let need = if top_p < 1.0 {
        top_p.max(0.0) as f64
    } else {
        0.0
    };
    for factor in [1e-3f32, 1e-6, 0.0] {
        let floor = max * factor;
        let mut c: Vec<(u32, f32)> = Vec::new();
        let mut mass = 0f64;
        for (i, &p) in probs.iter().enumerate() {
            if p > 0.0 && p >= floor {
                c.push((i as u32, p));
                mass += p as f64;
            }
        }
        if factor > 0.0 && (mass < need || c.len() < top_k) {
            continue;
        }
        c.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if top_k > 0 {
            c.truncate(top_k);
        }
        if top_p < 1.0 {
            // nucleus of what top-k left, renormalized (as transformers and llama.cpp do)
            let need = top_p.max(0.0) as f64 * c.iter().map(|&(_, p)| p as f64).sum::<f64>();
            let mut acc = 0f64;
            let mut keep = c.len();
            for (n, &(_, p)) in c.iter().enumerate() {
                acc += p as f64;
                if acc >= need {
                    keep = n + 1;
                    break;
                }
            }
            c.truncate(keep.max(1));
        }
        return c;
    }
    unreachable!("the last floor keeps every token")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32, p: f32, k: usize, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature: t,
            top_p: p,
            top_k: k,
            repetition_penalty: 1.0,
            repetition_last_n: 0,
            seed: Some(seed),
        }
    }

    #[test]
    fn greedy_top_k_top_p_and_seeds() {
        let logits = vec![1.0f32, 5.0, 3.0, f32::NEG_INFINITY, 4.9];
        assert_eq!(
            Sampler::new(params(0.0, 1.0, 0, 1)).sample(&mut logits.clone(), &[]),
            1
        );
        // top_k = 1 is greedy whatever the temperature
        for s in 0..20 {
            let mut l = logits.clone();
            assert_eq!(Sampler::new(params(2.0, 1.0, 1, s)).sample(&mut l, &[]), 1);
        }
        // top_p small keeps only the best; masked tokens are never drawn
        for s in 0..50 {
            let mut l = logits.clone();
            assert_eq!(Sampler::new(params(1.0, 0.1, 0, s)).sample(&mut l, &[]), 1);
            let mut l = logits.clone();
            assert_ne!(Sampler::new(params(5.0, 1.0, 0, s)).sample(&mut l, &[]), 3);
        }
        let draw = |seed| {
            let mut s = Sampler::new(params(1.0, 0.95, 0, seed));
            (0..30)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        // repetition penalty demotes a seen token
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 2.0,
            ..params(0.0, 1.0, 0, 0)
        });
        assert_eq!(s.sample(&mut logits.clone(), &[1]), 4);
        // ... only within the last `repetition_last_n` tokens
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 2.0,
            repetition_last_n: 2,
            ..params(0.0, 1.0, 0, 0)
        });
        assert_eq!(s.sample(&mut logits.clone(), &[1, 0, 2]), 1);
        assert_eq!(s.sample(&mut logits.clone(), &[0, 1, 2]), 4);
    }
}
