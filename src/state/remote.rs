//! A state kept as an S3 object (`--state s3://BUCKET/KEY`), shared by a team, and locked
//! with S3's own conditional writes, as Terraform's S3 backend does since 1.11
//! (`use_lockfile`): no lock server, no DynamoDB table.
//!
//! - The lock is the object `KEY.lock`, made with `PutObject` + `If-None-Match: *`. Its body
//!   says who holds it ([`Holder`]). On 412 `PreconditionFailed` the lock is read back: if its
//!   ID is ours, our write took effect and only its answer was lost (the SDK sent it again and
//!   met our own lock, OpenTofu issue #4405), so we hold it.
//! - It is released with `DeleteObject` + `If-Match` on its ETag: a lock someone
//!   force-removed and someone else took is never deleted by the old holder.
//! - Every state write carries `If-Match` with the ETag last read or written (`If-None-Match:
//!   *` for a state that did not exist): someone else's write in between is a 412, and the run
//!   stops before it overwrites anything.
//! - 409 `ConditionalRequestConflict` ("A conflicting operation occurred. If using PutObject
//!   you can retry the request.", S3 API reference, "Error responses") is retried by the SDK's
//!   own retry (standard mode, with its backoff): the state's client classifies that code as
//!   transient for `PutObject` and `DeleteObject`.
//!
//! Every branch is on the error *code*: S3 has been seen answering `PreconditionFailed` with
//! HTTP 200 (aws/aws-sdk-java-v2#6023).
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::time::Instant;

use super::lock::{Holder, waited};
use crate::aws::{Connection, s3_client};
use crate::config::Region;
use crate::error::{AwsError, Call, CallResultExt, InputError, Kind};

const PRECONDITION_FAILED: &str = "PreconditionFailed";
const CONFLICT: &[&str] = &["ConditionalRequestConflict"];
/// How often a command waiting for a lock (`--lock-timeout`) looks again.
const LOCK_POLL: Duration = Duration::from_secs(1);

fn code_is(e: &AwsError, code: &str) -> bool {
    e.code.as_deref() == Some(code)
}

/// The state object's version as this process last saw it.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// Not read yet, or read and absent: a write must not replace anything.
    Absent,
    ETag(String),
}

#[derive(Debug)]
pub(crate) struct Remote {
    client: aws_sdk_s3::Client,
    pub(crate) bucket: String,
    pub(crate) key: String,
    seen: Mutex<Seen>,
}

/// A lock this process holds.
#[derive(Debug)]
pub(crate) struct Held {
    etag: String,
    id: String,
}

/// A lock found on the state.
#[derive(Debug)]
pub(crate) struct Found {
    /// `None`: the lock object is not privbucket's JSON.
    pub(crate) holder: Option<Holder>,
    etag: String,
}

/// Why a state write was refused: someone else wrote the object since this process read it.
#[derive(Debug)]
pub(crate) struct Changed;

/// An S3 client whose retry also takes 409 `ConditionalRequestConflict` on the conditional
/// writes and deletes as transient (the SDK's own classifier, given the code).
async fn state_client(conn: &Connection) -> aws_sdk_s3::Client {
    use aws_runtime::retries::classifiers::AwsErrorCodeClassifier;
    use aws_sdk_s3::operation::{delete_object::DeleteObjectError, put_object::PutObjectError};
    let config = s3_client(conn)
        .await
        .config()
        .to_builder()
        .retry_classifier(
            AwsErrorCodeClassifier::<PutObjectError>::builder()
                .transient_errors(CONFLICT)
                .build(),
        )
        .retry_classifier(
            AwsErrorCodeClassifier::<DeleteObjectError>::builder()
                .transient_errors(CONFLICT)
                .build(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

impl Remote {
    /// Finds the state bucket's region (HeadBucket answers it, even from another region) and
    /// makes a client there. `near` is where to ask first.
    pub(crate) async fn open(
        bucket: &str,
        key: &str,
        near: Region,
        profile: Option<String>,
        endpoint_url: Option<String>,
    ) -> Result<Remote> {
        let conn = |region: Region| Connection {
            region,
            profile: profile.clone(),
            endpoint_url: endpoint_url.clone(),
            max_calls: None,
        };
        let mut client = state_client(&conn(near.clone())).await;
        let target = format!("state bucket {bucket}");
        let answered = match client
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
            .call("HeadBucket", &target)
        {
            Ok(out) => out.bucket_region().map(str::to_string),
            Err(e) if e.bucket_region.is_some() => e.bucket_region.as_deref().map(str::to_string),
            Err(e) if e.is(Kind::NotFound) => {
                return Err(InputError(format!(
                    "state bucket {bucket} (in --state s3://{bucket}/{key}) does not exist; \
                     create it first (docs/state.md), or fix --state"
                ))
                .into());
            }
            Err(e) if e.is(Kind::AccessDenied) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot use state bucket {bucket}: it belongs to another account, or these \
                     credentials lack s3:ListBucket on it (docs/state.md lists the \
                     permissions)"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(Ok(r)) = answered.as_deref().map(str::parse::<Region>)
            && r != near
        {
            client = state_client(&conn(r)).await;
        }
        Ok(Remote {
            client,
            bucket: bucket.to_string(),
            key: key.to_string(),
            seen: Mutex::new(Seen::Absent),
        })
    }

    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }

    /// The state object's bytes and ETag (`None`: there is none).
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        let target = format!("s3://{}/{key}", self.bucket);
        let Some(out) = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .call("GetObject", &target)
            .found()?
        else {
            return Ok(None);
        };
        let etag = etag_of(out.e_tag(), "GetObject", &target)?;
        let body = out
            .body
            .collect()
            .await
            .with_context(|| format!("reading {target}"))?
            .into_bytes()
            .to_vec();
        Ok(Some((body, etag)))
    }

    /// Reads the state object, and remembers its version for the next write.
    pub(crate) async fn read(&self) -> Result<Option<Vec<u8>>> {
        let got = self.get(&self.key).await?;
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = match &got {
            Some((_, etag)) => Seen::ETag(etag.clone()),
            None => Seen::Absent,
        };
        Ok(got.map(|(b, _)| b))
    }

    /// Replaces the state object if nobody else wrote it since it was read (or written) here.
    /// `Err(Changed)` inside the error: someone did; nothing was written.
    pub(crate) async fn write(&self, bytes: &[u8]) -> Result<()> {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type("application/json")
            .body(bytes.to_vec().into());
        let put = match &seen {
            Seen::ETag(etag) => put.if_match(etag),
            Seen::Absent => put.if_none_match("*"),
        };
        match put.send().await.call("PutObject", self.url()) {
            Ok(out) => {
                let etag = etag_of(out.e_tag(), "PutObject", &self.url())?;
                self.remember(Some(&etag));
                Ok(())
            }
            // A precondition that failed, or (with If-Match) an object deleted since.
            Err(e) if code_is(&e, PRECONDITION_FAILED) || e.is(Kind::NotFound) => {
                // Our own write, whose answer was lost and which the SDK sent again?
                match self.get(&self.key).await? {
                    Some((now, etag)) if now == bytes => {
                        self.remember(Some(&etag));
                        Ok(())
                    }
                    _ => Err(anyhow::Error::new(e).context(Changed)),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn remember(&self, etag: Option<&str>) {
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = match etag {
            Some(e) => Seen::ETag(e.to_string()),
            None => Seen::Absent,
        };
    }

    /// Deletes the state object, unless someone else wrote it since.
    pub(crate) async fn remove(&self) -> Result<()> {
        let Seen::ETag(etag) = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        else {
            return Ok(());
        };
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .if_match(&etag)
            .send()
            .await
            .call("DeleteObject", self.url())
            .gone()
        {
            Ok(()) => {
                self.remember(None);
                Ok(())
            }
            Err(e) if code_is(&e, PRECONDITION_FAILED) => {
                Err(anyhow::Error::new(e).context(Changed))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The lock on the state, if there is one.
    pub(crate) async fn find_lock(&self) -> Result<Option<Found>> {
        Ok(self.get(&self.lock_key()).await?.map(|(body, etag)| Found {
            holder: Holder::parse(&body),
            etag,
        }))
    }

    /// Takes the lock, waiting up to `timeout` for another holder to release it.
    pub(crate) async fn lock(&self, me: &Holder, timeout: Option<Duration>) -> Result<Held> {
        let deadline = Instant::now() + timeout.unwrap_or_default();
        let key = self.lock_key();
        let target = format!("s3://{}/{key}", self.bucket);
        let body = me.to_json();
        loop {
            let put = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type("application/json")
                .if_none_match("*")
                .body(body.clone().into())
                .send()
                .await
                .call("PutObject", &target);
            match put {
                Ok(out) => {
                    return Ok(Held {
                        etag: etag_of(out.e_tag(), "PutObject", &target)?,
                        id: me.id.clone(),
                    });
                }
                Err(e) if code_is(&e, PRECONDITION_FAILED) => match self.find_lock().await? {
                    // Released in between: try again at once.
                    None => {}
                    Some(Found {
                        holder: Some(h),
                        etag,
                    }) if h.id == me.id => return Ok(Held { etag, id: h.id }),
                    Some(_) if Instant::now() < deadline => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        tokio::time::sleep(LOCK_POLL.min(left)).await;
                    }
                    Some(found) => return Err(self.locked(&found, timeout).into()),
                },
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "cannot take the lock {target}: privbucket needs s3:PutObject and \
                         s3:GetObject on the state's prefix (docs/state.md)"
                    )));
                }
            }
        }
    }

    fn locked(&self, found: &Found, timeout: Option<Duration>) -> InputError {
        let url = self.url();
        let who = match &found.holder {
            Some(h) => format!("{h}, lock ID {}", h.id),
            None => format!(
                "someone (s3://{}/{} is not privbucket's)",
                self.bucket,
                self.lock_key()
            ),
        };
        let unlock = match &found.holder {
            Some(h) => format!("privbucket force-unlock {} --state {url}", h.id),
            None => format!("delete s3://{}/{}", self.bucket, self.lock_key()),
        };
        InputError(format!(
            "state {url} is locked by {who}{}: another privbucket command is working on this \
             stack. Wait for it to finish (or pass --lock-timeout to wait); if it crashed, \
             remove its lock with `{unlock}`",
            waited(timeout)
        ))
    }

    /// Releases a lock this process holds. `Some(warning)`: it could not, and why.
    pub(crate) async fn release(&self, held: Held) -> Option<String> {
        let target = format!("s3://{}/{}", self.bucket, self.lock_key());
        let deleted = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.lock_key())
            .if_match(&held.etag)
            .send()
            .await
            .call("DeleteObject", &target);
        match deleted {
            Ok(_) => None,
            Err(e) if e.is(Kind::NotFound) => Some(format!(
                "the lock {target} was already gone (force-unlocked while this command ran?)"
            )),
            Err(e) if code_is(&e, PRECONDITION_FAILED) => Some(format!(
                "the lock {target} is no longer this command's (it was force-unlocked and taken \
                 by someone else); it was left in place"
            )),
            Err(e) => Some(format!(
                "could not release the lock {target} ({e}); remove it with `privbucket \
                 force-unlock {} --state {}`",
                held.id,
                self.url()
            )),
        }
    }

    /// Removes a lock found by [`Remote::find_lock`], unless it changed since.
    pub(crate) async fn force_unlock(&self, found: Found) -> Result<()> {
        let target = format!("s3://{}/{}", self.bucket, self.lock_key());
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.lock_key())
            .if_match(&found.etag)
            .send()
            .await
            .call("DeleteObject", &target)
            .gone()
        {
            Ok(()) => Ok(()),
            Err(e) if code_is(&e, PRECONDITION_FAILED) => Err(InputError(format!(
                "the lock {target} changed while privbucket was removing it (someone else took \
                 it); nothing was removed. Run `privbucket force-unlock` again with the ID it \
                 now names, if that holder is gone too"
            ))
            .into()),
            Err(e) => Err(e.into()),
        }
    }
}

impl std::fmt::Display for Changed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the state object was changed by someone else since privbucket read it")
    }
}

impl std::error::Error for Changed {}

/// The ETag S3 answered: every conditional write after it needs it, so an answer without one
/// is an error, not an empty string that would match nothing.
fn etag_of(etag: Option<&str>, call: &str, target: &str) -> Result<String> {
    match etag {
        Some(e) if !e.is_empty() => Ok(e.to_string()),
        _ => anyhow::bail!(
            "S3 answered {call} on {target} without an ETag, which privbucket needs for its \
             conditional writes; a store that leaves it out cannot hold a shared state (use a \
             local --state)"
        ),
    }
}
