//! The shipped unit file: its contract settings, its `systemd-analyze security` score and a clean
//! `systemd-analyze verify` against the freshly built binary.
//!
//! `systemd-analyze` tests print a skip message when the tool is missing, unless
//! `LSRECD_REQUIRE_SYSTEMD_ANALYZE=1` is set (CI images that install systemd should set it).

#[path = "support/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MAX_EXPOSURE: f64 = 2.0;

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/lsrecd.service")
}

fn unit_text() -> String {
    std::fs::read_to_string(unit_path()).expect("systemd/lsrecd.service is readable")
}

/// `systemd-analyze` with colours and pagers off, or `None` (after saying so) when it is not
/// installed and not required.
fn systemd_analyze(args: &[&str]) -> Option<Output> {
    let result = Command::new("systemd-analyze")
        .args(args)
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .output();
    match result {
        Ok(output) => Some(output),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tools::SYSTEMD_ANALYZE.skip("not on PATH");
            None
        }
        Err(e) => panic!("could not run systemd-analyze: {e}"),
    }
}

/// The `Key=value` settings of the unit, comments and blank lines removed.
fn settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn values<'a>(all: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    all.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn the_unit_declares_the_service_contract() {
    let all = settings(&unit_text());

    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecStartPre", "/usr/bin/lsrecd check"),
        ("ExecStart", "/usr/bin/lsrecd run"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("WatchdogSec", "30s"),
        ("Restart", "on-failure"),
        ("TimeoutStopSec", "15s"),
        ("User", "lsrecd"),
        ("StateDirectory", "lsrecd"),
        ("ConfigurationDirectory", "lsrecd"),
    ] {
        assert_eq!(values(&all, key), [value], "{key}=");
    }
    for (key, value) in [("LimitNOFILE", "16384"), ("LimitCORE", "0")] {
        assert_eq!(values(&all, key), [value], "{key}=");
    }
    assert_eq!(values(&all, "SocketBindDeny"), ["any"]);
    assert_eq!(values(&all, "SocketBindAllow"), ["tcp:1024-65535"]);
    let credentials = values(&all, "LoadCredential");
    assert!(credentials.contains(&"secret_key:/etc/lsrecd/secret_key"));
    assert!(credentials.contains(&"access_key:/etc/lsrecd/access_key"));
}

#[test]
fn the_unit_puts_no_secret_in_its_environment() {
    let all = settings(&unit_text());

    for key in ["Environment", "EnvironmentFile"] {
        for value in values(&all, key) {
            let upper = value.to_ascii_uppercase();
            assert!(
                !upper.contains("KEY") && !upper.contains("TOKEN") && !upper.contains("SECRET"),
                "{key}={value} looks like a secret; use LoadCredential="
            );
        }
    }
}

#[test]
fn the_unit_is_hardened_to_an_exposure_of_at_most_2_0() {
    let unit = unit_path();
    let threshold = format!("--threshold={}", (MAX_EXPOSURE * 10.0) as u32);
    let Some(output) = systemd_analyze(&[
        "security",
        "--offline=true",
        &threshold,
        "--no-pager",
        unit.to_str().expect("UTF-8 path"),
    ]) else {
        return;
    };

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "systemd-analyze security failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let score: f64 = stdout
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for lsrecd.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure level in:\n{stdout}"));
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}:\n{stdout}"
    );
}

/// A temporary copy of the unit whose `ExecStart=`/`ExecStartPre=` run the binary under test.
/// The `lsrecd` user need not exist: `verify` does not resolve `User=`.
fn unit_for_built_binary(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let binary = env!("CARGO_BIN_EXE_lsrecd");
    assert!(
        !binary.contains(char::is_whitespace),
        "the binary path {binary:?} would need quoting in ExecStart="
    );
    let text = unit_text().replace("/usr/bin/lsrecd", binary) + extra;
    assert!(text.contains(&format!("ExecStart={binary} run")));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lsrecd.service");
    std::fs::write(&path, text).expect("write unit copy");
    (dir, path)
}

fn verify(unit: &Path) -> Option<Output> {
    systemd_analyze(&["verify", "--no-pager", unit.to_str().expect("UTF-8 path")])
}

#[test]
fn systemd_analyze_verify_accepts_the_unit_without_any_warning() {
    let (_dir, unit) = unit_for_built_binary("");
    let Some(output) = verify(&unit) else {
        return;
    };

    // verify exits 0 on unknown keys and bad values, so any stderr is a failure too. No host
    // noise has had to be filtered on Debian 12 (systemd 252) without systemd as PID 1.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify ({}):\n{stderr}",
        output.status
    );
}

#[test]
fn systemd_analyze_verify_reports_an_unknown_key_on_stderr() {
    // Guards the check above: a typo in the unit must show up where that test looks.
    let (_dir, unit) = unit_for_built_binary("\n[Service]\nProtectSystm=strict\n");
    let Some(output) = verify(&unit) else {
        return;
    };

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ProtectSystm"), "stderr was:\n{stderr}");
}
