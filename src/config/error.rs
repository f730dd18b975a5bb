//! [`ConfigError`]: every problem found in a configuration file, each with the file, the line
//! and column, and the key it is about, printed as `FILE:LINE:COL: KEY: MESSAGE`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// 1-based column (in characters), with `line`.
    pub column: Option<usize>,
    /// The dotted key the problem is about, e.g. `schedule[1].channel` (arrays count from 0).
    pub key: Option<String>,
    /// What is wrong and, where possible, how to fix it. Never contains a secret.
    pub message: String,
}

/// An invalid configuration: the file and at least one [`Problem`].
///
/// `Display` prints one problem per line:
/// `/etc/lsrecd/config.toml:14:11: schedule[1].channel: "studio-z" is not a [[channel]] id or label (known: studio-a)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    file: PathBuf,
    problems: Vec<Problem>,
}

impl ConfigError {
    pub(crate) fn new(file: &Path, problems: Vec<Problem>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            problems,
        }
    }

    /// A problem with the file as a whole (it cannot be read).
    pub(crate) fn unreadable(file: &Path, message: String) -> ConfigError {
        ConfigError::new(
            file,
            vec![Problem {
                line: None,
                column: None,
                key: None,
                message,
            }],
        )
    }

    /// The configuration file the problems are in.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The problems, in file order where they have a position.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(&located(&self.file, p))?;
        }
        Ok(())
    }
}

/// `FILE:LINE:COL: KEY: MESSAGE` (the position and key when known).
pub(crate) fn located(file: &Path, p: &Problem) -> String {
    let mut out = file.display().to_string();
    if let (Some(line), Some(column)) = (p.line, p.column) {
        out.push_str(&format!(":{line}:{column}"));
    }
    if let Some(key) = &p.key {
        out.push_str(&format!(": {key}"));
    }
    out.push_str(&format!(": {}", p.message));
    out
}

impl std::error::Error for ConfigError {}

/// Maps byte offsets of one document to 1-based line and column.
pub(crate) struct Positions<'a> {
    text: &'a str,
}

impl<'a> Positions<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Positions { text }
    }

    /// 1-based (line, column) of byte offset `at`, columns counted in characters.
    pub(crate) fn line_column(&self, at: usize) -> (usize, usize) {
        let mut at = at.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// A problem at byte range `span`.
    pub(crate) fn problem(
        &self,
        span: Range<usize>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> Problem {
        let (line, column) = self.line_column(span.start);
        Problem {
            line: Some(line),
            column: Some(column),
            key,
            message: message.into(),
        }
    }
}

/// Keys whose values are secret: messages about them never quote the value.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    matches!(last, "access_key" | "secret_key" | "token")
}

/// Turns a TOML syntax or type error into a [`Problem`], finding the key it is about from the
/// document's spans and rewording serde's vocabulary for people who write TOML.
pub(crate) fn from_toml(text: &str, error: &toml::de::Error) -> Problem {
    let positions = Positions::new(text);
    let at = error.span().map_or(0, |s| s.start);
    let (document, syntax_ok) = match DeTable::parse(text) {
        Ok(doc) => (doc, true),
        Err(_) => (DeTable::parse_recoverable(text).0, false),
    };
    let key = if syntax_ok {
        key_at(document.get_ref(), at, "")
    } else {
        // A syntax error: name the key on the same line, if there is one before the error.
        let (line, _) = positions.line_column(at);
        key_on_line(document.get_ref(), at, line, &positions, "").map(|(_, k)| k)
    };
    let mut message = reword(error.message());
    if message.ends_with("expected an array of tables")
        && let Some(k) = key.as_deref().filter(|k| !k.contains('.'))
    {
        message.push_str(&format!(" (write [[{k}]] before each entry)"));
    }
    if !syntax_ok {
        message = format!("TOML syntax error: {message}");
    }
    if key.as_deref().is_some_and(is_secret_key) && message.starts_with("invalid type") {
        message = "invalid type, expected a string".to_string();
    }
    positions.problem(at..at, key, message)
}

fn reword(message: &str) -> String {
    let mut m = message.trim().to_string();
    if let Some(i) = m.find("expected struct Raw") {
        m.truncate(i);
        m.push_str("expected a table");
    }
    if m == "duplicate key" {
        m.push_str(" (each key and [table] may be defined only once)");
    }
    m.replace("expected a sequence", "expected an array of tables")
        .replace("invalid type: map", "invalid type: table")
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn contains(span: &Range<usize>, at: usize) -> bool {
    span.contains(&at) || span.start == at
}

/// The deepest key whose name or value covers byte offset `at`.
fn key_at(table: &DeTable<'_>, at: usize, prefix: &str) -> Option<String> {
    for (k, v) in table.iter() {
        let path = join(prefix, k.get_ref());
        if contains(&k.span(), at) {
            return Some(path);
        }
        if let Some(found) = key_in_value(v.get_ref(), at, &path) {
            return Some(found);
        }
        if contains(&v.span(), at) {
            return Some(path);
        }
    }
    None
}

fn key_in_value(value: &DeValue<'_>, at: usize, path: &str) -> Option<String> {
    match value {
        DeValue::Table(t) => key_at(t, at, path),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let item_path = format!("{path}[{i}]");
            key_in_value(item.get_ref(), at, &item_path)
                .or_else(|| contains(&item.span(), at).then(|| item_path.clone()))
        }),
        _ => None,
    }
}

/// The last key that starts on `line` at or before `at`: `(start, path)`.
fn key_on_line(
    table: &DeTable<'_>,
    at: usize,
    line: usize,
    positions: &Positions<'_>,
    prefix: &str,
) -> Option<(usize, String)> {
    let mut best: Option<(usize, String)> = None;
    let mut consider = |candidate: Option<(usize, String)>| {
        if let Some(c) = candidate
            && best.as_ref().is_none_or(|b| c.0 >= b.0)
        {
            best = Some(c);
        }
    };
    for (k, v) in table.iter() {
        let path = join(prefix, k.get_ref());
        let start = k.span().start;
        if start <= at && positions.line_column(start).0 == line {
            consider(Some((start, path.clone())));
        }
        match v.get_ref() {
            DeValue::Table(t) => consider(key_on_line(t, at, line, positions, &path)),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let DeValue::Table(t) = item.get_ref() {
                        consider(key_on_line(t, at, line, positions, &format!("{path}[{i}]")));
                    }
                }
            }
            _ => {}
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let p = Positions::new("a = 1\nbé = \"x\"\n");
        assert_eq!(p.line_column(0), (1, 1));
        assert_eq!(p.line_column(4), (1, 5));
        assert_eq!(p.line_column(6), (2, 1));
        // "bé = " is 6 bytes but 5 characters: the value starts in column 6.
        assert_eq!(p.line_column(12), (2, 6));
        assert_eq!(p.line_column(999), (3, 1));
    }

    #[test]
    fn display_prints_file_line_column_key_and_message_one_problem_per_line() {
        let e = ConfigError::new(
            Path::new("/etc/lsrecd/config.toml"),
            vec![
                Problem {
                    line: Some(14),
                    column: Some(11),
                    key: Some("schedule[1].channel".into()),
                    message: "\"studio-z\" is not a [[channel]] id or label".into(),
                },
                Problem {
                    line: None,
                    column: None,
                    key: None,
                    message: "whole file".into(),
                },
            ],
        );
        assert_eq!(
            e.to_string(),
            "/etc/lsrecd/config.toml:14:11: schedule[1].channel: \"studio-z\" is not a \
             [[channel]] id or label\n/etc/lsrecd/config.toml: whole file"
        );
    }

    #[test]
    fn secret_keys_are_recognised_by_their_last_component() {
        assert!(is_secret_key("api.secret_key"));
        assert!(is_secret_key("api.access_key"));
        assert!(is_secret_key("callback.token"));
        assert!(!is_secret_key("api.secret_key_file"));
    }
}
