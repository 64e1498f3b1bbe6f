//! The state itself: `state pull` prints it, `state push FILE` uploads a local state file
//! (how a stack moves from a laptop to S3), `force-unlock` removes a stale lock.
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::config::Global;
use crate::config::Location;
use crate::error::input;
use crate::state;

/// Prints the state document as it is stored.
pub(crate) async fn pull(g: &Global) -> Result<ExitCode> {
    let store = super::open_store(g).await?;
    let Some(bytes) = store.read().await? else {
        return input(format!("there is no state at {}", g.state));
    };
    // Checked, so that what is printed is a state privbucket can use.
    state::parse(&g.state, &bytes)?;
    std::io::stdout().write_all(&bytes)?;
    Ok(ExitCode::SUCCESS)
}

/// Uploads `file` to `--state`, under the state's lock; an existing state there is replaced
/// only with `--force`, and then only the version read here (a compare-and-swap).
pub(crate) async fn push(g: &Global, file: &Path, force: bool) -> Result<ExitCode> {
    let from = Location::File(file.to_path_buf());
    if from == g.state {
        return input(format!(
            "state push uploads {} to itself: give the destination with --state (e.g. --state \
             s3://BUCKET/KEY)",
            file.display()
        ));
    }
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => return input(format!("cannot read {}: {e}", file.display())),
    };
    let pushed = state::parse(&from, &bytes)?;
    let store = super::open_store(g).await?;
    store.refuse_stack_bucket(&pushed)?;
    let work = async {
        if let Some(there) = store.read().await? {
            let what = match state::parse(&g.state, &there) {
                Ok(st) => format!(
                    "stack {} in {} ({} resources)",
                    st.stack,
                    st.region,
                    st.resources.len()
                ),
                Err(_) => "a document privbucket cannot read".to_string(),
            };
            if !force {
                return input(format!(
                    "{} already holds a state ({what}); nothing was uploaded. Pass --force to \
                     replace it (`privbucket state pull --state {}` shows it first)",
                    g.state, g.state
                ));
            }
        }
        store.write(&state::encode(&pushed)).await?;
        println!(
            "Pushed stack {} ({} resources) from {} to {}. Use --state {} (or \
             PRIVBUCKET_STATE) from now on; {} is left as it was: move it aside so nobody uses \
             it by mistake.",
            pushed.stack,
            pushed.resources.len(),
            file.display(),
            g.state,
            g.state,
            file.display()
        );
        Ok(ExitCode::SUCCESS)
    };
    super::with_lock(g, &store, "privbucket state push", work).await
}

/// Removes the lock `id` after its holder crashed, once the user confirms.
pub(crate) async fn force_unlock(g: &Global, id: &str, yes: bool) -> Result<ExitCode> {
    let store = super::open_store(g).await?;
    let Some(found) = store.find_lock().await? else {
        println!("{} is not locked: nothing to remove.", g.state);
        return Ok(ExitCode::SUCCESS);
    };
    let who = match &found.holder {
        Some(h) if h.id == id => h.to_string(),
        Some(h) => {
            return input(format!(
                "{} is locked by {h} with lock ID {}, not {id}; nothing was removed (check the \
                 ID: the lock's holder may have changed)",
                g.state, h.id
            ));
        }
        None => {
            return input(format!(
                "the lock on {} is not privbucket's (no lock ID in it); nothing was removed",
                g.state
            ));
        }
    };
    if !yes {
        if !std::io::stdin().is_terminal() {
            return input(format!(
                "force-unlock removes the lock of {who} on {}; there is no terminal to confirm \
                 on: pass --yes",
                g.state
            ));
        }
        let answer = super::ask(&format!(
            "{} is locked by {who}.\nRemove the lock only if that command is no longer running: \
             two commands on one stack at once can leave it half made. Type yes to remove it: ",
            g.state
        ))
        .await?;
        if answer != "yes" {
            return input("force-unlock cancelled; the lock is left in place");
        }
    }
    store.force_unlock(found).await?;
    println!("Removed lock {id} from {}.", g.state);
    Ok(ExitCode::SUCCESS)
}
