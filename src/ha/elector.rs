//! The elector: this instance's lease, its campaign for the leader key, the fence, and the
//! hand-over notes — [`crate::engine::fence::Leadership`] over etcd.
//!
//! # Lease and campaign
//!
//! Every instance holds a lease of `ha.lease_ttl` and renews it every third of the TTL.
//! Campaigning is one transaction: *if the leader key does not exist* (`create_revision == 0`),
//! put it with this instance's name, attached to the lease; else read it. The key's create
//! revision then names the holding (the *term*): a key deleted and created again, even by the
//! same instance, is a new term. A standby campaigns again every eighth of the TTL (at least
//! 100 ms, at most 1 s), so it takes over at most that long after the old lease expires.
//!
//! # When a leader stops acting
//!
//! A leader acts only until half the TTL after it *sent* its last successful renewal, measured
//! on the monotonic clock. etcd lets the lease expire no sooner than a whole TTL after it
//! received that renewal, so a leader cut off from etcd (a partition, etcd down) or paused
//! (SIGSTOP, a long stall) stops acting at least half a TTL before anyone else can take over —
//! and that half TTL is the margin for clock rates and for the last instant between the check
//! and the request leaving. A renewal answered with TTL 0 means the lease is gone: the
//! leadership is dropped at once. etcd being unreachable does not drop the lease: when etcd
//! answers again and the lease still exists (etcd restarts its leases' clocks when it elects a
//! leader), the same term goes on after a new takeover.
//!
//! # The fence
//!
//! Right before every `startRecord`, `stopRecord` or upload, one transaction compares the leader
//! key's create revision and value with this instance's term and name; for a start, the same
//! transaction writes the channel's hand-over note. The call is sent only if the comparison
//! held *and* the local deadline has not passed when the answer arrives.
//!
//! # Hand-over notes
//!
//! `{key}/notes/{channel_id}` = `{"trigger":…,"at":…,"instance":…}`, without a lease (they
//! outlive their writer): one per channel where the leader owns a recording or has sent a start
//! whose outcome it does not know yet. A new leader settles each by observation; a standby
//! mirrors them into `owned_recordings`. Only the leader changes them, always in a transaction
//! that checks it still holds its term.
//!
//! # Shutdown
//!
//! On SIGTERM the lease is revoked (the key disappears and a standby takes over at once), but
//! not before half a TTL after the last call the fence let through, so a new leader can count
//! on the old one's silence as it does after a crash.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::etcd::{Compare, Etcd, EtcdError, Op};
use crate::config::HaConfig;
use crate::engine::fence::{
    Call, Fence, Fenced, Handover, Leadership, LeadershipStatus, Note, Pending, Role,
};
use crate::engine::{Wake, now_ms};
use crate::service::metrics::Metrics;
use crate::store::{Mutation, Trigger};

/// Notes written or deleted per transaction (etcd allows 128 operations by default).
const NOTES_PER_TXN: usize = 64;

/// This instance's side of the leadership. Shared (`Arc`) between its [`Elector::run`] task and
/// the engine.
pub struct Elector {
    etcd: Etcd,
    instance: String,
    key: Vec<u8>,
    notes_prefix: String,
    ttl: Duration,
    state: Mutex<State>,
    metrics: Option<Metrics>,
    wake: Option<mpsc::Sender<Wake>>,
}

#[derive(Default)]
struct State {
    lease: Option<Lease>,
    /// The term this instance holds (the leader key's create revision).
    term: Option<i64>,
    /// The holder of the leader key, as last seen.
    holder: Option<Holder>,
    /// What went wrong last, for the status.
    trouble: Option<String>,
    /// The notes as this instance knows them (read at a takeover, then its own writes).
    notes: BTreeMap<String, NoteBody>,
    /// When the fence last let a call through.
    last_pass: Option<Instant>,
    /// The role the engine was last woken for.
    told: Option<Role>,
}

#[derive(Clone, Copy)]
struct Lease {
    id: i64,
    /// When the last successful grant or renewal was *sent* (monotonic).
    renewed: Instant,
    /// The same, as epoch ms (for the status).
    renewed_wall: i64,
}

#[derive(Clone)]
struct Holder {
    instance: String,
    term: i64,
    lease: i64,
}

/// A hand-over note as stored in etcd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct NoteBody {
    trigger: String,
    at: i64,
    instance: String,
}

impl Elector {
    /// An elector for `config`; nothing happens until [`Elector::run`]. `wake` is told when this
    /// instance starts or stops leading.
    pub fn new(
        config: &HaConfig,
        metrics: Option<Metrics>,
        wake: Option<mpsc::Sender<Wake>>,
    ) -> Result<Arc<Elector>, EtcdError> {
        let timeout = (config.lease_ttl / 3).min(Duration::from_secs(2));
        Ok(Arc::new(Elector {
            etcd: Etcd::new(config.etcd.clone(), timeout)?,
            instance: config.instance.clone(),
            key: config.key.as_bytes().to_vec(),
            notes_prefix: format!("{}/notes/", config.key),
            ttl: config.lease_ttl,
            state: Mutex::new(State::default()),
            metrics,
            wake,
        }))
    }

    /// Keeps the lease, campaigns and watches the leader key until `stop` resolves; then lets
    /// go of the leadership (see the module doc).
    pub async fn run(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let wait = self.step().await;
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.resign().await;
    }

    /// Half the TTL: how long a leader acts without a renewal.
    fn acting_window(&self) -> Duration {
        self.ttl / 2
    }

    fn campaign_every(&self) -> Duration {
        (self.ttl / 8).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One round: renew (or get) the lease, then campaign or check the key; returns how long
    /// until the next round.
    async fn step(&self) -> Duration {
        let lease = self.lock().lease;
        let now = Instant::now();
        match lease {
            None => {
                let sent = Instant::now();
                let sent_wall = now_ms();
                match self.etcd.grant(self.ttl.as_secs()).await {
                    Ok((id, _granted)) => {
                        let mut st = self.lock();
                        st.lease = Some(Lease {
                            id,
                            renewed: sent,
                            renewed_wall: sent_wall,
                        });
                        st.trouble = None;
                        drop(st);
                        if let Some(m) = &self.metrics {
                            m.ha_lease_renewed(sent);
                        }
                        tracing::info!(lease = id, ttl = ?self.ttl, "etcd lease granted");
                    }
                    Err(e) => self.trouble(format!("no lease: {e}")),
                }
            }
            Some(l) if now >= l.renewed + self.ttl / 3 => self.renew(l).await,
            Some(_) => {}
        }
        let (lease, term) = {
            let st = self.lock();
            (st.lease, st.term)
        };
        if let Some(l) = lease {
            match term {
                None => self.campaign(l).await,
                Some(term) => self.confirm(term).await,
            }
        }
        self.tell();
        self.next_round()
    }

    async fn renew(&self, lease: Lease) {
        let sent = Instant::now();
        let sent_wall = now_ms();
        match self.etcd.keep_alive(lease.id, self.etcd.timeout()).await {
            Ok(ttl) if ttl > 0 => {
                let mut st = self.lock();
                if let Some(l) = st.lease.as_mut().filter(|l| l.id == lease.id) {
                    l.renewed = l.renewed.max(sent);
                    l.renewed_wall = l.renewed_wall.max(sent_wall);
                }
                st.trouble = None;
                drop(st);
                if let Some(m) = &self.metrics {
                    m.ha_lease_renewed(sent);
                }
            }
            Ok(_) => {
                tracing::warn!(
                    lease = lease.id,
                    "the etcd lease has expired; leadership (if any) is dropped"
                );
                let mut st = self.lock();
                st.lease = None;
                st.term = None;
                st.trouble = Some("the lease expired before it could be renewed".into());
            }
            Err(e) => {
                tracing::warn!(error = %e, "etcd lease renewal failed");
                self.trouble(format!("lease renewal failed: {e}"));
            }
        }
    }

    /// Puts the leader key if nobody holds it; else learns who does.
    async fn campaign(&self, lease: Lease) {
        let put = Op::Put {
            key: self.key.clone(),
            value: self.instance.as_bytes().to_vec(),
            lease: lease.id,
        };
        let reply = self
            .etcd
            .txn(
                &[Compare::CreateRevision(self.key.clone(), 0)],
                &[put],
                &[Op::Get(self.key.clone())],
                self.etcd.timeout(),
            )
            .await;
        let mut st = self.lock();
        match reply {
            Ok(r) if r.succeeded => {
                tracing::info!(term = r.revision, "this instance holds the leader key");
                st.term = Some(r.revision);
                st.holder = Some(Holder {
                    instance: self.instance.clone(),
                    term: r.revision,
                    lease: lease.id,
                });
            }
            Ok(r) => match r.read.first().and_then(|kvs| kvs.first()) {
                Some(kv) if kv.lease == lease.id => {
                    // Put by an earlier round whose answer was lost.
                    st.term = Some(kv.create_revision);
                    st.holder = Some(Holder {
                        instance: self.instance.clone(),
                        term: kv.create_revision,
                        lease: lease.id,
                    });
                }
                Some(kv) => {
                    st.holder = Some(Holder {
                        instance: String::from_utf8_lossy(&kv.value).into_owned(),
                        term: kv.create_revision,
                        lease: kv.lease,
                    });
                }
                // Deleted between the comparison and the read: next round.
                None => st.holder = None,
            },
            Err(e) => {
                drop(st);
                self.trouble(format!("campaign failed: {e}"));
            }
        }
    }

    /// Checks that the leader key is still this instance's term.
    async fn confirm(&self, term: i64) {
        let reply = self
            .etcd
            .txn(
                &self.holds(term),
                &[],
                &[Op::Get(self.key.clone())],
                self.etcd.timeout(),
            )
            .await;
        match reply {
            Ok(r) if r.succeeded => {}
            Ok(r) => {
                let holder = r.read.first().and_then(|kvs| kvs.first()).map(|kv| Holder {
                    instance: String::from_utf8_lossy(&kv.value).into_owned(),
                    term: kv.create_revision,
                    lease: kv.lease,
                });
                let mut st = self.lock();
                st.holder = holder;
                drop(st);
                self.lose(term, "the leader key is no longer this instance's");
            }
            Err(e) => self.trouble(format!("leader key check failed: {e}")),
        }
    }

    /// The comparisons that hold while this instance holds `term`.
    fn holds(&self, term: i64) -> [Compare; 2] {
        [
            Compare::CreateRevision(self.key.clone(), term),
            Compare::Value(self.key.clone(), self.instance.as_bytes().to_vec()),
        ]
    }

    fn trouble(&self, what: String) {
        self.lock().trouble = Some(what);
    }

    /// Drops `term` (if still held) and tells the engine.
    fn lose(&self, term: i64, why: &str) {
        let mut st = self.lock();
        if st.term == Some(term) {
            tracing::warn!(term, "leadership lost: {why}");
            st.term = None;
            st.trouble = Some(why.to_string());
        }
        drop(st);
        self.tell();
    }

    /// When the next round is due: the next renewal, the end of the acting window (to tell the
    /// engine at once), or the next campaign.
    fn next_round(&self) -> Duration {
        let st = self.lock();
        let now = Instant::now();
        let mut next = now + self.campaign_every();
        if let Some(l) = st.lease {
            next = next.min(l.renewed + self.ttl / 3);
            if st.term.is_some() {
                let end = l.renewed + self.acting_window();
                if end > now {
                    next = next.min(end);
                } else {
                    // Lapsed: keep trying to renew, no faster than a campaign would.
                    next = now + self.campaign_every();
                }
            }
        }
        next.saturating_duration_since(now)
            .max(Duration::from_millis(10))
    }

    fn role_now(&self, st: &State) -> Role {
        match (st.lease, st.term) {
            (Some(l), Some(term)) if Instant::now() < l.renewed + self.acting_window() => {
                Role::Leader { term }
            }
            _ => Role::Standby,
        }
    }

    /// Wakes the engine when the role changed since it was last told, and updates the metrics.
    fn tell(&self) {
        let mut st = self.lock();
        let role = self.role_now(&st);
        let holder = st.holder.as_ref().map(|h| h.instance.clone());
        let changed = st.told != Some(role);
        st.told = Some(role);
        drop(st);
        if let Some(m) = &self.metrics {
            m.set_ha_role(
                &self.instance,
                matches!(role, Role::Leader { .. }),
                holder.as_deref(),
            );
        }
        if changed && let Some(w) = &self.wake {
            let _ = w.try_send(Wake::Leadership);
        }
    }

    /// Lets go at shutdown: waits out the acting window after the last call the fence let
    /// through, then revokes the lease.
    async fn resign(&self) {
        let (lease, last_pass, term) = {
            let mut st = self.lock();
            let out = (st.lease, st.last_pass, st.term);
            // Nothing more passes the fence from here on.
            st.term = None;
            out
        };
        let Some(lease) = lease else {
            return;
        };
        if term.is_some()
            && let Some(pass) = last_pass
        {
            tokio::time::sleep_until(pass + self.acting_window()).await;
        }
        match self.etcd.revoke(lease.id).await {
            Ok(()) => tracing::info!(lease = lease.id, "etcd lease revoked"),
            Err(e) => {
                tracing::warn!(error = %e, "etcd lease not revoked; it expires by itself")
            }
        }
        self.lock().lease = None;
        self.tell();
    }

    fn note_key(&self, channel_id: &str) -> Vec<u8> {
        format!("{}{channel_id}", self.notes_prefix).into_bytes()
    }

    fn note_body(&self, trigger: &Trigger, at: i64) -> NoteBody {
        NoteBody {
            trigger: trigger.as_text(),
            at,
            instance: self.instance.clone(),
        }
    }

    /// The term and the end of the acting window, if this instance leads.
    fn leading(&self) -> Result<(i64, Instant), Fenced> {
        let st = self.lock();
        match (st.lease, st.term) {
            (Some(l), Some(term)) => Ok((term, l.renewed + self.acting_window())),
            _ => Err(Fenced::NotLeader),
        }
    }

    fn lapsed(&self, end: Instant) -> Fenced {
        let window = self.acting_window();
        let ago = Instant::now().saturating_duration_since(end - window);
        Fenced::Lapsed {
            ago_ms: ago.as_millis() as u64,
            limit_ms: window.as_millis() as u64,
        }
    }

    async fn fence(&self, call: Call<'_>) -> Result<(), Fenced> {
        let (term, end) = self.leading()?;
        let now = Instant::now();
        if now >= end {
            return Err(self.lapsed(end));
        }
        let note = (call.operation == Mutation::StartRecord)
            .then(|| self.note_body(call.trigger, call.at));
        let mut success = Vec::new();
        if let Some(body) = &note {
            success.push(Op::Put {
                key: self.note_key(call.channel_id),
                value: serde_json::to_vec(body).unwrap_or_default(),
                lease: 0,
            });
        }
        let limit = (end - now).min(self.etcd.timeout());
        match self.etcd.txn(&self.holds(term), &success, &[], limit).await {
            Ok(r) if r.succeeded => {}
            Ok(_) => {
                self.lose(term, "the leader key is no longer this instance's");
                return Err(Fenced::Superseded);
            }
            Err(e) => return Err(Fenced::Unconfirmed(e.to_string())),
        }
        // The answer may have taken long, or this process may have been paused meanwhile.
        let (_, end) = self.leading()?;
        if Instant::now() >= end {
            return Err(self.lapsed(end));
        }
        let mut st = self.lock();
        st.last_pass = Some(Instant::now());
        if let Some(body) = note {
            st.notes.insert(call.channel_id.to_string(), body);
        }
        Ok(())
    }

    async fn read_notes(&self) -> Result<Handover, Fenced> {
        let kvs = self
            .etcd
            .range_prefix(self.notes_prefix.as_bytes())
            .await
            .map_err(|e| Fenced::Unconfirmed(e.to_string()))?;
        let mut known = BTreeMap::new();
        let mut notes = Vec::new();
        for kv in kvs {
            let key = String::from_utf8_lossy(&kv.key);
            let Some(channel_id) = key.strip_prefix(&self.notes_prefix) else {
                continue;
            };
            // A note that cannot be read still says a start may be in flight there.
            let body = serde_json::from_slice::<NoteBody>(&kv.value).unwrap_or_else(|e| {
                tracing::warn!(channel_id, error = %e, "unreadable hand-over note; taken as a start of unknown claim");
                NoteBody {
                    trigger: Trigger::Reconcile.as_text(),
                    at: now_ms(),
                    instance: String::new(),
                }
            });
            notes.push(Note {
                channel_id: channel_id.to_string(),
                trigger: Trigger::parse(&body.trigger).unwrap_or(Trigger::Reconcile),
                at: body.at,
                instance: body.instance.clone(),
            });
            known.insert(channel_id.to_string(), body);
        }
        self.lock().notes = known;
        Ok(Handover {
            notes,
            silent_for_ms: self.acting_window().as_millis() as i64,
        })
    }

    async fn write_notes(&self, wanted: &[Note]) -> Result<(), Fenced> {
        let (term, _) = self.leading()?;
        let (puts, deletes) = {
            let st = self.lock();
            let puts: Vec<(String, NoteBody)> = wanted
                .iter()
                .filter(|n| !st.notes.contains_key(&n.channel_id))
                .map(|n| (n.channel_id.clone(), self.note_body(&n.trigger, n.at)))
                .collect();
            let deletes: Vec<String> = st
                .notes
                .keys()
                .filter(|c| !wanted.iter().any(|n| &n.channel_id == *c))
                .cloned()
                .collect();
            (puts, deletes)
        };
        let changes: Vec<(String, Option<NoteBody>)> = puts
            .into_iter()
            .map(|(c, b)| (c, Some(b)))
            .chain(deletes.into_iter().map(|c| (c, None)))
            .collect();
        for chunk in changes.chunks(NOTES_PER_TXN) {
            let ops: Vec<Op> = chunk
                .iter()
                .map(|(channel_id, body)| match body {
                    Some(body) => Op::Put {
                        key: self.note_key(channel_id),
                        value: serde_json::to_vec(body).unwrap_or_default(),
                        lease: 0,
                    },
                    None => Op::Delete(self.note_key(channel_id)),
                })
                .collect();
            match self
                .etcd
                .txn(&self.holds(term), &ops, &[], self.etcd.timeout())
                .await
            {
                Ok(r) if r.succeeded => {
                    let mut st = self.lock();
                    for (channel_id, body) in chunk {
                        match body {
                            Some(b) => st.notes.insert(channel_id.clone(), b.clone()),
                            None => st.notes.remove(channel_id),
                        };
                    }
                }
                Ok(_) => {
                    self.lose(term, "the leader key is no longer this instance's");
                    return Err(Fenced::Superseded);
                }
                Err(e) => return Err(Fenced::Unconfirmed(e.to_string())),
            }
        }
        Ok(())
    }

    fn describe(&self) -> LeadershipStatus {
        let st = self.lock();
        let role = self.role_now(&st);
        let leader = matches!(role, Role::Leader { .. });
        let own_lease = st.lease.map(|l| l.id);
        let standby_reason = (!leader).then(|| {
            let trouble = st
                .trouble
                .as_ref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            match (&st.lease, st.term, &st.holder) {
                (Some(l), Some(_), _) => format!(
                    "its lease was last renewed {} ms ago, more than half its TTL; etcd unreachable or this process paused{trouble}",
                    l.renewed.elapsed().as_millis()
                ),
                (None, _, _) => format!("no etcd lease{trouble}"),
                (Some(_), None, Some(h)) if h.instance == self.instance && Some(h.lease) != own_lease => format!(
                    "an earlier process of this instance still holds the leader key until its lease expires{trouble}"
                ),
                (Some(_), None, Some(h)) => format!("{} holds the leader key{trouble}", h.instance),
                (Some(_), None, None) => format!("campaigning for the leader key{trouble}"),
            }
        });
        LeadershipStatus {
            instance: self.instance.clone(),
            leader,
            holder: st.holder.as_ref().map(|h| h.instance.clone()),
            term: st.holder.as_ref().map(|h| h.term),
            lease_renewed_at: st.lease.map(|l| l.renewed_wall),
            standby_reason,
        }
    }
}

impl Fence for Elector {
    fn may_act(&self) -> bool {
        matches!(self.role_now(&self.lock()), Role::Leader { .. })
    }

    fn check<'a>(&'a self, call: Call<'a>) -> Pending<'a, Result<(), Fenced>> {
        Box::pin(self.fence(call))
    }
}

impl Leadership for Elector {
    fn role(&self) -> Role {
        self.role_now(&self.lock())
    }

    fn status(&self) -> Option<LeadershipStatus> {
        Some(self.describe())
    }

    fn handover(&self) -> Pending<'_, Result<Handover, Fenced>> {
        Box::pin(self.read_notes())
    }

    fn keep_notes<'a>(&'a self, wanted: &'a [Note]) -> Pending<'a, Result<(), Fenced>> {
        Box::pin(self.write_notes(wanted))
    }
}
