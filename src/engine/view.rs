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

use crate::livestation::{Channel, ChannelPage, ChannelRef, PageDigest, PageShape};

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
    /// Counts the changes to the entries other than a listing finding each where it expected
    /// it, as it was: an entry added, moved, removed or changed, or an observation older than
    /// the one held. While it stays the same, a page of the listing that lists the same
    /// channels as last time finds them where it left them, as it left them.
    shaken: u64,
    /// What each page of the listing (by `pageNo` - 1) did to the view when it was last read.
    pages: Vec<Option<PageMark>>,
}

/// What a page of a listing did to the view: kept so that the same page, listed again, is
/// replayed rather than read (see [`ChannelView::replay_page`]).
#[derive(Clone, Copy, Debug)]
struct PageMark {
    digest: PageDigest,
    /// The entries the page listed are at positions `first..first + shape.channels`, in the
    /// page's order.
    first: usize,
    shape: PageShape,
    /// [`ChannelView::shaken`] once the page was applied: the mark holds while it stays so.
    shaken: u64,
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
            shaken: 0,
            pages: Vec::new(),
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

    /// Applies page `page_no` of the listing begun last (see [`ChannelView::apply_listed`]),
    /// telling `each` how each channel not listed before by the same listing changed; returns
    /// how many there were. When the page holds its channels as they now are in the view, each
    /// where the listing went on, and has the digest of its body, it is remembered for
    /// [`ChannelView::replay_page`].
    pub(crate) fn apply_page(
        &mut self,
        page_no: u32,
        page: &ChannelPage,
        as_of: i64,
        now: i64,
        mut each: impl FnMut(ChannelRef<'_>, Change),
    ) -> usize {
        let (first, shaken) = (self.next, self.shaken);
        let mut fresh = 0;
        for ch in page.channels() {
            if let Some(change) = self.apply_listed(ch, as_of, now) {
                fresh += 1;
                each(ch, change);
            }
        }
        let at = page_no as usize - 1;
        if self.pages.len() <= at {
            self.pages.resize(at + 1, None);
        }
        // Nothing moved or changed, so the page's channels are the entries `first..next`, as
        // the page gives them. A page with an entry that was skipped is read every time (its
        // warning with it).
        let exact = shaken == self.shaken && fresh == page.len() && page.skipped.is_empty();
        self.pages[at] = match page.digest {
            Some(digest) if exact => Some(PageMark {
                digest,
                first,
                shape: page.shape(),
                shaken,
            }),
            _ => None,
        };
        fresh
    }

    /// The digest of page `page_no` as last read, when the listing under way can replay it: no
    /// entry has been added, moved, removed or changed since, and the listing has gone on to
    /// where the page began.
    pub(crate) fn known_page(&self, page_no: u32) -> Option<PageDigest> {
        self.mark(page_no).map(|m| m.digest)
    }

    fn mark(&self, page_no: u32) -> Option<PageMark> {
        let mark = (*self.pages.get((page_no as usize).checked_sub(1)?)?)?;
        (self.listing > 0
            && mark.shaken == self.shaken
            && mark.first == self.next
            && mark.first + mark.shape.channels <= self.seen.len())
        .then_some(mark)
    }

    /// Replays page `page_no` of the listing under way, whose body has the digest of
    /// [`ChannelView::known_page`]: it lists the entries it listed last time, as they are, so
    /// each is noted as listed and observed `as_of`, and nothing else changes (no channel is
    /// new or changed, none touched), as reading it would do. `None` (and nothing done) when
    /// the view has changed since that digest was given: the page must then be read.
    pub(crate) fn replay_page(&mut self, page_no: u32, as_of: i64) -> Option<PageShape> {
        let mark = self.mark(page_no)?;
        let listing = self.listing;
        for at in mark.first..mark.first + mark.shape.channels {
            let seen = &mut self.seen[at];
            seen.listed = listing;
            seen.as_of = seen.as_of.max(as_of);
        }
        self.next = mark.first + mark.shape.channels;
        Some(mark.shape)
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
        if !gone.is_empty() {
            self.shaken += 1;
        }
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
            self.shaken += 1;
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
            // The entry is not as this observation's page gives it.
            self.shaken += 1;
            return Some(Change::Same);
        }
        let changed = prev.channel.is_recording != channel.is_recording
            || prev.channel.channel_status != *channel.channel_status;
        // Moves only with the status, which the comparison below counts.
        prev.live_since = match (channel.channel_status.is_live(), prev.live_since) {
            (true, None) => Some(now),
            (true, since) => since,
            (false, _) => None,
        };
        prev.as_of = as_of;
        if prev.channel != channel {
            self.shaken += 1;
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
            self.shaken += 1;
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
            touched: Touched::none(),
            listing: self.listing,
            ..ChannelView::default()
        };
        // Out of the listing's order: the next listing puts it back in place.
        if let Some(seen) = self.seen.swap_remove(channel_id) {
            self.shaken += 1;
            let flags = Flags::of(&seen.channel);
            self.flag(channel_id, flags, Flags::default());
            part.flag(channel_id, Flags::default(), flags);
            part.seen.insert(channel_id.to_string(), seen);
        }
        part
    }

    /// Puts back entries taken with [`ChannelView::detach`], as they are now.
    pub(crate) fn rejoin(&mut self, part: ChannelView) {
        if !part.seen.is_empty() {
            self.shaken += 1;
        }
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
            self.shaken += 1;
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

    /// A single read of channel `id` (not recording), made and applied at `t`.
    fn read_one(view: &mut ChannelView, id: &str, status: ChannelStatus, t: i64) -> Change {
        view.apply(channel(id, status, false).borrowed(), t, t)
    }

    /// [`read_one`] for a channel on a page of the listing begun last.
    fn read_listed(
        view: &mut ChannelView,
        id: &str,
        status: ChannelStatus,
        t: i64,
    ) -> Option<Change> {
        view.apply_listed(channel(id, status, false).borrowed(), t, t)
    }

    #[test]
    fn live_since_is_the_first_observation_of_an_unbroken_publishing_session() {
        let mut view = ChannelView::default();
        assert_eq!(
            read_one(&mut view, "a", ChannelStatus::Publishing, 1_000),
            Change::New
        );
        read_one(&mut view, "a", ChannelStatus::Publishing, 2_000);
        assert_eq!(view.get("a").unwrap().live_since, Some(1_000));
        read_one(&mut view, "a", ChannelStatus::Ready, 3_000);
        assert_eq!(view.get("a").unwrap().live_since, None);
        read_one(&mut view, "a", ChannelStatus::Publishing, 4_000);
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
        read_one(&mut view, "a", ChannelStatus::Ready, 1_000);
        read_one(&mut view, "b", ChannelStatus::Ready, 1_000);
        read_one(&mut view, "c", ChannelStatus::Ready, 1_000);
        assert_eq!(
            view.take_touched(),
            Touched::All,
            "never stored: all of them"
        );
        view.begin_listing();
        for id in ["a", "b", "c"] {
            read_listed(&mut view, id, ChannelStatus::Ready, 2_000);
        }
        view.set_recording("a", false);
        view.retain_listed();
        assert!(view.take_touched().is_empty(), "the same values again");
        view.begin_listing();
        read_listed(&mut view, "a", ChannelStatus::Publishing, 3_000);
        read_listed(&mut view, "b", ChannelStatus::Ready, 3_000);
        view.set_recording("b", true);
        view.retain_listed();
        assert_eq!(ids(view.take_touched()), ["a", "b", "c"]);
        assert!(view.take_touched().is_empty());
    }

    #[test]
    fn touched_channels_given_back_add_up_and_all_of_them_stays_all() {
        let mut view = ChannelView::default();
        read_one(&mut view, "a", ChannelStatus::Ready, 1_000);
        read_one(&mut view, "b", ChannelStatus::Ready, 1_000);
        let everything = view.take_touched();
        read_one(&mut view, "a", ChannelStatus::Publishing, 2_000);
        view.touch(everything);
        assert_eq!(
            view.take_touched(),
            Touched::All,
            "a failed store of all of them"
        );
        read_one(&mut view, "a", ChannelStatus::Ready, 3_000);
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

    /// A page of `channels` out of `total`, with the digest of the JSON it would come as.
    fn page(channels: &[Channel], total: usize) -> ChannelPage {
        let mut page = ChannelPage::from_channels(channels, Some(total as u64));
        let body = serde_json::json!({ "content": channels, "total": total });
        page.digest = Some(PageDigest::of(body.to_string().as_bytes()));
        page
    }

    #[test]
    fn a_page_listed_as_last_time_is_replayed_and_a_change_anywhere_has_it_read_again() {
        let channels: Vec<Channel> = (0..6)
            .map(|i| channel(&format!("c{i}"), ChannelStatus::Ready, false))
            .collect();
        let pages = [page(&channels[..3], 6), page(&channels[3..], 6)];
        let mut view = ChannelView::default();
        let list = |view: &mut ChannelView, t: i64| -> Vec<bool> {
            view.begin_listing();
            let replayed = (1..=2)
                .map(|n| {
                    let page = &pages[n as usize - 1];
                    if view.known_page(n) == page.digest && view.replay_page(n, t).is_some() {
                        return true;
                    }
                    view.apply_page(n, page, t, t, |_, _| {});
                    false
                })
                .collect();
            view.retain_listed();
            replayed
        };
        // New channels, then the first listing of the same pages: both read.
        assert_eq!(list(&mut view, 1_000), [false, false]);
        assert_eq!(list(&mut view, 2_000), [false, false]);
        view.take_touched();
        assert_eq!(list(&mut view, 3_000), [true, true]);
        assert!(view.take_touched().is_empty(), "a replay touches nothing");
        assert_eq!(view.get("c4").map(|s| s.as_of), Some(3_000));
        assert!(view.listed("c4"));
        // lsrecd's own start on the second page. The listing after it reads both pages (and
        // the second changes c4 back), the next reads them again: the first page's mark was
        // taken before the second page changed an entry. Then they are replayed.
        view.set_recording("c4", true);
        assert_eq!(list(&mut view, 4_000), [false, false]);
        assert!(!view.is_recording("c4"), "the page, read, says it is not");
        assert_eq!(list(&mut view, 5_000), [false, false]);
        assert_eq!(list(&mut view, 6_000), [true, true]);
        // A hint that changed nothing keeps the pages replayed; one that changed c1, on the
        // first page, has them read until a listing finds nothing to change.
        view.apply(channels[1].borrowed(), 6_500, 6_500);
        assert_eq!(list(&mut view, 7_000), [true, true]);
        read_one(&mut view, "c1", ChannelStatus::Publishing, 7_500);
        assert_eq!(list(&mut view, 8_000), [false, false]);
        assert!(!view.is_live("c1"));
        assert_eq!(list(&mut view, 9_000), [false, true]);
        assert_eq!(list(&mut view, 10_000), [true, true]);
    }

    /// Listings of pages that mostly come back as last time, or come with channels changed,
    /// added, dropped or moved, or shifted by one between pages, with hints, lsrecd's own
    /// starts and stops and entries taken out while a page is on its way: a view that replays what it can ends every listing exactly as one that reads every
    /// page (the same entries in the same order, as of the same times, the same channels
    /// touched), and each replayed page is one whose reading would have changed nothing.
    #[test]
    fn replaying_a_page_leaves_the_view_as_reading_it_does() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        use std::cell::Cell;

        let mutation = (0u8..6, 0u8..24, 0u8..24);
        let disturbance = (0u8..8, 0u8..4, 0u8..24, any::<bool>());
        let listing = (
            prop::collection::vec(mutation, 0..3),
            prop::collection::vec(disturbance, 0..3),
            prop::option::weighted(0.2, 1usize..6),
        );
        let listings = prop::collection::vec(listing, 1..10);
        let mut runner = TestRunner::new(Config {
            cases: 512,
            ..Config::default()
        });
        let (replayed, read) = (Cell::new(0), Cell::new(0));
        runner
            .run(&listings, |listings| {
                let mut truth: Vec<Channel> = (0..16)
                    .map(|i| channel(&format!("c{i}"), ChannelStatus::Ready, false))
                    .collect();
                let (mut reader, mut replayer) = (ChannelView::default(), ChannelView::default());
                for (n, (mutations, disturbances, shift)) in listings.iter().enumerate() {
                    for &(kind, a, b) in mutations {
                        let (a, b) = (a as usize, b as usize);
                        let len = truth.len();
                        match kind {
                            0 if a < len => {
                                let c = &mut truth[a];
                                c.channel_status = if c.channel_status.is_live() {
                                    ChannelStatus::Ready
                                } else {
                                    ChannelStatus::Publishing
                                };
                            }
                            1 if a < len => truth[a].is_recording = !truth[a].is_recording,
                            2 if a < len => {
                                truth.remove(a);
                            }
                            3 if !truth.iter().any(|c| c.channel_id == format!("c{a}")) => {
                                truth.push(channel(&format!("c{a}"), ChannelStatus::Ready, false));
                            }
                            4 if a < len && b < len => truth.swap(a, b),
                            5 if a < len && b < len => {
                                let c = truth.remove(a);
                                truth.insert(b.min(truth.len()), c);
                            }
                            _ => {}
                        }
                    }
                    let t = 100_000 * (n as i64 + 1);
                    // Pages of 4; from page `shift` on, each begins one channel early, as when
                    // the list shifts between pages.
                    let mut pages = Vec::new();
                    for k in 0.. {
                        let start = 4 * k - usize::from(shift.is_some_and(|s| k >= s));
                        if start >= truth.len() {
                            break;
                        }
                        let end = (start + 4).min(truth.len());
                        pages.push(page(&truth[start..end], truth.len()));
                    }
                    reader.begin_listing();
                    replayer.begin_listing();
                    for (p, page) in pages.iter().enumerate() {
                        let (page_no, as_of) = (p as u32 + 1, t + 100 * p as i64);
                        let known = replayer.known_page(page_no);
                        // What happens while the page is on its way, to both views; entries
                        // taken out are put back once the page is in.
                        let mut out = [Vec::new(), Vec::new()];
                        for &(_, kind, id, flag) in
                            disturbances.iter().filter(|d| d.0 as usize == p)
                        {
                            let id = format!("c{id}");
                            let status = if flag {
                                ChannelStatus::Publishing
                            } else {
                                ChannelStatus::Ready
                            };
                            for (v, view) in [&mut reader, &mut replayer].into_iter().enumerate() {
                                match kind {
                                    // A hint read after the page, or before it.
                                    0 => view.apply(
                                        channel(&id, status.clone(), false).borrowed(),
                                        as_of + 50,
                                        t,
                                    ),
                                    1 => view.apply(
                                        channel(&id, status.clone(), flag).borrowed(),
                                        as_of - 50,
                                        t,
                                    ),
                                    2 => {
                                        view.set_recording(&id, flag);
                                        Change::Same
                                    }
                                    _ => {
                                        out[v].push(view.detach(&id));
                                        Change::Same
                                    }
                                };
                            }
                        }
                        let mut changes = Vec::new();
                        let fresh = reader.apply_page(page_no, page, as_of, t, |c, change| {
                            changes.push((c.channel_id.to_owned(), change));
                        });
                        let shape = (known == page.digest)
                            .then(|| replayer.replay_page(page_no, as_of))
                            .flatten();
                        match shape {
                            Some(shape) => {
                                replayed.set(replayed.get() + 1);
                                prop_assert_eq!(shape, page.shape());
                                prop_assert_eq!(fresh, page.len());
                                prop_assert!(
                                    changes.iter().all(|(_, c)| *c == Change::Same),
                                    "replayed, but reading it changed {:?}",
                                    changes
                                );
                            }
                            None => {
                                read.set(read.get() + 1);
                                let mut again = Vec::new();
                                replayer.apply_page(page_no, page, as_of, t, |c, change| {
                                    again.push((c.channel_id.to_owned(), change));
                                });
                                prop_assert_eq!(&again, &changes);
                            }
                        }
                        let [to_reader, to_replayer] = out;
                        to_reader.into_iter().for_each(|part| reader.rejoin(part));
                        to_replayer
                            .into_iter()
                            .for_each(|part| replayer.rejoin(part));
                    }
                    reader.retain_listed();
                    replayer.retain_listed();
                    let entries = |v: &ChannelView| -> Vec<(String, Seen)> {
                        v.seen
                            .iter()
                            .map(|(id, s)| (id.clone(), (**s).clone()))
                            .collect()
                    };
                    prop_assert_eq!(entries(&reader), entries(&replayer));
                    prop_assert_eq!(reader.take_touched(), replayer.take_touched());
                    prop_assert_eq!(&reader.live, &replayer.live);
                    prop_assert_eq!(&reader.recording, &replayer.recording);
                }
                Ok(())
            })
            .unwrap();
        // The pages came back as they were often enough for replays to be tried, and changed
        // often enough for reads.
        assert!(
            replayed.get() > 500 && read.get() > 500,
            "{} replayed, {} read",
            replayed.get(),
            read.get()
        );
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
            read_one(&mut view, "a", ChannelStatus::Publishing, 4_000),
            Change::Same
        );
        assert!(view.get("a").unwrap().channel.is_recording);
        assert_eq!(
            read_one(&mut view, "a", ChannelStatus::Publishing, 6_000),
            Change::Changed
        );
    }
}
