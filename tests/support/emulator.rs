//! The emulator, two ways: in this process on a free port (driven through its typed `Control`),
//! or as the `lsrecd emulator` binary in a child process (driven through its HTTP control API
//! under `/_emulator/`), for runs where the emulator must be a process of its own: the crash
//! test's, the benchmark's (whose CPU is measured apart), and the test of the subcommand itself.

use std::path::Path;
use std::time::Duration;

use lsrecd::emulator::{
    Call, CallPage, ChannelSpec, Control, EmulatorOptions, Operation, RunningEmulator,
};
use serde_json::{Value, json};

use super::process::{Process, lsrecd_command};
use super::site::{ACCESS_KEY, SECRET_KEY};
use super::wait_for;

/// How long the emulator binary may take to print its address.
const START_LIMIT: Duration = Duration::from_secs(20);

/// An emulator on a free port that accepts the site's [`ACCESS_KEY`]/[`SECRET_KEY`], with
/// `channels` added.
pub async fn emulator(channels: Vec<ChannelSpec>) -> RunningEmulator {
    let options = EmulatorOptions {
        access_key: ACCESS_KEY.to_string(),
        secret_key: SECRET_KEY.to_string(),
        ..EmulatorOptions::default()
    };
    let addr = "127.0.0.1:0".parse().expect("a literal socket address");
    let emulator = lsrecd::emulator::Emulator::start(addr, options)
        .await
        .expect("the emulator binds a free port");
    let control = emulator.control();
    for spec in channels {
        control.add_channel(spec).expect("a new channel id");
    }
    emulator
}

/// How many channel-list calls `emulator` has served.
pub fn list_calls(emulator: &RunningEmulator) -> u64 {
    emulator
        .control()
        .counters()
        .calls_of(Operation::ListChannels)
}

/// Whether the emulator says `channel_id` is recording.
pub fn is_recording(emulator: &RunningEmulator, channel_id: &str) -> bool {
    emulator
        .control()
        .channel(channel_id)
        .is_some_and(|c| c.is_recording)
}

/// `lsrecd emulator --listen 127.0.0.1:0 ARGS` as a child process, and its control API.
pub struct EmulatorProcess {
    pub process: Process,
    /// `http://127.0.0.1:PORT`, the `api.endpoint` to configure.
    pub base: String,
    http: reqwest::Client,
}

impl EmulatorProcess {
    /// Starts the emulator with the default keys, its output appended to `log`.
    pub async fn start(log: &Path) -> EmulatorProcess {
        Self::start_with(&[], Some(log)).await
    }

    /// Starts the emulator with extra arguments (`--channels 3`, keys, …) and reads its address
    /// from the first line it prints; its output also goes to `log` when one is given.
    pub async fn start_with(args: &[&str], log: Option<&Path>) -> EmulatorProcess {
        let mut command = lsrecd_command();
        command
            .args(["emulator", "--listen", "127.0.0.1:0"])
            .args(args);
        let name = "lsrecd emulator";
        let process = match log {
            Some(log) => Process::start_logged(name, command, log),
            None => Process::start(name, command),
        };
        let first = wait_for(START_LIMIT, "the emulator's address", async || {
            process.stdout().lines().next().map(str::to_owned)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", process.stderr_tail(20)));
        let base = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first emulator line {first:?}"))
            .trim()
            .to_string();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        EmulatorProcess {
            process,
            base,
            http,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/_emulator{path}", self.base)
    }

    async fn expect_ok(&self, what: &str, request: reqwest::RequestBuilder) -> String {
        let reply = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: control request failed: {e}"));
        let status = reply.status();
        let text = reply.text().await.unwrap_or_default();
        assert!(status.is_success(), "{what}: HTTP {status}: {text}");
        text
    }

    /// `GET /_emulator{path}` as JSON.
    pub async fn get(&self, path: &str) -> Value {
        let text = self.expect_ok(path, self.http.get(self.url(path))).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
    }

    /// `POST /_emulator{path}` with a JSON body; the answer's text.
    pub async fn post(&self, path: &str, body: &Value) -> String {
        self.expect_ok(path, self.http.post(self.url(path)).json(body))
            .await
    }

    /// `PUT /_emulator{path}` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) {
        self.expect_ok(path, self.http.put(self.url(path)).json(body))
            .await;
    }

    /// `DELETE /_emulator{path}`.
    pub async fn delete(&self, path: &str) {
        self.expect_ok(path, self.http.delete(self.url(path))).await;
    }

    /// Adds a channel from a `ChannelSpec`-shaped JSON object.
    pub async fn add_channel(&self, spec: &Value) {
        self.post("/channels", spec).await;
    }

    /// Adds `count` `READY` channels named `{prefix}-00001`, … and returns their ids.
    pub async fn add_channels(&self, count: usize, prefix: &str) -> Vec<String> {
        let text = self
            .post(
                "/channels/bulk",
                &json!({ "count": count, "prefix": prefix }),
            )
            .await;
        let added: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("/channels/bulk: not JSON ({e}): {text}"));
        added["ids"]
            .as_array()
            .unwrap_or_else(|| panic!("/channels/bulk: no ids in {text}"))
            .iter()
            .map(|id| id.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The stream on `id` starts (`live`) or ends.
    pub async fn set_live(&self, id: &str, live: bool) {
        let what = if live { "live" } else { "offline" };
        let path = format!("/channels/{id}/{what}");
        self.expect_ok(&path, self.http.post(self.url(&path))).await;
    }

    /// Adds a fault rule (`FaultRule`-shaped JSON).
    pub async fn add_fault(&self, rule: &Value) {
        self.post("/faults", rule).await;
    }

    /// Removes every fault rule.
    pub async fn clear_faults(&self) {
        self.delete("/faults").await;
    }

    /// The counters (`Counters`-shaped JSON).
    pub async fn counters(&self) -> Value {
        self.get("/counters").await
    }

    /// The API calls numbered above `since` from the call log (`GET /_emulator/calls`), oldest
    /// first, at most `limit` of them.
    pub async fn calls(&self, since: u64, limit: usize) -> CallPage {
        let path = format!("/calls?since={since}&limit={limit}");
        serde_json::from_value(self.get(&path).await)
            .unwrap_or_else(|e| panic!("{path}: not a call page: {e}"))
    }

    /// Every record the emulator has made, deleted ones included.
    pub async fn records(&self) -> Vec<Value> {
        match self
            .get("/records")
            .await
            .get_mut("records")
            .map(Value::take)
        {
            Some(Value::Array(records)) => records,
            other => panic!("unexpected records answer: {other:?}"),
        }
    }
}

/// The emulator's call log as read so far, read on incrementally: every call in order, with a
/// check that none left the bounded log unread.
#[derive(Debug, Default)]
pub struct CallLogReader {
    /// Every call read so far, oldest first.
    pub calls: Vec<Call>,
    since: u64,
}

/// Calls asked for at once.
const CALLS_BATCH: usize = 20_000;

impl CallLogReader {
    /// A reader that starts after the calls made so far (`since` the latest one).
    pub fn after(since: u64) -> Self {
        CallLogReader {
            calls: Vec::new(),
            since,
        }
    }

    /// The number of the last call read (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.since
    }

    /// Reads the calls that arrived since the last read from an emulator in this process;
    /// returns how many were new.
    pub fn read(&mut self, control: &Control) -> usize {
        let before = self.calls.len();
        loop {
            let page = control.calls(self.since, CALLS_BATCH);
            if !self.take(page) {
                break;
            }
        }
        self.calls.len() - before
    }

    /// [`CallLogReader::read`] from an emulator process.
    pub async fn read_from(&mut self, emulator: &EmulatorProcess) -> usize {
        let before = self.calls.len();
        loop {
            let page = emulator.calls(self.since, CALLS_BATCH).await;
            if !self.take(page) {
                break;
            }
        }
        self.calls.len() - before
    }

    /// Keeps a page; whether more follow.
    fn take(&mut self, page: CallPage) -> bool {
        assert_eq!(
            page.missed, 0,
            "{} calls left the emulator's call log before they were read",
            page.missed
        );
        self.since = page.next;
        self.calls.extend(page.calls);
        page.more
    }

    /// Calls of `op` (on `channel_id`, when given), in order.
    pub fn of<'a>(
        &'a self,
        op: Operation,
        channel_id: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Call> + 'a {
        self.calls.iter().filter(move |c| c.is(op, channel_id))
    }
}
