//! What the account holds of privbucket stacks, read without a state: the regions, the
//! roles and buckets (global), and per region each EC2 kind by the `privbucket:stack` tag and
//! the functions by their names. `privbucket list` renders it.
use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use aws_sdk_ec2::types::Tag;

use super::ec2::tag;
use super::read;
use crate::aws::Clients;
use crate::code::BUCKET_VARIABLES;
use crate::error::Call;
use crate::graph::{Function, ResourceKind, Step};
use crate::stack::{self, RESOURCE_TAG, STACK_TAG};

/// Whether `list` finds a kind. Associations are found on their route tables and the bucket
/// policy on its bucket, by `discovery`, not by a listing; the ENIs are not the stack's; a KMS
/// key is found by its alias (listing the account's keys' tags costs a call per key).
pub(crate) fn lists(kind: ResourceKind) -> bool {
    match kind {
        ResourceKind::Vpc
        | ResourceKind::Subnet
        | ResourceKind::RouteTable
        | ResourceKind::Endpoint
        | ResourceKind::SecurityGroup
        | ResourceKind::Role
        | ResourceKind::Bucket
        | ResourceKind::Function => true,
        ResourceKind::Association
        | ResourceKind::BucketPolicy
        | ResourceKind::Key
        | ResourceKind::LambdaEnis => false,
    }
}

/// What one region holds, by stack name.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Step → ID, from the `privbucket:resource` tag (EC2) or the derived names.
    pub(crate) found: BTreeMap<String, BTreeMap<Step, String>>,
    /// The bucket each stack's functions name.
    pub(crate) buckets: BTreeMap<String, String>,
    /// The VPC each stack's security group is in: a stack in a borrowed network tags no VPC.
    pub(crate) group_vpcs: BTreeMap<String, String>,
}

/// The regions enabled for the account (`DescribeRegions` answers only those by default).
pub(crate) async fn enabled_regions(clients: &Clients) -> Result<Vec<String>> {
    let out = clients
        .ec2
        .describe_regions()
        .send()
        .await
        .call("DescribeRegions", "the account's regions")?;
    let mut names: Vec<String> = out
        .regions()
        .iter()
        .filter_map(|r| r.region_name().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

pub(crate) async fn role_names(clients: &Clients) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let mut pages = clients.iam.list_roles().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.call("ListRoles", "the account's roles")?;
        names.extend(page.roles().iter().map(|r| r.role_name().to_string()));
    }
    Ok(names)
}

pub(crate) async fn bucket_names(clients: &Clients) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let mut pages = clients.s3.list_buckets().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.call("ListBuckets", "the account's buckets")?;
        names.extend(
            page.buckets()
                .iter()
                .filter_map(|b| b.name().map(str::to_string)),
        );
    }
    Ok(names)
}

/// One region, in one round: each EC2 kind by the stack tag, and the functions.
pub(crate) async fn read_region(clients: Clients, region: &str) -> Result<Seen> {
    let target = format!("region {region}");
    let functions = async {
        let mut all = Vec::new();
        let mut pages = clients.lambda.list_functions().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.call("ListFunctions", &target)?;
            all.extend(page.functions().to_vec());
        }
        Ok::<_, anyhow::Error>(all)
    };
    let (ec2, fns) = tokio::join!(
        read::all(
            &clients.ec2,
            read::By::Tag {
                key: STACK_TAG,
                value: None,
            },
            &target,
        ),
        functions,
    );
    let ec2 = ec2?;
    let mut seen = Seen::default();
    let mut put = |tags: &[Tag], id: Option<&str>| {
        let (Some(name), Some(step), Some(id)) = (
            tag(tags, STACK_TAG),
            tag(tags, RESOURCE_TAG).and_then(Step::from_key),
            id,
        ) else {
            return;
        };
        seen.found
            .entry(name.to_string())
            .or_default()
            .insert(step, id.to_string());
    };
    for x in &ec2.vpcs {
        put(x.vpc.tags(), x.vpc.vpc_id());
    }
    for x in &ec2.subnets {
        put(x.tags(), x.subnet_id());
    }
    for x in &ec2.route_tables {
        put(x.tags(), x.route_table_id());
    }
    let mut group_vpcs = BTreeMap::new();
    for x in &ec2.security_groups {
        put(x.tags(), x.group_id());
        if let (Some(name), Some(vpc)) = (tag(x.tags(), STACK_TAG), x.vpc_id()) {
            group_vpcs.insert(name.to_string(), vpc.to_string());
        }
    }
    for x in &ec2.endpoints {
        put(x.tags(), x.vpc_endpoint_id());
    }
    seen.group_vpcs = group_vpcs;
    // privbucket's functions are named for their stack and carry PRIVATE_BUCKET.
    for f in fns? {
        let Some(name) = f.function_name() else {
            continue;
        };
        let bucket = f
            .environment()
            .and_then(|e| e.variables())
            .and_then(|v| v.get(BUCKET_VARIABLES[0]));
        let Some(bucket) = bucket else {
            continue;
        };
        for which in Function::BOTH {
            if let Some(stack) = stack::stack_of_function(name, which) {
                seen.found
                    .entry(stack.to_string())
                    .or_default()
                    .insert(which.step(), name.to_string());
                seen.buckets.insert(stack.to_string(), bucket.clone());
            }
        }
    }
    Ok(seen)
}
