//! Ownership proven before every change: a state that names another team's resource as the
//! stack's (a mistaken copy, a restored old state, a teammate's hand edit) changes nothing of
//! theirs. Each test makes the stack, makes a resource of the same kind outside privbucket (in
//! the same account: untagged, or tagged for another stack), edits the state to name it, and
//! checks through the SDK that `up`, `down`, `status`, `plan` and `verify` leave it
//! byte-identical, refuse (or report) naming it, and that once the record is put right `down`
//! removes the stack's own resources and nothing else.
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, ResourceType, Tag, TagSpecification};

use crate::common::{STATE_BUCKET, World};

/// Tags of a team that is not privbucket.
fn team_tags(kind: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .tags(Tag::builder().key("Name").value(name).build())
        .tags(Tag::builder().key("team").value("data").build())
        .build()
}

/// Writes the state with each `(step key, id)` naming another resource; returns the original.
fn edit_state(w: &World, edits: &[(&str, &str)]) -> Vec<u8> {
    let original = std::fs::read(w.state_path()).unwrap();
    let mut state = w.state();
    for (key, id) in edits {
        state["resources"][*key]["id"] = (*id).into();
        if state["resources"][*key].get("arn").is_some() {
            state["resources"][*key]["arn"] = (*id).into();
        }
    }
    std::fs::write(w.state_path(), serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    original
}

/// `up` and `down --yes` refuse the state (exit 2) naming each ID and the stack's own, with no
/// write and the state file byte-identical; `status` and `plan` report them (exit 1) with no
/// write; `verify` fails its ownership check.
async fn refused_everywhere(w: &World, ids: &[&str], own: &[&str], extra: &[&str]) {
    let state = std::fs::read(w.state_path()).unwrap();
    for command in [&["up"][..], &["down", "--yes"][..]] {
        let args: Vec<&str> = command.iter().chain(extra).copied().collect();
        w.proxy.clear();
        let r = w.run(&args).await;
        r.expect(2);
        for id in ids.iter().chain(own) {
            assert!(
                r.stderr.contains(id),
                "{args:?}: {id} not named:\n{}",
                r.stderr
            );
        }
        assert!(r.stderr.contains("not the stack's"), "{}", r.stderr);
        assert!(r.stderr.contains("state pull"), "{}", r.stderr);
        assert!(
            w.proxy.writes().is_empty(),
            "{args:?} wrote: {:#?}",
            w.proxy.writes()
        );
        assert_eq!(
            std::fs::read(w.state_path()).unwrap(),
            state,
            "{args:?} changed the state file"
        );
    }
    for command in ["status", "plan", "verify"] {
        let args: Vec<&str> = std::iter::once(command)
            .chain(extra.iter().copied())
            .collect();
        w.proxy.clear();
        let r = w.run(&args).await;
        assert_eq!(r.code, 1, "{args:?}:\n{}\n{}", r.stdout, r.stderr);
        for id in ids {
            assert!(
                r.stdout.contains(id),
                "{args:?}: {id} not named:\n{}",
                r.stdout
            );
        }
        assert!(r.stdout.contains("not the stack's"), "{}", r.stdout);
        if command != "verify" {
            assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
        }
    }
}

async fn foreign_vpc(w: &World) -> (String, String) {
    let ec2 = &w.aws.ec2;
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.60.0.0/16")
        .tag_specifications(team_tags(ResourceType::Vpc, "data-team"))
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.60.1.0/24")
        .send()
        .await
        .unwrap()
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_string();
    (vpc, subnet)
}

/// A VPC and its subnets, route tables and groups as the SDK reads them.
async fn vpc_snapshot(w: &World, vpc: &str) -> String {
    let ec2 = &w.aws.ec2;
    let f = || Filter::builder().name("vpc-id").values(vpc).build();
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}",
        ec2.describe_vpcs()
            .vpc_ids(vpc)
            .send()
            .await
            .unwrap()
            .vpcs(),
        ec2.describe_subnets()
            .filters(f())
            .send()
            .await
            .unwrap()
            .subnets(),
        ec2.describe_route_tables()
            .filters(f())
            .send()
            .await
            .unwrap()
            .route_tables(),
        ec2.describe_security_groups()
            .filters(f())
            .send()
            .await
            .unwrap()
            .security_groups(),
    )
}

async fn delete_vpc(w: &World, vpc: &str, subnet: &str) {
    let ec2 = &w.aws.ec2;
    ec2.delete_subnet().subnet_id(subnet).send().await.unwrap();
    ec2.delete_vpc().vpc_id(vpc).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_naming_another_teams_vpc_and_subnet_changes_nothing_of_theirs() {
    let w = World::new().await;
    w.up().await;
    let (own_vpc, own_subnet) = (w.id("vpc"), w.id("subnet-a"));
    let (vpc, subnet) = foreign_vpc(&w).await;
    let before = vpc_snapshot(&w, &vpc).await;
    let original = edit_state(&w, &[("vpc", &vpc), ("subnet-a", &subnet)]);
    refused_everywhere(&w, &[&vpc, &subnet], &[&own_vpc, &own_subnet], &[]).await;
    assert_eq!(vpc_snapshot(&w, &vpc).await, before, "their VPC changed");
    // Put right: the stack's own go, theirs stays as it was.
    std::fs::write(w.state_path(), original).unwrap();
    w.run(&["down", "--yes"]).await.expect(0);
    assert_eq!(
        vpc_snapshot(&w, &vpc).await,
        before,
        "down changed their VPC"
    );
    delete_vpc(&w, &vpc, &subnet).await;
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_naming_another_workloads_security_group_changes_nothing_of_it() {
    let w = World::new().await;
    w.up().await;
    let own = w.id("security-group");
    let ec2 = &w.aws.ec2;
    // In the stack's own VPC: all outbound allowed (EC2's default), an inbound rule for its
    // database.
    let group = ec2
        .create_security_group()
        .group_name("orders-db-clients")
        .description("the orders service")
        .vpc_id(w.id("vpc"))
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&group)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(5432)
                .to_port(5432)
                .ip_ranges(IpRange::builder().cidr_ip("10.16.0.0/16").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let read = || async {
        format!(
            "{:?}",
            ec2.describe_security_groups()
                .group_ids(&group)
                .send()
                .await
                .unwrap()
                .security_groups()
        )
    };
    let before = read().await;
    let original = edit_state(&w, &[("security-group", &group)]);
    refused_everywhere(&w, &[&group], &[&own], &[]).await;
    assert_eq!(read().await, before, "the workload's group changed");
    std::fs::write(w.state_path(), original).unwrap();
    // Theirs stays in the stack's VPC, so the VPC cannot go: delete it first, as its team would.
    assert_eq!(read().await, before);
    ec2.delete_security_group()
        .group_id(&group)
        .send()
        .await
        .unwrap();
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_naming_another_teams_kms_key_never_schedules_its_deletion() {
    let w = World::new().await;
    w.run(&["up", "--kms-key", "new"]).await.expect(0);
    let own = w.id("kms-key");
    let kms = &w.aws.kms;
    let theirs = kms
        .create_key()
        .description("the data team's key")
        .tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key("team")
                .tag_value("data")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let read = || async {
        let meta = kms.describe_key().key_id(&theirs).send().await.unwrap();
        let tags = kms
            .list_resource_tags()
            .key_id(&theirs)
            .send()
            .await
            .unwrap();
        format!(
            "{:?} {:?}",
            meta.key_metadata().map(|m| m.key_state()),
            tags.tags()
        )
    };
    let before = read().await;
    let original = edit_state(&w, &[("kms-key", &theirs)]);
    refused_everywhere(&w, &[&theirs], &[], &[]).await;
    assert_eq!(read().await, before, "their key changed");
    std::fs::write(w.state_path(), original).unwrap();
    w.run(&["down", "--yes"]).await.expect(0);
    assert_eq!(read().await, before, "down changed their key");
    let own_state = kms.describe_key().key_id(&own).send().await.unwrap();
    assert_eq!(
        own_state
            .key_metadata()
            .unwrap()
            .key_state()
            .map(|s| s.as_str()),
        Some("PendingDeletion"),
        "the stack's own key is not scheduled for deletion"
    );
    w.assert_nothing_left().await;
}

/// Another privbucket stack's route table, association and endpoint, each tagged (or joined)
/// for that stack: the other stack keeps working through it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_naming_another_stacks_route_table_association_and_endpoint_breaks_nothing() {
    let w = World::new().await;
    w.up().await;
    let other_state = w.dir.path().join("other.json");
    let other_state = other_state.to_str().unwrap();
    w.run(&["--state", other_state, "up", "--name", "other"])
        .await
        .expect(0);
    let theirs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(other_state).unwrap()).unwrap();
    let id = |key: &str| theirs["resources"][key]["id"].as_str().unwrap().to_string();
    let (table, association, endpoint) = (id("route-table-a"), id("association-b"), id("endpoint"));
    let other_vpc = id("vpc");
    let before = vpc_snapshot(&w, &other_vpc).await;
    let original = edit_state(
        &w,
        &[
            ("route-table-a", &table),
            ("association-b", &association),
            ("endpoint", &endpoint),
        ],
    );
    refused_everywhere(
        &w,
        &[&table, &association, &endpoint],
        &[&w.id("route-table-a")],
        &[],
    )
    .await;
    assert_eq!(vpc_snapshot(&w, &other_vpc).await, before);
    w.run(&["--state", other_state, "status"]).await.expect(0);
    std::fs::write(w.state_path(), original).unwrap();
    w.run(&["down", "--yes"]).await.expect(0);
    assert_eq!(vpc_snapshot(&w, &other_vpc).await, before);
    w.run(&["--state", other_state, "status"]).await.expect(0);
    w.run(&["--state", other_state, "down", "--yes"])
        .await
        .expect(0);
    w.assert_nothing_left().await;
}

/// A state in S3, written behind the run's back between two runs: it is data someone else
/// wrote, and proven as a file is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_in_s3_written_behind_the_runs_back_is_proven_as_a_file_is() {
    let w = World::new().await;
    w.make_state_bucket().await;
    let key = "privbucket/prod.state.json";
    let url = format!("s3://{STATE_BUCKET}/{key}");
    w.run(&["--state", &url, "up"]).await.expect(0);
    let (vpc, subnet) = foreign_vpc(&w).await;
    let before = vpc_snapshot(&w, &vpc).await;
    let original = w.state_object(key).await.unwrap();
    let mut state: serde_json::Value = serde_json::from_slice(&original).unwrap();
    state["resources"]["vpc"]["id"] = vpc.clone().into();
    let edited = serde_json::to_vec_pretty(&state).unwrap();
    let put = |body: Vec<u8>| {
        w.aws
            .s3
            .put_object()
            .bucket(STATE_BUCKET)
            .key(key)
            .body(body.into())
            .send()
    };
    put(edited.clone()).await.unwrap();
    for command in [&["up"][..], &["down", "--yes"][..]] {
        let args: Vec<&str> = ["--state", url.as_str()]
            .iter()
            .chain(command)
            .copied()
            .collect();
        let r = w.run(&args).await;
        r.expect(2);
        assert!(r.stderr.contains(&vpc), "{}", r.stderr);
        assert_eq!(w.state_object(key).await.unwrap(), edited);
        assert!(
            w.state_object(&format!("{key}.lock")).await.is_none(),
            "the lock is left behind"
        );
    }
    assert_eq!(vpc_snapshot(&w, &vpc).await, before);
    put(original).await.unwrap();
    w.run(&["--state", &url, "down", "--yes"]).await.expect(0);
    assert_eq!(vpc_snapshot(&w, &vpc).await, before);
    delete_vpc(&w, &vpc, &subnet).await;
    let vpcs = w.vpcs().await;
    assert!(vpcs.is_empty(), "{vpcs:?}");
    assert!(w.buckets().await.iter().all(|b| b == STATE_BUCKET));
}

/// A state whose VPC record names a VPC that is gone (an old state restored): discovery runs
/// beside the state, so `down` removes the stack's own VPC, found by its tags, and does not say
/// "nothing is left" while it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_a_resource_gone_gives_way_to_the_stacks_own_found_by_its_tags() {
    let w = World::new().await;
    w.up().await;
    let own = w.id("vpc");
    let (vpc, subnet) = foreign_vpc(&w).await;
    delete_vpc(&w, &vpc, &subnet).await;
    edit_state(&w, &[("vpc", &vpc)]);
    let down = w.run(&["down", "--yes"]).await;
    down.expect(0);
    assert!(
        down.text().contains(&own),
        "the stack's own VPC is not named:\n{}",
        down.text()
    );
    w.assert_nothing_left().await;
}
