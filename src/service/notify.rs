//! The systemd notify protocol (`sd_notify(3)`) without linking systemd: readiness, status,
//! stopping and watchdog keep-alives sent as datagrams to `$NOTIFY_SOCKET`.
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every method does nothing, so the daemon runs the same
//! in a terminal, a container or a test.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Sends state changes to the service manager. Cheap to share behind a reference; every send is
/// one non-blocking datagram.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    watchdog_interval: Option<Duration>,
}

/// Where `NOTIFY_SOCKET` points.
#[derive(Debug)]
enum Target {
    /// A socket file, e.g. `/run/systemd/notify`.
    Path { socket: UnixDatagram, path: PathBuf },
    /// A Linux abstract socket (`@name` in the variable), whose name is not a file.
    Abstract { socket: UnixDatagram, name: Vec<u8> },
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the process environment.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        Self::new(
            socket.as_deref(),
            usec.as_deref(),
            pid.as_deref(),
            std::process::id(),
        )
    }

    /// Builds a notifier from explicit values, as [`Notifier::from_env`] would find them.
    ///
    /// The watchdog is enabled when `watchdog_usec` is a positive integer and `watchdog_pid` is
    /// absent or equals `own_pid` (systemd sets it so that children do not answer for the
    /// parent). An empty or unusable socket value disables notification with a warning.
    pub fn new(
        notify_socket: Option<&OsStr>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        own_pid: u32,
    ) -> Self {
        let target = notify_socket
            .filter(|value| !value.is_empty())
            .and_then(|value| match Target::open(value) {
                Ok(target) => Some(target),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "NOTIFY_SOCKET is set but unusable; systemd will not hear from lsrecd"
                    );
                    None
                }
            });
        let for_us = watchdog_pid.is_none_or(|pid| pid.trim().parse::<u32>() == Ok(own_pid));
        let watchdog_interval = watchdog_usec
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && for_us)
            .map(|usec| Duration::from_micros(usec) / 2);
        Notifier {
            target,
            watchdog_interval,
        }
    }

    /// A notifier that never sends anything.
    pub fn disabled() -> Self {
        Notifier {
            target: None,
            watchdog_interval: None,
        }
    }

    /// Whether a service manager is listening.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// How often to call [`Notifier::watchdog`]: half of `WATCHDOG_USEC`, as `sd_watchdog_enabled(3)`
    /// recommends; `None` when no watchdog is configured for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_interval
    }

    /// `READY=1`: startup is complete.
    pub fn ready(&self) {
        self.send_logged("READY=1");
    }

    /// `STATUS=…`: a one-line description shown by `systemctl status`. Line breaks become spaces
    /// because the protocol is one assignment per line.
    pub fn status(&self, text: &str) {
        if self.target.is_none() {
            return;
        }
        let line: String = text
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        self.send_logged(&format!("STATUS={line}"));
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.send_logged("STOPPING=1");
    }

    /// `WATCHDOG=1`: the main loop is alive.
    pub fn watchdog(&self) {
        self.send_logged("WATCHDOG=1");
    }

    /// Sends one raw notification message (newline-separated `KEY=VALUE` lines). Succeeds and
    /// does nothing when no service manager is listening.
    pub fn send(&self, message: &str) -> io::Result<()> {
        match &self.target {
            None => Ok(()),
            Some(target) => target.send(message.as_bytes()),
        }
    }

    fn send_logged(&self, message: &str) {
        if let Err(e) = self.send(message) {
            // Only the key: a STATUS= text can be long and adds nothing to the error.
            let key = message.split('=').next().unwrap_or_default();
            tracing::warn!(error = %e, key, "could not notify systemd");
        }
    }
}

impl Target {
    fn open(value: &OsStr) -> io::Result<Target> {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        match value.as_bytes().strip_prefix(b"@") {
            Some(name) => Ok(Target::Abstract {
                socket,
                name: name.to_vec(),
            }),
            None if value.as_bytes().starts_with(b"/") => Ok(Target::Path {
                socket,
                path: PathBuf::from(value),
            }),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "expected an absolute path or an @abstract name",
            )),
        }
    }

    fn send(&self, message: &[u8]) -> io::Result<()> {
        let sent = match self {
            Target::Path { socket, path } => socket.send_to(message, path)?,
            Target::Abstract { socket, name } => send_abstract(socket, name, message)?,
        };
        if sent == message.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "notification datagram was truncated",
            ))
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(socket: &UnixDatagram, name: &[u8], message: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;

    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &addr)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_socket: &UnixDatagram, _name: &[u8], _message: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    fn receiver() -> (tempfile::TempDir, PathBuf, UnixDatagram) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        (dir, path, socket)
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_fake_notify_socket_receives_ready_status_watchdog_and_stopping() {
        let (_dir, path, socket) = receiver();
        let notifier = Notifier::new(Some(path.as_os_str()), None, None, 42);
        assert!(notifier.is_enabled());

        notifier.ready();
        notifier.status("3 channels, 1 recording, last poll 09:00:03");
        notifier.watchdog();
        notifier.stopping();

        assert_eq!(recv(&socket), "READY=1");
        assert_eq!(
            recv(&socket),
            "STATUS=3 channels, 1 recording, last poll 09:00:03"
        );
        assert_eq!(recv(&socket), "WATCHDOG=1");
        assert_eq!(recv(&socket), "STOPPING=1");
    }

    #[test]
    fn a_status_with_line_breaks_is_sent_as_one_line() {
        let (_dir, path, socket) = receiver();
        let notifier = Notifier::new(Some(path.as_os_str()), None, None, 42);

        notifier.status("two\nlines\r\nREADY=1");

        assert_eq!(recv(&socket), "STATUS=two lines  READY=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_name_starting_with_at_is_reached() {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::SocketAddr;

        let name = format!("lsrecd-notify-test-{}-{}", std::process::id(), line!());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let value = format!("@{name}");
        let notifier = Notifier::new(Some(OsStr::new(&value)), None, None, 42);

        notifier.ready();

        assert_eq!(recv(&socket), "READY=1");
    }

    #[test]
    fn without_notify_socket_every_call_is_a_silent_no_op() {
        let notifier = Notifier::new(None, None, None, 42);

        assert!(!notifier.is_enabled());
        notifier.ready();
        notifier.watchdog();
        assert!(notifier.send("READY=1").is_ok());
        assert_eq!(notifier.watchdog_interval(), None);
    }

    #[test]
    fn a_relative_notify_socket_path_disables_notification() {
        let notifier = Notifier::new(Some(OsStr::new("notify.sock")), None, None, 42);

        assert!(!notifier.is_enabled());
    }

    #[test]
    fn a_socket_nobody_listens_on_reports_an_error_from_send() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("gone.sock");
        let notifier = Notifier::new(Some(path.as_os_str()), None, None, 42);

        assert!(notifier.send("READY=1").is_err());
        // The convenience methods log instead of failing.
        notifier.ready();
    }

    #[test]
    fn the_watchdog_interval_is_half_of_watchdog_usec() {
        let notifier = Notifier::new(None, Some("30000000"), None, 42);

        assert_eq!(notifier.watchdog_interval(), Some(Duration::from_secs(15)));
    }

    #[test]
    fn the_watchdog_applies_only_when_watchdog_pid_is_this_process() {
        let ours = Notifier::new(None, Some("30000000"), Some("42"), 42);
        let theirs = Notifier::new(None, Some("30000000"), Some("7"), 42);

        assert_eq!(ours.watchdog_interval(), Some(Duration::from_secs(15)));
        assert_eq!(theirs.watchdog_interval(), None);
    }

    #[test]
    fn a_zero_or_unparsable_watchdog_usec_disables_the_watchdog() {
        assert_eq!(
            Notifier::new(None, Some("0"), None, 42).watchdog_interval(),
            None
        );
        assert_eq!(
            Notifier::new(None, Some("soon"), None, 42).watchdog_interval(),
            None
        );
    }
}
