//! A recording HTTP proxy between the binary and the emulator, on 127.0.0.1. It logs every
//! call (service and action) so tests can assert what the binary did and did not call, and it
//! can answer a call with a fault instead of (or after) forwarding it: AWS behaviour the
//! emulator does not produce on its own.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::aws_model::{Behaviours, Model};

/// One call the binary made.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The SigV4 service name: ec2, iam, sts, s3, lambda, kms.
    pub(crate) service: String,
    /// The API action for query-protocol services (`CreateVpc`); `METHOD /path?query` for
    /// REST services (Lambda, S3).
    pub(crate) action: String,
    pub(crate) method: String,
    pub(crate) status: u16,
    /// The form parameters of a query-protocol call (EC2, IAM, STS).
    pub(crate) params: Vec<(String, String)>,
    /// The request body of a Lambda or S3 call (a package, a state, a policy): what a test
    /// checks privbucket sent.
    pub(crate) body: Vec<u8>,
    /// When the call arrived and when its answer left: which calls overlapped ([`depth`]).
    pub(crate) span: (Instant, Instant),
}

/// How many round trips deep `calls` were: the longest chain of calls that did not overlap
/// (interval scheduling, greedy by end), as `bench/bench.py` counts. With a delay on every
/// call (`Fault::Delay`) it counts the rounds a run needed, whatever the machine's speed.
pub(crate) fn depth(calls: &[Call]) -> usize {
    let mut spans: Vec<_> = calls.iter().map(|c| c.span).collect();
    spans.sort_by_key(|s| s.1);
    let mut last_end = None;
    let mut count = 0;
    for (start, end) in spans {
        if last_end.is_none_or(|e| start >= e) {
            count += 1;
            last_end = Some(end);
        }
    }
    count
}

const WRITE_PREFIXES: &[&str] = &[
    "Create",
    "Put",
    "Attach",
    "Associate",
    "Modify",
    "Delete",
    "Update",
    "Detach",
    "Disassociate",
    "Authorize",
    "Revoke",
    "Run",
    "Terminate",
    "Tag",
    "Untag",
    "Replace",
    // KMS: a key's deletion scheduled or cancelled, the key or its rotation turned on or off.
    "Schedule",
    "Cancel",
    "Enable",
    "Disable",
];

impl Call {
    /// A form parameter of a query-protocol call, such as `RoleName`.
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The API operation: the action of a query-protocol call, and for the REST services
    /// (S3 with path-style addressing, Lambda) the operation their method, path and query
    /// stand for. A call it does not know panics: a test that names calls must know them all.
    pub(crate) fn api(&self) -> String {
        let (path, query) = match self.action.split_once(' ') {
            Some((_, pq)) => pq.split_once('?').unwrap_or((pq, "")),
            None => return self.action.clone(),
        };
        let keys: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split('=').next().unwrap_or(kv))
            .collect();
        if let Some(id) = query.split('&').find_map(|kv| kv.strip_prefix("x-id=")) {
            return id.to_string();
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let m = self.method.as_str();
        let name = match self.service.as_str() {
            "s3" => {
                let object = segments.len() > 1;
                let sub = [
                    ("tagging", "BucketTagging"),
                    ("encryption", "BucketEncryption"),
                    ("publicAccessBlock", "PublicAccessBlock"),
                    ("ownershipControls", "BucketOwnershipControls"),
                    ("policyStatus", "BucketPolicyStatus"),
                    ("policy", "BucketPolicy"),
                ]
                .into_iter()
                .find(|(k, _)| keys.contains(k))
                .map(|(_, n)| n);
                match (m, object, sub) {
                    (_, false, Some(n)) => match m {
                        "GET" => format!("Get{n}"),
                        "PUT" => format!("Put{n}"),
                        "DELETE" => format!("Delete{n}"),
                        _ => String::new(),
                    },
                    ("GET", false, None) if keys.contains(&"versions") => {
                        "ListObjectVersions".into()
                    }
                    ("GET", false, None) if keys.contains(&"list-type") => "ListObjectsV2".into(),
                    ("POST", false, None) if keys.contains(&"delete") => "DeleteObjects".into(),
                    ("PUT", false, None) => "CreateBucket".into(),
                    ("HEAD", false, None) => "HeadBucket".into(),
                    ("DELETE", false, None) => "DeleteBucket".into(),
                    ("PUT", true, _) => "PutObject".into(),
                    ("HEAD", true, _) => "HeadObject".into(),
                    ("GET", true, _) => "GetObject".into(),
                    ("DELETE", true, _) => "DeleteObject".into(),
                    _ => String::new(),
                }
            }
            "lambda" => match (m, segments.as_slice()) {
                ("POST", [_, "functions"]) => "CreateFunction".into(),
                ("GET", [_, "functions", _]) => "GetFunction".into(),
                ("DELETE", [_, "functions", _]) => "DeleteFunction".into(),
                ("GET", [_, "functions", _, "configuration"]) => "GetFunctionConfiguration".into(),
                ("PUT", [_, "functions", _, "configuration"]) => {
                    "UpdateFunctionConfiguration".into()
                }
                ("PUT", [_, "functions", _, "code"]) => "UpdateFunctionCode".into(),
                ("POST", [_, "functions", _, "invocations"]) => "Invoke".into(),
                ("GET", [_, "tags", ..]) => "ListTags".into(),
                ("POST", [_, "tags", ..]) => "TagResource".into(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        assert!(
            !name.is_empty(),
            "the test proxy does not know the call {self:?}"
        );
        name
    }

    /// Whether the call can change anything.
    pub(crate) fn is_write(&self) -> bool {
        match self.service.as_str() {
            "ec2" | "iam" | "sts" | "kms" => {
                WRITE_PREFIXES.iter().any(|p| self.action.starts_with(p))
            }
            _ => !matches!(self.method.as_str(), "GET" | "HEAD"),
        }
    }
}

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

/// What the proxy does with a call instead of just forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    /// Stands in for AWS throttling the account: answered in the service's own format
    /// (EC2 RequestLimitExceeded, IAM/STS Throttling, S3 SlowDown, Lambda
    /// TooManyRequestsException), not forwarded.
    Throttle,
    /// Stands in for an AWS internal error before the request took effect: 500, not forwarded.
    FailBefore,
    /// Stands in for a lost response: the request is forwarded and takes effect, then the
    /// caller gets a 500.
    FailAfter,
    /// Stands in for network latency to AWS.
    Delay(Duration),
    /// Stands in for a crash (power loss, SIGKILL, a closed laptop) after AWS carried out the
    /// call and before the tool heard back: forwards, then kills the binary with SIGKILL.
    KillAfter,
    /// Stands in for a permission the caller lacks (an IAM policy without the action): answered
    /// with the service's own access-denied error, not forwarded. EC2 `UnauthorizedOperation`
    /// 403 with an encoded message (STS `DecodeAuthorizationMessage` API reference), IAM and
    /// STS `AccessDenied` 403, S3 `AccessDenied` 403 "Access Denied", Lambda
    /// `AccessDeniedException` 403 (IAM user guide, "Troubleshoot access denied error
    /// messages": "User: … is not authorized to perform: … because no identity-based policy
    /// allows the … action").
    Deny,
    /// Stands in for an EC2 error the emulator does not produce (e.g. `DependencyViolation`
    /// while Lambda still holds a network interface in a subnet): answered with that code.
    Ec2Error(&'static str),
    /// Stands in for S3's answer to a conditional write that met a conflicting operation
    /// (moto never answers it): 409 `ConditionalRequestConflict`, "A conflicting operation
    /// occurred. If using PutObject you can retry the request." (S3 API reference, "Error
    /// responses", and the `If-None-Match` field of `PutObject`). Not forwarded.
    S3ConditionalConflict,
    /// Stands in for an answer that takes longer than the job may run (a slow AWS call when
    /// CI cancels the job): held, never forwarded, never answered.
    Hang,
}

type Policy = Arc<dyn Fn(usize, &Call) -> Fault + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Proxy {
    pub(crate) url: String,
    log: Arc<Mutex<Vec<Call>>>,
    policy: Arc<Mutex<Option<Policy>>>,
    /// How real AWS behaves where the emulator does not (see `aws_model`), when switched on.
    model: Arc<Mutex<Option<Arc<Model>>>>,
    /// The binary's process, for `KillAfter`.
    pid: Arc<Mutex<Option<u32>>>,
    /// Calls that have arrived (numbered on arrival: concurrent calls finish in any order).
    arrived: Arc<std::sync::atomic::AtomicUsize>,
    /// Tell the upstream every request came over TLS (see [`Proxy::start_tls`]).
    tls: bool,
    /// Calls being handled now, and the most there have been at once since the last `clear`.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    most_in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl Proxy {
    pub(crate) async fn start(upstream_port: u16) -> Proxy {
        Proxy::spawn(upstream_port, false).await
    }

    /// Stands in for TLS termination: every forwarded request carries
    /// `X-Forwarded-Proto: https`, so the emulator sets `aws:SecureTransport` to true.
    pub(crate) async fn start_tls(upstream_port: u16) -> Proxy {
        Proxy::spawn(upstream_port, true).await
    }

    async fn spawn(upstream_port: u16, tls: bool) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let proxy = Proxy {
            url: format!("http://{addr}"),
            log: Arc::new(Mutex::new(Vec::new())),
            policy: Arc::new(Mutex::new(None)),
            model: Arc::new(Mutex::new(None)),
            pid: Arc::new(Mutex::new(None)),
            arrived: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            tls,
            in_flight: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            most_in_flight: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let p = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (p, client) = (p.clone(), client.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (p, client) = (p.clone(), client.clone());
                        async move { Ok::<_, Infallible>(p.handle(req, &client, upstream_port).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        proxy
    }

    /// Every call so far.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn clear(&self) {
        let mut log = self.log.lock().unwrap();
        log.clear();
        self.arrived.store(0, std::sync::atomic::Ordering::SeqCst);
        self.most_in_flight
            .store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// The most calls that were in flight at once (since the last `clear`).
    pub(crate) fn most_in_flight(&self) -> usize {
        self.most_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn writes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_write).collect()
    }

    pub(crate) fn set_pid(&self, pid: Option<u32>) {
        *self.pid.lock().unwrap() = pid;
    }

    /// No faults from now on.
    pub(crate) fn no_faults(&self) {
        *self.policy.lock().unwrap() = None;
    }

    /// Decides a fault per call (its index from 1, and the call).
    /// Behaves as real AWS does in the given ways from now on (a fresh model: what it saw
    /// before is forgotten).
    pub(crate) fn model_aws(&self, on: Behaviours) {
        *self.model.lock().unwrap() = Some(Arc::new(Model::new(on)));
    }

    pub(crate) fn set_faults(
        &self,
        policy: impl Fn(usize, &Call) -> Fault + Send + Sync + 'static,
    ) {
        *self.policy.lock().unwrap() = Some(Arc::new(policy));
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
        upstream_port: u16,
    ) -> Response<Full<Bytes>> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most_in_flight.fetch_max(now, SeqCst);
        let response = self.forward(req, client, upstream_port).await;
        self.in_flight.fetch_sub(1, SeqCst);
        response
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
        upstream_port: u16,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let service = parts
            .headers
            .get("authorization")
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.split("Credential=").nth(1))
            .and_then(|c| c.split('/').nth(3))
            .unwrap_or("unknown")
            .to_string();
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        // The JSON protocol (KMS) names the operation in `X-Amz-Target: TrentService.CreateKey`.
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|h| h.to_str().ok())
            .and_then(|t| t.rsplit('.').next())
            .map(str::to_string);
        let action = std::str::from_utf8(&body)
            .ok()
            .and_then(|b| b.split('&').find_map(|kv| kv.strip_prefix("Action=")))
            .map(str::to_string)
            .or(target)
            .unwrap_or_else(|| format!("{} {pq}", parts.method));
        let mut call = Call {
            service,
            action,
            method: parts.method.to_string(),
            status: 0,
            params: if parts.method == hyper::Method::POST {
                params(&body)
            } else {
                Vec::new()
            },
            body: Vec::new(),
            span: (Instant::now(), Instant::now()),
        };
        if call.service == "lambda" || call.service == "s3" {
            call.body = body.to_vec();
        }
        let index = self
            .arrived
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let policy = self.policy.lock().unwrap().clone();
        let fault = policy.map(|p| p(index, &call)).unwrap_or(Fault::None);
        if let Fault::Delay(d) = fault {
            tokio::time::sleep(d).await;
        }
        if fault == Fault::Hang {
            std::future::pending::<()>().await;
        }
        let model = self.model.lock().unwrap().clone();
        if fault == Fault::None
            && let Some(answer) = model.as_ref().and_then(|m| m.before(&call, &pq, &body))
        {
            call.status = answer.status().as_u16();
            call.span.1 = Instant::now();
            self.log.lock().unwrap().push(call);
            return answer;
        }
        if let Some(d) = model.as_ref().and_then(|m| m.hold(&call)) {
            tokio::time::sleep(d).await;
        }
        let request_body = body.clone();
        let response = match fault {
            Fault::Throttle => throttled(&call.service),
            Fault::Deny => denied(&call.service, &call.api()),
            Fault::FailBefore => internal_error(),
            Fault::Ec2Error(code) => ec2_error(code),
            Fault::S3ConditionalConflict => s3_conditional_conflict(),
            Fault::None | Fault::FailAfter | Fault::Delay(_) | Fault::KillAfter | Fault::Hang => {
                let mut up = Request::builder()
                    .method(parts.method.clone())
                    .uri(format!("http://127.0.0.1:{upstream_port}{pq}"));
                for (k, v) in &parts.headers {
                    up = up.header(k, v);
                }
                if self.tls {
                    up = up.header("x-forwarded-proto", "https");
                }
                let forwarded = client.request(up.body(Full::new(body)).unwrap()).await;
                match forwarded {
                    Ok(resp) => {
                        let (rparts, rbody) = resp.into_parts();
                        let bytes = rbody
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let status = rparts.status.as_u16();
                        let bytes = match &model {
                            Some(m) => m.after(&call, &pq, status, bytes),
                            None => bytes,
                        };
                        if let Some(m) = &model {
                            for wanted in m.enis_wanted(&call, &pq, &request_body, status) {
                                let auth = parts
                                    .headers
                                    .get("authorization")
                                    .and_then(|h| h.to_str().ok())
                                    .unwrap_or_default();
                                let id = make_eni(client, upstream_port, auth, &wanted).await;
                                m.eni_made(id, &wanted);
                            }
                        }
                        if fault == Fault::KillAfter {
                            let pid = *self.pid.lock().unwrap();
                            if let Some(pid) = pid {
                                let _ = std::process::Command::new("kill")
                                    .args(["-KILL", &pid.to_string()])
                                    .status();
                            }
                            internal_error()
                        } else if fault == Fault::FailAfter {
                            internal_error()
                        } else {
                            let mut r = Response::builder().status(rparts.status);
                            for (k, v) in &rparts.headers {
                                // The body may have been rewritten (the AWS model): hyper
                                // sets its length.
                                if k != "transfer-encoding"
                                    && k != "connection"
                                    && k != "content-length"
                                {
                                    r = r.header(k, v);
                                }
                            }
                            r.body(Full::new(bytes)).unwrap()
                        }
                    }
                    Err(e) => Response::builder()
                        .status(StatusCode::BAD_GATEWAY)
                        .body(Full::new(Bytes::from(format!("proxy: {e}"))))
                        .unwrap(),
                }
            }
        };
        call.status = response.status().as_u16();
        call.span.1 = Instant::now();
        self.log.lock().unwrap().push(call);
        response
    }
}

/// Makes the network interface Lambda would make for a VPC function, in the emulator, as
/// the caller (its credential scope moved to EC2): described `AWS Lambda VPC ENI-<function>…`
/// as Lambda's are.
async fn make_eni(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream_port: u16,
    auth: &str,
    wanted: &super::aws_model::EniWanted,
) -> String {
    static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let body = format!(
        "Action=CreateNetworkInterface&Version=2016-11-15&SubnetId={}&SecurityGroupId.1={}\
         &Description=AWS%20Lambda%20VPC%20ENI-{}-{n:08x}",
        wanted.subnet, wanted.group, wanted.function
    );
    let req = Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1:{upstream_port}/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", auth.replace("/lambda/", "/ec2/"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client.request(req).await.expect("making a Lambda ENI");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let start = text
        .find("<networkInterfaceId>")
        .unwrap_or_else(|| panic!("the emulator made no ENI: {text}"))
        + "<networkInterfaceId>".len();
    let end = text[start..].find('<').unwrap() + start;
    text[start..end].to_string()
}

fn internal_error() -> Response<Full<Bytes>> {
    Response::builder()
        .status(500)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from_static(
            b"<Response><Errors><Error><Code>InternalError</Code><Message>injected by the \
              test proxy</Message></Error></Errors><RequestID>test</RequestID></Response>",
        )))
        .unwrap()
}

fn s3_conditional_conflict() -> Response<Full<Bytes>> {
    Response::builder()
        .status(409)
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from_static(
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ConditionalRequestConflict\
              </Code><Message>A conflicting operation occurred. If using PutObject you can retry \
              the request.</Message><RequestId>test</RequestId></Error>",
        )))
        .unwrap()
}

fn ec2_error(code: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(400)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(format!(
            "<Response><Errors><Error><Code>{code}</Code><Message>injected by the test proxy: \
             resource sg-test has a dependent object</Message></Error></Errors>\
             <RequestID>test</RequestID></Response>"
        ))))
        .unwrap()
}

fn denied(service: &str, api: &str) -> Response<Full<Bytes>> {
    let who = "User: arn:aws:iam::123456789012:user/newcomer is not authorized to perform";
    let (ctype, extra, body) = match service {
        "ec2" => (
            "text/xml",
            None,
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not \
             authorized to perform this operation. Encoded authorization failure message: \
             test-proxy</Message></Error></Errors><RequestID>test</RequestID></Response>"
                .to_string(),
        ),
        "s3" => (
            "application/xml",
            None,
            "<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>test\
             </RequestId></Error>"
                .to_string(),
        ),
        "lambda" => (
            "application/json",
            Some(("x-amzn-errortype", "AccessDeniedException")),
            format!(
                r#"{{"Message":"{who}: lambda:{api} because no identity-based policy allows the lambda:{api} action"}}"#
            ),
        ),
        // KMS (JSON 1.1 protocol): the error's type in `__type`, with HTTP 400 (KMS API
        // reference, "Common Errors": AccessDeniedException).
        "kms" => (
            "application/x-amz-json-1.1",
            None,
            format!(
                r#"{{"__type":"AccessDeniedException","message":"{who}: kms:{api} on resource: test-proxy because no identity-based policy allows the kms:{api} action"}}"#
            ),
        ),
        _ => (
            "text/xml",
            None,
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{who}: \
                 {service}:{api} because no identity-based policy allows the {service}:{api} \
                 action</Message></Error><RequestId>test</RequestId></ErrorResponse>"
            ),
        ),
    };
    let mut r = Response::builder()
        .status(403)
        .header("content-type", ctype);
    if let Some((k, v)) = extra {
        r = r.header(k, v);
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}

fn throttled(service: &str) -> Response<Full<Bytes>> {
    let (status, ctype, extra, body): (u16, &str, Option<(&str, &str)>, &str) = match service {
        "ec2" => (
            503,
            "text/xml",
            None,
            "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit \
             exceeded.</Message></Error></Errors><RequestID>test</RequestID></Response>",
        ),
        "s3" => (
            503,
            "application/xml",
            None,
            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>\
             </Error>",
        ),
        "lambda" => (
            429,
            "application/json",
            Some(("x-amzn-errortype", "TooManyRequestsException")),
            r#"{"Type":"User","message":"Rate exceeded"}"#,
        ),
        // KMS: ThrottlingException, "You have exceeded the rate at which you may call KMS"
        // (KMS developer guide, "Request quotas").
        "kms" => (
            400,
            "application/x-amz-json-1.1",
            None,
            r#"{"__type":"ThrottlingException","message":"You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."}"#,
        ),
        _ => (
            400,
            "text/xml",
            None,
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate \
             exceeded</Message></Error><RequestId>test</RequestId></ErrorResponse>",
        ),
    };
    let mut r = Response::builder()
        .status(status)
        .header("content-type", ctype);
    if let Some((k, v)) = extra {
        r = r.header(k, v);
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}
