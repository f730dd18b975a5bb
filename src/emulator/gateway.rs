//! The API Gateway in front of Live Station: signature v2 verification and the gateway's own
//! error answers (ARCHITECTURE.md §11), plus the headers every answer carries.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::livestation::sign;

/// Header names of signature v2.
pub(crate) const TIMESTAMP: &str = "x-ncp-apigw-timestamp";
pub(crate) const ACCESS_KEY: &str = "x-ncp-iam-access-key";
pub(crate) const SIGNATURE: &str = "x-ncp-apigw-signature-v2";
/// The trace id header every answer carries.
pub(crate) const TRACE_ID: &str = "x-ncp-trace-id";

/// The gateway rejects timestamps this far (or farther) from its clock.
const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// Why the gateway refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// One of the three headers is absent or empty.
    Missing,
    /// Unknown access key, bad signature, or an unreadable timestamp.
    Invalid,
    /// The timestamp is 5 minutes or more away from the gateway clock.
    Expired,
}

impl AuthFailure {
    fn details(self) -> &'static str {
        match self {
            AuthFailure::Missing => "Authentication information are missing.",
            AuthFailure::Invalid => "Invalid authentication information.",
            AuthFailure::Expired => "Expired timestamp.",
        }
    }
}

/// The keys the gateway accepts.
pub(crate) struct Keys {
    pub(crate) access_key: String,
    pub(crate) secret_key: crate::secret::Secret,
}

/// Checks signature v2 over `METHOD target\ntimestamp\naccessKey`, where `target` is the request
/// target exactly as received.
pub(crate) fn authenticate(
    keys: &Keys,
    headers: &HeaderMap,
    method: &str,
    target: &str,
    now_ms: i64,
) -> Result<(), AuthFailure> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    };
    let (Some(timestamp), Some(access_key), Some(signature)) =
        (get(TIMESTAMP), get(ACCESS_KEY), get(SIGNATURE))
    else {
        return Err(AuthFailure::Missing);
    };
    let ts: i64 = timestamp.parse().map_err(|_| AuthFailure::Invalid)?;
    if now_ms.abs_diff(ts) >= MAX_SKEW_MS as u64 {
        return Err(AuthFailure::Expired);
    }
    if access_key != keys.access_key {
        return Err(AuthFailure::Invalid);
    }
    let expected = sign::sign(keys.secret_key.expose(), method, target, ts, access_key);
    if expected != signature {
        return Err(AuthFailure::Invalid);
    }
    Ok(())
}

/// A gateway error: `{"error":{"errorCode":"<code>","message":..,"details":..}}`.
pub(crate) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    details: Option<&str>,
) -> Response {
    let mut e = json!({ "errorCode": code, "message": message });
    if let Some(d) = details {
        e["details"] = json!(d);
    }
    (status, axum::Json(json!({ "error": e }))).into_response()
}

/// 401 Authentication Failed with the `details` of the failure.
pub(crate) fn unauthorized(f: AuthFailure) -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "200",
        "Authentication Failed",
        Some(f.details()),
    )
}

/// 404 for a path the gateway does not route.
pub(crate) fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "300",
        "Not Found Exception",
        Some("URL not found."),
    )
}

/// The body of a 5xx the gateway or its backends send for `status`.
pub(crate) fn server_error(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status {
        500 => (
            code,
            axum::Json(
                json!({"error":{"errorCode":250016,"message":"Server error","errorName":"INTERNAL_SERVER_ERROR"}}),
            ),
        )
            .into_response(),
        502 => bad_gateway(),
        503 => error(code, "500", "Endpoint Error", Some("Endpoint connection failed.")),
        504 => error(code, "510", "Endpoint Timeout", Some("Endpoint read timed out.")),
        _ => error(code, "900", "Unexpected Error", None),
    }
}

/// The HTML page a proxy in front of the gateway answers when the backend is gone.
pub(crate) fn bad_gateway() -> Response {
    (
        StatusCode::BAD_GATEWAY,
        [(header::CONTENT_TYPE, "text/html")],
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
    )
        .into_response()
}

/// 429 from the gateway, with `Retry-After` in seconds when given.
pub(crate) fn rate_limited(retry_after_secs: Option<u64>) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "420",
        "Rate Limited",
        Some("Request rate limit exceeded."),
    );
    if let Some(s) = retry_after_secs {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// An HTTP date (RFC 9110 IMF-fixdate) for an epoch-millisecond instant.
pub(crate) fn http_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// A fresh trace id, 32 hex digits like the real ones.
pub(crate) fn trace_id() -> String {
    use rand::RngExt as _;
    format!("{:032x}", rand::rng().random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCESS: &str = "NCPTESTACCESSKEY0001";
    const SECRET: &str = "NCPTESTSECRETKEY00000000000000000000SK01";
    const TARGET: &str = "/api/v2/channels?pageNo=1&pageSizeNo=100&channelStatus=PUBLISHING";
    const TS: i64 = 1755151260000;

    fn keys() -> Keys {
        Keys {
            access_key: ACCESS.into(),
            secret_key: crate::secret::Secret::new(SECRET),
        }
    }

    fn headers(ts: &str, key: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in [(TIMESTAMP, ts), (ACCESS_KEY, key), (SIGNATURE, sig)] {
            if !v.is_empty() {
                h.insert(n, HeaderValue::from_str(v).unwrap());
            }
        }
        h
    }

    #[test]
    fn documented_vector_is_accepted() {
        let h = headers(
            "1755151260000",
            ACCESS,
            "Q0X8mah8zqsBHBY2P49QPfPGxe0UmuFPvkuja2otphY=",
        );
        assert_eq!(authenticate(&keys(), &h, "GET", TARGET, TS + 1000), Ok(()));
    }

    #[test]
    fn reordered_query_is_an_invalid_signature() {
        let h = headers(
            "1755151260000",
            ACCESS,
            "Q0X8mah8zqsBHBY2P49QPfPGxe0UmuFPvkuja2otphY=",
        );
        let reordered = "/api/v2/channels?channelStatus=PUBLISHING&pageNo=1&pageSizeNo=100";
        assert_eq!(
            authenticate(&keys(), &h, "GET", reordered, TS),
            Err(AuthFailure::Invalid)
        );
    }

    #[test]
    fn skew_of_five_minutes_is_expired_and_just_under_is_accepted() {
        let sig = sign::sign(SECRET, "GET", TARGET, TS, ACCESS);
        let h = headers("1755151260000", ACCESS, &sig);
        let k = keys();
        assert_eq!(authenticate(&k, &h, "GET", TARGET, TS + 299_999), Ok(()));
        assert_eq!(authenticate(&k, &h, "GET", TARGET, TS - 299_999), Ok(()));
        assert_eq!(
            authenticate(&k, &h, "GET", TARGET, TS + 300_000),
            Err(AuthFailure::Expired)
        );
        assert_eq!(
            authenticate(&k, &h, "GET", TARGET, TS - 300_000),
            Err(AuthFailure::Expired)
        );
    }

    #[test]
    fn any_missing_header_is_missing_and_a_wrong_key_is_invalid() {
        let sig = sign::sign(SECRET, "GET", TARGET, TS, ACCESS);
        let k = keys();
        for h in [
            headers("", ACCESS, &sig),
            headers("1755151260000", "", &sig),
            headers("1755151260000", ACCESS, ""),
        ] {
            assert_eq!(
                authenticate(&k, &h, "GET", TARGET, TS),
                Err(AuthFailure::Missing)
            );
        }
        let other = sign::sign(SECRET, "GET", TARGET, TS, "OTHER");
        let h = headers("1755151260000", "OTHER", &other);
        assert_eq!(
            authenticate(&k, &h, "GET", TARGET, TS),
            Err(AuthFailure::Invalid)
        );
        let h = headers("yesterday", ACCESS, &sig);
        assert_eq!(
            authenticate(&k, &h, "GET", TARGET, TS),
            Err(AuthFailure::Invalid)
        );
    }

    #[test]
    fn http_date_is_imf_fixdate_in_gmt() {
        assert_eq!(http_date(1755151260000), "Thu, 14 Aug 2025 06:01:00 GMT");
    }
}
