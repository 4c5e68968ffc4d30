//! `facegate sync request-snapshot --client C --gallery G`: asks the central server
//! (`facegate push --serve-snapshots`) for the full state of a gallery on behalf of this
//! device (its `[sync]` configuration); the running daemon applies the answer.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use facegate::config::Config;
use facegate::sync::SyncOptions;

#[derive(Subcommand, Debug)]
pub enum SyncCommand {
    /// Ask the central server for a snapshot of a gallery (docs/sync.md, "Snapshots").
    RequestSnapshot(RequestArgs),
}

#[derive(Args, Debug)]
pub struct RequestArgs {
    #[arg(long)]
    client: String,
    #[arg(long)]
    gallery: String,
    /// Seconds to wait for the broker's acknowledgement.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

pub fn run(config: &Config, command: &SyncCommand) -> anyhow::Result<ExitCode> {
    let options = SyncOptions::from_config(config)
        .context("[sync]")?
        .context("no broker: set [sync] url or FACEGATE_MQTT_URL")?;
    match command {
        SyncCommand::RequestSnapshot(a) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            let request = runtime.block_on(facegate::sync::request_snapshot(
                &options,
                &a.client,
                &a.gallery,
                Duration::from_secs(a.timeout),
            ))?;
            println!(
                "requested a snapshot of {}/{} for device {} (request {})",
                request.client, request.gallery, request.device, request.request_id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
