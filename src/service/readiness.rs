//! Readiness as `/readyz` reports it: ready once the engine has observed the channels, and not
//! ready again when the last successful observation is older than a limit, or while the
//! database fails (lsrecd then sends no start or stop: their intents cannot be written).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Shared readiness flag. The engine calls [`Readiness::observed`] after every successful
/// channel observation; the HTTP endpoint reads [`Readiness::state`]. Clones share one flag.
#[derive(Clone, Debug)]
pub struct Readiness {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    max_age: Duration,
    last_observed: Option<Instant>,
    /// Since when the database has been failing, while it is.
    database_failing: Option<Instant>,
}

/// What `/readyz` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyState {
    /// No successful observation yet.
    Starting,
    /// The last successful observation is recent enough.
    Ready,
    /// The last successful observation is `age` old, more than `max_age`.
    Stale { age: Duration, max_age: Duration },
    /// The database has been failing for `for_`.
    DatabaseFailing { for_: Duration },
}

impl ReadyState {
    /// Whether the state counts as ready.
    pub fn is_ready(&self) -> bool {
        matches!(self, ReadyState::Ready)
    }
}

impl fmt::Display for ReadyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyState::Starting => f.write_str("starting: no successful channel observation yet"),
            ReadyState::Ready => f.write_str("ready"),
            ReadyState::Stale { age, max_age } => write!(
                f,
                "stale: last successful channel observation {}s ago (limit {}s)",
                age.as_secs(),
                max_age.as_secs()
            ),
            ReadyState::DatabaseFailing { for_ } => write!(
                f,
                "database failing for {}s: no start or stop is sent until it takes writes again",
                for_.as_secs()
            ),
        }
    }
}

impl Readiness {
    /// Not ready until the first observation; afterwards ready while the last one is at most
    /// `max_age` old.
    pub fn new(max_age: Duration) -> Self {
        Readiness {
            inner: Arc::new(Mutex::new(Inner {
                max_age,
                last_observed: None,
                database_failing: None,
            })),
        }
    }

    /// The usual rule: stale after `missed_polls` poll intervals without a successful
    /// observation (e.g. 3 × 10 s = 30 s).
    pub fn for_poll_interval(poll_interval: Duration, missed_polls: u32) -> Self {
        Self::new(poll_interval.saturating_mul(missed_polls))
    }

    /// Changes the staleness limit, e.g. after a reload changed `poll_interval`.
    pub fn set_max_age(&self, max_age: Duration) {
        self.lock().max_age = max_age;
    }

    /// Records a successful observation now.
    pub fn observed(&self) {
        self.observed_at(Instant::now());
    }

    /// Records a successful observation at `at`.
    pub fn observed_at(&self, at: Instant) {
        let mut inner = self.lock();
        if inner.last_observed.is_none_or(|last| at > last) {
            inner.last_observed = Some(at);
        }
    }

    /// Whether the database is failing (from the engine's last tick).
    pub fn database_failing(&self, failing: bool) {
        let mut inner = self.lock();
        match (failing, inner.database_failing) {
            (true, None) => inner.database_failing = Some(Instant::now()),
            (false, Some(_)) => inner.database_failing = None,
            _ => {}
        }
    }

    /// The state now.
    pub fn state(&self) -> ReadyState {
        self.state_at(Instant::now())
    }

    /// The state at `now`.
    pub fn state_at(&self, now: Instant) -> ReadyState {
        let inner = self.lock();
        if let Some(since) = inner.database_failing {
            return ReadyState::DatabaseFailing {
                for_: now.saturating_duration_since(since),
            };
        }
        match inner.last_observed {
            None => ReadyState::Starting,
            Some(last) => {
                let age = now.saturating_duration_since(last);
                if age <= inner.max_age {
                    ReadyState::Ready
                } else {
                    ReadyState::Stale {
                        age,
                        max_age: inner.max_age,
                    }
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_database_makes_it_not_ready_until_it_takes_writes_again() {
        let readiness = Readiness::for_poll_interval(Duration::from_secs(10), 3);
        readiness.observed();

        readiness.database_failing(true);
        let failing = readiness.state();
        readiness.observed();
        let still = readiness.state();
        readiness.database_failing(false);

        assert!(
            matches!(failing, ReadyState::DatabaseFailing { .. }),
            "{failing}"
        );
        assert!(!failing.is_ready());
        assert!(
            matches!(still, ReadyState::DatabaseFailing { .. }),
            "an observation alone does not end it: {still}"
        );
        assert_eq!(readiness.state(), ReadyState::Ready);
    }

    #[test]
    fn readiness_starts_not_ready() {
        let readiness = Readiness::new(Duration::from_secs(30));

        assert_eq!(readiness.state(), ReadyState::Starting);
    }

    #[test]
    fn an_observation_makes_it_ready_until_it_is_older_than_the_limit() {
        let readiness = Readiness::for_poll_interval(Duration::from_secs(10), 3);
        let t0 = Instant::now();

        readiness.observed_at(t0);

        assert_eq!(readiness.state_at(t0), ReadyState::Ready);
        assert_eq!(
            readiness.state_at(t0 + Duration::from_secs(30)),
            ReadyState::Ready
        );
        assert_eq!(
            readiness.state_at(t0 + Duration::from_secs(31)),
            ReadyState::Stale {
                age: Duration::from_secs(31),
                max_age: Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn a_new_observation_makes_a_stale_readiness_ready_again() {
        let readiness = Readiness::new(Duration::from_secs(30));
        let t0 = Instant::now();
        readiness.observed_at(t0);
        let later = t0 + Duration::from_secs(100);
        assert!(!readiness.state_at(later).is_ready());

        readiness.observed_at(later);

        assert!(readiness.state_at(later).is_ready());
    }

    #[test]
    fn an_older_observation_never_moves_the_last_one_back() {
        let readiness = Readiness::new(Duration::from_secs(30));
        let t0 = Instant::now();
        readiness.observed_at(t0 + Duration::from_secs(60));

        readiness.observed_at(t0);

        assert!(readiness.state_at(t0 + Duration::from_secs(80)).is_ready());
    }

    #[test]
    fn changing_the_limit_applies_to_the_next_check() {
        let readiness = Readiness::new(Duration::from_secs(30));
        let t0 = Instant::now();
        readiness.observed_at(t0);

        readiness.set_max_age(Duration::from_secs(120));

        assert!(readiness.state_at(t0 + Duration::from_secs(100)).is_ready());
    }
}
