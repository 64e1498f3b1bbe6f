//! `privbucket down`: the graph reversed. Functions leave the VPC first, Lambda's ENIs are
//! waited for and deleted, the network goes, and the roles go last. A bucket that holds
//! objects stays (exit 1) unless `--delete-objects`.
use std::fmt;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::{Session, check_name, connect_reading, discover, emit, first_error, progress};
use crate::config::{DownArgs, Global};
use crate::error::input;
use crate::graph::{Direction, Function, Step, all_steps};
use crate::progress::Progress;
use crate::resources::prefetch::{Prefetch, RoleLists};
use crate::resources::{Ctx, Teardown, bucket, discovery, proof, remove};
use crate::run::{Action, StepReport, run as run_graph};
use crate::stack::Stack;
use crate::state::{Resources, State, Store};

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
        let shared: Vec<(&StepReport, &str)> = self
            .steps
            .iter()
            .filter_map(|s| {
                if let Action::Shared(why) = &s.action {
                    Some((s, why.as_str()))
                } else {
                    None
                }
            })
            .collect();
        if self.complete && shared.is_empty() {
            return write!(
                f,
                "Stack {stack} is gone: nothing is left, and the state is removed."
            );
        }
        if self.complete {
            writeln!(
                f,
                "Stack {stack} is gone and the state is removed; what privbucket made for the \
                 stacks in its VPC together stays while another uses it:"
            )?;
            for (k, why) in &shared {
                writeln!(f, "  {} {}: {why}", k.kind, k.id)?;
            }
            return Ok(());
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
                | Action::Left(_)
                | Action::Shared(_)
                | Action::Skipped => "",
            };
            writeln!(f, "  {} {}: {why}", k.kind, k.id)?;
        }
        write!(f, "The state file keeps what is left.")
    }
}

pub(crate) async fn run(g: &Global, args: &DownArgs) -> Result<ExitCode> {
    // As `terraform destroy` without `-auto-approve`: refused before any call.
    if !args.yes && !std::io::stdin().is_terminal() {
        return input(
            "`privbucket down` deletes every resource of the stack and asks first, but there is \
             no terminal to ask on; pass --yes to delete without asking (nothing was called)",
        );
    }
    let store = super::open_store(g).await?;
    super::with_lock(g, &store, "privbucket down", locked(g, args, &store)).await
}

/// A state file is not proof of ownership: a role, function or bucket it records under another
/// name than the stack's own is not deleted (exit 2, before any change). The names the stack
/// does use were checked for its tag by the first round of reads.
fn refuse_foreign_names(g: &Global, st: &State, stack: &Stack) -> Result<()> {
    let mut own: Vec<(Step, String)> = vec![(Step::Bucket, stack.bucket().to_string())];
    for f in [Function::Uploader, Function::Control] {
        own.push((f.role(), stack.role_name(f)));
        own.push((f.step(), stack.function_name(f)));
    }
    for (step, name) in own {
        if let Some(r) = st.resources.get(&step)
            && r.id != name
        {
            return input(format!(
                "state file {} records {} {} for stack {}, whose {} is named {name}; \
                 privbucket deletes only what its stack made, and will not delete {} on the \
                 state file's word (was it edited?). Nothing was changed",
                g.state,
                step.kind(),
                r.id,
                stack.name,
                step.key(),
                r.id
            ));
        }
    }
    Ok(())
}

/// The stack's VPC. In a borrowed network its record may be gone already (let go by an
/// earlier `down` that stopped at the endpoint): the settings still name the VPC whose other
/// stacks count.
fn vpc_of(st: &State) -> Option<String> {
    st.resources
        .get(&Step::Vpc)
        .map(|v| v.id.clone())
        .or_else(|| {
            st.settings
                .network
                .as_ref()
                .map(|n| n.vpc.as_str().to_string())
        })
}

/// A record whose resource is gone (an old state, a resource deleted by hand) while discovery
/// finds the stack's own by its tags for the same step: the stack's own is what `down` removes,
/// so it never says "nothing is left" while it stays.
fn take_own_for_gone(st: &mut State, found: &Resources, gone: &[Step], progress: &Progress) {
    for step in gone {
        if let (Some(own), Some(recorded)) = (found.get(step), st.resources.get(step))
            && own.id != recorded.id
        {
            progress.note(&format!(
                "the state's {} {} is gone; the stack's own, {}, found by its tags, is removed \
                 in its place",
                step.kind(),
                recorded.id,
                own.id
            ));
            st.resources.insert(*step, own.clone());
        }
    }
}

/// What `down` reads before it may change anything: the state (or, with `--name` and no
/// state, the stack discovered), the caller, and with a state the first round of reads.
struct Before {
    session: Session,
    st: State,
    first_round: Option<(discovery::Found, RoleLists, proof::Proof)>,
    /// The state was built by discovery (`down --name` without a state file).
    discovered: bool,
}

async fn before(g: &Global, args: &DownArgs, store: &Store) -> Result<Option<Before>> {
    Ok(Some(match (store.load().await?, &args.name) {
        (Some(st), name) => {
            check_name(g, &st, name.as_ref())?;
            // The first round of reads goes out with the caller's identity, not after it:
            // nothing is changed before both are back and the account checked. What the state
            // file misses (a crash between a create and its record, a file from an older
            // version) is looked for by the stack's tags and names; the roles' lists are read
            // for their deletes (see `prefetch`).
            let res = &st.resources;
            // What the state records as made is proven the stack's in the same round.
            let (session, (found, roles, unproven)) =
                connect_reading(g, &st, args.max_concurrency, |clients, stack| async move {
                    let reader = Ctx::new(clients, stack, crate::progress::Progress::silent());
                    tokio::join!(
                        discovery::scan(&reader),
                        Prefetch::roles(&reader, res),
                        proof::prove(&reader, res)
                    )
                })
                .await?;
            Before {
                session,
                st,
                first_round: Some((found?, roles, unproven?)),
                discovered: false,
            }
        }
        (None, None) => return Ok(None),
        (None, Some(name)) => match discover(g, name, args.max_concurrency).await? {
            (session, Some(st)) => Before {
                session,
                st,
                first_round: None,
                discovered: true,
            },
            (_, None) => return Ok(None),
        },
    }))
}

async fn locked(g: &Global, args: &DownArgs, store: &Store) -> Result<ExitCode> {
    let Some(Before {
        session,
        mut st,
        first_round,
        discovered,
    }) = before(g, args, store).await?
    else {
        emit(
            g,
            &DownReport {
                stack: None,
                complete: true,
                steps: Vec::new(),
                kept: Vec::new(),
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    };
    let stack = Stack::from_state(&st, &session.caller_arn);
    refuse_foreign_names(g, &st, &stack)?;
    let mut added = Vec::new();
    let mut down = Teardown {
        delete_objects: args.delete_objects,
        eni_timeout: args.eni_timeout,
        prefetch: Prefetch::default(),
        vpc: None,
        kms_deletion_window: args.kms_deletion_window,
    };
    if let Some((mut found, roles, mut proof)) = first_round {
        proof::name_own(&mut proof.unproven, &found.resources);
        if !proof.unproven.is_empty() {
            return proof::refuse(&g.state.to_string(), &proof.unproven);
        }
        take_own_for_gone(&mut st, &found.resources, &proof.gone, &progress(g));
        down.prefetch = Prefetch::new(found.take_configurations(), roles);
        added = discovery::merge(&mut st.resources, found.resources);
    }
    down.vpc = vpc_of(&st);
    if !args.yes {
        let asking = Ctx::new(session.clients.clone(), stack.clone(), Progress::silent());
        confirm(&asking, &st, &added, args.delete_objects).await?;
    }
    let progress = progress(g);
    let ctx = Ctx::new(session.clients, stack.clone(), progress.clone());
    for step in &added {
        progress.note(&format!(
            "found {} {} by its tags or name; it is not in the state file, and will be removed \
             too",
            step.kind(),
            st.resources[step].id
        ));
    }
    if discovered || !added.is_empty() {
        // Recorded before anything is deleted: a `down` interrupted from here on resumes
        // from the state.
        store.save(&st).await?;
    }
    let (ctx, down) = (Arc::new(ctx), Arc::new(down));
    // Every step, whatever the settings: a resource in the state file is removed.
    let report = run_graph(
        &all_steps(),
        Direction::Down,
        args.max_concurrency,
        &mut st,
        store,
        &progress,
        |step, res, _| remove(step, ctx.clone(), down.clone(), res),
    )
    .await?;
    if !report.errors.is_empty() {
        return Err(first_error(report.errors));
    }
    finish(g, store, &stack, &st, report.steps).await
}

/// The state goes once nothing is left; the report sets apart what was kept.
async fn finish(
    g: &Global,
    store: &Store,
    stack: &Stack,
    st: &State,
    done: Vec<StepReport>,
) -> Result<ExitCode> {
    let (kept, steps): (Vec<StepReport>, Vec<StepReport>) = done
        .into_iter()
        .partition(|s| matches!(s.action, Action::Kept(_)));
    let complete = st.resources.is_empty();
    if complete {
        store.remove(stack.name.as_str()).await?;
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

/// On a terminal: shows what `down` will delete and asks for the stack's name, as a typed
/// name cannot be confirmed by a reflex.
async fn confirm(ctx: &Ctx, st: &State, added: &[Step], delete_objects: bool) -> Result<()> {
    use std::fmt::Write as _;
    let mut text = format!(
        "privbucket down deletes stack {} in {} (account {}):\n",
        st.stack, st.region, st.account_id
    );
    for (step, res) in &st.resources {
        let _ = write!(text, "  {} {}", step.kind(), res.id);
        if added.contains(step) {
            text.push_str(" (found by its tags or name; not in the state)");
        }
        if step.resource_kind().holds_objects() {
            // Counted up to one page: enough to say whether, and roughly how much.
            let n = bucket::count_objects(ctx, 1000).await?;
            let many = match n {
                1 => "1 object version".to_string(),
                1000.. => "1000 or more object versions".to_string(),
                n => format!("{n} object versions"),
            };
            text.push_str(&match (n, delete_objects) {
                (0, _) => " (empty)".to_string(),
                (_, false) => {
                    format!(" (holds {many}: kept, with its policy, unless --delete-objects)")
                }
                (_, true) => format!(" (holds {many}: --delete-objects deletes every one)"),
            });
        }
        text.push('\n');
    }
    let _ = write!(text, "Type the stack name ({}) to delete it: ", st.stack);
    let answer = super::ask(&text).await?;
    if answer == st.stack.as_str() {
        return Ok(());
    }
    input(format!(
        "down cancelled: {answer:?} is not the stack name {}; nothing was deleted",
        st.stack
    ))
}
