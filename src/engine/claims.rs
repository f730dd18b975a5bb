//! Claims: why each configured channel should be recording now, derived every tick from the
//! configuration, the database and the channel view.
//!
//! - a `record_when_live` channel claims itself while it publishes (from the start of the
//!   publishing session);
//! - an ARMED or RECORDING schedule occurrence claims its channel for its window;
//! - an open manual claim (`lsrecd start`) claims it until `lsrecd stop` or `max_duration`.
//!
//! This part also keeps what `max_duration` spent (claims that began before a cap stopped the
//! recording do not start it again) and the next instant a claim ends, so the engine can wake
//! for it.

use std::collections::{HashMap, HashSet};

use crate::config::Config;
use crate::store::{OccurrenceState, Store, StoreError};

use super::decide::{ChannelState, Claim, ClaimSource, Owned};
use super::view::ChannelView;

/// Which channels a derivation is for (see [`Claims::derive`]).
pub(crate) struct Scope<'a> {
    /// This channel only (a one-shot `lsrecd start|stop`).
    pub focus: Option<&'a str>,
    /// These channels only (a listing page, a hint).
    pub only: Option<&'a HashSet<String>>,
    /// Channels the action part has a job or a block for.
    pub busy: &'a (dyn Fn(&str) -> bool + Sync),
}

/// Claims bookkeeping across ticks.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    /// Per channel: claims that began at or before this instant were ended by `max_duration`.
    spent_before: HashMap<String, i64>,
    /// The next window end or `max_duration` cap after the last derivation.
    next_deadline: Option<i64>,
}

impl Claims {
    /// A `max_duration` cap stopped the channel's recording at `at`.
    pub(crate) fn spend(&mut self, channel_id: &str, at: i64) {
        self.spent_before.insert(channel_id.to_string(), at);
    }

    /// The next window end or `max_duration` cap, when one is ahead.
    pub(crate) fn next_deadline(&self) -> Option<i64> {
        self.next_deadline
    }

    /// The decision inputs of every configured channel with a claim, a recording lsrecd owns,
    /// or for which `busy` holds (a job of the action part): for any other, the decision is
    /// nothing, so an idle poll of thousands of channels derives nothing for them. Only `focus`
    /// when set; only those in `only` when given (then the next deadline is left as the last
    /// full derivation found it). `start_blocked` is left false: the action part knows it.
    pub(crate) async fn derive(
        &mut self,
        store: &Store,
        config: &Config,
        view: &ChannelView,
        scope: Scope<'_>,
        now: i64,
    ) -> Result<Vec<ChannelState>, StoreError> {
        let Scope { focus, only, busy } = scope;
        let owned: HashMap<String, Owned> = store
            .owned_recordings_open()
            .await?
            .into_iter()
            .map(|o| {
                (
                    o.channel_id,
                    Owned {
                        trigger: o.trigger,
                        started_at: o.started_at,
                    },
                )
            })
            .collect();
        let mut claims: HashMap<String, Vec<Claim>> = HashMap::new();
        for occ in store.open_occurrences().await? {
            if matches!(
                occ.state,
                OccurrenceState::Armed | OccurrenceState::Recording
            ) {
                claims.entry(occ.channel_id).or_default().push(Claim {
                    source: ClaimSource::Schedule {
                        name: occ.schedule,
                        occurrence_id: occ.id,
                    },
                    start: occ.fire_time,
                    end: occ.window_end,
                });
            }
        }
        for mc in store.active_manual_claims().await? {
            claims.entry(mc.channel_id).or_default().push(Claim {
                source: ClaimSource::Manual,
                start: mc.requested_at,
                end: None,
            });
        }

        let mut states = Vec::with_capacity(config.channels.len());
        let mut next_deadline: Option<i64> = None;
        let mut consider = |t: i64| {
            if t > now {
                next_deadline = Some(next_deadline.map_or(t, |d: i64| d.min(t)));
            }
        };
        for cc in &config.channels {
            if focus.is_some_and(|f| f != cc.id) || only.is_some_and(|o| !o.contains(&cc.id)) {
                continue;
            }
            // At rest, thousands of channels without a claim: nothing below reads an entry
            // of a map for them (an empty map, the live set of the view, is not hashed into).
            let mut channel_claims = if claims.is_empty() {
                Vec::new()
            } else {
                claims.remove(&cc.id).unwrap_or_default()
            };
            if cc.record_when_live
                && view.is_live(&cc.id)
                && let Some(seen) = view.get(&cc.id)
            {
                // Not later than `now`: a hint served during a tick reads at its own instant,
                // after the tick's, and a channel seen live then is live for the rest of the
                // tick's decisions too (else the tick's full pass finds no active claim and
                // stops the recording the hint just started).
                channel_claims.push(Claim {
                    source: ClaimSource::Live,
                    start: seen.live_since.map_or(now, |since| since.min(now)),
                    end: None,
                });
            }
            for c in &channel_claims {
                if let Some(end) = c.end {
                    consider(end);
                }
            }
            let owned = owned.get(&cc.id).cloned();
            if channel_claims.is_empty() && owned.is_none() && !busy(&cc.id) {
                continue;
            }
            if let (Some(o), Some(max)) = (&owned, cc.max_duration) {
                consider(o.started_at.saturating_add(max.as_millis() as i64));
            }
            states.push(ChannelState {
                channel_id: cc.id.clone(),
                observed: view.get(&cc.id).map(|s| s.observed()),
                owned,
                claims: channel_claims,
                max_duration_ms: cc.max_duration.map(|d| d.as_millis() as i64),
                spent_before: self.spent_before.get(&cc.id).copied(),
                start_blocked: false,
            });
        }
        if only.is_none() {
            self.next_deadline = next_deadline;
        }
        Ok(states)
    }
}
