//! Run configuration (`run.toml`). Every struct denies unknown fields; `validate` collects
//! all problems at once. Relative paths are resolved against the current directory.

use crate::error::{Error, Problem};
use crate::util;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name; outputs go to `<out_root>/<name>` unless `--out` is given.
    pub name: String,
    /// Run seed: drives the plan, item ids, seed attributes and per-request seeds.
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Number of work items to plan.
    pub items: usize,
    #[serde(default = "d_taxonomy")]
    pub taxonomy_dir: PathBuf,
    #[serde(default = "d_templates")]
    pub templates_dir: PathBuf,
    #[serde(default = "d_schemas")]
    pub schemas_dir: PathBuf,
    #[serde(default = "d_out_root")]
    pub out_root: PathBuf,
    /// `[templates]`: which template profile the prompts come from.
    #[serde(default)]
    pub templates: TemplatesConfig,
    #[serde(default)]
    pub plan: PlanConfig,
    pub teacher: TeacherConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub filters: crate::quality::filters::FiltersConfig,
    #[serde(default)]
    pub judge: crate::quality::judge::JudgeConfig,
    #[serde(default)]
    pub dedup: crate::quality::dedup::DedupConfig,
    #[serde(default)]
    pub quota: QuotaConfig,
    /// `mediflow dpo` (preference pairs); not part of the generation fingerprint.
    #[serde(default)]
    pub dpo: crate::dpo::DpoConfig,
}

/// `[quota]`: exact per-cell yields. Without `target_accepted`, every planned item is
/// attempted once and the yield is whatever passes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Accepted records wanted per planned cell: `"plan"` (the cell's planned item count,
    /// so the run ends with exactly `items` accepted rows) or a number for every cell.
    #[serde(default)]
    pub target_accepted: Option<QuotaTarget>,
    /// Items a cell may use before it is given up: `ceil(target * budget_factor)`.
    #[serde(default = "d_budget_factor")]
    pub budget_factor: f64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            target_accepted: None,
            budget_factor: d_budget_factor(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QuotaTarget {
    Each(u32),
    Plan(PlanWord),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanWord {
    Plan,
}

impl QuotaConfig {
    /// The target and the item budget of a cell with `planned` items, if quotas are on.
    pub fn cell(&self, planned: usize) -> Option<(usize, usize)> {
        let target = match self.target_accepted? {
            QuotaTarget::Plan(_) => planned,
            QuotaTarget::Each(n) => n as usize,
        };
        let budget = (target as f64 * self.budget_factor).ceil() as usize;
        Some((target, budget.max(target)))
    }
}

/// `[templates]`: the prompt template profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    #[serde(default)]
    pub profile: TemplateProfile,
}

/// Which templates the stages render (see `prompt::Prompts::template_for`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateProfile {
    /// The templates at the top of `templates_dir`: detailed rules for capable teachers.
    #[default]
    Full,
    /// `templates_dir/compact/`: short prompts, each with one worked example, for small
    /// teachers (a 135M model imitates an example far better than it follows rules); a
    /// template compact does not have falls back to the full one.
    Compact,
}

impl TemplateProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateProfile::Full => "full",
            TemplateProfile::Compact => "compact",
        }
    }
}

/// Optional restrictions of the taxonomy for this run (empty = everything).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    #[serde(default)]
    pub tasks: Vec<String>,
    #[serde(default)]
    pub families: Vec<String>,
    #[serde(default)]
    pub documents: Vec<String>,
    #[serde(default)]
    pub formats: Vec<String>,
    #[serde(default)]
    pub difficulties: Vec<u8>,
}

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
    /// every endpoint every `health_interval_secs`, and let requests wait this long for
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Maximum teacher requests in flight.
    #[serde(default = "d_concurrency")]
    pub concurrency: usize,
    /// Failed attempts per teacher call (first try + retries) before the item is
    /// rejected. Counted: 5xx other than 503, connection errors, timeouts, malformed and
    /// empty answers. Not counted: 429 and 503 (the server asks for patience: the retry
    /// waits its Retry-After) and failures while every endpoint is down (the item waits
    /// for one to come back). Default 6.
    #[serde(default = "d_attempts")]
    pub max_attempts: u32,
    /// The most time one item spends on failed attempts and the waits between them, all
    /// its teacher calls together; past it the item is rejected with the last error's
    /// reason (a transient one, retried by the next `run`). Default 600 s, well over a
    /// server restart.
    #[serde(default = "d_retry_budget")]
    pub retry_budget_secs: f64,
    /// The longest Retry-After (429, 503) honoured. Default 60 s.
    #[serde(default = "d_retry_after_max")]
    pub retry_after_max_secs: f64,
    /// Backoff before a retry without Retry-After: `backoff_initial_ms` doubled per
    /// attempt up to `backoff_max_ms`, times a random factor in [0.5, 1]. Defaults 250 ms
    /// and 20 s.
    #[serde(default = "d_backoff_initial")]
    pub backoff_initial_ms: u64,
    #[serde(default = "d_backoff_max")]
    pub backoff_max_ms: u64,
    /// Repair rounds for a `json` answer that fails to parse or validate.
    #[serde(default = "d_repairs")]
    pub repair_attempts: u32,
    /// Records per output shard (JSONL + Parquet).
    #[serde(default = "d_shard")]
    pub shard_size: usize,
    /// The order items are started in: `plan` (interleaved across cells) or `grouped` (by
    /// document family, document type and task, for servers with prefix caching).
    #[serde(default)]
    pub order: WorkOrder,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkOrder {
    #[default]
    Plan,
    Grouped,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            concurrency: d_concurrency(),
            max_attempts: d_attempts(),
            retry_budget_secs: d_retry_budget(),
            retry_after_max_secs: d_retry_after_max(),
            backoff_initial_ms: d_backoff_initial(),
            backoff_max_ms: d_backoff_max(),
            repair_attempts: d_repairs(),
            shard_size: d_shard(),
            order: WorkOrder::default(),
        }
    }
}

fn d_seed() -> u64 {
    42
}
fn d_taxonomy() -> PathBuf {
    "taxonomy".into()
}
fn d_templates() -> PathBuf {
    "templates".into()
}
fn d_schemas() -> PathBuf {
    "schemas".into()
}
fn d_out_root() -> PathBuf {
    "outputs".into()
}
fn d_temperature() -> f32 {
    0.8
}
fn d_top_p() -> f32 {
    0.95
}
fn d_true() -> bool {
    true
}
fn d_timeout() -> f64 {
    120.0
}
fn d_rf() -> ResponseFormatMode {
    ResponseFormatMode::Server
}
fn d_concurrency() -> usize {
    16
}
fn d_attempts() -> u32 {
    6
}
fn d_retry_budget() -> f64 {
    600.0
}
fn d_retry_after_max() -> f64 {
    60.0
}
fn d_backoff_initial() -> u64 {
    250
}
fn d_backoff_max() -> u64 {
    20_000
}
fn d_repairs() -> u32 {
    1
}
fn d_shard() -> usize {
    10_000
}
fn d_budget_factor() -> f64 {
    3.0
}

/// Command-line overrides of common knobs (`None` = keep the config's value).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub teacher_urls: Vec<String>,
    pub model: Option<String>,
    pub concurrency: Option<usize>,
    pub seed: Option<u64>,
    pub items: Option<usize>,
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

impl RunConfig {
    /// Load, apply overrides and validate. Every problem is reported at once.
    pub fn load(path: &Path, ov: &Overrides) -> Result<RunConfig, Error> {
        let mut cfg: RunConfig = util::load_toml(path).map_err(|p| Error::Input(vec![p]))?;
        cfg.apply(ov);
        let problems = cfg.validate(path);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(Error::Input(problems))
        }
    }

    pub fn apply(&mut self, ov: &Overrides) {
        // Naming a server means using it, whatever teacher the config names.
        if !ov.teacher_urls.is_empty() {
            self.teacher.kind = TeacherKind::Openai;
            self.teacher.base_urls = ov.teacher_urls.clone();
        }
        if let Some(m) = &ov.model {
            self.teacher.model = m.clone();
        }
        // A concurrency given on the command line is a fixed one.
        if let Some(c) = ov.concurrency {
            self.engine.concurrency = c;
            self.teacher.adaptive.enabled = false;
        }
        if let Some(s) = ov.seed {
            self.seed = s;
        }
        if let Some(n) = ov.items {
            self.items = n;
        }
    }

    /// Semantic checks that serde cannot express.
    pub fn validate(&self, path: &Path) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut bad = |m: String| p.push(Problem::new(path, m));
        if self.name.trim().is_empty() || self.name.contains(['/', '\\']) {
            bad(format!(
                "`name` must be a non-empty file name, got {:?}",
                self.name
            ));
        }
        if self.items == 0 {
            bad("`items` must be at least 1".into());
        }
        for m in self.teacher.validate() {
            bad(m);
        }
        let e = &self.engine;
        if e.concurrency == 0 {
            bad("`engine.concurrency` must be at least 1".into());
        }
        if e.max_attempts == 0 {
            bad("`engine.max_attempts` must be at least 1".into());
        }
        if e.shard_size == 0 {
            bad("`engine.shard_size` must be at least 1".into());
        }
        if !(e.retry_budget_secs.is_finite() && e.retry_budget_secs > 0.0) {
            bad("`engine.retry_budget_secs` must be a positive number of seconds".into());
        }
        if !(e.retry_after_max_secs.is_finite() && e.retry_after_max_secs >= 0.0) {
            bad("`engine.retry_after_max_secs` must be >= 0".into());
        }
        if e.backoff_initial_ms > e.backoff_max_ms {
            bad("`engine.backoff_initial_ms` exceeds `engine.backoff_max_ms`".into());
        }
        if self.quota.target_accepted == Some(QuotaTarget::Each(0)) {
            bad("`quota.target_accepted` must be at least 1 (or \"plan\")".into());
        }
        if self.quota.budget_factor.is_nan() || self.quota.budget_factor < 1.0 {
            bad("`quota.budget_factor` must be at least 1".into());
        }
        for m in self.filters.validate() {
            bad(m);
        }
        if let Err(m) = self.dedup.validate() {
            bad(m);
        }
        for m in self.dpo.validate() {
            bad(m);
        }
        if self.judge.enabled {
            for m in self.judge.validate() {
                bad(m);
            }
            if self.judge.max_tokens > MAX_TOKENS_LIMIT {
                bad(format!(
                    "`judge.max_tokens` = {} is beyond any model's context: at most \
                     {MAX_TOKENS_LIMIT}",
                    self.judge.max_tokens
                ));
            }
            if let Some(jt) = &self.judge.teacher {
                for m in jt.validate() {
                    bad(format!("judge.teacher: {m}"));
                }
            }
        }
        p
    }

    /// The settings that determine what a run generates. A resumed run must match them;
    /// operational knobs (concurrency, URLs, timeouts, limit) may change between attempts.
    pub fn generation_fingerprint(&self) -> serde_json::Value {
        let t = &self.teacher;
        let mut fp = serde_json::json!({
            "seed": self.seed,
            "items": self.items,
            "plan": self.plan,
            "teacher": {
                "kind": t.kind, "model": t.model, "temperature": t.temperature, "top_p": t.top_p,
                "max_tokens": t.max_tokens, "send_seed": t.send_seed, "response_format": t.response_format,
                "embedded": (t.kind == TeacherKind::Embedded).then(|| serde_json::json!({
                    "path": t.embedded.path, "tokenizer": t.embedded.tokenizer, "weights": t.embedded.weights,
                    "top_k": t.embedded.top_k, "repetition_penalty": t.embedded.repetition_penalty,
                })),
            },
            // Retry settings are operational (raise them and run again to retry what
            // failed for transient reasons); `manifest::differences` ignores the
            // `max_attempts` that earlier versions recorded here.
            "engine": { "repair_attempts": self.engine.repair_attempts },
            "filters": self.filters,
            "dedup": self.dedup,
            "quota": self.quota,
            "judge": self.judge.enabled.then(|| {
                let mut j = serde_json::to_value(&self.judge).expect("serializable");
                // Where the judge runs is operational; which model judges is not.
                if let Some(jt) = &self.judge.teacher {
                    j["teacher"] = serde_json::json!({ "kind": jt.kind, "model": jt.model });
                }
                j
            }),
        });
        // Settings added later are named only when not at their default, so runs from
        // before they existed still resume.
        if self.templates.profile != TemplateProfile::Full {
            fp["template_profile"] = self.templates.profile.as_str().into();
        }
        if t.kind == TeacherKind::Embedded && t.embedded.repetition_last_n != 0 {
            fp["teacher"]["embedded"]["repetition_last_n"] = t.embedded.repetition_last_n.into();
        }
        fp
    }
}

#[cfg(test)]
mod tests {
    use super::StageTokens;

    #[test]
    fn document_caps_follow_the_word_range_within_the_configured_cap() {
        let t = StageTokens {
            document: 600,
            ..StageTokens::default()
        };
        // 1.4 tokens per word of the range's upper end
        assert_eq!(t.document_for(150), 210);
        assert_eq!(t.document_for(250), 350);
        // the configured cap is an upper bound
        assert_eq!(t.document_for(900), 600);
    }
}
