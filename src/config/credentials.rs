//! Where the API keys come from, and the environment lookups that tests replace.
//!
//! Each key (access and secret) is resolved on its own, first match wins:
//!
//! 1. the configuration file: `access_key` / `secret_key` inline, or `access_key_file` /
//!    `secret_key_file` naming a file whose trimmed content is the key (setting both forms of
//!    one key is an error);
//! 2. the environment variable `LSRECD_ACCESS_KEY` / `LSRECD_SECRET_KEY` (empty counts as unset);
//! 3. the systemd credential `$CREDENTIALS_DIRECTORY/access_key` / `.../secret_key`
//!    (`LoadCredential=`).
//!
//! What the file says explicitly wins over the process environment, so the file stays the one
//! place to read to know which key is used. Relative `*_file` paths are resolved against the
//! directory of the configuration file.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::secret::Secret;

/// Environment variable holding the access key.
pub const ACCESS_KEY_ENV: &str = "LSRECD_ACCESS_KEY";
/// Environment variable holding the secret key.
pub const SECRET_KEY_ENV: &str = "LSRECD_SECRET_KEY";
/// Environment variable systemd sets to the directory of `LoadCredential=` files.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";

/// Largest key file read; anything bigger is not a key file.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Environment lookups used while loading a configuration, so tests need not touch the
/// process environment.
pub trait Env {
    /// The value of variable `name`, or `None` when unset or not UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment. The key variables come from what was handed over when
/// lsrecd moved them out of its environment at start ([`crate::hardening`]), if it did.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        if (name == ACCESS_KEY_ENV || name == SECRET_KEY_ENV)
            && let Some(value) = crate::hardening::handed_over(name)
        {
            return value;
        }
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Env for [(&str, &str)] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_string())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<String> {
        self.as_slice().var(name)
    }
}

/// Where a key was found (for `lsrecd check` and logs; never the key itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// Inline in the configuration file.
    Inline,
    /// From a `*_file` setting.
    File(PathBuf),
    /// From an environment variable.
    Env(&'static str),
    /// From a systemd credential file.
    Credential(PathBuf),
    /// Not looked for: the configuration was loaded with [`super::Keys::NotChecked`].
    NotChecked,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Inline => f.write_str("the configuration file"),
            KeySource::File(p) => write!(f, "{}", p.display()),
            KeySource::Env(name) => write!(f, "${name}"),
            KeySource::Credential(p) => write!(f, "systemd credential {}", p.display()),
            KeySource::NotChecked => f.write_str("nowhere (keys not checked)"),
        }
    }
}

/// Reads a key file: at most 64 KiB of UTF-8, trimmed, not empty. Errors never quote content.
/// Every buffer that held the content is wiped before it is freed.
pub(crate) fn read_key_file(path: &Path) -> Result<Secret, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // Allocated once at full size, so reading never moves the content to a new buffer and
    // leaves a copy behind in the old one.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_BYTES as usize + 1));
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "{} is larger than 64 KiB; it does not look like a key file",
            path.display()
        ));
    }
    let text =
        std::str::from_utf8(&bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    let key = text.trim();
    if key.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(key))
}

/// Writes `text` to `path` so that only its owner may read it (mode 0600), as a file holding a
/// key must be; an existing file is replaced and its mode tightened.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(true).write(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    // `mode` applies only when the file is created; an older file may be readable by others.
    #[cfg(unix)]
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}

/// The permission bits of `path` when group or others may read or write it (`mode & 0o077`).
pub(crate) fn loose_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The key from the environment or the credentials directory (steps 2 and 3), if any.
/// `name` is `access_key` or `secret_key`.
pub(crate) fn from_environment(
    env: &dyn Env,
    var: &'static str,
    name: &str,
) -> Option<Result<(Secret, KeySource), String>> {
    if let Some(value) = env.var(var).map(Zeroizing::new) {
        let value = value.trim();
        if !value.is_empty() {
            return Some(Ok((Secret::new(value), KeySource::Env(var))));
        }
    }
    let dir = env.var(CREDENTIALS_DIRECTORY_ENV)?;
    if dir.is_empty() {
        return None;
    }
    let path = Path::new(&dir).join(name);
    if !path.exists() {
        return None;
    }
    Some(read_key_file(&path).map(|s| (s, KeySource::Credential(path))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("k");
        std::fs::write(&good, "  abc123\n").unwrap();
        assert_eq!(read_key_file(&good).unwrap().expose(), "abc123");
        let empty = dir.path().join("e");
        std::fs::write(&empty, "\n \n").unwrap();
        assert!(read_key_file(&empty).unwrap_err().ends_with("is empty"));
        let missing = dir.path().join("missing");
        assert!(
            read_key_file(&missing)
                .unwrap_err()
                .starts_with("cannot read")
        );
    }

    #[test]
    fn the_environment_variable_wins_over_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret_key"), "from-credential\n").unwrap();
        let d = dir.path().to_str().unwrap();
        let both = [(SECRET_KEY_ENV, "from-env"), (CREDENTIALS_DIRECTORY_ENV, d)];
        let (key, source) = from_environment(&both, SECRET_KEY_ENV, "secret_key")
            .unwrap()
            .unwrap();
        assert_eq!(
            (key.expose(), source),
            ("from-env", KeySource::Env(SECRET_KEY_ENV))
        );

        let blank_env = [(SECRET_KEY_ENV, " "), (CREDENTIALS_DIRECTORY_ENV, d)];
        let (key, source) = from_environment(&blank_env, SECRET_KEY_ENV, "secret_key")
            .unwrap()
            .unwrap();
        assert_eq!(key.expose(), "from-credential");
        assert_eq!(source, KeySource::Credential(dir.path().join("secret_key")));

        let nothing: [(&str, &str); 0] = [];
        assert!(from_environment(&nothing, SECRET_KEY_ENV, "secret_key").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn write_private_leaves_a_file_only_its_owner_reads_even_when_one_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        write_private(&f, "secret_key = \"a\"").unwrap();
        assert_eq!(loose_mode(&f), None);
        std::fs::write(&f, "old").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        write_private(&f, "new").unwrap();
        assert_eq!(loose_mode(&f), None);
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "new");
    }

    #[cfg(unix)]
    #[test]
    fn loose_mode_reports_group_or_world_access_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(loose_mode(&f), None);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(loose_mode(&f), Some(0o640));
    }
}
