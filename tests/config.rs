//! Configuration loading: every file in `tests/config/valid` loads, every file in
//! `tests/config/invalid` fails with the message in its `.expected` sidecar (a substring that
//! includes `FILE:LINE:COL: KEY:`), the shipped `config.toml.example` loads, and no input makes
//! the loader panic.
//!
//! Fixtures get `LSRECD_ACCESS_KEY`/`LSRECD_SECRET_KEY` from a fake environment unless they
//! contain the line `# test-env: none`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lsrecd::config::{Config, ConfigError, KeySource};
use lsrecd::livestation::Region;
use proptest::prelude::*;

const FAKE_ENV: [(&str, &str); 2] = [
    ("LSRECD_ACCESS_KEY", "env-access-key"),
    ("LSRECD_SECRET_KEY", "env-secret-key"),
];
const NO_ENV: [(&str, &str); 0] = [];

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/config")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// Git keeps no permission bits but the executable one, so the fixture key files get theirs
/// here: private ones `0600`, the ones that exist to be refused (or allowed by an override)
/// readable by group or others.
fn set_key_file_modes() {
    use std::os::unix::fs::PermissionsExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config");
        for (file, mode) in [
            ("valid/keys/access_key", 0o600),
            ("valid/keys/secret_key", 0o600),
            ("valid/shared-keys/secret_key", 0o640),
            ("invalid/keys/group-readable-secret", 0o640),
            ("invalid/keys/world-readable-access", 0o604),
        ] {
            let path = root.join(file);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        }
    });
}

fn load(path: &Path) -> Result<Config, ConfigError> {
    set_key_file_modes();
    let text = std::fs::read_to_string(path).unwrap();
    if text.lines().any(|l| l.trim() == "# test-env: none") {
        Config::load_with_env(path, &NO_ENV)
    } else {
        Config::load_with_env(path, &FAKE_ENV)
    }
}

fn valid(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/config/valid")
        .join(name);
    load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_valid_fixture_loads() {
    let files = fixtures("valid");
    assert!(files.len() >= 5);
    for f in files {
        if let Err(e) = load(&f) {
            panic!("{} should load:\n{e}", f.display());
        }
    }
}

#[test]
fn every_invalid_fixture_fails_with_its_expected_message() {
    let files = fixtures("invalid");
    assert!(files.len() >= 15, "only {} invalid fixtures", files.len());
    let mut failures = Vec::new();
    for f in files {
        let expected_file = f.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_file)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_file.display()));
        match load(&f) {
            Ok(_) => failures.push(format!("{} loaded but should fail", f.display())),
            Err(e) => {
                let message = e.to_string();
                let expected = expected.trim();
                if !message.contains(expected) {
                    failures.push(format!(
                        "{}:\n  expected: {expected}\n  actual:   {message}",
                        f.display()
                    ));
                }
                let full_path = f.display().to_string();
                if !message.starts_with(&full_path) {
                    failures.push(format!("{message} does not start with the file path"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_shipped_example_loads_with_credentials_from_the_environment() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example");
    let c = Config::load_with_env(&example, &FAKE_ENV).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.api.endpoint, "https://livestation.apigw.ntruss.com");
    assert_eq!(c.api.region, Region::Kr);
    assert_eq!(c.api.credentials.secret_key.expose(), "env-secret-key");
    assert_eq!(c.daemon.timezone, chrono_tz::Asia::Seoul);
    assert_eq!(c.channels[0].label.as_deref(), Some("studio-a"));
    assert_eq!(c.schedules[0].name, "morning-news");
    assert_eq!(c.schedules[0].channel_id, c.channels[0].id);
}

#[test]
fn defaults_match_the_product_contract() {
    let c = valid("minimal.toml");
    assert_eq!(c.api.endpoint, "https://livestation.apigw.ntruss.com");
    assert_eq!(c.api.region, Region::Kr);
    assert_eq!(c.api.timeout, Duration::from_secs(10));
    assert_eq!(c.api.max_rps, 5.0);
    assert_eq!(c.daemon.database, Path::new("/var/lib/lsrecd/lsrecd.db"));
    assert_eq!(c.daemon.timezone, chrono_tz::Tz::UTC);
    assert_eq!(c.daemon.poll_interval, Duration::from_secs(10));
    assert_eq!(c.daemon.record_poll_interval, Duration::from_secs(60));
    assert_eq!(c.retry.max_attempts, 8);
    assert_eq!(c.retry.initial_backoff, Duration::from_secs(1));
    assert_eq!(c.retry.max_backoff, Duration::from_secs(60));
    assert_eq!(c.retention.warn_before, Duration::from_secs(24 * 3600));
    assert_eq!(c.retention.upload_bucket, None);
    assert!(c.metrics.is_none() && c.callback.is_none());
    assert!(!c.channels[0].record_when_live);
    assert_eq!(c.channels[0].max_duration, None);
    assert_eq!(c.api.access_key_source, KeySource::Env("LSRECD_ACCESS_KEY"));
}

#[test]
fn without_an_ha_section_the_instance_acts_alone() {
    assert!(valid("minimal.toml").ha.is_none());
    assert!(valid("full.toml").ha.is_none());
}

#[test]
fn an_ha_section_takes_its_defaults_and_the_host_name() {
    let ha = valid("ha-defaults.toml").ha.expect("[ha]");
    assert_eq!(ha.etcd, ["http://127.0.0.1:2379"]);
    assert_eq!(ha.key, "/lsrecd/leader");
    assert_eq!(ha.lease_ttl, Duration::from_secs(10));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host name");
    assert_eq!(ha.instance, host.trim());

    let ha = valid("ha.toml").ha.expect("[ha]");
    assert_eq!(
        ha.etcd,
        ["http://127.0.0.1:2379", "https://etcd-2.example.com:2379"]
    );
    assert_eq!(ha.key, "/broadcast/lsrecd");
    assert_eq!(ha.lease_ttl, Duration::from_secs(4));
    assert_eq!(ha.instance, "studio-host_1.a");
}

#[test]
fn plain_http_to_a_remote_etcd_is_a_warning_not_an_error() {
    let text = "[ha]\netcd = [\"http://10.0.0.5:2379\"]\ninstance = \"a\"\n";
    let c = Config::from_str_with_env(text, Path::new("ha.toml"), &FAKE_ENV).expect("loads");
    let warnings = c.warning_lines();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("ha.toml:2:8: ha.etcd[0]: \"http://10.0.0.5:2379\" is plain http"),
        "{warnings:?}"
    );
}

#[test]
fn every_setting_of_the_full_fixture_is_read() {
    let c = valid("full.toml");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/valid");
    assert_eq!(c.api.endpoint, "http://127.0.0.1:18080");
    assert_eq!(c.api.region, Region::Fkr);
    assert_eq!(c.api.credentials.access_key.expose(), "fixture-access-key");
    assert_eq!(c.api.access_key_source, KeySource::Inline);
    assert_eq!(c.api.credentials.secret_key.expose(), "fixture-secret-key");
    assert_eq!(
        c.api.secret_key_source,
        KeySource::File(dir.join("keys/secret_key"))
    );
    assert_eq!(c.api.timeout, Duration::from_millis(2500));
    assert_eq!(c.api.max_rps, 2.5);
    assert_eq!(c.daemon.database, dir.join("state/lsrecd.db"));
    assert_eq!(c.daemon.timezone, chrono_tz::Asia::Seoul);
    assert_eq!(c.daemon.poll_interval, Duration::from_secs(5));
    assert_eq!(c.daemon.record_poll_interval, Duration::from_secs(90));
    assert_eq!(c.retry.max_attempts, 3);
    assert_eq!(c.retry.initial_backoff, Duration::from_millis(200));
    assert_eq!(c.retry.max_backoff, Duration::from_secs(10));
    assert_eq!(c.retention.warn_before, Duration::from_secs(2 * 24 * 3600));
    assert_eq!(
        c.retention.upload_bucket.as_deref(),
        Some("recordings-archive")
    );
    assert_eq!(
        c.metrics.as_ref().unwrap().listen.to_string(),
        "127.0.0.1:9464"
    );
    let callback = c.callback.as_ref().unwrap();
    assert_eq!(callback.listen.to_string(), "[::1]:8787");
    assert_eq!(callback.token.expose(), "0123456789abcdef-XYZ");

    assert_eq!(c.channels.len(), 2);
    let a = &c.channels[0];
    assert_eq!(
        (
            a.id.as_str(),
            a.label.as_deref(),
            a.record_when_live,
            a.max_duration
        ),
        (
            "ls-20200313162828-G60tN",
            Some("studio-a"),
            true,
            Some(Duration::from_secs(6 * 3600))
        )
    );

    let news = c.schedule("morning-news").unwrap();
    assert_eq!(news.channel_id, "ls-20200313162828-G60tN");
    assert_eq!(news.timezone, chrono_tz::America::New_York);
    assert_eq!(news.duration, Some(Duration::from_secs(3600)));
    assert_eq!(news.catch_up, Duration::ZERO);
    let by_id = c.schedule("by-id").unwrap();
    assert_eq!(by_id.channel_id, "ls-20250814000000-PZohi");
    assert_eq!(
        by_id.timezone,
        chrono_tz::Asia::Seoul,
        "falls back to daemon.timezone"
    );
    assert_eq!(by_id.duration, None);
    assert_eq!(by_id.catch_up, Duration::from_secs(300));
    assert_eq!(
        c.schedule("weekly").unwrap().catch_up,
        Duration::from_secs(900)
    );
}

#[test]
fn channels_are_found_by_id_or_label() {
    let c = valid("full.toml");
    assert_eq!(c.channel("studio-a").unwrap().id, "ls-20200313162828-G60tN");
    assert_eq!(c.channel("ls-20250814000000-PZohi").unwrap().label, None);
    assert!(c.channel("studio-z").is_none());
}

#[test]
fn key_files_are_read_relative_to_the_configuration_file_and_trimmed() {
    let c = valid("key-files.toml");
    assert_eq!(
        c.api.credentials.access_key.expose(),
        "fixture-access-key-from-file"
    );
    assert_eq!(c.api.credentials.secret_key.expose(), "fixture-secret-key");
}

#[test]
fn keys_in_the_file_win_over_the_environment() {
    let c = valid("inline-keys-lowercase-region.toml");
    assert_eq!(c.api.credentials.access_key.expose(), "inline-access");
    assert_eq!(c.api.credentials.secret_key.expose(), "inline-secret");
    assert_eq!(c.api.region, Region::Fkr);
    assert_eq!(c.api.max_rps, 1.0);
}

#[test]
fn keys_come_from_the_systemd_credentials_directory_when_nothing_else_names_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("access_key"), "cred-access\n").unwrap();
    std::fs::write(dir.path().join("secret_key"), "cred-secret\n").unwrap();
    let env = [("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())];
    let c = Config::from_str_with_env("", Path::new("/etc/lsrecd/config.toml"), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.api.credentials.access_key.expose(), "cred-access");
    assert_eq!(c.api.credentials.secret_key.expose(), "cred-secret");
    assert_eq!(
        c.api.secret_key_source,
        KeySource::Credential(dir.path().join("secret_key"))
    );
}

#[test]
fn all_problems_are_reported_together_in_file_order() {
    let text = "[daemon]\ntimezone = \"Mars/Olympus\"\npoll_interval = \"0s\"\n\n[retry]\nmax_attempts = 0\n";
    let e = Config::from_str_with_env(text, Path::new("c.toml"), &FAKE_ENV).unwrap_err();
    let lines: Vec<String> = e.to_string().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(lines[0].starts_with("c.toml:2:12: daemon.timezone:"), "{e}");
    assert!(
        lines[1].starts_with("c.toml:3:17: daemon.poll_interval:"),
        "{e}"
    );
    assert!(
        lines[2].starts_with("c.toml:6:16: retry.max_attempts:"),
        "{e}"
    );
}

#[test]
fn errors_and_debug_output_never_contain_secret_values() {
    let text = "[api]\naccess_key = \"AKIA-VISIBLE-ONLY-HERE\"\nsecret_key = 987654321\n";
    let e = Config::from_str_with_env(text, Path::new("c.toml"), &NO_ENV).unwrap_err();
    assert!(!e.to_string().contains("987654321"), "{e}");

    let text = "[api]\naccess_key = \"AKIA-VISIBLE-ONLY-HERE\"\nsecret_key = \"sk-VISIBLE-ONLY-HERE\"\n[callback]\nlisten = \"127.0.0.1:1\"\ntoken = \"tok-VISIBLE-ONLY-HERE\"\n";
    let c = Config::from_str_with_env(text, Path::new("c.toml"), &NO_ENV).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("VISIBLE-ONLY-HERE"), "{debug}");

    let text = "[callback]\nlisten = \"127.0.0.1:1\"\ntoken = \"short-secret\"\n";
    let e = Config::from_str_with_env(text, Path::new("c.toml"), &FAKE_ENV).unwrap_err();
    assert!(!e.to_string().contains("short-secret"), "{e}");
}

#[test]
fn risky_settings_allowed_by_overrides_load_with_one_warning_each_in_file_order() {
    let c = valid("insecure-overrides.toml");

    assert_eq!(c.api.endpoint, "http://192.0.2.10:8080");
    assert_eq!(c.api.credentials.secret_key.expose(), "fixture-secret-key");
    let warnings: Vec<(usize, &str)> = c
        .warnings
        .iter()
        .map(|w| (w.line.unwrap_or(0), w.key.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        warnings,
        [
            (3, "api.endpoint"),
            (5, "api.secret_key_file"),
            (9, "metrics.listen"),
            (12, "callback.listen"),
        ]
    );
    let lines = c.warning_lines();
    assert!(lines[0].contains("clear text"), "{lines:?}");
    assert!(lines[1].contains("(mode 0640"), "{lines:?}");
    assert!(lines[2].contains("0.0.0.0:9464 accepts connections from other machines"));
    assert!(lines[3].ends_with("put a TLS reverse proxy or a firewall in front if they need it"));
    assert!(lines[0].starts_with(&c.source.display().to_string()));
}

#[test]
fn plain_http_to_this_machine_and_loopback_listeners_cause_no_warning() {
    let c = valid("http-to-this-machine.toml");
    assert!(c.warnings.is_empty(), "{:?}", c.warning_lines());

    for endpoint in [
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://[::1]:8080",
        "http://[::ffff:127.0.0.1]:8080",
        "http://LOCALHOST:8080",
        "https://livestation.apigw.ntruss.com",
    ] {
        let text = format!("[api]\nendpoint = \"{endpoint}\"\n");
        let c = Config::from_str_with_env(&text, Path::new("c.toml"), &FAKE_ENV)
            .unwrap_or_else(|e| panic!("{endpoint}: {e}"));
        assert!(c.warnings.is_empty(), "{endpoint}: {:?}", c.warning_lines());
    }
    for endpoint in [
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
        "http://[::ffff:10.0.0.1]",
        "http://0.0.0.0:8080",
    ] {
        let text = format!("[api]\nendpoint = \"{endpoint}\"\n");
        let e =
            Config::from_str_with_env(&text, Path::new("c.toml"), &FAKE_ENV).expect_err(endpoint);
        assert!(e.to_string().contains("clear text"), "{endpoint}: {e}");
    }
}

#[cfg(unix)]
#[test]
fn key_files_that_group_or_others_can_read_are_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("access_key");
    std::fs::write(&key, "file-access-key\n").unwrap();
    let config = dir.path().join("config.toml");
    let text = "[api]\naccess_key_file = \"access_key\"\nsecret_key = \"inline\"\n";

    for (mode, allowed) in [(0o600, true), (0o400, true), (0o640, false), (0o620, false)] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let result = Config::from_str_with_env(text, &config, &NO_ENV);
        assert_eq!(result.is_ok(), allowed, "mode {mode:o}: {result:?}");
    }

    let with_override = format!("{text}allow_insecure_key_files = true\n");
    let c = Config::from_str_with_env(&with_override, &config, &NO_ENV)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.api.credentials.access_key.expose(), "file-access-key");
    assert!(
        c.warning_lines()
            .iter()
            .any(|w| w.contains("api.access_key_file: can be accessed by group or others")),
        "{:?}",
        c.warning_lines()
    );
}

#[test]
fn an_unreadable_file_names_the_path() {
    let e = Config::load_with_env(Path::new("/nonexistent/lsrecd.toml"), &FAKE_ENV).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/lsrecd.toml: cannot read the configuration file:"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness: no input makes the loader panic, and every error names the file.

fn seed_texts() -> Vec<String> {
    let mut texts: Vec<String> = fixtures("valid")
        .into_iter()
        .chain(fixtures("invalid"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    texts.push(
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml.example"))
            .unwrap(),
    );
    texts
}

fn check_no_panic(text: &str) -> Result<(), TestCaseError> {
    match Config::from_str_with_env(text, Path::new("fuzz.toml"), &FAKE_ENV) {
        Ok(_) => Ok(()),
        Err(e) => {
            let message = e.to_string();
            prop_assert!(message.starts_with("fuzz.toml"), "{message}");
            Ok(())
        }
    }
}

/// One edit: delete, insert or replace at a relative position.
#[derive(Clone, Debug)]
enum Edit {
    Delete(f64, usize),
    Insert(f64, String),
    Replace(f64, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let piece = prop_oneof![
        Just("\"".to_string()),
        Just("[".to_string()),
        Just("]]".to_string()),
        Just("=".to_string()),
        Just("\n".to_string()),
        Just("#".to_string()),
        Just("{".to_string()),
        Just(".".to_string()),
        Just("-".to_string()),
        Just("*/0".to_string()),
        Just("allow_insecure_endpoint = true\n".to_string()),
        Just("allow_insecure_key_files = 1\n".to_string()),
        Just("http://10.0.0.1".to_string()),
        Just("0.0.0.0:1".to_string()),
        Just("[::]:1".to_string()),
        Just("é".to_string()),
        Just("\u{0}".to_string()),
        "[a-z_]{1,8}",
        "[0-9]{1,20}",
        any::<String>(),
    ];
    prop_oneof![
        (0.0..1.0f64, 1usize..20).prop_map(|(at, n)| Edit::Delete(at, n)),
        (0.0..1.0f64, piece.clone()).prop_map(|(at, s)| Edit::Insert(at, s)),
        (0.0..1.0f64, piece).prop_map(|(at, s)| Edit::Replace(at, s)),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |f: f64| ((chars.len() as f64) * f) as usize;
    let (start, remove, insert) = match edit {
        Edit::Delete(f, n) => (at(*f), *n, String::new()),
        Edit::Insert(f, s) => (at(*f), 0, s.clone()),
        Edit::Replace(f, s) => (at(*f), s.chars().count(), s.clone()),
    };
    let start = start.min(chars.len());
    let end = (start + remove).min(chars.len());
    chars[..start]
        .iter()
        .copied()
        .chain(insert.chars())
        .chain(chars[end..].iter().copied())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_makes_the_loader_panic(text in any::<String>()) {
        check_no_panic(&text)?;
    }

    #[test]
    fn mutated_configurations_never_make_the_loader_panic(
        seed in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let seeds = seed_texts();
        let mut text = seed.get(&seeds).clone();
        for e in &edits {
            text = apply(&text, e);
        }
        check_no_panic(&text)?;
    }
}
