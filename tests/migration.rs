//! A state written by privbucket 0.1 (schema version 1) works with this release.
//! `tests/fixtures/state-v1.json` is what 0.1 wrote after `privbucket up` on moto, unedited.
//! Each test makes the stack with this release, then puts the fixture in place of its state
//! with this emulator's IDs (and endpoint) for the ones it was written with: the stack is real,
//! the document is 0.1's. `status`, `up` (nothing to change, so nothing written: the file is
//! migrated at its next write) and `down` then run on it, from a file and from S3.
use crate::common::{STATE_BUCKET, World};

const FIXTURE: &str = include_str!("fixtures/state-v1.json");
const KEY: &str = "privbucket/v1.state.json";

/// The fixture, with each recorded ID swapped for the one this run's stack has.
fn as_v1(fresh: &serde_json::Value) -> String {
    let fixture: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    assert_eq!(
        fixture["schema_version"], 1,
        "the fixture is a version-1 file"
    );
    let mut text = FIXTURE.to_string();
    for (key, r) in fixture["resources"].as_object().unwrap() {
        let old = r["id"].as_str().unwrap();
        let new = fresh["resources"][key]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("this release made no {key}"));
        text = text.replace(old, new);
    }
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["endpoint_url"] = fresh["endpoint_url"].clone();
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    assert!(text.contains("\"extra\""), "{text}");
    text
}

/// Runs `status`, `up` and `down` on a version-1 state, with `state` the `--state` value;
/// `read` gives the state's bytes as stored.
async fn status_up_down(w: &World, state: &str, stored: impl AsyncFn() -> Option<Vec<u8>>) {
    let before = stored().await.unwrap();
    let status = w.run(&["status", "--state", state]).await;
    status.expect(0);
    assert!(
        !status.stdout.contains("differs") && !status.stdout.contains("missing"),
        "{}",
        status.stdout
    );

    w.proxy.clear();
    w.run(&["up", "--state", state]).await.expect(0);
    // The lock on a state in S3 is an object of its own: taking it is a write, but not to the
    // stack.
    let changes: Vec<String> = w
        .proxy
        .writes()
        .iter()
        .filter(|c| !c.action.contains("v1.state.json.lock"))
        .map(|c| c.api())
        .collect();
    assert!(
        changes.is_empty(),
        "up changed a stack that was whole: {changes:?}"
    );
    assert_eq!(
        stored().await.unwrap(),
        before,
        "up with nothing to change wrote the state"
    );

    w.run(&["down", "--yes", "--state", state]).await.expect(0);
    w.assert_nothing_left().await;
    assert!(stored().await.is_none(), "the state outlived its stack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_state_file_serves_status_up_and_down() {
    let w = World::new().await;
    w.up().await;
    std::fs::write(w.state_path(), as_v1(&w.state())).unwrap();
    let path = w.state_path();
    let state = path.to_str().unwrap();
    status_up_down(&w, state, async || std::fs::read(&path).ok()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_state_in_s3_serves_status_up_and_down() {
    let w = World::new().await;
    w.up().await;
    let v1 = as_v1(&w.state());
    std::fs::remove_file(w.state_path()).unwrap();
    w.make_state_bucket().await;
    w.aws
        .s3
        .put_object()
        .bucket(STATE_BUCKET)
        .key(KEY)
        .body(v1.into_bytes().into())
        .send()
        .await
        .unwrap();
    let url = format!("s3://{STATE_BUCKET}/{KEY}");
    let object = async || w.state_object(KEY).await;
    status_up_down(&w, &url, object).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_of_a_newer_schema_is_refused_with_the_release_to_install() {
    let w = World::new().await;
    let mut doc: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
    doc["schema_version"] = 3.into();
    doc["written_by"] = "privbucket 0.7.0".into();
    std::fs::write(w.state_path(), doc.to_string()).unwrap();
    for cmd in [&["status"][..], &["up"], &["down", "--yes"]] {
        let r = w.refused(cmd, "install privbucket 0.7.0 or later").await;
        assert!(r.stderr.contains("schema version 3"), "{}", r.stderr);
    }
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
    assert_eq!(
        std::fs::read_to_string(w.state_path()).unwrap(),
        doc.to_string(),
        "a newer file is never overwritten"
    );
}
