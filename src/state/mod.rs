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

use crate::config::{
    BorrowedNetwork, BucketName, Cidr, KmsKey, PolicyScope, PrincipalArn, Region, StackName, Zone,
};
use crate::error::InputError;
use crate::graph::{ResourceKind, Step};

pub(crate) mod file;
pub(crate) mod lock;
mod migrate;
pub(crate) mod remote;
pub(crate) mod store;

pub(crate) use file::lock_path;
pub(crate) use store::Store;

/// Version 2 (privbucket 0.2.0, CHANGELOG.md): typed facts and ownership per resource, and
/// `written_by`. Version 1 (0.1.0) kept a string map (`extra`); it is read and migrated
/// ([`migrate`]).
pub(crate) const SCHEMA_VERSION: u32 = 2;

/// Who wrote a state: a newer file's message names the release to install.
pub(crate) const WRITTEN_BY: &str = concat!("privbucket ", env!("CARGO_PKG_VERSION"));

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
    /// The user's own VPC and subnets (`up --vpc --subnets`), borrowed; absent: privbucket
    /// made the network (`vpc_cidr`, `subnet_cidrs` and `zones` then say how).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) network: Option<BorrowedNetwork>,
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
    /// `--versioning` (on) or `--no-versioning` (suspended, or never on); absent: as S3 left
    /// it (a new bucket is not versioned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) versioning: Option<bool>,
    /// `--kms-key`: SSE-KMS with a key privbucket made (`new`) or the user's own (borrowed);
    /// absent: SSE-S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) kms_key: Option<KmsKey>,
    /// The uploader's own code and settings (`up --code`); absent: the example handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) function: Option<crate::code::FunctionSettings>,
}

/// A stack made before a hardening default existed gets it at its next `up`.
fn on() -> bool {
    true
}

impl Settings {
    /// The steps of a stack with these settings.
    pub(crate) fn steps(&self) -> Vec<Step> {
        crate::graph::steps(
            self.control_function,
            self.network.is_some(),
            self.kms_key.is_some(),
        )
    }

    /// A new stack's settings: hardening on, the original template's policy scope.
    pub(crate) fn new(bucket: BucketName, vpc_cidr: Cidr, subnet_cidrs: [Cidr; 2]) -> Self {
        Settings {
            bucket,
            vpc_cidr,
            subnet_cidrs,
            zones: None,
            network: None,
            control_function: true,
            policy_scope: PolicyScope::Writes,
            admin_principals: Vec::new(),
            tls_deny: true,
            egress_limit: true,
            endpoint_policy: true,
            versioning: None,
            kms_key: None,
            function: None,
        }
    }
}

/// Whose a recorded resource is. What decides what privbucket may change or delete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Ownership {
    /// Made (or adopted by its tags) by this stack: privbucket keeps it right and deletes it.
    #[default]
    Made,
    /// Recorded before its create call: a bucket, whose tags come in a second call (proof that
    /// an untagged bucket by that name is the stack's own, should a crash come between); a KMS
    /// key, by its alias, whose ID comes only with KMS's answer (the next run looks for it
    /// before asking for another).
    Pending,
    /// The user's own, named by a flag: read and used, never changed, tagged or deleted.
    Borrowed,
}

impl Ownership {
    fn is_made(&self) -> bool {
        *self == Ownership::Made
    }
}

/// What a resource records beside its ID, typed by its kind. `parse` refuses facts of one
/// kind recorded for a step of another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Facts {
    /// The zone a subnet is in: the name (account-specific) and the ID (the same place in
    /// every account; absent when AWS did not say).
    Subnet {
        availability_zone: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        availability_zone_id: Option<String>,
    },
    /// The route table and subnet an association joins.
    Association { route_table: String, subnet: String },
    /// The endpoints the bucket policy names: the stack's endpoint, and in a borrowed
    /// network the other endpoints that serve the stack's subnets.
    BucketPolicy {
        endpoint: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        other_endpoints: Vec<String>,
    },
    /// A borrowed VPC's subnets the uploader runs in, with the route table AWS applies to each.
    Network { subnets: Vec<BorrowedSubnet> },
    /// In a borrowed network: the route tables privbucket put on the endpoint (its own to take
    /// off again), and the other S3 endpoints already serving the stack's subnets.
    Endpoint {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        added_route_tables: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        other_endpoints: Vec<String>,
    },
    /// A borrowed key that replaced, as the bucket's default, a key privbucket made: objects
    /// written before may need the made one, which `down` schedules for deletion with the
    /// bucket.
    Key { retired_key: String },
}

/// A subnet of the user's, as `up` found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BorrowedSubnet {
    pub(crate) id: String,
    pub(crate) availability_zone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) availability_zone_id: Option<String>,
    /// The route table AWS applies to it: its explicit association, else the VPC's main table.
    pub(crate) route_table: String,
    /// The route table is the VPC's main one (the subnet has no association of its own).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) main_route_table: bool,
}

impl Facts {
    /// The kind of resource these facts describe.
    fn kind(&self) -> ResourceKind {
        match self {
            Facts::Subnet { .. } => ResourceKind::Subnet,
            Facts::Association { .. } => ResourceKind::Association,
            Facts::BucketPolicy { .. } => ResourceKind::BucketPolicy,
            Facts::Network { .. } => ResourceKind::Vpc,
            Facts::Endpoint { .. } => ResourceKind::Endpoint,
            Facts::Key { .. } => ResourceKind::Key,
        }
    }

    /// Whether these facts are of the kind `step` records.
    fn fit(&self, step: Step) -> bool {
        self.kind() == step.resource_kind()
    }
}

/// One resource privbucket made, adopted, is about to make, or borrows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Resource {
    pub(crate) id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) arn: Option<String>,
    #[serde(default, skip_serializing_if = "Ownership::is_made")]
    pub(crate) ownership: Ownership,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) facts: Option<Facts>,
}

impl Resource {
    pub(crate) fn new(id: impl Into<String>) -> Self {
        Resource {
            id: id.into(),
            arn: None,
            ownership: Ownership::Made,
            facts: None,
        }
    }

    pub(crate) fn with_arn(mut self, arn: impl Into<String>) -> Self {
        self.arn = Some(arn.into());
        self
    }

    pub(crate) fn with_facts(mut self, facts: Facts) -> Self {
        self.facts = Some(facts);
        self
    }

    pub(crate) fn owned_as(mut self, ownership: Ownership) -> Self {
        self.ownership = ownership;
        self
    }

    /// A subnet's zone name, when recorded.
    pub(crate) fn zone(&self) -> Option<&str> {
        match &self.facts {
            Some(Facts::Subnet {
                availability_zone, ..
            }) => Some(availability_zone),
            Some(_) | None => None,
        }
    }

    /// A subnet's zone ID, when recorded.
    pub(crate) fn zone_id(&self) -> Option<&str> {
        match &self.facts {
            Some(Facts::Subnet {
                availability_zone_id,
                ..
            }) => availability_zone_id.as_deref(),
            Some(_) | None => None,
        }
    }
}

impl Resource {
    /// A borrowed VPC's subnets, when recorded.
    pub(crate) fn borrowed_subnets(&self) -> &[BorrowedSubnet] {
        match &self.facts {
            Some(Facts::Network { subnets }) => subnets,
            Some(_) | None => &[],
        }
    }

    /// The key privbucket made that a borrowed key replaced as the bucket's default.
    pub(crate) fn retired_key(&self) -> Option<&str> {
        match &self.facts {
            Some(Facts::Key { retired_key }) => Some(retired_key),
            Some(_) | None => None,
        }
    }

    /// Its ARN, else (a record without one) its ID: what AWS takes to name it.
    pub(crate) fn arn_or_id(&self) -> &str {
        self.arn.as_deref().unwrap_or(&self.id)
    }

    /// What a borrowed network's endpoint record says: the route tables privbucket added, and
    /// the other endpoints serving the stack's subnets.
    pub(crate) fn endpoint_facts(&self) -> (&[String], &[String]) {
        match &self.facts {
            Some(Facts::Endpoint {
                added_route_tables,
                other_endpoints,
            }) => (added_route_tables, other_endpoints),
            Some(_) | None => (&[], &[]),
        }
    }
}

pub(crate) type Resources = BTreeMap<Step, Resource>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct State {
    pub(crate) schema_version: u32,
    /// The release that last wrote the file (absent in version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) written_by: Option<String>,
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
    let value = match value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
    {
        Some(v) if v == u64::from(SCHEMA_VERSION) => value,
        Some(1) => migrate::from_v1(value).map_err(|e| {
            InputError(format!(
                "state file {p} (schema version 1) cannot be migrated: {e}; {leave}"
            ))
        })?,
        Some(v) if v > u64::from(SCHEMA_VERSION) => {
            let by = value
                .get("written_by")
                .and_then(serde_json::Value::as_str)
                .map_or_else(
                    || "a newer privbucket".to_string(),
                    |w| format!("{w} or later"),
                );
            return Err(InputError(format!(
                "state file {p} has schema version {v}, written by a newer privbucket than \
                 this one ({WRITTEN_BY}, which reads versions 1 and {SCHEMA_VERSION}); \
                 install {by} to use it; {leave}"
            )));
        }
        Some(v) => {
            return Err(InputError(format!(
                "state file {p} has schema version {v}, which no privbucket wrote; {leave}"
            )));
        }
        None => {
            return Err(InputError(format!(
                "state file {p} has no schema_version: it is not a privbucket state file; \
                 {leave}"
            )));
        }
    };
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
    for (step, r) in &state.resources {
        if let Some(f) = r.facts.as_ref().filter(|f| !f.fit(*step)) {
            return Err(InputError(format!(
                "state file {p} records {f:?} for {}, which are not facts of its kind; {leave}",
                step.key()
            )));
        }
    }
    if let Some(f) = &mut state.settings.function {
        f.forget_values();
    }
    // Written back as this version writes it: the next write migrates the file.
    state.schema_version = SCHEMA_VERSION;
    state.written_by = Some(WRITTEN_BY.to_string());
    Ok(state)
}

/// The document as privbucket writes it: pretty JSON with a final newline, in this version's
/// schema, signed with this release.
pub(crate) fn encode(state: &State) -> Vec<u8> {
    let state = &State {
        schema_version: SCHEMA_VERSION,
        written_by: Some(WRITTEN_BY.to_string()),
        ..state.clone()
    };
    #[expect(
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
            written_by: Some(WRITTEN_BY.to_string()),
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
    fn facts_of_another_kind_are_refused() {
        let mut doc = serde_json::to_value(sample()).unwrap();
        doc["resources"]["vpc"]["facts"] =
            serde_json::json!({"association": {"route_table": "rtb-1", "subnet": "subnet-1"}});
        let e = parse(&"s.json", doc.to_string().as_bytes()).unwrap_err();
        assert!(e.0.contains("not facts of its kind"), "{e}");
    }

    #[test]
    fn a_version_1_file_reads_and_is_written_as_version_2() {
        let mut doc = serde_json::to_value(sample()).unwrap();
        doc["schema_version"] = 1.into();
        doc.as_object_mut().unwrap().remove("written_by");
        doc["resources"]["subnet-a"] = serde_json::json!({"id": "subnet-1", "extra": {
            "availability_zone": "us-east-1a", "availability_zone_id": "use1-az6"}});
        let st = parse(&"s.json", doc.to_string().as_bytes()).unwrap();
        assert_eq!(st.resources[&Step::SubnetA].zone_id(), Some("use1-az6"));
        let text = String::from_utf8(encode(&st)).unwrap();
        assert!(text.contains("\"schema_version\": 2"), "{text}");
        assert!(text.contains(WRITTEN_BY), "{text}");
        assert!(!text.contains("extra"), "{text}");
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
        let newer = parse(
            p,
            b"{\"schema_version\": 9, \"written_by\": \"privbucket 0.9.1\"}",
        )
        .unwrap_err()
        .0;
        assert!(
            newer.contains("schema version 9")
                && newer.contains("install privbucket 0.9.1 or later"),
            "{newer}"
        );
        assert!(
            parse(p, b"{\"schema_version\": 0}")
                .unwrap_err()
                .0
                .contains("which no privbucket wrote")
        );
        assert!(
            parse(p, b"[1,2]")
                .unwrap_err()
                .0
                .contains("no schema_version")
        );
        assert!(
            parse(p, b"{\"schema_version\": 2}")
                .unwrap_err()
                .0
                .contains("schema")
        );
    }
}
