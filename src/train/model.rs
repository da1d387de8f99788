//! A trainable llama forward pass: the base GGUF's weights dequantised to f32 and frozen
//! (plain tensors, so backprop never computes their gradients), LoRA adapters (`Var`s)
//! on the chosen projections. The embedded teacher's model (`teacher::embedded::model`)
//! is built for serving (KV caches written in place, fused kernels without gradients:
//! candle's `rms_norm`, `softmax_last_dim` and `rope_i` have no backward), so this pass
//! is written with differentiable operations only, on its loader's shape, rope tables
//! and GGUF reading. Rows of a batch are right-padded; the causal mask keeps real tokens
//! from seeing the padding, and only assistant positions are scored.

use super::lora::{Adapters, Dims, Target};
use crate::teacher::embedded::model::{self as emodel, ModelConfig};
use anyhow::{anyhow, bail, Result};
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, D};
use rand::{Rng, SeedableRng};
use std::path::Path;

/// The architectures `train` implements (GGUF `general.architecture`).
pub const SUPPORTED: &[&str] = &["llama"];

struct Layer {
    /// The seven projections `[out, in]`, indexed by `Target as usize`.
    w: Vec<Tensor>,
    attn_norm: Tensor,
    ffn_norm: Tensor,
}

/// The frozen base model.
pub struct Base {
    pub cfg: ModelConfig,
    pub dims: Dims,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Tensor,
    cos: Tensor,
    sin: Tensor,
}

/// One padded batch: `ids` `[rows * len]`; `pos` are the flat positions whose next token
/// (`next`) carries loss.
#[derive(Debug, Clone)]
pub struct Batch {
    pub ids: Vec<u32>,
    pub rows: usize,
    pub len: usize,
    pub pos: Vec<u32>,
    pub next: Vec<u32>,
    /// Real (unpadded) tokens.
    pub tokens: usize,
}

/// The architecture a GGUF file declares, refused unless `train` implements it.
pub fn check_architecture(ct: &candle_core::quantized::gguf_file::Content) -> Result<String> {
    let arch = ct
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_default();
    if !SUPPORTED.contains(&arch.as_str()) {
        bail!(
            "unsupported architecture {arch:?}: `mediflow train` supports {} (SmolLM2, Llama)",
            SUPPORTED.join(", ")
        );
    }
    Ok(arch)
}

impl Base {
    /// Dequantise every weight of a llama GGUF into f32 on the CPU.
    pub fn load(
        ct: &candle_core::quantized::gguf_file::Content,
        file: &mut std::fs::File,
        path: &Path,
        max_len: usize,
    ) -> Result<Base> {
        check_architecture(ct)?;
        let cfg = emodel::model_config(ct)?;
        let dev = Device::Cpu;
        let factors = emodel::rope_freq_factors(ct, file)?;
        let mut get = |name: &str| -> Result<Tensor> {
            let q = ct
                .tensor(file, name, &dev)
                .map_err(|e| anyhow!("{}: cannot read tensor {name}: {e}", path.display()))?;
            Ok(q.dequantize(&dev)?)
        };
        let embed = get("token_embd.weight")?;
        let output = match ct.tensor_infos.contains_key("output.weight") {
            true => get("output.weight")?,
            false => embed.clone(), // tied embeddings (SmolLM2)
        };
        let norm = get("output_norm.weight")?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let w = Target::ALL
                .iter()
                .map(|t| get(&format!("blk.{i}.{}.weight", t.gguf())))
                .collect::<Result<Vec<_>>>()?;
            layers.push(Layer {
                w,
                attn_norm: get(&format!("blk.{i}.attn_norm.weight"))?,
                ffn_norm: get(&format!("blk.{i}.ffn_norm.weight"))?,
            });
        }
        let ffn = layers
            .first()
            .map_or(0, |l| l.w[Target::Gate as usize].dims()[0]);
        let dims = Dims {
            n_layer: cfg.n_layer,
            hidden: cfg.hidden,
            ffn,
            n_head: cfg.n_head,
            n_kv_head: cfg.n_kv_head,
            head_dim: cfg.head_dim,
        };
        let (cos, sin) = emodel::rope_tables(&cfg, factors.as_deref(), &dev)?;
        let n = max_len.min(cfg.n_ctx);
        Ok(Base {
            cos: cos.narrow(0, 0, n)?.contiguous()?,
            sin: sin.narrow(0, 0, n)?.contiguous()?,
            cfg,
            dims,
            embed,
            layers,
            norm,
            output,
        })
    }

    /// The mean negative log-likelihood of the batch's scored tokens, times
    /// `count / denom` (so micro-batches of one optimizer step sum to the step's mean),
    /// with LoRA dropout drawn from `dropout_seed` (None: no dropout, as in evaluation).
    pub fn loss(
        &self,
        ad: &Adapters,
        b: &Batch,
        denom: usize,
        dropout_seed: Option<u64>,
    ) -> Result<Tensor> {
        let dev = Device::Cpu;
        let c = &self.cfg;
        let (rows, len) = (b.rows, b.len);
        if len > self.cos.dim(0)? {
            bail!(
                "a batch of {len} tokens is longer than the prepared {}",
                self.cos.dim(0)?
            );
        }
        let n = rows * len;
        let (nh, nkv, hd) = (c.n_head, c.n_kv_head, c.head_dim);
        let rep = nh / nkv;
        let scale = ad.cfg.scale();
        let eps = c.rms_eps as f32;
        let p = ad.cfg.dropout;
        let mut rng = dropout_seed
            .filter(|_| p > 0.0)
            .map(rand_chacha::ChaCha8Rng::seed_from_u64);
        let mut mask = |cols: usize| -> Result<Option<Tensor>> {
            let Some(r) = rng.as_mut() else {
                return Ok(None);
            };
            // Uniform u32s (filled in one call), kept where >= p * 2^32, as 1 / (1 - p).
            let mut u = vec![0u32; n * cols];
            r.fill(&mut u[..]);
            let keep = Tensor::from_vec(u, (n, cols), &dev)?
                .to_dtype(DType::F32)?
                .ge(p * 4_294_967_296.0)?
                .to_dtype(DType::F32)?;
            Ok(Some((keep / (1.0 - p))?))
        };
        let causal = causal_mask(len, &dev)?;
        let cos = self.cos.narrow(0, 0, len)?;
        let sin = self.sin.narrow(0, 0, len)?;
        let ids = Tensor::from_slice(&b.ids, n, &dev)?;
        let mut x = self.embed.index_select(&ids, 0)?; // [n, hidden]
        for (li, l) in self.layers.iter().enumerate() {
            let mut proj = |t: Target, h: &Tensor| -> Result<Tensor> {
                let y = frozen(h, &l.w[t as usize])?;
                match ad.layers[li].get(&t) {
                    Some(lo) => {
                        let m = mask(h.dim(1)?)?;
                        Ok((y + lo.delta(h, m.as_ref(), scale)?)?)
                    }
                    None => Ok(y),
                }
            };
            let h = rms_norm(&x, &l.attn_norm, eps)?;
            let heads = |y: Tensor, k: usize| -> Result<Tensor> {
                Ok(y.reshape((rows, len, k, hd))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = rope(&heads(proj(Target::Q, &h)?, nh)?, &cos, &sin)?; // [rows, nh, len, hd]
            let k = rope(&heads(proj(Target::K, &h)?, nkv)?, &cos, &sin)?;
            let v = heads(proj(Target::V, &h)?, nkv)?;
            // Query heads sharing a KV head are stacked: [rows, nkv, rep * len, hd].
            let q = q.reshape((rows, nkv, rep * len, hd))?;
            let att = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
            let att = att
                .reshape((rows, nkv, rep, len, len))?
                .broadcast_add(&causal)?;
            let att = softmax(&att)?.reshape((rows, nkv, rep * len, len))?;
            let o = att
                .matmul(&v)?
                .reshape((rows, nh, len, hd))?
                .transpose(1, 2)?
                .reshape((n, nh * hd))?;
            x = (x + proj(Target::O, &o)?)?;
            let h = rms_norm(&x, &l.ffn_norm, eps)?;
            let g = candle_nn::ops::silu(&proj(Target::Gate, &h)?)?;
            let u = proj(Target::Up, &h)?;
            x = (x + proj(Target::Down, &(g * u)?)?)?;
        }
        if b.pos.is_empty() {
            bail!("a batch with no assistant tokens");
        }
        let pos = Tensor::from_slice(&b.pos, b.pos.len(), &dev)?;
        let sel = rms_norm(&x.index_select(&pos, 0)?, &self.norm, eps)?;
        let logits = frozen(&sel, &self.output)?; // [scored, vocab]
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let next = Tensor::from_slice(&b.next, (b.next.len(), 1), &dev)?;
        let nll = logp.gather(&next, 1)?.sum_all()?.neg()?;
        Ok((nll / denom as f64)?)
    }
}

/// `x W^T` for a frozen weight `W` `[out, in]`. candle's matmul backward also computes the
/// gradient of its right-hand side, which for a frozen weight is a product as costly as
/// the forward one plus a weight-sized tensor kept until the step ends (measured: 6 GB
/// peak for SmolLM2-135M); this op's backward computes only the input's gradient.
struct FrozenLinear(Tensor);

impl CustomOp1 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, b) = l
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("frozen-linear: input not contiguous".into()))?;
        let x = Tensor::from_slice(&s.as_slice::<f32>()?[a..b], l.shape(), &Device::Cpu)?;
        let y = x.matmul(&self.0.t()?)?;
        Ok((
            CpuStorage::F32(y.flatten_all()?.to_vec1()?),
            y.shape().clone(),
        ))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.0)?))
    }
}

fn frozen(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(FrozenLinear(w.clone()))?)
}

/// RMS norm from differentiable operations.
fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(x.broadcast_div(&(ms + eps as f64)?.sqrt()?)?
        .broadcast_mul(w)?)
}

/// Softmax over the last dimension (the max is a constant shift, so it is detached).
fn softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// Interleaved rotary embedding (GGUF's llama convention, as `rope_i`) on `[.., len, hd]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (len, hd) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    let lead: usize = dims[..dims.len() - 2].iter().product();
    let x = x.reshape((lead, len, hd / 2, 2))?;
    let x0 = x.narrow(3, 0, 1)?;
    let x1 = x.narrow(3, 1, 1)?;
    let cos = cos.reshape((1, len, hd / 2, 1))?;
    let sin = sin.reshape((1, len, hd / 2, 1))?;
    let r0 = (x0.broadcast_mul(&cos)? - x1.broadcast_mul(&sin)?)?;
    let r1 = (x0.broadcast_mul(&sin)? + x1.broadcast_mul(&cos)?)?;
    Ok(Tensor::cat(&[r0, r1], 3)?.reshape(dims)?)
}

/// Additive causal mask `[len, len]` (a large negative number above the diagonal).
fn causal_mask(len: usize, dev: &Device) -> Result<Tensor> {
    let mut m = vec![0f32; len * len];
    for i in 0..len {
        for j in i + 1..len {
            m[i * len + j] = -1e30;
        }
    }
    Ok(Tensor::from_vec(m, (len, len), dev)?.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_matches_candle_rope_i() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 8), &dev).unwrap();
        let ang = Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap();
        let (cos, sin) = (ang.cos().unwrap(), ang.sin().unwrap());
        let want = candle_nn::rotary_emb::rope_i(&x, &cos, &sin).unwrap();
        let got = rope(&x, &cos, &sin).unwrap();
        let d = (want - got).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn norm_and_softmax_match_candle_kernels() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (4, 16), &dev).unwrap();
        let w = Tensor::randn(0f32, 1.0, 16, &dev).unwrap();
        let a = rms_norm(&x, &w, 1e-5).unwrap();
        let b = candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap();
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
        let a = softmax(&x).unwrap();
        let b = candle_nn::ops::softmax_last_dim(&x).unwrap();
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-6);
    }

    /// With fresh adapters (B = 0) the training pass scores a sequence exactly as the
    /// embedded teacher's inference model does, alone or padded in a batch.
    #[test]
    fn matches_the_inference_model_alone_and_padded() {
        use crate::teacher::embedded::{config::Weights, tiny};
        use crate::train::lora::{LoraConfig, Target};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tiny.gguf");
        let spec = tiny::TinySpec {
            hidden: 64,
            ffn: 128,
            ffn_dtype: candle_core::quantized::GgmlDType::Q8_0,
            embed_dtype: candle_core::quantized::GgmlDType::Q8_0,
            ..Default::default()
        };
        tiny::write(&p, &spec).unwrap();
        let (ct, mut f) = emodel::read_gguf(&p).unwrap();
        let base = Base::load(&ct, &mut f, &p, 64).unwrap();
        let m = emodel::Model::load(&ct, &mut f, Weights::F32, &Device::Cpu).unwrap();
        let ids: Vec<u32> = b"Patient stable, BP 120/80."
            .iter()
            .map(|&b| b as u32)
            .collect();
        let mut cache = m.new_cache(64).unwrap();
        let logits = m
            .forward(&mut [emodel::Row {
                cache: &mut cache,
                tokens: &ids,
                want: emodel::Want::All,
            }])
            .unwrap()
            .remove(0)
            .unwrap();
        let logp: Vec<Vec<f32>> = emodel::log_softmax(&logits).unwrap().to_vec2().unwrap();
        let n = ids.len() - 1;
        let want: f64 = (0..n)
            .map(|p| -logp[p][ids[p + 1] as usize] as f64)
            .sum::<f64>()
            / n as f64;
        let cfg = LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            targets: Target::ALL.to_vec(),
        };
        let ad = Adapters::new(&cfg, base.dims, 1).unwrap();
        let ex = crate::train::data::Example {
            ids: ids.clone(),
            target: vec![true; ids.len()],
        };
        let short = crate::train::data::Example {
            ids: ids[..5].to_vec(),
            target: vec![true; 5],
        };
        let alone = crate::train::data::batch(&[&ex]);
        let got = base
            .loss(&ad, &alone, n, None)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        // In a batch with a shorter row (so padding), the long row's share is unchanged.
        let both = crate::train::data::batch(&[&short, &ex]);
        let total = base
            .loss(&ad, &both, n, None)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let s = crate::train::data::batch(&[&short]);
        let short_part = base
            .loss(&ad, &s, n, None)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!((total - short_part - want).abs() < 1e-4);
    }

    /// Backprop's gradient of an adapter entry matches a finite difference of the loss.
    #[test]
    fn adapter_gradients_match_finite_differences() {
        use crate::teacher::embedded::tiny;
        use crate::train::lora::{LoraConfig, Target};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tiny.gguf");
        let spec = tiny::TinySpec {
            hidden: 64,
            ffn: 128,
            attn_dtype: candle_core::quantized::GgmlDType::F32,
            ffn_dtype: candle_core::quantized::GgmlDType::F32,
            embed_dtype: candle_core::quantized::GgmlDType::F32,
            ..Default::default()
        };
        tiny::write(&p, &spec).unwrap();
        let (ct, mut f) = emodel::read_gguf(&p).unwrap();
        let base = Base::load(&ct, &mut f, &p, 32).unwrap();
        let cfg = LoraConfig {
            rank: 2,
            alpha: 2.0,
            dropout: 0.0,
            targets: vec![Target::Q, Target::Down],
        };
        let ad = Adapters::new(&cfg, base.dims, 5).unwrap();
        for (_, v) in ad.named_vars() {
            let t = Tensor::randn(0f32, 0.1, v.shape(), &Device::Cpu).unwrap();
            v.set(&t).unwrap();
        }
        let ex = crate::train::data::Example {
            ids: b"abcdefghij".iter().map(|&b| b as u32).collect(),
            target: (0..10).map(|i| i >= 4).collect(),
        };
        let b = crate::train::data::batch(&[&ex]);
        let loss = |ad: &Adapters| -> f64 {
            base.loss(ad, &b, b.pos.len(), None)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        let g = base
            .loss(&ad, &b, b.pos.len(), None)
            .unwrap()
            .backward()
            .unwrap();
        for (name, v) in ad.named_vars() {
            let grad: Vec<f32> = g.get(&v).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let x0: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let i = grad
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .unwrap()
                .0;
            let h = 1e-2f32;
            let at = |d: f32| {
                let mut x = x0.clone();
                x[i] += d;
                v.set(&Tensor::from_vec(x, v.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss(&ad)
            };
            let fd = (at(h) - at(-h)) / (2.0 * h as f64);
            v.set(&Tensor::from_vec(x0, v.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let rel = (fd - grad[i] as f64).abs() / grad[i].abs().max(1e-3) as f64;
            assert!(
                rel < 0.05,
                "{name}[{i}]: backprop {} vs finite difference {fd}",
                grad[i]
            );
        }
    }
}
