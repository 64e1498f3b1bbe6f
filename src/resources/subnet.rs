//! The two private subnets, one per zone. `CreateSubnet` takes no client token: SDK retries
//! off, reconciled by tag.
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Mutex;

use anyhow::{Result, anyhow, bail};
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Subnet};
use tokio::sync::OnceCell;

use super::Difference;
use super::Teardown;
use super::contract::{Answer, Contract};
use super::ec2::{delete_when_free, filter, no_retry, one_tagged, stack_filters, tag_spec};
use super::read::{self, Ec2Read};
use super::{Ctx, Live, Made, create_reconciled, need};
use crate::error::{AwsError, Call, Kind};
use crate::graph::{Side, Step};
use crate::run::Action;
use crate::state::{Facts, Resource, Resources};

/// How this kind differs from what it should be: one variant per fact, so `fix` matches
/// on the fact and the words (the `Display`) are only for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drift {
    /// A VPC's or subnet's CIDR block.
    Cidr {
        have: String,
        want: String,
    },
    /// A subnet in another zone than `--zones` asks for.
    Zone {
        have: String,
        want: String,
    },
    /// A subnet, route table or security group in another VPC than the stack's.
    OtherVpc {
        have: String,
        want: String,
    },
    PublicIpOnLaunch,
}

impl Drift {
    /// Whether `up` can put it right without replacing the resource (see
    /// [`super::Difference::in_place`]).
    pub(crate) fn in_place(&self) -> bool {
        match self {
            Drift::Cidr { .. } | Drift::Zone { .. } | Drift::OtherVpc { .. } => false,
            Drift::PublicIpOnLaunch => true,
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Cidr { have, want } => write!(f, "CIDR is {have}, expected {want}"),
            Drift::Zone { have, want } => write!(f, "in zone {have}, expected {want}"),
            Drift::OtherVpc { have, want } => write!(f, "in VPC {have}, expected {want}"),
            Drift::PublicIpOnLaunch => write!(f, "gives public IPs on launch"),
        }
    }
}

/// The region's zones, and the zone each subnet goes in. Without `--zones`, the subnets go in
/// the region's first two available zones in name order (as the original template), and a
/// subnet refused by its zone moves to one the refusal lists.
#[derive(Debug, Default)]
pub(crate) struct Zones {
    names: OnceCell<Vec<String>>,
    pick: Mutex<Pick>,
}

#[derive(Debug, Default)]
struct Pick {
    /// Zones that refused a subnet.
    refused: BTreeSet<String>,
    /// The zones a refusal said take subnets, when one did.
    allowed: Option<BTreeSet<String>>,
    /// The zone each side was given, by `Side::index`.
    given: [Option<String>; 2],
}

/// The region's available zones, in name order, looked up once.
pub(crate) async fn zones(ctx: &Ctx) -> Result<&Vec<String>> {
    ctx.zones
        .names
        .get_or_try_init(|| async {
            let region = ctx.stack.region.to_string();
            let out = ctx
                .aws
                .ec2
                .describe_availability_zones()
                .filters(filter("state", "available"))
                .filters(filter("zone-type", "availability-zone"))
                .send()
                .await
                .call("DescribeAvailabilityZones", &region)?;
            let mut names: Vec<String> = out
                .availability_zones()
                .iter()
                .filter_map(|z| z.zone_name().map(str::to_string))
                .collect();
            names.sort();
            if names.len() < 2 {
                bail!(
                    "region {region} has {} available availability zone(s); the stack needs two \
                     subnets in two zones: choose another region with --region",
                    names.len()
                );
            }
            Ok(names)
        })
        .await
}

/// The zone for a side's subnet: `--zones` if given; else the side's own default unless a
/// zone refused it, then the first zone that takes subnets and is not the other subnet's.
async fn zone_for(side: Side, ctx: &Ctx, res: &Resources) -> Result<String> {
    if let Some(z) = &ctx.stack.settings.zones {
        let zone = z[side.index()].as_str();
        if !zone.starts_with(ctx.stack.region.as_str()) {
            bail!(
                "zone {zone} (--zones) is not in region {}; name two of its zones, or choose \
                 the region with --region",
                ctx.stack.region
            );
        }
        return Ok(zone.to_string());
    }
    let names = zones(ctx).await?;
    let other = 1 - side.index();
    let mut pick = ctx
        .zones
        .pick
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let other_zone = Side::BOTH
        .iter()
        .find(|s| s.index() == other)
        .and_then(|s| res.get(&s.subnet()))
        .and_then(|r| r.zone().map(str::to_string))
        .or_else(|| pick.given[other].clone());
    let usable = |z: &String| {
        !pick.refused.contains(z)
            && pick.allowed.as_ref().is_none_or(|a| a.contains(z))
            && Some(z) != other_zone.as_ref()
    };
    let own = &names[side.index()];
    let zone = if usable(own) {
        own.clone()
    } else {
        names.iter().find(|z| usable(z)).cloned().ok_or_else(|| {
            anyhow!(
                "no zone of region {} is left for subnet {}: refused by {}; choose two zones \
                 that take subnets with --zones",
                ctx.stack.region,
                side.subnet().key(),
                pick.refused.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })?
    };
    pick.given[side.index()] = Some(zone.clone());
    Ok(zone)
}

/// EC2's refusal of a zone for new subnets ("Value (us-east-1a) for parameter
/// availabilityZone is invalid. Subnets can currently only be created in the following
/// availability zones: us-east-1b, …"; `DescribeAvailabilityZones` lists such a zone as
/// available: hashicorp/terraform#3434, openshift/installer#1789): the zones it lists.
fn zones_allowed(e: &AwsError) -> Option<BTreeSet<String>> {
    const LIST: &str = "only be created in the following availability zones:";
    if e.code.as_deref() != Some("InvalidParameterValue") {
        return None;
    }
    let m = e.message.as_deref()?;
    let list = &m[m.find(LIST)? + LIST.len()..];
    Some(
        list.trim()
            .trim_end_matches('.')
            .split(',')
            .map(|z| z.trim().to_string())
            .filter(|z| !z.is_empty())
            .collect(),
    )
}

/// Notes a zone's refusal: the next `zone_for` picks another. `false` when `--zones` fixed the
/// zones (the refusal is the user's to see).
fn refused(ctx: &Ctx, zone: &str, allowed: BTreeSet<String>) -> bool {
    if ctx.stack.settings.zones.is_some() {
        return false;
    }
    let mut pick = ctx
        .zones
        .pick
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    pick.refused.insert(zone.to_string());
    pick.allowed = Some(allowed);
    true
}

pub(crate) async fn find(side: Side, ctx: &Ctx, res: &Resources) -> Result<Option<Resource>> {
    let step = side.subnet();
    let mut filters = stack_filters(ctx, step);
    filters.push(filter("vpc-id", need(res, Step::Vpc)?));
    let subnets =
        read::subnets(&ctx.aws.ec2, filters, &format!("stack {}", ctx.stack.name)).await?;
    let ids = subnets
        .iter()
        .filter_map(|s| s.subnet_id().map(str::to_string))
        .collect();
    let Some(found) = one_tagged(step, ctx, ids)? else {
        return Ok(None);
    };
    Ok(Some(
        match subnets
            .iter()
            .find(|s| s.subnet_id() == Some(found.id.as_str()))
        {
            Some(s) => with_zone(found, s),
            None => found,
        },
    ))
}

pub(crate) async fn create(side: Side, ctx: &Ctx, res: &Resources) -> Result<Made<Drift>> {
    let step = side.subnet();
    let vpc = need(res, Step::Vpc)?.to_string();
    let cidr = ctx.stack.settings.subnet_cidrs[side.index()].to_string();
    let ec2 = &ctx.aws.ec2;
    loop {
        let az = zone_for(side, ctx, res).await?;
        let made = create_reconciled(step, ctx, res, || async {
            let out = ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block(&cidr)
                .availability_zone(&az)
                .tag_specifications(tag_spec(ctx, step, ResourceType::Subnet))
                .customize()
                .config_override(no_retry())
                .send()
                .await
                .call("CreateSubnet", format!("{cidr} in {vpc}, zone {az}"))?;
            let subnet = out.subnet().ok_or_else(|| {
                AwsError::new(
                    "CreateSubnet",
                    &cidr,
                    Kind::Other,
                    "the answer has no subnet",
                )
            })?;
            let id = subnet.subnet_id().ok_or_else(|| {
                AwsError::new(
                    "CreateSubnet",
                    &cidr,
                    Kind::Other,
                    "the answer has no subnet ID",
                )
            })?;
            Ok(with_zone(Resource::new(id), subnet))
        })
        .await;
        match made {
            Err(e) => {
                if let Some(aws) = e.downcast_ref::<AwsError>()
                    && let Some(allowed) = zones_allowed(aws)
                    && refused(ctx, &az, allowed)
                {
                    ctx.progress.note(&format!(
                        "zone {az} takes no new subnets now; {} goes in another zone",
                        step.key()
                    ));
                    continue;
                }
                return Err(e);
            }
            Ok(r) => return Ok(Made::complete(r)),
        }
    }
}

/// A subnet's zone name and zone ID (the ID names the same place in every account; the name
/// does not).
pub(crate) fn with_zone(r: Resource, s: &Subnet) -> Resource {
    r.with_facts(Facts::Subnet {
        availability_zone: s.availability_zone().unwrap_or_default().to_string(),
        availability_zone_id: s.availability_zone_id().map(str::to_string),
    })
}

pub(crate) async fn observe(
    side: Side,
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
    read: Option<&Ec2Read>,
) -> Result<Live<Drift>> {
    let id = &known.id;
    let Some(subnet) =
        read::or_call(read, |r| r.subnet(id), || read::subnet(&ctx.aws.ec2, id)).await?
    else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    let want = ctx.stack.settings.subnet_cidrs[side.index()].to_string();
    if subnet.cidr_block() != Some(want.as_str()) {
        diffs.push(Drift::Cidr {
            have: subnet.cidr_block().unwrap_or("none").to_string(),
            want,
        });
    }
    if let Some(vpc) = res.get(&Step::Vpc)
        && subnet.vpc_id() != Some(vpc.id.as_str())
    {
        diffs.push(Drift::OtherVpc {
            have: subnet.vpc_id().unwrap_or("none").to_string(),
            want: vpc.id.clone(),
        });
    }
    if subnet.map_public_ip_on_launch() == Some(true) {
        diffs.push(Drift::PublicIpOnLaunch);
    }
    if let Some(z) = &ctx.stack.settings.zones
        && subnet.availability_zone() != Some(z[side.index()].as_str())
    {
        diffs.push(Drift::Zone {
            have: subnet.availability_zone().unwrap_or("none").to_string(),
            want: z[side.index()].to_string(),
        });
    }
    Ok(Live::Present(with_zone(known.clone(), &subnet), diffs))
}

/// Public IPs on launch is the one setting a subnet changes in place.
pub(crate) async fn fix(ctx: &Ctx, known: &Resource, diffs: &[Drift]) -> Result<()> {
    if !diffs.contains(&Drift::PublicIpOnLaunch) {
        return Ok(());
    }
    ctx.aws
        .ec2
        .modify_subnet_attribute()
        .subnet_id(&known.id)
        .map_public_ip_on_launch(AttributeBooleanValue::builder().value(false).build())
        .send()
        .await
        .call("ModifySubnetAttribute", &known.id)?;
    Ok(())
}

pub(crate) async fn delete(ctx: &Ctx, id: &str) -> Result<Action> {
    delete_when_free(ctx, &format!("subnet {id}"), || async {
        ctx.aws
            .ec2
            .delete_subnet()
            .subnet_id(id)
            .send()
            .await
            .call("DeleteSubnet", id)
            .map(|_| ())
    })
    .await
}

/// One of the two subnets.
#[derive(Debug)]
pub(crate) struct SubnetStep(pub(crate) Side);

impl Contract for SubnetStep {
    fn find<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Option<Resource>> {
        Box::pin(find(self.0, ctx, res))
    }

    fn create<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Made> {
        Box::pin(async move { Ok(create(self.0, ctx, res).await?.widen()) })
    }

    fn observe<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        read: Option<&'a Ec2Read>,
    ) -> Answer<'a, Live> {
        Box::pin(async move { Ok(observe(self.0, ctx, res, known, read).await?.widen()) })
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
}
