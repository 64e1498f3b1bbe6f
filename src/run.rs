//! Runs the graph: every ready step starts at once (up to `--max-concurrency`), each result is
//! handed to the one state writer here, which saves the state file atomically before anything
//! else happens. After a failure no new step starts; the steps already running finish and are
//! recorded, so nothing made is lost.
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use tokio::task::JoinSet;

use crate::graph::{Direction, Queue, Step};
use crate::progress::Progress;
use crate::state::{self, Resource, Resources, State};

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "detail")]
pub enum Action {
    Created,
    /// Found by tag or name (an earlier run made it) and recorded.
    Adopted,
    UpToDate,
    /// Existed but differed; brought back to the desired settings.
    Updated(Vec<String>),
    Deleted,
    AlreadyGone,
    /// Left in place on purpose (e.g. a bucket that holds objects).
    Kept(String),
    /// Nothing to do and nothing worth a line.
    Skipped,
}

impl Action {
    fn word(&self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Adopted => "adopted",
            Action::UpToDate => "ok",
            Action::Updated(_) => "updated",
            Action::Deleted => "deleted",
            Action::AlreadyGone => "gone",
            Action::Kept(_) => "kept",
            Action::Skipped => "skipped",
        }
    }
}

/// A step's result: the action and, going up, the resource to record.
#[derive(Debug)]
pub struct Outcome {
    pub action: Action,
    pub resource: Option<Resource>,
    /// What the line shows: usually the resource ID.
    pub what: String,
}

impl Outcome {
    pub fn new(action: Action, resource: Option<Resource>, what: impl Into<String>) -> Self {
        Outcome {
            action,
            resource,
            what: what.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: Step,
    pub kind: &'static str,
    pub id: String,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(Debug, Default)]
pub struct RunReport {
    pub steps: Vec<StepReport>,
    pub errors: Vec<(Step, anyhow::Error)>,
    /// Steps that never ran because something they wait for failed or was kept.
    pub blocked: Vec<Step>,
}

/// Runs `steps` in `direction`. `work` gets the step and a snapshot of the resources known
/// when it starts (every step it waits for is in it, or gone when going down).
pub async fn run<F, Fut>(
    steps: &[Step],
    direction: Direction,
    max_concurrency: Option<usize>,
    state: &mut State,
    state_path: &Path,
    progress: &Progress,
    work: F,
) -> anyhow::Result<RunReport>
where
    F: Fn(Step, Arc<Resources>) -> Fut,
    Fut: Future<Output = anyhow::Result<Outcome>> + Send + 'static,
{
    let mut queue = Queue::new(steps, direction);
    let mut ready: Vec<Step> = Vec::new();
    let mut running: JoinSet<(Step, anyhow::Result<Outcome>)> = JoinSet::new();
    let mut report = RunReport::default();
    let limit = max_concurrency.unwrap_or(usize::MAX);
    loop {
        if report.errors.is_empty() {
            ready.extend(queue.take_ready());
            while running.len() < limit && !ready.is_empty() {
                let step = ready.remove(0);
                let verb = match (direction, state.resources.contains_key(&step)) {
                    (Direction::Up, false) => "creating",
                    (Direction::Up, true) => "checking",
                    (Direction::Down, _) => "deleting",
                };
                progress.start(step, verb);
                let fut = work(step, Arc::new(state.resources.clone()));
                running.spawn(async move { (step, fut.await) });
            }
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (step, result) = joined.map_err(|e| anyhow::anyhow!("a step panicked: {e}"))?;
        match result {
            Ok(outcome) => {
                let changed = match (direction, &outcome.action) {
                    (Direction::Up, _) => match &outcome.resource {
                        Some(r) if state.resources.get(&step) != Some(r) => {
                            state.resources.insert(step, r.clone());
                            true
                        }
                        _ => false,
                    },
                    (Direction::Down, Action::Deleted | Action::AlreadyGone) => {
                        state.resources.remove(&step).is_some()
                    }
                    (Direction::Down, _) => false,
                };
                if changed {
                    state::save(state_path, state)?;
                }
                if outcome.action != Action::Skipped {
                    progress.done(step, outcome.action.word(), &outcome.what);
                    report.steps.push(StepReport {
                        step,
                        kind: step.kind(),
                        id: outcome.what,
                        action: outcome.action,
                    });
                } else {
                    progress.clear(step);
                }
                queue.finish(step);
            }
            Err(e) => {
                progress.done(step, "failed", &format!("{e:#}"));
                report.errors.push((step, e));
            }
        }
    }
    report.blocked = queue.blocked();
    report.blocked.extend(ready);
    progress.finish();
    Ok(report)
}
