//! The teacher: whatever answers chat requests. One trait, several backends:
//! `http` (any OpenAI-compatible server) and, for tests and benchmarks, `mock` (our own
//! OpenAI-compatible server). `retry` decides what is retried and when.

pub mod adaptive;
pub mod config;
pub mod embedded;
pub mod endpoints;
pub mod http;
#[cfg(feature = "mock")]
pub mod mock;
pub mod retry;

pub use config::{TeacherConfig, TeacherKind};
pub mod signals;

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn system(c: impl Into<String>) -> Self {
        Message {
            role: "system".into(),
            content: c.into(),
        }
    }
    pub fn user(c: impl Into<String>) -> Self {
        Message {
            role: "user".into(),
            content: c.into(),
        }
    }
    pub fn assistant(c: impl Into<String>) -> Self {
        Message {
            role: "assistant".into(),
            content: c.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
    /// JSON Schema to enforce server-side (`response_format: json_schema`), if any.
    pub json_schema: Option<serde_json::Value>,
    /// Pipeline stage, sent as the `X-Mediflow-Stage` header (servers ignore it; the mock
    /// uses it to answer plausibly).
    pub stage: &'static str,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens the server served from its prefix cache, where it says so.
    #[serde(default)]
    pub cached_tokens: u64,
}

#[derive(Debug, Clone)]
pub struct ChatResponse {
    pub content: String,
    pub finish_reason: String,
    pub usage: Usage,
}

/// Why a teacher call failed. `retry::classify` maps each to retry or not.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TeacherError {
    #[error("rate limited (429)")]
    RateLimited { retry_after: Option<Duration> },
    #[error("server error {status}: {body}")]
    Server {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("client error {status}: {body}")]
    Client { status: u16, body: String },
    #[error("request timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("output truncated at the token cap (finish_reason=length)")]
    Truncated { partial: String, usage: Usage },
    #[error("empty answer")]
    Empty,
    #[error("malformed response: {0}")]
    BadResponse(String),
}

impl TeacherError {
    /// The short reason recorded in rejects and stats.
    pub fn reason(&self) -> &'static str {
        match self {
            TeacherError::RateLimited { .. } => "rate_limited",
            TeacherError::Server { .. } => "server_error",
            TeacherError::Client { .. } => "client_error",
            TeacherError::Timeout => "timeout",
            TeacherError::Connection(_) => "connection_error",
            TeacherError::Truncated { .. } => "truncated",
            TeacherError::Empty => "empty_answer",
            TeacherError::BadResponse(_) => "bad_response",
        }
    }
}

/// The reject reasons that say the server failed, not the teacher's output: a reject
/// for one of these is worth another try later (`run --retry-rejects transient`, the
/// default) and is counted apart in `stats.json`. `empty_answer` and `truncated` are the
/// model's doing (an answer that says nothing, or one longer than its cap), as are every
/// validation, filter, judge and dedup reason.
pub const TRANSIENT_REASONS: [&str; 5] = [
    "rate_limited",
    "server_error",
    "timeout",
    "connection_error",
    "bad_response",
];

/// Whether a reject reason is in `TRANSIENT_REASONS`.
pub fn is_transient(reason: &str) -> bool {
    TRANSIENT_REASONS.contains(&reason)
}

/// A backend that answers chat requests.
#[async_trait::async_trait]
pub trait Teacher: Send + Sync {
    /// Backend name for provenance (`openai`, `embedded`, ...).
    fn backend(&self) -> &'static str;
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, TeacherError>;
    /// A cheap pre-flight check that the teacher is there (e.g. `GET /models`).
    async fn probe(&self) -> Result<String, String>;
    /// The most requests in flight this teacher decides for itself (adaptive
    /// concurrency); `None`: the engine's fixed concurrency bounds it.
    fn capacity(&self) -> Option<usize> {
        None
    }
    /// The requests in flight it allows now, where that moves (adaptive concurrency).
    fn current_limit(&self) -> Option<usize> {
        None
    }
    /// The model's context length in tokens (prompt and answer together), where known.
    fn context_tokens(&self) -> Option<usize> {
        None
    }
    /// Prompt tokens processed and tokens generated so far, counted as the model works
    /// (not only when a call returns), where the teacher can tell.
    fn live_tokens(&self) -> Option<(u64, u64)> {
        None
    }
    /// Whether every endpoint is down now (its circuit open): a failed request then says
    /// nothing about the item, which waits for the teacher to come back.
    fn all_down(&self) -> bool {
        false
    }
    /// A short live status for the progress display.
    fn status_line(&self) -> Option<String> {
        None
    }
    /// What the teacher's load control did, for `stats.json`.
    fn control_report(&self) -> Option<serde_json::Value> {
        None
    }
}
