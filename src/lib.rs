//! lsrecd: a recording orchestration daemon for NAVER Cloud Platform Live Station.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration, validated once into typed values; secrets.
//! - [`schedule`]: crontab expressions evaluated in IANA time zones (fire times, DST rules).
//! - [`livestation`]: the signed API client, the JSON model and error classification.
//! - [`store`]: the SQLite database operators query; every SQL statement lives there.
//! - [`engine`]: observe channels, derive claims, decide and act, follow records.
//! - [`ha`]: active/standby over an etcd lease, with a fence before every state-changing call.
//! - [`secret`]: the `***`-printing, zeroed-on-drop type that holds keys.
//! - [`hardening`]: umask and moving keys out of the environment, first thing in `main`.
//! - [`service`]: systemd notify/watchdog, signals, metrics and callback endpoints.
//! - [`daemon`]: wiring of all of the above into the running service.
//! - [`emulator`]: a local Live Station used by tests, the demo and benchmarks.
//! - [`cli`] and [`commands`]: the command line; `main.rs` only calls [`cli::run`].
#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod emulator;
pub mod engine;
pub mod exit;
pub mod ha;
pub mod hardening;
pub mod livestation;
pub mod logging;
pub mod schedule;
pub mod secret;
pub mod service;
pub mod store;
