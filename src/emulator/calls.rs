//! The call log: every request the emulator received on an API path, in the order it arrived,
//! with when it arrived and was answered and what it was answered. Bounded: the oldest entries
//! leave once [`CALL_LOG_CAPACITY`] are held. Tests and the benchmark read it to assert the order
//! of calls and to time them against the host clock (`GET /_emulator/calls?since=SEQ`).
//!
//! Times are the host's wall clock (not the gateway clock, which [`super::Control::set_clock_offset`]
//! may move), in Unix microseconds, so another process on the same machine can compare them with
//! its own clock.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::faults::Operation;

/// Entries the log holds before the oldest ones leave.
pub const CALL_LOG_CAPACITY: usize = 200_000;
/// Entries one [`CallLog::since`] answers at most when the caller names no limit.
pub const DEFAULT_CALLS_LIMIT: usize = 20_000;

/// One API request, as the emulator received and answered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// Position in arrival order: 1 for the first request, one more for each after it.
    pub seq: u64,
    /// When the request reached the emulator's handler (Unix microseconds, host clock).
    pub arrived_us: i64,
    /// When the answer was handed to the HTTP server, if it was: a request held until the client
    /// left (`hold`, `apply_then_hold`) has none.
    pub answered_us: Option<i64>,
    /// The operation its method and path name, `None` for a path the gateway does not route
    /// (whatever the outcome of authentication: a 401 on `startRecord` is still a `start_record`).
    pub operation: Option<Operation>,
    /// `pageNo` of a channel-list call (1 when absent, as the API reads it; `None` when it is not
    /// a number).
    pub page: Option<u32>,
    /// The channel id in the path, when there is one.
    pub channel_id: Option<String>,
    /// The HTTP status answered (for `apply_then_drop`, the status of the answer whose sending
    /// was cut short), `None` while unanswered.
    pub status: Option<u16>,
}

impl Call {
    /// [`Call::arrived_us`] in milliseconds.
    pub fn arrived_ms(&self) -> i64 {
        self.arrived_us.div_euclid(1000)
    }

    /// [`Call::answered_us`] in milliseconds.
    pub fn answered_ms(&self) -> Option<i64> {
        self.answered_us.map(|us| us.div_euclid(1000))
    }

    /// Whether this is a call of `op` (on `channel_id`, when given).
    pub fn is(&self, op: Operation, channel_id: Option<&str>) -> bool {
        self.operation == Some(op)
            && channel_id.is_none_or(|id| self.channel_id.as_deref() == Some(id))
    }
}

/// The calls after a sequence number ([`CallLog::since`], `GET /_emulator/calls?since=SEQ`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallPage {
    /// Calls with `seq` above the one asked for, oldest first.
    pub calls: Vec<Call>,
    /// The `since` to ask with next: the last `seq` answered, or the one asked for if none.
    pub next: u64,
    /// Calls after the one asked for that the log no longer holds (it is bounded): a gap.
    pub missed: u64,
    /// Whether more calls follow that the limit left out.
    pub more: bool,
}

/// The bounded log itself.
#[derive(Debug)]
pub(crate) struct CallLog {
    entries: VecDeque<Call>,
    capacity: usize,
    /// The `seq` the next call gets.
    next_seq: u64,
}

impl Default for CallLog {
    fn default() -> Self {
        CallLog::new(CALL_LOG_CAPACITY)
    }
}

impl CallLog {
    /// A log holding at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        CallLog {
            entries: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            next_seq: 1,
        }
    }

    /// A request arrived; returns its `seq`, for [`CallLog::answered`].
    pub(crate) fn arrived(
        &mut self,
        operation: Option<Operation>,
        page: Option<u32>,
        channel_id: Option<String>,
        at_us: i64,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(Call {
            seq,
            arrived_us: at_us,
            answered_us: None,
            operation,
            page,
            channel_id,
            status: None,
        });
        seq
    }

    /// Request `seq` was answered `status`; nothing if it has left the log already.
    pub(crate) fn answered(&mut self, seq: u64, status: u16, at_us: i64) {
        let Some(first) = self.entries.front().map(|c| c.seq) else {
            return;
        };
        let Some(i) = seq.checked_sub(first).and_then(|i| usize::try_from(i).ok()) else {
            return;
        };
        if let Some(call) = self.entries.get_mut(i) {
            call.status = Some(status);
            call.answered_us = Some(at_us);
        }
    }

    /// Up to `limit` calls with `seq` above `since`, oldest first.
    pub(crate) fn since(&self, since: u64, limit: usize) -> CallPage {
        let first = self.entries.front().map_or(self.next_seq, |c| c.seq);
        let last = self.next_seq - 1;
        // Calls after `since` that were dropped: those numbered since+1 ..= first-1.
        let missed = first
            .saturating_sub(since.saturating_add(1))
            .min(last.saturating_sub(since));
        let skip = since.saturating_sub(first - 1);
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        let calls: Vec<Call> = self
            .entries
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect();
        let next = calls.last().map_or(since, |c| c.seq);
        CallPage {
            more: next < last,
            calls,
            next,
            missed,
        }
    }
}

/// The wall clock in Unix microseconds.
pub(crate) fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(capacity: usize, n: u64) -> CallLog {
        let mut log = CallLog::new(capacity);
        for i in 0..n {
            let seq = log.arrived(
                Some(Operation::GetChannel),
                None,
                Some(format!("c{i}")),
                1_000 + i as i64,
            );
            assert_eq!(seq, i + 1);
        }
        log
    }

    fn seqs(page: &CallPage) -> Vec<u64> {
        page.calls.iter().map(|c| c.seq).collect()
    }

    #[test]
    fn calls_are_numbered_in_arrival_order_and_answered_in_place() {
        let mut log = CallLog::new(10);
        let list = log.arrived(Some(Operation::ListChannels), Some(3), None, 5_000);
        let start = log.arrived(Some(Operation::StartRecord), None, Some("a".into()), 5_001);
        let unrouted = log.arrived(None, None, None, 5_002);
        // Answered out of order: each answer goes to its own entry.
        log.answered(start, 200, 7_500);
        log.answered(list, 429, 8_000);
        let page = log.since(0, 100);
        assert_eq!(seqs(&page), [1, 2, 3]);
        assert_eq!((list, start, unrouted), (1, 2, 3));
        assert_eq!(page.calls[0].page, Some(3));
        assert_eq!(page.calls[0].status, Some(429));
        assert_eq!(page.calls[0].answered_ms(), Some(8));
        assert!(page.calls[1].is(Operation::StartRecord, Some("a")));
        assert!(!page.calls[1].is(Operation::StartRecord, Some("b")));
        assert_eq!(page.calls[1].status, Some(200));
        assert_eq!(page.calls[1].arrived_ms(), 5);
        assert_eq!(page.calls[2].operation, None);
        assert_eq!(page.calls[2].status, None, "never answered");
        assert_eq!((page.next, page.missed, page.more), (3, 0, false));
    }

    #[test]
    fn since_answers_only_later_calls_and_limit_pages_them() {
        let log = log_with(100, 10);
        let page = log.since(4, 3);
        assert_eq!(seqs(&page), [5, 6, 7]);
        assert_eq!((page.next, page.missed, page.more), (7, 0, true));
        let rest = log.since(page.next, 100);
        assert_eq!(seqs(&rest), [8, 9, 10]);
        assert_eq!((rest.next, rest.more), (10, false));
        let none = log.since(10, 100);
        assert!(none.calls.is_empty());
        assert_eq!((none.next, none.missed, none.more), (10, 0, false));
        // A `since` from the future answers nothing, and no gap.
        let ahead = log.since(50, 100);
        assert!(ahead.calls.is_empty());
        assert_eq!((ahead.next, ahead.missed), (50, 0));
    }

    #[test]
    fn the_log_keeps_the_newest_calls_up_to_its_capacity_and_reports_the_gap() {
        let mut log = log_with(4, 10);
        let all = log.since(0, 100);
        assert_eq!(seqs(&all), [7, 8, 9, 10]);
        assert_eq!(all.missed, 6, "calls 1..=6 left the log");
        let page = log.since(7, 100);
        assert_eq!(seqs(&page), [8, 9, 10]);
        assert_eq!(page.missed, 0);
        assert_eq!(log.since(2, 100).missed, 4, "calls 3..=6 left the log");
        // An answer to a call that has left the log changes nothing.
        log.answered(3, 200, 9_999);
        log.answered(9, 204, 9_999);
        let page = log.since(0, 100);
        assert!(page.calls.iter().all(|c| c.seq != 3));
        assert_eq!(page.calls[2].status, Some(204));
        // Numbering goes on past the bound.
        let seq = log.arrived(None, None, None, 0);
        assert_eq!(seq, 11);
        assert_eq!(seqs(&log.since(0, 100)), [8, 9, 10, 11]);
    }

    #[test]
    fn an_empty_log_answers_nothing() {
        let log = CallLog::new(0);
        let page = log.since(0, 10);
        assert_eq!(page, CallPage::default());
    }
}
