//! Runs the graph: every ready step starts at once (up to `--max-concurrency`), each result is
//! handed to the one state writer here, which saves the state file atomically before anything
//! else happens. After a failure no new step starts; the steps already running finish and are
//! recorded, so nothing made is lost.
use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::graph::{Direction, Queue, Step};
use crate::progress::Progress;
use crate::state::{Resource, Resources, State, Store};

/// What a step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "detail")]
pub(crate) enum Action {
    Created,
    /// Found by tag or name (an earlier run made it) and recorded.
    Adopted,
    UpToDate,
    /// Existed but differed; brought back to the desired settings.
    Updated(Vec<String>),
    Deleted,
    AlreadyGone,
    /// Left in place on purpose (e.g. a bucket that holds objects); the state keeps it.
    Kept(String),
    /// Left as it is because it is not the stack's to delete (borrowed, or now used by
    /// another stack alone); the state lets go of it.
    Left(String),
    /// Made by privbucket for the stacks in a borrowed network together, and still used by
    /// another of them (named in the text), the last of which removes it; the state lets go.
    Shared(String),
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
            Action::Left(_) => "left",
            Action::Shared(_) => "shared",
            Action::Skipped => "skipped",
        }
    }
}

/// A step's result: the action and, going up, the resource to record.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) action: Action,
    pub(crate) resource: Option<Resource>,
    /// What the line shows: usually the resource ID.
    pub(crate) what: String,
}

impl Outcome {
    pub(crate) fn new(action: Action, resource: Option<Resource>, what: impl Into<String>) -> Self {
        Outcome {
            action,
            resource,
            what: what.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StepReport {
    pub(crate) step: Step,
    pub(crate) kind: &'static str,
    pub(crate) id: String,
    #[serde(flatten)]
    pub(crate) action: Action,
}

#[derive(Debug, Default)]
pub(crate) struct RunReport {
    pub(crate) steps: Vec<StepReport>,
    pub(crate) errors: Vec<(Step, anyhow::Error)>,
    /// Steps that never ran because something they wait for failed or was kept.
    pub(crate) blocked: Vec<Step>,
}

/// Hands a resource to the state writer the moment it exists, before the step's follow-up
/// calls (settings, policies, waits): a failure or a crash after the create then leaves it
/// recorded, for `up` to finish and `down` to remove.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    tx: mpsc::UnboundedSender<Message>,
}

#[derive(Debug)]
enum Message {
    /// Save this resource, then answer.
    Record(Step, Resource, oneshot::Sender<()>),
    /// The steps that need this one may start: what it still does, they do not read.
    Release(Step),
}

impl Recorder {
    /// Returns once the state file holds `resource` (an error: it could not be written, and
    /// the run is ending).
    pub(crate) async fn record(&self, step: Step, resource: Resource) -> anyhow::Result<()> {
        let (ack, saved) = oneshot::channel();
        self.tx
            .send(Message::Record(step, resource, ack))
            .map_err(|_| anyhow::anyhow!("the state writer has stopped"))?;
        saved
            .await
            .map_err(|_| anyhow::anyhow!("the state file could not be written"))
    }

    /// Lets the steps that need `step` start now, while it finishes follow-ups they do not
    /// depend on (settings nothing after it reads). Call after `step` is recorded. Under
    /// `--max-concurrency` the step still counts as running until it ends.
    pub(crate) fn release(&self, step: Step) {
        let _ = self.tx.send(Message::Release(step));
    }
}

/// Runs `steps` in `direction`. `work` gets the step, a snapshot of the resources known when
/// it starts (every step it waits for is in it, or gone when going down), and a [`Recorder`].
pub(crate) async fn run<F, Fut>(
    steps: &[Step],
    direction: Direction,
    max_concurrency: Option<usize>,
    state: &mut State,
    store: &Store,
    progress: &Progress,
    work: F,
) -> anyhow::Result<RunReport>
where
    F: Fn(Step, Arc<Resources>, Recorder) -> Fut,
    Fut: Future<Output = anyhow::Result<Outcome>> + Send + 'static,
{
    let borrowed_network = state
        .resources
        .get(&Step::Vpc)
        .is_some_and(|v| v.ownership == crate::state::Ownership::Borrowed);
    let mut queue = Queue::new(steps, direction, borrowed_network);
    let mut ready: Vec<Step> = Vec::new();
    let mut running: JoinSet<(Step, anyhow::Result<Outcome>)> = JoinSet::new();
    let mut report = RunReport::default();
    let limit = max_concurrency.unwrap_or(usize::MAX);
    let (tx, mut records) = mpsc::unbounded_channel();
    let recorder = Recorder { tx };
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
                let fut = work(step, Arc::new(state.resources.clone()), recorder.clone());
                running.spawn(async move { (step, fut.await) });
            }
        }
        let joined = tokio::select! {
            // A record is saved before its step goes on.
            biased;
            Some(message) = records.recv() => {
                match message {
                    Message::Record(step, resource, ack) => {
                        if state.resources.get(&step) != Some(&resource) {
                            state.resources.insert(step, resource);
                            store.save(state).await?;
                        }
                        let _ = ack.send(());
                    }
                    Message::Release(step) => queue.finish(step),
                }
                continue;
            }
            joined = running.join_next() => joined,
        };
        let Some(joined) = joined else {
            break;
        };
        let (step, result) = joined.map_err(|e| anyhow::anyhow!("a step panicked: {e}"))?;
        match result {
            Ok(outcome) => {
                finished(
                    step,
                    outcome,
                    direction,
                    state,
                    store,
                    progress,
                    &mut report,
                )
                .await?;
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

/// A step that ended well: its resource recorded (or, going down, dropped) and saved, and
/// its line in the report.
async fn finished(
    step: Step,
    outcome: Outcome,
    direction: Direction,
    state: &mut State,
    store: &Store,
    progress: &Progress,
    report: &mut RunReport,
) -> anyhow::Result<()> {
    let changed = match (direction, &outcome.action) {
        (Direction::Up, _) => match &outcome.resource {
            Some(r) if state.resources.get(&step) != Some(r) => {
                state.resources.insert(step, r.clone());
                true
            }
            _ => false,
        },
        (
            Direction::Down,
            Action::Deleted | Action::AlreadyGone | Action::Left(_) | Action::Shared(_),
        ) => state.resources.remove(&step).is_some(),
        (Direction::Down, _) => false,
    };
    if changed {
        store.save(state).await?;
    }
    if outcome.action == Action::Skipped {
        progress.clear(step);
    } else {
        progress.done(step, outcome.action.word(), &outcome.what);
        report.steps.push(StepReport {
            step,
            kind: step.kind(),
            id: outcome.what,
            action: outcome.action,
        });
    }
    Ok(())
}
