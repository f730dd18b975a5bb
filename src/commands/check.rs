//! `lsrecd check [--next N] [--from TIME] [--json] [--no-credentials]`: validate the
//! configuration and print the next fire times of every schedule in its own time zone.
//!
//! Without `--no-credentials` both API keys must be found (the unit's `ExecStartPre` relies on
//! that); with it, everything else is checked and no key is looked for.
//!
//! Allowed but risky settings (see [`Config::warnings`]) are listed as `warning:` lines (and in
//! `warnings` of the JSON form); they do not change the exit code.
//!
//! Exit codes: 0 valid, 78 invalid configuration (each problem as `FILE:LINE:COL: KEY: MESSAGE`
//! on stderr), 2 when `--from` is not RFC 3339.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::cli::{CheckArgs, GlobalArgs};
use crate::config::{Config, KeySource};
use crate::exit::{self, CommandError};

/// What `check --json` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Allowed but risky settings, as `FILE:LINE:COL: KEY: MESSAGE`.
    pub warnings: Vec<String>,
    /// One entry per schedule, in configuration order.
    pub schedules: Vec<ScheduleReport>,
}

/// One schedule in a [`CheckReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScheduleReport {
    /// The schedule's name.
    pub name: String,
    /// The channel id the schedule resolved to.
    pub channel: String,
    /// That channel's label, if it has one.
    pub label: Option<String>,
    /// IANA name of the zone the schedule is evaluated in.
    pub timezone: String,
    /// The cron expression as written.
    pub cron: String,
    /// Window length as a humantime string, or `null` (until the channel stops publishing).
    pub duration: Option<String>,
    /// `catch_up` as a humantime string.
    pub catch_up: String,
    /// The next fire times after `--from`, RFC 3339 with the zone's offset.
    pub next: Vec<String>,
}

/// Runs `lsrecd check`.
pub async fn run(g: &GlobalArgs, a: CheckArgs) -> Result<(), CommandError> {
    let from = match a.from.as_deref() {
        Some(text) => parse_from(text)?,
        None => Utc::now(),
    };
    // Warnings are part of the report here, not log lines.
    let loaded = if a.no_credentials {
        Config::read_without_keys(&g.config)
    } else {
        Config::read(&g.config)
    };
    let config = loaded.map_err(|e| CommandError::config(e.to_string()))?;
    let report = report(&config, from, a.next);
    if a.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| CommandError::new(exit::FAILURE, format!("cannot encode JSON: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", render_text(&config, &report, from));
    }
    Ok(())
}

/// Parses `--from` (RFC 3339); anything else is a usage error.
pub fn parse_from(text: &str) -> Result<DateTime<Utc>, CommandError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            CommandError::new(
                exit::USAGE,
                format!(
                    "--from {text:?} is not an RFC 3339 time such as 2026-11-27T09:00:00+09:00 ({e})"
                ),
            )
        })
}

/// The next `count` fire times after `from` of every schedule.
pub fn report(config: &Config, from: DateTime<Utc>, count: usize) -> CheckReport {
    let schedules = config
        .schedules
        .iter()
        .map(|s| ScheduleReport {
            name: s.name.clone(),
            channel: s.channel_id.clone(),
            label: config.channel(&s.channel_id).and_then(|c| c.label.clone()),
            timezone: s.timezone.name().to_string(),
            cron: s.cron.as_str().to_string(),
            duration: s
                .duration
                .map(|d| humantime::format_duration(d).to_string()),
            catch_up: humantime::format_duration(s.catch_up).to_string(),
            next: s
                .cron
                .fire_times(from, s.timezone)
                .take(count)
                .map(|t| {
                    t.with_timezone(&s.timezone)
                        .to_rfc3339_opts(SecondsFormat::Secs, false)
                })
                .collect(),
        })
        .collect();
    CheckReport {
        warnings: config.warning_lines(),
        schedules,
    }
}

/// The human-readable form: a summary line, where the keys come from, and a table.
pub fn render_text(config: &Config, report: &CheckReport, from: DateTime<Utc>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: valid ({} channel{}, {} schedule{})",
        config.source.display(),
        config.channels.len(),
        plural(config.channels.len()),
        config.schedules.len(),
        plural(config.schedules.len()),
    );
    let keys = match (&config.api.access_key_source, &config.api.secret_key_source) {
        (KeySource::NotChecked, KeySource::NotChecked) => {
            "keys not checked (--no-credentials)".to_string()
        }
        (access, secret) => format!("access key from {access}, secret key from {secret}"),
    };
    let _ = writeln!(
        out,
        "API: {} region {}; {keys}",
        config.api.endpoint,
        config.api.region.code(),
    );
    for warning in &report.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    if report.schedules.is_empty() {
        let _ = writeln!(out, "No schedules configured.");
        return out;
    }
    let _ = writeln!(
        out,
        "Next fire times after {}:\n",
        from.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    let header = [
        "SCHEDULE", "CHANNEL", "CRON", "TIMEZONE", "DURATION", "NEXT",
    ];
    let rows: Vec<[String; 5]> = report
        .schedules
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                match &s.label {
                    Some(l) => format!("{l} ({})", s.channel),
                    None => s.channel.clone(),
                },
                s.cron.clone(),
                s.timezone.clone(),
                s.duration.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths = [0usize; 5];
    for (i, w) in widths.iter_mut().enumerate() {
        *w = rows
            .iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0);
    }
    let line = |cells: [&str; 5], next: &str| {
        let mut l = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            let _ = write!(l, "{cell:<w$}  ");
        }
        l.push_str(next);
        l.trim_end().to_string()
    };
    let _ = writeln!(
        out,
        "{}",
        line(
            [header[0], header[1], header[2], header[3], header[4]],
            header[5]
        )
    );
    for (row, s) in rows.iter().zip(&report.schedules) {
        let cells = [
            row[0].as_str(),
            row[1].as_str(),
            row[2].as_str(),
            row[3].as_str(),
            row[4].as_str(),
        ];
        match s.next.split_first() {
            None => {
                let _ = writeln!(out, "{}", line(cells, "(no fire time found)"));
            }
            Some((first, rest)) => {
                let _ = writeln!(out, "{}", line(cells, first));
                for next in rest {
                    let _ = writeln!(out, "{}", line(["", "", "", "", ""], next));
                }
            }
        }
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        let env = [("LSRECD_ACCESS_KEY", "ak"), ("LSRECD_SECRET_KEY", "sk")];
        Config::from_str_with_env(text, Path::new("/etc/lsrecd/config.toml"), &env)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn from() -> DateTime<Utc> {
        parse_from("2026-11-26T12:00:00+09:00").unwrap()
    }

    const TWO: &str = r#"
[daemon]
timezone = "Asia/Seoul"

[[channel]]
id = "ls-20200313162828-G60tN"
label = "studio-a"

[[schedule]]
name = "morning-news"
channel = "studio-a"
cron = "0 9 * * mon-fri"
duration = "1h"

[[schedule]]
name = "nightly"
channel = "ls-20200313162828-G60tN"
cron = "30 23 * * *"
timezone = "UTC"
"#;

    #[test]
    fn the_report_lists_next_times_in_each_schedule_zone_with_offsets() {
        let r = report(&config(TWO), from(), 2);
        assert_eq!(r.schedules.len(), 2);
        let news = &r.schedules[0];
        assert_eq!(news.channel, "ls-20200313162828-G60tN");
        assert_eq!(news.label.as_deref(), Some("studio-a"));
        assert_eq!(news.timezone, "Asia/Seoul");
        assert_eq!(news.duration.as_deref(), Some("1h"));
        assert_eq!(
            news.next,
            ["2026-11-27T09:00:00+09:00", "2026-11-30T09:00:00+09:00"]
        );
        assert_eq!(
            r.schedules[1].next,
            ["2026-11-26T23:30:00+00:00", "2026-11-27T23:30:00+00:00"]
        );
    }

    #[test]
    fn the_text_form_is_a_table_with_one_fire_time_per_line() {
        let c = config(TWO);
        let text = render_text(&c, &report(&c, from(), 2), from());
        assert!(text.contains("valid (1 channel, 2 schedules)"), "{text}");
        assert!(
            text.contains("access key from $LSRECD_ACCESS_KEY"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        let header = lines
            .iter()
            .position(|l| l.starts_with("SCHEDULE"))
            .unwrap();
        assert!(lines[header + 1].starts_with("morning-news"));
        assert!(lines[header + 1].contains("studio-a (ls-20200313162828-G60tN)"));
        assert!(lines[header + 1].ends_with("2026-11-27T09:00:00+09:00"));
        assert!(
            lines[header + 2]
                .trim_start()
                .starts_with("2026-11-30T09:00:00+09:00")
        );
        assert!(lines[header + 3].starts_with("nightly"));
    }

    #[test]
    fn risky_settings_are_listed_as_warnings_with_their_place() {
        let c = config("[metrics]\nlisten = \"0.0.0.0:9464\"\n");
        let r = report(&c, from(), 1);
        let text = render_text(&c, &r, from());
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(
            text.contains("warning: /etc/lsrecd/config.toml:2:10: metrics.listen: 0.0.0.0:9464"),
            "{text}"
        );
    }

    #[test]
    fn no_schedules_is_said_in_words() {
        let c = config("");
        let text = render_text(&c, &report(&c, from(), 5), from());
        assert!(text.contains("No schedules configured."), "{text}");
    }

    #[test]
    fn an_unparsable_from_is_a_usage_error() {
        let e = parse_from("tomorrow").unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(e.message.contains("RFC 3339"));
    }
}
