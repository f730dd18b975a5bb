//! Hedged reads (ARCHITECTURE.md §6.2): a read that has not answered after a while is asked
//! again, side by side, and the first good answer is taken.
//!
//! On a bad day a few calls hang until `api.timeout` while the others answer in milliseconds.
//! A read that decides a start (a channel page, a channel read on its own) would then hold its
//! channels for the whole timeout. Reads change nothing, so asking twice is safe; it costs one
//! more request slot for the slow ones only. Calls that change something are never hedged.

use std::future::Future;
use std::time::Duration;

use crate::livestation::ApiError;

/// The shortest wait before a read is asked again.
const MIN_HEDGE_AFTER: Duration = Duration::from_millis(500);

/// How long a read may take before it is asked again: a third of `api.timeout`, at least
/// half a second. A read that answers normally (milliseconds to a few hundred) is never asked
/// twice; one that hangs costs a third of the timeout instead of all of it.
pub(crate) fn hedge_after(timeout: Duration) -> Duration {
    (timeout / 3).max(MIN_HEDGE_AFTER)
}

/// Runs `call`; when it has not answered after `after`, runs it again beside the first and
/// returns the first success, or, when both fail, the failure of the one that answered last.
pub(crate) async fn hedged<T, F, Fut>(call: F, after: Duration) -> Result<T, ApiError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    let first = call();
    tokio::pin!(first);
    tokio::select! {
        answered = &mut first => return answered,
        _ = tokio::time::sleep(after) => {}
    }
    tracing::debug!(
        after_ms = after.as_millis() as u64,
        "a read is slow to answer; asking again beside it"
    );
    let second = call();
    tokio::pin!(second);
    tokio::select! {
        answered = &mut first => match answered {
            Ok(value) => Ok(value),
            Err(_) => second.await,
        },
        answered = &mut second => match answered {
            Ok(value) => Ok(value),
            Err(_) => first.await,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn failure() -> ApiError {
        ApiError::Transient {
            http_status: Some(503),
            error_code: None,
            reason: "down".into(),
            maybe_applied: true,
        }
    }

    #[test]
    fn the_wait_is_a_third_of_the_timeout_and_at_least_half_a_second() {
        assert_eq!(hedge_after(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(hedge_after(Duration::from_secs(9)), Duration::from_secs(3));
        assert_eq!(hedge_after(Duration::from_secs(1)), MIN_HEDGE_AFTER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_answers_in_time_is_asked_once() {
        let calls = AtomicUsize::new(0);
        let got = hedged(
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(900)).await;
                Ok::<_, ApiError>(7)
            },
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(got.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_hangs_is_asked_again_and_the_second_answer_taken() {
        // The first call hangs for 10 s; the second answers at once.
        let answers = Mutex::new(vec![(Duration::from_secs(10), 1), (Duration::ZERO, 2)]);
        let started = tokio::time::Instant::now();
        let got = hedged(
            || {
                let (wait, value) = answers.lock().unwrap().remove(0);
                async move {
                    tokio::time::sleep(wait).await;
                    Ok::<_, ApiError>(value)
                }
            },
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(got.unwrap(), 2);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_second_fails_the_first_is_still_awaited() {
        let answers = Mutex::new(vec![
            (Duration::from_secs(2), Ok(1)),
            (Duration::ZERO, Err(failure())),
        ]);
        let got = hedged(
            || {
                let (wait, value) = answers.lock().unwrap().remove(0);
                async move {
                    tokio::time::sleep(wait).await;
                    value
                }
            },
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(got.unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn when_both_fail_the_last_failure_is_returned() {
        let answers = Mutex::new(vec![
            (Duration::from_secs(3), Err(failure())),
            (
                Duration::ZERO,
                Err(ApiError::Malformed {
                    http_status: 200,
                    reason: "cut".into(),
                }),
            ),
        ]);
        let got: Result<i32, ApiError> = hedged(
            || {
                let (wait, value) = answers.lock().unwrap().remove(0);
                async move {
                    tokio::time::sleep(wait).await;
                    value
                }
            },
            Duration::from_secs(1),
        )
        .await;
        assert!(matches!(got, Err(ApiError::Transient { .. })), "{got:?}");
    }
}
