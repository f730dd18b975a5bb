//! What the engine tells people: events in the database (and the log), metrics, and the alerts
//! that must be said once rather than at every failure (refused credentials, clock skew).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::livestation::{ApiError, Operation, SKEW_WARN_THRESHOLD};
use crate::service::metrics::Metrics;
use crate::store::{EventKind, NewEvent, Store};

use super::EngineError;

/// Events, metrics and once-only alerts. Shared by every part of the engine through `&`.
pub(crate) struct Notes {
    store: Store,
    metrics: Option<Metrics>,
    /// Credentials are being refused: alerted once, quiet until a call succeeds again.
    auth_failing: AtomicBool,
    /// The local clock is off from the gateway's by more than the threshold: alerted once.
    skew_alerted: AtomicBool,
}

impl Notes {
    pub(crate) fn new(store: Store) -> Notes {
        Notes {
            store,
            metrics: None,
            auth_failing: AtomicBool::new(false),
            skew_alerted: AtomicBool::new(false),
        }
    }

    pub(crate) fn set_metrics(&mut self, metrics: Metrics) {
        self.metrics = Some(metrics);
    }

    /// The metrics, when the daemon exports them.
    pub(crate) fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    /// Records an operator event (events table and log).
    pub(crate) async fn event(
        &self,
        now: i64,
        kind: EventKind,
        channel_id: Option<&str>,
        record_id: Option<i64>,
        message: &str,
    ) -> Result<(), EngineError> {
        tracing::info!(
            kind = kind.as_str(),
            channel_id = channel_id.unwrap_or("-"),
            record_id,
            "{message}"
        );
        self.store
            .add_event(&NewEvent {
                at: now,
                kind,
                channel_id: channel_id.map(str::to_string),
                record_id,
                message: message.to_string(),
            })
            .await?;
        Ok(())
    }

    /// Entries of an answer that could not be read and were skipped (each is logged where it
    /// was read): counted in `lsrecd_api_entries_skipped_total{operation}`.
    pub(crate) fn entries_skipped(&self, operation: Operation, n: usize) {
        if let (Some(m), 1..) = (&self.metrics, n) {
            m.api_entries_skipped(operation.as_str(), n as u64);
        }
    }

    /// A call succeeded: credentials work (again).
    pub(crate) fn api_answered(&self) {
        self.auth_failing.store(false, Ordering::Relaxed);
    }

    /// A failed call: refused credentials become one event per outage; the rest is logged by
    /// the client.
    pub(crate) async fn api_error(
        &self,
        now: i64,
        channel_id: Option<&str>,
        e: &ApiError,
    ) -> Result<(), EngineError> {
        if let ApiError::Unauthorized { .. } = e {
            if let Some(m) = &self.metrics {
                m.auth_failure();
            }
            if self.auth_failing.swap(true, Ordering::Relaxed) {
                return Ok(());
            }
            self.event(
                now,
                EventKind::AuthFailure,
                channel_id,
                None,
                &format!(
                    "Live Station rejected lsrecd's credentials after a re-signed retry: {e}. Check the access/secret key and the clock (NTP)."
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// Clock skew (server minus local, ms): a metric always, an event once when it passes the
    /// threshold. Signing uses the corrected time, so lsrecd keeps working meanwhile.
    pub(crate) async fn clock_skew(&self, now: i64, skew_ms: i64) -> Result<(), EngineError> {
        if let Some(m) = &self.metrics {
            m.set_clock_skew(skew_ms as f64 / 1000.0);
        }
        let off = skew_ms.abs() > SKEW_WARN_THRESHOLD.num_milliseconds();
        if off && !self.skew_alerted.load(Ordering::Relaxed) {
            self.event(
                now,
                EventKind::ClockSkew,
                None,
                None,
                &format!(
                    "the local clock is {}s {} the Live Station gateway's; requests are signed with the corrected time, but check NTP",
                    skew_ms.abs() / 1000,
                    if skew_ms > 0 { "behind" } else { "ahead of" }
                ),
            )
            .await?;
        }
        self.skew_alerted.store(off, Ordering::Relaxed);
        Ok(())
    }
}
