//! The file as written: `deny_unknown_fields` structs whose leaves keep their byte spans, so
//! validation can point at the exact key. Every field is optional here; [`super::validate`]
//! decides what is required and fills in defaults.
//!
//! Inline keys and the callback token are read straight into [`Secret`]s, and the structs that
//! hold them (and `RawConfig` around them) have no `Debug`, so no debug print of the file as
//! written can show a key.

use serde::Deserialize;
use toml::{Spanned, Value};

use crate::secret::Secret;

/// An optional leaf with its position.
pub(crate) type Leaf<T> = Option<Spanned<T>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub api: Leaf<RawApi>,
    pub daemon: Leaf<RawDaemon>,
    pub retry: Leaf<RawRetry>,
    pub retention: Leaf<RawRetention>,
    pub metrics: Leaf<RawMetrics>,
    pub callback: Leaf<RawCallback>,
    pub ha: Leaf<RawHa>,
    #[serde(default)]
    pub channel: Vec<Spanned<RawChannel>>,
    #[serde(default)]
    pub schedule: Vec<Spanned<RawSchedule>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApi {
    pub endpoint: Leaf<String>,
    pub region: Leaf<String>,
    pub access_key: Leaf<Secret>,
    pub access_key_file: Leaf<String>,
    pub secret_key: Leaf<Secret>,
    pub secret_key_file: Leaf<String>,
    pub timeout: Leaf<Value>,
    pub landing_margin: Leaf<Value>,
    pub max_rps: Leaf<Value>,
    pub allow_insecure_endpoint: Leaf<bool>,
    pub allow_insecure_key_files: Leaf<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDaemon {
    pub database: Leaf<String>,
    pub timezone: Leaf<String>,
    pub poll_interval: Leaf<Value>,
    pub record_poll_interval: Leaf<Value>,
    pub keep_history: Leaf<Value>,
    pub max_database_size: Leaf<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub max_attempts: Leaf<Value>,
    pub initial_backoff: Leaf<Value>,
    pub max_backoff: Leaf<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    pub warn_before: Leaf<Value>,
    pub upload_bucket: Leaf<String>,
    pub all_channels: Leaf<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub listen: Leaf<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCallback {
    pub listen: Leaf<String>,
    pub token: Leaf<Secret>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHa {
    /// Kept as a value so that a single string gets a clear message rather than serde's.
    pub etcd: Leaf<Value>,
    pub key: Leaf<String>,
    pub lease_ttl: Leaf<Value>,
    pub instance: Leaf<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawChannel {
    pub id: Leaf<String>,
    pub label: Leaf<String>,
    pub record_when_live: Leaf<bool>,
    pub max_duration: Leaf<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchedule {
    pub name: Leaf<String>,
    pub channel: Leaf<String>,
    pub cron: Leaf<String>,
    pub timezone: Leaf<String>,
    pub duration: Leaf<Value>,
    pub catch_up: Leaf<Value>,
}
