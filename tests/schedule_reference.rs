//! Cross-checks schedule evaluation against an independent brute-force reference.
//!
//! The reference parses crontab its own way, walks UTC minute by minute, converts each minute to
//! local time (UTC → local is the one direction it trusts the time-zone database for), matches
//! the fields with the Vixie day-of-month/day-of-week rule and applies the DST rules of
//! ARCHITECTURE.md §8 directly:
//!
//! - local times skipped by a forward jump fire once, at the instant of the jump;
//! - a local time seen a second time (fall back) fires again only when the hour field starts
//!   with `*` (the wildcard rule documented in `lsrecd::schedule`).
//!
//! The library and the `lsrecd check --json` binary must produce exactly the same fire times for
//! every expression, zone and start instant around daylight-saving transitions.

mod support;

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use lsrecd::schedule::CronSchedule;

const EXPRESSIONS: &[&str] = &[
    "* * * * *",
    "*/15 * * * *",
    "*/30 * * * *",
    "*/20 * * * *",
    "0 * * * *",
    "30 * * * *",
    "7 * * * *",
    "15,45 * * * *",
    "1-59/2 * * * *",
    "2/10 * * * *",
    "0 */2 * * *",
    "0 */3 * * *",
    "23 0-23/2 * * *",
    "*/20 1-3 * * *",
    "*/5 1 * * *",
    "0-10/3 2 * * *",
    "0 2-3 * * *",
    "30 0-5 * * *",
    "30 2 * * *",
    "0 2 * * *",
    "15 2 * * *",
    "45 2 * * *",
    "0 1 * * *",
    "30 1 * * *",
    "59 1 * * *",
    "0 3 * * *",
    "0 0 * * *",
    "0 23 * * *",
    "30 23 * * *",
    "5 4 * * *",
    "0 9 * * mon-fri",
    "0 9 * * 1-5",
    "0 9 * * 0",
    "0 9 * * 7",
    "0 2 * * sun",
    "0 0 * * sun",
    "30 1 * * sat,sun",
    "0 18 * * fri-sun",
    "0 12 1 * *",
    "0 0 1 * mon",
    "0 12 */2 * sun",
    "0 12 * * */2",
    "0 0 1,15 * *",
    "0 0,12 1 */2 *",
    "0 9-17/4 * * mon-fri",
    "0 12 * mar,apr,sep,oct,nov *",
    "0 0 29 2 *",
    "0 0 31 * *",
    "0 0 30 2 *",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "0 30 2 * * *",
    "15,45 */30 * * * *",
    "*/20 0 1 * * *",
];

const ZONES: &[Tz] = &[
    Tz::UTC,
    chrono_tz::Asia::Seoul,
    chrono_tz::America::New_York,
    chrono_tz::Europe::Berlin,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::America::Santiago,
    chrono_tz::Pacific::Chatham,
];

// ---------------------------------------------------------------------------------------------
// The reference.

/// A crontab expression as plain membership tables, parsed independently of the library.
struct Reference {
    seconds: Vec<bool>,
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    dom_star: bool,
    dow_star: bool,
    hour_star: bool,
}

fn expand(text: &str, low: u32, high: u32, names: &[&str]) -> Vec<bool> {
    let value = |s: &str| -> u32 {
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| i as u32 + low)
            .unwrap_or_else(|| s.parse().unwrap_or_else(|_| panic!("bad value {s}")))
    };
    let mut table = vec![false; high as usize + 1];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>().unwrap_or_else(|_| panic!("bad step {s}")),
            ),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (low, high)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, mut b) = (value(a), value(b));
            if names.len() == 7 && b == 0 {
                b = 7;
            }
            (a, b)
        } else if part.contains('/') {
            (value(range), high)
        } else {
            (value(range), value(range))
        };
        for v in (a..=b).step_by(step as usize) {
            table[v as usize] = true;
        }
    }
    table
}

impl Reference {
    fn parse(text: &str) -> Reference {
        let text = match text {
            "@hourly" => "0 * * * *",
            "@daily" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            other => other,
        };
        let mut f: Vec<&str> = text.split(' ').collect();
        if f.len() == 5 {
            f.insert(0, "0");
        }
        let months = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        let days = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let mut weekdays = expand(f[5], 0, 7, &days);
        if weekdays[7] {
            weekdays[0] = true;
        }
        Reference {
            seconds: expand(f[0], 0, 59, &[]),
            minutes: expand(f[1], 0, 59, &[]),
            hours: expand(f[2], 0, 23, &[]),
            days: expand(f[3], 1, 31, &[]),
            months: expand(f[4], 1, 12, &months),
            weekdays,
            dom_star: f[3].starts_with('*'),
            dow_star: f[5].starts_with('*'),
            hour_star: f[2].starts_with('*'),
        }
    }

    /// Whether the local minute `t` matches (ignoring the seconds field).
    fn matches_minute(&self, t: NaiveDateTime) -> bool {
        let dom = self.days[t.day() as usize];
        let dow = self.weekdays[t.weekday().num_days_from_sunday() as usize];
        let day = if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        };
        day && self.months[t.month() as usize]
            && self.hours[t.hour() as usize]
            && self.minutes[t.minute() as usize]
    }

    fn seconds(&self) -> impl Iterator<Item = i64> + '_ {
        (0..60).filter(|s| self.seconds[*s as usize])
    }
}

/// One UTC minute of a window: its local wall-clock reading and its UTC offset in seconds.
struct Minute {
    at: DateTime<Utc>,
    local: NaiveDateTime,
    offset: i64,
}

fn offset_at(tz: Tz, at: DateTime<Utc>) -> i64 {
    i64::from(at.with_timezone(&tz).offset().fix().local_minus_utc())
}

fn minutes(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Minute> {
    let mut out = Vec::new();
    let mut at = from;
    while at <= to {
        out.push(Minute {
            at,
            local: at.with_timezone(&tz).naive_local(),
            offset: offset_at(tz, at),
        });
        at += TimeDelta::minutes(1);
    }
    out
}

/// Whether the local reading of `m` already happened at an earlier instant (second copy).
fn seen_before(tz: Tz, m: &Minute) -> bool {
    (1..=12).any(|k| {
        let earlier = offset_at(tz, m.at - TimeDelta::minutes(15 * k));
        let candidate = m.local.and_utc() - TimeDelta::seconds(earlier);
        candidate < m.at && candidate.with_timezone(&tz).naive_local() == m.local
    })
}

/// All fire times in `(from, to]`, by brute force. `from` and `to` should be minute-aligned
/// in `window`, which must start at least a minute before `from`.
fn reference_fires(r: &Reference, tz: Tz, window: &[Minute]) -> BTreeSet<DateTime<Utc>> {
    let mut fires = BTreeSet::new();
    for pair in window.windows(2) {
        let (prev, m) = (&pair[0], &pair[1]);
        if m.offset > prev.offset {
            // A forward jump at `m.at`: local readings [m.at + prev.offset, m.local) are skipped.
            let mut skipped = m.local - TimeDelta::seconds(m.offset - prev.offset);
            while skipped < m.local {
                if r.matches_minute(skipped) && r.seconds().next().is_some() {
                    fires.insert(m.at);
                }
                skipped += TimeDelta::minutes(1);
            }
        }
        if r.matches_minute(m.local) && (r.hour_star || !seen_before(tz, m)) {
            for s in r.seconds() {
                fires.insert(m.at + TimeDelta::seconds(s));
            }
        }
    }
    fires
}

// ---------------------------------------------------------------------------------------------
// Windows and start instants.

/// Instants in 2026 where the zone's UTC offset changes (to the second).
fn transitions(tz: Tz) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
    while at < end {
        let next = at + TimeDelta::hours(1);
        if offset_at(tz, at) != offset_at(tz, next) {
            let (mut lo, mut hi) = (at, next);
            while hi - lo > TimeDelta::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset_at(tz, mid) == offset_at(tz, at) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push(hi);
        }
        at = next;
    }
    out
}

/// Windows `(centre, zone)`: every 2026 transition of every zone, plus calendar edges.
fn centres(tz: Tz) -> Vec<DateTime<Utc>> {
    let mut out = transitions(tz);
    for (y, m, d) in [(2026, 3, 1), (2027, 1, 1), (2028, 2, 29)] {
        let local = chrono::NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        out.push(local.and_utc() - TimeDelta::seconds(offset_at(tz, local.and_utc())));
    }
    out
}

const START_OFFSETS: &[i64] = &[
    -30 * 3600,
    -3 * 3600 - 17,
    -61 * 60,
    -30 * 60,
    -1,
    0,
    1,
    20 * 60,
    30 * 60,
    59 * 60 + 30,
    90 * 60,
];

fn minute_floor(at: DateTime<Utc>) -> DateTime<Utc> {
    at - TimeDelta::seconds(at.timestamp().rem_euclid(60))
        - TimeDelta::nanoseconds(i64::from(at.nanosecond()))
}

#[test]
fn library_fire_times_match_the_brute_force_reference_around_dst_transitions() {
    let references: Vec<(CronSchedule, Reference)> = EXPRESSIONS
        .iter()
        .map(|e| (CronSchedule::parse(e).unwrap(), Reference::parse(e)))
        .collect();
    let mut compared = 0usize;
    let mut mismatches = Vec::new();
    for &tz in ZONES {
        for centre in centres(tz) {
            let window_start = minute_floor(centre) - TimeDelta::hours(32);
            let window_end = minute_floor(centre) + TimeDelta::hours(36);
            let window = minutes(tz, window_start, window_end);
            for (cron, reference) in &references {
                let all = reference_fires(reference, tz, &window);
                for &delta in START_OFFSETS {
                    let from = centre + TimeDelta::seconds(delta);
                    let expected: Vec<_> = all
                        .range(from..=window_end)
                        .filter(|t| **t > from)
                        .copied()
                        .collect();
                    let actual: Vec<_> = cron
                        .fire_times(from, tz)
                        .take_while(|t| *t <= window_end)
                        .collect();
                    compared += 1;
                    if actual != expected {
                        let first_diff = actual
                            .iter()
                            .zip(&expected)
                            .position(|(a, b)| a != b)
                            .unwrap_or(actual.len().min(expected.len()));
                        let show = |v: &[DateTime<Utc>]| {
                            v.get(first_diff..(first_diff + 3).min(v.len()))
                                .unwrap_or(&[])
                                .iter()
                                .map(|t| t.with_timezone(&tz).to_rfc3339())
                                .collect::<Vec<_>>()
                        };
                        mismatches.push(format!(
                            "{cron} in {tz} from {}: library {:?} reference {:?}",
                            from.with_timezone(&tz).to_rfc3339(),
                            show(&actual),
                            show(&expected)
                        ));
                    }
                }
            }
        }
    }
    assert!(compared > 10_000, "only {compared} comparisons");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} comparisons differ, e.g.:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Fire times `lsrecd check --json` printed for each schedule, parsed back to instants.
fn check_json(config: &std::path::Path, from: DateTime<Utc>, next: usize) -> serde_json::Value {
    let out = support::process::lsrecd_command()
        .arg("--config")
        .arg(config)
        .args([
            "check",
            "--json",
            "--next",
            &next.to_string(),
            "--from",
            &from.to_rfc3339(),
        ])
        .env("LSRECD_ACCESS_KEY", "reference-access")
        .env("LSRECD_SECRET_KEY", "reference-secret")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .expect("the lsrecd binary runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("check --json prints JSON")
}

#[test]
fn check_json_agrees_with_the_reference_for_every_expression_and_zone() {
    const NEXT: usize = 8;
    let expressions: Vec<&str> = EXPRESSIONS
        .iter()
        .copied()
        .filter(|e| CronSchedule::parse(e).unwrap().can_fire())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let mut text = String::from("[[channel]]\nid = \"ls-reference\"\n");
    for (z, tz) in ZONES.iter().enumerate() {
        for (e, expr) in expressions.iter().enumerate() {
            text.push_str(&format!(
                "\n[[schedule]]\nname = \"e{e}-z{z}\"\nchannel = \"ls-reference\"\ncron = \"{expr}\"\ntimezone = \"{}\"\n",
                tz.name()
            ));
        }
    }
    std::fs::write(&config, text).unwrap();

    // Start instants just before or inside a transition of one zone; every zone is compared
    // from each of them.
    let mut starts = Vec::new();
    for (tz, delta) in [
        (chrono_tz::America::New_York, -30 * 60),
        (chrono_tz::Europe::Berlin, 20 * 60),
        (chrono_tz::Australia::Lord_Howe, -20 * 60),
        (chrono_tz::America::Santiago, -61 * 60),
        (chrono_tz::Pacific::Chatham, -1),
    ] {
        for t in transitions(tz) {
            starts.push(t + TimeDelta::seconds(delta));
        }
    }

    let mut compared = 0;
    let mut mismatches = Vec::new();
    for from in starts {
        let json = check_json(&config, from, NEXT);
        let schedules = json["schedules"].as_array().expect("a schedules array");
        assert_eq!(schedules.len(), ZONES.len() * expressions.len());
        let window_end = minute_floor(from) + TimeDelta::hours(36);
        for (z, &tz) in ZONES.iter().enumerate() {
            let window = minutes(tz, minute_floor(from) - TimeDelta::minutes(1), window_end);
            for (e, expr) in expressions.iter().enumerate() {
                let s = &schedules[z * expressions.len() + e];
                assert_eq!(s["name"], format!("e{e}-z{z}"));
                assert_eq!(s["timezone"], tz.name());
                let printed: Vec<DateTime<Utc>> = s["next"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| {
                        let t = t.as_str().unwrap();
                        let parsed = DateTime::parse_from_rfc3339(t).unwrap();
                        // The offset printed must be the zone's offset at that instant.
                        assert_eq!(
                            i64::from(parsed.offset().local_minus_utc()),
                            offset_at(tz, parsed.with_timezone(&Utc)),
                            "{t} in {tz}"
                        );
                        parsed.with_timezone(&Utc)
                    })
                    .collect();
                let reference: Vec<DateTime<Utc>> =
                    reference_fires(&Reference::parse(expr), tz, &window)
                        .into_iter()
                        .filter(|t| *t > from && *t <= window_end)
                        .collect();
                // Compare what the window can decide: every printed time inside it, and the
                // reference's list as far as the printed list goes.
                let inside = printed.iter().filter(|t| **t <= window_end).count();
                let agree = printed[..inside] == reference[..inside.min(reference.len())]
                    && (inside == NEXT || inside == reference.len());
                compared += 1;
                if !agree {
                    mismatches.push(format!(
                        "{expr} in {tz} from {from}: check printed {:?}, reference {:?}",
                        &printed[..inside.min(4)],
                        &reference[..reference.len().min(4)]
                    ));
                }
            }
        }
    }
    assert!(compared > 3000, "only {compared} comparisons");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} differ, e.g.:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
