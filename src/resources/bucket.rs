//! The bucket (SSE-S3, all four Block Public Access flags, owner-enforced ownership, tagged)
//! and its policy. A bucket that holds objects is never deleted unless `--delete-objects`
//! was given; it and its policy are then kept, so the data stays protected as it was.
use anyhow::{Context, Result, bail};
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, Delete, ObjectIdentifier, ObjectOwnership,
    OwnershipControls, OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    Tag, Tagging,
};

use super::{Ctx, Live, deletion, need};
use crate::error::{Call, CallResultExt, Kind};
use crate::graph::Step;
use crate::policy;
use crate::run::Action;
use crate::stack::STACK_TAG;
use crate::state::{Resource, Resources};

/// Whether the bucket exists and this account can use it.
async fn exists(ctx: &Ctx) -> Result<bool> {
    let bucket = ctx.stack.bucket();
    match ctx
        .aws
        .s3
        .head_bucket()
        .bucket(bucket)
        .send()
        .await
        .call("HeadBucket", bucket)
    {
        Ok(_) => Ok(true),
        Err(e) if e.is(Kind::NotFound) => Ok(false),
        Err(e) if e.is(Kind::AccessDenied) => bail!(
            "bucket {bucket} exists but this account cannot use it: the name is taken, probably \
             by another account. Choose another name with --bucket"
        ),
        Err(e) => Err(e.into()),
    }
}

async fn tagged_ours(ctx: &Ctx) -> Result<bool> {
    let bucket = ctx.stack.bucket();
    let tags = ctx
        .aws
        .s3
        .get_bucket_tagging()
        .bucket(bucket)
        .send()
        .await
        .call("GetBucketTagging", bucket)
        .found()?;
    Ok(tags.is_some_and(|t| {
        t.tag_set()
            .iter()
            .any(|t| t.key() == STACK_TAG && t.value() == ctx.stack.name.as_str())
    }))
}

/// Adopts the bucket if it is ours: tagged for the stack, or untagged and empty (a run that
/// stopped between `CreateBucket` and `PutBucketTagging`). Never a bucket with others' data.
pub async fn find(ctx: &Ctx) -> Result<Option<Resource>> {
    let bucket = ctx.stack.bucket();
    if !exists(ctx).await? {
        return Ok(None);
    }
    if tagged_ours(ctx).await? || count_objects(ctx, 1).await? == 0 {
        return Ok(Some(Resource::new(bucket).with_arn(arn(ctx))));
    }
    bail!(
        "bucket {bucket} already exists in this account, holds objects and is not tagged \
         {STACK_TAG}={}; privbucket will not take it over. Choose another name with --bucket",
        ctx.stack.name
    )
}

fn arn(ctx: &Ctx) -> String {
    format!("arn:{}:s3:::{}", ctx.stack.partition(), ctx.stack.bucket())
}

pub async fn create(ctx: &Ctx) -> Result<Resource> {
    let bucket = ctx.stack.bucket();
    let mut req = ctx
        .aws
        .s3
        .create_bucket()
        .bucket(bucket)
        .object_ownership(ObjectOwnership::BucketOwnerEnforced);
    // us-east-1 takes no location constraint; every other region needs one.
    if ctx.stack.region.as_str() != "us-east-1" {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(ctx.stack.region.as_str()))
                .build(),
        );
    }
    match req.send().await.call("CreateBucket", bucket) {
        Ok(_) => {}
        Err(e) if e.is(Kind::AlreadyExists) => {
            // Ours already (a lost response to an earlier attempt): adopt it if it is ours.
            if find(ctx).await?.is_none() {
                return Err(e.into());
            }
        }
        Err(e) if e.code.as_deref() == Some("BucketAlreadyExists") => {
            return Err(anyhow::Error::new(e).context(format!(
                "the bucket name {bucket} is taken by another AWS account (names are global); \
                 choose another with --bucket"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    apply_settings(ctx).await?;
    Ok(Resource::new(bucket).with_arn(arn(ctx)))
}

/// Tags, default encryption, Block Public Access and ownership; each call is idempotent, and
/// the four run at once.
pub async fn apply_settings(ctx: &Ctx) -> Result<()> {
    let s3 = &ctx.aws.s3;
    let bucket = ctx.stack.bucket();
    let tags = ctx
        .stack
        .tags(Step::Bucket)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .context("building bucket tags")?;
    let tagging = Tagging::builder().set_tag_set(Some(tags)).build()?;
    let sse = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(ServerSideEncryption::Aes256)
                        .build()?,
                )
                .build(),
        )
        .build()?;
    let pab = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(true)
        .restrict_public_buckets(true)
        .build();
    let ownership = OwnershipControls::builder()
        .rules(
            OwnershipControlsRule::builder()
                .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                .build()?,
        )
        .build()?;
    let (t, e, p, o) = tokio::join!(
        s3.put_bucket_tagging()
            .bucket(bucket)
            .tagging(tagging)
            .send(),
        s3.put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(sse)
            .send(),
        s3.put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(pab)
            .send(),
        s3.put_bucket_ownership_controls()
            .bucket(bucket)
            .ownership_controls(ownership)
            .send(),
    );
    t.call("PutBucketTagging", bucket)?;
    e.call("PutBucketEncryption", bucket)?;
    p.call("PutPublicAccessBlock", bucket)?;
    o.call("PutBucketOwnershipControls", bucket)?;
    Ok(())
}

/// The bucket and its three settings are read at once (one round trip).
pub async fn observe(ctx: &Ctx, known: &Resource) -> Result<Live> {
    let s3 = &ctx.aws.s3;
    let bucket = ctx.stack.bucket();
    let (exists, sse, pab, own) = tokio::join!(
        exists(ctx),
        async {
            s3.get_bucket_encryption()
                .bucket(bucket)
                .send()
                .await
                .call("GetBucketEncryption", bucket)
                .found()
        },
        async {
            s3.get_public_access_block()
                .bucket(bucket)
                .send()
                .await
                .call("GetPublicAccessBlock", bucket)
                .found()
        },
        async {
            s3.get_bucket_ownership_controls()
                .bucket(bucket)
                .send()
                .await
                .call("GetBucketOwnershipControls", bucket)
                .found()
        },
    );
    if !exists? {
        return Ok(Live::Missing);
    }
    let (sse, pab, own) = (sse?, pab?, own?);
    let mut diffs = Vec::new();
    let aes = sse.is_some_and(|o| {
        o.server_side_encryption_configuration().is_some_and(|c| {
            c.rules().iter().any(|r| {
                r.apply_server_side_encryption_by_default()
                    .is_some_and(|d| d.sse_algorithm() == &ServerSideEncryption::Aes256)
            })
        })
    });
    if !aes {
        diffs.push("default encryption is not SSE-S3 (AES256)".to_string());
    }

    let pab = pab.and_then(|o| o.public_access_block_configuration().cloned());
    let flags = [
        (
            "BlockPublicAcls",
            pab.as_ref().and_then(|p| p.block_public_acls()),
        ),
        (
            "IgnorePublicAcls",
            pab.as_ref().and_then(|p| p.ignore_public_acls()),
        ),
        (
            "BlockPublicPolicy",
            pab.as_ref().and_then(|p| p.block_public_policy()),
        ),
        (
            "RestrictPublicBuckets",
            pab.as_ref().and_then(|p| p.restrict_public_buckets()),
        ),
    ];
    let off: Vec<&str> = flags
        .iter()
        .filter(|(_, v)| *v != Some(true))
        .map(|(n, _)| *n)
        .collect();
    if !off.is_empty() {
        diffs.push(format!("public access block off: {}", off.join(", ")));
    }

    let enforced = own.is_some_and(|o| {
        o.ownership_controls().is_some_and(|c| {
            c.rules()
                .iter()
                .any(|r| r.object_ownership() == &ObjectOwnership::BucketOwnerEnforced)
        })
    });
    if !enforced {
        diffs.push("object ownership is not BucketOwnerEnforced".to_string());
    }
    Ok(Live::Present(known.clone(), diffs))
}

pub fn desired_policy(ctx: &Ctx, res: &Resources) -> Result<serde_json::Value> {
    Ok(policy::bucket_policy(
        ctx.stack.partition(),
        ctx.stack.bucket(),
        need(res, Step::Endpoint)?,
        &ctx.stack.settings,
    ))
}

/// The bucket's policy as S3 holds it; `None` when there is none (or no bucket).
pub async fn live_policy(ctx: &Ctx) -> Result<Option<String>> {
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

pub async fn find_policy(ctx: &Ctx) -> Result<Option<Resource>> {
    let bucket = ctx.stack.bucket();
    Ok(live_policy(ctx).await?.map(|_| Resource::new(bucket)))
}

pub async fn put_policy(ctx: &Ctx, res: &Resources) -> Result<Resource> {
    let bucket = ctx.stack.bucket();
    let doc = desired_policy(ctx, res)?;
    ctx.aws
        .s3
        .put_bucket_policy()
        .bucket(bucket)
        .policy(doc.to_string())
        .send()
        .await
        .call("PutBucketPolicy", bucket)?;
    Ok(Resource::new(bucket).with("endpoint", need(res, Step::Endpoint)?))
}

pub async fn observe_policy(ctx: &Ctx, res: &Resources, known: &Resource) -> Result<Live> {
    let Some(live) = live_policy(ctx).await? else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    match (policy::parse(&live), res.get(&Step::Endpoint)) {
        (Some(doc), Some(_)) => {
            let want = desired_policy(ctx, res)?;
            diffs = policy::statement_differences(&doc, &want);
            if diffs.is_empty() && !policy::same(&doc, &want) {
                diffs.push(format!("the policy is {doc}, should be {want}"));
            }
        }
        (None, Some(_)) => diffs.push(format!("the policy is not JSON: {live}")),
        (_, None) => diffs.push("the endpoint it names is not in the stack".to_string()),
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

/// Counts object versions and delete markers, stopping once `limit` is reached.
pub async fn count_objects(ctx: &Ctx, limit: usize) -> Result<usize> {
    let bucket = ctx.stack.bucket();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    let mut n = 0;
    loop {
        let page = match ctx
            .aws
            .s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await
            .call("ListObjectVersions", bucket)
        {
            Ok(p) => p,
            Err(e) if e.is(Kind::NotFound) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        n += page.versions().len() + page.delete_markers().len();
        if n >= limit || page.is_truncated() != Some(true) {
            return Ok(n);
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
}

/// Deletes every object version and delete marker, a thousand at a time.
async fn empty(ctx: &Ctx) -> Result<usize> {
    let s3 = &ctx.aws.s3;
    let bucket = ctx.stack.bucket();
    let mut total = 0;
    loop {
        let page = match s3
            .list_object_versions()
            .bucket(bucket)
            .max_keys(1000)
            .send()
            .await
            .call("ListObjectVersions", bucket)
        {
            Ok(p) => p,
            Err(e) if e.is(Kind::NotFound) => return Ok(total),
            Err(e) => return Err(e.into()),
        };
        let ids: Vec<ObjectIdentifier> = page
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                page.delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            )
            .filter_map(|(k, v)| {
                ObjectIdentifier::builder()
                    .set_key(k.map(str::to_string))
                    .set_version_id(v.map(str::to_string))
                    .build()
                    .ok()
            })
            .collect();
        if ids.is_empty() {
            return Ok(total);
        }
        let n = ids.len();
        let out = s3
            .delete_objects()
            .bucket(bucket)
            .delete(
                Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()?,
            )
            .send()
            .await
            .call("DeleteObjects", bucket)?;
        if let Some(err) = out.errors().first() {
            bail!(
                "DeleteObjects on {bucket} could not delete {} ({} of them failed): {}: {}",
                err.key().unwrap_or("an object"),
                out.errors().len(),
                err.code().unwrap_or_default(),
                err.message().unwrap_or_default()
            );
        }
        total += n;
        ctx.progress.wait(
            Step::Bucket,
            &format!("deleted {total} object versions from {bucket}"),
        );
    }
}

fn kept(n: usize) -> Action {
    Action::Kept(format!(
        "holds {n} object version(s) or delete marker(s); run `privbucket down \
         --delete-objects` to delete them and the bucket"
    ))
}

/// The policy goes first (with `--delete-objects`, a strict policy must not stand in the way of
/// emptying the bucket); without the flag a bucket with objects keeps its policy.
pub async fn delete_policy(ctx: &Ctx) -> Result<Action> {
    let bucket = ctx.stack.bucket();
    if let Some(kept) = keep_for_objects(ctx).await? {
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

/// Without `--delete-objects`, a bucket that holds anything is kept.
async fn keep_for_objects(ctx: &Ctx) -> Result<Option<Action>> {
    if ctx.delete_objects {
        return Ok(None);
    }
    let n = count_objects(ctx, usize::MAX).await?;
    Ok((n > 0).then(|| kept(n)))
}

pub async fn delete(ctx: &Ctx) -> Result<Action> {
    let bucket = ctx.stack.bucket();
    if let Some(kept) = keep_for_objects(ctx).await? {
        return Ok(kept);
    }
    if ctx.delete_objects {
        empty(ctx).await?;
    }
    let r = ctx
        .aws
        .s3
        .delete_bucket()
        .bucket(bucket)
        .send()
        .await
        .call("DeleteBucket", bucket);
    match r {
        Ok(_) => Ok(Action::Deleted),
        Err(e) if e.is(Kind::NotFound) => Ok(Action::AlreadyGone),
        // Written to between the count and the delete: keep it.
        Err(e) if e.code.as_deref() == Some("BucketNotEmpty") => {
            Ok(kept(count_objects(ctx, usize::MAX).await?))
        }
        Err(e) => Err(e.into()),
    }
}
