//! privbucket: a private S3 bucket, writable only from a Lambda function inside a VPC whose
//! traffic reaches S3 through a Gateway VPC endpoint, in one command.
//!
//! # Layout
//! - `cli`       — clap structs (the raw flags) and their conversion into a validated `Config`.
//! - `config`    — validated input: stack name, bucket name, CIDRs, region; every rule lives here
//!   and runs before any AWS call.
//! - `error`     — error policy: `anyhow` throughout; `InputError` (exit 2) and `AwsError`, whose
//!   `Kind` callers branch on (not found, already exists, throttled, ...), classified by code.
//! - `aws`       — one `SdkConfig`, the clients derived from it, the retry and poll helpers.
//! - `state`     — the state: schema (version 2, with the migration of version 1) and
//!   validation; kept in a file (atomic save, an OS lock) or in S3 (conditional writes: a lock
//!   object, compare-and-swap saves).
//! - `stack`     — the desired stack: names derived from the stack name, tags.
//! - `code`      — the user's own function (`up --code`): its settings, checked before any call.
//! - `package`   — the deterministic deployment package built from `--code`.
//! - `graph`     — the steps, what each needs, and the ready-queue that orders them (reversed
//!   for `down`).
//! - `run`       — runs the graph with a `JoinSet`, one state writer, progress events.
//! - `progress`  — indicatif spinners on a terminal, plain lines elsewhere.
//! - `policy`    — the IAM, bucket and endpoint policy documents (scope, admins, TLS Deny),
//!   built with `serde_json`, and their statement-by-statement comparison.
//! - `evaluate`  — a small resource-policy evaluator: what a bucket policy lets through.
//! - `resources` — one module per resource kind, each implementing the one `Contract` (find,
//!   create, observe, fix, delete), with the registry, the EC2 reader and the waiters.
//! - `commands`  — `up`, `plan`, `status`, `verify`, `down`, `invoke`, `list`, `state`,
//!   `force-unlock`: read state, connect, run the graph (or read it), report.
//!
//! Exit codes: 0 success; 1 the command ran and found or left a problem; 2 bad input or an
//! unusable state file (nothing called, nothing changed); 3 an AWS call (or other runtime
//! step) failed.

mod aws;
mod cli;
mod code;
mod commands;
mod config;
mod diagram;
mod error;
mod evaluate;
mod graph;
mod package;
mod policy;
mod policy_cases;
mod progress;
mod resources;
mod run;
mod stack;
mod state;

use std::process::ExitCode;

use clap::Parser;

/// The whole program: parse flags, validate them, run the command, own the exit code. The
/// crate exports nothing else, so the compiler finds dead code.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let config = match cli.into_config() {
        Ok(config) => config,
        Err(e) => return error::report(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return error::report(&anyhow::Error::new(e).context("starting the async runtime"));
        }
    };
    let result = runtime.block_on(commands::execute(config));
    // A question still waiting for its answer on stdin (a blocking read) must not keep the
    // process alive once the command has ended, by a signal or otherwise.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => error::report(&e),
    }
}
