//! When a failed attempt is tried again: how many times, after which delays.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// How the delay grows from one retry to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// The same delay before every retry.
    Fixed,
    /// `delay × n` before retry `n`.
    Linear,
    /// `delay × 2^(n-1)` before retry `n`.
    Exponential,
}

/// When a failed attempt is tried again. Written by `#[task(retries = …, …)]`.
///
/// Retry `n` (from 1) waits the base delay for `n`, capped at `max_delay`; with
/// `jitter`, a uniformly random part of it, between half and all of it, so tasks that
/// failed together do not retry in lock-step. It serialises its durations as
/// milliseconds (`delay_ms`, `max_delay_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RetryPolicy {
    /// Retries after the first attempt: at most `retries + 1` attempts.
    pub retries: u32,
    /// The delay before the first retry.
    #[serde(rename = "delay_ms", serialize_with = "millis")]
    pub delay: Duration,
    /// How the delay grows.
    pub backoff: Backoff,
    /// No delay is longer.
    #[serde(rename = "max_delay_ms", serialize_with = "millis_option")]
    pub max_delay: Option<Duration>,
    /// Whether to spread each delay over `[delay / 2, delay]`.
    pub jitter: bool,
    /// Whether a panic is retried like an error (by default it is not: a panic is a bug).
    pub retry_panics: bool,
}

/// A duration as milliseconds, a number.
pub(crate) fn millis<S: serde::Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(duration.as_secs_f64() * 1e3)
}

/// An optional duration as milliseconds, or `null`.
pub(crate) fn millis_option<S: serde::Serializer>(
    duration: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => s.serialize_some(&(duration.as_secs_f64() * 1e3)),
        None => s.serialize_none(),
    }
}

impl RetryPolicy {
    /// No retries.
    pub const NONE: Self = Self {
        retries: 0,
        delay: Duration::from_secs(1),
        backoff: Backoff::Exponential,
        max_delay: None,
        jitter: true,
        retry_panics: false,
    };

    /// The delay before retry `retry` (from 1), before jitter.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let n = retry.max(1);
        let delay = match self.backoff {
            Backoff::Fixed => self.delay,
            Backoff::Linear => self.delay.saturating_mul(n),
            Backoff::Exponential => self.delay.saturating_mul(2u32.saturating_pow(n - 1)),
        };
        self.max_delay.map_or(delay, |cap| delay.min(cap))
    }

    /// The delay before retry `retry` (from 1), with jitter when enabled.
    pub fn delay_before(&self, retry: u32) -> Duration {
        let base = self.base_delay(retry);
        if self.jitter {
            base.mul_f64(0.5 + 0.5 * unit_random())
        } else {
            base
        }
    }
}

/// A uniform sample of `[0, 1)`: std's per-process random hash keys, advanced per call.
fn unit_random() -> f64 {
    let bits = RandomState::new().hash_one(std::time::Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff) -> RetryPolicy {
        RetryPolicy {
            retries: 5,
            delay: Duration::from_millis(100),
            backoff,
            max_delay: None,
            jitter: false,
            retry_panics: false,
        }
    }

    #[test]
    fn delays_grow_as_the_backoff_says() {
        let ms = |p: RetryPolicy| {
            (1..=4)
                .map(|n| p.base_delay(n).as_millis())
                .collect::<Vec<_>>()
        };
        assert_eq!(ms(policy(Backoff::Fixed)), [100, 100, 100, 100]);
        assert_eq!(ms(policy(Backoff::Linear)), [100, 200, 300, 400]);
        assert_eq!(ms(policy(Backoff::Exponential)), [100, 200, 400, 800]);
        let capped = RetryPolicy {
            max_delay: Some(Duration::from_millis(250)),
            ..policy(Backoff::Exponential)
        };
        assert_eq!(ms(capped), [100, 200, 250, 250]);
    }

    #[test]
    fn huge_retry_counts_saturate_instead_of_overflowing() {
        let p = policy(Backoff::Exponential);
        assert_eq!(
            p.base_delay(200),
            Duration::from_millis(100).saturating_mul(u32::MAX)
        );
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_delay() {
        let p = RetryPolicy {
            jitter: true,
            ..policy(Backoff::Fixed)
        };
        let delays: Vec<_> = (0..500).map(|_| p.delay_before(1)).collect();
        assert!(
            delays.iter().all(|d| (50..=100).contains(&d.as_millis())),
            "{delays:?}"
        );
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 100,
            "jitter varies: {} distinct delays",
            distinct.len()
        );
    }
}
