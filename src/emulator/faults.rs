//! Fault injection: which operation misbehaves, how, how often, and on which channel.
//!
//! A [`FaultRule`] matches an [`Operation`] (or [`Operation::Any`]), optionally one channel, and
//! fires `times` times or until cleared. The first rule that matches a request fires; rules fire
//! in the order they were added. Two faults change what happens to records instead of the
//! answer ([`Fault::ProcessingFail`], [`Fault::TransferFail`]); they are consumed when records
//! are created (`startRecord`, or a channel with `immediateOnAir` going live) or uploaded.
//! A request no rule matches draws from the fault mix, when one is set (`super::mix`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::mix::{ActiveMix, FaultMix};
use super::options::LiveStationError;

/// An API operation of the emulated service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `GET {prefix}/channels`
    ListChannels,
    /// `GET {prefix}/channels/{id}`
    GetChannel,
    /// `PUT {prefix}/channels/{id}/startRecord`
    StartRecord,
    /// `PUT {prefix}/channels/{id}/stopRecord`
    StopRecord,
    /// `GET {prefix}/channels/{id}/records`
    ListRecords,
    /// `GET {prefix}/channels/{id}/records/{recordId}`
    GetRecord,
    /// `POST {prefix}/buckets/{bucket}/upload`
    Upload,
    /// Matches every operation (only meaningful in a [`FaultRule`]).
    Any,
}

impl Operation {
    /// Whether a rule for `self` applies to a request for `op`.
    pub fn matches(self, op: Operation) -> bool {
        self == Operation::Any || self == op
    }
}

/// How a request misbehaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer this 5xx without doing anything. 503 and 504 carry the gateway's
    /// `Endpoint Error`/`Endpoint Timeout` bodies, 500 Live Station's `INTERNAL_SERVER_ERROR`,
    /// 502 a proxy's HTML page.
    #[serde(rename = "status_5xx")]
    Status5xx { status: u16 },
    /// Answer a gateway error (`{"error":{"errorCode":"<code>","message":..,"details":..}}`)
    /// without doing anything, e.g. 401/`210` Permission Denied.
    GatewayError {
        http: u16,
        code: String,
        message: String,
        #[serde(default)]
        details: Option<String>,
    },
    /// Answer this Live Station error without doing anything.
    LiveStationError { error: LiveStationError },
    /// Answer 429 (gateway `420 Rate Limited`) without doing anything, with `Retry-After` when set.
    RateLimit {
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Wait this long, then behave normally.
    Latency { ms: u64 },
    /// Never answer (until the emulator shuts down): the client times out.
    Hold,
    /// Do the operation, then answer a 502 HTML page: the change happened, the client cannot know.
    #[serde(rename = "apply_then_502")]
    ApplyThen502,
    /// Do the operation, then never answer.
    ApplyThenHold,
    /// Do the operation, then close the connection without answering: the client sees a
    /// connection error at once, with no status.
    ApplyThenDrop,
    /// Do the operation, then answer with its status and a truncated JSON body.
    MalformedBody,
    /// Hold the request for `hold_ms`, then do the operation and answer 504 with the gateway's
    /// `Endpoint Timeout` body: a backend that applies a request after the gateway (and usually
    /// the client) gave up on it. The operation is done even if the client has disconnected.
    LateApply {
        #[serde(default = "default_late_hold_ms")]
        hold_ms: u64,
    },
    /// Records created by the matched call end in `PROCESSING_FAIL`.
    ProcessingFail,
    /// Records created (or uploaded) by the matched call end in `TRANSFER_FAIL`.
    TransferFail,
}

impl Fault {
    /// [`Fault::Latency`] from a `Duration`.
    pub fn latency(d: Duration) -> Fault {
        Fault::Latency {
            ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Whether the fault changes what happens to records rather than the answer.
    pub fn is_record_outcome(&self) -> bool {
        matches!(self, Fault::ProcessingFail | Fault::TransferFail)
    }

    /// The fault's `kind` as spelled in JSON and in a mix specification.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Status5xx { .. } => "status_5xx",
            Fault::GatewayError { .. } => "gateway_error",
            Fault::LiveStationError { .. } => "live_station_error",
            Fault::RateLimit { .. } => "rate_limit",
            Fault::Latency { .. } => "latency",
            Fault::Hold => "hold",
            Fault::ApplyThen502 => "apply_then_502",
            Fault::ApplyThenHold => "apply_then_hold",
            Fault::ApplyThenDrop => "apply_then_drop",
            Fault::MalformedBody => "malformed_body",
            Fault::LateApply { .. } => "late_apply",
            Fault::ProcessingFail => "processing_fail",
            Fault::TransferFail => "transfer_fail",
        }
    }
}

/// How long [`Fault::LateApply`] holds a request when not told: longer than the timeouts tests
/// give lsrecd, shorter than their `api.timeout` + `api.landing_margin`.
pub const DEFAULT_LATE_HOLD_MS: u64 = 5_000;

fn default_late_hold_ms() -> u64 {
    DEFAULT_LATE_HOLD_MS
}

/// One fault to inject: what, where, how often.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    /// The operation it applies to.
    pub operation: Operation,
    /// Only requests for this channel (operations without a channel never match).
    #[serde(default)]
    pub channel: Option<String>,
    /// How many times it fires; `None` until cleared.
    #[serde(default)]
    pub times: Option<u32>,
    /// What happens.
    pub fault: Fault,
}

impl FaultRule {
    /// A rule that fires on every matching request until cleared.
    pub fn new(operation: Operation, fault: Fault) -> Self {
        FaultRule {
            operation,
            channel: None,
            times: None,
            fault,
        }
    }

    /// Fire only `n` times.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Fire only for requests on this channel.
    pub fn channel(mut self, id: impl Into<String>) -> Self {
        self.channel = Some(id.into());
        self
    }

    fn applies(&self, op: Operation, channel: Option<&str>, record_outcome: bool) -> bool {
        self.times != Some(0)
            && self.fault.is_record_outcome() == record_outcome
            && self.operation.matches(op)
            && match &self.channel {
                None => true,
                Some(c) => channel == Some(c.as_str()),
            }
    }
}

/// The active rules, in the order they were added, and the fault mix drawn from when no rule
/// matches.
#[derive(Debug, Default)]
pub(crate) struct FaultTable {
    rules: Vec<FaultRule>,
    mix: Option<ActiveMix>,
}

impl FaultTable {
    pub(crate) fn add(&mut self, rule: FaultRule) {
        if rule.times != Some(0) {
            self.rules.push(rule);
        }
    }

    /// Removes every rule (the mix stays).
    pub(crate) fn clear(&mut self) {
        self.rules.clear();
    }

    /// Replaces the mix; its draws start afresh from its seed.
    pub(crate) fn set_mix(&mut self, mix: Option<FaultMix>) {
        self.mix = mix.map(ActiveMix::new);
    }

    pub(crate) fn mix(&self) -> Option<&FaultMix> {
        self.mix.as_ref().map(ActiveMix::mix)
    }

    /// The fault that shapes the answer to this request, if any: the first matching rule (one
    /// use of it is consumed), else a draw from the mix.
    pub(crate) fn take_response_fault(
        &mut self,
        op: Operation,
        channel: Option<&str>,
    ) -> Option<Fault> {
        self.take(op, channel, false)
            .or_else(|| self.mix.as_mut().and_then(|m| m.draw(op)))
    }

    /// The fault that decides how records made by this call end, if any; consumes one use.
    pub(crate) fn take_record_fault(
        &mut self,
        op: Operation,
        channel: Option<&str>,
    ) -> Option<Fault> {
        self.take(op, channel, true)
    }

    fn take(
        &mut self,
        op: Operation,
        channel: Option<&str>,
        record_outcome: bool,
    ) -> Option<Fault> {
        let i = self
            .rules
            .iter()
            .position(|r| r.applies(op, channel, record_outcome))?;
        let rule = &mut self.rules[i];
        let fault = rule.fault.clone();
        if let Some(n) = rule.times.as_mut() {
            *n -= 1;
            if *n == 0 {
                self.rules.remove(i);
            }
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rule_fires_exactly_its_times_then_disappears() {
        let mut t = FaultTable::default();
        t.add(FaultRule::new(Operation::StartRecord, Fault::Hold).times(2));
        assert_eq!(
            t.take_response_fault(Operation::StartRecord, Some("a")),
            Some(Fault::Hold)
        );
        assert_eq!(
            t.take_response_fault(Operation::StartRecord, Some("b")),
            Some(Fault::Hold)
        );
        assert_eq!(
            t.take_response_fault(Operation::StartRecord, Some("a")),
            None
        );
    }

    #[test]
    fn channel_rule_ignores_other_channels_and_channelless_operations() {
        let mut t = FaultTable::default();
        t.add(FaultRule::new(Operation::Any, Fault::MalformedBody).channel("a"));
        assert_eq!(t.take_response_fault(Operation::ListChannels, None), None);
        assert_eq!(
            t.take_response_fault(Operation::GetChannel, Some("b")),
            None
        );
        assert_eq!(
            t.take_response_fault(Operation::GetChannel, Some("a")),
            Some(Fault::MalformedBody)
        );
    }

    #[test]
    fn record_outcome_faults_are_not_answer_faults() {
        let mut t = FaultTable::default();
        t.add(FaultRule::new(Operation::StartRecord, Fault::ProcessingFail).times(1));
        assert_eq!(
            t.take_response_fault(Operation::StartRecord, Some("a")),
            None
        );
        assert_eq!(
            t.take_record_fault(Operation::StartRecord, Some("a")),
            Some(Fault::ProcessingFail)
        );
        assert_eq!(t.take_record_fault(Operation::StartRecord, Some("a")), None);
    }

    #[test]
    fn a_matching_rule_comes_before_the_mix_and_clearing_rules_keeps_the_mix() {
        let mut t = FaultTable::default();
        t.set_mix(Some(
            FaultMix::new(1, crate::emulator::mix::parse_spec("hold=100").unwrap()).unwrap(),
        ));
        t.add(FaultRule::new(Operation::StartRecord, Fault::ApplyThen502).times(1));
        assert_eq!(
            t.take_response_fault(Operation::StartRecord, Some("a")),
            Some(Fault::ApplyThen502)
        );
        assert_eq!(
            t.take_response_fault(Operation::StartRecord, Some("a")),
            Some(Fault::Hold)
        );
        t.clear();
        assert_eq!(
            t.take_response_fault(Operation::ListChannels, None),
            Some(Fault::Hold)
        );
        t.set_mix(None);
        assert_eq!(t.take_response_fault(Operation::ListChannels, None), None);
    }

    #[test]
    fn late_apply_reads_from_json_with_a_default_hold() {
        let f: Fault = serde_json::from_str(r#"{"kind":"late_apply"}"#).unwrap();
        assert_eq!(
            f,
            Fault::LateApply {
                hold_ms: DEFAULT_LATE_HOLD_MS
            }
        );
        let f: Fault = serde_json::from_str(r#"{"kind":"late_apply","hold_ms":1500}"#).unwrap();
        assert_eq!(f, Fault::LateApply { hold_ms: 1500 });
        assert_eq!(f.kind(), "late_apply");
    }

    #[test]
    fn fault_rule_reads_from_control_api_json() {
        let rule: FaultRule = serde_json::from_str(
            r#"{"operation":"start_record","times":1,"fault":{"kind":"rate_limit","retry_after_secs":3}}"#,
        )
        .unwrap();
        assert_eq!(
            rule,
            FaultRule::new(
                Operation::StartRecord,
                Fault::RateLimit {
                    retry_after_secs: Some(3)
                }
            )
            .times(1)
        );
    }
}
