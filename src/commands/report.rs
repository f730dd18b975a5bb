//! `lsrecd status` and `lsrecd records`: what the database says, for a person or a script.
//!
//! Both open the database read-only, so they work while the daemon runs and for a user who may
//! only read the file. Of the configuration they read only `[daemon]` `database` and `timezone`,
//! so they need no keys. Times are shown in `daemon.timezone` with the zone's abbreviation
//! (`2026-11-28 15:33:29 KST`), or in UTC with `--utc`. The JSON shapes (`--json`) are documented
//! in `docs/database.md`; JSON times are Unix milliseconds whatever the zone.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::Utc;
use chrono_tz::Tz;
use serde::Serialize;

use super::format_time;
use crate::cli::{GlobalArgs, RecordsArgs, StatusArgs};
use crate::config::DEFAULT_DATABASE;
use crate::exit::{CommandError, FAILURE};
use crate::store::{Mutation, RecordFilter, RecordRow, StatusReport, Store, StoreError};

/// Environment variable that overrides `[daemon].database`.
pub const DATABASE_ENV: &str = "LSRECD_DATABASE";

/// Version of the `--json` output shapes; raised only on incompatible changes.
pub const JSON_FORMAT: u32 = 1;

/// `lsrecd status`.
pub async fn status(g: &GlobalArgs, a: StatusArgs) -> Result<(), CommandError> {
    let (store, zone) = open(g, a.utc).await?;
    let report = store.status_report(now_ms()).await;
    store.close().await;
    let report = report.map_err(store_error)?;
    if a.json {
        print_json(&StatusJson {
            format: JSON_FORMAT,
            report: &report,
        })
    } else {
        print!("{}", render_status(&report, zone));
        Ok(())
    }
}

/// `lsrecd records`.
pub async fn records(g: &GlobalArgs, a: RecordsArgs) -> Result<(), CommandError> {
    let (store, zone) = open(g, a.utc).await?;
    let result = list_records(&store, &a).await;
    store.close().await;
    let (rows, labels) = result.map_err(store_error)?;
    if a.json {
        print_json(&RecordsJson {
            format: JSON_FORMAT,
            records: &rows,
        })
    } else {
        print!("{}", render_records(&rows, &labels, zone));
        Ok(())
    }
}

async fn list_records(
    store: &Store,
    a: &RecordsArgs,
) -> Result<(Vec<RecordRow>, Vec<(String, String)>), StoreError> {
    let channel_id = match &a.channel {
        // An unknown name is still tried as an id: records may outlive their channel row.
        Some(c) => Some(store.resolve_channel(c).await?.unwrap_or_else(|| c.clone())),
        None => None,
    };
    let filter = RecordFilter {
        channel_id,
        status: a.status.as_ref().map(|s| s.trim().to_ascii_uppercase()),
        limit: None,
    };
    let rows = store.records(&filter).await?;
    let labels = store
        .channel_rows()
        .await?
        .into_iter()
        .filter_map(|c| c.label.map(|l| (c.channel_id, l)))
        .collect();
    Ok((rows, labels))
}

#[derive(Serialize)]
struct StatusJson<'a> {
    format: u32,
    #[serde(flatten)]
    report: &'a StatusReport,
}

#[derive(Serialize)]
struct RecordsJson<'a> {
    format: u32,
    records: &'a [RecordRow],
}

fn print_json<T: Serialize>(value: &T) -> Result<(), CommandError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CommandError::new(FAILURE, format!("cannot write JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Finds the database and opens it read-only; returns it with the zone to show times in.
async fn open(g: &GlobalArgs, utc: bool) -> Result<(Store, Tz), CommandError> {
    let settings = settings(&g.config, std::env::var_os(DATABASE_ENV).map(PathBuf::from))?;
    let zone = if utc { Tz::UTC } else { settings.timezone };
    let located = settings.database;
    let store = Store::open_read_only(&located.path)
        .await
        .map_err(|e| match e {
            StoreError::Missing { .. } => {
                CommandError::new(FAILURE, format!("{e}; it is {}", located.origin))
            }
            other => CommandError::new(
                FAILURE,
                format!("{} ({}): {other}", located.path.display(), located.origin),
            ),
        })?;
    Ok((store, zone))
}

fn store_error(e: StoreError) -> CommandError {
    CommandError::new(FAILURE, format!("cannot read the database: {e}"))
}

/// The database path and where it came from (for error messages).
#[derive(Debug, PartialEq, Eq)]
struct Located {
    path: PathBuf,
    origin: String,
}

/// What the report commands take from the configuration file.
#[derive(Debug, PartialEq, Eq)]
struct Settings {
    database: Located,
    /// `daemon.timezone`, else UTC.
    timezone: Tz,
}

/// The database: `LSRECD_DATABASE`, else `[daemon].database` of the configuration file, else
/// the default; the zone: `[daemon].timezone`, else UTC.
///
/// Only those two keys are read, so this works with any configuration the daemon accepts, keys
/// or not. An unreadable configuration means the default path and UTC, and the error message
/// about a missing database says so.
fn settings(config: &Path, env: Option<PathBuf>) -> Result<Settings, CommandError> {
    let env = env.filter(|p| !p.as_os_str().is_empty());
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(e) => {
            let database = match env {
                Some(path) => from_env(path),
                None => Located {
                    path: PathBuf::from(DEFAULT_DATABASE),
                    origin: format!(
                        "the default path, as the configuration {} could not be read ({e}); \
                         set {DATABASE_ENV} to choose the database",
                        config.display()
                    ),
                },
            };
            return Ok(Settings {
                database,
                timezone: Tz::UTC,
            });
        }
    };
    let table: toml::Table = match (toml::from_str(&text), env.clone()) {
        (Ok(table), _) => table,
        // The database is named by the environment: show the report, in UTC.
        (Err(_), Some(path)) => {
            return Ok(Settings {
                database: from_env(path),
                timezone: Tz::UTC,
            });
        }
        (Err(e), None) => {
            return Err(CommandError::config(format!("{}: {e}", config.display())));
        }
    };
    let daemon = table.get("daemon");
    let string = |key: &str, what: &str| {
        daemon
            .and_then(|d| d.get(key))
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    CommandError::config(format!(
                        "{}: daemon.{key} must be a string ({what})",
                        config.display()
                    ))
                })
            })
            .transpose()
    };
    let timezone = match string("timezone", "an IANA time zone name")? {
        None => Tz::UTC,
        Some(name) => name.parse::<Tz>().map_err(|_| {
            CommandError::config(format!(
                "{}: daemon.timezone {name:?} is not an IANA time zone name such as \"Asia/Seoul\"",
                config.display()
            ))
        })?,
    };
    let database = match env {
        Some(path) => from_env(path),
        // Relative to the configuration file, as the daemon reads it.
        None => match string("database", "a file path")? {
            Some(p) => Located {
                path: config.parent().unwrap_or(Path::new(".")).join(p),
                origin: format!("daemon.database in {}", config.display()),
            },
            None => Located {
                path: PathBuf::from(DEFAULT_DATABASE),
                origin: format!(
                    "the default path (no daemon.database in {})",
                    config.display()
                ),
            },
        },
    };
    Ok(Settings { database, timezone })
}

fn from_env(path: PathBuf) -> Located {
    Located {
        path,
        origin: format!("from {DATABASE_ENV}"),
    }
}

fn opt_time(ms: Option<i64>, zone: Tz) -> String {
    ms.map(|t| format_time(t, zone))
        .unwrap_or_else(|| "-".into())
}

fn ago(now: i64, then: i64) -> String {
    let s = (now - then) / 1000;
    match s {
        s if s < 0 => "in the future".into(),
        s if s < 120 => format!("{s} s ago"),
        s if s < 7_200 => format!("{} min ago", s / 60),
        s if s < 172_800 => format!("{} h ago", s / 3_600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// A warning window in the unit people set it in: whole hours when it is, else humantime.
fn window(ms: i64) -> String {
    let ms = ms.max(0);
    if ms > 0 && ms % 3_600_000 == 0 {
        format!("{} h", ms / 3_600_000)
    } else {
        humantime::format_duration(std::time::Duration::from_millis(ms.unsigned_abs())).to_string()
    }
}

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// A plain left-aligned table; columns separated by two spaces, no trailing blanks.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths.get(i).copied().unwrap_or(0);
            let _ = write!(line, "{cell:<pad$}");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn section(out: &mut String, title: &str, headers: &[&str], rows: Vec<Vec<String>>) {
    out.push('\n');
    let _ = writeln!(out, "{title} ({})", rows.len());
    if rows.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&table(headers, &rows));
    }
}

fn render_status(r: &StatusReport, zone: Tz) -> String {
    let now = r.generated_at;
    let at = |ms: i64| format_time(ms, zone);
    let opt_at = |ms: Option<i64>| opt_time(ms, zone);
    let mut out = String::new();
    let _ = writeln!(out, "lsrecd status at {} ({zone})", at(now));
    match r.last_poll_at {
        Some(t) => {
            let _ = writeln!(
                out,
                "last poll {} ({}), {} channels seen",
                at(t),
                ago(now, t),
                r.channels_seen.unwrap_or(0)
            );
        }
        None => out.push_str("no poll recorded yet: has the daemon run?\n"),
    }
    if let Some(ha) = &r.ha {
        out.push_str(&render_ha(ha, now, zone));
    }

    let channels = r
        .channels
        .iter()
        .filter(|c| c.configured || c.is_recording || c.immediate_on_air)
        .map(|c| {
            let mut note = Vec::new();
            if !c.configured {
                note.push("not configured".to_string());
            }
            if c.immediate_on_air {
                note.push("immediateOnAir".to_string());
            }
            if let Some(m) = c.missing_since {
                note.push(format!("MISSING from the API since {}", at(m)));
            }
            vec![
                c.channel_id.clone(),
                text(&c.label),
                text(&c.channel_status),
                if c.is_recording { "yes" } else { "no" }.into(),
                opt_at(c.observed_at),
                note.join(", "),
            ]
        })
        .collect();
    section(
        &mut out,
        "CHANNELS",
        &["CHANNEL", "LABEL", "STATUS", "RECORDING", "SINCE", "NOTE"],
        channels,
    );

    let active = r
        .active_recordings
        .iter()
        .map(|a| {
            vec![
                a.record_id.to_string(),
                a.label.clone().unwrap_or_else(|| a.channel_id.clone()),
                a.record_type.clone(),
                opt_at(a.record_begin_time),
                a.running_minutes
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "-".into()),
                if a.owned {
                    format!("lsrecd ({})", text(&a.owned_trigger))
                } else {
                    "not lsrecd".into()
                },
            ]
        })
        .collect();
    section(
        &mut out,
        "ACTIVE RECORDINGS",
        &[
            "RECORD",
            "CHANNEL",
            "TYPE",
            "BEGIN",
            "MINUTES",
            "STARTED BY",
        ],
        active,
    );

    let occurrences = r
        .occurrences
        .iter()
        .map(|o| {
            vec![
                o.schedule.clone(),
                o.channel_id.clone(),
                at(o.fire_time),
                o.window_end
                    .map(at)
                    .unwrap_or_else(|| "until offline".into()),
                o.state.to_string(),
                text(&o.detail),
            ]
        })
        .collect();
    section(
        &mut out,
        "OCCURRENCES (not final)",
        &[
            "SCHEDULE",
            "CHANNEL",
            "FIRE TIME",
            "WINDOW END",
            "STATE",
            "DETAIL",
        ],
        occurrences,
    );

    if !r.manual_claims.is_empty() {
        let claims = r
            .manual_claims
            .iter()
            .map(|c| vec![c.channel_id.clone(), at(c.requested_at)])
            .collect();
        section(&mut out, "MANUAL CLAIMS", &["CHANNEL", "SINCE"], claims);
    }

    for (operation, title) in [
        (Mutation::StartRecord, "SHOULD BE RECORDING, IS NOT"),
        (Mutation::StopRecord, "SHOULD HAVE STOPPED, HAS NOT"),
    ] {
        let rows: Vec<Vec<String>> = r
            .outages
            .iter()
            .filter(|o| o.operation == operation)
            .map(|o| {
                vec![
                    o.channel_id.clone(),
                    o.trigger.to_string(),
                    at(o.since),
                    ago(now, o.since),
                    o.attempts.to_string(),
                    text(&o.last_error),
                ]
            })
            .collect();
        if !rows.is_empty() {
            section(
                &mut out,
                title,
                &["CHANNEL", "TRIGGER", "SINCE", "FOR", "SENT", "LAST ERROR"],
                rows,
            );
        }
    }

    let failures = r
        .recent_failures
        .iter()
        .map(|f| {
            vec![
                at(f.at),
                f.source.clone(),
                text(&f.channel_id),
                f.what.clone(),
                f.detail.clone(),
            ]
        })
        .collect();
    section(
        &mut out,
        "RECENT FAILURES (7 days)",
        &["AT", "SOURCE", "CHANNEL", "WHAT", "DETAIL"],
        failures,
    );

    let expiring = r
        .expiring_records
        .iter()
        .map(|e| {
            vec![
                e.record_id.to_string(),
                e.label.clone().unwrap_or_else(|| e.channel_id.clone()),
                e.record_type.clone(),
                e.status.clone(),
                at(e.should_delete_time),
                format!("{:.1}", e.hours_left),
                if e.upload_requested_at.is_some() {
                    "requested"
                } else {
                    "no"
                }
                .into(),
            ]
        })
        .collect();
    section(
        &mut out,
        &format!(
            "EXPIRING, NOT UPLOADED (within {})",
            window(r.warn_before_ms)
        ),
        &[
            "RECORD",
            "CHANNEL",
            "TYPE",
            "STATUS",
            "DELETED AT",
            "HOURS LEFT",
            "UPLOAD",
        ],
        expiring,
    );
    out
}

/// The `[ha]` lines: this instance's role, the leader, the lease's age.
fn render_ha(ha: &crate::store::HaReport, now: i64, zone: Tz) -> String {
    let mut out = String::new();
    let role = if ha.role == "leader" {
        "LEADER (acts)"
    } else {
        "standby (observes only)"
    };
    let _ = writeln!(
        out,
        "high availability: this instance ({}) is {role}, as of {}",
        ha.instance,
        ago(now, ha.updated_at)
    );
    let leader = match (&ha.leader, ha.term) {
        (Some(l), Some(t)) => {
            let since = ha
                .term_seen_at
                .map(|s| format!(", seen since {} ({})", format_time(s, zone), ago(now, s)))
                .unwrap_or_default();
            format!("{l} (term {t}{since})")
        }
        _ => "none known".to_string(),
    };
    let _ = writeln!(out, "leader: {leader}");
    let lease = match ha.lease_renewed_at {
        Some(t) => format!("last renewed {}", ago(now, t)),
        None => "none".to_string(),
    };
    let _ = writeln!(out, "lease: {lease}");
    if let Some(why) = &ha.standby_reason {
        let _ = writeln!(out, "not acting: {why}");
    }
    out
}

fn render_records(rows: &[RecordRow], labels: &[(String, String)], zone: Tz) -> String {
    let opt_at = |ms: Option<i64>| opt_time(ms, zone);
    if rows.is_empty() {
        return "no records\n".into();
    }
    let label = |id: &str| {
        labels
            .iter()
            .find(|(c, _)| c == id)
            .map(|(_, l)| l.clone())
            .unwrap_or_else(|| id.to_string())
    };
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.record_id.to_string(),
                label(&r.channel_id),
                r.record_type.clone(),
                r.status.clone(),
                opt_at(r.record_begin_time),
                r.duration
                    .map(|d| {
                        humantime::format_duration(std::time::Duration::from_secs(
                            d.max(0).unsigned_abs(),
                        ))
                        .to_string()
                    })
                    .unwrap_or_else(|| "-".into()),
                opt_at(r.should_delete_time),
                if r.object_storage_url.is_some() {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                text(&r.file_name),
            ]
        })
        .collect();
    table(
        &[
            "RECORD",
            "CHANNEL",
            "TYPE",
            "STATUS",
            "BEGIN",
            "DURATION",
            "DELETED AT",
            "UPLOADED",
            "FILE",
        ],
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("config.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_environment_variable_wins_over_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(dir.path(), "[daemon]\ndatabase = \"/srv/a.db\"\n");
        let l = settings(&cfg, Some("/tmp/b.db".into())).unwrap().database;
        assert_eq!(l.path, PathBuf::from("/tmp/b.db"));
    }

    #[test]
    fn the_database_key_of_the_daemon_table_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(
            dir.path(),
            "[api]\nregion = \"KR\"\n[daemon]\ndatabase = \"/srv/a.db\"\npoll_interval = \"10s\"\n",
        );
        let l = settings(&cfg, None).unwrap().database;
        assert_eq!(l.path, PathBuf::from("/srv/a.db"));
    }

    #[test]
    fn a_relative_database_path_is_relative_to_the_configuration_file_like_the_daemons() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(dir.path(), "[daemon]\ndatabase = \"state/x.db\"\n");
        let l = settings(&cfg, None).unwrap().database;
        assert_eq!(l.path, dir.path().join("state/x.db"));
    }

    #[test]
    fn a_configuration_without_the_key_means_the_default_path() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(dir.path(), "[daemon]\ntimezone = \"Asia/Seoul\"\n");
        let l = settings(&cfg, None).unwrap().database;
        assert_eq!(l.path, PathBuf::from(DEFAULT_DATABASE));
    }

    #[test]
    fn an_unreadable_configuration_falls_back_to_the_default_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(&dir.path().join("absent.toml"), None).unwrap();
        assert_eq!(s.timezone, Tz::UTC);
        let l = s.database;
        assert_eq!(l.path, PathBuf::from(DEFAULT_DATABASE));
        assert!(l.origin.contains("absent.toml"), "{}", l.origin);
        assert!(l.origin.contains(DATABASE_ENV), "{}", l.origin);
    }

    #[test]
    fn invalid_toml_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = write(dir.path(), "[daemon\n");
        let e = settings(&cfg, None).unwrap_err();
        assert_eq!(e.code, crate::exit::CONFIG);
        // With the database named by the environment the report still runs, in UTC.
        let s = settings(&cfg, Some("/tmp/b.db".into())).unwrap();
        assert_eq!(s.database.path, PathBuf::from("/tmp/b.db"));
        assert_eq!(s.timezone, Tz::UTC);
        let e = settings(&write(dir.path(), "[daemon]\ndatabase = 3\n"), None).unwrap_err();
        assert_eq!(e.code, crate::exit::CONFIG);
        assert!(e.message.contains("daemon.database"), "{}", e.message);
    }

    #[test]
    fn times_are_shown_in_the_daemon_timezone_else_utc() {
        let dir = tempfile::tempdir().unwrap();
        let seoul = write(dir.path(), "[daemon]\ntimezone = \"Asia/Seoul\"\n");
        assert_eq!(settings(&seoul, None).unwrap().timezone, Tz::Asia__Seoul);
        let none = write(dir.path(), "[api]\nregion = \"KR\"\n");
        assert_eq!(settings(&none, None).unwrap().timezone, Tz::UTC);
        let bad = write(dir.path(), "[daemon]\ntimezone = \"Mars/Olympus\"\n");
        let e = settings(&bad, None).unwrap_err();
        assert_eq!(e.code, crate::exit::CONFIG);
        assert!(e.message.contains("daemon.timezone"), "{}", e.message);
    }

    #[test]
    fn the_ha_lines_name_the_role_the_leader_and_the_lease_age() {
        let now = 1_764_147_600_000;
        let mut ha = crate::store::HaReport {
            instance: "broadcast-2".into(),
            role: "standby".into(),
            leader: Some("broadcast-1".into()),
            term: Some(4182),
            term_seen_at: Some(now - 3_600_000),
            lease_renewed_at: Some(now - 2_000),
            standby_reason: Some("broadcast-1 holds the leader key".into()),
            updated_at: now - 1_000,
        };
        assert_eq!(
            render_ha(&ha, now, Tz::UTC),
            "high availability: this instance (broadcast-2) is standby (observes only), as of 1 s ago\n\
             leader: broadcast-1 (term 4182, seen since 2025-11-26 08:00:00 UTC (60 min ago))\n\
             lease: last renewed 2 s ago\n\
             not acting: broadcast-1 holds the leader key\n"
        );
        ha.role = "leader".into();
        ha.leader = Some("broadcast-2".into());
        ha.standby_reason = None;
        ha.lease_renewed_at = None;
        let text = render_ha(&ha, now, Tz::UTC);
        assert!(text.contains("is LEADER (acts)"), "{text}");
        assert!(text.contains("lease: none"), "{text}");
        assert!(!text.contains("not acting"), "{text}");
    }

    #[test]
    fn tables_align_columns_without_trailing_blanks() {
        let t = table(
            &["A", "BB"],
            &[vec!["xyz".into(), "1".into()], vec!["q".into(), "".into()]],
        );
        assert_eq!(t, "A    BB\nxyz  1\nq\n");
    }
}
