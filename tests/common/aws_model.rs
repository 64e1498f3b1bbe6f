//! A model of how real AWS behaves where the emulator does not: eventual consistency and
//! lifecycles that moto, answering at once and consistently, never shows. The test proxy
//! consults it for every call; each behaviour can be switched on alone, with its window
//! scaled down from AWS's minutes to a test's seconds, and answers with the code, status and
//! message AWS sends. Sources:
//! - EC2: "Eventual consistency in the Amazon EC2 API" (EC2 developer guide): right after a
//!   create, calls naming the new ID can fail with `<Kind>ID.NotFound`, and describe calls may
//!   not list it yet; terraform-provider-aws retries these for `ec2PropagationTimeout`
//!   (internal/service/ec2/consts.go).
//! - IAM propagation: for seconds after `CreateRole`, `CreateFunction` with the role answers
//!   `InvalidParameterValueException` "The role defined for the function cannot be assumed by
//!   Lambda." (or, for a VPC function, "The provided execution role does not have permissions
//!   to call CreateNetworkInterface on EC2"); terraform-provider-aws retries both for
//!   `iamPropagationTimeout` (internal/service/lambda/function.go).
//! - IAM: `ConcurrentModification` (409), "The request was rejected because multiple requests
//!   to change this object were submitted simultaneously" (IAM API reference, common errors
//!   of the role operations).
//! - Lambda: right after `CreateFunction`, `GetFunction` can answer 404
//!   `ResourceNotFoundException` "Function not found: …", and the function is `Pending` while
//!   Lambda makes its network interfaces ("Lambda function states", Lambda developer guide);
//!   a function Lambda could not set up is `Failed` with a `StateReasonCode` such as
//!   `EniLimitExceeded` (same page), and the remedy is to delete it and make it again.
//! - S3: sub-resource calls right after `CreateBucket` can answer 404 `NoSuchBucket`, and a
//!   name deleted moments ago answers `CreateBucket` with 409 `OperationAborted` "A
//!   conflicting conditional operation is currently in progress against this resource.
//!   Please try again." (S3 API reference, error responses).
//! - Lambda's network interfaces: one per (subnet, security group) pair, described
//!   `AWS Lambda VPC ENI-<function>…`, held until some time after the last function leaves
//!   the pair ("Lambda Hyperplane ENIs", Lambda developer guide: up to 20 minutes), and
//!   released with the function's execution role; while held, deleting the ENI, its subnet or
//!   its group is refused (terraform-provider-aws waits up to 45 minutes for them,
//!   internal/service/ec2/vpc_network_interface.go).
//! - Lambda updates: `LastUpdateStatus` `InProgress` after an update, and 409
//!   `ResourceConflictException` for another update meanwhile (Lambda API reference).
//! - EC2: a Gateway endpoint `pending` before `available` (`VpcEndpoint.State`); a zone
//!   refusing `CreateSubnet` with the zones that take subnets (the message as reported in
//!   hashicorp/terraform#3434 and openshift/installer#1789); Lambda refusing a subnet in a zone
//!   it does not run in (`InvalidParameterValueException`, as reported in
//!   keboola/developer-portal#81).
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::Response;
use hyper::body::Bytes;

use super::proxy::Call;

/// Which behaviours are on, and for how long each lasts.
#[derive(Debug, Default, Clone)]
pub(crate) struct Behaviours {
    /// After an EC2 create, calls naming the new ID answer NotFound, and describe calls by
    /// tag do not list it, for this long.
    pub(crate) ec2_consistency: Option<Duration>,
    /// After `CreateRole`, Lambda cannot use the role for this long: `CreateFunction` answers
    /// `InvalidParameterValueException`.
    pub(crate) iam_propagation: Option<Duration>,
    /// Two mutations of one IAM role at once: the second answers 409 ConcurrentModification.
    /// Each mutation takes this long, so that overlaps show.
    pub(crate) iam_concurrency: Option<Duration>,
    /// After `CreateFunction`, `GetFunction` answers 404 for this long.
    pub(crate) lambda_not_found: Option<Duration>,
    /// After `CreateFunction`, the function is `Pending` for this long.
    pub(crate) lambda_pending: Option<Duration>,
    /// After `CreateBucket`, its sub-resources answer `NoSuchBucket` for this long.
    pub(crate) s3_new_bucket: Option<Duration>,
    /// After `DeleteBucket`, `CreateBucket` of the name answers `OperationAborted` for this
    /// long.
    pub(crate) s3_name_reuse: Option<Duration>,
    /// This function is `Failed` (Lambda could not make its ENIs) until it is deleted.
    pub(crate) lambda_failed: Option<&'static str>,
    /// This function is `Inactive`: idle for weeks, Lambda reclaimed its ENIs ("Lambda
    /// function states": it wakes, `Pending` then `Active`, on the next invoke).
    pub(crate) lambda_inactive: Option<&'static str>,
    /// This bucket exists in that other region: `HeadBucket` answers 301 with
    /// `x-amz-bucket-region` (S3 API reference, HeadBucket).
    pub(crate) s3_other_region: Option<(&'static str, &'static str)>,
    /// Lambda's network interfaces: a VPC function gets one per (subnet, security group)
    /// pair, made in the emulator, `in-use` until this long after the last function leaves
    /// the pair, and never released if the leaving function's role is deleted first.
    pub(crate) lambda_enis: Option<Duration>,
    /// After a function update, `LastUpdateStatus` is `InProgress` for this long, and another
    /// update answers 409 `ResourceConflictException`.
    pub(crate) lambda_update: Option<Duration>,
    /// Someone else's update of this function lands just before privbucket's first update
    /// of it (the race a read cannot rule out): that update answers 409.
    pub(crate) lambda_update_race: Option<&'static str>,
    /// After `CreateVpcEndpoint`, the endpoint is `pending` for this long.
    pub(crate) endpoint_pending: Option<Duration>,
    /// This zone takes no new subnets (`CreateSubnet` answers `InvalidParameterValue` with
    /// the zones that do).
    pub(crate) zone_refuses_subnets: Option<&'static str>,
    /// Lambda refuses a VPC function with a subnet in this zone.
    pub(crate) lambda_refuses_zone: Option<&'static str>,
    /// KMS as AWS answers where moto does not: `GenerateDataKey` with `DryRun` answers 412
    /// `DryRunOperationException` when it would have succeeded (KMS API reference,
    /// GenerateDataKey, "DryRun"); a key pending deletion answers `KMSInvalidStateException`
    /// to `GetKeyRotationStatus` and to a second `ScheduleKeyDeletion` ("Key states of AWS KMS
    /// keys", KMS developer guide: a key pending deletion cannot be used in any
    /// cryptographic or rotation operation, and `CancelKeyDeletion` leaves it `Disabled`).
    pub(crate) kms_states: bool,
    /// After `CreateKey`, `ListKeys` does not list the new key for this long: "AWS KMS
    /// eventual consistency" (KMS developer guide), a change propagating "typically [in] less
    /// than a few seconds, but in some cases several minutes".
    pub(crate) kms_listing: Option<Duration>,
}

impl Behaviours {
    /// Every behaviour at once, with test-sized windows in AWS's order of events.
    pub(crate) fn all() -> Behaviours {
        Behaviours {
            ec2_consistency: Some(Duration::from_millis(1500)),
            iam_concurrency: Some(Duration::from_millis(300)),
            iam_propagation: Some(Duration::from_millis(2000)),
            lambda_not_found: Some(Duration::from_millis(1000)),
            lambda_pending: Some(Duration::from_millis(3000)),
            s3_new_bucket: Some(Duration::from_millis(1500)),
            s3_name_reuse: Some(Duration::from_millis(3000)),
            lambda_enis: Some(Duration::from_millis(3000)),
            lambda_update: Some(Duration::from_millis(1500)),
            endpoint_pending: Some(Duration::from_millis(1500)),
            zone_refuses_subnets: Some("us-east-1a"),
            lambda_update_race: Some("privbucket-uploader"),
            kms_states: true,
            kms_listing: Some(Duration::from_millis(2000)),
            ..Default::default()
        }
    }
}

#[derive(Debug, Default)]
struct Seen {
    /// EC2 IDs and when their create returned.
    ec2: HashMap<String, Instant>,
    /// IAM roles and when `CreateRole` returned.
    roles_made: HashMap<String, Instant>,
    /// IAM roles with a mutation in flight.
    role_busy: HashMap<String, usize>,
    /// Functions and when `CreateFunction` returned.
    functions: HashMap<String, Instant>,
    buckets_made: HashMap<String, Instant>,
    buckets_deleted: HashMap<String, Instant>,
    /// The failed function was deleted: what is made again under its name is healthy.
    failed_deleted: bool,
    /// The network interfaces Lambda made (in the emulator) for VPC functions.
    enis: Vec<Eni>,
    /// Each function's execution role (by name).
    function_roles: HashMap<String, String>,
    /// Roles deleted, and when.
    roles_deleted: HashMap<String, Instant>,
    /// Functions and when their last update was made.
    updated: HashMap<String, Instant>,
    /// The race on `lambda_update_race` has happened.
    raced: bool,
    /// Each subnet's zone, from the `CreateSubnet` answers.
    subnet_zones: HashMap<String, String>,
    /// Endpoints and when their create returned.
    endpoints: HashMap<String, Instant>,
    /// KMS keys (by the ID or ARN the calls named) scheduled for deletion.
    keys_pending: std::collections::HashSet<String>,
    /// KMS keys and when `CreateKey` returned.
    keys_made: HashMap<String, Instant>,
}

/// One of Lambda's network interfaces.
#[derive(Debug)]
struct Eni {
    id: String,
    subnet: String,
    group: String,
    /// The functions using its (subnet, group) pair.
    users: std::collections::BTreeSet<String>,
    /// When the last user left, and that user's role.
    left: Option<(Instant, String)>,
    /// A delete was refused once as "currently in use" after the release.
    said_in_use: bool,
}

impl Eni {
    /// Released: the last user left the pair long enough ago, and its role was still there
    /// when Lambda let go (Lambda releases with the function's execution role).
    fn released(&self, window: Duration, roles_deleted: &HashMap<String, Instant>) -> bool {
        match &self.left {
            Some((at, role)) if self.users.is_empty() => {
                let due = *at + window;
                Instant::now() >= due && roles_deleted.get(role).is_none_or(|d| *d >= due)
            }
            _ => false,
        }
    }
}

/// A network interface Lambda needs made: the proxy makes it in the emulator, then tells the
/// model with [`Model::eni_made`].
#[derive(Debug, Clone)]
pub(crate) struct EniWanted {
    pub(crate) subnet: String,
    pub(crate) group: String,
    pub(crate) function: String,
}

#[derive(Debug, Default)]
pub(crate) struct Model {
    pub(crate) on: Behaviours,
    seen: Mutex<Seen>,
}

type Answer = Response<Full<Bytes>>;

fn param<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The first `<tag>value</tag>` of an XML answer.
fn xml_value(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find("</")? + start;
    Some(body[start..end].to_string())
}

fn ec2_error(code: &str, message: &str) -> Answer {
    Response::builder()
        .status(400)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(format!(
            "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error>\
             </Errors><RequestID>model</RequestID></Response>"
        ))))
        .unwrap()
}

/// EC2's NotFound for an ID, by its prefix, with AWS's wording.
fn ec2_not_found(id: &str) -> Answer {
    let (code, what) = match id.split('-').next().unwrap_or_default() {
        "vpc" => (
            "InvalidVpcID.NotFound",
            format!("The vpc ID '{id}' does not exist"),
        ),
        "subnet" => (
            "InvalidSubnetID.NotFound",
            format!("The subnet ID '{id}' does not exist"),
        ),
        "rtb" => (
            "InvalidRouteTableID.NotFound",
            format!("The routeTable ID '{id}' does not exist"),
        ),
        "sg" => (
            "InvalidGroup.NotFound",
            format!("The security group '{id}' does not exist"),
        ),
        _ => (
            "InvalidVpcEndpointId.NotFound",
            format!("The Vpc Endpoint Id '{id}' does not exist"),
        ),
    };
    ec2_error(code, &what)
}

/// Which create returns which ID, in which element, and the set its describe lists it in.
const EC2_CREATES: &[(&str, &str, &str, &str)] = &[
    ("CreateVpc", "vpcId", "DescribeVpcs", "vpcSet"),
    ("CreateSubnet", "subnetId", "DescribeSubnets", "subnetSet"),
    (
        "CreateRouteTable",
        "routeTableId",
        "DescribeRouteTables",
        "routeTableSet",
    ),
    (
        "CreateSecurityGroup",
        "groupId",
        "DescribeSecurityGroups",
        "securityGroupInfo",
    ),
    (
        "CreateVpcEndpoint",
        "vpcEndpointId",
        "DescribeVpcEndpoints",
        "vpcEndpointSet",
    ),
];

fn lambda_error(status: u16, kind: &str, message: &str) -> Answer {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", kind)
        .body(Full::new(Bytes::from(
            serde_json::json!({"Type": "User", "Message": message}).to_string(),
        )))
        .unwrap()
}

/// A KMS error (JSON 1.1 protocol: the code in `__type`).
fn kms_error(status: u16, code: &str, message: &str) -> Answer {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(
            serde_json::json!({"__type": code, "message": message}).to_string(),
        )))
        .unwrap()
}

/// KMS's answers for keys pending deletion and for a dry run (see `Behaviours::kms_states`).
fn kms_answer(seen: &mut Seen, call: &Call, body: &[u8]) -> Option<Answer> {
    let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    // A key is named by its ID or ARN; the model keys by the ID.
    let key = doc["KeyId"].as_str()?.rsplit('/').next()?.to_string();
    match call.action.as_str() {
        "GenerateDataKey" if doc["DryRun"] == true => Some(kms_error(
            412,
            "DryRunOperationException",
            "The request would have succeeded, but the DryRun option is set.",
        )),
        "GetKeyRotationStatus" | "ScheduleKeyDeletion" if seen.keys_pending.contains(&key) => {
            Some(kms_error(
                400,
                "KMSInvalidStateException",
                &format!("arn:aws:kms:us-east-1:123456789012:key/{key} is pending deletion."),
            ))
        }
        "ScheduleKeyDeletion" => {
            seen.keys_pending.insert(key);
            None
        }
        "CancelKeyDeletion" => {
            seen.keys_pending.remove(&key);
            None
        }
        _ => None,
    }
}

fn s3_error(status: u16, code: &str, message: &str) -> Answer {
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(format!(
            "<Error><Code>{code}</Code><Message>{message}</Message><RequestId>model</RequestId>\
             </Error>"
        ))))
        .unwrap()
}

/// The function a Lambda REST path names (`/2015-03-31/functions/NAME[/…]`).
fn function_in(path: &str) -> Option<String> {
    let mut parts = path.split('?').next()?.trim_matches('/').split('/');
    let (_, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
    (kind == "functions").then(|| name.to_string())
}

/// The bucket and whether a sub-resource is named (`/bucket?tagging`), for path-style S3.
fn bucket_in(path: &str) -> Option<(String, bool, bool)> {
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let mut parts = p.trim_start_matches('/').splitn(2, '/');
    let bucket = parts.next().filter(|b| !b.is_empty())?.to_string();
    let object = parts.next().is_some_and(|k| !k.is_empty());
    let sub = [
        "tagging",
        "encryption",
        "publicAccessBlock",
        "ownershipControls",
        "policy",
    ]
    .iter()
    .any(|s| q.split('&').any(|kv| kv.split('=').next() == Some(s)));
    Some((bucket, object, sub))
}

fn within(when: Option<&Instant>, window: Option<Duration>) -> bool {
    match (when, window) {
        (Some(t), Some(w)) => t.elapsed() < w,
        _ => false,
    }
}

/// The IAM role a mutation names, for the mutations that change a role.
fn role_mutation(call: &Call, p: &[(String, String)]) -> Option<String> {
    const MUTATIONS: &[&str] = &[
        "AttachRolePolicy",
        "DetachRolePolicy",
        "PutRolePolicy",
        "DeleteRolePolicy",
        "UpdateAssumeRolePolicy",
        "TagRole",
        "DeleteRole",
    ];
    (call.service == "iam" && MUTATIONS.contains(&call.action.as_str()))
        .then(|| param(p, "RoleName").map(str::to_string))
        .flatten()
}

impl Model {
    pub(crate) fn new(on: Behaviours) -> Model {
        Model {
            on,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// EC2's refusals while Lambda holds network interfaces: the ENI itself is "currently in
    /// use" (and once more right after its release), and its subnet and security group have
    /// a dependent object (EC2 API reference, error codes; terraform-provider-aws
    /// internal/service/ec2/vpc_network_interface.go and the Lambda ENI handling in
    /// vpc_subnet.go / vpc_security_group.go, which wait up to 45 minutes for them).
    fn eni_refusal(
        &self,
        seen: &mut Seen,
        call: &Call,
        p: &[(String, String)],
        window: Duration,
    ) -> Option<Answer> {
        let deleted = seen.roles_deleted.clone();
        match call.action.as_str() {
            "DeleteNetworkInterface" => {
                let id = param(p, "NetworkInterfaceId")?;
                let eni = seen.enis.iter_mut().find(|e| e.id == id)?;
                if eni.released(window, &deleted) {
                    if eni.said_in_use {
                        return None;
                    }
                    eni.said_in_use = true;
                }
                Some(ec2_error(
                    "InvalidParameterValue",
                    &format!("Network interface '{id}' is currently in use."),
                ))
            }
            "DetachNetworkInterface" => {
                let attachment = param(p, "AttachmentId")?;
                attachment.starts_with("ela-attach").then(|| {
                    ec2_error(
                        "OperationNotPermitted",
                        "You are not allowed to manage 'ela-attach' attachments.",
                    )
                })
            }
            "DeleteSubnet" => {
                let id = param(p, "SubnetId")?;
                seen.enis.iter().any(|e| e.subnet == id).then(|| {
                    ec2_error(
                        "DependencyViolation",
                        &format!("The subnet '{id}' has dependencies and cannot be deleted."),
                    )
                })
            }
            "DeleteSecurityGroup" => {
                let id = param(p, "GroupId")?;
                seen.enis.iter().any(|e| e.group == id).then(|| {
                    ec2_error(
                        "DependencyViolation",
                        &format!("resource {id} has a dependent object"),
                    )
                })
            }
            _ => None,
        }
    }

    /// Lambda's refusals: a subnet in a zone Lambda does not support, and an update while
    /// another is in progress (Lambda API reference, `UpdateFunctionConfiguration`:
    /// `ResourceConflictException`; terraform-provider-aws retries it in
    /// internal/service/lambda/function.go).
    fn lambda_refusal(
        &self,
        seen: &mut Seen,
        call: &Call,
        path: &str,
        body: &[u8],
    ) -> Option<Answer> {
        if let Some(zone) = self.on.lambda_refuses_zone
            && matches!(call.method.as_str(), "POST" | "PUT")
            && let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body)
            && doc["VpcConfig"]["SubnetIds"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str())
                .any(|s| seen.subnet_zones.get(s).map(String::as_str) == Some(zone))
        {
            return Some(lambda_error(
                400,
                "InvalidParameterValueException",
                "The provided subnets contain availability zone Lambda doesn't support. Please \
                 use a different set of subnets.",
            ));
        }
        if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body)
            && let Some(role) = doc["Role"].as_str()
            && let Some(name) = role.rsplit('/').next()
            && within(seen.roles_made.get(name), self.on.iam_propagation)
        {
            let in_vpc = doc["VpcConfig"]["SubnetIds"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            return Some(lambda_error(
                400,
                "InvalidParameterValueException",
                if in_vpc {
                    "The provided execution role does not have permissions to call \
                     CreateNetworkInterface on EC2"
                } else {
                    "The role defined for the function cannot be assumed by Lambda."
                },
            ));
        }
        let name = function_in(path)?;
        let update = call.method == "PUT";
        if !update {
            return None;
        }
        let race = self.on.lambda_update_race == Some(name.as_str()) && !seen.raced;
        if race {
            seen.raced = true;
            seen.updated.insert(name.clone(), Instant::now());
        }
        (race || within(seen.updated.get(&name), self.on.lambda_update)).then(|| {
            lambda_error(
                409,
                "ResourceConflictException",
                &format!(
                    "The operation cannot be performed at this time. An update is in progress \
                     for resource: arn:aws:lambda:us-east-1:123456789012:function:{name}"
                ),
            )
        })
    }

    /// What EC2 answers differently while things settle: a new endpoint `pending`, Lambda's
    /// held ENIs `in-use`. Also notes each new subnet's zone, and forgets a deleted ENI.
    fn ec2_lifecycles(
        &self,
        seen: &mut Seen,
        call: &Call,
        p: &[(String, String)],
        text: &str,
    ) -> Option<Bytes> {
        match call.action.as_str() {
            "CreateSubnet" => {
                if let (Some(id), Some(zone)) = (
                    xml_value(text, "subnetId"),
                    xml_value(text, "availabilityZone"),
                ) {
                    seen.subnet_zones.insert(id, zone);
                }
                None
            }
            "DeleteNetworkInterface" => {
                let id = param(p, "NetworkInterfaceId")?;
                seen.enis.retain(|e| e.id != id);
                None
            }
            "DescribeNetworkInterfaces" => {
                let window = self.on.lambda_enis?;
                let mut out = text.to_string();
                for e in &seen.enis {
                    if !e.released(window, &seen.roles_deleted) {
                        out = set_after(&out, &e.id, "status", "in-use");
                    }
                }
                Some(Bytes::from(out))
            }
            "CreateVpcEndpoint" | "DescribeVpcEndpoints" => {
                let window = self.on.endpoint_pending?;
                if call.action == "CreateVpcEndpoint"
                    && let Some(id) = xml_value(text, "vpcEndpointId")
                {
                    seen.endpoints.insert(id, Instant::now());
                }
                let mut out = text.to_string();
                for (id, t) in &seen.endpoints {
                    if t.elapsed() < window {
                        out = set_after(&out, id, "state", "pending");
                    }
                }
                Some(Bytes::from(out))
            }
            _ => None,
        }
    }

    /// The network interfaces Lambda makes for a function that a forwarded call put in a
    /// VPC (or moved within it); a function leaving a pair starts that ENI's release.
    pub(crate) fn enis_wanted(
        &self,
        call: &Call,
        path: &str,
        req: &[u8],
        status: u16,
    ) -> Vec<EniWanted> {
        if self.on.lambda_enis.is_none()
            || call.service != "lambda"
            || !(200..300).contains(&status)
        {
            return Vec::new();
        }
        let mut seen = self.seen.lock().unwrap();
        let doc: serde_json::Value = serde_json::from_slice(req).unwrap_or_default();
        let create = call.method == "POST"
            && path
                .split('?')
                .next()
                .is_some_and(|p| p.ends_with("/functions"));
        let name = if create {
            doc["FunctionName"].as_str().map(str::to_string)
        } else {
            function_in(path)
        };
        let Some(name) = name else {
            return Vec::new();
        };
        if let Some(role) = doc["Role"].as_str() {
            let role = role.rsplit('/').next().unwrap_or(role).to_string();
            seen.function_roles.insert(name.clone(), role);
        }
        let pairs: Vec<(String, String)> = match call.method.as_str() {
            "DELETE"
                if path.split('?').next() == Some(&format!("/2015-03-31/functions/{name}")) =>
            {
                Vec::new()
            }
            "POST" if create => pairs_of(&doc),
            "PUT" if doc.get("VpcConfig").is_some() => pairs_of(&doc),
            _ => return Vec::new(),
        };
        let role = seen.function_roles.get(&name).cloned().unwrap_or_default();
        for e in &mut seen.enis {
            if pairs.contains(&(e.subnet.clone(), e.group.clone())) {
                e.users.insert(name.clone());
                e.left = None;
            } else if e.users.remove(&name) && e.users.is_empty() {
                e.left = Some((Instant::now(), role.clone()));
            }
        }
        pairs
            .into_iter()
            .filter(|(s, g)| !seen.enis.iter().any(|e| &e.subnet == s && &e.group == g))
            .map(|(subnet, group)| EniWanted {
                subnet,
                group,
                function: name.clone(),
            })
            .collect()
    }

    /// The proxy made a wanted network interface in the emulator.
    pub(crate) fn eni_made(&self, id: String, wanted: &EniWanted) {
        self.seen.lock().unwrap().enis.push(Eni {
            id,
            subnet: wanted.subnet.clone(),
            group: wanted.group.clone(),
            users: [wanted.function.clone()].into(),
            left: None,
            said_in_use: false,
        });
    }

    /// An answer instead of forwarding, or `None` to forward. `path` is the path and query.
    pub(crate) fn before(&self, call: &Call, path: &str, body: &[u8]) -> Option<Answer> {
        let mut seen = self.seen.lock().unwrap();
        let p = &call.params;
        match call.service.as_str() {
            "kms" if self.on.kms_states => return kms_answer(&mut seen, call, body),
            "ec2" => {
                // A filter naming a new ID finds nothing rather than failing; any other
                // parameter naming it fails.
                let named = p
                    .iter()
                    .filter(|(k, _)| !k.starts_with("Filter."))
                    .find(|(_, v)| within(seen.ec2.get(v), self.on.ec2_consistency));
                if let Some((_, id)) = named {
                    return Some(ec2_not_found(id));
                }
                if let Some(zone) = self.on.zone_refuses_subnets
                    && call.action == "CreateSubnet"
                    && param(p, "AvailabilityZone") == Some(zone)
                {
                    let others: Vec<&str> = ZONES.iter().copied().filter(|z| *z != zone).collect();
                    return Some(ec2_error(
                        "InvalidParameterValue",
                        &format!(
                            "Value ({zone}) for parameter availabilityZone is invalid. Subnets \
                             can currently only be created in the following availability \
                             zones: {}.",
                            others.join(", ")
                        ),
                    ));
                }
                if let Some(window) = self.on.lambda_enis {
                    return self.eni_refusal(&mut seen, call, p, window);
                }
            }
            "iam" => {
                if let (Some(_), Some(role)) = (self.on.iam_concurrency, role_mutation(call, p)) {
                    let busy = seen.role_busy.entry(role).or_insert(0);
                    if *busy > 0 {
                        return Some(
                            Response::builder()
                                .status(409)
                                .header("content-type", "text/xml")
                                .body(Full::new(Bytes::from(
                                    "<ErrorResponse><Error><Type>Sender</Type><Code>\
                                     ConcurrentModification</Code><Message>The request was \
                                     rejected because multiple requests to change this object \
                                     were submitted simultaneously. Wait a few minutes and \
                                     submit your request again.</Message></Error><RequestId>\
                                     model</RequestId></ErrorResponse>",
                                )))
                                .unwrap(),
                        );
                    }
                    *busy += 1;
                }
            }
            "lambda" => {
                if let Some(answer) = self.lambda_refusal(&mut seen, call, path, body) {
                    return Some(answer);
                }
                if call.method == "GET"
                    && let Some(name) = function_in(path)
                    && within(seen.functions.get(&name), self.on.lambda_not_found)
                {
                    return Some(lambda_error(
                        404,
                        "ResourceNotFoundException",
                        &format!(
                            "Function not found: arn:aws:lambda:us-east-1:123456789012:function:\
                             {name}"
                        ),
                    ));
                }
            }
            "s3" => {
                let (bucket, object, sub) = bucket_in(path)?;
                if let Some((there, region)) = self.on.s3_other_region
                    && bucket == there
                    && call.method == "HEAD"
                    && !object
                {
                    return Some(
                        Response::builder()
                            .status(301)
                            .header("x-amz-bucket-region", region)
                            .body(Full::new(Bytes::new()))
                            .unwrap(),
                    );
                }
                let create = call.method == "PUT" && !object && !sub;
                if create && within(seen.buckets_deleted.get(&bucket), self.on.s3_name_reuse) {
                    return Some(s3_error(
                        409,
                        "OperationAborted",
                        "A conflicting conditional operation is currently in progress against \
                         this resource. Please try again.",
                    ));
                }
                if sub && within(seen.buckets_made.get(&bucket), self.on.s3_new_bucket) {
                    return Some(s3_error(
                        404,
                        "NoSuchBucket",
                        "The specified bucket does not exist",
                    ));
                }
            }
            _ => {}
        }
        None
    }

    /// How long a forwarded call is held before it is sent on (a mutation of a role takes
    /// time on IAM's side, so that two at once overlap).
    pub(crate) fn hold(&self, call: &Call) -> Option<Duration> {
        role_mutation(call, &call.params).and(self.on.iam_concurrency)
    }

    /// A new key unlisted by `ListKeys` for `kms_listing`.
    fn kms_listing(&self, seen: &mut Seen, call: &Call, text: &str) -> Option<Bytes> {
        let mut doc: serde_json::Value = serde_json::from_str(text).ok()?;
        match call.action.as_str() {
            "CreateKey" => {
                let id = doc["KeyMetadata"]["KeyId"].as_str()?.to_string();
                seen.keys_made.insert(id, Instant::now());
                None
            }
            "ListKeys" => {
                let keys = doc["Keys"].as_array_mut()?;
                keys.retain(|k| {
                    let made = k["KeyId"].as_str().and_then(|id| seen.keys_made.get(id));
                    !within(made, self.on.kms_listing)
                });
                Some(Bytes::from(doc.to_string()))
            }
            _ => None,
        }
    }

    /// Sees what the emulator answered; may rewrite the answer's body.
    pub(crate) fn after(&self, call: &Call, path: &str, status: u16, body: Bytes) -> Bytes {
        let mut seen = self.seen.lock().unwrap();
        let p = &call.params;
        if let Some(role) = role_mutation(call, p)
            && let Some(n) = seen.role_busy.get_mut(&role)
        {
            *n = n.saturating_sub(1);
        }
        if !(200..300).contains(&status) {
            return body;
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        match call.service.as_str() {
            "ec2" => {
                if let Some(rewritten) = self.ec2_lifecycles(&mut seen, call, p, &text) {
                    return rewritten;
                }
            }
            "kms" if self.on.kms_listing.is_some() => {
                if let Some(rewritten) = self.kms_listing(&mut seen, call, &text) {
                    return rewritten;
                }
            }
            "iam" if call.action == "CreateRole" => {
                if let Some(role) = param(p, "RoleName") {
                    // A role made again under a deleted one's name is a new role.
                    seen.roles_deleted.remove(role);
                    seen.roles_made.insert(role.to_string(), Instant::now());
                }
            }
            "iam" if call.action == "DeleteRole" => {
                if let Some(role) = param(p, "RoleName") {
                    seen.roles_deleted.insert(role.to_string(), Instant::now());
                }
            }
            _ => {}
        }
        match call.service.as_str() {
            "ec2" if self.on.ec2_consistency.is_some() => {
                for (create, id_tag, describe, set) in EC2_CREATES {
                    if call.action == *create
                        && let Some(id) = xml_value(&text, id_tag)
                    {
                        seen.ec2.insert(id, Instant::now());
                    }
                    // Describe by tag: a new resource is not listed yet.
                    let by_tag = p
                        .iter()
                        .any(|(k, v)| k.starts_with("Filter.") && v.starts_with("tag:"));
                    if call.action == *describe
                        && by_tag
                        && seen.ec2.iter().any(|(id, t)| {
                            within(Some(t), self.on.ec2_consistency) && text.contains(id.as_str())
                        })
                    {
                        return Bytes::from(format!(
                            "<{describe}Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
                             <requestId>model</requestId><{set}/></{describe}Response>"
                        ));
                    }
                }
            }
            "lambda" => {
                if let Some(window) = self.on.lambda_update
                    && let Some(name) = function_in(path)
                {
                    if call.method == "PUT" {
                        seen.updated.insert(name, Instant::now());
                    } else if call.method == "GET"
                        && within(seen.updated.get(&name), Some(window))
                        && let Some(b) = configured(
                            &body,
                            &[
                                ("LastUpdateStatus", "InProgress"),
                                ("LastUpdateStatusReason", "The function is being updated."),
                                ("LastUpdateStatusReasonCode", "InProgress"),
                            ],
                        )
                    {
                        return b;
                    }
                }
                if let Some(name) = self.on.lambda_inactive
                    && call.method == "GET"
                    && function_in(path).as_deref() == Some(name)
                    && let Some(b) = configured(
                        &body,
                        &[
                            ("State", "Inactive"),
                            ("StateReasonCode", "Idle"),
                            ("StateReason", "The function is inactive."),
                        ],
                    )
                {
                    return b;
                }
                if let Some(name) = self.on.lambda_failed
                    && function_in(path).as_deref() == Some(name)
                {
                    if call.method == "DELETE" {
                        seen.failed_deleted = true;
                    } else if call.method == "GET"
                        && !seen.failed_deleted
                        && let Some(b) = configured(
                            &body,
                            &[
                                ("State", "Failed"),
                                ("StateReasonCode", "EniLimitExceeded"),
                                (
                                    "StateReason",
                                    "Lambda was unable to create an ENI in the VPC of the \
                                     Lambda function because the limit for Network Interfaces \
                                     has been reached.",
                                ),
                            ],
                        )
                    {
                        return b;
                    }
                }
                if call.method == "POST"
                    && path
                        .split('?')
                        .next()
                        .is_some_and(|p| p.ends_with("/functions"))
                    && let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&body)
                    && let Some(name) = doc["FunctionName"].as_str()
                {
                    seen.functions.insert(name.to_string(), Instant::now());
                    if self.on.lambda_pending.is_some()
                        && let Some(b) = configured(&body, PENDING)
                    {
                        return b;
                    }
                    return body;
                }
                if call.method == "GET"
                    && let Some(name) = function_in(path)
                    && within(seen.functions.get(&name), self.on.lambda_pending)
                    && let Some(b) = configured(&body, PENDING)
                {
                    return b;
                }
            }
            "s3" => {
                if let Some((bucket, false, false)) = bucket_in(path) {
                    match call.method.as_str() {
                        "PUT" => {
                            seen.buckets_made.insert(bucket, Instant::now());
                        }
                        "DELETE" => {
                            seen.buckets_deleted.insert(bucket, Instant::now());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        body
    }
}

/// The (subnet, security group) pairs of a function configuration's `VpcConfig`.
fn pairs_of(doc: &serde_json::Value) -> Vec<(String, String)> {
    let list = |k: &str| -> Vec<String> {
        doc["VpcConfig"][k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let groups = list("SecurityGroupIds");
    list("SubnetIds")
        .into_iter()
        .flat_map(|s| groups.iter().map(move |g| (s.clone(), g.clone())))
        .collect()
}

/// The XML with the first `<tag>…</tag>` after `id` set to `value` (EC2's answers list an
/// item's fields after its ID).
fn set_after(xml: &str, id: &str, tag: &str, value: &str) -> String {
    let Some(at) = xml.find(&format!(">{id}<")) else {
        return xml.to_string();
    };
    let open = format!("<{tag}>");
    let Some(start) = xml[at..].find(&open).map(|i| at + i + open.len()) else {
        return xml.to_string();
    };
    let Some(end) = xml[start..].find('<').map(|i| start + i) else {
        return xml.to_string();
    };
    format!("{}{value}{}", &xml[..start], &xml[end..])
}

/// The zones the emulator has in us-east-1 (moto's table), for the zone refusal's message.
const ZONES: &[&str] = &[
    "us-east-1a",
    "us-east-1b",
    "us-east-1c",
    "us-east-1d",
    "us-east-1e",
    "us-east-1f",
];

/// A function configuration as Lambda answers while it makes the function's ENIs.
const PENDING: &[(&str, &str)] = &[
    ("State", "Pending"),
    ("StateReason", "The function is being created."),
    ("StateReasonCode", "Creating"),
];

/// A Lambda answer with these fields of its function configuration set (`GetFunction` nests
/// the configuration under `Configuration`; the others are one).
fn configured(body: &[u8], fields: &[(&str, &str)]) -> Option<Bytes> {
    let mut doc: serde_json::Value = serde_json::from_slice(body).ok()?;
    let c = if doc.get("Configuration").is_some() {
        &mut doc["Configuration"]
    } else {
        &mut doc
    };
    for (k, v) in fields {
        c[*k] = (*v).into();
    }
    Some(Bytes::from(doc.to_string()))
}
