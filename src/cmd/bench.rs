//! `facegate bench`: filled in below.
use clap::Args;
use facegate::config::Config;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct BenchArgs {}

pub fn run(_config: &Config, _args: &BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("bench is not implemented yet")
}
