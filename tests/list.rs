//! `privbucket list`: every stack in the region (or every region) by its tags and names, read
//! through the SDK's view of the account; reads only.
use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::proxy::Fault;
use crate::common::{ACCOUNT, World};

/// Credentials of another account: moto runs a call in the account of the role its
/// credentials came from (its "multi-account" support), as STS's AssumeRole does across
/// accounts.
async fn other_account(w: &World, account: &str) -> Vec<(String, String)> {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(crate::common::REGION))
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .endpoint_url(&w.emulator.url)
        .load()
        .await;
    let creds = aws_sdk_sts::Client::new(&sdk)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/ops"))
        .role_session_name("tests")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    vec![
        ("AWS_ACCESS_KEY_ID".into(), creds.access_key_id),
        ("AWS_SECRET_ACCESS_KEY".into(), creds.secret_access_key),
        ("AWS_SESSION_TOKEN".into(), creds.session_token),
    ]
}

fn names(list: &serde_json::Value) -> BTreeSet<(String, String)> {
    list["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stack"].as_str().unwrap().to_string(),
                s["region"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_finds_two_stacks_in_a_region_and_none_of_another_account() {
    let w = World::new().await;
    w.up().await;
    w.run(&["--state", "beta.json", "up", "--name", "beta"])
        .await
        .expect(0);
    let other = other_account(&w, "111111111111").await;
    w.run_as(&["--state", "other.json", "up", "--name", "other"], &other)
        .await
        .expect(0);
    // The other account's stack really is there, in its account.
    let theirs = w.run_as(&["list", "--output", "json"], &other).await;
    theirs.expect(0);
    assert_eq!(
        names(&theirs.json()),
        [("other".to_string(), "us-east-1".to_string())].into()
    );

    w.proxy.clear();
    let list = w.run(&["list", "--output", "json"]).await;
    list.expect(0);
    let doc = list.json();
    assert_eq!(doc["account_id"], ACCOUNT);
    assert_eq!(
        names(&doc),
        [
            ("beta".to_string(), "us-east-1".to_string()),
            ("privbucket".to_string(), "us-east-1".to_string())
        ]
        .into()
    );
    for s in doc["stacks"].as_array().unwrap() {
        let name = s["stack"].as_str().unwrap();
        assert_eq!(s["complete"], true, "{s:#}");
        let vpc = w.stack_vpc(name).await.unwrap();
        assert_eq!(s["vpc"].as_str(), vpc.vpc_id());
        assert_eq!(s["bucket"], format!("{name}-{ACCOUNT}-us-east-1"));
        // The state in use (the default file) is privbucket's, and agrees with AWS.
        let state = if name == "privbucket" {
            serde_json::json!("agrees")
        } else {
            serde_json::Value::Null
        };
        assert_eq!(s["state"], state, "{s:#}");
    }
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());

    // A stack half gone shows what it misses; a state that disagrees says how.
    let beta_vpc = w.stack_vpc("beta").await.unwrap();
    let endpoint = w
        .aws
        .ec2
        .describe_vpc_endpoints()
        .filters(crate::common::tag_filter("privbucket:stack", "beta"))
        .send()
        .await
        .unwrap()
        .vpc_endpoints()[0]
        .vpc_endpoint_id()
        .unwrap()
        .to_string();
    w.aws
        .ec2
        .delete_vpc_endpoints()
        .vpc_endpoint_ids(&endpoint)
        .send()
        .await
        .unwrap();
    let text = w.run(&["--state", "beta.json", "list"]).await;
    text.expect(0);
    let beta = text
        .stdout
        .lines()
        .find(|l| l.starts_with("beta "))
        .unwrap_or_else(|| panic!("{}", text.stdout));
    assert!(beta.contains(beta_vpc.vpc_id().unwrap()), "{beta}");
    assert!(beta.contains("no (missing endpoint)"), "{beta}");
    assert!(
        beta.contains(&format!("differs: endpoint {endpoint} recorded, not found")),
        "{beta}"
    );
    assert!(
        text.stdout.contains("2 stack(s) in us-east-1"),
        "{}",
        text.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_all_regions_reads_every_region_at_once() {
    let w = World::new().await;
    w.up().await;
    w.run(&[
        "--region",
        "eu-west-1",
        "--state",
        "west.json",
        "up",
        "--name",
        "west",
    ])
    .await
    .expect(0);
    let regions: Vec<String> = w
        .aws
        .ec2
        .describe_regions()
        .send()
        .await
        .unwrap()
        .regions()
        .iter()
        .map(|r| r.region_name().unwrap().to_string())
        .collect();
    assert!(regions.len() > 10, "{regions:?}");
    // Every call takes a second: each region's reads are seen in flight together only if
    // every region is read at once, in one round.
    w.proxy.clear();
    w.proxy
        .set_faults(|_, _| Fault::Delay(Duration::from_secs(1)));
    let list = w.run(&["list", "--all-regions", "--output", "json"]).await;
    w.proxy.no_faults();
    list.expect(0);
    let doc = list.json();
    assert_eq!(
        names(&doc),
        [
            ("privbucket".to_string(), "us-east-1".to_string()),
            ("west".to_string(), "eu-west-1".to_string())
        ]
        .into()
    );
    let listed: BTreeSet<&str> = doc["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(listed, regions.iter().map(String::as_str).collect());
    // One DescribeVpcs per region, and the six reads of every region in flight at once.
    let calls = w.proxy.calls();
    let vpcs = calls.iter().filter(|c| c.action == "DescribeVpcs").count();
    assert_eq!(vpcs, regions.len());
    assert!(
        w.proxy.most_in_flight() >= 6 * regions.len(),
        "at most {} calls in flight for {} regions",
        w.proxy.most_in_flight(),
        regions.len()
    );
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
}
