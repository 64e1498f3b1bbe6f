//! `privbucket verify`: proves, from the live configuration, that the bucket is private. Each
//! check passes, fails or is inconclusive, with its evidence. Exit 0 when none fails, 1 when
//! one does, 3 when AWS calls fail.
//!
//! Layout: this file runs the checks and renders the report; `checks` holds the checks of the
//! live configuration, `live` the proof by invoking the functions (`--invoke`). The policy
//! cases are pure and live beside the evaluator (`crate::policy_cases`).
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::{connect, emit};
use crate::config::{Global, Report};
use crate::graph::{Function, Step};
use crate::progress::Progress;
use crate::resources::{Ctx, proof};
use crate::stack::Stack;
use crate::state::{Ownership, Resources};

mod checks;
mod live;
mod report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

#[derive(Debug, Serialize)]
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) verdict: Verdict,
    pub(crate) evidence: Vec<String>,
    /// An AWS call the check needed failed (exit 3 unless another check fails).
    #[serde(skip)]
    pub(crate) unread: bool,
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
pub(crate) struct VerifyReport {
    pub(crate) stack: String,
    pub(crate) bucket: String,
    pub(crate) ok: bool,
    pub(crate) checks: Vec<Check>,
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
        // What the original article proves, in one line.
        let proof = "the uploader in the VPC may write through the endpoint; the control \
                     function outside it and anyone else may not";
        if self.ok && open.is_empty() {
            write!(f, "The bucket is private: {proof} (no check failed).")
        } else if self.ok {
            write!(
                f,
                "The bucket is private: {proof} (no check failed; {} proved nothing, see \
                 above).",
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

pub(super) fn check(name: &'static str, failures: Vec<String>, evidence: Vec<String>) -> Check {
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

pub(crate) async fn run(g: &Global, invoke: bool, report: Option<&Report>) -> Result<ExitCode> {
    if let Some(r) = report {
        report::check(r)?;
    }
    let Some(st) = crate::commands::open_store(g).await?.load().await? else {
        return crate::error::input(format!(
            "nothing to verify: there is no state file at {}; run `privbucket up` first (or \
             `privbucket status --name NAME` to find a stack without one)",
            g.state
        ));
    };
    let session = connect(g, Some(&st), None).await?;
    let stack = Stack::from_state(&st, &session.caller_arn);
    let ctx = Arc::new(Ctx::new(session.clients, stack.clone(), Progress::silent()));
    let mut checks = configuration_checks(&ctx, &stack, &st.resources).await;
    if invoke {
        checks.push(settle("live", live::live(&ctx).await));
    }
    let ok = checks.iter().all(|c| c.verdict != Verdict::Fail);
    let unread = checks.iter().any(|c| c.unread);
    if let Some(r) = report {
        // One read serves both: the diagram and the policies it was drawn from.
        let drawn = crate::commands::diagram::read(&ctx, &st.resources).await?;
        let evidence = report::Evidence {
            when: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            caller: &session.caller_arn,
            account: &stack.account_id,
            region: stack.region.as_str(),
            stack: stack.name.as_str(),
            bucket: stack.bucket(),
            ok,
            checks: &checks,
            diagram: drawn.diagram.render(crate::diagram::Format::Mermaid),
            policies: drawn.policies,
        };
        report::write(r, &report::markdown(&evidence))?;
    }
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

/// What `verify` says of the endpoint's policy: borrowed, made in a borrowed network, scoped
/// to the bucket, or AWS's full access.
fn endpoint_policy_words(stack: &Stack, res: &Resources) -> String {
    let borrowed = stack.settings.network.is_some();
    match res.get(&Step::Endpoint).map(|e| e.ownership) {
        Some(Ownership::Borrowed) => {
            "; borrowed: its policy, the user's, lets the uploader put objects in the bucket"
                .to_string()
        }
        _ if borrowed => "; made by privbucket in the borrowed network, its policy AWS's full \
                          access (the route tables carry other workloads' S3 traffic)"
            .to_string(),
        _ if stack.settings.endpoint_policy => {
            format!("; its policy allows only bucket {}", stack.bucket())
        }
        _ => "; its policy is AWS's full access (--no-endpoint-policy)".to_string(),
    }
}

/// The checks read from the account's configuration (no invoke), all at once.
async fn configuration_checks(ctx: &Arc<Ctx>, stack: &Stack, res: &Resources) -> Vec<Check> {
    let (owned, (route, endpoint, policy, public, function, role, group, kms)) =
        tokio::join!(proof::prove(ctx, res), async {
            tokio::join!(
                checks::route(ctx, res),
                checks::differences(Step::Endpoint, ctx, res),
                checks::bucket_policy(ctx, res),
                checks::public_access(ctx, res),
                checks::differences(Step::UploaderFunction, ctx, res),
                checks::differences(Step::UploaderRole, ctx, res),
                checks::differences(Step::SecurityGroup, ctx, res),
                async {
                    match stack.settings.kms_key {
                        Some(_) => Some(checks::kms_key(ctx, res).await),
                        None => None,
                    }
                },
            )
        });
    let endpoint_id = res
        .get(&Step::Endpoint)
        .map(|r| r.id.clone())
        .unwrap_or_default();
    let borrowed = stack.settings.network.is_some();
    let endpoint_policy = endpoint_policy_words(stack, res);
    let tables = if borrowed {
        "serving the route tables of the stack's subnets"
    } else {
        "on exactly the stack's route tables"
    };
    let subnets = if borrowed {
        "the borrowed subnets"
    } else {
        "the stack's two subnets"
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
                        "{endpoint_id}: Gateway endpoint for {}, available, \
                         {tables}{endpoint_policy}",
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
                        "{}: in {subnets} and the stack's security group ({egress}); its \
                         role has the VPC access policy and PutObject on the bucket only",
                        stack.function_name(Function::Uploader)
                    )],
                )
            }),
        ),
    ];
    checks.extend(kms.map(|k| settle("kms-key", k)));
    checks.push(settle("ownership", owned.map(|p| ownership(p.unproven))));
    checks
}

/// Every record the state names as made is the stack's (`resources::proof`).
fn ownership(unproven: Vec<proof::Unproven>) -> Check {
    let evidence = if unproven.is_empty() {
        vec![
            "every resource the state records as made carries the stack's tags for its step, \
             or joins the stack's own route table and subnet"
                .to_string(),
        ]
    } else {
        unproven.iter().map(ToString::to_string).collect()
    };
    Check {
        name: "ownership",
        verdict: if unproven.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        },
        evidence,
        unread: false,
    }
}
