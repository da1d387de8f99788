//! The embedded teacher: a small GGUF model run in-process with candle, so a pipeline
//! can produce data with no server at all (CPU by default, CUDA with the `cuda` feature).
//! `EmbeddedTeacher` renders the model's chat template, tokenizes, and hands the request
//! to the engine thread (continuous batching, optional JSON-Schema-constrained decoding).
//!
//! Building with `--features cuda` needs the CUDA toolkit (`nvcc`) at build time; the
//! default build needs neither it nor a GPU.

pub mod chat_template;
pub mod config;
pub mod constrain;
pub mod engine;
pub mod model;
pub mod pull;
pub mod sampler;
pub mod tiny;
pub mod tokenizer;

#[cfg(test)]
mod tests;

pub use config::{EmbeddedConfig, Weights};

use crate::teacher::{ChatRequest, ChatResponse, Message, Teacher, TeacherError, Usage};
use anyhow::{anyhow, bail, Context, Result};
use chat_template::ChatTemplate;
use engine::{Engine, GenParams, Generation};
use sampler::SamplingParams;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenizer::TextTokenizer;

/// A request the model cannot serve as given (not worth retrying).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

pub struct EmbeddedTeacher {
    engine: Engine,
    tok: Arc<TextTokenizer>,
    template: ChatTemplate,
    cfg: EmbeddedConfig,
    path: PathBuf,
    description: String,
    load_time: Duration,
    n_ctx: usize,
}

/// The device named by the config, or the best one present for `auto`.
pub fn select_device(d: config::Device) -> Result<candle_core::Device> {
    match d {
        config::Device::Cpu => Ok(candle_core::Device::Cpu),
        config::Device::Cuda => {
            if !candle_core::utils::cuda_is_available() {
                bail!("device = \"cuda\" needs a build with the `cuda` feature");
            }
            candle_core::Device::new_cuda(0).map_err(|e| anyhow!("no usable CUDA GPU: {e}"))
        }
        config::Device::Auto => {
            if candle_core::utils::cuda_is_available() {
                if let Ok(d) = candle_core::Device::new_cuda(0) {
                    return Ok(d);
                }
            }
            Ok(candle_core::Device::Cpu)
        }
    }
}

/// The model file a config points at: its `path`, else the default model from the cache
/// (pulled when missing, verified when present).
pub fn resolve_model_path(cfg: &EmbeddedConfig) -> Result<PathBuf> {
    match &cfg.path {
        Some(p) => {
            if !p.is_file() {
                bail!("model file {} not found", p.display());
            }
            Ok(p.clone())
        }
        None => {
            let cache = cfg.cache();
            let p = pull::default_model_path(&cache);
            if p.exists() {
                pull::verify(&p, &pull::DEFAULT_MODEL)
                    .context("run `mediflow model pull` to fetch it again")?;
                Ok(p)
            } else {
                pull::pull(&cache)
            }
        }
    }
}

impl EmbeddedTeacher {
    pub fn load(cfg: &EmbeddedConfig) -> Result<Self> {
        cfg.validate()?;
        let t0 = Instant::now();
        let path = resolve_model_path(cfg)?;
        let device = select_device(cfg.device)?;
        let (ct, mut file) = model::read_gguf(&path)?;
        let mcfg =
            model::model_config(&ct).with_context(|| format!("cannot run {}", path.display()))?;
        let tok = Arc::new(TextTokenizer::load(
            &ct,
            cfg.tokenizer.as_deref(),
            mcfg.vocab,
        )?);
        let source = chat_template::template_source(&ct);
        let template = ChatTemplate::new(&source, &tok.bos_text, &tok.eos_text)?;
        let constrainer = constrain::Constrainer::new(tok.clone())?;
        let m = model::Model::load(&ct, &mut file, cfg.weights, &device)
            .with_context(|| format!("cannot load {}", path.display()))?;
        let threads = match cfg.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let description = format!(
            "embedded {} ({}, {:.1}M params, {} layers, stored {}, weights {}, {}, {} threads, \
             max_batch {})",
            path.display(),
            m.cfg.arch,
            m.cfg.n_params as f64 / 1e6,
            m.cfg.n_layer,
            m.cfg.stored_dtype,
            m.weights.as_str(),
            if device.is_cuda() { "cuda" } else { "cpu" },
            threads,
            cfg.max_batch
        );
        let n_ctx = m.cfg.n_ctx;
        let engine = Engine::start(m, tok.clone(), constrainer, cfg.max_batch, cfg.threads)?;
        let load_time = t0.elapsed();
        tracing::info!("{description} loaded in {:.1}s", load_time.as_secs_f64());
        Ok(EmbeddedTeacher {
            engine,
            tok,
            template,
            cfg: cfg.clone(),
            path,
            description,
            load_time,
            n_ctx,
        })
    }

    /// One line: model path, architecture, size, weight mode, device.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    pub fn model_path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    pub fn stats(&self) -> &engine::EngineStats {
        &self.engine.stats
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tok
    }

    /// The prompt text for `messages`, ending where the assistant's answer starts.
    pub fn render(&self, messages: &[Message]) -> Result<String> {
        self.template.render(messages)
    }

    /// Token ids of the prompt for `messages`.
    pub fn prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.tok.encode(&self.render(messages)?)
    }

    /// Generate with full control (stop strings, sampling) and get token-level detail.
    pub async fn generate(&self, messages: &[Message], params: GenParams) -> Result<Generation> {
        let ids = self.prompt_ids(messages)?;
        self.engine.generate(ids, params).await
    }

    /// For each continuation, the sum of its tokens' log-probabilities as the answer to
    /// `messages` (for multiple-choice scoring: compare, or normalize by length).
    pub async fn logprobs(
        &self,
        messages: &[Message],
        continuations: &[String],
    ) -> Result<Vec<f64>> {
        let ids = self.prompt_ids(messages)?;
        let conts = continuations
            .iter()
            .map(|c| self.tok.encode(c))
            .collect::<Result<Vec<_>>>()?;
        self.engine.logprobs(ids, conts).await
    }

    fn params_for(&self, req: &ChatRequest) -> GenParams {
        GenParams {
            sampling: SamplingParams {
                temperature: req.temperature,
                top_p: req.top_p,
                top_k: self.cfg.top_k,
                repetition_penalty: self.cfg.repetition_penalty,
                repetition_last_n: self.cfg.repetition_last_n,
                seed: req.seed,
            },
            max_tokens: req.max_tokens.max(1) as usize,
            stop: Vec::new(),
            json_schema: req.json_schema.clone(),
            ignore_eos: false,
        }
    }
}

fn to_teacher_error(e: anyhow::Error) -> TeacherError {
    if let Some(b) = e.downcast_ref::<BadRequest>() {
        return TeacherError::Client {
            status: 400,
            body: b.0.clone(),
        };
    }
    TeacherError::Server {
        status: 500,
        body: format!("{e:#}"),
        retry_after: None,
    }
}

#[async_trait::async_trait]
impl Teacher for EmbeddedTeacher {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, TeacherError> {
        let ids = self
            .prompt_ids(&req.messages)
            .map_err(|e| to_teacher_error(anyhow!(BadRequest(format!("{e:#}")))))?;
        let prompt_tokens = ids.len() as u64;
        let g = self
            .engine
            .generate(ids, self.params_for(req))
            .await
            .map_err(to_teacher_error)?;
        let usage = Usage {
            prompt_tokens,
            completion_tokens: g.tokens.len() as u64,
            cached_tokens: 0,
        };
        if g.finish_reason == "length" {
            return Err(TeacherError::Truncated {
                partial: g.text,
                usage,
            });
        }
        if g.text.trim().is_empty() {
            return Err(TeacherError::Empty);
        }
        Ok(ChatResponse {
            content: g.text,
            finish_reason: g.finish_reason.to_string(),
            usage,
        })
    }

    async fn probe(&self) -> Result<String, String> {
        Ok(self.describe())
    }

    fn context_tokens(&self) -> Option<usize> {
        Some(self.n_ctx)
    }

    fn live_tokens(&self) -> Option<(u64, u64)> {
        let s = &self.engine.stats;
        Some((
            s.prompt_tokens.load(std::sync::atomic::Ordering::Relaxed),
            s.generated_tokens
                .load(std::sync::atomic::Ordering::Relaxed),
        ))
    }
}
