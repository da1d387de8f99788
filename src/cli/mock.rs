//! `mediflow mock-teacher`: serve the mock OpenAI-compatible teacher until interrupted.

use clap::Args;
use mediflow::error::Error;
use mediflow::teacher::mock::{self, MockOptions};
use std::io::Write;
use std::time::Duration;

#[derive(Args, Clone)]
pub struct MockArgs {
    /// Address to listen on (port 0 picks a free port; the URL is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub addr: std::net::SocketAddr,
    /// Fixed service time per request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Requests served at once (the rest queue); unlimited when absent.
    #[arg(long)]
    pub capacity: Option<usize>,
    /// Throughput falls past this many requests in flight (service time grows with the
    /// load; needs --latency-ms).
    #[arg(long)]
    pub knee: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Share of requests answered 429 (with Retry-After).
    #[arg(long, default_value_t = 0.0)]
    pub rate_429: f64,
    /// Share of requests answered 500.
    #[arg(long, default_value_t = 0.0)]
    pub rate_500: f64,
    /// Share of requests answered 503 (with Retry-After).
    #[arg(long, default_value_t = 0.0)]
    pub rate_503: f64,
    /// Share of requests whose connection is closed without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub rate_reset: f64,
    /// Share of answers that stall halfway for --hang-ms.
    #[arg(long, default_value_t = 0.0)]
    pub rate_stall: f64,
    /// Share of answers whose body is cut short (the connection closes halfway).
    #[arg(long, default_value_t = 0.0)]
    pub rate_cut_body: f64,
    /// Share of requests answered 200 with an empty body.
    #[arg(long, default_value_t = 0.0)]
    pub rate_empty_body: f64,
    /// Share of requests that get one of the transient faults above (429, 500, 503,
    /// reset, stall, cut body, empty body), each kind as likely: a flaky server or proxy.
    #[arg(long, default_value_t = 0.0)]
    pub rate_faults: f64,
    /// The Retry-After a 429 or 503 sends, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub retry_after_ms: u64,
    /// Share of requests that hang for --hang-ms before answering.
    #[arg(long, default_value_t = 0.0)]
    pub rate_timeout: f64,
    #[arg(long, default_value_t = 30_000)]
    pub hang_ms: u64,
    /// Share of responses whose HTTP body is not JSON.
    #[arg(long, default_value_t = 0.0)]
    pub rate_invalid_json: f64,
    /// Share of `json` answers that parse but violate the schema.
    #[arg(long, default_value_t = 0.0)]
    pub rate_bad_answer: f64,
    /// Share of answers cut short with finish_reason=length.
    #[arg(long, default_value_t = 0.0)]
    pub rate_truncate: f64,
    /// Share of judged records the judge scores low (1-2 instead of 4-5; every sample of a
    /// record agrees up to +-1).
    #[arg(long, default_value_t = 0.0)]
    pub rate_low_judge: f64,
    /// Share of documents that are one fixed text (so records duplicate each other).
    #[arg(long, default_value_t = 0.0)]
    pub rate_duplicate: f64,
    /// Serve Prometheus `/metrics` (vLLM names): requests running, generated tokens.
    #[arg(long)]
    pub metrics: bool,
    /// Serve llama.cpp's `/slots` with this many parallel slots.
    #[arg(long)]
    pub slots: Option<usize>,
}

impl MockArgs {
    pub fn options(&self) -> MockOptions {
        MockOptions {
            latency: Duration::from_millis(self.latency_ms),
            capacity: self.capacity,
            knee: self.knee,
            seed: self.seed,
            rate_429: self.rate_429,
            rate_500: self.rate_500,
            rate_503: self.rate_503,
            rate_reset: self.rate_reset,
            rate_stall: self.rate_stall,
            rate_cut_body: self.rate_cut_body,
            rate_empty_body: self.rate_empty_body,
            rate_faults: self.rate_faults,
            retry_after: Duration::from_millis(self.retry_after_ms),
            rate_timeout: self.rate_timeout,
            hang: Duration::from_millis(self.hang_ms),
            rate_invalid_json: self.rate_invalid_json,
            rate_bad_answer: self.rate_bad_answer,
            rate_truncate: self.rate_truncate,
            rate_low_judge: self.rate_low_judge,
            rate_duplicate: self.rate_duplicate,
            metrics: self.metrics,
            slots: self.slots,
        }
    }
}

pub async fn exec(a: MockArgs) -> Result<(), Error> {
    let server = mock::start(a.addr, a.options())
        .await
        .map_err(|e| Error::io(format!("binding {}", a.addr), e))?;
    println!("mock teacher listening on {}", server.base_url());
    std::io::stdout().flush().ok();
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| Error::io("waiting for ctrl-c", e))?;
    eprintln!("mock teacher: served {} requests", server.served());
    Ok(())
}
