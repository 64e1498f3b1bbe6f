//! Where the state lives (`--state`): a file on this machine, or an object in S3. Commands
//! load, save, remove and lock it here without knowing which.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::lock::Holder;
use super::remote::{Changed, Found, Held, Remote};
use super::{State, encode, file, parse};
use crate::aws::chain_region;
use crate::config::{Location, Region};
use crate::error::InputError;

/// The state's location, opened: for S3, a client in the state bucket's own region.
#[derive(Debug)]
pub(crate) enum Store {
    File(PathBuf),
    S3(Remote),
}

/// The lock a command holds on the state; [`Store::release`] it when the command ends.
#[derive(Debug)]
pub(crate) enum Lock {
    /// Released by the OS when the process ends.
    File(
        #[expect(
            dead_code,
            reason = "held, never read: the lock is released when it is dropped"
        )]
        file::Lock,
    ),
    S3(Held),
}

impl Store {
    /// Opens `--state`: nothing to do for a file; for S3, one `HeadBucket` that finds the
    /// bucket's region (`near`: the region to ask first).
    pub(crate) async fn open(
        location: &Location,
        near: Option<&Region>,
        profile: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> Result<Store> {
        Ok(match location {
            Location::File(path) => Store::File(path.clone()),
            Location::S3 { bucket, key } => {
                let near = match near {
                    Some(r) => r.clone(),
                    None => chain_region(profile)
                        .await
                        .and_then(|r| r.parse::<Region>().ok())
                        .map_or_else(|| "us-east-1".parse(), Ok)?,
                };
                Store::S3(
                    Remote::open(
                        bucket,
                        key,
                        near,
                        profile.map(str::to_string),
                        endpoint_url.map(str::to_string),
                    )
                    .await?,
                )
            }
        })
    }

    /// Where the state is, as `--state` names it.
    pub(crate) fn location(&self) -> Location {
        match self {
            Store::File(path) => Location::File(path.clone()),
            Store::S3(r) => Location::S3 {
                bucket: r.bucket.clone(),
                key: r.key.clone(),
            },
        }
    }

    /// Refuses (exit 2) to keep `state` in its own stack's private bucket: the bucket policy
    /// would govern the state, and `down --delete-objects` would delete it.
    pub(crate) fn refuse_stack_bucket(&self, state: &State) -> Result<()> {
        match self {
            Store::S3(r) if r.bucket == state.settings.bucket.as_str() => Err(InputError(format!(
                "{} is the private bucket of stack {}: keep its state in a bucket of its own \
                 (docs/state.md)",
                r.bucket, state.stack
            ))
            .into()),
            Store::S3(_) | Store::File(_) => Ok(()),
        }
    }

    /// The state document as it is stored (`None`: there is none).
    pub(crate) async fn read(&self) -> Result<Option<Vec<u8>>> {
        match self {
            Store::S3(r) => r.read().await,
            Store::File(path) => file::read(path),
        }
    }

    /// Reads and checks the state. `Ok(None)`: there is none.
    pub(crate) async fn load(&self) -> Result<Option<State>> {
        match self.read().await? {
            Some(bytes) => Ok(Some(parse(&self.location(), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Writes the state whole, in one atomic write. In S3, a write someone else's came
    /// before fails with exit 3 and leaves this run's state in
    /// `./privbucket.state.<stack>.rejected.json`: nothing is lost.
    pub(crate) async fn save(&self, state: &State) -> Result<()> {
        let bytes = encode(state);
        let remote = match self {
            Store::File(path) => return file::write(path, &bytes),
            Store::S3(remote) => remote,
        };
        match remote.write(&bytes).await {
            Err(e) if e.downcast_ref::<Changed>().is_some() => {
                Err(self.rejected(&state.stack.to_string(), &bytes, e))
            }
            done => done,
        }
    }

    /// Writes raw bytes (`state push`): the caller checked them.
    pub(crate) async fn write(&self, bytes: &[u8]) -> Result<()> {
        match self {
            Store::S3(r) => r.write(bytes).await,
            Store::File(path) => file::write(path, bytes),
        }
    }

    fn rejected(&self, stack: &str, bytes: &[u8], cause: anyhow::Error) -> anyhow::Error {
        let copy = PathBuf::from(format!("privbucket.state.{stack}.rejected.json"));
        let kept = match file::write(&copy, bytes) {
            Ok(()) => format!(
                "this run's state is in ./{}, and the state object is as the other writer \
                 left it",
                copy.display()
            ),
            Err(e) => format!(
                "this run's state could not be kept in ./{} ({e:#}); it follows:\n{}",
                copy.display(),
                String::from_utf8_lossy(bytes)
            ),
        };
        let at = &self.location();
        cause.context(format!(
            "state {at} was changed by someone else (another privbucket, or by hand) since this \
             run read it, so this run stopped rather than overwrite it. Nothing is lost: {kept}. \
             Compare the two (`privbucket state pull --state {at}`), then run the command \
             again, or upload the right one with `privbucket state push FILE --force --state \
             {at}`"
        ))
    }

    /// Removes the state once nothing is left.
    pub(crate) async fn remove(&self, stack: &str) -> Result<()> {
        match self {
            Store::File(path) => file::remove(path),
            Store::S3(r) => match r.remove().await {
                Err(e) if e.downcast_ref::<Changed>().is_some() => Err(e.context(format!(
                    "stack {stack} is gone, but state {} was changed by someone else since \
                     this run read it, so it was left in place; look at it with `privbucket \
                     state pull --state {}`",
                    self.location(),
                    self.location()
                ))),
                done => done,
            },
        }
    }

    /// Takes the state's lock for `command` (e.g. `privbucket up`).
    pub(crate) async fn lock(&self, command: &str, timeout: Option<Duration>) -> Result<Lock> {
        let me = Holder::new(command);
        match self {
            Store::S3(r) => Ok(Lock::S3(r.lock(&me, timeout).await?)),
            Store::File(path) => Ok(Lock::File(file::lock(path, &me, timeout).await?)),
        }
    }

    /// Releases a lock taken by [`Store::lock`]; a lock that could not be released is a
    /// warning (the command's work is done), with what to do.
    pub(crate) async fn release(&self, lock: Lock) {
        if let (Lock::S3(held), Store::S3(r)) = (lock, self)
            && let Some(warning) = r.release(held).await
        {
            eprintln!("privbucket: warning: {warning}");
        }
    }

    /// The lock on a state in S3, if any. A file's lock is the OS's (never stale).
    pub(crate) async fn find_lock(&self) -> Result<Option<Found>> {
        match self {
            Store::S3(r) => r.find_lock().await,
            Store::File(path) => Err(InputError(format!(
                "state file {} is on this machine: its lock is the operating system's, released \
                 when the process holding it ends, so there is nothing to force-unlock",
                path.display()
            ))
            .into()),
        }
    }

    pub(crate) async fn force_unlock(&self, found: Found) -> Result<()> {
        match self {
            Store::S3(r) => r.force_unlock(found).await,
            Store::File(_) => {
                anyhow::bail!("internal error: a local state has no lock to force")
            }
        }
    }
}
