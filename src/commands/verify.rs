//! `privbucket verify`: proves, from the live configuration, that the bucket is private. Each
//! check passes, fails or is inconclusive, with its evidence. Exit 0 when none fails, 1 when
//! one does, 3 when AWS calls fail.
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::{connect, emit};
use crate::config::Global;
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
        if self.ok {
            write!(f, "The bucket is private: no check failed.")
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
        }
    } else {
        Check {
            name,
            verdict: Verdict::Fail,
            evidence: failures,
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
    let uploader = ctx.stack.role_arn(Step::UploaderRole);
    let control = ctx.stack.role_arn(Step::ControlRole);
    let object = format!(
        "arn:{}:s3:::{bucket}/privbucket-verify",
        ctx.stack.partition()
    );
    let ask = |who: Option<&str>, action: &str, vpce: Option<&str>, tls: bool| Request {
        principal: who.map(str::to_string),
        action: action.to_string(),
        resource: object.clone(),
        context: [
            vpce.map(|v| ("aws:SourceVpce".to_string(), v.to_string())),
            Some(("aws:SecureTransport".to_string(), tls.to_string())),
            who.map(|w| ("aws:PrincipalArn".to_string(), w.to_string())),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    let cases = [
        (
            "the uploader through the endpoint",
            ask(Some(&uploader), "s3:PutObject", Some(&endpoint), true),
            false,
        ),
        (
            "the uploader without the endpoint",
            ask(Some(&uploader), "s3:PutObject", None, true),
            true,
        ),
        (
            "the uploader through another endpoint",
            ask(
                Some(&uploader),
                "s3:PutObject",
                Some("vpce-0000000000other"),
                true,
            ),
            true,
        ),
        (
            "the control function",
            ask(Some(&control), "s3:PutObject", None, true),
            true,
        ),
        (
            "an anonymous caller",
            ask(None, "s3:PutObject", None, true),
            true,
        ),
        (
            "tagging without the endpoint",
            ask(Some(&uploader), "s3:PutObjectTagging", None, true),
            true,
        ),
    ];
    let mut failures = Vec::new();
    let mut evidence = Vec::new();
    for (who, req, must_deny) in cases {
        let denied = evaluate(&doc, &req)? == Decision::Deny;
        let line = format!(
            "{} by {who}: {}",
            req.action,
            if denied { "denied" } else { "not denied" }
        );
        if denied == must_deny {
            evidence.push(line);
        } else {
            failures.push(line);
        }
    }
    Ok(check("bucket-policy", failures, evidence))
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
    let (route, endpoint, policy, public, function, role) = tokio::join!(
        route(&ctx, res),
        differences(Step::Endpoint, &ctx, res),
        bucket_policy(&ctx, res),
        public_access(&ctx, res),
        differences(Step::UploaderFunction, &ctx, res),
        differences(Step::UploaderRole, &ctx, res),
    );
    let endpoint_id = res
        .get(&Step::Endpoint)
        .map(|r| r.id.clone())
        .unwrap_or_default();
    let mut checks = vec![
        route?,
        check(
            "endpoint",
            endpoint?,
            vec![format!(
                "{endpoint_id}: Gateway endpoint for {}, available, on exactly the stack's route tables",
                stack.s3_service()
            )],
        ),
        policy?,
        public?,
        check(
            "function",
            [function?, role?].concat(),
            vec![format!(
                "{}: in the stack's two subnets and security group; its role has the VPC access \
                 policy and PutObject on the bucket only",
                stack.function_name(Step::UploaderFunction)
            )],
        ),
    ];
    if invoke {
        checks.push(live(&ctx).await?);
    }
    let ok = checks.iter().all(|c| c.verdict != Verdict::Fail);
    emit(
        g,
        &VerifyReport {
            stack: stack.name.to_string(),
            bucket: stack.bucket().to_string(),
            ok,
            checks,
        },
    )?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The reference's own proof: invoke both functions with the example event. Where the answer
/// proves nothing (an emulator that echoes the event instead of running the handler), the
/// check says so.
async fn live(ctx: &Ctx) -> Result<Check> {
    let event = serde_json::json!({
        "title": "Harry Potter and the Philosopher's Stone",
        "author": "J. K. Rowling",
        "store": "Queen St",
        "seller": "John Doe"
    });
    let name = ctx.stack.function_name(Step::UploaderFunction);
    let out = ctx
        .aws
        .lambda
        .invoke()
        .function_name(&name)
        .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
        .send()
        .await
        .call("Invoke", &name)?;
    let payload: Option<serde_json::Value> = out
        .payload()
        .and_then(|p| serde_json::from_slice(p.as_ref()).ok());
    if payload.as_ref() == Some(&event) {
        return Ok(Check {
            name: "live",
            verdict: Verdict::Inconclusive,
            evidence: vec![format!(
                "{name} answered with the event itself: the handler did not run (an emulator \
                 without Lambda execution), so nothing is proven"
            )],
        });
    }
    let key = payload
        .as_ref()
        .and_then(|p| p.as_str())
        .map(str::to_string);
    let Some(key) = key else {
        return Ok(Check {
            name: "live",
            verdict: Verdict::Fail,
            evidence: vec![format!(
                "{name} did not return an object key: {}",
                payload
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "no payload".into())
            )],
        });
    };
    let bucket = ctx.stack.bucket();
    let head = ctx
        .aws
        .s3
        .head_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .call("HeadObject", &key)
        .found()?;
    Ok(if head.is_some() {
        Check {
            name: "live",
            verdict: Verdict::Pass,
            evidence: vec![format!("{name} wrote {key} to {bucket}")],
        }
    } else {
        Check {
            name: "live",
            verdict: Verdict::Fail,
            evidence: vec![format!(
                "{name} returned {key}, but {bucket} has no such object"
            )],
        }
    })
}
