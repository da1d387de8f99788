//! AdamW with its state in the open (candle-nn's keeps its moments private, so a resumed
//! training could not restore them), the warmup + cosine learning-rate schedule, gradient
//! clipping, and the order of the rows: every optimizer step's micro-batches follow from
//! the seed and the step number alone, so a resumed training sees the same data.

use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::HashMap;
use std::path::Path;

/// AdamW as PyTorch and candle-nn define it (decoupled weight decay, bias correction).
pub struct AdamW {
    pub vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Steps taken.
    pub t: usize,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, weight_decay: f64) -> Result<AdamW> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let m = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<Result<_, _>>()?;
        let v = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<Result<_, _>>()?;
        Ok(AdamW {
            vars,
            m,
            v,
            t: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    /// One update with learning rate `lr` and one gradient per variable (None: unchanged).
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 / (1.0 - b1.powi(self.t as i32));
        let c2 = 1.0 / (1.0 - b2.powi(self.t as i32));
        for (i, g) in grads.iter().enumerate() {
            let Some(g) = g else { continue };
            let m = ((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let var = &self.vars[i].1;
            let upd = ((&m * c1)? / ((&v * c2)?.sqrt()? + self.eps)?)?;
            let theta = (var.as_tensor() * (1.0 - lr * self.weight_decay))?;
            var.set(&(theta - (upd * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// The moments, named after their variables, to `path` (safetensors).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut t = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            t.insert(format!("exp_avg.{name}"), self.m[i].clone());
            t.insert(format!("exp_avg_sq.{name}"), self.v[i].clone());
        }
        candle_core::safetensors::save(&t, path)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Restore the moments written by `save`, and the step count.
    pub fn load(&mut self, path: &Path, t: usize) -> Result<()> {
        let mut st = candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("reading {}", path.display()))?;
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let mut take = |k: String| -> Result<Tensor> {
                let x = st
                    .remove(&k)
                    .with_context(|| format!("{} has no {k}", path.display()))?;
                anyhow::ensure!(
                    x.shape() == var.shape(),
                    "{}: {k} has shape {:?}, expected {:?}",
                    path.display(),
                    x.shape(),
                    var.shape()
                );
                Ok(x)
            };
            self.m[i] = take(format!("exp_avg.{name}"))?;
            self.v[i] = take(format!("exp_avg_sq.{name}"))?;
        }
        self.t = t;
        Ok(())
    }
}

/// Scale the gradients so their global L2 norm is at most `max` (0: no clipping); returns
/// the norm before clipping.
pub fn clip(grads: &mut [Option<Tensor>], max: f64) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads.iter().flatten() {
        sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    let norm = sq.sqrt();
    if max > 0.0 && norm > max {
        let f = max / (norm + 1e-6);
        for g in grads.iter_mut().flatten() {
            *g = (&*g * f)?;
        }
    }
    Ok(norm)
}

/// The learning rate of 0-based step `step` of `total`: linear warmup from 0 over
/// `warmup` steps, then cosine decay to 0 (Hugging Face's `cosine` schedule).
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

/// Which rows every optimizer step trains on.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rows: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub seed: u64,
    pub steps_per_epoch: usize,
    pub total_steps: usize,
}

impl Plan {
    /// `max_steps` when given, else `epochs` full passes.
    pub fn new(
        rows: usize,
        batch_size: usize,
        grad_accum: usize,
        epochs: usize,
        max_steps: Option<usize>,
        seed: u64,
    ) -> Plan {
        let micro = rows.div_ceil(batch_size);
        let steps_per_epoch = micro.div_ceil(grad_accum).max(1);
        Plan {
            rows,
            batch_size,
            grad_accum,
            seed,
            steps_per_epoch,
            total_steps: max_steps.unwrap_or(steps_per_epoch * epochs),
        }
    }

    /// The row order of an epoch (seeded by the seed and the epoch).
    fn order(&self, epoch: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.rows).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            self.seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        v.shuffle(&mut rng);
        v
    }

    /// The micro-batches (row indices) of 0-based step `step`, and its epoch.
    pub fn step(&self, step: usize) -> (usize, Vec<Vec<usize>>) {
        let epoch = step / self.steps_per_epoch;
        let j = step % self.steps_per_epoch;
        let order = self.order(epoch);
        let per_step = self.batch_size * self.grad_accum;
        let start = (j * per_step).min(order.len());
        let end = ((j + 1) * per_step).min(order.len());
        let micro = order[start..end]
            .chunks(self.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        (epoch, micro)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::Optimizer;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(lr_at(0, 10, 2, 1.0), 0.0);
        assert_eq!(lr_at(1, 10, 2, 1.0), 0.5);
        assert_eq!(lr_at(2, 10, 2, 1.0), 1.0);
        assert!((lr_at(6, 10, 2, 1.0) - 0.5).abs() < 1e-12);
        assert!(lr_at(9, 10, 2, 1.0) > 0.0);
        assert_eq!(lr_at(0, 10, 0, 1.0), 1.0);
    }

    #[test]
    fn plan_covers_every_row_once_per_epoch() {
        let p = Plan::new(10, 3, 2, 2, None, 5);
        assert_eq!((p.steps_per_epoch, p.total_steps), (2, 4));
        let mut seen: Vec<usize> = (0..2).flat_map(|s| p.step(s).1.concat()).collect();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_eq!(p.step(1).1.len(), 2); // rows 6..10: batches of 3 and 1
        assert_eq!(p.step(2).0, 1);
        assert_ne!(p.step(0).1, p.step(2).1, "each epoch has its own order");
        assert_eq!(p.step(3).1, Plan::new(10, 3, 2, 2, None, 5).step(3).1);
    }

    #[test]
    fn adamw_matches_candle_nn() {
        let dev = Device::Cpu;
        let x0 = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.1]], &dev).unwrap();
        let (a, b) = (
            Var::from_tensor(&x0).unwrap(),
            Var::from_tensor(&x0).unwrap(),
        );
        let mut ours = AdamW::new(vec![("a".into(), a.clone())], 0.01).unwrap();
        let params = candle_nn::ParamsAdamW {
            lr: 0.1,
            weight_decay: 0.01,
            ..Default::default()
        };
        let mut theirs = candle_nn::AdamW::new(vec![b.clone()], params).unwrap();
        for _ in 0..3 {
            let ga = a
                .as_tensor()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            ours.step(&[ga.get(&a).cloned()], 0.1).unwrap();
            let loss = b.as_tensor().sqr().unwrap().sum_all().unwrap();
            theirs.backward_step(&loss).unwrap();
        }
        let d = (a.as_tensor() - b.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < 1e-6, "{d}");
    }
}
