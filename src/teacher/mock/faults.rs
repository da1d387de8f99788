//! Transient faults the mock teacher injects, as a flaky server (or a proxy in front of
//! one) produces them: 429 and 503 with Retry-After, 500, a connection closed without an
//! answer, an answer that stalls halfway, a body cut short, an empty body. Each is
//! drawn per request from its own rate, or from `rate_faults` spread evenly over all.

use super::MockOptions;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 with Retry-After.
    RateLimited,
    /// 500.
    ServerError,
    /// 503 with Retry-After (a server loading its model, or shedding load).
    Unavailable,
    /// The connection closed before any byte of an answer.
    Reset,
    /// Half the answer, then nothing for `hang` (the client times out first).
    Stall,
    /// Half the answer, then the connection closes.
    CutBody,
    /// 200 with an empty body.
    EmptyBody,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::RateLimited,
        Fault::ServerError,
        Fault::Unavailable,
        Fault::Reset,
        Fault::Stall,
        Fault::CutBody,
        Fault::EmptyBody,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::RateLimited => "rate_limited",
            Fault::ServerError => "server_error",
            Fault::Unavailable => "unavailable",
            Fault::Reset => "reset",
            Fault::Stall => "stall",
            Fault::CutBody => "cut_body",
            Fault::EmptyBody => "empty_body",
        }
    }

    /// Whether the fault spoils an answer (which is made first) rather than replacing it.
    pub fn spoils_answer(self) -> bool {
        matches!(self, Fault::Stall | Fault::CutBody)
    }

    /// The response that plays this fault; `answer`: the JSON answer it spoils.
    pub fn respond(self, o: &MockOptions, answer: Vec<u8>) -> Response {
        let retry_after = [("retry-after", format!("{:.3}", o.retry_after.as_secs_f64()))];
        let half = answer.len() / 2;
        let (first, rest) = (
            Bytes::copy_from_slice(&answer[..half]),
            Bytes::copy_from_slice(&answer[half..]),
        );
        let json = [("content-type", "application/json")];
        match self {
            Fault::RateLimited => {
                (StatusCode::TOO_MANY_REQUESTS, retry_after, "rate limited").into_response()
            }
            Fault::ServerError => {
                (StatusCode::INTERNAL_SERVER_ERROR, "injected server error").into_response()
            }
            Fault::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                retry_after,
                "loading model",
            )
                .into_response(),
            // A body whose first frame is an error: the server drops the connection before
            // it has written the status line.
            Fault::Reset => {
                let s = futures::stream::once(async { Err::<Bytes, _>(reset("injected reset")) });
                (StatusCode::OK, json, Body::from_stream(s)).into_response()
            }
            Fault::Stall => {
                let hang = o.hang;
                let s = futures::stream::iter([Ok::<_, std::io::Error>(first)]).chain(
                    futures::stream::once(async move {
                        tokio::time::sleep(hang).await;
                        Ok(rest)
                    }),
                );
                (StatusCode::OK, json, Body::from_stream(s)).into_response()
            }
            // The first half is flushed before the error (a pause lets the server write it).
            Fault::CutBody => {
                let s = futures::stream::iter([Ok(first)]).chain(futures::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err(reset("injected cut"))
                }));
                (StatusCode::OK, json, Body::from_stream(s)).into_response()
            }
            Fault::EmptyBody => (StatusCode::OK, json, "").into_response(),
        }
    }
}

fn reset(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, what.to_string())
}

/// The fault a request gets, if any: each kind's own rate in turn, then `rate_faults`
/// (a kind picked evenly).
pub fn draw(o: &MockOptions, rng: &mut ChaCha8Rng) -> Option<Fault> {
    let own = [
        (o.rate_429, Fault::RateLimited),
        (o.rate_500, Fault::ServerError),
        (o.rate_503, Fault::Unavailable),
        (o.rate_reset, Fault::Reset),
        (o.rate_stall, Fault::Stall),
        (o.rate_cut_body, Fault::CutBody),
        (o.rate_empty_body, Fault::EmptyBody),
    ];
    for (rate, f) in own {
        if rate > 0.0 && rng.random::<f64>() < rate {
            return Some(f);
        }
    }
    if o.rate_faults > 0.0 && rng.random::<f64>() < o.rate_faults {
        return Some(Fault::ALL[rng.random_range(0..Fault::ALL.len())]);
    }
    None
}
