//! Prometheus text exposition read by the reference parser: `prometheus_client.parser` of the
//! Python client library (the `prometheus-client` package on PyPI, `python3-prometheus-client`
//! in Debian; `.ci/install-tools` installs it), so a test checks what a scraper reads, not what a
//! parser of our own happens to accept. Without it, [`parser`] says the test is skipped (unless
//! `LSRECD_REQUIRE_PROMETHEUS_PARSER=1`, which `.ci/run` sets).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::tools;

/// Parses stdin with `text_string_to_metric_families` and prints the families as JSON. Values
/// are printed with `repr` because JSON has no spelling for infinities and NaN.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = []
for f in text_string_to_metric_families(sys.stdin.read()):
    families.append({
        "name": f.name,
        "type": f.type,
        "help": f.documentation,
        "samples": [
            {"name": s.name, "labels": dict(s.labels), "value": repr(float(s.value))}
            for s in f.samples
        ],
    })
json.dump(families, sys.stdout)
"#;

/// One metric family as the parser read it. For a counter, `name` is the family name without
/// `_total` (the samples keep it), as the parser reports it.
#[derive(Clone, Debug, Deserialize)]
pub struct Family {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// One sample: its full name, its labels and its value.
#[derive(Clone, Debug, Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "float_text")]
    pub value: f64,
}

fn float_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

/// The reference parser, once `python3` has shown that it can import it.
#[derive(Clone, Copy, Debug)]
pub struct Parser(());

/// The parser, or `None` after saying that the running test skips (a failure where
/// `LSRECD_REQUIRE_PROMETHEUS_PARSER=1`).
pub fn parser() -> Option<Parser> {
    probe()
        .map_err(|why| tools::PROMETHEUS_PARSER.skip(&why))
        .ok()
}

/// The parser, or why `python3` cannot import it.
pub fn probe() -> Result<Parser, String> {
    let out = Command::new("python3")
        .args(["-c", "import prometheus_client.parser"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("python3 could not be run: {e}"))?;
    if out.status.success() {
        return Ok(Parser(()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(stderr
        .lines()
        .last()
        .unwrap_or("python3 could not import it")
        .trim()
        .to_owned())
}

impl Parser {
    /// Parses `text`; fails the test if the parser rejects it.
    pub fn parse(self, text: &str) -> Vec<Family> {
        let mut child = Command::new("python3")
            .args(["-c", PARSER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 ({e})"));
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(text.as_bytes())
            .expect("the text reaches the parser");
        let output = child.wait_with_output().expect("python3 runs to its end");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "the Prometheus parser rejected the text: {stderr}\n{text}"
        );
        serde_json::from_slice(&output.stdout).expect("the parser prints JSON")
    }
}

/// Every sample of `families`, flattened.
pub fn samples(families: &[Family]) -> Vec<&Sample> {
    families.iter().flat_map(|f| &f.samples).collect()
}

/// The value of the sample named `name` with exactly the labels `labels`; fails if there is none.
pub fn value(families: &[Family], name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples(families)
        .into_iter()
        .find(|s| s.name == name && s.labels == wanted)
        .unwrap_or_else(|| panic!("no {name}{labels:?} in {families:#?}"))
        .value
}
