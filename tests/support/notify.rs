//! A fake systemd notify socket: a datagram socket in a temporary directory and a thread that
//! records every message with the time and a sample of test state at arrival.

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One datagram that reached the fake notify socket.
#[derive(Clone, Debug)]
pub struct Notice {
    /// The message, e.g. `READY=1`.
    pub text: String,
    /// When it arrived.
    pub at: Instant,
    /// What the sampler given to [`NotifySocket::bind`] returned as it arrived.
    pub sample: u64,
}

/// A fake systemd notify socket: a datagram socket in a temporary directory and a thread that
/// records every message with the time and a sample of test state at arrival.
pub struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    notices: Arc<Mutex<Vec<Notice>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NotifySocket {
    /// Binds the socket; `sample` is called as each message arrives.
    pub fn bind(sample: impl Fn() -> u64 + Send + 'static) -> NotifySocket {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("a read timeout");
        let notices = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let notices = notices.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = socket.recv(&mut buf) else {
                        continue;
                    };
                    let notice = Notice {
                        text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                        at: Instant::now(),
                        sample: sample(),
                    };
                    notices
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(notice);
                }
            })
        };
        NotifySocket {
            _dir: dir,
            path,
            notices,
            stop,
            thread: Some(thread),
        }
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn path(&self) -> OsString {
        self.path.clone().into_os_string()
    }

    /// Every message so far, in arrival order.
    pub fn notices(&self) -> Vec<Notice> {
        self.notices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first message equal to `text`.
    pub fn first(&self, text: &str) -> Option<Notice> {
        self.notices().into_iter().find(|n| n.text == text)
    }

    /// How many messages equal `text`.
    pub fn count(&self, text: &str) -> usize {
        self.notices().iter().filter(|n| n.text == text).count()
    }

    /// The texts of the `STATUS=` messages, without the key.
    pub fn statuses(&self) -> Vec<String> {
        self.notices()
            .into_iter()
            .filter_map(|n| n.text.strip_prefix("STATUS=").map(str::to_owned))
            .collect()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
