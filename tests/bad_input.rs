//! Bad flags and unusable state files: exit 2, a message naming the value and the rule,
//! the state file byte-identical, and no call reaching AWS (the proxy counts them).
use crate::common::World;

const GOOD_STATE: &str = r#"{
  "schema_version": 1,
  "stack": "privbucket",
  "region": "us-east-1",
  "account_id": "123456789012",
  "endpoint_url": "PROXY",
  "settings": {
    "bucket": "privbucket-123456789012-us-east-1",
    "vpc_cidr": "10.16.0.0/16",
    "subnet_cidrs": ["10.16.0.0/24", "10.16.1.0/24"],
    "control_function": true
  },
  "resources": {"vpc": {"id": "vpc-0123456789abcdef0"}}
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_are_refused_before_any_call() {
    let w = World::new().await;
    let cases: &[(&[&str], &str)] = &[
        (
            &["up", "--bucket", "Bad_Bucket"],
            "invalid bucket name \"Bad_Bucket\"",
        ),
        (&["up", "--bucket", "ab"], "3 to 63 characters"),
        (&["up", "--bucket", "192.168.5.4"], "IP address"),
        (&["up", "--bucket", "xn--bucket"], "prefix \"xn--\""),
        (
            &["up", "--bucket", "my-bucket-s3alias"],
            "suffix \"-s3alias\"",
        ),
        (&["up", "--bucket", "my..bucket"], "adjacent dots"),
        // Names made from the stack name: the group `sg-…-uploader`, the bucket `sthree-…`.
        (&["up", "--name", "sg-prod"], "may not start with `sg-`"),
        (&["up", "--name", "sthree"], "start with `sthree-`"),
        (
            &["up", "--vpc-cidr", "10.16.0.0/33"],
            "invalid CIDR \"10.16.0.0/33\"",
        ),
        (
            &["up", "--vpc-cidr", "not-a-cidr"],
            "invalid CIDR \"not-a-cidr\"",
        ),
        (&["up", "--vpc-cidr", "10.0.0.0/8"], "between /16 and /28"),
        (&["up", "--vpc-cidr", "10.16.0.1/16"], "host bits"),
        (
            &["up", "--subnet-cidrs", "10.17.0.0/24,10.16.1.0/24"],
            "10.17.0.0/24 is not inside the VPC CIDR 10.16.0.0/16",
        ),
        (
            &[
                "up",
                "--vpc-cidr",
                "10.20.0.0/16",
                "--subnet-cidrs",
                "10.20.0.0/24,10.20.0.128/25",
            ],
            "overlap",
        ),
        (
            &["up", "--subnet-cidrs", "10.16.0.0/24"],
            "exactly two CIDR blocks",
        ),
        (&["up", "--zones", "us-east-1a"], "exactly two zones"),
        (
            &["up", "--zones", "us-east-1a,us-east-1a"],
            "two different zones",
        ),
        (
            &["up", "--zones", "us-east-1a,US_EAST_1B"],
            "invalid zone \"US_EAST_1B\"",
        ),
        (&["up", "--name", "Has_Upper"], "invalid stack name"),
        (
            &["up", "--region", "moon-base"],
            "invalid region \"moon-base\"",
        ),
        (
            &["down", "--yes", "--eni-timeout", "soon"],
            "invalid --eni-timeout \"soon\"",
        ),
        (&["up", "--max-concurrency", "0"], "--max-concurrency 0"),
    ];
    for (args, want) in cases {
        let r = w.refused(args, want).await;
        assert!(!w.state_path().exists(), "`{}` wrote a state file", r.cmd);
    }
    assert!(
        w.proxy.calls().is_empty(),
        "calls reached AWS: {:#?}",
        w.proxy.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_state_files_are_refused_and_left_byte_identical() {
    let w = World::new().await;
    let good = GOOD_STATE.replace("PROXY", &w.proxy.url);
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), "is empty"),
        (
            "truncated",
            good[..good.len() / 2].to_string(),
            "not valid JSON",
        ),
        ("not JSON", "privbucket was here\n".into(), "not valid JSON"),
        (
            "another schema",
            good.replace("\"schema_version\": 1", "\"schema_version\": 7"),
            "schema version 7",
        ),
        (
            "no schema",
            "{\"stack\": \"x\"}".into(),
            "no schema_version",
        ),
        (
            "unknown field",
            good.replace("\"resources\"", "\"extra\": 1, \"resources\""),
            "does not match",
        ),
        (
            "another region",
            good.replace("\"region\": \"us-east-1\"", "\"region\": \"eu-west-1\""),
            "is for region eu-west-1",
        ),
        (
            "another endpoint",
            good.replace(&w.proxy.url, "http://127.0.0.1:9"),
            "was made through endpoint http://127.0.0.1:9",
        ),
        (
            "real AWS",
            good.replace(&format!("\"endpoint_url\": \"{}\",\n", w.proxy.url), ""),
            "made against AWS itself",
        ),
    ];
    for (name, content, want) in &cases {
        for cmd in [&["status"][..], &["up"][..], &["down", "--yes"][..]] {
            std::fs::write(w.state_path(), content).unwrap();
            let r = w.run(cmd).await;
            r.expect(2);
            assert!(
                r.stderr.contains(want),
                "{name}, `{}`: wanted {want:?} in:\n{}",
                r.cmd,
                r.stderr
            );
            assert_eq!(
                std::fs::read(w.state_path()).unwrap(),
                content.as_bytes(),
                "{name}: `{}` changed the state file",
                r.cmd
            );
        }
    }
    assert!(
        w.proxy.calls().is_empty(),
        "calls reached AWS: {:#?}",
        w.proxy.calls()
    );

    // Another account can only be told by asking STS who the credentials are. The stack's
    // first round of reads goes out with that question (a right account costs no extra round
    // trip), so reads may reach AWS; nothing is written.
    let foreign = good.replace("123456789012", "999999999999");
    for cmd in [&["status"][..], &["up"][..], &["down", "--yes"][..]] {
        std::fs::write(w.state_path(), &foreign).unwrap();
        w.proxy.clear();
        let r = w.run(cmd).await;
        r.expect(2);
        assert!(
            r.stderr.contains("is for AWS account 999999999999"),
            "{}",
            r.stderr
        );
        assert_eq!(std::fs::read_to_string(w.state_path()).unwrap(), foreign);
        let calls = w.proxy.calls();
        assert!(
            calls.iter().any(|c| c.action == "GetCallerIdentity"),
            "`{}`: {calls:#?}",
            r.cmd
        );
        let writes = w.proxy.writes();
        assert!(writes.is_empty(), "`{}` wrote: {writes:#?}", r.cmd);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_without_a_state_file_says_nothing_is_deployed() {
    let w = World::new().await;
    let r = w.run(&["status"]).await;
    r.expect(0);
    assert!(r.stdout.contains("Nothing deployed"), "{}", r.stdout);
    let js = w.run(&["status", "--output", "json"]).await;
    js.expect(0);
    assert_eq!(js.json()["deployed"], false);
    assert!(w.proxy.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_command_on_a_locked_state_file_is_refused_naming_the_holder() {
    let w = World::new().await;
    // Hold the lock as a running privbucket would.
    let lock_path = w.dir.path().join("privbucket.state.json.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .unwrap();
    file.try_lock().unwrap();
    std::fs::write(&lock_path, "pid 4242 since 2026-11-28T00:00:00Z\n").unwrap();
    let r = w.run(&["up"]).await;
    r.expect(2);
    assert!(
        r.stderr
            .contains("locked by pid 4242 since 2026-11-28T00:00:00Z"),
        "{}",
        r.stderr
    );
    assert!(!w.state_path().exists());
    assert!(w.proxy.calls().is_empty());
    drop(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_error_says_to_sign_in_and_nothing_is_sent() {
    let w = World::new().await;
    let mut cmd = w.command(&["up"], &[]);
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = cmd.output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("no usable AWS credentials"), "{err}");
    assert!(!err.contains("did not answer"), "{err}");
    assert!(w.proxy.calls().is_empty(), "{:?}", w.proxy.calls());
    assert!(!w.state_path().exists());
}
