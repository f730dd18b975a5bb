//! `lsrecd probe [--json]`: a read-only check of the Live Station account before go-live.
//!
//! With the real configuration and keys it sends only GET requests (the channel list, one
//! channel, a channel's records; never `startRecord`, `stopRecord` or an upload) and reports:
//! whether the keys and region are accepted, the gateway clock's offset, whether
//! `pageSizeNo=100` is honoured, what the channel list's `total` counts on this account, whether
//! two reads of the same page are byte-identical (what lets the daemon skip unchanged pages),
//! which HTTP status Live Station gives its own "not found", every configured channel's state,
//! records and retention horizon, and how long each kind of request took.
//!
//! Findings lsrecd copes with (e.g. `total` counting the page) are `note:` lines. Exit codes: 0
//! usable, 1 a configured channel is not in the account, 69 the API cannot be reached, 76 an
//! answer lsrecd cannot use, 77 the keys or their permissions are refused, 78 an invalid
//! configuration. With several problems the first of 77, 69, 76, 1 wins.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tracing::instrument::WithSubscriber as _;

use crate::cli::{GlobalArgs, ProbeArgs};
use crate::config::Config;
use crate::exit::{self, CommandError};
use crate::livestation::client::{CHANNEL_PAGE_SIZE, MAX_CHANNEL_PAGES};
use crate::livestation::{
    ApiError, ChannelPage, Client, Listing, PageShape, Record, Refusal, SKEW_WARN_THRESHOLD,
};

/// Version of the `--json` shape; raised only on incompatible changes.
pub const JSON_FORMAT: u32 = 1;

/// The start of the id asked for to see how Live Station answers "not found".
pub const NO_SUCH_CHANNEL_PREFIX: &str = "lsrecd-probe-no-such-channel-";

/// Which problem decides the exit code when there are several: the first present.
const PRECEDENCE: [u8; 4] = [
    exit::NOPERM,
    exit::UNAVAILABLE,
    exit::PROTOCOL,
    exit::FAILURE,
];

/// What `probe --json` prints.
#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub format: u32,
    /// `api.endpoint`.
    pub endpoint: String,
    /// `api.region` (`KR` or `FKR`).
    pub region: String,
    /// The exit code the report leads to.
    pub exit_code: u8,
    /// The first request: the channel list's page 1.
    pub authentication: Authentication,
    /// Gateway clock minus this host's, from the `Date` headers; `null` without one.
    pub clock_offset_ms: Option<i64>,
    /// The channel list, page by page; `null` when page 1 could not be read.
    pub listing: Option<ListingReport>,
    /// How a channel that cannot exist is answered; `null` when not asked.
    pub not_found: Option<NotFoundReport>,
    /// Every `[[channel]]`, in configuration order (empty when page 1 could not be read).
    pub channels: Vec<ChannelReport>,
    /// What the requests took, by operation (`list_channels`, `get_channel`, `list_records`).
    pub latency: BTreeMap<&'static str, Latency>,
    /// Findings lsrecd copes with.
    pub notes: Vec<String>,
    /// Findings that make the account unusable as configured, each with its exit code.
    pub problems: Vec<Problem>,
}

/// Whether the keys and region were accepted.
#[derive(Debug, Default, Serialize)]
pub struct Authentication {
    /// `true` when page 1 was answered, `false` when the gateway refused the keys or their
    /// permissions, `null` when there was no telling (no answer, or another error).
    pub accepted: Option<bool>,
    pub http_status: Option<u16>,
    /// The gateway's or Live Station's `errorCode` of a refusal.
    pub error_code: Option<String>,
    /// The gateway's `details` of a refusal, e.g. "Invalid authentication information.".
    pub details: Option<String>,
    /// What went wrong, in words.
    pub error: Option<String>,
    /// `x-ncp-trace-id` of the answer, for NAVER support.
    pub trace_id: Option<String>,
}

/// The channel list as read with `pageSizeNo=100`.
#[derive(Debug, Serialize)]
pub struct ListingReport {
    /// The pages the listing read, until a short or empty one.
    pub pages: Vec<PageReport>,
    /// Distinct channels listed.
    pub channels: usize,
    pub page_size: PageSizeReport,
    pub total: TotalReport,
    /// Whether two reads of page 1 had byte-identical bodies (unchanged pages can then be
    /// replayed instead of read); `null` when the second read failed.
    pub page_1_identical: Option<bool>,
}

/// One page of the channel list.
#[derive(Debug, Serialize)]
pub struct PageReport {
    pub page_no: u32,
    /// Entries on the page, unreadable ones included.
    pub entries: usize,
    /// Its `total`, as given.
    pub total: Option<u64>,
}

/// Whether `pageSizeNo` is honoured.
#[derive(Debug, Serialize)]
pub struct PageSizeReport {
    pub asked: u32,
    /// `null` when there is no telling (no channels, or page 2 could not be read).
    pub honoured: Option<bool>,
    /// The reason, in words.
    pub detail: String,
}

/// What the list's `total` counts.
#[derive(Debug, Serialize)]
pub struct TotalReport {
    pub meaning: TotalMeaning,
    /// Page 1's `total`.
    pub first_page_total: Option<u64>,
    /// For `all`: whether it equals the distinct channels listed.
    pub matches_listing: Option<bool>,
}

/// The readings of `total` the reference allows, and what else was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TotalMeaning {
    /// Every channel of the account.
    All,
    /// The entries of its page.
    Page,
    /// Not given.
    Absent,
    /// One page whose `total` equals its entries: either reading fits.
    Indistinguishable,
    /// Neither reading fits.
    Inconsistent,
}

impl TotalMeaning {
    fn describe(self) -> &'static str {
        match self {
            TotalMeaning::All => "counts every channel",
            TotalMeaning::Page => "counts the page",
            TotalMeaning::Absent => "absent",
            TotalMeaning::Indistinguishable => "indistinguishable (one page)",
            TotalMeaning::Inconsistent => "inconsistent",
        }
    }
}

/// The answer to a GET of a channel that cannot exist.
#[derive(Debug, Serialize)]
pub struct NotFoundReport {
    pub channel_id: String,
    pub http_status: Option<u16>,
    pub error_code: Option<String>,
    pub error_name: Option<String>,
    /// Whether lsrecd reads the answer as "not found" ([`ApiError::refusal`]).
    pub read_as_not_found: bool,
    /// The answer, in words.
    pub answer: String,
}

/// One configured channel.
#[derive(Debug, Serialize)]
pub struct ChannelReport {
    pub id: String,
    pub label: Option<String>,
    /// In the channel list.
    pub listed: bool,
    /// In the account (a channel not listed is asked for by id); `null` when that failed.
    pub exists: Option<bool>,
    pub channel_status: Option<String>,
    pub is_recording: Option<bool>,
    /// Whether `GET …/records` answered; `null` when not asked (the channel does not exist).
    pub records_readable: Option<bool>,
    /// Records listed.
    pub records: Option<usize>,
    /// Why the records could not be read.
    pub records_error: Option<String>,
    /// `shouldDeleteTime - createdTime` over the records; `null` without such records.
    pub retention: Option<Retention>,
}

/// The retention horizon seen in a channel's records.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Records that gave both times.
    pub records: usize,
    pub min_ms: i64,
    pub max_ms: i64,
}

/// Latency of one operation's requests (each request's exchange, retries included).
#[derive(Debug, PartialEq, Serialize)]
pub struct Latency {
    pub calls: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
}

/// A finding that makes the account unusable as configured.
#[derive(Debug, Serialize)]
pub struct Problem {
    pub exit_code: u8,
    pub message: String,
}

/// Runs `lsrecd probe`.
pub async fn run(g: &GlobalArgs, a: ProbeArgs) -> Result<(), CommandError> {
    let config = super::load_config(&g.config)?;
    let client =
        crate::daemon::client_for(&config).map_err(|e| CommandError::config(e.to_string()))?;
    let report = probe(&config, &client).await;
    if a.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| CommandError::new(exit::FAILURE, format!("cannot encode JSON: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", render_text(&report));
    }
    if report.exit_code == exit::OK {
        return Ok(());
    }
    let message: Vec<&str> = report
        .problems
        .iter()
        .filter(|p| p.exit_code == report.exit_code)
        .map(|p| p.message.as_str())
        .collect();
    Err(CommandError::new(report.exit_code, message.join("; ")))
}

/// Probes the account of `config` through `client` (which must be fresh: it gets a call
/// observer to time the requests).
pub async fn probe(config: &Config, client: &Client) -> ProbeReport {
    let times: Arc<Mutex<BTreeMap<&'static str, Vec<Duration>>>> = Arc::default();
    let sink = times.clone();
    client.observe_calls(Arc::new(move |operation, _, took| {
        let mut times = sink.lock().unwrap_or_else(PoisonError::into_inner);
        times.entry(operation).or_default().push(took);
    }));
    let mut report = ProbeReport {
        format: JSON_FORMAT,
        endpoint: config.api.endpoint.clone(),
        region: config.api.region.code().to_string(),
        exit_code: exit::OK,
        authentication: Authentication::default(),
        clock_offset_ms: None,
        listing: None,
        not_found: None,
        channels: Vec::new(),
        latency: BTreeMap::new(),
        notes: Vec::new(),
        problems: Vec::new(),
    };
    let first = client.list_channels_page(1, CHANNEL_PAGE_SIZE).await;
    report.clock_offset_ms = client.clock_skew().map(|s| s.num_milliseconds());
    match first {
        Ok(reply) => {
            report.authentication = Authentication {
                accepted: Some(true),
                http_status: Some(reply.meta.http_status),
                trace_id: reply.meta.trace_id,
                ..Authentication::default()
            };
            let listing = list(client, reply.value, &mut report).await;
            report.not_found = Some(not_found(client, &mut report).await);
            report.channels = channels(client, config, &listing, &mut report).await;
        }
        Err(e) => {
            report.authentication = Authentication {
                accepted: matches!(e, ApiError::Unauthorized { .. }).then_some(false),
                http_status: e.http_status(),
                error_code: e.error_code().map(str::to_owned),
                details: match &e {
                    ApiError::Unauthorized { details, .. } => details.clone(),
                    _ => None,
                },
                error: Some(e.to_string()),
                trace_id: None,
            };
            let hint = match e {
                ApiError::Unauthorized { .. } => {
                    "check the access and secret keys, api.region and the sub-account's policy"
                }
                ApiError::Transient { .. } | ApiError::RateLimited { .. } => {
                    "check api.endpoint, the network and any proxy"
                }
                _ => "check api.endpoint and api.region",
            };
            report.problem(
                code_of(&e),
                format!("the channel list could not be read ({e}): {hint}"),
            );
        }
    }
    if let Some(skew) = client
        .clock_skew()
        .filter(|s| s.abs() > SKEW_WARN_THRESHOLD)
    {
        report.note(format!(
            "the gateway clock differs from this host's by {} s: lsrecd signs with the corrected \
             time, but check NTP on this host",
            skew.num_seconds()
        ));
    }
    let times = times.lock().unwrap_or_else(PoisonError::into_inner);
    report.latency = times
        .iter()
        .filter_map(|(op, took)| latency(took).map(|l| (*op, l)))
        .collect();
    report.exit_code = exit_code(&report.problems);
    report
}

impl ProbeReport {
    fn problem(&mut self, exit_code: u8, message: String) {
        self.problems.push(Problem { exit_code, message });
    }

    fn note(&mut self, message: String) {
        self.notes.push(message);
    }
}

/// The exit code of a failed GET: refused keys or permissions 77, no answer (or a throttled
/// or failing server) 69, an answer lsrecd cannot use 76.
fn code_of(e: &ApiError) -> u8 {
    match e {
        ApiError::Unauthorized { .. } => exit::NOPERM,
        ApiError::Transient { .. } | ApiError::RateLimited { .. } => exit::UNAVAILABLE,
        ApiError::Rejected { .. } | ApiError::Malformed { .. } => exit::PROTOCOL,
    }
}

fn exit_code(problems: &[Problem]) -> u8 {
    PRECEDENCE
        .into_iter()
        .find(|code| problems.iter().any(|p| p.exit_code == *code))
        .unwrap_or(exit::OK)
}

/// Reads page 1 again and the rest of the listing; returns the distinct channels listed.
async fn list(client: &Client, first: ChannelPage, report: &mut ProbeReport) -> ChannelPage {
    let again = client.list_channels_page(1, CHANNEL_PAGE_SIZE).await;
    let page_1_identical = match again {
        Ok(reply) => Some(first.digest.is_some() && reply.value.digest == first.digest),
        Err(e) => {
            report.problem(code_of(&e), format!("page 1 could not be read again: {e}"));
            None
        }
    };
    if page_1_identical == Some(false) {
        report.note(
            "two reads of page 1 differed: the daemon then reads every page in full each poll \
             (correct, but more work at many channels)"
                .into(),
        );
    }
    let mut listing = Listing::default();
    let mut shapes = vec![first.shape()];
    let mut done = listing.add(1, first);
    let mut page_no = 1;
    while !done && page_no < MAX_CHANNEL_PAGES {
        page_no += 1;
        match client.list_channels_page(page_no, CHANNEL_PAGE_SIZE).await {
            Ok(reply) => {
                shapes.push(reply.value.shape());
                done = listing.add(page_no, reply.value);
            }
            Err(e) => {
                report.problem(
                    code_of(&e),
                    format!("page {page_no} could not be read: {e}"),
                );
                break;
            }
        }
    }
    let listed = listing.into_page();
    for skipped in &listed.skipped {
        report.note(format!("a channel list entry could not be read: {skipped}"));
    }
    let first_entries = entries(&shapes[0]);
    // A short page 1 ends the listing: page 2 is read anyway, to see whether it was short
    // because the page size was not honoured.
    let next = if first_entries < CHANNEL_PAGE_SIZE as usize && shapes.len() == 1 {
        match client.list_channels_page(2, CHANNEL_PAGE_SIZE).await {
            Ok(reply) => {
                let ids: HashSet<&str> = listed.channels().map(|c| c.channel_id).collect();
                let page = &reply.value;
                let new = page
                    .channels()
                    .filter(|c| !ids.contains(c.channel_id))
                    .count();
                if new == 0 && !page.is_empty() {
                    report.note(
                        "page 2 repeated page 1's channels: Live Station seems to ignore pageNo; \
                         lsrecd ends a listing at such a page"
                            .into(),
                    );
                }
                Some(new + page.skipped.len())
            }
            Err(e) => {
                report.problem(code_of(&e), format!("page 2 could not be read: {e}"));
                None
            }
        }
    } else {
        None
    };
    let page_size = page_size(first_entries, next);
    if page_size.honoured == Some(false) {
        if first_entries < CHANNEL_PAGE_SIZE as usize {
            report.problem(
                exit::PROTOCOL,
                format!(
                    "pageSizeNo={CHANNEL_PAGE_SIZE} is not honoured ({}): lsrecd would see only \
                     page 1 of the channel list",
                    page_size.detail
                ),
            );
        } else {
            report.note(format!(
                "pageSizeNo={CHANNEL_PAGE_SIZE} is not honoured ({}); lsrecd reads on until a \
                 short page, so it still sees every channel",
                page_size.detail
            ));
        }
    }
    let total = read_total(&shapes, listed.len());
    match (total.meaning, total.matches_listing) {
        (TotalMeaning::All, Some(false)) => report.note(format!(
            "total says {} channels but the listing holds {} (were channels added or removed \
             while probing?)",
            total.first_page_total.unwrap_or_default(),
            listed.len()
        )),
        (TotalMeaning::Page, _) => report.note(
            "total counts the entries of each page, not every channel: lsrecd ends the listing \
             on a short page, so this is fine"
                .into(),
        ),
        (TotalMeaning::Absent, _) => report.note(
            "the channel list gives no total: lsrecd ends the listing on a short page".into(),
        ),
        (TotalMeaning::Indistinguishable, _) => report.note(format!(
            "all {} channels fit on one page, where total equals the page's entries: whether it \
             counts every channel or the page shows only with more than {CHANNEL_PAGE_SIZE} \
             channels",
            listed.len()
        )),
        (TotalMeaning::Inconsistent, _) => report.note(
            "total fits neither every channel nor the page: lsrecd ignores it and ends the \
             listing on a short page"
                .into(),
        ),
        _ => {}
    }
    report.listing = Some(ListingReport {
        pages: shapes
            .iter()
            .zip(1..)
            .map(|(s, page_no)| PageReport {
                page_no,
                entries: entries(s),
                total: s.total,
            })
            .collect(),
        channels: listed.len(),
        page_size,
        total,
        page_1_identical,
    });
    listed
}

fn entries(shape: &PageShape) -> usize {
    shape.channels + shape.skipped
}

/// Whether `pageSizeNo` was honoured, from page 1's entries and (after a short page 1, which
/// ends a listing) the new entries of page 2.
fn page_size(first: usize, next: Option<usize>) -> PageSizeReport {
    let asked = CHANNEL_PAGE_SIZE;
    let (honoured, detail) = match (first, next) {
        (n, _) if n > asked as usize => (Some(false), format!("page 1 held {n} entries")),
        (n, _) if n == asked as usize => (Some(true), format!("page 1 held {n} entries")),
        (n, Some(m)) if m > 0 => (
            Some(false),
            format!("page 1 held {n} entries, yet page 2 held {m} more"),
        ),
        (0, Some(_)) => (None, "the account lists no channels".to_string()),
        (n, Some(_)) => (
            Some(true),
            format!("page 1 held {n} entries and page 2 none"),
        ),
        (n, None) => (
            None,
            format!("page 1 held {n} entries and page 2 could not be read"),
        ),
    };
    PageSizeReport {
        asked,
        honoured,
        detail,
    }
}

/// What `total` counts, from the shapes of the listing's pages and the distinct channels.
fn read_total(pages: &[PageShape], distinct: usize) -> TotalReport {
    let first_page_total = pages.first().and_then(|p| p.total);
    let counted = |p: &PageShape| p.total == Some(entries(p) as u64);
    let (meaning, matches_listing) = match (pages.first(), first_page_total) {
        (None, _) => (TotalMeaning::Absent, None),
        (Some(_), None) if pages.iter().all(|p| p.total.is_none()) => (TotalMeaning::Absent, None),
        (Some(_), None) => (TotalMeaning::Inconsistent, None),
        (Some(p), Some(t)) if t > entries(p) as u64 => {
            (TotalMeaning::All, Some(t == distinct as u64))
        }
        (Some(p), Some(t)) if t < entries(p) as u64 => (TotalMeaning::Inconsistent, None),
        (Some(_), Some(_)) if pages.len() == 1 => (TotalMeaning::Indistinguishable, None),
        (Some(_), Some(_)) if pages.iter().all(counted) => (TotalMeaning::Page, None),
        (Some(_), Some(t)) if pages.iter().all(|p| p.total == Some(t)) => {
            (TotalMeaning::All, Some(t == distinct as u64))
        }
        (Some(_), Some(_)) => (TotalMeaning::Inconsistent, None),
    };
    TotalReport {
        meaning,
        first_page_total,
        matches_listing,
    }
}

/// Asks for a channel that cannot exist.
async fn not_found(client: &Client, report: &mut ProbeReport) -> NotFoundReport {
    let channel_id = format!("{NO_SUCH_CHANNEL_PREFIX}{:016x}", rand::random::<u64>());
    // Refused on purpose: the client's warning about it would only alarm.
    let answer = client
        .get_channel(&channel_id)
        .with_subscriber(tracing::subscriber::NoSubscriber::default())
        .await;
    let mut found = NotFoundReport {
        channel_id,
        http_status: None,
        error_code: None,
        error_name: None,
        read_as_not_found: false,
        answer: String::new(),
    };
    match answer {
        Ok(reply) => {
            found.http_status = Some(reply.meta.http_status);
            found.answer = format!("HTTP {}, a channel", reply.meta.http_status);
            report.problem(
                exit::PROTOCOL,
                format!(
                    "Live Station answered a channel for {}, which cannot exist",
                    found.channel_id
                ),
            );
        }
        Err(e) => {
            found.http_status = e.http_status();
            found.error_code = e.error_code().map(str::to_owned);
            if let ApiError::Rejected { error_name, .. } = &e {
                found.error_name = error_name.clone();
            }
            found.read_as_not_found = e.refusal() == Some(Refusal::NotFound);
            found.answer = e.to_string();
            if !found.read_as_not_found {
                match e {
                    ApiError::Rejected { .. } => report.note(format!(
                        "a channel that cannot exist was refused with something lsrecd does not \
                         read as \"not found\" ({e}): a deleted channel would look refused"
                    )),
                    _ => report.problem(code_of(&e), format!("a GET of one channel failed: {e}")),
                }
            }
        }
    }
    found
}

/// Each configured channel: listed or not, its state, and its records.
async fn channels(
    client: &Client,
    config: &Config,
    listed: &ChannelPage,
    report: &mut ProbeReport,
) -> Vec<ChannelReport> {
    let by_id: HashMap<&str, _> = listed.channels().map(|c| (c.channel_id, c)).collect();
    let mut out = Vec::with_capacity(config.channels.len());
    for c in &config.channels {
        let name = match &c.label {
            Some(label) => format!("{} ({label})", c.id),
            None => c.id.clone(),
        };
        let mut channel = ChannelReport {
            id: c.id.clone(),
            label: c.label.clone(),
            listed: false,
            exists: None,
            channel_status: None,
            is_recording: None,
            records_readable: None,
            records: None,
            records_error: None,
            retention: None,
        };
        if let Some(l) = by_id.get(c.id.as_str()) {
            channel.listed = true;
            channel.exists = Some(true);
            channel.channel_status = Some(l.channel_status.as_str().to_owned());
            channel.is_recording = Some(l.is_recording);
        } else {
            match client.get_channel(&c.id).await {
                Ok(reply) => {
                    channel.exists = Some(true);
                    channel.channel_status = Some(reply.value.channel_status.as_str().to_owned());
                    channel.is_recording = Some(reply.value.is_recording);
                    report.problem(
                        exit::PROTOCOL,
                        format!("channel {name} exists but the channel list does not show it"),
                    );
                }
                Err(e) if e.refusal() == Some(Refusal::NotFound) => {
                    channel.exists = Some(false);
                    report.problem(
                        exit::FAILURE,
                        format!("configured channel {name} is not in this Live Station account"),
                    );
                }
                Err(e) => report.problem(
                    code_of(&e),
                    format!("channel {name} is not listed and could not be read: {e}"),
                ),
            }
        }
        if channel.exists == Some(true) {
            match client.list_records(&c.id).await {
                Ok(reply) => {
                    channel.records_readable = Some(true);
                    channel.records = Some(reply.value.records.len());
                    channel.retention = retention(&reply.value.records);
                }
                Err(e) => {
                    channel.records_readable = Some(false);
                    channel.records_error = Some(e.to_string());
                    report.problem(
                        code_of(&e),
                        format!("the records of channel {name} could not be read: {e}"),
                    );
                }
            }
        }
        out.push(channel);
    }
    out
}

/// `shouldDeleteTime - createdTime` over the records that give both.
fn retention(records: &[Record]) -> Option<Retention> {
    let spans: Vec<i64> = records
        .iter()
        .filter_map(|r| Some(r.should_delete_time? - r.created_time?))
        .collect();
    Some(Retention {
        records: spans.len(),
        min_ms: *spans.iter().min()?,
        max_ms: *spans.iter().max()?,
    })
}

/// Min, median and max of `took`; `None` when empty.
fn latency(took: &[Duration]) -> Option<Latency> {
    let mut ms: Vec<f64> = took.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = match n {
        0 => return None,
        n if n % 2 == 1 => ms[n / 2],
        n => (ms[n / 2 - 1] + ms[n / 2]) / 2.0,
    };
    Some(Latency {
        calls: n,
        min_ms: ms[0],
        median_ms: median,
        max_ms: ms[n - 1],
    })
}

/// A span of milliseconds in hours and days.
fn hours_days(ms: i64) -> String {
    let hours = ms as f64 / 3_600_000.0;
    format!("{hours:.1} h ({:.2} days)", hours / 24.0)
}

fn yes_no(value: Option<bool>, yes: &str, no: &str) -> String {
    match value {
        Some(true) => yes.to_string(),
        Some(false) => no.to_string(),
        None => "-".to_string(),
    }
}

/// The human-readable form.
pub fn render_text(r: &ProbeReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Live Station probe of {} (region {}), GET requests only",
        r.endpoint, r.region
    );
    let a = &r.authentication;
    let auth = match a.accepted {
        Some(true) => "accepted".to_string(),
        Some(false) => format!(
            "REFUSED (HTTP {}, code {}{})",
            a.http_status.unwrap_or_default(),
            a.error_code.as_deref().unwrap_or("-"),
            a.details
                .as_ref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        ),
        None => format!("unknown: {}", a.error.as_deref().unwrap_or("no answer")),
    };
    let mut field = |label: &str, value: &str| {
        let _ = writeln!(out, "{:<20}{value}", format!("{label}:"));
    };
    field("keys and region", &auth);
    let clock = match r.clock_offset_ms {
        Some(ms) => format!(
            "the gateway is {:.1} s {} this host",
            ms.abs() as f64 / 1000.0,
            if ms < 0 { "behind" } else { "ahead of" }
        ),
        None => "unknown (no Date header)".to_string(),
    };
    field("clock", &clock);
    if let Some(l) = &r.listing {
        let pages = format!(
            "{} channel{} on {} page{}",
            l.channels,
            if l.channels == 1 { "" } else { "s" },
            l.pages.len(),
            if l.pages.len() == 1 { "" } else { "s" },
        );
        field("channel list", &pages);
        let honoured = yes_no(l.page_size.honoured, "honoured", "NOT honoured");
        field(
            &format!("page size {}", l.page_size.asked),
            &format!("{honoured} ({})", l.page_size.detail),
        );
        let total = match l.total.first_page_total {
            Some(t) => format!("{}; page 1 says {t}", l.total.meaning.describe()),
            None => l.total.meaning.describe().to_string(),
        };
        field("total", &total);
        let replay = yes_no(
            l.page_1_identical,
            "byte-identical (unchanged pages can be replayed)",
            "different",
        );
        field("page 1 read twice", &replay);
    }
    if let Some(n) = &r.not_found {
        let how = if n.read_as_not_found {
            "read as not found"
        } else {
            "NOT read as not found"
        };
        let status = n
            .http_status
            .map_or("no HTTP status".to_string(), |s| format!("HTTP {s}"));
        let code = match (&n.error_code, &n.error_name) {
            (Some(c), Some(name)) => format!(", code {c} {name}"),
            (Some(c), None) => format!(", code {c}"),
            _ => String::new(),
        };
        field("unknown channel", &format!("{status}{code} ({how})"));
    }
    if !r.channels.is_empty() {
        let _ = writeln!(out, "\nconfigured channels:");
        for c in &r.channels {
            let name = match &c.label {
                Some(label) => format!("{} ({label})", c.id),
                None => c.id.clone(),
            };
            let state = match (c.exists, &c.channel_status) {
                (Some(false), _) => "NOT IN THE ACCOUNT".to_string(),
                (_, Some(status)) => format!(
                    "{status}{}{}",
                    if c.is_recording == Some(true) {
                        ", recording"
                    } else {
                        ""
                    },
                    if c.listed { "" } else { ", NOT LISTED" }
                ),
                _ => "unknown".to_string(),
            };
            let count = |n: usize| format!("{n} record{}", if n == 1 { "" } else { "s" });
            let records = match (c.records_readable, c.records, &c.retention) {
                (Some(true), Some(0), _) => Some("no records".to_string()),
                (Some(true), Some(n), Some(k)) if k.min_ms == k.max_ms => {
                    Some(format!("{}, kept {}", count(n), hours_days(k.min_ms)))
                }
                (Some(true), Some(n), Some(k)) => Some(format!(
                    "{}, kept {} to {}",
                    count(n),
                    hours_days(k.min_ms),
                    hours_days(k.max_ms)
                )),
                (Some(true), Some(n), None) => {
                    Some(format!("{}, none with shouldDeleteTime", count(n)))
                }
                (Some(false), _, _) => Some("records NOT readable".to_string()),
                _ => None,
            };
            let _ = match records {
                Some(records) => writeln!(out, "  {name}: {state}; {records}"),
                None => writeln!(out, "  {name}: {state}"),
            };
        }
    }
    if !r.latency.is_empty() {
        let _ = writeln!(out, "\nlatency (min / median / max):");
        for (op, l) in &r.latency {
            let _ = writeln!(
                out,
                "  {op:<14} {:>4} call{} {:>8.1} / {:>8.1} / {:>8.1} ms",
                l.calls,
                if l.calls == 1 { " " } else { "s" },
                l.min_ms,
                l.median_ms,
                l.max_ms
            );
        }
    }
    out.push('\n');
    for note in &r.notes {
        let _ = writeln!(out, "note: {note}");
    }
    for p in &r.problems {
        let _ = writeln!(out, "problem: {}", p.message);
    }
    let _ = match r.exit_code {
        exit::OK => writeln!(out, "result: usable"),
        code => writeln!(out, "result: NOT usable as configured (exit {code})"),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(channels: usize, total: Option<u64>) -> PageShape {
        PageShape {
            channels,
            skipped: 0,
            total,
        }
    }

    #[test]
    fn total_is_read_from_the_pages_it_came_with() {
        let all = read_total(
            &[
                shape(100, Some(250)),
                shape(100, Some(250)),
                shape(50, Some(250)),
            ],
            250,
        );
        assert_eq!(
            (all.meaning, all.matches_listing),
            (TotalMeaning::All, Some(true))
        );
        let off = read_total(
            &[shape(100, Some(260)), shape(100, None), shape(50, None)],
            250,
        );
        assert_eq!(off.matches_listing, Some(false));
        let page = read_total(
            &[
                shape(100, Some(100)),
                shape(100, Some(100)),
                shape(50, Some(50)),
            ],
            250,
        );
        assert_eq!(page.meaning, TotalMeaning::Page);
        let absent = read_total(&[shape(100, None), shape(3, None)], 103);
        assert_eq!(absent.meaning, TotalMeaning::Absent);
        let one = read_total(&[shape(7, Some(7))], 7);
        assert_eq!(one.meaning, TotalMeaning::Indistinguishable);
        // Exactly a hundred channels: page 2 is empty and says what page 1 said.
        let hundred = read_total(&[shape(100, Some(100)), shape(0, Some(100))], 100);
        assert_eq!(
            (hundred.meaning, hundred.matches_listing),
            (TotalMeaning::All, Some(true))
        );
        let hundred = read_total(&[shape(100, Some(100)), shape(0, Some(0))], 100);
        assert_eq!(hundred.meaning, TotalMeaning::Page);
        let less = read_total(&[shape(10, Some(3))], 10);
        assert_eq!(less.meaning, TotalMeaning::Inconsistent);
    }

    #[test]
    fn a_short_first_page_with_more_behind_it_is_a_page_size_not_honoured() {
        assert_eq!(page_size(100, None).honoured, Some(true));
        assert_eq!(page_size(120, None).honoured, Some(false));
        assert_eq!(page_size(20, Some(20)).honoured, Some(false));
        assert_eq!(page_size(20, Some(0)).honoured, Some(true));
        assert_eq!(page_size(0, Some(0)).honoured, None);
        assert_eq!(page_size(20, None).honoured, None);
    }

    #[test]
    fn the_first_problem_in_precedence_decides_the_exit_code() {
        let p = |exit_code| Problem {
            exit_code,
            message: String::new(),
        };
        assert_eq!(exit_code(&[]), exit::OK);
        assert_eq!(
            exit_code(&[p(exit::FAILURE), p(exit::PROTOCOL)]),
            exit::PROTOCOL
        );
        assert_eq!(
            exit_code(&[p(exit::UNAVAILABLE), p(exit::NOPERM)]),
            exit::NOPERM
        );
        assert_eq!(exit_code(&[p(exit::FAILURE)]), exit::FAILURE);
    }

    #[test]
    fn latency_has_the_median_of_an_even_count_between_the_middle_two() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        let l = latency(&ms(&[40, 10, 20, 30])).unwrap();
        assert_eq!(
            (l.calls, l.min_ms, l.median_ms, l.max_ms),
            (4, 10.0, 25.0, 40.0)
        );
        assert_eq!(latency(&ms(&[5, 1, 9])).unwrap().median_ms, 5.0);
        assert_eq!(latency(&[]), None);
    }

    #[test]
    fn retention_spans_the_records_that_give_both_times() {
        let record = |created: Option<i64>, delete: Option<i64>| Record {
            created_time: created,
            should_delete_time: delete,
            ..serde_json::from_value(serde_json::json!({
                "recordId": 1, "recordType": "MP4", "channelId": "c", "status": "RECORDING"
            }))
            .unwrap()
        };
        let day = 86_400_000;
        let r = retention(&[
            record(Some(0), Some(3 * day)),
            record(Some(day), Some(2 * day)),
            record(None, Some(day)),
        ]);
        assert_eq!(
            r,
            Some(Retention {
                records: 2,
                min_ms: day,
                max_ms: 3 * day
            })
        );
        assert_eq!(retention(&[record(None, None)]), None);
        assert_eq!(hours_days(3 * day), "72.0 h (3.00 days)");
    }
}
