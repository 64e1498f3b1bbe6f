//! A stack shared by a team: the state as an S3 object (`--state s3://BUCKET/KEY`), locked
//! with S3's conditional writes, written compare-and-swap. moto's S3 honours `If-None-Match`
//! and `If-Match` on `PutObject` and `If-Match` on `DeleteObject`, as S3 does; what it cannot
//! do (lose an answer) the proxy injects.
use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::proxy::Fault;
use crate::common::{STATE_BUCKET, World, bucket};

const KEY: &str = "privbucket/prod.state.json";

fn url() -> String {
    format!("s3://{STATE_BUCKET}/{KEY}")
}

/// An object in the state bucket, read through the SDK; `None`: there is none.
async fn object(w: &World, key: &str) -> Option<Vec<u8>> {
    w.state_object(key).await
}

/// Waits until a running command holds the lock and has written the state once.
async fn locked_and_recorded(w: &World) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while object(w, &lock_key()).await.is_none() || object(w, KEY).await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "up never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lock_key() -> String {
    format!("{KEY}.lock")
}

/// The stack's VPC ID as the SDK finds it (by its tag), and as the remote state records it.
async fn vpc_agrees(w: &World) {
    let vpc = w.stack_vpc("privbucket").await.expect("the stack's VPC");
    let state: serde_json::Value = serde_json::from_slice(&object(w, KEY).await.unwrap()).unwrap();
    assert_eq!(
        state["resources"]["vpc"]["id"].as_str(),
        vpc.vpc_id(),
        "{state:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ups_at_once_on_one_remote_state_one_runs_and_the_other_names_the_holder() {
    let w = World::new().await;
    w.make_state_bucket().await;
    // Two people, two working folders, one state.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: &std::path::Path| {
        let mut cmd = w.command(&["--state", &url(), "up"], &[]);
        cmd.current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.output()
    };
    let (ra, rb) = tokio::join!(start(a.path()), start(b.path()));
    let runs = [ra.unwrap(), rb.unwrap()];
    let codes: Vec<i32> = runs.iter().map(|r| r.status.code().unwrap()).collect();
    let mut sorted = codes.clone();
    sorted.sort();
    let text = |r: &std::process::Output| String::from_utf8_lossy(&r.stderr).into_owned();
    assert_eq!(
        sorted,
        vec![0, 2],
        "exit codes {codes:?}\n{}\n---\n{}",
        text(&runs[0]),
        text(&runs[1])
    );
    let loser = text(runs.iter().find(|r| r.status.code() == Some(2)).unwrap());
    assert!(loser.contains("is locked by"), "{loser}");
    assert!(
        loser.contains("`privbucket up`") && loser.contains("lock ID"),
        "{loser}"
    );
    assert!(loser.contains("privbucket force-unlock"), "{loser}");
    // Exactly one stack was made, the state records it, and the lock is gone.
    assert_eq!(w.vpcs().await.len(), 1);
    vpc_agrees(&w).await;
    assert!(object(&w, &lock_key()).await.is_none());
    // Nothing of either run is in the working folders.
    for dir in [&a, &b] {
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(names.is_empty(), "{names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_to_the_lock_and_state_writes_end_with_the_lock_held_and_released() {
    let w = World::new().await;
    w.make_state_bucket().await;
    // The first lock write and the first state write take effect, and their answers are lost
    // (a 500): the SDK sends each again, and meets the lock it made itself, or a state that
    // is no longer the version its If-Match names (412), which is its own.
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let s = seen.clone();
    w.proxy.set_faults(move |_, call| {
        if call.method == "PUT"
            && call.action.contains(KEY)
            && s.lock().unwrap().insert(call.action.contains(".lock"))
        {
            Fault::FailAfter
        } else {
            Fault::None
        }
    });
    w.run(&["--state", &url(), "up"]).await.expect(0);
    let calls = |lock: bool| -> Vec<(String, u16)> {
        w.proxy
            .calls()
            .iter()
            .filter(|c| c.action.contains(KEY) && c.action.contains(".lock") == lock)
            .map(|c| (c.api(), c.status))
            .collect()
    };
    let call = |api: &str, status| (api.to_string(), status);
    assert_eq!(
        calls(true),
        vec![
            call("PutObject", 500),
            call("PutObject", 412),
            call("GetObject", 200),
            call("DeleteObject", 204),
        ]
    );
    // The state: read (none yet), written (answer lost), written again (412: the state is
    // not what it was), read back (it is ours), then every later write goes through.
    let state = calls(false);
    assert_eq!(
        state[..4],
        [
            call("GetObject", 404),
            call("PutObject", 500),
            call("PutObject", 412),
            call("GetObject", 200),
        ]
    );
    assert!(
        state[4..].iter().all(|c| *c == call("PutObject", 200)),
        "{state:?}"
    );
    assert!(object(&w, &lock_key()).await.is_none());
    vpc_agrees(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_changed_behind_our_back_stops_the_next_write_with_nothing_lost() {
    let w = World::new().await;
    w.make_state_bucket().await;
    // Just before `up`'s third state write reaches S3 (held back for two seconds), someone
    // else rewrites the state: what is there, with one more line at the end, as an editor
    // would leave it.
    let writes = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let path = format!("/{STATE_BUCKET}/{KEY}");
    let n = writes.clone();
    w.proxy.set_faults(move |_, call| {
        let state_write =
            call.method == "PUT" && call.action.contains(&path) && !call.action.contains(".lock");
        if state_write && n.fetch_add(1, Ordering::SeqCst) == 2 {
            let _ = tx.send(());
            return Fault::Delay(Duration::from_secs(2));
        }
        Fault::None
    });
    let someone_else = async {
        rx.recv().await.expect("up writes its state three times");
        let mut doc = object(&w, KEY).await.unwrap();
        doc.extend_from_slice(b"\n");
        w.aws
            .s3
            .put_object()
            .bucket(STATE_BUCKET)
            .key(KEY)
            .body(doc.clone().into())
            .send()
            .await
            .unwrap();
        doc
    };
    let at = url();
    let args = ["--state", at.as_str(), "up"];
    let (r, theirs) = tokio::join!(w.run(&args), someone_else);
    w.proxy.no_faults();
    r.expect(3);
    assert!(
        r.stderr.contains("was changed by someone else"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("privbucket.state.privbucket.rejected.json"),
        "{}",
        r.stderr
    );
    // Theirs is in S3, untouched; ours is in the working folder; the lock is released.
    assert_eq!(object(&w, KEY).await.unwrap(), theirs);
    let ours: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            w.dir
                .path()
                .join("privbucket.state.privbucket.rejected.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(ours["stack"], "privbucket");
    assert!(
        ours["resources"].as_object().unwrap().len()
            > serde_json::from_slice::<serde_json::Value>(&theirs).unwrap()["resources"]
                .as_object()
                .unwrap()
                .len(),
        "ours records more than theirs: {ours:#}"
    );
    assert!(object(&w, &lock_key()).await.is_none());
    // The next `up` starts from their state and finishes the stack, with one of everything.
    w.run(&["--state", &url(), "up"]).await.expect(0);
    assert_eq!(w.vpcs().await.len(), 1);
    vpc_agrees(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_unlock_after_a_sigkill_lets_the_next_command_run() {
    let w = World::new().await;
    w.make_state_bucket().await;
    let mut up = w.command(&["--state", &url(), "up"], &[]);
    up.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = up.spawn().unwrap();
    // Killed once it holds the lock and has recorded something.
    locked_and_recorded(&w).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let lock: serde_json::Value =
        serde_json::from_slice(&object(&w, &lock_key()).await.unwrap()).unwrap();
    let id = lock["id"].as_str().unwrap().to_string();
    assert_eq!(lock["command"], "privbucket up");

    let again = w.run(&["--state", &url(), "up"]).await;
    again.expect(2);
    assert!(
        again
            .stderr
            .contains(&format!("privbucket force-unlock {id} --state {}", url())),
        "{}",
        again.stderr
    );
    // A wrong ID, or no --yes without a terminal: the lock stays.
    w.run(&["--state", &url(), "force-unlock", "not-the-id", "--yes"])
        .await
        .expect(2);
    let unconfirmed = w.run(&["--state", &url(), "force-unlock", &id]).await;
    unconfirmed.expect(2);
    assert!(
        unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    assert!(object(&w, &lock_key()).await.is_some());

    w.run(&["--state", &url(), "force-unlock", &id, "--yes"])
        .await
        .expect(0);
    assert!(object(&w, &lock_key()).await.is_none());
    // The next `up` resumes from what the killed one recorded, and `down` removes it all.
    w.run(&["--state", &url(), "up"]).await.expect(0);
    assert_eq!(w.vpcs().await.len(), 1);
    vpc_agrees(&w).await;
    w.run(&["--state", &url(), "down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_push_then_down_from_another_folder_removes_the_stack() {
    let w = World::new().await;
    w.make_state_bucket().await;
    // Made on a laptop, with a local state file.
    w.up().await;
    let local = std::fs::read(w.state_path()).unwrap();
    w.run(&["state", "push", "privbucket.state.json", "--state", &url()])
        .await
        .expect(0);
    let pushed: serde_json::Value =
        serde_json::from_slice(&object(&w, KEY).await.unwrap()).unwrap();
    let mine: serde_json::Value = serde_json::from_slice(&local).unwrap();
    assert_eq!(pushed, mine);
    // Not over an existing state without --force.
    let again = w
        .run(&["state", "push", "privbucket.state.json", "--state", &url()])
        .await;
    again.expect(2);
    assert!(again.stderr.contains("already holds"), "{}", again.stderr);
    // With --force it replaces it (here with itself).
    w.run(&[
        "state",
        "push",
        "privbucket.state.json",
        "--force",
        "--state",
        &url(),
    ])
    .await
    .expect(0);
    // `state pull` prints it.
    let pull = w.run(&["state", "pull", "--state", &url()]).await;
    pull.expect(0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&pull.stdout).unwrap(),
        mine
    );

    // The local file is moved aside, as `state push` says to.
    std::fs::rename(w.state_path(), w.dir.path().join("pushed.json")).unwrap();
    // A teammate, in a folder of their own, with the state in S3.
    let other = tempfile::tempdir().unwrap();
    let mut down = w.command(&["down", "--yes"], &[("PRIVBUCKET_STATE", &url())]);
    down.current_dir(other.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = down.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.assert_nothing_left().await;
    assert!(!w.buckets().await.contains(&bucket()));
    // The remote state and its lock are gone; the state bucket stays.
    assert!(object(&w, KEY).await.is_none());
    assert!(object(&w, &lock_key()).await.is_none());
    let none = w.run(&["state", "pull", "--state", &url()]).await;
    none.expect(2);
    assert!(none.stderr.contains("there is no state"), "{}", none.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_bucket_that_does_not_exist_is_bad_input() {
    let w = World::new().await;
    let r = w
        .refused(
            &["--state", "s3://no-such-state/k.json", "up"],
            "does not exist",
        )
        .await;
    assert!(r.stderr.contains("no-such-state"), "{}", r.stderr);
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
    w.refused(&["--state", "s3://team-state", "up"], "names no object")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_operation_on_the_lock_or_the_state_is_retried() {
    let w = World::new().await;
    w.make_state_bucket().await;
    // S3 answers 409 to the first lock write, the first state write and the lock's release.
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let s = seen.clone();
    w.proxy.set_faults(move |_, call| {
        if call.service != "s3" || !call.action.contains(KEY) {
            return Fault::None;
        }
        let kind = (call.method.clone(), call.action.contains(".lock"));
        if matches!(call.method.as_str(), "PUT" | "DELETE") && s.lock().unwrap().insert(kind) {
            Fault::S3ConditionalConflict
        } else {
            Fault::None
        }
    });
    w.run(&["--state", &url(), "up"]).await.expect(0);
    let conflicts: Vec<(String, bool)> = w
        .proxy
        .calls()
        .iter()
        .filter(|c| c.status == 409)
        .map(|c| (c.api(), c.action.contains(".lock")))
        .collect();
    assert_eq!(
        conflicts,
        vec![
            ("PutObject".to_string(), true),
            ("PutObject".to_string(), false),
            ("DeleteObject".to_string(), true),
        ]
    );
    assert!(object(&w, &lock_key()).await.is_none());
    vpc_agrees(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_run_and_releases_the_lock() {
    let w = World::new().await;
    w.make_state_bucket().await;
    let mut up = w.command(&["--state", &url(), "up"], &[]);
    up.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = up.spawn().unwrap();
    locked_and_recorded(&w).await;
    // What a terminal sends on Ctrl-C.
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(object(&w, &lock_key()).await.is_none());
    // The next run resumes, with one of everything.
    w.run(&["--state", &url(), "up"]).await.expect(0);
    assert_eq!(w.vpcs().await.len(), 1);
    vpc_agrees(&w).await;
}

/// What CI systems, Kubernetes and `docker stop` send to cancel a job (SIGTERM), and what a
/// closed terminal sends (SIGHUP), while a call is still out: the proxy holds every
/// `CreateFunction` unanswered, standing in for a slow AWS answer, so the signal lands
/// mid-run with the network, roles and bucket made.
async fn a_signal_mid_run_releases_the_lock_with_every_resource_recorded(signal: &str, exit: i32) {
    let w = World::new().await;
    w.make_state_bucket().await;
    let held = Arc::new(AtomicUsize::new(0));
    let seen = held.clone();
    w.proxy.set_faults(move |_, call| {
        if call.api() == "CreateFunction" {
            seen.fetch_add(1, Ordering::SeqCst);
            Fault::Hang
        } else {
            Fault::None
        }
    });
    let mut up = w.command(&["--state", &url(), "up"], &[]);
    up.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = up.spawn().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while held.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no CreateFunction");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the signal ends the run")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit), "{stderr}");
    assert!(
        stderr.contains(&format!("interrupted by SIG{signal}")),
        "{stderr}"
    );
    assert!(object(&w, &lock_key()).await.is_none(), "the lock is left");
    // Every resource made is in the state: the VPC, the roles, the bucket.
    let state: serde_json::Value = serde_json::from_slice(&object(&w, KEY).await.unwrap()).unwrap();
    vpc_agrees(&w).await;
    let recorded: BTreeSet<String> = state["resources"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    for made in w.roles().await.into_iter().chain(w.buckets().await) {
        assert!(
            recorded.contains(&made),
            "{made} is not recorded: {state:#}"
        );
    }
    assert!(w.functions().await.is_empty());
    // The next run converges, with exactly one of everything.
    w.proxy.no_faults();
    w.run(&["--state", &url(), "up"]).await.expect(0);
    assert_eq!(w.vpcs().await.len(), 1);
    assert_eq!(w.functions().await.len(), 2);
    assert_eq!(w.roles().await.len(), 2);
    assert_eq!(w.buckets().await, vec![bucket()]);
    vpc_agrees(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_exits_143_and_releases_the_lock() {
    a_signal_mid_run_releases_the_lock_with_every_resource_recorded("TERM", 143).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_mid_run_exits_129_and_releases_the_lock() {
    a_signal_mid_run_releases_the_lock_with_every_resource_recorded("HUP", 129).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_timeout_waits_for_the_holder_to_release_the_lock() {
    let w = World::new().await;
    w.make_state_bucket().await;
    // Someone holds the lock (a lock object as privbucket writes it) and releases it in 2 s.
    let holder = serde_json::json!({
        "id": "6f1d7c1e-5a51-4a7e-9b0e-2f6f3d1c9a10", "user": "ana", "host": "ci-7",
        "pid": 4242, "command": "privbucket up", "started": "2026-11-28T09:00:00Z",
        "version": "0.1.0"
    });
    w.aws
        .s3
        .put_object()
        .bucket(STATE_BUCKET)
        .key(lock_key())
        .body(serde_json::to_vec(&holder).unwrap().into())
        .send()
        .await
        .unwrap();
    let refused = w.run(&["--state", &url(), "up"]).await;
    refused.expect(2);
    assert!(
        refused.stderr.contains(
            "locked by ana@ci-7 (pid 4242, `privbucket up`) since 2026-11-28T09:00:00Z, lock ID \
             6f1d7c1e-5a51-4a7e-9b0e-2f6f3d1c9a10"
        ),
        "{}",
        refused.stderr
    );
    assert!(w.vpcs().await.is_empty());
    let release = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        w.aws
            .s3
            .delete_object()
            .bucket(STATE_BUCKET)
            .key(lock_key())
            .send()
            .await
            .unwrap();
    };
    let at = url();
    let args = ["--state", at.as_str(), "--lock-timeout", "60s", "up"];
    let (r, ()) = tokio::join!(w.run(&args), release);
    r.expect(0);
    vpc_agrees(&w).await;
    assert!(object(&w, &lock_key()).await.is_none());
}
