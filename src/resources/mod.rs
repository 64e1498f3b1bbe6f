//! The resources, one module per family, each with the same shape:
//! - `find`: look for it by tag or deterministic name (an interrupted run may have made it);
//! - `create`;
//! - `observe`: is it there, and how does it differ from what it should be;
//! - `fix`: bring an existing resource back to what it should be;
//! - `delete`: "already gone" counts as done.
//!
//! [`ensure`] (up), [`inspect`] (status) and [`remove`] (down) dispatch on the step.
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::sync::OnceCell;

use std::future::Future;

use crate::aws::{Backoff, Clients};
use crate::error::{AwsError, Kind};
use crate::graph::Step;
use crate::progress::Progress;
use crate::run::{Action, Outcome};
use crate::stack::Stack;
use crate::state::{Resource, Resources};

pub mod bucket;
pub mod endpoint;
pub mod enis;
pub mod iam;
pub mod lambda;
pub mod network;
pub mod security_group;
pub mod snapshot;

/// Everything a step needs besides the resources made before it.
#[derive(Debug)]
pub struct Ctx {
    pub aws: Clients,
    pub stack: Stack,
    pub progress: Progress,
    /// The region's availability zones, looked up once.
    pub azs: OnceCell<Vec<String>>,
    /// The region's S3 prefix list, looked up once.
    pub s3_prefix_list: OnceCell<String>,
    pub delete_objects: bool,
    pub eni_timeout: Duration,
    /// EC2 as read in one go (`status`): observe functions read it instead of calling.
    pub ec2: std::sync::OnceLock<snapshot::Ec2Snapshot>,
}

impl Ctx {
    pub fn new(aws: Clients, stack: Stack, progress: Progress) -> Self {
        Ctx {
            aws,
            stack,
            progress,
            azs: OnceCell::new(),
            s3_prefix_list: OnceCell::new(),
            delete_objects: false,
            eni_timeout: crate::config::DEFAULT_ENI_TIMEOUT,
            ec2: std::sync::OnceLock::new(),
        }
    }
}

/// What `observe` saw.
#[derive(Debug)]
pub enum Live {
    Missing,
    /// There; the list says how it differs from what it should be (empty: as it should be).
    Present(Resource, Vec<String>),
}

/// The ID of a step this one needs; `run` starts a step only after the steps it needs.
pub fn need(res: &Resources, step: Step) -> Result<&str> {
    res.get(&step)
        .map(|r| r.id.as_str())
        .ok_or_else(|| anyhow!("internal error: {} is not known yet", step.key()))
}

async fn find(step: Step, ctx: &Ctx, res: &Resources) -> Result<Option<Resource>> {
    match step {
        Step::Vpc
        | Step::SubnetA
        | Step::SubnetB
        | Step::RouteTableA
        | Step::RouteTableB
        | Step::SecurityGroup => network::find(step, ctx, res).await,
        Step::AssociationA | Step::AssociationB => network::find_association(step, ctx, res).await,
        Step::Endpoint => endpoint::find(ctx, res).await,
        Step::UploaderRole | Step::ControlRole => iam::find(step, ctx).await,
        Step::Bucket => bucket::find(ctx).await,
        Step::BucketPolicy => bucket::find_policy(ctx).await,
        Step::UploaderFunction | Step::ControlFunction => lambda::find(step, ctx).await,
        Step::LambdaEnis => Ok(None),
    }
}

async fn create(step: Step, ctx: &Ctx, res: &Resources) -> Result<Resource> {
    match step {
        Step::Vpc => network::create_vpc(ctx).await,
        Step::SubnetA | Step::SubnetB => network::create_subnet(step, ctx, res).await,
        Step::RouteTableA | Step::RouteTableB => network::create_route_table(step, ctx, res).await,
        Step::AssociationA | Step::AssociationB => {
            network::create_association(step, ctx, res).await
        }
        Step::SecurityGroup => security_group::create(ctx, res).await,
        Step::Endpoint => endpoint::create(ctx, res).await,
        Step::UploaderRole | Step::ControlRole => iam::create(step, ctx).await,
        Step::Bucket => bucket::create(ctx).await,
        Step::BucketPolicy => bucket::put_policy(ctx, res).await,
        Step::UploaderFunction | Step::ControlFunction => lambda::create(step, ctx, res).await,
        Step::LambdaEnis => Err(anyhow!("internal error: lambda-enis is not created")),
    }
}

/// As many attempts as the SDK makes for every other call (see `aws`).
const CREATE_ATTEMPTS: u32 = crate::aws::MAX_ATTEMPTS;

/// Runs a create whose SDK retries are off; after an ambiguous failure (the call may have
/// taken effect: 5xx, timeout, lost connection) or a throttle, adopts what the call made if
/// it can be found (by tag or name), else tries again, a bounded number of times. A create
/// answered "already exists" (an earlier attempt made it) is adopted the same way.
pub(crate) async fn create_reconciled<F, Fut>(
    step: Step,
    ctx: &Ctx,
    res: &Resources,
    create: F,
) -> Result<Resource>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Resource, AwsError>>,
{
    let backoff = Backoff::default();
    let mut delay = backoff.first;
    for attempt in 1.. {
        match create().await {
            Ok(r) => return Ok(r),
            Err(e) if e.is(Kind::AlreadyExists) => {
                return match find(step, ctx, res).await? {
                    Some(found) => Ok(found),
                    None => Err(e.into()),
                };
            }
            Err(e)
                if (e.is(Kind::Ambiguous) || e.is(Kind::Throttled))
                    && attempt < CREATE_ATTEMPTS =>
            {
                ctx.progress
                    .debug(&format!("{e}; looking for what the call may have made"));
                // Describe calls are eventually consistent: give a fresh resource a moment.
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(backoff.cap);
                if let Some(found) = find(step, ctx, res).await? {
                    return Ok(found);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the loop returns")
}

/// How the live resource differs from what it should be.
pub async fn observe(step: Step, ctx: &Ctx, res: &Resources, known: &Resource) -> Result<Live> {
    match step {
        Step::Vpc => network::observe_vpc(ctx, known).await,
        Step::SubnetA | Step::SubnetB => network::observe_subnet(step, ctx, res, known).await,
        Step::RouteTableA | Step::RouteTableB => {
            network::observe_route_table(ctx, res, known).await
        }
        Step::AssociationA | Step::AssociationB => {
            network::observe_association(step, ctx, res, known).await
        }
        Step::SecurityGroup => security_group::observe(ctx, res, known).await,
        Step::Endpoint => endpoint::observe(ctx, res, known).await,
        Step::UploaderRole | Step::ControlRole => iam::observe(step, ctx, known).await,
        Step::Bucket => bucket::observe(ctx, known).await,
        Step::BucketPolicy => bucket::observe_policy(ctx, res, known).await,
        Step::UploaderFunction | Step::ControlFunction => {
            lambda::observe(step, ctx, res, known).await
        }
        Step::LambdaEnis => Ok(Live::Missing),
    }
}

async fn fix(
    step: Step,
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
    diffs: &[String],
) -> Result<()> {
    match step {
        Step::Vpc => network::fix_vpc(ctx, known, diffs).await,
        Step::SubnetA | Step::SubnetB => network::fix_subnet(ctx, known, diffs).await,
        Step::Endpoint => endpoint::fix(ctx, res, known).await,
        Step::SecurityGroup => security_group::fix(ctx, known, diffs).await,
        Step::UploaderRole | Step::ControlRole => iam::fix(step, ctx).await,
        Step::Bucket => bucket::apply_settings(ctx).await,
        Step::BucketPolicy => bucket::put_policy(ctx, res).await.map(|_| ()),
        Step::UploaderFunction | Step::ControlFunction => lambda::fix(step, ctx, res, known).await,
        _ => Err(anyhow!(
            "{} {} differs from what privbucket made ({}) and cannot be changed in place; \
             run `privbucket down` and `privbucket up` to rebuild the stack",
            step.kind(),
            known.id,
            diffs.join("; ")
        )),
    }
}

/// `up` for one step: keep what is there and right, repair what differs, adopt what an
/// earlier run made, create what is missing.
pub async fn ensure(step: Step, ctx: Arc<Ctx>, res: Arc<Resources>) -> Result<Outcome> {
    if !step.is_resource() {
        return Ok(Outcome::new(Action::Skipped, None, ""));
    }
    let ctx = ctx.as_ref();
    if let Some(known) = res.get(&step)
        && let Live::Present(live, diffs) = observe(step, ctx, &res, known).await?
    {
        return settle(step, ctx, &res, live, diffs, Action::UpToDate).await;
    }
    // A bucket policy is not a resource of its own: putting it is idempotent, so there is
    // nothing to find first.
    if step == Step::BucketPolicy && !res.contains_key(&step) {
        let made = create(step, ctx, &res).await?;
        let what = made.id.clone();
        return Ok(Outcome::new(Action::Created, Some(made), what));
    }
    if let Some(found) = find(step, ctx, &res).await? {
        match observe(step, ctx, &res, &found).await? {
            Live::Present(live, diffs) => {
                return settle(step, ctx, &res, live, diffs, Action::Adopted).await;
            }
            Live::Missing => {}
        }
    }
    let made = create(step, ctx, &res)
        .await
        .with_context(|| format!("creating {} for stack {}", step.key(), ctx.stack.name))?;
    let what = made.id.clone();
    Ok(Outcome::new(Action::Created, Some(made), what))
}

async fn settle(
    step: Step,
    ctx: &Ctx,
    res: &Resources,
    live: Resource,
    diffs: Vec<String>,
    action: Action,
) -> Result<Outcome> {
    let what = live.id.clone();
    if diffs.is_empty() {
        return Ok(Outcome::new(action, Some(live), what));
    }
    fix(step, ctx, res, &live, &diffs)
        .await
        .with_context(|| format!("repairing {} {}", step.kind(), live.id))?;
    Ok(Outcome::new(Action::Updated(diffs), Some(live), what))
}

/// `down` for one step.
pub async fn remove(step: Step, ctx: Arc<Ctx>, res: Arc<Resources>) -> Result<Outcome> {
    let ctx = ctx.as_ref();
    if step == Step::LambdaEnis {
        return enis::release(ctx, &res).await;
    }
    let Some(known) = res.get(&step) else {
        return Ok(Outcome::new(Action::Skipped, None, ""));
    };
    let id = known.id.clone();
    let action = match step {
        Step::Vpc => network::delete_vpc(ctx, &id).await?,
        Step::SubnetA | Step::SubnetB => network::delete_subnet(ctx, &id).await?,
        Step::RouteTableA | Step::RouteTableB => network::delete_route_table(ctx, &id).await?,
        Step::AssociationA | Step::AssociationB => network::delete_association(ctx, &id).await?,
        Step::SecurityGroup => security_group::delete(ctx, &id).await?,
        Step::Endpoint => endpoint::delete(ctx, &id).await?,
        Step::UploaderRole | Step::ControlRole => iam::delete(ctx, &id).await?,
        Step::Bucket => bucket::delete(ctx).await?,
        Step::BucketPolicy => bucket::delete_policy(ctx).await?,
        Step::UploaderFunction | Step::ControlFunction => lambda::delete(step, ctx, &id).await?,
        Step::LambdaEnis => unreachable!("handled above"),
    };
    Ok(Outcome::new(action, None, id))
}

/// `status` for one step: `None` when the resource is as it should be.
pub async fn inspect(step: Step, ctx: &Ctx, res: &Resources) -> Result<Live> {
    match res.get(&step) {
        Some(known) => observe(step, ctx, res, known).await,
        None => Ok(Live::Missing),
    }
}

/// The outcome of a delete call: deleted, or already gone ("not found" counts as done).
pub fn deletion<T>(r: Result<T, AwsError>) -> Result<Action> {
    match r {
        Ok(_) => Ok(Action::Deleted),
        Err(e) if e.is(Kind::NotFound) => Ok(Action::AlreadyGone),
        Err(e) => Err(e.into()),
    }
}

/// A deleted resource: gone or deleted, by whether the call found it.
pub fn deleted(found: bool) -> Action {
    if found {
        Action::Deleted
    } else {
        Action::AlreadyGone
    }
}

/// What `find` needs to have been found first (fewer than `deps`: a policy is found on its
/// bucket whether or not the endpoint it names still exists).
fn find_needs(step: Step) -> &'static [Step] {
    match step {
        Step::SubnetA
        | Step::SubnetB
        | Step::RouteTableA
        | Step::RouteTableB
        | Step::SecurityGroup
        | Step::Endpoint => &[Step::Vpc],
        Step::AssociationA => &[Step::RouteTableA, Step::SubnetA],
        Step::AssociationB => &[Step::RouteTableB, Step::SubnetB],
        Step::BucketPolicy => &[Step::Bucket],
        _ => &[],
    }
}

/// Finds a stack's resources without a state file: by the stack's tags for EC2, by the
/// deterministic names for roles, functions and the bucket. Only what carries the stack's tag
/// or exact name is found; a same-named role, function or bucket of someone else is refused.
pub async fn discover(ctx: &Ctx) -> Result<Resources> {
    discover_from(ctx, Resources::new()).await
}

/// [`discover`] for the steps `res` does not have yet.
pub async fn discover_from(ctx: &Ctx, mut res: Resources) -> Result<Resources> {
    for step in crate::graph::steps(true) {
        if res.contains_key(&step)
            || !step.is_resource()
            || !find_needs(step).iter().all(|d| res.contains_key(d))
        {
            continue;
        }
        if let Some(found) = find(step, ctx, &res).await? {
            // Observe fills in what `find` does not (a subnet's AZ, ARNs).
            let found = match observe(step, ctx, &res, &found).await? {
                Live::Present(live, _) => live,
                Live::Missing => continue,
            };
            res.insert(step, found);
        }
    }
    Ok(res)
}

/// What `up` would do for one step, found with reads only.
#[derive(Debug)]
pub enum Planned {
    Nothing(Resource),
    Update(Resource, Vec<String>),
    Create,
}

/// `plan` for one step whose resource, if any, is in `res` (from the state file, or found
/// by [`discover_from`] as `up` would find it).
pub async fn plan(step: Step, ctx: &Ctx, res: &Resources) -> Result<Planned> {
    if let Some(known) = res.get(&step)
        && let Live::Present(live, diffs) = observe(step, ctx, res, known).await?
    {
        return Ok(if diffs.is_empty() {
            Planned::Nothing(live)
        } else {
            Planned::Update(live, diffs)
        });
    }
    Ok(Planned::Create)
}
