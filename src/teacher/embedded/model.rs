//! The transformer itself: a project-owned rewrite of candle-transformers'
//! `quantized_llama` for serving many sequences at once. candle's version keeps one KV
//! cache for the whole batch, needs every row to have the same length and breaks for
//! batch > 1 (a non-contiguous tensor, candle issue #2788). Here every sequence owns its
//! KV cache and position, and one forward pass takes a *packed* list of rows — any number
//! of new tokens per row (a whole prompt, a prompt chunk, or the one token being decoded)
//! — so sequences join and leave between steps (continuous batching) without padding.
//! The matrix products run over all rows' tokens together; attention runs per row against
//! that row's own cache, so a row's result does not depend on its neighbours.
//!
//! Weights can be kept as stored (quantized), requantized to Q8_0, or dequantized to
//! f16/f32 at load. Llama-family GGUF files only (SmolLM2, Llama, Mistral).

use super::config::Weights;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};
use std::path::Path;
use std::sync::Arc;

/// Shape of the network, from the GGUF metadata.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub arch: String,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub vocab: usize,
    /// Longest sequence (prompt + answer) the model takes.
    pub n_ctx: usize,
    pub rope_base: f32,
    pub rms_eps: f64,
    pub n_params: u64,
    pub stored_dtype: String,
}

/// A weight matrix: quantized, or dense f32/f16 kept in the GGUF layout (`[out, in]`).
/// (Measured in release on the 2-core box: the gemm crate multiplies a few rows by this
/// layout faster than by a pre-transposed `[in, out]` copy once the weights stream from
/// memory — 93 vs 67 tok/s at 16 rows — though the transposed copy wins when a matrix
/// stays in cache or in the dev profile.)
enum Linear {
    Quantized(QMatMul),
    Dense(Tensor),
    DenseF16(Tensor),
}

impl Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Linear::Quantized(q) => q.forward(x),
            Linear::Dense(w) => x.matmul(&w.t()?),
            Linear::DenseF16(w) => x
                .to_dtype(DType::F16)?
                .matmul(&w.t()?)?
                .to_dtype(DType::F32),
        }
    }
}

struct Layer {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    gate: Linear,
    down: Linear,
    up: Linear,
    attn_norm: Tensor,
    ffn_norm: Tensor,
}

pub struct Model {
    pub cfg: ModelConfig,
    pub device: Device,
    /// The weight mode actually used (never `Auto`).
    pub weights: Weights,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Linear,
    cos: Tensor,
    sin: Tensor,
}

/// One sequence's keys and values, per layer `[n_kv_head, capacity, head_dim]`, of which
/// the first `len` positions are filled.
pub struct SeqCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    pub len: usize,
    cap: usize,
}

/// Which logits a row wants back from a forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    None,
    /// The last position's (to sample the next token).
    Last,
    /// Every new position's (to score a given continuation).
    All,
}

/// One row of a packed forward pass: `tokens` are appended to `cache`.
pub struct Row<'a> {
    pub cache: &'a mut SeqCache,
    pub tokens: &'a [u32],
    pub want: Want,
}

/// The GGUF file's header (metadata and tensor index), read once.
pub fn read_gguf(path: &Path) -> Result<(gguf_file::Content, std::fs::File)> {
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("cannot open model file {}", path.display()))?;
    let ct = gguf_file::Content::read(&mut f).map_err(|e| {
        anyhow!(
            "model file {} is not a valid GGUF file: {e}",
            path.display()
        )
    })?;
    Ok((ct, f))
}

/// Read the network's shape from the metadata; refuses architectures not implemented.
pub fn model_config(ct: &gguf_file::Content) -> Result<ModelConfig> {
    let arch = ct
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_default();
    if !matches!(arch.as_str(), "llama" | "mistral") {
        bail!(
            "unsupported architecture {arch:?}: the embedded teacher runs llama-family GGUF \
             models (e.g. SmolLM2, Llama, Mistral)"
        );
    }
    let get = |k: &str| -> Result<&gguf_file::Value> {
        ct.metadata
            .get(&format!("{arch}.{k}"))
            .with_context(|| format!("GGUF metadata has no {arch}.{k}"))
    };
    let u = |k: &str| -> Result<usize> {
        get(k)?
            .to_u32()
            .map(|x| x as usize)
            .map_err(|e| anyhow!("{arch}.{k}: {e}"))
    };
    if get("expert_count")
        .ok()
        .and_then(|v| v.to_u32().ok())
        .unwrap_or(0)
        > 1
    {
        bail!("unsupported architecture: mixture-of-experts {arch} models are not implemented");
    }
    let n_head = u("attention.head_count")?;
    let hidden = u("embedding_length")?;
    let head_dim = hidden / n_head;
    if u("rope.dimension_count").is_ok_and(|d| d != head_dim) {
        bail!("unsupported: partial rotary embeddings ({arch}.rope.dimension_count != head size)");
    }
    let embd = ct
        .tensor_infos
        .get("token_embd.weight")
        .context("GGUF file has no token_embd.weight")?;
    let vocab = embd.shape.dims()[0];
    let n_params = ct
        .tensor_infos
        .values()
        .map(|t| t.shape.elem_count() as u64)
        .sum();
    let stored_dtype = ct
        .tensor_infos
        .get("blk.0.ffn_down.weight")
        .map(|t| format!("{:?}", t.ggml_dtype))
        .unwrap_or_else(|| "?".into());
    Ok(ModelConfig {
        n_layer: u("block_count")?,
        n_head,
        n_kv_head: u("attention.head_count_kv").unwrap_or(n_head),
        head_dim,
        hidden,
        vocab,
        n_ctx: u("context_length").unwrap_or(4096).min(32768),
        rope_base: get("rope.freq_base")
            .and_then(|v| v.to_f32().map_err(|e| anyhow!("{e}")))
            .unwrap_or(10000.0),
        rms_eps: get("attention.layer_norm_rms_epsilon")
            .and_then(|v| v.to_f32().map_err(|e| anyhow!("{e}")))
            .unwrap_or(1e-5) as f64,
        n_params,
        stored_dtype,
        arch,
    })
}

/// The per-frequency rotary factors some llama files carry (`rope_freqs.weight`).
pub fn rope_freq_factors(
    ct: &gguf_file::Content,
    file: &mut std::fs::File,
) -> Result<Option<Vec<f32>>> {
    if !ct.tensor_infos.contains_key("rope_freqs.weight") {
        return Ok(None);
    }
    let f = ct
        .tensor(file, "rope_freqs.weight", &Device::Cpu)
        .map_err(|e| anyhow!("cannot read tensor rope_freqs.weight: {e}"))?
        .dequantize(&Device::Cpu)?;
    Ok(Some(f.flatten_all()?.to_vec1::<f32>()?))
}

/// `weights = auto`: on CPU, dense f32 while it fits in 4 GiB, else as stored; on a GPU,
/// as stored. Measured (release, 2 cores, SmolLM2-135M): f32 prefills ~340 tok/s and
/// decodes ~25 tok/s alone but ~80 tok/s over 16 sequences; Q8_0 decodes ~68 tok/s alone
/// yet does not gain from batching and prefills at ~150; Q4_1 as stored manages ~20 in
/// every case without `-C target-cpu` flags. A pipeline keeps many requests in flight,
/// so f32. (Q8_0 is the better choice for one request at a time.)
pub fn resolve_weights(w: Weights, cfg: &ModelConfig, device: &Device) -> Weights {
    match w {
        Weights::Auto if device.is_cpu() && cfg.n_params * 4 <= 4 << 30 => Weights::F32,
        Weights::Auto => Weights::Native,
        w => w,
    }
}

fn to_matmul(qt: QTensor, mode: Weights, device: &Device) -> Result<Linear> {
    Ok(match mode {
        Weights::F32 => Linear::Dense(qt.dequantize(device)?),
        Weights::F16 => Linear::DenseF16(qt.dequantize_f16(device)?),
        Weights::Q8_0
            if !matches!(
                qt.dtype(),
                GgmlDType::Q8_0 | GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
            ) =>
        {
            let dense = qt.dequantize(device)?;
            Linear::Quantized(QMatMul::from_arc(Arc::new(QTensor::quantize(
                &dense,
                GgmlDType::Q8_0,
            )?))?)
        }
        _ => Linear::Quantized(QMatMul::from_arc(Arc::new(qt))?),
    })
}

impl Model {
    pub fn load(
        ct: &gguf_file::Content,
        file: &mut std::fs::File,
        weights: Weights,
        device: &Device,
    ) -> Result<Model> {
        let cfg = model_config(ct)?;
        let mode = resolve_weights(weights, &cfg, device);
        let freq_factors = rope_freq_factors(ct, file)?;
        let mut tensor = |name: &str| -> Result<QTensor> {
            ct.tensor(file, name, device)
                .map_err(|e| anyhow!("cannot read tensor {name}: {e}"))
        };
        let embed_q = tensor("token_embd.weight")?;
        let embed = embed_q.dequantize(device)?;
        let output = match ct.tensor_infos.contains_key("output.weight") {
            true => tensor("output.weight")?,
            false => embed_q, // tied embeddings (SmolLM2)
        };
        let output = to_matmul(output, mode, device)?;
        let norm = tensor("output_norm.weight")?.dequantize(device)?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let mut mm = |n: &str| -> Result<Linear> {
                to_matmul(tensor(&format!("blk.{i}.{n}.weight"))?, mode, device)
            };
            let (wq, wk, wv, wo) = (
                mm("attn_q")?,
                mm("attn_k")?,
                mm("attn_v")?,
                mm("attn_output")?,
            );
            let (gate, down, up) = (mm("ffn_gate")?, mm("ffn_down")?, mm("ffn_up")?);
            let attn_norm = tensor(&format!("blk.{i}.attn_norm.weight"))?.dequantize(device)?;
            let ffn_norm = tensor(&format!("blk.{i}.ffn_norm.weight"))?.dequantize(device)?;
            layers.push(Layer {
                wq,
                wk,
                wv,
                wo,
                gate,
                down,
                up,
                attn_norm,
                ffn_norm,
            });
        }
        let (cos, sin) = rope_tables(&cfg, freq_factors.as_deref(), device)?;
        Ok(Model {
            cfg,
            device: device.clone(),
            weights: mode,
            embed,
            layers,
            norm,
            output,
            cos,
            sin,
        })
    }

    /// An empty cache with room for `cap` positions (it grows when needed).
    pub fn new_cache(&self, cap: usize) -> Result<SeqCache> {
        let cap = cap.clamp(1, self.cfg.n_ctx);
        let shape = (self.cfg.n_kv_head, cap, self.cfg.head_dim);
        let mut k = Vec::with_capacity(self.cfg.n_layer);
        let mut v = Vec::with_capacity(self.cfg.n_layer);
        for _ in 0..self.cfg.n_layer {
            k.push(Tensor::zeros(shape, DType::F32, &self.device)?);
            v.push(Tensor::zeros(shape, DType::F32, &self.device)?);
        }
        Ok(SeqCache { k, v, len: 0, cap })
    }

    /// Run the network over the new tokens of every row, extend each row's cache, and
    /// return the logits each row asked for (`[1, vocab]` or `[tokens, vocab]`, f32).
    pub fn forward(&self, rows: &mut [Row<'_>]) -> Result<Vec<Option<Tensor>>> {
        let c = &self.cfg;
        let dev = &self.device;
        let mut ids = Vec::new();
        let mut pos = Vec::new();
        let mut spans = Vec::with_capacity(rows.len()); // (offset, n_new, start position)
        for r in rows.iter_mut() {
            let (n, start) = (r.tokens.len(), r.cache.len);
            if n == 0 {
                bail!("a row with no new tokens");
            }
            if start + n > c.n_ctx {
                bail!(
                    "sequence of {} tokens exceeds the context of {}",
                    start + n,
                    c.n_ctx
                );
            }
            r.cache.reserve(start + n, c.n_ctx)?;
            spans.push((ids.len(), n, start));
            ids.extend_from_slice(r.tokens);
            pos.extend((start..start + n).map(|p| p as u32));
        }
        let n_tok = ids.len();
        let ids = Tensor::from_vec(ids, n_tok, dev)?;
        let pos = Tensor::from_vec(pos, n_tok, dev)?;
        let cos = self.cos.index_select(&pos, 0)?.contiguous()?;
        let sin = self.sin.index_select(&pos, 0)?.contiguous()?;
        let masks = spans
            .iter()
            .map(|&(_, n, start)| causal_mask(n, start, dev))
            .collect::<Result<Vec<_>>>()?;
        let (nh, nkv, hd) = (c.n_head, c.n_kv_head, c.head_dim);
        let rep = nh / nkv;
        let scale = 1.0 / (hd as f64).sqrt();
        let eps = c.rms_eps as f32;

        let mut x = self.embed.index_select(&ids, 0)?; // [n_tok, hidden]
        for (li, l) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &l.attn_norm, eps)?;
            let q = rope(&l.wq.forward(&h)?, nh, hd, &cos, &sin)?; // [nh, n_tok, hd]
            let k = rope(&l.wk.forward(&h)?, nkv, hd, &cos, &sin)?; // [nkv, n_tok, hd]
            let v =
                l.wv.forward(&h)?
                    .reshape((n_tok, nkv, hd))?
                    .transpose(0, 1)?;
            let mut outs = Vec::with_capacity(rows.len());
            for (ri, r) in rows.iter_mut().enumerate() {
                let (off, n, start) = spans[ri];
                let total = start + n;
                let kc = &r.cache.k[li];
                let vc = &r.cache.v[li];
                kc.slice_set(&k.narrow(1, off, n)?.contiguous()?, 1, start)?;
                vc.slice_set(&v.narrow(1, off, n)?.contiguous()?, 1, start)?;
                let keys = kc.narrow(1, 0, total)?; // [nkv, total, hd]
                let vals = vc.narrow(1, 0, total)?;
                // Query heads sharing a KV head are stacked: [nkv, rep * n, hd].
                let qr = q
                    .narrow(1, off, n)?
                    .contiguous()?
                    .reshape((nkv, rep * n, hd))?;
                let att = (qr.matmul(&keys.t()?)? * scale)?;
                let att = match &masks[ri] {
                    Some(m) => att
                        .reshape((nkv, rep, n, total))?
                        .broadcast_add(m)?
                        .reshape((nkv, rep * n, total))?,
                    None => att,
                };
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                outs.push(att.matmul(&vals)?.reshape((nh, n, hd))?);
            }
            let o = Tensor::cat(&outs, 1)?
                .transpose(0, 1)?
                .reshape((n_tok, nh * hd))?;
            x = (x + l.wo.forward(&o)?)?;
            let h = candle_nn::ops::rms_norm(&x, &l.ffn_norm, eps)?;
            let g = candle_nn::ops::silu(&l.gate.forward(&h)?)?;
            let m = l.down.forward(&(g * l.up.forward(&h)?)?)?;
            x = (x + m)?;
        }
        for (r, &(_, n, start)) in rows.iter_mut().zip(&spans) {
            r.cache.len = start + n;
        }

        // Logits only where asked for.
        let mut pick = Vec::new();
        let mut ranges = Vec::with_capacity(rows.len());
        for (r, &(off, n, _)) in rows.iter().zip(&spans) {
            let first = pick.len();
            match r.want {
                Want::None => {}
                Want::Last => pick.push((off + n - 1) as u32),
                Want::All => pick.extend((off..off + n).map(|i| i as u32)),
            }
            ranges.push((first, pick.len() - first));
        }
        if pick.is_empty() {
            return Ok(vec![None; rows.len()]);
        }
        let n_pick = pick.len();
        let sel = x.index_select(&Tensor::from_vec(pick, n_pick, dev)?, 0)?;
        let h = candle_nn::ops::rms_norm(&sel, &self.norm, eps)?;
        let logits = self.output.forward(&h)?.to_dtype(DType::F32)?;
        ranges
            .into_iter()
            .map(|(first, len)| match len {
                0 => Ok(None),
                _ => Ok(Some(logits.narrow(0, first, len)?)),
            })
            .collect()
    }
}

/// Project `[n_tok, heads * hd]` to `[heads, n_tok, hd]` and rotate (interleaved pairs,
/// the llama GGUF convention) at each token's own position.
fn rope(x: &Tensor, heads: usize, hd: usize, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let n = x.dim(0)?;
    let x = x
        .reshape((n, heads, hd))?
        .transpose(0, 1)?
        .contiguous()?
        .unsqueeze(0)?;
    Ok(candle_nn::rotary_emb::rope_i(&x, cos, sin)?.squeeze(0)?)
}

/// Additive mask `[n, start + n]` for `n` new tokens after `start` cached ones; None for
/// a single new token (it sees everything).
fn causal_mask(n: usize, start: usize, dev: &Device) -> Result<Option<Tensor>> {
    if n == 1 {
        return Ok(None);
    }
    let total = start + n;
    let mut m = vec![0f32; n * total];
    for i in 0..n {
        for j in start + i + 1..total {
            m[i * total + j] = f32::NEG_INFINITY;
        }
    }
    Ok(Some(Tensor::from_vec(m, (n, total), dev)?))
}

/// cos and sin of every position's rotation angles, `[n_ctx, head_dim / 2]` each (llama's
/// rotary embedding, with the optional per-frequency factors of `rope_freqs.weight`).
pub fn rope_tables(
    c: &ModelConfig,
    factors: Option<&[f32]>,
    dev: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = c.head_dim / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| {
            let f = factors.and_then(|f| f.get(i)).copied().unwrap_or(1.0);
            1.0 / c.rope_base.powf(2.0 * i as f32 / c.head_dim as f32) / f
        })
        .collect();
    let inv = Tensor::from_vec(inv, (1, half), &Device::Cpu)?;
    let t = Tensor::arange(0u32, c.n_ctx as u32, &Device::Cpu)?
        .to_dtype(DType::F32)?
        .reshape((c.n_ctx, 1))?;
    let ang = t.broadcast_mul(&inv)?;
    Ok((ang.cos()?.to_device(dev)?, ang.sin()?.to_device(dev)?))
}

impl SeqCache {
    /// Make room for `need` positions, doubling the buffers (up to `max`) when full.
    fn reserve(&mut self, need: usize, max: usize) -> Result<()> {
        if need <= self.cap {
            return Ok(());
        }
        let cap = need.max(self.cap * 2).min(max);
        for buf in self.k.iter_mut().chain(self.v.iter_mut()) {
            let (nkv, _, hd) = buf.dims3()?;
            let bigger = Tensor::zeros((nkv, cap, hd), buf.dtype(), buf.device())?;
            if self.len > 0 {
                bigger.slice_set(&buf.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
            }
            *buf = bigger;
        }
        self.cap = cap;
        Ok(())
    }

    /// Forget everything after the first `len` positions (to score another continuation
    /// of the same prompt).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Bytes held by the buffers.
    pub fn bytes(&self) -> usize {
        self.k
            .iter()
            .chain(self.v.iter())
            .map(|t| t.elem_count() * 4)
            .sum()
    }
}

/// log-softmax over the last dimension of f32 logits.
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(logits, D::Minus1)?)
}
