//! High availability (`[ha]`): several lsrecd instances observe the same channels, each keeping
//! its own database current, and only the holder of a lease on an etcd key acts.
//!
//! - [`etcd`]: the etcd v3 calls used (leases, range, transactions) through etcd's JSON gateway.
//! - [`elector`]: the lease, the campaign, the fence checked before every state-changing call,
//!   and the hand-over notes; it is the engine's [`crate::engine::fence::Leadership`].
//!
//! `docs/high-availability.md` describes the topology, what etcd must provide, what happens
//! when each part fails, and the limits.

pub mod elector;
pub mod etcd;

pub use elector::Elector;
