//! Classification of failed API calls into what callers branch on.
//!
//! Every failure of every call becomes one [`ApiError`], made in one place
//! (`client::classify`). The engine decides retry, reconcile or alert from the variant alone.

use std::time::Duration;

use super::codes::{self, Meaning};

/// What a [`ApiError::Rejected`] refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The channel's present state (e.g. `250005 NOT_AVAILABLE`): wait until it changes.
    State,
    /// The channel or record does not exist (`250004 NOT_FOUND`, or a bare 404).
    NotFound,
    /// The request is wrong (`250002 INVALID_FORMAT`, gateway `300` …): a bug in lsrecd.
    BadRequest,
}

/// A failed Live Station call.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// Worth retrying: connect/read errors, timeouts, HTTP 5xx, gateway codes 500/510/900.
    ///
    /// `maybe_applied` is false only when the request certainly never reached the server
    /// (connection refused, DNS failure); otherwise a state-changing call may have taken effect
    /// and must be reconciled before it is sent again.
    #[error("transient failure{}: {reason}", http_suffix(*.http_status))]
    Transient {
        http_status: Option<u16>,
        error_code: Option<String>,
        reason: String,
        maybe_applied: bool,
    },
    /// HTTP 429 (gateway codes 400/410/420). `retry_after` is a floor on the next attempt, at
    /// most [`MAX_RETRY_AFTER`](super::client::MAX_RETRY_AFTER); the client also holds every
    /// other call back for that long.
    #[error("rate limited (HTTP 429{}){}", code_suffix(.error_code), retry_suffix(*.retry_after))]
    RateLimited {
        retry_after: Option<Duration>,
        error_code: Option<String>,
    },
    /// HTTP 401/403 from the gateway: authentication failed or permission denied.
    #[error("unauthorized (HTTP {http_status}, code {error_code}): {message}{}", details_suffix(.details))]
    Unauthorized {
        http_status: u16,
        error_code: String,
        message: String,
        /// The gateway's `details`, e.g. "Invalid authentication information." or
        /// "Expired timestamp." (never contains the key or signature).
        details: Option<String>,
    },
    /// An answer that retrying will not change until the observed state changes: Live Station
    /// refused (with `errorCode`/`errorName`), or the gateway said not found / bad request
    /// ([`ApiError::refusal`] tells which).
    #[error("rejected (HTTP {http_status}{}{}): {message}{}", code_suffix(.error_code), name_suffix(.error_name), bug_suffix(.error_code, .error_name))]
    Rejected {
        http_status: u16,
        error_code: Option<String>,
        error_name: Option<String>,
        message: String,
    },
    /// The server answered 2xx but the body could not be read.
    #[error("malformed response (HTTP {http_status}): {reason}")]
    Malformed { http_status: u16, reason: String },
}

impl ApiError {
    /// Whether the same call may be tried again later without a change in observed state.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ApiError::Transient { .. } | ApiError::RateLimited { .. }
        )
    }

    /// Whether a state-changing request may have been applied even though it failed. Such a
    /// call is reconciled (re-read) before it is sent again, never blindly resent.
    pub fn maybe_applied(&self) -> bool {
        match self {
            ApiError::Transient { maybe_applied, .. } => *maybe_applied,
            // The server answered, but we could not read what it did.
            ApiError::Malformed { .. } => true,
            _ => false,
        }
    }

    /// HTTP status, when there was an answer.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ApiError::Transient { http_status, .. } => *http_status,
            ApiError::RateLimited { .. } => Some(429),
            ApiError::Unauthorized { http_status, .. }
            | ApiError::Rejected { http_status, .. }
            | ApiError::Malformed { http_status, .. } => Some(*http_status),
        }
    }

    /// The API's `errorCode`, when there was one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            ApiError::Transient { error_code, .. }
            | ApiError::RateLimited { error_code, .. }
            | ApiError::Rejected { error_code, .. } => error_code.as_deref(),
            ApiError::Unauthorized { error_code, .. } => Some(error_code),
            ApiError::Malformed { .. } => None,
        }
    }

    /// What a [`ApiError::Rejected`] refuses, by its code (the table in [`codes`]), else by its
    /// status (404: not found); `None` for every other error.
    pub fn refusal(&self) -> Option<Refusal> {
        let ApiError::Rejected {
            http_status,
            error_code,
            error_name,
            ..
        } = self
        else {
            return None;
        };
        let meaning = error_code
            .as_deref()
            .and_then(|c| codes::meaning(c, error_name.is_some()));
        Some(match meaning {
            Some(Meaning::Gone) => Refusal::NotFound,
            Some(Meaning::BadRequest) => Refusal::BadRequest,
            Some(_) => Refusal::State,
            None if *http_status == 404 => Refusal::NotFound,
            None => Refusal::State,
        })
    }

    /// A short class name for metrics and the `actions` table.
    pub fn class(&self) -> &'static str {
        match self {
            ApiError::Transient { .. } => "transient",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Rejected { .. } => "rejected",
            ApiError::Malformed { .. } => "malformed",
        }
    }
}

fn http_suffix(s: Option<u16>) -> String {
    s.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

fn code_suffix(c: &Option<String>) -> String {
    c.as_ref()
        .map(|c| format!(", code {c}"))
        .unwrap_or_default()
}

fn name_suffix(n: &Option<String>) -> String {
    n.as_ref().map(|n| format!(" {n}")).unwrap_or_default()
}

/// For a refusal of the request itself: that it is lsrecd's bug.
fn bug_suffix(code: &Option<String>, name: &Option<String>) -> &'static str {
    let bad = code
        .as_deref()
        .and_then(|c| codes::meaning(c, name.is_some()))
        == Some(Meaning::BadRequest);
    if bad {
        " (Live Station calls the request itself wrong: a bug in lsrecd, please report it)"
    } else {
        ""
    }
}

fn details_suffix(d: &Option<String>) -> String {
    d.as_ref().map(|d| format!(" — {d}")).unwrap_or_default()
}

fn retry_suffix(r: Option<Duration>) -> String {
    r.map(|r| format!(", retry after {}s", r.as_secs_f64()))
        .unwrap_or_default()
}
