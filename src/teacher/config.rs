//! The teacher's settings (`[teacher]` of a run config, `[judge.teacher]`,
//! `[dpo.student]`): which teacher, its model and sampling, token caps per stage, and for
//! an OpenAI-compatible server its endpoints, adaptive concurrency and health checks.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherKind {
    /// Any OpenAI-compatible chat-completions server (vLLM, SGLang, TGI, llama.cpp, Ollama).
    Openai,
    /// The in-process candle model (`teacher.embedded`).
    Embedded,
}

/// How the task's JSON Schema reaches the teacher for `json` items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormatMode {
    /// Send `response_format: {type: json_schema}` (falls back to prompt-only if refused),
    /// and append the schema to the stored `json` instruction.
    Server,
    /// No `response_format`; the schema is appended to the stored `json` instruction.
    Prompt,
    /// mediflow adds the schema nowhere itself: only where the templates put it.
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherConfig {
    pub kind: TeacherKind,
    /// One or more base URLs ending in `/v1`; requests go to the least busy one.
    #[serde(default)]
    pub base_urls: Vec<String>,
    /// Name of the environment variable holding the API key (the key itself is never stored).
    #[serde(default)]
    pub api_key_env: Option<String>,
    pub model: String,
    #[serde(default = "d_temperature")]
    pub temperature: f32,
    #[serde(default = "d_top_p")]
    pub top_p: f32,
    /// Token caps per stage.
    #[serde(default)]
    pub max_tokens: StageTokens,
    /// Send a per-request seed derived from the item id (reproducible servers honour it).
    #[serde(default = "d_true")]
    pub send_seed: bool,
    #[serde(default = "d_timeout")]
    pub timeout_secs: f64,
    #[serde(default = "d_rf")]
    pub response_format: ResponseFormatMode,
    /// Settings of the embedded teacher (used when `kind = "embedded"`).
    #[serde(default)]
    pub embedded: crate::teacher::embedded::config::EmbeddedConfig,
    /// How many requests each OpenAI-compatible endpoint gets in flight.
    #[serde(default)]
    pub adaptive: AdaptiveConfig,
    /// Endpoint health: drain an endpoint after this many consecutive failures, probe
    /// every endpoint every `interval_secs`, and let requests wait this long for
    /// one to come back when all are down.
    #[serde(default)]
    pub health: HealthConfig,
}

/// Adaptive concurrency per OpenAI-compatible endpoint (`[teacher.adaptive]`). When on,
/// `engine.concurrency` does not bound the teacher; `min`/`max` do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConfig {
    pub enabled: bool,
    pub min: usize,
    pub max: usize,
    pub initial: usize,
    /// Back off when the median latency exceeds this (0 = throughput alone decides).
    pub max_latency_secs: f64,
    /// Read the server's load signals (`/metrics`, llama.cpp `/slots`) where it has them.
    pub signals: bool,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig {
            enabled: true,
            min: 1,
            max: 256,
            initial: 8,
            max_latency_secs: 0.0,
            signals: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    pub failures_to_drain: u32,
    pub interval_secs: f64,
    pub all_down_wait_secs: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            failures_to_drain: 3,
            interval_secs: 5.0,
            all_down_wait_secs: 600.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageTokens {
    pub document: u32,
    pub instruction: u32,
    pub answer: u32,
}

/// Document tokens per word of a document type's longest length (`length_words[1]`):
/// SmolLM2's tokenizer gives ~1.3 tokens per word of clinical English (numbers cost one
/// token per digit), plus headroom for headers and signatures.
pub const DOCUMENT_TOKENS_PER_WORD: f64 = 1.4;

/// The largest token cap accepted for a stage whatever the teacher (a typo's guard:
/// `answer = 4000000000` was taken as given). No model serves a context of 2^20 tokens
/// for one answer; the teacher's own context (the GGUF metadata, a server's
/// `max_model_len`) bounds the caps further where it is known.
pub const MAX_TOKENS_LIMIT: u32 = 1 << 20;

impl StageTokens {
    /// Each stage's name and cap.
    pub fn stages(&self) -> [(&'static str, u32); 3] {
        [
            ("document", self.document),
            ("instruction", self.instruction),
            ("answer", self.answer),
        ]
    }

    /// The document cap for a type whose length range ends at `max_words`: about
    /// `DOCUMENT_TOKENS_PER_WORD` tokens per word of that upper end, never above
    /// `document` (the configured cap is an upper bound), so short types do not get (and
    /// ramble into) a long type's budget.
    pub fn document_for(&self, max_words: u32) -> u32 {
        let by_range = (max_words as f64 * DOCUMENT_TOKENS_PER_WORD).ceil() as u32;
        by_range.clamp(1, self.document.max(1))
    }
}

impl Default for StageTokens {
    fn default() -> Self {
        StageTokens {
            document: 1200,
            instruction: 400,
            answer: 1024,
        }
    }
}

impl TeacherConfig {
    /// Problems with these settings (empty = fine).
    pub fn validate(&self) -> Vec<String> {
        let t = self;
        let mut p: Vec<String> = Vec::new();
        if t.kind == TeacherKind::Openai && t.base_urls.is_empty() {
            p.push("`teacher.base_urls` is empty: give at least one OpenAI-compatible base URL (or --teacher-url)".into());
        }
        for u in &t.base_urls {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                p.push(format!("`teacher.base_urls`: {u:?} is not an http(s) URL"));
            }
        }
        if t.model.trim().is_empty() {
            p.push("`teacher.model` is empty".into());
        }
        if !(0.0..=2.0).contains(&t.temperature) {
            p.push(format!(
                "`teacher.temperature` must be within 0..=2, got {}",
                t.temperature
            ));
        }
        let ad = &t.adaptive;
        if ad.enabled && !(1 <= ad.min && ad.min <= ad.initial && ad.initial <= ad.max) {
            p.push(format!(
                "`teacher.adaptive` needs 1 <= min <= initial <= max, got min {} initial {} max {}",
                ad.min, ad.initial, ad.max
            ));
        }
        if ad.max_latency_secs.is_nan() || ad.max_latency_secs < 0.0 {
            p.push("`teacher.adaptive.max_latency_secs` must be >= 0".into());
        }
        let h = &t.health;
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if h.failures_to_drain == 0
            || !positive(h.interval_secs)
            || h.all_down_wait_secs.is_nan()
            || h.all_down_wait_secs < 0.0
        {
            p.push("`teacher.health` needs failures_to_drain >= 1, interval_secs > 0 and all_down_wait_secs >= 0".into());
        }
        if !(t.top_p > 0.0 && t.top_p <= 1.0) {
            p.push(format!(
                "`teacher.top_p` must be within (0, 1], got {}",
                t.top_p
            ));
        }
        if t.timeout_secs <= 0.0 {
            p.push("`teacher.timeout_secs` must be positive".into());
        }
        for (name, v) in t.max_tokens.stages() {
            if v == 0 {
                p.push(format!("`teacher.max_tokens.{name}` must be at least 1"));
            } else if v > MAX_TOKENS_LIMIT {
                p.push(format!(
                    "`teacher.max_tokens.{name}` = {v} is beyond any model's context: at most \
                     {MAX_TOKENS_LIMIT} (the model's own context bounds it further)"
                ));
            }
        }
        if t.kind == TeacherKind::Embedded {
            if let Err(e) = t.embedded.validate() {
                p.push(e.to_string());
            }
        }
        if let Some(env) = &t.api_key_env {
            if env.is_empty() {
                p.push("`teacher.api_key_env` is empty".into());
            }
        }
        p
    }

    /// The API key `api_key_env` names: `Ok(None)` without one; an error naming the
    /// setting when the variable is unset or empty here (the requests would go out
    /// unauthenticated). Not part of `validate`: commands that call no teacher (`plan`,
    /// `merge`) need no key, and `check::api_keys` asks before the ones that do.
    pub fn api_key(&self) -> Result<Option<String>, String> {
        let Some(env) = self.api_key_env.as_deref().filter(|e| !e.is_empty()) else {
            return Ok(None);
        };
        let fix = "or remove `api_key_env` for a server without authentication";
        match std::env::var(env) {
            Ok(k) if !k.is_empty() => Ok(Some(k)),
            Ok(_) => Err(format!(
                "`teacher.api_key_env` names ${env}, which is empty: set it to the API key, {fix}"
            )),
            Err(std::env::VarError::NotPresent) => Err(format!(
                "`teacher.api_key_env` names ${env}, which is not set: export it with the API \
                 key, {fix}"
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "`teacher.api_key_env` names ${env}, which is not valid text: set it to the API \
                 key, {fix}"
            )),
        }
    }

    /// Problems with the token caps for a teacher whose context (prompt and answer
    /// together) is `ctx` tokens; `source` says where that figure comes from.
    pub fn caps_beyond_context(&self, ctx: usize, source: &str) -> Vec<String> {
        self.max_tokens
            .stages()
            .into_iter()
            .filter(|&(_, v)| v as usize >= ctx)
            .map(|(name, v)| {
                format!(
                    "`teacher.max_tokens.{name}` = {v} does not fit the teacher's context of \
                     {ctx} tokens ({source}), which the prompt shares"
                )
            })
            .collect()
    }
}

fn d_temperature() -> f32 {
    0.8
}
fn d_top_p() -> f32 {
    0.95
}
fn d_timeout() -> f64 {
    120.0
}
fn d_rf() -> ResponseFormatMode {
    ResponseFormatMode::Server
}
fn d_true() -> bool {
    true
}
