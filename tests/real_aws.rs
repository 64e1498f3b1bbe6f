//! Real AWS, not the emulator: the test proxy's model of how AWS behaves where moto does not
//! (`common::aws_model`: EC2 eventual consistency, IAM propagation and concurrent
//! modification, Lambda's 404 and `Pending` right after a create, updates in progress and
//! network interfaces, S3's new bucket and reused name, pending endpoints, zones that refuse
//! subnets), first shown to produce each error itself, then privbucket's whole lifecycle
//! under each behaviour alone and under all of them at once. Windows are seconds, not AWS's
//! minutes; the order of events is AWS's.
use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};

use crate::common::aws_model::Behaviours;
use crate::common::{ACCOUNT, World, clients, other_function, other_role, tag_filter};
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
            "IAM propagation and concurrent modification",
            Behaviours {
                iam_propagation: all.iam_propagation,
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
        (
            "Lambda's network interfaces",
            Behaviours {
                lambda_enis: all.lambda_enis,
                ..Default::default()
            },
        ),
        (
            "Lambda update in progress, and another's update just before privbucket's",
            Behaviours {
                lambda_update: all.lambda_update,
                lambda_update_race: all.lambda_update_race,
                ..Default::default()
            },
        ),
        (
            "a pending endpoint",
            Behaviours {
                endpoint_pending: all.endpoint_pending,
                ..Default::default()
            },
        ),
        (
            "a zone that takes no new subnets",
            Behaviours {
                zone_refuses_subnets: all.zone_refuses_subnets,
                ..Default::default()
            },
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_alone_answers_each_behaviour_with_the_error_aws_sends() {
    let w = World::new().await;
    // Wide windows: each "before" call must land inside its window even on a 2-core machine
    // running the whole suite (a 1.5 s EC2 window was seen to pass before the describe came).
    let on = Behaviours {
        ec2_consistency: Some(Duration::from_secs(5)),
        iam_propagation: Some(Duration::from_secs(4)),
        lambda_not_found: Some(Duration::from_secs(3)),
        lambda_pending: Some(Duration::from_secs(8)),
        s3_new_bucket: Some(Duration::from_secs(4)),
        ..Behaviours::all()
    };
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
    // IAM propagation: the new role cannot be used by Lambda yet.
    let create = || {
        aws.lambda
            .create_function()
            .function_name("model-fn")
            .runtime(aws_sdk_lambda::types::Runtime::Python313)
            .role(&role_arn)
            .handler("h.handler")
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(aws_sdk_lambda::primitives::Blob::new(zip.clone()))
                    .build(),
            )
            .send()
    };
    let early = create().await;
    assert_eq!(
        code(&early).as_deref(),
        Some("InvalidParameterValueException")
    );
    assert!(
        format!("{:?}", early.unwrap_err().into_service_error())
            .contains("cannot be assumed by Lambda")
    );
    tokio::time::sleep(on.iam_propagation.unwrap()).await;
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
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
    // The bucket's name is deterministic: `up` right after `down` meets S3's reused name.
    w.up().await;
    assert_exactly_one_stack(&w, what).await;
    w.run(&["verify"]).await.expect(0);
    w.run(&["down", "--yes"]).await.expect(0);
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
    w.run(&["down", "--yes"]).await.expect(0);
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

/// A function idle for weeks is `Inactive`: normal, not something `up` should change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_function_is_not_a_difference() {
    let w = World::new().await;
    w.up().await;
    w.proxy.model_aws(Behaviours {
        lambda_inactive: Some("privbucket-uploader"),
        ..Default::default()
    });
    let st = w.run(&["status"]).await;
    st.expect(0);
    w.proxy.clear();
    w.up().await;
    assert!(
        w.proxy.writes().is_empty(),
        "up changed an Inactive function: {:?}",
        w.proxy.writes()
    );
    w.proxy.model_aws(Behaviours::default());
    w.run(&["down", "--yes"]).await.expect(0);
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
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_alone_answers_zones_endpoints_updates_and_lambda_enis_as_aws_does() {
    let w = World::new().await;
    let on = Behaviours {
        lambda_refuses_zone: Some("us-east-1c"),
        ..Behaviours::all()
    };
    let window = on.lambda_enis.unwrap();
    w.proxy.model_aws(Behaviours {
        // Functions made here are usable and Active at once: this test looks at their ENIs
        // and updates.
        iam_propagation: None,
        lambda_not_found: None,
        lambda_pending: None,
        ec2_consistency: None,
        ..on.clone()
    });
    let aws = clients(&w.proxy.url, "testing", "testing", None).await;
    let ec2 = &aws.ec2;
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();

    // Zones: a zone short of capacity refuses subnets and lists those that take them.
    let refused = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.9.0.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await;
    assert_eq!(code(&refused).as_deref(), Some("InvalidParameterValue"));
    let message = refused.unwrap_err().into_service_error();
    assert!(
        message.message().unwrap().contains(
            "Subnets can currently only be created in the following availability zones: us-east-1b"
        ),
        "{message:?}"
    );
    let subnet = |cidr: &'static str, zone: &'static str| {
        let vpc = vpc.clone();
        async move {
            ec2.create_subnet()
                .vpc_id(vpc)
                .cidr_block(cidr)
                .availability_zone(zone)
                .send()
                .await
                .unwrap()
                .subnet()
                .unwrap()
                .subnet_id()
                .unwrap()
                .to_string()
        }
    };
    let in_b = subnet("10.9.1.0/24", "us-east-1b").await;
    let in_c = subnet("10.9.2.0/24", "us-east-1c").await;
    let in_d = subnet("10.9.3.0/24", "us-east-1d").await;
    let sg = ec2
        .create_security_group()
        .group_name("model-sg")
        .description("model")
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap()
        .group_id()
        .unwrap()
        .to_string();

    // The endpoint: pending, then available.
    let rtb = ec2.create_route_table().vpc_id(&vpc).send().await.unwrap();
    let rtb = rtb
        .route_table()
        .unwrap()
        .route_table_id()
        .unwrap()
        .to_string();
    let ep = ec2
        .create_vpc_endpoint()
        .vpc_id(&vpc)
        .service_name("com.amazonaws.us-east-1.s3")
        .route_table_ids(&rtb)
        .send()
        .await
        .unwrap();
    let ep = ep.vpc_endpoint().unwrap().clone();
    assert_eq!(ep.state().map(|s| s.as_str()), Some("pending"));
    let ep_state = || async {
        let out = ec2
            .describe_vpc_endpoints()
            .vpc_endpoint_ids(ep.vpc_endpoint_id().unwrap())
            .send()
            .await
            .unwrap();
        out.vpc_endpoints()[0].state().unwrap().as_str().to_string()
    };
    assert_eq!(ep_state().await, "pending");
    tokio::time::sleep(on.endpoint_pending.unwrap()).await;
    assert_eq!(ep_state().await.to_ascii_lowercase(), "available");

    // Lambda: a zone it does not support is refused.
    let role_a = other_role(&aws.iam, "model-role-a").await;
    let function = |name: &'static str, role: String, subnet: String| {
        let lambda = aws.lambda.clone();
        let sg = sg.clone();
        async move {
            other_function(&lambda, name, &role)
                .vpc_config(
                    aws_sdk_lambda::types::VpcConfig::builder()
                        .subnet_ids(subnet)
                        .security_group_ids(sg)
                        .build(),
                )
                .send()
                .await
        }
    };
    let zone_refused = function("model-fn-c", role_a.clone(), in_c.clone()).await;
    assert_eq!(
        code(&zone_refused).as_deref(),
        Some("InvalidParameterValueException")
    );
    assert!(
        format!("{:?}", zone_refused.unwrap_err().into_service_error())
            .contains("availability zone Lambda doesn't support"),
    );

    // ENIs: one per (subnet, group), in use while the function is in the VPC; the subnet and
    // the group cannot be deleted meanwhile.
    function("model-fn", role_a.clone(), in_b.clone())
        .await
        .unwrap();
    let enis_in = |subnet: String| async move {
        ec2.describe_network_interfaces()
            .filters(tag_filter_free("subnet-id", &subnet))
            .send()
            .await
            .unwrap()
            .network_interfaces()
            .iter()
            .map(|e| {
                (
                    e.network_interface_id().unwrap().to_string(),
                    e.status().unwrap().as_str().to_string(),
                    e.description().unwrap_or_default().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let enis = enis_in(in_b.clone()).await;
    assert_eq!(enis.len(), 1, "{enis:?}");
    let (eni, status, description) = enis[0].clone();
    assert_eq!(status, "in-use");
    assert!(
        description.starts_with("AWS Lambda VPC ENI-model-fn"),
        "{description}"
    );
    let delete_eni = || {
        ec2.delete_network_interface()
            .network_interface_id(&eni)
            .send()
    };
    assert_eq!(
        code(&delete_eni().await).as_deref(),
        Some("InvalidParameterValue")
    );
    let delete_subnet = || ec2.delete_subnet().subnet_id(&in_b).send();
    assert_eq!(
        code(&delete_subnet().await).as_deref(),
        Some("DependencyViolation")
    );
    let delete_sg = ec2.delete_security_group().group_id(&sg).send().await;
    assert_eq!(code(&delete_sg).as_deref(), Some("DependencyViolation"));

    // Updates: one at a time.
    let update = || {
        aws.lambda
            .update_function_configuration()
            .function_name("model-fn")
            .vpc_config(
                aws_sdk_lambda::types::VpcConfig::builder()
                    .set_subnet_ids(Some(vec![]))
                    .set_security_group_ids(Some(vec![]))
                    .build(),
            )
            .send()
    };
    update().await.unwrap();
    let status = aws
        .lambda
        .get_function()
        .function_name("model-fn")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status
            .configuration()
            .and_then(|c| c.last_update_status())
            .map(|s| s.as_str()),
        Some("InProgress")
    );
    assert_eq!(
        code(&update().await).as_deref(),
        Some("ResourceConflictException")
    );

    // The function left the VPC: the ENI is released after the window, then refused once
    // more as in use, then deleted; then the subnet goes.
    assert_eq!(enis_in(in_b.clone()).await[0].1, "in-use");
    tokio::time::sleep(window).await;
    assert_eq!(enis_in(in_b.clone()).await[0].1, "available");
    let once = delete_eni().await;
    assert_eq!(code(&once).as_deref(), Some("InvalidParameterValue"));
    assert!(
        format!("{:?}", once.unwrap_err().into_service_error()).contains("is currently in use"),
    );
    delete_eni().await.unwrap();
    delete_subnet().await.unwrap();

    // A function whose role is deleted before Lambda let go: its ENI is never released.
    let role_b = other_role(&aws.iam, "model-role-b").await;
    function("model-fn-d", role_b, in_d.clone()).await.unwrap();
    aws.lambda
        .delete_function()
        .function_name("model-fn-d")
        .send()
        .await
        .unwrap();
    aws.iam
        .delete_role()
        .role_name("model-role-b")
        .send()
        .await
        .unwrap();
    tokio::time::sleep(window * 2).await;
    assert_eq!(enis_in(in_d.clone()).await[0].1, "in-use");
}

fn tag_filter_free(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

/// Lambda releases a function's ENIs with the function's execution role: `down` must delete
/// the uploader's role only once the ENIs are gone (deleted first, they would never be
/// released, and `down` would wait until `--eni-timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_deletes_the_roles_only_after_lambda_has_released_its_enis() {
    let w = World::new().await;
    w.proxy.model_aws(Behaviours {
        lambda_enis: Behaviours::all().lambda_enis,
        ..Default::default()
    });
    w.up().await;
    let enis = w.lambda_enis().await;
    assert_eq!(enis.len(), 2, "one ENI per subnet: {enis:?}");
    w.proxy.clear();
    let down = w.run(&["down", "--yes", "--eni-timeout", "60s"]).await;
    down.expect(0);
    let calls = w.proxy.calls();
    let last_eni = calls
        .iter()
        .rposition(|c| c.api() == "DeleteNetworkInterface" && c.status == 200)
        .expect("down deleted the ENIs");
    let first_role = calls
        .iter()
        .position(|c| {
            c.api() == "DeleteRole" && c.param("RoleName") == Some("privbucket-us-east-1-uploader")
        })
        .expect("down deleted the uploader's role");
    assert!(
        last_eni < first_role,
        "a role was deleted before the last ENI: {:?}",
        calls.iter().map(|c| c.api()).collect::<Vec<_>>()
    );
    // EC2 said "in use" once after the release, and down waited it out.
    assert!(
        calls
            .iter()
            .any(|c| c.api() == "DeleteNetworkInterface" && c.status == 400),
        "{:?}",
        calls
            .iter()
            .map(|c| (c.api(), c.status))
            .collect::<Vec<_>>()
    );
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_that_refuses_subnets_is_left_for_one_that_takes_them_and_zone_ids_are_recorded() {
    let w = World::new().await;
    w.proxy.model_aws(Behaviours {
        zone_refuses_subnets: Some("us-east-1a"),
        ..Default::default()
    });
    let up = w.up().await;
    assert!(
        up.stdout.contains("zone us-east-1a takes no new subnets"),
        "{}",
        up.stdout
    );
    let state = w.state();
    let mut zones = Vec::new();
    for key in ["subnet-a", "subnet-b"] {
        let id = w.id(key);
        let live = w
            .aws
            .ec2
            .describe_subnets()
            .subnet_ids(&id)
            .send()
            .await
            .unwrap();
        let s = &live.subnets()[0];
        let zone = s.availability_zone().unwrap().to_string();
        assert_eq!(
            state["resources"][key]["facts"]["subnet"]["availability_zone_id"].as_str(),
            s.availability_zone_id(),
            "{state:#}"
        );
        zones.push(zone);
    }
    assert_ne!(zones[0], zones[1]);
    assert!(!zones.contains(&"us-east-1a".to_string()), "{zones:?}");
    w.run(&["status"]).await.expect(0);

    // With --zones, the user chose: the refusal is reported, with the zones that would do.
    let w2 = World::new().await;
    w2.proxy.model_aws(Behaviours {
        zone_refuses_subnets: Some("us-east-1a"),
        ..Default::default()
    });
    let up = w2.run(&["up", "--zones", "us-east-1a,us-east-1b"]).await;
    up.expect(3);
    assert!(up.stderr.contains("us-east-1a"), "{}", up.stderr);
    assert!(
        up.stderr.contains("only be created in the following"),
        "{}",
        up.stderr
    );
    w2.run(&["down", "--yes"]).await.expect(0);
    w2.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_lambda_does_not_support_is_named_with_the_way_out() {
    let w = World::new().await;
    w.proxy.model_aws(Behaviours {
        lambda_refuses_zone: Some("us-east-1b"),
        ..Default::default()
    });
    let up = w.run(&["up"]).await;
    up.expect(3);
    assert!(
        up.stderr.contains("Lambda does not support the zone"),
        "{}",
        up.stderr
    );
    assert!(up.stderr.contains("us-east-1b (use1-az1)"), "{}", up.stderr);
    assert!(up.stderr.contains("--zones"), "{}", up.stderr);
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
    w.run(&["up", "--zones", "us-east-1c,us-east-1d"])
        .await
        .expect(0);
    let state = w.state();
    assert_eq!(
        state["resources"]["subnet-a"]["facts"]["subnet"]["availability_zone"],
        "us-east-1c"
    );
    assert_eq!(
        state["resources"]["subnet-b"]["facts"]["subnet"]["availability_zone"],
        "us-east-1d"
    );
    // The stack keeps its zones: asking for others is refused before any call.
    w.proxy.clear();
    let moved = w.run(&["up", "--zones", "us-east-1a,us-east-1b"]).await;
    moved.expect(2);
    assert!(
        moved.stderr.contains("zones us-east-1c,us-east-1d"),
        "{}",
        moved.stderr
    );
    assert!(w.proxy.calls().is_empty());
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}
