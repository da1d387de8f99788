//! Load signals from model servers, for the adaptive controller: Prometheus `/metrics`
//! (vLLM, SGLang, TGI, llama.cpp with `--metrics`) and llama.cpp's `/slots`.

use super::adaptive::Signals;

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
    };
    (s != Signals::default()).then_some(s)
}

/// The number of slots in llama.cpp's `/slots` answer (an array, one object per slot).
pub fn parse_slots(body: &serde_json::Value) -> Option<usize> {
    let a = body.as_array()?;
    (!a.is_empty() && a.iter().all(|s| s.get("id").is_some())).then_some(a.len())
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
# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 0\n";
        let s = parse_metrics(llama).unwrap();
        assert_eq!(
            (s.running, s.waiting, s.kv_usage),
            (Some(8.0), Some(0.0), None)
        );
        assert_eq!(parse_metrics("# nothing here\nother_metric 1\n"), None);
        let slots = serde_json::json!([{"id": 0, "is_processing": false}, {"id": 1, "is_processing": true}]);
        assert_eq!(parse_slots(&slots), Some(2));
        assert_eq!(parse_slots(&serde_json::json!({"error": "x"})), None);
    }
}
