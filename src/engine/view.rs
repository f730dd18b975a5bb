//! Observation: the engine's view of every channel, from the paged channel list and from
//! single-channel reads.
//!
//! Each channel's entry keeps the last state Live Station returned, *as of* when the request
//! that returned it was made (a lower bound on when the state was true: it cannot predate the
//! request), and since when the channel has been seen publishing. The as-of time is what lets
//! an unclear start be settled by an observation: only one requested after the start could last
//! take effect says anything about it.

use std::collections::HashMap;

use crate::livestation::Channel;

use super::decide::Observed;

/// One channel as last observed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Seen {
    pub channel: Channel,
    /// When the request that returned this state was made (engine time, ms).
    pub as_of: i64,
    /// Since when the channel has been publishing without a break, as far as lsrecd saw.
    pub live_since: Option<i64>,
}

impl Seen {
    /// What the decision rule needs.
    pub(crate) fn observed(&self) -> Observed {
        Observed {
            status: self.channel.channel_status.clone(),
            is_recording: self.channel.is_recording,
            immediate_on_air: self.channel.immediate_on_air,
            live_since: self.live_since,
        }
    }
}

/// How an observation compares with the previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// First time this channel is seen.
    New,
    /// Its status or recording flag changed.
    Changed,
    /// Nothing that matters changed.
    Same,
}

/// The channels as last observed.
#[derive(Debug, Default)]
pub(crate) struct ChannelView {
    seen: HashMap<String, Seen>,
    /// Grows whenever what the view holds of any channel changes (an entry added, removed or
    /// different in any field): equal revisions mean the same channels, as the same values.
    revision: u64,
}

impl ChannelView {
    /// Takes a fresh observation of one channel, made by a request at `as_of` during the tick
    /// of `now` (a publishing session begins at the tick that first sees it, so that it is
    /// never later than the decisions made in that tick). An observation older than the one
    /// held is ignored (a slow read must not undo a newer one).
    pub(crate) fn apply(&mut self, channel: Channel, as_of: i64, now: i64) -> Change {
        let live = channel.channel_status.is_live();
        match self.seen.get_mut(&channel.channel_id) {
            Some(prev) if prev.as_of > as_of => Change::Same,
            Some(prev) => {
                let changed = prev.channel.is_recording != channel.is_recording
                    || prev.channel.channel_status != channel.channel_status;
                if prev.channel != channel {
                    self.revision += 1;
                }
                prev.live_since = match (live, prev.live_since) {
                    (true, None) => Some(now),
                    (true, since) => since,
                    (false, _) => None,
                };
                prev.channel = channel;
                prev.as_of = as_of;
                if changed {
                    Change::Changed
                } else {
                    Change::Same
                }
            }
            None => {
                self.revision += 1;
                self.seen.insert(
                    channel.channel_id.clone(),
                    Seen {
                        live_since: live.then_some(now),
                        channel,
                        as_of,
                    },
                );
                Change::New
            }
        }
    }

    /// Takes the channel's entry out into a view of its own (see `Actions::detach`).
    pub(crate) fn detach(&mut self, channel_id: &str) -> ChannelView {
        let mut part = ChannelView::default();
        if let Some(seen) = self.seen.remove(channel_id) {
            part.seen.insert(channel_id.to_string(), seen);
        }
        part
    }

    /// Puts back entries taken with [`ChannelView::detach`], as they are now.
    pub(crate) fn rejoin(&mut self, part: ChannelView) {
        self.revision += part.revision;
        self.seen.extend(part.seen);
    }

    /// Forgets channels a complete listing did not return.
    pub(crate) fn retain(&mut self, listed: impl Fn(&str) -> bool) {
        let before = self.seen.len();
        self.seen.retain(|id, _| listed(id));
        if self.seen.len() != before {
            self.revision += 1;
        }
    }

    /// See the field: compare two to know whether anything changed in between.
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    /// Every channel as last observed, in no particular order.
    pub(crate) fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.seen.values().map(|s| &s.channel)
    }

    /// The last observation of a channel.
    pub(crate) fn get(&self, channel_id: &str) -> Option<&Seen> {
        self.seen.get(channel_id)
    }

    /// Notes the effect of lsrecd's own confirmed start or stop until the next observation.
    pub(crate) fn set_recording(&mut self, channel_id: &str, recording: bool) {
        if let Some(s) = self.seen.get_mut(channel_id)
            && s.channel.is_recording != recording
        {
            s.channel.is_recording = recording;
            self.revision += 1;
        }
    }

    /// Channels in the view.
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Channels recording now, as far as the view knows.
    pub(crate) fn recording(&self) -> usize {
        self.seen
            .values()
            .filter(|s| s.channel.is_recording)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::livestation::ChannelStatus;

    fn channel(id: &str, status: ChannelStatus, recording: bool) -> Channel {
        Channel {
            channel_id: id.into(),
            channel_name: None,
            channel_status: status,
            is_recording: recording,
            immediate_on_air: false,
            record: None,
            created_time: None,
        }
    }

    #[test]
    fn live_since_is_the_first_observation_of_an_unbroken_publishing_session() {
        let mut view = ChannelView::default();
        assert_eq!(
            view.apply(channel("a", ChannelStatus::Publishing, false), 1_000, 1_000),
            Change::New
        );
        view.apply(channel("a", ChannelStatus::Publishing, false), 2_000, 2_000);
        assert_eq!(view.get("a").unwrap().live_since, Some(1_000));
        view.apply(channel("a", ChannelStatus::Ready, false), 3_000, 3_000);
        assert_eq!(view.get("a").unwrap().live_since, None);
        view.apply(channel("a", ChannelStatus::Publishing, false), 4_000, 4_000);
        assert_eq!(view.get("a").unwrap().live_since, Some(4_000));
    }

    #[test]
    fn the_revision_moves_exactly_when_what_the_view_holds_changes() {
        let mut view = ChannelView::default();
        view.apply(channel("a", ChannelStatus::Ready, false), 1_000, 1_000);
        view.apply(channel("b", ChannelStatus::Ready, false), 1_000, 1_000);
        let idle = view.revision();
        view.apply(channel("a", ChannelStatus::Ready, false), 2_000, 2_000);
        view.retain(|_| true);
        view.set_recording("a", false);
        assert_eq!(view.revision(), idle, "the same values again");
        let mut renamed = channel("a", ChannelStatus::Ready, false);
        renamed.channel_name = Some("Studio A".into());
        view.apply(renamed, 3_000, 3_000);
        let after_rename = view.revision();
        assert!(after_rename > idle, "a detail the store keeps changed");
        view.set_recording("b", true);
        let after_start = view.revision();
        assert!(after_start > after_rename);
        view.retain(|id| id == "a");
        assert!(view.revision() > after_start, "b is gone");
    }

    #[test]
    fn an_observation_older_than_the_one_held_changes_nothing() {
        let mut view = ChannelView::default();
        view.apply(channel("a", ChannelStatus::Publishing, true), 5_000, 5_000);
        assert_eq!(
            view.apply(channel("a", ChannelStatus::Publishing, false), 4_000, 4_000),
            Change::Same
        );
        assert!(view.get("a").unwrap().channel.is_recording);
        assert_eq!(
            view.apply(channel("a", ChannelStatus::Publishing, false), 6_000, 6_000),
            Change::Changed
        );
    }
}
