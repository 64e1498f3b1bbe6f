//! The two execution roles (IAM). Both trust Lambda and may write objects to the bucket; the
//! uploader's managed policy lets Lambda manage its network interfaces in the VPC, the control
//! function's only lets it log. Roles are deleted last: Lambda needs the role to release ENIs.
use std::fmt;

use anyhow::{Context, Result};
use aws_sdk_iam::types::Tag;

use super::Difference;
use super::Teardown;
use super::bucket::Sse;
use super::contract::{Answer, Contract};
use super::ec2::delete_when_free;
use super::read::Ec2Read;
use super::{Ctx, Live, Made};
use crate::config::BucketName;
use crate::error::{AwsError, Call, CallResultExt, InputError, Kind};
use crate::graph::Function;
use crate::policy::{self, BASIC_EXECUTION_POLICY, INLINE_POLICY_NAME, VPC_ACCESS_POLICY};
use crate::run::Action;
use crate::stack::STACK_TAG;
use crate::state::{Resource, Resources};

/// How this kind differs from what it should be: one variant per fact, so `fix` matches
/// on the fact and the words (the `Display`) are only for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drift {
    TrustPolicy,
    ManagedPolicyMissing(String),
    InlinePolicyMissing(&'static str),
    InlinePolicyDiffers { name: &'static str, bucket: String },
}

impl Drift {
    /// Whether `up` can put it right without replacing the resource (see
    /// [`super::Difference::in_place`]).
    pub(crate) fn in_place(&self) -> bool {
        match self {
            Drift::TrustPolicy
            | Drift::ManagedPolicyMissing(_)
            | Drift::InlinePolicyMissing(_)
            | Drift::InlinePolicyDiffers { .. } => true,
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::TrustPolicy => write!(f, "trust policy is not Lambda-only"),
            Drift::ManagedPolicyMissing(arn) => write!(f, "managed policy {arn} is not attached"),
            Drift::InlinePolicyMissing(name) => write!(f, "inline policy {name} is missing"),
            Drift::InlinePolicyDiffers { name, bucket } => write!(
                f,
                "inline policy {name} differs from PutObject on {bucket}/*"
            ),
        }
    }
}

/// The uploader needs Lambda to manage its ENIs in the VPC; the control function only logs.
fn managed_policy_arn(ctx: &Ctx, f: Function) -> String {
    let name = match f {
        Function::Uploader => VPC_ACCESS_POLICY,
        Function::Control => BASIC_EXECUTION_POLICY,
    };
    format!("arn:{}:iam::aws:policy/{name}", ctx.stack.partition())
}

/// The role's inline policy: writes to the bucket, and for the uploader of a bucket with a
/// KMS key, the key's use (`res`: the key, once recorded).
fn inline(ctx: &Ctx, f: Function, res: &Resources) -> serde_json::Value {
    let key = match (f, Sse::of(ctx, res)) {
        (Function::Uploader, Sse::Kms(arn)) => Some(arn),
        (Function::Uploader, Sse::S3 | Sse::KeyUnknown) | (Function::Control, _) => None,
    };
    let region = ctx.stack.region.as_str();
    policy::bucket_write(
        ctx.stack.partition(),
        ctx.stack.bucket(),
        key.as_deref().map(|k| (k, region)),
    )
}

pub(crate) async fn find(f: Function, ctx: &Ctx) -> Result<Option<Resource>> {
    let name = ctx.stack.role_name(f);
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
        return Err(InputError(format!(
            "IAM role {name} exists but is not tagged {STACK_TAG}={}; privbucket will not take \
             over, change or delete a role it did not make. Nothing was changed. Delete or \
             rename that role, or choose another --name",
            ctx.stack.name
        ))
        .into());
    }
    Ok(Some(Resource::new(&name).with_arn(role.arn())))
}

/// A new role has its trust policy and tags, and lacks its two policies: `fix` adds them
/// once the role is recorded.
pub(crate) async fn create(f: Function, ctx: &Ctx) -> Result<Made<Drift>> {
    let name = ctx.stack.role_name(f);
    let tags = ctx
        .stack
        .tags(f.role())
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
            f.word()
        ))
        .set_tags(Some(tags))
        .send()
        .await
        .call("CreateRole", &name);
    let arn = match out {
        Ok(out) => out.role().map(|r| r.arn().to_string()),
        // A lost response to an earlier attempt: the role is there, tagged, and ours; what
        // the attempt did after it is unknown, so all of it is put again.
        Err(e) if e.is(Kind::AlreadyExists) => {
            let found = find(f, ctx).await?.ok_or_else(|| anyhow::Error::new(e))?;
            let mut lacks = fresh_lacks(ctx, f);
            lacks.push(Drift::TrustPolicy);
            return Ok(Made::lacking(found, lacks));
        }
        Err(e) => return Err(e.into()),
    };
    let arn = arn.unwrap_or_else(|| ctx.stack.role_arn(f));
    Ok(Made::lacking(
        Resource::new(name).with_arn(arn),
        fresh_lacks(ctx, f),
    ))
}

fn fresh_lacks(ctx: &Ctx, f: Function) -> Vec<Drift> {
    vec![
        Drift::ManagedPolicyMissing(managed_policy_arn(ctx, f)),
        Drift::InlinePolicyMissing(INLINE_POLICY_NAME),
    ]
}

/// The role and both its policies are read at once (one round trip).
pub(crate) async fn observe(
    f: Function,
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
) -> Result<Live<Drift>> {
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
        attached_policies(ctx, name),
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
        diffs.push(Drift::TrustPolicy);
    }
    let attached = attached?;
    let managed = managed_policy_arn(ctx, f);
    if !attached.is_some_and(|a| {
        a.attached_policies()
            .iter()
            .any(|p| p.policy_arn() == Some(managed.as_str()))
    }) {
        diffs.push(Drift::ManagedPolicyMissing(managed));
    }
    let inline_doc = inline_doc?;
    match inline_doc.map(|o| policy::parse(o.policy_document())) {
        None => diffs.push(Drift::InlinePolicyMissing(INLINE_POLICY_NAME)),
        Some(doc)
            if !doc
                .as_ref()
                .is_some_and(|d| policy::same(d, &inline(ctx, f, res))) =>
        {
            diffs.push(Drift::InlinePolicyDiffers {
                name: INLINE_POLICY_NAME,
                bucket: ctx.stack.bucket().to_string(),
            })
        }
        Some(_) => {}
    }
    Ok(Live::Present(
        Resource::new(name).with_arn(role.arn()),
        diffs,
    ))
}

/// The bucket the role's inline policy lets it write to (how a stack without a state file
/// and without functions tells its bucket).
pub(crate) async fn bucket_named(ctx: &Ctx, f: Function) -> Result<Option<BucketName>> {
    let role = ctx.stack.role_name(f);
    let doc = ctx
        .aws
        .iam
        .get_role_policy()
        .role_name(&role)
        .policy_name(INLINE_POLICY_NAME)
        .send()
        .await
        .call("GetRolePolicy", &role)
        .found()?;
    Ok(doc
        .and_then(|d| policy::parse(d.policy_document()))
        .and_then(|d| d["Statement"][0]["Resource"].as_str().map(str::to_string))
        .and_then(|r| {
            r.rsplit(":::")
                .next()
                .and_then(|b| b.strip_suffix("/*"))
                .and_then(|b| b.parse().ok())
        }))
}

/// Puts right the trust policy, the managed policy or the inline policy, whichever differs,
/// one call after another: IAM refuses two changes to one role at once (409
/// `ConcurrentModification`, IAM API reference), and the role is not on `up`'s longest path.
pub(crate) async fn fix(f: Function, ctx: &Ctx, res: &Resources, diffs: &[Drift]) -> Result<()> {
    let iam = &ctx.aws.iam;
    let name = ctx.stack.role_name(f);
    let managed = managed_policy_arn(ctx, f);
    if diffs.contains(&Drift::TrustPolicy) {
        iam.update_assume_role_policy()
            .role_name(&name)
            .policy_document(policy::lambda_trust().to_string())
            .send()
            .await
            .call("UpdateAssumeRolePolicy", &name)?;
    }
    if diffs
        .iter()
        .any(|d| matches!(d, Drift::ManagedPolicyMissing(_)))
    {
        iam.attach_role_policy()
            .role_name(&name)
            .policy_arn(&managed)
            .send()
            .await
            .call("AttachRolePolicy", format!("{name} ({managed})"))?;
    }
    if diffs.iter().any(|d| {
        matches!(
            d,
            Drift::InlinePolicyMissing(_) | Drift::InlinePolicyDiffers { .. }
        )
    }) {
        iam.put_role_policy()
            .role_name(&name)
            .policy_name(INLINE_POLICY_NAME)
            .policy_document(inline(ctx, f, res).to_string())
            .send()
            .await
            .call("PutRolePolicy", &name)?;
    }
    Ok(())
}

/// The managed policies attached to a role; `None` when there is no such role.
async fn attached_policies(
    ctx: &Ctx,
    name: &str,
) -> Result<
    Option<aws_sdk_iam::operation::list_attached_role_policies::ListAttachedRolePoliciesOutput>,
    AwsError,
> {
    ctx.aws
        .iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .call("ListAttachedRolePolicies", name)
        .found()
}

/// A role's managed policies (ARNs) and inline policies (names).
#[derive(Debug, Clone, Default)]
pub(crate) struct Policies {
    attached: Vec<String>,
    inline: Vec<String>,
}

/// Both policy lists of a role, read at once; `None` when there is no such role.
pub(crate) async fn policies(ctx: &Ctx, name: &str) -> Result<Option<Policies>, AwsError> {
    let (attached, inline) = tokio::join!(attached_policies(ctx, name), async {
        ctx.aws
            .iam
            .list_role_policies()
            .role_name(name)
            .send()
            .await
            .call("ListRolePolicies", name)
            .found()
    });
    let (Some(attached), Some(inline)) = (attached?, inline?) else {
        return Ok(None);
    };
    Ok(Some(Policies {
        attached: attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect(),
        inline: inline.policy_names().to_vec(),
    }))
}

/// Detaches and deletes every policy, then the role. The detaches and deletes change the role,
/// so they go one after another (IAM refuses two changes to one role at once). `known`: the
/// lists as `down` read them in its first round; if a policy was added since, `DeleteRole`
/// answers `DeleteConflict` ("Cannot delete entity, must detach all policies first.", IAM API
/// reference), and the lists are read again.
pub(crate) async fn delete(ctx: &Ctx, name: &str, known: Option<Policies>) -> Result<Action> {
    let iam = &ctx.aws.iam;
    if let Some(lists) = known {
        remove_policies(ctx, name, &lists).await?;
        match iam
            .delete_role()
            .role_name(name)
            .send()
            .await
            .call("DeleteRole", name)
        {
            Ok(_) => return Ok(Action::Deleted),
            Err(e) if e.is(Kind::NotFound) => return Ok(Action::AlreadyGone),
            Err(e) if e.is(Kind::InUse) => ctx
                .progress
                .debug(&format!("{e}; reading the role's policies again")),
            Err(e) => return Err(e.into()),
        }
    }
    let Some(lists) = policies(ctx, name).await? else {
        return Ok(Action::AlreadyGone);
    };
    remove_policies(ctx, name, &lists).await?;
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

async fn remove_policies(ctx: &Ctx, name: &str, lists: &Policies) -> Result<()> {
    let iam = &ctx.aws.iam;
    for arn in &lists.attached {
        iam.detach_role_policy()
            .role_name(name)
            .policy_arn(arn)
            .send()
            .await
            .call("DetachRolePolicy", format!("{name} ({arn})"))
            .gone()?;
    }
    for p in &lists.inline {
        iam.delete_role_policy()
            .role_name(name)
            .policy_name(p)
            .send()
            .await
            .call("DeleteRolePolicy", format!("{name} ({p})"))
            .gone()?;
    }
    Ok(())
}

/// A role's ARN, path included, by its name (what `aws:PrincipalArn` holds for a session of
/// it).
pub(crate) async fn arn_by_name(
    aws: &crate::aws::Clients,
    name: &str,
) -> Result<String, crate::error::AwsError> {
    let out = aws
        .iam
        .get_role()
        .role_name(name)
        .send()
        .await
        .call("GetRole", name)?;
    Ok(out.role().map(|r| r.arn().to_string()).unwrap_or_default())
}

/// A function's IAM role.
#[derive(Debug)]
pub(crate) struct RoleStep(pub(crate) Function);

impl Contract for RoleStep {
    fn find<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Option<Resource>> {
        let _ = res;
        Box::pin(find(self.0, ctx))
    }

    fn create<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Made> {
        let _ = res;
        Box::pin(async move { Ok(create(self.0, ctx).await?.widen()) })
    }

    fn observe<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        _read: Option<&'a Ec2Read>,
    ) -> Answer<'a, Live> {
        Box::pin(async move { Ok(observe(self.0, ctx, res, known).await?.widen()) })
    }

    fn fix<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        diffs: &'a [Difference],
    ) -> Answer<'a, ()> {
        let _ = known;
        let mine = Drift::picked(diffs);
        Box::pin(async move { fix(self.0, ctx, res, &mine).await })
    }

    fn delete<'a>(
        &'a self,
        ctx: &'a Ctx,
        known: &'a Resource,
        down: &'a Teardown,
    ) -> Answer<'a, Action> {
        let policies = down.prefetch.role(self.0.role(), &known.id);
        Box::pin(delete(ctx, &known.id, policies))
    }
}
