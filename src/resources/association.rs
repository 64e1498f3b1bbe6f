//! Each route table's association with its subnet. An association has no tags: it is found
//! on its route table.
use anyhow::Result;

use super::Difference;
use super::Teardown;
use super::contract::{Answer, Contract, done};
use super::ec2::no_retry;
use super::read::{self, Ec2Read};
use super::{Ctx, Live, Made, create_reconciled, deletion, need};
use crate::error::{AwsError, Call, Kind};
use crate::graph::Side;
use crate::run::Action;
use crate::state::{Facts, Resource, Resources};

fn parts(side: Side, res: &Resources) -> Result<(&str, &str)> {
    Ok((need(res, side.route_table())?, need(res, side.subnet())?))
}

pub(crate) async fn find(side: Side, ctx: &Ctx, res: &Resources) -> Result<Option<Resource>> {
    let (rt, subnet) = parts(side, res)?;
    let Some(table) = read::route_table(&ctx.aws.ec2, rt).await? else {
        return Ok(None);
    };
    Ok(table
        .associations()
        .iter()
        .find(|a| a.subnet_id() == Some(subnet))
        .and_then(|a| a.route_table_association_id())
        .map(|id| {
            Resource::new(id).with_facts(Facts::Association {
                route_table: rt.to_string(),
                subnet: subnet.to_string(),
            })
        }))
}

pub(crate) async fn create(side: Side, ctx: &Ctx, res: &Resources) -> Result<Made> {
    let (rt, subnet) = parts(side, res)?;
    create_reconciled(side.association(), ctx, res, || async {
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
        Ok(Resource::new(id).with_facts(Facts::Association {
            route_table: rt.to_string(),
            subnet: subnet.to_string(),
        }))
    })
    .await
    .map(Made::complete)
}

pub(crate) async fn observe(
    side: Side,
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
    read: Option<&Ec2Read>,
) -> Result<Live> {
    let (Some(rt), Some(subnet)) = (res.get(&side.route_table()), res.get(&side.subnet())) else {
        return Ok(Live::Missing);
    };
    let id = &rt.id;
    let Some(table) = read::or_call(
        read,
        |r| r.route_table(id),
        || read::route_table(&ctx.aws.ec2, id),
    )
    .await?
    else {
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

pub(crate) async fn delete(ctx: &Ctx, id: &str) -> Result<Action> {
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

/// A route table's association with its subnet.
#[derive(Debug)]
pub(crate) struct AssociationStep(pub(crate) Side);

impl Contract for AssociationStep {
    fn find<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Option<Resource>> {
        Box::pin(find(self.0, ctx, res))
    }

    fn create<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Made> {
        Box::pin(create(self.0, ctx, res))
    }

    fn observe<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        read: Option<&'a Ec2Read>,
    ) -> Answer<'a, Live> {
        Box::pin(observe(self.0, ctx, res, known, read))
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
