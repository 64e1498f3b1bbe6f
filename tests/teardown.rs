//! `down`: data safety (a bucket with objects is kept), its order, and Lambda's lingering
//! ENIs.
use std::time::Duration;

use crate::common::proxy::Fault;
use crate::common::{World, bucket};
use aws_sdk_ec2::types::{Filter, InstanceType};

/// A stack whose bucket holds one object; returns the bucket. The emulator applies a Deny
/// policy to everyone (it ignores conditions), so the object is written with the policy
/// lifted; `up` then puts the policy back.
async fn stack_with_an_object(w: &World, key: &str, body: &'static [u8]) -> String {
    w.up().await;
    let b = bucket();
    w.aws
        .s3
        .delete_bucket_policy()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    w.aws
        .s3
        .put_object()
        .bucket(&b)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(body))
        .send()
        .await
        .unwrap();
    w.up().await;
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_keeps_a_bucket_that_holds_objects_until_asked_to_delete_them() {
    let w = World::new().await;
    let b = stack_with_an_object(
        &w,
        "1700000000000-J. K. Rowling-Harry Potter",
        b"{\"author\":\"J. K. Rowling\"}",
    )
    .await;
    w.run(&["status"]).await.expect(0);

    let down = w.run(&["down", "--yes"]).await;
    down.expect(1);
    assert!(down.stdout.contains("holds 1 object"), "{}", down.stdout);
    assert!(down.stdout.contains("--delete-objects"), "{}", down.stdout);
    // The bucket, its object and its policy are still there; everything else is gone.
    assert_eq!(w.buckets().await, vec![b.clone()]);
    let objects = w.aws.s3.list_objects_v2().bucket(&b).send().await.unwrap();
    assert_eq!(objects.contents().len(), 1);
    assert!(w.aws.s3.get_bucket_policy().bucket(&b).send().await.is_ok());
    assert!(w.vpcs().await.is_empty());
    assert!(w.functions().await.is_empty());
    assert!(w.roles().await.is_empty());
    let state = w.state();
    let left: Vec<&String> = state["resources"].as_object().unwrap().keys().collect();
    assert_eq!(left, vec!["bucket", "bucket-policy"], "{state:#}");

    // Asked for by flag: every version and delete marker goes, then the bucket.
    w.run(&["down", "--yes", "--delete-objects"])
        .await
        .expect(0);
    w.assert_nothing_left().await;
}

/// A network interface with Lambda's description in one of the stack's subnets and its
/// security group, attached to an instance (so `in-use`): Lambda's Hyperplane ENI as it
/// lingers after the function left the VPC. Returns (ENI, instance, attachment).
async fn lingering_eni(w: &World, subnet_key: &str) -> (String, String, String) {
    let subnet = w.id(subnet_key);
    let sg = w.id("security-group");
    let ec2 = &w.aws.ec2;
    let eni = ec2
        .create_network_interface()
        .subnet_id(&subnet)
        .groups(&sg)
        .description(format!(
            "AWS Lambda VPC ENI-privbucket-uploader-{subnet_key}"
        ))
        .send()
        .await
        .unwrap();
    let eni_id = eni
        .network_interface()
        .unwrap()
        .network_interface_id()
        .unwrap()
        .to_string();
    let images = ec2.describe_images().send().await.unwrap();
    let ami = images.images()[0].image_id().unwrap().to_string();
    let run = ec2
        .run_instances()
        .image_id(ami)
        .instance_type(InstanceType::T3Micro)
        .subnet_id(&subnet)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    let instance = run.instances()[0].instance_id().unwrap().to_string();
    let attach = ec2
        .attach_network_interface()
        .network_interface_id(&eni_id)
        .instance_id(&instance)
        .device_index(1)
        .send()
        .await
        .unwrap();
    let attachment = attach.attachment_id().unwrap().to_string();
    (eni_id, instance, attachment)
}

/// Lambda lets go: the ENI is detached (and the stand-in instance goes).
async fn release(w: &World, instance: &str, attachment: &str) {
    let ec2 = &w.aws.ec2;
    ec2.detach_network_interface()
        .attachment_id(attachment)
        .force(true)
        .send()
        .await
        .unwrap();
    ec2.terminate_instances()
        .instance_ids(instance)
        .send()
        .await
        .unwrap();
}

/// A network interface as Lambda leaves it behind: the emulator makes none for functions, so
/// the test creates one with Lambda's description in the stack's subnet and security group,
/// attached to an instance (in use), and detaches it a few seconds later — standing in for
/// Lambda releasing its Hyperplane ENI some time after the function left the VPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_waits_for_a_lingering_lambda_eni_then_deletes_it() {
    let w = World::new().await;
    w.up().await;
    let (eni_id, instance, attachment) = lingering_eni(&w, "subnet-a").await;
    let ec2 = w.aws.ec2.clone();
    let status = ec2
        .describe_network_interfaces()
        .network_interface_ids(&eni_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status.network_interfaces()[0].status().map(|s| s.as_str()),
        Some("in-use")
    );

    // Lambda lets go of the ENI a few seconds after `down` started.
    let releaser = async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        release(&w, &instance, &attachment).await;
    };
    let (down, ()) = tokio::join!(w.run(&["down", "--yes", "--eni-timeout", "2m"]), releaser);
    down.expect(0);
    assert!(
        down.stdout
            .contains("waiting for Lambda to release 1 network interface(s)")
            && down.stdout.contains(&eni_id),
        "down did not say it was waiting for {eni_id}:\n{}",
        down.stdout
    );
    let deleted = down
        .stdout
        .lines()
        .any(|l| l.starts_with("deleted") && l.contains("lambda-enis") && l.contains(&eni_id));
    assert!(deleted, "{}", down.stdout);
    let left = ec2
        .describe_network_interfaces()
        .filters(
            Filter::builder()
                .name("network-interface-id")
                .values(&eni_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        left.network_interfaces().is_empty(),
        "the ENI is still there"
    );
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_gives_up_on_an_eni_that_is_never_released_and_resumes_later() {
    let w = World::new().await;
    w.up().await;
    let (eni_id, instance, attachment) = lingering_eni(&w, "subnet-b").await;
    // Still held when the timeout runs out: `down` fails (exit 3), naming the ENI, and keeps
    // what the ENI blocks (subnets, security group, the uploader's role) in the state file.
    let down = w.run(&["down", "--yes", "--eni-timeout", "3s"]).await;
    down.expect(3);
    assert!(down.stderr.contains(&eni_id), "{}", down.stderr);
    assert!(down.stderr.contains("--eni-timeout"), "{}", down.stderr);
    let state = w.state();
    for key in [
        "subnet-a",
        "subnet-b",
        "security-group",
        "uploader-role",
        "vpc",
    ] {
        assert!(
            state["resources"].get(key).is_some(),
            "{key} left the state: {state:#}"
        );
    }
    assert!(state["resources"].get("uploader-function").is_none());
    assert!(w.functions().await.is_empty());

    // Released later: the next `down` picks up where it stopped.
    release(&w, &instance, &attachment).await;
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}

/// `down` deletes the endpoint first: the bucket policy denies every write that does not come
/// through it, so the object count the policy's delete makes after it is final. The policy
/// also waits for the control function, whose role may write once the policy is gone. And the
/// functions' deletes start with their first change: their configuration was read in the first
/// round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_deletes_the_endpoint_first_and_the_bucket_policy_once_nothing_can_write() {
    let w = World::new().await;
    w.up().await;
    w.proxy.clear();
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
    let calls = w.proxy.calls();
    let at = |api: &str, what: &str| {
        calls
            .iter()
            .position(|c| c.api() == api && c.action.contains(what))
            .unwrap_or_else(|| panic!("no {api} {what} in {calls:#?}"))
    };
    let endpoint = at("DeleteVpcEndpoints", "");
    let policy = at("DeleteBucketPolicy", "");
    // Not after the functions, as the graph reversed would have it.
    assert!(endpoint < at("DeleteFunction", "uploader"), "{calls:#?}");
    assert!(endpoint < policy && at("DeleteFunction", "control") < policy);
    // The endpoint was gone (read as deleted) before the count that let the policy go.
    let gone = calls
        .iter()
        .rposition(|c| c.api() == "DescribeVpcEndpoints")
        .unwrap();
    let count = calls[..policy]
        .iter()
        .rposition(|c| c.api() == "ListObjectVersions")
        .unwrap();
    assert!(gone < count, "{calls:#?}");
    // Each function is read in the first round, not again before its first change (the
    // uploader's later reads wait for its update out of the VPC).
    let reads = |f: &str| {
        calls
            .iter()
            .enumerate()
            .filter(|(_, c)| c.api() == "GetFunction" && c.action.contains(f))
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    assert_eq!(reads("control").len(), 1, "{calls:#?}");
    let update = at("UpdateFunctionConfiguration", "uploader");
    assert!(
        reads("uploader")[1..].iter().all(|&i| i > update),
        "{calls:#?}"
    );
}

/// A policy attached to the uploader role while `down` runs (by a colleague, or an account's
/// automation). `down` read the role's policy lists in its first round, so `DeleteRole`
/// answers `DeleteConflict` "Cannot delete entity, must detach all policies first." (moto
/// answers as IAM does, IAM API reference); `down` reads the lists again and removes it too.
/// The test holds the ENI check for 3 s so that the attach lands between the first round and
/// the role's delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_removes_a_policy_attached_to_a_role_while_it_ran() {
    let w = World::new().await;
    w.up().await;
    let role = w.id("uploader-role");
    w.proxy.clear();
    w.proxy.set_faults(|_, call| {
        if call.api() == "DescribeNetworkInterfaces" {
            Fault::Delay(Duration::from_secs(3))
        } else {
            Fault::None
        }
    });
    let attach = {
        let (proxy, iam, role) = (w.proxy.clone(), w.aws.iam.clone(), role.clone());
        tokio::spawn(async move {
            while !proxy
                .calls()
                .iter()
                .any(|c| c.api() == "DeleteFunction" && c.action.contains("uploader"))
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            iam.attach_role_policy()
                .role_name(&role)
                .policy_arn("arn:aws:iam::aws:policy/ReadOnlyAccess")
                .send()
                .await
                .unwrap();
        })
    };
    let down = w.run(&["down", "--yes"]).await;
    attach.await.unwrap();
    down.expect(0);
    w.assert_nothing_left().await;
    let calls = w.proxy.calls();
    let deletes: Vec<u16> = calls
        .iter()
        .filter(|c| c.api() == "DeleteRole" && c.param("RoleName") == Some(role.as_str()))
        .map(|c| c.status)
        .collect();
    assert_eq!(deletes, vec![409, 200], "{calls:#?}");
    let detached: Vec<&str> = calls
        .iter()
        .filter(|c| c.api() == "DetachRolePolicy" && c.param("RoleName") == Some(role.as_str()))
        .filter_map(|c| c.param("PolicyArn"))
        .collect();
    assert!(
        detached.contains(&"arn:aws:iam::aws:policy/ReadOnlyAccess"),
        "{detached:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_without_yes_and_without_a_terminal_calls_nothing() {
    let w = World::new().await;
    w.up().await;
    let before = std::fs::read(w.state_path()).unwrap();
    w.proxy.clear();
    let r = w.refused(&["down"], "pass --yes").await;
    assert!(r.stderr.contains("no terminal"), "{}", r.stderr);
    assert!(w.proxy.calls().is_empty(), "{:#?}", w.proxy.calls());
    assert_eq!(std::fs::read(w.state_path()).unwrap(), before);
    assert!(w.stack_vpc("privbucket").await.is_some());
}

/// Runs privbucket on a pseudo-terminal (Python's `pty`, as a user's shell would give it one)
/// and types `answer` once it asks.
const ON_A_TERMINAL: &str = r#"
import os, pty, signal, subprocess, sys
answer, argv = sys.argv[1], sys.argv[2:]
master, slave = pty.openpty()
p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
os.close(slave)
out, answered = b"", False
while True:
    try:
        data = os.read(master, 4096)
    except OSError:
        break
    if not data:
        break
    out += data
    if not answered and b"to delete it:" in out:
        if answer == "SIGINT":
            p.send_signal(signal.SIGINT)
        else:
            os.write(master, answer.encode() + b"\n")
        answered = True
sys.stdout.buffer.write(out)
try:
    sys.exit(p.wait(timeout=30))
except subprocess.TimeoutExpired:
    p.kill()
    sys.exit(99)
"#;

async fn down_on_a_terminal(w: &World, answer: &str) -> (i32, String) {
    let bin = env!("CARGO_BIN_EXE_privbucket");
    let out = w
        .command_of("python3", &["-c", ON_A_TERMINAL, answer, bin, "down"], &[])
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_on_a_terminal_shows_what_it_deletes_and_a_wrong_answer_aborts() {
    let w = World::new().await;
    let b = stack_with_an_object(&w, "report.csv", b"a,b\n").await;
    w.proxy.clear();
    let (code, shown) = down_on_a_terminal(&w, "prod").await;
    assert_eq!(code, 2, "{shown}");
    let vpc = w.id("vpc");
    assert!(shown.contains(&format!("vpc {vpc}")), "{shown}");
    assert!(
        shown.contains(&format!("vpc-endpoint {}", w.id("endpoint"))),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("s3-bucket {b} (holds 1 object version:")),
        "{shown}"
    );
    assert!(
        shown.contains("Type the stack name (privbucket)"),
        "{shown}"
    );
    assert!(shown.contains("down cancelled"), "{shown}");
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
    assert!(w.stack_vpc("privbucket").await.is_some());

    // The right name deletes (the bucket, which holds an object, stays: no --delete-objects).
    let (code, shown) = down_on_a_terminal(&w, "privbucket").await;
    assert_eq!(code, 1, "{shown}");
    assert!(w.vpcs().await.is_empty());
    assert_eq!(w.buckets().await, vec![b]);
}

/// Ctrl-C at the question ends `down` at once (it used to wait for Enter), with nothing
/// changed and the state's lock released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_at_the_question_ends_down_at_once_with_nothing_changed() {
    let w = World::new().await;
    w.up().await;
    let before = std::fs::read(w.state_path()).unwrap();
    w.proxy.clear();
    let (code, shown) = down_on_a_terminal(&w, "SIGINT").await;
    assert_eq!(code, 130, "{shown}");
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
    assert_eq!(std::fs::read(w.state_path()).unwrap(), before);
    // The lock is free: the next command that writes runs at once.
    w.up().await;
    assert!(w.stack_vpc("privbucket").await.is_some());
}
