//! The two private subnets, one per zone. `CreateSubnet` takes no client token: SDK retries
//! off, reconciled by tag.
use anyhow::{Result, bail};
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Subnet};

use super::difference::Difference;
use super::ec2::{
    delete_when_free, filter, no_retry, one_tagged, snapshot_or, stack_filters, tag_spec,
};
use super::{Ctx, Live, Made, create_reconciled, need};
use crate::error::{AwsError, Call, CallResultExt, Kind};
use crate::graph::{Side, Step};
use crate::run::Action;
use crate::state::{Resource, Resources};

/// The region's first two available zones, in name order (as the original template), looked
/// up once.
pub(crate) async fn zones(ctx: &Ctx) -> Result<&Vec<String>> {
    ctx.azs
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

pub(crate) async fn find(side: Side, ctx: &Ctx, res: &Resources) -> Result<Option<Resource>> {
    let step = side.subnet();
    let mut filters = stack_filters(ctx, step);
    filters.push(filter("vpc-id", need(res, Step::Vpc)?));
    let out = ctx
        .aws
        .ec2
        .describe_subnets()
        .set_filters(Some(filters))
        .send()
        .await
        .call("DescribeSubnets", format!("stack {}", ctx.stack.name))?;
    let ids = out
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id().map(str::to_string))
        .collect();
    let Some(found) = one_tagged(step, ctx, ids)? else {
        return Ok(None);
    };
    let az = out
        .subnets()
        .iter()
        .find(|s| s.subnet_id() == Some(found.id.as_str()))
        .and_then(|s| s.availability_zone())
        .unwrap_or_default()
        .to_string();
    Ok(Some(found.with("availability_zone", az)))
}

pub(crate) async fn create(side: Side, ctx: &Ctx, res: &Resources) -> Result<Made> {
    let step = side.subnet();
    let az = zones(ctx).await?[side.index()].clone();
    let vpc = need(res, Step::Vpc)?.to_string();
    let cidr = ctx.stack.settings.subnet_cidrs[side.index()].to_string();
    let ec2 = &ctx.aws.ec2;
    create_reconciled(step, ctx, res, || async {
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
            .call("CreateSubnet", format!("{cidr} in {vpc}"))?;
        let id = out.subnet().and_then(|s| s.subnet_id()).ok_or_else(|| {
            AwsError::new(
                "CreateSubnet",
                &cidr,
                Kind::Other,
                "the answer has no subnet ID",
            )
        })?;
        Ok(Resource::new(id).with("availability_zone", &az))
    })
    .await
    .map(Made::complete)
}

pub(crate) async fn describe(ctx: &Ctx, id: &str) -> Result<Option<Subnet>> {
    snapshot_or(
        ctx,
        |snap| {
            snap.subnets
                .iter()
                .find(|s| s.subnet_id() == Some(id))
                .cloned()
        },
        || async {
            let out = ctx
                .aws
                .ec2
                .describe_subnets()
                .subnet_ids(id)
                .send()
                .await
                .call("DescribeSubnets", id)
                .found()?;
            Ok(out.and_then(|o| o.subnets().first().cloned()))
        },
    )
    .await
}

pub(crate) async fn observe(
    side: Side,
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
) -> Result<Live> {
    let Some(subnet) = describe(ctx, &known.id).await? else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    let want = ctx.stack.settings.subnet_cidrs[side.index()].to_string();
    if subnet.cidr_block() != Some(want.as_str()) {
        diffs.push(Difference::Cidr {
            have: subnet.cidr_block().unwrap_or("none").to_string(),
            want,
        });
    }
    if let Some(vpc) = res.get(&Step::Vpc)
        && subnet.vpc_id() != Some(vpc.id.as_str())
    {
        diffs.push(Difference::OtherVpc {
            have: subnet.vpc_id().unwrap_or("none").to_string(),
            want: vpc.id.clone(),
        });
    }
    if subnet.map_public_ip_on_launch() == Some(true) {
        diffs.push(Difference::PublicIpOnLaunch);
    }
    let az = subnet.availability_zone().unwrap_or_default();
    Ok(Live::Present(
        known.clone().with("availability_zone", az),
        diffs,
    ))
}

/// Public IPs on launch is the one setting a subnet changes in place.
pub(crate) async fn fix(ctx: &Ctx, known: &Resource, diffs: &[Difference]) -> Result<()> {
    if !diffs.contains(&Difference::PublicIpOnLaunch) {
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
