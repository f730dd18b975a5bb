//! `lsrecd demo`: the whole thing on one machine with no account.
//!
//! An embedded emulator with three channels, a sample configuration in a temporary directory,
//! and the daemon against both. `studio-a` records whenever it is live and goes live a few
//! seconds in; `studio-b` has a schedule whose window opens every minute; `studio-c` records by
//! itself (`immediateOnAir`), which lsrecd only tracks. What happens is printed from the events
//! table as it happens, with the `sqlite3` command to look at the database. Times are shown in
//! the sample configuration's `daemon.timezone` (this machine's zone unless `--timezone` says
//! otherwise), or in UTC with `--utc`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;

use super::format_time;
use crate::cli::{DemoArgs, GlobalArgs};
use crate::config::credentials::write_private;
use crate::emulator::{ChannelSpec, Emulator, EmulatorOptions, RecordFormat, RecordType};
use crate::exit::{self, CommandError};
use crate::service::notify::Notifier;

const STUDIO_A: &str = "ls-20261126090000-DemoA";
const STUDIO_B: &str = "ls-20261126090000-DemoB";
const STUDIO_C: &str = "ls-20261126090000-DemoC";

pub async fn run(_g: &GlobalArgs, a: DemoArgs) -> Result<(), CommandError> {
    let dir = tempfile::Builder::new()
        .prefix("lsrecd-demo-")
        .tempdir()
        .map_err(|e| fail(format!("cannot create a temporary directory: {e}")))?
        .keep();
    let options = EmulatorOptions::default();
    let emulator = Emulator::start(
        "127.0.0.1:0".parse().expect("valid address"),
        options.clone(),
    )
    .await
    .map_err(|e| fail(format!("cannot start the emulator: {e}")))?;
    let control = emulator.control();
    let channels = [
        ChannelSpec::new(STUDIO_A)
            .name("studio-a")
            .record_type(RecordType::ManualUpload),
        ChannelSpec::new(STUDIO_B)
            .name("studio-b")
            .record_type(RecordType::AutoUpload)
            .format(RecordFormat::All)
            .live(),
        ChannelSpec::new(STUDIO_C)
            .name("studio-c")
            .record_type(RecordType::AutoUpload)
            .immediate_on_air(true),
    ];
    for spec in channels {
        control
            .add_channel(spec)
            .map_err(|e| fail(format!("emulator: {e}")))?;
    }

    let db = dir.join("lsrecd.db");
    let config_path = dir.join("config.toml");
    let zone = a.timezone.unwrap_or_else(local_zone);
    write_config(&config_path, &emulator.base_url(), &options, &db, zone)?;
    let config = super::load_config(&config_path)?;
    let shown = if a.utc {
        Tz::UTC
    } else {
        config.daemon.timezone
    };

    println!(
        "lsrecd demo — an emulated Live Station at {}",
        emulator.base_url()
    );
    println!("  configuration: {}", config_path.display());
    println!("  database:      {}", db.display());
    println!(
        "  look inside:   sqlite3 -readonly {} 'SELECT record_id, channel_id, record_type, status, datetime(should_delete_time/1000, \"unixepoch\") AS deleted_after_utc FROM records'",
        db.display()
    );
    println!("  times shown in {shown}");
    println!(
        "  studio-a records whenever it is live; studio-b has a schedule window every minute (30 s);"
    );
    println!("  studio-c records by itself (immediateOnAir) and lsrecd only follows its records.");
    match a.duration {
        Some(d) => println!(
            "  running for {} (Ctrl-C stops earlier)\n",
            humantime::format_duration(d)
        ),
        None => println!("  running until Ctrl-C\n"),
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stop_daemon = stop_rx.clone();
    let signals = crate::service::signals::Signals::install()
        .map_err(|e| fail(format!("cannot install signal handlers: {e}")))?;
    let daemon = tokio::spawn(crate::daemon::run(
        Arc::new(config),
        None,
        Notifier::disabled(),
        async move {
            let _ = stop_daemon.wait_for(|s| *s).await;
        },
    ));
    let script = tokio::spawn(script(control.clone(), stop_rx.clone()));
    let printer = tokio::spawn(print_events(db.clone(), stop_rx, shown));

    let deadline = async {
        match a.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = deadline => {}
        _ = signals.shutdown.wait() => {}
    }
    let _ = stop_tx.send(true);
    let daemon_result = daemon.await;
    script.abort();
    let _ = printer.await;
    emulator.shutdown().await;
    match daemon_result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(fail(format!("the daemon failed: {e}"))),
        Err(e) => return Err(fail(format!("the daemon task failed: {e}"))),
    }
    summary(&db, shown).await;
    println!("\nThe database stays at {} — query it with:", db.display());
    println!(
        "  sqlite3 -readonly {} 'SELECT * FROM records'",
        db.display()
    );
    println!(
        "  sqlite3 -readonly {} 'SELECT * FROM events ORDER BY id'",
        db.display()
    );
    Ok(())
}

/// This machine's time zone, else UTC.
fn local_zone() -> Tz {
    iana_time_zone::get_timezone()
        .ok()
        .and_then(|name| name.parse().ok())
        .unwrap_or(Tz::UTC)
}

fn write_config(
    path: &Path,
    endpoint: &str,
    options: &EmulatorOptions,
    db: &Path,
    zone: Tz,
) -> Result<(), CommandError> {
    let text = format!(
        r#"# Generated by `lsrecd demo` for its embedded emulator.
[api]
endpoint = "{endpoint}"
region = "KR"
access_key = "{access}"
secret_key_file = "secret_key"
timeout = "5s"
max_rps = 20

[daemon]
database = "{db}"
timezone = "{zone}"
poll_interval = "2s"
record_poll_interval = "3s"

[retry]
max_attempts = 5
initial_backoff = "500ms"
max_backoff = "5s"

[[channel]]
id = "{STUDIO_A}"
label = "studio-a"
record_when_live = true
max_duration = "1h"

[[channel]]
id = "{STUDIO_B}"
label = "studio-b"

[[channel]]
id = "{STUDIO_C}"
label = "studio-c"

[[schedule]]
name = "every-minute"
channel = "studio-b"
cron = "0 * * * * *"
duration = "30s"
catch_up = "10s"
"#,
        access = options.access_key,
        db = db.display(),
        zone = zone.name(),
    );
    let secret = path.with_file_name("secret_key");
    write_private(&secret, &options.secret_key)
        .map_err(|e| fail(format!("cannot write {}: {e}", secret.display())))?;
    write_private(path, &text).map_err(|e| fail(format!("cannot write {}: {e}", path.display())))
}

/// What happens on the emulated channels.
async fn script(control: crate::emulator::Control, _stop: tokio::sync::watch::Receiver<bool>) {
    let step = |secs| tokio::time::sleep(Duration::from_secs(secs));
    step(4).await;
    println!("[emulator] studio-a goes live");
    let _ = control.go_live(STUDIO_A);
    step(4).await;
    println!("[emulator] studio-c goes live (it records by itself)");
    let _ = control.go_live(STUDIO_C);
    step(14).await;
    println!("[emulator] studio-a goes offline");
    let _ = control.go_offline(STUDIO_A);
    step(6).await;
    println!("[emulator] studio-c goes offline");
    let _ = control.go_offline(STUDIO_C);
    loop {
        step(30).await;
        println!("[emulator] studio-a goes live again");
        let _ = control.go_live(STUDIO_A);
        step(20).await;
        println!("[emulator] studio-a goes offline");
        let _ = control.go_offline(STUDIO_A);
    }
}

/// Prints new rows of the events table as they appear, the way an operator would read them.
async fn print_events(db: PathBuf, mut stop: tokio::sync::watch::Receiver<bool>, zone: Tz) {
    let label = |id: &Option<String>| match id.as_deref() {
        Some(STUDIO_A) => "studio-a",
        Some(STUDIO_B) => "studio-b",
        Some(STUDIO_C) => "studio-c",
        _ => "",
    };
    let mut last_id = 0i64;
    let mut last_at = 0i64;
    let mut store = None;
    loop {
        if store.is_none() && db.exists() {
            store = crate::store::Store::open_read_only(&db).await.ok();
        }
        if let Some(s) = &store
            && let Ok(events) = s.events_since(last_at).await
        {
            let fresh: Vec<_> = events.into_iter().filter(|e| e.id > last_id).collect();
            for e in fresh {
                last_id = e.id;
                last_at = e.at;
                let at = chrono::DateTime::from_timestamp_millis(e.at)
                    .map(|t| t.with_timezone(&zone).format("%H:%M:%S %Z").to_string())
                    .unwrap_or_default();
                println!(
                    "{at}  {:<8}  {:<15}  {}",
                    label(&e.channel_id),
                    e.kind.as_str(),
                    e.message
                );
            }
        }
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => {}
        }
    }
    if let Some(s) = store {
        s.close().await;
    }
}

async fn summary(db: &Path, zone: Tz) {
    let Ok(store) = crate::store::Store::open_read_only(db).await else {
        return;
    };
    if let Ok(records) = store.records(&Default::default()).await {
        println!("\n{} records in the database:", records.len());
        for r in records {
            println!(
                "  {} {:<4} {:<16} {:<15} should_delete_time={}",
                r.record_id,
                r.record_type,
                r.channel_id,
                r.status,
                r.should_delete_time
                    .map(|t| format!("{t} ({})", format_time(t, zone)))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    store.close().await;
}

fn fail(message: String) -> CommandError {
    CommandError::new(exit::FAILURE, message)
}
