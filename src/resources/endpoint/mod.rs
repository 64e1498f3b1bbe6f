//! The S3 Gateway endpoint: on both route tables, where it adds the route for the S3 prefix
//! list. `CreateVpcEndpoint` takes a client token, so the SDK's own retries are safe. In a
//! borrowed network (`up --vpc --subnets`) the endpoint step follows [`shared`].
pub(crate) mod shared;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use aws_sdk_ec2::types::{ResourceType, VpcEndpoint, VpcEndpointType};

use super::Difference;
use super::Teardown;
use super::contract::{Answer, Contract};
use super::ec2::{
    EC2_PROPAGATION, VISIBLE_BACKOFF, client_token, filter, no_retry, one_tagged, stack_filters,
    tag_spec,
};
use super::read::{self, Ec2Read};
use super::wait::{GONE, Seen, Waiter};
use super::{Ctx, Live, Made, create_reconciled, need, network, route_table};
use crate::error::{AwsError, Call, Kind};
use crate::graph::Step;
use crate::policy;
use crate::run::Action;
use crate::state::{Resource, Resources};

/// How this kind differs from what it should be: one variant per fact, so `fix` matches
/// on the fact and the words (the `Display`) are only for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drift {
    EndpointType(String),
    EndpointService {
        have: String,
        want: String,
    },
    EndpointState(String),
    /// One statement of the endpoint's policy, or the whole document.
    EndpointPolicy(String),
    NotOnRouteTable(String),
    OnOtherRouteTable(String),
    NoPrefixListRoute(String),
    /// A borrowed endpoint whose policy does not let the uploader put objects in the bucket,
    /// and the statement to add to it (privbucket never changes it).
    ShutsOut {
        endpoint: String,
        statement: String,
    },
}

impl Drift {
    /// Whether `up` can put it right without replacing the resource (see
    /// [`super::Difference::in_place`]).
    pub(crate) fn in_place(&self) -> bool {
        match self {
            Drift::EndpointType(_) | Drift::EndpointService { .. } => false,
            Drift::EndpointState(_)
            | Drift::EndpointPolicy(_)
            | Drift::NotOnRouteTable(_)
            | Drift::OnOtherRouteTable(_)
            | Drift::NoPrefixListRoute(_)
            | Drift::ShutsOut { .. } => true,
        }
    }
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::EndpointType(t) => write!(f, "type is {t}, expected Gateway"),
            Drift::EndpointService { have, want } => {
                write!(f, "service is {have}, expected {want}")
            }
            Drift::EndpointState(s) => write!(f, "state is {s}"),
            Drift::EndpointPolicy(d) => write!(f, "policy {d}"),
            Drift::NotOnRouteTable(rt) => write!(f, "not on route table {rt}"),
            Drift::OnOtherRouteTable(rt) => {
                write!(f, "also on route table {rt}, which is not the stack's")
            }
            Drift::NoPrefixListRoute(rt) => {
                write!(f, "route table {rt} has no S3 prefix-list route to it")
            }
            Drift::ShutsOut {
                endpoint,
                statement,
            } => write!(
                f,
                "the policy of endpoint {endpoint} does not let the uploader put objects in \
                 the bucket; add this statement to it: {statement}"
            ),
        }
    }
}

const WAIT: Duration = Duration::from_secs(5 * 60);

fn route_tables(res: &Resources) -> Result<BTreeSet<String>> {
    let tables = network::route_tables(res);
    if tables.is_empty() {
        bail!("internal error: the stack's route tables are not known yet");
    }
    Ok(tables)
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
        .filter(|e| !read::is_gone(e))
        .filter_map(|e| e.vpc_endpoint_id().map(str::to_string))
        .collect();
    one_tagged(Step::Endpoint, ctx, ids)
}

/// A Gateway endpoint is usually `available` at once; when it is `pending`, `fix` waits for
/// it once it is recorded.
pub(crate) async fn create(ctx: &Ctx, res: &Resources) -> Result<Made<Drift>> {
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
        if out
            .vpc_endpoint()
            .is_some_and(|e| read::endpoint_state(e) == "available")
        {
            ready.store(true, Ordering::Relaxed);
        }
        Ok(Resource::new(id))
    })
    .await?;
    // One adopted after a lost answer is waited for as a new one is.
    let lacks = if ready.load(Ordering::Relaxed) {
        Vec::new()
    } else {
        vec![Drift::EndpointState("pending".to_string())]
    };
    Ok(Made::lacking(made, lacks))
}

/// The policy the endpoint should have: this bucket only, or (hardening off) the full access
/// AWS gives an endpoint by default.
/// In a borrowed network, full access: the route tables carry other workloads' S3 traffic
/// (see `endpoint::shared`).
fn desired_policy(ctx: &Ctx) -> serde_json::Value {
    if ctx.stack.settings.endpoint_policy && !network::borrowed(ctx) {
        policy::endpoint_policy(ctx.stack.partition(), ctx.stack.bucket())
    } else {
        policy::full_access()
    }
}

/// How the endpoint's policy differs from what it should be.
pub(crate) fn policy_differences(ctx: &Ctx, e: &VpcEndpoint) -> Vec<Drift> {
    let want = desired_policy(ctx);
    let Some(live) = e.policy_document().and_then(policy::parse) else {
        return vec![Drift::EndpointPolicy(format!(
            "is unreadable, should be {want}"
        ))];
    };
    if ctx.stack.settings.endpoint_policy && !network::borrowed(ctx) {
        policy::statement_differences(&live, &want)
            .into_iter()
            .map(Drift::EndpointPolicy)
            .collect()
    } else if policy::allows_everything(&live) {
        Vec::new()
    } else {
        vec![Drift::EndpointPolicy(format!(
            "is {live}, should be AWS's default full access"
        ))]
    }
}

/// What the endpoint's waits read: its state, or `None` once it is gone.
async fn state_of(ctx: &Ctx, id: &str) -> Result<Option<Seen<()>>> {
    let e = read::endpoint(&ctx.aws.ec2, id).await?;
    Ok(e.map(|e| Seen::new((), read::endpoint_state(&e))))
}

/// Polls often (at most 2 s apart), so the wait ends soon after the endpoint is available.
/// Right after `CreateVpcEndpoint`, EC2 may not list it yet: that counts as pending, for up
/// to [`EC2_PROPAGATION`]; gone after it was seen is an error.
async fn wait_available(ctx: &Ctx, id: &str) -> Result<()> {
    let waiter = Waiter {
        what: format!("VPC endpoint {id}"),
        step: Step::Endpoint,
        target: &["available"],
        pending: &["pending", "pendingacceptance"],
        unlisted_for: EC2_PROPAGATION,
        every: VISIBLE_BACKOFF,
        timeout: WAIT,
        then: "run `privbucket up` again to keep waiting",
    };
    waiter.wait(&ctx.progress, || state_of(ctx, id)).await?;
    Ok(())
}

/// The endpoint and its route tables are read at once (one round trip).
pub(crate) async fn observe(
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
    read: Option<&Ec2Read>,
) -> Result<Live<Drift>> {
    let want = route_tables(res).unwrap_or_default();
    let ids: Vec<String> = want.iter().cloned().collect();
    let ec2 = &ctx.aws.ec2;
    let (e, tables) = tokio::join!(
        read::or_call(
            read,
            |r| r.endpoint(&known.id),
            || read::endpoint(ec2, &known.id)
        ),
        read::or_call(
            read,
            |r| r.route_tables_of(&ids),
            || read::route_tables_of(ec2, &ids)
        )
    );
    let (Some(e), tables) = (e?, tables?) else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    if e.vpc_endpoint_type() != Some(&VpcEndpointType::Gateway) {
        diffs.push(Drift::EndpointType(
            e.vpc_endpoint_type()
                .map(|t| t.as_str())
                .unwrap_or("unknown")
                .to_string(),
        ));
    }
    let service = ctx.stack.s3_service();
    if e.service_name() != Some(service.as_str()) {
        diffs.push(Drift::EndpointService {
            have: e.service_name().unwrap_or("none").to_string(),
            want: service,
        });
    }
    if read::endpoint_state(&e) != "available" {
        diffs.push(Drift::EndpointState(read::endpoint_state(&e)));
    }
    diffs.extend(policy_differences(ctx, &e));
    let have: BTreeSet<String> = e.route_table_ids().iter().cloned().collect();
    for missing in want.difference(&have) {
        diffs.push(Drift::NotOnRouteTable(missing.clone()));
    }
    for extra in have.difference(&want) {
        diffs.push(Drift::OnOtherRouteTable(extra.clone()));
    }
    for rt in want.intersection(&have) {
        if let Some(table) = tables
            .iter()
            .find(|t| t.route_table_id() == Some(rt.as_str()))
            && !route_table::routes_s3_to(table, &known.id)
        {
            diffs.push(Drift::NoPrefixListRoute(rt.clone()));
        }
    }
    Ok(Live::Present(known.clone(), diffs))
}

/// Puts the endpoint on exactly the stack's route tables (a table that lost its route is
/// taken off and put back, which restores the route) and its policy right, then waits for it.
pub(crate) async fn fix(ctx: &Ctx, known: &Resource, diffs: &[Drift]) -> Result<()> {
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    for d in diffs {
        if let Drift::NotOnRouteTable(rt) | Drift::NoPrefixListRoute(rt) = d {
            add.push(rt.clone());
        }
        if let Drift::OnOtherRouteTable(rt) | Drift::NoPrefixListRoute(rt) = d {
            remove.push(rt.clone());
        }
    }
    let policy = diffs.iter().any(|d| matches!(d, Drift::EndpointPolicy(_)));
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
    let waiter = Waiter {
        what: format!("VPC endpoint {id}"),
        step: Step::Endpoint,
        target: &[GONE],
        pending: &["available", "pending", "pendingacceptance", "deleting"],
        unlisted_for: Duration::ZERO,
        every: VISIBLE_BACKOFF,
        timeout: WAIT,
        then: "run `privbucket down` again",
    };
    waiter.wait(&ctx.progress, || state_of(ctx, id)).await?;
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
        Box::pin(async move {
            Ok(if network::borrowed(ctx) {
                shared::create(ctx, res).await?.widen()
            } else {
                create(ctx, res).await?.widen()
            })
        })
    }

    fn observe<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        read: Option<&'a Ec2Read>,
    ) -> Answer<'a, Live> {
        Box::pin(async move {
            Ok(if network::borrowed(ctx) {
                shared::observe(ctx, res, known, read).await?.widen()
            } else {
                observe(ctx, res, known, read).await?.widen()
            })
        })
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
        down: &'a Teardown,
    ) -> Answer<'a, Action> {
        Box::pin(async move {
            if network::borrowed(ctx) {
                shared::delete(ctx, known, down.vpc.as_deref()).await
            } else {
                delete(ctx, &known.id).await
            }
        })
    }

    fn fixes_on_borrowed(&self, known: &Resource, diff: &Difference) -> bool {
        shared::fixes_on_borrowed(known, diff)
    }

    fn give_back<'a>(
        &'a self,
        ctx: &'a Ctx,
        known: &'a Resource,
        down: &'a Teardown,
    ) -> Answer<'a, Action> {
        Box::pin(shared::give_back(ctx, known, down.vpc.as_deref()))
    }

    /// The bucket policy names the endpoint by ID; nothing waits for `available`.
    fn finished_beside(&self) -> bool {
        true
    }
}
