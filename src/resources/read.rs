//! The one reader of EC2. Each kind is read by one call, typed, with its tags: by ID (one
//! resource an `observe` needs), by filters (a kind's `find`, by the stack's tags), or every
//! kind at once ([`all`]: `status`, `up`'s survey, discovery and `list`).
//!
//! What a command has read it passes on explicitly: an `observe` given an [`Ec2Read`] reads
//! from it, one given none calls AWS. Nothing switches behind a caller's back.
use std::future::Future;

use anyhow::{Result, anyhow};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Filter, RouteTable, SecurityGroup, Subnet, Vpc, VpcAttributeName, VpcEndpoint,
};

use super::Ctx;
use super::ec2::{filter, filter_any};
use crate::error::{Call, CallResultExt};
use crate::graph::Step;
use crate::state::Resources;

/// A VPC with its two DNS attributes (`None`: not read, or not answered).
#[derive(Debug, Clone)]
pub(crate) struct VpcRead {
    pub(crate) vpc: Vpc,
    pub(crate) dns_support: Option<bool>,
    pub(crate) dns_hostnames: Option<bool>,
}

/// EC2 objects as read, one call per kind. Endpoints being deleted or failed are left out.
#[derive(Debug, Default, Clone)]
pub(crate) struct Ec2Read {
    pub(crate) vpcs: Vec<VpcRead>,
    pub(crate) subnets: Vec<Subnet>,
    pub(crate) route_tables: Vec<RouteTable>,
    pub(crate) security_groups: Vec<SecurityGroup>,
    pub(crate) endpoints: Vec<VpcEndpoint>,
}

impl Ec2Read {
    pub(crate) fn vpc(&self, id: &str) -> Option<VpcRead> {
        self.vpcs
            .iter()
            .find(|v| v.vpc.vpc_id() == Some(id))
            .cloned()
    }

    pub(crate) fn subnet(&self, id: &str) -> Option<Subnet> {
        self.subnets
            .iter()
            .find(|s| s.subnet_id() == Some(id))
            .cloned()
    }

    pub(crate) fn route_table(&self, id: &str) -> Option<RouteTable> {
        self.route_tables
            .iter()
            .find(|t| t.route_table_id() == Some(id))
            .cloned()
    }

    pub(crate) fn route_tables_of(&self, ids: &[String]) -> Vec<RouteTable> {
        self.route_tables
            .iter()
            .filter(|t| {
                t.route_table_id()
                    .is_some_and(|r| ids.iter().any(|i| i == r))
            })
            .cloned()
            .collect()
    }

    pub(crate) fn security_group(&self, id: &str) -> Option<SecurityGroup> {
        self.security_groups
            .iter()
            .find(|g| g.group_id() == Some(id))
            .cloned()
    }

    pub(crate) fn endpoint(&self, id: &str) -> Option<VpcEndpoint> {
        self.endpoints
            .iter()
            .find(|e| e.vpc_endpoint_id() == Some(id))
            .cloned()
    }
}

/// From what the caller read, when it read; else one call.
pub(crate) async fn or_call<T, Fut>(
    read: Option<&Ec2Read>,
    from_read: impl FnOnce(&Ec2Read) -> T,
    call: impl FnOnce() -> Fut,
) -> Result<T>
where
    Fut: Future<Output = Result<T>>,
{
    match read {
        Some(r) => Ok(from_read(r)),
        None => call().await,
    }
}

/// The endpoint's state in lower case: EC2 answers `available` where the SDK's enum says
/// `Available`, so the enum's variants do not match what AWS sends.
pub(crate) fn endpoint_state(e: &VpcEndpoint) -> String {
    e.state()
        .map(|s| s.as_str().to_ascii_lowercase())
        .unwrap_or_else(|| "unknown".to_string())
}

pub(crate) fn is_gone(e: &VpcEndpoint) -> bool {
    matches!(
        endpoint_state(e).as_str(),
        "deleted" | "deleting" | "failed"
    )
}

/// The VPC and its two attributes, read at once; `None` when the VPC is gone.
pub(crate) async fn vpc(ec2: &Client, id: &str) -> Result<Option<VpcRead>> {
    let attr = |a: VpcAttributeName| async move {
        ec2.describe_vpc_attribute()
            .vpc_id(id)
            .attribute(a)
            .send()
            .await
            .call("DescribeVpcAttribute", id)
            .found()
    };
    let (out, dns, hostnames) = tokio::join!(
        async {
            ec2.describe_vpcs()
                .vpc_ids(id)
                .send()
                .await
                .call("DescribeVpcs", id)
                .found()
        },
        attr(VpcAttributeName::EnableDnsSupport),
        attr(VpcAttributeName::EnableDnsHostnames),
    );
    let Some(vpc) = out?.and_then(|o| o.vpcs().first().cloned()) else {
        return Ok(None);
    };
    Ok(Some(VpcRead {
        vpc,
        dns_support: dns?.and_then(|o| o.enable_dns_support().and_then(|v| v.value())),
        dns_hostnames: hostnames?.and_then(|o| o.enable_dns_hostnames().and_then(|v| v.value())),
    }))
}

pub(crate) async fn subnet(ec2: &Client, id: &str) -> Result<Option<Subnet>> {
    let out = ec2
        .describe_subnets()
        .subnet_ids(id)
        .send()
        .await
        .call("DescribeSubnets", id)
        .found()?;
    Ok(out.and_then(|o| o.subnets().first().cloned()))
}

pub(crate) async fn route_table(ec2: &Client, id: &str) -> Result<Option<RouteTable>> {
    let out = ec2
        .describe_route_tables()
        .route_table_ids(id)
        .send()
        .await
        .call("DescribeRouteTables", id)
        .found()?;
    Ok(out.and_then(|o| o.route_tables().first().cloned()))
}

pub(crate) async fn security_group(ec2: &Client, id: &str) -> Result<Option<SecurityGroup>> {
    let out = ec2
        .describe_security_groups()
        .group_ids(id)
        .send()
        .await
        .call("DescribeSecurityGroups", id)
        .found()?;
    Ok(out.and_then(|o| o.security_groups().first().cloned()))
}

/// One endpoint by ID; `None` when it is gone (or being deleted).
pub(crate) async fn endpoint(ec2: &Client, id: &str) -> Result<Option<VpcEndpoint>> {
    Ok(endpoints_by_id(ec2, &[id.to_string()])
        .await?
        .into_iter()
        .next())
}

/// Several route tables in one call; a filter (not `RouteTableIds`) so that one missing
/// table does not fail the whole call.
pub(crate) async fn route_tables_of(ec2: &Client, ids: &[String]) -> Result<Vec<RouteTable>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    route_tables(
        ec2,
        vec![filter_any("route-table-id", ids)],
        &ids.join(", "),
    )
    .await
}

/// By ID: moto does not filter endpoints by `vpc-endpoint-id`. A stack has one endpoint, so
/// "not found" means it is gone.
pub(crate) async fn endpoints_by_id(ec2: &Client, ids: &[String]) -> Result<Vec<VpcEndpoint>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = ec2
        .describe_vpc_endpoints()
        .set_vpc_endpoint_ids(Some(ids.to_vec()))
        .send()
        .await
        .call("DescribeVpcEndpoints", ids.join(", "))
        .found()?;
    Ok(out
        .map(|o| o.vpc_endpoints().to_vec())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !is_gone(e))
        .collect())
}

pub(crate) async fn vpcs(ec2: &Client, filters: Vec<Filter>, target: &str) -> Result<Vec<Vpc>> {
    let out = ec2
        .describe_vpcs()
        .set_filters(Some(filters))
        .send()
        .await
        .call("DescribeVpcs", target)?;
    Ok(out.vpcs().to_vec())
}

pub(crate) async fn subnets(
    ec2: &Client,
    filters: Vec<Filter>,
    target: &str,
) -> Result<Vec<Subnet>> {
    let out = ec2
        .describe_subnets()
        .set_filters(Some(filters))
        .send()
        .await
        .call("DescribeSubnets", target)?;
    Ok(out.subnets().to_vec())
}

pub(crate) async fn route_tables(
    ec2: &Client,
    filters: Vec<Filter>,
    target: &str,
) -> Result<Vec<RouteTable>> {
    let out = ec2
        .describe_route_tables()
        .set_filters(Some(filters))
        .send()
        .await
        .call("DescribeRouteTables", target)?;
    Ok(out.route_tables().to_vec())
}

pub(crate) async fn security_groups(
    ec2: &Client,
    filters: Vec<Filter>,
    target: &str,
) -> Result<Vec<SecurityGroup>> {
    let out = ec2
        .describe_security_groups()
        .set_filters(Some(filters))
        .send()
        .await
        .call("DescribeSecurityGroups", target)?;
    Ok(out.security_groups().to_vec())
}

/// Endpoints by filters, those being deleted or failed left out.
pub(crate) async fn endpoints(
    ec2: &Client,
    filters: Vec<Filter>,
    target: &str,
) -> Result<Vec<VpcEndpoint>> {
    let out = ec2
        .describe_vpc_endpoints()
        .set_filters(Some(filters))
        .send()
        .await
        .call("DescribeVpcEndpoints", target)?;
    Ok(out
        .vpc_endpoints()
        .iter()
        .filter(|e| !is_gone(e))
        .cloned()
        .collect())
}

/// What [`all`] reads.
#[derive(Debug)]
pub(crate) enum By<'a> {
    /// The IDs a state records, with the VPC's DNS attributes. A filter by ID, unlike an ID
    /// list, does not fail the call when one is gone.
    Ids(&'a Resources),
    /// Everything carrying the tag `key` (with `value`, when given).
    Tag {
        key: &'a str,
        value: Option<&'a str>,
    },
}

fn ids(res: &Resources, steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| res.get(s).map(|r| r.id.clone()))
        .collect()
}

/// The filters that pick `steps`' resources out of one kind: by their recorded IDs (`None`
/// when none is recorded: nothing to read), or by the tag.
fn select(by: &By<'_>, name: &str, steps: &[Step]) -> Option<Vec<Filter>> {
    match by {
        By::Ids(res) => {
            let ids = ids(res, steps);
            (!ids.is_empty()).then(|| vec![filter_any(name, &ids)])
        }
        By::Tag { key, value } => Some(vec![match value {
            Some(v) => filter(&format!("tag:{key}"), *v),
            None => filter("tag-key", *key),
        }]),
    }
}

/// Every EC2 kind at once, one call each (by IDs, the VPC with its two attributes).
pub(crate) async fn all(ec2: &Client, by: By<'_>, target: &str) -> Result<Ec2Read> {
    let (v, s, t, g, e) = tokio::join!(
        async {
            match &by {
                By::Ids(res) => match res.get(&Step::Vpc) {
                    Some(r) => Ok(vpc(ec2, &r.id).await?.into_iter().collect()),
                    None => Ok(Vec::new()),
                },
                By::Tag { .. } => {
                    let f = select(&by, "vpc-id", &[Step::Vpc]).unwrap_or_default();
                    Ok::<_, anyhow::Error>(
                        vpcs(ec2, f, target)
                            .await?
                            .into_iter()
                            .map(|vpc| VpcRead {
                                vpc,
                                dns_support: None,
                                dns_hostnames: None,
                            })
                            .collect(),
                    )
                }
            }
        },
        async {
            match select(&by, "subnet-id", &[Step::SubnetA, Step::SubnetB]) {
                Some(f) => subnets(ec2, f, target).await,
                None => Ok(Vec::new()),
            }
        },
        async {
            match select(
                &by,
                "route-table-id",
                &[Step::RouteTableA, Step::RouteTableB],
            ) {
                Some(f) => route_tables(ec2, f, target).await,
                None => Ok(Vec::new()),
            }
        },
        async {
            match select(&by, "group-id", &[Step::SecurityGroup]) {
                Some(f) => security_groups(ec2, f, target).await,
                None => Ok(Vec::new()),
            }
        },
        async {
            match &by {
                By::Ids(res) => endpoints_by_id(ec2, &ids(res, &[Step::Endpoint])).await,
                By::Tag { .. } => match select(&by, "vpc-endpoint-id", &[Step::Endpoint]) {
                    Some(f) => endpoints(ec2, f, target).await,
                    None => Ok(Vec::new()),
                },
            }
        },
    );
    Ok(Ec2Read {
        vpcs: v?,
        subnets: s?,
        route_tables: t?,
        security_groups: g?,
        endpoints: e?,
    })
}

/// The ID of the region's S3 prefix list (`com.amazonaws.<region>.s3`), looked up once.
pub(crate) async fn s3_prefix_list(ctx: &Ctx) -> Result<&str> {
    ctx.s3_prefix_list
        .get_or_try_init(|| async {
            let name = ctx.stack.s3_service();
            let out = ctx
                .aws
                .ec2
                .describe_prefix_lists()
                .filters(filter("prefix-list-name", &name))
                .send()
                .await
                .call("DescribePrefixLists", &name)?;
            out.prefix_lists()
                .iter()
                .find(|p| p.prefix_list_name() == Some(name.as_str()))
                .and_then(|p| p.prefix_list_id())
                .map(str::to_string)
                .ok_or_else(|| {
                    anyhow!(
                        "EC2 has no prefix list {name} in {}; egress cannot be limited to S3 \
                         there. Run `privbucket up --no-egress-limit` to keep the default \
                         egress",
                        ctx.stack.region
                    )
                })
        })
        .await
        .map(String::as_str)
}
