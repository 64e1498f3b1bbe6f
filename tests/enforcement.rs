//! Bucket-policy enforcement, for real: on ministack with `AUTH=true`, which evaluates bucket
//! policies (conditions and `aws:PrincipalArn` included) where moto applies any Deny to
//! everyone. The principals are real IAM users in the emulator, each with
//! an identity policy that allows S3, so any denial below comes from the bucket policy.
//! (ministack's root user bypasses every policy, unlike AWS's; it only sets the test up.)
//!
//! TLS: the binary and the test's clients go through the proxy, which stands in for TLS (see
//! `World::ministack`); a client sent straight to ministack makes requests without TLS.
//! ministack has no VPC endpoint to go through, so every request here is one from outside the
//! VPC, as the operator's and an intruder's are.
use crate::common::{Clients, MINISTACK_ACCOUNT, World, bucket_in, find_in, line};
use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;

fn allow_all(action: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"{action}","Resource":"*"}}]}}"#
    )
}

/// The error code of a failed S3 call, or "ok".
fn outcome<T, E: aws_sdk_s3::error::ProvideErrorMetadata>(r: Result<T, E>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.code().unwrap_or("no code").to_string(),
    }
}

/// What `who` can do to the bucket: list it, read its policy, write an object.
async fn can(who: &Clients) -> [String; 3] {
    let s3 = &who.s3;
    [
        outcome(
            s3.list_objects_v2()
                .bucket(bucket_in(MINISTACK_ACCOUNT))
                .send()
                .await,
        ),
        outcome(
            s3.get_bucket_policy()
                .bucket(bucket_in(MINISTACK_ACCOUNT))
                .send()
                .await,
        ),
        outcome(
            s3.put_object()
                .bucket(bucket_in(MINISTACK_ACCOUNT))
                .key("from-outside")
                .body(ByteStream::from_static(b"x"))
                .send()
                .await,
        ),
    ]
}

#[track_caller]
fn expect(got: [String; 3], list: &str, read_policy: &str, put: &str) {
    assert_eq!(got, [list, read_policy, put].map(str::to_string));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_all_denies_outsiders_keeps_the_admins_in_and_switches_in_place() {
    let w = World::ministack().await;
    let admin = allow_all("*");
    // The operator is an IAM user here: for a role session ministack gives aws:PrincipalArn
    // the session's ARN, where AWS gives the role's (tests/hardening.rs checks that privbucket
    // exempts the role's ARN, path included).
    let op = w.iam_user("operator", &admin).await;
    let intruder = w.iam_user("intruder", &allow_all("s3:*")).await;
    let auditor_user = w.iam_user("auditor", &allow_all("s3:*")).await;
    let (operator_arn, auditor) = (op.arn.clone(), auditor_user.arn.clone());
    let as_operator = op.env();
    let operator = op.clients(&w.proxy.url).await;
    let operator_without_tls = op.clients(&w.emulator.url).await;
    let intruder = intruder.clients(&w.proxy.url).await;
    let auditor_c = auditor_user.clients(&w.proxy.url).await;

    w.run_as(
        &["up", "--policy-scope", "all", "--admin-principal", &auditor],
        &as_operator,
    )
    .await
    .expect(0);
    let policy: Value = w.bucket_policy_of(&bucket_in(MINISTACK_ACCOUNT)).await;
    let all = find_in(
        &policy,
        "Statement",
        "Sid",
        "DenyAllNotThroughTheVpcEndpointExceptAdmins",
    );
    let mut exempt: Vec<&str> = all["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    exempt.sort();
    let mut want = vec![auditor.as_str(), operator_arn.as_str()];
    want.sort();
    assert_eq!(exempt, want);

    // An intruder with s3:* in its own policy: denied everything by the bucket policy.
    expect(
        can(&intruder).await,
        "AccessDenied",
        "AccessDenied",
        "AccessDenied",
    );
    // The admins read and manage the bucket from outside the VPC, but do not write objects.
    expect(can(&operator).await, "ok", "ok", "AccessDenied");
    expect(can(&auditor_c).await, "ok", "ok", "AccessDenied");
    // Without TLS, not even an admin gets in.
    expect(
        can(&operator_without_tls).await,
        "AccessDenied",
        "AccessDenied",
        "AccessDenied",
    );

    // The operator still sees the stack. (ministack's EC2 lacks the prefix-list route, so
    // only the bucket's lines are asserted.)
    let st = w.run_as(&["status"], &as_operator).await;
    assert!(
        line(&st.stdout, "bucket-policy").ends_with(" ok"),
        "{}",
        st.stdout
    );
    // The live proof, with handlers that really run: the control function and the operator's
    // own PutObject are denied. ministack has no endpoint for the uploader to go through, so
    // its write is denied as well, and `live` says so rather than passing.
    let v = w
        .run_as(&["verify", "--invoke", "--output", "json"], &as_operator)
        .await;
    v.expect(1);
    let doc = v.json();
    let live = find_in(&doc, "checks", "name", "live");
    assert_eq!(live["verdict"], "fail", "{live:#}");
    let evidence: Vec<&str> = live["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        evidence
            .iter()
            .any(|e| e.starts_with("pass: privbucket-control")
                && e.contains("was denied")
                && e.contains("AccessDenied")),
        "{evidence:#?}"
    );
    assert!(
        evidence
            .iter()
            .any(|e| e.starts_with("pass: your own PutObject") && e.contains("denied")),
        "{evidence:#?}"
    );
    assert!(
        evidence
            .iter()
            .any(|e| e.starts_with("FAIL: privbucket-uploader") && e.contains("AccessDenied")),
        "{evidence:#?}"
    );

    // Switched to `writes` in place: the intruder may list again (its own policy allows it),
    // and still cannot write.
    w.run_as(&["up", "--policy-scope", "writes"], &as_operator)
        .await
        .expect(0);
    expect(can(&intruder).await, "ok", "ok", "AccessDenied");
    let st = w.run_as(&["status"], &as_operator).await;
    assert!(
        line(&st.stdout, "bucket-policy").ends_with(" ok"),
        "{}",
        st.stdout
    );
    // And back.
    w.run_as(&["up", "--policy-scope", "all"], &as_operator)
        .await
        .expect(0);
    expect(
        can(&intruder).await,
        "AccessDenied",
        "AccessDenied",
        "AccessDenied",
    );

    // The exempt operator takes the stack down from outside the VPC.
    w.run_as(&["down", "--yes"], &as_operator).await.expect(0);
    assert!(w.buckets().await.is_empty(), "{:?}", w.buckets().await);
    assert!(w.functions().await.is_empty(), "{:?}", w.functions().await);
    assert!(w.roles().await.is_empty(), "{:?}", w.roles().await);
    assert!(w.stack_vpc("privbucket").await.is_none());
    assert!(!w.state_path().exists());
}
