//! The checks of the live configuration: every read goes through `crate::resources`.
use anyhow::Result;

use super::{Check, check};
use crate::config::PolicyScope;
use crate::evaluate::{Decision, evaluate};
use crate::graph::{Function, Step};
use crate::policy_cases::{judge, policy_cases};
use crate::resources::{
    Ctx, Live, bucket, bucket_policy, function, key, network, observe_recorded, route_table,
};
use crate::state::{Ownership, Resources};

/// Differences `observe` reports for a step, or that it is missing.
pub(super) async fn differences(step: Step, ctx: &Ctx, res: &Resources) -> Result<Vec<String>> {
    let Some(known) = res.get(&step) else {
        return Ok(vec![format!("{} is not in the stack", step.key())]);
    };
    Ok(match observe_recorded(step, ctx, res, known).await? {
        Live::Missing => vec![format!("{} {} is missing", step.kind(), known.id)],
        Live::Present(_, diffs) => diffs
            .into_iter()
            .map(|d| format!("{} {}: {d}", step.kind(), known.id))
            .collect(),
    })
}

/// Each subnet the uploader runs in routes S3 to one of the stack's endpoints and nowhere
/// else. In a borrowed network a default route to a NAT or internet gateway is the user's and
/// does not take S3 traffic away from the endpoint (the prefix-list route is more specific):
/// it is said, not failed.
pub(super) async fn route(ctx: &Ctx, res: &Resources) -> Result<Check> {
    let endpoints = network::endpoint_ids(res);
    let borrowed = network::borrowed(ctx);
    let function = ctx.stack.function_name(Function::Uploader);
    let subnets: Vec<String> = function::configuration(ctx, &function)
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
    let (tables, prefix_list) = tokio::join!(
        route_table::in_vpc(ctx, &vpc),
        crate::resources::read::s3_prefix_list(ctx)
    );
    let (tables, prefix_list) = (tables?, prefix_list?);
    for subnet in &subnets {
        let Some((rt, _)) = network::table_of(&tables, subnet) else {
            failures.push(format!("subnet {subnet} has no route table"));
            continue;
        };
        let Some(table) = tables
            .iter()
            .find(|t| t.route_table_id() == Some(rt.as_str()))
        else {
            continue;
        };
        let to = route_table::s3_route_targets(table, prefix_list);
        match to.iter().find(|t| endpoints.contains(t)) {
            Some(e) if to.len() == 1 => evidence.push(format!(
                "subnet {subnet}: route table {rt} sends the S3 prefix list to {e}"
            )),
            _ if to.is_empty() => failures.push(format!(
                "subnet {subnet}: route table {rt} has no S3 prefix-list route to {}",
                endpoints.join(" or ")
            )),
            _ => failures.push(format!(
                "subnet {subnet}: route table {rt} sends the S3 prefix list to {}, not only \
                 to the stack's endpoint(s) {}",
                to.join(", "),
                endpoints.join(", ")
            )),
        }
        for gw in route_table::internet_routes(table) {
            if borrowed {
                evidence.push(format!(
                    "information: subnet {subnet}: route table {rt} also routes to {gw}; S3 \
                     traffic still takes the endpoint (its prefix-list route is more specific \
                     than a default route)"
                ));
            } else {
                failures.push(format!("subnet {subnet}: route table {rt} routes to {gw}"));
            }
        }
    }
    Ok(check("route", failures, evidence))
}

/// The bucket policy, evaluated against the requests that must and must not get through.
pub(super) async fn bucket_policy(ctx: &Ctx, res: &Resources) -> Result<Check> {
    let bucket = ctx.stack.bucket();
    let endpoints = network::endpoint_ids(res);
    let Some(doc) = bucket::policy(ctx)
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
    let key = bucket_policy::key_arn(ctx, res).ok().flatten();
    let (failures, mut evidence) =
        judge(&doc, policy_cases(&ctx.stack, &endpoints, key.as_deref()))?;
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

/// Block Public Access, ownership, and S3's own view of whether the policy is public.
pub(super) async fn public_access(ctx: &Ctx, res: &Resources) -> Result<Check> {
    let bucket = ctx.stack.bucket();
    let mut failures = differences(Step::Bucket, ctx, res).await?;
    let public = bucket::policy_is_public(ctx).await?;
    if public {
        failures.push(format!("S3 says the policy of {bucket} is public"));
    }
    let versioning = match ctx.stack.settings.versioning {
        Some(true) => ", versioning Enabled",
        Some(false) => ", versioning not on (--no-versioning)",
        None => "",
    };
    let evidence = vec![format!(
        "all four Block Public Access flags on, ownership enforced, policy not public{versioning} \
         ({bucket})"
    )];
    Ok(check("public-access", failures, evidence))
}

/// The bucket's KMS key (`--kms-key`): there and usable, rotation on for a key privbucket
/// made, and its policy, evaluated: the uploader's role may have data keys made through S3
/// for the bucket, and (a key privbucket made) not otherwise. The bucket's default encryption
/// with the key and S3 Bucket Keys is the `public-access` check's (the bucket's settings).
pub(super) async fn kms_key(ctx: &Ctx, res: &Resources) -> Result<Check> {
    let mut failures = differences(Step::Key, ctx, res).await?;
    let Some(known) = res.get(&Step::Key) else {
        return Ok(check("kms-key", failures, vec![]));
    };
    let arn = known.arn_or_id();
    let made = known.ownership != Ownership::Borrowed;
    let mut evidence = vec![format!(
        "{arn}: {}, enabled{}; bucket {} encrypts with it by default (SSE-KMS, S3 Bucket Keys \
         on), and its policy denies writes asking for another key or encryption",
        if made {
            format!("made by privbucket, alias {}", key::alias(ctx))
        } else {
            "borrowed, never changed".to_string()
        },
        if made { ", rotation on" } else { "" },
        ctx.stack.bucket()
    )];
    match key::key_policy_of(ctx, arn).await? {
        None => evidence.push(
            "inconclusive: the key's policy could not be read (kms:GetKeyPolicy), so whether it \
             lets the uploader use the key is not known"
                .to_string(),
        ),
        Some(doc) => match key::shuts_out_uploader(ctx, &doc, arn) {
            // A borrowed key's `observe` judges its policy: among the differences already.
            Some(what) => {
                if made {
                    failures.push(key::Drift::ShutsOutUploader(what).to_string());
                }
            }
            None => {
                evidence.push(format!(
                    "the key's policy lets {} have data keys made through S3 for bucket {}",
                    ctx.stack.role_arn(Function::Uploader),
                    ctx.stack.bucket()
                ));
                if made {
                    let role = ctx.stack.role_arn(Function::Uploader);
                    let mut direct = key::uploader_request(ctx, arn, &role);
                    direct.context.remove("kms:ViaService");
                    match evaluate(&doc, &direct).ok() {
                        Some(Decision::Allow) => failures.push(format!(
                            "the key's policy lets {role} use the key outside S3"
                        )),
                        _ => evidence.push(
                            "and not outside S3 (kms:ViaService), nor for another bucket: \
                             nobody else is named but the account root and the key's \
                             administrators"
                                .to_string(),
                        ),
                    }
                }
            }
        },
    }
    Ok(check("kms-key", failures, evidence))
}
