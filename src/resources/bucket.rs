//! The bucket (SSE-S3, or SSE-KMS with the stack's key and S3 Bucket Keys with `--kms-key`,
//! all four Block Public Access flags, owner-enforced ownership, tagged, and versioning when
//! `--versioning` asks) and its policy. A bucket that holds objects is never deleted unless `--delete-objects`
//! was given; it and its policy are then kept, so the data stays protected as it was.
use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_sdk_s3::operation::get_bucket_encryption::GetBucketEncryptionOutput;
use aws_sdk_s3::operation::get_bucket_ownership_controls::GetBucketOwnershipControlsOutput;
use aws_sdk_s3::operation::get_public_access_block::GetPublicAccessBlockOutput;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, Delete,
    ObjectIdentifier, ObjectOwnership, OwnershipControls, OwnershipControlsRule,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    VersioningConfiguration,
};

use super::Difference;
use super::Teardown;
use super::contract::{Answer, Contract};
use super::read::Ec2Read;
use super::{Ctx, Live, Made};
use crate::aws::{Backoff, retry};
use crate::error::{AwsError, Call, CallResultExt, InputError, Kind};
use crate::graph::Step;
use crate::run::Action;
use crate::stack::STACK_TAG;
use crate::state::{Ownership, Resource, Resources};

/// How this kind differs from what it should be: one variant per fact, so `fix` matches
/// on the fact and the words (the `Display`) are only for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drift {
    /// The bucket lacks the stack's tag (S3 tags a bucket with a call of its own).
    BucketTags,
    /// The default encryption, as S3 has it, against the stack's: SSE-S3, or SSE-KMS with
    /// the stack's key.
    Encryption {
        have: String,
        want: String,
    },
    /// SSE-KMS without S3 Bucket Keys: a KMS call for every object instead of one per data
    /// key S3 keeps for the bucket ("Reducing the cost of SSE-KMS with Amazon S3 Bucket
    /// Keys", S3 user guide).
    BucketKeysOff,
    PublicAccessBlockOff(Vec<&'static str>),
    Ownership,
    /// Versioning as S3 reports it (`Enabled`, `Suspended`, or never turned on), against
    /// `--versioning` (on) or `--no-versioning` (not on).
    Versioning {
        have: String,
        on: bool,
    },
}

impl Drift {
    /// Whether `up` can put it right without replacing the resource (see
    /// [`super::Difference::in_place`]).
    pub(crate) fn in_place(&self) -> bool {
        match self {
            Drift::BucketTags
            | Drift::Encryption { .. }
            | Drift::BucketKeysOff
            | Drift::PublicAccessBlockOff(_)
            | Drift::Ownership
            | Drift::Versioning { .. } => true,
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::BucketTags => write!(f, "not tagged privbucket:stack"),
            Drift::Encryption { have, want } => {
                write!(f, "default encryption is {have}, expected {want}")
            }
            Drift::BucketKeysOff => write!(f, "S3 Bucket Keys are off"),
            Drift::PublicAccessBlockOff(flags) => {
                write!(f, "public access block off: {}", flags.join(", "))
            }
            Drift::Ownership => write!(f, "object ownership is not BucketOwnerEnforced"),
            Drift::Versioning { have, on: true } => {
                write!(f, "versioning is {have}, expected Enabled (--versioning)")
            }
            Drift::Versioning { have, on: false } => {
                write!(
                    f,
                    "versioning is {have}, expected Suspended (--no-versioning)"
                )
            }
        }
    }
}

/// How long `CreateBucket` of a name deleted moments ago keeps trying.
const NAME_REUSE_WAIT: Duration = Duration::from_secs(5 * 60);

/// How long a read of a bucket `HeadBucket` has just seen keeps trying while S3 answers
/// `NoSuchBucket`.
const READ_WAIT: Duration = Duration::from_secs(10);

/// How long the settings calls right after `CreateBucket` keep trying while S3 answers
/// `NoSuchBucket` (it can, for a moment, to a bucket it has just made).
pub(crate) const NEW_BUCKET_WAIT: Duration = Duration::from_secs(2 * 60);

/// Whether the bucket exists and this account can use it.
pub(crate) async fn exists(ctx: &Ctx) -> Result<bool> {
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
        // A bucket in another region: S3 redirects (301) and names the region.
        Err(e)
            if e.bucket_region
                .as_deref()
                .is_some_and(|r| r != ctx.stack.region.as_str()) =>
        {
            let there = e.bucket_region.as_deref().unwrap_or_default().to_string();
            Err(anyhow::Error::new(e).context(format!(
                "bucket {bucket} already exists in region {there}, not {}: bucket names are \
                 global, so the stack cannot have it here; choose another name with --bucket \
                 (or, if it is this stack's, run privbucket with --region {there})",
                ctx.stack.region
            )))
        }
        // S3 answers 403 both for a bucket of another account and for a caller without
        // s3:ListBucket on a bucket of its own.
        Err(e) if e.is(Kind::AccessDenied) => Err(anyhow::Error::new(e).context(format!(
            "bucket {bucket} exists but these credentials cannot use it: the name is taken by \
             another account (choose another with --bucket), or the credentials lack \
             s3:ListBucket on it (docs/real-aws.md lists the permissions)"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The bucket's tags (`None`: it has none, or there is no bucket).
async fn tags(ctx: &Ctx) -> Result<Option<Vec<(String, String)>>> {
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
    Ok(tags.map(|t| {
        t.tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    }))
}

fn is_ours(ctx: &Ctx, tags: Option<&[(String, String)]>) -> bool {
    tags.unwrap_or_default()
        .iter()
        .any(|(k, v)| k == STACK_TAG && v == ctx.stack.name.as_str())
}

/// The bucket as recorded before `CreateBucket`, [`Ownership::Pending`]: proof that this
/// stack was about to make that very bucket, which a crash before `PutBucketTagging` leaves
/// untagged.
pub(crate) fn intent(ctx: &Ctx) -> Resource {
    Resource::new(ctx.stack.bucket())
        .with_arn(arn(ctx))
        .owned_as(Ownership::Pending)
}

/// The bucket's policy as S3 holds it (read here: the bucket's ownership rule looks at it too); `None` when there is none (or no bucket).
pub(crate) async fn policy(ctx: &Ctx) -> Result<Option<String>> {
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

/// The bucket's default encryption as S3 holds it (`AES256`, or `aws:kms` with its key);
/// `None` when there is none (or no bucket).
pub(crate) async fn encryption(ctx: &Ctx) -> Result<Option<String>> {
    let bucket = ctx.stack.bucket();
    let out = ctx
        .aws
        .s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .call("GetBucketEncryption", bucket)
        .found()?;
    let rule = out
        .as_ref()
        .and_then(|o| o.server_side_encryption_configuration())
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default());
    Ok(rule.map(|r| {
        let algorithm = r.sse_algorithm().as_str();
        match r.kms_master_key_id() {
            Some(key) => format!("{algorithm} ({key})"),
            None => algorithm.to_string(),
        }
    }))
}

/// Adopts the bucket only if it is the stack's (see [`owned`]); `None`: there is none.
pub(crate) async fn find(ctx: &Ctx) -> Result<Option<Resource>> {
    find_as(ctx, ctx.stack.bucket_intent).await
}

async fn find_as(ctx: &Ctx, intent: bool) -> Result<Option<Resource>> {
    let bucket = ctx.stack.bucket();
    // The three reads at once (one round trip, as discovery must be); the tags and the count
    // matter only once the bucket is known to exist.
    let (exists, tags, count) = tokio::join!(exists(ctx), tags(ctx), count_objects(ctx, 1));
    if !exists? {
        return Ok(None);
    }
    owned(ctx, tags?.as_deref(), Some(count?), intent).await?;
    Ok(Some(Resource::new(bucket).with_arn(arn(ctx))))
}

/// The bucket is the stack's when it carries the stack's tag, or when it is untagged, empty
/// and without a policy and the stack's own state says it was about to create that very
/// bucket (a run that stopped between `CreateBucket` and `PutBucketTagging`). Anything else
/// is refused (exit 2) naming what was found: another stack's tag, tags, objects or a policy
/// privbucket did not put there. An empty bucket is not an unowned one, and a state file is
/// not proof of ownership. `count`: the objects, if already read.
async fn owned(
    ctx: &Ctx,
    tags: Option<&[(String, String)]>,
    count: Option<usize>,
    intent: bool,
) -> Result<()> {
    if is_ours(ctx, tags) {
        return Ok(());
    }
    let bucket = ctx.stack.bucket();
    let name = &ctx.stack.name;
    let refuse = |found: String| -> Result<()> {
        Err(InputError(format!(
            "bucket {bucket} {found}; privbucket takes over, changes or deletes only what its \
             stack made (tagged {STACK_TAG}={name}). Nothing was changed. Choose another name \
             with --bucket, or, if the bucket is this stack's and lost its tags, tag it again \
             (aws s3api put-bucket-tagging --bucket {bucket} --tagging \
             'TagSet=[{{Key={STACK_TAG},Value={name}}}]')"
        ))
        .into())
    };
    let tags = tags.unwrap_or_default();
    if let Some((_, other)) = tags.iter().find(|(k, _)| k == STACK_TAG) {
        return refuse(format!(
            "belongs to privbucket stack {other} (tagged {STACK_TAG}={other}), not to {name}"
        ));
    }
    if !tags.is_empty() {
        let keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
        return refuse(format!(
            "carries tags privbucket did not put there ({})",
            keys.join(", ")
        ));
    }
    if !intent {
        return refuse(
            "exists, is not tagged for this stack, and this stack's state does not say it was \
             about to create it (an empty bucket may be another team's new one, or a log \
             target)"
                .into(),
        );
    }
    let count = match count {
        Some(n) => n,
        None => count_objects(ctx, 1).await?,
    };
    if count > 0 {
        return refuse("is untagged and holds objects privbucket did not put there".into());
    }
    if policy(ctx).await?.is_some() {
        return refuse("is untagged and has a bucket policy privbucket did not put there".into());
    }
    Ok(())
}

fn has_intent(known: &Resource) -> bool {
    known.ownership == Ownership::Pending
}

pub(crate) fn arn(ctx: &Ctx) -> String {
    format!("arn:{}:s3:::{}", ctx.stack.partition(), ctx.stack.bucket())
}

/// The settings calls come after, in `fix`, once the bucket is recorded.
pub(crate) async fn create(ctx: &Ctx) -> Result<Made<Drift>> {
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
    // A name deleted moments ago (`down`, then `up`: the name is deterministic) is refused with
    // 409 OperationAborted until S3 has finished with it (S3 API reference, error codes).
    let made = retry(
        NAME_REUSE_WAIT,
        Backoff::default(),
        |e| e.code.as_deref() == Some("OperationAborted"),
        |_, d| {
            ctx.progress.wait(
                Step::Bucket,
                &format!(
                    "S3 is still releasing the name {bucket} (deleted moments ago); trying \
                     again in {}",
                    humantime::format_duration(d)
                ),
            )
        },
        || {
            let req = req.clone();
            async move { req.send().await.call("CreateBucket", bucket) }
        },
    )
    .await;
    match made {
        Ok(_) => {}
        Err(e) if e.is(Kind::AlreadyExists) => {
            // Ours already (a lost response to an earlier attempt): the intent is recorded,
            // so an untagged, empty bucket is this run's.
            if find_as(ctx, true).await?.is_none() {
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
    // Still marked: until it is tagged, the mark is what makes it this stack's.
    Ok(Made::lacking(intent(ctx), fresh_lacks(ctx)))
}

/// The bucket's settings as the stack has them.
struct Wanted {
    tagging: Tagging,
    sse: ServerSideEncryptionConfiguration,
    pab: PublicAccessBlockConfiguration,
    ownership: OwnershipControls,
}

/// The default encryption the stack wants: SSE-KMS with its key (`--kms-key`), else SSE-S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sse {
    S3,
    Kms(String),
    /// The stack has a key, and this command does not know it (its record is missing): the
    /// encryption is not judged.
    KeyUnknown,
}

impl Sse {
    /// From the settings and the key recorded for the stack.
    pub(crate) fn of(ctx: &Ctx, res: &Resources) -> Sse {
        if ctx.stack.settings.kms_key.is_none() {
            return Sse::S3;
        }
        match res.get(&Step::Key).and_then(|k| k.arn.clone()) {
            Some(arn) => Sse::Kms(arn),
            None => Sse::KeyUnknown,
        }
    }

    fn words(&self) -> String {
        match self {
            Sse::S3 => "SSE-S3 (AES256)".to_string(),
            Sse::Kms(key) => format!("SSE-KMS with {key}"),
            Sse::KeyUnknown => "SSE-KMS with the stack's key".to_string(),
        }
    }
}

/// What S3 says of a bucket without default encryption.
const NO_ENCRYPTION: &str = "none";

fn wanted(ctx: &Ctx, sse: &Sse) -> Result<Wanted> {
    let tags = ctx
        .stack
        .tags(Step::Bucket)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .context("building bucket tags")?;
    let tagging = Tagging::builder().set_tag_set(Some(tags)).build()?;
    let by_default = match sse {
        Sse::Kms(key) => ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .kms_master_key_id(key),
        Sse::S3 | Sse::KeyUnknown => {
            ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256)
        }
    };
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(by_default.build()?);
    let rule = match sse {
        Sse::Kms(_) => rule.bucket_key_enabled(true),
        Sse::S3 | Sse::KeyUnknown => rule,
    };
    let sse = ServerSideEncryptionConfiguration::builder()
        .rules(rule.build())
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
    Ok(Wanted {
        tagging,
        sse,
        pab,
        ownership,
    })
}

/// Refuses to set the encryption to a key not known, and says that the objects already in
/// the bucket keep theirs.
fn before_encryption(ctx: &Ctx, want: &Sse, diffs: &[Drift]) -> Result<()> {
    let bucket = ctx.stack.bucket();
    if *want == Sse::KeyUnknown
        && diffs
            .iter()
            .any(|d| matches!(d, Drift::Encryption { .. } | Drift::BucketKeysOff))
    {
        bail!(
            "bucket {bucket}: the stack's KMS key is not known, so its default encryption \
             cannot be set; run `privbucket up` with --kms-key"
        );
    }
    // Existing objects keep the encryption they were written with: S3 applies the default to
    // new writes only ("Setting default server-side encryption behavior", S3 user guide).
    if let Some(Drift::Encryption { have, .. }) = diffs
        .iter()
        .find(|d| matches!(d, Drift::Encryption { have, .. } if have != NO_ENCRYPTION))
    {
        ctx.progress.note(&format!(
            "bucket {bucket}: default encryption {have} becomes {}; objects already in the \
             bucket keep the encryption (and key) they were written with",
            want.words()
        ));
    }
    Ok(())
}

/// Tags, default encryption, Block Public Access and ownership, whichever differs (each call
/// is idempotent, and they run at once); then versioning.
pub(crate) async fn fix(ctx: &Ctx, want: &Sse, diffs: &[Drift]) -> Result<()> {
    let s3 = &ctx.aws.s3;
    let bucket = ctx.stack.bucket();
    before_encryption(ctx, want, diffs)?;
    let Wanted {
        tagging,
        sse,
        pab,
        ownership,
    } = wanted(ctx, want)?;
    let wants = |f: fn(&Drift) -> bool| diffs.iter().any(f);
    let (t, e, p, o) = tokio::join!(
        async {
            if wants(|d| matches!(d, Drift::BucketTags)) {
                until_listed(ctx, NEW_BUCKET_WAIT, || async {
                    s3.put_bucket_tagging()
                        .bucket(bucket)
                        .tagging(tagging.clone())
                        .send()
                        .await
                        .call("PutBucketTagging", bucket)
                })
                .await?;
            }
            Ok::<_, AwsError>(())
        },
        async {
            if wants(|d| matches!(d, Drift::Encryption { .. } | Drift::BucketKeysOff)) {
                until_listed(ctx, NEW_BUCKET_WAIT, || async {
                    s3.put_bucket_encryption()
                        .bucket(bucket)
                        .server_side_encryption_configuration(sse.clone())
                        .send()
                        .await
                        .call("PutBucketEncryption", bucket)
                })
                .await?;
            }
            Ok::<_, AwsError>(())
        },
        async {
            if wants(|d| matches!(d, Drift::PublicAccessBlockOff(_))) {
                until_listed(ctx, NEW_BUCKET_WAIT, || async {
                    s3.put_public_access_block()
                        .bucket(bucket)
                        .public_access_block_configuration(pab.clone())
                        .send()
                        .await
                        .call("PutPublicAccessBlock", bucket)
                })
                .await?;
            }
            Ok::<_, AwsError>(())
        },
        async {
            if wants(|d| matches!(d, Drift::Ownership)) {
                until_listed(ctx, NEW_BUCKET_WAIT, || async {
                    s3.put_bucket_ownership_controls()
                        .bucket(bucket)
                        .ownership_controls(ownership.clone())
                        .send()
                        .await
                        .call("PutBucketOwnershipControls", bucket)
                })
                .await?;
            }
            Ok::<_, AwsError>(())
        },
    );
    t?;
    e?;
    p?;
    o?;
    set_versioning(ctx, diffs).await?;
    Ok(())
}

/// Runs a call on a bucket S3 has just made (or that `HeadBucket` has just seen) again while
/// S3 answers `NoSuchBucket`, for at most `budget`. Only that code: "this setting is not set"
/// answers (`ServerSideEncryptionConfigurationNotFoundError`, …) are answers.
pub(crate) async fn until_listed<T, F, Fut>(
    ctx: &Ctx,
    budget: Duration,
    op: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    retry(
        budget,
        crate::resources::ec2::VISIBLE_BACKOFF,
        |e| e.code.as_deref() == Some("NoSuchBucket"),
        |e, d| {
            ctx.progress.debug(&format!(
                "{e}; S3 may not list a new bucket yet, trying again in {}",
                humantime::format_duration(d)
            ))
        },
        op,
    )
    .await
}

/// What a bucket has not got until privbucket sets it: AWS gives new buckets SSE-S3, Block
/// Public Access and owner-enforced ownership by default (since 2023), but every setting is
/// put all the same, so a bucket adopted from a lost response, or an older default, ends the
/// same.
fn fresh_lacks(ctx: &Ctx) -> Vec<Drift> {
    let encryption = Drift::Encryption {
        have: NO_ENCRYPTION.to_string(),
        want: String::new(),
    };
    let versioning = match ctx.stack.settings.versioning {
        Some(true) => Some(Drift::Versioning {
            have: NEVER_ON.to_string(),
            on: true,
        }),
        Some(false) | None => None,
    };
    let mut lacks = vec![
        Drift::BucketTags,
        encryption,
        Drift::PublicAccessBlockOff(vec![
            "BlockPublicAcls",
            "IgnorePublicAcls",
            "BlockPublicPolicy",
            "RestrictPublicBuckets",
        ]),
        Drift::Ownership,
    ];
    lacks.extend(versioning);
    lacks
}

/// What S3 says of a bucket whose versioning was never turned on (no `Status`).
const NEVER_ON: &str = "never turned on";

/// The bucket's versioning as S3 reports it; read only when the stack sets it.
async fn versioning(ctx: &Ctx) -> Result<Option<String>, AwsError> {
    if ctx.stack.settings.versioning.is_none() {
        return Ok(None);
    }
    let bucket = ctx.stack.bucket();
    let out = until_listed(ctx, READ_WAIT, || async {
        ctx.aws
            .s3
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .call("GetBucketVersioning", bucket)
    })
    .await?;
    Ok(Some(
        out.status().map_or(NEVER_ON, |s| s.as_str()).to_string(),
    ))
}

/// How the bucket's versioning differs from `--versioning` / `--no-versioning`: S3 cannot
/// turn it off once on, only suspend it.
fn versioning_difference(want: Option<bool>, have: Option<String>) -> Option<Drift> {
    let (on, have) = (want?, have?);
    let enabled = have == "Enabled";
    (enabled != on).then_some(Drift::Versioning { have, on })
}

/// Turns versioning on, or suspends it, when that is among the differences.
async fn set_versioning(ctx: &Ctx, diffs: &[Drift]) -> Result<(), AwsError> {
    let Some(on) = diffs.iter().find_map(|d| {
        if let Drift::Versioning { on, .. } = d {
            Some(*on)
        } else {
            None
        }
    }) else {
        return Ok(());
    };
    let bucket = ctx.stack.bucket();
    let status = if on {
        BucketVersioningStatus::Enabled
    } else {
        BucketVersioningStatus::Suspended
    };
    until_listed(ctx, NEW_BUCKET_WAIT, || async {
        ctx.aws
            .s3
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(status.clone())
                    .build(),
            )
            .send()
            .await
            .call("PutBucketVersioning", bucket)
    })
    .await?;
    Ok(())
}

/// The bucket and its three settings are read at once (one round trip).
pub(crate) async fn observe(ctx: &Ctx, want: &Sse, known: &Resource) -> Result<Live<Drift>> {
    let s3 = &ctx.aws.s3;
    let bucket = ctx.stack.bucket();
    let (exists, tags, sse, pab, own, versioned) = tokio::join!(
        exists(ctx),
        tags(ctx),
        async {
            until_listed(ctx, READ_WAIT, || async {
                s3.get_bucket_encryption()
                    .bucket(bucket)
                    .send()
                    .await
                    .call("GetBucketEncryption", bucket)
            })
            .await
            .found()
        },
        async {
            until_listed(ctx, READ_WAIT, || async {
                s3.get_public_access_block()
                    .bucket(bucket)
                    .send()
                    .await
                    .call("GetPublicAccessBlock", bucket)
            })
            .await
            .found()
        },
        async {
            until_listed(ctx, READ_WAIT, || async {
                s3.get_bucket_ownership_controls()
                    .bucket(bucket)
                    .send()
                    .await
                    .call("GetBucketOwnershipControls", bucket)
            })
            .await
            .found()
        },
        versioning(ctx),
    );
    if !exists? {
        return Ok(Live::Missing);
    }
    let (sse, pab, own, tags, versioned) = (sse?, pab?, own?, tags?, versioned?);
    owned(ctx, tags.as_deref(), None, has_intent(known)).await?;
    let mut diffs = Vec::new();
    if !is_ours(ctx, tags.as_deref()) {
        diffs.push(Drift::BucketTags);
    }
    diffs.extend(encryption_differences(want, sse));
    diffs.extend(setting_differences(pab, own));
    diffs.extend(versioning_difference(
        ctx.stack.settings.versioning,
        versioned,
    ));
    Ok(Live::Present(known.clone(), diffs))
}

/// How the bucket's default encryption differs from the stack's: the algorithm and key of
/// its rule, and, with a KMS key, S3 Bucket Keys.
fn encryption_differences(want: &Sse, sse: Option<GetBucketEncryptionOutput>) -> Vec<Drift> {
    let rule = sse.as_ref().and_then(|o| {
        o.server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .cloned()
    });
    let by_default = rule
        .as_ref()
        .and_then(|r| r.apply_server_side_encryption_by_default());
    let algorithm = by_default.map(|d| d.sse_algorithm().clone());
    let key = by_default.and_then(|d| d.kms_master_key_id());
    let have = match (&algorithm, key) {
        (None, _) => NO_ENCRYPTION.to_string(),
        (Some(ServerSideEncryption::Aes256), _) => Sse::S3.words(),
        (Some(a), Some(k)) => format!("{} with {k}", a.as_str()),
        (Some(a), None) => format!("{} with the AWS managed key (aws/s3)", a.as_str()),
    };
    let differs = match want {
        Sse::S3 => algorithm != Some(ServerSideEncryption::Aes256),
        Sse::Kms(arn) => algorithm != Some(ServerSideEncryption::AwsKms) || key != Some(arn),
        Sse::KeyUnknown => false,
    };
    let mut diffs = Vec::new();
    if differs {
        diffs.push(Drift::Encryption {
            have,
            want: want.words(),
        });
    }
    let bucket_keys = rule.as_ref().and_then(|r| r.bucket_key_enabled()) == Some(true);
    if matches!(want, Sse::Kms(_)) && !bucket_keys {
        diffs.push(Drift::BucketKeysOff);
    }
    diffs
}

/// How the bucket's Block Public Access and ownership differ from the stack's.
fn setting_differences(
    pab: Option<GetPublicAccessBlockOutput>,
    own: Option<GetBucketOwnershipControlsOutput>,
) -> Vec<Drift> {
    let mut diffs = Vec::new();

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
        diffs.push(Drift::PublicAccessBlockOff(off));
    }

    let enforced = own.is_some_and(|o| {
        o.ownership_controls().is_some_and(|c| {
            c.rules()
                .iter()
                .any(|r| r.object_ownership() == &ObjectOwnership::BucketOwnerEnforced)
        })
    });
    if !enforced {
        diffs.push(Drift::Ownership);
    }
    diffs
}

/// Counts object versions and delete markers, stopping once `limit` is reached.
pub(crate) async fn count_objects(ctx: &Ctx, limit: usize) -> Result<usize> {
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

/// Without `--delete-objects`, a bucket that holds anything is kept.
pub(crate) async fn keep_for_objects(ctx: &Ctx, delete_objects: bool) -> Result<Option<Action>> {
    if delete_objects {
        return Ok(None);
    }
    let n = count_objects(ctx, usize::MAX).await?;
    Ok((n > 0).then(|| kept(n)))
}

/// A bucket is deleted only when it is the stack's ([`owned`]): `down`'s first round of reads
/// (`discovery::scan`, before any change) has checked it, so the delete reads no tags again.
pub(crate) async fn delete(ctx: &Ctx, delete_objects: bool) -> Result<Action> {
    let bucket = ctx.stack.bucket();
    if let Some(kept) = keep_for_objects(ctx, delete_objects).await? {
        return Ok(kept);
    }
    if delete_objects {
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

/// Whether an object exists (`verify` looks for what the uploader wrote).
pub(crate) async fn object_exists(ctx: &Ctx, key: &str) -> Result<bool> {
    let found = ctx
        .aws
        .s3
        .head_object()
        .bucket(ctx.stack.bucket())
        .key(key)
        .send()
        .await
        .call("HeadObject", key)
        .found()?;
    Ok(found.is_some())
}

pub(crate) async fn delete_object(ctx: &Ctx, key: &str) -> Result<(), AwsError> {
    let bucket = ctx.stack.bucket();
    ctx.aws
        .s3
        .delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .call("DeleteObject", format!("{bucket}/{key}"))
        .map(|_| ())
}

/// A PutObject with the caller's own credentials (`verify`'s proof that it is denied).
pub(crate) async fn put_object(ctx: &Ctx, key: &str, body: &'static [u8]) -> Result<(), AwsError> {
    let bucket = ctx.stack.bucket();
    ctx.aws
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(body))
        .send()
        .await
        .call("PutObject", format!("{bucket}/{key}"))
        .map(|_| ())
}

/// S3's own view of whether the bucket's policy makes it public.
pub(crate) async fn policy_is_public(ctx: &Ctx) -> Result<bool> {
    let bucket = ctx.stack.bucket();
    let status = ctx
        .aws
        .s3
        .get_bucket_policy_status()
        .bucket(bucket)
        .send()
        .await
        .call("GetBucketPolicyStatus", bucket)
        .found()?;
    Ok(status
        .and_then(|s| s.policy_status().and_then(|p| p.is_public()))
        .unwrap_or(false))
}

/// The private bucket.
#[derive(Debug)]
pub(crate) struct BucketStep;

impl Contract for BucketStep {
    fn find<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Option<Resource>> {
        let _ = res;
        Box::pin(find(ctx))
    }

    fn create<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Made> {
        let _ = res;
        Box::pin(async move { Ok(create(ctx).await?.widen()) })
    }

    fn observe<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        _read: Option<&'a Ec2Read>,
    ) -> Answer<'a, Live> {
        let want = Sse::of(ctx, res);
        Box::pin(async move { Ok(observe(ctx, &want, known).await?.widen()) })
    }

    fn fix<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        diffs: &'a [Difference],
    ) -> Answer<'a, ()> {
        let _ = known;
        let want = Sse::of(ctx, res);
        let mine = Drift::picked(diffs);
        Box::pin(async move { fix(ctx, &want, &mine).await })
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

    /// Not released before it is finished: until `PutBucketTagging`, only an untagged bucket
    /// *without a policy* is provably the stack's, so the policy waits for the tags (in a
    /// borrowed network the endpoint is ready at once, and a refused tagging after the policy
    /// left a bucket no later run could claim).
    fn finished_beside(&self) -> bool {
        false
    }

    /// A crash between `CreateBucket` and `PutBucketTagging` leaves an untagged bucket that
    /// only this record lets the next run adopt.
    fn intent(&self, ctx: &Ctx) -> Option<Resource> {
        Some(intent(ctx))
    }
}
