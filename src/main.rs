//! Thin binary: parse flags, validate them, run the command, own the exit code.
use std::process::ExitCode;

use clap::Parser;
use privbucket::cli::Cli;
use privbucket::error;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    match runtime.block_on(privbucket::execute(config)) {
        Ok(code) => code,
        Err(e) => error::report(&e),
    }
}
