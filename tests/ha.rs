//! Failover on a real etcd (docs/high-availability.md): two `lsrecd run` processes, each with
//! its own database, share one `lsrecd emulator` and one etcd (Debian's `etcd-server`, started
//! here on loopback ports; see `support::etcd` for when the test is skipped).
//!
//! The scenario: `ha-live` records whenever it is live (it stays live: its one recording must
//! run through every failover); `ha-sched` is live throughout and a schedule opens an 8 s window
//! on it every 15 s; `ha-flip` is switched off and on to make the leader start it right before a
//! fault. `lease_ttl` is 2 s, `poll_interval` 1 s.
//!
//! Each round does one of:
//!
//! - `kill`: SIGKILL the leader at a random moment (anywhere relative to the schedule's
//!   windows), then start it again as a standby;
//! - `kill-unclear`: SIGKILL the leader while its `startRecord` has taken effect but not been
//!   answered (the emulator applies it and holds the answer);
//! - `stop`: SIGSTOP the leader at a random moment, for longer than the TTL (and until the other
//!   one has taken over), then SIGCONT it;
//! - `stop-in-flight`: SIGSTOP the leader right after its `startRecord` left, which the emulator
//!   applies 2.5 s later (within `api.timeout` + `api.landing_margin`), typically after the
//!   takeover;
//! - `etcd`: kill etcd for 1–4 s, then start it again.
//!
//! After each round: some instance leads again within `lease_ttl` + `poll_interval` (the
//! `takeover` event's time in the new leader's database, minus the fault's); the new leader's
//! takeover is an event in both databases; no `startRecord` ever reached a recording channel
//! (the emulator's counter); every live channel a claim wants is recording; both databases pass
//! `PRAGMA integrity_check`. At the end: every emulator record is in both databases, nothing is
//! left unsettled, every schedule window was recorded and stopped on time by whoever led, and
//! `ha-live`'s one recording ran through every round.
//!
//! The short form runs with the normal suite; the long one (100 rounds) is ignored by default:
//!
//! ```sh
//! cargo test --release --test ha -- --ignored --nocapture
//! ```
//!
//! It prints the takeover times (p50, max) and how late windows that opened while nobody led
//! were started. `LSRECD_HA_SEED` replays a seed's choices, `LSRECD_HA_ROUNDS` sets the rounds.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

use lsrecd::emulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY};
use support::emulator::EmulatorProcess;
use support::etcd::{EtcdServer, etcd_binary};
use support::process::{Process, lsrecd_command};
use support::site::{free_port, try_query};
use support::{wait_for, write_private};

const TTL_MS: i64 = 2_000;
const POLL_MS: i64 = 1_000;
/// The bound on a takeover: `lease_ttl` + one `poll_interval`.
const TAKEOVER_LIMIT_MS: i64 = TTL_MS + POLL_MS;
const KEY: &str = "/lsrecd-test/leader";
/// The schedule: a window of `WINDOW_MS` every `CYCLE_MS`.
const CYCLE_MS: i64 = 15_000;
const WINDOW_MS: i64 = 8_000;
/// How long after its window's end a recording may still run: the end falls in a takeover.
const STOP_SLACK_MS: i64 = TAKEOVER_LIMIT_MS + 2_000;
/// Generous limits for conditions that do not measure anything.
const SETTLE: Duration = Duration::from_secs(40);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_a_killed_paused_or_cut_off_leader_without_starting_twice() {
    // One round of each kind, then a planned handover.
    failover(
        rounds_from_env(5),
        &[
            Fault::Kill,
            Fault::KillUnclear,
            Fault::Stop,
            Fault::StopInFlight,
            Fault::Etcd,
        ],
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long (about 15 minutes): cargo test --release --test ha -- --ignored --nocapture"]
async fn a_hundred_failovers_never_start_twice_nor_lose_a_claim() {
    failover(rounds_from_env(100), &[], false).await;
}

/// The elector on its own against etcd: it campaigns, writes a start's note in its fence,
/// keeps exactly the notes asked for, and refuses to let a call through once the key is no
/// longer its term — without waiting for its lease to tell it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_lets_calls_through_only_while_the_key_is_this_instances_term() {
    use lsrecd::config::HaConfig;
    use lsrecd::engine::fence::{Call, Fence, Fenced, Leadership, Note, Role};
    use lsrecd::ha::Elector;
    use lsrecd::store::{Mutation, Trigger};

    let Some(etcd_bin) = etcd_binary() else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let etcd = EtcdServer::start(&etcd_bin, work.path()).await;
    let key = "/fence-test/leader";
    let elector = Elector::new(
        &HaConfig {
            etcd: vec![etcd.url.clone()],
            key: key.into(),
            lease_ttl: Duration::from_secs(2),
            instance: "solo".into(),
        },
        None,
        None,
    )
    .expect("elector");
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(elector.clone().run(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    let term = wait_for(SETTLE, "the leader key", async || match elector.role() {
        Role::Leader { term } => Some(term),
        _ => None,
    })
    .await
    .expect("leads");
    assert_eq!(etcd.get(key).await, Some(("solo".to_string(), term)));

    let trigger = Trigger::Schedule("news".into());
    let call = |operation, channel_id| Call {
        operation,
        channel_id,
        trigger: &trigger,
        at: 1_000,
    };
    elector
        .check(call(Mutation::StartRecord, "ch-1"))
        .await
        .expect("a start passes");
    elector
        .check(call(Mutation::StopRecord, "ch-2"))
        .await
        .expect("a stop passes");
    let notes = format!("{key}/notes/");
    assert_eq!(
        etcd.keys(&notes).await,
        Some(vec![format!("{notes}ch-1")]),
        "a start leaves a note, a stop does not"
    );
    let read = elector.handover().await.expect("notes");
    assert_eq!(
        read.notes,
        vec![Note {
            channel_id: "ch-1".into(),
            trigger: trigger.clone(),
            at: 1_000,
            instance: "solo".into()
        }]
    );
    let wanted = [Note {
        channel_id: "ch-3".into(),
        trigger: Trigger::Live,
        at: 2_000,
        instance: String::new(),
    }];
    elector.keep_notes(&wanted).await.expect("notes kept");
    assert_eq!(etcd.keys(&notes).await, Some(vec![format!("{notes}ch-3")]));

    // Someone else's key now (as after this instance's lease expired and another took over).
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let replaced = http
        .post(format!("{}/v3/kv/put", etcd.url))
        .json(&json!({"key": b64(key), "value": b64("intruder")}))
        .send()
        .await
        .expect("put");
    assert!(replaced.status().is_success());
    assert_eq!(
        elector.check(call(Mutation::StartRecord, "ch-4")).await,
        Err(Fenced::Superseded)
    );
    assert_eq!(elector.role(), Role::Standby);
    assert_eq!(
        elector.keep_notes(&[]).await,
        Err(Fenced::NotLeader),
        "notes are the leader's"
    );
    assert_eq!(
        etcd.keys(&notes).await,
        Some(vec![format!("{notes}ch-3")]),
        "nothing written"
    );
    let status = elector.status().expect("status");
    assert!(!status.leader);
    let _ = stop_tx.send(true);
    task.await.expect("the elector stops");
}

fn rounds_from_env(default: u32) -> u32 {
    match std::env::var("LSRECD_HA_ROUNDS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("LSRECD_HA_ROUNDS={v:?} is not a number")),
        Err(_) => default,
    }
}

fn seed_from_env() -> u64 {
    match std::env::var("LSRECD_HA_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("LSRECD_HA_SEED={v:?} is not a number")),
        Err(_) => rand::rng().random(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    KillUnclear,
    Stop,
    StopInFlight,
    Etcd,
}

impl Fault {
    fn pick(rng: &mut StdRng) -> Fault {
        match rng.random_range(0..10) {
            0..=2 => Fault::Kill,
            3 => Fault::KillUnclear,
            4..=5 => Fault::Stop,
            6 => Fault::StopInFlight,
            _ => Fault::Etcd,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::KillUnclear => "kill-unclear",
            Fault::Stop => "stop",
            Fault::StopInFlight => "stop-in-flight",
            Fault::Etcd => "etcd",
        }
    }
}

/// One instance: its configuration, database, metrics port and (while it runs) process.
struct Instance {
    name: &'static str,
    config: PathBuf,
    db: PathBuf,
    metrics: u16,
    dir: PathBuf,
    runs: u32,
    process: Option<Process>,
}

impl Instance {
    fn start(&mut self) {
        assert!(self.process.is_none(), "{} already runs", self.name);
        self.runs += 1;
        let mut cmd = lsrecd_command();
        cmd.arg("run").arg("--config").arg(&self.config);
        let log = self.dir.join(format!("{}-{:03}.log", self.name, self.runs));
        self.process = Some(Process::start_logged(
            &format!("lsrecd run ({})", self.name),
            cmd,
            &log,
        ));
    }

    fn process(&self) -> &Process {
        self.process.as_ref().expect("the instance runs")
    }

    fn tail(&self) -> String {
        self.process
            .as_ref()
            .map(|p| format!("--- {} ---\n{}", self.name, p.stderr_tail(30)))
            .unwrap_or_default()
    }

    /// `sqlite3 -readonly` rows, or none while the database is not there yet.
    fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        try_query(&self.db, sql).unwrap_or_default()
    }

    fn state(&self, key: &str) -> Option<(String, i64)> {
        self.rows(&format!(
            "SELECT value, updated_at FROM daemon_state WHERE key = '{key}'"
        ))
        .into_iter()
        .next()
        .and_then(|r| Some((r.first()?.clone(), r.get(1)?.parse().ok()?)))
    }

    /// A standby with a lease and the leader in view, ticking since `since`.
    fn healthy_standby(&self, leader: &str, since: i64) -> bool {
        let role = self.state("ha.role");
        let renewed = self.state("ha.lease_renewed_at");
        let holder = self.state("ha.leader");
        role.is_some_and(|(r, at)| r == "standby" && at >= since)
            && renewed.is_some_and(|(v, _)| !v.is_empty())
            && holder.is_some_and(|(h, _)| h == leader)
    }

    /// `(at, message)` of `kind` events at or after `since`.
    fn events(&self, kind: &str, since: i64) -> Vec<(i64, String)> {
        self.rows(&format!(
            "SELECT at, message FROM events WHERE kind = '{kind}' AND at >= {since} ORDER BY id"
        ))
        .into_iter()
        .filter_map(|r| Some((r.first()?.parse().ok()?, r.get(1)?.clone())))
        .collect()
    }

    /// When this instance wrote that it leads (a new term, or the same one again), at or after
    /// `since`.
    fn led_since(&self, since: i64) -> Option<i64> {
        self.events("takeover", since)
            .into_iter()
            .find(|(_, m)| m.starts_with(&format!("this instance ({})", self.name)))
            .map(|(at, _)| at)
    }
}

/// What one round did and measured.
struct Round {
    fault: Fault,
    /// Where in the schedule's cycle the fault landed (ms after a window opened).
    phase_ms: i64,
    from: &'static str,
    to: String,
    takeover_ms: i64,
}

/// A period during which nobody could act: windows opening then may start late.
struct Gap {
    from: i64,
    to: i64,
    etcd: bool,
}

async fn failover(rounds: u32, script: &[Fault], planned_handover: bool) {
    let Some(etcd_bin) = etcd_binary() else {
        return;
    };
    let seed = seed_from_env();
    println!("failover test: seed {seed} (LSRECD_HA_SEED={seed} replays it), {rounds} rounds");
    let mut rng = StdRng::seed_from_u64(seed);
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().to_path_buf();
    let keep = KeepOnPanic(Some(work));

    let mut etcd = EtcdServer::start(&etcd_bin, &dir).await;
    let emu = EmulatorProcess::start(&dir.join("emulator.log")).await;
    for id in ["ha-live", "ha-sched", "ha-flip"] {
        emu.add_channel(&json!({ "id": id })).await;
        emu.set_live(id, true).await;
    }
    let mut instances = [
        instance("a", &dir, &emu.base, &etcd.url),
        instance("b", &dir, &emu.base, &etcd.url),
    ];
    let began = now_ms();
    instances[0].start();
    let first = wait_for(SETTLE, "a first leader", async || leader(&etcd).await)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", instances[0].tail()));
    assert_eq!(first, "a", "the only instance running leads");
    instances[1].start();
    wait_for(SETTLE, "b to stand by", async || {
        instances[1].healthy_standby("a", began).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", instances[1].tail()));
    wait_for(SETTLE, "ha-live and ha-flip recording", async || {
        (recording(&emu, "ha-live").await && recording(&emu, "ha-flip").await).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    check_roles_are_visible(&instances, "a").await;
    // Windows are checked from the first one that opens with both instances running.
    let ready_at = now_ms();

    let mut summary: Vec<Round> = Vec::new();
    let mut gaps: Vec<Gap> = Vec::new();
    for n in 0..rounds {
        let fault = script
            .get(n as usize)
            .copied()
            .unwrap_or_else(|| Fault::pick(&mut rng));
        let holder = wait_for(SETTLE, "a leader before the round", async || {
            leader(&etcd).await
        })
        .await
        .unwrap_or_else(|e| panic!("round {n}: {e}"));
        let (li, si) = if holder == "a" { (0, 1) } else { (1, 0) };
        let round_start = now_ms();
        let round = match fault {
            Fault::Kill | Fault::Stop => {
                // Not a wait for a condition: this instant is the random fault moment itself.
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..3_000))).await;
                strike(fault, &mut instances, li, si, &etcd, &mut rng, &mut gaps).await
            }
            Fault::KillUnclear | Fault::StopInFlight => {
                let kind = if fault == Fault::KillUnclear {
                    json!({"kind": "apply_then_hold"})
                } else {
                    json!({"kind": "latency", "ms": 2_500})
                };
                emu.set_live("ha-flip", false).await;
                wait_for(SETTLE, "ha-flip to stop recording", async || {
                    (!recording(&emu, "ha-flip").await).then_some(())
                })
                .await
                .unwrap_or_else(|e| panic!("round {n}: {e}"));
                let before = start_calls(&emu, "ha-flip").await;
                emu.add_fault(&json!({"operation": "start_record", "channel": "ha-flip",
                                      "times": 1, "fault": kind}))
                    .await;
                emu.set_live("ha-flip", true).await;
                wait_for(SETTLE, "the leader's startRecord on ha-flip", async || {
                    (start_calls(&emu, "ha-flip").await > before).then_some(())
                })
                .await
                .unwrap_or_else(|e| panic!("round {n}: {e}\n{}", instances[li].tail()));
                strike(fault, &mut instances, li, si, &etcd, &mut rng, &mut gaps).await
            }
            Fault::Etcd => {
                let t0 = now_ms();
                etcd.kill();
                tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..4_000))).await;
                etcd.resume().await;
                let back = now_ms();
                let (to, at) = wait_for(SETTLE, "a leader after etcd came back", async || {
                    instances
                        .iter()
                        .find_map(|i| i.led_since(back).map(|at| (i.name.to_string(), at)))
                })
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "round {n}: {e}\n{}\n{}",
                        instances[0].tail(),
                        instances[1].tail()
                    )
                });
                gaps.push(Gap {
                    from: t0,
                    to: at,
                    etcd: true,
                });
                let lost = wait_for(SETTLE, "the leader to note it stopped acting", async || {
                    (!instances[li].events("leadership_lost", t0).is_empty()).then_some(())
                })
                .await;
                assert!(
                    lost.is_ok(),
                    "round {n}: no leadership_lost event during the etcd outage\n{}",
                    instances[li].tail()
                );
                Round {
                    fault,
                    phase_ms: 0,
                    from: instances[li].name,
                    to,
                    takeover_ms: at - back,
                }
            }
        };
        let round = if round.fault == Fault::Etcd {
            round.with_phase(round_start)
        } else {
            round
        };
        assert!(
            round.takeover_ms <= TAKEOVER_LIMIT_MS,
            "round {n} ({}): the takeover took {} ms, more than lease_ttl + poll_interval\n{}\n{}",
            fault.name(),
            round.takeover_ms,
            instances[0].tail(),
            instances[1].tail()
        );
        check_round(n, &emu, &instances).await;
        summary.push(round);
    }

    if planned_handover {
        // SIGTERM: the leader lets go at once (after half a TTL of silence), no lease to wait out.
        let holder = leader(&etcd).await.expect("a leader");
        let (li, si) = if holder == "a" { (0, 1) } else { (1, 0) };
        let t0 = now_ms();
        let status = instances[li]
            .process
            .as_mut()
            .expect("runs")
            .terminate(SETTLE)
            .await
            .expect("exits on SIGTERM");
        assert!(status.success(), "{}", instances[li].tail());
        let at = wait_for(SETTLE, "the planned handover", async || {
            instances[si].led_since(t0)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", instances[si].tail()));
        println!("planned handover (SIGTERM): {} ms", at - t0);
        assert!(
            at - t0 < TTL_MS + POLL_MS,
            "a planned handover took {} ms",
            at - t0
        );
        instances[li].process = None;
        instances[li].start();
    }

    // At least one whole window (and the time to stop it) lies between ready_at and the end.
    let first_fire = (ready_at / CYCLE_MS + 1) * CYCLE_MS;
    let checked_until = first_fire + WINDOW_MS + STOP_SLACK_MS + 1_000;
    if now_ms() < checked_until {
        // Not a wait for a condition: the schedule's clock decides when the window is over.
        tokio::time::sleep(Duration::from_millis((checked_until - now_ms()) as u64)).await;
    }
    finish(&emu, &etcd, &mut instances, ready_at, &summary, &gaps).await;
    drop(keep);
}

/// Makes the fault happen to the leader `li` and waits for the other one to take over; for a
/// kill, starts the killed one again and waits until it stands by.
async fn strike(
    fault: Fault,
    instances: &mut [Instance; 2],
    li: usize,
    si: usize,
    etcd: &EtcdServer,
    rng: &mut StdRng,
    gaps: &mut Vec<Gap>,
) -> Round {
    let t0 = now_ms();
    let (from, to) = (instances[li].name, instances[si].name);
    let kill = matches!(fault, Fault::Kill | Fault::KillUnclear);
    if kill {
        instances[li].process.as_mut().expect("runs").kill9();
        instances[li].process = None;
    } else {
        instances[li].process().signal("STOP");
    }
    let standby = &instances[si];
    let at = wait_for(SETTLE, "the standby to take over", async || {
        standby.led_since(t0)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", standby.tail()));
    gaps.push(Gap {
        from: t0,
        to: at,
        etcd: false,
    });
    assert_eq!(leader(etcd).await.as_deref(), Some(to));
    let back = now_ms();
    if kill {
        instances[li].start();
    } else {
        // Paused past the TTL (and a random while longer), then it resumes into a world with
        // another leader. Not a wait for a condition: the pause's length is the fault.
        let resume_at = now_ms().max(t0 + TTL_MS) + rng.random_range(0..1_000);
        tokio::time::sleep(Duration::from_millis((resume_at - now_ms()).max(0) as u64)).await;
        instances[li].process().signal("CONT");
        let resumed = &instances[li];
        wait_for(
            SETTLE,
            "the paused leader to note it stopped acting",
            async || (!resumed.events("leadership_lost", t0).is_empty()).then_some(()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", resumed.tail()));
    }
    // The takeover is an event in both databases.
    let old = &instances[li];
    wait_for(
        SETTLE,
        "the old leader to stand by under the new one",
        async || {
            (old.healthy_standby(to, back)
                && old
                    .events("takeover", t0)
                    .iter()
                    .any(|(_, m)| m.starts_with(&format!("{to} is the leader now"))))
            .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", old.tail()));
    Round {
        fault,
        phase_ms: 0,
        from,
        to: to.to_string(),
        takeover_ms: at - t0,
    }
    .with_phase(t0)
}

impl Round {
    fn with_phase(self, at: i64) -> Round {
        Round {
            // The schedule fires at multiples of the cycle (UTC seconds divisible by 15).
            phase_ms: at.rem_euclid(CYCLE_MS),
            ..self
        }
    }
}

/// After a round: no duplicate start, every live claim served, both files sound.
async fn check_round(n: u32, emu: &EmulatorProcess, instances: &[Instance; 2]) {
    let counters = emu.counters().await;
    assert_eq!(
        counters["start_while_recording"], 0,
        "round {n}: a startRecord reached a recording channel: {}",
        counters["start_while_recording_by_channel"]
    );
    wait_for(SETTLE, "every live claim recording", async || {
        (recording(emu, "ha-live").await && recording(emu, "ha-flip").await).then_some(())
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "round {n}: {e}\n{}\n{}",
            instances[0].tail(),
            instances[1].tail()
        )
    });
    for i in instances {
        let verdict = try_query(&i.db, "PRAGMA integrity_check").expect("sqlite3 runs");
        assert_eq!(
            verdict,
            vec![vec!["ok".to_string()]],
            "round {n}: {}",
            i.name
        );
    }
}

/// `/readyz` of a standby is ready; `/metrics` and `lsrecd status` name the roles.
async fn check_roles_are_visible(instances: &[Instance; 2], leader: &str) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    for i in instances {
        let base = format!("http://127.0.0.1:{}", i.metrics);
        let ready = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("/readyz answers");
        assert_eq!(ready.status(), 200, "{} /readyz", i.name);
        let role = if i.name == leader {
            "leader"
        } else {
            "standby"
        };
        let text = wait_for(SETTLE, "the role in /metrics", async || {
            let text = http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let series = format!(
                "lsrecd_ha_role{{ha_instance=\"{}\",role=\"{role}\",leader=\"{leader}\"}} 1",
                i.name
            );
            text.contains(&series).then_some(text)
        })
        .await
        .unwrap_or_else(|e| panic!("{e} ({})", i.name));
        assert!(text.contains("lsrecd_ha_lease_age_seconds "), "{text}");

        let out = lsrecd_command()
            .args(["status", "--config"])
            .arg(&i.config)
            .output()
            .expect("lsrecd status runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        let says = if i.name == leader {
            format!("this instance ({}) is LEADER", i.name)
        } else {
            format!("this instance ({}) is standby", i.name)
        };
        assert!(stdout.contains(&says), "{stdout}");
        assert!(
            stdout.contains(&format!("leader: {leader} (term ")),
            "{stdout}"
        );
        assert!(stdout.contains("lease: last renewed "), "{stdout}");
    }
}

/// The end: streams stop, everything settles, and the whole run is checked and summarised.
async fn finish(
    emu: &EmulatorProcess,
    etcd: &EtcdServer,
    instances: &mut [Instance; 2],
    ready_at: i64,
    summary: &[Round],
    gaps: &[Gap],
) {
    let ended = now_ms();
    for id in ["ha-live", "ha-sched", "ha-flip"] {
        emu.set_live(id, false).await;
    }
    wait_for(
        SETTLE * 2,
        "every record in both databases, settled",
        async || {
            let records = emu.records().await;
            let settled = records.iter().all(|r| {
                matches!(
                    r["status"].as_str(),
                    Some(
                        "TRANSFER_FINISH" | "TRANSFER_READY" | "PROCESSING_FAIL" | "TRANSFER_FAIL"
                    )
                )
            });
            let ids: Vec<i64> = records
                .iter()
                .filter_map(|r| r["recordId"].as_i64())
                .collect();
            let in_both = instances.iter().all(|i| {
                let have = i.rows("SELECT record_id, status FROM records");
                records.iter().all(|r| {
                    have.iter().any(|row| {
                        row.first().and_then(|v| v.parse::<i64>().ok()) == r["recordId"].as_i64()
                            && row.get(1).map(String::as_str) == r["status"].as_str()
                    })
                })
            });
            let unsettled = instances.iter().any(|i| {
                !i.rows("SELECT id FROM actions WHERE state IN ('PENDING', 'AMBIGUOUS')")
                    .is_empty()
            });
            (settled && in_both && !unsettled && !ids.is_empty()).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", instances[0].tail(), instances[1].tail()));

    let counters = emu.counters().await;
    let records = emu.records().await;
    assert_eq!(counters["start_while_recording"], 0, "{counters}");

    // The cloud recording keeps running through every failover: one recording on ha-live.
    let live: Vec<&Value> = records
        .iter()
        .filter(|r| r["channelId"] == "ha-live")
        .collect();
    let seqs: std::collections::BTreeSet<i64> = live
        .iter()
        .filter_map(|r| r["recordSeq"].as_i64())
        .collect();
    assert_eq!(seqs.len(), 1, "ha-live was recorded in pieces: {live:?}");

    // Intent first, on both instances together.
    for (key, op) in [
        ("start_record_calls", "startRecord"),
        ("stop_record_calls", "stopRecord"),
    ] {
        if let Some(calls) = counters[key].as_object() {
            for (ch, n) in calls {
                let journaled: u64 = instances
                    .iter()
                    .map(|i| {
                        i.rows(&format!(
                            "SELECT count(*) FROM actions WHERE channel_id = '{ch}' AND operation = '{op}'"
                        ))
                        .first()
                        .and_then(|r| r.first()?.parse::<u64>().ok())
                        .unwrap_or(0)
                    })
                    .sum();
                assert!(
                    n.as_u64().unwrap_or(0) <= journaled,
                    "{n} {op} calls on {ch}, {journaled} journaled"
                );
            }
        }
    }

    // Every window of the schedule was recorded and stopped on time, whoever led.
    let sched: Vec<(i64, i64)> = records
        .iter()
        .filter(|r| r["channelId"] == "ha-sched")
        .filter_map(|r| {
            let begin = r["recordBeginTime"].as_i64()?;
            let secs = r["duration"].as_i64()?;
            Some((begin, begin + secs * 1000))
        })
        .collect();
    let mut windows = Windows::default();
    let mut fire = (ready_at / CYCLE_MS + 1) * CYCLE_MS;
    while fire + WINDOW_MS + STOP_SLACK_MS < ended {
        let end = fire + WINDOW_MS;
        let in_window: Vec<&(i64, i64)> = sched
            .iter()
            .filter(|(b, e)| *b < end && *e > fire)
            .collect();
        let outage = gaps
            .iter()
            .any(|g| g.etcd && g.from < end && g.to + 1_000 > fire);
        match in_window.iter().map(|(b, _)| *b).min() {
            None if outage => windows.unrecorded_in_outage += 1,
            None => panic!(
                "the window at {fire} was not recorded; gaps {:?}",
                gap_list(gaps)
            ),
            Some(begin) => {
                let delay = (begin - fire).max(0);
                // Nobody could act at some point between the window's opening and its start.
                let in_gap = gaps.iter().any(|g| g.from <= begin && fire < g.to);
                if in_gap {
                    windows.delays_in_gap.push(delay);
                } else {
                    windows.delays.push(delay);
                }
            }
        }
        // One recording per window: a leader dying mid-window leaves it running, and the new
        // leader neither stops nor starts it again.
        let begun: Vec<&&(i64, i64)> = in_window.iter().filter(|(b, _)| *b >= fire).collect();
        assert!(
            begun.len() <= 1,
            "the window at {fire} has {} recordings: {begun:?}; gaps {:?}",
            begun.len(),
            gap_list(gaps)
        );
        if gaps
            .iter()
            .any(|g| !g.etcd && fire < g.from && g.from < end)
        {
            windows.leader_lost_mid_window += 1;
        }
        for (b, e) in &in_window {
            if *b >= fire {
                assert!(
                    *e <= end + STOP_SLACK_MS,
                    "the recording begun at {b} in the window at {fire} ran until {e}"
                );
            }
        }
        fire += CYCLE_MS;
    }

    print_summary(summary, &windows, summary.len());
    assert!(etcd.running());
    for i in instances.iter_mut() {
        if let Some(p) = i.process.as_mut() {
            let status = p.terminate(SETTLE).await.expect("exits on SIGTERM");
            assert!(status.success(), "{}", i.tail());
        }
    }
}

fn gap_list(gaps: &[Gap]) -> Vec<(i64, i64, bool)> {
    gaps.iter().map(|g| (g.from, g.to, g.etcd)).collect()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// What the schedule's windows showed.
#[derive(Default)]
struct Windows {
    /// Start delays (ms after the window opened) of windows opened and started with a leader.
    delays: Vec<i64>,
    /// Start delays of windows whose start fell in a period without a leader.
    delays_in_gap: Vec<i64>,
    /// Windows during which the leader was killed or paused (their recording kept running).
    leader_lost_mid_window: usize,
    /// Windows not recorded at all because etcd was down for their whole span.
    unrecorded_in_outage: usize,
}

fn print_summary(summary: &[Round], windows: &Windows, failovers: usize) {
    println!("round  fault           phase_ms  from  to  takeover_ms");
    for (i, r) in summary.iter().enumerate() {
        println!(
            "{:>5}  {:<14}  {:>8}  {:>4}  {:>2}  {:>11}",
            i + 1,
            r.fault.name(),
            r.phase_ms,
            r.from,
            r.to,
            r.takeover_ms
        );
    }
    let mut by_kind: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for r in summary {
        let kind = if r.fault == Fault::Etcd {
            "etcd outage (from etcd answering again)"
        } else {
            "leader killed or paused (from the fault)"
        };
        by_kind.entry(kind).or_default().push(r.takeover_ms);
    }
    for (kind, mut t) in by_kind {
        t.sort_unstable();
        println!(
            "takeover, {kind}: n={} p50={} ms max={} ms",
            t.len(),
            percentile(&t, 0.5),
            t.last().copied().unwrap_or(0)
        );
    }
    let mut d = windows.delays.clone();
    d.sort_unstable();
    let mut g = windows.delays_in_gap.clone();
    g.sort_unstable();
    println!(
        "schedule windows started with a leader: {}, start delay p50={} ms max={} ms {d:?}",
        d.len(),
        percentile(&d, 0.5),
        d.last().copied().unwrap_or(0)
    );
    println!(
        "schedule windows whose start fell in a takeover: {}, start delay p50={} ms max={} ms {g:?}",
        g.len(),
        percentile(&g, 0.5),
        g.last().copied().unwrap_or(0)
    );
    println!(
        "coverage: ha-live recorded in one piece through {failovers} failovers; {} windows lost their leader mid-window and kept one recording each; {} windows unrecorded during etcd outages",
        windows.leader_lost_mid_window, windows.unrecorded_in_outage
    );
}

fn instance(name: &'static str, dir: &Path, endpoint: &str, etcd: &str) -> Instance {
    let config = dir.join(format!("{name}.toml"));
    let db = dir.join(format!("{name}.db"));
    let metrics = free_port();
    write_private(
        &config,
        &format!(
            r#"[api]
endpoint = "{endpoint}"
access_key = "{DEFAULT_ACCESS_KEY}"
secret_key = "{DEFAULT_SECRET_KEY}"
timeout = "1s"
landing_margin = "2s"
max_rps = 100

[daemon]
database = "{db}"
timezone = "UTC"
poll_interval = "1s"
record_poll_interval = "1s"

[retry]
max_attempts = 4
initial_backoff = "100ms"
max_backoff = "500ms"

[metrics]
listen = "127.0.0.1:{metrics}"

[ha]
etcd = ["{etcd}"]
key = "{KEY}"
lease_ttl = "2s"
instance = "{name}"

[[channel]]
id = "ha-live"
record_when_live = true

[[channel]]
id = "ha-flip"
record_when_live = true

[[channel]]
id = "ha-sched"

[[schedule]]
name = "every-15s"
channel = "ha-sched"
cron = "*/15 * * * * *"
duration = "8s"
catch_up = "5s"
"#,
            db = db.display()
        ),
    );
    Instance {
        name,
        config,
        db,
        metrics,
        dir: dir.to_path_buf(),
        runs: 0,
        process: None,
    }
}

/// The instance named by the leader key, if any.
async fn leader(etcd: &EtcdServer) -> Option<String> {
    etcd.get(KEY).await.map(|(v, _)| v)
}

/// Whether the emulator says `id` is recording.
async fn recording(emu: &EmulatorProcess, id: &str) -> bool {
    let c = emu.get(&format!("/channels/{id}")).await;
    c["isRecording"] == true || c["is_recording"] == true
}

async fn start_calls(emu: &EmulatorProcess, id: &str) -> u64 {
    emu.counters().await["start_record_calls"][id]
        .as_u64()
        .unwrap_or(0)
}

/// Keeps the work directory (and prints where) when the test fails.
struct KeepOnPanic(Option<tempfile::TempDir>);

impl Drop for KeepOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("logs and databases kept in {}", dir.keep().display());
        }
    }
}
