//! The VPC: the stack's CIDR, DNS support and hostnames on (the Gateway endpoint's S3 names
//! resolve through the VPC's DNS). `CreateVpc` takes no client token, so it runs with SDK
//! retries off and is reconciled by tag after an ambiguous failure.
use std::fmt;

use anyhow::Result;
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType};

use super::Difference;
use super::Teardown;
use super::contract::{Answer, Contract};
use super::ec2::{delete_when_free, no_retry, once_visible, stack_filters, tag_spec};
use super::read::{self, Ec2Read};
use super::{Ctx, Live, Made, create_reconciled, subnet};
use crate::error::{AwsError, Call, Kind};
use crate::graph::Step;
use crate::run::Action;
use crate::state::{Ownership, Resource, Resources};

/// How this kind differs from what it should be: one variant per fact, so `fix` matches
/// on the fact and the words (the `Display`) are only for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drift {
    /// A VPC's or subnet's CIDR block.
    Cidr {
        have: String,
        want: String,
    },
    DnsSupportOff,
    DnsHostnamesOff,
}

impl Drift {
    /// Whether `up` can put it right without replacing the resource (see
    /// [`super::Difference::in_place`]).
    pub(crate) fn in_place(&self) -> bool {
        match self {
            Drift::Cidr { .. } => false,
            Drift::DnsSupportOff | Drift::DnsHostnamesOff => true,
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Cidr { have, want } => write!(f, "CIDR is {have}, expected {want}"),
            Drift::DnsSupportOff => write!(f, "DNS support is off"),
            Drift::DnsHostnamesOff => write!(f, "DNS hostnames is off"),
        }
    }
}

pub(crate) async fn find(ctx: &Ctx) -> Result<Option<Resource>> {
    let target = format!("stack {}", ctx.stack.name);
    let ids = read::vpcs(&ctx.aws.ec2, stack_filters(ctx, Step::Vpc), &target)
        .await?
        .iter()
        .filter_map(|v| v.vpc_id().map(str::to_string))
        .collect();
    super::ec2::one_tagged(Step::Vpc, ctx, ids)
}

/// A new VPC has DNS hostnames off: `fix` turns both attributes on once it is recorded.
pub(crate) async fn create(ctx: &Ctx) -> Result<Made<Drift>> {
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
        subnet::zones(ctx),
    );
    Ok(Made::lacking(
        made?,
        vec![Drift::DnsSupportOff, Drift::DnsHostnamesOff],
    ))
}

/// Right after `CreateVpc`, EC2 may not see the VPC yet: both calls wait for it.
async fn set_dns(ctx: &Ctx, vpc: &str) -> Result<()> {
    let on = || AttributeBooleanValue::builder().value(true).build();
    // One attribute per call (the API refuses both at once); the two calls run at once.
    let ec2 = &ctx.aws.ec2;
    let (support, hostnames) = tokio::join!(
        once_visible(ctx, || async {
            ec2.modify_vpc_attribute()
                .vpc_id(vpc)
                .enable_dns_support(on())
                .send()
                .await
                .call("ModifyVpcAttribute", vpc)
        }),
        once_visible(ctx, || async {
            ec2.modify_vpc_attribute()
                .vpc_id(vpc)
                .enable_dns_hostnames(on())
                .send()
                .await
                .call("ModifyVpcAttribute", vpc)
        }),
    );
    support?;
    hostnames?;
    Ok(())
}

pub(crate) async fn observe(
    ctx: &Ctx,
    known: &Resource,
    read: Option<&Ec2Read>,
) -> Result<Live<Drift>> {
    let id = &known.id;
    let Some(d) = read::or_call(read, |r| r.vpc(id), || read::vpc(&ctx.aws.ec2, id)).await? else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    // A borrowed VPC is the user's in every other respect; the S3 names the uploader looks up
    // resolve only with the VPC's DNS support on.
    if known.ownership == Ownership::Borrowed {
        if d.dns_support != Some(true) {
            diffs.push(Drift::DnsSupportOff);
        }
        return Ok(Live::Present(known.clone(), diffs));
    }
    let want = ctx.stack.settings.vpc_cidr.to_string();
    if d.vpc.cidr_block() != Some(want.as_str()) {
        diffs.push(Drift::Cidr {
            have: d.vpc.cidr_block().unwrap_or("none").to_string(),
            want,
        });
    }
    if d.dns_support != Some(true) {
        diffs.push(Drift::DnsSupportOff);
    }
    if d.dns_hostnames != Some(true) {
        diffs.push(Drift::DnsHostnamesOff);
    }
    Ok(Live::Present(known.clone(), diffs))
}

/// Only the DNS attributes change in place ([`Drift::in_place`] keeps the rest out).
pub(crate) async fn fix(ctx: &Ctx, known: &Resource, diffs: &[Drift]) -> Result<()> {
    if diffs
        .iter()
        .any(|d| matches!(d, Drift::DnsSupportOff | Drift::DnsHostnamesOff))
    {
        set_dns(ctx, &known.id).await?;
    }
    Ok(())
}

pub(crate) async fn delete(ctx: &Ctx, id: &str) -> Result<Action> {
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

/// The VPC.
#[derive(Debug)]
pub(crate) struct VpcStep;

impl Contract for VpcStep {
    fn find<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Option<Resource>> {
        let _ = res;
        Box::pin(find(ctx))
    }

    fn create<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Made> {
        let _ = res;
        Box::pin(async move { Ok(create(ctx).await?.widen()) })
    }

    fn observe<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        read: Option<&'a Ec2Read>,
    ) -> Answer<'a, Live> {
        let _ = res;
        Box::pin(async move { Ok(observe(ctx, known, read).await?.widen()) })
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

    /// Its DNS attributes are read by no later step.
    fn finished_beside(&self) -> bool {
        true
    }
}
