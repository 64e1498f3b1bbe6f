//! `privbucket verify`: proves, from the live configuration, that the bucket is private. Each
//! check passes, fails or is inconclusive, with its evidence. Exit 0 when none fails, 1 when
//! one does, 3 when AWS calls fail.
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::{connect, emit};
use crate::config::{Global, PolicyScope};
use crate::error::{Call, CallResultExt};
use crate::evaluate::{Decision, Request, evaluate};
use crate::graph::Step;
use crate::progress::Progress;
use crate::resources::{Ctx, Live, bucket, lambda, observe};
use crate::stack::Stack;
use crate::state::{self, Resources};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub evidence: Vec<String>,
    /// An AWS call the check needed failed (exit 3 unless another check fails).
    #[serde(skip)]
    pub unread: bool,
}

/// A check whose reads failed is inconclusive, with the error as its evidence; the other
/// checks still run and report.
fn settle(name: &'static str, r: Result<Check>) -> Check {
    r.unwrap_or_else(|e| Check {
        name,
        verdict: Verdict::Inconclusive,
        evidence: vec![format!("could not be checked: {e:#}")],
        unread: true,
    })
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub stack: String,
    pub bucket: String,
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Verifying stack {} (bucket {}):",
            self.stack, self.bucket
        )?;
        for c in &self.checks {
            let v = match c.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL",
                Verdict::Inconclusive => "inconclusive",
            };
            writeln!(f, "{v:<13} {}", c.name)?;
            for e in &c.evidence {
                writeln!(f, "              {e}")?;
            }
        }
        let open: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.verdict == Verdict::Inconclusive)
            .map(|c| c.name)
            .collect();
        if self.ok && open.is_empty() {
            write!(f, "The bucket is private: no check failed.")
        } else if self.ok {
            write!(
                f,
                "The bucket is private: no check failed ({} proved nothing, see above).",
                open.join(", ")
            )
        } else {
            write!(
                f,
                "A check failed: the bucket may not be private (see above)."
            )
        }
    }
}

fn check(name: &'static str, failures: Vec<String>, evidence: Vec<String>) -> Check {
    if failures.is_empty() {
        Check {
            name,
            verdict: Verdict::Pass,
            evidence,
            unread: false,
        }
    } else {
        Check {
            name,
            verdict: Verdict::Fail,
            evidence: failures,
            unread: false,
        }
    }
}

/// Differences `observe` reports for a step, or that it is missing.
async fn differences(step: Step, ctx: &Ctx, res: &Resources) -> Result<Vec<String>> {
    let Some(known) = res.get(&step) else {
        return Ok(vec![format!("{} is not in the stack", step.key())]);
    };
    Ok(match observe(step, ctx, res, known).await? {
        Live::Missing => vec![format!("{} {} is missing", step.kind(), known.id)],
        Live::Present(_, diffs) => diffs
            .into_iter()
            .map(|d| format!("{} {}: {d}", step.kind(), known.id))
            .collect(),
    })
}

/// Each subnet the uploader runs in routes S3 to the stack's endpoint and nowhere else.
async fn route(ctx: &Ctx, res: &Resources) -> Result<Check> {
    let endpoint = res
        .get(&Step::Endpoint)
        .map(|r| r.id.clone())
        .unwrap_or_default();
    let function = ctx.stack.function_name(Step::UploaderFunction);
    let subnets: Vec<String> = lambda::configuration(ctx, &function)
        .await?
        .and_then(|c| c.vpc_config().map(|v| v.subnet_ids().to_vec()))
        .unwrap_or_default();
    let mut failures = Vec::new();
    let mut evidence = Vec::new();
    if subnets.is_empty() {
        failures.push(format!("function {function} runs in no subnet"));
    }
    let vpc = res
        .get(&Step::Vpc)
        .map(|r| r.id.clone())
        .unwrap_or_default();
    let tables = ctx
        .aws
        .ec2
        .describe_route_tables()
        .filters(crate::resources::network::filter("vpc-id", &vpc))
        .send()
        .await
        .call("DescribeRouteTables", &vpc)?;
    for subnet in &subnets {
        let explicit = tables.route_tables().iter().find(|t| {
            t.associations()
                .iter()
                .any(|a| a.subnet_id() == Some(subnet.as_str()))
        });
        let main = || {
            tables
                .route_tables()
                .iter()
                .find(|t| t.associations().iter().any(|a| a.main() == Some(true)))
        };
        let Some(table) = explicit.or_else(main) else {
            failures.push(format!("subnet {subnet} has no route table"));
            continue;
        };
        let rt = table.route_table_id().unwrap_or_default();
        let routed = table.routes().iter().any(|r| {
            r.destination_prefix_list_id().is_some() && r.gateway_id() == Some(endpoint.as_str())
        });
        if routed {
            evidence.push(format!(
                "subnet {subnet}: route table {rt} sends the S3 prefix list to {endpoint}"
            ));
        } else {
            failures.push(format!(
                "subnet {subnet}: route table {rt} has no S3 prefix-list route to {endpoint}"
            ));
        }
        for r in table.routes() {
            let gw = r.gateway_id().unwrap_or_default();
            if gw.starts_with("igw-") || r.nat_gateway_id().is_some() {
                failures.push(format!(
                    "subnet {subnet}: route table {rt} routes to {gw}{}",
                    r.nat_gateway_id().unwrap_or_default()
                ));
            }
        }
    }
    Ok(check("route", failures, evidence))
}

/// The bucket policy, evaluated against the requests that must and must not get through.
async fn bucket_policy(ctx: &Ctx, res: &Resources) -> Result<Check> {
    let bucket = ctx.stack.bucket();
    let endpoint = res
        .get(&Step::Endpoint)
        .map(|r| r.id.clone())
        .unwrap_or_default();
    let Some(doc) = bucket::live_policy(ctx)
        .await?
        .as_deref()
        .and_then(crate::policy::parse)
    else {
        return Ok(check(
            "bucket-policy",
            vec![format!("bucket {bucket} has no policy")],
            vec![],
        ));
    };
    let settings = &ctx.stack.settings;
    // One line per caller and outcome, naming the actions.
    let mut lines: Vec<(String, bool, Vec<String>)> = Vec::new();
    for case in policy_cases(&ctx.stack, &endpoint) {
        let denied = evaluate(&doc, &case.request)? == Decision::Deny;
        let head = format!(
            "{}: {}{}",
            case.who,
            if denied { "denied" } else { "not denied" },
            case.note
        );
        let ok = denied == case.deny;
        match lines.iter_mut().find(|(h, o, _)| *h == head && *o == ok) {
            Some((_, _, actions)) => actions.push(case.request.action),
            None => lines.push((head, ok, vec![case.request.action])),
        }
    }
    let mut failures = Vec::new();
    let mut evidence = Vec::new();
    for (head, ok, actions) in lines {
        let (who, outcome) = head.split_once(": ").expect("formatted above");
        let line = format!("{} by {who}: {outcome}", actions.join(", "));
        if ok {
            evidence.push(line);
        } else {
            failures.push(line);
        }
    }
    if settings.policy_scope == PolicyScope::All {
        evidence.push(format!(
            "scope all: exempt from the Deny of every action (not of object writes): {}",
            settings
                .admin_principals
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(check("bucket-policy", failures, evidence))
}

/// One request the bucket policy is evaluated against, and whether it must be denied.
struct PolicyCase {
    who: String,
    request: Request,
    deny: bool,
    note: &'static str,
}

/// The requests that must and must not get through, for the stack's scope and hardening:
/// writes from anywhere but the endpoint are denied to everyone; in scope `all` every other
/// action is too, except to the admins; without TLS, everything is (unless turned off).
fn policy_cases(stack: &Stack, endpoint: &str) -> Vec<PolicyCase> {
    let s = &stack.settings;
    let bucket = stack.bucket();
    let bucket_arn = format!("arn:{}:s3:::{bucket}", stack.partition());
    let object = format!("{bucket_arn}/privbucket-verify");
    let uploader = stack.role_arn(Step::UploaderRole);
    let control = stack.role_arn(Step::ControlRole);
    let ask = |who: Option<&str>, action: &str, vpce: Option<&str>, tls: bool| {
        let resource = if matches!(action, "s3:ListBucket" | "s3:GetBucketPolicy") {
            bucket_arn.clone()
        } else {
            object.clone()
        };
        Request {
            principal: who.map(str::to_string),
            action: action.to_string(),
            resource,
            context: [
                vpce.map(|v| ("aws:SourceVpce".to_string(), v.to_string())),
                Some(("aws:SecureTransport".to_string(), tls.to_string())),
                who.map(|w| ("aws:PrincipalArn".to_string(), w.to_string())),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    };
    let other = "vpce-0000000000other";
    let outsiders: Vec<(String, Option<&str>, Option<&str>)> = vec![
        (
            "the uploader without the endpoint".into(),
            Some(&uploader),
            None,
        ),
        (
            "the uploader through another endpoint".into(),
            Some(&uploader),
            Some(other),
        ),
        ("the control function".into(), Some(&control), None),
        ("an anonymous caller".into(), None, None),
    ];
    let case = |who: &str, request: Request, deny: bool| PolicyCase {
        who: who.to_string(),
        request,
        deny,
        note: "",
    };
    let mut cases = vec![case(
        "the uploader through the endpoint",
        ask(Some(&uploader), "s3:PutObject", Some(endpoint), true),
        false,
    )];
    for (who, principal, vpce) in &outsiders {
        for action in crate::policy::WRITE_ACTIONS {
            cases.push(case(who, ask(*principal, action, *vpce, true), true));
        }
    }
    let mut tls = case(
        "the uploader through the endpoint without TLS",
        ask(Some(&uploader), "s3:PutObject", Some(endpoint), false),
        s.tls_deny,
    );
    if !s.tls_deny {
        tls.note = " (the TLS Deny is off: --no-tls-deny)";
    }
    cases.push(tls);
    if s.policy_scope == PolicyScope::All {
        let others = [
            "s3:GetObject",
            "s3:ListBucket",
            "s3:DeleteObject",
            "s3:GetBucketPolicy",
        ];
        for (who, principal, vpce) in &outsiders {
            for action in others {
                cases.push(case(who, ask(*principal, action, *vpce, true), true));
            }
        }
        for admin in &s.admin_principals {
            let who = format!("admin {admin}");
            for action in others {
                cases.push(case(
                    &who,
                    ask(Some(admin.as_str()), action, None, true),
                    false,
                ));
            }
            cases.push(case(
                &who,
                ask(Some(admin.as_str()), "s3:PutObject", None, true),
                true,
            ));
            let mut plain = case(
                &format!("{who} without TLS"),
                ask(Some(admin.as_str()), "s3:GetObject", None, false),
                s.tls_deny,
            );
            if !s.tls_deny {
                plain.note = " (the TLS Deny is off: --no-tls-deny)";
            }
            cases.push(plain);
        }
        cases.push(case(
            "the uploader through the endpoint",
            ask(Some(&uploader), "s3:GetObject", Some(endpoint), true),
            false,
        ));
    }
    cases
}

/// Block Public Access, ownership, and S3's own view of whether the policy is public.
async fn public_access(ctx: &Ctx, res: &Resources) -> Result<Check> {
    let bucket = ctx.stack.bucket();
    let mut failures = differences(Step::Bucket, ctx, res).await?;
    let status = ctx
        .aws
        .s3
        .get_bucket_policy_status()
        .bucket(bucket)
        .send()
        .await
        .call("GetBucketPolicyStatus", bucket)
        .found()?;
    let public = status
        .and_then(|s| s.policy_status().and_then(|p| p.is_public()))
        .unwrap_or(false);
    if public {
        failures.push(format!("S3 says the policy of {bucket} is public"));
    }
    let evidence = vec![format!(
        "all four Block Public Access flags on, ownership enforced, policy not public ({bucket})"
    )];
    Ok(check("public-access", failures, evidence))
}

pub async fn run(g: &Global, invoke: bool) -> Result<ExitCode> {
    let Some(st) = state::load(&g.state_path)? else {
        return crate::error::input(format!(
            "nothing to verify: there is no state file at {}; run `privbucket up` first (or \
             `privbucket status --name NAME` to find a stack without one)",
            g.state_path.display()
        ));
    };
    let session = connect(g, Some(&st), None).await?;
    let stack = Stack::from_state(&st);
    let ctx = Arc::new(Ctx::new(session.clients, stack.clone(), Progress::silent()));
    let res = &st.resources;
    let (route, endpoint, policy, public, function, role, group) = tokio::join!(
        route(&ctx, res),
        differences(Step::Endpoint, &ctx, res),
        bucket_policy(&ctx, res),
        public_access(&ctx, res),
        differences(Step::UploaderFunction, &ctx, res),
        differences(Step::UploaderRole, &ctx, res),
        differences(Step::SecurityGroup, &ctx, res),
    );
    let endpoint_id = res
        .get(&Step::Endpoint)
        .map(|r| r.id.clone())
        .unwrap_or_default();
    let endpoint_policy = if stack.settings.endpoint_policy {
        format!("; its policy allows only bucket {}", stack.bucket())
    } else {
        "; its policy is AWS's full access (--no-endpoint-policy)".to_string()
    };
    let egress = if stack.settings.egress_limit {
        "egress only tcp/443 to the S3 prefix list"
    } else {
        "egress open (--no-egress-limit)"
    };
    let function = (|| Ok::<_, anyhow::Error>([function?, role?, group?].concat()))();
    let mut checks = vec![
        settle("route", route),
        settle(
            "endpoint",
            endpoint.map(|diffs| {
                check(
                    "endpoint",
                    diffs,
                    vec![format!(
                        "{endpoint_id}: Gateway endpoint for {}, available, on exactly the \
                         stack's route tables{endpoint_policy}",
                        stack.s3_service()
                    )],
                )
            }),
        ),
        settle("bucket-policy", policy),
        settle("public-access", public),
        settle(
            "function",
            function.map(|diffs| {
                check(
                    "function",
                    diffs,
                    vec![format!(
                        "{}: in the stack's two subnets and security group ({egress}); its \
                         role has the VPC access policy and PutObject on the bucket only",
                        stack.function_name(Step::UploaderFunction)
                    )],
                )
            }),
        ),
    ];
    if invoke {
        checks.push(settle("live", live(&ctx).await));
    }
    let ok = checks.iter().all(|c| c.verdict != Verdict::Fail);
    let unread = checks.iter().any(|c| c.unread);
    emit(
        g,
        &VerifyReport {
            stack: stack.name.to_string(),
            bucket: stack.bucket().to_string(),
            ok,
            checks,
        },
    )?;
    Ok(if !ok {
        ExitCode::from(1)
    } else if unread {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// The reference's own proof, run for real: the uploader's write lands, the control
/// function's is denied, and so is the operator's own PutObject from here. Where an answer
/// proves nothing (an emulator that echoes the event instead of running the handler), the
/// part says so and the check is inconclusive, never a pass.
async fn live(ctx: &Ctx) -> Result<Check> {
    let (uploader, control, direct) = tokio::join!(
        invoke_uploader(ctx),
        async {
            if ctx.stack.settings.control_function {
                invoke_control(ctx).await.map(Some)
            } else {
                Ok(None)
            }
        },
        direct_put(ctx),
    );
    let parts: Vec<(Verdict, String)> = [Some(uploader?), control?, Some(direct?)]
        .into_iter()
        .flatten()
        .collect();
    let verdict = if parts.iter().any(|(v, _)| *v == Verdict::Fail) {
        Verdict::Fail
    } else if parts.iter().any(|(v, _)| *v == Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    Ok(Check {
        name: "live",
        verdict,
        evidence: parts
            .into_iter()
            .map(|(v, e)| match v {
                Verdict::Pass => format!("pass: {e}"),
                Verdict::Fail => format!("FAIL: {e}"),
                Verdict::Inconclusive => format!("inconclusive: {e}"),
            })
            .collect(),
        unread: false,
    })
}

fn example_event() -> serde_json::Value {
    serde_json::json!({
        "title": "Harry Potter and the Philosopher's Stone",
        "author": "J. K. Rowling",
        "store": "Queen St",
        "seller": "John Doe"
    })
}

/// What a function answered: its payload, and whether it raised.
async fn invoke(ctx: &Ctx, step: Step) -> Result<(Option<serde_json::Value>, bool)> {
    let name = ctx.stack.function_name(step);
    let out = ctx
        .aws
        .lambda
        .invoke()
        .function_name(&name)
        .payload(aws_sdk_lambda::primitives::Blob::new(
            example_event().to_string(),
        ))
        .send()
        .await
        .call("Invoke", &name)?;
    let payload = out
        .payload()
        .and_then(|p| serde_json::from_slice(p.as_ref()).ok());
    Ok((payload, out.function_error().is_some()))
}

fn echoed(name: &str) -> (Verdict, String) {
    (
        Verdict::Inconclusive,
        format!(
            "{name} answered with the event itself: the handler did not run (an emulator \
             without Lambda execution), so nothing is proven"
        ),
    )
}

async fn invoke_uploader(ctx: &Ctx) -> Result<(Verdict, String)> {
    let name = ctx.stack.function_name(Step::UploaderFunction);
    let (payload, raised) = invoke(ctx, Step::UploaderFunction).await?;
    if payload.as_ref() == Some(&example_event()) {
        return Ok(echoed(&name));
    }
    let key = payload.as_ref().and_then(|p| p.as_str());
    let Some(key) = key.filter(|_| !raised) else {
        return Ok((
            Verdict::Fail,
            format!(
                "{name} did not write the object: {}",
                payload
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "no payload".into())
            ),
        ));
    };
    let bucket = ctx.stack.bucket();
    let head = ctx
        .aws
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .call("HeadObject", key)
        .found()?;
    Ok(if head.is_some() {
        // The proof leaves no data behind: an object left here would make `down` keep the
        // bucket.
        let removed = ctx
            .aws
            .s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .call("DeleteObject", format!("{bucket}/{key}"));
        let after = match removed {
            Ok(_) => "deleted again".to_string(),
            Err(e) => format!("left in place, as deleting it failed: {e}; delete it yourself"),
        };
        (
            Verdict::Pass,
            format!("{name} wrote {key} to {bucket} ({after})"),
        )
    } else {
        (
            Verdict::Fail,
            format!("{name} returned {key}, but {bucket} has no such object"),
        )
    })
}

async fn invoke_control(ctx: &Ctx) -> Result<(Verdict, String)> {
    let name = ctx.stack.function_name(Step::ControlFunction);
    let (payload, raised) = invoke(ctx, Step::ControlFunction).await?;
    if payload.as_ref() == Some(&example_event()) {
        return Ok(echoed(&name));
    }
    let text = payload
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "no payload".into());
    Ok(match (raised, text.contains("AccessDenied")) {
        (true, true) => (
            Verdict::Pass,
            format!("{name} (outside the VPC) was denied: {text}"),
        ),
        (true, false) => (
            Verdict::Inconclusive,
            format!(
                "{name} failed, but not with AccessDenied, so the policy was not shown to deny it: {text}"
            ),
        ),
        (false, _) => (
            Verdict::Fail,
            format!("{name} wrote to the bucket from outside the VPC: {text}"),
        ),
    })
}

/// A PutObject with the operator's own credentials, from outside the VPC. Should it get
/// through, the object is deleted again.
async fn direct_put(ctx: &Ctx) -> Result<(Verdict, String)> {
    let bucket = ctx.stack.bucket();
    let key = format!(
        "privbucket-verify-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let r = ctx
        .aws
        .s3
        .put_object()
        .bucket(bucket)
        .key(&key)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"privbucket verify",
        ))
        .send()
        .await
        .call("PutObject", format!("{bucket}/{key}"));
    Ok(match r {
        Err(e) if e.is(crate::error::Kind::AccessDenied) => (
            Verdict::Pass,
            format!(
                "your own PutObject to {bucket} from here was denied ({})",
                e.code.as_deref().unwrap_or("AccessDenied")
            ),
        ),
        Err(e) => return Err(e.into()),
        Ok(_) => {
            ctx.aws
                .s3
                .delete_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .call("DeleteObject", format!("{bucket}/{key}"))?;
            (
                Verdict::Fail,
                format!(
                    "your own PutObject to {bucket} from outside the VPC succeeded (the test \
                     object {key} was deleted again)"
                ),
            )
        }
    })
}
