//! The search for evidence after an unclear answer (ARCHITECTURE.md §6.2).
//!
//! Once a request without a clear answer can no longer land, one observation of its channel
//! settles it. Waiting for the next complete listing to bring that observation makes the
//! channel wait for every page of the list to be read without a failure, which on a bad day
//! (reads failing as often as writes) takes many seconds. So the engine reads such a channel
//! on its own (`getChannel`) as soon as its request can no longer land, and, when that read
//! fails, again soon: a quarter of a second after the first failure, doubling up to two seconds,
//! with jitter so that channels that failed together do not retry together. A read that
//! succeeds but settles nothing (the channel stopped publishing, say) is not repeated before
//! the next poll. Reads are never attempts of the request they settle.
//!
//! This part only keeps the schedule; [`super::Engine`] does the reads.

use std::collections::HashMap;

/// The wait after the first failed read of a channel.
const FIRST_WAIT_MS: i64 = 250;
/// The longest wait between two failed reads of a channel.
const MAX_WAIT_MS: i64 = 2_000;

/// When each channel whose request is unclear may be read next.
#[derive(Debug, Default)]
pub(crate) struct Evidence {
    next: HashMap<String, Next>,
}

#[derive(Clone, Copy, Debug)]
struct Next {
    at: i64,
    failures: u32,
}

impl Evidence {
    /// Of the channels with an unclear request (`(channel, land-by)`), those whose request can
    /// no longer land at `now` and that are due a read.
    pub(crate) fn due(&self, unclear: &[(String, i64)], now: i64) -> Vec<String> {
        unclear
            .iter()
            .filter(|(id, land_by)| self.read_at(id, *land_by) <= now)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// When the next read of any of `unclear` is due.
    pub(crate) fn next_at(&self, unclear: &[(String, i64)]) -> Option<i64> {
        unclear
            .iter()
            .map(|(id, land_by)| self.read_at(id, *land_by))
            .min()
    }

    fn read_at(&self, id: &str, land_by: i64) -> i64 {
        self.next.get(id).map_or(land_by, |n| n.at.max(land_by))
    }

    /// A read of `id` at `now` failed (`failed`), or went through without settling anything:
    /// when to read it next. `idle_ms` is the wait after a read
    /// that went through (the poll interval); `draw` a random number in `[0, 1)`.
    pub(crate) fn read(&mut self, id: &str, failed: bool, now: i64, idle_ms: i64, draw: f64) {
        let next = self
            .next
            .entry(id.to_owned())
            .or_insert(Next { at: 0, failures: 0 });
        if failed {
            next.failures += 1;
            next.at = now + wait_after(next.failures, draw);
        } else {
            next.failures = 0;
            next.at = now + idle_ms;
        }
    }

    /// Forgets a channel's schedule: its next read is due at once.
    pub(crate) fn forget(&mut self, id: &str) {
        self.next.remove(id);
    }

    /// Forgets the channels whose request is no longer unclear.
    pub(crate) fn retain(&mut self, unclear: &[(String, i64)]) {
        self.next
            .retain(|id, _| unclear.iter().any(|(other, _)| other == id));
    }
}

/// The wait after the `failures`-th failed read in a row: `250 ms · 2^(failures-1)`, at most
/// 2 s, of which a random half (`draw` in `[0, 1)`) is taken off.
pub(crate) fn wait_after(failures: u32, draw: f64) -> i64 {
    let exponent = failures.saturating_sub(1).min(16);
    let ceiling = FIRST_WAIT_MS.saturating_mul(1 << exponent).min(MAX_WAIT_MS);
    let draw = draw.clamp(0.0, 1.0);
    ceiling - (ceiling as f64 * draw / 2.0) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_a_quarter_second_to_two_seconds_with_up_to_half_taken_off() {
        for (failures, full) in [
            (1, 250),
            (2, 500),
            (3, 1000),
            (4, 2000),
            (5, 2000),
            (99, 2000),
        ] {
            assert_eq!(wait_after(failures, 0.0), full, "{failures}");
            for draw in [0.25, 0.5, 0.999_999] {
                let wait = wait_after(failures, draw);
                assert!(wait > full / 2 && wait < full, "{failures} {draw}: {wait}");
            }
        }
    }

    #[test]
    fn a_channel_is_read_once_its_request_can_no_longer_land_and_again_soon_after_a_failure() {
        let mut e = Evidence::default();
        let unclear = vec![("a".to_owned(), 5_000), ("b".to_owned(), 9_000)];
        assert_eq!(e.due(&unclear, 4_999), Vec::<String>::new());
        assert_eq!(e.next_at(&unclear), Some(5_000));
        assert_eq!(e.due(&unclear, 5_000), ["a"]);
        e.read("a", true, 5_000, 10_000, 0.0);
        assert_eq!(e.next_at(&unclear), Some(5_250));
        assert_eq!(e.due(&unclear, 5_100), Vec::<String>::new());
        e.read("a", true, 5_250, 10_000, 0.0);
        assert_eq!(e.next_at(&unclear), Some(5_750));
        // A read that goes through without settling waits for the next poll.
        e.read("a", false, 5_750, 10_000, 0.0);
        assert_eq!(e.next_at(&unclear), Some(9_000));
        e.retain(&unclear[1..]);
        assert_eq!(e.due(&unclear[..1], 5_000), ["a"], "forgotten once settled");
    }
}
