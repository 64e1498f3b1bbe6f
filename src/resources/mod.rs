//! The resources, one module per kind, each keeping the one [`contract::Contract`]: `find`,
//! `create`, `observe`, `fix`, `delete`. [`contract()`] is the one registry from a step to its
//! kind.
//!
//! [`ensure`] (up), [`inspect`] (status), [`plan`] and [`remove`] (down) hold what is the same
//! for every kind: the order of the verbs, recording, patience for listings, the refusal of
//! what cannot change in place, and that a borrowed resource is never changed or deleted.
//! Every AWS call privbucket makes lives in this folder; `commands` orchestrates and renders.
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::OnceCell;
use tokio::task::JoinSet;

use crate::aws::{Backoff, Clients, poll};
use crate::error::{AwsError, Kind};
use crate::graph::{Function, Side, Step};
use crate::progress::Progress;
use crate::run::{Action, Outcome, Recorder};
use crate::stack::Stack;
use crate::state::{Ownership, Resource, Resources};
use contract::Contract;
use read::Ec2Read;

pub(crate) mod association;
pub(crate) mod bucket;
pub(crate) mod bucket_policy;
pub(crate) mod contract;
pub(crate) mod discovery;
pub(crate) mod ec2;
pub(crate) mod egress;
pub(crate) mod endpoint;
pub(crate) mod enis;
pub(crate) mod function;
pub(crate) mod inventory;
pub(crate) mod key;
pub(crate) mod network;
pub(crate) mod prefetch;
pub(crate) mod proof;
pub(crate) mod read;
pub(crate) mod role;
pub(crate) mod route_table;
pub(crate) mod security_group;
pub(crate) mod subnet;
pub(crate) mod vpc;
pub(crate) mod wait;

/// The one registry: every step's kind, the pairs told apart by their side or function.
pub(crate) fn contract(step: Step) -> &'static dyn Contract {
    match step {
        Step::Vpc => &vpc::VpcStep,
        Step::SubnetA => &subnet::SubnetStep(Side::A),
        Step::SubnetB => &subnet::SubnetStep(Side::B),
        Step::RouteTableA => &route_table::RouteTableStep(Side::A),
        Step::RouteTableB => &route_table::RouteTableStep(Side::B),
        Step::AssociationA => &association::AssociationStep(Side::A),
        Step::AssociationB => &association::AssociationStep(Side::B),
        Step::Endpoint => &endpoint::EndpointStep,
        Step::SecurityGroup => &security_group::SecurityGroupStep,
        Step::Key => &key::KeyStep,
        Step::UploaderRole => &role::RoleStep(Function::Uploader),
        Step::ControlRole => &role::RoleStep(Function::Control),
        Step::Bucket => &bucket::BucketStep,
        Step::BucketPolicy => &bucket_policy::BucketPolicyStep,
        Step::UploaderFunction => &function::FunctionStep(Function::Uploader),
        Step::ControlFunction => &function::FunctionStep(Function::Control),
        Step::LambdaEnis => &enis::EnisStep,
    }
}

/// What `down` alone needs for its deletes: the user's choices and what its first round read.
#[derive(Debug)]
pub(crate) struct Teardown {
    pub(crate) delete_objects: bool,
    pub(crate) eni_timeout: Duration,
    pub(crate) prefetch: prefetch::Prefetch,
    /// The stack's VPC, read from the state before anything goes: whether another privbucket
    /// stack shares it decides what happens to an endpoint they share.
    pub(crate) vpc: Option<String>,
    /// Days before KMS deletes a key privbucket made (`--kms-deletion-window`).
    pub(crate) kms_deletion_window: i32,
}

/// Everything a step needs besides the resources made before it, whatever the command.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) aws: Clients,
    pub(crate) stack: Stack,
    pub(crate) progress: Progress,
    /// The region's availability zones, and which each subnet goes in.
    pub(crate) zones: subnet::Zones,
    /// The region's S3 prefix list, looked up once.
    pub(crate) s3_prefix_list: OnceCell<String>,
    /// The package of the stack's own code: given at construction (`with_package`), else
    /// built on first use.
    pub(crate) package: std::sync::OnceLock<function::CodeSource>,
}

impl Ctx {
    pub(crate) fn new(aws: Clients, stack: Stack, progress: Progress) -> Self {
        Ctx {
            aws,
            stack,
            progress,
            zones: subnet::Zones::default(),
            s3_prefix_list: OnceCell::new(),
            package: std::sync::OnceLock::new(),
        }
    }

    /// With the package `up` (or `plan`) built and checked before any call; without one, a
    /// command that compares the function builds it from the recorded path on first use.
    pub(crate) fn with_package(self, source: Option<function::CodeSource>) -> Self {
        let package = std::sync::OnceLock::new();
        if let Some(source) = source {
            let _ = package.set(source);
        }
        Ctx { package, ..self }
    }
}

/// What a create made, and what a resource that new still lacks (settings that take calls of
/// their own, a state to wait for). `ensure` records the resource first, then has `fix` put
/// right what it lacks, so a failure or a crash in between leaves it recorded, and the next
/// `up` finishes it through the same repair path. A kind's own functions speak of its own
/// differences (`D`: its `Drift`); the contract, of [`Difference`].
#[derive(Debug)]
pub(crate) struct Made<D = Difference> {
    pub(crate) resource: Resource,
    pub(crate) lacks: Vec<D>,
}

impl<D: Into<Difference>> Made<D> {
    pub(crate) fn complete(resource: Resource) -> Made<D> {
        Made {
            resource,
            lacks: Vec::new(),
        }
    }

    pub(crate) fn lacking(resource: Resource, lacks: Vec<D>) -> Made<D> {
        Made { resource, lacks }
    }

    /// As the contract speaks of it.
    pub(crate) fn widen(self) -> Made {
        Made {
            resource: self.resource,
            lacks: self.lacks.into_iter().map(Into::into).collect(),
        }
    }
}

/// What `observe` saw.
#[derive(Debug, Clone)]
pub(crate) enum Live<D = Difference> {
    Missing,
    /// There; the list says how it differs from what it should be (empty: as it should be).
    Present(Resource, Vec<D>),
}

impl<D: Into<Difference>> Live<D> {
    /// As the contract speaks of it.
    pub(crate) fn widen(self) -> Live {
        match self {
            Live::Missing => Live::Missing,
            Live::Present(r, d) => Live::Present(r, d.into_iter().map(Into::into).collect()),
        }
    }
}

/// How a resource differs from what it should be: its kind's own `Drift`, one variant per
/// fact, so a kind's `fix` matches on its own facts (Terraform's `d.HasChange("attr")`) and
/// the words (the `Display`) are only for people; `status`, `plan` and `verify` print them,
/// and JSON carries them as strings.
macro_rules! differences {
    ($($kind:ident => $module:ident),* $(,)?) => {
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(crate) enum Difference {
            $($kind($module::Drift),)*
        }

        impl Difference {
            /// Whether `up` can put it right without replacing the resource. What it cannot
            /// (another CIDR, another VPC, a route out to the internet, another kind of
            /// endpoint) is reported, and the user decides: privbucket never replaces a
            /// resource on its own.
            pub(crate) fn in_place(&self) -> bool {
                match self {
                    $(Difference::$kind(d) => d.in_place(),)*
                }
            }
        }

        impl std::fmt::Display for Difference {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    $(Difference::$kind(d) => d.fmt(f),)*
                }
            }
        }

        $(
            impl From<$module::Drift> for Difference {
                fn from(d: $module::Drift) -> Self {
                    Difference::$kind(d)
                }
            }

            impl $module::Drift {
                /// Its kind's own among the differences the contract was handed.
                #[allow(
                    dead_code,
                    reason = "a kind whose differences are all refused before a fix (route \
                              tables) or whose fix puts the whole document (the bucket policy) \
                              does not pick"
                )]
                pub(crate) fn picked(diffs: &[Difference]) -> Vec<Self> {
                    diffs
                        .iter()
                        .filter_map(|d| if let Difference::$kind(d) = d { Some(d.clone()) } else { None })
                        .collect()
                }
            }
        )*
    };
}

differences! {
    Vpc => vpc,
    Subnet => subnet,
    RouteTable => route_table,
    SecurityGroup => security_group,
    Endpoint => endpoint,
    Key => key,
    Role => role,
    Bucket => bucket,
    BucketPolicy => bucket_policy,
    Function => function,
}

impl Difference {
    /// Whether `up` replaces the resource (deletes it and makes it again) to put it right:
    /// only a `Failed` function, which nothing else can mend and which holds no data.
    pub(crate) fn replaces(&self) -> bool {
        matches!(
            self,
            Difference::Function(function::Drift::FunctionFailed(_))
        )
    }
}

impl serde::Serialize for Difference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The ID of a step this one needs; `run` starts a step only after the steps it needs.
pub(crate) fn need(res: &Resources, step: Step) -> Result<&str> {
    res.get(&step)
        .map(|r| r.id.as_str())
        .ok_or_else(|| anyhow!("internal error: {} is not known yet", step.key()))
}

async fn find(step: Step, ctx: &Ctx, res: &Resources) -> Result<Option<Resource>> {
    contract(step).find(ctx, res).await
}

/// As many attempts as the SDK makes for every other call (see `aws`).
const CREATE_ATTEMPTS: u32 = crate::aws::MAX_ATTEMPTS;

/// How long a create whose answer was lost looks for what it may have made before trying
/// again. EC2's describe calls are eventually consistent: a resource can take seconds to be
/// listed by its tags after the call that made it ("Eventual consistency in the Amazon EC2
/// API", EC2 developer guide), and a second create in that window would make a duplicate.
const TAG_LAG: Duration = Duration::from_secs(5);

/// Runs a create whose SDK retries are off. After an ambiguous failure (the call may have
/// taken effect: 5xx, timeout, lost connection) it looks for what the call made, by tag or
/// name, for up to [`TAG_LAG`], and adopts it; only then does it try again, a bounded number
/// of times. A throttled call did not take effect and is simply tried again after a backoff.
/// A create answered "already exists" (an earlier attempt made it) is adopted the same way.
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
    let started = tokio::time::Instant::now();
    let mut visible = ec2::VISIBLE_BACKOFF.first;
    for attempt in 1.. {
        match create().await {
            Ok(r) => return Ok(r),
            Err(e) if e.is(Kind::AlreadyExists) => {
                return match find(step, ctx, res).await? {
                    Some(found) => Ok(found),
                    None => Err(e.into()),
                };
            }
            // The create names a resource made moments ago (a subnet's VPC, an endpoint's
            // route tables) that EC2 does not see yet; nothing was made.
            Err(e) if e.is(Kind::NotFound) && started.elapsed() < ec2::EC2_PROPAGATION => {
                ctx.progress.debug(&format!(
                    "{e}; EC2 may not see a new resource yet, trying again in {}",
                    humantime::format_duration(visible)
                ));
                tokio::time::sleep(visible).await;
                visible = (visible * 2).min(ec2::VISIBLE_BACKOFF.cap);
            }
            Err(e) if e.is(Kind::Throttled) && attempt < CREATE_ATTEMPTS => {
                ctx.progress.debug(&format!(
                    "{e}; trying again in {}",
                    humantime::format_duration(delay)
                ));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(backoff.cap);
            }
            Err(e) if e.is(Kind::Ambiguous) && attempt < CREATE_ATTEMPTS => {
                ctx.progress
                    .debug(&format!("{e}; looking for what the call may have made"));
                let lag = Backoff {
                    first: Duration::from_millis(500),
                    cap: Duration::from_secs(2),
                };
                if let Some(found) = poll(TAG_LAG, lag, || find(step, ctx, res)).await? {
                    return Ok(found);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the loop returns")
}

/// How the live resource differs from what it should be; from `read` when the caller has
/// read EC2 already.
pub(crate) async fn observe(
    step: Step,
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
    read: Option<&Ec2Read>,
) -> Result<Live> {
    contract(step).observe(ctx, res, known, read).await
}

/// How long a recorded resource that reads as missing is read again before it counts as gone:
/// AWS may not list yet what a command made moments ago (EC2 and S3 are eventually
/// consistent), and taking it for gone would make `up` create a second one.
pub(crate) const LISTING_PATIENCE: Duration = Duration::from_secs(10);

/// [`observe`] for a resource the state file records, with [`LISTING_PATIENCE`] for
/// "missing". `status` reads EC2 in one go instead and re-reads it itself.
pub(crate) async fn observe_recorded(
    step: Step,
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
) -> Result<Live> {
    let deadline = tokio::time::Instant::now() + LISTING_PATIENCE;
    loop {
        let live = observe(step, ctx, res, known, None).await?;
        if !matches!(live, Live::Missing) || tokio::time::Instant::now() >= deadline {
            return Ok(live);
        }
        ctx.progress.wait(
            step,
            &format!("{} {} is not listed; looking again", step.kind(), known.id),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Puts right what differs. A difference that cannot be fixed in place
/// ([`Difference::in_place`]) is refused for every resource alike, before any call.
async fn fix(
    step: Step,
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
    diffs: &[Difference],
) -> Result<()> {
    let rebuild: Vec<String> = diffs
        .iter()
        .filter(|d| !d.in_place())
        .map(ToString::to_string)
        .collect();
    if !rebuild.is_empty() {
        bail!(
            "{} {} differs from what privbucket made ({}) and cannot be changed in place; \
             run `privbucket down` and `privbucket up` to rebuild the stack",
            step.kind(),
            known.id,
            rebuild.join("; ")
        );
    }
    if known.ownership == Ownership::Borrowed
        && diffs
            .iter()
            .any(|d| !contract(step).fixes_on_borrowed(known, d))
    {
        let what: Vec<String> = diffs
            .iter()
            .filter(|d| !contract(step).fixes_on_borrowed(known, d))
            .map(ToString::to_string)
            .collect();
        bail!(
            "{} {} is borrowed, not made by privbucket, and privbucket does not change it: {}; \
             put it right yourself, or name another with the flag that borrowed it",
            step.kind(),
            known.id,
            what.join("; ")
        );
    }
    contract(step).fix(ctx, res, known, diffs).await
}

/// `up` for one step: keep what is there and right, repair what differs, adopt what an
/// earlier run made, create what is missing. What is made or adopted is recorded before any
/// call that follows it.
pub(crate) async fn ensure(
    step: Step,
    ctx: Arc<Ctx>,
    survey: Arc<Survey>,
    res: Arc<Resources>,
    rec: Recorder,
) -> Result<Outcome> {
    if !step.is_resource() {
        return Ok(Outcome::new(Action::Skipped, None, ""));
    }
    let ctx = ctx.as_ref();
    let surveyed = survey.seen(step, &res);
    if let Some(known) = res.get(&step)
        && let Live::Present(live, diffs) = match surveyed {
            Some(live @ Live::Present(..)) => live.clone(),
            // Recorded as about to be made: a crash may have come before the create.
            Some(Live::Missing) if known.ownership == Ownership::Pending => Live::Missing,
            // Not read yet, or read as missing: read again, with patience for a listing lag.
            Some(Live::Missing) | None => observe_recorded(step, ctx, &res, known).await?,
        }
    {
        // Whose it is is the record's to say, not the read's.
        let live = live.owned_as(known.ownership);
        let borrowed = known.ownership == Ownership::Borrowed;
        match diffs.iter().find(|d| d.replaces() && !borrowed) {
            None => return settle(step, ctx, &res, live, diffs, Action::UpToDate).await,
            Some(why) => {
                ctx.progress.note(&format!(
                    "{} {} {why}: deleting it to make it again",
                    step.kind(),
                    live.id
                ));
                contract(step).replace(ctx, &live).await?;
            }
        }
    }
    if let Some(known) = res.get(&step)
        && known.ownership == Ownership::Borrowed
    {
        bail!(
            "{} {} is borrowed (named by --vpc/--subnets or found in the user's network) and \
             is gone; privbucket never makes again what it borrowed: restore it, or run \
             `privbucket down` and `privbucket up` with a network that exists",
            step.kind(),
            known.id
        );
    }
    // The survey looked for every step at once: nothing found, nothing to adopt.
    let found = survey.found.get(&step).cloned();
    if contract(step).adopts()
        && let Some(found) = found
        && let Live::Present(live, diffs) = observe(step, ctx, &res, &found, None).await?
    {
        rec.record(step, live.clone()).await?;
        return settle(step, ctx, &res, live, diffs, Action::Adopted).await;
    }
    if let Some(intent) = contract(step).intent(ctx) {
        rec.record(step, intent).await?;
    }
    let Made { resource, lacks } = contract(step)
        .create(ctx, &res)
        .await
        .with_context(|| format!("creating {} for stack {}", step.key(), ctx.stack.name))?;
    rec.record(step, resource.clone()).await?;
    if contract(step).finished_beside() {
        rec.release(step);
    }
    if !lacks.is_empty() {
        fix(step, ctx, &res, &resource, &lacks)
            .await
            .with_context(|| format!("setting up {} {}", step.kind(), resource.id))?;
    }
    let what = resource.id.clone();
    Ok(Outcome::new(Action::Created, Some(settled(resource)), what))
}

async fn settle(
    step: Step,
    ctx: &Ctx,
    res: &Resources,
    live: Resource,
    diffs: Vec<Difference>,
    action: Action,
) -> Result<Outcome> {
    let what = live.id.clone();
    if diffs.is_empty() {
        return Ok(Outcome::new(action, Some(settled(live)), what));
    }
    fix(step, ctx, res, &live, &diffs)
        .await
        .with_context(|| format!("repairing {} {}", step.kind(), live.id))?;
    let words = diffs.iter().map(ToString::to_string).collect();
    Ok(Outcome::new(
        Action::Updated(words),
        Some(settled(live)),
        what,
    ))
}

/// A resource put right no longer carries the mark of one about to be made.
fn settled(r: Resource) -> Resource {
    match r.ownership {
        Ownership::Pending => r.owned_as(Ownership::Made),
        Ownership::Made | Ownership::Borrowed => r,
    }
}

/// `down` for one step.
pub(crate) async fn remove(
    step: Step,
    ctx: Arc<Ctx>,
    down: Arc<Teardown>,
    res: Arc<Resources>,
) -> Result<Outcome> {
    if !step.is_resource() {
        return enis::release(&ctx, &res, down.eni_timeout).await;
    }
    let ctx = ctx.as_ref();
    let Some(known) = res.get(&step) else {
        return Ok(Outcome::new(Action::Skipped, None, ""));
    };
    let id = known.id.clone();
    if known.ownership == Ownership::Borrowed {
        let action = contract(step).give_back(ctx, known, &down).await?;
        return Ok(Outcome::new(action, None, id));
    }
    let action = contract(step).delete(ctx, known, &down).await?;
    Ok(Outcome::new(action, None, id))
}

/// Every resource of the stack, read live: EC2 in one read per kind (`read::all`) while IAM,
/// S3 and Lambda are read, then each EC2 resource judged from that read: one round trip deep.
pub(crate) async fn read_all(ctx: Arc<Ctx>, res: &Arc<Resources>) -> Result<Vec<(Step, Live)>> {
    Ok(read_and_prove(ctx, res).await?.0)
}

/// [`read_all`], and the proof that every recorded made resource is the stack's
/// ([`proof::check`]), from the same round of reads.
pub(crate) async fn read_and_prove(
    ctx: Arc<Ctx>,
    res: &Arc<Resources>,
) -> Result<(Vec<(Step, Live)>, Vec<proof::Unproven>)> {
    let mut tasks = JoinSet::new();
    let all: Vec<Step> = ctx
        .stack
        .settings
        .steps()
        .into_iter()
        .filter(|s| s.is_resource())
        .collect();
    let (ec2_steps, other_steps): (Vec<Step>, Vec<Step>) = all.iter().partition(|s| s.is_ec2());
    for &step in &other_steps {
        let (ctx, res) = (ctx.clone(), res.clone());
        tasks.spawn(async move { (step, inspect(step, &ctx, &res, None).await) });
    }
    let target = format!("stack {}", ctx.stack.name);
    let (ec2, key, prefix_list) = tokio::join!(
        read::all(&ctx.aws.ec2, read::By::Ids(res), &target),
        proof::key_whose(&ctx, res),
        // The security group's wanted egress names it: read alongside, not after.
        async {
            if res.contains_key(&Step::SecurityGroup) && ctx.stack.settings.egress_limit {
                read::s3_prefix_list(&ctx).await.map(|_| ())
            } else {
                Ok(())
            }
        }
    );
    prefix_list?;
    let ec2 = Arc::new(ec2?);
    let unproven = proof::check(&ctx, res, &ec2, key?).await?;
    for &step in &ec2_steps {
        let (ctx, res, ec2) = (ctx.clone(), res.clone(), ec2.clone());
        tasks.spawn(async move { (step, inspect(step, &ctx, &res, Some(&ec2)).await) });
    }
    let mut seen = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (step, live) = joined.map_err(|e| anyhow!("a read of the stack panicked: {e}"))?;
        seen.push((step, live?));
    }
    Ok((seen, unproven))
}

/// What `up` read before it changed anything: every recorded resource as it is, and what the
/// stack has that the state file misses. One round of reads instead of a find and an observe
/// before every step.
#[derive(Debug, Default)]
pub(crate) struct Survey {
    /// The resources as recorded when the survey was taken.
    before: Resources,
    seen: BTreeMap<Step, Live>,
    /// Found by the stack's tags and names, not recorded.
    found: Resources,
    /// Records the account does not prove to be the stack's: `up` changes nothing then.
    pub(crate) unproven: Vec<proof::Unproven>,
}

impl Survey {
    /// Takes the survey with a reader context of its own (its EC2 snapshot is not `up`'s).
    pub(crate) async fn take(reader: Arc<Ctx>, res: &Resources) -> Result<Survey> {
        let before = Arc::new(res.clone());
        let (read, found) = tokio::join!(
            read_and_prove(reader.clone(), &before),
            discovery::scan(&reader)
        );
        let (seen, mut unproven) = read?;
        let mut found = found?.resources;
        proof::name_own(&mut unproven, &found);
        found.retain(|step, _| !before.contains_key(step));
        Ok(Survey {
            before: before.as_ref().clone(),
            seen: seen.into_iter().collect(),
            found,
            unproven,
        })
    }

    /// What the survey saw of a recorded resource, while it still holds: the resource and
    /// every resource it depends on are recorded as they were when it was read (nothing this
    /// run made or replaced changes what it is compared with).
    fn seen(&self, step: Step, res: &Resources) -> Option<&Live> {
        let mut todo = vec![step];
        while let Some(s) = todo.pop() {
            if res.get(&s).map(|r| &r.id) != self.before.get(&s).map(|r| &r.id) {
                return None;
            }
            todo.extend_from_slice(s.deps());
        }
        self.seen.get(&step)
    }
}

/// `status` for one step: how its recorded resource is, from `read` when given.
pub(crate) async fn inspect(
    step: Step,
    ctx: &Ctx,
    res: &Resources,
    read: Option<&Ec2Read>,
) -> Result<Live> {
    match res.get(&step) {
        Some(known) => observe(step, ctx, res, known, read).await,
        None => Ok(Live::Missing),
    }
}

/// The outcome of a delete call: deleted, or already gone ("not found" counts as done).
pub(crate) fn deletion<T>(r: Result<T, AwsError>) -> Result<Action> {
    match r {
        Ok(_) => Ok(Action::Deleted),
        Err(e) if e.is(Kind::NotFound) => Ok(Action::AlreadyGone),
        Err(e) => Err(e.into()),
    }
}

/// What `up` would do for one step, found with reads only.
#[derive(Debug)]
pub(crate) enum Planned {
    Nothing(Resource),
    Update(Resource, Vec<Difference>),
    Create,
}

/// `plan` for one step whose resource, if any, is in `res` (from the state file, or found
/// by `discovery::scan` as `up` would find it).
pub(crate) async fn plan(step: Step, ctx: &Ctx, res: &Resources) -> Result<Planned> {
    if let Some(known) = res.get(&step)
        && let Live::Present(live, diffs) = observe_recorded(step, ctx, res, known).await?
    {
        return Ok(if diffs.is_empty() {
            Planned::Nothing(live)
        } else {
            Planned::Update(live, diffs)
        });
    }
    Ok(Planned::Create)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Settings;

    /// A context whose clients point at a closed port: a call would fail the test.
    fn offline() -> Ctx {
        let conf = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let aws = Clients {
            ec2: aws_sdk_ec2::Client::new(&conf),
            iam: aws_sdk_iam::Client::new(&conf),
            kms: aws_sdk_kms::Client::new(&conf),
            lambda: aws_sdk_lambda::Client::new(&conf),
            s3: aws_sdk_s3::Client::new(&conf),
            sts: aws_sdk_sts::Client::new(&conf),
        };
        let stack = Stack {
            name: "privbucket".parse().unwrap(),
            region: "us-east-1".parse().unwrap(),
            account_id: "123456789012".into(),
            endpoint_url: None,
            settings: Settings::new(
                "b-123".parse().unwrap(),
                "10.16.0.0/16".parse().unwrap(),
                [
                    "10.16.0.0/24".parse().unwrap(),
                    "10.16.1.0/24".parse().unwrap(),
                ],
            ),
            partition: "aws".into(),
            bucket_intent: false,
        };
        Ctx::new(aws, stack, Progress::silent())
    }

    #[test]
    fn the_words_are_the_ones_status_has_always_printed() {
        let d: Difference =
            bucket::Drift::PublicAccessBlockOff(vec!["BlockPublicPolicy", "BlockPublicAcls"])
                .into();
        assert_eq!(
            d.to_string(),
            "public access block off: BlockPublicPolicy, BlockPublicAcls"
        );
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            "public access block off: BlockPublicPolicy, BlockPublicAcls"
        );
        let cidr: Difference = vpc::Drift::Cidr {
            have: "10.0.0.0/16".into(),
            want: "10.16.0.0/16".into(),
        }
        .into();
        assert_eq!(
            cidr.to_string(),
            "CIDR is 10.0.0.0/16, expected 10.16.0.0/16"
        );
        assert!(!cidr.in_place());
        assert!(Difference::from(subnet::Drift::PublicIpOnLaunch).in_place());
        let failed = Difference::from(function::Drift::FunctionFailed("x".into()));
        assert!(failed.replaces() && failed.in_place());
    }

    #[tokio::test]
    async fn a_borrowed_resource_is_neither_changed_nor_deleted() {
        let ctx = offline();
        let theirs = Resource::new("vpc-theirs").owned_as(Ownership::Borrowed);
        let res: Resources = [(Step::Vpc, theirs.clone())].into();
        let refused = fix(
            Step::Vpc,
            &ctx,
            &res,
            &theirs,
            &[vpc::Drift::DnsSupportOff.into()],
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(refused.contains("vpc-theirs is borrowed"), "{refused}");
        let down = Arc::new(Teardown {
            delete_objects: true,
            eni_timeout: Duration::from_secs(1),
            prefetch: prefetch::Prefetch::default(),
            vpc: None,
            kms_deletion_window: 30,
        });
        let kept = remove(Step::Vpc, Arc::new(ctx), down, Arc::new(res))
            .await
            .unwrap();
        assert!(matches!(kept.action, Action::Left(_)), "{kept:?}");
    }
}
