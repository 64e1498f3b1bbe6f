//! VPC, subnets, route tables and their associations, and the security group.
//!
//! `CreateVpc`, `CreateSubnet` and `CreateSecurityGroup` take no client token: a retry after a
//! lost response makes a second resource. They run with the SDK's retries off, are tagged on
//! create, and after an ambiguous failure look for what the call may have made before trying
//! again. `CreateRouteTable` takes a client token and keeps the SDK's retries.
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use aws_config::retry::RetryConfig;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, ResourceType, Tag, TagSpecification, VpcAttributeName,
};

use super::{Ctx, Live, create_reconciled, deleted, deletion, need};
use crate::aws::{Backoff, in_use, retry};
use crate::error::{AwsError, Call, CallResultExt, Kind};
use crate::graph::Step;
use crate::run::Action;
use crate::stack::{RESOURCE_TAG, STACK_TAG};
use crate::state::{Resource, Resources};

/// How long a delete waits for AWS to release what still holds the resource.
pub const DELETE_BUDGET: Duration = Duration::from_secs(5 * 60);

pub fn tag_spec(ctx: &Ctx, step: Step, kind: ResourceType) -> TagSpecification {
    let tags = ctx
        .stack
        .tags(step)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tags))
        .build()
}

pub fn filter(name: &str, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// A filter matching any of several values.
pub fn filter_any(name: &str, values: &[String]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.to_vec()))
        .build()
}

/// The filters that pick out one step's resource of one stack.
pub fn stack_filters(ctx: &Ctx, step: Step) -> Vec<Filter> {
    vec![
        filter(&format!("tag:{STACK_TAG}"), ctx.stack.name.as_str()),
        filter(&format!("tag:{RESOURCE_TAG}"), step.key()),
    ]
}

/// SDK retries off: for creates whose blind retry could make a second resource.
pub fn no_retry() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_config(RetryConfig::disabled())
}

/// A token unique to this create call; the SDK's own retries of the call reuse it.
pub fn client_token(step: Step) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("privbucket-{}-{nanos}", step.key())
}

fn one(step: Step, ctx: &Ctx, ids: Vec<String>) -> Result<Option<Resource>> {
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

/// Looks for a step's resource by its tags.
pub async fn find(step: Step, ctx: &Ctx, res: &Resources) -> Result<Option<Resource>> {
    let ec2 = &ctx.aws.ec2;
    let mut filters = stack_filters(ctx, step);
    if step != Step::Vpc {
        filters.push(filter("vpc-id", need(res, Step::Vpc)?));
    }
    let target = format!("stack {}", ctx.stack.name);
    let ids: Vec<String> = match step {
        Step::Vpc => ec2
            .describe_vpcs()
            .set_filters(Some(filters))
            .send()
            .await
            .call("DescribeVpcs", &target)?
            .vpcs()
            .iter()
            .filter_map(|v| v.vpc_id().map(str::to_string))
            .collect(),
        Step::SubnetA | Step::SubnetB => ec2
            .describe_subnets()
            .set_filters(Some(filters))
            .send()
            .await
            .call("DescribeSubnets", &target)?
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_id().map(str::to_string))
            .collect(),
        Step::RouteTableA | Step::RouteTableB => ec2
            .describe_route_tables()
            .set_filters(Some(filters))
            .send()
            .await
            .call("DescribeRouteTables", &target)?
            .route_tables()
            .iter()
            .filter_map(|r| r.route_table_id().map(str::to_string))
            .collect(),
        Step::SecurityGroup => ec2
            .describe_security_groups()
            .set_filters(Some(filters))
            .send()
            .await
            .call("DescribeSecurityGroups", &target)?
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
        _ => return Ok(None),
    };
    let found = one(step, ctx, ids)?;
    Ok(match (step, found) {
        (Step::SubnetA | Step::SubnetB, Some(r)) => {
            let az = describe_subnet(ctx, &r.id)
                .await?
                .and_then(|s| s.availability_zone().map(str::to_string))
                .unwrap_or_default();
            Some(r.with("availability_zone", az))
        }
        (_, found) => found,
    })
}

pub async fn create_vpc(ctx: &Ctx) -> Result<Resource> {
    let ec2 = &ctx.aws.ec2;
    let cidr = ctx.stack.settings.vpc_cidr.to_string();
    let res = Resources::new();
    // The zones the subnets will need are looked up while the VPC is made.
    let (made, _) = tokio::join!(
        create_reconciled(Step::Vpc, ctx, &res, || async {
            let out = ec2
                .create_vpc()
                .cidr_block(&cidr)
                .tag_specifications(tag_spec(ctx, Step::Vpc, ResourceType::Vpc))
                .customize()
                .config_override(no_retry())
                .send()
                .await
                .call("CreateVpc", &cidr)?;
            let id = out.vpc().and_then(|v| v.vpc_id()).ok_or_else(|| {
                AwsError::new("CreateVpc", &cidr, Kind::Other, "the answer has no VPC ID")
            })?;
            Ok(Resource::new(id))
        }),
        // A failure here is met again, and reported, by the subnets' own lookup.
        zones(ctx),
    );
    let made = made?;
    set_dns(ctx, &made.id).await?;
    Ok(made)
}

async fn set_dns(ctx: &Ctx, vpc: &str) -> Result<()> {
    let on = || AttributeBooleanValue::builder().value(true).build();
    // One attribute per call (the API refuses both at once); the two calls run at once.
    let ec2 = &ctx.aws.ec2;
    let (support, hostnames) = tokio::join!(
        ec2.modify_vpc_attribute()
            .vpc_id(vpc)
            .enable_dns_support(on())
            .send(),
        ec2.modify_vpc_attribute()
            .vpc_id(vpc)
            .enable_dns_hostnames(on())
            .send(),
    );
    support.call("ModifyVpcAttribute", vpc)?;
    hostnames.call("ModifyVpcAttribute", vpc)?;
    Ok(())
}

/// The three reads run at once: `status` stays one round trip deep per resource.
pub async fn observe_vpc(ctx: &Ctx, known: &Resource) -> Result<Live> {
    if let Some(snap) = ctx.ec2.get() {
        let vpc = snap
            .vpcs
            .iter()
            .find(|v| v.vpc_id() == Some(known.id.as_str()));
        return Ok(match vpc {
            None => Live::Missing,
            Some(vpc) => Live::Present(
                known.clone(),
                vpc_diffs(ctx, vpc, snap.dns_support, snap.dns_hostnames),
            ),
        });
    }
    let ec2 = &ctx.aws.ec2;
    let attr = |a: VpcAttributeName| async move {
        ec2.describe_vpc_attribute()
            .vpc_id(&known.id)
            .attribute(a)
            .send()
            .await
            .call("DescribeVpcAttribute", &known.id)
            .found()
    };
    let (out, dns, hostnames) = tokio::join!(
        async {
            ec2.describe_vpcs()
                .vpc_ids(&known.id)
                .send()
                .await
                .call("DescribeVpcs", &known.id)
                .found()
        },
        attr(VpcAttributeName::EnableDnsSupport),
        attr(VpcAttributeName::EnableDnsHostnames),
    );
    let Some(vpc) = out?.and_then(|o| o.vpcs().first().cloned()) else {
        return Ok(Live::Missing);
    };
    let dns = dns?.and_then(|o| o.enable_dns_support().and_then(|v| v.value()));
    let hostnames = hostnames?.and_then(|o| o.enable_dns_hostnames().and_then(|v| v.value()));
    Ok(Live::Present(
        known.clone(),
        vpc_diffs(ctx, &vpc, dns, hostnames),
    ))
}

fn vpc_diffs(
    ctx: &Ctx,
    vpc: &aws_sdk_ec2::types::Vpc,
    dns: Option<bool>,
    hostnames: Option<bool>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let want = ctx.stack.settings.vpc_cidr.to_string();
    if vpc.cidr_block() != Some(want.as_str()) {
        diffs.push(format!(
            "CIDR is {}, expected {want}",
            vpc.cidr_block().unwrap_or("none")
        ));
    }
    if dns != Some(true) {
        diffs.push("DNS support is off".to_string());
    }
    if hostnames != Some(true) {
        diffs.push("DNS hostnames is off".to_string());
    }
    diffs
}

pub async fn fix_vpc(ctx: &Ctx, known: &Resource, diffs: &[String]) -> Result<()> {
    if diffs.iter().any(|d| d.starts_with("CIDR")) {
        bail!(
            "vpc {} has another CIDR than the stack's {} and cannot be changed in place; run \
             `privbucket down` and `privbucket up` to rebuild the stack",
            known.id,
            ctx.stack.settings.vpc_cidr
        );
    }
    set_dns(ctx, &known.id).await
}

/// The region's first two available zones, in name order (as the reference template).
async fn zones(ctx: &Ctx) -> Result<&Vec<String>> {
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

fn subnet_index(step: Step) -> usize {
    match step {
        Step::SubnetA | Step::RouteTableA | Step::AssociationA => 0,
        _ => 1,
    }
}

pub async fn create_subnet(step: Step, ctx: &Ctx, res: &Resources) -> Result<Resource> {
    let i = subnet_index(step);
    let az = zones(ctx).await?[i].clone();
    let vpc = need(res, Step::Vpc)?.to_string();
    let cidr = ctx.stack.settings.subnet_cidrs[i].to_string();
    let ec2 = &ctx.aws.ec2;
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
    .await?;
    Ok(made)
}

async fn describe_subnet(ctx: &Ctx, id: &str) -> Result<Option<aws_sdk_ec2::types::Subnet>> {
    if let Some(snap) = ctx.ec2.get() {
        return Ok(snap
            .subnets
            .iter()
            .find(|s| s.subnet_id() == Some(id))
            .cloned());
    }
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
}

pub async fn observe_subnet(
    step: Step,
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
) -> Result<Live> {
    let Some(subnet) = describe_subnet(ctx, &known.id).await? else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    let want = ctx.stack.settings.subnet_cidrs[subnet_index(step)].to_string();
    if subnet.cidr_block() != Some(want.as_str()) {
        diffs.push(format!(
            "CIDR is {}, expected {want}",
            subnet.cidr_block().unwrap_or("none")
        ));
    }
    if let Some(vpc) = res.get(&Step::Vpc)
        && subnet.vpc_id() != Some(vpc.id.as_str())
    {
        diffs.push(format!(
            "in VPC {}, expected {}",
            subnet.vpc_id().unwrap_or("none"),
            vpc.id
        ));
    }
    if subnet.map_public_ip_on_launch() == Some(true) {
        diffs.push("gives public IPs on launch".to_string());
    }
    let az = subnet.availability_zone().unwrap_or_default();
    Ok(Live::Present(
        known.clone().with("availability_zone", az),
        diffs,
    ))
}

pub async fn fix_subnet(ctx: &Ctx, known: &Resource, diffs: &[String]) -> Result<()> {
    if diffs.iter().any(|d| !d.starts_with("gives public IPs")) {
        bail!(
            "subnet {} differs from what privbucket made ({}) and cannot be changed in place; \
             run `privbucket down` and `privbucket up` to rebuild the stack",
            known.id,
            diffs.join("; ")
        );
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

/// With a client token (AWS returns the first table for a repeated token) and, as for the
/// token-less creates, reconciled by tag: emulators ignore client tokens.
pub async fn create_route_table(step: Step, ctx: &Ctx, res: &Resources) -> Result<Resource> {
    let vpc = need(res, Step::Vpc)?;
    let token = client_token(step);
    create_reconciled(step, ctx, res, || async {
        let out = ctx
            .aws
            .ec2
            .create_route_table()
            .vpc_id(vpc)
            .client_token(&token)
            .tag_specifications(tag_spec(ctx, step, ResourceType::RouteTable))
            .customize()
            .config_override(no_retry())
            .send()
            .await
            .call("CreateRouteTable", vpc)?;
        let id = out
            .route_table()
            .and_then(|r| r.route_table_id())
            .ok_or_else(|| {
                AwsError::new(
                    "CreateRouteTable",
                    vpc,
                    Kind::Other,
                    "the answer has no table ID",
                )
            })?;
        Ok(Resource::new(id))
    })
    .await
}

pub async fn describe_route_table(
    ctx: &Ctx,
    id: &str,
) -> Result<Option<aws_sdk_ec2::types::RouteTable>> {
    if let Some(snap) = ctx.ec2.get() {
        return Ok(snap
            .route_tables
            .iter()
            .find(|t| t.route_table_id() == Some(id))
            .cloned());
    }
    let out = ctx
        .aws
        .ec2
        .describe_route_tables()
        .route_table_ids(id)
        .send()
        .await
        .call("DescribeRouteTables", id)
        .found()?;
    Ok(out.and_then(|o| o.route_tables().first().cloned()))
}

/// Several route tables in one call; a filter (not `RouteTableIds`) so that one missing table
/// does not fail the whole call.
pub async fn describe_route_tables(
    ctx: &Ctx,
    ids: &[String],
) -> Result<Vec<aws_sdk_ec2::types::RouteTable>> {
    if let Some(snap) = ctx.ec2.get() {
        return Ok(snap
            .route_tables
            .iter()
            .filter(|t| {
                t.route_table_id()
                    .is_some_and(|r| ids.iter().any(|i| i == r))
            })
            .cloned()
            .collect());
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = ctx
        .aws
        .ec2
        .describe_route_tables()
        .filters(filter_any("route-table-id", ids))
        .send()
        .await
        .call("DescribeRouteTables", ids.join(", "))?;
    Ok(out.route_tables().to_vec())
}

pub async fn observe_route_table(ctx: &Ctx, res: &Resources, known: &Resource) -> Result<Live> {
    let Some(table) = describe_route_table(ctx, &known.id).await? else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    if let Some(vpc) = res.get(&Step::Vpc)
        && table.vpc_id() != Some(vpc.id.as_str())
    {
        diffs.push(format!(
            "in VPC {}, expected {}",
            table.vpc_id().unwrap_or("none"),
            vpc.id
        ));
    }
    for route in table.routes() {
        let gw = route.gateway_id().unwrap_or_default();
        if gw.starts_with("igw-") || route.nat_gateway_id().is_some() {
            diffs.push(format!(
                "has a route to {} (the subnets should have no way to the internet)",
                route.nat_gateway_id().unwrap_or(gw)
            ));
        }
    }
    Ok(Live::Present(known.clone(), diffs))
}

fn association_parts(step: Step) -> (Step, Step) {
    match step {
        Step::AssociationA => (Step::RouteTableA, Step::SubnetA),
        _ => (Step::RouteTableB, Step::SubnetB),
    }
}

pub async fn find_association(step: Step, ctx: &Ctx, res: &Resources) -> Result<Option<Resource>> {
    let (rt, subnet) = association_parts(step);
    let (rt, subnet) = (need(res, rt)?, need(res, subnet)?);
    let Some(table) = describe_route_table(ctx, rt).await? else {
        return Ok(None);
    };
    Ok(table
        .associations()
        .iter()
        .find(|a| a.subnet_id() == Some(subnet))
        .and_then(|a| a.route_table_association_id())
        .map(|id| {
            Resource::new(id)
                .with("route_table", rt)
                .with("subnet", subnet)
        }))
}

pub async fn create_association(step: Step, ctx: &Ctx, res: &Resources) -> Result<Resource> {
    let (rt, subnet) = association_parts(step);
    let (rt, subnet) = (need(res, rt)?, need(res, subnet)?);
    create_reconciled(step, ctx, res, || async {
        let out = ctx
            .aws
            .ec2
            .associate_route_table()
            .route_table_id(rt)
            .subnet_id(subnet)
            .customize()
            .config_override(no_retry())
            .send()
            .await
            .call("AssociateRouteTable", format!("{rt} and {subnet}"))?;
        let id = out.association_id().ok_or_else(|| {
            AwsError::new(
                "AssociateRouteTable",
                rt,
                Kind::Other,
                "the answer has no ID",
            )
        })?;
        Ok(Resource::new(id)
            .with("route_table", rt)
            .with("subnet", subnet))
    })
    .await
}

pub async fn observe_association(
    step: Step,
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
) -> Result<Live> {
    let (rt, subnet) = association_parts(step);
    let (Some(rt), Some(subnet)) = (res.get(&rt), res.get(&subnet)) else {
        return Ok(Live::Missing);
    };
    let Some(table) = describe_route_table(ctx, &rt.id).await? else {
        return Ok(Live::Missing);
    };
    let present = table.associations().iter().any(|a| {
        a.route_table_association_id() == Some(known.id.as_str())
            && a.subnet_id() == Some(subnet.id.as_str())
    });
    Ok(if present {
        Live::Present(known.clone(), Vec::new())
    } else {
        Live::Missing
    })
}

/// Runs a delete, retrying while AWS still holds the resource (`DependencyViolation`,
/// `InvalidGroup.InUse`), for at most [`DELETE_BUDGET`].
pub async fn delete_when_free<F, Fut>(ctx: &Ctx, what: &str, op: F) -> Result<Action>
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
        Ok(()) => Ok(deleted(true)),
        Err(e) if e.is(Kind::NotFound) => Ok(deleted(false)),
        Err(e) if e.is(Kind::InUse) => Err(anyhow::Error::new(e).context(format!(
            "{what} is still in use after {}; something outside the stack may depend on it \
             (see the message above); remove that, then run `privbucket down` again",
            humantime::format_duration(DELETE_BUDGET)
        ))),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete_vpc(ctx: &Ctx, id: &str) -> Result<Action> {
    delete_when_free(ctx, &format!("vpc {id}"), || async {
        ctx.aws
            .ec2
            .delete_vpc()
            .vpc_id(id)
            .send()
            .await
            .call("DeleteVpc", id)
            .map(|_| ())
    })
    .await
}

pub async fn delete_subnet(ctx: &Ctx, id: &str) -> Result<Action> {
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

pub async fn delete_route_table(ctx: &Ctx, id: &str) -> Result<Action> {
    delete_when_free(ctx, &format!("route table {id}"), || async {
        ctx.aws
            .ec2
            .delete_route_table()
            .route_table_id(id)
            .send()
            .await
            .call("DeleteRouteTable", id)
            .map(|_| ())
    })
    .await
}

pub async fn delete_association(ctx: &Ctx, id: &str) -> Result<Action> {
    deletion(
        ctx.aws
            .ec2
            .disassociate_route_table()
            .association_id(id)
            .send()
            .await
            .call("DisassociateRouteTable", id),
    )
}
