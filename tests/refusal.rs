//! A missing permission, as a new user meets it: one AWS call refused for good (the error the
//! service gives for an action the caller's policy lacks; see `Fault::Deny`), and what is left
//! afterwards. Whatever call is refused, nothing the run made is lost: `down` removes all of
//! it, and `up` finishes it. Also the state file that misses a resource of the stack.
use crate::common::World;
use crate::common::proxy::{Call, Fault};
use crate::recovery::{assert_exactly_one_stack, call_counts};

/// Runs `args` with call `n` refused as a missing permission would be. The refused call, if
/// the run got that far (a concurrent run may make a call or two fewer).
async fn refused(w: &World, n: usize, args: &[&str]) -> (crate::common::Run, Option<Call>) {
    w.proxy.clear();
    w.proxy
        .set_faults(move |i, _| if i == n { Fault::Deny } else { Fault::None });
    let run = w.run(args).await;
    w.proxy.no_faults();
    let call = w.proxy.calls().into_iter().find(|c| c.status == 403);
    (run, call)
}

/// The run stopped with exit 3 and named the refused call; or it could do without that
/// call (a read it makes again later) and exited 0, which the caller then checks by what the
/// account holds.
fn stopped_naming(run: &crate::common::Run, call: &Call) {
    if run.code == 0 {
        return;
    }
    run.expect(3);
    let api = call.api();
    assert!(
        run.stderr.contains(&api),
        "`{}` did not name the refused call {api}:\n{}",
        run.cmd,
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatever_call_of_up_is_refused_down_removes_everything_and_up_finishes_it() {
    let (up_calls, _) = call_counts().await;
    let mut refusals = 0;
    for n in 1..=up_calls {
        // One emulator per call: down after the refusal, then the same refusal and an `up`.
        let w = World::new().await;
        let (run, call) = refused(&w, n, &["up"]).await;
        let Some(call) = call else {
            run.expect(0);
            continue;
        };
        refusals += 1;
        stopped_naming(&run, &call);
        if run.code == 0 {
            assert_exactly_one_stack(&w, &format!("up with {} refused", call.api())).await;
        }
        // Without faults, `down` removes what the failed run made, recorded or not.
        w.run(&["down", "--yes"]).await.expect(0);
        w.assert_nothing_left().await;

        let (run, again) = refused(&w, n, &["up"]).await;
        if again.is_none() {
            run.expect(0);
        }
        w.up().await;
        assert_exactly_one_stack(&w, &format!("up after {} was refused", call.api())).await;
        w.run(&["down", "--yes"]).await.expect(0);
        w.assert_nothing_left().await;
    }
    assert!(
        refusals + 2 >= up_calls,
        "only {refusals} of {up_calls} calls were refused"
    );
    eprintln!("refused calls survived: up {refusals} of {up_calls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatever_call_of_down_is_refused_the_next_down_finishes() {
    let (_, down_calls) = call_counts().await;
    let mut refusals = 0;
    for n in 1..=down_calls {
        let w = World::new().await;
        w.up().await;
        let (run, call) = refused(&w, n, &["down", "--yes"]).await;
        if let Some(call) = call {
            refusals += 1;
            stopped_naming(&run, &call);
        } else {
            run.expect(0);
        }
        w.run(&["down", "--yes"]).await.expect(0);
        w.assert_nothing_left().await;
    }
    assert!(
        refusals + 2 >= down_calls,
        "only {refusals} of {down_calls} calls were refused"
    );
    eprintln!("refused calls survived: down {refusals} of {down_calls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_that_misses_a_resource_is_caught_by_status_and_completed_by_down() {
    let w = World::new().await;
    w.up().await;
    let group = w.id("security-group");
    // Stands in for a state file written by an older version, or a crash between a create
    // and its record: the group exists, tagged for the stack, and the file does not name it.
    let mut state = w.state();
    state["resources"]
        .as_object_mut()
        .unwrap()
        .remove("security-group");
    std::fs::write(w.state_path(), serde_json::to_vec_pretty(&state).unwrap()).unwrap();

    let st = w.run(&["status", "--output", "json"]).await;
    st.expect(1);
    let doc = st.json();
    let sg = crate::common::find_in(&doc, "resources", "resource", "security-group");
    assert_eq!(sg["state"], "unrecorded", "{doc:#}");
    assert_eq!(sg["id"], group.as_str(), "{doc:#}");
    let text = w.run(&["status"]).await;
    text.expect(1);
    assert!(text.stdout.contains("unrecorded"), "{}", text.stdout);

    let down = w.run(&["down", "--yes"]).await;
    down.expect(0);
    assert!(down.stdout.contains(&group), "{}", down.stdout);
    w.assert_nothing_left().await;
}
