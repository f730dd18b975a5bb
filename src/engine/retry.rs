//! Retry timing: exponential backoff with full jitter, `Retry-After` as a floor, and the claim's
//! window end as a hard limit. Pure functions; the caller supplies randomness and `now`.

use std::time::Duration;

/// Backoff settings (from `[retry]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The ceiling of the random wait after failed attempt number `attempt` (1-based):
    /// `min(max_backoff, initial_backoff * 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.initial_backoff
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// The wait before the next attempt: `random(0, ceiling)` with `unit` in `[0, 1)` as the
    /// random draw, never shorter than `retry_after`.
    pub fn delay(&self, attempt: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let jittered = self.ceiling(attempt).mul_f64(unit.clamp(0.0, 1.0));
        match retry_after {
            Some(floor) if floor > jittered => floor,
            _ => jittered,
        }
    }

    /// When to try again after failed attempt `attempt` at `now_ms`, or `None` when the attempts
    /// are used up or the next try would fall at or past `deadline_ms` (the claim's window end).
    pub fn next_try(
        &self,
        attempt: u32,
        now_ms: i64,
        unit: f64,
        retry_after: Option<Duration>,
        deadline_ms: Option<i64>,
    ) -> Option<i64> {
        if attempt >= self.max_attempts {
            return None;
        }
        let at = now_ms.saturating_add(self.delay(attempt, unit, retry_after).as_millis() as i64);
        match deadline_ms {
            Some(end) if at >= end => None,
            _ => Some(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }

    #[test]
    fn ceiling_doubles_per_attempt_and_stops_at_max_backoff() {
        let p = policy();
        let got: Vec<u64> = (1..=9).map(|a| p.ceiling(a).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.ceiling(500), Duration::from_secs(60));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let p = policy();
        assert_eq!(p.delay(4, 0.0, None), Duration::ZERO);
        assert_eq!(p.delay(4, 0.5, None), Duration::from_secs(4));
        assert!(p.delay(4, 0.999, None) < Duration::from_secs(8));
    }

    #[test]
    fn retry_after_is_a_floor_not_a_ceiling() {
        let p = policy();
        assert_eq!(
            p.delay(1, 0.1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(7, 0.5, Some(Duration::from_secs(7))),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn no_retry_after_the_last_attempt_or_past_the_window_end() {
        let p = policy();
        assert_eq!(p.next_try(5, 0, 0.5, None, None), None);
        assert_eq!(p.next_try(1, 1_000, 0.5, None, None), Some(1_500));
        assert_eq!(p.next_try(3, 1_000, 1.0, None, Some(4_000)), None);
        assert_eq!(p.next_try(3, 1_000, 0.5, None, Some(4_000)), Some(3_000));
    }
}
