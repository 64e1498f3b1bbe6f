//! One read of every EC2 resource of a stack: one `DescribeX` per kind, with the stack's IDs
//! as a filter (a filter, unlike an ID list, does not fail the call when one is gone), all at
//! once. `status` takes it first; the observe functions then read from it instead of calling.
use anyhow::Result;
use aws_sdk_ec2::types::{RouteTable, SecurityGroup, Subnet, VpcEndpoint};

use super::ec2::filter_any;
use super::{Ctx, vpc};
use crate::error::{Call, CallResultExt};
use crate::graph::Step;
use crate::state::Resources;

#[derive(Debug, Default)]
pub(crate) struct Ec2Snapshot {
    pub(crate) vpc: Option<vpc::Described>,
    pub(crate) subnets: Vec<Subnet>,
    pub(crate) route_tables: Vec<RouteTable>,
    pub(crate) security_groups: Vec<SecurityGroup>,
    pub(crate) endpoints: Vec<VpcEndpoint>,
}

fn ids(res: &Resources, steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| res.get(s).map(|r| r.id.clone()))
        .collect()
}

/// Taken before `ctx.ec2` is set, so the families' describes it uses call AWS.
pub(crate) async fn take(ctx: &Ctx, res: &Resources) -> Result<Ec2Snapshot> {
    let ec2 = &ctx.aws.ec2;
    let vpc = res.get(&Step::Vpc).map(|r| r.id.clone());
    let subnets = ids(res, &[Step::SubnetA, Step::SubnetB]);
    let tables = ids(res, &[Step::RouteTableA, Step::RouteTableB]);
    let groups = ids(res, &[Step::SecurityGroup]);
    let endpoints = ids(res, &[Step::Endpoint]);
    let (v, s, t, g, e, pl) = tokio::join!(
        async {
            match &vpc {
                Some(id) => super::vpc::describe(ctx, id).await,
                None => Ok(None),
            }
        },
        async {
            if subnets.is_empty() {
                return Ok(Vec::new());
            }
            let out = ec2
                .describe_subnets()
                .filters(filter_any("subnet-id", &subnets))
                .send()
                .await
                .call("DescribeSubnets", subnets.join(", "))?;
            Ok::<_, anyhow::Error>(out.subnets().to_vec())
        },
        super::route_table::describe_many(ctx, &tables),
        async {
            if groups.is_empty() {
                return Ok(Vec::new());
            }
            let out = ec2
                .describe_security_groups()
                .filters(filter_any("group-id", &groups))
                .send()
                .await
                .call("DescribeSecurityGroups", groups.join(", "))?;
            Ok::<_, anyhow::Error>(out.security_groups().to_vec())
        },
        async {
            if endpoints.is_empty() {
                return Ok(Vec::new());
            }
            // By ID: moto does not filter endpoints by `vpc-endpoint-id`. The stack has one
            // endpoint, so "not found" means it is gone.
            let out = ec2
                .describe_vpc_endpoints()
                .set_vpc_endpoint_ids(Some(endpoints.clone()))
                .send()
                .await
                .call("DescribeVpcEndpoints", endpoints.join(", "))
                .found()?;
            Ok::<_, anyhow::Error>(out.map(|o| o.vpc_endpoints().to_vec()).unwrap_or_default())
        },
        // The security group's wanted egress names it: read alongside, not after.
        async {
            if groups.is_empty() || !ctx.stack.settings.egress_limit {
                return Ok(());
            }
            super::security_group::s3_prefix_list(ctx).await.map(|_| ())
        },
    );
    pl?;
    Ok(Ec2Snapshot {
        vpc: v?,
        subnets: s?,
        route_tables: t?,
        security_groups: g?,
        endpoints: e?,
    })
}
