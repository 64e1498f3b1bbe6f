//! One route table per subnet, with no way out but the S3 endpoint's prefix-list route.
//! `CreateRouteTable` takes a client token (AWS returns the first table for a repeated token)
//! and is reconciled by tag as well: emulators ignore client tokens.
use std::fmt;

use anyhow::Result;
use aws_sdk_ec2::types::{ResourceType, RouteTable};

use super::Difference;
use super::Teardown;
use super::contract::{Answer, Contract, done};
use super::ec2::{
    client_token, delete_when_free, filter, no_retry, one_tagged, stack_filters, tag_spec,
};
use super::read::{self, Ec2Read};
use super::{Ctx, Live, Made, create_reconciled, need};
use crate::error::{AwsError, Call, Kind};
use crate::graph::{Side, Step};
use crate::run::Action;
use crate::state::{Resource, Resources};

/// How this kind differs from what it should be: one variant per fact, so `fix` matches
/// on the fact and the words (the `Display`) are only for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drift {
    /// A subnet, route table or security group in another VPC than the stack's.
    OtherVpc { have: String, want: String },
    /// A route to an internet or NAT gateway.
    InternetRoute(String),
}

impl Drift {
    /// Whether `up` can put it right without replacing the resource (see
    /// [`super::Difference::in_place`]).
    pub(crate) fn in_place(&self) -> bool {
        match self {
            Drift::OtherVpc { .. } | Drift::InternetRoute(_) => false,
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::OtherVpc { have, want } => write!(f, "in VPC {have}, expected {want}"),
            Drift::InternetRoute(to) => write!(
                f,
                "has a route to {to} (the subnets should have no way to the internet)"
            ),
        }
    }
}

pub(crate) async fn find(side: Side, ctx: &Ctx, res: &Resources) -> Result<Option<Resource>> {
    let step = side.route_table();
    let mut filters = stack_filters(ctx, step);
    filters.push(filter("vpc-id", need(res, Step::Vpc)?));
    let target = format!("stack {}", ctx.stack.name);
    let ids = read::route_tables(&ctx.aws.ec2, filters, &target)
        .await?
        .iter()
        .filter_map(|r| r.route_table_id().map(str::to_string))
        .collect();
    one_tagged(step, ctx, ids)
}

pub(crate) async fn create(side: Side, ctx: &Ctx, res: &Resources) -> Result<Made<Drift>> {
    let step = side.route_table();
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
    .map(Made::complete)
}

/// Every route table of a VPC, in one call (`verify` finds which one each subnet uses).
pub(crate) async fn in_vpc(ctx: &Ctx, vpc: &str) -> Result<Vec<RouteTable>> {
    let out = ctx
        .aws
        .ec2
        .describe_route_tables()
        .filters(filter("vpc-id", vpc))
        .send()
        .await
        .call("DescribeRouteTables", vpc)?;
    Ok(out.route_tables().to_vec())
}

/// The gateways a table routes to that lead out of the VPC: an internet or a NAT gateway.
/// The one rule `status` and `verify` both apply.
pub(crate) fn internet_routes(table: &RouteTable) -> Vec<String> {
    table
        .routes()
        .iter()
        .filter_map(|r| match (r.gateway_id(), r.nat_gateway_id()) {
            (_, Some(nat)) => Some(nat.to_string()),
            (Some(gw), None) if gw.starts_with("igw-") => Some(gw.to_string()),
            _ => None,
        })
        .collect()
}

/// Where a table sends the S3 prefix list: the gateways, endpoints and NAT gateways of its
/// routes to `prefix_list` (a DynamoDB endpoint's prefix list is another destination).
pub(crate) fn s3_route_targets(table: &RouteTable, prefix_list: &str) -> Vec<String> {
    table
        .routes()
        .iter()
        .filter(|r| r.destination_prefix_list_id() == Some(prefix_list))
        .filter_map(|r| {
            r.gateway_id()
                .or(r.nat_gateway_id())
                .or(r.network_interface_id())
                .or(r.transit_gateway_id())
                .map(str::to_string)
        })
        .collect()
}

/// Whether a table sends the S3 prefix list to the endpoint.
pub(crate) fn routes_s3_to(table: &RouteTable, endpoint: &str) -> bool {
    table
        .routes()
        .iter()
        .any(|r| r.destination_prefix_list_id().is_some() && r.gateway_id() == Some(endpoint))
}

pub(crate) async fn observe(
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
    read: Option<&Ec2Read>,
) -> Result<Live<Drift>> {
    let id = &known.id;
    let Some(table) = read::or_call(
        read,
        |r| r.route_table(id),
        || read::route_table(&ctx.aws.ec2, id),
    )
    .await?
    else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    if let Some(vpc) = res.get(&Step::Vpc)
        && table.vpc_id() != Some(vpc.id.as_str())
    {
        diffs.push(Drift::OtherVpc {
            have: table.vpc_id().unwrap_or("none").to_string(),
            want: vpc.id.clone(),
        });
    }
    diffs.extend(
        internet_routes(&table)
            .into_iter()
            .map(Drift::InternetRoute),
    );
    Ok(Live::Present(known.clone(), diffs))
}

pub(crate) async fn delete(ctx: &Ctx, id: &str) -> Result<Action> {
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

/// One subnet's route table.
#[derive(Debug)]
pub(crate) struct RouteTableStep(pub(crate) Side);

impl Contract for RouteTableStep {
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
        Box::pin(async move { Ok(observe(ctx, res, known, read).await?.widen()) })
    }

    fn fix<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        diffs: &'a [Difference],
    ) -> Answer<'a, ()> {
        // Its only differences are the ones refused before a fix.
        let _ = (ctx, res, known, diffs);
        done(())
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
