//! Parsing crontab expressions into sets of allowed field values.
//!
//! The grammar is Vixie cron's, field by field: `*`, a value, a range `a-b`, a step `*/n`,
//! `a-b/n` or `a/n` (from `a` to the field's maximum), and comma-separated lists of those.
//! Months and days of the week also accept three-letter English names in any case (`jan`,
//! `MON`), including inside ranges (`mon-fri`). Day of week runs 0–7 where both 0 and 7 are
//! Sunday; a range ending in Sunday may be written `fri-sun` (read as 5–7).

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};

/// A set of small integers (0..64) as a bit mask.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Bits(u64);

impl Bits {
    pub(crate) fn contains(self, value: u32) -> bool {
        value < 64 && self.0 & (1u64 << value) != 0
    }

    fn insert(&mut self, value: u32) {
        self.0 |= 1u64 << value;
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The smallest member that is `>= from`.
    pub(crate) fn first_from(self, from: u32) -> Option<u32> {
        if from >= 64 {
            return None;
        }
        let rest = self.0 & (u64::MAX << from);
        (rest != 0).then(|| rest.trailing_zeros())
    }
}

impl fmt::Debug for Bits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries((0..64).filter(|v| self.contains(*v)))
            .finish()
    }
}

/// Why a crontab expression was rejected. The message names the field and the offending text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(String);

/// One crontab field: its name in messages, its range and its optional names.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for `min`, `min + 1`, … (empty when the field has none).
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// A parsed crontab expression (ARCHITECTURE.md §8): which seconds, minutes, hours, days and months
/// fire. Evaluation in a time zone lives in [`crate::schedule`]'s `next_after`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CronSchedule {
    pub(crate) seconds: Bits,
    pub(crate) minutes: Bits,
    pub(crate) hours: Bits,
    pub(crate) days_of_month: Bits,
    pub(crate) months: Bits,
    /// Sunday is 0 (a `7` in the text is stored as 0).
    pub(crate) days_of_week: Bits,
    /// The day-of-month field starts with `*` (Vixie's `DOM_STAR`).
    dom_star: bool,
    /// The day-of-week field starts with `*` (Vixie's `DOW_STAR`).
    dow_star: bool,
    /// The hour field starts with `*`: the schedule runs "by the clock" through a repeated hour.
    pub(crate) hour_star: bool,
    text: String,
}

impl CronSchedule {
    /// Parses a 5-field (`min hour dom month dow`) or 6-field (leading seconds) expression, or
    /// one of the macros `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`,
    /// `@hourly`.
    pub fn parse(text: &str) -> Result<CronSchedule, CronError> {
        let trimmed = text.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            m if m.starts_with('@') => {
                return Err(CronError(format!(
                    "unknown macro {trimmed:?} (supported: @yearly, @annually, @monthly, @weekly, \
                     @daily, @midnight, @hourly)"
                )));
            }
            _ => trimmed,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            0 => return Err(CronError("the expression is empty".into())),
            n => {
                return Err(CronError(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with a \
                     leading second), found {n}"
                )));
            }
        };
        let (minute, hour, dom, month, dow) = (rest[0], rest[1], rest[2], rest[3], rest[4]);
        let mut days_of_week = parse_field(&DAY_OF_WEEK, dow)?;
        if days_of_week.contains(7) {
            days_of_week.0 &= !(1u64 << 7);
            days_of_week.insert(0);
        }
        Ok(CronSchedule {
            seconds: parse_field(&SECOND, second)?,
            minutes: parse_field(&MINUTE, minute)?,
            hours: parse_field(&HOUR, hour)?,
            days_of_month: parse_field(&DAY_OF_MONTH, dom)?,
            months: parse_field(&MONTH, month)?,
            days_of_week,
            dom_star: dom.starts_with('*'),
            dow_star: dow.starts_with('*'),
            hour_star: hour.starts_with('*'),
            text: trimmed.to_string(),
        })
    }

    /// The expression as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the hour field starts with `*`. Such a schedule follows the wall clock through
    /// a repeated hour (it fires in both copies); any other fires once, at the first copy.
    pub fn is_wildcard_hour(&self) -> bool {
        self.hour_star
    }

    /// Whether `date` is a firing day. When both day fields are restricted (neither starts
    /// with `*`), a day matching either fires; otherwise both must match (Vixie cron).
    pub fn matches_date(&self, date: NaiveDate) -> bool {
        if !self.months.contains(date.month()) {
            return false;
        }
        let dom = self.days_of_month.contains(date.day());
        let dow = self
            .days_of_week
            .contains(date.weekday().num_days_from_sunday());
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Whether the local wall-clock time `time` (second precision) matches.
    pub fn matches_time(&self, time: NaiveTime) -> bool {
        self.hours.contains(time.hour())
            && self.minutes.contains(time.minute())
            && self.seconds.contains(time.second())
    }

    /// Whether some calendar date can ever match. `0 0 30 2 *` cannot: February never has a
    /// 30th. When both day fields are restricted, any weekday keeps the expression possible.
    pub fn can_fire(&self) -> bool {
        if !(self.dom_star || self.dow_star) {
            return true;
        }
        // Every (month, day) that exists falls on every weekday in some year, so only the
        // month/day-of-month combination decides.
        const LONGEST: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        (1..=12u32).any(|m| {
            self.months.contains(m)
                && (1..=LONGEST[m as usize]).any(|d| self.days_of_month.contains(d))
        })
    }

    /// The first matching time of day at or after `from` on a firing day, if any.
    pub(crate) fn first_time_from(&self, from: NaiveTime) -> Option<NaiveTime> {
        let mut hour = self.hours.first_from(from.hour())?;
        loop {
            let (min_from, sec_from) = if hour == from.hour() {
                (from.minute(), from.second())
            } else {
                (0, 0)
            };
            let mut minute = self.minutes.first_from(min_from);
            while let Some(m) = minute {
                let s_from = if hour == from.hour() && m == from.minute() {
                    sec_from
                } else {
                    0
                };
                if let Some(s) = self.seconds.first_from(s_from) {
                    return NaiveTime::from_hms_opt(hour, m, s);
                }
                minute = self.minutes.first_from(m + 1);
            }
            hour = self.hours.first_from(hour + 1)?;
        }
    }
}

impl FromStr for CronSchedule {
    type Err = CronError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronSchedule::parse(s)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.text)
    }
}

fn parse_field(field: &Field, text: &str) -> Result<Bits, CronError> {
    let mut bits = Bits::default();
    for element in text.split(',') {
        parse_element(field, element, &mut bits)
            .map_err(|why| CronError(format!("{} field {text:?}: {why}", field.name)))?;
    }
    debug_assert!(!bits.is_empty());
    Ok(bits)
}

fn parse_element(field: &Field, element: &str, bits: &mut Bits) -> Result<(), String> {
    if element.is_empty() {
        return Err("empty list element".into());
    }
    let (range, step) = match element.split_once('/') {
        Some((range, step)) => {
            let step: u32 = step
                .parse()
                .map_err(|_| format!("step {step:?} is not a positive number"))?;
            if step == 0 {
                return Err("a step of 0 never advances".into());
            }
            (range, Some(step))
        }
        None => (element, None),
    };
    let (low, high) = if range == "*" {
        (field.min, field.max)
    } else if let Some((a, b)) = range.split_once('-') {
        let low = parse_value(field, a)?;
        let mut high = parse_value(field, b)?;
        // `fri-sun`: a day-of-week range may end on Sunday written as 0.
        if field.name == DAY_OF_WEEK.name && high == 0 && low > 0 {
            high = 7;
        }
        if low > high {
            return Err(format!(
                "range {range:?} runs backwards (write the smaller value first)"
            ));
        }
        (low, high)
    } else {
        let value = parse_value(field, range)?;
        // `a/n` means from `a` to the end of the field's range.
        (value, if step.is_some() { field.max } else { value })
    };
    let step = step.unwrap_or(1);
    let mut v = low;
    while v <= high {
        bits.insert(v);
        v += step;
    }
    Ok(())
}

fn parse_value(field: &Field, text: &str) -> Result<u32, String> {
    if text.is_empty() {
        return Err("a value is missing".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let value: u32 = text
            .parse()
            .map_err(|_| format!("{text:?} is out of range {}-{}", field.min, field.max))?;
        if value < field.min || value > field.max {
            return Err(format!(
                "{value} is out of range {}-{}",
                field.min, field.max
            ));
        }
        return Ok(value);
    }
    let lower = text.to_ascii_lowercase();
    match field.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(field.min + i as u32),
        None if field.names.is_empty() => Err(format!("{text:?} is not a number")),
        None => Err(format!(
            "{text:?} is neither a number nor a name ({})",
            field.names.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(bits: Bits) -> Vec<u32> {
        (0..64).filter(|v| bits.contains(*v)).collect()
    }

    fn cron(text: &str) -> CronSchedule {
        CronSchedule::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn err(text: &str) -> String {
        match CronSchedule::parse(text) {
            Ok(c) => panic!("{text:?} should be rejected, parsed as {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn five_fields_imply_second_zero() {
        let c = cron("30 9 * * *");
        assert_eq!(set(c.seconds), vec![0]);
        assert_eq!(set(c.minutes), vec![30]);
        assert_eq!(set(c.hours), vec![9]);
        assert_eq!(set(c.days_of_month), (1..=31).collect::<Vec<_>>());
        assert_eq!(set(c.months), (1..=12).collect::<Vec<_>>());
        assert_eq!(set(c.days_of_week), (0..=6).collect::<Vec<_>>());
    }

    #[test]
    fn six_fields_take_a_leading_second_field() {
        let c = cron("15,45 0 12 * * *");
        assert_eq!(set(c.seconds), vec![15, 45]);
        assert_eq!(set(c.minutes), vec![0]);
        assert_eq!(set(c.hours), vec![12]);
    }

    #[test]
    fn steps_ranges_and_lists_expand_like_vixie_cron() {
        assert_eq!(set(cron("*/15 * * * *").minutes), vec![0, 15, 30, 45]);
        assert_eq!(set(cron("10-30/10 * * * *").minutes), vec![10, 20, 30]);
        assert_eq!(set(cron("50/4 * * * *").minutes), vec![50, 54, 58]);
        assert_eq!(set(cron("1,5-7,59 * * * *").minutes), vec![1, 5, 6, 7, 59]);
        assert_eq!(set(cron("0 */7 * * *").hours), vec![0, 7, 14, 21]);
        assert_eq!(set(cron("0 0 */10 * *").days_of_month), vec![1, 11, 21, 31]);
        assert_eq!(set(cron("0 0 * */5 *").months), vec![1, 6, 11]);
    }

    #[test]
    fn names_are_case_insensitive_and_work_in_ranges_and_lists() {
        assert_eq!(
            set(cron("0 9 * * mon-fri").days_of_week),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(set(cron("0 9 * * MON,Wed,fri").days_of_week), vec![1, 3, 5]);
        assert_eq!(set(cron("0 9 * JAN-mar,Dec *").months), vec![1, 2, 3, 12]);
    }

    #[test]
    fn one_to_five_is_monday_to_friday() {
        assert_eq!(
            cron("0 9 * * 1-5").days_of_week,
            cron("0 9 * * mon-fri").days_of_week
        );
    }

    #[test]
    fn seven_and_zero_both_mean_sunday() {
        assert_eq!(set(cron("0 0 * * 7").days_of_week), vec![0]);
        assert_eq!(set(cron("0 0 * * 0").days_of_week), vec![0]);
        assert_eq!(set(cron("0 0 * * 5-7").days_of_week), vec![0, 5, 6]);
        assert_eq!(set(cron("0 0 * * fri-sun").days_of_week), vec![0, 5, 6]);
        assert_eq!(
            set(cron("0 0 * * 0-7").days_of_week),
            (0..=6).collect::<Vec<_>>()
        );
    }

    #[test]
    fn macros_expand_to_their_crontab_equivalents() {
        let pairs = [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@HOURLY", "0 * * * *"),
        ];
        for (m, e) in pairs {
            let (a, b) = (cron(m), cron(e));
            assert_eq!(
                (
                    a.minutes,
                    a.hours,
                    a.days_of_month,
                    a.months,
                    a.days_of_week
                ),
                (
                    b.minutes,
                    b.hours,
                    b.days_of_month,
                    b.months,
                    b.days_of_week
                ),
                "{m}"
            );
        }
        assert!(err("@reboot").contains("unknown macro"));
    }

    #[test]
    fn day_fields_are_ored_only_when_both_are_restricted() {
        let first_or_monday = cron("0 0 1 * mon");
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert!(first_or_monday.matches_date(d(2026, 3, 1))); // Sunday the 1st
        assert!(first_or_monday.matches_date(d(2026, 3, 2))); // a Monday
        assert!(!first_or_monday.matches_date(d(2026, 3, 3)));

        // `*/2` starts with `*`, so the fields are ANDed (Vixie's DOM_STAR).
        let odd_mondays = cron("0 0 */2 * mon");
        assert!(!odd_mondays.matches_date(d(2026, 3, 2)));
        assert!(odd_mondays.matches_date(d(2026, 3, 9)));
        assert!(!odd_mondays.matches_date(d(2026, 3, 1)));

        let weekdays = cron("0 0 * * 1-5");
        assert!(weekdays.matches_date(d(2026, 3, 2)));
        assert!(!weekdays.matches_date(d(2026, 3, 1)));
    }

    #[test]
    fn impossible_dates_are_detected() {
        assert!(!cron("0 0 30 2 *").can_fire());
        assert!(!cron("0 0 31 apr,jun,sep,nov *").can_fire());
        assert!(cron("0 0 29 2 *").can_fire());
        assert!(cron("0 0 30 2 mon").can_fire());
        assert!(cron("0 0 31 * *").can_fire());
    }

    #[test]
    fn malformed_expressions_name_the_field_and_the_problem() {
        assert!(err("").contains("empty"));
        assert!(err("* * * *").contains("found 4"));
        assert!(err("* * * * * * *").contains("found 7"));
        assert!(err("60 * * * *").contains("minute field \"60\": 60 is out of range 0-59"));
        assert!(err("0 24 * * *").contains("hour field"));
        assert!(err("0 0 0 * *").contains("day-of-month field \"0\""));
        assert!(err("0 0 * 13 *").contains("month field"));
        assert!(err("0 0 * * 8").contains("day-of-week field"));
        assert!(err("*/0 * * * *").contains("step of 0"));
        assert!(err("5-1 * * * *").contains("backwards"));
        assert!(err("1,,2 * * * *").contains("empty list element"));
        assert!(err("0 0 * * funday").contains("neither a number nor a name"));
        assert!(err("x * * * *").contains("not a number"));
        assert!(err("0 0 ? * *").contains("day-of-month"));
        assert!(err("1- * * * *").contains("value is missing"));
        assert!(err("99999999999 * * * *").contains("out of range"));
    }

    #[test]
    fn first_time_from_finds_the_next_matching_second_of_the_day() {
        let c = cron("*/20 9,17 * * *");
        let t = |h, m, s| NaiveTime::from_hms_opt(h, m, s).unwrap();
        assert_eq!(c.first_time_from(t(0, 0, 0)), Some(t(9, 0, 0)));
        assert_eq!(c.first_time_from(t(9, 0, 0)), Some(t(9, 0, 0)));
        assert_eq!(c.first_time_from(t(9, 0, 1)), Some(t(9, 20, 0)));
        assert_eq!(c.first_time_from(t(9, 59, 0)), Some(t(17, 0, 0)));
        assert_eq!(c.first_time_from(t(17, 40, 1)), None);
    }
}
