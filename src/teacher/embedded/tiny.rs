//! A tiny llama-architecture GGUF with seeded random weights and a byte-level tokenizer,
//! written on the spot, so tests run the real loading, tokenizer, quantized matmul and
//! batching code in a second without downloading a model. It writes nothing sensible:
//! random weights, one token per byte (no merges), ChatML markers as control tokens.

use anyhow::{anyhow, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use std::path::Path;

/// The shape of the tiny model and how its matrices are stored.
#[derive(Debug, Clone)]
pub struct TinySpec {
    pub n_layer: usize,
    /// A multiple of 256 for the k-quant types, else of 32.
    pub hidden: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub ffn: usize,
    /// `llama.context_length` in the metadata.
    pub context: u32,
    /// Storage of the attention matrices.
    pub attn_dtype: GgmlDType,
    /// Storage of the feed-forward matrices.
    pub ffn_dtype: GgmlDType,
    /// Storage of the (tied) token embedding.
    pub embed_dtype: GgmlDType,
    pub seed: u64,
}

impl Default for TinySpec {
    /// Two layers of width 256 with grouped-query attention; attention in Q8_0, the
    /// feed-forward in Q4_K and the embedding in Q6_K (a typical mixed-quant file).
    fn default() -> Self {
        TinySpec {
            n_layer: 2,
            hidden: 256,
            n_head: 4,
            n_kv_head: 2,
            ffn: 512,
            context: 2048,
            attn_dtype: GgmlDType::Q8_0,
            ffn_dtype: GgmlDType::Q4K,
            embed_dtype: GgmlDType::Q6K,
            seed: 7,
        }
    }
}

/// The control tokens after the 256 byte tokens.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// GPT-2's byte-to-character map (byte-level BPE spells every byte as one printable char).
fn byte_chars() -> Vec<char> {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let mut extra = 0;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).expect("latin-1")
            } else {
                extra += 1;
                char::from_u32(255 + extra).expect("valid")
            }
        })
        .collect()
}

/// Write the model to `path`.
pub fn write(path: &Path, s: &TinySpec) -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(s.seed);
    let vocab = 256 + SPECIAL_TOKENS.len();
    let head_dim = s.hidden / s.n_head;
    let mut random = |rows: usize, cols: usize, scale: f32| -> Result<Tensor> {
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        Ok(Tensor::from_vec(v, (rows, cols), &dev)?)
    };
    let q = |t: &Tensor, dtype: GgmlDType| -> Result<QTensor> {
        QTensor::quantize(t, dtype).map_err(|e| anyhow!("quantize to {dtype:?}: {e}"))
    };
    let ones = Tensor::ones(s.hidden, candle_core::DType::F32, &dev)?;
    // Control tokens get zero embeddings: with tied output weights their logit stays 0,
    // below the best byte's, so greedy decoding never stops early.
    let embed = random(256, s.hidden, 0.5)?;
    let embed = Tensor::cat(
        &[
            embed,
            Tensor::zeros(
                (SPECIAL_TOKENS.len(), s.hidden),
                candle_core::DType::F32,
                &dev,
            )?,
        ],
        0,
    )?;
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), q(&embed, s.embed_dtype)?),
        ("output_norm.weight".into(), q(&ones, GgmlDType::F32)?),
    ];
    let kv = s.n_kv_head * head_dim;
    let attn = 1.0 / (s.hidden as f32).sqrt();
    for i in 0..s.n_layer {
        let mut add = |name: &str, t: QTensor| tensors.push((format!("blk.{i}.{name}.weight"), t));
        add("attn_norm", q(&ones, GgmlDType::F32)?);
        add("ffn_norm", q(&ones, GgmlDType::F32)?);
        add(
            "attn_q",
            q(&random(s.hidden, s.hidden, attn)?, s.attn_dtype)?,
        );
        add("attn_k", q(&random(kv, s.hidden, attn)?, s.attn_dtype)?);
        add("attn_v", q(&random(kv, s.hidden, attn)?, s.attn_dtype)?);
        add(
            "attn_output",
            q(&random(s.hidden, s.hidden, attn)?, s.attn_dtype)?,
        );
        add("ffn_gate", q(&random(s.ffn, s.hidden, attn)?, s.ffn_dtype)?);
        add("ffn_up", q(&random(s.ffn, s.hidden, attn)?, s.ffn_dtype)?);
        let down = 1.0 / (s.ffn as f32).sqrt();
        add("ffn_down", q(&random(s.hidden, s.ffn, down)?, s.ffn_dtype)?);
    }

    use gguf_file::Value as V;
    let chars = byte_chars();
    let mut tokens: Vec<V> = chars.iter().map(|c| V::String(c.to_string())).collect();
    tokens.extend(SPECIAL_TOKENS.iter().map(|t| V::String(t.to_string())));
    let mut types = vec![V::I32(1); 256];
    types.extend(SPECIAL_TOKENS.iter().map(|_| V::I32(3)));
    let u = |x: usize| V::U32(x as u32);
    let metadata: Vec<(&str, V)> = vec![
        ("general.architecture", V::String("llama".into())),
        ("general.name", V::String("tiny-random-llama".into())),
        ("llama.block_count", u(s.n_layer)),
        ("llama.context_length", V::U32(s.context)),
        ("llama.embedding_length", u(s.hidden)),
        ("llama.feed_forward_length", u(s.ffn)),
        ("llama.attention.head_count", u(s.n_head)),
        ("llama.attention.head_count_kv", u(s.n_kv_head)),
        ("llama.rope.dimension_count", u(head_dim)),
        ("llama.rope.freq_base", V::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
        ("tokenizer.ggml.model", V::String("gpt2".into())),
        ("tokenizer.ggml.pre", V::String("default".into())),
        ("tokenizer.ggml.tokens", V::Array(tokens)),
        ("tokenizer.ggml.token_type", V::Array(types)),
        ("tokenizer.ggml.merges", V::Array(Vec::new())),
        ("tokenizer.ggml.eos_token_id", u(vocab - 1)),
    ];
    let md: Vec<(&str, &V)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path)
            .map_err(|e| anyhow!("cannot create {}: {e}", path.display()))?,
    );
    gguf_file::write(&mut f, &md, &ts).map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    std::io::Write::flush(&mut f)?;
    Ok(())
}
