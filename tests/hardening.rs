//! The hardening defaults and the policy scopes, checked on the live resources through the
//! SDK: each hardening switch turned off and on again in place, drift in them caught by
//! `status` and `verify` and repaired by `up`; scope `all` with its admins, switched in place.
//!
//! moto stores these documents and rules but does not enforce them (it applies any Deny of a
//! bucket policy to everyone, ignoring conditions); enforcement is tested on ministack in
//! `tests/enforcement.rs`.
use std::collections::BTreeSet;

use crate::common::{ACCOUNT, REGION, World, bucket, find_in, line};
use serde_json::Value;

async fn bucket_policy(w: &World) -> Value {
    w.bucket_policy_of(&bucket()).await
}

fn sids(policy: &Value) -> BTreeSet<String> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Sid"].as_str().unwrap().to_string())
        .collect()
}

/// The group's egress as `proto from-to destination` lines.
async fn egress(w: &World) -> BTreeSet<String> {
    let out = w
        .aws
        .ec2
        .describe_security_groups()
        .group_ids(w.id("security-group"))
        .send()
        .await
        .unwrap();
    let mut rules = BTreeSet::new();
    for p in out.security_groups()[0].ip_permissions_egress() {
        let head = format!(
            "{} {}-{}",
            p.ip_protocol().unwrap_or_default(),
            p.from_port().unwrap_or(-1),
            p.to_port().unwrap_or(-1)
        );
        for r in p.ip_ranges() {
            rules.insert(format!("{head} {}", r.cidr_ip().unwrap()));
        }
        for r in p.prefix_list_ids() {
            rules.insert(format!("{head} {}", r.prefix_list_id().unwrap()));
        }
    }
    rules
}

async fn s3_prefix_list(w: &World) -> String {
    let out = w.aws.ec2.describe_prefix_lists().send().await.unwrap();
    out.prefix_lists()
        .iter()
        .find(|p| p.prefix_list_name() == Some(&format!("com.amazonaws.{REGION}.s3")))
        .and_then(|p| p.prefix_list_id())
        .unwrap()
        .to_string()
}

async fn endpoint_policy(w: &World) -> Value {
    w.endpoint_policy_of(&w.id("endpoint")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hardening_default_turns_off_and_on_in_place_and_its_drift_is_caught() {
    let w = World::new().await;
    let pl = s3_prefix_list(&w).await;
    w.run(&[
        "up",
        "--no-tls-deny",
        "--no-egress-limit",
        "--no-endpoint-policy",
    ])
    .await
    .expect(0);
    // Off: the original template's policy alone, EC2's default egress, AWS's full-access endpoint.
    assert_eq!(
        sids(&bucket_policy(&w).await),
        BTreeSet::from(["DenyWritesNotThroughTheVpcEndpoint".to_string()])
    );
    assert_eq!(
        egress(&w).await,
        BTreeSet::from(["-1 -1--1 0.0.0.0/0".to_string()])
    );
    let open = endpoint_policy(&w).await;
    assert_eq!(open["Statement"][0]["Resource"], "*", "{open}");
    // The switches are the stack's settings: a plain `plan` keeps them.
    w.run(&["plan"]).await.expect(0);
    let group = w.id("security-group");
    let endpoint = w.id("endpoint");

    // On again, in place: same group, same endpoint.
    let plan = w
        .run(&["plan", "--tls-deny", "--egress-limit", "--endpoint-policy"])
        .await;
    plan.expect(1);
    assert!(
        line(&plan.stdout, "update   bucket-policy").contains("DenyInsecureTransport is missing"),
        "{}",
        plan.stdout
    );
    w.run(&["up", "--tls-deny", "--egress-limit", "--endpoint-policy"])
        .await
        .expect(0);
    assert_eq!(w.id("security-group"), group);
    assert_eq!(w.id("endpoint"), endpoint);
    assert_eq!(
        sids(&bucket_policy(&w).await),
        BTreeSet::from([
            "DenyWritesNotThroughTheVpcEndpoint".to_string(),
            "DenyInsecureTransport".to_string()
        ])
    );
    assert_eq!(
        egress(&w).await,
        BTreeSet::from([format!("tcp 443-443 {pl}")])
    );
    let scoped = endpoint_policy(&w).await;
    assert_eq!(
        scoped["Statement"][0]["Resource"],
        serde_json::json!([
            format!("arn:aws:s3:::{}", bucket()),
            format!("arn:aws:s3:::{}/*", bucket())
        ])
    );
    w.run(&["status"]).await.expect(0);
    w.run(&["verify"]).await.expect(0);

    // Drift: the allow-all egress rule put back, the endpoint opened up.
    w.aws
        .ec2
        .authorize_security_group_egress()
        .group_id(&group)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("-1")
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    w.aws
        .ec2
        .modify_vpc_endpoint()
        .vpc_endpoint_id(&endpoint)
        .policy_document(open.to_string())
        .send()
        .await
        .unwrap();
    let st = w.run(&["status"]).await;
    st.expect(1);
    assert!(
        line(&st.stdout, "security-group")
            .contains("egress all traffic to 0.0.0.0/0 should not be there"),
        "{}",
        st.stdout
    );
    assert!(
        line(&st.stdout, "vpc-endpoint").contains("policy statement OnlyThePrivateBucket"),
        "{}",
        st.stdout
    );
    let v = w.run(&["verify"]).await;
    v.expect(1);
    assert!(line(&v.stdout, "FAIL").contains("endpoint"), "{}", v.stdout);
    assert!(
        v.stdout
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains("function")),
        "{}",
        v.stdout
    );
    w.run(&["up"]).await.expect(0);
    assert_eq!(
        egress(&w).await,
        BTreeSet::from([format!("tcp 443-443 {pl}")])
    );
    assert_eq!(endpoint_policy(&w).await, scoped);
    w.run(&["verify"]).await.expect(0);
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}

const ADMIN_POLICY: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_all_exempts_the_operator_and_the_admins_and_switches_in_place() {
    let w = World::new().await;
    // The operator works through a role with a path, as an SSO user does: the policy must
    // exempt the role's ARN (what aws:PrincipalArn holds for its sessions), path included,
    // not the session's ARN.
    let role = w
        .aws
        .iam
        .create_role()
        .role_name("ops")
        .path("/team/")
        .assume_role_policy_document(ADMIN_POLICY)
        .send()
        .await
        .unwrap();
    let operator = role.role().unwrap().arn().to_string();
    assert_eq!(operator, format!("arn:aws:iam::{ACCOUNT}:role/team/ops"));
    let sts = aws_sdk_sts::Client::new(
        &aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .endpoint_url(&w.emulator.url)
            .load()
            .await,
    );
    let session = sts
        .assume_role()
        .role_arn(&operator)
        .role_session_name("me")
        .send()
        .await
        .unwrap();
    let c = session.credentials().unwrap();
    let as_operator = vec![
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            c.access_key_id().to_string(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            c.secret_access_key().to_string(),
        ),
        (
            "AWS_SESSION_TOKEN".to_string(),
            c.session_token().to_string(),
        ),
    ];
    let as_bystander = w.iam_user("bystander", ADMIN_POLICY).await.env();
    let auditor = format!("arn:aws:iam::{ACCOUNT}:role/audit/Auditor");

    // --admin-principal belongs to scope `all`, and must be a principal's ARN.
    let r = w
        .run_as(&["up", "--admin-principal", &auditor], &as_operator)
        .await;
    r.expect(2);
    assert!(r.stderr.contains("--policy-scope all"), "{}", r.stderr);
    let session = format!("arn:aws:sts::{ACCOUNT}:assumed-role/Auditor/me");
    let r = w
        .run_as(
            &["up", "--policy-scope", "all", "--admin-principal", &session],
            &as_operator,
        )
        .await;
    r.expect(2);
    assert!(r.stderr.contains("role's own ARN"), "{}", r.stderr);
    assert!(w.vpcs().await.is_empty(), "bad input changed nothing");

    w.run_as(
        &["up", "--policy-scope", "all", "--admin-principal", &auditor],
        &as_operator,
    )
    .await
    .expect(0);
    let policy = bucket_policy(&w).await;
    let all = find_in(
        &policy,
        "Statement",
        "Sid",
        "DenyAllNotThroughTheVpcEndpointExceptAdmins",
    );
    assert_eq!(all["Effect"], "Deny");
    assert_eq!(all["Action"], "s3:*");
    assert_eq!(
        all["Condition"]["StringNotEquals"]["aws:SourceVpce"],
        w.id("endpoint").as_str()
    );
    let exempt: BTreeSet<String> = all["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(exempt, BTreeSet::from([operator.clone(), auditor.clone()]));
    // The original template's write Deny stays, with no exception: not even an admin writes objects
    // from outside the VPC.
    let writes = find_in(
        &policy,
        "Statement",
        "Sid",
        "DenyWritesNotThroughTheVpcEndpoint",
    );
    assert!(
        writes["Condition"].get("ArnNotEquals").is_none(),
        "{writes}"
    );
    let st = w.run_as(&["status"], &as_operator).await;
    st.expect(0);
    let v = w.run_as(&["verify"], &as_operator).await;
    v.expect(0);
    assert!(
        v.stdout.contains(&format!("admin {auditor}")),
        "{}",
        v.stdout
    );

    // Someone who is not exempt is refused before anything changes.
    w.proxy.clear();
    let r = w.run_as(&["down", "--yes"], &as_bystander).await;
    r.expect(2);
    assert!(r.stderr.contains("exempts only"), "{}", r.stderr);
    assert!(r.stderr.contains("--admin-principal"), "{}", r.stderr);
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
    assert!(w.stack_vpc("privbucket").await.is_some());

    // Back to `writes`, in place: the statement goes, the bucket and endpoint stay.
    let endpoint = w.id("endpoint");
    let plan = w
        .run_as(&["plan", "--policy-scope", "writes"], &as_operator)
        .await;
    plan.expect(1);
    assert!(
        line(&plan.stdout, "update   bucket-policy")
            .contains("statement DenyAllNotThroughTheVpcEndpointExceptAdmins should not be there"),
        "{}",
        plan.stdout
    );
    w.run_as(&["up", "--policy-scope", "writes"], &as_operator)
        .await
        .expect(0);
    assert_eq!(w.id("endpoint"), endpoint);
    assert_eq!(
        sids(&bucket_policy(&w).await),
        BTreeSet::from([
            "DenyWritesNotThroughTheVpcEndpoint".to_string(),
            "DenyInsecureTransport".to_string()
        ])
    );
    // Now anyone with the permissions may run it again.
    w.run_as(&["status"], &as_bystander).await.expect(0);
    w.run_as(&["down", "--yes"], &as_bystander).await.expect(0);
    assert_eq!(
        w.roles().await,
        vec!["ops".to_string()],
        "only the test's own role is left"
    );
    assert!(w.buckets().await.is_empty() && w.vpcs().await.is_empty());
    assert!(w.functions().await.is_empty() && !w.state_path().exists());
}

/// The bucket's versioning as S3 reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioning_turns_on_is_repaired_when_suspended_and_its_versions_are_data_to_down() {
    let w = World::new().await;
    w.run(&["up", "--versioning"]).await.expect(0);
    assert_eq!(w.versioning_of(&bucket()).await.as_deref(), Some("Enabled"));
    assert_eq!(w.state()["settings"]["versioning"], true);
    w.run(&["status"]).await.expect(0);
    let verify = w.run(&["verify"]).await;
    verify.expect(0);
    assert!(
        verify.stdout.contains("versioning Enabled"),
        "{}",
        verify.stdout
    );

    // Suspended behind privbucket's back: status names it, up turns it on again.
    w.suspend_versioning(&bucket()).await;
    let status = w.run(&["status"]).await;
    status.expect(1);
    assert!(
        line(&status.stdout, "s3-bucket").contains("versioning is Suspended, expected Enabled"),
        "{}",
        status.stdout
    );
    w.run(&["up"]).await.expect(0);
    assert_eq!(w.versioning_of(&bucket()).await.as_deref(), Some("Enabled"));

    // An object written twice is two versions: data `down` keeps without --delete-objects.
    for body in ["first", "second"] {
        w.put_with_policy_lifted(&bucket(), "ledger.json", body.as_bytes())
            .await;
    }
    // Suspended on purpose: S3 cannot turn versioning off; the versions stay.
    w.run(&["up", "--no-versioning"]).await.expect(0);
    assert_eq!(
        w.versioning_of(&bucket()).await.as_deref(),
        Some("Suspended")
    );
    w.run(&["status"]).await.expect(0);
    let down = w.run(&["down", "--yes"]).await;
    down.expect(1);
    assert!(down.stdout.contains("holds 2 object"), "{}", down.stdout);
    w.run(&["down", "--yes", "--delete-objects"])
        .await
        .expect(0);
    w.assert_nothing_left().await;
}
