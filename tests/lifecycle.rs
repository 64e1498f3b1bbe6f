//! `up`, `status` and `down` end to end against the emulator. Every check of what `up` built
//! goes through the SDK, never through privbucket's own state file.
use std::collections::BTreeSet;

use crate::common::proxy::Fault;
use crate::common::{ACCOUNT, World, bucket, find_in, tag_filter};
use aws_sdk_ec2::types::Filter;
use serde_json::Value;

const STACK: &str = "privbucket";

fn set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> BTreeSet<String> {
    items.into_iter().map(Into::into).collect()
}

fn decode(doc: &str) -> Value {
    serde_json::from_str(doc).unwrap_or_else(|_| {
        let d = percent_encoding::percent_decode_str(doc)
            .decode_utf8()
            .unwrap();
        serde_json::from_str(&d).unwrap()
    })
}

fn strings(v: &Value) -> BTreeSet<String> {
    match v {
        Value::String(s) => set([s.clone()]),
        Value::Array(a) => a.iter().map(|s| s.as_str().unwrap().to_string()).collect(),
        other @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::Object(_)) => {
            panic!("expected a string or a list, got {other}")
        }
    }
}

fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// Everything of the architecture, read through the SDK, checked against the architecture (ARCHITECTURE.md).
async fn assert_architecture(w: &World) {
    let ec2 = &w.aws.ec2;
    // VPC: tagged, CIDR, DNS on.
    let vpc = w
        .stack_vpc(STACK)
        .await
        .expect("a VPC tagged for the stack");
    let vpc_id = vpc.vpc_id().unwrap().to_string();
    assert_eq!(vpc.cidr_block(), Some("10.16.0.0/16"));
    assert_eq!(tag(vpc.tags(), "Name"), Some("privbucket-vpc"));
    for attr in [
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport,
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames,
    ] {
        let out = ec2
            .describe_vpc_attribute()
            .vpc_id(&vpc_id)
            .attribute(attr.clone())
            .send()
            .await
            .unwrap();
        let v = out
            .enable_dns_support()
            .or(out.enable_dns_hostnames())
            .and_then(|v| v.value());
        assert_eq!(v, Some(true), "{attr:?}");
    }
    let in_vpc = || Filter::builder().name("vpc-id").values(&vpc_id).build();

    // Subnets: two, the original template's CIDRs, two distinct AZs, no public IPs.
    let subnets = ec2
        .describe_subnets()
        .filters(in_vpc())
        .send()
        .await
        .unwrap();
    let subnets = subnets.subnets();
    assert_eq!(subnets.len(), 2, "{subnets:?}");
    assert_eq!(
        set(subnets.iter().map(|s| s.cidr_block().unwrap())),
        set(["10.16.0.0/24", "10.16.1.0/24"])
    );
    let azs = set(subnets.iter().map(|s| s.availability_zone().unwrap()));
    assert_eq!(azs.len(), 2, "two distinct availability zones");
    for s in subnets {
        assert_eq!(tag(s.tags(), "privbucket:stack"), Some(STACK));
        assert_ne!(s.map_public_ip_on_launch(), Some(true));
    }
    let subnet_ids = set(subnets.iter().map(|s| s.subnet_id().unwrap()));

    // No way to the internet.
    let igws = ec2
        .describe_internet_gateways()
        .filters(
            Filter::builder()
                .name("attachment.vpc-id")
                .values(&vpc_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        igws.internet_gateways().is_empty(),
        "an internet gateway is attached"
    );

    // The Gateway endpoint for S3 on the stack's route tables.
    let eps = ec2
        .describe_vpc_endpoints()
        .filters(in_vpc())
        .send()
        .await
        .unwrap();
    let eps = eps.vpc_endpoints();
    assert_eq!(eps.len(), 1, "{eps:?}");
    let ep = &eps[0];
    let ep_id = ep.vpc_endpoint_id().unwrap().to_string();
    assert_eq!(ep.vpc_endpoint_type().map(|t| t.as_str()), Some("Gateway"));
    assert_eq!(ep.service_name(), Some("com.amazonaws.us-east-1.s3"));
    assert_eq!(tag(ep.tags(), "privbucket:stack"), Some(STACK));

    // Route tables: one per subnet, each with the S3 prefix-list route to the endpoint.
    let pl = ec2
        .describe_prefix_lists()
        .filters(
            Filter::builder()
                .name("prefix-list-name")
                .values("com.amazonaws.us-east-1.s3")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let pl_id = pl.prefix_lists()[0].prefix_list_id().unwrap().to_string();
    let tables = ec2
        .describe_route_tables()
        .filters(in_vpc())
        .filters(tag_filter("privbucket:stack", STACK))
        .send()
        .await
        .unwrap();
    let tables = tables.route_tables();
    assert_eq!(tables.len(), 2, "{tables:?}");
    let mut associated = BTreeSet::new();
    for t in tables {
        let subs: Vec<&str> = t
            .associations()
            .iter()
            .filter_map(|a| a.subnet_id())
            .collect();
        assert_eq!(subs.len(), 1, "one subnet per route table: {t:?}");
        associated.insert(subs[0].to_string());
        let routes = t.routes();
        assert!(
            routes
                .iter()
                .any(|r| r.destination_prefix_list_id() == Some(pl_id.as_str())
                    && r.gateway_id() == Some(ep_id.as_str())),
            "route table {:?} lacks the S3 prefix-list route to {ep_id}: {routes:?}",
            t.route_table_id()
        );
        assert!(
            routes
                .iter()
                .all(|r| !r.gateway_id().unwrap_or("").starts_with("igw-")
                    && r.nat_gateway_id().is_none()),
            "a route to the internet: {routes:?}"
        );
    }
    assert_eq!(associated, subnet_ids);
    assert_eq!(
        set(ep.route_table_ids().iter().cloned()),
        set(tables.iter().map(|t| t.route_table_id().unwrap()))
    );

    // Security group in the VPC.
    let sgs = ec2
        .describe_security_groups()
        .filters(in_vpc())
        .filters(tag_filter("privbucket:stack", STACK))
        .send()
        .await
        .unwrap();
    assert_eq!(sgs.security_groups().len(), 1);
    let sg_id = sgs.security_groups()[0].group_id().unwrap().to_string();
    // Hardening: egress only tcp/443 to the S3 prefix list; EC2's allow-all rule is gone.
    let egress = sgs.security_groups()[0].ip_permissions_egress();
    assert_eq!(egress.len(), 1, "{egress:?}");
    assert_eq!(
        (
            egress[0].ip_protocol(),
            egress[0].from_port(),
            egress[0].to_port()
        ),
        (Some("tcp"), Some(443), Some(443))
    );
    assert!(egress[0].ip_ranges().is_empty(), "{egress:?}");
    assert_eq!(
        egress[0]
            .prefix_list_ids()
            .iter()
            .filter_map(|p| p.prefix_list_id())
            .collect::<Vec<_>>(),
        vec![pl_id.as_str()]
    );

    // Hardening: through the endpoint, only this bucket and its objects.
    let ep_policy: Value = serde_json::from_str(ep.policy_document().unwrap()).unwrap();
    let ep_stmts = ep_policy["Statement"].as_array().unwrap();
    assert_eq!(ep_stmts.len(), 1, "{ep_policy}");
    assert_eq!(ep_stmts[0]["Effect"], "Allow");
    assert_eq!(
        strings(&ep_stmts[0]["Resource"]),
        set([
            format!("arn:aws:s3:::{}", bucket()),
            format!("arn:aws:s3:::{}/*", bucket())
        ])
    );

    // The bucket: SSE-S3, all four Block Public Access flags, owner enforced, the policy.
    let s3 = &w.aws.s3;
    let b = bucket();
    let enc = s3.get_bucket_encryption().bucket(&b).send().await.unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    let pab = s3
        .get_public_access_block()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let own = s3
        .get_bucket_ownership_controls()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(
        own.ownership_controls().unwrap().rules()[0]
            .object_ownership()
            .as_str(),
        "BucketOwnerEnforced"
    );
    let policy = s3.get_bucket_policy().bucket(&b).send().await.unwrap();
    let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let stmts = policy["Statement"].as_array().unwrap();
    // The original template's statement, and (hardening) the Deny of requests without TLS.
    assert_eq!(stmts.len(), 2, "{policy}");
    let sid = |s: &str| {
        stmts
            .iter()
            .find(|st| st["Sid"] == s)
            .unwrap_or_else(|| panic!("no statement {s}: {policy}"))
    };
    let tls = sid("DenyInsecureTransport");
    assert_eq!(tls["Effect"], "Deny");
    assert_eq!(tls["Principal"], "*");
    assert_eq!(strings(&tls["Action"]), set(["s3:*"]));
    assert_eq!(
        strings(&tls["Resource"]),
        set([format!("arn:aws:s3:::{b}"), format!("arn:aws:s3:::{b}/*")])
    );
    assert_eq!(tls["Condition"]["Bool"]["aws:SecureTransport"], "false");
    let st = sid("DenyWritesNotThroughTheVpcEndpoint");
    assert_eq!(st["Effect"], "Deny");
    assert_eq!(st["Principal"], "*");
    assert_eq!(
        strings(&st["Action"]),
        set(["s3:PutObject", "s3:PutObjectTagging"])
    );
    assert_eq!(
        strings(&st["Resource"]),
        set([format!("arn:aws:s3:::{b}/*")])
    );
    assert_eq!(
        st["Condition"]["StringNotEquals"]["aws:SourceVpce"],
        Value::String(ep_id.clone())
    );

    // Roles: trust Lambda, the managed policy, PutObject on the bucket's objects only.
    let iam = &w.aws.iam;
    for (role, managed) in [
        (
            "privbucket-us-east-1-uploader",
            "AWSLambdaVPCAccessExecutionRole",
        ),
        (
            "privbucket-us-east-1-control",
            "AWSLambdaBasicExecutionRole",
        ),
    ] {
        let r = iam.get_role().role_name(role).send().await.unwrap();
        let trust = decode(r.role().unwrap().assume_role_policy_document().unwrap());
        assert_eq!(
            trust["Statement"][0]["Principal"]["Service"],
            "lambda.amazonaws.com"
        );
        assert_eq!(trust["Statement"][0]["Effect"], "Allow");
        let attached = iam
            .list_attached_role_policies()
            .role_name(role)
            .send()
            .await
            .unwrap();
        let names = set(attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_name()));
        assert_eq!(names, set([managed]), "{role}");
        let inline = iam
            .list_role_policies()
            .role_name(role)
            .send()
            .await
            .unwrap();
        assert_eq!(inline.policy_names().len(), 1, "{role}");
        let doc = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(&inline.policy_names()[0])
            .send()
            .await
            .unwrap();
        let doc = decode(doc.policy_document());
        let st = &doc["Statement"][0];
        assert_eq!(st["Effect"], "Allow");
        assert_eq!(
            strings(&st["Action"]),
            set(["s3:PutObject", "s3:PutObjectTagging"])
        );
        assert_eq!(
            strings(&st["Resource"]),
            set([format!("arn:aws:s3:::{b}/*")])
        );
    }

    // Functions: runtime, role, environment, VPC config.
    let lambda = &w.aws.lambda;
    let up = lambda
        .get_function()
        .function_name("privbucket-uploader")
        .send()
        .await
        .unwrap();
    let c = up.configuration().unwrap();
    let runtime = c.runtime().unwrap().as_str();
    let minor: u32 = runtime.strip_prefix("python3.").unwrap().parse().unwrap();
    assert!(minor >= 12, "runtime {runtime}");
    assert!(
        c.role()
            .unwrap()
            .ends_with(":role/privbucket-us-east-1-uploader")
    );
    let env = c.environment().unwrap().variables().unwrap();
    assert_eq!(env.get("PRIVATE_BUCKET"), Some(&b));
    let vpc_cfg = c.vpc_config().unwrap();
    assert_eq!(set(vpc_cfg.subnet_ids().iter().cloned()), subnet_ids);
    assert_eq!(
        set(vpc_cfg.security_group_ids().iter().cloned()),
        set([sg_id])
    );
    assert_eq!(c.state().map(|s| s.as_str()), Some("Active"));

    let ctl = lambda
        .get_function()
        .function_name("privbucket-control")
        .send()
        .await
        .unwrap();
    let c = ctl.configuration().unwrap();
    assert!(
        c.role()
            .unwrap()
            .ends_with(":role/privbucket-us-east-1-control")
    );
    assert_eq!(
        c.environment()
            .unwrap()
            .variables()
            .unwrap()
            .get("PRIVATE_BUCKET"),
        Some(&b)
    );
    assert!(
        c.vpc_config()
            .map(|v| v.subnet_ids().is_empty())
            .unwrap_or(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_builds_the_architecture_then_is_idempotent_and_down_leaves_nothing() {
    let w = World::new().await;
    w.up().await;
    assert_architecture(&w).await;

    // The state file is private and names every resource.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(w.state_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let state = w.state();
    assert_eq!(
        state["resources"].as_object().unwrap().len(),
        15,
        "{state:#}"
    );
    assert_eq!(state["account_id"], ACCOUNT);

    // A second `up` reads, finds everything as it should be, and writes nothing.
    let before = w.state();
    w.proxy.clear();
    let again = w.up().await;
    assert!(
        again.stdout.contains("Everything is up to date"),
        "{}",
        again.stdout
    );
    let writes = w.proxy.writes();
    assert!(
        writes.is_empty(),
        "the second up made write calls: {writes:#?}"
    );
    assert!(
        !w.proxy.calls().is_empty(),
        "the second up looked at the live resources"
    );
    assert_eq!(w.state(), before);
    assert_architecture(&w).await;

    // `status`: every resource ok, as text and as JSON.
    let st = w.run(&["status"]).await;
    st.expect(0);
    assert!(
        st.stdout.contains("Everything is as it should be"),
        "{}",
        st.stdout
    );
    let js = w.run(&["status", "--output", "json"]).await;
    js.expect(0);
    let doc = js.json();
    assert_eq!(doc["ok"], true);
    let resources = doc["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 15);
    assert!(resources.iter().all(|r| r["state"] == "ok"), "{doc:#}");

    // `down` removes every trace, and the state file.
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
    // A second `down` has nothing to do.
    let again = w.run(&["down", "--yes"]).await;
    again.expect(0);
    assert!(
        again.stdout.contains("Nothing deployed"),
        "{}",
        again.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_up_is_resumed_and_only_the_missing_resources_are_created() {
    let w = World::new().await;
    // Stands in for Lambda failing (HTTP 500) on every CreateFunction: the SDK retries, then
    // `up` stops with everything before the functions made and recorded.
    w.proxy.set_faults(|_, call| {
        if call.service == "lambda" && call.method == "POST" && call.action.ends_with("/functions")
        {
            Fault::FailBefore
        } else {
            Fault::None
        }
    });
    let failed = w.run(&["up"]).await;
    failed.expect(3);
    assert!(
        failed.stderr.contains("CreateFunction"),
        "{}",
        failed.stderr
    );
    let state = w.state();
    assert!(
        state["resources"].get("bucket-policy").is_some(),
        "{state:#}"
    );
    assert!(state["resources"].get("uploader-function").is_none());

    w.proxy.set_faults(|_, _| Fault::None);
    w.proxy.clear();
    w.up().await;
    let created: Vec<String> = w
        .proxy
        .writes()
        .iter()
        .map(|c| format!("{} {}", c.service, c.action))
        .collect();
    assert_eq!(
        created.len(),
        2,
        "only the two functions are created on the second run: {created:#?}"
    );
    assert!(
        created.iter().all(|c| c.starts_with("lambda POST")),
        "{created:#?}"
    );
    assert_architecture(&w).await;
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_what_changed_behind_the_tools_back_and_up_repairs_it() {
    let w = World::new().await;
    w.up().await;
    let b = bucket();

    // The bucket policy removed.
    w.aws
        .s3
        .delete_bucket_policy()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    let st = w.run(&["status"]).await;
    st.expect(1);
    let line = st
        .stdout
        .lines()
        .find(|l| l.starts_with("bucket-policy"))
        .unwrap_or_else(|| panic!("no bucket-policy line:\n{}", st.stdout));
    assert!(line.ends_with("missing"), "{line}");

    // A Block Public Access flag turned off.
    w.turn_off_public_access_flag(&b, "BlockPublicPolicy").await;
    // One route table's association to its subnet removed.
    let assoc = w.id("association-a");
    w.aws
        .ec2
        .disassociate_route_table()
        .association_id(&assoc)
        .send()
        .await
        .unwrap();

    let js = w.run(&["status", "--output", "json"]).await;
    js.expect(1);
    let doc = js.json();
    assert_eq!(doc["ok"], false);
    let by = |key: &str| find_in(&doc, "resources", "resource", key);
    assert_eq!(by("bucket-policy")["state"], "missing");
    assert_eq!(by("association-a")["state"], "missing");
    assert_eq!(by("association-a")["id"], Value::String(assoc.clone()));
    let bucket_state = by("bucket");
    assert_eq!(bucket_state["state"], "changed");
    assert!(
        bucket_state["changes"][0]
            .as_str()
            .unwrap()
            .contains("BlockPublicPolicy"),
        "{bucket_state}"
    );
    assert_eq!(by("vpc")["state"], "ok");

    // `up` puts it all back; `status` agrees.
    let fixed = w.up().await;
    assert!(fixed.stdout.contains("updated"), "{}", fixed.stdout);
    w.run(&["status"]).await.expect(0);
    assert_architecture(&w).await;
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_step_at_a_time_builds_the_same_stack() {
    let w = World::new().await;
    // Calls that overlap by a moment would show here: each one is held a little.
    w.proxy
        .set_faults(|_, _| Fault::Delay(std::time::Duration::from_millis(20)));
    let up = w.run(&["up", "--max-concurrency", "1"]).await;
    up.expect(0);
    assert_eq!(w.proxy.most_in_flight(), 1, "up made calls at once");
    assert_architecture(&w).await;
    assert_eq!(w.state()["resources"].as_object().unwrap().len(), 15);
    w.proxy.clear();
    w.run(&["down", "--yes", "--max-concurrency", "1"])
        .await
        .expect(0);
    assert_eq!(w.proxy.most_in_flight(), 1, "down made calls at once");
    w.proxy.no_faults();
    w.assert_nothing_left().await;
}
