//! One read of every EC2 resource of a stack: one `DescribeX` per kind, with the stack's IDs
//! as a filter (a filter, unlike an ID list, does not fail the call when one is gone), all at
//! once. `status` takes it first; the observe functions then read from it instead of calling.
use anyhow::Result;
use aws_sdk_ec2::types::{RouteTable, SecurityGroup, Subnet, Vpc, VpcAttributeName, VpcEndpoint};

use super::Ctx;
use super::network::filter_any;
use crate::error::{Call, CallResultExt};
use crate::graph::Step;
use crate::state::Resources;

#[derive(Debug, Default)]
pub struct Ec2Snapshot {
    pub vpcs: Vec<Vpc>,
    pub dns_support: Option<bool>,
    pub dns_hostnames: Option<bool>,
    pub subnets: Vec<Subnet>,
    pub route_tables: Vec<RouteTable>,
    pub security_groups: Vec<SecurityGroup>,
    pub endpoints: Vec<VpcEndpoint>,
}

fn ids(res: &Resources, steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| res.get(s).map(|r| r.id.clone()))
        .collect()
}

pub async fn take(ctx: &Ctx, res: &Resources) -> Result<Ec2Snapshot> {
    let ec2 = &ctx.aws.ec2;
    let vpc = ids(res, &[Step::Vpc]);
    let subnets = ids(res, &[Step::SubnetA, Step::SubnetB]);
    let tables = ids(res, &[Step::RouteTableA, Step::RouteTableB]);
    let groups = ids(res, &[Step::SecurityGroup]);
    let endpoints = ids(res, &[Step::Endpoint]);
    let attr = |a: VpcAttributeName| {
        let vpc = vpc.first().cloned();
        async move {
            let Some(vpc) = vpc else { return Ok(None) };
            let out = ec2
                .describe_vpc_attribute()
                .vpc_id(&vpc)
                .attribute(a.clone())
                .send()
                .await
                .call("DescribeVpcAttribute", &vpc)
                .found()?;
            Ok::<_, anyhow::Error>(out.and_then(|o| {
                match a {
                    VpcAttributeName::EnableDnsSupport => o.enable_dns_support(),
                    _ => o.enable_dns_hostnames(),
                }
                .and_then(|v| v.value())
            }))
        }
    };
    let (v, dns, hosts, s, t, g, e, pl) = tokio::join!(
        async {
            if vpc.is_empty() {
                return Ok(Vec::new());
            }
            let out = ec2
                .describe_vpcs()
                .filters(filter_any("vpc-id", &vpc))
                .send()
                .await
                .call("DescribeVpcs", vpc.join(", "))?;
            Ok::<_, anyhow::Error>(out.vpcs().to_vec())
        },
        attr(VpcAttributeName::EnableDnsSupport),
        attr(VpcAttributeName::EnableDnsHostnames),
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
        super::network::describe_route_tables(ctx, &tables),
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
        vpcs: v?,
        dns_support: dns?,
        dns_hostnames: hosts?,
        subnets: s?,
        route_tables: t?,
        security_groups: g?,
        endpoints: e?,
    })
}
