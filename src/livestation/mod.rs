//! The Live Station API: request signing, the JSON model, the client and its errors.
//!
//! - [`sign`]: signature v2 as a pure function.
//! - [`model`]: tolerant parsing (and, for the emulator, writing) of the API's JSON.
//! - [`client`]: typed calls over HTTPS with timeouts, region prefix and headers.
//! - [`api`]: the [`LiveStation`] trait the engine calls, implemented by the client and by the
//!   in-memory double of [`memory`].
//! - [`error`]: one classification of any failed call into what callers branch on, by
//!   [`codes`]: the table of every published error code.
//! - `ratelimit` and `skew`: the client's shared rate limit and gateway clock estimate.

pub mod api;
pub mod client;
pub mod codes;
pub mod error;
pub mod memory;
pub mod model;
mod ratelimit;
pub mod sign;
mod skew;

pub use api::LiveStation;
pub use client::{
    ApiStats, Client, ClientBuildError, ClientConfig, Credentials, Listing, ListingProgress,
    Operation, Permit, Region, Reply, ReplyMeta, Sent,
};
pub use error::{ApiError, Refusal};
pub use model::{
    Channel, ChannelPage, ChannelRef, ChannelStatus, ListedPage, PageDigest, PageShape, Record,
    RecordSet, RecordStatus,
};
pub use ratelimit::urgently;
pub use skew::WARN_THRESHOLD as SKEW_WARN_THRESHOLD;
