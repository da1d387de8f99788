//! LoRA adapters on a llama model's projections, and their files in PEFT's layout:
//! `adapter_model.safetensors` (`base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`
//! `[r, in]` and `...lora_B.weight` `[out, r]`) with `adapter_config.json`, so PEFT loads
//! the adapter onto the Hugging Face model the GGUF was converted from.
//!
//! GGUF llama files store `attn_q` / `attn_k` with their rows permuted for interleaved
//! rotary embeddings (llama.cpp's `convert_hf_to_gguf.py` `permute`); the adapters are
//! trained in the GGUF orientation and their q / k `lora_B` rows are put back in the
//! Hugging Face order when written (and permuted again when read).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

/// A projection that can carry an adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    /// The name on the command line (`q`), also accepted with `_proj`.
    pub fn short(self) -> &'static str {
        ["q", "k", "v", "o", "gate", "up", "down"][self as usize]
    }

    /// PEFT's `target_modules` name.
    pub fn module(self) -> &'static str {
        [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ][self as usize]
    }

    /// The module's path inside a Hugging Face llama decoder layer.
    pub fn hf_path(self) -> String {
        let block = if (self as usize) < 4 {
            "self_attn"
        } else {
            "mlp"
        };
        format!("{block}.{}", self.module())
    }

    /// The tensor's name inside a GGUF block (`blk.N.<name>.weight`).
    pub fn gguf(self) -> &'static str {
        [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
        ][self as usize]
    }

    pub fn parse(s: &str) -> Result<Target> {
        let s = s.trim();
        let s = s.strip_suffix("_proj").unwrap_or(s);
        Target::ALL
            .into_iter()
            .find(|t| t.short() == s)
            .with_context(|| {
                format!("unknown LoRA target {s:?} (choose among q, k, v, o, gate, up, down)")
            })
    }

    /// A comma-separated list (`q,k,v,o`), without repeats, in the canonical order.
    pub fn parse_list(s: &str) -> Result<Vec<Target>> {
        let mut v = s
            .split(',')
            .filter(|x| !x.trim().is_empty())
            .map(Target::parse)
            .collect::<Result<Vec<_>>>()?;
        v.sort();
        v.dedup();
        if v.is_empty() {
            bail!("--lora-targets names no projection");
        }
        Ok(v)
    }
}

/// The adapters' hyperparameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<Target>,
}

impl LoraConfig {
    /// `alpha / r`, the factor on `B A x`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

impl serde::Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.short())
    }
}

impl<'de> serde::Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Target::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One adapter: `A` `[r, in]`, `B` `[out, r]` (GGUF row order).
pub struct Lora {
    pub a: Var,
    pub b: Var,
}

impl Lora {
    /// `scale * B (A x)` for `x` `[n, in]`, with `x` multiplied by a dropout mask first.
    pub fn delta(&self, x: &Tensor, mask: Option<&Tensor>, scale: f64) -> Result<Tensor> {
        let x = match mask {
            Some(m) => (x * m)?,
            None => x.clone(),
        };
        Ok((x.matmul(&self.a.t()?)?.matmul(&self.b.t()?)? * scale)?)
    }
}

/// The shape facts the adapters need from the base model.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub n_layer: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
}

impl Dims {
    /// `(out, in)` of a projection.
    pub fn shape(&self, t: Target) -> (usize, usize) {
        let (h, kv) = (self.hidden, self.n_kv_head * self.head_dim);
        let q = self.n_head * self.head_dim;
        match t {
            Target::Q => (q, h),
            Target::K | Target::V => (kv, h),
            Target::O => (h, q),
            Target::Gate | Target::Up => (self.ffn, h),
            Target::Down => (h, self.ffn),
        }
    }

    /// Heads whose rows GGUF permutes (q and k), else None.
    fn permuted_heads(&self, t: Target) -> Option<usize> {
        match t {
            Target::Q => Some(self.n_head),
            Target::K => Some(self.n_kv_head),
            _ => None,
        }
    }
}

/// Every layer's adapters, in layer order then `Target` order.
pub struct Adapters {
    pub cfg: LoraConfig,
    pub dims: Dims,
    pub layers: Vec<HashMap<Target, Lora>>,
}

/// The PEFT name of layer `i`'s adapter on `t`, matrix `ab` ("A" or "B").
pub fn peft_name(i: usize, t: Target, ab: &str) -> String {
    format!(
        "base_model.model.model.layers.{i}.{}.lora_{ab}.weight",
        t.hf_path()
    )
}

/// Rows of a q / k matrix from the Hugging Face order to GGUF's (`to_gguf`) or back.
/// GGUF's row `h * hd + 2 i + j` is Hugging Face's row `h * hd + j * hd / 2 + i`.
pub fn permute_rows(m: &Tensor, heads: usize, to_gguf: bool) -> Result<Tensor> {
    let (out, cols) = m.dims2()?;
    let hd = out / heads;
    let m = if to_gguf {
        m.reshape((heads, 2, hd / 2, cols))?
    } else {
        m.reshape((heads, hd / 2, 2, cols))?
    };
    Ok(m.transpose(1, 2)?.contiguous()?.reshape((out, cols))?)
}

impl Adapters {
    /// Fresh adapters as PEFT initialises them: `A` uniform in +-1/sqrt(in) (Kaiming
    /// uniform with a = sqrt(5)), `B` zero, so training starts from the base model.
    pub fn new(cfg: &LoraConfig, dims: Dims, seed: u64) -> Result<Adapters> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let dev = Device::Cpu;
        let mut layers = Vec::with_capacity(dims.n_layer);
        for _ in 0..dims.n_layer {
            let mut m = HashMap::new();
            for &t in &cfg.targets {
                let (out, inp) = dims.shape(t);
                let bound = 1.0 / (inp as f32).sqrt();
                let a: Vec<f32> = (0..cfg.rank * inp)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (cfg.rank, inp), &dev)?)?;
                let b = Var::zeros((out, cfg.rank), DType::F32, &dev)?;
                m.insert(t, Lora { a, b });
            }
            layers.push(m);
        }
        Ok(Adapters {
            cfg: cfg.clone(),
            dims,
            layers,
        })
    }

    /// Every trainable matrix with its PEFT name, in a fixed order.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let mut v = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            for &t in &self.cfg.targets {
                let lo = &l[&t];
                v.push((peft_name(i, t, "A"), lo.a.clone()));
                v.push((peft_name(i, t, "B"), lo.b.clone()));
            }
        }
        v
    }

    /// The tensors as PEFT stores them (q / k `lora_B` rows in the Hugging Face order).
    pub fn peft_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, l) in self.layers.iter().enumerate() {
            for &t in &self.cfg.targets {
                let lo = &l[&t];
                let mut b = lo.b.as_tensor().clone();
                if let Some(h) = self.dims.permuted_heads(t) {
                    b = permute_rows(&b, h, false)?;
                }
                out.insert(peft_name(i, t, "A"), lo.a.as_tensor().clone());
                out.insert(peft_name(i, t, "B"), b);
            }
        }
        Ok(out)
    }

    /// Write `adapter_model.safetensors` and `adapter_config.json` into `dir`.
    pub fn save(&self, dir: &Path, base_model: &str) -> Result<()> {
        let p = dir.join("adapter_model.safetensors");
        candle_core::safetensors::save(&self.peft_tensors()?, &p)
            .with_context(|| format!("writing {}", p.display()))?;
        let c = &self.cfg;
        let config = json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": c.rank,
            // An integer where it is one, as PEFT writes it (`lora_alpha: int`).
            "lora_alpha": if c.alpha.fract() == 0.0 { json!(c.alpha as i64) } else { json!(c.alpha) },
            "lora_dropout": c.dropout,
            "target_modules": c.targets.iter().map(|t| t.module()).collect::<Vec<_>>(),
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "layers_pattern": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "use_rslora": false,
            "use_dora": false,
            "revision": null,
        });
        let p = dir.join("adapter_config.json");
        std::fs::write(&p, serde_json::to_string_pretty(&config)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
        Ok(())
    }

    /// Read adapters written by `save` (or by PEFT for the same base and settings).
    pub fn load(dir: &Path, cfg: &LoraConfig, dims: Dims) -> Result<Adapters> {
        let p = dir.join("adapter_model.safetensors");
        let mut tensors = candle_core::safetensors::load(&p, &Device::Cpu)
            .with_context(|| format!("reading {}", p.display()))?;
        let mut layers = Vec::with_capacity(dims.n_layer);
        for i in 0..dims.n_layer {
            let mut m = HashMap::new();
            for &t in &cfg.targets {
                let (out, inp) = dims.shape(t);
                let mut take = |ab: &str, shape: (usize, usize)| -> Result<Tensor> {
                    let name = peft_name(i, t, ab);
                    let x = tensors
                        .remove(&name)
                        .with_context(|| format!("{} has no {name}", p.display()))?
                        .to_dtype(DType::F32)?;
                    if x.dims2()? != shape {
                        bail!(
                            "{}: {name} is {:?}, expected {shape:?}",
                            p.display(),
                            x.shape()
                        );
                    }
                    Ok(x)
                };
                let a = take("A", (cfg.rank, inp))?;
                let mut b = take("B", (out, cfg.rank))?;
                if let Some(h) = dims.permuted_heads(t) {
                    b = permute_rows(&b, h, true)?;
                }
                m.insert(
                    t,
                    Lora {
                        a: Var::from_tensor(&a)?,
                        b: Var::from_tensor(&b)?,
                    },
                );
            }
            layers.push(m);
        }
        Ok(Adapters {
            cfg: cfg.clone(),
            dims,
            layers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_in_canonical_order() {
        let t = Target::parse_list("down,q_proj,k,q").unwrap();
        assert_eq!(t, vec![Target::Q, Target::K, Target::Down]);
        assert!(Target::parse_list("q,wq").is_err());
        assert_eq!(Target::Gate.hf_path(), "mlp.gate_proj");
        assert_eq!(
            peft_name(3, Target::O, "A"),
            "base_model.model.model.layers.3.self_attn.o_proj.lora_A.weight"
        );
    }

    /// The permutation is llama.cpp's: `w.reshape(heads, 2, hd/2, in).swapaxes(1, 2)`.
    #[test]
    fn gguf_row_permutation_matches_llama_cpp_and_inverts() {
        let (heads, hd) = (2, 4);
        let hf = Tensor::arange(0f32, (heads * hd) as f32, &Device::Cpu)
            .unwrap()
            .reshape((heads * hd, 1))
            .unwrap();
        let g = permute_rows(&hf, heads, true).unwrap();
        let rows: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        // Head 0: HF rows 0,1 are the first halves, 2,3 the second: pairs (0,2), (1,3).
        assert_eq!(rows, vec![0., 2., 1., 3., 4., 6., 5., 7.]);
        let back = permute_rows(&g, heads, false).unwrap();
        let back: Vec<f32> = back.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(back, (0..8).map(|x| x as f32).collect::<Vec<_>>());
    }

    #[test]
    fn adapters_round_trip_through_safetensors_in_peft_layout() {
        let dims = Dims {
            n_layer: 2,
            hidden: 16,
            ffn: 24,
            n_head: 4,
            n_kv_head: 2,
            head_dim: 4,
        };
        let cfg = LoraConfig {
            rank: 2,
            alpha: 4.0,
            dropout: 0.1,
            targets: Target::ALL.to_vec(),
        };
        let ad = Adapters::new(&cfg, dims, 3).unwrap();
        // B starts at zero: give it values so the q / k permutation shows.
        for (name, v) in ad.named_vars() {
            if name.ends_with("lora_B.weight") {
                v.set(&Tensor::randn(0f32, 1.0, v.shape(), &Device::Cpu).unwrap())
                    .unwrap();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        ad.save(dir.path(), "tiny").unwrap();
        let file = candle_core::safetensors::load(
            dir.path().join("adapter_model.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(file.len(), 2 * 7 * 2);
        let re = regex::Regex::new(
            r"^base_model\.model\.model\.layers\.[01]\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.lora_[AB]\.weight$",
        )
        .unwrap();
        assert!(file.keys().all(|k| re.is_match(k)), "{:?}", file.keys());
        assert_eq!(file[&peft_name(1, Target::K, "A")].dims(), &[2, 16]);
        assert_eq!(file[&peft_name(1, Target::K, "B")].dims(), &[8, 2]);
        assert_eq!(file[&peft_name(0, Target::Down, "A")].dims(), &[2, 24]);
        let back = Adapters::load(dir.path(), &cfg, dims).unwrap();
        let max_diff = |a: &Tensor, b: &Tensor| -> f32 {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        for ((n1, v1), (n2, v2)) in ad.named_vars().iter().zip(back.named_vars()) {
            assert_eq!(n1, &n2);
            assert_eq!(max_diff(v1.as_tensor(), v2.as_tensor()), 0.0, "{n1}");
        }
        // q's B is stored in the Hugging Face row order, the others as trained.
        let q = &ad.layers[0][&Target::Q].b;
        let stored = &file[&peft_name(0, Target::Q, "B")];
        assert!(max_diff(q.as_tensor(), stored) > 0.0);
        let v = &ad.layers[0][&Target::V].b;
        assert_eq!(
            max_diff(v.as_tensor(), &file[&peft_name(0, Target::V, "B")]),
            0.0
        );
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("adapter_config.json")).unwrap())
                .unwrap();
        assert_eq!(config["peft_type"], "LORA");
        assert_eq!(config["task_type"], "CAUSAL_LM");
        assert_eq!(config["r"], 2);
        assert_eq!(config["lora_alpha"], 4.0);
        assert_eq!(config["lora_dropout"], 0.1);
        assert_eq!(config["target_modules"][4], "gate_proj");
    }
}
