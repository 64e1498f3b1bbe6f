//! Ownership proven before any change. A state file is data someone may have edited, copied or
//! restored: an ID it records as made is acted on only once the account says the resource is
//! the stack's. What carries tags proves it by them (`privbucket:stack` = the stack and
//! `privbucket:resource` = the step, given on the create call itself, so even a resource
//! recorded a moment after its create is tagged); an association by joining the stack's own
//! route table and subnet; a KMS key privbucket made by its tags. The proof reads nothing a
//! command does not already read in its first round, but for a key's tags and an association
//! not on the stack's own table.
//!
//! Names are proven elsewhere: the bucket by its tag or mark (`bucket`), roles and functions by
//! the stack's own names (`discovery`, and `down`'s check of the names).
use std::fmt;

use anyhow::Result;
use aws_sdk_ec2::types::Tag;
use serde::Serialize;

use super::Ctx;
use super::ec2::{filter, tag};
use super::read::{self, Ec2Read};
use crate::error::{Call, Kind, input};
use crate::graph::{ResourceKind, Side, Step};
use crate::stack::{RESOURCE_TAG, STACK_TAG};
use crate::state::{Facts, Ownership, Resource, Resources};

/// A record the account does not prove to be the stack's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Unproven {
    pub(crate) step: Step,
    pub(crate) id: String,
    /// Whose it appears to be, from what the account says of it.
    pub(crate) whose: String,
    /// The stack's own resource for the step, found by its tags, when there is one.
    pub(crate) own: Option<String>,
}

impl fmt::Display for Unproven {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the state records {} {} as the stack's {}, but it is not the stack's: {}",
            self.step.kind(),
            self.id,
            self.step.key(),
            self.whose
        )?;
        if let Some(own) = &self.own {
            write!(f, "; the stack's own, found by its tags, is {own}")?;
        }
        Ok(())
    }
}

/// Whose a tagged resource appears to be, or `None` when its tags prove it the stack's.
fn whose_tags(tags: &[Tag], stack: &str, step: Step) -> Option<String> {
    let of_stack = tag(tags, STACK_TAG);
    let of_step = tag(tags, RESOURCE_TAG);
    if of_stack == Some(stack) && of_step == Some(step.key()) {
        return None;
    }
    Some(match (of_stack, of_step) {
        (Some(s), _) if s != stack => format!("it is tagged for privbucket stack {s}"),
        (Some(_), other) => format!(
            "it is tagged for this stack's {}, not its {}",
            other.unwrap_or("nothing"),
            step.key()
        ),
        (None, Some(step_tag)) => format!(
            "it carries privbucket:resource={step_tag} but no privbucket:stack tag: privbucket \
             made it for no stack it can name"
        ),
        (None, None) => {
            let shown: Vec<String> = tags
                .iter()
                .filter_map(|t| Some(format!("{}={}", t.key()?, t.value().unwrap_or_default())))
                .collect();
            if shown.is_empty() {
                "it carries no tags: privbucket did not make it".to_string()
            } else {
                format!(
                    "it carries no privbucket tag (its tags: {}): privbucket did not make it",
                    shown.join(", ")
                )
            }
        }
    })
}

/// The tags of what `read` holds for a tagged EC2 step: `None` for a kind that is not one,
/// `Some(None)` when it was not read (gone).
fn ec2_tags(step: Step, id: &str, ec2: &Ec2Read) -> Option<Option<Vec<Tag>>> {
    match step.resource_kind() {
        ResourceKind::Vpc => Some(ec2.vpc(id).map(|v| v.vpc.tags().to_vec())),
        ResourceKind::Subnet => Some(ec2.subnet(id).map(|s| s.tags().to_vec())),
        ResourceKind::RouteTable => Some(ec2.route_table(id).map(|t| t.tags().to_vec())),
        ResourceKind::SecurityGroup => Some(ec2.security_group(id).map(|g| g.tags().to_vec())),
        ResourceKind::Endpoint => Some(ec2.endpoint(id).map(|e| e.tags().to_vec())),
        ResourceKind::Association
        | ResourceKind::Key
        | ResourceKind::Role
        | ResourceKind::Bucket
        | ResourceKind::BucketPolicy
        | ResourceKind::Function
        | ResourceKind::LambdaEnis => None,
    }
}

/// Whether the record is one privbucket says it made (a borrowed one is never changed, and a
/// pending mark names nothing yet).
fn made(r: &Resource) -> bool {
    match r.ownership {
        Ownership::Made => true,
        Ownership::Borrowed | Ownership::Pending => false,
    }
}

/// What the proof found of the records.
#[derive(Debug, Default)]
pub(crate) struct Proof {
    pub(crate) unproven: Vec<Unproven>,
    /// Made records of EC2 whose resource is not there (deleted, or an ID of an old state):
    /// what discovery finds by the stack's tags for the step is the stack's own instead.
    pub(crate) gone: Vec<Step>,
}

/// Proves every recorded made resource the stack's, reading EC2 by the recorded IDs and the
/// key's tags at once (for a command that has not read them).
pub(crate) async fn prove(ctx: &Ctx, res: &Resources) -> Result<Proof> {
    let target = format!("stack {}", ctx.stack.name);
    let (ec2, key) = tokio::join!(
        read::all(&ctx.aws.ec2, read::By::Ids(res), &target),
        key_whose(ctx, res)
    );
    let ec2 = ec2?;
    let unproven = check(ctx, res, &ec2, key?).await?;
    let gone = res
        .iter()
        .filter(|(step, r)| made(r) && matches!(ec2_tags(**step, &r.id, &ec2), Some(None)))
        .map(|(step, _)| *step)
        .collect();
    Ok(Proof { unproven, gone })
}

/// Proves every recorded made resource the stack's from what the command read of EC2 by the
/// recorded IDs and `key`, what [`key_whose`] said of the key.
pub(crate) async fn check(
    ctx: &Ctx,
    res: &Resources,
    ec2: &Ec2Read,
    key: Option<String>,
) -> Result<Vec<Unproven>> {
    let stack = ctx.stack.name.as_str();
    let mut unproven = Vec::new();
    for (step, r) in res.iter().filter(|(_, r)| made(r)) {
        let whose = match step.resource_kind() {
            ResourceKind::Association => association_whose(ctx, *step, r, res, ec2).await?,
            ResourceKind::Key => key.clone(),
            ResourceKind::Vpc
            | ResourceKind::Subnet
            | ResourceKind::RouteTable
            | ResourceKind::SecurityGroup
            | ResourceKind::Endpoint => ec2_tags(*step, &r.id, ec2)
                .flatten()
                .and_then(|t| whose_tags(&t, stack, *step)),
            ResourceKind::Role
            | ResourceKind::Bucket
            | ResourceKind::BucketPolicy
            | ResourceKind::Function
            | ResourceKind::LambdaEnis => None,
        };
        if let Some(whose) = whose {
            unproven.push(Unproven {
                step: *step,
                id: r.id.clone(),
                whose,
                own: None,
            });
        }
    }
    Ok(unproven)
}

/// Names beside each record the stack's own resource that discovery found by its tags.
pub(crate) fn name_own(unproven: &mut [Unproven], found: &Resources) {
    for u in unproven {
        u.own = found
            .get(&u.step)
            .filter(|o| o.id != u.id)
            .map(|o| o.id.clone());
    }
}

/// An association is the stack's when it joins the stack's own route table and subnet of its
/// side. One not on the stack's table is looked for by its ID: gone, or someone else's.
async fn association_whose(
    ctx: &Ctx,
    step: Step,
    r: &Resource,
    res: &Resources,
    ec2: &Ec2Read,
) -> Result<Option<String>> {
    let side = Side::BOTH
        .iter()
        .copied()
        .find(|s| s.association() == step)
        .unwrap_or(Side::A);
    let table = res.get(&side.route_table()).map(|t| t.id.as_str());
    let subnet = res.get(&side.subnet()).map(|s| s.id.as_str());
    let joins = |t: &aws_sdk_ec2::types::RouteTable| {
        t.associations()
            .iter()
            .find(|a| a.route_table_association_id() == Some(r.id.as_str()))
            .map(|a| {
                (
                    t.route_table_id().unwrap_or_default().to_string(),
                    a.subnet_id().map(str::to_string),
                )
            })
    };
    let on_ours = table
        .and_then(|t| ec2.route_table(t))
        .and_then(|t| joins(&t));
    let seen = match on_ours {
        Some(seen) => Some(seen),
        None => read::route_tables(
            &ctx.aws.ec2,
            vec![filter("association.route-table-association-id", &r.id)],
            &r.id,
        )
        .await?
        .iter()
        .find_map(joins),
    };
    let Some((on_table, on_subnet)) = seen else {
        return Ok(None);
    };
    let recorded = match &r.facts {
        Some(Facts::Association {
            route_table,
            subnet,
        }) => Some((route_table.as_str(), subnet.as_str())),
        Some(_) | None => None,
    };
    let ours = Some(on_table.as_str()) == table
        && on_subnet.as_deref() == subnet
        && recorded.is_none_or(|(t, s)| t == on_table && Some(s) == on_subnet.as_deref());
    Ok((!ours).then(|| {
        format!(
            "it joins route table {on_table} and subnet {}, not the stack's {} and {}",
            on_subnet.as_deref().unwrap_or("none"),
            table.unwrap_or("(none recorded)"),
            subnet.unwrap_or("(none recorded)")
        )
    }))
}

/// Whose the recorded key is, when privbucket says it made it: by its tags (KMS's
/// `ListResourceTags`; DescribeKey carries none). `None`: the stack's, gone, or not recorded.
pub(crate) async fn key_whose(ctx: &Ctx, res: &Resources) -> Result<Option<String>> {
    // A key privbucket made, or the one it made that a borrowed key replaced (`down`
    // schedules its deletion with the bucket): either must carry the stack's tags.
    let Some(id) = res.get(&Step::Key).and_then(|r| match r.ownership {
        Ownership::Made => Some(r.arn_or_id().to_string()),
        Ownership::Borrowed => r.retired_key().map(str::to_string),
        Ownership::Pending => None,
    }) else {
        return Ok(None);
    };
    let id = id.as_str();
    let listed = ctx
        .aws
        .kms
        .list_resource_tags()
        .key_id(id)
        .send()
        .await
        .call("ListResourceTags", id);
    let out = match listed {
        Ok(out) => out,
        Err(e) if e.is(Kind::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let tags: Vec<Tag> = out
        .tags()
        .iter()
        .map(|t| Tag::builder().key(t.tag_key()).value(t.tag_value()).build())
        .collect();
    Ok(whose_tags(&tags, ctx.stack.name.as_str(), Step::Key).map(|w| format!("key {id}: {w}")))
}

/// The refusal (exit 2) of a state whose records fail the proof, before any change.
pub(crate) fn refuse<T>(state: &str, unproven: &[Unproven]) -> Result<T> {
    let lines: Vec<String> = unproven.iter().map(|u| format!("  - {u}")).collect();
    input(format!(
        "state {state} names resources that are not the stack's, and privbucket changes or \
         deletes only what its stack made; nothing was changed:\n{}\nWhat to do: with a state \
         in S3, `privbucket state pull` to look at it; put the record right (the ID of the \
         stack's own resource), or remove it from the state and let privbucket find the \
         stack's own by its tags",
        lines.join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Vec<Tag> {
        pairs
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
            .collect()
    }

    #[test]
    fn only_the_stacks_tags_for_the_step_prove_it() {
        let ours = tags(&[(STACK_TAG, "s"), (RESOURCE_TAG, "vpc")]);
        assert_eq!(whose_tags(&ours, "s", Step::Vpc), None);
        let theirs = tags(&[(STACK_TAG, "t"), (RESOURCE_TAG, "vpc")]);
        assert_eq!(
            whose_tags(&theirs, "s", Step::Vpc).as_deref(),
            Some("it is tagged for privbucket stack t")
        );
        let other_step = whose_tags(&ours, "s", Step::SubnetA).unwrap();
        assert!(
            other_step.contains("this stack's vpc, not its subnet-a"),
            "{other_step}"
        );
        let untagged = whose_tags(&tags(&[("team", "platform")]), "s", Step::Vpc).unwrap();
        assert!(untagged.contains("team=platform"), "{untagged}");
    }
}
