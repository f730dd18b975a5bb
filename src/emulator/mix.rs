//! A probabilistic fault mix: per operation, the share of requests that get each kind of
//! fault, drawn from a seeded random generator so that a run can be replayed.
//!
//! Each operation draws from its own generator (seeded from the mix's seed and the operation),
//! so the n-th `startRecord` gets the same fault for a given seed however many channel lists were
//! read in between. Fault rules ([`super::FaultRule`]) come first: a request a rule matched draws
//! nothing from the mix.
//!
//! # Text form
//!
//! `lsrecd emulator --fault-mix SPEC` and the control API's `spec` strings:
//!
//! ```text
//! SPEC  = [OPS "@"] ENTRY ("," ENTRY)*
//! OPS   = OPERATION ("+" OPERATION)*      default: every operation
//! ENTRY = KIND "=" PERCENT (":" PARAM "=" VALUE)*
//! ```
//!
//! e.g. `status_5xx=20,rate_limit=10:retry_after=1,hold=5` (every operation) or
//! `start_record+stop_record@late_apply=50:hold_ms=5000`. Percentages may have decimals; those of
//! one operation add up to at most 100, the rest of its requests are served normally.
//!
//! | kind | parameters |
//! |---|---|
//! | `status_5xx` | `status` (default 503) |
//! | `rate_limit` | `retry_after` (seconds; default: no `Retry-After`) |
//! | `latency` | `ms` (required) |
//! | `late_apply` | `hold_ms` (default 5000) |
//! | `hold`, `apply_then_502`, `apply_then_hold`, `apply_then_drop`, `malformed_body` | none |
//! | `live_station_error` | `code` (default 250000 `EXCEPTION`; `errorName` from the published table), `status` (HTTP, default 400) |
//!
//! `live_station_error` answers that error and does nothing, e.g.
//! `start_record@live_station_error=50:code=250000:status=200`. `gateway_error` is accepted in
//! the JSON form only; record outcomes (`processing_fail`, `transfer_fail`) are not drawn from a mix (add
//! a fault rule for them).

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use serde::de::IntoDeserializer as _;
use serde::{Deserialize, Serialize};

use super::faults::{DEFAULT_LATE_HOLD_MS, Fault, Operation};
use super::options::LiveStationError;
use crate::livestation::codes;

/// The operations a request can be for (every [`Operation`] but `Any`).
const OPERATIONS: [Operation; 7] = [
    Operation::ListChannels,
    Operation::GetChannel,
    Operation::StartRecord,
    Operation::StopRecord,
    Operation::ListRecords,
    Operation::GetRecord,
    Operation::Upload,
];

/// One share of a mix: `percent` of the requests for `operation` get `fault`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MixEntry {
    /// The operation it applies to; [`Operation::Any`] (the default) for every operation.
    #[serde(default = "any")]
    pub operation: Operation,
    /// Share of that operation's requests, 0–100.
    pub percent: f64,
    /// What those requests get.
    pub fault: Fault,
}

fn any() -> Operation {
    Operation::Any
}

/// A fault mix: its entries and the seed its draws come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultMix {
    /// Seeds every operation's generator; the same seed gives the same sequence of faults per
    /// operation.
    pub seed: u64,
    /// The shares, in the order they are tried for each draw.
    pub entries: Vec<MixEntry>,
}

/// Why a mix was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FaultMixError {
    /// The text form does not follow `[OPS@]KIND=PERCENT[:PARAM=VALUE]...,...`.
    #[error("fault mix {spec:?}: {reason}")]
    Syntax { spec: String, reason: String },
    /// A percentage outside 0–100 (or not a number).
    #[error("fault mix: {kind} has percentage {percent}; give a number from 0 to 100")]
    Percent { kind: String, percent: String },
    /// The shares of one operation add up to more than 100.
    #[error("fault mix: the shares for {operation} add up to {total}%, more than 100%")]
    OverHundred { operation: String, total: f64 },
    /// A kind that a mix cannot draw.
    #[error(
        "fault mix: {kind} changes what happens to records, not the answer; add it as a fault rule"
    )]
    RecordOutcome { kind: String },
}

impl FaultMix {
    /// A mix of `entries` drawn with `seed`, checked.
    pub fn new(seed: u64, entries: Vec<MixEntry>) -> Result<FaultMix, FaultMixError> {
        let mix = FaultMix { seed, entries };
        mix.check()?;
        Ok(mix)
    }

    /// A mix from text-form specifications (see the module documentation), drawn with `seed`.
    pub fn from_specs<S: AsRef<str>>(seed: u64, specs: &[S]) -> Result<FaultMix, FaultMixError> {
        let mut entries = Vec::new();
        for spec in specs {
            entries.extend(parse_spec(spec.as_ref())?);
        }
        FaultMix::new(seed, entries)
    }

    /// Refuses a percentage outside 0–100, record-outcome faults, and shares of one operation
    /// adding up to more than 100.
    pub fn check(&self) -> Result<(), FaultMixError> {
        for e in &self.entries {
            if !(e.percent.is_finite() && (0.0..=100.0).contains(&e.percent)) {
                return Err(FaultMixError::Percent {
                    kind: e.fault.kind().to_string(),
                    percent: e.percent.to_string(),
                });
            }
            if e.fault.is_record_outcome() {
                return Err(FaultMixError::RecordOutcome {
                    kind: e.fault.kind().to_string(),
                });
            }
        }
        for op in OPERATIONS {
            let total: f64 = self
                .entries
                .iter()
                .filter(|e| e.operation.matches(op))
                .map(|e| e.percent)
                .sum();
            // Decimal shares such as 33.3 + 66.7 may sum a hair above 100.
            if total > 100.0 + 1e-9 {
                return Err(FaultMixError::OverHundred {
                    operation: operation_name(op),
                    total,
                });
            }
        }
        Ok(())
    }
}

/// Reads the text form (see the module documentation) into entries.
pub fn parse_spec(spec: &str) -> Result<Vec<MixEntry>, FaultMixError> {
    let syntax = |reason: String| FaultMixError::Syntax {
        spec: spec.to_string(),
        reason,
    };
    let (ops, list) = match spec.split_once('@') {
        Some((ops, _)) if ops.contains([',', '=']) => {
            return Err(syntax(
                "OPS@ applies to a whole spec and goes at its start; give one spec per group of \
                 operations"
                    .into(),
            ));
        }
        Some((ops, list)) => {
            let ops = ops
                .split('+')
                .map(|name| parse_operation(name.trim()).map_err(&syntax))
                .collect::<Result<Vec<_>, _>>()?;
            (ops, list)
        }
        None => (vec![Operation::Any], spec),
    };
    let mut entries = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(syntax(
                "an empty entry (two commas, or a comma at an end)".into(),
            ));
        }
        let mut parts = item.split(':');
        let head = parts.next().unwrap_or_default();
        let Some((kind, percent)) = head.split_once('=') else {
            return Err(syntax(format!(
                "{head:?} is not KIND=PERCENT, e.g. status_5xx=20"
            )));
        };
        let (kind, percent_text) = (kind.trim(), percent.trim());
        let percent: f64 =
            percent_text
                .trim_end_matches('%')
                .parse()
                .map_err(|_| FaultMixError::Percent {
                    kind: kind.to_string(),
                    percent: percent_text.to_string(),
                })?;
        let mut params = BTreeMap::new();
        for p in parts {
            let Some((name, value)) = p.split_once('=') else {
                return Err(syntax(format!(
                    "{p:?} is not PARAM=VALUE, e.g. retry_after=1"
                )));
            };
            let value: u64 = value.trim().parse().map_err(|_| {
                syntax(format!(
                    "{kind}: {name} must be a whole number, not {value:?}"
                ))
            })?;
            params.insert(name.trim().to_string(), value);
        }
        let fault = fault_of(kind, &mut params).map_err(&syntax)?;
        if let Some(name) = params.keys().next() {
            return Err(syntax(format!("{kind} has no parameter {name:?}")));
        }
        for &operation in &ops {
            entries.push(MixEntry {
                operation,
                percent,
                fault: fault.clone(),
            });
        }
    }
    Ok(entries)
}

/// The fault a text-form kind names; takes the parameters it uses out of `params`.
fn fault_of(kind: &str, params: &mut BTreeMap<String, u64>) -> Result<Fault, String> {
    let mut take = |name: &str| params.remove(name);
    Ok(match kind {
        "status_5xx" => {
            let status = take("status").unwrap_or(503);
            if !(500..=599).contains(&status) {
                return Err(format!("status_5xx: status {status} is not a 5xx"));
            }
            Fault::Status5xx {
                status: status as u16,
            }
        }
        "rate_limit" => Fault::RateLimit {
            retry_after_secs: take("retry_after"),
        },
        "latency" => Fault::Latency {
            ms: take("ms").ok_or("latency needs ms, e.g. latency=10:ms=300")?,
        },
        "late_apply" => Fault::LateApply {
            hold_ms: take("hold_ms").unwrap_or(DEFAULT_LATE_HOLD_MS),
        },
        "hold" => Fault::Hold,
        "apply_then_502" => Fault::ApplyThen502,
        "apply_then_hold" => Fault::ApplyThenHold,
        "apply_then_drop" => Fault::ApplyThenDrop,
        "malformed_body" => Fault::MalformedBody,
        "live_station_error" => {
            let code = take("code").unwrap_or(250000);
            let status = take("status").unwrap_or(400);
            if !(200..=599).contains(&status) {
                return Err(format!(
                    "live_station_error: status {status} is not an HTTP status"
                ));
            }
            let text = code.to_string();
            let name = codes::LIVE_STATION
                .iter()
                .find(|c| c.code == text)
                .map_or("UNDOCUMENTED", |c| c.name);
            Fault::LiveStationError {
                error: LiveStationError::new(
                    status as u16,
                    i64::try_from(code).unwrap_or(i64::MAX),
                    name,
                    format!("{name} (emulated)"),
                ),
            }
        }
        "gateway_error" => {
            return Err(format!(
                "{kind} needs a structured body: use the control API's JSON form"
            ));
        }
        "processing_fail" | "transfer_fail" => {
            return Err(format!(
                "{kind} changes what happens to records, not the answer; add it as a fault rule"
            ));
        }
        other => {
            return Err(format!(
                "unknown fault kind {other:?}; one of status_5xx, rate_limit, latency, \
                 late_apply, hold, apply_then_502, apply_then_hold, apply_then_drop, malformed_body, \
                 live_station_error"
            ));
        }
    })
}

fn parse_operation(name: &str) -> Result<Operation, String> {
    Operation::deserialize(name.into_deserializer()).map_err(|_: serde::de::value::Error| {
        format!(
            "unknown operation {name:?}; one of list_channels, get_channel, start_record, \
             stop_record, list_records, get_record, upload, any"
        )
    })
}

fn operation_name(op: Operation) -> String {
    serde_json::to_value(op)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{op:?}"))
}

/// A mix in use: its generators, one per operation, created at the first draw.
#[derive(Debug)]
pub(crate) struct ActiveMix {
    mix: FaultMix,
    draws: BTreeMap<Operation, StdRng>,
}

impl ActiveMix {
    pub(crate) fn new(mix: FaultMix) -> ActiveMix {
        ActiveMix {
            mix,
            draws: BTreeMap::new(),
        }
    }

    pub(crate) fn mix(&self) -> &FaultMix {
        &self.mix
    }

    /// Draws the fault (if any) for one request for `op`.
    pub(crate) fn draw(&mut self, op: Operation) -> Option<Fault> {
        let seed = self.mix.seed;
        let rng = self.draws.entry(op).or_insert_with(|| {
            let index = OPERATIONS.iter().position(|o| *o == op).unwrap_or(0) as u64;
            // Distinct, well-spread seeds per operation (the golden-ratio increment).
            StdRng::seed_from_u64(seed ^ (index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        });
        let r: f64 = rng.random::<f64>() * 100.0;
        let mut upto = 0.0;
        for e in self.mix.entries.iter().filter(|e| e.operation.matches(op)) {
            upto += e.percent;
            if r < upto {
                return Some(e.fault.clone());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_reads_kinds_parameters_and_operations() {
        let entries = parse_spec(
            "status_5xx=20, rate_limit=10:retry_after=1,hold=5,apply_then_502=10,malformed_body=5",
        )
        .unwrap();
        assert_eq!(entries.len(), 5);
        assert!(entries.iter().all(|e| e.operation == Operation::Any));
        assert_eq!(entries[0].fault, Fault::Status5xx { status: 503 });
        assert_eq!(
            entries[1].fault,
            Fault::RateLimit {
                retry_after_secs: Some(1)
            }
        );
        let late = parse_spec("start_record+stop_record@late_apply=50:hold_ms=4000").unwrap();
        assert_eq!(
            late.iter().map(|e| e.operation).collect::<Vec<_>>(),
            [Operation::StartRecord, Operation::StopRecord]
        );
        assert!(
            late.iter()
                .all(|e| e.percent == 50.0 && e.fault == Fault::LateApply { hold_ms: 4000 })
        );
        assert_eq!(
            parse_spec("late_apply=12.5%").unwrap()[0],
            MixEntry {
                operation: Operation::Any,
                percent: 12.5,
                fault: Fault::LateApply {
                    hold_ms: DEFAULT_LATE_HOLD_MS
                }
            }
        );
    }

    #[test]
    fn bad_text_is_refused_with_what_is_wrong() {
        for (spec, needle) in [
            ("status_5xx", "KIND=PERCENT"),
            ("status_5xx=20,,hold=1", "empty entry"),
            ("teapot=5", "unknown fault kind"),
            ("start_recording@hold=5", "unknown operation"),
            ("hold=5:ms=3", "no parameter"),
            ("latency=5", "needs ms"),
            ("status_5xx=5:status=404", "not a 5xx"),
            ("rate_limit=5:retry_after=soon", "whole number"),
            ("hold=lots", "percentage"),
            ("processing_fail=5", "fault rule"),
            ("gateway_error=5", "JSON form"),
        ] {
            let e = parse_spec(spec).expect_err(spec).to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn shares_of_one_operation_may_not_exceed_100_percent() {
        let mut entries = parse_spec("status_5xx=60").unwrap();
        entries.extend(parse_spec("start_record@late_apply=50").unwrap());
        let e = FaultMix::new(1, entries).unwrap_err();
        assert!(
            matches!(&e, FaultMixError::OverHundred { operation, .. } if operation == "start_record"),
            "{e}"
        );
        assert!(FaultMix::from_specs(1, &["status_5xx=60", "list_channels@hold=40"]).is_ok());
        let e = parse_spec("status_5xx=60,list_channels@hold=40").unwrap_err();
        assert!(e.to_string().contains("one spec per group"), "{e}");
        assert!(FaultMix::new(1, parse_spec("hold=101").unwrap()).is_err());
    }

    #[test]
    fn draws_follow_the_percentages_and_the_seed_replays_them() {
        let mix = FaultMix::new(
            7,
            parse_spec("start_record@hold=25,malformed_body=50").unwrap(),
        )
        .unwrap();
        let mut a = ActiveMix::new(mix.clone());
        let draws: Vec<Option<Fault>> = (0..4000).map(|_| a.draw(Operation::StartRecord)).collect();
        let share = |f: Option<Fault>| draws.iter().filter(|d| **d == f).count() as f64 / 40.0;
        assert!((share(Some(Fault::Hold)) - 25.0).abs() < 3.0);
        assert!((share(Some(Fault::MalformedBody)) - 50.0).abs() < 3.0);
        assert!((share(None) - 25.0).abs() < 3.0);
        // Other operations only see entries that match them.
        assert!(
            (0..200)
                .map(|_| a.draw(Operation::ListChannels))
                .all(|d| d.is_none() || d == Some(Fault::MalformedBody))
        );
        // The same seed replays the start sequence, whatever other operations drew meanwhile.
        let mut b = ActiveMix::new(mix);
        let replay: Vec<Option<Fault>> = (0..4000)
            .map(|i| {
                if i % 3 == 0 {
                    b.draw(Operation::ListChannels);
                }
                b.draw(Operation::StartRecord)
            })
            .collect();
        assert_eq!(draws, replay);
    }

    #[test]
    fn the_json_form_defaults_to_every_operation() {
        let mix: FaultMix = serde_json::from_str(
            r#"{"seed":3,"entries":[{"percent":50,"fault":{"kind":"late_apply"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            mix.entries[0],
            MixEntry {
                operation: Operation::Any,
                percent: 50.0,
                fault: Fault::LateApply {
                    hold_ms: DEFAULT_LATE_HOLD_MS
                }
            }
        );
    }
}
