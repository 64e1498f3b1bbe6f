//! Who holds a stack's lock: written into the lock (a local lock file, or the `KEY.lock`
//! object beside a state in S3) by the command that takes it, and shown to whoever finds it
//! taken.
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Holder {
    /// Random, per command run: what `force-unlock` names, and how a command knows a lock it
    /// finds is its own (its write took effect but the answer was lost).
    pub(crate) id: String,
    pub(crate) user: String,
    pub(crate) host: String,
    pub(crate) pid: u32,
    pub(crate) command: String,
    /// RFC 3339, UTC.
    pub(crate) started: String,
    pub(crate) version: String,
}

impl Holder {
    /// This process, running `command` (e.g. `privbucket up`).
    pub(crate) fn new(command: &str) -> Holder {
        Holder {
            id: random_id(),
            user: std::env::var("USER")
                .or_else(|_| std::env::var("USERNAME"))
                .unwrap_or_else(|_| "unknown".into()),
            host: hostname(),
            pid: std::process::id(),
            command: command.to_string(),
            started: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    pub(crate) fn parse(bytes: &[u8]) -> Option<Holder> {
        serde_json::from_slice(bytes).ok()
    }

    pub(crate) fn to_json(&self) -> Vec<u8> {
        #[expect(
            clippy::expect_used,
            reason = "a holder is strings and numbers: always JSON"
        )]
        let mut json = serde_json::to_vec_pretty(self).expect("a holder always encodes");
        json.push(b'\n');
        json
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{} (pid {}, `{}`) since {}",
            self.user, self.host, self.pid, self.command, self.started
        )
    }
}

/// ` (waited 30s)` when the user asked to wait.
pub(crate) fn waited(timeout: Option<Duration>) -> String {
    match timeout {
        Some(t) if !t.is_zero() => format!(" (waited {})", humantime::format_duration(t)),
        _ => String::new(),
    }
}

/// A version-4-style UUID from the OS's random source; where there is none, from the time
/// and the process, which is unique enough to tell two runs apart.
fn random_id() -> String {
    let mut b = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    if read.is_err() {
        use sha2::Digest;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let seed = format!("{}-{}-{}", now.as_nanos(), std::process::id(), hostname());
        b.copy_from_slice(&sha2::Sha256::digest(seed.as_bytes())[..16]);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_differ_and_read_back() {
        let (a, b) = (Holder::new("privbucket up"), Holder::new("privbucket up"));
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 36);
        assert_eq!(Holder::parse(&a.to_json()), Some(a.clone()));
        let shown = a.to_string();
        assert!(
            shown.contains(&format!("(pid {}, `privbucket up`)", a.pid)),
            "{shown}"
        );
        assert!(Holder::parse(b"not json").is_none());
    }
}
