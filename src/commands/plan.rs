//! `privbucket plan`: what `up` would do, from the state file and the live resources, with
//! reads only. Exit 0 when `up` would change nothing, 1 when it has work to do.
use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;
use tokio::task::JoinSet;

use super::up::{desired_state, wanted};
use super::{connect, emit, join};
use crate::config::{Global, UpArgs};
use crate::graph::Step;
use crate::progress::Progress;
use crate::resources::{Ctx, Difference, Planned, discovery, plan, proof};
use crate::stack::Stack;
use crate::state::Ownership;

/// What `up` would do to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PlanAction {
    Nothing,
    Create,
    Update,
    /// Made by an earlier run, found by tag or name, not yet in the state file.
    Adopt,
}

impl fmt::Display for PlanAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlanAction::Nothing => "nothing",
            PlanAction::Create => "create",
            PlanAction::Update => "update",
            PlanAction::Adopt => "adopt",
        })
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct PlannedStep {
    pub(crate) resource: Step,
    pub(crate) kind: &'static str,
    pub(crate) id: Option<String>,
    pub(crate) action: PlanAction,
    pub(crate) changes: Vec<Difference>,
    /// `borrowed`: the user's (`up --vpc --subnets`), read and used, never changed.
    pub(crate) ownership: Ownership,
}

#[derive(Debug, Serialize)]
pub(crate) struct PlanReport {
    pub(crate) stack: String,
    pub(crate) region: String,
    pub(crate) bucket: String,
    /// `up` would make at least one change.
    pub(crate) changes: bool,
    pub(crate) steps: Vec<PlannedStep>,
    /// Records the account does not prove to be the stack's: `up` would refuse the state.
    pub(crate) not_the_stacks: Vec<proof::Unproven>,
}

impl fmt::Display for PlanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Plan for stack {} in {}:", self.stack, self.region)?;
        for s in &self.steps {
            let kind = match s.ownership {
                Ownership::Borrowed => format!("{} (borrowed)", s.kind),
                Ownership::Made | Ownership::Pending => s.kind.to_string(),
            };
            write!(
                f,
                "{:<8} {kind:<24} {}",
                s.action.to_string(),
                s.id.as_deref().unwrap_or("-")
            )?;
            if !s.changes.is_empty() {
                write!(f, ": {}", join(&s.changes))?;
            }
            writeln!(f)?;
        }
        if !self.not_the_stacks.is_empty() {
            for u in &self.not_the_stacks {
                writeln!(f, "Not the stack's: {u}.")?;
            }
            return write!(
                f,
                "`privbucket up` would refuse this state (exit 2) and change nothing until the \
                 record is put right, or removed so that privbucket finds the stack's own by its \
                 tags."
            );
        }
        if !self.changes {
            return write!(f, "Nothing to do: `privbucket up` would change nothing.");
        }
        let count = |a: PlanAction| self.steps.iter().filter(|s| s.action == a).count();
        write!(
            f,
            "`privbucket up` would create {}, update {} and adopt {}.",
            count(PlanAction::Create),
            count(PlanAction::Update),
            count(PlanAction::Adopt)
        )
    }
}

pub(crate) async fn run(g: &Global, args: &UpArgs) -> Result<ExitCode> {
    let existing = super::open_store(g).await?.load().await?;
    let want = wanted(g, args, existing.as_ref()).await?;
    let session = connect(g, existing.as_ref(), None).await?;
    let (st, _) = desired_state(&want, existing, &session).await?;
    let stack = Stack::from_state(&st, &session.caller_arn);
    let ctx = Arc::new(
        Ctx::new(session.clients, stack.clone(), Progress::silent()).with_package(want.package()),
    );
    // What `up` would find and adopt: resources an earlier run made that the state file lacks.
    let mut res = st.resources.clone();
    let (found, unproven) = tokio::join!(discovery::scan(&ctx), proof::prove(&ctx, &res));
    let found = found?.resources;
    let mut unproven = unproven?.unproven;
    proof::name_own(&mut unproven, &found);
    let adopted = discovery::merge(&mut res, found);
    let res = Arc::new(res);
    let mut tasks = JoinSet::new();
    for step in stack
        .settings
        .steps()
        .into_iter()
        .filter(|s| s.is_resource())
    {
        let (ctx, res) = (ctx.clone(), res.clone());
        tasks.spawn(async move { (step, plan(step, &ctx, &res).await) });
    }
    let mut planned = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (step, p) = joined.map_err(|e| anyhow::anyhow!("a plan check panicked: {e}"))?;
        let adopt = adopted.contains(&step);
        let (action, id, changes) = match p? {
            Planned::Nothing(r) if adopt => (PlanAction::Adopt, Some(r.id), Vec::new()),
            Planned::Update(r, d) if adopt => (PlanAction::Adopt, Some(r.id), d),
            Planned::Nothing(r) => (PlanAction::Nothing, Some(r.id), Vec::new()),
            Planned::Update(r, d) => (PlanAction::Update, Some(r.id), d),
            Planned::Create => (PlanAction::Create, None, Vec::new()),
        };
        planned.push(PlannedStep {
            resource: step,
            kind: step.kind(),
            id,
            action,
            changes,
            ownership: res.get(&step).map(|r| r.ownership).unwrap_or_default(),
        });
    }
    planned.sort_by_key(|p| p.resource);
    let changes = planned.iter().any(|p| p.action != PlanAction::Nothing) || !unproven.is_empty();
    emit(
        g,
        &PlanReport {
            stack: stack.name.to_string(),
            region: stack.region.to_string(),
            bucket: stack.bucket().to_string(),
            changes,
            steps: planned,
            not_the_stacks: unproven,
        },
    )?;
    Ok(if changes {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
