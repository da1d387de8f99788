//! OpenAI-compatible chat-completions client (vLLM, SGLang, TGI, llama.cpp, Ollama, ...).
//! Requests are spread over one or more endpoints by `endpoints::Pool` (adaptive
//! concurrency per endpoint, health, failover). The API key is read from an environment
//! variable and never logged or written anywhere.

use super::endpoints::{self, Outcome, Pool};
use super::{ChatRequest, ChatResponse, Teacher, TeacherError, Usage};
use crate::teacher::TeacherConfig;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct HttpTeacher {
    client: reqwest::Client,
    pool: Arc<Pool>,
    model: String,
    api_key: Option<String>,
    /// Cleared the first time a server refuses `response_format` (then prompt-only).
    server_schema: AtomicBool,
    /// The smallest context (`max_model_len`) the endpoints' `/models` gave for the
    /// model at the last probe; 0 = not known.
    context: AtomicUsize,
}

impl HttpTeacher {
    pub fn new(t: &TeacherConfig) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs_f64(t.timeout_secs);
        // A named key that is not there is refused, not sent without one.
        let api_key = t.api_key().map_err(anyhow::Error::msg)?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .pool_max_idle_per_host(1024)
            .build()?;
        let (pool, new) = Pool::shared(&t.base_urls, &t.adaptive, &t.health);
        if new {
            endpoints::spawn_monitor(Arc::downgrade(&pool), client.clone(), api_key.clone());
        }
        Ok(HttpTeacher {
            client,
            pool,
            model: t.model.clone(),
            api_key,
            server_schema: AtomicBool::new(true),
            context: AtomicUsize::new(0),
        })
    }

    fn body(&self, req: &ChatRequest, with_schema: bool) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": req.messages,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "stream": false,
        });
        if let Some(seed) = req.seed {
            body["seed"] = json!(seed);
        }
        if let (true, Some(schema)) = (with_schema, &req.json_schema) {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": { "name": "answer", "schema": schema, "strict": true },
            });
        }
        body
    }

    /// Send on a healthy endpoint; a request that gets no answer from one endpoint fails
    /// over to another healthy one at once (it does not count as an attempt).
    async fn send(
        &self,
        req: &ChatRequest,
        with_schema: bool,
    ) -> Result<ChatResponse, TeacherError> {
        let mut tried = Vec::new();
        loop {
            let slot = self
                .pool
                .acquire(&tried)
                .await
                .map_err(TeacherError::Connection)?;
            let ep = slot.ep;
            let res = self
                .send_to(&self.pool.endpoints[ep].base, req, with_schema)
                .await;
            let outcome = match &res {
                Ok(r) => Outcome::Answered {
                    tokens: r.usage.completion_tokens,
                },
                Err(TeacherError::Truncated { usage, .. }) => Outcome::Answered {
                    tokens: usage.completion_tokens,
                },
                Err(TeacherError::Empty | TeacherError::BadResponse(_)) => {
                    Outcome::Answered { tokens: 0 }
                }
                Err(TeacherError::RateLimited { retry_after })
                | Err(TeacherError::Server {
                    status: 503,
                    retry_after,
                    ..
                }) => Outcome::Overloaded {
                    retry_after: *retry_after,
                },
                Err(TeacherError::Timeout) => Outcome::TimedOut,
                Err(TeacherError::Server { .. }) | Err(TeacherError::Connection(_)) => {
                    Outcome::Failed
                }
                Err(TeacherError::Client { .. }) => Outcome::Refused,
            };
            self.pool.release(slot, outcome, req.stage);
            tried.push(ep);
            if matches!(outcome, Outcome::Failed | Outcome::TimedOut)
                && self.pool.healthy_untried(&tried)
            {
                continue;
            }
            return res;
        }
    }

    async fn send_to(
        &self,
        base: &str,
        req: &ChatRequest,
        with_schema: bool,
    ) -> Result<ChatResponse, TeacherError> {
        let mut rb = self
            .client
            .post(format!("{base}/chat/completions"))
            .header("X-Mediflow-Stage", req.stage)
            .json(&self.body(req, with_schema));
        if let Some(k) = &self.api_key {
            rb = rb.bearer_auth(k);
        }
        let resp = rb.send().await.map_err(map_reqwest)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let text = resp.text().await.map_err(map_reqwest)?;
        match status {
            200..=299 => {}
            429 => return Err(TeacherError::RateLimited { retry_after }),
            500..=599 => {
                return Err(TeacherError::Server {
                    status,
                    body: clip(&text),
                    retry_after,
                })
            }
            _ => {
                return Err(TeacherError::Client {
                    status,
                    body: clip(&text),
                })
            }
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| TeacherError::BadResponse(format!("not JSON: {e}")))?;
        let choice = v["choices"]
            .get(0)
            .ok_or_else(|| TeacherError::BadResponse("no choices".into()))?;
        let content = choice["message"]["content"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let finish_reason = choice["finish_reason"].as_str().unwrap_or("").to_string();
        let mut usage: Usage = serde_json::from_value(v["usage"].clone()).unwrap_or_default();
        // Prefix-cache hits: OpenAI's field (vLLM, SGLang), or llama.cpp's timings.
        usage.cached_tokens = v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .or_else(|| v["timings"]["cache_n"].as_u64())
            .unwrap_or(0);
        if finish_reason == "length" {
            return Err(TeacherError::Truncated {
                partial: content,
                usage,
            });
        }
        if content.trim().is_empty() {
            return Err(TeacherError::Empty);
        }
        Ok(ChatResponse {
            content,
            finish_reason,
            usage,
        })
    }
}

fn clip(s: &str) -> String {
    s.chars().take(300).collect()
}

fn map_reqwest(e: reqwest::Error) -> TeacherError {
    if e.is_timeout() {
        TeacherError::Timeout
    } else if e.is_connect() || e.is_request() || e.is_body() {
        TeacherError::Connection(e.to_string())
    } else {
        TeacherError::BadResponse(e.to_string())
    }
}

#[async_trait::async_trait]
impl Teacher for HttpTeacher {
    fn backend(&self) -> &'static str {
        "openai"
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, TeacherError> {
        let with_schema = req.json_schema.is_some() && self.server_schema.load(Ordering::Relaxed);
        match self.send(req, with_schema).await {
            // A server that does not support `response_format` answers 400/422: fall back to
            // the prompt-only schema for the rest of the run.
            Err(TeacherError::Client {
                status: 400 | 422,
                body,
            }) if with_schema => {
                if self.server_schema.swap(false, Ordering::Relaxed) {
                    tracing::warn!("teacher refused response_format ({body}); continuing with the schema in the prompt only");
                }
                self.send(req, false).await
            }
            other => other,
        }
    }

    fn capacity(&self) -> Option<usize> {
        self.pool.capacity()
    }

    fn context_tokens(&self) -> Option<usize> {
        Some(self.context.load(Ordering::Relaxed)).filter(|&n| n > 0)
    }

    fn current_limit(&self) -> Option<usize> {
        self.pool.current_limit()
    }

    fn all_down(&self) -> bool {
        self.pool.all_down()
    }

    fn status_line(&self) -> Option<String> {
        Some(self.pool.status_line())
    }

    fn control_report(&self) -> Option<Value> {
        Some(self.pool.report())
    }

    async fn probe(&self) -> Result<String, String> {
        let mut seen = Vec::new();
        for ep in &self.pool.endpoints {
            let mut rb = self
                .client
                .get(format!("{}/models", ep.base))
                .timeout(Duration::from_secs(10));
            if let Some(k) = &self.api_key {
                rb = rb.bearer_auth(k);
            }
            match rb.send().await {
                Ok(r) if r.status().is_success() => {
                    let v: Value = r.json().await.unwrap_or(Value::Null);
                    let ids: Vec<String> = v["data"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|m| m["id"].as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    if let Some(n) = max_model_len(&v, &self.model) {
                        let c = self.context.load(Ordering::Relaxed);
                        if c == 0 || n < c {
                            self.context.store(n, Ordering::Relaxed);
                        }
                    }
                    seen.push(format!("{} (models: {})", ep.base, ids.join(", ")));
                }
                Ok(r) => return Err(format!("{}/models answered {}", ep.base, r.status())),
                Err(e) => return Err(format!("{}: {e}", ep.base)),
            }
        }
        Ok(seen.join("; "))
    }
}

/// The context length a `/models` answer gives for `model` (vLLM and SGLang list
/// `max_model_len` per model), from its entry, or the only entry when none has its name.
fn max_model_len(models: &Value, model: &str) -> Option<usize> {
    let data = models["data"].as_array()?;
    let entry = data
        .iter()
        .find(|m| m["id"] == model)
        .or_else(|| (data.len() == 1).then(|| &data[0]))?;
    entry["max_model_len"]
        .as_u64()
        .filter(|&n| n > 0)
        .map(|n| n as usize)
}
