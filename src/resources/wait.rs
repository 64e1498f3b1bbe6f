//! Every wait on AWS, kept as data, as terraform-provider-aws keeps its waiters (`wait.go`:
//! pending and target states, delay, timeout; `status.go`: the read of one field): what is
//! read, which states end the wait, which mean go on, how often, and for how long. One loop
//! runs them all, so every wait reports, times out and words its errors alike.
use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::Instant;

use crate::aws::Backoff;
use crate::graph::Step;
use crate::progress::Progress;

/// The state of a resource that is not found, as a target for the waits on a delete.
pub(crate) const GONE: &str = "gone";

/// What a wait read: the object (handed back when the wait ends), its state, and what to
/// show while waiting (when the state alone says too little).
#[derive(Debug)]
pub(crate) struct Seen<T> {
    pub(crate) item: T,
    pub(crate) state: String,
    pub(crate) detail: Option<String>,
}

impl<T> Seen<T> {
    pub(crate) fn new(item: T, state: impl Into<String>) -> Self {
        Seen {
            item,
            state: state.into(),
            detail: None,
        }
    }
}

/// One wait.
#[derive(Debug)]
pub(crate) struct Waiter {
    /// What is waited for, as the messages name it: "VPC endpoint vpce-1".
    pub(crate) what: String,
    /// The step whose progress line shows the wait.
    pub(crate) step: Step,
    /// The states that end the wait ([`GONE`]: that it is not found).
    pub(crate) target: &'static [&'static str],
    /// The states that mean "not yet"; any other state is an error.
    pub(crate) pending: &'static [&'static str],
    /// How long a resource never seen may be not found before that is an error: AWS may not
    /// list for a while what was made moments ago.
    pub(crate) unlisted_for: Duration,
    /// How often the state is read.
    pub(crate) every: Backoff,
    pub(crate) timeout: Duration,
    /// What the user can do when the wait times out.
    pub(crate) then: &'static str,
}

impl Waiter {
    /// Reads the state (`None`: not found) until it is a target state; returns what was read
    /// then (`None` when the target is [`GONE`]).
    pub(crate) async fn wait<T, F, Fut>(
        &self,
        progress: &Progress,
        mut read: F,
    ) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<Seen<T>>>>,
    {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut delay = self.every.first;
        let mut seen = false;
        let mut last = String::from("not listed");
        loop {
            match read().await? {
                None if self.target.contains(&GONE) => return Ok(None),
                None if !seen && started.elapsed() < self.unlisted_for => {
                    progress.wait(self.step, &format!("{} is not listed yet", self.what));
                }
                None => bail!("{} disappeared while privbucket waited for it", self.what),
                Some(s) if self.target.contains(&s.state.as_str()) => return Ok(Some(s.item)),
                Some(s) if self.pending.contains(&s.state.as_str()) => {
                    seen = true;
                    let line = s
                        .detail
                        .unwrap_or_else(|| format!("{} is {}", self.what, s.state));
                    progress.wait(self.step, &line);
                    last = s.state;
                }
                Some(s) => bail!(
                    "{} is {}, where privbucket waited for {}",
                    self.what,
                    s.state,
                    self.target.join(" or ")
                ),
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "{} was still {last} after {}; {}",
                    self.what,
                    humantime::format_duration(self.timeout),
                    self.then
                );
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = self.every.next(delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn waiter(target: &'static [&'static str]) -> Waiter {
        Waiter {
            what: "thing t-1".into(),
            step: Step::Endpoint,
            target,
            pending: &["pending"],
            unlisted_for: Duration::from_millis(50),
            every: Backoff {
                first: Duration::from_millis(1),
                cap: Duration::from_millis(1),
            },
            timeout: Duration::from_millis(200),
            then: "run it again",
        }
    }

    #[tokio::test]
    async fn a_wait_ends_at_the_target_and_refuses_what_is_neither() {
        let n = AtomicUsize::new(0);
        let got = waiter(&["available"])
            .wait(&Progress::silent(), || async {
                let i = n.fetch_add(1, Ordering::SeqCst);
                Ok(match i {
                    0 => None,
                    1 | 2 => Some(Seen::new(i, "pending")),
                    _ => Some(Seen::new(i, "available")),
                })
            })
            .await
            .unwrap();
        assert_eq!(got, Some(3));
        let failed = waiter(&["available"])
            .wait(&Progress::silent(), || async {
                Ok(Some(Seen::new((), "failed")))
            })
            .await
            .unwrap_err();
        assert!(failed.to_string().contains("is failed"), "{failed}");
    }

    #[tokio::test]
    async fn gone_is_a_target_or_an_error_and_a_timeout_says_what_to_do() {
        let gone = waiter(&[GONE])
            .wait(&Progress::silent(), || async { Ok(None::<Seen<()>>) })
            .await
            .unwrap();
        assert!(gone.is_none());
        let n = AtomicUsize::new(0);
        let vanished = waiter(&["available"])
            .wait(&Progress::silent(), || async {
                Ok((n.fetch_add(1, Ordering::SeqCst) == 0).then(|| Seen::new((), "pending")))
            })
            .await
            .unwrap_err();
        assert!(vanished.to_string().contains("disappeared"), "{vanished}");
        let late = waiter(&["available"])
            .wait(&Progress::silent(), || async {
                Ok(Some(Seen::new((), "pending")))
            })
            .await
            .unwrap_err();
        assert!(
            late.to_string().contains("was still pending after")
                && late.to_string().contains("run it again"),
            "{late}"
        );
    }
}
