//! The Live Station API: request signing, the JSON model, the client and its errors.
//!
//! - [`sign`]: signature v2 as a pure function.
//! - [`model`]: tolerant parsing (and, for the emulator, writing) of the API's JSON.
//! - [`client`]: typed calls over HTTPS with timeouts, region prefix and headers.
//! - [`error`]: one classification of any failed call into what callers branch on.
//! - `ratelimit` and `skew`: the client's shared rate limit and gateway clock estimate.

pub mod client;
pub mod error;
pub mod model;
mod ratelimit;
pub mod sign;
mod skew;

pub use client::{
    ApiStats, Client, ClientBuildError, ClientConfig, Credentials, Operation, Region, Reply,
    ReplyMeta,
};
pub use error::ApiError;
pub use model::{Channel, ChannelStatus, Record, RecordStatus};
