//! The signed Live Station HTTP client.

/// API region: selects the path prefix and the `x-ncp-region_code` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Region {
    #[serde(rename = "KR")]
    Kr,
    #[serde(rename = "FKR")]
    Fkr,
}

impl Region {
    /// `/api/v2` for KR, `/api/fin-v2` for FKR.
    pub fn prefix(self) -> &'static str {
        match self {
            Region::Kr => "/api/v2",
            Region::Fkr => "/api/fin-v2",
        }
    }

    /// The `x-ncp-region_code` header value.
    pub fn code(self) -> &'static str {
        match self {
            Region::Kr => "KR",
            Region::Fkr => "FKR",
        }
    }

    /// Parses `KR` / `FKR` (case-insensitive).
    pub fn parse(s: &str) -> Option<Region> {
        match s.to_ascii_uppercase().as_str() {
            "KR" => Some(Region::Kr),
            "FKR" => Some(Region::Fkr),
            _ => None,
        }
    }
}

/// Access key and secret key.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub access_key: crate::secret::Secret,
    pub secret_key: crate::secret::Secret,
}

/// The client (filled in by the client module's implementation).
#[derive(Clone, Debug)]
pub struct Client {}
