//! Crash safety and fault tolerance: exactly one of every resource, whatever fails and
//! whenever. Faults the emulator does not produce are injected by the proxy; each fault says
//! which AWS behaviour it stands in for (`tests/common/proxy.rs`).
use std::collections::BTreeSet;

use crate::common::World;
use crate::common::proxy::Fault;
use aws_sdk_ec2::types::Filter;

/// Exactly one stack: one VPC besides the default, two subnets, two route tables (besides the
/// VPC's main one), one endpoint, one security group (besides the default), two roles, one
/// bucket, two functions; and the state file names each of them.
pub(crate) async fn assert_exactly_one_stack(w: &World, context: &str) {
    let vpcs = w.vpcs().await;
    assert_eq!(vpcs.len(), 1, "{context}: VPCs {vpcs:?}");
    let vpc = vpcs[0].vpc_id().unwrap().to_string();
    let in_vpc = || Filter::builder().name("vpc-id").values(&vpc).build();
    let ec2 = &w.aws.ec2;
    let subnets = ec2
        .describe_subnets()
        .filters(in_vpc())
        .send()
        .await
        .unwrap();
    assert_eq!(subnets.subnets().len(), 2, "{context}: subnets");
    let tables = ec2
        .describe_route_tables()
        .filters(in_vpc())
        .send()
        .await
        .unwrap();
    let own: Vec<_> = tables
        .route_tables()
        .iter()
        .filter(|t| !t.associations().iter().any(|a| a.main() == Some(true)))
        .collect();
    assert_eq!(own.len(), 2, "{context}: route tables {own:?}");
    for t in &own {
        assert_eq!(
            t.associations().len(),
            1,
            "{context}: associations of {t:?}"
        );
    }
    let eps = ec2.describe_vpc_endpoints().send().await.unwrap();
    let live: Vec<_> = eps
        .vpc_endpoints()
        .iter()
        .filter(|e| e.state().map(|s| s.as_str().to_ascii_lowercase()) != Some("deleted".into()))
        .collect();
    assert_eq!(live.len(), 1, "{context}: endpoints {live:?}");
    let sgs = ec2
        .describe_security_groups()
        .filters(in_vpc())
        .send()
        .await
        .unwrap();
    let own_sgs: Vec<_> = sgs
        .security_groups()
        .iter()
        .filter(|g| g.group_name() != Some("default"))
        .collect();
    assert_eq!(own_sgs.len(), 1, "{context}: security groups {own_sgs:?}");
    assert_eq!(w.roles().await.len(), 2, "{context}: roles");
    assert_eq!(w.buckets().await.len(), 1, "{context}: buckets");
    assert_eq!(w.functions().await.len(), 2, "{context}: functions");

    let state = w.state();
    let res = state["resources"].as_object().unwrap();
    assert_eq!(res.len(), 15, "{context}: state {state:#}");
    assert_eq!(res["vpc"]["id"], vpc.as_str(), "{context}");
    assert_eq!(
        res["endpoint"]["id"],
        live[0].vpc_endpoint_id().unwrap(),
        "{context}"
    );
    assert_eq!(
        res["security-group"]["id"],
        own_sgs[0].group_id().unwrap(),
        "{context}"
    );
    let live_subnets: BTreeSet<String> = subnets
        .subnets()
        .iter()
        .map(|s| s.subnet_id().unwrap().to_string())
        .collect();
    let state_subnets: BTreeSet<String> = ["subnet-a", "subnet-b"]
        .iter()
        .map(|k| res[*k]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(live_subnets, state_subnets, "{context}");
}

/// A deterministic coin per (seed, call): splitmix64.
pub(crate) fn chance(seed: u64, index: usize) -> f64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index as u64)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// How many calls a clean `up` and a clean `down` make.
pub(crate) async fn call_counts() -> (usize, usize) {
    let w = World::new().await;
    w.up().await;
    let up_calls = w.proxy.calls().len();
    w.proxy.clear();
    w.run(&["down", "--yes"]).await.expect(0);
    let down_calls = w.proxy.calls().len();
    w.assert_nothing_left().await;
    (up_calls, down_calls)
}

/// Runs `command` with the binary SIGKILLed right after call `n` reached the emulator; true
/// when it was killed (a run that made fewer calls must have succeeded). Faults are off after.
async fn killed_after_call(w: &World, n: usize, args: &[&str]) -> bool {
    w.proxy.set_faults(move |i, _| {
        if i == n {
            Fault::KillAfter
        } else {
            Fault::None
        }
    });
    let run = w.run(args).await;
    w.proxy.no_faults();
    if run.code == -1 {
        return true;
    }
    run.expect(0);
    false
}

// Each crash point gets a fresh emulator: moto's reset endpoint was seen to hang after a
// client was killed mid-call (and after injected faults).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_call_of_up_leaves_exactly_one_of_everything() {
    let (up_calls, _) = call_counts().await;
    let mut killed = 0;
    for n in 1..=up_calls {
        let w = World::new().await;
        if killed_after_call(&w, n, &["up"]).await {
            killed += 1;
        }
        w.up().await;
        assert_exactly_one_stack(&w, &format!("up killed after call {n}")).await;
        w.run(&["down", "--yes"]).await.expect(0);
        w.assert_nothing_left().await;
    }
    // `up` is concurrent, so a run may make a call or two fewer; nearly every run was killed.
    assert!(
        killed + 2 >= up_calls,
        "only {killed} of {up_calls} runs were killed"
    );
    eprintln!("crash points survived: up {killed} of {up_calls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_any_call_of_down_leaves_nothing_after_the_next_down() {
    let (_, down_calls) = call_counts().await;
    let mut killed = 0;
    for n in 1..=down_calls {
        let w = World::new().await;
        w.up().await;
        w.proxy.clear();
        if killed_after_call(&w, n, &["down", "--yes"]).await {
            killed += 1;
        }
        w.run(&["down", "--yes"]).await.expect(0);
        w.assert_nothing_left().await;
    }
    assert!(
        killed + 2 >= down_calls,
        "only {killed} of {down_calls} downs were killed"
    );
    eprintln!("crash points survived: down {killed} of {down_calls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_and_down_succeed_with_a_fifth_of_calls_throttled_or_failed() {
    for seed in [1u64, 2, 3, 4] {
        // A fresh emulator per seed: moto's reset endpoint was seen to hang after faults.
        let w = World::new().await;
        // Stands in for AWS throttling the account (each service's own error) and for
        // internal errors before a request took effect: 20% of calls, none forwarded.
        w.proxy.set_faults(move |i, _| {
            let c = chance(seed, i);
            if c < 0.10 {
                Fault::Throttle
            } else if c < 0.20 {
                Fault::FailBefore
            } else {
                Fault::None
            }
        });
        w.proxy.clear();
        w.run(&["up"]).await.expect(0);
        let calls = w.proxy.calls();
        let failed = calls.iter().filter(|c| c.status >= 400).count();
        assert!(failed > 0, "seed {seed}: no fault was injected");
        w.proxy.no_faults();
        assert_exactly_one_stack(&w, &format!("seed {seed}")).await;
        w.proxy.set_faults(move |i, _| {
            let c = chance(seed + 100, i);
            if c < 0.10 {
                Fault::Throttle
            } else if c < 0.20 {
                Fault::FailBefore
            } else {
                Fault::None
            }
        });
        w.run(&["down", "--yes"]).await.expect(0);
        w.proxy.no_faults();
        w.assert_nothing_left().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_responses_never_make_a_duplicate() {
    for seed in [11u64, 12, 13, 14] {
        // A fresh emulator per seed: moto's reset endpoint was seen to hang after faults.
        let w = World::new().await;
        // Stands in for a lost response: AWS carried the call out, the caller saw a 500.
        w.proxy.set_faults(move |i, _| {
            if chance(seed, i) < 0.10 {
                Fault::FailAfter
            } else {
                Fault::None
            }
        });
        w.proxy.clear();
        w.run(&["up"]).await.expect(0);
        assert!(
            w.proxy.calls().iter().any(|c| c.status == 500),
            "seed {seed}: no fault"
        );
        w.proxy.no_faults();
        assert_exactly_one_stack(&w, &format!("seed {seed}")).await;
        w.proxy.set_faults(move |i, _| {
            if chance(seed + 100, i) < 0.10 {
                Fault::FailAfter
            } else {
                Fault::None
            }
        });
        w.run(&["down", "--yes"]).await.expect(0);
        w.proxy.no_faults();
        w.assert_nothing_left().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_state_file_is_recovered_by_name_and_other_stacks_are_untouched() {
    let w = World::new().await;
    let beta_state = w.dir.path().join("beta.json");
    let beta_state = beta_state.to_str().unwrap();
    w.up().await;
    w.run(&[
        "--state",
        beta_state,
        "up",
        "--name",
        "beta",
        "--vpc-cidr",
        "10.20.0.0/16",
        "--subnet-cidrs",
        "10.20.0.0/24,10.20.1.0/24",
        "--bucket",
        "beta-custom-bucket",
    ])
    .await
    .expect(0);
    let beta_before = std::fs::read_to_string(beta_state).unwrap();
    let alpha = w.state();
    std::fs::remove_file(w.state_path()).unwrap();

    // `status --name` finds the stack by its tags and names.
    let st = w
        .run(&["status", "--name", "privbucket", "--output", "json"])
        .await;
    st.expect(0);
    let doc = st.json();
    assert_eq!(doc["discovered"], true);
    let found: Vec<(String, String)> = doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["state"], "ok", "{r}");
            (
                r["resource"].as_str().unwrap().into(),
                r["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(found.len(), 15);
    for (key, id) in &found {
        assert_eq!(alpha["resources"][key]["id"], id.as_str(), "{key}");
    }
    assert!(!w.state_path().exists(), "status wrote a state file");

    // `down --name` removes it all, and only it.
    w.run(&["down", "--yes", "--name", "privbucket"])
        .await
        .expect(0);
    assert!(w.stack_vpc("privbucket").await.is_none());
    assert!(!w.state_path().exists());
    assert_eq!(std::fs::read_to_string(beta_state).unwrap(), beta_before);
    w.run(&["--state", beta_state, "status"]).await.expect(0);
    assert_eq!(w.buckets().await, vec!["beta-custom-bucket".to_string()]);
    assert_eq!(w.functions().await.len(), 2);
    assert_eq!(w.vpcs().await.len(), 1);

    // Nothing of the stack left: `status --name` says so.
    let st = w.run(&["status", "--name", "privbucket"]).await;
    st.expect(0);
    assert!(
        st.stdout.contains("no resource of stack privbucket"),
        "{}",
        st.stdout
    );

    // The second stack, its state file lost too, comes down by name, custom bucket included.
    std::fs::remove_file(beta_state).unwrap();
    w.run(&["--state", beta_state, "down", "--yes", "--name", "beta"])
        .await
        .expect(0);
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_blocked_by_a_dependency_are_retried_until_it_goes() {
    let w = World::new().await;
    w.up().await;
    // Stands in for EC2 refusing to delete the security group and a subnet while Lambda's
    // network interfaces still hold them: the first two attempts of each fail.
    let blocked = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let b = blocked.clone();
    w.proxy.set_faults(move |_, call| {
        let code = match call.action.as_str() {
            "DeleteSecurityGroup" => "InvalidGroup.InUse",
            "DeleteSubnet" | "DeleteVpc" => "DependencyViolation",
            _ => return Fault::None,
        };
        let mut seen = b.lock().unwrap();
        let n = seen.entry(call.action.clone()).or_insert(0);
        *n += 1;
        if *n <= 2 {
            Fault::Ec2Error(code)
        } else {
            Fault::None
        }
    });
    let down = w.run(&["down", "--yes", "-v"]).await;
    down.expect(0);
    assert!(
        down.stdout.contains("DependencyViolation"),
        "{}",
        down.stdout
    );
    assert!(
        down.stdout.contains("InvalidGroup.InUse"),
        "{}",
        down.stdout
    );
    w.proxy.no_faults();
    w.assert_nothing_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ups_at_once_one_runs_and_the_other_names_the_lock_holder() {
    let w = World::new().await;
    let a = w.command(&["up"], &[]).output();
    let b = w.command(&["up"], &[]).output();
    let (a, b) = tokio::join!(a, b);
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut codes = [a.status.code(), b.status.code()];
    codes.sort();
    assert_eq!(codes, [Some(0), Some(2)], "{a:?}\n{b:?}");
    let loser = if a.status.code() == Some(2) { &a } else { &b };
    let msg = String::from_utf8_lossy(&loser.stderr);
    assert!(msg.contains("is locked by"), "{msg}");
    assert!(
        msg.contains("(pid ") && msg.contains("`privbucket up`) since"),
        "{msg}"
    );
    assert_exactly_one_stack(&w, "two ups").await;
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}
