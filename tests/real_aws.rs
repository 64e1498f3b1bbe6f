//! Real AWS, not the emulator: the test proxy's model of how AWS behaves where moto does not
//! (`common::aws_model`: EC2 eventual consistency, IAM concurrent modification, Lambda's
//! 404 and `Pending` right after a create, S3's new bucket and reused name), first shown to
//! produce each error itself, then privbucket's whole lifecycle under each behaviour alone
//! and under all of them at once. Windows are seconds, not AWS's minutes; the order of events
//! is AWS's.
use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};

use crate::common::aws_model::Behaviours;
use crate::common::{ACCOUNT, World, clients, tag_filter};
use crate::recovery::assert_exactly_one_stack;

fn code<T, E: ProvideErrorMetadata>(r: &Result<T, E>) -> Option<String> {
    r.as_ref().err().and_then(|e| e.code()).map(str::to_string)
}

fn only(on: Behaviours) -> Vec<(&'static str, Behaviours)> {
    let all = on;
    vec![
        (
            "EC2 eventual consistency",
            Behaviours {
                ec2_consistency: all.ec2_consistency,
                ..Default::default()
            },
        ),
        (
            "IAM concurrent modification",
            Behaviours {
                iam_concurrency: all.iam_concurrency,
                ..Default::default()
            },
        ),
        (
            "Lambda 404 and Pending after CreateFunction",
            Behaviours {
                lambda_not_found: all.lambda_not_found,
                lambda_pending: all.lambda_pending,
                ..Default::default()
            },
        ),
        (
            "S3 new bucket and reused name",
            Behaviours {
                s3_new_bucket: all.s3_new_bucket,
                s3_name_reuse: all.s3_name_reuse,
                ..Default::default()
            },
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_alone_answers_each_behaviour_with_the_error_aws_sends() {
    let w = World::new().await;
    let on = Behaviours::all();
    w.proxy.model_aws(on.clone());
    let aws = clients(&w.proxy.url, "testing", "testing", None).await;

    // EC2: the new VPC is named in a call before EC2 sees it, and a describe by tag does not
    // list it yet; after the window both work.
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::Vpc)
        .tags(
            Tag::builder()
                .key("privbucket:stack")
                .value("model")
                .build(),
        )
        .build();
    let vpc = aws
        .ec2
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .tag_specifications(tags)
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let on_attr = || {
        aws.ec2
            .modify_vpc_attribute()
            .vpc_id(&vpc)
            .enable_dns_hostnames(
                aws_sdk_ec2::types::AttributeBooleanValue::builder()
                    .value(true)
                    .build(),
            )
            .send()
    };
    assert_eq!(
        code(&on_attr().await).as_deref(),
        Some("InvalidVpcID.NotFound")
    );
    let by_tag = || {
        aws.ec2
            .describe_vpcs()
            .filters(tag_filter("privbucket:stack", "model"))
            .send()
    };
    assert!(by_tag().await.unwrap().vpcs().is_empty());
    tokio::time::sleep(on.ec2_consistency.unwrap()).await;
    on_attr().await.unwrap();
    assert_eq!(by_tag().await.unwrap().vpcs().len(), 1);

    // IAM: two changes to one role at once; one is refused.
    let role = aws
        .iam
        .create_role()
        .role_name("model-role")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    let role_arn = role.role().unwrap().arn().to_string();
    let (a, p) = tokio::join!(
        aws.iam
            .attach_role_policy()
            .role_name("model-role")
            .policy_arn("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
            .send(),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            aws.iam
                .put_role_policy()
                .role_name("model-role")
                .policy_name("p")
                .policy_document(
                    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#,
                )
                .send()
                .await
        },
    );
    assert!(a.is_ok(), "{a:?}");
    assert_eq!(code(&p).as_deref(), Some("ConcurrentModification"));

    // Lambda: not found at first, then Pending, then Active.
    let zip = {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        z.start_file("h.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"def handler(e, c):\n    return e\n").unwrap();
        z.finish().unwrap().into_inner()
    };
    let made = aws
        .lambda
        .create_function()
        .function_name("model-fn")
        .runtime(aws_sdk_lambda::types::Runtime::Python313)
        .role(&role_arn)
        .handler("h.handler")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(zip))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(made.state().map(|s| s.as_str()), Some("Pending"));
    let get = || aws.lambda.get_function().function_name("model-fn").send();
    assert_eq!(
        code(&get().await).as_deref(),
        Some("ResourceNotFoundException")
    );
    tokio::time::sleep(on.lambda_not_found.unwrap()).await;
    let state = |r: aws_sdk_lambda::operation::get_function::GetFunctionOutput| {
        r.configuration()
            .and_then(|c| c.state())
            .map(|s| s.as_str().to_string())
    };
    assert_eq!(state(get().await.unwrap()).as_deref(), Some("Pending"));
    tokio::time::sleep(on.lambda_pending.unwrap()).await;
    assert_eq!(state(get().await.unwrap()).as_deref(), Some("Active"));

    // S3: a new bucket's settings are refused for a moment; a name deleted moments ago
    // cannot be made again at once.
    let bucket = format!("model-{ACCOUNT}");
    aws.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let tagging = aws_sdk_s3::types::Tagging::builder()
        .tag_set(
            aws_sdk_s3::types::Tag::builder()
                .key("k")
                .value("v")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let tag = aws
        .s3
        .put_bucket_tagging()
        .bucket(&bucket)
        .tagging(tagging)
        .send()
        .await;
    assert_eq!(
        code(&tag).as_deref(),
        Some("NoSuchBucket"),
        "{:?}",
        tag.err()
    );
    aws.s3.delete_bucket().bucket(&bucket).send().await.unwrap();
    let again = aws.s3.create_bucket().bucket(&bucket).send().await;
    assert_eq!(code(&again).as_deref(), Some("OperationAborted"));
}

/// `up`, `status`, `down`, and `up` and `down` once more (a bucket name just deleted), under
/// the given behaviours; the account checked through the SDK after each.
async fn lifecycle(what: &str, on: Behaviours) {
    let w = World::new().await;
    w.proxy.model_aws(on);
    w.up().await;
    assert_exactly_one_stack(&w, what).await;
    w.run(&["status"]).await.expect(0);
    w.run(&["down"]).await.expect(0);
    w.assert_nothing_left().await;
    // The bucket's name is deterministic: `up` right after `down` meets S3's reused name.
    w.up().await;
    assert_exactly_one_stack(&w, what).await;
    w.run(&["verify"]).await.expect(0);
    w.run(&["down"]).await.expect(0);
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_status_and_down_succeed_under_each_behaviour_alone() {
    for (what, on) in only(Behaviours::all()) {
        eprintln!("under {what}");
        lifecycle(what, on).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_status_verify_and_down_succeed_under_every_behaviour_at_once() {
    lifecycle("every behaviour at once", Behaviours::all()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_function_is_made_again_by_up_and_deleted_without_an_update_by_down() {
    let w = World::new().await;
    w.up().await;
    let uploader = "privbucket-uploader";
    w.proxy.model_aws(Behaviours {
        lambda_failed: Some(uploader),
        ..Default::default()
    });
    let st = w.run(&["status"]).await;
    st.expect(1);
    assert!(st.stdout.contains("state is Failed"), "{}", st.stdout);
    assert!(
        st.stdout.contains("unable to create an ENI"),
        "{}",
        st.stdout
    );

    w.proxy.clear();
    let up = w.up().await;
    assert!(
        up.stdout.contains("deleting it to make it again"),
        "{}",
        up.stdout
    );
    let calls: Vec<String> = w.proxy.writes().iter().map(|c| c.api()).collect();
    assert!(calls.contains(&"DeleteFunction".to_string()), "{calls:?}");
    assert!(calls.contains(&"CreateFunction".to_string()), "{calls:?}");
    w.run(&["status"]).await.expect(0);
    assert_exactly_one_stack(&w, "after the failed function was made again").await;

    // Failed again: `down` deletes it as it is, with no update first.
    w.proxy.model_aws(Behaviours {
        lambda_failed: Some(uploader),
        ..Default::default()
    });
    w.proxy.clear();
    w.run(&["down"]).await.expect(0);
    let updates: Vec<String> = w
        .proxy
        .writes()
        .iter()
        .map(|c| c.api())
        .filter(|a| a == "UpdateFunctionConfiguration")
        .collect();
    assert!(
        updates.is_empty(),
        "down updated a Failed function: {updates:?}"
    );
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_name_taken_in_another_region_is_named_with_its_region() {
    let w = World::new().await;
    w.proxy.model_aws(Behaviours {
        s3_other_region: Some(("privbucket-123456789012-us-east-1", "eu-west-1")),
        ..Default::default()
    });
    let up = w.run(&["up"]).await;
    up.expect(3);
    assert!(
        up.stderr.contains("already exists in region eu-west-1"),
        "{}",
        up.stderr
    );
    assert!(up.stderr.contains("--bucket"), "{}", up.stderr);
    assert!(w.buckets().await.is_empty());
    w.proxy.model_aws(Behaviours::default());
    w.run(&["down"]).await.expect(0);
    w.assert_nothing_left().await;
}
