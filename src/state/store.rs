//! Where the state lives (`--state`): a file on this machine, or an object in S3. Commands
//! load, save, remove and lock it here without knowing which.
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;

use super::lock::Holder;
use super::remote::{Changed, Found, Held, Remote};
use super::{State, encode, file, parse};
use crate::aws::chain_region;
use crate::config::{Global, Region};
use crate::error::InputError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Location {
    File(PathBuf),
    S3 { bucket: String, key: String },
}

impl FromStr for Location {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        let Some(rest) = s.strip_prefix("s3://") else {
            if s.is_empty() {
                return Err(InputError(
                    "--state is empty: give a path or s3://BUCKET/KEY".into(),
                ));
            }
            return Ok(Location::File(PathBuf::from(s)));
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !valid_bucket {
            return Err(InputError(format!(
                "--state {s}: {bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, \
                 digits, dots and hyphens)"
            )));
        }
        if key.is_empty() || key.ends_with('/') {
            return Err(InputError(format!(
                "--state {s} names no object: give its key, e.g. s3://{bucket}/privbucket/\
                 NAME.state.json"
            )));
        }
        Ok(Location::S3 {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// The state's location, opened: for S3, a client in the state bucket's own region.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) location: Location,
    remote: Option<Remote>,
}

/// The lock a command holds on the state; [`Store::release`] it when the command ends.
#[derive(Debug)]
pub(crate) enum Lock {
    /// Released by the OS when the process ends.
    File(#[allow(dead_code)] file::Lock),
    S3(Held),
}

impl Store {
    /// Opens `--state`: nothing to do for a file; for S3, one `HeadBucket` that finds the
    /// bucket's region.
    pub(crate) async fn open(g: &Global) -> Result<Store> {
        let remote = match &g.state {
            Location::File(_) => None,
            Location::S3 { bucket, key } => {
                let near = match &g.region {
                    Some(r) => r.clone(),
                    None => chain_region(g.profile.as_deref())
                        .await
                        .and_then(|r| r.parse::<Region>().ok())
                        .map_or_else(|| "us-east-1".parse(), Ok)?,
                };
                Some(
                    Remote::open(bucket, key, near, g.profile.clone(), g.endpoint_url.clone())
                        .await?,
                )
            }
        };
        Ok(Store {
            location: g.state.clone(),
            remote,
        })
    }

    /// Refuses (exit 2) to keep `state` in its own stack's private bucket: the bucket policy
    /// would govern the state, and `down --delete-objects` would delete it.
    pub(crate) fn refuse_stack_bucket(&self, state: &State) -> Result<()> {
        match &self.remote {
            Some(r) if r.bucket == state.settings.bucket.as_str() => Err(InputError(format!(
                "{} is the private bucket of stack {}: keep its state in a bucket of its own \
                 (docs/state.md)",
                r.bucket, state.stack
            ))
            .into()),
            _ => Ok(()),
        }
    }

    fn path(&self) -> &Path {
        match &self.location {
            Location::File(p) => p,
            Location::S3 { .. } => unreachable!("a store without a remote is a file"),
        }
    }

    /// The state document as it is stored (`None`: there is none).
    pub(crate) async fn read(&self) -> Result<Option<Vec<u8>>> {
        match &self.remote {
            Some(r) => r.read().await,
            None => file::read(self.path()),
        }
    }

    /// Reads and checks the state. `Ok(None)`: there is none.
    pub(crate) async fn load(&self) -> Result<Option<State>> {
        match self.read().await? {
            Some(bytes) => Ok(Some(parse(&self.location, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Writes the state whole, in one atomic write. In S3, a write someone else's came
    /// before fails with exit 3 and leaves this run's state in
    /// `./privbucket.state.<stack>.rejected.json`: nothing is lost.
    pub(crate) async fn save(&self, state: &State) -> Result<()> {
        let bytes = encode(state);
        let Some(remote) = &self.remote else {
            return file::write(self.path(), &bytes);
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
        match &self.remote {
            Some(r) => r.write(bytes).await,
            None => file::write(self.path(), bytes),
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
        let at = &self.location;
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
        match &self.remote {
            None => file::remove(self.path()),
            Some(r) => match r.remove().await {
                Err(e) if e.downcast_ref::<Changed>().is_some() => Err(e.context(format!(
                    "stack {stack} is gone, but state {} was changed by someone else since \
                     this run read it, so it was left in place; look at it with `privbucket \
                     state pull --state {}`",
                    self.location, self.location
                ))),
                done => done,
            },
        }
    }

    /// Takes the state's lock for `command` (e.g. `privbucket up`).
    pub(crate) async fn lock(&self, command: &str, timeout: Option<Duration>) -> Result<Lock> {
        let me = Holder::new(command);
        match &self.remote {
            Some(r) => Ok(Lock::S3(r.lock(&me, timeout).await?)),
            None => Ok(Lock::File(file::lock(self.path(), &me, timeout).await?)),
        }
    }

    /// Releases a lock taken by [`Store::lock`]; a lock that could not be released is a
    /// warning (the command's work is done), with what to do.
    pub(crate) async fn release(&self, lock: Lock) {
        if let (Lock::S3(held), Some(r)) = (lock, &self.remote)
            && let Some(warning) = r.release(held).await
        {
            eprintln!("privbucket: warning: {warning}");
        }
    }

    /// The lock on a state in S3, if any. A file's lock is the OS's (never stale).
    pub(crate) async fn find_lock(&self) -> Result<Option<Found>> {
        match &self.remote {
            Some(r) => r.find_lock().await,
            None => Err(InputError(format!(
                "state file {} is on this machine: its lock is the operating system's, released \
                 when the process holding it ends, so there is nothing to force-unlock",
                self.location
            ))
            .into()),
        }
    }

    pub(crate) async fn force_unlock(&self, found: Found) -> Result<()> {
        self.remote
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("internal error: a local state has no lock to force"))?
            .force_unlock(found)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            "s3://team-state/privbucket/a.json"
                .parse::<Location>()
                .unwrap(),
            Location::S3 {
                bucket: "team-state".into(),
                key: "privbucket/a.json".into()
            }
        );
        assert_eq!(
            "privbucket.state.json".parse::<Location>().unwrap(),
            Location::File("privbucket.state.json".into())
        );
        for bad in [
            "s3://team-state",
            "s3://team-state/",
            "s3://Team/k",
            "s3:///k",
            "",
        ] {
            assert!(bad.parse::<Location>().is_err(), "{bad}");
        }
        assert_eq!(
            "s3://b-1/k".parse::<Location>().unwrap().to_string(),
            "s3://b-1/k"
        );
    }
}
