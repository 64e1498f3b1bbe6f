//! The state file: what privbucket made, where, and with which settings.
//!
//! Written atomically (temp file in the same folder, fsync, rename, fsync of the folder; mode
//! 0600) after every resource, so a crash at any moment leaves a file `up` resumes from and
//! `down` cleans up from. A file that cannot be read is never overwritten: every problem with
//! it is an [`InputError`] (exit 2) raised before anything else happens.
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::{BucketName, Cidr, PolicyScope, PrincipalArn, Region, StackName, Zone};
use crate::error::InputError;
use crate::graph::Step;

pub(crate) const SCHEMA_VERSION: u32 = 1;

/// The settings a stack was made with; `up` on an existing stack keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    pub(crate) bucket: BucketName,
    pub(crate) vpc_cidr: Cidr,
    pub(crate) subnet_cidrs: [Cidr; 2],
    /// The subnets' zones, when `--zones` chose them; else privbucket picks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) zones: Option<[Zone; 2]>,
    pub(crate) control_function: bool,
    /// Absent in files written before policy scopes: the original template's policy.
    #[serde(default)]
    pub(crate) policy_scope: PolicyScope,
    /// Exempt from the `all`-scope Deny: the operator who ran `up`, and `--admin-principal`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) admin_principals: Vec<PrincipalArn>,
    #[serde(default = "on")]
    pub(crate) tls_deny: bool,
    #[serde(default = "on")]
    pub(crate) egress_limit: bool,
    #[serde(default = "on")]
    pub(crate) endpoint_policy: bool,
    /// The uploader's own code and settings (`up --code`); absent: the example handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) function: Option<crate::code::FunctionSettings>,
}

/// A stack made before a hardening default existed gets it at its next `up`.
fn on() -> bool {
    true
}

impl Settings {
    /// A new stack's settings: hardening on, the original template's policy scope.
    pub(crate) fn new(bucket: BucketName, vpc_cidr: Cidr, subnet_cidrs: [Cidr; 2]) -> Self {
        Settings {
            bucket,
            vpc_cidr,
            subnet_cidrs,
            zones: None,
            control_function: true,
            policy_scope: PolicyScope::Writes,
            admin_principals: Vec::new(),
            tls_deny: true,
            egress_limit: true,
            endpoint_policy: true,
            function: None,
        }
    }
}

/// One resource privbucket made (or adopted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Resource {
    pub(crate) id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) arn: Option<String>,
    /// Facts about the resource the tool needs later (a subnet's AZ, an association's route
    /// table and subnet).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) extra: BTreeMap<String, String>,
}

impl Resource {
    pub(crate) fn new(id: impl Into<String>) -> Self {
        Resource {
            id: id.into(),
            arn: None,
            extra: BTreeMap::new(),
        }
    }

    pub(crate) fn with_arn(mut self, arn: impl Into<String>) -> Self {
        self.arn = Some(arn.into());
        self
    }

    pub(crate) fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }
}

pub(crate) type Resources = BTreeMap<Step, Resource>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct State {
    pub(crate) schema_version: u32,
    pub(crate) stack: StackName,
    pub(crate) region: Region,
    pub(crate) account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) endpoint_url: Option<String>,
    pub(crate) settings: Settings,
    pub(crate) resources: Resources,
}

/// Reads and checks a state file. `Ok(None)`: there is none.
pub(crate) fn load(path: &Path) -> anyhow::Result<Option<State>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(
                InputError(format!("cannot read state file {}: {e}", path.display())).into(),
            );
        }
    };
    parse(path, &bytes).map(Some).map_err(Into::into)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<State, InputError> {
    let p = path.display();
    let leave = "privbucket has left it untouched; restore it from a backup, or move it \
                 aside and use `--state` with another path";
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(InputError(format!(
            "state file {p} is empty (a truncated write, or not privbucket's); {leave}"
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        InputError(format!(
            "state file {p} is not valid JSON ({e}): it may be truncated or corrupt; {leave}"
        ))
    })?;
    match value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
    {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(InputError(format!(
                "state file {p} has schema version {v}, but this privbucket reads version \
                 {SCHEMA_VERSION}; use the privbucket release that wrote it; {leave}"
            )));
        }
        None => {
            return Err(InputError(format!(
                "state file {p} has no schema_version: it is not a privbucket state file; \
                 {leave}"
            )));
        }
    }
    serde_json::from_value(value).map_err(|e| {
        InputError(format!(
            "state file {p} does not match privbucket's schema ({e}); {leave}"
        ))
    })
}

/// Writes the state atomically with mode 0600.
pub(crate) fn save(path: &Path, state: &State) -> anyhow::Result<()> {
    let dir = parent(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".privbucket-state-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    set_private(tmp.as_file())?;
    let mut json = serde_json::to_vec_pretty(state).context("encoding the state")?;
    json.push(b'\n');
    tmp.write_all(&json)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("replacing state file {}", path.display()))?;
    sync_dir(&dir);
    Ok(())
}

/// Removes the state file once nothing is left.
pub(crate) fn remove(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_dir(&parent(path));
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing state file {}", path.display())),
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(unix)]
fn set_private(file: &File) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .context("setting the state file's mode to 0600")
}

#[cfg(not(unix))]
fn set_private(_: &File) -> anyhow::Result<()> {
    Ok(())
}

/// Makes the rename durable. Best effort: not every file system lets a folder be synced.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// An exclusive OS lock on `<state>.lock`, held for the whole of a command that writes.
/// The lock file says who holds it; it is left in place afterwards (deleting it would let two
/// processes lock two different files of the same name).
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

pub(crate) fn lock_path(state: &Path) -> PathBuf {
    let mut s = state.as_os_str().to_os_string();
    s.push(".lock");
    PathBuf::from(s)
}

/// Waits (without blocking the runtime) up to `timeout` for another holder to finish.
pub(crate) async fn lock(state: &Path, timeout: Option<Duration>) -> anyhow::Result<Lock> {
    let path = lock_path(state);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| InputError(format!("cannot open lock file {}: {e}", path.display())))?;
    let deadline = Instant::now() + timeout.unwrap_or_default();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(fs::TryLockError::WouldBlock) => {
                // The holder writes its name just after it takes the lock: give it a moment
                // (up to half a second) rather than report "another process".
                let mut holder = String::new();
                for _ in 0..25 {
                    holder.clear();
                    let _ = file
                        .rewind()
                        .and_then(|()| file.read_to_string(&mut holder));
                    if !holder.trim().is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    holder.to_string()
                };
                let waited = match timeout {
                    Some(t) => format!(" (waited {})", humantime::format_duration(t)),
                    None => String::new(),
                };
                return Err(InputError(format!(
                    "state file {} is locked by {who}{waited}: another privbucket command is \
                     working on this stack; wait for it to finish, or pass --lock-timeout to wait",
                    state.display()
                ))
                .into());
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(InputError(format!("cannot lock {}: {e}", path.display())).into());
            }
        }
    }
    let since = humantime::format_rfc3339_seconds(SystemTime::now());
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "pid {} since {since}", std::process::id()))
        .with_context(|| format!("writing lock file {}", path.display()))?;
    Ok(Lock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        State {
            schema_version: SCHEMA_VERSION,
            stack: "privbucket".parse().unwrap(),
            region: "us-east-1".parse().unwrap(),
            account_id: "123456789012".into(),
            endpoint_url: None,
            settings: Settings::new(
                "b-123".parse().unwrap(),
                "10.16.0.0/16".parse().unwrap(),
                [
                    "10.16.0.0/24".parse().unwrap(),
                    "10.16.1.0/24".parse().unwrap(),
                ],
            ),
            resources: [(Step::Vpc, Resource::new("vpc-1"))].into(),
        }
    }

    #[test]
    fn round_trip_is_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        save(&path, &sample()).unwrap();
        assert_eq!(load(&path).unwrap().unwrap(), sample());
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"vpc\": {"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Only the state file is left: no temporary files.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn files_from_before_policy_scopes_and_hardening_read_as_their_defaults() {
        let mut old = serde_json::to_value(sample()).unwrap();
        for k in [
            "policy_scope",
            "tls_deny",
            "egress_limit",
            "endpoint_policy",
        ] {
            assert!(old["settings"].as_object_mut().unwrap().remove(k).is_some());
        }
        let st = parse(Path::new("s.json"), old.to_string().as_bytes()).unwrap();
        assert_eq!(st.settings.policy_scope, PolicyScope::Writes);
        assert!(st.settings.tls_deny && st.settings.egress_limit && st.settings.endpoint_policy);
        assert!(st.settings.admin_principals.is_empty());
    }

    #[test]
    fn unusable_files_are_input_errors() {
        let p = Path::new("s.json");
        assert!(parse(p, b"").unwrap_err().0.contains("empty"));
        assert!(
            parse(p, b"{\"schema_version\": 1, \"sta")
                .unwrap_err()
                .0
                .contains("not valid JSON")
        );
        assert!(
            parse(p, b"{\"schema_version\": 9}")
                .unwrap_err()
                .0
                .contains("schema version 9")
        );
        assert!(
            parse(p, b"[1,2]")
                .unwrap_err()
                .0
                .contains("no schema_version")
        );
        assert!(
            parse(p, b"{\"schema_version\": 1}")
                .unwrap_err()
                .0
                .contains("schema")
        );
    }

    #[tokio::test]
    async fn a_second_lock_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let _held = lock(&path, None).await.unwrap();
        let err = lock(&path, Some(Duration::from_millis(200)))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(err.downcast_ref::<InputError>().is_some());
    }
}
