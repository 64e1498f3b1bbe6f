//! The integration tests, in one binary: the AWS SDK is linked once, not once per file (as
//! ripgrep lays out its tests). Each module is one area; `common` is the harness. Run one
//! test with `cargo test --test integration NAME`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "a test that meets the unexpected should stop there, loudly; a test reads as one \
              scenario, top to bottom, however long"
)]
mod common;

mod architecture;
mod bad_input;
mod crowded;
mod edges;
mod enforcement;
mod evidence;
mod hardening;
mod install;
mod kms;
mod lifecycle;
mod list;
mod migration;
mod own_function;
mod own_network;
mod ownership;
mod plan;
mod real_aws;
mod recovery;
mod refusal;
mod shared_state;
mod teardown;
mod verify;
