//! Run configuration (`run.toml`). Every struct denies unknown fields; `validate` collects
//! all problems at once. Relative paths are resolved against the current directory.

use crate::error::{Error, Problem};
pub use crate::teacher::config::{
    AdaptiveConfig, HealthConfig, ResponseFormatMode, StageTokens, TeacherConfig, TeacherKind,
    DOCUMENT_TOKENS_PER_WORD, MAX_TOKENS_LIMIT,
};
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
