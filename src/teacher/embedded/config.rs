//! Settings of the embedded (in-process) teacher, as they appear under
//! `teacher.embedded` in a run config. Every field has a default, so an empty table
//! means "the default model from the cache, on the best device, with the fastest weights".

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// CUDA when built with the `cuda` feature and a GPU is present, else CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// How the model's weight matrices are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weights {
    /// The fastest for the model and device: on CPU, dense f32 for small models (candle's
    /// f32 matmul scales with the batch; its quantized kernels do not), else as stored.
    #[default]
    Auto,
    /// As stored in the GGUF file (e.g. Q4_1).
    Native,
    /// Requantized to Q8_0 at load.
    #[serde(rename = "q8_0")]
    Q8_0,
    /// Dequantized to f16 at load.
    F16,
    /// Dequantized to f32 at load.
    F32,
}

impl Weights {
    pub fn as_str(self) -> &'static str {
        match self {
            Weights::Auto => "auto",
            Weights::Native => "native",
            Weights::Q8_0 => "q8_0",
            Weights::F16 => "f16",
            Weights::F32 => "f32",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// A local GGUF file. None = the default model from the cache (pulled if missing).
    pub path: Option<PathBuf>,
    /// A `tokenizer.json`. None = built from the GGUF metadata.
    pub tokenizer: Option<PathBuf>,
    pub device: Device,
    pub weights: Weights,
    /// Most sequences decoded together.
    pub max_batch: usize,
    /// CPU threads for the model; 0 = all cores.
    pub threads: usize,
    /// Sample only among the k most likely tokens; 0 = off.
    pub top_k: usize,
    /// Divide (positive) logits of already-seen tokens by this; 1.0 = off.
    pub repetition_penalty: f32,
    /// The repetition penalty considers only the last this many tokens (prompt and answer
    /// so far, as llama.cpp's `repeat_last_n`); 0 = all of them. A window keeps a long
    /// prompt's words (a document an answer must quote, a worked example) usable while
    /// still breaking the loops small models fall into.
    pub repetition_last_n: usize,
    /// Where pulled models live. None = $MEDIFLOW_CACHE, else ~/.cache/mediflow.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            path: None,
            tokenizer: None,
            device: Device::Auto,
            weights: Weights::Auto,
            max_batch: 16,
            threads: 0,
            top_k: 0,
            repetition_penalty: 1.0,
            repetition_last_n: 0,
            cache_dir: None,
        }
    }
}

impl EmbeddedConfig {
    /// The cache directory this config resolves to.
    pub fn cache(&self) -> PathBuf {
        match &self.cache_dir {
            Some(p) => p.clone(),
            None => default_cache_dir(),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_batch == 0 {
            anyhow::bail!("teacher.embedded.max_batch must be at least 1");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            anyhow::bail!("teacher.embedded.repetition_penalty must be a positive number");
        }
        Ok(())
    }
}

/// $MEDIFLOW_CACHE, else ~/.cache/mediflow, else ./.mediflow-cache when there is no $HOME.
pub fn default_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("MEDIFLOW_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        Some(h) => PathBuf::from(h).join(".cache").join("mediflow"),
        None => PathBuf::from(".mediflow-cache"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_snake_case() {
        let c: EmbeddedConfig = toml::from_str("").unwrap();
        assert_eq!(c.max_batch, 16);
        assert_eq!(c.weights, Weights::Auto);
        let c: EmbeddedConfig =
            toml::from_str("device = \"cpu\"\nweights = \"q8_0\"\ntop_k = 40").unwrap();
        assert_eq!(c.device, Device::Cpu);
        assert_eq!(c.weights, Weights::Q8_0);
        assert_eq!(c.top_k, 40);
        assert!(toml::from_str::<EmbeddedConfig>("bogus = 1").is_err());
    }
}
