//! The typed values stored as text: each enum has exactly one spelling per variant, the one
//! `docs/database.md` documents, and nothing else can be written. Decisions are made on these
//! values, never on a human message.

use std::fmt;

use serde::{Serialize, Serializer};

use super::StoreError;

/// Declares an enum stored as text: `as_str`, `parse`, `ALL`, `Display`, `Serialize` and the
/// `TryFrom<String>` that reading a row uses (an unknown spelling is [`StoreError::Corrupt`]).
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The spelling stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Parses the stored spelling.
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = StoreError;
            fn try_from(s: String) -> Result<Self, StoreError> {
                $name::parse(&s).ok_or_else(|| {
                    StoreError::Corrupt(format!(concat!("unknown ", stringify!($name), " {:?}"), s))
                })
            }
        }
    };
}

text_enum!(
    /// The state-changing API call an `actions` row journals (`actions.operation`).
    Mutation {
        StartRecord => "startRecord",
        StopRecord => "stopRecord",
        Upload => "upload",
    }
);

text_enum!(
    /// Where an action stands (`actions.state`).
    ActionState {
        /// The intent is committed; the call is being made (or lsrecd died making it).
        Pending => "PENDING",
        /// The API confirmed the call.
        Succeeded => "SUCCEEDED",
        /// The API rejected the call, or it was established that it did not take effect.
        Failed => "FAILED",
        /// The request may have been applied (timeout, reset, 5xx): settled by a later
        /// observation, never resent before that.
        Ambiguous => "AMBIGUOUS",
        /// The call took effect, as established by observing the channel afterwards.
        Reconciled => "RECONCILED",
    }
);

impl ActionState {
    /// Whether nothing more will be learnt about the action.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            ActionState::Succeeded | ActionState::Failed | ActionState::Reconciled
        )
    }
}

text_enum!(
    /// What an operator is told (`events.kind`). Failure kinds are also listed by the
    /// `recent_failures` view.
    EventKind {
        /// A recording lsrecd asked for was started (with the time it took and the attempts).
        Started => "started",
        /// A recording lsrecd started was stopped by it.
        Stopped => "stopped",
        /// A scheduled occurrence was not recorded.
        Missed => "missed",
        /// Failure kind: a start or stop keeps failing (once per outage), a record failed
        /// processing or was deleted before it was uploaded.
        Failed => "failed",
        /// A claim ended while its channel was still not recording, after failures.
        Unrecorded => "unrecorded",
        /// A record nobody uploaded is about to be deleted by Live Station.
        Expiring => "expiring",
        /// A record reached object storage.
        Uploaded => "uploaded",
        /// Failure kind: an upload request failed, or a record is in `TRANSFER_FAIL`.
        UploadFailed => "upload_failed",
        /// The retention guard asked Live Station to upload records.
        UploadRequested => "upload_requested",
        /// Failure kind: the API refused the credentials after a re-signed retry.
        AuthFailure => "auth_failure",
        /// Failure kind: the local clock is off from the API gateway's by more than a minute.
        ClockSkew => "clock_skew",
        /// Failure kind: a configured channel is not in the API's channel list.
        ChannelMissing => "channel_missing",
        /// A missing channel is back.
        ChannelBack => "channel_back",
        /// A start of a previous run (or one whose answer was lost) was found to have taken
        /// effect; the recording is lsrecd's own.
        Adopted => "adopted",
        /// A recording lsrecd started ended without its stop (the stream ended, or it was
        /// stopped elsewhere).
        Ended => "ended",
        /// A recording lsrecd did not start (immediateOnAir, the console) was first seen; it is
        /// followed and never stopped by lsrecd.
        Tracked => "tracked",
        /// Failure kind: database writes failed for a while (reported once writing works again).
        DatabaseUnavailable => "database_unavailable",
        /// `[ha]`: another instance (or this one) became the leader, as this instance saw it;
        /// every instance writes it in its own database.
        Takeover => "takeover",
        /// `[ha]`: this instance stopped acting (its lease lapsed or was lost).
        LeadershipLost => "leadership_lost",
    }
);

impl EventKind {
    /// Whether the kind is a failure an operator must look at (`recent_failures`).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            EventKind::Failed
                | EventKind::Unrecorded
                | EventKind::UploadFailed
                | EventKind::AuthFailure
                | EventKind::ClockSkew
                | EventKind::ChannelMissing
                | EventKind::DatabaseUnavailable
        )
    }
}

text_enum!(
    /// Why an occurrence is in its state (`occurrences.reason`); `detail` says it for people.
    OccurrenceReason {
        /// ARMED: the fire time was reached.
        FireTime => "fire_time",
        /// RECORDING: the channel records inside the window.
        Recording => "recording",
        /// Still open, but Live Station refused the start (4xx): if the window ends like this,
        /// the occurrence FAILED rather than MISSED.
        StartRejected => "start_rejected",
        /// FAILED: the start kept failing until the window ended.
        StartFailed => "start_failed",
        /// COMPLETED: the window ended.
        WindowEnded => "window_ended",
        /// COMPLETED: without a duration, the channel stopped publishing.
        StreamEnded => "stream_ended",
        /// MISSED: lsrecd was not running at the fire time and came back too late.
        Down => "down",
        /// MISSED: the channel did not publish inside the window.
        NotLive => "not_live",
        /// MISSED: the API did not return the channel during the window.
        NotObserved => "not_observed",
        /// MISSED: the schedule was removed from the configuration before it recorded.
        ScheduleRemoved => "schedule_removed",
    }
);

text_enum!(
    /// How an outage ended (`outages.outcome`).
    OutageOutcome {
        /// The start (or stop) took effect in the end.
        Done => "done",
        /// The claim ended (or the recording ended by itself) before it did.
        Abandoned => "abandoned",
    }
);

/// Why an action was taken (`actions.trigger`): the claim behind a start (and the stop of what
/// it started), or the retention guard behind an upload.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// A `record_when_live` channel is publishing: `live`.
    Live,
    /// A schedule occurrence's window: `schedule:<name>`.
    Schedule(String),
    /// `lsrecd start CHANNEL`: `manual`.
    Manual,
    /// Found by reconciliation without a claim of lsrecd's: `reconcile`.
    Reconcile,
    /// The retention guard (uploads): `retention`.
    Retention,
}

impl Trigger {
    /// The stored spelling.
    pub fn as_text(&self) -> String {
        match self {
            Trigger::Live => "live".to_string(),
            Trigger::Schedule(name) => format!("schedule:{name}"),
            Trigger::Manual => "manual".to_string(),
            Trigger::Reconcile => "reconcile".to_string(),
            Trigger::Retention => "retention".to_string(),
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Trigger> {
        match s {
            "live" => Some(Trigger::Live),
            "manual" => Some(Trigger::Manual),
            "reconcile" => Some(Trigger::Reconcile),
            "retention" => Some(Trigger::Retention),
            _ => s
                .strip_prefix("schedule:")
                .filter(|name| !name.is_empty())
                .map(|name| Trigger::Schedule(name.to_string())),
        }
    }
}

impl Trigger {
    /// The kind of trigger, without a schedule's name: a bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Live => "live",
            Trigger::Schedule(_) => "schedule",
            Trigger::Manual => "manual",
            Trigger::Reconcile => "reconcile",
            Trigger::Retention => "retention",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_text())
    }
}

impl Serialize for Trigger {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_text())
    }
}

impl TryFrom<String> for Trigger {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Self, StoreError> {
        Trigger::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("unknown trigger {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stored_value_parses_from_its_own_spelling() {
        for v in Mutation::ALL {
            assert_eq!(Mutation::parse(v.as_str()), Some(*v));
        }
        for v in ActionState::ALL {
            assert_eq!(ActionState::parse(v.as_str()), Some(*v));
        }
        for v in EventKind::ALL {
            assert_eq!(EventKind::parse(v.as_str()), Some(*v));
        }
        for v in OutageOutcome::ALL {
            assert_eq!(OutageOutcome::parse(v.as_str()), Some(*v));
        }
        for v in OccurrenceReason::ALL {
            assert_eq!(OccurrenceReason::parse(v.as_str()), Some(*v));
        }
        for t in [
            Trigger::Live,
            Trigger::Schedule("morning-news".into()),
            Trigger::Manual,
            Trigger::Reconcile,
            Trigger::Retention,
        ] {
            assert_eq!(Trigger::parse(&t.as_text()), Some(t));
        }
    }

    #[test]
    fn unknown_spellings_are_refused_not_guessed() {
        assert_eq!(Mutation::parse("deleteRecord"), None);
        assert_eq!(EventKind::parse("note"), None);
        assert_eq!(Trigger::parse("schedule:"), None);
        assert_eq!(Trigger::parse("cron"), None);
        assert!(matches!(
            EventKind::try_from("note".to_string()),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn pending_and_ambiguous_actions_are_not_finished() {
        assert!(!ActionState::Pending.is_finished());
        assert!(!ActionState::Ambiguous.is_finished());
        assert!(ActionState::Reconciled.is_finished());
    }
}
