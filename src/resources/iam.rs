//! The two execution roles. Both trust Lambda and may write objects to the bucket; the
//! uploader's managed policy lets Lambda manage its network interfaces in the VPC, the control
//! function's only lets it log. Roles are deleted last: Lambda needs the role to release ENIs.
use anyhow::{Context, Result, bail};
use aws_sdk_iam::types::Tag;

use super::network::delete_when_free;
use super::{Ctx, Live};
use crate::error::{Call, CallResultExt, Kind};
use crate::graph::Step;
use crate::policy::{self, BASIC_EXECUTION_POLICY, INLINE_POLICY_NAME, VPC_ACCESS_POLICY};
use crate::run::Action;
use crate::stack::STACK_TAG;
use crate::state::Resource;

fn managed_policy_arn(ctx: &Ctx, step: Step) -> String {
    let name = match step {
        Step::UploaderRole => VPC_ACCESS_POLICY,
        _ => BASIC_EXECUTION_POLICY,
    };
    format!("arn:{}:iam::aws:policy/{name}", ctx.stack.partition())
}

fn inline(ctx: &Ctx) -> serde_json::Value {
    policy::bucket_write(ctx.stack.partition(), ctx.stack.bucket())
}

pub async fn find(step: Step, ctx: &Ctx) -> Result<Option<Resource>> {
    let name = ctx.stack.role_name(step);
    let Some(out) = ctx
        .aws
        .iam
        .get_role()
        .role_name(&name)
        .send()
        .await
        .call("GetRole", &name)
        .found()?
    else {
        return Ok(None);
    };
    let Some(role) = out.role() else {
        return Ok(None);
    };
    let ours = role
        .tags()
        .iter()
        .any(|t| t.key() == STACK_TAG && t.value() == ctx.stack.name.as_str());
    if !ours {
        bail!(
            "IAM role {name} exists but is not tagged {STACK_TAG}={}; privbucket will not take \
             over a role it did not make. Delete or rename that role, or choose another --name",
            ctx.stack.name
        );
    }
    Ok(Some(Resource::new(&name).with_arn(role.arn())))
}

pub async fn create(step: Step, ctx: &Ctx) -> Result<Resource> {
    let name = ctx.stack.role_name(step);
    let tags = ctx
        .stack
        .tags(step)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .context("building role tags")?;
    let out = ctx
        .aws
        .iam
        .create_role()
        .role_name(&name)
        .assume_role_policy_document(policy::lambda_trust().to_string())
        .description(format!(
            "privbucket {}: execution role of the {} function",
            ctx.stack.name,
            if step == Step::UploaderRole {
                "uploader"
            } else {
                "control"
            }
        ))
        .set_tags(Some(tags))
        .send()
        .await
        .call("CreateRole", &name);
    let arn = match out {
        Ok(out) => out.role().map(|r| r.arn().to_string()),
        // A lost response to an earlier attempt: the role is there, tagged, and ours.
        Err(e) if e.is(Kind::AlreadyExists) => {
            let found = find(step, ctx)
                .await?
                .ok_or_else(|| anyhow::Error::new(e))?;
            fix(step, ctx).await?;
            return Ok(found);
        }
        Err(e) => return Err(e.into()),
    };
    let arn = arn.unwrap_or_else(|| ctx.stack.role_arn(step));
    attach_policies(step, ctx).await?;
    Ok(Resource::new(name).with_arn(arn))
}

/// The role and both its policies are read at once (one round trip).
pub async fn observe(step: Step, ctx: &Ctx, known: &Resource) -> Result<Live> {
    let iam = &ctx.aws.iam;
    let name = &known.id;
    let (out, attached, inline_doc) = tokio::join!(
        async {
            iam.get_role()
                .role_name(name)
                .send()
                .await
                .call("GetRole", name)
                .found()
        },
        async {
            iam.list_attached_role_policies()
                .role_name(name)
                .send()
                .await
                .call("ListAttachedRolePolicies", name)
                .found()
        },
        async {
            iam.get_role_policy()
                .role_name(name)
                .policy_name(INLINE_POLICY_NAME)
                .send()
                .await
                .call("GetRolePolicy", name)
                .found()
        },
    );
    let Some(out) = out? else {
        return Ok(Live::Missing);
    };
    let Some(role) = out.role() else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    let trust = role.assume_role_policy_document().and_then(policy::parse);
    if !trust.is_some_and(|t| policy::same(&t, &policy::lambda_trust())) {
        diffs.push("trust policy is not Lambda-only".to_string());
    }
    let attached = attached?;
    let managed = managed_policy_arn(ctx, step);
    if !attached.is_some_and(|a| {
        a.attached_policies()
            .iter()
            .any(|p| p.policy_arn() == Some(managed.as_str()))
    }) {
        diffs.push(format!("managed policy {managed} is not attached"));
    }
    let inline_doc = inline_doc?;
    match inline_doc.map(|o| policy::parse(o.policy_document())) {
        None => diffs.push(format!("inline policy {INLINE_POLICY_NAME} is missing")),
        Some(doc) if !doc.as_ref().is_some_and(|d| policy::same(d, &inline(ctx))) => {
            diffs.push(format!(
                "inline policy {INLINE_POLICY_NAME} differs from PutObject on {}/*",
                ctx.stack.bucket()
            ))
        }
        Some(_) => {}
    }
    Ok(Live::Present(
        Resource::new(name).with_arn(role.arn()),
        diffs,
    ))
}

/// Puts trust, managed and inline policy right; each call is idempotent, and they run at once.
pub async fn fix(step: Step, ctx: &Ctx) -> Result<()> {
    let name = ctx.stack.role_name(step);
    let (trust, policies) = tokio::join!(
        ctx.aws
            .iam
            .update_assume_role_policy()
            .role_name(&name)
            .policy_document(policy::lambda_trust().to_string())
            .send(),
        attach_policies(step, ctx),
    );
    trust.call("UpdateAssumeRolePolicy", &name)?;
    policies
}

/// The managed and the inline policy, at once.
async fn attach_policies(step: Step, ctx: &Ctx) -> Result<()> {
    let iam = &ctx.aws.iam;
    let name = ctx.stack.role_name(step);
    let managed = managed_policy_arn(ctx, step);
    let (attached, inline_put) = tokio::join!(
        iam.attach_role_policy()
            .role_name(&name)
            .policy_arn(&managed)
            .send(),
        iam.put_role_policy()
            .role_name(&name)
            .policy_name(INLINE_POLICY_NAME)
            .policy_document(inline(ctx).to_string())
            .send(),
    );
    attached.call("AttachRolePolicy", format!("{name} ({managed})"))?;
    inline_put.call("PutRolePolicy", &name)?;
    Ok(())
}

/// Detaches and deletes every policy, then the role.
pub async fn delete(ctx: &Ctx, name: &str) -> Result<Action> {
    let iam = &ctx.aws.iam;
    let Some(attached) = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .call("ListAttachedRolePolicies", name)
        .found()?
    else {
        return Ok(Action::AlreadyGone);
    };
    for p in attached.attached_policies() {
        if let Some(arn) = p.policy_arn() {
            iam.detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .call("DetachRolePolicy", format!("{name} ({arn})"))
                .gone()?;
        }
    }
    if let Some(inline) = iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .call("ListRolePolicies", name)
        .found()?
    {
        for p in inline.policy_names() {
            iam.delete_role_policy()
                .role_name(name)
                .policy_name(p)
                .send()
                .await
                .call("DeleteRolePolicy", format!("{name} ({p})"))
                .gone()?;
        }
    }
    delete_when_free(ctx, &format!("IAM role {name}"), || async {
        iam.delete_role()
            .role_name(name)
            .send()
            .await
            .call("DeleteRole", name)
            .map(|_| ())
    })
    .await
}
