//! The bucket policy: writes only through the stack's endpoint (and, in scope `all`, nothing
//! else from outside but for the admins), and no request without TLS. Putting it is
//! idempotent, so it has no find of its own beyond reading it. Without `--delete-objects`, a
//! bucket that holds objects keeps its policy, so its data stays protected as it was.
use std::fmt;

use anyhow::Result;

use super::Difference;
use super::Teardown;
use super::contract::{Answer, Contract};
use super::read::Ec2Read;
use super::{Ctx, Live, Made, bucket, deletion, need, network};
use crate::error::Call;
use crate::graph::Step;
use crate::policy;
use crate::run::Action;
use crate::state::{Facts, Resource, Resources};

/// How this kind differs from what it should be: one variant per fact, so `fix` matches
/// on the fact and the words (the `Display`) are only for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drift {
    /// One statement of the bucket policy, or the whole document.
    Statement(String),
    NotJson(String),
    /// The policy names an endpoint, and the stack has none to compare with.
    EndpointUnknown,
    /// The stack has a KMS key (`--kms-key`) not recorded yet: the policy pins writes to it
    /// once it is.
    KeyUnknown,
}

impl Drift {
    /// Whether `up` can put it right without replacing the resource (see
    /// [`super::Difference::in_place`]).
    pub(crate) fn in_place(&self) -> bool {
        match self {
            Drift::Statement(_)
            | Drift::NotJson(_)
            | Drift::EndpointUnknown
            | Drift::KeyUnknown => true,
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Statement(d) => write!(f, "{d}"),
            Drift::NotJson(doc) => write!(f, "the policy is not JSON: {doc}"),
            Drift::EndpointUnknown => {
                write!(f, "the endpoint it names is not in the stack")
            }
            Drift::KeyUnknown => write!(f, "the KMS key it should name is not in the stack yet"),
        }
    }
}

pub(crate) fn desired_policy(ctx: &Ctx, res: &Resources) -> Result<serde_json::Value> {
    need(res, Step::Endpoint)?;
    Ok(policy::bucket_policy(
        ctx.stack.partition(),
        ctx.stack.bucket(),
        &network::endpoint_ids(res),
        key_arn(ctx, res)?.as_deref(),
        &ctx.stack.settings,
    ))
}

/// The key the policy pins writes to: the stack's, once recorded.
pub(crate) fn key_arn(ctx: &Ctx, res: &Resources) -> Result<Option<String>> {
    match bucket::Sse::of(ctx, res) {
        bucket::Sse::S3 => Ok(None),
        bucket::Sse::Kms(arn) => Ok(Some(arn)),
        bucket::Sse::KeyUnknown => {
            anyhow::bail!("internal error: {} is not known yet", Step::Key.key())
        }
    }
}

/// What the policy records: the endpoints it names.
fn names(res: &Resources) -> Option<Facts> {
    let mut ids = network::endpoint_ids(res).into_iter();
    Some(Facts::BucketPolicy {
        endpoint: ids.next()?,
        other_endpoints: ids.collect(),
    })
}

pub(crate) async fn find(ctx: &Ctx) -> Result<Option<Resource>> {
    let bucket = ctx.stack.bucket();
    Ok(bucket::policy(ctx).await?.map(|_| Resource::new(bucket)))
}

pub(crate) async fn create(ctx: &Ctx, res: &Resources) -> Result<Made<Drift>> {
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
    Ok(Made::complete(Resource::new(bucket).with_facts(
        names(res).ok_or_else(|| {
            anyhow::anyhow!("internal error: {} is not known yet", Step::Endpoint.key())
        })?,
    )))
}

pub(crate) async fn observe(ctx: &Ctx, res: &Resources, known: &Resource) -> Result<Live<Drift>> {
    let Some(live) = bucket::policy(ctx).await? else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    let key_unknown = bucket::Sse::of(ctx, res) == bucket::Sse::KeyUnknown;
    match (policy::parse(&live), res.get(&Step::Endpoint)) {
        (Some(_), Some(_)) if key_unknown => diffs.push(Drift::KeyUnknown),
        (Some(doc), Some(_)) => {
            let want = desired_policy(ctx, res)?;
            diffs = policy::statement_differences(&doc, &want)
                .into_iter()
                .map(Drift::Statement)
                .collect();
            if diffs.is_empty() && !policy::same(&doc, &want) {
                diffs.push(Drift::Statement(format!(
                    "the policy is {doc}, should be {want}"
                )));
            }
        }
        (None, Some(_)) => diffs.push(Drift::NotJson(live)),
        (_, None) => diffs.push(Drift::EndpointUnknown),
    }
    let mut seen = known.clone();
    seen.facts = names(res);
    Ok(Live::Present(seen, diffs))
}

/// The policy goes first (with `--delete-objects`, a strict policy must not stand in the way of
/// emptying the bucket); without the flag a bucket with objects keeps its policy.
pub(crate) async fn delete(ctx: &Ctx, delete_objects: bool) -> Result<Action> {
    let bucket = ctx.stack.bucket();
    if let Some(kept) = bucket::keep_for_objects(ctx, delete_objects).await? {
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

/// The bucket's policy: not a resource of its own, but put and deleted as one.
#[derive(Debug)]
pub(crate) struct BucketPolicyStep;

impl Contract for BucketPolicyStep {
    fn find<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Option<Resource>> {
        let _ = res;
        Box::pin(find(ctx))
    }

    fn create<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Made> {
        Box::pin(async move { Ok(create(ctx, res).await?.widen()) })
    }

    fn observe<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        _read: Option<&'a Ec2Read>,
    ) -> Answer<'a, Live> {
        Box::pin(async move { Ok(observe(ctx, res, known).await?.widen()) })
    }

    fn fix<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        diffs: &'a [Difference],
    ) -> Answer<'a, ()> {
        let _ = (known, diffs);
        Box::pin(fix(ctx, res))
    }

    fn delete<'a>(
        &'a self,
        ctx: &'a Ctx,
        known: &'a Resource,
        down: &'a Teardown,
    ) -> Answer<'a, Action> {
        let _ = known;
        Box::pin(delete(ctx, down.delete_objects))
    }

    /// Putting a policy is idempotent: there is nothing to adopt first.
    fn adopts(&self) -> bool {
        false
    }
}
