//! The client-side request rate limit (`api.max_rps`), shared by every clone of the client.
//!
//! Requests are spaced at least `1 / max_rps` apart: each caller reserves the next free slot
//! under a short lock and then sleeps until it with `tokio::time`, so waiting costs no CPU and
//! tests can drive it with a paused clock. A `Retry-After` answer pushes the next free slot back
//! ([`RateLimiter::hold_off`]), so every caller waits, not only the one that was throttled: also
//! a request whose slot was reserved before the answer came and falls within the wait.
//!
//! Requests made within [`urgently`] (what a callback hint reads and starts) reserve the next
//! free slot in the order they arrive; every other request takes a slot only when none is
//! reserved for later ([`RateLimiter::acquire_background`]), so an urgent request queues behind
//! one other request at most, however many are waiting.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    /// Set while a future runs within [`urgently`].
    static URGENT: ();
}

/// Runs `work` with the API requests it makes ahead of every other request of the process
/// (see the module doc): for what a callback hint reads and sends.
pub async fn urgently<F: Future>(work: F) -> F::Output {
    URGENT.scope((), work).await
}

/// Whether the caller runs within [`urgently`].
fn is_urgent() -> bool {
    URGENT.try_with(|()| ()).is_ok()
}

/// Spaces requests evenly at a maximum rate.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Duration,
    /// The earliest instant the next request may start; `None` before the first request.
    next_slot: Mutex<Option<Instant>>,
    /// Until when the server asked for quiet ([`RateLimiter::hold_off`]); `None` if it never did.
    held_until: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter allowing `max_rps` requests per second; `None` unless `max_rps` is positive
    /// and its interval representable.
    pub(crate) fn new(max_rps: f64) -> Option<RateLimiter> {
        if !(max_rps.is_finite() && max_rps > 0.0) {
            return None;
        }
        Some(RateLimiter {
            interval: Duration::try_from_secs_f64(1.0 / max_rps).ok()?,
            next_slot: Mutex::new(None),
            held_until: Mutex::new(None),
        })
    }

    /// Waits until this request may be sent. The slot is reserved before waiting, so
    /// concurrent callers are served in the order they arrived; a hold that came meanwhile and
    /// covers the slot sends the request to the first slot after it.
    pub(crate) async fn acquire(&self) {
        loop {
            tokio::time::sleep_until(self.reserve()).await;
            let held_until = *self.held_until.lock().unwrap_or_else(|e| e.into_inner());
            if held_until.is_none_or(|until| until <= Instant::now()) {
                return;
            }
        }
    }

    /// Waits until this request may be sent without taking a slot ahead of anyone: a
    /// background request (a listing page, a record read) goes only when no slot is reserved
    /// for later, so a request that cannot wait (a hinted read, a start) that arrives meanwhile
    /// queues behind one background request at most, never behind a burst of them.
    pub(crate) async fn acquire_background(&self) {
        loop {
            let busy_until = {
                let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                match *next {
                    Some(n) if n > now => n,
                    _ => {
                        *next = Some(now + self.interval);
                        return;
                    }
                }
            };
            tokio::time::sleep_until(busy_until).await;
        }
    }

    /// Waits until this request may be sent, as the caller is entitled to: ahead of the others
    /// within [`urgently`] ([`RateLimiter::acquire`]), else behind them
    /// ([`RateLimiter::acquire_background`]).
    pub(crate) async fn acquire_for_caller(&self) {
        if is_urgent() {
            self.acquire().await;
        } else {
            self.acquire_background().await;
        }
    }

    /// Reserves the next free slot without waiting for it.
    pub(crate) fn reserve(&self) -> Instant {
        {
            // The guarded value is a plain instant, valid even if a holder panicked.
            let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slot = next.map_or(now, |n| n.max(now));
            *next = Some(slot + self.interval);
            slot
        }
    }
}

impl RateLimiter {
    /// Lets no request start within `wait` from now: the server asked the client (not just one
    /// call) to back off. Slots already further away are kept.
    pub(crate) fn hold_off(&self, wait: Duration) {
        let Some(until) = Instant::now().checked_add(wait) else {
            return;
        };
        let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
        *next = Some(next.map_or(until, |n| n.max(until)));
        let mut held = self.held_until.lock().unwrap_or_else(|e| e.into_inner());
        *held = Some(held.map_or(until, |h| h.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn rates_that_are_not_positive_numbers_are_refused() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300] {
            assert!(RateLimiter::new(rate).is_none(), "{rate}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn five_requests_at_two_per_second_take_two_seconds() {
        let limiter = RateLimiter::new(2.0).expect("valid rate");
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_request_is_not_delayed() {
        let limiter = RateLimiter::new(0.1).expect("valid rate");
        let start = Instant::now();
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_budget() {
        let limiter = Arc::new(RateLimiter::new(4.0).expect("valid rate"));
        let start = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                tokio::spawn(async move {
                    limiter.acquire().await;
                    Instant::now()
                })
            })
            .collect();
        let mut finished = Vec::new();
        for t in tasks {
            finished.push(t.await.expect("task completes") - start);
        }
        finished.sort();
        let expected: Vec<_> = (0..8).map(|i| Duration::from_millis(250 * i)).collect();
        assert_eq!(finished, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_cannot_wait_queues_behind_one_background_request_at_most() {
        let limiter = Arc::new(RateLimiter::new(10.0).expect("valid rate"));
        let start = Instant::now();
        let background: Vec<_> = (0..5)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                tokio::spawn(async move {
                    limiter.acquire_background().await;
                    Instant::now() - start
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        limiter.acquire().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(100),
            "after the first read only"
        );
        let mut times = Vec::new();
        for t in background {
            times.push(t.await.expect("task completes"));
        }
        times.sort();
        let expected: Vec<_> = [0, 200, 300, 400, 500]
            .into_iter()
            .map(Duration::from_millis)
            .collect();
        assert_eq!(
            times, expected,
            "the reads keep the rate, after the urgent one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_urgent_request_goes_before_requests_that_were_waiting() {
        let limiter = Arc::new(RateLimiter::new(10.0).expect("valid rate"));
        let start = Instant::now();
        let others: Vec<_> = (0..5)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                tokio::spawn(async move {
                    limiter.acquire_for_caller().await;
                    Instant::now() - start
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let urgent = urgently(async {
            limiter.acquire_for_caller().await;
            let read = start.elapsed();
            limiter.acquire_for_caller().await;
            (read, start.elapsed())
        })
        .await;
        assert_eq!(
            urgent,
            (Duration::from_millis(100), Duration::from_millis(200)),
            "a read and a start, each in the next slot"
        );
        let mut times = Vec::new();
        for t in others {
            times.push(t.await.expect("task completes"));
        }
        times.sort();
        let expected: Vec<_> = [0, 300, 400, 500, 600]
            .into_iter()
            .map(Duration::from_millis)
            .collect();
        assert_eq!(times, expected, "the others keep the rate, after it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_also_holds_back_requests_whose_slot_was_reserved_before_it() {
        let limiter = Arc::new(RateLimiter::new(10.0).expect("valid rate"));
        let start = Instant::now();
        limiter.acquire().await;
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                tokio::spawn(async move {
                    limiter.acquire().await;
                    Instant::now() - start
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        limiter.hold_off(Duration::from_secs(1));
        let mut times = Vec::new();
        for t in waiting {
            times.push(t.await.expect("task completes"));
        }
        times.sort();
        assert_eq!(
            times,
            [Duration::from_millis(1_050), Duration::from_millis(1_150)],
            "reserved for 100 and 200 ms, sent after the hold, a slot apart"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_limiter_does_not_bank_slots_for_a_burst() {
        let limiter = RateLimiter::new(1.0).expect("valid rate");
        limiter.acquire().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn hold_off_delays_every_caller_until_the_wait_is_over() {
        let limiter = Arc::new(RateLimiter::new(100.0).expect("valid rate"));
        limiter.acquire().await;
        let start = Instant::now();
        limiter.hold_off(Duration::from_secs(3));
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                tokio::spawn(async move {
                    limiter.acquire().await;
                    Instant::now()
                })
            })
            .collect();
        for t in tasks {
            let at = t.await.expect("task completes") - start;
            assert!(
                at >= Duration::from_secs(3),
                "started {at:?} after hold_off(3s)"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_hold_off_does_not_pull_a_later_slot_forward() {
        let limiter = RateLimiter::new(100.0).expect("valid rate");
        let start = Instant::now();
        limiter.hold_off(Duration::from_secs(5));
        limiter.hold_off(Duration::from_secs(1));
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }
}
