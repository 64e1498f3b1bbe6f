//! `plan`: what `up` would do, with reads only.
use crate::common::{World, bucket, find_in};
use serde_json::Value;

fn action(doc: &Value, key: &str) -> String {
    find_in(doc, "steps", "resource", key)["action"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_says_what_up_would_do_and_never_writes() {
    let w = World::new().await;

    // Nothing deployed: everything would be created.
    let p = w.run(&["plan", "--output", "json"]).await;
    p.expect(1);
    let doc = p.json();
    assert_eq!(doc["changes"], true);
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 15);
    assert!(steps.iter().all(|s| s["action"] == "create"), "{doc:#}");
    assert!(!w.state_path().exists(), "plan wrote a state file");
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());

    // Right after `up`: nothing to do.
    w.up().await;
    w.proxy.clear();
    let p = w.run(&["plan"]).await;
    p.expect(0);
    assert!(p.stdout.contains("Nothing to do"), "{}", p.stdout);

    // Drift: the policy removed, a Block Public Access flag off.
    let bucket = bucket();
    w.aws
        .s3
        .delete_bucket_policy()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    w.turn_off_public_access_flag(&bucket, "BlockPublicPolicy")
        .await;
    let p = w.run(&["plan", "--output", "json"]).await;
    p.expect(1);
    let doc = p.json();
    assert_eq!(action(&doc, "bucket-policy"), "create");
    assert_eq!(action(&doc, "bucket"), "update");
    let bucket_step = find_in(&doc, "steps", "resource", "bucket");
    assert!(
        bucket_step["changes"][0]
            .as_str()
            .unwrap()
            .contains("BlockPublicPolicy"),
        "{bucket_step}"
    );
    assert_eq!(action(&doc, "vpc"), "nothing");
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());

    // `up` does what the plan said; then there is nothing left to do.
    w.up().await;
    w.run(&["plan"]).await.expect(0);

    // State file lost: `up` would adopt what it finds by tag and name, not create it again.
    let saved = std::fs::read(w.state_path()).unwrap();
    std::fs::remove_file(w.state_path()).unwrap();
    let p = w.run(&["plan", "--output", "json"]).await;
    p.expect(1);
    let doc = p.json();
    for key in [
        "vpc",
        "subnet-a",
        "endpoint",
        "uploader-role",
        "bucket",
        "uploader-function",
    ] {
        assert_eq!(action(&doc, key), "adopt", "{key}: {doc:#}");
    }
    std::fs::write(w.state_path(), saved).unwrap();
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}
