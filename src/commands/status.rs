//! `privbucket status`: every resource of the state file, read live, all at once.
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::{check_name, connect_reading, discover, emit, join};
use crate::aws::Clients;
use crate::config::{Global, StatusArgs};
use crate::graph::Step;
use crate::progress::Progress;
use crate::resources::{
    Ctx, Difference, LISTING_PATIENCE, Live, discovery, proof, read_all, read_and_prove,
};
use crate::stack::Stack;
use crate::state::{Ownership, Resources, State};

/// What `status` found of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ResourceState {
    Ok,
    /// Not there, or never made (`id` is then `null`).
    Missing,
    Changed,
    /// There, and the stack's (by tag or name), but not in the state file: `up` would adopt
    /// it, `down` removes it.
    Unrecorded,
    /// Recorded as made, but the account does not prove it the stack's (`resources::proof`):
    /// `up` and `down` refuse the state until the record is put right.
    #[serde(rename = "not-the-stacks")]
    NotTheStacks,
}

impl fmt::Display for ResourceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceState::Ok => "ok",
            ResourceState::Missing => "missing",
            ResourceState::Changed => "changed",
            ResourceState::Unrecorded => "unrecorded",
            ResourceState::NotTheStacks => "NOT THE STACK'S",
        })
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ResourceStatus {
    pub(crate) resource: Step,
    pub(crate) kind: &'static str,
    /// `None`: the state file has no ID for it (never made, or an interrupted `up`).
    pub(crate) id: Option<String>,
    pub(crate) state: ResourceState,
    pub(crate) changes: Vec<Difference>,
    /// `made` (privbucket's), or `borrowed` (the user's, named by `up --vpc --subnets`).
    pub(crate) ownership: Ownership,
}

#[derive(Debug, Serialize)]
pub(crate) struct StatusReport {
    pub(crate) deployed: bool,
    /// Found by tags and names (`--name` without a state file), not read from a state file.
    pub(crate) discovered: bool,
    pub(crate) stack: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) account_id: Option<String>,
    pub(crate) bucket: Option<String>,
    pub(crate) ok: bool,
    pub(crate) resources: Vec<ResourceStatus>,
    /// The records the account does not prove to be the stack's, and whose they appear to be.
    pub(crate) not_the_stacks: Vec<proof::Unproven>,
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(stack), Some(region), Some(account)) =
            (&self.stack, &self.region, &self.account_id)
        else {
            return write!(f, "Nothing deployed: there is no state file.");
        };
        if !self.deployed {
            return write!(
                f,
                "Nothing deployed: no resource of stack {stack} found in {region} (account \
                 {account})."
            );
        }
        let from = if self.discovered {
            ", found by tags and names: there is no state file"
        } else {
            ""
        };
        writeln!(f, "Stack {stack} in {region} (account {account}{from}):")?;
        for r in &self.resources {
            let id = r.id.as_deref().unwrap_or("-");
            let kind = match r.ownership {
                Ownership::Borrowed => format!("{} (borrowed)", r.kind),
                Ownership::Made | Ownership::Pending => r.kind.to_string(),
            };
            write!(f, "{kind:<24} {id:<36} {}", r.state)?;
            if !r.changes.is_empty() {
                write!(f, ": {}", join(&r.changes))?;
            }
            writeln!(f)?;
        }
        if self
            .resources
            .iter()
            .any(|r| r.state == ResourceState::Unrecorded)
        {
            writeln!(
                f,
                "Unrecorded: the stack's by its tags or name, but not in the state file (an \
                 interrupted run); `privbucket up` records it, `privbucket down` removes it."
            )?;
        }
        for u in &self.not_the_stacks {
            writeln!(f, "Not the stack's: {u}.")?;
        }
        if !self.not_the_stacks.is_empty() {
            writeln!(
                f,
                "`privbucket up` and `privbucket down` change nothing until the state is put \
                 right: with a state in S3, `privbucket state pull` to look at it; put the \
                 record right (the ID of the stack's own resource), or remove it from the state \
                 and let privbucket find the stack's own by its tags."
            )?;
        }
        if self.ok {
            write!(f, "Everything is as it should be.")
        } else if !self.not_the_stacks.is_empty() {
            write!(
                f,
                "The state names what is not the stack's; nothing was changed."
            )
        } else {
            write!(
                f,
                "Something is missing or changed: `privbucket up` puts it back (what it cannot \
                 change in place, it says)."
            )
        }
    }
}

fn nothing(stack: Option<String>, region: Option<String>, account: Option<String>) -> StatusReport {
    StatusReport {
        deployed: false,
        discovered: stack.is_some(),
        stack,
        region,
        account_id: account,
        bucket: None,
        ok: true,
        resources: Vec::new(),
        not_the_stacks: Vec::new(),
    }
}

/// Every recorded resource read live and, in the same round unless the state was just built
/// from it (`--name`), what the state file misses (a crash between a create and its record, a
/// file from an older version), by the stack's tags and names.
async fn read(clients: Clients, stack: Stack, st: &State, scan: bool) -> Result<Read> {
    let res = Arc::new(st.resources.clone());
    let ctx = Arc::new(Ctx::new(clients, stack, Progress::silent()));
    let (read, found) = tokio::join!(read_and_prove(ctx.clone(), &res), async {
        match scan {
            true => discovery::scan(&ctx).await.map(|f| f.resources),
            false => Ok(Resources::default()),
        }
    });
    let (mut seen, mut unproven) = read?;
    let found = found?;
    proof::name_own(&mut unproven, &found);
    // AWS may not list yet what a command made moments ago (EC2 and S3 are eventually
    // consistent): a recorded resource that reads as missing is read again for a few
    // seconds before it is reported.
    let patience = tokio::time::Instant::now() + LISTING_PATIENCE;
    while seen
        .iter()
        .any(|(s, live)| matches!(live, Live::Missing) && res.contains_key(s))
        && tokio::time::Instant::now() < patience
    {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        seen = read_all(ctx.clone(), &res).await?;
    }
    Ok(Read {
        seen,
        found,
        unproven,
    })
}

/// What `status` read: every recorded resource, what discovery found, and the records the
/// account does not prove the stack's.
struct Read {
    seen: Vec<(Step, Live)>,
    found: Resources,
    unproven: Vec<proof::Unproven>,
}

pub(crate) async fn run(g: &Global, args: &StatusArgs) -> Result<ExitCode> {
    let (session, st, discovered, first_round) =
        match (super::open_store(g).await?.load().await?, &args.name) {
            (Some(st), name) => {
                check_name(g, &st, name.as_ref())?;
                // The stack is read in the same round as the caller's identity; what it read is
                // shown only once the account is checked against the state file.
                let (session, seen) = connect_reading(g, &st, None, |clients, stack| {
                    read(clients, stack, &st, true)
                })
                .await?;
                (session, st, false, Some(seen))
            }
            (None, None) => {
                emit(g, &nothing(None, None, None))?;
                return Ok(ExitCode::SUCCESS);
            }
            (None, Some(name)) => match discover(g, name, None).await? {
                (session, Some(st)) => (session, st, true, None),
                (session, None) => {
                    let report = nothing(
                        Some(name.to_string()),
                        Some(session.region.to_string()),
                        Some(session.account_id),
                    );
                    emit(g, &report)?;
                    return Ok(ExitCode::SUCCESS);
                }
            },
        };
    let stack = Stack::from_state(&st, &session.caller_arn);
    let Read {
        mut seen,
        found,
        unproven,
    } = match first_round {
        Some(seen) => seen?,
        None => read(session.clients.clone(), stack.clone(), &st, !discovered).await?,
    };
    seen.sort_by_key(|(s, _)| *s);
    let mut recorded = st.resources.clone();
    let unrecorded = discovery::merge(&mut recorded, found);
    let mut resources = statuses(seen, &recorded, &unrecorded);
    for r in &mut resources {
        if unproven.iter().any(|u| u.step == r.resource) {
            r.state = ResourceState::NotTheStacks;
            r.changes.clear();
        }
    }
    let ok = resources.iter().all(|r| r.state == ResourceState::Ok);
    emit(
        g,
        &StatusReport {
            deployed: true,
            discovered,
            stack: Some(stack.name.to_string()),
            region: Some(stack.region.to_string()),
            account_id: Some(stack.account_id.clone()),
            bucket: Some(stack.bucket().to_string()),
            ok,
            resources,
            not_the_stacks: unproven,
        },
    )?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Each resource as `status` shows it: what was read of it, or that the state misses it.
fn statuses(
    seen: Vec<(Step, Live)>,
    recorded: &Resources,
    unrecorded: &[Step],
) -> Vec<ResourceStatus> {
    seen.into_iter()
        .map(|(step, live)| {
            let id = recorded.get(&step).map(|r| r.id.clone());
            let ownership = recorded.get(&step).map(|r| r.ownership).unwrap_or_default();
            let (state, changes) = match live {
                _ if unrecorded.contains(&step) => (ResourceState::Unrecorded, Vec::new()),
                Live::Missing => (ResourceState::Missing, Vec::new()),
                Live::Present(_, d) if d.is_empty() => (ResourceState::Ok, d),
                Live::Present(_, d) => (ResourceState::Changed, d),
            };
            ResourceStatus {
                resource: step,
                kind: step.kind(),
                id,
                state,
                changes,
                ownership,
            }
        })
        .collect()
}
