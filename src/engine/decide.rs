//! The pure decision core: given what should be true (claims) and what is true (the observed
//! channel, the recording lsrecd owns, work in flight), what to do now. No I/O, no clock: `now`
//! is an argument, so every rule is a table-driven test.

use crate::livestation::ChannelStatus;
pub use crate::store::{OccurrenceReason, OccurrenceState, Trigger};

/// Why a channel should be recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimSource {
    /// `record_when_live = true` and the channel is publishing.
    Live,
    /// A schedule occurrence's window.
    Schedule { name: String, occurrence_id: i64 },
    /// `lsrecd start CHANNEL`.
    Manual,
}

impl ClaimSource {
    /// The trigger journaled for a start made for this claim.
    pub fn trigger(&self) -> Trigger {
        match self {
            ClaimSource::Live => Trigger::Live,
            ClaimSource::Schedule { name, .. } => Trigger::Schedule(name.clone()),
            ClaimSource::Manual => Trigger::Manual,
        }
    }

    fn priority(&self) -> u8 {
        match self {
            ClaimSource::Schedule { .. } => 0,
            ClaimSource::Manual => 1,
            ClaimSource::Live => 2,
        }
    }
}

/// A claim on a channel for `[start, end)`; `end = None` lasts while the channel publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub source: ClaimSource,
    pub start: i64,
    pub end: Option<i64>,
}

impl Claim {
    /// Active at `now`, and not spent by an earlier `max_duration` cap at `spent_before`.
    pub fn is_active(&self, now: i64, spent_before: Option<i64>) -> bool {
        self.start <= now
            && self.end.is_none_or(|end| now < end)
            && spent_before.is_none_or(|cap| self.start > cap)
    }
}

/// What the last observation said about a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub status: ChannelStatus,
    pub is_recording: bool,
    pub immediate_on_air: bool,
    /// Since when the channel has been seen publishing without a break.
    pub live_since: Option<i64>,
}

/// A recording lsrecd itself started and has not seen end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    pub trigger: Trigger,
    pub started_at: i64,
}

/// Everything the decision needs about one configured channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelState {
    pub channel_id: String,
    /// `None` when the API did not return the channel in the last observation.
    pub observed: Option<Observed>,
    pub owned: Option<Owned>,
    pub claims: Vec<Claim>,
    pub max_duration_ms: Option<i64>,
    /// Claims that began at or before this instant are spent: a `max_duration` cap ended the
    /// recording they asked for, and restarting would defeat the cap.
    pub spent_before: Option<i64>,
    /// A start was rejected (4xx) and the observation has not changed since: do not retry.
    pub start_blocked: bool,
}

/// Why lsrecd stops a recording it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// No claim holds the channel any more (window over, manual stop, live claim gone).
    ClaimsEnded,
    /// The recording reached the channel's `max_duration`.
    MaxDuration,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::ClaimsEnded => "no claim holds the channel any more",
            StopReason::MaxDuration => "max_duration reached",
        }
    }
}

/// What to do for one channel now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Call startRecord. `deadline` is the latest end of the active claims (no retry past it).
    Start {
        trigger: Trigger,
        occurrence_id: Option<i64>,
        deadline: Option<i64>,
        /// Since when the claim has wanted this recording: the later of the claim's start and
        /// the start of the publishing session (the time to recording is counted from here).
        since: i64,
    },
    /// Call stopRecord on a recording lsrecd started.
    Stop { reason: StopReason },
    /// The recording lsrecd started has ended by itself (stream ended): close the bookkeeping.
    Release,
}

/// The one decision rule (ARCHITECTURE.md §4): start when a claim is active, the channel publishes and
/// is not recording; stop only what lsrecd started once no claim is left or `max_duration` passed;
/// never start an `immediateOnAir` channel; never touch a recording lsrecd did not start.
pub fn decide(ch: &ChannelState, now: i64) -> Option<Decision> {
    let observed = ch.observed.as_ref()?;
    let active: Vec<&Claim> = ch
        .claims
        .iter()
        .filter(|c| c.is_active(now, ch.spent_before))
        .collect();

    if let Some(owned) = &ch.owned {
        if !observed.is_recording {
            return Some(Decision::Release);
        }
        if let Some(max) = ch.max_duration_ms
            && now >= owned.started_at.saturating_add(max)
        {
            return Some(Decision::Stop {
                reason: StopReason::MaxDuration,
            });
        }
        if active.is_empty() {
            return Some(Decision::Stop {
                reason: StopReason::ClaimsEnded,
            });
        }
        return None;
    }

    if active.is_empty()
        || ch.start_blocked
        || !observed.status.is_live()
        || observed.is_recording
        || observed.immediate_on_air
    {
        return None;
    }
    let chosen = active
        .iter()
        .min_by_key(|c| (c.source.priority(), c.start))
        .expect("active is not empty");
    let deadline = if active.iter().any(|c| c.end.is_none()) {
        None
    } else {
        active.iter().filter_map(|c| c.end).max()
    };
    Some(Decision::Start {
        trigger: chosen.source.trigger(),
        since: observed
            .live_since
            .map_or(chosen.start, |l| l.max(chosen.start)),
        occurrence_id: match &chosen.source {
            ClaimSource::Schedule { occurrence_id, .. } => Some(*occurrence_id),
            _ => None,
        },
        deadline,
    })
}

/// One occurrence as the engine sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    pub state: OccurrenceState,
    pub fire_time: i64,
    /// `None`: the claim lasts until the channel stops publishing.
    pub window_end: Option<i64>,
}

/// The next state of an open occurrence, with its reason and `detail`, or `None` to stay.
///
/// - `PENDING` becomes `ARMED` at its fire time — unless the fire time passed while lsrecd was
///   not running (`fire_time < up_since`) and it came back more than `catch_up` later, or after
///   the window ended: then `MISSED`, with how late it came back.
/// - `ARMED` becomes `RECORDING` once the channel records inside the window (whoever started it:
///   the show is being recorded); `MISSED` when the window ends first, or — without a duration —
///   when the channel has not gone live within `catch_up` of the fire time.
/// - `RECORDING` becomes `COMPLETED` at the window end, or — without a duration — when the channel
///   stops publishing.
///
/// `FAILED` (retries exhausted) is set by the act loop, not here.
pub fn advance_occurrence(
    occ: &Occurrence,
    observed: Option<&Observed>,
    catch_up_ms: i64,
    up_since: i64,
    now: i64,
) -> Option<(OccurrenceState, OccurrenceReason, String)> {
    let window_over = occ.window_end.is_some_and(|end| now >= end);
    let live = observed.is_some_and(|o| o.status.is_live());
    let recording = observed.is_some_and(|o| o.is_recording);
    match occ.state {
        OccurrenceState::Pending if now >= occ.fire_time => {
            let late = now - occ.fire_time;
            if occ.fire_time < up_since && (late > catch_up_ms || window_over) {
                Some((
                    OccurrenceState::Missed,
                    OccurrenceReason::Down,
                    format!(
                        "lsrecd was not running at the fire time and came back {} later ({})",
                        human_ms(late),
                        if window_over {
                            "after the window ended".to_string()
                        } else {
                            format!("beyond catch_up {}", human_ms(catch_up_ms))
                        }
                    ),
                ))
            } else if window_over {
                Some((
                    OccurrenceState::Missed,
                    OccurrenceReason::NotLive,
                    "window ended before it was armed".to_string(),
                ))
            } else {
                Some((
                    OccurrenceState::Armed,
                    OccurrenceReason::FireTime,
                    "fire time reached".to_string(),
                ))
            }
        }
        OccurrenceState::Armed if window_over => Some(match observed {
            None => (
                OccurrenceState::Missed,
                OccurrenceReason::NotObserved,
                "channel was not returned by the API during the window".to_string(),
            ),
            Some(_) => (
                OccurrenceState::Missed,
                OccurrenceReason::NotLive,
                "channel was not publishing during the window".to_string(),
            ),
        }),
        OccurrenceState::Armed if recording && live => Some((
            OccurrenceState::Recording,
            OccurrenceReason::Recording,
            "channel is recording".to_string(),
        )),
        OccurrenceState::Armed
            if occ.window_end.is_none() && !live && now - occ.fire_time > catch_up_ms =>
        {
            Some((
                OccurrenceState::Missed,
                OccurrenceReason::NotLive,
                format!(
                    "channel was not publishing within catch_up ({}) of the fire time",
                    human_ms(catch_up_ms)
                ),
            ))
        }
        OccurrenceState::Recording if window_over => Some((
            OccurrenceState::Completed,
            OccurrenceReason::WindowEnded,
            "window ended".to_string(),
        )),
        OccurrenceState::Recording if occ.window_end.is_none() && !live => Some((
            OccurrenceState::Completed,
            OccurrenceReason::StreamEnded,
            "channel stopped publishing".to_string(),
        )),
        _ => None,
    }
}

/// Milliseconds as a humantime duration rounded to seconds ("5m", "1h 2m 3s").
pub fn human_ms(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs((ms.max(0) / 1000) as u64))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn live(recording: bool) -> Option<Observed> {
        Some(Observed {
            status: ChannelStatus::Publishing,
            is_recording: recording,
            immediate_on_air: false,
            live_since: Some(0),
        })
    }

    fn ready() -> Option<Observed> {
        Some(Observed {
            status: ChannelStatus::Ready,
            is_recording: false,
            immediate_on_air: false,
            live_since: Some(0),
        })
    }

    fn base(observed: Option<Observed>) -> ChannelState {
        ChannelState {
            channel_id: "ch".into(),
            observed,
            owned: None,
            claims: vec![],
            max_duration_ms: None,
            spent_before: None,
            start_blocked: false,
        }
    }

    fn schedule(start: i64, end: Option<i64>) -> Claim {
        Claim {
            source: ClaimSource::Schedule {
                name: "news".into(),
                occurrence_id: 7,
            },
            start,
            end,
        }
    }

    fn live_claim(start: i64) -> Claim {
        Claim {
            source: ClaimSource::Live,
            start,
            end: None,
        }
    }

    fn owned(started_at: i64) -> Option<Owned> {
        Some(Owned {
            trigger: Trigger::Live,
            started_at,
        })
    }

    #[test]
    fn decision_table() {
        struct Case {
            name: &'static str,
            state: ChannelState,
            now: i64,
            want: Option<Decision>,
        }
        let start_live = Some(Decision::Start {
            trigger: Trigger::Live,
            occurrence_id: None,
            deadline: None,
            since: 0,
        });
        let cases = vec![
            Case {
                name: "live claim on a publishing idle channel starts",
                state: ChannelState {
                    claims: vec![live_claim(0)],
                    ..base(live(false))
                },
                now: 10,
                want: start_live.clone(),
            },
            Case {
                name: "no claim, nothing to do",
                state: base(live(false)),
                now: 10,
                want: None,
            },
            Case {
                name: "claim but channel not publishing waits",
                state: ChannelState {
                    claims: vec![schedule(0, Some(60 * MIN))],
                    ..base(ready())
                },
                now: 10,
                want: None,
            },
            Case {
                name: "channel already recording (not by lsrecd) is left alone",
                state: ChannelState {
                    claims: vec![live_claim(0)],
                    ..base(live(true))
                },
                now: 10,
                want: None,
            },
            Case {
                name: "immediateOnAir channel is never started",
                state: ChannelState {
                    claims: vec![live_claim(0)],
                    ..base(Some(Observed {
                        status: ChannelStatus::Publishing,
                        is_recording: false,
                        immediate_on_air: true,
                        live_since: Some(0),
                    }))
                },
                now: 10,
                want: None,
            },
            Case {
                name: "rejected start stays blocked until the observation changes",
                state: ChannelState {
                    claims: vec![live_claim(0)],
                    start_blocked: true,
                    ..base(live(false))
                },
                now: 10,
                want: None,
            },
            Case {
                name: "missing channel decides nothing",
                state: ChannelState {
                    claims: vec![live_claim(0)],
                    owned: owned(0),
                    ..base(None)
                },
                now: 10,
                want: None,
            },
            Case {
                name: "schedule window start carries occurrence and deadline",
                state: ChannelState {
                    claims: vec![schedule(0, Some(60 * MIN))],
                    ..base(live(false))
                },
                now: 5,
                want: Some(Decision::Start {
                    trigger: Trigger::Schedule("news".into()),
                    occurrence_id: Some(7),
                    deadline: Some(60 * MIN),
                    since: 0,
                }),
            },
            Case {
                name: "schedule wins over live claim; open-ended live claim removes the deadline",
                state: ChannelState {
                    claims: vec![live_claim(0), schedule(0, Some(60 * MIN))],
                    ..base(live(false))
                },
                now: 5,
                want: Some(Decision::Start {
                    trigger: Trigger::Schedule("news".into()),
                    occurrence_id: Some(7),
                    deadline: None,
                    since: 0,
                }),
            },
            Case {
                name: "future window does not start yet",
                state: ChannelState {
                    claims: vec![schedule(10 * MIN, Some(20 * MIN))],
                    ..base(live(false))
                },
                now: 5 * MIN,
                want: None,
            },
            Case {
                name: "owned recording with an active claim continues",
                state: ChannelState {
                    claims: vec![schedule(0, Some(60 * MIN))],
                    owned: owned(0),
                    ..base(live(true))
                },
                now: 30 * MIN,
                want: None,
            },
            Case {
                name: "owned recording stops when the window ends",
                state: ChannelState {
                    claims: vec![schedule(0, Some(60 * MIN))],
                    owned: owned(0),
                    ..base(live(true))
                },
                now: 60 * MIN,
                want: Some(Decision::Stop {
                    reason: StopReason::ClaimsEnded,
                }),
            },
            Case {
                name: "another claim keeps the recording past the window",
                state: ChannelState {
                    claims: vec![schedule(0, Some(60 * MIN)), live_claim(0)],
                    owned: owned(0),
                    ..base(live(true))
                },
                now: 61 * MIN,
                want: None,
            },
            Case {
                name: "max_duration stops even with a claim left",
                state: ChannelState {
                    claims: vec![live_claim(0)],
                    owned: owned(0),
                    max_duration_ms: Some(30 * MIN),
                    ..base(live(true))
                },
                now: 30 * MIN,
                want: Some(Decision::Stop {
                    reason: StopReason::MaxDuration,
                }),
            },
            Case {
                name: "claims spent by a max_duration cap do not restart",
                state: ChannelState {
                    claims: vec![live_claim(0)],
                    spent_before: Some(30 * MIN),
                    ..base(live(false))
                },
                now: 31 * MIN,
                want: None,
            },
            Case {
                name: "a claim that begins after the cap may start again",
                state: ChannelState {
                    claims: vec![schedule(40 * MIN, Some(50 * MIN))],
                    spent_before: Some(30 * MIN),
                    ..base(live(false))
                },
                now: 41 * MIN,
                want: Some(Decision::Start {
                    trigger: Trigger::Schedule("news".into()),
                    occurrence_id: Some(7),
                    deadline: Some(50 * MIN),
                    since: 40 * MIN,
                }),
            },
            Case {
                name: "owned recording that ended by itself is released",
                state: ChannelState {
                    claims: vec![live_claim(0)],
                    owned: owned(0),
                    ..base(ready())
                },
                now: 10,
                want: Some(Decision::Release),
            },
            Case {
                name: "a window that opens after the channel went live counts from the window",
                state: ChannelState {
                    claims: vec![schedule(10 * MIN, Some(20 * MIN))],
                    ..base(live(false))
                },
                now: 11 * MIN,
                want: Some(Decision::Start {
                    trigger: Trigger::Schedule("news".into()),
                    occurrence_id: Some(7),
                    deadline: Some(20 * MIN),
                    since: 10 * MIN,
                }),
            },
            Case {
                name: "recording not started by lsrecd is never stopped",
                state: base(live(true)),
                now: 10,
                want: None,
            },
        ];
        for c in cases {
            assert_eq!(decide(&c.state, c.now), c.want, "{}", c.name);
        }
    }

    #[test]
    fn occurrence_transitions() {
        let occ = |state, end| Occurrence {
            state,
            fire_time: 10 * MIN,
            window_end: end,
        };
        use OccurrenceState::*;
        type Row = (
            &'static str,
            Occurrence,
            Option<Observed>,
            i64,
            Option<OccurrenceState>,
        );
        let cases: Vec<Row> = vec![
            (
                "pending before fire time stays",
                occ(Pending, Some(70 * MIN)),
                live(false),
                9 * MIN,
                None,
            ),
            (
                "pending arms at fire time",
                occ(Pending, Some(70 * MIN)),
                ready(),
                10 * MIN,
                Some(Armed),
            ),
            (
                "armed waits for the channel",
                occ(Armed, Some(70 * MIN)),
                ready(),
                30 * MIN,
                None,
            ),
            (
                "armed records once the channel records",
                occ(Armed, Some(70 * MIN)),
                live(true),
                30 * MIN,
                Some(Recording),
            ),
            (
                "armed missed at window end",
                occ(Armed, Some(70 * MIN)),
                ready(),
                70 * MIN,
                Some(Missed),
            ),
            (
                "armed missed when channel missing all window",
                occ(Armed, Some(70 * MIN)),
                None,
                70 * MIN,
                Some(Missed),
            ),
            (
                "open-ended armed missed after catch_up",
                occ(Armed, None),
                ready(),
                16 * MIN,
                Some(Missed),
            ),
            (
                "open-ended armed waits within catch_up",
                occ(Armed, None),
                ready(),
                14 * MIN,
                None,
            ),
            (
                "recording completes at window end",
                occ(Recording, Some(70 * MIN)),
                live(true),
                70 * MIN,
                Some(Completed),
            ),
            (
                "recording continues in the window even if the stream drops",
                occ(Recording, Some(70 * MIN)),
                ready(),
                40 * MIN,
                None,
            ),
            (
                "open-ended recording completes when publishing stops",
                occ(Recording, None),
                ready(),
                40 * MIN,
                Some(Completed),
            ),
            (
                "open-ended recording continues while live",
                occ(Recording, None),
                live(true),
                400 * MIN,
                None,
            ),
            (
                "final states stay",
                occ(Missed, Some(70 * MIN)),
                live(true),
                30 * MIN,
                None,
            ),
        ];
        for (name, o, obs, now, want) in cases {
            let got = advance_occurrence(&o, obs.as_ref(), 5 * MIN, 0, now).map(|(s, _, _)| s);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn occurrence_due_while_down_is_honoured_within_catch_up_and_missed_beyond() {
        let o = Occurrence {
            state: OccurrenceState::Pending,
            fire_time: 10 * MIN,
            window_end: Some(70 * MIN),
        };
        let up_since = 30 * MIN; // lsrecd came back at minute 30
        let at = |now| advance_occurrence(&o, live(false).as_ref(), 5 * MIN, up_since, now);
        assert_eq!(
            at(14 * MIN).unwrap().0,
            OccurrenceState::Armed,
            "within catch_up"
        );
        let (state, reason, detail) = at(31 * MIN).unwrap();
        assert_eq!(reason, OccurrenceReason::Down);
        assert_eq!(state, OccurrenceState::Missed);
        assert_eq!(
            detail,
            "lsrecd was not running at the fire time and came back 21m later (beyond catch_up 5m)"
        );
        let (state, _, detail) = at(71 * MIN).unwrap();
        assert_eq!(state, OccurrenceState::Missed);
        assert!(detail.ends_with("(after the window ended)"), "{detail}");
        // Fired while running but handled late (a slow tick): still armed.
        let late_tick = advance_occurrence(&o, live(false).as_ref(), 5 * MIN, 0, 20 * MIN);
        assert_eq!(late_tick.unwrap().0, OccurrenceState::Armed);
    }

    #[test]
    fn missed_details_say_why() {
        let o = Occurrence {
            state: OccurrenceState::Armed,
            fire_time: 0,
            window_end: None,
        };
        let (_, reason, detail) =
            advance_occurrence(&o, ready().as_ref(), 5 * MIN, 0, 6 * MIN).unwrap();
        assert_eq!(reason, OccurrenceReason::NotLive);
        assert_eq!(
            detail,
            "channel was not publishing within catch_up (5m) of the fire time"
        );
    }
}
