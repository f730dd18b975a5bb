//! Schedules: crontab expressions (ARCHITECTURE.md §8) evaluated in IANA time zones.
//!
//! [`CronSchedule`] holds the parsed fields (`cron.rs` owns the grammar); this module answers
//! "when does it fire next?" with [`CronSchedule::next_after`] and [`CronSchedule::fire_times`].
//!
//! # Evaluation
//!
//! Fire times are found field by field on the local calendar (month, then day, then the first
//! matching hour, minute and second), never by scanning minute after minute, and then mapped to
//! instants. The search gives up after [`SEARCH_YEARS`] years; expressions that no calendar date
//! satisfies (`0 0 30 2 *`) return `None` at once.
//!
//! # Daylight-saving time
//!
//! - **Skipped local times** (spring forward): a matching local time that does not exist fires
//!   once, at the first instant after the jump. `30 2 * * *` in America/New_York on the
//!   spring-forward day fires at 03:00 EDT. Several skipped matches (`*/15 2 * * *`) still fire
//!   once, and a match at the end of the jump (03:00) merges with it. Nothing is lost.
//! - **Repeated local times** (fall back): a schedule whose hour field does not start with `*`
//!   (`30 1 * * *`, `0 9 * * mon-fri`, `*/10 1 * * *`) fires once, at the first occurrence.
//!   A schedule whose hour field starts with `*` (`*/15 * * * *`, `0 * * * *`, `0 */2 * * *`)
//!   follows the wall clock and fires in both copies of the repeated hour, as Vixie cron does
//!   for such "wildcard" jobs, so an hourly or quarter-hourly series has no hole an hour long.

mod cron;

pub use cron::{CronError, CronSchedule};

use chrono::offset::LocalResult;
use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Timelike,
    Utc,
};
use chrono_tz::Tz;

/// How many years ahead a search for the next fire time looks before giving up.
pub const SEARCH_YEARS: i32 = 400;

/// Upper bound on candidate local times examined in one [`CronSchedule::next_after`] call
/// (only reached when many candidates are skipped, e.g. every second of a repeated hour).
const MAX_CANDIDATES: usize = 200_000;

/// Widest distance between a local wall-clock reading and UTC that any zone has used.
const MAX_OFFSET_SECS: i64 = 26 * 3600;

impl CronSchedule {
    /// The first fire time strictly after `after`, evaluated in `tz` with the daylight-saving
    /// rules of this module's documentation. `None` when no fire time exists within
    /// [`SEARCH_YEARS`] years (or before the end of the representable calendar).
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        if !self.can_fire() {
            return None;
        }
        let local_after = after.with_timezone(&tz).naive_local();
        let start = local_after
            .with_nanosecond(0)?
            .checked_add_signed(TimeDelta::seconds(1))?;
        let in_order = self.first_fire_from(start, after, tz);
        let second_copy = if self.hour_star {
            self.second_copy_after(after, tz)
        } else {
            None
        };
        match (in_order, second_copy) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Successive fire times strictly after `after`, in order.
    pub fn fire_times(&self, after: DateTime<Utc>, tz: Tz) -> FireTimes<'_> {
        FireTimes {
            cron: self,
            tz,
            last: Some(after),
        }
    }

    /// Walks matching local times from `start` in local order and returns the first that maps
    /// to an instant after `after`. Second copies of repeated times are taken only for
    /// wildcard-hour schedules, and only once `after` itself lies in the second copy (the
    /// first-copy case is [`Self::second_copy_after`]).
    fn first_fire_from(
        &self,
        mut start: NaiveDateTime,
        after: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        for _ in 0..MAX_CANDIDATES {
            let local = self.next_local(start)?;
            match tz.from_local_datetime(&local) {
                LocalResult::Single(at) => {
                    let at = at.with_timezone(&Utc);
                    if at > after {
                        return Some(at);
                    }
                }
                LocalResult::Ambiguous(a, b) => {
                    let (first, second) = ordered(a, b);
                    if first > after {
                        return Some(first);
                    }
                    if self.hour_star && second > after {
                        return Some(second);
                    }
                }
                LocalResult::None => {
                    if let Some(at) = gap_end(local, tz)
                        && at > after
                    {
                        return Some(at);
                    }
                }
            }
            start = local.checked_add_signed(TimeDelta::seconds(1))?;
        }
        None
    }

    /// When `after` lies in the first copy of a repeated hour, the first matching local time of
    /// the second copy (which comes after every first-copy instant).
    fn second_copy_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let here = after.with_timezone(&tz);
        let LocalResult::Ambiguous(a, b) = tz.from_local_datetime(&here.naive_local()) else {
            return None;
        };
        let (first, second) = ordered(a, b);
        let old_offset = here.offset().fix();
        if old_offset != first.with_timezone(&tz).offset().fix() {
            return None;
        }
        let changed = |ts: i64| -> Option<bool> {
            let at = DateTime::from_timestamp(ts, 0)?;
            Some(at.with_timezone(&tz).offset().fix() != old_offset)
        };
        let transition = first_true(after.timestamp(), second.timestamp(), changed)?;
        let repeat_start = DateTime::from_timestamp(transition, 0)?
            .with_timezone(&tz)
            .naive_local();
        let local = self.next_local(repeat_start)?;
        match tz.from_local_datetime(&local) {
            LocalResult::Ambiguous(a, b) => Some(ordered(a, b).1).filter(|s| *s > after),
            _ => None,
        }
    }

    /// The first local date-time at or after `start` (whole seconds) whose fields match.
    fn next_local(&self, start: NaiveDateTime) -> Option<NaiveDateTime> {
        let limit = start.year().checked_add(SEARCH_YEARS)?;
        let mut date = start.date();
        let mut from = start.time();
        while date.year() <= limit {
            if !self.months.contains(date.month()) {
                date = first_of_next_month(date)?;
                from = NaiveTime::MIN;
                continue;
            }
            if self.matches_date(date)
                && let Some(time) = self.first_time_from(from)
            {
                return Some(date.and_time(time));
            }
            date = date.succ_opt()?;
            from = NaiveTime::MIN;
        }
        None
    }
}

/// Successive fire times of one schedule; see [`CronSchedule::fire_times`].
#[derive(Clone, Debug)]
pub struct FireTimes<'a> {
    cron: &'a CronSchedule,
    tz: Tz,
    last: Option<DateTime<Utc>>,
}

impl Iterator for FireTimes<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        let next = self.cron.next_after(self.last?, self.tz);
        self.last = next;
        next
    }
}

impl std::iter::FusedIterator for FireTimes<'_> {}

fn ordered(a: DateTime<Tz>, b: DateTime<Tz>) -> (DateTime<Utc>, DateTime<Utc>) {
    let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
    (a.min(b), a.max(b))
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year().checked_add(1)?, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }
}

/// The instant a forward jump ends, for a `local` time the jump skipped: the first second whose
/// wall-clock reading is past `local`.
fn gap_end(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    let x = local.and_utc().timestamp();
    let past = |ts: i64| -> Option<bool> {
        let at = DateTime::from_timestamp(ts, 0)?;
        Some(at.with_timezone(&tz).naive_local() > local)
    };
    let ts = first_true(x - MAX_OFFSET_SECS, x + MAX_OFFSET_SECS, past)?;
    DateTime::from_timestamp(ts, 0)
}

/// Binary search for the first second in `(lo, hi]` where `pred` holds, given that it does not
/// hold at `lo` and holds at `hi`. `None` when those bounds do not hold or a time is out of range.
fn first_true(mut lo: i64, mut hi: i64, pred: impl Fn(i64) -> Option<bool>) -> Option<i64> {
    if pred(lo)? || !pred(hi)? {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if pred(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SecondsFormat;

    fn cron(text: &str) -> CronSchedule {
        CronSchedule::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
            .with_timezone(&Utc)
    }

    /// The first `n` fire times after `from`, printed in `tz` with offsets.
    fn fires(expr: &str, tz: Tz, from: &str, n: usize) -> Vec<String> {
        cron(expr)
            .fire_times(at(from), tz)
            .take(n)
            .map(|t| {
                t.with_timezone(&tz)
                    .to_rfc3339_opts(SecondsFormat::Secs, false)
            })
            .collect()
    }

    const NEW_YORK: Tz = chrono_tz::America::New_York;

    #[test]
    fn next_after_is_strictly_after_the_given_instant() {
        let c = cron("0 9 * * *");
        let nine = at("2026-11-27T09:00:00Z");
        assert_eq!(
            c.next_after(nine, Tz::UTC),
            Some(at("2026-11-28T09:00:00Z"))
        );
        let just_before = at("2026-11-27T08:59:59.999Z");
        assert_eq!(c.next_after(just_before, Tz::UTC), Some(nine));
        let just_after = at("2026-11-27T09:00:00.001Z");
        assert_eq!(
            c.next_after(just_after, Tz::UTC),
            Some(at("2026-11-28T09:00:00Z"))
        );
    }

    #[test]
    fn fire_times_are_evaluated_in_the_schedule_time_zone() {
        assert_eq!(
            fires(
                "0 9 * * mon-fri",
                chrono_tz::Asia::Seoul,
                "2026-11-26T12:00:00+09:00",
                3
            ),
            [
                "2026-11-27T09:00:00+09:00",
                "2026-11-30T09:00:00+09:00",
                "2026-12-01T09:00:00+09:00"
            ]
        );
    }

    #[test]
    fn a_time_skipped_by_spring_forward_fires_once_right_after_the_jump() {
        assert_eq!(
            fires("30 2 * * *", NEW_YORK, "2026-03-07T12:00:00-05:00", 3),
            [
                "2026-03-08T03:00:00-04:00",
                "2026-03-09T02:30:00-04:00",
                "2026-03-10T02:30:00-04:00"
            ]
        );
    }

    #[test]
    fn several_skipped_times_and_the_time_after_the_jump_fire_only_once() {
        assert_eq!(
            fires("*/15 2-3 * * *", NEW_YORK, "2026-03-08T01:00:00-05:00", 4),
            [
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:15:00-04:00",
                "2026-03-08T03:30:00-04:00",
                "2026-03-08T03:45:00-04:00"
            ]
        );
    }

    #[test]
    fn every_quarter_hour_runs_through_spring_forward_without_a_duplicate() {
        assert_eq!(
            fires("*/15 * * * *", NEW_YORK, "2026-03-08T01:30:00-05:00", 4),
            [
                "2026-03-08T01:45:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:15:00-04:00",
                "2026-03-08T03:30:00-04:00"
            ]
        );
    }

    #[test]
    fn a_repeated_time_fires_once_at_its_first_occurrence() {
        assert_eq!(
            fires("30 1 * * *", NEW_YORK, "2026-10-31T12:00:00-04:00", 3),
            [
                "2026-11-01T01:30:00-04:00",
                "2026-11-02T01:30:00-05:00",
                "2026-11-03T01:30:00-05:00"
            ]
        );
    }

    #[test]
    fn a_fixed_hour_schedule_does_not_fire_again_in_the_second_copy_of_the_hour() {
        // Starting inside the second copy of 01:00-02:00: 01:30 already happened (EDT).
        assert_eq!(
            fires("*/30 1 * * *", NEW_YORK, "2026-11-01T01:10:00-05:00", 2),
            ["2026-11-02T01:00:00-05:00", "2026-11-02T01:30:00-05:00"]
        );
        assert_eq!(
            fires("*/30 1 * * *", NEW_YORK, "2026-11-01T00:59:00-04:00", 3),
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-02T01:00:00-05:00"
            ]
        );
    }

    #[test]
    fn a_wildcard_hour_schedule_fires_in_both_copies_of_the_repeated_hour() {
        assert_eq!(
            fires("*/30 * * * *", NEW_YORK, "2026-11-01T00:45:00-04:00", 5),
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T01:30:00-05:00",
                "2026-11-01T02:00:00-05:00"
            ]
        );
        assert_eq!(
            fires("0 * * * *", NEW_YORK, "2026-11-01T01:00:00-04:00", 2),
            ["2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]
        );
    }

    #[test]
    fn half_hour_daylight_saving_in_lord_howe_follows_the_same_rules() {
        let tz = chrono_tz::Australia::Lord_Howe;
        // Spring forward 2026-10-04: 02:00 +10:30 becomes 02:30 +11:00.
        assert_eq!(
            fires("15 2 * * *", tz, "2026-10-03T12:00:00+10:30", 2),
            ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]
        );
        // Fall back 2026-04-05: 02:00 +11:00 becomes 01:30 +10:30.
        assert_eq!(
            fires("45 1 * * *", tz, "2026-04-04T12:00:00+11:00", 2),
            ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]
        );
        assert_eq!(
            fires("*/20 * * * *", tz, "2026-04-05T01:30:00+11:00", 5),
            [
                "2026-04-05T01:40:00+11:00",
                "2026-04-05T01:40:00+10:30",
                "2026-04-05T02:00:00+10:30",
                "2026-04-05T02:20:00+10:30",
                "2026-04-05T02:40:00+10:30"
            ]
        );
    }

    #[test]
    fn a_midnight_skipped_in_santiago_fires_at_one_on_the_same_day() {
        // 2026-09-06: 24:00 -04:00 becomes 01:00 -03:00; Sunday's midnight never happens.
        assert_eq!(
            fires(
                "0 0 * * sun",
                chrono_tz::America::Santiago,
                "2026-09-05T12:00:00-04:00",
                2
            ),
            ["2026-09-06T01:00:00-03:00", "2026-09-13T00:00:00-03:00"]
        );
    }

    #[test]
    fn a_whole_skipped_day_fires_once_when_the_jump_ends() {
        // Samoa skipped 2011-12-30 entirely: 23:59:59 -10:00 was followed by 00:00 +14:00.
        assert_eq!(
            fires(
                "0 12 * * *",
                chrono_tz::Pacific::Apia,
                "2011-12-29T13:00:00-10:00",
                2
            ),
            ["2011-12-31T00:00:00+14:00", "2011-12-31T12:00:00+14:00"]
        );
    }

    #[test]
    fn impossible_expressions_return_none_without_searching_for_long() {
        let started = std::time::Instant::now();
        assert_eq!(
            cron("0 0 30 2 *").next_after(at("2026-01-01T00:00:00Z"), Tz::UTC),
            None
        );
        assert_eq!(
            cron("0 0 31 4,6 *")
                .fire_times(at("2026-01-01T00:00:00Z"), Tz::UTC)
                .count(),
            0
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn rare_but_possible_dates_are_found() {
        assert_eq!(
            fires("0 0 29 2 *", Tz::UTC, "2026-01-01T00:00:00Z", 2),
            ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]
        );
        // Both day fields restricted: the 13th OR any Friday.
        assert_eq!(
            fires("0 0 13 * fri", Tz::UTC, "2026-02-10T00:00:00Z", 3),
            [
                "2026-02-13T00:00:00+00:00",
                "2026-02-20T00:00:00+00:00",
                "2026-02-27T00:00:00+00:00"
            ]
        );
        // A leap day that is a Sunday: `*` in front of the day-of-week ANDs the day fields.
        assert_eq!(
            fires("0 0 29 2 */7", Tz::UTC, "2026-01-01T00:00:00Z", 2),
            ["2032-02-29T00:00:00+00:00", "2060-02-29T00:00:00+00:00"]
        );
    }

    #[test]
    fn a_seconds_field_fires_at_those_seconds() {
        assert_eq!(
            fires("*/20 0 12 * * *", Tz::UTC, "2026-05-01T12:00:00Z", 3),
            [
                "2026-05-01T12:00:20+00:00",
                "2026-05-01T12:00:40+00:00",
                "2026-05-02T12:00:00+00:00"
            ]
        );
    }

    #[test]
    fn the_end_of_the_calendar_ends_the_search_instead_of_panicking() {
        let last = DateTime::<Utc>::MAX_UTC;
        assert_eq!(cron("* * * * *").next_after(last, Tz::UTC), None);
        let near_end = last - TimeDelta::days(2);
        assert!(
            cron("0 0 1 1 *")
                .next_after(near_end, chrono_tz::Pacific::Chatham)
                .is_none()
        );
        let first = DateTime::<Utc>::MIN_UTC;
        assert!(
            cron("0 0 * * *")
                .next_after(first, chrono_tz::Pacific::Chatham)
                .is_some()
        );
    }
}
