//! The commands. Each reads the state file and the flags, checks them against each other and
//! against the credentials (exit 2 before any change), runs, and reports.
use std::fmt::Display;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::aws::{Clients, Connection, chain_region};
use crate::config::{Command, Config, Global, Output, Region};
use crate::error::{InputError, input};
use crate::progress::Progress;
use crate::state::State;

pub mod down;
pub mod status;
pub mod up;

pub async fn execute(config: Config) -> Result<ExitCode> {
    let g = &config.global;
    match &config.command {
        Command::Up(args) => up::run(g, args).await,
        Command::Status => status::run(g).await,
        Command::Down(args) => down::run(g, args).await,
    }
}

pub fn progress(g: &Global) -> Progress {
    Progress::new(g.output, g.quiet, g.verbose)
}

/// A connection checked against the state file and the credentials.
pub struct Session {
    pub clients: Clients,
    pub region: Region,
    pub endpoint_url: Option<String>,
    pub account_id: String,
    pub caller_arn: String,
}

/// Region, endpoint and account must agree with the state file: a state file made elsewhere
/// is refused (exit 2) rather than acted on.
pub async fn connect(g: &Global, state: Option<&State>) -> Result<Session> {
    let region =
        match &g.region {
            Some(r) => Some(r.clone()),
            None => match chain_region(g.profile.as_deref()).await {
                Some(r) => Some(r.parse::<Region>().map_err(|e| {
                    InputError(format!("{e} (from the AWS environment or profile)"))
                })?),
                None => None,
            },
        };
    let path = g.state_path.display();
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
                (_, b) => b.clone(),
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
    })
    .await;
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
    Ok(Session {
        clients,
        region,
        endpoint_url,
        account_id,
        caller_arn,
    })
}

/// Prints a command's result: its text, or its JSON document.
pub fn emit<T: Serialize + Display>(g: &Global, report: &T) -> Result<()> {
    match g.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(report)?),
        Output::Text => println!("{report}"),
    }
    Ok(())
}

/// The first error of a run, with every other one listed after it.
pub fn first_error(errors: Vec<(crate::graph::Step, anyhow::Error)>) -> anyhow::Error {
    let mut it = errors.into_iter();
    let (step, first) = it.next().expect("at least one error");
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
