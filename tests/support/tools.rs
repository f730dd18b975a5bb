//! Outside tools a few tests drive, and what a test does when one is missing.
//!
//! The test suite assumes what a fresh machine of the kind CI uses has besides the Rust
//! toolchain: `python3`, `sqlite3`, `man`, `systemd-analyze`, `curl`, `bash`. Everything else
//! is optional, and a test that needs it skips without it — unless the tool's
//! `LSRECD_REQUIRE_…` switch is `1` (`.ci/run` sets every one, after installing the tools with
//! `.ci/install-tools`), where the same absence fails the test. The README lists the skips.
//!
//! A skip is written straight to the process's standard error, not through `eprintln!`, so
//! that `cargo test` shows it even though the test passes (it hides what passing tests print
//! through the `print!` macros).
#![allow(dead_code)]

use std::io::Write as _;

/// An optional tool: the switch that makes its absence a failure, and how to install it.
#[derive(Clone, Copy, Debug)]
pub struct Tool {
    /// What is missing, as a person would name it.
    pub name: &'static str,
    /// The environment variable that, set to `1`, turns a skip into a failure.
    pub switch: &'static str,
    /// How to get it on Debian.
    pub install: &'static str,
}

/// etcd, for the failover tests (`tests/ha.rs`).
pub const ETCD: Tool = Tool {
    name: "etcd",
    switch: "LSRECD_REQUIRE_ETCD",
    install: "apt-get install etcd-server",
};

/// `systemd-analyze`, for the unit file checks (`tests/systemd.rs`).
pub const SYSTEMD_ANALYZE: Tool = Tool {
    name: "systemd-analyze",
    switch: "LSRECD_REQUIRE_SYSTEMD_ANALYZE",
    install: "apt-get install systemd",
};

/// `man`, for the rendering of the shipped manual page (`tests/docs.rs`).
pub const MAN: Tool = Tool {
    name: "man",
    switch: "LSRECD_REQUIRE_MAN",
    install: "apt-get install man-db",
};

/// The Prometheus Python client's text parser, for `/metrics` (`tests/metrics.rs`, `tests/soak.rs`).
pub const PROMETHEUS_PARSER: Tool = Tool {
    name: "the Python module prometheus_client",
    switch: "LSRECD_REQUIRE_PROMETHEUS_PARSER",
    install: "apt-get install python3-prometheus-client (or pip install prometheus-client)",
};

/// `openssl`, which computes request signatures independently of the client (`tests/client.rs`).
pub const OPENSSL: Tool = Tool {
    name: "openssl",
    switch: "LSRECD_REQUIRE_OPENSSL",
    install: "apt-get install openssl",
};

/// Root on a file system with the immutable flag (`chattr +i`, `tests/host_faults.rs`).
pub const PRIVILEGED: Tool = Tool {
    name: "chattr +i (root on a file system with the immutable flag)",
    switch: "LSRECD_REQUIRE_PRIVILEGED",
    install: "run the tests as root on ext4",
};

impl Tool {
    /// Whether this tool's switch asks for the tool.
    pub fn required(self) -> bool {
        std::env::var(self.switch).is_ok_and(|v| v == "1")
    }

    /// Says that the running test skips (`why`: what it found), or fails the test where the
    /// switch is set. Call it, then return from the test.
    pub fn skip(self, why: &str) {
        assert!(
            !self.required(),
            "{} is needed but missing ({why}), and {}=1 forbids skipping: {}",
            self.name,
            self.switch,
            self.install
        );
        let test = std::thread::current().name().unwrap_or("a test").to_owned();
        let line = format!(
            "SKIPPED {test}: {} is missing ({why}); {} ({}=1 makes this a failure)\n",
            self.name, self.install, self.switch
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// Whether an executable called `name` is on `PATH`.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}
