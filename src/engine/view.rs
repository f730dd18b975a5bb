//! Observation: the engine's view of every channel, from the paged channel list and from
//! single-channel reads.
//!
//! Each channel's entry keeps the last state Live Station returned, *as of* when the request
//! that returned it was made (a lower bound on when the state was true: it cannot predate the
//! request), and since when the channel has been seen publishing. The as-of time is what lets
//! an unclear start be settled by an observation: only one requested after the start could last
//! take effect says anything about it.

use std::collections::{HashMap, HashSet};

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

/// Which channels' entries were added, removed or changed in any field since
/// [`ChannelView::take_touched`] was last called: what the store may have to write.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Touched {
    /// Any of them: the view was never stored, or what it stored is to be compared again
    /// (after a failed store of everything, or a reload). Naming thousands of channels one by
    /// one would cost memory for nothing: the store compares every row anyway.
    All,
    /// These.
    These(HashSet<String>),
}

impl Touched {
    fn none() -> Touched {
        Touched::These(HashSet::new())
    }

    /// Whether no channel was touched.
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Touched::These(ids) if ids.is_empty())
    }

    fn insert(&mut self, channel_id: &str) {
        if let Touched::These(ids) = self
            && !ids.contains(channel_id)
        {
            ids.insert(channel_id.to_string());
        }
    }

    fn extend(&mut self, other: Touched) {
        match (&mut *self, other) {
            (Touched::All, _) => {}
            (_, Touched::All) => *self = Touched::All,
            (Touched::These(ids), Touched::These(more)) => ids.extend(more),
        }
    }
}

/// The channels as last observed.
#[derive(Debug)]
pub(crate) struct ChannelView {
    /// Boxed: the table of a map keeps room for more entries than it holds, and a `Seen` is
    /// some 250 bytes (the table is the larger part of the engine's memory at 10,000 channels).
    seen: HashMap<String, Box<Seen>>,
    touched: Touched,
}

/// An empty view, never stored: everything it comes to hold counts as touched.
impl Default for ChannelView {
    fn default() -> ChannelView {
        ChannelView {
            seen: HashMap::new(),
            touched: Touched::All,
        }
    }
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
                    self.touched.insert(&channel.channel_id);
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
                self.touched.insert(&channel.channel_id);
                self.seen.insert(
                    channel.channel_id.clone(),
                    Box::new(Seen {
                        live_since: live.then_some(now),
                        channel,
                        as_of,
                    }),
                );
                Change::New
            }
        }
    }

    /// Takes the channel's entry out into a view of its own (see `Actions::detach`).
    pub(crate) fn detach(&mut self, channel_id: &str) -> ChannelView {
        let mut part = ChannelView {
            seen: HashMap::new(),
            touched: Touched::none(),
        };
        if let Some(seen) = self.seen.remove(channel_id) {
            part.seen.insert(channel_id.to_string(), seen);
        }
        part
    }

    /// Puts back entries taken with [`ChannelView::detach`], as they are now.
    pub(crate) fn rejoin(&mut self, part: ChannelView) {
        self.seen.extend(part.seen);
        self.touched.extend(part.touched);
    }

    /// Forgets channels a complete listing did not return.
    pub(crate) fn retain(&mut self, listed: impl Fn(&str) -> bool) {
        let touched = &mut self.touched;
        self.seen.retain(|id, _| {
            let keep = listed(id);
            if !keep {
                touched.insert(id);
            }
            keep
        });
    }

    /// The channels touched (added, removed or changed) since the last call, and forgets them:
    /// the store compares only these with what it holds.
    pub(crate) fn take_touched(&mut self) -> Touched {
        std::mem::replace(&mut self.touched, Touched::none())
    }

    /// Gives back channels taken with [`ChannelView::take_touched`] that were not stored.
    pub(crate) fn touch(&mut self, touched: Touched) {
        self.touched.extend(touched);
    }

    /// Counts every channel as touched: the next store compares them all.
    pub(crate) fn touch_all(&mut self) {
        self.touched = Touched::All;
    }

    /// Every channel as last observed, in no particular order.
    pub(crate) fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.seen.values().map(|s| &s.channel)
    }

    /// The last observation of a channel.
    pub(crate) fn get(&self, channel_id: &str) -> Option<&Seen> {
        self.seen.get(channel_id).map(|seen| &**seen)
    }

    /// Notes the effect of lsrecd's own confirmed start or stop until the next observation.
    pub(crate) fn set_recording(&mut self, channel_id: &str, recording: bool) {
        if let Some(s) = self.seen.get_mut(channel_id)
            && s.channel.is_recording != recording
        {
            s.channel.is_recording = recording;
            self.touched.insert(channel_id);
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

    fn ids(touched: Touched) -> Vec<String> {
        let Touched::These(ids) = touched else {
            panic!("every channel counted as touched")
        };
        let mut ids: Vec<String> = ids.into_iter().collect();
        ids.sort();
        ids
    }

    #[test]
    fn touched_channels_are_those_added_changed_or_removed_since_last_taken() {
        let mut view = ChannelView::default();
        view.apply(channel("a", ChannelStatus::Ready, false), 1_000, 1_000);
        view.apply(channel("b", ChannelStatus::Ready, false), 1_000, 1_000);
        view.apply(channel("c", ChannelStatus::Ready, false), 1_000, 1_000);
        assert_eq!(
            view.take_touched(),
            Touched::All,
            "never stored: all of them"
        );
        view.apply(channel("a", ChannelStatus::Ready, false), 2_000, 2_000);
        view.set_recording("a", false);
        view.retain(|_| true);
        assert!(view.take_touched().is_empty(), "the same values again");
        view.apply(channel("a", ChannelStatus::Publishing, false), 3_000, 3_000);
        view.set_recording("b", true);
        view.retain(|id| id != "c");
        assert_eq!(ids(view.take_touched()), ["a", "b", "c"]);
        assert!(view.take_touched().is_empty());
    }

    #[test]
    fn touched_channels_given_back_add_up_and_all_of_them_stays_all() {
        let mut view = ChannelView::default();
        view.apply(channel("a", ChannelStatus::Ready, false), 1_000, 1_000);
        view.apply(channel("b", ChannelStatus::Ready, false), 1_000, 1_000);
        let everything = view.take_touched();
        view.apply(channel("a", ChannelStatus::Publishing, false), 2_000, 2_000);
        view.touch(everything);
        assert_eq!(
            view.take_touched(),
            Touched::All,
            "a failed store of all of them"
        );
        view.apply(channel("a", ChannelStatus::Ready, false), 3_000, 3_000);
        let some = view.take_touched();
        view.set_recording("b", true);
        view.touch(some);
        assert_eq!(ids(view.take_touched()), ["a", "b"]);
        view.touch_all();
        assert_eq!(view.take_touched(), Touched::All, "a reload");
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
