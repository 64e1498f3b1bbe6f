//! What the EC2 families share: tags on create, filters, SDK retries off for creates that a
//! blind retry could duplicate, client tokens, "exactly one resource by tag", and deletes that
//! wait for AWS to release a dependency. Reads are `read.rs`'s.
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use aws_config::retry::RetryConfig;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use super::Ctx;
use crate::aws::{Backoff, in_use, retry};
use crate::error::{AwsError, Kind};
use crate::graph::Step;
use crate::run::Action;
use crate::stack::{RESOURCE_TAG, STACK_TAG};
use crate::state::Resource;

/// How long a call that names a resource made moments ago keeps trying while EC2 answers
/// that it does not exist. EC2 is eventually consistent: right after a create, calls naming
/// the new ID can fail with `InvalidVpcID.NotFound`, `InvalidSubnetID.NotFound`, … ("Eventual
/// consistency in the Amazon EC2 API", EC2 developer guide); terraform-provider-aws retries
/// them too (`ec2PropagationTimeout`).
pub(crate) const EC2_PROPAGATION: Duration = Duration::from_secs(2 * 60);

/// The backoff while waiting for EC2 to see a new resource: short, so the wait ends within a
/// second or two of it becoming visible.
pub(crate) const VISIBLE_BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(250),
    cap: Duration::from_secs(2),
};

/// Runs a call that names a resource made moments ago, again while EC2 says it does not
/// exist, for at most [`EC2_PROPAGATION`].
pub(crate) async fn once_visible<T, F, Fut>(ctx: &Ctx, op: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    retry(
        EC2_PROPAGATION,
        VISIBLE_BACKOFF,
        |e| e.is(Kind::NotFound),
        |e, d| {
            ctx.progress.debug(&format!(
                "{e}; EC2 may not see a new resource yet, trying again in {}",
                humantime::format_duration(d)
            ))
        },
        op,
    )
    .await
}

/// How long a delete waits for AWS to release what still holds the resource.
pub(crate) const DELETE_BUDGET: Duration = Duration::from_secs(5 * 60);

/// The stack's tags, given on the create call itself, so nothing of ours is ever untagged.
pub(crate) fn tag_spec(ctx: &Ctx, step: Step, kind: ResourceType) -> TagSpecification {
    tag_spec_with(ctx, step, kind, Vec::new())
}

/// The stack's tags and `more`, given on the create call itself.
pub(crate) fn tag_spec_with(
    ctx: &Ctx,
    step: Step,
    kind: ResourceType,
    more: Vec<(String, String)>,
) -> TagSpecification {
    let tags = ctx
        .stack
        .tags(step)
        .into_iter()
        .chain(more)
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tags))
        .build()
}

pub(crate) fn filter(name: &str, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The value of the tag `key`.
pub(crate) fn tag<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(Tag::value)
}

/// A filter matching any of several values.
pub(crate) fn filter_any(name: &str, values: &[String]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.to_vec()))
        .build()
}

/// The filters that pick out one step's resource of one stack.
pub(crate) fn stack_filters(ctx: &Ctx, step: Step) -> Vec<Filter> {
    vec![
        filter(&format!("tag:{STACK_TAG}"), ctx.stack.name.as_str()),
        filter(&format!("tag:{RESOURCE_TAG}"), step.key()),
    ]
}

/// SDK retries off: for creates whose blind retry could make a second resource.
pub(crate) fn no_retry() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_config(RetryConfig::disabled())
}

/// A token unique to this create call; the SDK's own retries of the call reuse it.
pub(crate) fn client_token(step: Step) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("privbucket-{}-{nanos}", step.key())
}

/// The one resource a stack's tags pick out; more than one is the user's to sort out.
pub(crate) fn one_tagged(step: Step, ctx: &Ctx, ids: Vec<String>) -> Result<Option<Resource>> {
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(Resource::new(id))),
        _ => bail!(
            "found {} {}s tagged {STACK_TAG}={} {RESOURCE_TAG}={} ({}); privbucket expects \
             one. Delete the extra ones (or all, then run `privbucket up` again)",
            ids.len(),
            step.kind(),
            ctx.stack.name,
            step.key(),
            ids.join(", ")
        ),
    }
}

/// Runs a delete, retrying while AWS still holds the resource (`DependencyViolation`,
/// `InvalidGroup.InUse`, `DeleteConflict`), for at most [`DELETE_BUDGET`].
pub(crate) async fn delete_when_free<F, Fut>(ctx: &Ctx, what: &str, op: F) -> Result<Action>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), AwsError>>,
{
    let r = retry(
        DELETE_BUDGET,
        Backoff::default(),
        in_use,
        |e, d| {
            ctx.progress.debug(&format!(
                "{e}; trying again in {}",
                humantime::format_duration(d)
            ))
        },
        op,
    )
    .await;
    match r {
        Ok(()) => Ok(Action::Deleted),
        Err(e) if e.is(Kind::NotFound) => Ok(Action::AlreadyGone),
        Err(e) if e.is(Kind::InUse) => Err(anyhow::Error::new(e).context(format!(
            "{what} is still in use after {}; something outside the stack may depend on it \
             (see the message above); remove that, then run `privbucket down` again",
            humantime::format_duration(DELETE_BUDGET)
        ))),
        Err(e) => Err(e.into()),
    }
}
