//! Process-wide protections, applied first thing in `main` before anything else runs.
//!
//! - [`restrict_umask`]: files lsrecd creates (the database and its journal files, the lock
//!   file) are never readable by others, also when it is started outside systemd (the unit sets
//!   `UMask=0027` itself).
//! - [`move_keys_out_of_environment`]: `LSRECD_ACCESS_KEY` and `LSRECD_SECRET_KEY` do not stay
//!   in the process environment once read.
//!
//! # Why the keys are moved by re-executing
//!
//! Removing a variable from inside the process (`unsetenv`) hides it from the process's own
//! lookups and from children, but not from `/proc/PID/environ`: the kernel shows the environment
//! block the process was started with, which `unsetenv` does not touch, and that is what `ps e`,
//! support-bundle scripts and monitoring agents read. It also needs `unsafe` code that is only
//! sound while a single thread runs. So lsrecd instead starts itself again with `exec` (same
//! process id, same arguments, same stdout/stderr) without the two variables, and hands the
//! values over on a pipe that becomes the new image's standard input; [`HANDOVER_ENV`] tells the
//! new image to read it. lsrecd reads nothing else from standard input. A process with no key
//! variables (the systemd unit hands keys over as credentials) is not re-executed.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::CommandExt;
use std::sync::OnceLock;

use zeroize::Zeroizing;

use crate::config::credentials::{ACCESS_KEY_ENV, SECRET_KEY_ENV};

/// Set to `1` in the environment of the re-executed process: its standard input carries the
/// key variables as `NAME=VALUE` entries, each ending with a NUL byte. Set by lsrecd only.
pub const HANDOVER_ENV: &str = "LSRECD_KEYS_ON_STDIN";

/// The file-creation mask bits lsrecd always sets: no write for group, nothing for others.
pub const UMASK: u32 = 0o027;

/// The most the two variables may hold together. Keys are a few dozen characters; the bound
/// keeps the hand-over within one pipe buffer, so writing it can never block.
const MAX_HANDOVER_BYTES: usize = 16 * 1024;

/// The variables handed over, once this process has received them.
static RECEIVED: OnceLock<Vec<(&'static str, Zeroizing<String>)>> = OnceLock::new();

/// Adds [`UMASK`] to the process's file-creation mask. A stricter mask already in place (e.g.
/// `077`) is kept.
pub fn restrict_umask() {
    use rustix::fs::Mode;
    let wanted = Mode::from_raw_mode(UMASK);
    let old = rustix::process::umask(wanted);
    rustix::process::umask(old | wanted);
}

/// Moves the key variables out of the environment (see the module documentation). Returns
/// only if there was nothing to move, if this process is the re-executed one (then it has read
/// the keys; [`handed_over`] serves them), or if moving failed: then the error says why, and the
/// keys are still read from the environment.
pub fn move_keys_out_of_environment() -> Result<(), String> {
    if std::env::var_os(HANDOVER_ENV).is_some_and(|v| v == "1") {
        return receive();
    }
    let found: Vec<(&'static str, OsString)> = [ACCESS_KEY_ENV, SECRET_KEY_ENV]
        .into_iter()
        .filter_map(|name| std::env::var_os(name).map(|value| (name, value)))
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    let error = hand_over(found);
    // The image was not replaced. The pipe may already be standard input: point it at
    // /dev/null, so the keys do not sit in a readable pipe.
    if let Ok(null) = File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdin(null.as_fd());
    }
    Err(format!(
        "{ACCESS_KEY_ENV}/{SECRET_KEY_ENV} stay in the environment: {error}"
    ))
}

/// The value of key variable `name` as handed over to this process: `None` when this process
/// was not re-executed, `Some(None)` when it was but the variable was not set.
pub fn handed_over(name: &str) -> Option<Option<String>> {
    let received = RECEIVED.get()?;
    Some(
        received
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.as_str().to_owned()),
    )
}

/// Re-executes the program without the variables; returns only on failure.
fn hand_over(found: Vec<(&'static str, OsString)>) -> String {
    let mut payload = Zeroizing::new(Vec::new());
    for (name, value) in &found {
        payload.extend_from_slice(name.as_bytes());
        payload.push(b'=');
        payload.extend_from_slice(value.as_bytes());
        payload.push(0);
    }
    // The OsStrings are copies of the environment; wipe them too.
    for (_, value) in found {
        drop(Zeroizing::new(value.into_encoded_bytes()));
    }
    if payload.len() > MAX_HANDOVER_BYTES {
        return format!(
            "together they are longer than {} KiB, which is not a key",
            MAX_HANDOVER_BYTES / 1024
        );
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return format!("cannot find the program to restart: {e}"),
    };
    let (reader, mut writer) = match std::io::pipe() {
        Ok(pipe) => pipe,
        Err(e) => return format!("cannot create a pipe: {e}"),
    };
    // Non-blocking: a pipe smaller than the payload is an error here, never a hang.
    if let Err(e) = rustix::fs::fcntl_setfl(&writer, rustix::fs::OFlags::NONBLOCK) {
        return format!("cannot set up the pipe: {e}");
    }
    if let Err(e) = writer.write_all(&payload) {
        return format!("cannot write to the pipe: {e}");
    }
    drop(writer);
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let error = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env_remove(ACCESS_KEY_ENV)
        .env_remove(SECRET_KEY_ENV)
        .env(HANDOVER_ENV, "1")
        .stdin(reader)
        .exec();
    format!("cannot restart {}: {error}", exe.display())
}

/// Reads the handed-over variables from standard input.
fn receive() -> Result<(), String> {
    let stdin = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot read the handed-over keys: {e}"))?;
    // Unbuffered, so no copy of the keys stays in the standard input buffer.
    let mut pipe = File::from(stdin);
    let is_pipe = pipe.metadata().is_ok_and(|m| m.file_type().is_fifo());
    if !is_pipe {
        // Someone set the variable by hand; reading a terminal would hang.
        let _ = RECEIVED.set(Vec::new());
        return Err(format!(
            "{HANDOVER_ENV} is set but standard input is not a pipe; lsrecd sets it for itself \
             only, so no keys were read from it"
        ));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_HANDOVER_BYTES + 1));
    (&mut pipe)
        .take(MAX_HANDOVER_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the handed-over keys: {e}"))?;
    let mut received = Vec::new();
    for entry in bytes.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        let Some(eq) = entry.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (&entry[..eq], &entry[eq + 1..]);
        let Some(name) = [ACCESS_KEY_ENV, SECRET_KEY_ENV]
            .into_iter()
            .find(|n| n.as_bytes() == name)
        else {
            continue;
        };
        // Not UTF-8 counts as unset, as it does for `std::env::var`.
        if let Ok(value) = std::str::from_utf8(value) {
            received.push((name, Zeroizing::new(value.to_owned())));
        }
    }
    let _ = RECEIVED.set(received);
    Ok(())
}
