//! `lsrecd start CHANNEL` / `lsrecd stop CHANNEL`: a manual claim through the same journal as
//! the daemon.
//!
//! The claim is written to the database first. If a daemon holds the engine lock, it acts on the
//! claim at its next poll; otherwise this command takes the lock itself, reconciles and runs one
//! engine tick for that channel only, so the two never race.
//!
//! With `[ha]` the command never acts itself: only the leader may, so the claim waits in this
//! instance's database for its daemon, which acts on it while it leads.

use std::sync::Arc;

use crate::cli::{GlobalArgs, ManualArgs};
use crate::config::Config;
use crate::engine::lock::{EngineLock, Holder, LockError};
use crate::engine::{Engine, now_ms};
use crate::exit::{self, CommandError};

pub async fn start(g: &GlobalArgs, a: ManualArgs) -> Result<(), CommandError> {
    manual(g, a, true).await
}

pub async fn stop(g: &GlobalArgs, a: ManualArgs) -> Result<(), CommandError> {
    manual(g, a, false).await
}

async fn manual(g: &GlobalArgs, a: ManualArgs, start: bool) -> Result<(), CommandError> {
    let config = super::load_config(&g.config)?;
    let Some(channel) = config.channel(&a.channel) else {
        let known: Vec<String> = config
            .channels
            .iter()
            .map(|c| c.label.clone().unwrap_or_else(|| c.id.clone()))
            .collect();
        return Err(CommandError::new(
            exit::USAGE,
            format!(
                "{:?} is not a [[channel]] id or label in {} (known: {})",
                a.channel,
                g.config.display(),
                known.join(", ")
            ),
        ));
    };
    let channel_id = channel.id.clone();
    let name = channel.label.clone().unwrap_or_else(|| channel_id.clone());
    // The lock first: when no daemon holds it, this command creates or migrates the database
    // and acts itself; when one does, the daemon has done both and acts on the claim.
    let (lock, daemon) = match EngineLock::try_acquire(&config.daemon.database, Holder::Command) {
        Ok(lock) => (Some(lock), None),
        Err(e @ LockError::Held { .. }) => (None, e.daemon_pid()),
        Err(e) => return Err(CommandError::new(exit::FAILURE, e.to_string())),
    };
    let store = crate::daemon::open_store(&config).await.map_err(failure)?;
    let now = now_ms();
    let changed = if start {
        store.add_manual_claim(&channel_id, now).await
    } else {
        store
            .end_manual_claim(&channel_id, "lsrecd stop", now)
            .await
    }
    .map_err(|e| CommandError::new(exit::FAILURE, e.to_string()))?;
    let verb = if start { "start" } else { "stop" };
    match (start, changed) {
        (true, true) => println!("manual claim on {name} recorded"),
        (true, false) => println!("{name} already has a manual claim"),
        (false, true) => println!("manual claim on {name} ended"),
        (false, false) => println!("{name} had no manual claim"),
    }
    if config.ha.is_some() {
        println!(
            "with [ha], this host's lsrecd daemon will {verb} the recording while it is the \
             leader (claims are kept per host: see docs/high-availability.md)"
        );
        store.close().await;
        return Ok(());
    }
    let Some(lock) = lock else {
        match daemon.map(tell_daemon) {
            Some(Ok(pid)) => println!(
                "told the running lsrecd daemon (pid {pid}); it will {verb} the recording now"
            ),
            told => {
                if let Some(Err(e)) = told {
                    tracing::debug!(error = %e, "the daemon could not be signalled");
                }
                println!(
                    "the running lsrecd daemon will {verb} the recording at its next poll (within {})",
                    humantime::format_duration(config.daemon.poll_interval)
                );
            }
        }
        store.close().await;
        return Ok(());
    };
    let result = act_now(Arc::new(config), store.clone(), &channel_id, &name, start).await;
    store.close().await;
    drop(lock);
    result
}

/// Sends SIGUSR1 to the daemon holding the engine lock: it reads the manual claims at once.
/// Fails when this user may not signal it (another user's daemon); it then acts at its next
/// poll.
fn tell_daemon(pid: i32) -> std::io::Result<i32> {
    let target = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| std::io::Error::other(format!("{pid} is not a process id")))?;
    rustix::process::kill_process(target, rustix::process::Signal::USR1)?;
    Ok(pid)
}

/// No daemon runs: reconcile and run one tick for this channel, then report.
async fn act_now(
    config: Arc<Config>,
    store: crate::store::Store,
    channel_id: &str,
    name: &str,
    start: bool,
) -> Result<(), CommandError> {
    let client = crate::daemon::client_for(&config).map_err(failure)?;
    let now = now_ms();
    let mut engine = Engine::new(config, client, store, now).focus(channel_id);
    let reachable = engine.reconcile(now).await.map_err(failure)?;
    if !reachable {
        return Err(CommandError::unavailable(
            "the Live Station API could not be reached; the claim is saved and the daemon will act on it when it runs",
        ));
    }
    let report = engine.tick(now_ms()).await.map_err(failure)?;
    match (start, report.starts, report.stops) {
        (true, 1.., _) => println!("recording of {name} started"),
        (false, _, 1..) => println!("recording of {name} stopped"),
        (true, 0, _) => println!(
            "recording of {name} not started now (the channel is not publishing, already recording, or the start failed — see `lsrecd status`); the claim stays until `lsrecd stop`"
        ),
        (false, _, 0) => println!(
            "nothing to stop for {name} (not recording, not started by lsrecd, or another claim still holds it)"
        ),
    }
    Ok(())
}

fn failure(e: impl std::fmt::Display) -> CommandError {
    CommandError::new(exit::FAILURE, e.to_string())
}
