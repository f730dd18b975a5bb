//! A string that never prints and is wiped from memory when dropped: `Debug` and `Display` show
//! `***`, and every copy overwrites its bytes with zeros on drop (`zeroize`), so a key does not
//! linger in freed heap memory where a core dump or a later allocation could find it.

use std::fmt;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// A secret value (access or secret key, callback token). Read it only with [`Secret::expose`],
/// at the one place that needs the bytes (signing, comparing).
///
/// Cloning is allowed (the client and the reload path each hold one) and every clone is wiped
/// when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Takes ownership of `value`; the `String` is wiped when the secret is dropped.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret bytes. Callers must not log or store the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Read as a plain TOML/JSON string; the value goes straight into a wiped buffer.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn secret_prints_as_stars_in_debug_and_display() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_secret_is_held_in_a_buffer_that_is_zeroed_on_drop() {
        // The wrapper is what wipes: this fails to compile if the field stops being one.
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let s = Secret::new("hunter2");
        wiped_on_drop(&s.0);
    }

    #[test]
    fn a_secret_deserializes_from_a_string_only() {
        let s: Secret = serde_json::from_str(r#""k3y""#).expect("a string");
        assert_eq!(s.expose(), "k3y");
        assert!(serde_json::from_str::<Secret>("42").is_err());
    }
}
