//! `privbucket status`: every resource of the state file, read live, all at once.
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;
use tokio::task::JoinSet;

use super::{check_name, connect, discover, emit};
use crate::config::{Global, StatusArgs};
use crate::graph::{Step, steps};
use crate::progress::Progress;
use crate::resources::{Ctx, Live, inspect, snapshot};
use crate::stack::Stack;
use crate::state;

#[derive(Debug, Serialize)]
pub struct ResourceStatus {
    pub resource: Step,
    pub kind: &'static str,
    /// `None`: the state file has no ID for it (never made, or an interrupted `up`).
    pub id: Option<String>,
    /// `ok`, `missing` or `changed`.
    pub state: &'static str,
    pub changes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub deployed: bool,
    /// Found by tags and names (`--name` without a state file), not read from a state file.
    pub discovered: bool,
    pub stack: Option<String>,
    pub region: Option<String>,
    pub account_id: Option<String>,
    pub bucket: Option<String>,
    pub ok: bool,
    pub resources: Vec<ResourceStatus>,
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
            write!(f, "{:<24} {:<36} {}", r.kind, id, r.state)?;
            if !r.changes.is_empty() {
                write!(f, ": {}", r.changes.join("; "))?;
            }
            writeln!(f)?;
        }
        if self.ok {
            write!(f, "Everything is as it should be.")
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
    }
}

pub async fn run(g: &Global, args: &StatusArgs) -> Result<ExitCode> {
    let (session, st, discovered) = match (state::load(&g.state_path)?, &args.name) {
        (Some(st), name) => {
            check_name(g, &st, name.as_ref())?;
            (connect(g, Some(&st), None).await?, st, false)
        }
        (None, None) => {
            emit(g, &nothing(None, None, None))?;
            return Ok(ExitCode::SUCCESS);
        }
        (None, Some(name)) => match discover(g, name, None).await? {
            (session, Some(st)) => (session, st, true),
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
    let stack = Stack::from_state(&st);
    let ctx = Arc::new(Ctx::new(session.clients, stack.clone(), Progress::silent()));
    let res = Arc::new(st.resources.clone());
    // EC2 in one read per kind, while IAM, S3 and Lambda are read: two round trips deep in
    // all (the first is the caller's identity).
    let mut tasks = JoinSet::new();
    let all: Vec<Step> = steps(stack.settings.control_function)
        .into_iter()
        .filter(|s| s.is_resource())
        .collect();
    let (ec2_steps, other_steps): (Vec<Step>, Vec<Step>) = all.iter().partition(|s| s.is_ec2());
    for &step in &other_steps {
        let (ctx, res) = (ctx.clone(), res.clone());
        tasks.spawn(async move { (step, inspect(step, &ctx, &res).await) });
    }
    let snapshot = snapshot::take(&ctx, &res).await?;
    ctx.ec2.set(snapshot).expect("the snapshot is taken once");
    for &step in &ec2_steps {
        let (ctx, res) = (ctx.clone(), res.clone());
        tasks.spawn(async move { (step, inspect(step, &ctx, &res).await) });
    }
    let mut seen = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (step, live) = joined.map_err(|e| anyhow::anyhow!("a status check panicked: {e}"))?;
        seen.push((step, live?));
    }
    seen.sort_by_key(|(s, _)| *s);
    let resources: Vec<ResourceStatus> = seen
        .into_iter()
        .map(|(step, live)| {
            let id = st.resources.get(&step).map(|r| r.id.clone());
            let (state, changes) = match live {
                Live::Missing => ("missing", Vec::new()),
                Live::Present(_, d) if d.is_empty() => ("ok", d),
                Live::Present(_, d) => ("changed", d),
            };
            ResourceStatus {
                resource: step,
                kind: step.kind(),
                id,
                state,
                changes,
            }
        })
        .collect();
    let ok = resources.iter().all(|r| r.state == "ok");
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
        },
    )?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
