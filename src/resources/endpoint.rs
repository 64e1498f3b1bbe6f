//! The S3 Gateway endpoint: on both route tables, where it adds the route for the S3 prefix
//! list. `CreateVpcEndpoint` takes a client token, so the SDK's own retries are safe.
use std::collections::BTreeSet;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, anyhow, bail};
use aws_sdk_ec2::types::{ResourceType, VpcEndpoint, VpcEndpointType};

use super::contract::{Answer, Contract};
use super::difference::Difference;
use super::ec2::{
    EC2_PROPAGATION, VISIBLE_BACKOFF, client_token, filter, no_retry, one_tagged, snapshot_or,
    stack_filters, tag_spec,
};
use super::{Ctx, Live, Made, create_reconciled, need, route_table};
use crate::aws::poll;
use crate::error::{AwsError, Call, CallResultExt, Kind};
use crate::graph::Step;
use crate::policy;
use crate::run::Action;
use crate::state::{Resource, Resources};

const WAIT: Duration = Duration::from_secs(5 * 60);

fn route_tables(res: &Resources) -> Result<BTreeSet<String>> {
    Ok(
        [need(res, Step::RouteTableA)?, need(res, Step::RouteTableB)?]
            .into_iter()
            .map(str::to_string)
            .collect(),
    )
}

/// The endpoint's state in lower case: EC2 answers `available` where the SDK's enum says
/// `Available`, so the enum's variants do not match what AWS sends.
fn state(e: &VpcEndpoint) -> String {
    e.state()
        .map(|s| s.as_str().to_ascii_lowercase())
        .unwrap_or_else(|| "unknown".to_string())
}

pub(crate) fn is_gone(e: &VpcEndpoint) -> bool {
    matches!(state(e).as_str(), "deleted" | "deleting" | "failed")
}

/// The endpoint (from the snapshot when there is one); `None` when it is gone.
pub(crate) async fn describe(ctx: &Ctx, id: &str) -> Result<Option<VpcEndpoint>> {
    snapshot_or(
        ctx,
        |snap| {
            snap.endpoints
                .iter()
                .find(|e| e.vpc_endpoint_id() == Some(id) && !is_gone(e))
                .cloned()
        },
        || async {
            let out = ctx
                .aws
                .ec2
                .describe_vpc_endpoints()
                .vpc_endpoint_ids(id)
                .send()
                .await
                .call("DescribeVpcEndpoints", id)
                .found()?;
            Ok(out
                .and_then(|o| o.vpc_endpoints().first().cloned())
                .filter(|e| !is_gone(e)))
        },
    )
    .await
}

pub(crate) async fn find(ctx: &Ctx, res: &Resources) -> Result<Option<Resource>> {
    let vpc = need(res, Step::Vpc)?;
    let mut filters = stack_filters(ctx, Step::Endpoint);
    filters.push(filter("vpc-id", vpc));
    let out = ctx
        .aws
        .ec2
        .describe_vpc_endpoints()
        .set_filters(Some(filters))
        .send()
        .await
        .call("DescribeVpcEndpoints", format!("stack {}", ctx.stack.name))?;
    let ids = out
        .vpc_endpoints()
        .iter()
        .filter(|e| !is_gone(e))
        .filter_map(|e| e.vpc_endpoint_id().map(str::to_string))
        .collect();
    one_tagged(Step::Endpoint, ctx, ids)
}

/// A Gateway endpoint is usually `available` at once; when it is `pending`, `fix` waits for
/// it once it is recorded.
pub(crate) async fn create(ctx: &Ctx, res: &Resources) -> Result<Made> {
    let vpc = need(res, Step::Vpc)?;
    let tables: Vec<String> = route_tables(res)?.into_iter().collect();
    let token = client_token(Step::Endpoint);
    let target = format!("{} in {vpc}", ctx.stack.s3_service());
    let ready = AtomicBool::new(false);
    let made = create_reconciled(Step::Endpoint, ctx, res, || async {
        let out = ctx
            .aws
            .ec2
            .create_vpc_endpoint()
            .vpc_id(vpc)
            .service_name(ctx.stack.s3_service())
            .vpc_endpoint_type(VpcEndpointType::Gateway)
            .set_route_table_ids(Some(tables.clone()))
            .policy_document(desired_policy(ctx).to_string())
            .client_token(&token)
            .tag_specifications(tag_spec(ctx, Step::Endpoint, ResourceType::VpcEndpoint))
            .customize()
            .config_override(no_retry())
            .send()
            .await
            .call("CreateVpcEndpoint", &target)?;
        let id = out
            .vpc_endpoint()
            .and_then(|e| e.vpc_endpoint_id())
            .ok_or_else(|| {
                AwsError::new(
                    "CreateVpcEndpoint",
                    &target,
                    Kind::Other,
                    "the answer has no ID",
                )
            })?;
        if out.vpc_endpoint().is_some_and(|e| state(e) == "available") {
            ready.store(true, Ordering::Relaxed);
        }
        Ok(Resource::new(id))
    })
    .await?;
    // One adopted after a lost answer is waited for as a new one is.
    let lacks = if ready.load(Ordering::Relaxed) {
        Vec::new()
    } else {
        vec![Difference::EndpointState("pending".to_string())]
    };
    Ok(Made::lacking(made, lacks))
}

/// The policy the endpoint should have: this bucket only, or (hardening off) the full access
/// AWS gives an endpoint by default.
fn desired_policy(ctx: &Ctx) -> serde_json::Value {
    if ctx.stack.settings.endpoint_policy {
        policy::endpoint_policy(ctx.stack.partition(), ctx.stack.bucket())
    } else {
        policy::full_access()
    }
}

/// How the endpoint's policy differs from what it should be.
fn policy_differences(ctx: &Ctx, e: &VpcEndpoint) -> Vec<Difference> {
    let want = desired_policy(ctx);
    let Some(live) = e.policy_document().and_then(policy::parse) else {
        return vec![Difference::EndpointPolicy(format!(
            "is unreadable, should be {want}"
        ))];
    };
    if ctx.stack.settings.endpoint_policy {
        policy::statement_differences(&live, &want)
            .into_iter()
            .map(Difference::EndpointPolicy)
            .collect()
    } else if policy::allows_everything(&live) {
        Vec::new()
    } else {
        vec![Difference::EndpointPolicy(format!(
            "is {live}, should be AWS's default full access"
        ))]
    }
}

/// Polls often (at most 2 s apart), so the wait ends soon after the endpoint is available.
/// Right after `CreateVpcEndpoint`, EC2 may not list it yet: that counts as pending, for up
/// to [`EC2_PROPAGATION`]; gone after it was seen is an error.
async fn wait_available(ctx: &Ctx, id: &str) -> Result<()> {
    let started = tokio::time::Instant::now();
    let seen = std::sync::atomic::AtomicBool::new(false);
    let ready = poll(WAIT, VISIBLE_BACKOFF, || async {
        match describe(ctx, id).await?.map(|e| state(&e)) {
            Some(s) if s == "available" => Ok(Some(())),
            Some(s) => {
                seen.store(true, std::sync::atomic::Ordering::Relaxed);
                ctx.progress.wait(Step::Endpoint, &format!("{id} is {s}"));
                Ok(None)
            }
            None if !seen.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < EC2_PROPAGATION =>
            {
                ctx.progress
                    .wait(Step::Endpoint, &format!("{id} is not listed by EC2 yet"));
                Ok(None)
            }
            None => bail!("VPC endpoint {id} disappeared while privbucket waited for it"),
        }
    })
    .await?;
    ready.ok_or_else(|| {
        anyhow!(
            "VPC endpoint {id} was not available after {}; run `privbucket up` again to keep \
             waiting",
            humantime::format_duration(WAIT)
        )
    })
}

/// The endpoint and its route tables are read at once (one round trip).
pub(crate) async fn observe(ctx: &Ctx, res: &Resources, known: &Resource) -> Result<Live> {
    let want = route_tables(res).unwrap_or_default();
    let ids: Vec<String> = want.iter().cloned().collect();
    let (e, tables) = tokio::join!(
        describe(ctx, &known.id),
        route_table::describe_many(ctx, &ids)
    );
    let (Some(e), tables) = (e?, tables?) else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    if e.vpc_endpoint_type() != Some(&VpcEndpointType::Gateway) {
        diffs.push(Difference::EndpointType(
            e.vpc_endpoint_type()
                .map(|t| t.as_str())
                .unwrap_or("unknown")
                .to_string(),
        ));
    }
    let service = ctx.stack.s3_service();
    if e.service_name() != Some(service.as_str()) {
        diffs.push(Difference::EndpointService {
            have: e.service_name().unwrap_or("none").to_string(),
            want: service,
        });
    }
    if state(&e) != "available" {
        diffs.push(Difference::EndpointState(state(&e)));
    }
    diffs.extend(policy_differences(ctx, &e));
    let have: BTreeSet<String> = e.route_table_ids().iter().cloned().collect();
    for missing in want.difference(&have) {
        diffs.push(Difference::NotOnRouteTable(missing.clone()));
    }
    for extra in have.difference(&want) {
        diffs.push(Difference::OnOtherRouteTable(extra.clone()));
    }
    for rt in want.intersection(&have) {
        if let Some(table) = tables
            .iter()
            .find(|t| t.route_table_id() == Some(rt.as_str()))
            && !route_table::routes_s3_to(table, &known.id)
        {
            diffs.push(Difference::NoPrefixListRoute(rt.clone()));
        }
    }
    Ok(Live::Present(known.clone(), diffs))
}

/// Puts the endpoint on exactly the stack's route tables (a table that lost its route is
/// taken off and put back, which restores the route) and its policy right, then waits for it.
pub(crate) async fn fix(ctx: &Ctx, known: &Resource, diffs: &[Difference]) -> Result<()> {
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    for d in diffs {
        if let Difference::NotOnRouteTable(rt) | Difference::NoPrefixListRoute(rt) = d {
            add.push(rt.clone());
        }
        if let Difference::OnOtherRouteTable(rt) | Difference::NoPrefixListRoute(rt) = d {
            remove.push(rt.clone());
        }
    }
    let policy = diffs
        .iter()
        .any(|d| matches!(d, Difference::EndpointPolicy(_)));
    let modify = || ctx.aws.ec2.modify_vpc_endpoint().vpc_endpoint_id(&known.id);
    if !remove.is_empty() {
        modify()
            .set_remove_route_table_ids(Some(remove))
            .send()
            .await
            .call("ModifyVpcEndpoint", &known.id)?;
    }
    if !add.is_empty() {
        modify()
            .set_add_route_table_ids(Some(add))
            .send()
            .await
            .call("ModifyVpcEndpoint", &known.id)?;
    }
    // The full-access policy is put back as a document: ResetPolicy is not modelled by every
    // emulator, and the document is what AWS itself puts.
    if policy {
        modify()
            .policy_document(desired_policy(ctx).to_string())
            .send()
            .await
            .call("ModifyVpcEndpoint", &known.id)?;
    }
    wait_available(ctx, &known.id).await
}

pub(crate) async fn delete(ctx: &Ctx, id: &str) -> Result<Action> {
    let out = ctx
        .aws
        .ec2
        .delete_vpc_endpoints()
        .vpc_endpoint_ids(id)
        .send()
        .await
        .call("DeleteVpcEndpoints", id);
    let out = match out {
        Ok(out) => out,
        Err(e) if e.is(crate::error::Kind::NotFound) => return Ok(Action::AlreadyGone),
        Err(e) => return Err(e.into()),
    };
    if let Some(item) = out.unsuccessful().first() {
        let code = item.error().and_then(|e| e.code()).unwrap_or_default();
        if code.ends_with(".NotFound") {
            return Ok(Action::AlreadyGone);
        }
        bail!(
            "DeleteVpcEndpoints on {id} failed: {code}: {}",
            item.error().and_then(|e| e.message()).unwrap_or_default()
        );
    }
    // The endpoint's routes go with it; the route tables and the VPC wait for that.
    let done = poll(WAIT, VISIBLE_BACKOFF, || async {
        let e = describe(ctx, id).await?;
        if e.is_some() {
            ctx.progress
                .wait(Step::Endpoint, &format!("{id} is deleting"));
        }
        Ok(e.is_none().then_some(()))
    })
    .await?;
    done.ok_or_else(|| {
        anyhow!(
            "VPC endpoint {id} was still deleting after {}; run `privbucket down` again",
            humantime::format_duration(WAIT)
        )
    })?;
    Ok(Action::Deleted)
}

/// The S3 Gateway endpoint.
#[derive(Debug)]
pub(crate) struct EndpointStep;

impl Contract for EndpointStep {
    fn find<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Option<Resource>> {
        Box::pin(find(ctx, res))
    }

    fn create<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Made> {
        Box::pin(create(ctx, res))
    }

    fn observe<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
    ) -> Answer<'a, Live> {
        Box::pin(observe(ctx, res, known))
    }

    fn fix<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        diffs: &'a [Difference],
    ) -> Answer<'a, ()> {
        let _ = res;
        Box::pin(fix(ctx, known, diffs))
    }

    fn delete<'a>(&'a self, ctx: &'a Ctx, known: &'a Resource) -> Answer<'a, Action> {
        Box::pin(delete(ctx, &known.id))
    }

    /// The bucket policy names the endpoint by ID; nothing waits for `available`.
    fn finished_beside(&self) -> bool {
        true
    }
}
