//! The test proxy with its model of AWS behaviour (`tests/common/aws_model.rs`), on its own,
//! for the benchmark: `bench/bench.py --model` puts it between the binary and the emulator
//! to time `up` and `down` against AWS's events (a function turning Active, Lambda releasing
//! its network interfaces) at realistic relative durations.
//!
//!   cargo run --example model_proxy -- UPSTREAM_PORT KEY=MS ...
//!
//! KEY is one of the behaviours' windows (ec2, iam, lambda-404, pending, s3-new, s3-reuse,
//! enis, update, endpoint). It prints its URL on the first line of stdout and runs until
//! killed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "the test harness, run on its own: it stops loudly on the unexpected, and its \
              model of AWS answers each call in one match"
)]

#[path = "../tests/common/aws_model.rs"]
#[expect(
    dead_code,
    reason = "the tests' set of every behaviour at once is not used here: the windows are given"
)]
mod aws_model;
#[path = "../tests/common/proxy.rs"]
#[expect(
    dead_code,
    reason = "the proxy's test-only parts (faults, the call log's readers) are not used here"
)]
mod proxy;

use std::time::Duration;

use aws_model::Behaviours;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let upstream: u16 = args
        .next()
        .and_then(|p| p.parse().ok())
        .expect("usage: model_proxy UPSTREAM_PORT KEY=MS ...");
    let mut on = Behaviours::default();
    for kv in args {
        let (k, v) = kv.split_once('=').expect("KEY=MS");
        let d = Some(Duration::from_millis(v.parse().expect("milliseconds")));
        match k {
            "ec2" => on.ec2_consistency = d,
            "iam" => on.iam_propagation = d,
            "lambda-404" => on.lambda_not_found = d,
            "pending" => on.lambda_pending = d,
            "s3-new" => on.s3_new_bucket = d,
            "s3-reuse" => on.s3_name_reuse = d,
            "enis" => on.lambda_enis = d,
            "update" => on.lambda_update = d,
            "endpoint" => on.endpoint_pending = d,
            other => panic!("unknown behaviour {other}"),
        }
    }
    let p = proxy::Proxy::start(upstream).await;
    p.model_aws(on);
    println!("{}", p.url);
    std::future::pending::<()>().await;
}
