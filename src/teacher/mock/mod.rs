//! The mock teacher: a real OpenAI-compatible HTTP server (axum) for tests, benchmarks
//! and demos. It answers deterministically and plausibly per stage (schema-valid JSON for
//! `json` answers: `answers`), and can add latency, cap its concurrency, and inject
//! faults (`faults`: the transient ones a flaky server or proxy produces).
//!
//! Behind the `mock` cargo feature, on by default (`mediflow mock-teacher`, `run
//! --with-mock-teacher`, the integration tests and `benches/` use it); a build with
//! `--no-default-features` leaves it, and axum, out. Not part of the stable API.

mod answers;
mod faults;

pub use answers::{instance, Source};
pub use faults::Fault;

use answers::{
    answer, document, duplicate_document, inject, instruction, schema_in_prompt, verdict,
};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    /// Fixed service time per request.
    pub latency: Duration,
    /// Requests served at once; the rest wait in a queue (None = unlimited).
    pub capacity: Option<usize>,
    /// A capacity knee: with `n` requests in the server, service time is `latency` x
    /// (1 + n/2K) up to K and grows with (n/K)^2 beyond, so throughput peaks at K in
    /// flight and falls past it (as real servers do, without ever answering 429).
    pub knee: Option<usize>,
    pub seed: u64,
    /// Fault rates in [0, 1], drawn per request deterministically (see `faults`).
    pub rate_429: f64,
    pub rate_500: f64,
    pub rate_503: f64,
    /// The connection closed without an answer.
    pub rate_reset: f64,
    /// Half an answer, then a pause of `hang`.
    pub rate_stall: f64,
    /// Half an answer, then the connection closed.
    pub rate_cut_body: f64,
    pub rate_empty_body: f64,
    /// A share of requests that get one of the faults above, each kind as likely.
    pub rate_faults: f64,
    /// The Retry-After of a 429 or 503.
    pub retry_after: Duration,
    /// Hang this long instead of answering (the client should time out first).
    pub rate_timeout: f64,
    pub hang: Duration,
    /// HTTP body that is not JSON at all.
    pub rate_invalid_json: f64,
    /// A `json` answer that parses but violates the schema (exercises repair).
    pub rate_bad_answer: f64,
    /// finish_reason = "length" with a cut answer.
    pub rate_truncate: f64,
    pub rate_low_judge: f64,
    pub rate_duplicate: f64,
    /// Serve Prometheus `/metrics` as vLLM names them: requests running and a count of
    /// generated tokens (this mock counts an answer's tokens when it is sent).
    pub metrics: bool,
    /// Serve llama.cpp's `/slots` with this many slots (as many processing as requests
    /// are in the handler).
    pub slots: Option<usize>,
}

struct Shared {
    opts: MockOptions,
    gate: Option<Semaphore>,
    /// How often each distinct request body has been seen (so a retry can succeed).
    seen: Mutex<HashMap<u64, u64>>,
    served: AtomicU64,
    /// Requests in the handler now, and the most ever.
    active: AtomicUsize,
    max_active: AtomicUsize,
    /// Requests that carried an `Authorization: Bearer` header / a `response_format`.
    with_auth: AtomicU64,
    with_response_format: AtomicU64,
    generated_tokens: AtomicU64,
    /// Faults injected, by `Fault::ALL` position.
    faults: [AtomicU64; Fault::ALL.len()],
}

/// A running mock server.
pub struct MockServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    handle: tokio::task::JoinHandle<()>,
}

impl MockServer {
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }
    pub fn abort(&self) {
        self.handle.abort();
    }
}

/// Bind `addr` (port 0 = any free port) and serve in the background of the current runtime.
pub async fn start(addr: SocketAddr, opts: MockOptions) -> std::io::Result<MockServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        gate: opts.capacity.map(Semaphore::new),
        opts,
        seen: Mutex::new(HashMap::new()),
        served: AtomicU64::new(0),
        active: AtomicUsize::new(0),
        max_active: AtomicUsize::new(0),
        with_auth: AtomicU64::new(0),
        with_response_format: AtomicU64::new(0),
        generated_tokens: AtomicU64::new(0),
        faults: Default::default(),
    });
    let mut app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/health", get(|| async { "ok" }))
        .route("/stats", get(stats));
    if shared.opts.metrics {
        app = app.route("/metrics", get(metrics));
    }
    if shared.opts.slots.is_some() {
        app = app.route("/slots", get(slots));
    }
    let app = app.with_state(shared.clone());
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(MockServer {
        addr,
        shared,
        handle,
    })
}

/// Counts a request out of the handler however it leaves.
struct Active<'a>(&'a AtomicUsize);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters for tests: requests served, with auth, with a response_format; faults
/// injected by kind.
async fn stats(State(s): State<Arc<Shared>>) -> Json<Value> {
    let faults: serde_json::Map<String, Value> = Fault::ALL
        .iter()
        .zip(&s.faults)
        .map(|(f, n)| (f.name().to_string(), json!(n.load(Ordering::Relaxed))))
        .collect();
    Json(json!({
        "faults": faults,
        "served": s.served.load(Ordering::Relaxed),
        "max_in_flight": s.max_active.load(Ordering::Relaxed),
        "with_auth": s.with_auth.load(Ordering::Relaxed),
        "with_response_format": s.with_response_format.load(Ordering::Relaxed),
    }))
}

async fn metrics(State(s): State<Arc<Shared>>) -> String {
    format!(
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{model_name=\"mock-teacher\"}} {}\n\
# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total{{model_name=\"mock-teacher\"}} {}\n",
        s.active.load(Ordering::Relaxed),
        s.generated_tokens.load(Ordering::Relaxed)
    )
}

async fn slots(State(s): State<Arc<Shared>>) -> Json<Value> {
    let active = s.active.load(Ordering::Relaxed);
    let n = s.opts.slots.unwrap_or(0);
    Json(Value::Array(
        (0..n)
            .map(|id| json!({"id": id, "is_processing": id < active}))
            .collect(),
    ))
}

/// The context the mock's `/models` reports, as vLLM does (`max_model_len`).
pub const MOCK_CONTEXT_TOKENS: usize = 32_768;

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [
        {"id": "mock-teacher", "object": "model", "max_model_len": MOCK_CONTEXT_TOKENS}
    ]}))
}

fn hash64(bytes: &[u8]) -> u64 {
    crate::util::seed_from(&String::from_utf8_lossy(bytes))
}

async fn chat(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let n = s.active.fetch_add(1, Ordering::Relaxed) + 1;
    s.max_active.fetch_max(n, Ordering::Relaxed);
    let _active = Active(&s.active);
    let _permit = match &s.gate {
        Some(g) => Some(g.acquire().await.expect("semaphore open")),
        None => None,
    };
    let key = hash64(&body);
    let nth = {
        let mut seen = s.seen.lock().unwrap();
        let n = seen.entry(key).or_insert(0);
        *n += 1;
        *n
    };
    let mut rng =
        ChaCha8Rng::seed_from_u64(s.opts.seed ^ key ^ nth.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    if !s.opts.latency.is_zero() {
        let mut t = s.opts.latency.as_secs_f64();
        if let Some(k) = s.opts.knee {
            let k = k.max(1) as f64;
            let n = n as f64;
            t *= 1.0 + 0.5 * n.min(k) / k;
            if n > k {
                t *= (n / k).powi(2);
            }
            // Some spread, as real requests have.
            t *= rng.random_range(0.9..1.1);
        }
        tokio::time::sleep(Duration::from_secs_f64(t)).await;
    }
    s.served.fetch_add(1, Ordering::Relaxed);
    let o = &s.opts;
    let fault = faults::draw(o, &mut rng);
    if let Some(f) = fault {
        s.faults[Fault::ALL.iter().position(|x| *x == f).expect("listed")]
            .fetch_add(1, Ordering::Relaxed);
        if !f.spoils_answer() {
            return f.respond(o, Vec::new());
        }
    }
    let mut roll = |rate: f64| rate > 0.0 && rng.random::<f64>() < rate;
    if roll(o.rate_timeout) {
        tokio::time::sleep(o.hang).await;
    }
    if roll(o.rate_invalid_json) {
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            "{\"choices\": [ garbage",
        )
            .into_response();
    }
    let bad_answer = roll(o.rate_bad_answer);
    let truncate = roll(o.rate_truncate);
    let duplicate = roll(o.rate_duplicate);
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid request JSON: {e}"),
            )
                .into_response()
        }
    };
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    if bearer.is_some_and(|v| v.starts_with("Bearer ")) {
        s.with_auth.fetch_add(1, Ordering::Relaxed);
    }
    if req.get("response_format").is_some() {
        s.with_response_format.fetch_add(1, Ordering::Relaxed);
    }
    let stage = headers
        .get("x-mediflow-stage")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("answer");
    let prompt: String = req["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let last = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let schema = req["response_format"]["json_schema"]["schema"].clone();
    let schema = if schema.is_object() {
        Some(schema)
    } else {
        schema_in_prompt(&prompt)
    };
    let mut content = match (stage, schema) {
        ("answer" | "repair" | "eval", Some(_)) if bad_answer => {
            json!({"unexpected": true}).to_string()
        }
        ("answer" | "repair" | "eval", Some(schema)) => {
            instance(&schema, "", &Source::from_message(last), &mut rng).to_string()
        }
        ("judge", _) => verdict(&prompt, o, &mut rng).to_string(),
        ("inject", schema) => inject(&prompt, schema.as_ref(), &mut rng),
        ("document", _) if duplicate => duplicate_document(o.seed, &mut rng),
        ("document", _) => document(&prompt, &mut rng),
        ("instruction", _) => instruction(&prompt),
        _ => answer(&prompt, &Source::from_message(last), &mut rng),
    };
    let mut finish = "stop";
    if truncate {
        content = content.chars().take(content.chars().count() / 2).collect();
        finish = "length";
    }
    let words = |t: &str| (t.split_whitespace().count() as f64 * 1.3).ceil() as u64;
    s.generated_tokens
        .fetch_add(words(&content), Ordering::Relaxed);
    let body = json!({
        "id": format!("mock-{key:x}-{nth}"),
        "object": "chat.completion",
        "model": req["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": words(&prompt), "completion_tokens": words(&content),
                  "total_tokens": words(&prompt) + words(&content)},
    });
    match fault {
        Some(f) => f.respond(o, body.to_string().into_bytes()),
        None => Json(body).into_response(),
    }
}
