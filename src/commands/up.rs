//! `privbucket up`: build what is missing, repair what differs, leave the rest alone.
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::{Session, connect, connect_reading, emit, first_error, operator_principal, progress};
use crate::code::{self, FunctionSettings};
use crate::config::{
    BorrowedNetwork, BucketName, Cidr, DEFAULT_STACK, DEFAULT_SUBNET_CIDRS, DEFAULT_VPC_CIDR,
    Global, KmsKey, PolicyScope, PrincipalArn, Region, StackName, UpArgs, Zone, check_network,
};
use crate::error::InputError;
use crate::graph::{Direction, Step};
use crate::package::Package;
use crate::progress::Progress;
use crate::resources::function::CodeSource;
use crate::resources::{Ctx, Survey, ensure, key, network, proof};
use crate::run::{Action, StepReport, run as run_graph};
use crate::stack::{Stack, partition_of};
use crate::state::{Facts, Ownership, Resource, Settings, State, Store};

/// A state file, with no resources yet, for a stack `up` has not made.
fn new_state(
    want: &Wanted,
    session: &Session,
    operator: Option<PrincipalArn>,
) -> Result<State, InputError> {
    let bucket = match &want.bucket {
        Some(b) => b.clone(),
        None => Stack::default_bucket(&want.name, &session.account_id, &session.region)?,
    };
    let settings = want.settings(bucket, operator);
    Ok(Stack {
        name: want.name.clone(),
        region: session.region.clone(),
        account_id: session.account_id.clone(),
        endpoint_url: session.endpoint_url.clone(),
        settings,
        partition: partition_of(&session.caller_arn, &session.region),
        bucket_intent: false,
    }
    .empty_state())
}

/// The settings `up` will use, before the account and the caller are known (the default
/// bucket and the operator's exemption need them).
pub(crate) struct Wanted {
    name: StackName,
    bucket: Option<BucketName>,
    vpc_cidr: Cidr,
    subnet_cidrs: [Cidr; 2],
    zones: Option<[Zone; 2]>,
    network: Option<BorrowedNetwork>,
    control_function: bool,
    policy_scope: PolicyScope,
    /// The admins before the operator is added.
    admins: Vec<PrincipalArn>,
    tls_deny: bool,
    egress_limit: bool,
    endpoint_policy: bool,
    versioning: Option<bool>,
    kms_key: Option<KmsKey>,
    /// The uploader's own code, checked, and its package (`None`: the recorded code is not on
    /// this machine, and the deployed code is left as it is).
    function: Option<(FunctionSettings, Option<Arc<Package>>)>,
}

impl Wanted {
    /// The package of the uploader's own code, for the contexts that create or compare it.
    pub(crate) fn package(&self) -> Option<CodeSource> {
        match &self.function {
            Some((_, Some(p))) => Some(CodeSource::Built(p.clone())),
            Some((s, None)) => Some(CodeSource::LeftAlone(left_alone(s))),
            None => None,
        }
    }

    /// What `up` says about how it read the code: privbucket's own files left out, links
    /// followed out of the folder, dangling links skipped, or the code left alone.
    pub(crate) fn notes(&self) -> Vec<String> {
        match &self.function {
            Some((_, Some(p))) => p.notes.clone(),
            Some((s, None)) => vec![left_alone(s)],
            None => Vec::new(),
        }
    }

    /// The full settings. `operator`: the caller, exempt in scope `all`, and an administrator
    /// of a key privbucket makes.
    fn settings(&self, bucket: BucketName, operator: Option<PrincipalArn>) -> Settings {
        let mut admins = self.admins.clone();
        if self.needs_operator() {
            admins.extend(operator);
        }
        admins.sort();
        admins.dedup();
        Settings {
            bucket,
            vpc_cidr: self.vpc_cidr,
            subnet_cidrs: self.subnet_cidrs,
            zones: self.zones.clone(),
            network: self.network.clone(),
            control_function: self.control_function,
            policy_scope: self.policy_scope,
            admin_principals: admins,
            tls_deny: self.tls_deny,
            egress_limit: self.egress_limit,
            endpoint_policy: self.endpoint_policy,
            versioning: self.versioning,
            kms_key: self.kms_key.clone(),
            function: self.function.as_ref().map(|(s, _)| s.clone()),
        }
    }

    /// Scope `all` exempts the operator; a key privbucket makes names them its administrator.
    fn needs_operator(&self) -> bool {
        self.policy_scope == PolicyScope::All || self.kms_key == Some(KmsKey::New)
    }
}

fn left_alone(s: &FunctionSettings) -> String {
    format!(
        "the code this stack was deployed from, {}, is not on this machine: the deployed code \
         is left as it is (pass --code PATH to deploy code from here)",
        s.code.display()
    )
}

/// The uploader's settings and package, read off the async runtime's threads: a folder can
/// be slow to read, and Ctrl-C must stop the command meanwhile.
async fn resolve_code(
    args: &UpArgs,
    stored: Option<&FunctionSettings>,
) -> Result<Option<(FunctionSettings, Option<Arc<Package>>)>> {
    let (code_args, stored) = (args.code.clone(), stored.cloned());
    let resolved = tokio::task::spawn_blocking(move || {
        code::resolve(&code_args, stored.as_ref(), &code::today())
    })
    .await
    .map_err(|e| anyhow::anyhow!("packaging the code failed: {e}"))??;
    Ok(resolved.map(|(s, p)| (s, p.map(Arc::new))))
}

/// `--code`'s package, built before `up` takes the state's lock (see [`resolve_code`]).
pub(crate) async fn prebuild(args: &mut UpArgs) -> Result<()> {
    if let Some(path) = args.code.code.clone() {
        let built = tokio::task::spawn_blocking(move || Package::build(&path))
            .await
            .map_err(|e| anyhow::anyhow!("packaging the code failed: {e}"))??;
        args.code.prebuilt = Some(built);
    }
    Ok(())
}

/// The bucket's name is known, but for the account, as soon as the flags and the state file
/// are read: the account ID is always twelve digits.
fn bucket_for_checks(
    args: &UpArgs,
    existing: Option<&State>,
    name: &StackName,
    region: Option<&Region>,
) -> Result<Option<String>, InputError> {
    if let Some(b) = args
        .bucket
        .as_ref()
        .or(existing.map(|s| &s.settings.bucket))
    {
        return Ok(Some(b.to_string()));
    }
    let Some(region) = region else {
        return Ok(None);
    };
    let sample = Stack::default_bucket(name, "000000000000", region)?;
    Ok(Some(sample.to_string()))
}

/// Flags against the state file: an existing stack keeps its network, names and bucket, and a
/// flag that would change one is refused (exit 2) rather than half-applied. The policy scope,
/// the admins and the hardening switches change in place. Derived names and the variables'
/// size are checked with the region in use when it is known before any call (the flags or the
/// AWS profile).
pub(crate) async fn wanted(g: &Global, args: &UpArgs, existing: Option<&State>) -> Result<Wanted> {
    let region = super::region_before_calls(g).await?;
    let region = region.as_ref();
    let path = &g.state.to_string();
    let name = match (existing, &args.name) {
        (Some(s), _) => s.stack.clone(),
        (None, Some(n)) => n.clone(),
        (None, None) => DEFAULT_STACK.parse()?,
    };
    let bucket = bucket_for_checks(args, existing, &name, region)?;
    let function = resolve_code(args, existing.and_then(|s| s.settings.function.as_ref())).await?;
    if let (Some((s, _)), Some(bucket)) = (&function, &bucket)
        && let Some(values) = &s.env_values
    {
        code::check_env_size(values, bucket)?;
    }
    Ok(checked(args, existing, path, name, function)?)
}

fn checked(
    args: &UpArgs,
    existing: Option<&State>,
    path: &str,
    name: StackName,
    function: Option<(FunctionSettings, Option<Arc<Package>>)>,
) -> Result<Wanted, InputError> {
    // A new stack's defaults (its bucket is named once the account is known).
    let fresh = Settings::new(
        "unnamed-yet".parse()?,
        DEFAULT_VPC_CIDR.parse()?,
        [
            DEFAULT_SUBNET_CIDRS[0].parse()?,
            DEFAULT_SUBNET_CIDRS[1].parse()?,
        ],
    );
    let have = existing.map(|s| &s.settings).unwrap_or(&fresh);
    let policy_scope = args.policy_scope.unwrap_or(have.policy_scope);
    // Another key changes the bucket's default encryption in place (see `key_record`).
    let kms_key = args.kms_key.clone().or_else(|| have.kms_key.clone());
    if policy_scope == PolicyScope::Writes
        && kms_key != Some(KmsKey::New)
        && !args.admin_principals.is_empty()
    {
        return Err(InputError(format!(
            "--admin-principal applies to --policy-scope all (exempt from its Deny) and \
             --kms-key new (the key's administrators) only: the `writes` policy denies object \
             writes from outside the VPC to everyone and exempts no one{}",
            if existing.is_some() {
                "; add --policy-scope all to switch this stack's policy"
            } else {
                "; add --policy-scope all"
            }
        )));
    }
    let admins = if args.admin_principals.is_empty() {
        have.admin_principals.clone()
    } else {
        args.admin_principals.clone()
    };
    let h = args.hardening;
    let in_place = |w: Wanted| Wanted {
        function: function.clone(),
        policy_scope,
        admins: admins.clone(),
        tls_deny: h.tls_deny.unwrap_or(have.tls_deny),
        egress_limit: h.egress_limit.unwrap_or(have.egress_limit),
        endpoint_policy: h.endpoint_policy.unwrap_or(have.endpoint_policy),
        versioning: args.versioning.or(have.versioning),
        kms_key: kms_key.clone(),
        ..w
    };
    let Some(s) = existing else {
        let vpc_cidr = args.vpc_cidr.unwrap_or(fresh.vpc_cidr);
        let subnet_cidrs = args.subnet_cidrs.unwrap_or(fresh.subnet_cidrs);
        check_network(vpc_cidr, subnet_cidrs)?;
        return Ok(in_place(Wanted {
            bucket: args.bucket.clone(),
            vpc_cidr,
            subnet_cidrs,
            zones: args.zones.clone(),
            network: args.network.clone(),
            control_function: !args.no_control_function,
            ..Wanted::from_settings(name, &fresh)
        }));
    };
    fixed_at_creation(args, s, path)?;
    Ok(in_place(Wanted {
        bucket: Some(s.settings.bucket.clone()),
        ..Wanted::from_settings(name, &s.settings)
    }))
}

/// What a stack keeps from its creation: asking for another is refused, naming both.
fn fixed_at_creation(args: &UpArgs, s: &State, path: &str) -> Result<(), InputError> {
    let conflict = |what: &str, have: &dyn fmt::Display, asked: &dyn fmt::Display| {
        InputError(format!(
            "state file {path} holds a stack with {what} {have}, but {asked} was asked for; \
             privbucket does not change that in place: run `privbucket down` first, or use \
             another --state for a second stack"
        ))
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
    network_unchanged(args, s, &conflict)?;
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
    if let Some(z) = &args.zones {
        // A stack made without --zones keeps the zones its subnets are in.
        let recorded: Vec<&str> = [Step::SubnetA, Step::SubnetB]
            .iter()
            .filter_map(|k| s.resources.get(k))
            .filter_map(|r| r.zone())
            .collect();
        let asked = [z[0].as_str(), z[1].as_str()];
        let same = s.settings.zones.as_ref() == Some(z)
            || (s.settings.zones.is_none() && recorded.iter().zip(asked).all(|(a, b)| *a == b));
        if !same {
            let have = match &s.settings.zones {
                Some(h) => format!("{},{}", h[0], h[1]),
                None if recorded.is_empty() => "picked by privbucket".to_string(),
                None => recorded.join(","),
            };
            return Err(conflict("zones", &have, &format!("{},{}", z[0], z[1])));
        }
    }
    if args.no_control_function && s.settings.control_function {
        return Err(conflict(
            "control function",
            &"present",
            &"--no-control-function",
        ));
    }
    Ok(())
}

/// A stack keeps the network it was made with: its own, or the one it borrows.
fn network_unchanged(
    args: &UpArgs,
    s: &State,
    conflict: &dyn Fn(&str, &dyn fmt::Display, &dyn fmt::Display) -> InputError,
) -> Result<(), InputError> {
    if s.settings.network != args.network
        && (args.network.is_some() || s.settings.network.is_some())
    {
        let show = |n: &Option<BorrowedNetwork>, given: bool| match n {
            Some(n) => format!(
                "borrowed network (VPC {}, subnets {})",
                n.vpc,
                n.subnets
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            None if given => "a network of its own".to_string(),
            None => "a network privbucket made".to_string(),
        };
        // An existing borrowed stack may be named again without its flags.
        if args.network.is_some()
            || args.vpc_cidr.is_some()
            || args.subnet_cidrs.is_some()
            || args.zones.is_some()
        {
            return Err(conflict(
                "network",
                &show(&s.settings.network, false),
                &show(&args.network, true),
            ));
        }
    }
    Ok(())
}

impl Wanted {
    fn from_settings(name: StackName, s: &Settings) -> Wanted {
        Wanted {
            name,
            bucket: None,
            vpc_cidr: s.vpc_cidr,
            subnet_cidrs: s.subnet_cidrs,
            zones: s.zones.clone(),
            network: s.network.clone(),
            control_function: s.control_function,
            policy_scope: s.policy_scope,
            admins: s.admin_principals.clone(),
            tls_deny: s.tls_deny,
            egress_limit: s.egress_limit,
            endpoint_policy: s.endpoint_policy,
            versioning: s.versioning,
            kms_key: s.kms_key.clone(),
            function: None,
        }
    }
}

/// The record of a borrowed key, `borrowed`, replacing `before`. A key privbucket made that
/// it replaces as the bucket's default stays the stack's (objects written with it need it),
/// kept in the record until `down` schedules its deletion with the bucket's.
fn key_record(borrowed: Resource, before: Option<&Resource>) -> Resource {
    let retired = match before {
        Some(r) if r.ownership == Ownership::Made => Some(r.id.clone()),
        Some(r) => r.retired_key().map(str::to_string),
        None => None,
    };
    match retired {
        Some(retired_key) => borrowed.with_facts(Facts::Key { retired_key }),
        None => borrowed,
    }
}

/// The state `up` (and `plan`) works from: the state file's, with the in-place settings
/// applied, or a new one. `changed`: the settings differ from the file's.
pub(crate) async fn desired_state(
    want: &Wanted,
    existing: Option<State>,
    session: &Session,
) -> Result<(State, bool)> {
    // Scope `all` exempts the caller, and a key privbucket makes names them its administrator:
    // they must then be known.
    let operator = if want.policy_scope == PolicyScope::All {
        Some(operator_principal(session).await?)
    } else if want.needs_operator() {
        // A caller no policy can name (a federated user's session) administers the key
        // through the account root statement, as every IAM principal allowed to can.
        operator_principal(session).await.ok()
    } else {
        None
    };
    let (mut state, mut changed) = match existing {
        Some(mut s) => {
            let settings = want.settings(s.settings.bucket.clone(), operator);
            let changed = settings != s.settings;
            s.settings = settings;
            (s, changed)
        }
        None => (new_state(want, session, operator)?, true),
    };
    // What the stack borrows is read (and checked) at every `up`, before any change: the
    // route table AWS applies to a subnet is the user's to change between runs, and a key may
    // have been disabled or scheduled for deletion since.
    let reader = Ctx::new(
        session.clients.clone(),
        Stack::from_state(&state, &session.caller_arn),
        Progress::silent(),
    );
    let vpc = match &state.settings.network {
        Some(net) => Some((Step::Vpc, network::borrow(&reader, net).await?)),
        None => None,
    };
    let key = match &state.settings.kms_key {
        Some(k @ (KmsKey::Arn { .. } | KmsKey::Alias(_))) => {
            let borrowed = key::borrow(&reader, k).await?;
            Some((
                Step::Key,
                key_record(borrowed, state.resources.get(&Step::Key)),
            ))
        }
        // Back to a key of its own: the borrowed one is let go; the stack's own, if it made
        // one before, is found again by its alias.
        Some(KmsKey::New) => {
            if state
                .resources
                .get(&Step::Key)
                .is_some_and(|r| r.ownership == Ownership::Borrowed)
            {
                state.resources.remove(&Step::Key);
                changed = true;
            }
            None
        }
        None => None,
    };
    for (step, borrowed) in vpc.into_iter().chain(key) {
        if state.resources.get(&step) != Some(&borrowed) {
            state.resources.insert(step, borrowed);
            changed = true;
        }
    }
    Ok((state, changed))
}

#[derive(Debug, Serialize)]
pub(crate) struct UpReport {
    pub(crate) stack: String,
    pub(crate) region: String,
    pub(crate) account_id: String,
    pub(crate) bucket: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) uploader_function: Option<String>,
    pub(crate) control_function: Option<String>,
    /// The ARN of the bucket's KMS key (`--kms-key`).
    pub(crate) kms_key: Option<String>,
    pub(crate) up_to_date: bool,
    pub(crate) steps: Vec<StepReport>,
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
        if let Some(k) = &self.kms_key {
            write!(f, "; it encrypts with KMS key {k}")?;
        }
        write!(f, ".")
    }
}

pub(crate) async fn run(g: &Global, args: &UpArgs) -> Result<ExitCode> {
    let mut args = args.clone();
    // Before the lock: a folder that cannot be packaged costs no lock, and a slow one holds
    // none while it is read.
    prebuild(&mut args).await?;
    let store = super::open_store(g).await?;
    super::with_lock(g, &store, "privbucket up", locked(g, &args, &store)).await
}

/// A record the account does not prove the stack's stops `up` before any change (exit 2), the
/// state file left as it was.
fn refuse_unproven(g: &Global, survey: Option<&Survey>) -> Result<()> {
    match survey {
        Some(s) if !s.unproven.is_empty() => proof::refuse(&g.state.to_string(), &s.unproven),
        Some(_) | None => Ok(()),
    }
}

async fn locked(g: &Global, args: &UpArgs, store: &Store) -> Result<ExitCode> {
    let existing = store.load().await?;
    let want = wanted(g, args, existing.as_ref()).await?;
    let progress = progress(g);
    for note in want.notes() {
        progress.note(&note);
    }
    // With a state file, the survey (one round of reads: every recorded resource, and what the
    // file misses, by the stack's tags and names) goes out with the caller's identity, and is
    // used once the account is checked and if the settings stay as they were read with.
    let (session, first_round) = match &existing {
        Some(st) => {
            let (session, survey) =
                connect_reading(g, st, args.max_concurrency, |clients, stack| {
                    let reader =
                        Ctx::new(clients, stack, Progress::silent()).with_package(want.package());
                    Survey::take(Arc::new(reader), &st.resources)
                })
                .await?;
            (session, Some(survey))
        }
        None => (connect(g, None, args.max_concurrency).await?, None),
    };
    // Proven before the flags may change a record (a borrowed VPC edited into a made one).
    refuse_unproven(g, first_round.as_ref().and_then(|s| s.as_ref().ok()))?;
    let (mut state, changed) = desired_state(&want, existing, &session).await?;
    if let Some(vpc) = state.resources.get(&Step::Vpc)
        && state.settings.network.is_some()
    {
        for caution in network::cautions(vpc) {
            progress.note(&caution);
        }
    }
    store.refuse_stack_bucket(&state)?;
    let stack = Stack::from_state(&state, &session.caller_arn);
    // One round of reads first; the graph then only creates and repairs. What it refuses
    // (another stack's bucket) is refused before the state is written.
    let survey = match first_round {
        // Read with the settings the state file had: of use while they stay.
        Some(survey) if !changed => survey?,
        _ => {
            let reader = Ctx::new(session.clients.clone(), stack.clone(), Progress::silent())
                .with_package(want.package());
            Survey::take(Arc::new(reader), &state.resources).await?
        }
    };
    refuse_unproven(g, Some(&survey))?;
    if changed {
        // Written before the first create (or change), so a crash at any point leaves a
        // state to resume from, with the settings this run was asked for.
        store.save(&state).await?;
    }
    let ctx = Arc::new(
        Ctx::new(session.clients, stack.clone(), progress.clone()).with_package(want.package()),
    );
    let survey = Arc::new(survey);
    let report = run_graph(
        &state.settings.steps(),
        Direction::Up,
        args.max_concurrency,
        &mut state,
        store,
        &progress,
        |step, res, rec| ensure(step, ctx.clone(), survey.clone(), res, rec),
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
        kms_key: state
            .resources
            .get(&Step::Key)
            .map(|k| k.arn_or_id().to_string()),
        up_to_date: report.steps.iter().all(|s| s.action == Action::UpToDate),
        steps: report.steps,
    };
    emit(g, &out)?;
    Ok(ExitCode::SUCCESS)
}
