//! Signature v2 of the NCP API Gateway, as a pure function.
//!
//! `signature = Base64(HMAC-SHA256(secret, "{METHOD} {URI}\n{TIMESTAMP}\n{ACCESS_KEY}"))`
//! where URI is the request target exactly as sent (path plus `?query`, no scheme or host).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The string the gateway signs: method, request target, timestamp and access key.
pub fn string_to_sign(
    method: &str,
    path_and_query: &str,
    timestamp_ms: i64,
    access_key: &str,
) -> String {
    format!("{method} {path_and_query}\n{timestamp_ms}\n{access_key}")
}

/// Computes the `x-ncp-apigw-signature-v2` header value.
///
/// `path_and_query` must be byte-for-byte the request target that is sent: the gateway does no
/// canonicalisation, so a reordered query string yields a different signature.
pub fn sign(
    secret_key: &str,
    method: &str,
    path_and_query: &str,
    timestamp_ms: i64,
    access_key: &str,
) -> String {
    let message = string_to_sign(method, path_and_query, timestamp_ms, access_key);
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret_key.as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(message.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCESS: &str = "NCPTESTACCESSKEY0001";
    const SECRET: &str = "NCPTESTSECRETKEY00000000000000000000SK01";

    #[test]
    fn vector_1_start_record_matches_the_documented_signature() {
        let sig = sign(
            SECRET,
            "PUT",
            "/api/v2/channels/ls-20250814000000-PZohi/startRecord",
            1755151200000,
            ACCESS,
        );
        assert_eq!(sig, "vLdWDztji3lzo/IAgGcLBcEGmo5Ge3iwX2xBcGLvRKU=");
    }

    #[test]
    fn vector_2_channel_list_with_query_matches_the_documented_signature() {
        let sig = sign(
            SECRET,
            "GET",
            "/api/v2/channels?pageNo=1&pageSizeNo=100&channelStatus=PUBLISHING",
            1755151260000,
            ACCESS,
        );
        assert_eq!(sig, "Q0X8mah8zqsBHBY2P49QPfPGxe0UmuFPvkuja2otphY=");
    }

    #[test]
    fn reordered_query_parameters_change_the_signature() {
        let sig = sign(
            SECRET,
            "GET",
            "/api/v2/channels?channelStatus=PUBLISHING&pageNo=1&pageSizeNo=100",
            1755151260000,
            ACCESS,
        );
        assert_eq!(sig, "YMfnef8i5HgOEOmP+yz7CayLIMklaaa3gzKcl8VP9OY=");
    }

    #[test]
    fn vector_3_fin_region_records_matches_the_documented_signature() {
        let sig = sign(
            SECRET,
            "GET",
            "/api/fin-v2/channels/ls-20250814000000-PZohi/records",
            1755151320000,
            ACCESS,
        );
        assert_eq!(sig, "6eFwKtz3dhJX+3vqtp6gs4UbtB1g1sQgLCsO29yU3g4=");
    }

    #[test]
    fn string_to_sign_uses_single_space_and_lf_without_trailing_newline() {
        assert_eq!(string_to_sign("GET", "/a?b=1", 5, "K"), "GET /a?b=1\n5\nK");
    }
}
