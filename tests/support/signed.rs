//! Talking to an emulator with plain HTTP: signature v2 written again from the documented
//! string to sign (ARCHITECTURE.md §11: `METHOD target\ntimestamp\naccessKey`, HMAC-SHA256,
//! Base64), independently of
//! `lsrecd::livestation::sign`, and a small signed caller.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderMap;
use serde_json::Value;
use sha2::Sha256;

/// `Base64(HMAC-SHA256(secret, "METHOD URI\nTIMESTAMP\nACCESS_KEY"))`.
pub fn independent_signature(
    secret: &str,
    method: &str,
    uri: &str,
    timestamp: &str,
    access: &str,
) -> String {
    let message = [method, " ", uri, "\n", timestamp, "\n", access].concat();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The current wall clock in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// An HTTP client for tests (installs the TLS crypto provider reqwest needs to build).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("test client")
}

/// One answer, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

/// Signs and sends requests the way the documentation describes.
#[derive(Clone)]
pub struct Signed {
    pub client: reqwest::Client,
    pub base: String,
    pub access: String,
    pub secret: String,
    /// `x-ncp-region_code`, or `None` to leave it out.
    pub region: Option<String>,
    /// Added to the wall clock for the timestamp header.
    pub skew_ms: i64,
}

impl Signed {
    /// A KR caller with the given keys.
    pub fn new(base: &str, access: &str, secret: &str) -> Self {
        Signed {
            client: http_client(Duration::from_secs(10)),
            base: base.trim_end_matches('/').to_string(),
            access: access.to_string(),
            secret: secret.to_string(),
            region: Some("KR".to_string()),
            skew_ms: 0,
        }
    }

    /// A request builder for `method target` with the auth and region headers set.
    pub fn request(&self, method: reqwest::Method, target: &str) -> reqwest::RequestBuilder {
        let ts = (now_ms() + self.skew_ms).to_string();
        let sig = independent_signature(&self.secret, method.as_str(), target, &ts, &self.access);
        let mut rb = self
            .client
            .request(method, format!("{}{}", self.base, target))
            .header("x-ncp-apigw-timestamp", ts)
            .header("x-ncp-iam-access-key", &self.access)
            .header("x-ncp-apigw-signature-v2", sig)
            .header("Content-Type", "application/json");
        if let Some(r) = &self.region {
            rb = rb.header("x-ncp-region_code", r);
        }
        rb
    }

    pub async fn send(&self, method: reqwest::Method, target: &str, body: Option<&Value>) -> Reply {
        let mut rb = self.request(method, target);
        if let Some(b) = body {
            rb = rb.body(b.to_string());
        }
        read(rb.send().await.expect("request sent")).await
    }

    pub async fn get(&self, target: &str) -> Reply {
        self.send(reqwest::Method::GET, target, None).await
    }

    pub async fn put(&self, target: &str) -> Reply {
        self.send(reqwest::Method::PUT, target, None).await
    }

    pub async fn post(&self, target: &str, body: &Value) -> Reply {
        self.send(reqwest::Method::POST, target, Some(body)).await
    }
}

/// Reads a whole answer.
pub async fn read(r: reqwest::Response) -> Reply {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body read");
    Reply {
        status,
        headers,
        text,
    }
}
