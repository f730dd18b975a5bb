//! The few etcd v3 calls lsrecd needs, through etcd's JSON gateway (`POST /v3/...`) with
//! reqwest: leases (`lease/grant`, `lease/keepalive`, `lease/revoke`) and keys (`kv/range`,
//! `kv/txn`). Keys and values travel base64-encoded, 64-bit numbers as decimal strings.
//!
//! Each call tries the configured endpoints in turn, starting with the last one that answered,
//! and moves on when one cannot be reached or answers that it is unavailable (no etcd leader,
//! a 5xx). A call that went through is never repeated here: the callers decide (a transaction
//! repeated after a lost answer is safe for them, as they compare before they write).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

/// Why an etcd call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered in time (or every one was unavailable).
    #[error("etcd unreachable ({endpoint}): {reason}")]
    Unreachable { endpoint: String, reason: String },
    /// etcd refused the request (an error that another endpoint would give as well).
    #[error("etcd refused {call} ({endpoint}): {message}")]
    Refused {
        endpoint: String,
        call: &'static str,
        message: String,
    },
    /// The answer could not be read.
    #[error("unreadable etcd answer to {call} ({endpoint}): {reason}")]
    Malformed {
        endpoint: String,
        call: &'static str,
        reason: String,
    },
}

/// One key as etcd returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// The lease the key is attached to (0: none).
    pub lease: i64,
}

/// A comparison of a transaction (all must hold for its `success` operations to run).
#[derive(Clone, Debug)]
pub enum Compare {
    /// The key's create revision equals this (0: the key does not exist).
    CreateRevision(Vec<u8>, i64),
    /// The key's value equals this.
    Value(Vec<u8>, Vec<u8>),
}

/// An operation of a transaction.
#[derive(Clone, Debug)]
pub enum Op {
    /// Put a value, attached to a lease when `lease` is not 0.
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    },
    /// Delete one key.
    Delete(Vec<u8>),
    /// Read one key.
    Get(Vec<u8>),
}

/// What a transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnReply {
    /// Whether the comparisons held (and `success` ran).
    pub succeeded: bool,
    /// The store's revision after the transaction: the create revision of a key it created.
    pub revision: i64,
    /// The keys read by `Get` operations, in order.
    pub read: Vec<Vec<KeyValue>>,
}

/// A client for a list of etcd endpoints.
pub struct Etcd {
    http: reqwest::Client,
    endpoints: Vec<String>,
    /// The endpoint tried first (the last one that answered).
    current: AtomicUsize,
    timeout: Duration,
}

impl Etcd {
    /// A client for `endpoints` (`http(s)://host:port`, validated by the configuration), each
    /// request limited to `timeout` unless the call says otherwise.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Result<Etcd, EtcdError> {
        crate::livestation::client::install_crypto_provider();
        let unreachable = |reason: String| EtcdError::Unreachable {
            endpoint: endpoints.join(", "),
            reason,
        };
        if endpoints.is_empty() {
            return Err(unreachable("no endpoint configured".into()));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none());
        let local = endpoints.iter().all(|e| {
            reqwest::Url::parse(e).is_ok_and(|u| crate::livestation::client::is_loopback(&u))
        });
        if local {
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| unreachable(e.to_string()))?;
        Ok(Etcd {
            http,
            endpoints,
            current: AtomicUsize::new(0),
            timeout,
        })
    }

    /// The default time limit of one request.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Grants a lease of `ttl` seconds; returns its id and the TTL etcd granted.
    pub async fn grant(&self, ttl: u64) -> Result<(i64, i64), EtcdError> {
        #[derive(Deserialize)]
        struct Reply {
            #[serde(rename = "ID", deserialize_with = "int64")]
            id: i64,
            #[serde(rename = "TTL", default, deserialize_with = "int64")]
            ttl: i64,
        }
        let reply: Reply = self
            .call(
                "lease/grant",
                &json!({ "TTL": ttl.to_string() }),
                self.timeout,
            )
            .await?;
        Ok((reply.id, reply.ttl))
    }

    /// Renews a lease; returns its TTL from now, 0 when the lease does not exist any more.
    pub async fn keep_alive(&self, lease: i64, timeout: Duration) -> Result<i64, EtcdError> {
        #[derive(Deserialize)]
        struct Reply {
            #[serde(default)]
            result: Option<Inner>,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(rename = "TTL", default, deserialize_with = "int64")]
            ttl: i64,
        }
        let reply: Reply = self
            .call(
                "lease/keepalive",
                &json!({ "ID": lease.to_string() }),
                timeout,
            )
            .await?;
        Ok(reply.result.map_or(0, |r| r.ttl))
    }

    /// Revokes a lease: its keys are deleted at once.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        let _: Value = self
            .call(
                "lease/revoke",
                &json!({ "ID": lease.to_string() }),
                self.timeout,
            )
            .await?;
        Ok(())
    }

    /// Every key that starts with `prefix`.
    pub async fn range_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, EtcdError> {
        #[derive(Deserialize)]
        struct Reply {
            #[serde(default)]
            kvs: Vec<RawKeyValue>,
        }
        let reply: Reply = self
            .call(
                "kv/range",
                &json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) }),
                self.timeout,
            )
            .await?;
        reply.kvs.into_iter().map(RawKeyValue::decode).collect()
    }

    /// A transaction: if every comparison holds, `success` runs, else `failure`.
    pub async fn txn(
        &self,
        compare: &[Compare],
        success: &[Op],
        failure: &[Op],
        timeout: Duration,
    ) -> Result<TxnReply, EtcdError> {
        #[derive(Deserialize)]
        struct Reply {
            #[serde(default)]
            header: Header,
            #[serde(default)]
            succeeded: bool,
            #[serde(default)]
            responses: Vec<Response>,
        }
        #[derive(Default, Deserialize)]
        struct Header {
            #[serde(default, deserialize_with = "int64")]
            revision: i64,
        }
        #[derive(Deserialize)]
        struct Response {
            #[serde(default)]
            response_range: Option<Range>,
        }
        #[derive(Deserialize)]
        struct Range {
            #[serde(default)]
            kvs: Vec<RawKeyValue>,
        }
        let compare: Vec<Value> = compare
            .iter()
            .map(|c| match c {
                Compare::CreateRevision(key, rev) => json!({
                    "key": B64.encode(key), "target": "CREATE", "result": "EQUAL",
                    "create_revision": rev.to_string(),
                }),
                Compare::Value(key, value) => json!({
                    "key": B64.encode(key), "target": "VALUE", "result": "EQUAL",
                    "value": B64.encode(value),
                }),
            })
            .collect();
        let body = json!({
            "compare": compare,
            "success": ops(success),
            "failure": ops(failure),
        });
        let reply: Reply = self.call("kv/txn", &body, timeout).await?;
        let mut read = Vec::new();
        for r in reply.responses {
            if let Some(range) = r.response_range {
                read.push(
                    range
                        .kvs
                        .into_iter()
                        .map(RawKeyValue::decode)
                        .collect::<Result<_, _>>()?,
                );
            }
        }
        Ok(TxnReply {
            succeeded: reply.succeeded,
            revision: reply.header.revision,
            read,
        })
    }

    /// One call, through the endpoints in turn.
    async fn call<T: DeserializeOwned>(
        &self,
        call: &'static str,
        body: &Value,
        timeout: Duration,
    ) -> Result<T, EtcdError> {
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last = None;
        for i in 0..n {
            let index = (first + i) % n;
            let endpoint = &self.endpoints[index];
            match self.call_one(endpoint, call, body, timeout).await {
                Ok(reply) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(e @ EtcdError::Unreachable { .. }) => last = Some(e),
                Err(e) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Err(last.unwrap_or(EtcdError::Unreachable {
            endpoint: self.endpoints.join(", "),
            reason: "no endpoint tried".into(),
        }))
    }

    async fn call_one<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        call: &'static str,
        body: &Value,
        timeout: Duration,
    ) -> Result<T, EtcdError> {
        let unreachable = |reason: String| EtcdError::Unreachable {
            endpoint: endpoint.to_string(),
            reason,
        };
        let response = self
            .http
            .post(format!("{endpoint}/v3/{call}"))
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| unreachable(without_url(&e)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unreachable(without_url(&e)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| EtcdError::Malformed {
                endpoint: endpoint.to_string(),
                call,
                reason: e.to_string(),
            });
        }
        // The gateway's error shape: {"error": "...", "code": N, "message": "..."}.
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .or_else(|| v.get("error"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("HTTP {status}"));
        if status.is_server_error() {
            // No etcd leader, a member stopping: another endpoint may do.
            Err(unreachable(format!("HTTP {}: {message}", status.as_u16())))
        } else {
            Err(EtcdError::Refused {
                endpoint: endpoint.to_string(),
                call,
                message: format!("HTTP {}: {message}", status.as_u16()),
            })
        }
    }
}

/// A transport error without the URL reqwest adds (it is named apart).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

fn ops(ops: &[Op]) -> Vec<Value> {
    ops.iter()
        .map(|op| match op {
            Op::Put { key, value, lease } => {
                let mut put = json!({ "key": B64.encode(key), "value": B64.encode(value) });
                if *lease != 0 {
                    put["lease"] = Value::String(lease.to_string());
                }
                json!({ "request_put": put })
            }
            Op::Delete(key) => json!({ "request_delete_range": { "key": B64.encode(key) } }),
            Op::Get(key) => json!({ "request_range": { "key": B64.encode(key) } }),
        })
        .collect()
}

/// The end of the range of keys that start with `prefix` (the prefix with its last byte that
/// can be incremented incremented, as etcd's clients compute it).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range reaches the end of the key space.
    vec![0]
}

#[derive(Deserialize)]
struct RawKeyValue {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "int64")]
    create_revision: i64,
    #[serde(default, deserialize_with = "int64")]
    mod_revision: i64,
    #[serde(default, deserialize_with = "int64")]
    lease: i64,
}

impl RawKeyValue {
    fn decode(self) -> Result<KeyValue, EtcdError> {
        let bytes = |s: &str| {
            B64.decode(s).map_err(|e| EtcdError::Malformed {
                endpoint: String::new(),
                call: "kv",
                reason: format!("not base64: {e}"),
            })
        };
        Ok(KeyValue {
            key: bytes(&self.key)?,
            value: bytes(&self.value)?,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            lease: self.lease,
        })
    }
}

/// A 64-bit integer as the gateway writes it: a decimal string (or, leniently, a number).
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_range_ends_after_every_key_that_starts_with_it() {
        assert_eq!(
            prefix_end(b"/lsrecd/leader/notes/"),
            b"/lsrecd/leader/notes0"
        );
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn numbers_are_read_from_strings_and_numbers_and_missing_ones_are_zero() {
        let kv: RawKeyValue = serde_json::from_str(
            r#"{"key":"YQ==","value":"Yg==","create_revision":"12","mod_revision":13}"#,
        )
        .unwrap();
        let kv = kv.decode().unwrap();
        assert_eq!(
            kv,
            KeyValue {
                key: b"a".to_vec(),
                value: b"b".to_vec(),
                create_revision: 12,
                mod_revision: 13,
                lease: 0
            }
        );
        assert!(serde_json::from_str::<RawKeyValue>(r#"{"create_revision":"x"}"#).is_err());
    }

    #[test]
    fn a_transaction_is_written_the_way_the_gateway_reads_it() {
        let ops = ops(&[
            Op::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                lease: 7,
            },
            Op::Delete(b"d".to_vec()),
            Op::Get(b"g".to_vec()),
        ]);
        assert_eq!(
            Value::Array(ops),
            json!([
                {"request_put": {"key": "aw==", "value": "dg==", "lease": "7"}},
                {"request_delete_range": {"key": "ZA=="}},
                {"request_range": {"key": "Zw=="}},
            ])
        );
    }
}
