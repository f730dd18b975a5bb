//! The Live Station API: request signing, the JSON model, the client and its errors.
//!
//! - [`sign`]: signature v2 as a pure function.
//! - [`model`]: tolerant parsing (and, for the emulator, writing) of the API's JSON.
//! - [`client`]: typed calls over HTTPS with timeouts, region prefix and headers.
//! - [`error`]: one classification of any failed call into what callers branch on.

pub mod client;
pub mod error;
pub mod model;
pub mod sign;

pub use client::{Client, Credentials, Region};
pub use error::ApiError;
pub use model::{Channel, ChannelStatus, Record, RecordStatus};
