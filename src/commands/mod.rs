//! One file per subcommand: each turns arguments into calls on the library and output for a person.

pub mod check;
pub mod demo;
pub mod docs;
pub mod emulator;
pub mod manual;
pub mod probe;
pub mod report;
pub mod run;

use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::config::Config;
use crate::exit::CommandError;

/// Loads the configuration; an invalid one ends the command with exit 78.
pub(crate) fn load_config(path: &Path) -> Result<Config, CommandError> {
    Config::load(path).map_err(|e| CommandError::config(e.to_string()))
}

/// `ms` (Unix milliseconds) as a wall-clock time in `zone` with the zone's abbreviation, e.g.
/// `2026-11-28 15:33:29 KST`; the raw number when it is out of range.
pub(crate) fn format_time(ms: i64, zone: Tz) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&zone)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_the_zone_with_its_abbreviation() {
        // 2026-11-28T06:33:29Z
        let ms = 1_795_847_609_000;
        assert_eq!(format_time(ms, Tz::Asia__Seoul), "2026-11-28 15:33:29 KST");
        assert_eq!(format_time(ms, Tz::UTC), "2026-11-28 06:33:29 UTC");
        assert_eq!(
            format_time(ms + 3_600_000 * 24 * 180, Tz::Europe__Berlin),
            "2027-05-27 08:33:29 CEST"
        );
        assert_eq!(format_time(i64::MAX, Tz::UTC), i64::MAX.to_string());
    }
}
