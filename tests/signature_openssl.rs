//! The client's signature v2, checked by code not written here: `openssl dgst -sha256 -hmac`
//! computes the HMAC of what the gateway signs for a GET with a query string, `base64` encodes
//! it, and the header the client actually sent must be that. The other signature tests compare
//! with vectors and a re-implementation of the same reading; this one shares nothing with them.
//!
//! Skipped with a reason where `openssl` is missing (a failure with `LSRECD_REQUIRE_OPENSSL=1`).

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use tokio::net::TcpListener;

use lsrecd::livestation::{Client, ClientConfig, Credentials, Region};
use lsrecd::secret::Secret;
use support::tools;

const ACCESS: &str = "OPENSSL-CHECK-ACCESS";
const SECRET: &str = "openssl-check-secret-+/=9876";

/// What the fake gateway received: request target and headers.
type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

async fn record(State(seen): State<Seen>, request: Request) -> (StatusCode, &'static str) {
    let target = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_default();
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((target, request.headers().clone()));
    (StatusCode::OK, r#"{"content":[],"total":0}"#)
}

/// `printf %s MESSAGE | openssl dgst -sha256 -hmac KEY -binary | base64`, or `None` after
/// saying why the test skips.
fn openssl_signature(key: &str, message: &str) -> Option<String> {
    let digest = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key, "-binary"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let mut digest = match digest {
        Ok(child) => child,
        Err(e) => {
            tools::OPENSSL.skip(&format!("openssl could not be run: {e}"));
            return None;
        }
    };
    digest
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(message.as_bytes())
        .expect("openssl reads the message");
    let mac = digest.wait_with_output().expect("openssl runs to its end");
    assert!(mac.status.success(), "openssl dgst failed");
    assert_eq!(mac.stdout.len(), 32, "a SHA-256 HMAC is 32 bytes");
    let mut base64 = Command::new("base64")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("base64 (coreutils) runs");
    base64
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(&mac.stdout)
        .expect("base64 reads the MAC");
    let encoded = base64.wait_with_output().expect("base64 runs to its end");
    assert!(encoded.status.success(), "base64 failed");
    Some(
        String::from_utf8(encoded.stdout)
            .expect("base64 prints ASCII")
            .trim()
            .to_owned(),
    )
}

#[tokio::test]
async fn the_signature_of_a_get_with_a_query_is_the_one_openssl_computes() {
    let seen: Seen = Arc::default();
    let app = Router::new().fallback(record).with_state(Arc::clone(&seen));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let address = listener.local_addr().expect("bound");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::new(ClientConfig {
        endpoint: format!("http://{address}"),
        region: Region::Kr,
        credentials: Credentials {
            access_key: Secret::new(ACCESS.to_owned()),
            secret_key: Secret::new(SECRET.to_owned()),
        },
        timeout: Duration::from_secs(5),
        max_rps: 50.0,
    })
    .expect("client builds");
    client
        .list_channels_page(3, 100)
        .await
        .expect("the fake answers an empty page");
    server.abort();

    let (target, headers) = seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop()
        .expect("one request reached the fake");
    assert_eq!(target, "/api/v2/channels?pageNo=3&pageSizeNo=100");
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_owned()
    };
    assert_eq!(header("x-ncp-iam-access-key"), ACCESS);
    let timestamp = header("x-ncp-apigw-timestamp");
    let message = format!("GET {target}\n{timestamp}\n{ACCESS}");
    let Some(expected) = openssl_signature(SECRET, &message) else {
        return;
    };
    assert_eq!(header("x-ncp-apigw-signature-v2"), expected);
}
