//! Load signals from model servers, for the adaptive controller: Prometheus `/metrics`
//! (vLLM, SGLang, TGI, llama.cpp with `--metrics`) and llama.cpp's `/slots`.
//!
//! Among them, a count of the tokens the server has generated so far, which the
//! controller and `bench concurrency` sample over time to measure throughput directly
//! rather than from the completions that happen to end in a window. vLLM and SGLang count
//! every generated token; llama.cpp counts a request's tokens only when it ends, so the
//! tokens of its running requests (`/slots`, `n_decoded`) are added.

use super::adaptive::Signals;
use serde_json::Value;
use std::time::Duration;

/// Metric names per server: requests running, requests waiting, KV-cache usage (0..1).
const RUNNING: &[&str] = &[
    "vllm:num_requests_running",
    "sglang:num_running_reqs",
    "llamacpp:requests_processing",
    "tgi_batch_current_size",
];
const WAITING: &[&str] = &[
    "vllm:num_requests_waiting",
    "sglang:num_queue_reqs",
    "llamacpp:requests_deferred",
    "tgi_queue_size",
];
const KV_USAGE: &[&str] = &[
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "sglang:token_usage",
    "llamacpp:kv_cache_usage_ratio",
];
/// Counters of generated tokens.
const GENERATED: &[&str] = &[
    "vllm:generation_tokens_total",
    "sglang:generation_tokens_total",
    "llamacpp:tokens_predicted_total",
];

/// Read the known gauges from a Prometheus text exposition (summed over label sets, e.g.
/// one per served model). `None` when the text carries none of them. (The
/// `prometheus-parse` crate rejects the `:` that vLLM's and llama.cpp's metric names
/// carry, so the few lines needed are read here: `name{labels} value [timestamp]`.)
pub fn parse_metrics(text: &str) -> Option<Signals> {
    let samples: Vec<(&str, f64)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let name_end = l.find(|c: char| c == '{' || c.is_whitespace())?;
            let rest = match l[name_end..].strip_prefix('{') {
                Some(r) => &r[r.find('}')? + 1..],
                None => &l[name_end..],
            };
            let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
            Some((&l[..name_end], value))
        })
        .collect();
    let sum = |names: &[&str]| -> Option<f64> {
        let mut found = None;
        for (name, v) in &samples {
            if names.contains(name) {
                *found.get_or_insert(0.0) += v;
            }
        }
        found.filter(|v: &f64| v.is_finite())
    };
    let s = Signals {
        running: sum(RUNNING),
        waiting: sum(WAITING),
        kv_usage: sum(KV_USAGE).map(|k| k.clamp(0.0, 1.0)),
        slots: None,
        generated_tokens: sum(GENERATED),
    };
    (s != Signals::default()).then_some(s)
}

/// What llama.cpp's `/slots` answer (an array, one object per slot) tells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slots {
    pub count: usize,
    pub processing: usize,
    /// Tokens generated so far by the requests running now.
    pub decoding: f64,
}

pub fn parse_slots(body: &Value) -> Option<Slots> {
    let a = body.as_array()?;
    if a.is_empty() || a.iter().any(|s| s.get("id").is_none()) {
        return None;
    }
    let running = a.iter().filter(|s| s["is_processing"] == true);
    Some(Slots {
        count: a.len(),
        processing: running.clone().count(),
        decoding: running
            .filter_map(|s| s["next_token"][0]["n_decoded"].as_f64())
            .sum(),
    })
}

/// What one reading of a server gave: its `/metrics` signals and its `/slots`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    pub metrics: Option<Signals>,
    pub slots: Option<Slots>,
}

impl Reading {
    /// Both combined: the slot count, and the running requests' tokens added to a
    /// llama.cpp generated-token count.
    pub fn signals(&self) -> Option<Signals> {
        let Some(sl) = self.slots else {
            return self.metrics;
        };
        let mut s = self.metrics.unwrap_or_default();
        s.slots = Some(sl.count);
        if let Some(g) = s.generated_tokens.as_mut() {
            *g += sl.decoding;
        }
        Some(s)
    }
}

/// Read a server's `/metrics` when `metrics` and its `/slots` when `slots` (each left
/// out where the server does not answer it usefully).
pub async fn fetch(
    client: &reqwest::Client,
    root: &str,
    key: Option<&str>,
    metrics: bool,
    slots: bool,
) -> Reading {
    let get = |path: &str| {
        let mut rb = client
            .get(format!("{root}{path}"))
            .timeout(Duration::from_secs(5));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        rb.send()
    };
    let mut r = Reading::default();
    if metrics {
        if let Ok(resp) = get("/metrics").await {
            if resp.status().is_success() {
                r.metrics = parse_metrics(&resp.text().await.unwrap_or_default());
            }
        }
    }
    if slots {
        if let Ok(resp) = get("/slots").await {
            if resp.status().is_success() {
                r.slots = parse_slots(&resp.json().await.unwrap_or(Value::Null));
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vllm_and_llamacpp_metrics() {
        let vllm = "# HELP vllm:num_requests_waiting Number of requests waiting.\n\
# TYPE vllm:num_requests_waiting gauge\n\
vllm:num_requests_waiting{model_name=\"m\"} 3.0\n\
# TYPE vllm:num_requests_running gauge\n\
vllm:num_requests_running{model_name=\"m\"} 61.0\n\
# TYPE vllm:gpu_cache_usage_perc gauge\n\
vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.42\n";
        let s = parse_metrics(vllm).unwrap();
        assert_eq!(s.waiting, Some(3.0));
        assert_eq!(s.running, Some(61.0));
        assert_eq!(s.kv_usage, Some(0.42));
        let llama = "# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 8\n\
# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 0\n\
# TYPE llamacpp:tokens_predicted_total counter\nllamacpp:tokens_predicted_total 1.23457e+06\n";
        let s = parse_metrics(llama).unwrap();
        assert_eq!(
            (s.running, s.waiting, s.kv_usage),
            (Some(8.0), Some(0.0), None)
        );
        assert_eq!(s.generated_tokens, Some(1_234_570.0));
        assert_eq!(
            parse_metrics("vllm:generation_tokens_total{model_name=\"m\"} 4096.0\n")
                .and_then(|s| s.generated_tokens),
            Some(4096.0)
        );
        assert_eq!(parse_metrics("# nothing here\nother_metric 1\n"), None);
        let slots = serde_json::json!([
            {"id": 0, "is_processing": false, "next_token": [{"n_decoded": 0}]},
            {"id": 1, "is_processing": true, "next_token": [{"n_decoded": 17}]},
            {"id": 2, "is_processing": true, "next_token": [{"n_decoded": 5}]},
        ]);
        let sl = parse_slots(&slots).unwrap();
        assert_eq!((sl.count, sl.processing, sl.decoding), (3, 2, 22.0));
        assert_eq!(parse_slots(&serde_json::json!({"error": "x"})), None);
    }
}
