//! The commands. Each reads the state file and the flags, checks them against each other and
//! against the credentials (exit 2 before any change), runs, and reports.
use std::fmt::Display;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::aws::{Clients, Connection, chain_region};
use crate::config::{
    Command, Config, DEFAULT_SUBNET_CIDRS, DEFAULT_VPC_CIDR, Global, Output, PolicyScope,
    PrincipalArn, Region, StackName,
};
use crate::error::{InputError, input};
use crate::progress::Progress;
use crate::resources::{self, Ctx, discovery};
use crate::stack::Stack;
use crate::state::{Settings, State, Store};

pub(crate) mod diagram;
pub(crate) mod down;
pub(crate) mod invoke;
pub(crate) mod list;
pub(crate) mod plan;
pub(crate) mod state;
pub(crate) mod status;
pub(crate) mod up;
pub(crate) mod verify;

pub(crate) async fn execute(config: Config) -> Result<ExitCode> {
    let g = &config.global;
    if let crate::config::Location::File(path) = &g.state {
        crate::package::set_own_files(vec![path.clone(), crate::state::lock_path(path)]);
    }
    match &config.command {
        Command::Up(args) => up::run(g, args).await,
        Command::Plan(args) => plan::run(g, args).await,
        Command::Verify { invoke, report } => verify::run(g, *invoke, report.as_ref()).await,
        Command::Diagram { format } => diagram::run(g, *format).await,
        Command::Status(args) => status::run(g, args).await,
        Command::Down(args) => down::run(g, args).await,
        Command::Invoke(args) => invoke::run(g, args).await,
        Command::List { all_regions } => list::run(g, *all_regions).await,
        Command::StatePull => state::pull(g).await,
        Command::StatePush { file, force } => state::push(g, file, *force).await,
        Command::ForceUnlock { id, yes } => state::force_unlock(g, id, *yes).await,
        Command::Completions(shell) => print_bytes(&crate::cli::completions(*shell)),
        Command::Man => print_bytes(&crate::cli::man_page()?),
    }
}

/// Writes what a generator made to standard output.
fn print_bytes(bytes: &[u8]) -> Result<ExitCode> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Opens `--state` where the flags say: the S3 client for a remote state asks `--region`
/// (or the credential chain's) first.
pub(crate) async fn open_store(g: &Global) -> Result<Store> {
    Store::open(
        &g.state,
        g.region.as_ref(),
        g.profile.as_deref(),
        g.endpoint_url.as_deref(),
    )
    .await
}

pub(crate) fn progress(g: &Global) -> Progress {
    Progress::new(g.output, g.quiet, g.verbose)
}

/// Runs `work` under the state's lock, and releases the lock however `work` ends: Ctrl-C,
/// SIGTERM (what CI systems, Kubernetes and `docker stop` send to cancel a job) and SIGHUP (a
/// closed terminal) included, since a lock in S3 would otherwise stay until someone
/// force-unlocks it. On a signal the run stops where it is; every step it finished is in the
/// state, and the same command resumes from there (exit 128 + the signal's number).
pub(crate) async fn with_lock(
    g: &Global,
    store: &crate::state::Store,
    command: &str,
    work: impl std::future::Future<Output = Result<ExitCode>>,
) -> Result<ExitCode> {
    let lock = store.lock(command, g.lock_timeout).await?;
    let result = tokio::select! {
        r = work => r,
        signal = stop_signal() => {
            let (name, number) = signal?;
            eprintln!(
                "privbucket: interrupted by {name}: stopped, with every finished step in the \
                 state {}; run the same command again to resume",
                g.state
            );
            Ok(ExitCode::from(128 + number))
        }
    };
    store.release(lock).await;
    result
}

/// The first of SIGINT, SIGTERM and SIGHUP to arrive: its name and number.
async fn stop_signal() -> Result<(&'static str, u8)> {
    use tokio::signal::unix::{SignalKind, signal};
    let listen = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| anyhow::anyhow!("listening for {name}: {e}"))
    };
    let mut term = listen(SignalKind::terminate(), "SIGTERM")?;
    let mut hup = listen(SignalKind::hangup(), "SIGHUP")?;
    let mut int = listen(SignalKind::interrupt(), "SIGINT")?;
    Ok(tokio::select! {
        _ = int.recv() => ("SIGINT", 2),
        _ = term.recv() => ("SIGTERM", 15),
        _ = hup.recv() => ("SIGHUP", 1),
    })
}

/// Asks `question` on the terminal (on stderr: stdout is the command's report) and returns
/// the answer, trimmed.
pub(crate) async fn ask(question: &str) -> Result<String> {
    use std::io::Write;
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
    .map_err(|e| InputError(format!("could not read the answer: {e}")))?;
    Ok(line.trim().to_string())
}

/// A connection checked against the state file and the credentials.
pub(crate) struct Session {
    clients: Clients,
    pub(crate) region: Region,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) account_id: String,
    pub(crate) caller_arn: String,
    /// The caller as `aws:PrincipalArn` sees it, looked up once (see [`operator_principal`]).
    operator: tokio::sync::OnceCell<PrincipalArn>,
}

/// Region, endpoint and account must agree with the state file: a state file made elsewhere
/// is refused (exit 2) rather than acted on.
pub(crate) async fn connect(
    g: &Global,
    state: Option<&State>,
    max_calls: Option<usize>,
) -> Result<Session> {
    identify(g, state, open(g, state, max_calls).await?).await
}

/// [`connect`] for a stack with a state file, reading it in the same round as the caller's
/// identity: `reads` gets the clients and the stack as the state file describes it. Nothing
/// is changed before both are back and the account is checked. In a partition the region
/// does not tell (`partition_of`), the reads are made again with the caller's.
pub(crate) async fn connect_reading<T, F, Fut>(
    g: &Global,
    st: &State,
    max_calls: Option<usize>,
    reads: F,
) -> Result<(Session, T)>
where
    F: Fn(Clients, Stack) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let opened = open(g, Some(st), max_calls).await?;
    let guess = Stack::from_state(st, "");
    let clients = opened.clients.clone();
    let (session, read) =
        tokio::join!(identify(g, Some(st), opened), reads(clients, guess.clone()));
    let session = session?;
    let stack = Stack::from_state(st, &session.caller_arn);
    if stack.partition == guess.partition {
        return Ok((session, read));
    }
    let again = reads(session.clients.clone(), stack).await;
    Ok((session, again))
}

/// Clients for the region and endpoint the state file and the flags agree on, before any
/// call.
struct Opened {
    clients: Clients,
    region: Region,
    endpoint_url: Option<String>,
}

/// The region from the flags or the AWS environment and profile, read without a call.
pub(crate) async fn region_before_calls(g: &Global) -> Result<Option<Region>> {
    Ok(match &g.region {
        Some(r) => Some(r.clone()),
        None => {
            match chain_region(g.profile.as_deref()).await {
                Some(r) => Some(r.parse::<Region>().map_err(|e| {
                    InputError(format!("{e} (from the AWS environment or profile)"))
                })?),
                None => None,
            }
        }
    })
}

/// The region and endpoint checked against the state file (exit 2 when they differ).
async fn open(g: &Global, state: Option<&State>, max_calls: Option<usize>) -> Result<Opened> {
    let region = region_before_calls(g).await?;
    let path = &g.state;
    let (region, endpoint_url) = match state {
        Some(s) => {
            if let Some(r) = &region
                && *r != s.region
            {
                return input(format!(
                    "state file {path} is for region {}, but the region in use is {r}; pass \
                     --region {} (or use another --state for a stack in {r})",
                    s.region, s.region
                ));
            }
            // A state is data someone else may have written: its endpoint is used only when
            // this command was told the same, never on the state's word alone.
            let endpoint = match (&g.endpoint_url, &s.endpoint_url) {
                (Some(a), Some(b)) if a != b => {
                    return input(format!(
                        "state file {path} was made through endpoint {b}, not {a}; pass \
                         --endpoint-url {b} (or use another --state)"
                    ));
                }
                (Some(a), None) => {
                    return input(format!(
                        "state file {path} was made against AWS itself, not through endpoint \
                         {a}; drop --endpoint-url / AWS_ENDPOINT_URL (or use another --state)"
                    ));
                }
                (None, Some(b)) => {
                    return input(format!(
                        "state file {path} was made through endpoint {b}, and this command was \
                         given none (AWS itself); privbucket sends calls to an endpoint only \
                         when --endpoint-url or AWS_ENDPOINT_URL names it: pass \
                         --endpoint-url {b} if you trust it (or use another --state)"
                    ));
                }
                (a, _) => a.clone(),
            };
            (s.region.clone(), endpoint)
        }
        None => match region {
            Some(r) => (r, g.endpoint_url.clone()),
            None => {
                return input(
                    "no AWS region: pass --region, or set AWS_REGION or a region in your AWS \
                     profile",
                );
            }
        },
    };
    let clients = Clients::connect(&Connection {
        region: region.clone(),
        profile: g.profile.clone(),
        endpoint_url: endpoint_url.clone(),
        max_calls,
    })
    .await;
    Ok(Opened {
        clients,
        region,
        endpoint_url,
    })
}

/// Who the caller is: the account must be the state file's (exit 2 otherwise), and under
/// scope `all` the caller one of its admins.
async fn identify(g: &Global, state: Option<&State>, opened: Opened) -> Result<Session> {
    let Opened {
        clients,
        region,
        endpoint_url,
    } = opened;
    let path = &g.state;
    let (account_id, caller_arn) = clients.identity().await?;
    if let Some(s) = state
        && s.account_id != account_id
    {
        return input(format!(
            "state file {path} is for AWS account {}, but the credentials are for account \
             {account_id} ({caller_arn}); use credentials for account {} (e.g. --profile)",
            s.account_id, s.account_id
        ));
    }
    let session = Session {
        clients,
        region,
        endpoint_url,
        account_id,
        caller_arn,
        operator: tokio::sync::OnceCell::new(),
    };
    if let Some(s) = state {
        require_admin(g, &session, s).await?;
    }
    Ok(session)
}

/// Under scope `all` only the admins can read or change the bucket: anyone else is refused
/// before the first change (exit 2), not halfway through a run.
async fn require_admin(g: &Global, session: &Session, state: &State) -> Result<()> {
    let admins = &state.settings.admin_principals;
    if state.settings.policy_scope != PolicyScope::All {
        return Ok(());
    }
    let me = operator_principal(session).await?;
    if admins.contains(&me) {
        return Ok(());
    }
    let list: Vec<&str> = admins.iter().map(PrincipalArn::as_str).collect();
    input(format!(
        "the bucket policy of stack {} (state file {}) has scope `all`: it exempts only {}, \
         and you are {me}. Run privbucket as one of them; one of them can add you with \
         `privbucket up --admin-principal {me}` (list every admin to keep). If none of them \
         is left, the account's root user can still delete the bucket policy (docs/security.md: \
         \"Locked out\")",
        state.stack,
        g.state,
        if list.is_empty() {
            "no one".to_string()
        } else {
            list.join(", ")
        }
    ))
}

/// The caller as `aws:PrincipalArn` sees it: a role session is its role, with the role's
/// path, which the session's ARN leaves out (so IAM is asked for the role's ARN).
pub(crate) async fn operator_principal(session: &Session) -> Result<PrincipalArn> {
    session
        .operator
        .get_or_try_init(|| look_up_operator(session))
        .await
        .cloned()
}

async fn look_up_operator(session: &Session) -> Result<PrincipalArn> {
    let arn = session.caller_arn.as_str();
    if let Some((_, rest)) = arn.split_once(":assumed-role/") {
        let role = rest.split('/').next().unwrap_or_default();
        let role_arn = resources::role::arn_by_name(&session.clients, role)
            .await
            .map_err(|e| {
                anyhow::Error::new(e).context(format!(
                    "--policy-scope all exempts the operator, and privbucket needs the ARN of \
                     your role {role} (you are {arn}) to do so; allow iam:GetRole on it, or \
                     run as a principal whose ARN is its own (an IAM user)"
                ))
            })?;
        return role_arn.parse().map_err(|e: InputError| {
            anyhow::anyhow!("IAM answered an unusable ARN for role {role}: {e}")
        });
    }
    arn.parse().map_err(|e: InputError| {
        InputError(format!(
            "--policy-scope all exempts the operator from its Deny, but you are {arn}, which no \
             bucket policy can name as aws:PrincipalArn ({e}); run `up` as an IAM role or user"
        ))
        .into()
    })
}

/// `--name` given with a state file must name the state file's stack.
pub(crate) fn check_name(g: &Global, state: &State, name: Option<&StackName>) -> Result<()> {
    match name {
        Some(n) if *n != state.stack => input(format!(
            "state file {} holds stack {}, not {n}; drop --name, or use --state for the other \
             stack's file",
            g.state, state.stack
        )),
        _ => Ok(()),
    }
}

/// A stack without a state file (`status --name`, `down --name`): its settings are read back
/// from what is found (the bucket from the functions' environment or the uploader role's
/// policy, the CIDRs from the VPC and subnets). `None`: nothing of the stack exists in this
/// region.
pub(crate) async fn discover(
    g: &Global,
    name: &StackName,
    max_calls: Option<usize>,
) -> Result<(Session, Option<State>)> {
    let session = connect(g, None, max_calls).await?;
    let mut stack = Stack {
        name: name.clone(),
        region: session.region.clone(),
        account_id: session.account_id.clone(),
        endpoint_url: session.endpoint_url.clone(),
        settings: Settings::new(
            Stack::default_bucket(name, &session.account_id, &session.region)?,
            DEFAULT_VPC_CIDR.parse()?,
            [
                DEFAULT_SUBNET_CIDRS[0].parse()?,
                DEFAULT_SUBNET_CIDRS[1].parse()?,
            ],
        ),
        partition: crate::stack::partition_of(&session.caller_arn, &session.region),
        bucket_intent: false,
    };
    let scan = |stack: &Stack| {
        let ctx = Ctx::new(session.clients.clone(), stack.clone(), Progress::silent());
        async move { discovery::scan(&ctx).await }
    };
    let mut found = scan(&stack).await?;
    // A bucket of its own (`up --bucket`): the functions name it; look again with it.
    if let Some(bucket) = found.other_bucket(stack.bucket()).cloned() {
        stack.settings.bucket = bucket;
        found = scan(&stack).await?;
    }
    if found.resources.is_empty() {
        return Ok((session, None));
    }
    found.read_settings(&mut stack.settings)?;
    let mut state = stack.empty_state();
    state.resources = found.resources;
    // A borrowed network is read back as `up` reads it: each subnet with its route table.
    if let Some(net) = &state.settings.network {
        let ctx = Ctx::new(session.clients.clone(), stack.clone(), Progress::silent());
        let vpc = crate::resources::network::borrow(&ctx, net).await?;
        state.resources.insert(crate::graph::Step::Vpc, vpc);
    }
    Ok((session, Some(state)))
}

/// Differences as one line.
pub(crate) fn join(diffs: &[crate::resources::Difference]) -> String {
    diffs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Prints a command's result: its text, or its JSON document.
pub(crate) fn emit<T: Serialize + Display>(g: &Global, report: &T) -> Result<()> {
    match g.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(report)?),
        Output::Text => println!("{report}"),
    }
    Ok(())
}

/// The first error of a run, with every other one listed after it.
pub(crate) fn first_error(errors: Vec<(crate::graph::Step, anyhow::Error)>) -> anyhow::Error {
    let mut it = errors.into_iter();
    let Some((step, first)) = it.next() else {
        return anyhow::anyhow!("internal error: a run failed without an error");
    };
    let others: Vec<String> = it.map(|(s, e)| format!("{}: {e:#}", s.key())).collect();
    let mut err = first.context(format!("step {} failed", step.key()));
    if !others.is_empty() {
        err = err.context(format!(
            "{} step(s) failed; also: {}",
            others.len() + 1,
            others.join("; ")
        ));
    }
    err
}
