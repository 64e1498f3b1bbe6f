//! The state document: what privbucket made, where, and with which settings; and where it is
//! kept (`store`): a local file (`file`) or an S3 object shared by a team (`remote`).
//!
//! It is written after every resource, atomically, so a crash at any moment leaves a state
//! `up` resumes from and `down` cleans up from. A state that cannot be read is never
//! overwritten: every problem with it is an [`InputError`] (exit 2) raised before anything
//! else happens.
use std::collections::BTreeMap;
use std::fmt::Display;

use serde::{Deserialize, Serialize};

use crate::config::{BucketName, Cidr, PolicyScope, PrincipalArn, Region, StackName, Zone};
use crate::error::InputError;
use crate::graph::Step;

pub(crate) mod file;
pub(crate) mod lock;
pub(crate) mod remote;
pub(crate) mod store;

pub(crate) use file::lock_path;
pub(crate) use store::{Location, Store};

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

/// Reads a state document; `at` names where it came from in the messages.
pub(crate) fn parse(at: &dyn Display, bytes: &[u8]) -> Result<State, InputError> {
    let p = at;
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
    let mut state: State = serde_json::from_value(value).map_err(|e| {
        InputError(format!(
            "state file {p} does not match privbucket's schema ({e}); {leave}"
        ))
    })?;
    // What the types cannot say: checked as a flag would be.
    if state.account_id.len() != 12 || !state.account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InputError(format!(
            "state file {p} names account {:?}, which is not a 12-digit AWS account ID; {leave}",
            state.account_id
        )));
    }
    if let Some(url) = &state.endpoint_url {
        crate::config::check_endpoint_url(url)
            .map_err(|e| InputError(format!("state file {p}: {e}; {leave}")))?;
    }
    if let Some(f) = &mut state.settings.function {
        f.forget_values();
    }
    Ok(state)
}

/// The document as privbucket writes it: pretty JSON with a final newline.
pub(crate) fn encode(state: &State) -> Vec<u8> {
    #[allow(
        clippy::expect_used,
        reason = "a State holds strings, numbers and maps with string keys: always JSON"
    )]
    let mut json = serde_json::to_vec_pretty(state).expect("a state always encodes");
    json.push(b'\n');
    json
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
    fn round_trip() {
        let text = encode(&sample());
        assert_eq!(parse(&"s.json", &text).unwrap(), sample());
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("\"vpc\": {") && text.ends_with("}\n"),
            "{text}"
        );
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
        let st = parse(&"s.json", old.to_string().as_bytes()).unwrap();
        assert_eq!(st.settings.policy_scope, PolicyScope::Writes);
        assert!(st.settings.tls_deny && st.settings.egress_limit && st.settings.endpoint_policy);
        assert!(st.settings.admin_principals.is_empty());
    }

    #[test]
    fn a_state_that_kept_variable_values_keeps_only_their_hashes() {
        let mut old = serde_json::to_value(sample()).unwrap();
        old["settings"]["function"] = serde_json::json!({
            "code": "/home/ana/fn",
            "handler": "app.handler",
            "runtime": "python3.13",
            "memory_mb": 128,
            "timeout_seconds": 15,
            "architecture": "x86_64",
            "env": {"DB_PASSWORD": "hunter2"},
            "code_sha256": "abc"
        });
        let st = parse(&"s.json", old.to_string().as_bytes()).unwrap();
        let f = st.settings.function.as_ref().unwrap();
        assert_eq!(
            f.env_sha256.get("DB_PASSWORD"),
            Some(&crate::code::value_hash("hunter2"))
        );
        let text = String::from_utf8(encode(&st)).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("env_sha256"), "{text}");
    }

    #[test]
    fn values_from_a_state_pass_the_rules_flags_pass() {
        let good = serde_json::to_value(sample()).unwrap();
        for (path, value, why) in [
            ("/stack", "UPPER", "invalid stack name"),
            ("/region", "mars-1", "invalid region"),
            ("/settings/bucket", "a..b", "invalid bucket name"),
            ("/account_id", "12345678901x", "12-digit"),
            ("/endpoint_url", "ftp://x", "invalid endpoint URL"),
        ] {
            let mut doc = good.clone();
            match doc.pointer_mut(path) {
                Some(v) => *v = value.into(),
                None => {
                    doc["endpoint_url"] = value.into();
                }
            }
            let e = parse(&"s.json", doc.to_string().as_bytes()).unwrap_err();
            assert!(e.0.contains(why), "{path}: {e}");
        }
    }

    #[test]
    fn unusable_files_are_input_errors() {
        let p = &"s.json";
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
}
