//! The engine under a leadership it does not control (ARCHITECTURE.md §6.6), with a fake in
//! place of etcd: a standby sends nothing and mirrors the leader's notes; a new leader adopts
//! what the notes say is lsrecd's and waits on noted channels until an earlier leader's start can
//! no longer land; a leader that loses the lease stops and says so; the fence is asked before
//! every state-changing call.

use std::sync::{Arc, Mutex};

use lsrecd::config::Config;
use lsrecd::emulator::{ChannelSpec, Control, Emulator, EmulatorOptions, Operation};
use lsrecd::engine::fence::{
    Call, Fence, Fenced, Handover, Leadership, LeadershipStatus, Note, Pending, Role,
};
use lsrecd::engine::{Engine, now_ms};
use lsrecd::store::{Mutation, Store, Trigger};

/// `2 × api.timeout (2 s) + api.landing_margin (5 s) − silent_for (1 s)`.
const HANDOVER_WAIT_MS: i64 = 8_000;

/// A leadership the test sets by hand.
struct Fake {
    role: Mutex<Role>,
    holder: Mutex<Option<(String, i64)>>,
    notes: Mutex<Vec<Note>>,
    refuse: Mutex<bool>,
    asked: Mutex<Vec<(Mutation, String)>>,
    kept: Mutex<Vec<String>>,
}

impl Fake {
    fn new(role: Role) -> Arc<Fake> {
        Arc::new(Fake {
            role: Mutex::new(role),
            holder: Mutex::new(None),
            notes: Mutex::new(Vec::new()),
            refuse: Mutex::new(false),
            asked: Mutex::new(Vec::new()),
            kept: Mutex::new(Vec::new()),
        })
    }

    fn set(&self, role: Role, holder: &str, term: i64) {
        *self.role.lock().unwrap() = role;
        *self.holder.lock().unwrap() = Some((holder.to_string(), term));
    }
}

impl Fence for Fake {
    fn may_act(&self) -> bool {
        matches!(*self.role.lock().unwrap(), Role::Leader { .. })
    }

    fn check<'a>(&'a self, call: Call<'a>) -> Pending<'a, Result<(), Fenced>> {
        Box::pin(async move {
            self.asked
                .lock()
                .unwrap()
                .push((call.operation, call.channel_id.to_string()));
            if *self.refuse.lock().unwrap() {
                Err(Fenced::Superseded)
            } else {
                Ok(())
            }
        })
    }
}

impl Leadership for Fake {
    fn role(&self) -> Role {
        *self.role.lock().unwrap()
    }

    fn status(&self) -> Option<LeadershipStatus> {
        let holder = self.holder.lock().unwrap().clone();
        let leader = matches!(self.role(), Role::Leader { .. });
        Some(LeadershipStatus {
            instance: "me".into(),
            leader,
            holder: holder.as_ref().map(|h| h.0.clone()),
            term: holder.map(|h| h.1),
            lease_renewed_at: Some(now_ms()),
            standby_reason: (!leader).then(|| "the test says so".to_string()),
        })
    }

    fn handover(&self) -> Pending<'_, Result<Handover, Fenced>> {
        Box::pin(async move {
            Ok(Handover {
                notes: self.notes.lock().unwrap().clone(),
                silent_for_ms: 1_000,
            })
        })
    }

    fn keep_notes<'a>(&'a self, wanted: &'a [Note]) -> Pending<'a, Result<(), Fenced>> {
        Box::pin(async move {
            let mut kept: Vec<String> = wanted.iter().map(|n| n.channel_id.clone()).collect();
            kept.sort();
            *self.kept.lock().unwrap() = kept;
            Ok(())
        })
    }
}

struct Bench {
    dir: tempfile::TempDir,
    _emulator: lsrecd::emulator::RunningEmulator,
    control: Control,
    store: Store,
    config: Arc<Config>,
    fake: Arc<Fake>,
}

impl Bench {
    /// An emulator with live channels `ids`, each `record_when_live`.
    async fn new(ids: &[&str]) -> Bench {
        let options = EmulatorOptions::default();
        let emulator = Emulator::start("127.0.0.1:0".parse().unwrap(), options.clone())
            .await
            .expect("emulator starts");
        let control = emulator.control();
        let mut channels = String::new();
        for id in ids {
            control
                .add_channel(ChannelSpec::new(*id))
                .expect("channel added");
            control.go_live(id).expect("live");
            channels.push_str(&format!(
                "[[channel]]\nid = \"{id}\"\nrecord_when_live = true\n"
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("lsrecd.db");
        let text = format!(
            "[api]\nendpoint = \"{}\"\naccess_key = \"{}\"\nsecret_key = \"{}\"\ntimeout = \"2s\"\n\
             max_rps = 1000\n[daemon]\ndatabase = \"{}\"\npoll_interval = \"1s\"\n{channels}",
            emulator.base_url(),
            options.access_key,
            options.secret_key,
            db.display()
        );
        let config = Config::from_str(&text, &dir.path().join("config.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        Bench {
            store: Store::open(&db).await.expect("store opens"),
            dir,
            _emulator: emulator,
            control,
            config: Arc::new(config),
            fake: Fake::new(Role::Standby),
        }
    }

    async fn engine(&self, now: i64) -> Engine {
        let client = lsrecd::daemon::client_for(&self.config).expect("client");
        let mut engine = Engine::new(self.config.clone(), client, self.store.clone(), now)
            .with_leadership(self.fake.clone());
        assert!(engine.reconcile(now).await.expect("reconcile"));
        engine
    }

    /// Another instance starts the recording (as a leader elsewhere would).
    async fn started_elsewhere(&self, id: &str) {
        let other = lsrecd::daemon::client_for(&self.config).expect("client");
        other.start_record(id).await.expect("started");
    }

    fn note(&self, id: &str, at: i64) {
        self.fake.notes.lock().unwrap().push(Note {
            channel_id: id.into(),
            trigger: Trigger::Live,
            at,
            instance: "other".into(),
        });
    }

    fn starts_on(&self, id: &str) -> u64 {
        self.control.counters().start_record_calls_on(id)
    }

    async fn owned(&self) -> Vec<(String, String, i64)> {
        self.store
            .owned_recordings_open()
            .await
            .expect("owned")
            .into_iter()
            .map(|o| (o.channel_id, o.trigger.as_text(), o.started_at))
            .collect()
    }

    /// The first column of `sql`'s rows, read the way an operator would.
    async fn texts(&self, sql: &str) -> Vec<String> {
        let url = format!(
            "sqlite://{}?mode=ro",
            self.dir.path().join("lsrecd.db").display()
        );
        let pool = sqlx::SqlitePool::connect(&url)
            .await
            .expect("read-only connection");
        let rows = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&pool)
            .await
            .expect("query");
        pool.close().await;
        rows
    }

    async fn events(&self, kind: &str) -> Vec<String> {
        self.texts(&format!(
            "SELECT message FROM events WHERE kind = '{kind}' ORDER BY id"
        ))
        .await
    }
}

#[tokio::test]
async fn a_standby_sends_nothing_and_keeps_the_leaders_recordings_as_lsrecds() {
    let b = Bench::new(&["ch-a"]).await;
    b.fake.set(Role::Standby, "other", 7);
    let t0 = now_ms();
    b.started_elsewhere("ch-a").await;
    b.note("ch-a", t0 - 5_000);
    let mut engine = b.engine(t0).await;
    for i in 0..3 {
        engine.tick(t0 + i * 1_000).await.expect("tick");
    }
    assert_eq!(b.starts_on("ch-a"), 1, "only the other instance's start");
    assert!(b.fake.asked.lock().unwrap().is_empty(), "no fence, no call");
    assert_eq!(
        b.owned().await,
        vec![("ch-a".to_string(), "live".to_string(), t0 - 5_000)],
        "lsrecd's, since the leader's start"
    );
    assert!(b.events("tracked").await.is_empty(), "not someone else's");
    let takeover = b.events("takeover").await;
    assert_eq!(
        takeover,
        vec!["other is the leader now (term 7); this instance stands by".to_string()]
    );
    // The leader stopped it and dropped its note.
    b.fake.notes.lock().unwrap().clear();
    engine.tick(t0 + 4_000).await.expect("tick");
    assert!(b.owned().await.is_empty());
    assert_eq!(b.control.counters().calls_of(Operation::StopRecord), 0);
}

#[tokio::test]
async fn a_new_leader_adopts_noted_recordings_and_waits_on_noted_channels_until_a_start_cannot_land()
 {
    let b = Bench::new(&["adopt", "wait", "free"]).await;
    let t0 = now_ms();
    b.started_elsewhere("adopt").await;
    b.note("adopt", t0 - 60_000);
    // The earlier leader's start on "wait" did not land (yet).
    b.note("wait", t0 - 500);
    let mut engine = b.engine(t0).await;
    engine.tick(t0).await.expect("standby tick");
    assert_eq!(b.starts_on("free"), 0, "a standby starts nothing");

    b.fake.set(Role::Leader { term: 9 }, "me", 9);
    let t1 = t0 + 1_000;
    engine.tick(t1).await.expect("takeover tick");
    assert_eq!(b.starts_on("adopt"), 1, "adopted, not started again");
    assert_eq!(b.starts_on("free"), 1, "no note: started at once");
    assert_eq!(b.starts_on("wait"), 0, "noted: may still land");
    assert_eq!(
        b.events("takeover").await.last().map(String::as_str),
        Some("this instance (me) is the leader now (term 9)")
    );
    for t in [t1 + 2_000, t1 + HANDOVER_WAIT_MS - 500] {
        engine.tick(t).await.expect("tick");
        assert_eq!(b.starts_on("wait"), 0, "at {} ms", t - t1);
    }
    engine
        .tick(t1 + HANDOVER_WAIT_MS + 100)
        .await
        .expect("tick");
    assert_eq!(b.starts_on("wait"), 1, "sent once it could no longer land");
    assert_eq!(b.control.counters().start_while_recording, 0);
    let asked = b.fake.asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        vec![
            (Mutation::StartRecord, "free".to_string()),
            (Mutation::StartRecord, "wait".to_string()),
        ]
    );
    assert_eq!(*b.fake.kept.lock().unwrap(), ["adopt", "free", "wait"]);
    let owned: Vec<String> = b.owned().await.into_iter().map(|o| o.0).collect();
    assert_eq!(owned, ["adopt", "free", "wait"]);
}

#[tokio::test]
async fn a_leader_that_loses_the_lease_stops_says_so_and_a_refused_fence_sends_nothing() {
    let b = Bench::new(&["ch-a", "ch-b"]).await;
    let t0 = now_ms();
    b.fake.set(Role::Leader { term: 3 }, "me", 3);
    *b.fake.refuse.lock().unwrap() = true;
    let mut engine = b.engine(t0).await;
    engine.tick(t0).await.expect("tick");
    assert_eq!(b.starts_on("ch-a") + b.starts_on("ch-b"), 0);
    let not_sent = b
        .texts("SELECT error_message FROM actions WHERE state = 'FAILED' ORDER BY id")
        .await;
    assert_eq!(
        not_sent,
        vec!["not sent: the leader key is no longer this instance's".to_string(); 2]
    );

    b.fake.set(Role::Standby, "other", 4);
    engine.tick(t0 + 1_000).await.expect("tick");
    let lost = b.events("leadership_lost").await;
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].contains("the test says so"), "{lost:?}");
    *b.fake.refuse.lock().unwrap() = false;
    engine.tick(t0 + 2_000).await.expect("tick");
    assert_eq!(b.starts_on("ch-a") + b.starts_on("ch-b"), 0);
    assert_eq!(
        b.fake.asked.lock().unwrap().len(),
        2,
        "asked only while it led"
    );

    // Leading again in the same term: it says so, and acts.
    b.fake.set(Role::Leader { term: 4 }, "me", 4);
    engine.tick(t0 + 3_000).await.expect("tick");
    assert_eq!(b.starts_on("ch-a") + b.starts_on("ch-b"), 2);
    *b.fake.role.lock().unwrap() = Role::Standby;
    engine.tick(t0 + 4_000).await.expect("tick");
    *b.fake.role.lock().unwrap() = Role::Leader { term: 4 };
    engine.tick(t0 + 5_000).await.expect("tick");
    assert_eq!(
        b.events("takeover").await.last().map(String::as_str),
        Some("this instance (me) acts again as the leader (term 4) now that its lease is renewed")
    );
}
