//! `privbucket up`: build what is missing, repair what differs, leave the rest alone.
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::{Session, connect, emit, first_error, progress};
use crate::config::{
    BucketName, Cidr, DEFAULT_STACK, DEFAULT_SUBNET_CIDRS, DEFAULT_VPC_CIDR, Global, StackName,
    UpArgs, check_network,
};
use crate::error::InputError;
use crate::graph::{Direction, Step, steps};
use crate::resources::{Ctx, ensure};
use crate::run::{Action, StepReport, run as run_graph};
use crate::stack::Stack;
use crate::state::{self, Settings, State};

/// A state file, with no resources yet, for a stack `up` has not made.
pub(crate) fn new_state(want: &Wanted, session: &Session) -> State {
    let bucket = want
        .bucket
        .clone()
        .unwrap_or_else(|| Stack::default_bucket(&want.name, &session.account_id, &session.region));
    Stack {
        name: want.name.clone(),
        region: session.region.clone(),
        account_id: session.account_id.clone(),
        endpoint_url: session.endpoint_url.clone(),
        settings: Settings {
            bucket,
            vpc_cidr: want.vpc_cidr,
            subnet_cidrs: want.subnet_cidrs,
            control_function: want.control_function,
        },
    }
    .empty_state()
}

/// The settings `up` will use, before the account is known (the default bucket needs it).
pub(crate) struct Wanted {
    name: StackName,
    bucket: Option<BucketName>,
    vpc_cidr: Cidr,
    subnet_cidrs: [Cidr; 2],
    control_function: bool,
}

/// Flags against the state file: an existing stack keeps its settings, and a flag that would
/// change one is refused (exit 2) rather than half-applied.
pub(crate) fn wanted(
    args: &UpArgs,
    existing: Option<&State>,
    path: &str,
) -> Result<Wanted, InputError> {
    let conflict = |what: &str, have: &dyn fmt::Display, asked: &dyn fmt::Display| {
        InputError(format!(
            "state file {path} holds a stack with {what} {have}, but {asked} was asked for; \
             privbucket does not change that in place: run `privbucket down` first, or use \
             another --state for a second stack"
        ))
    };
    let Some(s) = existing else {
        let vpc_cidr = args
            .vpc_cidr
            .unwrap_or_else(|| DEFAULT_VPC_CIDR.parse().expect("default"));
        let subnet_cidrs = args
            .subnet_cidrs
            .unwrap_or_else(|| DEFAULT_SUBNET_CIDRS.map(|c| c.parse().expect("default")));
        check_network(vpc_cidr, subnet_cidrs)?;
        return Ok(Wanted {
            name: args
                .name
                .clone()
                .unwrap_or_else(|| DEFAULT_STACK.parse().expect("default")),
            bucket: args.bucket.clone(),
            vpc_cidr,
            subnet_cidrs,
            control_function: !args.no_control_function,
        });
    };
    if let Some(n) = &args.name
        && *n != s.stack
    {
        return Err(conflict("name", &s.stack, n));
    }
    if let Some(b) = &args.bucket
        && *b != s.settings.bucket
    {
        return Err(conflict("bucket", &s.settings.bucket, b));
    }
    if let Some(c) = &args.vpc_cidr
        && *c != s.settings.vpc_cidr
    {
        return Err(conflict("VPC CIDR", &s.settings.vpc_cidr, c));
    }
    if let Some(c) = &args.subnet_cidrs
        && *c != s.settings.subnet_cidrs
    {
        let have = format!(
            "{},{}",
            s.settings.subnet_cidrs[0], s.settings.subnet_cidrs[1]
        );
        let asked = format!("{},{}", c[0], c[1]);
        return Err(conflict("subnet CIDRs", &have, &asked));
    }
    if args.no_control_function && s.settings.control_function {
        return Err(conflict(
            "control function",
            &"present",
            &"--no-control-function",
        ));
    }
    Ok(Wanted {
        name: s.stack.clone(),
        bucket: Some(s.settings.bucket.clone()),
        vpc_cidr: s.settings.vpc_cidr,
        subnet_cidrs: s.settings.subnet_cidrs,
        control_function: s.settings.control_function,
    })
}

#[derive(Debug, Serialize)]
pub struct UpReport {
    pub stack: String,
    pub region: String,
    pub account_id: String,
    pub bucket: String,
    pub endpoint: Option<String>,
    pub uploader_function: Option<String>,
    pub control_function: Option<String>,
    pub up_to_date: bool,
    pub steps: Vec<StepReport>,
}

impl fmt::Display for UpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.up_to_date {
            write!(f, "Everything is up to date: ")?;
        } else {
            write!(f, "Stack is up: ")?;
        }
        write!(
            f,
            "stack {} in {} (account {}). Bucket {} takes writes only through VPC endpoint {}",
            self.stack,
            self.region,
            self.account_id,
            self.bucket,
            self.endpoint.as_deref().unwrap_or("?"),
        )?;
        if let Some(u) = &self.uploader_function {
            write!(f, ", from function {u}")?;
        }
        write!(f, ".")
    }
}

pub async fn run(g: &Global, args: &UpArgs) -> Result<ExitCode> {
    let _lock = state::lock(&g.state_path, g.lock_timeout)?;
    let existing = state::load(&g.state_path)?;
    let want = wanted(args, existing.as_ref(), &g.state_path.display().to_string())?;
    let session = connect(g, existing.as_ref(), args.max_concurrency).await?;
    let mut state = match existing {
        Some(s) => s,
        None => {
            // Written before the first create, so a crash at any point leaves a state to
            // resume from.
            let s = new_state(&want, &session);
            state::save(&g.state_path, &s)?;
            s
        }
    };
    let progress = progress(g);
    let stack = Stack::from_state(&state);
    let ctx = Arc::new(Ctx::new(session.clients, stack.clone(), progress.clone()));
    let report = run_graph(
        &steps(want.control_function),
        Direction::Up,
        args.max_concurrency,
        &mut state,
        &g.state_path,
        &progress,
        |step, res| ensure(step, ctx.clone(), res),
    )
    .await?;
    if !report.errors.is_empty() {
        return Err(first_error(report.errors));
    }
    let id = |s: Step| state.resources.get(&s).map(|r| r.id.clone());
    let out = UpReport {
        stack: stack.name.to_string(),
        region: stack.region.to_string(),
        account_id: stack.account_id.clone(),
        bucket: stack.bucket().to_string(),
        endpoint: id(Step::Endpoint),
        uploader_function: id(Step::UploaderFunction),
        control_function: id(Step::ControlFunction),
        up_to_date: report.steps.iter().all(|s| s.action == Action::UpToDate),
        steps: report.steps,
    };
    emit(g, &out)?;
    Ok(ExitCode::SUCCESS)
}
