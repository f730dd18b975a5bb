//! Observation: the engine's view of every channel, from the paged channel list and from
//! single-channel reads.
//!
//! Each channel's entry keeps the last state Live Station returned, *as of* when the request
//! that returned it was made (a lower bound on when the state was true: it cannot predate the
//! request), and since when the channel has been seen publishing. The as-of time is what lets
//! an unclear start be settled by an observation: only one requested after the start could last
//! take effect says anything about it.

use std::collections::HashSet;

use indexmap::IndexMap;

use crate::livestation::{Channel, ChannelRef};

use super::decide::Observed;

/// One channel as last observed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Seen {
    pub channel: Channel,
    /// When the request that returned this state was made (engine time, ms).
    pub as_of: i64,
    /// Since when the channel has been publishing without a break, as far as lsrecd saw.
    pub live_since: Option<i64>,
    /// The last listing that listed the channel (see [`ChannelView::begin_listing`]).
    listed: u64,
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
    /// In the order of the last listing, as far as it could be kept (see
    /// [`ChannelView::apply_listed`]). Boxed: the map keeps room for more entries than it holds,
    /// and a `Seen` is some 250 bytes (the map is the larger part of the engine's memory at
    /// 10,000 channels).
    seen: IndexMap<String, Box<Seen>>,
    touched: Touched,
    /// The listing under way, or the last one: a count.
    listing: u64,
    /// Where the listing under way is expected to go on: the position after the channel it
    /// listed last.
    next: usize,
    /// The channels last seen publishing, and those last seen recording: what every tick asks
    /// about each configured channel, answered without reading thousands of entries.
    live: HashSet<String>,
    recording: HashSet<String>,
}

/// What the sets of live and recording channels follow in an entry.
#[derive(Clone, Copy, Default)]
struct Flags {
    live: bool,
    recording: bool,
}

impl Flags {
    fn of(channel: &Channel) -> Flags {
        Flags {
            live: channel.channel_status.is_live(),
            recording: channel.is_recording,
        }
    }
}

/// An empty view, never stored: everything it comes to hold counts as touched.
impl Default for ChannelView {
    fn default() -> ChannelView {
        ChannelView {
            seen: IndexMap::new(),
            touched: Touched::All,
            listing: 0,
            next: 0,
            live: HashSet::new(),
            recording: HashSet::new(),
        }
    }
}

impl ChannelView {
    /// Takes a fresh observation of one channel, made by a request at `as_of` during the tick
    /// of `now` (a publishing session begins at the tick that first sees it; a hint served
    /// during a tick passes its own, later instant, which the claims bring back to the
    /// decision's: see `Claims::derive`). An observation older than the one
    /// held is ignored (a slow read must not undo a newer one). The channel is copied only
    /// when it differs from the one held.
    pub(crate) fn apply(&mut self, channel: ChannelRef<'_>, as_of: i64, now: i64) -> Change {
        self.observe(channel, as_of, now, None)
            .unwrap_or(Change::Same)
    }

    /// Starts a complete listing of the channels: see [`ChannelView::apply_listed`].
    pub(crate) fn begin_listing(&mut self) {
        self.listing += 1;
        self.next = 0;
    }

    /// [`ChannelView::apply`] for a channel of a page of the listing begun last, and notes
    /// that the listing lists it; `None` (and nothing applied) when an earlier page of the
    /// same listing already listed it (the list may shift between pages: the first entry is
    /// the one kept).
    ///
    /// The entries are kept in the order the listing gives: each channel listed is moved to
    /// the position after the one listed before it. A listing in the same order as the last
    /// one then finds each channel where it expects it, and reads the view from one end to the
    /// other rather than at a random place per channel: at 10,000 channels, the lookups in a
    /// map the caches have forgotten since the last poll were most of what an idle poll cost.
    /// The order is only a guess: a channel not where it is expected is looked up.
    pub(crate) fn apply_listed(
        &mut self,
        channel: ChannelRef<'_>,
        as_of: i64,
        now: i64,
    ) -> Option<Change> {
        self.observe(channel, as_of, now, Some(self.listing))
    }

    /// Whether the listing begun last has listed the channel so far.
    pub(crate) fn listed(&self, channel_id: &str) -> bool {
        self.listing > 0
            && self
                .seen
                .get(channel_id)
                .is_some_and(|s| s.listed == self.listing)
    }

    /// Forgets the channels the listing begun last did not list: called once it is complete.
    pub(crate) fn retain_listed(&mut self) {
        let listing = self.listing;
        let mut gone = Vec::new();
        self.seen.retain(|id, seen| {
            let keep = seen.listed == listing;
            if !keep {
                gone.push((id.clone(), Flags::of(&seen.channel)));
            }
            keep
        });
        for (id, flags) in gone {
            self.touched.insert(&id);
            self.flag(&id, flags, Flags::default());
        }
    }

    /// Follows an entry's change from `was` to `is` in the sets of live and recording channels.
    fn flag(&mut self, id: &str, was: Flags, is: Flags) {
        for (set, was, is) in [
            (&mut self.live, was.live, is.live),
            (&mut self.recording, was.recording, is.recording),
        ] {
            match (was, is) {
                (false, true) => {
                    set.insert(id.to_owned());
                }
                (true, false) => {
                    set.remove(id);
                }
                _ => {}
            }
        }
    }

    /// Applies an observation; `listed` is the listing whose page it is on, if any (`None`
    /// when that listing listed the channel already).
    fn observe(
        &mut self,
        channel: ChannelRef<'_>,
        as_of: i64,
        now: i64,
        listed: Option<u64>,
    ) -> Option<Change> {
        let id = channel.channel_id;
        let at = match self.seen.get_index(self.next) {
            Some((expected, _)) if listed.is_some() && expected == id => Some(self.next),
            _ => self.seen.get_index_of(id),
        };
        let Some(mut at) = at else {
            self.touched.insert(id);
            let channel = channel.to_channel();
            let flags = Flags::of(&channel);
            self.flag(id, Flags::default(), flags);
            let (at, _) = self.seen.insert_full(
                id.to_owned(),
                Box::new(Seen {
                    live_since: flags.live.then_some(now),
                    channel,
                    as_of,
                    listed: listed.unwrap_or(0),
                }),
            );
            if listed.is_some() {
                self.listed_at(at);
            }
            return Some(Change::New);
        };
        if let Some(listing) = listed {
            if self.seen[at].listed == listing {
                return None;
            }
            self.seen[at].listed = listing;
            at = self.listed_at(at);
        }
        let prev = &mut self.seen[at];
        if prev.as_of > as_of {
            return Some(Change::Same);
        }
        let changed = prev.channel.is_recording != channel.is_recording
            || prev.channel.channel_status != *channel.channel_status;
        prev.live_since = match (channel.channel_status.is_live(), prev.live_since) {
            (true, None) => Some(now),
            (true, since) => since,
            (false, _) => None,
        };
        prev.as_of = as_of;
        if prev.channel != channel {
            let was = Flags::of(&prev.channel);
            prev.channel = channel.to_channel();
            let is = Flags::of(&prev.channel);
            self.touched.insert(id);
            self.flag(id, was, is);
        }
        Some(if changed {
            Change::Changed
        } else {
            Change::Same
        })
    }

    /// Moves the entry at `at`, just listed, to where the listing is expected to go on, unless
    /// it is before that place already; returns where it is now.
    fn listed_at(&mut self, at: usize) -> usize {
        let to = if at > self.next {
            self.seen.swap_indices(at, self.next);
            self.next
        } else {
            at
        };
        self.next = to + 1;
        to
    }

    /// Takes the channel's entry out into a view of its own (see `Actions::detach`).
    pub(crate) fn detach(&mut self, channel_id: &str) -> ChannelView {
        let mut part = ChannelView {
            seen: IndexMap::new(),
            touched: Touched::none(),
            listing: self.listing,
            next: 0,
            live: HashSet::new(),
            recording: HashSet::new(),
        };
        // Out of the listing's order: the next listing puts it back in place.
        if let Some(seen) = self.seen.swap_remove(channel_id) {
            let flags = Flags::of(&seen.channel);
            self.flag(channel_id, flags, Flags::default());
            part.flag(channel_id, Flags::default(), flags);
            part.seen.insert(channel_id.to_string(), seen);
        }
        part
    }

    /// Puts back entries taken with [`ChannelView::detach`], as they are now.
    pub(crate) fn rejoin(&mut self, part: ChannelView) {
        self.seen.extend(part.seen);
        self.touched.extend(part.touched);
        self.live.extend(part.live);
        self.recording.extend(part.recording);
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
            let was = Flags::of(&s.channel);
            s.channel.is_recording = recording;
            let is = Flags::of(&s.channel);
            self.touched.insert(channel_id);
            self.flag(channel_id, was, is);
        }
    }

    /// Channels in the view.
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Channels recording now, as far as the view knows.
    pub(crate) fn recording(&self) -> usize {
        self.recording.len()
    }

    /// Whether the channel was last seen recording.
    pub(crate) fn is_recording(&self, channel_id: &str) -> bool {
        self.recording.contains(channel_id)
    }

    /// Whether the channel was last seen publishing.
    pub(crate) fn is_live(&self, channel_id: &str) -> bool {
        self.live.contains(channel_id)
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
            view.apply(
                channel("a", ChannelStatus::Publishing, false).borrowed(),
                1_000,
                1_000
            ),
            Change::New
        );
        view.apply(
            channel("a", ChannelStatus::Publishing, false).borrowed(),
            2_000,
            2_000,
        );
        assert_eq!(view.get("a").unwrap().live_since, Some(1_000));
        view.apply(
            channel("a", ChannelStatus::Ready, false).borrowed(),
            3_000,
            3_000,
        );
        assert_eq!(view.get("a").unwrap().live_since, None);
        view.apply(
            channel("a", ChannelStatus::Publishing, false).borrowed(),
            4_000,
            4_000,
        );
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
        view.apply(
            channel("a", ChannelStatus::Ready, false).borrowed(),
            1_000,
            1_000,
        );
        view.apply(
            channel("b", ChannelStatus::Ready, false).borrowed(),
            1_000,
            1_000,
        );
        view.apply(
            channel("c", ChannelStatus::Ready, false).borrowed(),
            1_000,
            1_000,
        );
        assert_eq!(
            view.take_touched(),
            Touched::All,
            "never stored: all of them"
        );
        view.begin_listing();
        for id in ["a", "b", "c"] {
            view.apply_listed(
                channel(id, ChannelStatus::Ready, false).borrowed(),
                2_000,
                2_000,
            );
        }
        view.set_recording("a", false);
        view.retain_listed();
        assert!(view.take_touched().is_empty(), "the same values again");
        view.begin_listing();
        view.apply_listed(
            channel("a", ChannelStatus::Publishing, false).borrowed(),
            3_000,
            3_000,
        );
        view.apply_listed(
            channel("b", ChannelStatus::Ready, false).borrowed(),
            3_000,
            3_000,
        );
        view.set_recording("b", true);
        view.retain_listed();
        assert_eq!(ids(view.take_touched()), ["a", "b", "c"]);
        assert!(view.take_touched().is_empty());
    }

    #[test]
    fn touched_channels_given_back_add_up_and_all_of_them_stays_all() {
        let mut view = ChannelView::default();
        view.apply(
            channel("a", ChannelStatus::Ready, false).borrowed(),
            1_000,
            1_000,
        );
        view.apply(
            channel("b", ChannelStatus::Ready, false).borrowed(),
            1_000,
            1_000,
        );
        let everything = view.take_touched();
        view.apply(
            channel("a", ChannelStatus::Publishing, false).borrowed(),
            2_000,
            2_000,
        );
        view.touch(everything);
        assert_eq!(
            view.take_touched(),
            Touched::All,
            "a failed store of all of them"
        );
        view.apply(
            channel("a", ChannelStatus::Ready, false).borrowed(),
            3_000,
            3_000,
        );
        let some = view.take_touched();
        view.set_recording("b", true);
        view.touch(some);
        assert_eq!(ids(view.take_touched()), ["a", "b"]);
        view.touch_all();
        assert_eq!(view.take_touched(), Touched::All, "a reload");
    }

    #[test]
    fn a_listing_keeps_the_first_entry_of_a_channel_and_forgets_the_channels_it_did_not_list() {
        let mut view = ChannelView::default();
        let ready = |id| channel(id, ChannelStatus::Ready, false);
        let live = |id| channel(id, ChannelStatus::Publishing, false);
        view.begin_listing();
        assert_eq!(
            view.apply_listed(ready("a").borrowed(), 1_000, 1_000),
            Some(Change::New)
        );
        assert_eq!(
            view.apply_listed(live("a").borrowed(), 1_100, 1_000),
            None,
            "listed again on a later page"
        );
        assert!(!view.get("a").unwrap().channel.channel_status.is_live());
        view.apply(ready("b").borrowed(), 1_200, 1_000);
        assert!(
            view.listed("a") && !view.listed("b"),
            "b was read on its own"
        );
        view.retain_listed();
        assert!(view.get("a").is_some() && view.get("b").is_none());

        view.begin_listing();
        assert!(!view.listed("a"), "a new listing has listed nothing yet");
        view.apply(live("a").borrowed(), 3_000, 2_000);
        assert_eq!(
            view.apply_listed(ready("a").borrowed(), 2_000, 2_000),
            Some(Change::Same),
            "a page older than the read held changes nothing"
        );
        assert!(view.listed("a"), "but it does list the channel");
        view.retain_listed();
        assert!(view.get("a").unwrap().channel.channel_status.is_live());
    }

    /// Listings in any order, with channels listed twice, added, dropped, and entries taken
    /// out and put back half-way: each listing keeps the first entry of each channel, forgets
    /// the channels it did not list, and (when nothing was taken out) leaves the view in its
    /// own order.
    #[test]
    fn a_listing_in_any_order_keeps_the_first_entry_of_each_channel_and_its_order() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        let listing = prop::collection::vec(0u8..40, 0..60);
        let listings = prop::collection::vec((listing, prop::collection::vec(0u8..40, 0..4)), 1..6);
        let mut runner = TestRunner::new(Config {
            cases: 512,
            ..Config::default()
        });
        runner
            .run(&listings, |listings| {
                let mut view = ChannelView::default();
                for (n, (listing, taken_out)) in listings.iter().enumerate() {
                    let t = 1_000 * (n as i64 + 1);
                    view.begin_listing();
                    let mut first: Vec<(String, bool)> = Vec::new();
                    for (k, c) in listing.iter().enumerate() {
                        let id = format!("c{c}");
                        let live = (n + k) % 3 == 0;
                        let status = if live {
                            ChannelStatus::Publishing
                        } else {
                            ChannelStatus::Ready
                        };
                        let applied =
                            view.apply_listed(channel(&id, status, false).borrowed(), t, t);
                        let again = first.iter().any(|(f, _)| *f == id);
                        prop_assert_eq!(applied.is_none(), again, "{} at {}", id, k);
                        if !again {
                            first.push((id, live));
                        }
                        if k == listing.len() / 2 {
                            for d in taken_out {
                                let id = format!("c{d}");
                                let part = view.detach(&id);
                                prop_assert!(!view.is_live(&id) && !view.is_recording(&id));
                                view.rejoin(part);
                                view.set_recording(&id, d % 2 == 0);
                            }
                        }
                    }
                    view.retain_listed();
                    let held: Vec<(String, bool)> = view
                        .channels()
                        .map(|c| (c.channel_id.clone(), c.channel_status.is_live()))
                        .collect();
                    for c in 0..40 {
                        let id = format!("c{c}");
                        let seen = view.get(&id).map(|s| &s.channel);
                        let live = seen.is_some_and(|c| c.channel_status.is_live());
                        let recording = seen.is_some_and(|c| c.is_recording);
                        prop_assert_eq!(view.is_live(&id), live, "{}", id);
                        prop_assert_eq!(view.is_recording(&id), recording, "{}", id);
                    }
                    let recording = view.channels().filter(|c| c.is_recording).count();
                    prop_assert_eq!(view.recording(), recording);
                    if taken_out.is_empty() {
                        prop_assert_eq!(&held, &first);
                    } else {
                        let (mut held, mut first) = (held, first.clone());
                        held.sort();
                        first.sort();
                        prop_assert_eq!(held, first);
                    }
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn an_observation_older_than_the_one_held_changes_nothing() {
        let mut view = ChannelView::default();
        view.apply(
            channel("a", ChannelStatus::Publishing, true).borrowed(),
            5_000,
            5_000,
        );
        assert_eq!(
            view.apply(
                channel("a", ChannelStatus::Publishing, false).borrowed(),
                4_000,
                4_000
            ),
            Change::Same
        );
        assert!(view.get("a").unwrap().channel.is_recording);
        assert_eq!(
            view.apply(
                channel("a", ChannelStatus::Publishing, false).borrowed(),
                6_000,
                6_000
            ),
            Change::Changed
        );
    }
}
