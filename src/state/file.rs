//! A state file on this machine: written atomically (temp file in the same folder, fsync,
//! rename, fsync of the folder; mode 0600), locked with an OS lock that only processes on this
//! machine see.
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::lock::Holder;
use crate::error::InputError;

/// The file's bytes; `None`: there is none.
pub(crate) fn read(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(InputError(format!("cannot read state file {}: {e}", path.display())).into()),
    }
}

/// Replaces the file atomically, with mode 0600.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = parent(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".privbucket-state-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    set_private(tmp.as_file())?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("replacing state file {}", path.display()))?;
    sync_dir(&dir);
    Ok(())
}

/// Removes the file once nothing is left.
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

/// An exclusive OS lock on `<state>.lock`, held for the whole of a command that writes, and
/// released by the OS when the process ends, however it ends. The lock file says who holds
/// it; it is left in place afterwards (deleting it would let two processes lock two different
/// files of the same name).
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
pub(crate) async fn lock(
    state: &Path,
    me: &Holder,
    timeout: Option<Duration>,
) -> anyhow::Result<Lock> {
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
                let mut text = String::new();
                for _ in 0..25 {
                    text.clear();
                    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
                    if !text.trim().is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let who = match Holder::parse(text.as_bytes()) {
                    Some(h) => h.to_string(),
                    None if text.trim().is_empty() => "another process".to_string(),
                    None => text.trim().to_string(),
                };
                return Err(InputError(format!(
                    "state file {} is locked by {who}{}: another privbucket command is working \
                     on this stack; wait for it to finish, or pass --lock-timeout to wait",
                    state.display(),
                    super::lock::waited(timeout),
                ))
                .into());
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(InputError(format!("cannot lock {}: {e}", path.display())).into());
            }
        }
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(&me.to_json()))
        .with_context(|| format!("writing lock file {}", path.display()))?;
    Ok(Lock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        write(&path, b"{}\n").unwrap();
        write(&path, b"{\"a\": 1}\n").unwrap();
        assert_eq!(read(&path).unwrap().unwrap(), b"{\"a\": 1}\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Only the state file is left: no temporary files.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        remove(&path).unwrap();
        assert!(read(&path).unwrap().is_none());
    }

    #[tokio::test]
    async fn a_second_lock_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        let me = Holder::new("privbucket up");
        let _held = lock(&path, &me, None).await.unwrap();
        let err = lock(
            &path,
            &Holder::new("privbucket down"),
            Some(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())) && msg.contains("privbucket up"),
            "{msg}"
        );
        assert!(err.downcast_ref::<InputError>().is_some());
    }
}
