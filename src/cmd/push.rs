//! `facegate push FILE`: plays the central server, publishing a gallery export's
//! operations to `{prefix}/ops/{client}` of the configured broker (docs/sync.md).

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use facegate::config::Config;
use facegate::gallery::read_export;
use facegate::sync::SyncOptions;

#[derive(Args, Debug)]
pub struct PushArgs {
    /// An export file (`facegate gallery export`).
    file: PathBuf,
    /// Seconds to wait for the broker's acknowledgements.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

pub fn run(config: &Config, args: &PushArgs) -> anyhow::Result<ExitCode> {
    let options = SyncOptions::from_config(config)
        .context("[sync]")?
        .context("no broker: set [sync] url or FACEGATE_MQTT_URL")?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let (header, ops) =
        read_export(BufReader::new(file)).with_context(|| args.file.display().to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let n = runtime.block_on(facegate::sync::push(
        &options,
        &ops,
        Duration::from_secs(args.timeout),
    ))?;
    println!(
        "pushed {n} operation(s) of {}/{} ({} user(s))",
        header.client, header.gallery, header.users
    );
    Ok(ExitCode::SUCCESS)
}
