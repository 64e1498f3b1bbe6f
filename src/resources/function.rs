//! The two functions: the uploader inside the VPC, and the control function outside it,
//! whose AccessDenied proves the bucket policy (not IAM) stops writes from outside the
//! endpoint. Both run the example handler (`lambda/uploader.py`, zipped here), unless the
//! stack has code of its own (`up --code`), which the uploader runs with its settings.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_lambda::operation::create_function::builders::CreateFunctionFluentBuilder;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Architecture, Environment, FunctionCode, FunctionConfiguration, LastUpdateStatus, LogType,
    Runtime, State, VpcConfig,
};
use base64::Engine;

use super::Difference;
use super::Teardown;
use super::contract::{Answer, Contract};
use super::read::Ec2Read;
use super::wait::{GONE, Seen, Waiter};
use super::{Ctx, Live, Made, deletion, need};
use crate::aws::{Backoff, retry};
use crate::code::{BUCKET_VARIABLES, FunctionSettings, value_hash};
use crate::config::BucketName;
use crate::error::{AwsError, Call, CallResultExt, InputError, Kind};
use crate::graph::{Function, Side, Step};
use crate::package::Package;
use crate::run::Action;
use crate::stack::STACK_TAG;
use crate::state::{Resource, Resources};

/// How this kind differs from what it should be: one variant per fact, so `fix` matches
/// on the fact and the words (the `Display`) are only for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Drift {
    Runtime {
        have: String,
        want: String,
    },
    Handler {
        have: String,
        want: String,
    },
    Role {
        have: String,
        want: String,
    },
    BucketVariable {
        have: String,
        want: String,
    },
    VpcConfig {
        have: String,
        want: String,
    },
    /// The control function runs in a VPC.
    InVpc(String),
    Memory {
        have: i32,
        want: i32,
    },
    Timeout {
        have: i32,
        want: i32,
    },
    /// Variables other than the bucket's, by name.
    Environment(String),
    /// The code is not the package of (where it should come from).
    Code(String),
    Architecture {
        have: String,
        want: String,
    },
    /// The stack's own code cannot be packaged (moved, deleted, over a limit).
    CodeUnreadable(String),
    /// Lambda's `State` is `Failed` (with AWS's `StateReason`): such a function takes no
    /// update, and AWS's remedy is to delete and create it again ("Lambda function states",
    /// Lambda developer guide), which `up` does.
    FunctionFailed(String),
    /// Lambda's `State` is not `Active` (with AWS's `StateReason`).
    FunctionState {
        state: String,
        reason: Option<String>,
    },
    LastUpdateFailed(Option<String>),
}

impl Drift {
    /// Whether `up` can put it right without replacing the resource (see
    /// [`super::Difference::in_place`]).
    pub(crate) fn in_place(&self) -> bool {
        match self {
            Drift::CodeUnreadable(_) => false,
            Drift::Runtime { .. }
            | Drift::Handler { .. }
            | Drift::Role { .. }
            | Drift::BucketVariable { .. }
            | Drift::VpcConfig { .. }
            | Drift::InVpc(_)
            | Drift::Memory { .. }
            | Drift::Timeout { .. }
            | Drift::Environment(_)
            | Drift::Code(_)
            | Drift::Architecture { .. }
            | Drift::FunctionFailed(_)
            | Drift::FunctionState { .. }
            | Drift::LastUpdateFailed(_) => true,
        }
    }
}

fn reason(r: &Option<String>) -> String {
    r.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Runtime { have, want } => write!(f, "runtime is {have}, expected {want}"),
            Drift::Handler { have, want } => write!(f, "handler is {have}, expected {want}"),
            Drift::Role { have, want } => write!(f, "role is {have}, expected {want}"),
            Drift::BucketVariable { have, want } => {
                write!(f, "PRIVATE_BUCKET is {have}, expected {want}")
            }
            Drift::VpcConfig { have, want } => write!(f, "VPC config is {have}, expected {want}"),
            Drift::InVpc(subnets) => {
                write!(f, "runs in a VPC (subnets [{subnets}]), expected none")
            }
            Drift::Memory { have, want } => write!(f, "memory is {have} MB, expected {want} MB"),
            Drift::Timeout { have, want } => write!(f, "timeout is {have} s, expected {want} s"),
            Drift::Environment(what) => write!(f, "environment: {what}"),
            Drift::Code(source) => write!(f, "code differs from {source}"),
            Drift::Architecture { have, want } => {
                write!(f, "architecture is {have}, expected {want}")
            }
            Drift::CodeUnreadable(e) => write!(f, "code could not be compared: {e}"),
            Drift::FunctionFailed(reason) => write!(f, "state is Failed ({reason})"),
            Drift::FunctionState { state, reason: r } => write!(f, "state is {state}{}", reason(r)),
            Drift::LastUpdateFailed(r) => write!(f, "last update failed{}", reason(r)),
        }
    }
}

/// The variable that names the stack's bucket to the function, and marks it as privbucket's.
const BUCKET_VARIABLE: &str = BUCKET_VARIABLES[0];

/// The handler, compiled into the binary so the binary is all a user needs.
pub(crate) const HANDLER_SOURCE: &str = include_str!("../../lambda/uploader.py");
pub(crate) const HANDLER: &str = "uploader.handler";
pub(crate) const RUNTIME: Runtime = Runtime::Python313;
/// IAM propagation to Lambda usually takes seconds; give up after five minutes (as
/// terraform-provider-aws does for Lambda's IAM errors).
const PROPAGATION_BUDGET: Duration = Duration::from_secs(5 * 60);
/// A VPC function may take minutes to become Active while Lambda makes its ENIs.
pub(crate) const STATE_WAIT: Duration = Duration::from_secs(15 * 60);

/// The example handler's package, zipped as a folder of yours would be (so the same source
/// always gives the same `CodeSha256`).
pub(crate) fn example_package() -> Result<Package> {
    Package::of(vec![(
        "uploader.py".to_string(),
        HANDLER_SOURCE.as_bytes().to_vec(),
        0o644,
    )])
    .context("packaging the handler")
}

fn role_arn(res: &Resources, f: Function) -> Result<&str> {
    let role = res.get(&f.role()).ok_or_else(|| {
        anyhow!(
            "internal error: the role of {} is not known",
            f.step().key()
        )
    })?;
    Ok(role.arn_or_id())
}

/// Outside any VPC: empty lists, so an update also takes a function out of a VPC.
fn no_vpc() -> VpcConfig {
    VpcConfig::builder()
        .set_subnet_ids(Some(Vec::new()))
        .set_security_group_ids(Some(Vec::new()))
        .build()
}

fn vpc_config(f: Function, res: &Resources) -> Result<VpcConfig> {
    Ok(match f {
        Function::Uploader => VpcConfig::builder()
            .set_subnet_ids(Some(super::network::subnet_ids(res)))
            .security_group_ids(need(res, Step::SecurityGroup)?)
            .build(),
        Function::Control => no_vpc(),
    })
}

/// What a function should be: its code and configuration.
struct Spec {
    code: SpecCode,
    runtime: Runtime,
    handler: String,
    memory: i32,
    timeout: i32,
    architecture: Architecture,
    /// The user's variables and the stack's bucket.
    env: BTreeMap<String, EnvValue>,
}

/// The package a function should run, or why it cannot be compared.
enum SpecCode {
    Package {
        zip: Vec<u8>,
        sha256: String,
        /// Where the code comes from, as `status` names it.
        source: String,
    },
    /// The recorded code cannot be packaged here: `status` says why.
    Unreadable(String),
    /// `up` without `--code` on a machine without the recorded code: the deployed code stays.
    LeftAlone(String),
}

/// A variable's value as given in this run, or only the hash the state keeps of it.
enum EnvValue {
    Given(String),
    Hashed(String),
}

impl EnvValue {
    fn hash(&self) -> String {
        match self {
            EnvValue::Given(v) => value_hash(v),
            EnvValue::Hashed(h) => h.clone(),
        }
    }
}

/// Where the uploader's own code comes from in this command.
#[derive(Debug, Clone)]
pub(crate) enum CodeSource {
    /// Built (by `up` before its lock, or on first use).
    Built(Arc<Package>),
    /// Cannot be built here; the reason.
    Unreadable(String),
    /// `up` was given no `--code` and the recorded path is not on this machine.
    LeftAlone(String),
}

impl Spec {
    /// The variables to set: the values given, or, for a variable the state knows only by its
    /// hash, the function's own value when it still has that hash.
    fn environment(&self, name: &str, live: Option<&FunctionConfiguration>) -> Result<Environment> {
        let have = live
            .and_then(|c| c.environment())
            .and_then(|e| e.variables());
        let mut vars = std::collections::HashMap::new();
        for (k, v) in &self.env {
            let value = match v {
                EnvValue::Given(v) => v.clone(),
                EnvValue::Hashed(h) => match have.and_then(|m| m.get(k)) {
                    Some(live) if value_hash(live) == *h => live.clone(),
                    _ => bail!(
                        "Lambda function {name}'s variable {k} is not what `up` last set, and \
                         the state keeps only a hash of its value; pass the value again with \
                         --env or --env-file"
                    ),
                },
            };
            vars.insert(k.clone(), value);
        }
        Ok(Environment::builder().set_variables(Some(vars)).build())
    }
}

/// The uploader's settings when the stack has code of its own.
fn own(f: Function, ctx: &Ctx) -> Option<&FunctionSettings> {
    match f {
        Function::Uploader => ctx.stack.settings.function.as_ref(),
        Function::Control => None,
    }
}

/// The package of the stack's own code: the one `up` checked, or built now from where it was.
fn own_code(ctx: &Ctx, s: &FunctionSettings) -> SpecCode {
    let source =
        ctx.package.get_or_init(
            || match tokio::task::block_in_place(|| Package::build(&s.code)) {
                Ok(p) => CodeSource::Built(Arc::new(p)),
                Err(e) => CodeSource::Unreadable(format!(
                    "{}; pass --code with where the function's code is now",
                    e.0
                )),
            },
        );
    match source {
        CodeSource::Built(p) => SpecCode::Package {
            zip: p.bytes.clone(),
            sha256: p.sha256(),
            source: format!("the package of {}", s.code.display()),
        },
        CodeSource::Unreadable(why) => SpecCode::Unreadable(why.clone()),
        CodeSource::LeftAlone(why) => SpecCode::LeftAlone(why.clone()),
    }
}

fn spec(f: Function, ctx: &Ctx) -> Result<Spec> {
    let mut env: BTreeMap<String, EnvValue> = match own(f, ctx) {
        Some(s) => match &s.env_values {
            Some(values) => values
                .iter()
                .map(|(k, v)| (k.clone(), EnvValue::Given(v.clone())))
                .collect(),
            None => s
                .env_sha256
                .iter()
                .map(|(k, h)| (k.clone(), EnvValue::Hashed(h.clone())))
                .collect(),
        },
        None => BTreeMap::new(),
    };
    for v in BUCKET_VARIABLES {
        env.insert(
            v.to_string(),
            EnvValue::Given(ctx.stack.bucket().to_string()),
        );
    }
    Ok(match own(f, ctx) {
        Some(s) => Spec {
            code: own_code(ctx, s),
            runtime: Runtime::from(s.runtime.as_str()),
            handler: s.handler.clone(),
            memory: s.memory_mb,
            timeout: s.timeout_seconds,
            architecture: Architecture::from(s.architecture.as_str()),
            env,
        },
        None => {
            let p = example_package()?;
            Spec {
                code: SpecCode::Package {
                    sha256: p.sha256(),
                    zip: p.bytes,
                    source: "this privbucket's handler".to_string(),
                },
                runtime: RUNTIME,
                handler: HANDLER.to_string(),
                memory: 128,
                timeout: 15,
                architecture: Architecture::X8664,
                env,
            }
        }
    })
}

fn description(ctx: &Ctx, f: Function) -> String {
    match f {
        Function::Uploader => format!(
            "privbucket {}: writes to {} from inside the VPC, through the S3 endpoint",
            ctx.stack.name,
            ctx.stack.bucket()
        ),
        Function::Control => format!(
            "privbucket {}: the same code outside the VPC; its writes to {} are denied",
            ctx.stack.name,
            ctx.stack.bucket()
        ),
    }
}

pub(crate) async fn find(f: Function, ctx: &Ctx) -> Result<Option<Resource>> {
    Ok(find_configured(f, ctx).await?.map(|(r, _, _)| r))
}

/// The function if it is the stack's, with the bucket its `PRIVATE_BUCKET` names (how a
/// stack without a state file tells its bucket) and its configuration as read.
pub(crate) async fn find_configured(
    f: Function,
    ctx: &Ctx,
) -> Result<Option<(Resource, Option<BucketName>, Option<FunctionConfiguration>)>> {
    let name = ctx.stack.function_name(f);
    let Some(out) = ctx
        .aws
        .lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .call("GetFunction", &name)
        .found()?
    else {
        return Ok(None);
    };
    let ours = out
        .tags()
        .and_then(|t| t.get(STACK_TAG))
        .is_some_and(|v| v == ctx.stack.name.as_str());
    if !ours {
        return Err(InputError(format!(
            "Lambda function {name} exists but is not tagged {STACK_TAG}={}; privbucket will \
             not take over, change or delete a function it did not make. Nothing was changed. \
             Delete or rename it, or choose another --name",
            ctx.stack.name
        ))
        .into());
    }
    let c = out.configuration();
    let arn = c.and_then(|c| c.function_arn()).unwrap_or_default();
    let bucket = c
        .and_then(|c| c.environment())
        .and_then(|e| e.variables())
        .and_then(|v| v.get(BUCKET_VARIABLE))
        .and_then(|b| b.parse().ok());
    Ok(Some((
        Resource::new(&name).with_arn(arn),
        bucket,
        c.cloned(),
    )))
}

/// A VPC function is `Pending` while Lambda makes its network interfaces: `fix` waits for
/// `Active` once the function is recorded.
pub(crate) async fn create(f: Function, ctx: &Ctx, res: &Resources) -> Result<Made<Drift>> {
    let name = ctx.stack.function_name(f);
    let role = role_arn(res, f)?.to_string();
    let request = create_request(f, ctx, res, &name, &role)?;
    let out = retry(
        PROPAGATION_BUDGET,
        Backoff {
            first: Duration::from_secs(1),
            cap: Duration::from_secs(10),
        },
        |e| e.is(Kind::Propagating),
        |e, d| {
            ctx.progress.wait(
                f.step(),
                &format!(
                    "IAM role not yet usable by Lambda ({}); trying again in {}",
                    e.message.as_deref().unwrap_or("propagating"),
                    humantime::format_duration(d)
                ),
            )
        },
        || {
            let request = request.clone();
            let name = &name;
            async move { request.send().await.call("CreateFunction", name) }
        },
    )
    .await;
    let mut active = false;
    let arn = match out {
        Ok(out) => {
            active = out.state() == Some(&State::Active);
            out.function_arn().unwrap_or_default().to_string()
        }
        // A lost response to an earlier attempt made it; the names are ours alone.
        Err(e) if e.code.as_deref() == Some("ResourceConflictException") => {
            match find(f, ctx).await? {
                Some(r) => r.arn.unwrap_or_default(),
                None => return Err(e.into()),
            }
        }
        Err(e) if e.is(Kind::Propagating) => {
            return Err(anyhow::Error::new(e).context(format!(
                "IAM role {role} was still not usable by Lambda after {}; run `privbucket up` \
                 again in a minute",
                humantime::format_duration(PROPAGATION_BUDGET)
            )));
        }
        Err(e) => return Err(zone_hint(e, res)),
    };
    let lacks = if active {
        Vec::new()
    } else {
        vec![Drift::FunctionState {
            state: State::Pending.as_str().to_string(),
            reason: None,
        }]
    };
    Ok(Made::lacking(Resource::new(name).with_arn(arn), lacks))
}

/// The `CreateFunction` request, built once and sent again while IAM propagates.
fn create_request(
    f: Function,
    ctx: &Ctx,
    res: &Resources,
    name: &str,
    role: &str,
) -> Result<CreateFunctionFluentBuilder> {
    let want = spec(f, ctx)?;
    let zip = match &want.code {
        SpecCode::Package { zip, .. } => zip.clone(),
        SpecCode::Unreadable(why) | SpecCode::LeftAlone(why) => {
            bail!("cannot create Lambda function {name}: {why}")
        }
    };
    let tags: BTreeMap<String, String> = ctx.stack.tags(f.step()).into_iter().collect();
    Ok(ctx
        .aws
        .lambda
        .create_function()
        .function_name(name)
        .runtime(want.runtime.clone())
        .role(role)
        .handler(&want.handler)
        .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
        .description(description(ctx, f))
        .timeout(want.timeout)
        .memory_size(want.memory)
        .architectures(want.architecture.clone())
        .environment(want.environment(name, None)?)
        .vpc_config(vpc_config(f, res)?)
        .set_tags(Some(tags.into_iter().collect())))
}

/// Lambda does not run in every zone of a region ("The provided subnets contain availability
/// zone Lambda doesn't support. Please use a different set of subnets.",
/// `InvalidParameterValueException`; keboola/developer-portal#81): the subnets would have to
/// move, which privbucket does not do behind a user's back, so the error names their zones and
/// the way out.
fn zone_hint(e: AwsError, res: &Resources) -> anyhow::Error {
    let refused = e.code.as_deref() == Some("InvalidParameterValueException")
        && e.message
            .as_deref()
            .is_some_and(|m| m.contains("availability zone Lambda doesn't support"));
    if !refused {
        return e.into();
    }
    let describe = |id: &str, zone: Option<&str>, zone_id: Option<&str>| {
        format!(
            "{id} in {} ({})",
            zone.unwrap_or("?"),
            zone_id.unwrap_or("zone ID unknown")
        )
    };
    let (zones, way_out): (Vec<String>, &str) = match res.get(&Step::Vpc) {
        Some(v) if v.ownership == crate::state::Ownership::Borrowed => (
            v.borrowed_subnets()
                .iter()
                .map(|s| {
                    describe(
                        &s.id,
                        Some(&s.availability_zone),
                        s.availability_zone_id.as_deref(),
                    )
                })
                .collect(),
            "run `privbucket down`, then `privbucket up --vpc --subnets` with subnets in zones \
             Lambda supports",
        ),
        _ => (
            Side::BOTH
                .iter()
                .filter_map(|s| res.get(&s.subnet()))
                .map(|r| describe(&r.id, r.zone(), r.zone_id()))
                .collect(),
            "run `privbucket down`, then `privbucket up --zones` with two zones Lambda supports \
             in this region",
        ),
    };
    anyhow::Error::new(e).context(format!(
        "Lambda does not support the zone of one of the subnets: {}; {way_out}",
        zones.join(", ")
    ))
}

/// How often a function's state is read while waiting: the wait ends within a second of
/// Lambda's change (the SDK's waiters back off to tens of seconds, and end at once on the 404
/// Lambda can answer right after `CreateFunction`).
const STATE_POLL: Backoff = Backoff {
    first: Duration::from_secs(1),
    cap: Duration::from_secs(1),
};

/// How long a function made moments ago may still be unknown to `GetFunction` (404
/// `ResourceNotFoundException`; "Lambda function states", Lambda developer guide).
const VISIBLE_WAIT: Duration = Duration::from_secs(2 * 60);

/// Waits until Lambda takes changes again: the function exists, is not `Pending` (a VPC
/// function is, while Lambda makes its ENIs) and has no update `InProgress`. A `Failed`
/// function is an error with AWS's reason.
async fn wait_settled(f: Function, ctx: &Ctx, name: &str) -> Result<FunctionConfiguration> {
    let waiter = Waiter {
        what: format!("Lambda function {name}"),
        step: f.step(),
        target: &["settled"],
        pending: &["Pending", "updating"],
        unlisted_for: VISIBLE_WAIT,
        every: STATE_POLL,
        timeout: STATE_WAIT,
        then: "see its state with `aws lambda get-function`, then run the same command again",
    };
    let settled = waiter
        .wait(&ctx.progress, || async {
            let Some(c) = configuration(ctx, name).await? else {
                return Ok(None);
            };
            if c.state() == Some(&State::Failed) {
                bail!(
                    "Lambda function {name} is Failed: {}; delete it (`aws lambda \
                     delete-function --function-name {name}`) and run `privbucket up` again",
                    c.state_reason().unwrap_or("no reason given")
                );
            }
            let state = if c.state() == Some(&State::Pending) {
                "Pending"
            } else if c.last_update_status() == Some(&LastUpdateStatus::InProgress) {
                "updating"
            } else {
                "settled"
            };
            Ok(Some(Seen::new(c, state)))
        })
        .await?;
    settled.ok_or_else(|| anyhow!("internal error: the wait for {name} ended without it"))
}

/// How long an update or delete is retried while Lambda answers that another update is in
/// progress.
const CONFLICT_BUDGET: Duration = Duration::from_secs(5 * 60);

/// Runs a change of the function, again while Lambda answers 409 `ResourceConflictException`
/// ("The operation cannot be performed at this time. An update is in progress for resource:
/// …"; Lambda API reference, `UpdateFunctionConfiguration` errors). privbucket waits for its
/// own updates, but another's can land between its read and its write; terraform-provider-aws
/// retries the same error on every update (internal/service/lambda/function.go).
async fn when_free<T, F, Fut>(f: Function, ctx: &Ctx, name: &str, op: F) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    retry(
        CONFLICT_BUDGET,
        STATE_POLL,
        |e| e.code.as_deref() == Some("ResourceConflictException"),
        |_, _| {
            ctx.progress.wait(
                f.step(),
                &format!("another update of {name} is in progress; waiting for it to finish"),
            )
        },
        op,
    )
    .await
}

/// Waits for an update privbucket made, and says if Lambda failed it.
async fn wait_updated(f: Function, ctx: &Ctx, name: &str) -> Result<()> {
    let c = wait_settled(f, ctx, name).await?;
    if c.last_update_status() == Some(&LastUpdateStatus::Failed) {
        bail!(
            "the update of Lambda function {name} failed: {}; run the same command again",
            c.last_update_status_reason().unwrap_or("no reason given")
        );
    }
    Ok(())
}

/// A function's configuration; `None` when there is no such function.
pub(crate) async fn configuration(ctx: &Ctx, name: &str) -> Result<Option<FunctionConfiguration>> {
    let out = ctx
        .aws
        .lambda
        .get_function()
        .function_name(name)
        .send()
        .await
        .call("GetFunction", name)
        .found()?;
    Ok(out.and_then(|o| o.configuration().cloned()))
}

fn set(items: &[String]) -> BTreeSet<&str> {
    items.iter().map(String::as_str).collect()
}

pub(crate) async fn observe(
    f: Function,
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
) -> Result<Live<Drift>> {
    let Some(c) = configuration(ctx, &known.id).await? else {
        return Ok(Live::Missing);
    };
    let mut diffs = match spec(f, ctx) {
        Ok(want) => {
            let mut d = config_differences(f, ctx, res, &c, &want);
            d.extend(code_differences(&c, &want));
            d
        }
        Err(e) => vec![Drift::CodeUnreadable(format!("{e:#}"))],
    };
    match c.state() {
        // Inactive is normal for a function idle for weeks: it wakes on the next invoke.
        Some(State::Active) | Some(State::Inactive) | None => {}
        Some(State::Failed) => diffs.push(Drift::FunctionFailed(
            c.state_reason()
                .unwrap_or("Lambda gave no reason")
                .to_string(),
        )),
        Some(s) => diffs.push(Drift::FunctionState {
            state: s.as_str().to_string(),
            reason: c.state_reason().map(str::to_string),
        }),
    }
    if c.last_update_status() == Some(&LastUpdateStatus::Failed) {
        diffs.push(Drift::LastUpdateFailed(
            c.last_update_status_reason().map(str::to_string),
        ));
    }
    let arn = c.function_arn().unwrap_or_default();
    Ok(Live::Present(Resource::new(&known.id).with_arn(arn), diffs))
}

/// How the configuration differs from what it should be: what `UpdateFunctionConfiguration`
/// puts right.
fn config_differences(
    f: Function,
    ctx: &Ctx,
    res: &Resources,
    c: &FunctionConfiguration,
    want: &Spec,
) -> Vec<Drift> {
    let mut diffs = Vec::new();
    if c.runtime() != Some(&want.runtime) {
        diffs.push(Drift::Runtime {
            have: c
                .runtime()
                .map(|r| r.as_str())
                .unwrap_or("none")
                .to_string(),
            want: want.runtime.as_str().to_string(),
        });
    }
    if c.handler() != Some(want.handler.as_str()) {
        diffs.push(Drift::Handler {
            have: c.handler().unwrap_or("none").to_string(),
            want: want.handler.clone(),
        });
    }
    if c.memory_size() != Some(want.memory) {
        diffs.push(Drift::Memory {
            have: c.memory_size().unwrap_or_default(),
            want: want.memory,
        });
    }
    if c.timeout() != Some(want.timeout) {
        diffs.push(Drift::Timeout {
            have: c.timeout().unwrap_or_default(),
            want: want.timeout,
        });
    }
    if let Ok(role) = role_arn(res, f)
        && c.role() != Some(role)
    {
        diffs.push(Drift::Role {
            have: c.role().unwrap_or("none").to_string(),
            want: role.to_string(),
        });
    }
    diffs.extend(environment_differences(ctx, c, want));
    diffs.extend(vpc_differences(f, res, c));
    diffs
}

/// The bucket variable, and the other variables by name, compared by hash: their values may
/// be secrets.
fn environment_differences(ctx: &Ctx, c: &FunctionConfiguration, want: &Spec) -> Vec<Drift> {
    let mut diffs = Vec::new();
    let empty = std::collections::HashMap::new();
    let have = c
        .environment()
        .and_then(|e| e.variables())
        .unwrap_or(&empty);
    let bucket = have.get(BUCKET_VARIABLE);
    if bucket.map(String::as_str) != Some(ctx.stack.bucket()) {
        diffs.push(Drift::BucketVariable {
            have: bucket.map(String::as_str).unwrap_or("unset").to_string(),
            want: ctx.stack.bucket().to_string(),
        });
    }
    let mut changed: Vec<String> = Vec::new();
    for (k, v) in want.env.iter().filter(|(k, _)| *k != BUCKET_VARIABLE) {
        match have.get(k) {
            None => changed.push(format!("{k} unset")),
            Some(h) if value_hash(h) != v.hash() => changed.push(format!("{k} differs")),
            Some(_) => {}
        }
    }
    let mut extra: Vec<&String> = have.keys().filter(|k| !want.env.contains_key(*k)).collect();
    extra.sort();
    changed.extend(extra.into_iter().map(|k| format!("{k} not expected")));
    if !changed.is_empty() {
        diffs.push(Drift::Environment(changed.join(", ")));
    }
    diffs
}

/// The uploader in the stack's subnets and group; the control function in no VPC.
fn vpc_differences(f: Function, res: &Resources, c: &FunctionConfiguration) -> Vec<Drift> {
    let mut diffs = Vec::new();
    let (subnets, groups) = c
        .vpc_config()
        .map(|v| (set(v.subnet_ids()), set(v.security_group_ids())))
        .unwrap_or_default();
    match f {
        Function::Uploader => {
            let ids = super::network::subnet_ids(res);
            let want_subnets: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
            let want_groups: BTreeSet<&str> = res
                .get(&Step::SecurityGroup)
                .map(|r| r.id.as_str())
                .into_iter()
                .collect();
            if subnets != want_subnets || groups != want_groups {
                diffs.push(Drift::VpcConfig {
                    have: format!(
                        "subnets [{}] security groups [{}]",
                        join(&subnets),
                        join(&groups)
                    ),
                    want: format!("[{}] [{}]", join(&want_subnets), join(&want_groups)),
                });
            }
        }
        Function::Control => {
            if !subnets.is_empty() || !groups.is_empty() {
                diffs.push(Drift::InVpc(join(&subnets)));
            }
        }
    }
    diffs
}

/// How the code differs: what `UpdateFunctionCode` puts right (the package, and the
/// architecture it is built for).
fn code_differences(c: &FunctionConfiguration, want: &Spec) -> Vec<Drift> {
    let mut diffs = Vec::new();
    match &want.code {
        SpecCode::Package { sha256, source, .. } if c.code_sha256() != Some(sha256.as_str()) => {
            diffs.push(Drift::Code(source.clone()));
        }
        SpecCode::Unreadable(why) => diffs.push(Drift::CodeUnreadable(why.clone())),
        SpecCode::Package { .. } | SpecCode::LeftAlone(_) => {}
    }
    let arch = c
        .architectures()
        .first()
        .cloned()
        .unwrap_or(Architecture::X8664);
    if arch != want.architecture {
        diffs.push(Drift::Architecture {
            have: arch.as_str().to_string(),
            want: want.architecture.as_str().to_string(),
        });
    }
    diffs
}

fn join(s: &BTreeSet<&str>) -> String {
    s.iter().copied().collect::<Vec<_>>().join(", ")
}

/// Waits out a pending state or update, then, if anything but the state differs, puts
/// configuration and code right.
pub(crate) async fn fix(
    f: Function,
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
    diffs: &[Drift],
) -> Result<()> {
    let name = &known.id;
    let c = wait_settled(f, ctx, name).await?;
    let want = spec(f, ctx)?;
    // What differs now (the function is settled), not what the survey saw: each update only
    // when its part differs, one after the other as Lambda requires.
    let retry_failed = diffs
        .iter()
        .any(|d| matches!(d, Drift::LastUpdateFailed(_)));
    if retry_failed || !config_differences(f, ctx, res, &c, &want).is_empty() {
        let (role, vpc) = (role_arn(res, f)?, vpc_config(f, res)?);
        let environment = want.environment(name, Some(&c))?;
        when_free(f, ctx, name, || async {
            ctx.aws
                .lambda
                .update_function_configuration()
                .function_name(name)
                .runtime(want.runtime.clone())
                .handler(&want.handler)
                .memory_size(want.memory)
                .timeout(want.timeout)
                .role(role)
                .description(description(ctx, f))
                .environment(environment.clone())
                .vpc_config(vpc.clone())
                .send()
                .await
                .call("UpdateFunctionConfiguration", name)
        })
        .await
        .map_err(|e| zone_hint(e, res))?;
        wait_updated(f, ctx, name).await?;
    }
    if let SpecCode::Package { zip, .. } = &want.code
        && !code_differences(&c, &want).is_empty()
    {
        when_free(f, ctx, name, || async {
            ctx.aws
                .lambda
                .update_function_code()
                .function_name(name)
                .zip_file(Blob::new(zip.clone()))
                .architectures(want.architecture.clone())
                .send()
                .await
                .call("UpdateFunctionCode", name)
        })
        .await?;
        wait_updated(f, ctx, name).await?;
    }
    Ok(())
}

/// The uploader is first taken out of the VPC and the update waited for: Lambda then starts
/// releasing its network interfaces at once, instead of up to 20 minutes after the delete.
/// The configuration `down` read in its first round is used instead of a read of its own; if
/// it is stale, Lambda says so (a conflict while an update runs, not found once deleted).
pub(crate) async fn delete(
    f: Function,
    ctx: &Ctx,
    name: &str,
    read: Option<FunctionConfiguration>,
) -> Result<Action> {
    let read = match read {
        Some(c) => Some(c),
        None => configuration(ctx, name).await?,
    };
    let Some(c) = read else {
        return Ok(Action::AlreadyGone);
    };
    let in_vpc = c
        .vpc_config()
        .is_some_and(|v| !v.subnet_ids().is_empty() || !v.security_group_ids().is_empty());
    // A Failed function takes no update: it is deleted as it is (Lambda then releases what
    // ENIs it made, as for any deleted function).
    if in_vpc && c.state() != Some(&State::Failed) {
        // The read above usually shows it settled: no second read then.
        let settled = c.state() != Some(&State::Pending)
            && c.last_update_status() != Some(&LastUpdateStatus::InProgress);
        if !settled {
            wait_settled(f, ctx, name).await?;
        }
        ctx.progress
            .wait(f.step(), &format!("detaching {name} from the VPC"));
        when_free(f, ctx, name, || async {
            ctx.aws
                .lambda
                .update_function_configuration()
                .function_name(name)
                .vpc_config(no_vpc())
                .send()
                .await
                .call("UpdateFunctionConfiguration", name)
        })
        .await
        .gone()?;
        wait_updated(f, ctx, name).await?;
    }
    deletion(
        when_free(f, ctx, name, || async {
            ctx.aws
                .lambda
                .delete_function()
                .function_name(name)
                .send()
                .await
                .call("DeleteFunction", name)
        })
        .await,
    )
}

/// What a synchronous invoke answered: the payload (parsed when it is JSON), the function's
/// error when it raised (`FunctionError`), and the tail of its log when asked for.
pub(crate) struct Invoked {
    pub(crate) payload: Option<serde_json::Value>,
    pub(crate) raw: Vec<u8>,
    pub(crate) function_error: Option<String>,
    pub(crate) log: Option<String>,
}

impl Invoked {
    pub(crate) fn raised(&self) -> bool {
        self.function_error.is_some()
    }
}

pub(crate) async fn invoke(
    ctx: &Ctx,
    f: Function,
    event: &serde_json::Value,
    log: bool,
) -> Result<Invoked> {
    let name = ctx.stack.function_name(f);
    let mut call = ctx
        .aws
        .lambda
        .invoke()
        .function_name(&name)
        .payload(Blob::new(event.to_string()));
    if log {
        call = call.log_type(LogType::Tail);
    }
    let out = call.send().await.call("Invoke", &name)?;
    let raw = out
        .payload()
        .map(|p| p.as_ref().to_vec())
        .unwrap_or_default();
    Ok(Invoked {
        payload: serde_json::from_slice(&raw).ok(),
        raw,
        function_error: out.function_error().map(str::to_string),
        log: out.log_result().map(|l| {
            base64::engine::general_purpose::STANDARD
                .decode(l)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|_| l.to_string())
        }),
    })
}

/// Deletes a `Failed` function for `up` to make again, and waits until Lambda no longer
/// answers for the name (it may for a moment after the delete).
async fn replace(f: Function, ctx: &Ctx, name: &str) -> Result<()> {
    delete(f, ctx, name, None).await?;
    let waiter = Waiter {
        what: format!("Lambda function {name}"),
        step: f.step(),
        target: &[GONE],
        pending: &["Pending", "Active", "Inactive", "Failed", "unknown"],
        unlisted_for: Duration::ZERO,
        every: super::ec2::VISIBLE_BACKOFF,
        timeout: STATE_WAIT,
        then: "run `privbucket up` again",
    };
    waiter
        .wait(&ctx.progress, || async {
            let c = configuration(ctx, name).await?;
            Ok(c.map(|c| {
                let state = c.state().map_or("unknown", |s| s.as_str()).to_string();
                Seen::new((), state)
            }))
        })
        .await?;
    Ok(())
}

/// The uploader or the control function.
#[derive(Debug)]
pub(crate) struct FunctionStep(pub(crate) Function);

impl Contract for FunctionStep {
    fn find<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Option<Resource>> {
        let _ = res;
        Box::pin(find(self.0, ctx))
    }

    fn create<'a>(&'a self, ctx: &'a Ctx, res: &'a Resources) -> Answer<'a, Made> {
        Box::pin(async move { Ok(create(self.0, ctx, res).await?.widen()) })
    }

    fn observe<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        _read: Option<&'a Ec2Read>,
    ) -> Answer<'a, Live> {
        Box::pin(async move { Ok(observe(self.0, ctx, res, known).await?.widen()) })
    }

    fn fix<'a>(
        &'a self,
        ctx: &'a Ctx,
        res: &'a Resources,
        known: &'a Resource,
        diffs: &'a [Difference],
    ) -> Answer<'a, ()> {
        let mine = Drift::picked(diffs);
        Box::pin(async move { fix(self.0, ctx, res, known, &mine).await })
    }

    fn delete<'a>(
        &'a self,
        ctx: &'a Ctx,
        known: &'a Resource,
        down: &'a Teardown,
    ) -> Answer<'a, Action> {
        let read = down.prefetch.function(self.0, &known.id);
        Box::pin(delete(self.0, ctx, &known.id, read))
    }

    /// Only a `Failed` function is replaced.
    fn replace<'a>(&'a self, ctx: &'a Ctx, known: &'a Resource) -> Answer<'a, ()> {
        Box::pin(replace(self.0, ctx, &known.id))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn the_package_is_deterministic_and_holds_the_handler() {
        let a = example_package().unwrap();
        assert_eq!(a.bytes, example_package().unwrap().bytes);
        let mut zip = zip::ZipArchive::new(Cursor::new(a.bytes.clone())).unwrap();
        let mut f = zip.by_name("uploader.py").unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut f, &mut text).unwrap();
        assert!(text.contains("def handler"));
        assert_eq!(a.sha256().len(), 44);
    }
}
