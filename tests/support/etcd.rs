//! A real single-node etcd for the high-availability tests: Debian's `etcd-server` (`etcd` on
//! `PATH`, or the binary `LSRECD_ETCD` names), on free loopback ports with a data directory of
//! the test's own, stopped and started again at will (an outage keeps the data, as a restarted
//! etcd does).
//!
//! Without the binary, [`etcd_binary`] says the test is skipped — unless
//! `LSRECD_REQUIRE_ETCD=1` (set by `.ci/run`, which installs `etcd-server`), where its absence
//! fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::process::Process;
use super::site::free_port;
use super::wait_for;

/// How long etcd may take to answer after it was started.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The etcd binary, or `None` after printing why the test is skipped.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LSRECD_ETCD").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        super::tools::ETCD.skip("no etcd on PATH, and LSRECD_ETCD is not set");
    }
    found
}

/// A running (or stopped) single-node etcd.
pub struct EtcdServer {
    binary: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    client_port: u16,
    peer_port: u16,
    process: Option<Process>,
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT`, for `ha.etcd`.
    pub url: String,
}

impl EtcdServer {
    /// Starts etcd with its data in `dir/etcd` and its output in `dir/etcd.log`, and waits
    /// until it answers.
    pub async fn start(binary: &Path, dir: &Path) -> EtcdServer {
        let client_port = free_port();
        let mut peer_port = free_port();
        while peer_port == client_port {
            peer_port = free_port();
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        let mut server = EtcdServer {
            binary: binary.to_path_buf(),
            data_dir: dir.join("etcd"),
            log: dir.join("etcd.log"),
            client_port,
            peer_port,
            process: None,
            http,
            url: format!("http://127.0.0.1:{client_port}"),
        };
        server.resume().await;
        server
    }

    /// Starts the stopped etcd again, on the same ports and data, and waits until it answers.
    pub async fn resume(&mut self) {
        assert!(self.process.is_none(), "etcd is already running");
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--name")
            .arg("lsrecd-test")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("lsrecd-test={peer}"))
            // No metrics or pprof listeners of its own; quiet logs.
            .arg("--log-level")
            .arg("warn");
        self.process = Some(Process::start_logged("etcd", cmd, &self.log));
        let process = self.process.as_mut().expect("just started");
        let http = &self.http;
        let url = format!("{client}/v3/kv/range");
        wait_for(START_LIMIT, "etcd to answer", async || {
            if let Some(status) = process.exited() {
                panic!("etcd exited ({status}):\n{}", process.stderr_tail(30));
            }
            let reply = http.post(&url).json(&json!({"key": "eA=="})).send().await;
            reply.is_ok_and(|r| r.status().is_success()).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Kills etcd (SIGKILL): an outage. Its data stays for [`EtcdServer::resume`].
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill9();
        }
    }

    /// Whether etcd runs.
    pub fn running(&self) -> bool {
        self.process.is_some()
    }

    /// The value and create revision of `key`, if it exists (and etcd answers).
    pub async fn get(&self, key: &str) -> Option<(String, i64)> {
        let reply = self
            .http
            .post(format!("{}/v3/kv/range", self.url))
            .json(&json!({ "key": B64.encode(key) }))
            .send()
            .await
            .ok()?;
        let body: Value = reply.json().await.ok()?;
        let kv = body["kvs"].as_array()?.first()?;
        let value = B64.decode(kv["value"].as_str()?).ok()?;
        let revision = kv["create_revision"].as_str()?.parse().ok()?;
        Some((String::from_utf8_lossy(&value).into_owned(), revision))
    }

    /// The keys under `prefix` (decoded), if etcd answers.
    pub async fn keys(&self, prefix: &str) -> Option<Vec<String>> {
        let mut end = prefix.as_bytes().to_vec();
        let last = end.pop()?;
        end.push(last + 1);
        let reply = self
            .http
            .post(format!("{}/v3/kv/range", self.url))
            .json(&json!({ "key": B64.encode(prefix), "range_end": B64.encode(&end), "keys_only": true }))
            .send()
            .await
            .ok()?;
        let body: Value = reply.json().await.ok()?;
        Some(
            body["kvs"]
                .as_array()
                .map(|kvs| {
                    kvs.iter()
                        .filter_map(|kv| B64.decode(kv["key"].as_str()?).ok())
                        .map(|k| String::from_utf8_lossy(&k).into_owned())
                        .collect()
                })
                .unwrap_or_default(),
        )
    }
}
