//! `privbucket down`: the graph reversed. Functions leave the VPC first, Lambda's ENIs are
//! waited for and deleted, the network goes, and the roles go last. A bucket that holds
//! objects stays (exit 1) unless `--delete-objects`.
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::{check_name, connect_reading, discover, emit, first_error, progress};
use crate::config::{DownArgs, Global};
use crate::graph::{Direction, steps};
use crate::resources::prefetch::Prefetch;
use crate::resources::{Ctx, discovery, remove};
use crate::run::{Action, StepReport, run as run_graph};
use crate::stack::Stack;
use crate::state;

#[derive(Debug, Serialize)]
pub(crate) struct DownReport {
    pub(crate) stack: Option<String>,
    /// Every resource is gone and the state file removed.
    pub(crate) complete: bool,
    pub(crate) steps: Vec<StepReport>,
    /// What is left, and why.
    pub(crate) kept: Vec<StepReport>,
}

impl fmt::Display for DownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(stack) = &self.stack else {
            return write!(f, "Nothing deployed: there is no state file.");
        };
        if self.complete {
            return write!(
                f,
                "Stack {stack} is gone: nothing is left, and the state file is removed."
            );
        }
        writeln!(f, "Stack {stack} is down, except:")?;
        for k in &self.kept {
            let why = match &k.action {
                Action::Kept(why) => why.as_str(),
                Action::Created
                | Action::Adopted
                | Action::UpToDate
                | Action::Updated(_)
                | Action::Deleted
                | Action::AlreadyGone
                | Action::Skipped => "",
            };
            writeln!(f, "  {} {}: {why}", k.kind, k.id)?;
        }
        write!(f, "The state file keeps what is left.")
    }
}

pub(crate) async fn run(g: &Global, args: &DownArgs) -> Result<ExitCode> {
    let _lock = state::lock(&g.state_path, g.lock_timeout).await?;
    let nothing = |stack: Option<String>| DownReport {
        stack,
        complete: true,
        steps: Vec::new(),
        kept: Vec::new(),
    };
    let (session, mut st, first_round) = match (state::load(&g.state_path)?, &args.name) {
        (Some(st), name) => {
            check_name(g, &st, name.as_ref())?;
            // The first round of reads goes out with the caller's identity, not after it:
            // nothing is changed before both are back and the account checked. What the state
            // file misses (a crash between a create and its record, a file from an older
            // version) is looked for by the stack's tags and names; the roles' lists are read
            // for their deletes (see `prefetch`).
            let res = &st.resources;
            let (session, (found, roles)) =
                connect_reading(g, &st, args.max_concurrency, |clients, stack| async move {
                    let reader = Ctx::new(clients, stack, crate::progress::Progress::silent());
                    tokio::join!(discovery::scan(&reader), Prefetch::roles(&reader, res))
                })
                .await?;
            (session, st, Some((found?, roles)))
        }
        (None, None) => {
            emit(g, &nothing(None))?;
            return Ok(ExitCode::SUCCESS);
        }
        (None, Some(name)) => match discover(g, name, args.max_concurrency).await? {
            (session, Some(st)) => {
                // Recorded first: a `down` interrupted from here on resumes from the file.
                state::save(&g.state_path, &st)?;
                (session, st, None)
            }
            (_, None) => {
                emit(g, &nothing(None))?;
                return Ok(ExitCode::SUCCESS);
            }
        },
    };
    let progress = progress(g);
    let stack = Stack::from_state(&st, &session.caller_arn);
    let mut ctx = Ctx::new(session.clients, stack.clone(), progress.clone());
    if let Some((mut found, roles)) = first_round {
        ctx.prefetch = Prefetch::new(found.take_configurations(), roles);
        // Recorded before anything is deleted.
        let added = discovery::merge(&mut st.resources, found.resources);
        if !added.is_empty() {
            for step in &added {
                progress.note(&format!(
                    "found {} {} by its tags or name; it is not in the state file, and will be \
                     removed too",
                    step.kind(),
                    st.resources[step].id
                ));
            }
            state::save(&g.state_path, &st)?;
        }
    }
    ctx.delete_objects = args.delete_objects;
    ctx.eni_timeout = args.eni_timeout;
    let ctx = Arc::new(ctx);
    // Every step, whatever the settings: a resource in the state file is removed.
    let report = run_graph(
        &steps(true),
        Direction::Down,
        args.max_concurrency,
        &mut st,
        &g.state_path,
        &progress,
        |step, res, _| remove(step, ctx.clone(), res),
    )
    .await?;
    if !report.errors.is_empty() {
        return Err(first_error(report.errors));
    }
    let (kept, steps): (Vec<StepReport>, Vec<StepReport>) = report
        .steps
        .into_iter()
        .partition(|s| matches!(s.action, Action::Kept(_)));
    let complete = st.resources.is_empty();
    if complete {
        state::remove(&g.state_path)?;
    }
    emit(
        g,
        &DownReport {
            stack: Some(stack.name.to_string()),
            complete,
            steps,
            kept,
        },
    )?;
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
