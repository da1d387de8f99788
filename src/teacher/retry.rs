//! Retry policy as data: `classify` decides whether an error is worth retrying and
//! whether the retry uses up an attempt, `Backoff` decides how long to wait (exponential
//! with jitter, Retry-After honoured), and `Policy` adds the count and the time budget
//! one item's calls share (`Clock`).

use super::TeacherError;
use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Worth another try, and the failed one counts against the attempts.
    Retry,
    /// The server asks for patience (429, 503): retry after its Retry-After (or a
    /// backoff) without using up an attempt; only the time budget bounds these.
    Wait,
    DontRetry,
}

pub fn classify(e: &TeacherError) -> Decision {
    match e {
        TeacherError::RateLimited { .. } | TeacherError::Server { status: 503, .. } => {
            Decision::Wait
        }
        TeacherError::Server { .. }
        | TeacherError::Timeout
        | TeacherError::Connection(_)
        | TeacherError::Truncated { .. }
        | TeacherError::Empty
        | TeacherError::BadResponse(_) => Decision::Retry,
        TeacherError::Client { .. } => Decision::DontRetry,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Delay before retry number `attempt` (1 = first retry). A server's Retry-After wins
    /// when present (capped at `max`).
    pub fn delay(&self, attempt: u32, e: &TeacherError) -> Duration {
        match hint(e) {
            Some(h) => h.min(self.max),
            None => self.jittered(attempt),
        }
    }

    /// `initial` doubled per retry up to `max`, times a uniform factor in [0.5, 1]: some
    /// spread (so clients that failed together do not retry together) without
    /// collapsing to 0.
    pub fn jittered(&self, attempt: u32) -> Duration {
        let exp = self.initial.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let cap = exp.min(self.max.as_secs_f64());
        let j = rand::rng().random_range(0.5..=1.0);
        Duration::from_secs_f64(cap * j)
    }
}

/// The server's Retry-After, where it sent one.
fn hint(e: &TeacherError) -> Option<Duration> {
    match e {
        TeacherError::RateLimited { retry_after } => *retry_after,
        TeacherError::Server { retry_after, .. } => *retry_after,
        _ => None,
    }
}

/// How one item's teacher calls are retried (`[engine]` settings).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failed attempts per call (`Decision::Retry` errors, first try included) before
    /// the item is rejected. Waits (`Decision::Wait`, every endpoint down) do not count.
    pub max_attempts: u32,
    /// The most time one item spends on failed attempts and the waits after them, all
    /// its calls together; past it the item is rejected with the last error's reason.
    pub budget: Duration,
    pub backoff: Backoff,
    /// The longest Retry-After honoured.
    pub retry_after_max: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Sleep this long, then try again.
    After(Duration),
    /// Give up: not retryable.
    Refused,
    /// Give up: `max_attempts` failed attempts.
    OutOfAttempts,
    /// Give up: the item's time budget is spent.
    OutOfTime,
}

impl Policy {
    /// After a failed attempt: retry when, or give up. `attempt`: this call's attempts so
    /// far (the backoff grows with them); `failed`: those that count, this one included
    /// when it does; `waiting`: the error is not the item's to count (every endpoint is
    /// down); `spent`: the item's budget used, this attempt included.
    pub fn next(
        &self,
        e: &TeacherError,
        (attempt, failed): (u32, u32),
        waiting: bool,
        spent: Duration,
    ) -> Next {
        let decision = classify(e);
        if decision == Decision::DontRetry {
            return Next::Refused;
        }
        let counts = decision == Decision::Retry && !waiting;
        if counts && failed >= self.max_attempts {
            return Next::OutOfAttempts;
        }
        let delay = match hint(e) {
            Some(h) => h.min(self.retry_after_max),
            None => self.backoff.jittered(attempt.max(1)),
        };
        if spent + delay > self.budget {
            return Next::OutOfTime;
        }
        Next::After(delay)
    }
}

/// The time one item has spent on failed attempts and retry waits, shared by its calls
/// (judge samples run concurrently, so it is atomic).
#[derive(Debug, Default)]
pub struct Clock {
    spent_ms: AtomicU64,
}

impl Clock {
    pub fn spend(&self, d: Duration) -> Duration {
        let ms = d.as_millis().min(u64::MAX as u128) as u64;
        Duration::from_millis(self.spent_ms.fetch_add(ms, Ordering::Relaxed) + ms)
    }

    pub fn spent(&self) -> Duration {
        Duration::from_millis(self.spent_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_and_backoff() {
        assert_eq!(classify(&TeacherError::Timeout), Decision::Retry);
        assert_eq!(
            classify(&TeacherError::Client {
                status: 400,
                body: String::new()
            }),
            Decision::DontRetry
        );
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let d1 = b.delay(1, &TeacherError::Timeout);
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        let d10 = b.delay(10, &TeacherError::Timeout);
        assert!(d10 <= Duration::from_secs(2) && d10 >= Duration::from_secs(1));
        let ra = TeacherError::RateLimited {
            retry_after: Some(Duration::from_millis(700)),
        };
        assert_eq!(b.delay(1, &ra), Duration::from_millis(700));
        let big = TeacherError::RateLimited {
            retry_after: Some(Duration::from_secs(60)),
        };
        assert_eq!(b.delay(1, &big), Duration::from_secs(2));
    }

    fn policy() -> Policy {
        Policy {
            max_attempts: 3,
            budget: Duration::from_secs(100),
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(2),
            },
            retry_after_max: Duration::from_secs(30),
        }
    }

    fn server(status: u16, retry_after: Option<Duration>) -> TeacherError {
        TeacherError::Server {
            status,
            body: String::new(),
            retry_after,
        }
    }

    /// A 429 (and a 503) waits as long as Retry-After says, up to its cap, however many
    /// attempts came before: only the time budget ends those; a 500 uses up attempts.
    #[test]
    fn rate_limits_wait_their_retry_after_and_do_not_use_up_attempts() {
        let p = policy();
        let s = Duration::from_secs(1);
        let r429 = |ra| TeacherError::RateLimited { retry_after: ra };
        let ten = Duration::from_secs(10);
        assert_eq!(p.next(&r429(Some(ten)), (1, 0), false, s), Next::After(ten));
        assert_eq!(
            p.next(&r429(Some(ten)), (99, 3), false, s),
            Next::After(ten)
        );
        let r503 = server(503, Some(ten));
        assert_eq!(p.next(&r503, (99, 3), false, s), Next::After(ten));
        // capped at retry_after_max
        let long = r429(Some(Duration::from_secs(600)));
        assert_eq!(
            p.next(&long, (1, 0), false, s),
            Next::After(Duration::from_secs(30))
        );
        // a 429 without Retry-After backs off, more the more attempts came before
        let first = p.next(&r429(None), (1, 0), false, s);
        assert!(matches!(first, Next::After(d) if d <= Duration::from_millis(100)));
        let later = p.next(&r429(None), (9, 0), false, s);
        assert!(matches!(later, Next::After(d) if d >= Duration::from_secs(1)));
        // 500: the third failed attempt is the last
        let r500 = server(500, None);
        assert!(matches!(p.next(&r500, (2, 2), false, s), Next::After(_)));
        assert_eq!(p.next(&r500, (3, 3), false, s), Next::OutOfAttempts);
        // ...unless every endpoint is down: then it waits for one
        assert!(matches!(p.next(&r500, (4, 3), true, s), Next::After(_)));
        let r400 = TeacherError::Client {
            status: 400,
            body: String::new(),
        };
        assert_eq!(p.next(&r400, (1, 1), false, s), Next::Refused);
    }

    #[test]
    fn the_time_budget_ends_every_kind_of_retry() {
        let p = policy();
        let nearly = Duration::from_millis(99_950);
        let ra = TeacherError::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
        };
        assert_eq!(p.next(&ra, (1, 0), false, nearly), Next::OutOfTime);
        let over = Duration::from_secs(101);
        assert_eq!(
            p.next(&TeacherError::Timeout, (1, 0), true, over),
            Next::OutOfTime
        );
        let c = Clock::default();
        c.spend(Duration::from_millis(1500));
        assert_eq!(c.spend(Duration::from_millis(500)), Duration::from_secs(2));
        assert_eq!(c.spent(), Duration::from_secs(2));
    }
}
