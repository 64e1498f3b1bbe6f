//! The bucket's KMS key (`up --kms-key`), checked through the SDK: a key privbucket makes
//! (rotation, alias, tags, policy), the bucket's SSE-KMS with S3 Bucket Keys and the policy
//! that pins writes to the key, drift repaired in place, a key that outlives its data at
//! `down`, a borrowed key used and never changed, and a bad one refused before any change.
//!
//! moto's KMS keeps keys, aliases, tags, rotation and deletion schedules, and S3 applies the
//! bucket's default SSE-KMS to new objects; it evaluates neither key policies (only a Deny on
//! `DescribeKey`) nor `kms:ViaService`, so what the key's policy allows is checked by
//! `verify`'s evaluator, and here statement by statement.
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use serde_json::Value;

use crate::common::aws_model::Behaviours;
use crate::common::proxy::Fault;
use crate::common::{ACCOUNT, REGION, World, bucket, clients, line};

const ALIAS: &str = "alias/privbucket-bucket";

fn uploader_role() -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/privbucket-{REGION}-uploader")
}

/// The key behind the stack's alias: its ARN and state.
async fn stack_key(w: &World) -> (String, String) {
    let out = w.aws.kms.describe_key().key_id(ALIAS).send().await.unwrap();
    let meta = out.key_metadata().unwrap();
    (
        meta.arn().unwrap().to_string(),
        meta.key_state().unwrap().as_str().to_string(),
    )
}

async fn rotation(w: &World, key: &str) -> bool {
    w.aws
        .kms
        .get_key_rotation_status()
        .key_id(key)
        .send()
        .await
        .unwrap()
        .key_rotation_enabled()
}

/// The bucket's default encryption: algorithm, key, Bucket Keys.
async fn encryption(w: &World) -> (String, Option<String>, Option<bool>) {
    let out = w
        .aws
        .s3
        .get_bucket_encryption()
        .bucket(bucket())
        .send()
        .await
        .unwrap();
    let rule = out.server_side_encryption_configuration().unwrap().rules()[0].clone();
    let by_default = rule.apply_server_side_encryption_by_default().unwrap();
    (
        by_default.sse_algorithm().as_str().to_string(),
        by_default.kms_master_key_id().map(str::to_string),
        rule.bucket_key_enabled(),
    )
}

fn statement(doc: &Value, sid: &str) -> Value {
    doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid} in {doc:#}"))
        .clone()
}

/// An object written the way the uploader writes it (no encryption asked for).
async fn write_object(w: &World, key: &str) {
    w.put_with_policy_lifted(&bucket(), key, b"ledger").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_encrypts_the_bucket_only_through_s3_and_verify_says_so() {
    let w = World::new().await;
    let admin = format!("arn:aws:iam::{ACCOUNT}:role/key-admin");
    w.run(&[
        "up",
        "--kms-key",
        "new",
        "--versioning",
        "--admin-principal",
        &admin,
    ])
    .await
    .expect(0);
    let (arn, state) = stack_key(&w).await;
    assert_eq!(state, "Enabled");
    assert_eq!(w.state()["resources"]["kms-key"]["arn"], arn.as_str());
    assert_eq!(w.state()["settings"]["kms_key"], "new");
    assert!(rotation(&w, &arn).await, "rotation is off");
    let tags = w
        .aws
        .kms
        .list_resource_tags()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    let tags: Vec<(&str, &str)> = tags
        .tags()
        .iter()
        .map(|t| (t.tag_key(), t.tag_value()))
        .collect();
    assert!(
        tags.contains(&("privbucket:stack", "privbucket")),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("privbucket:resource", "kms-key")),
        "{tags:?}"
    );

    // The key's policy: the account root, no one named to use it but the uploader's role,
    // and that only through S3 in this region for this bucket.
    let doc: Value = serde_json::from_str(
        w.aws
            .kms
            .get_key_policy()
            .key_id(&arn)
            .policy_name("default")
            .send()
            .await
            .unwrap()
            .policy()
            .unwrap(),
    )
    .unwrap();
    let root = statement(&doc, "EnableIamPoliciesOfTheAccount");
    assert_eq!(
        root["Principal"]["AWS"],
        format!("arn:aws:iam::{ACCOUNT}:root")
    );
    // The administrators manage the key and may not use it. (moto's caller, sts::user/moto,
    // is no ARN a policy can name: the operator is left to the root statement.)
    let admins = statement(&doc, "KeyAdministrators");
    assert_eq!(admins["Principal"]["AWS"], serde_json::json!([admin]));
    let actions = admins["Action"].to_string();
    assert!(actions.contains("kms:ScheduleKeyDeletion"), "{actions}");
    assert!(!actions.contains("kms:GenerateDataKey") && !actions.contains("kms:Encrypt"));
    let uploader = statement(&doc, "UploaderEncryptsThroughS3ForTheBucketOnly");
    assert_eq!(uploader["Action"], "kms:GenerateDataKey");
    let cond = &uploader["Condition"];
    assert_eq!(cond["ArnEquals"]["aws:PrincipalArn"], uploader_role());
    assert_eq!(
        cond["StringEquals"]["kms:ViaService"],
        format!("s3.{REGION}.amazonaws.com")
    );
    assert_eq!(
        cond["StringEquals"]["kms:EncryptionContext:aws:s3:arn"],
        format!("arn:aws:s3:::{}", bucket())
    );
    assert_eq!(doc["Statement"].as_array().unwrap().len(), 3, "{doc:#}");

    // The bucket: SSE-KMS with the key, Bucket Keys on, versioning on; its policy pins
    // writes to the key; the uploader's role may use the key through S3 only.
    assert_eq!(
        encryption(&w).await,
        ("aws:kms".to_string(), Some(arn.clone()), Some(true))
    );
    assert_eq!(w.versioning_of(&bucket()).await.as_deref(), Some("Enabled"));
    let policy = w.bucket_policy_of(&bucket()).await;
    let other = statement(&policy, "DenyWritesAskingForAnotherKmsKey");
    assert_eq!(
        other["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption-aws-kms-key-id"],
        arn.as_str()
    );
    statement(&policy, "DenyWritesAskingForAnotherEncryption");
    statement(&policy, "DenyWritesAskingForTheAwsManagedKey");
    let inline = w
        .aws
        .iam
        .get_role_policy()
        .role_name(format!("privbucket-{REGION}-uploader"))
        .policy_name("privbucket-bucket-write")
        .send()
        .await
        .unwrap();
    let inline: Value =
        serde_json::from_str(&urlencoding_decode(inline.policy_document())).unwrap();
    let grant = statement(&inline, "EncryptWithTheBucketKey");
    assert_eq!(grant["Action"], "kms:GenerateDataKey");
    assert_eq!(grant["Resource"], arn.as_str());

    w.run(&["status"]).await.expect(0);
    let verify = w.run(&["verify", "--output", "json"]).await;
    verify.expect(0);
    let check = crate::common::find_in(&verify.json(), "checks", "name", "kms-key");
    assert_eq!(check["verdict"], "pass", "{check:#}");
    let evidence = check["evidence"].to_string();
    assert!(evidence.contains("not outside S3"), "{evidence}");
    let policy_check = crate::common::find_in(&verify.json(), "checks", "name", "bucket-policy");
    assert!(
        policy_check["evidence"]
            .to_string()
            .contains("asking for another KMS key: denied"),
        "{policy_check:#}"
    );

    // The auditor's report keeps the key's check and the key's policy beside the others.
    let report = w.dir.path().join("evidence.md");
    w.run(&["verify", "--report", report.to_str().unwrap()])
        .await
        .expect(0);
    let report = std::fs::read_to_string(report).unwrap();
    assert!(
        report.contains(&format!("Key policy of {arn}"))
            && report.contains("UploaderEncryptsThroughS3ForTheBucketOnly")
            && report.contains("kms-key"),
        "{report}"
    );
    let diagram = w.run(&["diagram"]).await;
    diagram.expect(0);
    let key_id = arn.rsplit('/').next().unwrap();
    assert!(
        diagram.stdout.contains(key_id) && diagram.stdout.contains("encrypts (SSE-KMS)"),
        "{}",
        diagram.stdout
    );

    // An object written as the uploader writes it is encrypted with the key.
    write_object(&w, "ledger.json").await;
    let head = w
        .aws
        .s3
        .head_object()
        .bucket(bucket())
        .key("ledger.json")
        .send()
        .await
        .unwrap();
    assert_eq!(head.ssekms_key_id(), Some(arn.as_str()));
    w.run(&["down", "--yes", "--delete-objects"])
        .await
        .expect(0);
    w.assert_nothing_left().await;
}

/// IAM answers policy documents URL-encoded (RFC 3986).
fn urlencoding_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_encryption_bucket_keys_and_versioning_changed_behind_its_back_are_repaired() {
    let w = World::new().await;
    w.run(&["up", "--kms-key", "new", "--versioning"])
        .await
        .expect(0);
    let (arn, _) = stack_key(&w).await;
    w.aws
        .kms
        .disable_key_rotation()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    set_encryption(&w, None, false).await;
    w.suspend_versioning(&bucket()).await;
    let status = w.run(&["status"]).await;
    status.expect(1);
    let key_line = line(&status.stdout, "kms-key");
    assert!(
        key_line.contains("automatic key rotation is off"),
        "{}",
        status.stdout
    );
    let bucket_line = line(&status.stdout, "s3-bucket");
    assert!(
        bucket_line.contains(&format!(
            "default encryption is SSE-S3 (AES256), expected SSE-KMS with {arn}"
        )),
        "{}",
        status.stdout
    );
    assert!(
        bucket_line.contains("versioning is Suspended, expected Enabled"),
        "{}",
        status.stdout
    );
    let up = w.run(&["up"]).await;
    up.expect(0);
    assert!(
        up.stderr
            .contains("keep the encryption (and key) they were written with")
            || up
                .stdout
                .contains("keep the encryption (and key) they were written with"),
        "{}{}",
        up.stdout,
        up.stderr
    );
    assert!(rotation(&w, &arn).await);
    assert_eq!(
        encryption(&w).await,
        ("aws:kms".to_string(), Some(arn.clone()), Some(true))
    );
    assert_eq!(w.versioning_of(&bucket()).await.as_deref(), Some("Enabled"));
    w.run(&["status"]).await.expect(0);

    // Bucket Keys off, the key kept: named, and turned on again.
    set_encryption(&w, Some(&arn), false).await;
    let status = w.run(&["status"]).await;
    status.expect(1);
    assert!(
        line(&status.stdout, "s3-bucket").contains("S3 Bucket Keys are off"),
        "{}",
        status.stdout
    );
    w.run(&["up"]).await.expect(0);
    assert_eq!(encryption(&w).await.2, Some(true));
    w.run(&["status"]).await.expect(0);
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}

/// The bucket's default encryption set behind privbucket's back: SSE-S3 (`key` none), or
/// SSE-KMS with `key`, with or without Bucket Keys.
async fn set_encryption(w: &World, key: Option<&str>, bucket_keys: bool) {
    use aws_sdk_s3::types::{
        ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
        ServerSideEncryptionRule,
    };
    let by_default = match key {
        Some(k) => ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .kms_master_key_id(k),
        None => {
            ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256)
        }
    };
    w.aws
        .s3
        .put_bucket_encryption()
        .bucket(bucket())
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(by_default.build().unwrap())
                        .bucket_key_enabled(bucket_keys)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_outlives_its_data_and_a_key_pending_deletion_is_restored_not_replaced() {
    let w = World::new().await;
    w.run(&["up", "--kms-key", "new"]).await.expect(0);
    let (arn, _) = stack_key(&w).await;

    // An empty bucket: down schedules the key's deletion, with the window asked for.
    let down = w
        .run(&["down", "--yes", "--kms-deletion-window", "7"])
        .await;
    down.expect(0);
    let meta = w.aws.kms.describe_key().key_id(&arn).send().await.unwrap();
    let meta = meta.key_metadata().unwrap();
    assert_eq!(meta.key_state().unwrap().as_str(), "PendingDeletion");
    let days = (meta.deletion_date().unwrap().secs() - chrono_now()) as f64 / 86_400.0;
    assert!((6.9..=7.1).contains(&days), "deletion in {days} days");
    w.assert_nothing_left().await;

    // `up` finds the key by its alias: cancelled and enabled again, not replaced.
    w.run(&["up", "--kms-key", "new"]).await.expect(0);
    assert_eq!(stack_key(&w).await, (arn.clone(), "Enabled".to_string()));
    assert!(rotation(&w, &arn).await);
    assert_eq!(w.stack_keys().await.len(), 1);

    // A bucket kept for its objects keeps the key too, and `down` says why.
    write_object(&w, "ledger.json").await;
    let down = w.run(&["down", "--yes"]).await;
    down.expect(1);
    assert!(
        down.stdout
            .contains(&format!("kms-key {}", arn.rsplit('/').next().unwrap()))
            && down.stdout.contains("cannot be read without the key"),
        "{}",
        down.stdout
    );
    assert_eq!(stack_key(&w).await.1, "Enabled");
    assert_eq!(w.buckets().await, vec![bucket()]);

    // --delete-objects removes both; the key's window is the default, 30 days.
    w.run(&["down", "--yes", "--delete-objects"])
        .await
        .expect(0);
    let meta = w.aws.kms.describe_key().key_id(&arn).send().await.unwrap();
    let days = (meta.key_metadata().unwrap().deletion_date().unwrap().secs() - chrono_now()) as f64
        / 86_400.0;
    assert!((29.9..=30.1).contains(&days), "deletion in {days} days");
    w.assert_nothing_left().await;
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A key of the user's, as a team would have it: its own policy, rotation off, its own tags.
async fn users_key(w: &World, spec: KeySpec, usage: KeyUsageType) -> String {
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
            "Action": "kms:*",
            "Resource": "*"
        }]
    });
    let out = w
        .aws
        .kms
        .create_key()
        .key_spec(spec)
        .key_usage(usage)
        .policy(policy.to_string())
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
        .unwrap();
    out.key_metadata().unwrap().arn().unwrap().to_string()
}

/// Everything a user would compare of their key: metadata, policy, rotation, tags, aliases.
async fn snapshot(w: &World, key: &str) -> String {
    let kms = &w.aws.kms;
    let meta = kms.describe_key().key_id(key).send().await.unwrap();
    let meta = meta.key_metadata().unwrap();
    let policy = kms
        .get_key_policy()
        .key_id(key)
        .policy_name("default")
        .send()
        .await
        .unwrap();
    let rotation = kms
        .get_key_rotation_status()
        .key_id(key)
        .send()
        .await
        .unwrap();
    let tags = kms.list_resource_tags().key_id(key).send().await.unwrap();
    let aliases = kms.list_aliases().key_id(key).send().await.unwrap();
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?}",
        meta.key_state(),
        meta.enabled(),
        policy.policy(),
        rotation.key_rotation_enabled(),
        tags.tags(),
        aliases
            .aliases()
            .iter()
            .map(|a| a.alias_name())
            .collect::<Vec<_>>()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_borrowed_key_by_arn_or_alias_is_used_and_never_changed() {
    let w = World::new().await;
    let arn = users_key(&w, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    w.aws
        .kms
        .create_alias()
        .alias_name("alias/team-data")
        .target_key_id(&arn)
        .send()
        .await
        .unwrap();
    let before = snapshot(&w, &arn).await;
    for named in [arn.as_str(), "alias/team-data"] {
        w.run(&["up", "--kms-key", named]).await.expect(0);
        assert_eq!(
            encryption(&w).await,
            ("aws:kms".to_string(), Some(arn.clone()), Some(true)),
            "{named}"
        );
        let record = &w.state()["resources"]["kms-key"];
        assert_eq!(record["ownership"], "borrowed", "{record}");
        assert_eq!(record["arn"], arn.as_str());
        w.run(&["status"]).await.expect(0);
        let verify = w.run(&["verify", "--output", "json"]).await;
        verify.expect(0);
        let check = crate::common::find_in(&verify.json(), "checks", "name", "kms-key");
        assert!(
            check["evidence"]
                .to_string()
                .contains("borrowed, never changed"),
            "{check:#}"
        );
        assert_eq!(snapshot(&w, &arn).await, before, "{named}: the key changed");
        let down = w.run(&["down", "--yes"]).await;
        down.expect(0);
        assert_eq!(
            snapshot(&w, &arn).await,
            before,
            "{named}: down changed the key"
        );
        w.assert_nothing_left().await;
    }
    let writes: Vec<String> = w
        .proxy
        .calls()
        .into_iter()
        .filter(|c| c.service == "kms" && c.is_write())
        .map(|c| c.action)
        .collect();
    assert!(writes.is_empty(), "privbucket changed the key: {writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_s3_cannot_use_is_refused_before_any_change() {
    let w = World::new().await;
    let disabled = users_key(&w, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    // moto's DisableKey takes a key ID only (AWS takes an ARN too).
    w.aws
        .kms
        .disable_key()
        .key_id(disabled.rsplit('/').next().unwrap())
        .send()
        .await
        .unwrap();
    let asymmetric = users_key(&w, KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let elsewhere = {
        let conf = w
            .aws
            .kms
            .config()
            .to_builder()
            .region(aws_config::Region::new("eu-west-1"));
        let kms = aws_sdk_kms::Client::from_conf(conf.build());
        let out = kms
            .create_key()
            .key_spec(KeySpec::SymmetricDefault)
            .key_usage(KeyUsageType::EncryptDecrypt)
            .description("a key of another region")
            .send()
            .await
            .unwrap();
        out.key_metadata().unwrap().arn().unwrap().to_string()
    };
    // A key whose policy names someone else only (no account root statement): the uploader's
    // role could never use it.
    let theirs = w
        .aws
        .kms
        .create_key()
        .key_spec(KeySpec::SymmetricDefault)
        .key_usage(KeyUsageType::EncryptDecrypt)
        .policy(
            serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "OnlyTheDataTeam",
                    "Effect": "Allow",
                    "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:role/data-team")},
                    "Action": "kms:*",
                    "Resource": "*"
                }]
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let cases: [(&str, &str); 5] = [
        (
            &theirs,
            "add a statement allowing kms:GenerateDataKey to principal arn:aws:iam::",
        ),
        (&disabled, "the key is Disabled"),
        (
            &asymmetric,
            "S3 encrypts only with a symmetric encryption key",
        ),
        (&elsewhere, "the key is in region eu-west-1"),
        ("alias/nobody-has-this", "KMS has no such key"),
    ];
    for (key, why) in cases {
        w.proxy.clear();
        w.refused(&["up", "--kms-key", key], why).await;
        assert!(!w.state_path().exists(), "{key}: a state file was written");
        let writes: Vec<String> = w.proxy.writes().into_iter().map(|c| c.action).collect();
        assert!(
            writes.is_empty(),
            "{key}: writes before the refusal: {writes:?}"
        );
    }
    // A syntax the flag does not take: refused by the parser.
    w.refused(&["up", "--kms-key", "aws/s3"], "invalid --kms-key")
        .await;
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_key_changes_the_default_in_place_and_the_key_privbucket_made_stays_with_the_data()
{
    let w = World::new().await;
    w.run(&["up", "--kms-key", "new"]).await.expect(0);
    let (made, _) = stack_key(&w).await;
    write_object(&w, "before.json").await;
    let theirs = users_key(&w, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let before = snapshot(&w, &theirs).await;

    // Switched to the user's key: the bucket's default, its policy and the uploader's grant
    // follow; the object written before keeps the key it was written with, which stays.
    let up = w.run(&["up", "--kms-key", &theirs]).await;
    up.expect(0);
    assert!(
        format!("{}{}", up.stdout, up.stderr)
            .contains("keep the encryption (and key) they were written with"),
        "{}{}",
        up.stdout,
        up.stderr
    );
    assert_eq!(
        encryption(&w).await,
        ("aws:kms".to_string(), Some(theirs.clone()), Some(true))
    );
    let policy = w.bucket_policy_of(&bucket()).await;
    assert_eq!(
        statement(&policy, "DenyWritesAskingForAnotherKmsKey")["Condition"]["StringNotEquals"]["s3:x-amz-server-side-encryption-aws-kms-key-id"],
        theirs.as_str()
    );
    let record = &w.state()["resources"]["kms-key"];
    assert_eq!(record["ownership"], "borrowed", "{record}");
    assert_eq!(
        record["facts"]["key"]["retired_key"],
        made.rsplit('/').next().unwrap(),
        "{record}"
    );
    // (moto applies the TLS Deny, `s3:*`, to every request: the read goes with the policy
    // lifted, and `up` puts it back.)
    w.aws
        .s3
        .delete_bucket_policy()
        .bucket(bucket())
        .send()
        .await
        .unwrap();
    let head = w
        .aws
        .s3
        .head_object()
        .bucket(bucket())
        .key("before.json")
        .send()
        .await
        .unwrap();
    assert_eq!(head.ssekms_key_id(), Some(made.as_str()));
    assert_eq!(stack_key(&w).await, (made.clone(), "Enabled".to_string()));
    w.run(&["up"]).await.expect(0);
    w.run(&["status"]).await.expect(0);

    // The bucket kept for its objects keeps the key they need; with them deleted, the key
    // privbucket made goes too, and the user's key is left as it was.
    w.run(&["down", "--yes"]).await.expect(1);
    assert_eq!(stack_key(&w).await.1, "Enabled");
    let down = w.run(&["down", "--yes", "--delete-objects"]).await;
    down.expect(0);
    assert!(
        down.stdout.contains("is scheduled for deletion"),
        "{}",
        down.stdout
    );
    assert_eq!(
        stack_key(&w).await,
        (made.clone(), "PendingDeletion".to_string())
    );
    assert_eq!(snapshot(&w, &theirs).await, before);
    w.assert_nothing_left().await;

    // Borrowed, then back to a key of its own: the one it made is found by its alias again.
    w.run(&["up", "--kms-key", &theirs]).await.expect(0);
    w.run(&["up", "--kms-key", "new"]).await.expect(0);
    assert_eq!(stack_key(&w).await, (made.clone(), "Enabled".to_string()));
    assert_eq!(
        encryption(&w).await,
        ("aws:kms".to_string(), Some(made), Some(true))
    );
    assert_eq!(w.state()["settings"]["kms_key"], "new");
    w.run(&["down", "--yes"]).await.expect(0);
    assert_eq!(snapshot(&w, &theirs).await, before);
    w.assert_nothing_left().await;
}

/// How many calls a clean `up --kms-key new` makes.
async fn kms_up_calls() -> usize {
    let w = World::new().await;
    w.proxy.clear();
    w.run(&["up", "--kms-key", "new"]).await.expect(0);
    let n = w.proxy.calls().len();
    w.run(&["down", "--yes"]).await.expect(0);
    n
}

/// Exactly one key of the stack's, enabled, the one the state file and the alias name.
async fn exactly_one_key(w: &World, context: &str) {
    let keys = w.stack_keys().await;
    let live: Vec<_> = keys
        .iter()
        .filter(|(_, s)| s != "PendingDeletion")
        .collect();
    assert_eq!(live.len(), 1, "{context}: keys {keys:?}");
    let (arn, state) = stack_key(w).await;
    assert_eq!(state, "Enabled", "{context}");
    assert_eq!(
        w.state()["resources"]["kms-key"]["arn"],
        arn.as_str(),
        "{context}"
    );
    assert_eq!(
        encryption(w).await,
        ("aws:kms".to_string(), Some(arn), Some(true)),
        "{context}"
    );
}

/// Runs `args` with call `n` killed after it reached the emulator (`Fault::KillAfter`) or
/// refused as a missing permission (`Fault::Deny`): how many runs were killed and refused
/// (0 or 1 each). A run that ended before call `n`, or that could do without a refused read
/// (it went on), is checked by what the account holds afterwards.
async fn faulted(w: &World, n: usize, fault: Fault, args: &[&str]) -> (usize, usize) {
    w.proxy.clear();
    w.proxy
        .set_faults(move |i, _| if i == n { fault } else { Fault::None });
    let run = w.run(args).await;
    w.proxy.no_faults();
    let denied = w.proxy.calls().into_iter().find(|c| c.status == 403);
    match (fault, run.code) {
        (Fault::KillAfter, -1) => (1, 0),
        (Fault::Deny, 3) => (0, 1),
        (Fault::Deny, 0) if denied.as_ref().is_some_and(|c| !c.is_write()) => {
            eprintln!(
                "call {n} refused, and `{}` did without it: {denied:?}",
                run.cmd
            );
            (0, 1)
        }
        (_, 0) => (0, 0),
        _ => panic!("call {n}, {fault:?}: `{}` exited {}", run.cmd, run.code),
    }
}

// Each crash point gets a fresh emulator, as in `recovery`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_new_key_a_crash_or_a_refusal_at_any_call_of_up_converges_and_down_leaves_nothing() {
    let calls = kms_up_calls().await;
    let (mut killed, mut refused) = (0, 0);
    for n in 1..=calls {
        for fault in [Fault::KillAfter, Fault::Deny] {
            let w = World::new().await;
            let (k, r) = faulted(&w, n, fault, &["up", "--kms-key", "new"]).await;
            (killed, refused) = (killed + k, refused + r);
            let context = format!("up with call {n} {fault:?}");
            w.run(&["up", "--kms-key", "new"]).await.expect(0);
            exactly_one_key(&w, &context).await;
            w.run(&["down", "--yes"]).await.expect(0);
            w.assert_nothing_left().await;
        }
    }
    assert!(
        killed + 2 >= calls && refused + 2 >= calls,
        "of {calls} calls, {killed} killed and {refused} refused"
    );
    eprintln!("with --kms-key new: up killed at {killed}, refused at {refused} of {calls} calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_key_answer_makes_no_second_key_and_a_lost_state_finds_the_key() {
    let w = World::new().await;
    // Stands in for a lost response: KMS made the key, the caller saw a 500. CreateKey takes
    // no client token, so privbucket looks for the key by its tags before trying again.
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = lost.clone();
    w.proxy.set_faults(move |_, call| {
        if call.action == "CreateKey" && !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Fault::FailAfter
        } else {
            Fault::None
        }
    });
    w.run(&["up", "--kms-key", "new"]).await.expect(0);
    w.proxy.no_faults();
    assert!(
        lost.load(std::sync::atomic::Ordering::SeqCst),
        "no CreateKey was made"
    );
    exactly_one_key(&w, "a lost CreateKey answer").await;

    // Without the state file, the stack's key is found by its alias, and down schedules it.
    let (arn, _) = stack_key(&w).await;
    std::fs::remove_file(w.state_path()).unwrap();
    let status = w
        .run(&["status", "--name", "privbucket", "--output", "json"])
        .await;
    status.expect(0);
    let key = crate::common::find_in(&status.json(), "resources", "resource", "kms-key");
    assert_eq!(key["state"], "ok", "{key}");
    w.run(&["down", "--yes", "--name", "privbucket"])
        .await
        .expect(0);
    assert_eq!(stack_key(&w).await, (arn, "PendingDeletion".to_string()));
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_model_of_kms_the_dry_run_and_a_key_pending_deletion_answer_as_aws_does() {
    let w = World::new().await;
    w.proxy.model_aws(Behaviours {
        kms_states: true,
        ..Default::default()
    });
    // A borrowed key is tried with a dry run: AWS answers 412 DryRunOperationException when
    // the call would have succeeded.
    let arn = users_key(&w, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    w.proxy.clear();
    w.run(&["up", "--kms-key", &arn]).await.expect(0);
    assert!(
        w.proxy
            .calls()
            .iter()
            .any(|c| c.action == "GenerateDataKey" && c.status == 412),
        "no dry run answered 412"
    );
    w.run(&["down", "--yes"]).await.expect(0);

    // A key of the stack's pending deletion: its rotation cannot be read
    // (KMSInvalidStateException) until `up` has cancelled the deletion and enabled it.
    w.run(&["up", "--kms-key", "new"]).await.expect(0);
    w.run(&["down", "--yes"]).await.expect(0);
    let (key, _) = stack_key(&w).await;
    w.proxy.clear();
    w.run(&["up", "--kms-key", "new"]).await.expect(0);
    assert!(
        w.proxy
            .calls()
            .iter()
            .any(|c| c.action == "GetKeyRotationStatus" && c.status == 400),
        "the rotation of a key pending deletion was not refused"
    );
    assert_eq!(stack_key(&w).await, (key.clone(), "Enabled".to_string()));
    assert!(rotation(&w, &key).await);

    // Scheduled for deletion behind privbucket's back: `status` says so, and `down` takes the
    // second schedule's KMSInvalidStateException for a key already on its way out.
    let through_proxy = clients(&w.proxy.url, "testing", "testing", None).await;
    through_proxy
        .kms
        .schedule_key_deletion()
        .key_id(key.rsplit('/').next().unwrap())
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let status = w.run(&["status"]).await;
    status.expect(1);
    assert!(
        line(&status.stdout, "kms-key").contains("the key is pending deletion"),
        "{}",
        status.stdout
    );
    w.proxy.clear();
    w.run(&["down", "--yes"]).await.expect(0);
    assert!(
        w.proxy
            .calls()
            .iter()
            .any(|c| c.action == "ScheduleKeyDeletion" && c.status == 400),
        "the second schedule was not refused"
    );
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_new_key_a_crash_or_a_refusal_at_any_call_of_down_is_finished_by_the_next_down() {
    let calls = {
        let w = World::new().await;
        w.run(&["up", "--kms-key", "new"]).await.expect(0);
        w.proxy.clear();
        w.run(&["down", "--yes"]).await.expect(0);
        w.proxy.calls().len()
    };
    let (mut killed, mut refused) = (0, 0);
    for n in 1..=calls {
        for fault in [Fault::KillAfter, Fault::Deny] {
            let w = World::new().await;
            w.run(&["up", "--kms-key", "new"]).await.expect(0);
            let (k, r) = faulted(&w, n, fault, &["down", "--yes"]).await;
            (killed, refused) = (killed + k, refused + r);
            w.run(&["down", "--yes"]).await.expect(0);
            w.assert_nothing_left().await;
        }
    }
    assert!(
        killed + 2 >= calls && refused + 2 >= calls,
        "of {calls} calls, {killed} killed and {refused} refused"
    );
    eprintln!("with --kms-key new: down killed at {killed}, refused at {refused} of {calls} calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_new_key_up_status_verify_and_down_succeed_under_every_behaviour_of_aws_at_once() {
    let w = World::new().await;
    w.proxy.model_aws(Behaviours::all());
    w.run(&["up", "--kms-key", "new", "--versioning"])
        .await
        .expect(0);
    exactly_one_key(&w, "under the model").await;
    w.run(&["status"]).await.expect(0);
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
    // Again at once: S3's reused name, and the key pending deletion restored.
    w.run(&["up", "--kms-key", "new", "--versioning"])
        .await
        .expect(0);
    exactly_one_key(&w, "under the model, again").await;
    w.run(&["verify"]).await.expect(0);
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_without_a_key_gets_one_in_place() {
    let w = World::new().await;
    w.up().await;
    let bucket_before = w.state()["resources"]["bucket"].clone();
    let up = w.run(&["up", "--kms-key", "new"]).await;
    up.expect(0);
    let (arn, state) = stack_key(&w).await;
    assert_eq!(state, "Enabled");
    assert!(
        up.stdout
            .contains(&format!("it encrypts with KMS key {arn}")),
        "{}",
        up.stdout
    );
    assert_eq!(
        encryption(&w).await,
        ("aws:kms".to_string(), Some(arn), Some(true))
    );
    // The same bucket, its default encryption changed, and the objects told about.
    assert_eq!(w.state()["resources"]["bucket"], bucket_before);
    assert!(
        format!("{}{}", up.stdout, up.stderr)
            .contains("default encryption SSE-S3 (AES256) becomes SSE-KMS with"),
        "{}{}",
        up.stdout,
        up.stderr
    );
    w.run(&["status"]).await.expect(0);
    w.run(&["verify"]).await.expect(0);
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_new_key_up_and_down_succeed_with_a_fifth_of_calls_throttled_failed_or_lost() {
    for seed in [21u64, 22, 23] {
        // A fresh emulator per seed, as in `recovery`. Stands in for each service throttling
        // the account (KMS: ThrottlingException), internal errors before a call took effect,
        // and lost answers after it did.
        let w = World::new().await;
        let faults = move |salt: u64| {
            move |i: usize, _: &crate::common::proxy::Call| {
                let c = crate::recovery::chance(seed + salt, i);
                if c < 0.08 {
                    Fault::Throttle
                } else if c < 0.14 {
                    Fault::FailBefore
                } else if c < 0.20 {
                    Fault::FailAfter
                } else {
                    Fault::None
                }
            }
        };
        w.proxy.clear();
        w.proxy.set_faults(faults(0));
        w.run(&["up", "--kms-key", "new"]).await.expect(0);
        let kms_faults = w
            .proxy
            .calls()
            .iter()
            .filter(|c| c.service == "kms" && c.status >= 400)
            .count();
        w.proxy.no_faults();
        exactly_one_key(&w, &format!("seed {seed}")).await;
        eprintln!("seed {seed}: {kms_faults} KMS calls failed");
        w.proxy.set_faults(faults(100));
        w.run(&["down", "--yes"]).await.expect(0);
        w.proxy.no_faults();
        w.assert_nothing_left().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_asked_for_by_a_run_that_died_is_found_though_kms_lists_it_late() {
    let w = World::new().await;
    // Stands in for KMS's eventual consistency (the next run's ListKeys does not list the new
    // key yet: `aws_model`), and for a crash right after KMS made the key, before privbucket
    // heard back.
    w.proxy.model_aws(Behaviours {
        kms_listing: Some(std::time::Duration::from_secs(3)),
        ..Default::default()
    });
    w.proxy.set_faults(|_, call| {
        if call.action == "CreateKey" {
            Fault::KillAfter
        } else {
            Fault::None
        }
    });
    let run = w.run(&["up", "--kms-key", "new"]).await;
    w.proxy.no_faults();
    assert_eq!(run.code, -1, "`{}` was not killed", run.cmd);
    assert_eq!(w.stack_keys().await.len(), 1);
    let mark = &w.state()["resources"]["kms-key"];
    assert_eq!(mark["ownership"], "pending", "{mark}");
    let up = w.run(&["up", "--kms-key", "new", "-v"]).await;
    up.expect(0);
    assert!(
        format!("{}{}", up.stdout, up.stderr).contains("stopped before the answer"),
        "{}{}",
        up.stdout,
        up.stderr
    );
    exactly_one_key(&w, "a key KMS listed late").await;
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}

/// A key made without an explicit `KeyUsage` (moto then describes it with `KeySpec:
/// SYMMETRIC_DEFAULT` and no `KeyUsage`): a symmetric default key has only one usage,
/// ENCRYPT_DECRYPT (AWS KMS developer guide, "Key spec reference"), so it is used, not refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_borrowed_symmetric_key_described_without_its_usage_is_used() {
    let w = World::new().await;
    let made = w
        .aws
        .kms
        .create_key()
        .description("the platform team's key")
        .send()
        .await
        .unwrap();
    let arn = made.key_metadata().unwrap().arn().unwrap().to_string();
    w.aws
        .kms
        .create_alias()
        .alias_name("alias/platform")
        .target_key_id(&arn)
        .send()
        .await
        .unwrap();
    let described = w.aws.kms.describe_key().key_id(&arn).send().await.unwrap();
    let meta = described.key_metadata().unwrap();
    // The situation this test stands for: the description says the spec and not the usage.
    assert_eq!(
        meta.key_spec(),
        Some(&KeySpec::SymmetricDefault),
        "{meta:?}"
    );
    assert_eq!(meta.key_usage(), None, "{meta:?}");
    let up = w.run(&["up", "--kms-key", "alias/platform"]).await;
    assert_eq!(up.code, 0, "{}\n{}", up.stdout, up.stderr);
    assert_eq!(
        encryption(&w).await,
        ("aws:kms".to_string(), Some(arn.clone()), Some(true))
    );
    w.run(&["status"]).await.expect(0);
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}
