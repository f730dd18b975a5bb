//! What every published error code means to lsrecd, whatever HTTP status carries it.
//!
//! Live Station's reference lists its own error codes (`2500xx`, with an `errorName`) without
//! the HTTP status each comes with (only `250013 OPEN_API_OK` is listed, as 200), so a
//! transient `250000 EXCEPTION` may arrive as a 400, and an error object may even arrive under a
//! 2xx. The gateway's codes (three-digit strings, no `errorName`) come with documented statuses.
//! [`client::classify`](super::client::classify) reads the code first, through this table, and
//! falls back on the HTTP status only for a body without a code it knows. `docs/operations.md`
//! prints the same table for operators; a test keeps the two equal.

/// What the engine does with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meaning {
    /// Not an error: `250013 OPEN_API_OK`.
    Success,
    /// Try again with backoff. A state-changing call may have been applied: it is settled by an
    /// observation before it is sent again.
    Transient,
    /// Quota or rate: wait (`Retry-After` as a floor), then try again; nothing was done.
    RateLimited,
    /// Refused in the channel's present state: not sent again until that state changes.
    WaitForState,
    /// The channel (or record) does not exist.
    Gone,
    /// Credentials, subscription or sub-account policy: an operator must act (the
    /// `auth_failure` event and metric).
    Unauthorized,
    /// The request itself is wrong: a bug in lsrecd, reported as such; not sent again until the
    /// channel's state changes.
    BadRequest,
}

impl Meaning {
    /// The short name in the table of `docs/operations.md`.
    pub fn label(self) -> &'static str {
        match self {
            Meaning::Success => "success",
            Meaning::Transient => "transient",
            Meaning::RateLimited => "rate limited",
            Meaning::WaitForState => "wait for the channel",
            Meaning::Gone => "gone",
            Meaning::Unauthorized => "credentials",
            Meaning::BadRequest => "bug",
        }
    }

    /// The words operators read in the table.
    pub fn describe(self) -> &'static str {
        match self {
            Meaning::Success => "success",
            Meaning::Transient => {
                "transient: retried with backoff; a start or stop is settled by an observation before it is sent again"
            }
            Meaning::RateLimited => "rate limited: wait (Retry-After as a floor), then retried",
            Meaning::WaitForState => {
                "refused in the channel's state: not sent again until the channel's state changes"
            }
            Meaning::Gone => "the channel or record does not exist",
            Meaning::Unauthorized => {
                "credentials or permissions: auth_failure event and metric, retried every max_backoff"
            }
            Meaning::BadRequest => {
                "bad request, a bug in lsrecd: logged as such, not sent again until the channel's state changes"
            }
        }
    }
}

/// One published code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    /// The code as the body spells it (Live Station's may come as a JSON number).
    pub code: &'static str,
    /// `errorName` (Live Station) or the message (gateway).
    pub name: &'static str,
    /// What lsrecd does with it.
    pub meaning: Meaning,
}

const fn code(code: &'static str, name: &'static str, meaning: Meaning) -> Code {
    Code {
        code,
        name,
        meaning,
    }
}

/// Live Station's own codes, as published.
pub const LIVE_STATION: &[Code] = &[
    code("250000", "EXCEPTION", Meaning::Transient),
    code("250001", "CUSTOM_MESSAGE", Meaning::Transient),
    code("250002", "INVALID_FORMAT", Meaning::BadRequest),
    code("250003", "REQUIRED_HEADER", Meaning::BadRequest),
    code("250004", "NOT_FOUND", Meaning::Gone),
    code("250005", "NOT_AVAILABLE", Meaning::WaitForState),
    code("250006", "UNAUTHORIZED", Meaning::Unauthorized),
    code("250007", "CONNECTION_FAILED", Meaning::Transient),
    code("250008", "REQUEST_FAILED", Meaning::Transient),
    code("250009", "THIRD_SERVER_EXCEPTION", Meaning::Transient),
    code("250010", "POLICY_CHECK_FAILED", Meaning::Unauthorized),
    code("250011", "NEED_VALUE", Meaning::BadRequest),
    code("250012", "JSON_PARSE_GENERAL_ERROR", Meaning::BadRequest),
    code("250013", "OPEN_API_OK", Meaning::Success),
    code("250014", "FORMVALIDATION_FAILED", Meaning::BadRequest),
    code("250015", "OPEN_API_UNAUTHORIZED", Meaning::Unauthorized),
    code("250016", "INTERNAL_SERVER_ERROR", Meaning::Transient),
    code("250017", "OPEN_API_UNAUTHORIZED", Meaning::Unauthorized),
    code("250018", "OPEN_API_BAD_REQUEST", Meaning::BadRequest),
    code(
        "250019",
        "OPEN_API_UNSUPPORTED_REGION",
        Meaning::Unauthorized,
    ),
    code(
        "250020",
        "OPEN_API_INVALID_REGION_CODE",
        Meaning::Unauthorized,
    ),
    code("250021", "OPEN_API_PARAM_TYPE_ERROR", Meaning::BadRequest),
];

/// The API gateway's codes (each documented with its HTTP status, given here after the name).
pub const GATEWAY: &[Code] = &[
    code("100", "Bad Request Exception (400)", Meaning::BadRequest),
    code("200", "Authentication Failed (401)", Meaning::Unauthorized),
    code("210", "Permission Denied (401)", Meaning::Unauthorized),
    code("230", "Forbidden (403)", Meaning::Unauthorized),
    code("300", "Not Found Exception (404)", Meaning::BadRequest),
    code("400", "Quota Exceeded (429)", Meaning::RateLimited),
    code("410", "Throttle Limited (429)", Meaning::RateLimited),
    code("420", "Rate Limited (429)", Meaning::RateLimited),
    code("430", "Request Entity Too Large (413)", Meaning::BadRequest),
    code("500", "Endpoint Error (503)", Meaning::Transient),
    code("510", "Endpoint Timeout (504)", Meaning::Transient),
    code("900", "Unexpected Error (500)", Meaning::Transient),
];

/// What an error body's code means: Live Station's table for a body with an `errorName` or a
/// code of its range, the gateway's for the others. `None` for a code in neither table.
pub fn meaning(code: &str, from_live_station: bool) -> Option<Meaning> {
    let code = code.trim();
    let live_station = from_live_station || code.len() == 6;
    let table = if live_station { LIVE_STATION } else { GATEWAY };
    table.iter().find(|c| c.code == code).map(|c| c.meaning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_per_table() {
        for table in [LIVE_STATION, GATEWAY] {
            for (i, c) in table.iter().enumerate() {
                assert!(
                    table[i + 1..].iter().all(|o| o.code != c.code),
                    "{} twice",
                    c.code
                );
            }
        }
    }

    /// `docs/operations.md` lists every code with its meaning, as this table has it.
    #[test]
    fn the_operators_table_is_this_table() {
        let doc = include_str!("../../docs/operations.md");
        for c in LIVE_STATION.iter().chain(GATEWAY) {
            let row = format!("| {} | {} | {} |", c.code, c.name, c.meaning.label());
            assert!(doc.contains(&row), "docs/operations.md lacks the row {row}");
        }
        let rows = doc
            .lines()
            .filter(|l| {
                let code = l.trim_start_matches("| ").split(' ').next().unwrap_or("");
                l.starts_with("| ") && code.len() >= 3 && code.bytes().all(|b| b.is_ascii_digit())
            })
            .count();
        assert_eq!(rows, LIVE_STATION.len() + GATEWAY.len(), "rows with a code");
        for m in [
            Meaning::Success,
            Meaning::Transient,
            Meaning::RateLimited,
            Meaning::WaitForState,
            Meaning::Gone,
            Meaning::Unauthorized,
            Meaning::BadRequest,
        ] {
            let legend = format!("| {} | {} |", m.label(), m.describe());
            assert!(doc.contains(&legend), "docs/operations.md lacks {legend}");
        }
    }

    #[test]
    fn a_six_digit_code_is_read_as_live_station_s_even_without_a_name() {
        assert_eq!(meaning("250000", false), Some(Meaning::Transient));
        assert_eq!(meaning(" 250005 ", true), Some(Meaning::WaitForState));
        // A gateway code in a Live Station body is not the gateway's.
        assert_eq!(meaning("500", true), None);
        assert_eq!(meaning("999999", true), None);
    }
}
