//! A private bucket in the network a team already has (`up --vpc --subnets`). The test builds
//! a landing zone itself, through the SDK, before privbucket runs: a VPC with three subnets in
//! two zones (one on the main route table, one on a table with a default route to an internet
//! gateway, one on a table an S3 Gateway endpoint already serves, with a custom policy that
//! allows the stack's bucket), an ENI of another workload (with a Lambda-like description) and
//! that workload's security group. privbucket borrows all of it: after `down`, every borrowed
//! resource reads back through the SDK exactly as it did before `up`.
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification, VpcEndpointType};

use crate::common::proxy::Fault;
use crate::common::{REGION, World, bucket};

/// What the test built, by ID.
pub(crate) struct LandingZone {
    pub(crate) vpc: String,
    /// On the main route table; on a table with an internet route; on the endpoint's table.
    pub(crate) subnets: [String; 3],
    pub(crate) main_table: String,
    pub(crate) internet_table: String,
    pub(crate) endpoint_table: String,
    /// The S3 Gateway endpoint that was there before privbucket, if built.
    pub(crate) endpoint: Option<String>,
    pub(crate) other_eni: String,
    pub(crate) other_group: String,
}

fn tags(kind: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .tags(Tag::builder().key("Name").value(name).build())
        .tags(Tag::builder().key("team").value("platform").build())
        .build()
}

fn vpc_filter(vpc: &str) -> Filter {
    Filter::builder().name("vpc-id").values(vpc).build()
}

impl LandingZone {
    /// Builds it; `endpoint`: with the S3 Gateway endpoint already on the third table.
    pub(crate) async fn build(w: &World, endpoint: bool) -> LandingZone {
        let ec2 = &w.aws.ec2;
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.50.0.0/16")
            .tag_specifications(tags(ResourceType::Vpc, "landing-zone"))
            .send()
            .await
            .unwrap()
            .vpc()
            .unwrap()
            .vpc_id()
            .unwrap()
            .to_string();
        let mut subnets = Vec::new();
        for (i, zone) in ["a", "b", "a"].iter().enumerate() {
            let s = ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block(format!("10.50.{}.0/24", i + 1))
                .availability_zone(format!("{REGION}{zone}"))
                .tag_specifications(tags(ResourceType::Subnet, &format!("workloads-{i}")))
                .send()
                .await
                .unwrap();
            subnets.push(s.subnet().unwrap().subnet_id().unwrap().to_string());
        }
        let tables = ec2
            .describe_route_tables()
            .filters(vpc_filter(&vpc))
            .send()
            .await
            .unwrap();
        let main_table = tables.route_tables()[0]
            .route_table_id()
            .unwrap()
            .to_string();
        let new_table = |name: &'static str| {
            let vpc = vpc.clone();
            async move {
                ec2.create_route_table()
                    .vpc_id(vpc)
                    .tag_specifications(tags(ResourceType::RouteTable, name))
                    .send()
                    .await
                    .unwrap()
                    .route_table()
                    .unwrap()
                    .route_table_id()
                    .unwrap()
                    .to_string()
            }
        };
        let internet_table = new_table("egress").await;
        let endpoint_table = new_table("s3-served").await;
        let igw = ec2
            .create_internet_gateway()
            .send()
            .await
            .unwrap()
            .internet_gateway()
            .unwrap()
            .internet_gateway_id()
            .unwrap()
            .to_string();
        ec2.attach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap();
        ec2.create_route()
            .route_table_id(&internet_table)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&igw)
            .send()
            .await
            .unwrap();
        for (table, subnet) in [
            (&internet_table, &subnets[1]),
            (&endpoint_table, &subnets[2]),
        ] {
            ec2.associate_route_table()
                .route_table_id(table)
                .subnet_id(subnet)
                .send()
                .await
                .unwrap();
        }
        let endpoint = if endpoint {
            let policy = serde_json::json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [
                        format!("arn:aws:s3:::{}", bucket()),
                        format!("arn:aws:s3:::{}/*", bucket()),
                        "arn:aws:s3:::landing-zone-logs",
                        "arn:aws:s3:::landing-zone-logs/*"
                    ]
                }]
            });
            let e = ec2
                .create_vpc_endpoint()
                .vpc_id(&vpc)
                .service_name(format!("com.amazonaws.{REGION}.s3"))
                .vpc_endpoint_type(VpcEndpointType::Gateway)
                .route_table_ids(&endpoint_table)
                .policy_document(policy.to_string())
                .tag_specifications(tags(ResourceType::VpcEndpoint, "s3"))
                .send()
                .await
                .unwrap();
            Some(
                e.vpc_endpoint()
                    .unwrap()
                    .vpc_endpoint_id()
                    .unwrap()
                    .to_string(),
            )
        } else {
            None
        };
        let other_group = ec2
            .create_security_group()
            .group_name("other-workload")
            .description("another team's workload")
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap()
            .group_id()
            .unwrap()
            .to_string();
        // Described as Lambda describes its own: only the group tells it apart.
        let other_eni = ec2
            .create_network_interface()
            .subnet_id(&subnets[0])
            .groups(&other_group)
            .description("AWS Lambda VPC ENI-other-workload")
            .send()
            .await
            .unwrap()
            .network_interface()
            .unwrap()
            .network_interface_id()
            .unwrap()
            .to_string();
        LandingZone {
            vpc,
            subnets: [subnets[0].clone(), subnets[1].clone(), subnets[2].clone()],
            main_table,
            internet_table,
            endpoint_table,
            endpoint,
            other_eni,
            other_group,
        }
    }

    /// Every borrowed resource as the SDK reads it, sorted by ID: VPC, subnets, route tables
    /// (routes, associations, tags), endpoints (policy, route tables, tags), ENIs, groups.
    pub(crate) async fn snapshot(&self, w: &World) -> String {
        let ec2 = &w.aws.ec2;
        let f = || vpc_filter(&self.vpc);
        let vpcs = ec2.describe_vpcs().vpc_ids(&self.vpc).send().await.unwrap();
        let mut subnets = ec2
            .describe_subnets()
            .filters(f())
            .send()
            .await
            .unwrap()
            .subnets()
            .to_vec();
        subnets.sort_by_key(|s| s.subnet_id().map(str::to_string));
        let mut tables = ec2
            .describe_route_tables()
            .filters(f())
            .send()
            .await
            .unwrap()
            .route_tables()
            .to_vec();
        tables.sort_by_key(|t| t.route_table_id().map(str::to_string));
        let mut endpoints: Vec<String> = ec2
            .describe_vpc_endpoints()
            .filters(f())
            .send()
            .await
            .unwrap()
            .vpc_endpoints()
            .iter()
            .filter(|e| {
                e.state().map(|s| s.as_str().to_ascii_lowercase()) != Some("deleted".into())
            })
            .map(|e| {
                let mut tables: Vec<&String> = e.route_table_ids().iter().collect();
                tables.sort();
                format!(
                    "{:?} {:?} {:?} {tables:?} {:?}",
                    e.vpc_endpoint_id(),
                    e.service_name(),
                    e.policy_document(),
                    e.tags()
                )
            })
            .collect();
        endpoints.sort();
        let mut enis = ec2
            .describe_network_interfaces()
            .filters(f())
            .send()
            .await
            .unwrap()
            .network_interfaces()
            .to_vec();
        enis.sort_by_key(|e| e.network_interface_id().map(str::to_string));
        let mut groups = ec2
            .describe_security_groups()
            .filters(f())
            .send()
            .await
            .unwrap()
            .security_groups()
            .to_vec();
        groups.sort_by_key(|g| g.group_id().map(str::to_string));
        format!(
            "{:#?}\n{subnets:#?}\n{tables:#?}\n{endpoints:#?}\n{enis:#?}\n{groups:#?}",
            vpcs.vpcs()
        )
    }

    pub(crate) fn subnet_list(&self) -> String {
        self.subnets.join(",")
    }
}

/// Nothing of the stack is left (its bucket, roles, functions and group; the state file),
/// and the landing zone reads as it did before.
async fn assert_only_the_landing_zone(w: &World, lz: &LandingZone, before: &str, context: &str) {
    assert!(w.buckets().await.is_empty(), "{context}: buckets left");
    assert!(w.roles().await.is_empty(), "{context}: roles left");
    assert!(w.functions().await.is_empty(), "{context}: functions left");
    assert!(
        !w.state_path().exists(),
        "{context}: the state file is left"
    );
    let after = lz.snapshot(w).await;
    assert!(
        after == before,
        "{context}: the landing zone changed:\n--- before\n{before}\n--- after\n{after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_in_a_landing_zone_borrows_its_network_and_down_leaves_it_as_it_was() {
    let w = World::new().await;
    let lz = LandingZone::build(&w, true).await;
    let before = lz.snapshot(&w).await;
    let up = w
        .run(&["up", "--vpc", &lz.vpc, "--subnets", &lz.subnet_list()])
        .await;
    up.expect(0);
    assert!(
        up.text()
            .contains(&format!("main route table {}", lz.main_table)),
        "up did not say the main route table is changed for every subnet on it:\n{}",
        up.text()
    );
    let existing = lz.endpoint.clone().unwrap();
    // No endpoint of its own: the VPC's serves the third table, and takes the other two.
    let ec2 = &w.aws.ec2;
    let endpoints = ec2
        .describe_vpc_endpoints()
        .filters(vpc_filter(&lz.vpc))
        .send()
        .await
        .unwrap();
    assert_eq!(endpoints.vpc_endpoints().len(), 1, "{endpoints:?}");
    let mut served = endpoints.vpc_endpoints()[0].route_table_ids().to_vec();
    served.sort();
    let mut want = vec![
        lz.main_table.clone(),
        lz.internet_table.clone(),
        lz.endpoint_table.clone(),
    ];
    want.sort();
    assert_eq!(served, want);
    // The uploader runs in the three subnets with the stack's own group, in that VPC.
    let config = w
        .aws
        .lambda
        .get_function_configuration()
        .function_name("privbucket-uploader")
        .send()
        .await
        .unwrap();
    let vpc_config = config.vpc_config().unwrap();
    let mut subnets = vpc_config.subnet_ids().to_vec();
    subnets.sort();
    let mut want = lz.subnets.to_vec();
    want.sort();
    assert_eq!(subnets, want);
    let group = vpc_config.security_group_ids()[0].clone();
    assert_ne!(group, lz.other_group);
    let g = ec2
        .describe_security_groups()
        .group_ids(&group)
        .send()
        .await
        .unwrap();
    assert_eq!(g.security_groups()[0].vpc_id(), Some(lz.vpc.as_str()));
    // The bucket takes writes only through that endpoint.
    let policy = w
        .aws
        .s3
        .get_bucket_policy()
        .bucket(bucket())
        .send()
        .await
        .unwrap();
    assert!(
        policy.policy().unwrap().contains(&existing),
        "{:?}",
        policy.policy()
    );
    // The state says whose each thing is.
    let state = w.state();
    assert_eq!(state["resources"]["vpc"]["ownership"], "borrowed");
    assert_eq!(state["resources"]["endpoint"]["ownership"], "borrowed");
    assert!(state["resources"].get("security-group").unwrap()["ownership"].is_null());

    let status = w.run(&["status"]).await;
    status.expect(0);
    assert!(status.stdout.contains("(borrowed)"), "{}", status.stdout);
    let verify = w.run(&["verify"]).await;
    verify.expect(0);
    assert!(
        verify.stdout.contains("information:") && verify.stdout.contains("more specific"),
        "verify did not say the internet route leaves S3 on the endpoint:\n{}",
        verify.stdout
    );
    let diagram = w.run(&["diagram"]).await;
    diagram.expect(0);
    for want in [&lz.main_table, &existing, &lz.vpc] {
        assert!(
            diagram.stdout.contains(want.as_str()),
            "{want}: {}",
            diagram.stdout
        );
    }
    assert!(
        diagram.stdout.contains("main route table") && diagram.stdout.contains("borrowed"),
        "{}",
        diagram.stdout
    );
    let plan = w.run(&["plan"]).await;
    plan.expect(0);
    assert!(plan.stdout.contains("(borrowed)"), "{}", plan.stdout);
    let list = w.run(&["list"]).await;
    list.expect(0);
    let row = crate::common::line(&list.stdout, "privbucket ");
    assert!(
        row.contains(&format!("{} (borrowed)", lz.vpc))
            && row.contains("yes")
            && row.contains("agrees"),
        "{}",
        list.stdout
    );
    // A second `up` changes nothing.
    w.proxy.clear();
    w.run(&["up"]).await.expect(0);
    let writes = w.proxy.writes();
    assert!(writes.is_empty(), "a second up wrote: {writes:#?}");

    let down = w.run(&["down", "--yes"]).await;
    down.expect(0);
    // The other workload's ENI, described as Lambda's, is still there.
    let enis = ec2
        .describe_network_interfaces()
        .network_interface_ids(&lz.other_eni)
        .send()
        .await
        .unwrap();
    assert_eq!(enis.network_interfaces().len(), 1);
    assert_only_the_landing_zone(&w, &lz, &before, "after down").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_state_file_the_stack_is_found_by_what_privbucket_made() {
    let w = World::new().await;
    let lz = LandingZone::build(&w, true).await;
    let existing = lz.endpoint.clone().unwrap();
    // A subnet on the table the endpoint already serves: `up` adds no route table anywhere
    // (which route tables it added, only the state file knows).
    let before = lz.snapshot(&w).await;
    w.run(&["up", "--vpc", &lz.vpc, "--subnets", &lz.subnets[2]])
        .await
        .expect(0);
    std::fs::remove_file(w.state_path()).unwrap();
    let status = w.run(&["status", "--name", "privbucket"]).await;
    status.expect(0);
    assert!(
        status.stdout.contains(&lz.vpc) && status.stdout.contains(&existing),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("(borrowed)"), "{}", status.stdout);
    w.run(&["down", "--name", "privbucket", "--yes"])
        .await
        .expect(0);
    assert_only_the_landing_zone(&w, &lz, &before, "after down --name").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_borrowed_endpoint_whose_policy_shuts_the_uploader_out_is_reported_not_changed() {
    let w = World::new().await;
    let lz = LandingZone::build(&w, true).await;
    let existing = lz.endpoint.clone().unwrap();
    let narrow = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*",
                       "Resource": ["arn:aws:s3:::landing-zone-logs/*"]}]
    })
    .to_string();
    w.aws
        .ec2
        .modify_vpc_endpoint()
        .vpc_endpoint_id(&existing)
        .policy_document(&narrow)
        .send()
        .await
        .unwrap();
    let before = lz.snapshot(&w).await;
    let up = w
        .run(&["up", "--vpc", &lz.vpc, "--subnets", &lz.subnets[2]])
        .await;
    // Nothing the uploader could use is built on it; the statement to add is named.
    up.expect(3);
    assert!(
        up.stderr.contains("is borrowed") && up.stderr.contains("PrivbucketUploader"),
        "{}",
        up.stderr
    );
    assert!(
        up.text().contains("all in zone"),
        "one zone only was not warned of:\n{}",
        up.text()
    );
    let status = w.run(&["status"]).await;
    status.expect(1);
    assert!(
        status.stdout.contains("does not let the uploader"),
        "{}",
        status.stdout
    );
    w.run(&["down", "--yes"]).await.expect(0);
    assert_only_the_landing_zone(&w, &lz, &before, "after down").await;
}

/// Runs `up` (or `down`) of one of two stacks sharing a VPC.
async fn stack(w: &World, name: &str, args: &[&str]) -> crate::common::Run {
    let state = w.dir.path().join(format!("{name}.json"));
    let state = state.to_str().unwrap();
    let mut all = vec![args[0], "--state", state];
    all.extend_from_slice(&args[1..]);
    if args[0] == "up" {
        all.extend_from_slice(&["--name", name]);
    }
    w.run(&all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_share_the_endpoint_privbucket_made_and_the_last_one_deletes_it() {
    for first in ["one", "two"] {
        let w = World::new().await;
        let lz = LandingZone::build(&w, false).await;
        let before = lz.snapshot(&w).await;
        let subnets = format!("{},{}", lz.subnets[0], lz.subnets[1]);
        for name in ["one", "two"] {
            stack(&w, name, &["up", "--vpc", &lz.vpc, "--subnets", &subnets])
                .await
                .expect(0);
        }
        let endpoints = w
            .aws
            .ec2
            .describe_vpc_endpoints()
            .filters(vpc_filter(&lz.vpc))
            .send()
            .await
            .unwrap();
        assert_eq!(
            endpoints.vpc_endpoints().len(),
            1,
            "the second stack did not share the first one's endpoint: {endpoints:?}"
        );
        let second = if first == "one" { "two" } else { "one" };
        stack(&w, first, &["down", "--yes"]).await.expect(0);
        stack(&w, second, &["status"]).await.expect(0);
        let verify = stack(&w, second, &["verify"]).await;
        assert_eq!(verify.code, 0, "{}", verify.stdout);
        stack(&w, second, &["down", "--yes"]).await.expect(0);
        let after = lz.snapshot(&w).await;
        assert!(
            after == before,
            "{first} down first: the landing zone changed:\n{before}\n---\n{after}"
        );
        assert!(w.buckets().await.is_empty() && w.functions().await.is_empty());
    }
}

/// The route tables an endpoint serves, sorted.
async fn tables_of(w: &World, endpoint: &str) -> Vec<String> {
    let mut tables = w.endpoint_of(endpoint).await.route_table_ids().to_vec();
    tables.sort();
    tables
}

/// Two stacks on the platform team's endpoint, which serves neither's tables before them: the
/// first adds them, the second finds them served. Whichever goes down first, the other keeps
/// its route to S3 (`status` and `verify` pass), and the last gives the tables back. Both on
/// the same two subnets, and each on a subnet of its own on the VPC's main table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacks_on_a_borrowed_endpoint_leave_each_other_working_whichever_goes_first() {
    for (layout, first) in [
        ("the same subnets", "a"),
        ("the same subnets", "b"),
        ("the main table", "a"),
        ("the main table", "b"),
    ] {
        let w = World::new().await;
        let lz = LandingZone::build(&w, true).await;
        let endpoint = lz.endpoint.clone().unwrap();
        // The platform team's endpoint lets every bucket through, these stacks' included.
        let everything = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}]
        });
        w.aws
            .ec2
            .modify_vpc_endpoint()
            .vpc_endpoint_id(&endpoint)
            .policy_document(everything.to_string())
            .send()
            .await
            .unwrap();
        let a_subnets = format!("{},{}", lz.subnets[0], lz.subnets[1]);
        let b_subnets = if layout == "the same subnets" {
            a_subnets.clone()
        } else {
            // A fourth subnet with no association of its own: on the main table, as the first.
            let s = w
                .aws
                .ec2
                .create_subnet()
                .vpc_id(&lz.vpc)
                .cidr_block("10.50.9.0/24")
                .availability_zone(format!("{REGION}b"))
                .tag_specifications(tags(ResourceType::Subnet, "workloads-9"))
                .send()
                .await
                .unwrap();
            format!(
                "{},{}",
                s.subnet().unwrap().subnet_id().unwrap(),
                lz.subnets[1]
            )
        };
        let before = lz.snapshot(&w).await;
        let context = format!("{layout}, {first} down first");
        stack(&w, "a", &["up", "--vpc", &lz.vpc, "--subnets", &a_subnets])
            .await
            .expect(0);
        stack(&w, "b", &["up", "--vpc", &lz.vpc, "--subnets", &b_subnets])
            .await
            .expect(0);
        let mut served = vec![
            lz.endpoint_table.clone(),
            lz.internet_table.clone(),
            lz.main_table.clone(),
        ];
        served.sort();
        assert_eq!(tables_of(&w, &endpoint).await, served, "{context}");
        if first == "a" {
            claim_removed_behind_its_back_is_put_back(&w, &lz).await;
        }
        let second = if first == "a" { "b" } else { "a" };
        let down = stack(&w, first, &["down", "--yes"]).await;
        down.expect(0);
        assert!(
            !down.stdout.contains("nothing is left"),
            "{context}: the tables privbucket added stay, yet down said nothing is left:\n{}",
            down.stdout
        );
        assert_eq!(
            tables_of(&w, &endpoint).await,
            served,
            "{context}: the other stack's tables were taken off the endpoint"
        );
        stack(&w, second, &["status"]).await.expect(0);
        let verify = stack(&w, second, &["verify"]).await;
        assert_eq!(verify.code, 0, "{context}: {}", verify.stdout);
        stack(&w, second, &["down", "--yes"]).await.expect(0);
        let after = lz.snapshot(&w).await;
        assert!(
            after == before,
            "{context}: the landing zone changed:\n{before}\n---\n{after}"
        );
        assert!(w.buckets().await.is_empty() && w.functions().await.is_empty());
    }
}

/// A stack made before shares were recorded (its state without the tables it found served,
/// its group without claims) takes its share at its next `up`, and the other stack's `down`
/// then leaves it working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_made_before_shares_were_recorded_takes_its_share_at_its_next_up() {
    let w = World::new().await;
    let lz = LandingZone::build(&w, true).await;
    let endpoint = lz.endpoint.clone().unwrap();
    let everything = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}]
    });
    w.aws
        .ec2
        .modify_vpc_endpoint()
        .vpc_endpoint_id(&endpoint)
        .policy_document(everything.to_string())
        .send()
        .await
        .unwrap();
    let before = lz.snapshot(&w).await;
    let subnets = lz.subnets[..2].join(",");
    for name in ["a", "b"] {
        stack(&w, name, &["up", "--vpc", &lz.vpc, "--subnets", &subnets])
            .await
            .expect(0);
    }
    // Stack b as the previous release left it.
    let path = w.dir.path().join("b.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(state["resources"]["endpoint"]["facts"]["endpoint"]["added_route_tables"].is_array());
    state["resources"]["endpoint"]["facts"]["endpoint"]["added_route_tables"] =
        serde_json::json!([]);
    std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let group = state["resources"]["security-group"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for table in [&lz.main_table, &lz.internet_table] {
        w.aws
            .ec2
            .delete_tags()
            .resources(&group)
            .tags(
                Tag::builder()
                    .key(format!("privbucket:added-route-table:{table}"))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    for _ in 0..2 {
        stack(&w, "b", &["up", "--vpc", &lz.vpc, "--subnets", &subnets])
            .await
            .expect(0);
    }
    stack(&w, "b", &["status"]).await.expect(0);
    stack(&w, "a", &["down", "--yes"]).await.expect(0);
    let mut served = vec![
        lz.endpoint_table.clone(),
        lz.internet_table.clone(),
        lz.main_table.clone(),
    ];
    served.sort();
    assert_eq!(tables_of(&w, &endpoint).await, served);
    stack(&w, "b", &["status"]).await.expect(0);
    stack(&w, "b", &["down", "--yes"]).await.expect(0);
    let after = lz.snapshot(&w).await;
    assert!(
        after == before,
        "the landing zone changed:\n{before}\n---\n{after}"
    );
}

/// The tag by which stack `a`'s group claims the main table on the endpoint, deleted behind
/// privbucket's back: `status` names it, `up` puts it back.
async fn claim_removed_behind_its_back_is_put_back(w: &World, lz: &LandingZone) {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.dir.path().join("a.json")).unwrap()).unwrap();
    let group = state["resources"]["security-group"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = format!("privbucket:added-route-table:{}", lz.main_table);
    let claim =
        |g: &aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsOutput| {
            tag_of(g.security_groups()[0].tags(), &key)
        };
    let read = || {
        w.aws
            .ec2
            .describe_security_groups()
            .group_ids(&group)
            .send()
    };
    assert_eq!(claim(&read().await.unwrap()), lz.endpoint.clone(), "{key}");
    w.aws
        .ec2
        .delete_tags()
        .resources(&group)
        .tags(Tag::builder().key(&key).build())
        .send()
        .await
        .unwrap();
    let status = stack(w, "a", &["status"]).await;
    assert_eq!(status.code, 1, "{}", status.stdout);
    assert!(status.stdout.contains(&key), "{}", status.stdout);
    stack(
        w,
        "a",
        &[
            "up",
            "--vpc",
            &lz.vpc,
            "--subnets",
            &lz.subnets[..2].join(","),
        ],
    )
    .await
    .expect(0);
    assert_eq!(claim(&read().await.unwrap()), lz.endpoint.clone(), "{key}");
    stack(w, "a", &["status"]).await.expect(0);
}

fn tag_of(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value().map(str::to_string))
}

/// Four stacks share the endpoint the first one made in a VPC without one; their `down`s run
/// at once, as a pipeline tearing down preview stacks does. The last one out deletes the
/// endpoint, and no `down` says nothing is left while it stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacks_torn_down_at_once_leave_no_endpoint_behind() {
    let w = World::new().await;
    let lz = LandingZone::build(&w, false).await;
    let before = lz.snapshot(&w).await;
    let subnets = format!("{},{}", lz.subnets[0], lz.subnets[1]);
    let names = ["sv1", "sv2", "sv3", "sv4"];
    for name in names {
        stack(&w, name, &["up", "--vpc", &lz.vpc, "--subnets", &subnets])
            .await
            .expect(0);
    }
    let down = |name| stack(&w, name, &["down", "--yes"]);
    let (d1, d2, d3, d4) = tokio::join!(down("sv1"), down("sv2"), down("sv3"), down("sv4"));
    for d in [&d1, &d2, &d3, &d4] {
        d.expect(0);
        if d.stdout.contains("nothing is left") {
            assert!(!d.stdout.contains("shared"), "{}", d.stdout);
        }
    }
    let after = lz.snapshot(&w).await;
    assert!(
        after == before,
        "the endpoint privbucket made is left behind:\n{before}\n---\n{after}"
    );
    assert!(w.buckets().await.is_empty() && w.functions().await.is_empty());
}

/// A state whose borrowed VPC is edited into a made one (its `ownership` removed) is refused as
/// a record of another team's resource is: borrowed stays borrowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_borrowed_vpc_edited_into_a_made_one_is_refused_and_the_landing_zone_kept() {
    let w = World::new().await;
    let lz = LandingZone::build(&w, true).await;
    let before = lz.snapshot(&w).await;
    w.run(&["up", "--vpc", &lz.vpc, "--subnets", &lz.subnet_list()])
        .await
        .expect(0);
    let original = std::fs::read(w.state_path()).unwrap();
    let mut state = w.state();
    state["resources"]["vpc"]
        .as_object_mut()
        .unwrap()
        .remove("ownership");
    std::fs::write(w.state_path(), serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let edited = std::fs::read(w.state_path()).unwrap();
    for args in [&["up"][..], &["down", "--yes"][..]] {
        w.proxy.clear();
        let r = w.run(args).await;
        r.expect(2);
        assert!(r.stderr.contains(&lz.vpc), "{}", r.stderr);
        assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
        assert_eq!(std::fs::read(w.state_path()).unwrap(), edited);
    }
    let status = w.run(&["status"]).await;
    assert_eq!(status.code, 1, "{}", status.stdout);
    assert!(
        status.stdout.contains("not the stack's"),
        "{}",
        status.stdout
    );
    std::fs::write(w.state_path(), original).unwrap();
    w.run(&["down", "--yes"]).await.expect(0);
    assert_only_the_landing_zone(&w, &lz, &before, "after down").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_that_is_not_there_or_not_one_is_refused_before_any_write() {
    let w = World::new().await;
    let lz = LandingZone::build(&w, true).await;
    let other = LandingZone::build(&w, false).await;
    // A VPC of another region: made there by the test's own client.
    let west = aws_sdk_ec2::Client::from_conf(
        w.aws
            .ec2
            .config()
            .to_builder()
            .region(aws_sdk_ec2::config::Region::new("us-west-2"))
            .build(),
    );
    let far = west
        .create_vpc()
        .cidr_block("10.60.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    let two_vpcs = format!("{},{}", lz.subnets[0], other.subnets[0]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["up", "--vpc", &far, "--subnets", &lz.subnets[0]],
            "does not exist in account",
        ),
        (
            vec!["up", "--vpc", &lz.vpc, "--subnets", &two_vpcs],
            &other.vpc,
        ),
        (
            vec![
                "up",
                "--vpc",
                &lz.vpc,
                "--subnets",
                "subnet-0123456789abcdef0",
            ],
            "subnet subnet-0123456789abcdef0 (--subnets) does not exist",
        ),
        (
            vec![
                "up",
                "--vpc",
                &lz.vpc,
                "--subnets",
                &lz.subnets[0],
                "--vpc-cidr",
                "10.0.0.0/16",
            ],
            "--vpc-cidr",
        ),
        (vec!["up", "--subnets", &lz.subnets[0]], "--vpc"),
        (
            vec!["up", "--vpc", "vpc-nothex", "--subnets", &lz.subnets[0]],
            "invalid --vpc",
        ),
    ];
    for (args, want) in cases {
        w.proxy.clear();
        let r = w.refused(&args, want).await;
        let writes = w.proxy.writes();
        assert!(writes.is_empty(), "`{}` wrote: {writes:#?}", r.cmd);
        assert!(!w.state_path().exists(), "`{}` wrote a state file", r.cmd);
    }
}

/// How many calls a clean `up` in the landing zone makes.
async fn up_calls() -> usize {
    let w = World::new().await;
    let lz = LandingZone::build(&w, true).await;
    w.proxy.clear();
    w.run(&["up", "--vpc", &lz.vpc, "--subnets", &lz.subnet_list()])
        .await
        .expect(0);
    w.proxy.calls().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_or_a_refusal_at_any_call_of_up_then_down_leaves_the_landing_zone_as_it_was() {
    let calls = up_calls().await;
    let (mut killed, mut refused) = (0, 0);
    for n in 1..=calls {
        for fault in [Fault::KillAfter, Fault::Deny] {
            let w = World::new().await;
            let lz = LandingZone::build(&w, true).await;
            let before = lz.snapshot(&w).await;
            let kill = matches!(fault, Fault::KillAfter);
            w.proxy.set_faults(move |i, _| {
                if i != n {
                    Fault::None
                } else if kill {
                    Fault::KillAfter
                } else {
                    Fault::Deny
                }
            });
            let run = w
                .run(&["up", "--vpc", &lz.vpc, "--subnets", &lz.subnet_list()])
                .await;
            w.proxy.no_faults();
            // A refused read the run can do without (it reads again later) ends in exit 0.
            let denied = w.proxy.calls().iter().any(|c| c.status == 403);
            match (kill, run.code) {
                (true, -1) => killed += 1,
                (false, 3) if denied => refused += 1,
                (false, 0) if denied => refused += 1,
                (_, 0) => {}
                (_, code) => panic!("`{}` after call {n}: exit {code}:\n{}", run.cmd, run.stderr),
            }
            let context = format!("{fault:?} at call {n} of up, then down");
            let down = w.run(&["down", "--yes"]).await;
            assert_eq!(down.code, 0, "{context}: {}", down.stderr);
            assert_only_the_landing_zone(&w, &lz, &before, &context).await;
        }
    }
    assert!(
        killed + 2 >= calls,
        "only {killed} of {calls} runs were killed"
    );
    assert!(
        refused + 2 >= calls,
        "only {refused} of {calls} calls were refused"
    );
    eprintln!("landing zone: crash points {killed}, refusals {refused} of {calls} calls");
}
