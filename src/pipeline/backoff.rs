//! Backoff: exponential bounds with full jitter, and the `Retry-After` override.

use std::time::Duration;

use crate::config::RetryPolicy;

/// Upper bound of the delay after the `failures`-th counted failure (1-based):
/// `min(max_backoff, initial_backoff * 2^(failures-1))`.
pub fn bound(policy: &RetryPolicy, failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    policy.initial_backoff.saturating_mul(1u32 << exponent).min(policy.max_backoff)
}

/// Full jitter: a uniformly random delay in `0..=bound`.
pub fn full_jitter(bound: Duration) -> Duration {
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::random_range(0..=nanos))
}

/// The delay before the next attempt: the application's `Retry-After` when it gave one (capped
/// at the max backoff), else full jitter under the exponential bound.
pub fn delay(
    policy: &RetryPolicy,
    failures: u32,
    retry_after: Option<Duration>,
    jitter: fn(Duration) -> Duration,
) -> Duration {
    match retry_after {
        Some(requested) => requested.min(policy.max_backoff),
        None => jitter(bound(policy, failures)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(3),
        }
    }

    #[test]
    fn bounds_double_up_to_the_cap() {
        let p = policy();
        let bounds: Vec<u128> = (1..=7).map(|n| bound(&p, n).as_millis()).collect();
        assert_eq!(bounds, vec![200, 400, 800, 1600, 3000, 3000, 3000]);
        assert_eq!(bound(&p, 1000), Duration::from_secs(3), "no overflow");
    }

    #[test]
    fn jitter_stays_within_the_bound_and_varies() {
        let samples: Vec<Duration> = (0..200).map(|_| full_jitter(Duration::from_millis(100))).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_millis(100)));
        let distinct: std::collections::BTreeSet<_> = samples.iter().collect();
        assert!(distinct.len() > 100, "full jitter spreads delays");
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = policy();
        assert_eq!(delay(&p, 1, Some(Duration::from_secs(2)), full_jitter), Duration::from_secs(2));
        assert_eq!(delay(&p, 1, Some(Duration::from_secs(60)), full_jitter), Duration::from_secs(3));
        assert_eq!(delay(&p, 3, None, |b| b), Duration::from_millis(800));
    }
}
