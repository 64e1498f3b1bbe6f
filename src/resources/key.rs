//! The bucket's KMS key (`up --kms-key`). With `new`, privbucket makes a customer managed key
//! (rotation on, `alias/NAME-bucket`, the stack's tags, a policy that lets the uploader's role
//! use it only through S3 for this bucket); a key named by ARN or alias is borrowed: checked
//! before any change (`borrow`), used, never changed.
//!
//! The key outlives its data: `down` schedules the deletion of a key it made only once the
//! bucket is gone, and keeps the key with a bucket kept for its objects (they cannot be read
//! without it). A key pending deletion that `up` finds is cancelled and enabled again, not
//! replaced: it may still be the only key of objects written before.
use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_config::retry::RetryConfig;
use aws_sdk_kms::types::{KeyMetadata, KeySpec, KeyState, KeyUsageType, Tag};

use super::contract::{Answer, Contract, LEFT_AS_IT_WAS};
use super::read::Ec2Read;
use super::{Ctx, Difference, Live, Made, Teardown, bucket, create_reconciled};
use crate::aws::{Backoff, poll};
use crate::config::KmsKey;
use crate::error::{AwsError, Call, CallResultExt, InputError, Kind};
use crate::evaluate::{Decision, Request, evaluate};
use crate::graph::{Function, Step};
use crate::policy;
use crate::run::Action;
use crate::stack::{RESOURCE_TAG, STACK_TAG};
use crate::state::{Ownership, Resource, Resources};

/// How the key differs from what it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drift {
    /// Automatic rotation is off (a key privbucket made has it on).
    RotationOff,
    /// The key is disabled: S3 can neither encrypt nor decrypt with it.
    Disabled,
    /// Scheduled for deletion (an earlier `down`, or someone else).
    PendingDeletion,
    /// `alias/NAME-bucket` is missing.
    AliasMissing(String),
    /// A borrowed key in a state S3 cannot use (`Disabled`, `PendingDeletion`, …).
    Unusable(String),
    /// A borrowed key whose policy does not let the uploader's role have data keys made
    /// through S3 for the bucket: what to add.
    ShutsOutUploader(String),
}

impl Drift {
    pub(crate) fn in_place(&self) -> bool {
        match self {
            Drift::RotationOff
            | Drift::Disabled
            | Drift::PendingDeletion
            | Drift::AliasMissing(_)
            | Drift::Unusable(_)
            | Drift::ShutsOutUploader(_) => true,
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::RotationOff => write!(f, "automatic key rotation is off"),
            Drift::Disabled => write!(f, "the key is disabled"),
            Drift::PendingDeletion => write!(f, "the key is pending deletion"),
            Drift::AliasMissing(alias) => write!(f, "alias {alias} does not name the key"),
            Drift::Unusable(state) => {
                write!(
                    f,
                    "the key is {state}: S3 cannot encrypt or decrypt with it"
                )
            }
            Drift::ShutsOutUploader(what) => write!(
                f,
                "the key's policy does not let the uploader's role use it through S3: {what}"
            ),
        }
    }
}

/// `alias/NAME-bucket`: the key's deterministic name, how a run finds the key it made.
pub(crate) fn alias(ctx: &Ctx) -> String {
    format!("alias/{}-bucket", ctx.stack.name)
}

/// The key's metadata; `None` when KMS has no key by that ID, ARN or alias.
async fn describe(ctx: &Ctx, key: &str) -> Result<Option<KeyMetadata>, AwsError> {
    let out = ctx
        .aws
        .kms
        .describe_key()
        .key_id(key)
        .send()
        .await
        .call("DescribeKey", key)
        .found()?;
    Ok(out.and_then(|o| o.key_metadata().cloned()))
}

async fn tags(kms: &aws_sdk_kms::Client, key_id: &str) -> Result<Vec<(String, String)>, AwsError> {
    let mut all = Vec::new();
    let mut marker = None;
    loop {
        let out = kms
            .list_resource_tags()
            .key_id(key_id)
            .set_marker(marker.take())
            .send()
            .await
            .call("ListResourceTags", key_id)?;
        all.extend(
            out.tags()
                .iter()
                .map(|t| (t.tag_key().to_string(), t.tag_value().to_string())),
        );
        match out.next_marker() {
            Some(m) if out.truncated() => marker = Some(m.to_string()),
            _ => return Ok(all),
        }
    }
}

fn is_ours(ctx: &Ctx, tags: &[(String, String)]) -> bool {
    tags.iter()
        .any(|(k, v)| k == STACK_TAG && v == ctx.stack.name.as_str())
}

fn resource(meta: &KeyMetadata) -> Resource {
    let r = Resource::new(meta.key_id());
    match meta.arn() {
        Some(arn) => r.with_arn(arn),
        None => r,
    }
}

/// The key behind the stack's alias, if it carries the stack's tag; one without it is
/// refused, never adopted.
async fn ours(ctx: &Ctx, meta: &KeyMetadata) -> Result<Resource> {
    if is_ours(ctx, &tags(&ctx.aws.kms, meta.key_id()).await?) {
        return Ok(resource(meta));
    }
    let alias = alias(ctx);
    Err(InputError(format!(
        "KMS alias {alias} names key {}, which is not tagged {STACK_TAG}={}; privbucket takes \
         over, changes or deletes only the key its stack made. Nothing was changed. Give that \
         key to the stack with --kms-key {alias} (borrowed, never changed), or delete the \
         alias, or choose another --name",
        meta.key_id(),
        ctx.stack.name
    ))
    .into())
}

/// The key this stack made, once a run has asked KMS for one (the state holds the mark
/// [`intent`], or this run's `CreateKey` went unanswered): by its alias, else (a crash or a
/// lost answer between `CreateKey` and `CreateAlias`) by the stack's tags ([`find_by_tags`]).
pub(crate) async fn find(ctx: &Ctx) -> Result<Option<Resource>> {
    match by_alias(ctx).await? {
        Some(key) => Ok(Some(key)),
        None => find_by_tags(ctx).await,
    }
}

/// The key behind the stack's alias, if it is the stack's ([`ours`]); `None` without the
/// alias.
async fn by_alias(ctx: &Ctx) -> Result<Option<Resource>> {
    match describe(ctx, &alias(ctx)).await? {
        Some(meta) => Ok(Some(ours(ctx, &meta).await?)),
        None => Ok(None),
    }
}

/// The key behind the stack's alias, for a stack whose settings are not known (`status
/// --name`, `down --name`, a stack made without `--kms-key`): one call, and none of the
/// account's keys listed. Credentials without KMS permissions find none.
async fn find_by_alias(ctx: &Ctx) -> Result<Option<Resource>> {
    match describe(ctx, &alias(ctx)).await {
        Ok(None) => Ok(None),
        Ok(Some(meta)) => Ok(Some(ours(ctx, &meta).await?)),
        Err(e) if e.is(Kind::AccessDenied) => {
            ctx.progress.debug(&format!(
                "{e}; the stack's KMS key, if any, is not looked for"
            ));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The stack's own key for discovery, by its alias alone: one call, whatever the account
/// holds. A key without its alias exists only after a run recorded the mark before
/// `CreateKey` ([`intent`]), and that mark sends `up` and `down` to [`find`] themselves; with
/// no mark, no key of the stack's can lack its alias (a lost state file aside: see
/// docs/real-aws.md). None for a borrowed key (`up` records it before the graph runs, and it
/// is not the stack's to tag); credentials without KMS permissions find none only when the
/// settings are not known.
pub(crate) async fn find_for_stack(ctx: &Ctx) -> Result<Option<Resource>> {
    match &ctx.stack.settings.kms_key {
        Some(KmsKey::New) => by_alias(ctx).await,
        Some(KmsKey::Arn { .. } | KmsKey::Alias(_)) => Ok(None),
        None => find_by_alias(ctx).await,
    }
}

/// How many keys' tags [`find_by_tags`] reads at once: a bounded burst, well inside KMS's
/// per-operation request quotas ("Request quotas", KMS developer guide), which the SDK's
/// retry absorbs when another tool shares them.
const TAG_READS_AT_ONCE: usize = 8;

/// The key of the stack's among the account's keys in the region, by its tags: only after a
/// run asked KMS for a key ([`find`]), never to discover a stack. The tags are read
/// [`TAG_READS_AT_ONCE`] keys at a time, and the search ends at the first key tagged for the
/// stack's key step.
async fn find_by_tags(ctx: &Ctx) -> Result<Option<Resource>> {
    let mut marker = None;
    let mut ids = Vec::new();
    loop {
        let out = ctx
            .aws
            .kms
            .list_keys()
            .limit(1000)
            .set_marker(marker.take())
            .send()
            .await
            .call("ListKeys", "the account's KMS keys")?;
        ids.extend(
            out.keys()
                .iter()
                .filter_map(|k| k.key_id().map(str::to_string)),
        );
        match out.next_marker() {
            Some(m) if out.truncated() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    let step = Step::Key.key();
    for batch in ids.chunks(TAG_READS_AT_ONCE) {
        let mut reads = tokio::task::JoinSet::new();
        for id in batch {
            let (kms, id) = (ctx.aws.kms.clone(), id.clone());
            reads.spawn(async move {
                let tags = tags(&kms, &id).await;
                (id, tags)
            });
        }
        let mut tagged = None;
        while let Some(joined) = reads.join_next().await {
            let (id, tags) = joined.context("a read of a KMS key's tags panicked")?;
            let tags = match tags {
                Ok(t) => t,
                // AWS managed keys and other accounts' keys are not the caller's to read.
                Err(e) if e.is(Kind::AccessDenied) || e.is(Kind::NotFound) => continue,
                Err(e) => return Err(e.into()),
            };
            if is_ours(ctx, &tags) && tags.iter().any(|(k, v)| k == RESOURCE_TAG && v == step) {
                tagged = Some(id);
            }
        }
        if let Some(id) = tagged
            && let Some(meta) = describe(ctx, &id).await?
        {
            return Ok(Some(resource(&meta)));
        }
    }
    Ok(None)
}

/// The policy of the key privbucket makes for this stack.
pub(crate) fn key_policy(ctx: &Ctx) -> serde_json::Value {
    let admins: Vec<&str> = ctx
        .stack
        .settings
        .admin_principals
        .iter()
        .map(|a| a.as_str())
        .collect();
    policy::key_policy(
        ctx.stack.partition(),
        &ctx.stack.account_id,
        ctx.stack.region.as_str(),
        ctx.stack.bucket(),
        &ctx.stack.role_arn(Function::Uploader),
        &admins,
    )
}

/// How long a run looks for a key an earlier run asked for and never heard back about, before
/// asking again. KMS lists a change "typically \[in\] less than a few seconds, but in some cases
/// several minutes" ("AWS KMS eventual consistency", KMS developer guide), and a `CreateKey`
/// already sent may land after the process that sent it died.
const UNANSWERED_CREATE_PATIENCE: Duration = Duration::from_secs(15);

/// What `up` records before `CreateKey`: that a key is being asked for (by the alias it will
/// have, the ID being unknown until KMS answers). A run that finds this mark looks for the
/// key, with patience, before asking for another.
fn intent(ctx: &Ctx) -> Resource {
    Resource::new(alias(ctx)).owned_as(Ownership::Pending)
}

/// Makes the key with its policy and tags in one call; rotation and the alias follow in
/// `fix`, once it is recorded. `CreateKey` takes no client token: SDK retries are off and an
/// ambiguous failure looks for the key by its tags before trying again; so does a run that
/// finds an earlier run's mark ([`intent`]).
async fn create(ctx: &Ctx, res: &Resources) -> Result<Made<Drift>> {
    let fresh = || vec![Drift::RotationOff, Drift::AliasMissing(alias(ctx))];
    if res
        .get(&Step::Key)
        .is_some_and(|r| r.ownership == Ownership::Pending)
    {
        ctx.progress.wait(
            Step::Key,
            "an earlier run asked KMS for a key and stopped before the answer; looking for it",
        );
        let backoff = Backoff {
            first: Duration::from_millis(500),
            cap: Duration::from_secs(2),
        };
        if let Some(found) = poll(UNANSWERED_CREATE_PATIENCE, backoff, || find(ctx)).await? {
            return Ok(Made::lacking(found, fresh()));
        }
    }
    let tags = ctx
        .stack
        .tags(Step::Key)
        .into_iter()
        .map(|(k, v)| Tag::builder().tag_key(k).tag_value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .context("building the key's tags")?;
    let doc = key_policy(ctx).to_string();
    let made = create_reconciled(Step::Key, ctx, res, || {
        let (tags, doc) = (tags.clone(), doc.clone());
        async move {
            let out = ctx
                .aws
                .kms
                .create_key()
                .description(format!(
                    "privbucket {}: default encryption of bucket {}",
                    ctx.stack.name,
                    ctx.stack.bucket()
                ))
                .key_usage(KeyUsageType::EncryptDecrypt)
                .key_spec(KeySpec::SymmetricDefault)
                .policy(doc)
                .set_tags(Some(tags))
                .customize()
                .config_override(
                    aws_sdk_kms::config::Builder::default().retry_config(RetryConfig::disabled()),
                )
                .send()
                .await
                .call("CreateKey", format!("stack {}", ctx.stack.name))?;
            out.key_metadata().map(resource).ok_or_else(|| {
                AwsError::new(
                    "CreateKey",
                    format!("stack {}", ctx.stack.name),
                    Kind::Other,
                    "KMS answered without the key's metadata",
                )
            })
        }
    })
    .await?;
    Ok(Made::lacking(made, fresh()))
}

/// What the key is, as KMS says: its metadata, rotation and the key its alias names.
async fn observe(ctx: &Ctx, known: &Resource) -> Result<Live<Drift>> {
    if known.ownership == Ownership::Borrowed {
        return observe_borrowed(ctx, known).await;
    }
    let kms = &ctx.aws.kms;
    let alias = alias(ctx);
    let (meta, rotation, named) = tokio::join!(
        describe(ctx, &known.id),
        async {
            kms.get_key_rotation_status()
                .key_id(&known.id)
                .send()
                .await
                .call("GetKeyRotationStatus", &known.id)
                .found()
        },
        describe(ctx, &alias),
    );
    let Some(meta) = meta? else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    match meta.key_state() {
        Some(KeyState::PendingDeletion) => diffs.push(Drift::PendingDeletion),
        Some(KeyState::Disabled) => diffs.push(Drift::Disabled),
        _ => {}
    }
    // KMS does not answer GetKeyRotationStatus for a key pending deletion
    // (KMSInvalidStateException): it is read again once the deletion is cancelled.
    match rotation {
        Ok(Some(r)) if r.key_rotation_enabled() => {}
        Ok(_) => diffs.push(Drift::RotationOff),
        Err(e) if diffs.contains(&Drift::PendingDeletion) => {
            ctx.progress
                .debug(&format!("{e}; read again once the key is restored"));
            diffs.push(Drift::RotationOff);
        }
        Err(e) => return Err(e.into()),
    }
    if named?.map(|m| m.key_id().to_string()).as_deref() != Some(meta.key_id()) {
        diffs.push(Drift::AliasMissing(alias));
    }
    Ok(Live::Present(resource(&meta), diffs))
}

/// A borrowed key: whether S3 can use it, and whether its policy lets the uploader's role.
async fn observe_borrowed(ctx: &Ctx, known: &Resource) -> Result<Live<Drift>> {
    let key = known.arn_or_id();
    let (meta, doc) = tokio::join!(describe(ctx, key), key_policy_of(ctx, key));
    let Some(meta) = meta? else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    match meta.key_state() {
        Some(KeyState::Enabled) => {}
        other => diffs.push(Drift::Unusable(
            other
                .map_or("in an unknown state", |s| s.as_str())
                .to_string(),
        )),
    }
    if let Some(doc) = doc?
        && let Some(what) = shuts_out_uploader(ctx, &doc, key)
    {
        diffs.push(Drift::ShutsOutUploader(what));
    }
    Ok(Live::Present(known.clone(), diffs))
}

/// The key's policy; `None` when the caller may not read it (a borrowed key's policy is its
/// owner's, and `kms:GetKeyPolicy` may not be granted): `status` then cannot tell.
pub(crate) async fn key_policy_of(ctx: &Ctx, key: &str) -> Result<Option<serde_json::Value>> {
    let out = ctx
        .aws
        .kms
        .get_key_policy()
        .key_id(key)
        .policy_name("default")
        .send()
        .await
        .call("GetKeyPolicy", key);
    match out {
        Ok(o) => Ok(o.policy().and_then(policy::parse)),
        Err(e) if e.is(Kind::AccessDenied) => {
            ctx.progress.debug(&format!(
                "{e}; whether the key's policy lets the uploader use it is not known"
            ));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The request S3 makes to KMS when the uploader writes an object: `kms:GenerateDataKey`
/// through S3 in this region, with the bucket's ARN as the encryption context (S3 Bucket
/// Keys), as `principal`.
pub(crate) fn uploader_request(ctx: &Ctx, key: &str, principal: &str) -> Request {
    let uploader = ctx.stack.role_arn(Function::Uploader);
    Request {
        principal: Some(principal.to_string()),
        action: policy::KEY_USE.to_string(),
        resource: key.to_string(),
        context: [
            ("aws:PrincipalArn".to_string(), uploader),
            (
                "kms:CallerAccount".to_string(),
                ctx.stack.account_id.clone(),
            ),
            (
                "kms:ViaService".to_string(),
                format!("s3.{}.amazonaws.com", ctx.stack.region),
            ),
            (
                "kms:EncryptionContext:aws:s3:arn".to_string(),
                bucket::arn(ctx),
            ),
        ]
        .into_iter()
        .collect(),
    }
}

/// `None` when the key's policy lets the uploader's role have data keys made through S3:
/// by naming it, or by the account root statement (which hands the decision to IAM, where
/// the role's own policy allows it). Else what to add. A policy the evaluator cannot read is
/// not judged.
pub(crate) fn shuts_out_uploader(ctx: &Ctx, doc: &serde_json::Value, key: &str) -> Option<String> {
    let role = ctx.stack.role_arn(Function::Uploader);
    let root = format!(
        "arn:{}:iam::{}:root",
        ctx.stack.partition(),
        ctx.stack.account_id
    );
    let verdict = |p: &str| evaluate(doc, &uploader_request(ctx, key, p)).ok();
    let as_role = verdict(&role)?;
    if as_role == Decision::Deny {
        return Some(format!(
            "a Deny statement applies to {role} for {}",
            policy::KEY_USE
        ));
    }
    let allowed = as_role == Decision::Allow
        || verdict(&root)? == Decision::Allow
        || verdict(&ctx.stack.account_id)? == Decision::Allow;
    (!allowed).then(|| {
        format!(
            "add a statement allowing {} to principal {role} (or the account root, {root}) with \
             kms:ViaService s3.{}.amazonaws.com",
            policy::KEY_USE,
            ctx.stack.region
        )
    })
}

/// Puts right a key privbucket made: restores one pending deletion (cancelled, then enabled:
/// a cancelled key is `Disabled`, KMS API reference, CancelKeyDeletion), enables it, turns
/// rotation on, names it with its alias.
async fn fix(ctx: &Ctx, known: &Resource, diffs: &[Drift]) -> Result<()> {
    let kms = &ctx.aws.kms;
    let id = known.id.as_str();
    let has = |d: &Drift| diffs.contains(d);
    if has(&Drift::PendingDeletion) {
        ctx.progress.note(&format!(
            "KMS key {id} was pending deletion: cancelling the deletion and enabling it again"
        ));
        kms.cancel_key_deletion()
            .key_id(id)
            .send()
            .await
            .call("CancelKeyDeletion", id)?;
    }
    if has(&Drift::PendingDeletion) || has(&Drift::Disabled) {
        kms.enable_key()
            .key_id(id)
            .send()
            .await
            .call("EnableKey", id)?;
    }
    if has(&Drift::RotationOff) {
        kms.enable_key_rotation()
            .key_id(id)
            .send()
            .await
            .call("EnableKeyRotation", id)?;
    }
    if let Some(Drift::AliasMissing(alias)) =
        diffs.iter().find(|d| matches!(d, Drift::AliasMissing(_)))
    {
        let made = kms
            .create_alias()
            .alias_name(alias)
            .target_key_id(id)
            .send()
            .await
            .call("CreateAlias", alias);
        match made {
            Ok(_) => {}
            // Named already (a lost response), or naming another key: pointed at this one.
            Err(e) if e.is(Kind::AlreadyExists) => {
                kms.update_alias()
                    .alias_name(alias)
                    .target_key_id(id)
                    .send()
                    .await
                    .call("UpdateAlias", alias)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A borrowed key, checked before any change (reads only; a problem is exit 2): it exists in
/// this account's view of the stack's region, is enabled, symmetric for encryption, its
/// policy (when readable) lets the uploader's role use it, and it is usable by the caller
/// (`GenerateDataKey` with `DryRun`, which KMS answers `DryRunOperationException` when it
/// would have succeeded: KMS developer guide, "Testing your permissions").
pub(crate) async fn borrow(ctx: &Ctx, key: &KmsKey) -> Result<Resource> {
    let Some(id) = key.key_id() else {
        anyhow::bail!("internal error: --kms-key new is not borrowed");
    };
    let region = ctx.stack.region.as_str();
    let refuse = |why: String| -> Result<Resource> {
        Err(InputError(format!(
            "--kms-key {id}: {why}. Nothing was changed. Name a usable key, or --kms-key new"
        ))
        .into())
    };
    if let KmsKey::Arn { region: r, .. } = key
        && r != region
    {
        return refuse(format!(
            "the key is in region {r}, and S3 encrypts a bucket in {region} only with a key of \
             {region} (KMS keys are regional)"
        ));
    }
    let meta = match describe(ctx, id).await {
        Ok(Some(m)) => m,
        Ok(None) => {
            return refuse(format!(
                "KMS has no such key in region {region} of account {}",
                ctx.stack.account_id
            ));
        }
        Err(e) if e.is(Kind::AccessDenied) => {
            return refuse(format!("these credentials may not read the key ({e})"));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(why) = unusable(&meta, region) {
        return refuse(why);
    }
    let tried = ctx
        .aws
        .kms
        .generate_data_key()
        .key_id(id)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .dry_run(true)
        .send()
        .await
        .call("GenerateDataKey", id);
    match tried {
        Ok(_) => {}
        Err(e) if e.code.as_deref() == Some("DryRunOperationException") => {}
        Err(e) if e.is(Kind::AccessDenied) => {
            return refuse(format!(
                "these credentials may not use the key ({e}); the key's policy or your IAM \
                 policy must allow kms:GenerateDataKey"
            ));
        }
        Err(e) => return Err(e.into()),
    }
    // The key's policy, when the caller may read it: one that shuts the uploader out would
    // leave a bucket nobody can write to.
    let arn = meta.arn().unwrap_or(id);
    if let Some(doc) = key_policy_of(ctx, arn).await?
        && let Some(what) = shuts_out_uploader(ctx, &doc, arn)
    {
        return refuse(Drift::ShutsOutUploader(what).to_string());
    }
    Ok(resource(&meta).owned_as(Ownership::Borrowed))
}

/// Why S3 could not use a key, by its metadata: another region, a state other than
/// `Enabled`, not a symmetric encryption key.
fn unusable(meta: &KeyMetadata, region: &str) -> Option<String> {
    if let Some(arn) = meta.arn()
        && arn.split(':').nth(3).is_some_and(|r| r != region)
    {
        return Some(format!("the key {arn} is not in region {region}"));
    }
    match meta.key_state() {
        Some(KeyState::Enabled) => {}
        other => {
            return Some(format!(
                "the key is {}, and S3 can neither encrypt nor decrypt with it",
                other.map_or("in an unknown state", |s| s.as_str())
            ));
        }
    }
    // A SYMMETRIC_DEFAULT key has one possible usage, ENCRYPT_DECRYPT (AWS KMS developer
    // guide, "Key spec reference"), so a description without `KeyUsage` says nothing against
    // it; the refusal names only what the answer says.
    let spec = meta.key_spec().map(KeySpec::as_str);
    let usage = meta.key_usage().map(KeyUsageType::as_str);
    // Without a spec the answer does not show a symmetric key (an RSA key is ENCRYPT_DECRYPT
    // too); AWS always gives one.
    let symmetric = spec == Some(KeySpec::SymmetricDefault.as_str());
    let wrong_usage = usage.filter(|u| *u != KeyUsageType::EncryptDecrypt.as_str());
    if symmetric && wrong_usage.is_none() {
        return None;
    }
    if spec.is_none() && usage.is_none() {
        return Some(
            "DescribeKey gave neither the key's spec nor its usage, so it does not show a \
             symmetric encryption key, the only kind S3 encrypts with"
                .to_string(),
        );
    }
    let facts: Vec<String> = [
        spec.map(|s| format!("key spec {s}")),
        usage.map(|u| format!("key usage {u}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    Some(format!(
        "the key has {}, and S3 encrypts only with a symmetric encryption key (key spec \
         SYMMETRIC_DEFAULT, key usage ENCRYPT_DECRYPT)",
        facts.join(" and ")
    ))
}

/// Schedules the deletion of a key privbucket made, once the bucket it encrypts is gone. A
/// bucket kept for its objects keeps the key: its objects cannot be read without it.
async fn delete(ctx: &Ctx, known: &Resource, down: &Teardown) -> Result<Action> {
    if bucket::exists(ctx).await? {
        return Ok(Action::Kept(format!(
            "encrypts bucket {}, which is kept with its objects: they cannot be read without \
             the key; `privbucket down --delete-objects` deletes the bucket, then schedules \
             the key's deletion",
            ctx.stack.bucket()
        )));
    }
    // Only the mark of a key asked for: the key, if KMS made it, is found by alias or tags.
    let resolved = match known.ownership {
        Ownership::Pending => match find(ctx).await? {
            Some(k) => k.id,
            None => return Ok(Action::AlreadyGone),
        },
        Ownership::Made | Ownership::Borrowed => known.id.clone(),
    };
    let id = resolved.as_str();
    let scheduled = ctx
        .aws
        .kms
        .schedule_key_deletion()
        .key_id(id)
        .pending_window_in_days(down.kms_deletion_window)
        .send()
        .await
        .call("ScheduleKeyDeletion", id);
    match scheduled {
        Ok(_) => {
            ctx.progress.note(&format!(
                "KMS key {id} is scheduled for deletion in {} days; until then `aws kms \
                 cancel-key-deletion --key-id {id}` restores it",
                down.kms_deletion_window
            ));
            Ok(Action::Deleted)
        }
        Err(e) if e.is(Kind::NotFound) => Ok(Action::AlreadyGone),
        // Pending deletion already (an earlier `down` whose answer was lost): KMS refuses a
        // second schedule with KMSInvalidStateException.
        Err(e) if e.code.as_deref() == Some("KMSInvalidStateException") => {
            match describe(ctx, id)
                .await?
                .and_then(|m| m.key_state().cloned())
            {
                Some(KeyState::PendingDeletion) | None => Ok(Action::AlreadyGone),
                Some(_) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The bucket's KMS key.
#[derive(Debug)]
pub(crate) struct KeyStep;

impl Contract for KeyStep {
    /// Asked only after this run's `CreateKey` (an answer lost or "already exists"), when
    /// the mark is recorded: by the alias, then the tags.
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
        let _ = res;
        Box::pin(async move { Ok(observe(ctx, known).await?.widen()) })
    }

    fn fix<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        diffs: &'a [Difference],
    ) -> Answer<'a, ()> {
        let _ = res;
        let mine = Drift::picked(diffs);
        Box::pin(async move { fix(ctx, known, &mine).await })
    }

    fn delete<'a>(
        &'a self,
        ctx: &'a Ctx,
        known: &'a Resource,
        down: &'a Teardown,
    ) -> Answer<'a, Action> {
        Box::pin(delete(ctx, known, down))
    }

    /// A borrowed key is left as it was; a key privbucket made that it replaced as the
    /// bucket's default goes as the stack's own would (with the bucket, not before).
    fn give_back<'a>(
        &'a self,
        ctx: &'a Ctx,
        known: &'a Resource,
        down: &'a Teardown,
    ) -> Answer<'a, Action> {
        Box::pin(async move {
            let Some(retired) = known.retired_key() else {
                return Ok(Action::Left(LEFT_AS_IT_WAS.to_string()));
            };
            match delete(ctx, &Resource::new(retired), down).await? {
                Action::Deleted | Action::AlreadyGone => Ok(Action::Left(format!(
                    "{LEFT_AS_IT_WAS}; key {retired}, which privbucket made and the bucket \
                     used before, is scheduled for deletion"
                ))),
                kept @ (Action::Kept(_)
                | Action::Created
                | Action::Adopted
                | Action::UpToDate
                | Action::Updated(_)
                | Action::Left(_)
                | Action::Shared(_)
                | Action::Skipped) => Ok(kept),
            }
        })
    }

    /// Rotation and the alias change nothing the bucket or the role reads.
    fn finished_beside(&self) -> bool {
        true
    }

    /// A crash or a lost answer after `CreateKey` leaves a key only its tags name, and a
    /// `CreateKey` sent may land after the next run's reads: the mark tells that run to look.
    fn intent(&self, ctx: &Ctx) -> Option<Resource> {
        Some(intent(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(spec: Option<KeySpec>, usage: Option<KeyUsageType>) -> KeyMetadata {
        KeyMetadata::builder()
            .key_id("k")
            .arn("arn:aws:kms:us-east-1:123456789012:key/k")
            .key_state(KeyState::Enabled)
            .set_key_spec(spec)
            .set_key_usage(usage)
            .build()
            .expect("a key ID is given")
    }

    #[test]
    fn a_symmetric_key_without_its_usage_is_usable() {
        let m = meta(Some(KeySpec::SymmetricDefault), None);
        assert_eq!(unusable(&m, "us-east-1"), None);
        let m = meta(
            Some(KeySpec::SymmetricDefault),
            Some(KeyUsageType::EncryptDecrypt),
        );
        assert_eq!(unusable(&m, "us-east-1"), None);
    }

    #[test]
    fn a_key_described_without_a_spec_does_not_show_a_symmetric_key() {
        let m = meta(None, Some(KeyUsageType::EncryptDecrypt));
        let why = unusable(&m, "us-east-1").expect("refused");
        assert!(
            why.starts_with("the key has key usage ENCRYPT_DECRYPT, and S3"),
            "{why}"
        );
        let why = unusable(&meta(None, None), "us-east-1").expect("refused");
        assert!(
            why.contains("neither the key's spec nor its usage"),
            "{why}"
        );
    }

    #[test]
    fn a_refusal_names_only_what_the_description_says() {
        let m = meta(Some(KeySpec::Rsa2048), None);
        let why = unusable(&m, "us-east-1").expect("refused");
        assert!(
            why.starts_with("the key has key spec RSA_2048, and S3"),
            "{why}"
        );
        assert!(!why.contains('?'), "{why}");
        let m = meta(Some(KeySpec::EccNistP256), Some(KeyUsageType::SignVerify));
        let why = unusable(&m, "us-east-1").expect("refused");
        assert!(
            why.contains("key spec ECC_NIST_P256 and key usage SIGN_VERIFY"),
            "{why}"
        );
    }
}
