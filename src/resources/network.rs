//! The user's own network (`up --vpc --subnets`): checked before any change, and read as AWS
//! applies it. privbucket borrows the VPC and the subnets: it records them (the VPC's record
//! carries the subnets, each with the route table AWS applies to it), and never changes, tags
//! or deletes them.
use std::collections::BTreeSet;

use anyhow::Result;
use aws_sdk_ec2::types::{RouteTable, SecurityGroup};

use super::Ctx;
use super::ec2::{filter, filter_any, tag};
use super::read;
use crate::config::BorrowedNetwork;
use crate::error::{Call, input};
use crate::graph::{Side, Step};
use crate::stack::{RESOURCE_TAG, STACK_TAG};
use crate::state::{BorrowedSubnet, Facts, Ownership, Resource, Resources};

/// The most subnets a Lambda function's VPC configuration takes (`VpcConfig.SubnetIds`,
/// Lambda API reference: "Maximum number of 16 items").
const MAX_SUBNETS: usize = 16;

/// Checks the borrowed network and reads it as AWS applies it, with reads only: the VPC and
/// every subnet exist in this account and region, each subnet is in the VPC and in one of the
/// region's Availability Zones (Lambda does not run in Local or Wavelength Zones: the Local
/// Zones features page does not list it). Returns the VPC's record, borrowed, with the
/// subnets and their route tables. Every problem is an input error (exit 2).
pub(crate) async fn borrow(ctx: &Ctx, net: &BorrowedNetwork) -> Result<Resource> {
    let vpc = net.vpc.as_str();
    let where_ = format!(
        "account {}, region {}",
        ctx.stack.account_id, ctx.stack.region
    );
    if net.subnets.len() > MAX_SUBNETS {
        return input(format!(
            "--subnets names {} subnets; a Lambda function takes at most {MAX_SUBNETS}",
            net.subnets.len()
        ));
    }
    let ids: Vec<String> = net.subnets.iter().map(|s| s.as_str().to_string()).collect();
    let ec2 = &ctx.aws.ec2;
    let named = ids.join(",");
    let (vpcs, subnets, tables) = tokio::join!(
        read::vpcs(ec2, vec![filter("vpc-id", vpc)], vpc),
        read::subnets(ec2, vec![filter_any("subnet-id", &ids)], &named),
        read::route_tables(ec2, vec![filter("vpc-id", vpc)], vpc),
    );
    let (vpcs, subnets, tables) = (vpcs?, subnets?, tables?);
    if vpcs.is_empty() {
        return input(format!(
            "VPC {vpc} (--vpc) does not exist in {where_}: check the ID, and the region \
             (--region) it is in"
        ));
    }
    let zones = availability_zones(ctx).await?;
    let mut borrowed = Vec::new();
    for id in &ids {
        let Some(s) = subnets.iter().find(|s| s.subnet_id() == Some(id.as_str())) else {
            return input(format!(
                "subnet {id} (--subnets) does not exist in {where_}: check the ID"
            ));
        };
        let in_vpc = s.vpc_id().unwrap_or("none");
        if in_vpc != vpc {
            return input(format!(
                "subnet {id} (--subnets) is in VPC {in_vpc}, not in {vpc} (--vpc): name \
                 subnets of that one VPC"
            ));
        }
        let zone = s.availability_zone().unwrap_or_default().to_string();
        if !zones.contains(&zone) {
            return input(format!(
                "subnet {id} is in {zone}, which is not one of region {}'s Availability \
                 Zones (a Local or Wavelength Zone): Lambda does not run there; name subnets \
                 in the region's Availability Zones",
                ctx.stack.region
            ));
        }
        let Some((table, main)) = table_of(&tables, id) else {
            return input(format!(
                "subnet {id} has no route table, and VPC {vpc} no main route table: \
                 privbucket cannot route S3 traffic from it"
            ));
        };
        borrowed.push(BorrowedSubnet {
            id: id.clone(),
            availability_zone: zone,
            availability_zone_id: s.availability_zone_id().map(str::to_string),
            route_table: table,
            main_route_table: main,
        });
    }
    Ok(Resource::new(vpc)
        .owned_as(Ownership::Borrowed)
        .with_facts(Facts::Network { subnets: borrowed }))
}

/// What a borrowed network asks the user to know before `up` changes anything: one zone
/// only, and the main route table (a route added there reaches every subnet without an
/// association of its own).
pub(crate) fn cautions(vpc: &Resource) -> Vec<String> {
    let subnets = vpc.borrowed_subnets();
    let mut notes = Vec::new();
    let zones: BTreeSet<&str> = subnets
        .iter()
        .map(|s| s.availability_zone.as_str())
        .collect();
    if zones.len() == 1 {
        notes.push(format!(
            "warning: the subnets are all in zone {}: the uploader runs in one zone only, and \
             stops when that zone does; name subnets in two zones or more for availability",
            zones.iter().next().copied().unwrap_or_default()
        ));
    }
    for s in subnets.iter().filter(|s| s.main_route_table) {
        notes.push(format!(
            "subnet {} has no route table of its own: it uses VPC {}'s main route table {}. \
             The S3 endpoint route privbucket may add there applies to every subnet without a \
             route table of its own",
            s.id, vpc.id, s.route_table
        ));
    }
    notes
}

/// The route table AWS applies to a subnet: its explicit association, else the VPC's main
/// table; and whether it is the main one.
pub(crate) fn table_of(tables: &[RouteTable], subnet: &str) -> Option<(String, bool)> {
    let explicit = tables.iter().find(|t| {
        t.associations()
            .iter()
            .any(|a| a.subnet_id() == Some(subnet))
    });
    let main = || {
        tables
            .iter()
            .find(|t| t.associations().iter().any(|a| a.main() == Some(true)))
    };
    match (explicit, main()) {
        (Some(t), _) => t.route_table_id().map(|id| (id.to_string(), false)),
        (None, Some(t)) => t.route_table_id().map(|id| (id.to_string(), true)),
        (None, None) => None,
    }
}

/// The region's Availability Zones (not Local or Wavelength Zones), by name.
async fn availability_zones(ctx: &Ctx) -> Result<BTreeSet<String>> {
    let region = ctx.stack.region.to_string();
    let out = ctx
        .aws
        .ec2
        .describe_availability_zones()
        .filters(filter("zone-type", "availability-zone"))
        .send()
        .await
        .call("DescribeAvailabilityZones", &region)?;
    Ok(out
        .availability_zones()
        .iter()
        .filter_map(|z| z.zone_name().map(str::to_string))
        .collect())
}

/// Whether the stack borrows its network.
pub(crate) fn borrowed(ctx: &Ctx) -> bool {
    ctx.stack.settings.network.is_some()
}

/// The subnets the uploader runs in: the borrowed ones, or the two privbucket made.
pub(crate) fn subnet_ids(res: &Resources) -> Vec<String> {
    match res.get(&Step::Vpc) {
        Some(v) if v.ownership == Ownership::Borrowed => {
            v.borrowed_subnets().iter().map(|s| s.id.clone()).collect()
        }
        _ => Side::BOTH
            .iter()
            .filter_map(|s| res.get(&s.subnet()).map(|r| r.id.clone()))
            .collect(),
    }
}

/// The route tables of the stack's subnets, each once: the borrowed subnets' (several may
/// share one, the main table), or the two privbucket made.
pub(crate) fn route_tables(res: &Resources) -> BTreeSet<String> {
    match res.get(&Step::Vpc) {
        Some(v) if v.ownership == Ownership::Borrowed => v
            .borrowed_subnets()
            .iter()
            .map(|s| s.route_table.clone())
            .collect(),
        _ => [Step::RouteTableA, Step::RouteTableB]
            .iter()
            .filter_map(|s| res.get(s).map(|r| r.id.clone()))
            .collect(),
    }
}

/// The other privbucket stacks' security groups in a VPC, by their tags: a stack's uploader
/// runs there as long as its group exists, and the group's tags say what the stack shares
/// (`endpoint::shared`).
pub(crate) async fn other_groups(ctx: &Ctx, vpc: &str) -> Result<Vec<SecurityGroup>> {
    let groups = read::security_groups(
        &ctx.aws.ec2,
        vec![
            filter("vpc-id", vpc),
            filter(&format!("tag:{RESOURCE_TAG}"), Step::SecurityGroup.key()),
        ],
        vpc,
    )
    .await?;
    Ok(groups
        .into_iter()
        .filter(|g| tag(g.tags(), STACK_TAG).is_some_and(|s| s != ctx.stack.name.as_str()))
        .collect())
}

/// The stacks the groups are of, each once, sorted.
pub(crate) fn stacks_of(groups: &[SecurityGroup]) -> Vec<String> {
    let stacks: BTreeSet<String> = groups
        .iter()
        .filter_map(|g| tag(g.tags(), STACK_TAG))
        .map(str::to_string)
        .collect();
    stacks.into_iter().collect()
}

/// The endpoints the bucket policy names: the stack's endpoint, then the other endpoints
/// serving the uploader's subnets in a borrowed network.
pub(crate) fn endpoint_ids(res: &Resources) -> Vec<String> {
    let Some(e) = res.get(&Step::Endpoint) else {
        return Vec::new();
    };
    let mut ids = vec![e.id.clone()];
    ids.extend(e.endpoint_facts().1.iter().cloned());
    ids
}
