//! Who may act: the fence checked right before every state-changing call, and the leadership
//! the engine follows.
//!
//! A single lsrecd acts alone ([`Alone`]: every check passes, nothing is asked of anyone). With
//! `[ha]`, several instances observe the same channels and only the holder of an etcd lease acts
//! (`crate::ha`); the engine sees that through [`Leadership`]:
//!
//! - [`Fence::check`] runs right before `startRecord`, `stopRecord` or an upload leaves, after
//!   the intent is journaled. It confirms that this instance still leads, and for a start leaves
//!   a *hand-over note* on the channel in the same step, so that whoever leads next knows a
//!   request may be in flight there. A call that fails the check is not sent.
//! - [`Leadership::role`] says whether to act at all this tick: a standby observes, follows
//!   records and keeps its database current, and sends nothing.
//! - [`Leadership::handover`] reads the notes. A new leader turns each note on a channel it does
//!   not own into a start that may still land (ARCHITECTURE.md §6.2), settled by its first
//!   observation exactly as a restart settles its journal; a standby uses them to know which
//!   running recordings are lsrecd's.
//! - [`Leadership::keep_notes`] keeps one note per channel the leader owns a recording on or is
//!   starting, and no other.
//!
//! Both traits are object safe (the engine holds an `Arc<dyn Leadership>`), so their futures are
//! boxed.

use std::future::Future;
use std::pin::Pin;

use crate::store::{Mutation, Trigger};

/// A boxed future, as the traits here return.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A state-changing call about to be sent.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub operation: Mutation,
    pub channel_id: &'a str,
    /// The claim behind it (a start's note carries it to the next leader).
    pub trigger: &'a Trigger,
    /// Engine time (epoch ms) of the call.
    pub at: i64,
}

/// Why a call was not sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fenced {
    /// This instance does not hold the lease.
    #[error("this instance is not the leader")]
    NotLeader,
    /// The lease was not renewed recently enough to be sure nobody else has taken over.
    #[error(
        "this instance's lease was last renewed {ago_ms} ms ago; it stops acting after {limit_ms} ms"
    )]
    Lapsed { ago_ms: u64, limit_ms: u64 },
    /// etcd says the leader key is no longer this instance's.
    #[error("the leader key is no longer this instance's")]
    Superseded,
    /// etcd could not be asked (unreachable, slow, or an answer that makes no sense).
    #[error("etcd could not confirm the leadership: {0}")]
    Unconfirmed(String),
}

/// The check right before every state-changing call.
pub trait Fence: Send + Sync {
    /// Whether this instance believes it may act, from what it knows locally (no I/O). `false`
    /// skips a call before anything is journaled.
    fn may_act(&self) -> bool;

    /// Confirms, right before `call` is sent, that this instance still leads; for a start, also
    /// leaves the channel's hand-over note. `Err` means: do not send.
    fn check<'a>(&'a self, call: Call<'a>) -> Pending<'a, Result<(), Fenced>>;
}

/// What this instance may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// No `[ha]`: the only instance, always acting.
    Alone,
    /// Holds the lease and acts. `term` names this holding (the leader key's create revision in
    /// etcd): a new term needs a new takeover.
    Leader { term: i64 },
    /// Observes and keeps its database current; sends nothing.
    Standby,
}

/// A channel on which a leader owns a recording, or has sent (or is about to send) a start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub channel_id: String,
    /// The claim the recording serves.
    pub trigger: Trigger,
    /// When the start was sent, or the recording became lsrecd's (epoch ms, the writer's clock).
    pub at: i64,
    /// The instance that wrote the note.
    pub instance: String,
}

/// What a new leader (or a standby) reads from the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handover {
    pub notes: Vec<Note>,
    /// How long before this instance could take over any earlier leader had stopped sending
    /// (ms): a leader stops acting at half its lease TTL without a renewal, and the lease
    /// lasts the whole TTL.
    pub silent_for_ms: i64,
}

/// Leadership as the engine sees it: see the module doc.
pub trait Leadership: Fence {
    /// What this instance may do now.
    fn role(&self) -> Role;

    /// Facts for the database and `lsrecd status`; `None` for a single instance.
    fn status(&self) -> Option<LeadershipStatus>;

    /// Reads the hand-over notes.
    fn handover(&self) -> Pending<'_, Result<Handover, Fenced>>;

    /// Makes the notes exactly `wanted` (by channel): missing ones are written, others deleted;
    /// notes already present are left as they are. Only a leader can change them.
    fn keep_notes<'a>(&'a self, wanted: &'a [Note]) -> Pending<'a, Result<(), Fenced>>;
}

/// This instance's view of the leadership, as `lsrecd status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeadershipStatus {
    /// This instance's name.
    pub instance: String,
    /// Whether this instance acts now.
    pub leader: bool,
    /// The instance holding the leader key, as last seen (`None`: nobody, or not known).
    pub holder: Option<String>,
    /// The holder's term (the key's create revision).
    pub term: Option<i64>,
    /// When this instance's lease was last renewed (epoch ms).
    pub lease_renewed_at: Option<i64>,
    /// Why this instance does not act, when it does not.
    pub standby_reason: Option<String>,
}

/// The single-instance leadership: always acting, nothing to hand over.
#[derive(Clone, Copy, Debug, Default)]
pub struct Alone;

impl Fence for Alone {
    fn may_act(&self) -> bool {
        true
    }

    fn check<'a>(&'a self, _call: Call<'a>) -> Pending<'a, Result<(), Fenced>> {
        Box::pin(async { Ok(()) })
    }
}

impl Leadership for Alone {
    fn role(&self) -> Role {
        Role::Alone
    }

    fn status(&self) -> Option<LeadershipStatus> {
        None
    }

    fn handover(&self) -> Pending<'_, Result<Handover, Fenced>> {
        Box::pin(async {
            Ok(Handover {
                notes: Vec::new(),
                silent_for_ms: 0,
            })
        })
    }

    fn keep_notes<'a>(&'a self, _wanted: &'a [Note]) -> Pending<'a, Result<(), Fenced>> {
        Box::pin(async { Ok(()) })
    }
}
