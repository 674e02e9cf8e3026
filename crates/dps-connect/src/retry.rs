//! Bounded timeouts and retries for hub calls: every connector call ends, after at most
//! `1 + retries` attempts of at most `timeout` each, with exponential backoff between them.

use std::future::Future;
use std::time::Duration;

use dps_service::HubError;

/// How long one hub call may take and how often a transient failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Time limit of one attempt (connect, request and response).
    pub timeout: Duration,
    /// Retries after the first attempt, for transient failures only (unreachable, timeout,
    /// throttled, 5xx).
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one, capped at `max_backoff`.
    pub backoff: Duration,
    /// Upper bound of one backoff delay (a hub's `Retry-After` is capped to it as well).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 10 s per attempt, 2 retries, 500 ms then 1 s backoff.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retries: 2,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// The result of one attempt.
#[derive(Debug)]
pub(crate) enum Attempt<T> {
    /// Done (success or permanent failure).
    Done(Result<T, HubError>),
    /// A transient failure; retry after at least this delay if attempts remain.
    Retry(HubError, Option<Duration>),
}

impl RetryPolicy {
    /// Runs `attempt` until it is done, the retries are exhausted or it times out each time.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, HubError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut delay = self.backoff;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let (err, hint) = match tokio::time::timeout(self.timeout, attempt()).await {
                Ok(Attempt::Done(r)) => return r,
                Ok(Attempt::Retry(e, hint)) => (e, hint),
                Err(_) => (
                    HubError::Timeout(format!(
                        "{what}: no answer within {} ms",
                        self.timeout.as_millis()
                    )),
                    None,
                ),
            };
            if tries > self.retries {
                return Err(match err {
                    HubError::Timeout(m) => {
                        HubError::Timeout(format!("{m} (after {tries} attempts)"))
                    }
                    HubError::Unavailable(m) => {
                        HubError::Unavailable(format!("{m} (after {tries} attempts)"))
                    }
                    other => other,
                });
            }
            let wait = hint.unwrap_or(delay).min(self.max_backoff);
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(self.max_backoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick(retries: u32) -> RetryPolicy {
        RetryPolicy {
            timeout: Duration::from_millis(50),
            retries,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_a_bounded_number_of_times() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = quick(2)
            .run("op", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Attempt::Retry(HubError::Unavailable("503".into()), None)
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            r,
            Err(HubError::Unavailable("503 (after 3 attempts)".into()))
        );
    }

    #[tokio::test]
    async fn permanent_failures_and_successes_end_at_once() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = quick(5)
            .run("op", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Attempt::Done(Err(HubError::Rejected("400".into())))
            })
            .await;
        assert_eq!((calls.load(Ordering::SeqCst), r.is_err()), (1, true));
        let ok = quick(0).run("op", || async { Attempt::Done(Ok(7)) }).await;
        assert_eq!(ok, Ok(7));
    }

    #[tokio::test]
    async fn a_hanging_hub_times_out() {
        let r: Result<(), _> = quick(1)
            .run("PUT /devices/d", std::future::pending::<Attempt<()>>)
            .await;
        assert!(
            matches!(&r, Err(HubError::Timeout(m)) if m.contains("PUT /devices/d") && m.contains("2 attempts")),
            "{r:?}"
        );
    }
}
