//! Fire-time wake-ups through tokio-cron-scheduler.
//!
//! The fire instants come from [`crate::schedule`] (crontab rules in real time zones); the
//! scheduler only fires one-shot jobs at those instants, each sending [`Wake::Fire`]. A late or
//! merged fire loses nothing: the engine's tick decides from the database what is due.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid as JobId;

use crate::config::Config;

use super::Wake;

/// One armed job per schedule.
pub struct FireTimers {
    scheduler: JobScheduler,
    armed: HashMap<String, (i64, JobId)>,
    tx: mpsc::Sender<Wake>,
}

impl FireTimers {
    /// Starts the scheduler. `None` (logged) if it cannot start: ticks at `poll_interval` still
    /// handle every fire time, only later.
    pub async fn start(tx: mpsc::Sender<Wake>) -> Option<FireTimers> {
        let scheduler = match JobScheduler::new().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "schedule timer could not start; fire times are handled at the poll interval");
                return None;
            }
        };
        if let Err(e) = scheduler.start().await {
            tracing::error!(error = %e, "schedule timer could not start; fire times are handled at the poll interval");
            return None;
        }
        Some(FireTimers {
            scheduler,
            armed: HashMap::new(),
            tx,
        })
    }

    /// Arms each schedule's next fire time after `now` (re-arming only what changed).
    pub async fn arm(&mut self, config: &Config, now: i64) {
        let Some(now_utc) = chrono::DateTime::from_timestamp_millis(now) else {
            return;
        };
        for s in &config.schedules {
            let Some(next) = s.cron.next_after(now_utc, s.timezone) else {
                continue;
            };
            let fire = next.timestamp_millis();
            if self.armed.get(&s.name).is_some_and(|(t, _)| *t == fire) {
                continue;
            }
            if let Some((_, old)) = self.armed.remove(&s.name) {
                let _ = self.scheduler.remove(&old).await;
            }
            let at = Instant::now() + Duration::from_millis((fire - now).max(0) as u64);
            let tx = self.tx.clone();
            let name = s.name.clone();
            let job = Job::new_one_shot_at_instant_async(at, move |_, _| {
                let tx = tx.clone();
                let name = name.clone();
                Box::pin(async move {
                    let _ = tx.try_send(Wake::Fire(name));
                })
            });
            match job {
                Ok(job) => match self.scheduler.add(job).await {
                    Ok(id) => {
                        self.armed.insert(s.name.clone(), (fire, id));
                    }
                    Err(e) => {
                        tracing::warn!(schedule = %s.name, error = %e, "could not arm fire timer")
                    }
                },
                Err(e) => {
                    tracing::warn!(schedule = %s.name, error = %e, "could not arm fire timer")
                }
            }
        }
    }

    /// Forgets every armed job (configuration reload); the next [`FireTimers::arm`] re-arms.
    pub async fn clear(&mut self) {
        for (_, (_, id)) in self.armed.drain() {
            let _ = self.scheduler.remove(&id).await;
        }
    }

    /// Stops the scheduler.
    pub async fn shutdown(mut self) {
        self.clear().await;
        let _ = self.scheduler.shutdown().await;
    }
}
