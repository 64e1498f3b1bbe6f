//! The uploader's security group, and its egress: by default only tcp/443 to the S3 prefix
//! list, so the function can reach S3 (through the endpoint) and nothing else. EC2 gives every
//! new group an allow-all egress rule; it is revoked. With `--no-egress-limit` the group keeps
//! (or gets back) that default rule and nothing else.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{Result, anyhow};
use aws_sdk_ec2::types::{IpPermission, ResourceType, Tag};

use super::Difference;
use super::Teardown;
use super::contract::{Answer, Contract};
use super::ec2::{
    delete_when_free, filter, no_retry, once_visible, one_tagged, stack_filters, tag_spec_with,
};
use super::egress::{Rule, egress};
use super::endpoint::shared::{ADDED_TABLE_TAG, group_tags};
use super::read::{self, Ec2Read};
use super::{Ctx, Live, Made, create_reconciled, need};
use crate::error::{AwsError, Call, Kind};
use crate::graph::Step;
use crate::run::Action;
use crate::state::{Resource, Resources};

/// How this kind differs from what it should be: one variant per fact, so `fix` matches
/// on the fact and the words (the `Display`) are only for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drift {
    /// A subnet, route table or security group in another VPC than the stack's.
    OtherVpc {
        have: String,
        want: String,
    },
    EgressMissing(Rule),
    EgressExtra(Rule),
    /// A tag that says which route table privbucket added to a borrowed endpoint for the
    /// stack (`endpoint::shared`): missing, naming another endpoint, or for a table the
    /// stack does not share.
    SharedTable {
        key: String,
        have: Option<String>,
        want: Option<String>,
    },
}

impl Drift {
    /// Whether `up` can put it right without replacing the resource (see
    /// [`super::Difference::in_place`]).
    pub(crate) fn in_place(&self) -> bool {
        match self {
            Drift::OtherVpc { .. } => false,
            Drift::EgressMissing(_) | Drift::EgressExtra(_) | Drift::SharedTable { .. } => true,
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::OtherVpc { have, want } => write!(f, "in VPC {have}, expected {want}"),
            Drift::EgressMissing(r) => write!(f, "egress {r} is missing"),
            Drift::EgressExtra(r) => write!(f, "egress {r} should not be there"),
            Drift::SharedTable { key, have, want } => match want {
                Some(want) => write!(
                    f,
                    "tag {key} is {}, expected {want}",
                    have.as_deref().unwrap_or("missing")
                ),
                None => write!(f, "tag {key} should not be there"),
            },
        }
    }
}

/// The egress rules the group should have.
pub(crate) async fn wanted_egress(ctx: &Ctx) -> Result<BTreeSet<Rule>> {
    Ok(if ctx.stack.settings.egress_limit {
        [Rule::https_to(read::s3_prefix_list(ctx).await?)].into()
    } else {
        [Rule::allow_all()].into()
    })
}

/// The group's tags for shared route tables against what the state says the stack shares.
fn shared_table_differences(have: &[Tag], want: &BTreeMap<String, String>) -> Vec<Drift> {
    let have: BTreeMap<&str, &str> = have
        .iter()
        .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
        .filter(|(k, _)| k.starts_with(ADDED_TABLE_TAG))
        .collect();
    let keys: BTreeSet<&str> = have
        .keys()
        .copied()
        .chain(want.keys().map(String::as_str))
        .collect();
    keys.into_iter()
        .filter_map(|k| {
            let (h, w) = (have.get(k).copied(), want.get(k).map(String::as_str));
            (h != w).then(|| Drift::SharedTable {
                key: k.to_string(),
                have: h.map(str::to_string),
                want: w.map(str::to_string),
            })
        })
        .collect()
}

fn egress_differences(have: &BTreeSet<Rule>, want: &BTreeSet<Rule>) -> Vec<Drift> {
    let missing = want.difference(have).cloned().map(Drift::EgressMissing);
    let extra = have.difference(want).cloned().map(Drift::EgressExtra);
    missing.chain(extra).collect()
}

/// Brings the group's egress to exactly the wanted rules: authorize first, then revoke, so
/// the function is never left with no way to S3.
/// Right after `CreateSecurityGroup`, EC2 may not see the group yet: each call waits for it.
async fn set_egress(ctx: &Ctx, id: &str) -> Result<()> {
    let ec2 = &ctx.aws.ec2;
    let found = once_visible(ctx, || async {
        ec2.describe_security_groups()
            .group_ids(id)
            .send()
            .await
            .call("DescribeSecurityGroups", id)
    })
    .await
    .map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "security group {id} could not be read while privbucket set its egress; run \
             `privbucket up` again"
        ))
    })?;
    let group = found.security_groups().first().cloned().ok_or_else(|| {
        anyhow!(
            "security group {id} disappeared while privbucket set its egress; run \
             `privbucket up` again"
        )
    })?;
    let have = egress(&group);
    let want = wanted_egress(ctx).await?;
    let add: Vec<IpPermission> = want.difference(&have).map(Rule::permission).collect();
    let remove: Vec<IpPermission> = have.difference(&want).map(Rule::permission).collect();
    if !add.is_empty() {
        once_visible(ctx, || async {
            let r = ec2
                .authorize_security_group_egress()
                .group_id(id)
                .set_ip_permissions(Some(add.clone()))
                .send()
                .await
                .call("AuthorizeSecurityGroupEgress", id);
            match r {
                // A retried call whose first attempt took effect.
                Err(e) if e.code.as_deref() == Some("InvalidPermission.Duplicate") => Ok(()),
                r => r.map(|_| ()),
            }
        })
        .await?;
    }
    if !remove.is_empty() {
        once_visible(ctx, || async {
            let r = ec2
                .revoke_security_group_egress()
                .group_id(id)
                .set_ip_permissions(Some(remove.clone()))
                .send()
                .await
                .call("RevokeSecurityGroupEgress", id);
            match r {
                // Already revoked: not the group missing.
                Err(e) if e.code.as_deref() == Some("InvalidPermission.NotFound") => Ok(()),
                r => r.map(|_| ()),
            }
        })
        .await?;
    }
    Ok(())
}

pub(crate) async fn find(ctx: &Ctx, res: &Resources) -> Result<Option<Resource>> {
    let mut filters = stack_filters(ctx, Step::SecurityGroup);
    filters.push(filter("vpc-id", need(res, Step::Vpc)?));
    let out = ctx
        .aws
        .ec2
        .describe_security_groups()
        .set_filters(Some(filters))
        .send()
        .await
        .call(
            "DescribeSecurityGroups",
            format!("stack {}", ctx.stack.name),
        )?;
    let ids = out
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    one_tagged(Step::SecurityGroup, ctx, ids)
}

/// EC2 gives a new group an allow-all egress rule: what it lacks is the difference from the
/// wanted egress, which `fix` sets once the group is recorded.
pub(crate) async fn create(ctx: &Ctx, res: &Resources) -> Result<Made<Drift>> {
    let vpc = need(res, Step::Vpc)?.to_string();
    let name = ctx.stack.security_group_name();
    let ec2 = &ctx.aws.ec2;
    let create = create_reconciled(Step::SecurityGroup, ctx, res, || async {
        let out = ec2
            .create_security_group()
            .group_name(&name)
            .description(format!(
                "privbucket {}: network interfaces of the uploader function",
                ctx.stack.name
            ))
            .vpc_id(&vpc)
            // In a borrowed network, a tag per route table privbucket added for the stack.
            .tag_specifications(tag_spec_with(
                ctx,
                Step::SecurityGroup,
                ResourceType::SecurityGroup,
                group_tags(res).into_iter().collect(),
            ))
            .customize()
            .config_override(no_retry())
            .send()
            .await
            .call("CreateSecurityGroup", format!("{name} in {vpc}"))?;
        let id = out.group_id().ok_or_else(|| {
            AwsError::new(
                "CreateSecurityGroup",
                &name,
                Kind::Other,
                "the answer has no group ID",
            )
        })?;
        Ok(Resource::new(id))
    });
    // The prefix list is looked up while the group is made, not after.
    let lookup = async {
        if ctx.stack.settings.egress_limit {
            read::s3_prefix_list(ctx).await.map(|_| ())
        } else {
            Ok(())
        }
    };
    let (made, looked_up) = tokio::join!(create, lookup);
    let made = made?;
    looked_up?;
    let lacks = egress_differences(&[Rule::allow_all()].into(), &wanted_egress(ctx).await?);
    Ok(Made::lacking(made, lacks))
}

pub(crate) async fn observe(
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
    read: Option<&Ec2Read>,
) -> Result<Live<Drift>> {
    let id = &known.id;
    let Some(group) = read::or_call(
        read,
        |r| r.security_group(id),
        || read::security_group(&ctx.aws.ec2, id),
    )
    .await?
    else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    if let Some(vpc) = res.get(&Step::Vpc)
        && group.vpc_id() != Some(vpc.id.as_str())
    {
        diffs.push(Drift::OtherVpc {
            have: group.vpc_id().unwrap_or("none").to_string(),
            want: vpc.id.clone(),
        });
    }
    diffs.extend(egress_differences(
        &egress(&group),
        &wanted_egress(ctx).await?,
    ));
    diffs.extend(shared_table_differences(group.tags(), &group_tags(res)));
    Ok(Live::Present(known.clone(), diffs))
}

/// Egress is set in place (a group in another VPC is refused before, by `resources::fix`).
pub(crate) async fn fix(ctx: &Ctx, known: &Resource, diffs: &[Drift]) -> Result<()> {
    if diffs
        .iter()
        .any(|d| matches!(d, Drift::EgressMissing(_) | Drift::EgressExtra(_)))
    {
        set_egress(ctx, &known.id).await?;
    }
    set_shared_tables(ctx, &known.id, diffs).await
}

/// Puts the group's shared-table tags back as the state says.
async fn set_shared_tables(ctx: &Ctx, id: &str, diffs: &[Drift]) -> Result<()> {
    let (mut put, mut remove) = (Vec::new(), Vec::new());
    for d in diffs {
        if let Drift::SharedTable { key, want, .. } = d {
            match want {
                Some(v) => put.push(Tag::builder().key(key).value(v).build()),
                None => remove.push(Tag::builder().key(key).build()),
            }
        }
    }
    let ec2 = &ctx.aws.ec2;
    if !put.is_empty() {
        ec2.create_tags()
            .resources(id)
            .set_tags(Some(put))
            .send()
            .await
            .call("CreateTags", id)?;
    }
    if !remove.is_empty() {
        ec2.delete_tags()
            .resources(id)
            .set_tags(Some(remove))
            .send()
            .await
            .call("DeleteTags", id)?;
    }
    Ok(())
}

pub(crate) async fn delete(ctx: &Ctx, id: &str) -> Result<Action> {
    delete_when_free(ctx, &format!("security group {id}"), || async {
        ctx.aws
            .ec2
            .delete_security_group()
            .group_id(id)
            .send()
            .await
            .call("DeleteSecurityGroup", id)
            .map(|_| ())
    })
    .await
}

/// The uploader's security group.
#[derive(Debug)]
pub(crate) struct SecurityGroupStep;

impl Contract for SecurityGroupStep {
    fn find<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Option<Resource>> {
        Box::pin(find(ctx, res))
    }

    fn create<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Made> {
        Box::pin(async move { Ok(create(ctx, res).await?.widen()) })
    }

    fn observe<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        read: Option<&'a Ec2Read>,
    ) -> Answer<'a, Live> {
        Box::pin(async move { Ok(observe(ctx, res, known, read).await?.widen()) })
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
        _down: &'a Teardown,
    ) -> Answer<'a, Action> {
        Box::pin(delete(ctx, &known.id))
    }

    /// A function is made in the group whatever its egress rules.
    fn finished_beside(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::SecurityGroup;

    #[test]
    fn differences_name_each_rule() {
        let have: BTreeSet<Rule> = [Rule::allow_all()].into();
        let want: BTreeSet<Rule> = [Rule::https_to("pl-63a5400a")].into();
        let words: Vec<String> = egress_differences(&have, &want)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            words,
            vec![
                "egress tcp/443 to pl-63a5400a is missing",
                "egress all traffic to 0.0.0.0/0 should not be there"
            ]
        );
        assert!(egress_differences(&want, &want).is_empty());
    }

    #[test]
    fn a_permission_reads_back_as_the_same_rule() {
        for rule in [Rule::allow_all(), Rule::https_to("pl-1")] {
            let group = SecurityGroup::builder()
                .ip_permissions_egress(rule.permission())
                .build();
            assert_eq!(egress(&group), [rule].into());
        }
    }
}
