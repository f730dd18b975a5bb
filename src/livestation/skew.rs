//! The estimate of the gateway's clock relative to ours, from response `Date` headers.
//!
//! The gateway rejects a signature whose timestamp is 5 minutes or more from its own clock, so
//! the client signs with `local now + skew`. Each response gives one sample: the server's `Date`
//! minus the local midpoint of the exchange. `Date` has one-second resolution and is truncated,
//! so half a second is added to centre the sample. The latest sample wins: a clock that was just
//! corrected (NTP step) is followed at once.
//!
//! A warning is logged when the skew first exceeds [`WARN_THRESHOLD`] and again only when it has
//! moved by [`NOTABLE_CHANGE`] since the last warning; a return below the threshold is logged
//! once at `info`.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

/// Skew beyond this is worth telling an operator about.
pub const WARN_THRESHOLD: TimeDelta = TimeDelta::seconds(60);

/// A change of the skew this large since the last warning is warned about again.
pub const NOTABLE_CHANGE: TimeDelta = TimeDelta::seconds(30);

/// Half the resolution of the `Date` header, added to centre a truncated sample.
const DATE_HALF_RESOLUTION: TimeDelta = TimeDelta::milliseconds(500);

/// The shared skew estimate.
#[derive(Debug, Default)]
pub(crate) struct ClockSkew {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    estimate: Option<TimeDelta>,
    /// The skew last warned about, while above the threshold.
    warned: Option<TimeDelta>,
}

/// What to tell the operator after a new sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Notice {
    Quiet,
    Warn,
    Recovered,
}

impl ClockSkew {
    /// Server time minus local time, once any response carried a `Date` header.
    pub(crate) fn estimate(&self) -> Option<TimeDelta> {
        self.lock().estimate
    }

    /// The local time corrected by the estimate: what the gateway's clock reads now.
    pub(crate) fn server_now(&self, local: DateTime<Utc>) -> DateTime<Utc> {
        local + self.estimate().unwrap_or(TimeDelta::zero())
    }

    /// Records one sample: the response's `Date` and the local times the request was sent
    /// and its response received.
    pub(crate) fn observe(
        &self,
        server_date: DateTime<Utc>,
        sent: DateTime<Utc>,
        received: DateTime<Utc>,
    ) {
        let skew = sample(server_date, sent, received);
        let (notice, previous) = {
            let mut state = self.lock();
            let previous = state.estimate.replace(skew);
            let (notice, warned) = notice(state.warned, skew);
            state.warned = warned;
            (notice, previous)
        };
        let skew_seconds = skew.as_seconds_f64();
        match notice {
            Notice::Warn => tracing::warn!(
                skew_seconds,
                "the Live Station gateway clock differs from the local clock by {skew_seconds:.0} s; \
                 requests are signed with the corrected time, but check NTP on this host"
            ),
            Notice::Recovered => tracing::info!(
                skew_seconds,
                "the gateway clock is again within {} s of the local clock",
                WARN_THRESHOLD.num_seconds()
            ),
            Notice::Quiet if previous.is_none() => {
                tracing::debug!(skew_seconds, "first clock skew estimate")
            }
            Notice::Quiet => {}
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two plain values, valid even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One skew sample: server `Date` (centred) minus the local midpoint of the exchange.
fn sample(server_date: DateTime<Utc>, sent: DateTime<Utc>, received: DateTime<Utc>) -> TimeDelta {
    let midpoint = sent + (received - sent) / 2;
    server_date + DATE_HALF_RESOLUTION - midpoint
}

/// Decides whether a new sample deserves a log line; returns the new "last warned" value.
fn notice(warned: Option<TimeDelta>, skew: TimeDelta) -> (Notice, Option<TimeDelta>) {
    if skew.abs() > WARN_THRESHOLD {
        match warned {
            Some(w) if (skew - w).abs() < NOTABLE_CHANGE => (Notice::Quiet, Some(w)),
            _ => (Notice::Warn, Some(skew)),
        }
    } else if warned.is_some() {
        (Notice::Recovered, None)
    } else {
        (Notice::Quiet, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid test time")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_sample_is_the_centred_date_minus_the_local_midpoint() {
        let skew = sample(
            at("2025-08-14T06:07:00Z"),
            at("2025-08-14T06:00:00Z"),
            at("2025-08-14T06:00:01Z"),
        );
        assert_eq!(skew, TimeDelta::seconds(420));
    }

    #[test]
    fn server_now_applies_the_latest_sample() {
        let skew = ClockSkew::default();
        let local = at("2025-08-14T06:00:00Z");
        assert_eq!(skew.server_now(local), local);
        skew.observe(at("2025-08-14T05:57:00Z"), local, local);
        skew.observe(at("2025-08-14T06:07:00Z"), local, local);
        assert_eq!(
            skew.estimate(),
            Some(TimeDelta::seconds(420) + DATE_HALF_RESOLUTION)
        );
        assert_eq!(
            skew.server_now(local),
            at("2025-08-14T06:07:00.5Z"),
            "signing uses local time plus the estimate"
        );
    }

    #[test]
    fn crossing_the_threshold_warns_once_until_the_skew_moves_notably() {
        let s = TimeDelta::seconds;
        let (n, w) = notice(None, s(5));
        assert_eq!((n, w), (Notice::Quiet, None));
        let (n, w) = notice(w, s(-90));
        assert_eq!((n, w), (Notice::Warn, Some(s(-90))));
        let (n, w) = notice(w, s(-100));
        assert_eq!((n, w), (Notice::Quiet, Some(s(-90))), "small change");
        let (n, w) = notice(w, s(-125));
        assert_eq!((n, w), (Notice::Warn, Some(s(-125))), "moved 35 s");
        let (n, w) = notice(w, s(10));
        assert_eq!((n, w), (Notice::Recovered, None));
        let (n, _) = notice(w, s(11));
        assert_eq!(n, Notice::Quiet);
    }
}
