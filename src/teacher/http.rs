//! OpenAI-compatible chat-completions client (vLLM, SGLang, TGI, llama.cpp, Ollama, ...).
//! Several base URLs are load-balanced by in-flight count. The API key is read from an
//! environment variable and never logged or written anywhere.

use super::{ChatRequest, ChatResponse, Teacher, TeacherError, Usage};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

struct Endpoint {
    base: String,
    in_flight: AtomicUsize,
}

pub struct HttpTeacher {
    client: reqwest::Client,
    endpoints: Vec<Endpoint>,
    rotate: AtomicUsize,
    model: String,
    api_key: Option<String>,
    /// Cleared the first time a server refuses `response_format` (then prompt-only).
    server_schema: AtomicBool,
}

impl HttpTeacher {
    pub fn new(
        base_urls: &[String],
        model: &str,
        api_key_env: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let api_key = api_key_env
            .and_then(|v| std::env::var(v).ok())
            .filter(|k| !k.is_empty());
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .pool_max_idle_per_host(1024)
            .build()?;
        Ok(HttpTeacher {
            client,
            endpoints: base_urls
                .iter()
                .map(|b| Endpoint {
                    base: b.trim_end_matches('/').to_string(),
                    in_flight: AtomicUsize::new(0),
                })
                .collect(),
            rotate: AtomicUsize::new(0),
            model: model.to_string(),
            api_key,
            server_schema: AtomicBool::new(true),
        })
    }

    /// The endpoint with the fewest requests in flight (ties broken round-robin).
    fn pick(&self) -> &Endpoint {
        let n = self.endpoints.len();
        let start = self.rotate.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|k| &self.endpoints[(start + k) % n])
            .min_by_key(|e| e.in_flight.load(Ordering::Relaxed))
            .expect("at least one endpoint")
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

    async fn send(
        &self,
        req: &ChatRequest,
        with_schema: bool,
    ) -> Result<ChatResponse, TeacherError> {
        let ep = self.pick();
        ep.in_flight.fetch_add(1, Ordering::Relaxed);
        let res = self.send_to(ep, req, with_schema).await;
        ep.in_flight.fetch_sub(1, Ordering::Relaxed);
        res
    }

    async fn send_to(
        &self,
        ep: &Endpoint,
        req: &ChatRequest,
        with_schema: bool,
    ) -> Result<ChatResponse, TeacherError> {
        let mut rb = self
            .client
            .post(format!("{}/chat/completions", ep.base))
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
        let usage: Usage = serde_json::from_value(v["usage"].clone()).unwrap_or_default();
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

    async fn probe(&self) -> Result<String, String> {
        let mut seen = Vec::new();
        for ep in &self.endpoints {
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
                    seen.push(format!("{} (models: {})", ep.base, ids.join(", ")));
                }
                Ok(r) => return Err(format!("{}/models answered {}", ep.base, r.status())),
                Err(e) => return Err(format!("{}: {e}", ep.base)),
            }
        }
        Ok(seen.join("; "))
    }
}
