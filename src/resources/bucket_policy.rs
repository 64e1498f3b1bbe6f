//! The bucket policy: writes only through the stack's endpoint (and, in scope `all`, nothing
//! else from outside but for the admins), and no request without TLS. Putting it is
//! idempotent, so it has no find of its own beyond reading it. Without `--delete-objects`, a
//! bucket that holds objects keeps its policy, so its data stays protected as it was.
use anyhow::Result;

use super::difference::Difference;
use super::{Ctx, Live, Made, bucket, deletion, need};
use crate::error::{Call, CallResultExt};
use crate::graph::Step;
use crate::policy;
use crate::run::Action;
use crate::state::{Resource, Resources};

pub(crate) fn desired_policy(ctx: &Ctx, res: &Resources) -> Result<serde_json::Value> {
    Ok(policy::bucket_policy(
        ctx.stack.partition(),
        ctx.stack.bucket(),
        need(res, Step::Endpoint)?,
        &ctx.stack.settings,
    ))
}

/// The bucket's policy as S3 holds it; `None` when there is none (or no bucket).
pub(crate) async fn live(ctx: &Ctx) -> Result<Option<String>> {
    let bucket = ctx.stack.bucket();
    let out = ctx
        .aws
        .s3
        .get_bucket_policy()
        .bucket(bucket)
        .send()
        .await
        .call("GetBucketPolicy", bucket)
        .found()?;
    Ok(out.and_then(|o| o.policy().map(str::to_string)))
}

pub(crate) async fn find(ctx: &Ctx) -> Result<Option<Resource>> {
    let bucket = ctx.stack.bucket();
    Ok(live(ctx).await?.map(|_| Resource::new(bucket)))
}

pub(crate) async fn create(ctx: &Ctx, res: &Resources) -> Result<Made> {
    let bucket = ctx.stack.bucket();
    let doc = desired_policy(ctx, res)?.to_string();
    // The bucket may have been made moments ago.
    bucket::until_listed(ctx, bucket::NEW_BUCKET_WAIT, || async {
        ctx.aws
            .s3
            .put_bucket_policy()
            .bucket(bucket)
            .policy(&doc)
            .send()
            .await
            .call("PutBucketPolicy", bucket)
    })
    .await?;
    Ok(Made::complete(
        Resource::new(bucket).with("endpoint", need(res, Step::Endpoint)?),
    ))
}

pub(crate) async fn observe(ctx: &Ctx, res: &Resources, known: &Resource) -> Result<Live> {
    let Some(live) = live(ctx).await? else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    match (policy::parse(&live), res.get(&Step::Endpoint)) {
        (Some(doc), Some(_)) => {
            let want = desired_policy(ctx, res)?;
            diffs = policy::statement_differences(&doc, &want)
                .into_iter()
                .map(Difference::BucketPolicy)
                .collect();
            if diffs.is_empty() && !policy::same(&doc, &want) {
                diffs.push(Difference::BucketPolicy(format!(
                    "the policy is {doc}, should be {want}"
                )));
            }
        }
        (None, Some(_)) => diffs.push(Difference::BucketPolicyNotJson(live)),
        (_, None) => diffs.push(Difference::BucketPolicyEndpointUnknown),
    }
    let endpoint = res
        .get(&Step::Endpoint)
        .map(|e| e.id.clone())
        .unwrap_or_default();
    Ok(Live::Present(
        known.clone().with("endpoint", endpoint),
        diffs,
    ))
}

/// The policy goes first (with `--delete-objects`, a strict policy must not stand in the way of
/// emptying the bucket); without the flag a bucket with objects keeps its policy.
pub(crate) async fn delete(ctx: &Ctx) -> Result<Action> {
    let bucket = ctx.stack.bucket();
    if let Some(kept) = bucket::keep_for_objects(ctx).await? {
        return Ok(kept);
    }
    deletion(
        ctx.aws
            .s3
            .delete_bucket_policy()
            .bucket(bucket)
            .send()
            .await
            .call("DeleteBucketPolicy", bucket),
    )
}

/// Putting the policy is its repair too.
pub(crate) async fn fix(ctx: &Ctx, res: &Resources) -> Result<()> {
    create(ctx, res).await.map(|_| ())
}
