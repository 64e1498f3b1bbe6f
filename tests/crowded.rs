//! An account already crowded with other teams' keys, roles, buckets and functions (some
//! keys tagged for other privbucket stacks): privbucket reads its own stack by name, tag
//! filter and alias, never by listing a kind across the account and reading each one, so a
//! stack costs as many calls, and as many round trips, as in an empty account.
//!
//! Round trips are counted through the test proxy, not timed: it holds every call for
//! [`ROUND_TRIP`], far longer than the emulator takes, and counts the longest chain of calls
//! that did not overlap (`proxy::depth`, as `bench/bench.py` does).
use std::time::Duration;

use tokio::task::JoinSet;

use crate::common::proxy::{Fault, depth};
use crate::common::{World, other_function, other_role};

/// What the proxy holds each measured call for: a stand-in for the round trip to AWS.
const ROUND_TRIP: Duration = Duration::from_millis(100);

/// What a command cost, counted at the proxy.
#[derive(Debug)]
struct Cost {
    calls: usize,
    depth: usize,
    /// Each call's service and API, for the failure message.
    apis: Vec<String>,
}

async fn cost(w: &World, args: &[&str]) -> Cost {
    w.proxy.clear();
    w.proxy.set_faults(|_, _| Fault::Delay(ROUND_TRIP));
    let run = w.run(args).await;
    w.proxy.no_faults();
    run.expect(0);
    let calls = w.proxy.calls();
    Cost {
        calls: calls.len(),
        depth: depth(&calls),
        apis: calls
            .iter()
            .map(|c| format!("{} {}", c.service, c.api()))
            .collect(),
    }
}

/// `up --kms-key new`, `status` and `down` of a fresh stack named `name`.
async fn stack_costs(w: &World, name: &str) -> [Cost; 3] {
    [
        cost(w, &["up", "--name", name, "--kms-key", "new"]).await,
        cost(w, &["status"]).await,
        cost(w, &["down", "--yes"]).await,
    ]
}

/// Other teams' resources, made straight in the emulator: `keys` KMS keys (a third of them
/// tagged for other privbucket stacks), `roles` roles, `buckets` buckets and `functions`
/// functions.
async fn crowd(w: &World, keys: usize, roles: usize, buckets: usize, functions: usize) {
    let mut made = JoinSet::new();
    for i in 0..keys {
        let kms = w.aws.kms.clone();
        made.spawn(async move {
            let mut create = kms.create_key().description(format!("team key {i}"));
            if i % 3 == 0 {
                create = create.tags(
                    aws_sdk_kms::types::Tag::builder()
                        .tag_key("privbucket:stack")
                        .tag_value(format!("team-{i}"))
                        .build()
                        .unwrap(),
                );
            }
            create.send().await.unwrap();
        });
    }
    let role = other_role(&w.aws.iam, "team-role-0").await;
    for i in 1..roles {
        let iam = w.aws.iam.clone();
        made.spawn(async move {
            other_role(&iam, &format!("team-role-{i}")).await;
        });
    }
    for i in 0..buckets {
        let s3 = w.aws.s3.clone();
        made.spawn(async move {
            s3.create_bucket()
                .bucket(format!("team-bucket-{i}"))
                .send()
                .await
                .unwrap();
        });
    }
    while let Some(joined) = made.join_next().await {
        joined.unwrap();
    }
    for i in 0..functions {
        let (lambda, role) = (w.aws.lambda.clone(), role.clone());
        made.spawn(async move {
            other_function(&lambda, &format!("team-function-{i}"), &role)
                .send()
                .await
                .unwrap();
        });
    }
    while let Some(joined) = made.join_next().await {
        joined.unwrap();
    }
}

/// Every KMS key of the account, with its state, read page by page.
async fn keys(w: &World) -> Vec<(String, String)> {
    let pages = w.aws.kms.list_keys().into_paginator().items().send();
    let ids: Vec<String> = pages
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap()
        .iter()
        .filter_map(|k| k.key_id().map(str::to_string))
        .collect();
    let mut out = Vec::new();
    for id in ids {
        let meta = w.aws.kms.describe_key().key_id(&id).send().await.unwrap();
        let state = meta.key_metadata().unwrap().key_state().unwrap();
        out.push((id, state.as_str().to_string()));
    }
    out
}

/// How many roles, buckets and functions the account holds, read page by page.
async fn others(w: &World) -> (usize, usize, usize) {
    let roles = w.aws.iam.list_roles().into_paginator().items().send();
    let functions = w
        .aws
        .lambda
        .list_functions()
        .into_paginator()
        .items()
        .send();
    (
        roles.collect::<Result<Vec<_>, _>>().await.unwrap().len(),
        w.buckets().await.len(),
        functions
            .collect::<Result<Vec<_>, _>>()
            .await
            .unwrap()
            .len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_in_an_account_crowded_with_other_teams_resources_costs_what_it_costs_alone() {
    let w = World::new().await;
    // In an empty account: the stack without a key, then one with a key of its own.
    let plain = cost(&w, &["up", "--name", "plain"]).await;
    w.run(&["down", "--yes"]).await.expect(0);
    let alone = stack_costs(&w, "alone").await;
    assert!(
        alone[0].depth <= plain.depth + 1,
        "`up --kms-key new` is {} round trips deep, `up` alone {}: the key is needed only by \
         the bucket's encryption and the uploader's policy, not by the network\n{:?}\n{:?}",
        alone[0].depth,
        plain.depth,
        alone[0].apis,
        plain.apis
    );

    eprintln!("`up`: {} calls, {} deep", plain.calls, plain.depth);
    crowd(&w, 300, 300, 200, 100).await;
    let before = keys(&w).await;
    let crowded = stack_costs(&w, "crowded").await;
    for (i, command) in ["up --kms-key new", "status", "down"].iter().enumerate() {
        let (a, c) = (&alone[i], &crowded[i]);
        eprintln!(
            "`{command}`: {} calls, {} deep alone; {} calls, {} deep crowded",
            a.calls, a.depth, c.calls, c.depth
        );
        assert!(
            c.calls.abs_diff(a.calls) <= 2 && c.depth.abs_diff(a.depth) <= 2,
            "`{command}` made {} calls, {} round trips deep, among {} keys, 300 roles, 200 \
             buckets and 100 functions of other teams; {} calls, {} deep in an empty account\n\
             crowded: {:?}\nalone: {:?}",
            c.calls,
            c.depth,
            before.len(),
            a.calls,
            a.depth,
            c.apis,
            a.apis
        );
    }
    // The others' resources are as they were: the keys in the same states (the one the
    // crowded stack made is new, and pending deletion), and every role, bucket and function.
    let after = keys(&w).await;
    let made: Vec<_> = after.iter().filter(|k| !before.contains(k)).collect();
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].1, "PendingDeletion");
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(others(&w).await, (300, 200, 100));
    assert!(w.stack_vpc("crowded").await.is_none());
    assert!(!w.state_path().exists());
}
