//! Retry policy as data: `classify` decides whether an error is worth retrying, `Backoff`
//! decides how long to wait (exponential with full jitter, Retry-After honoured).

use super::TeacherError;
use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Retry,
    DontRetry,
}

pub fn classify(e: &TeacherError) -> Decision {
    match e {
        TeacherError::RateLimited { .. }
        | TeacherError::Server { .. }
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
        let hinted = match e {
            TeacherError::RateLimited { retry_after } => *retry_after,
            TeacherError::Server { retry_after, .. } => *retry_after,
            _ => None,
        };
        if let Some(h) = hinted {
            return h.min(self.max);
        }
        let exp = self.initial.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let cap = exp.min(self.max.as_secs_f64());
        // "Full jitter": uniform in [cap/2, cap] keeps some spread without collapsing to 0.
        let j = rand::rng().random_range(0.5..=1.0);
        Duration::from_secs_f64(cap * j)
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
}
