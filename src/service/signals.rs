//! Unix signals the daemon answers: SIGTERM and SIGINT end it, SIGHUP reloads the
//! configuration, SIGUSR1 says a manual claim changed (`lsrecd start|stop` sends it).
//!
//! Handlers are installed once, up front, so a signal that arrives while the daemon is busy is
//! remembered rather than killing the process with the default action.

use std::fmt;
use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The installed handlers, split so that shutdown can be handed to `run` as a future while the
/// main loop keeps the reload receiver.
#[derive(Debug)]
pub struct Signals {
    /// Resolves on the first SIGTERM or SIGINT.
    pub shutdown: Shutdown,
    /// Yields once per SIGHUP.
    pub reload: Reload,
    /// Yields once per SIGUSR1.
    pub claims: ClaimsChanged,
}

/// SIGUSR1: `lsrecd start|stop` wrote or ended a manual claim in the database.
#[derive(Debug)]
pub struct ClaimsChanged {
    user1: Signal,
}

impl ClaimsChanged {
    /// Waits for the next SIGUSR1 (several before this is polled again count as one).
    /// Returns `None` only if the runtime is shutting down.
    pub async fn recv(&mut self) -> Option<()> {
        self.user1.recv().await
    }
}

/// Which signal asked the daemon to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGTERM, what systemd sends on `systemctl stop`.
    Terminate,
    /// SIGINT, Ctrl-C in a terminal.
    Interrupt,
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Interrupt => "SIGINT",
        })
    }
}

/// The shutdown half: SIGTERM and SIGINT.
#[derive(Debug)]
pub struct Shutdown {
    terminate: Signal,
    interrupt: Signal,
}

/// The reload half: SIGHUP.
#[derive(Debug)]
pub struct Reload {
    hangup: Signal,
}

impl Signals {
    /// Installs the SIGTERM, SIGINT, SIGHUP and SIGUSR1 handlers. Must be called inside a tokio runtime.
    pub fn install() -> io::Result<Signals> {
        Ok(Signals {
            shutdown: Shutdown {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            },
            reload: Reload {
                hangup: signal(SignalKind::hangup())?,
            },
            claims: ClaimsChanged {
                user1: signal(SignalKind::user_defined1())?,
            },
        })
    }
}

impl Shutdown {
    /// Waits for SIGTERM or SIGINT and says which arrived. Consumes the handle so it can be passed
    /// as the `shutdown` future of a server or the daemon loop.
    pub async fn wait(mut self) -> StopSignal {
        tokio::select! {
            _ = self.terminate.recv() => StopSignal::Terminate,
            _ = self.interrupt.recv() => StopSignal::Interrupt,
        }
    }
}

impl Reload {
    /// Waits for the next SIGHUP. Several SIGHUPs that arrive before this is polled again count
    /// as one, which is what a reload wants. Returns `None` only if the runtime is shutting down.
    pub async fn recv(&mut self) -> Option<()> {
        self.hangup.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    /// Sends `signal` to this test process with the `kill` utility (no unsafe code needed). The
    /// handlers are installed before, so the default action (exit) never runs.
    fn raise(signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(std::process::id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    #[tokio::test]
    async fn sighup_is_delivered_as_a_reload() {
        let mut signals = Signals::install().expect("install handlers");

        raise("HUP");

        let got = tokio::time::timeout(Duration::from_secs(10), signals.reload.recv()).await;
        assert_eq!(got, Ok(Some(())));
    }

    #[tokio::test]
    async fn sigterm_resolves_shutdown_as_terminate() {
        let signals = Signals::install().expect("install handlers");
        let shutdown = tokio::spawn(signals.shutdown.wait());

        raise("TERM");

        let got = tokio::time::timeout(Duration::from_secs(10), shutdown).await;
        assert!(matches!(got, Ok(Ok(StopSignal::Terminate))), "got {got:?}");
    }
}
