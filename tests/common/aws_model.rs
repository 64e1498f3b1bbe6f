//! A model of how real AWS behaves where the emulator does not: eventual consistency and
//! lifecycles that moto, answering at once and consistently, never shows. The test proxy
//! consults it for every call; each behaviour can be switched on alone, with its window
//! scaled down from AWS's minutes to a test's seconds, and answers with the code, status and
//! message AWS sends. Sources:
//! - EC2: "Eventual consistency in the Amazon EC2 API" (EC2 developer guide): right after a
//!   create, calls naming the new ID can fail with `<Kind>ID.NotFound`, and describe calls may
//!   not list it yet; terraform-provider-aws retries these for `ec2PropagationTimeout`
//!   (internal/service/ec2/consts.go).
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
    /// This bucket exists in that other region: `HeadBucket` answers 301 with
    /// `x-amz-bucket-region` (S3 API reference, HeadBucket).
    pub(crate) s3_other_region: Option<(&'static str, &'static str)>,
}

impl Behaviours {
    /// Every behaviour at once, with test-sized windows in AWS's order of events.
    pub(crate) fn all() -> Behaviours {
        Behaviours {
            ec2_consistency: Some(Duration::from_millis(1500)),
            iam_concurrency: Some(Duration::from_millis(300)),
            lambda_not_found: Some(Duration::from_millis(1000)),
            lambda_pending: Some(Duration::from_millis(3000)),
            s3_new_bucket: Some(Duration::from_millis(1500)),
            s3_name_reuse: Some(Duration::from_millis(3000)),
            lambda_failed: None,
            s3_other_region: None,
        }
    }
}

#[derive(Debug, Default)]
struct Seen {
    /// EC2 IDs and when their create returned.
    ec2: HashMap<String, Instant>,
    /// IAM roles with a mutation in flight.
    role_busy: HashMap<String, usize>,
    /// Functions and when `CreateFunction` returned.
    functions: HashMap<String, Instant>,
    buckets_made: HashMap<String, Instant>,
    buckets_deleted: HashMap<String, Instant>,
    /// The failed function was deleted: what is made again under its name is healthy.
    failed_deleted: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Model {
    pub(crate) on: Behaviours,
    seen: Mutex<Seen>,
}

type Answer = Response<Full<Bytes>>;

/// The form parameters of a query-protocol request.
fn params(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

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

    /// An answer instead of forwarding, or `None` to forward. `path` is the path and query.
    pub(crate) fn before(&self, call: &Call, path: &str, body: &[u8]) -> Option<Answer> {
        let mut seen = self.seen.lock().unwrap();
        let p = params(body);
        match call.service.as_str() {
            "ec2" if self.on.ec2_consistency.is_some() => {
                // A filter naming a new ID finds nothing rather than failing; any other
                // parameter naming it fails.
                let named = p
                    .iter()
                    .filter(|(k, _)| !k.starts_with("Filter."))
                    .find(|(_, v)| within(seen.ec2.get(v), self.on.ec2_consistency));
                if let Some((_, id)) = named {
                    return Some(ec2_not_found(id));
                }
            }
            "iam" => {
                if let (Some(_), Some(role)) = (self.on.iam_concurrency, role_mutation(call, &p)) {
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
    pub(crate) fn hold(&self, call: &Call, body: &[u8]) -> Option<Duration> {
        role_mutation(call, &params(body)).and(self.on.iam_concurrency)
    }

    /// Sees what the emulator answered; may rewrite the answer's body.
    pub(crate) fn after(
        &self,
        call: &Call,
        path: &str,
        req: &[u8],
        status: u16,
        body: Bytes,
    ) -> Bytes {
        let mut seen = self.seen.lock().unwrap();
        let p = params(req);
        if let Some(role) = role_mutation(call, &p)
            && let Some(n) = seen.role_busy.get_mut(&role)
        {
            *n = n.saturating_sub(1);
        }
        if !(200..300).contains(&status) {
            return body;
        }
        let text = String::from_utf8_lossy(&body).into_owned();
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
                if let Some(name) = self.on.lambda_failed
                    && function_in(path).as_deref() == Some(name)
                {
                    if call.method == "DELETE" {
                        seen.failed_deleted = true;
                    } else if call.method == "GET"
                        && !seen.failed_deleted
                        && let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&body)
                    {
                        let c = if doc.get("Configuration").is_some() {
                            &mut doc["Configuration"]
                        } else {
                            &mut doc
                        };
                        c["State"] = "Failed".into();
                        c["StateReasonCode"] = "EniLimitExceeded".into();
                        c["StateReason"] = "Lambda was unable to create an ENI in the VPC of the \
                             Lambda function because the limit for Network Interfaces has been \
                             reached."
                            .into();
                        return Bytes::from(doc.to_string());
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
                    return pending(doc, self.on.lambda_pending.is_some());
                }
                if call.method == "GET"
                    && let Some(name) = function_in(path)
                    && within(seen.functions.get(&name), self.on.lambda_pending)
                    && let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&body)
                {
                    if doc.get("Configuration").is_some() {
                        let c = doc["Configuration"].take();
                        doc["Configuration"] = serde_json::from_slice(&pending(c, true)).unwrap();
                        return Bytes::from(doc.to_string());
                    }
                    return pending(doc, true);
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

/// A function configuration as Lambda answers while it makes the function's ENIs.
fn pending(mut c: serde_json::Value, on: bool) -> Bytes {
    if on {
        c["State"] = "Pending".into();
        c["StateReason"] = "The function is being created.".into();
        c["StateReasonCode"] = "Creating".into();
    }
    Bytes::from(c.to_string())
}
