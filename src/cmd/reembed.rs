//! `facegate reembed`: re-embed every stored face crop with the configured model.
//! Run it with the daemon stopped (it refuses while `facegate serve` holds the data
//! folder's lock); the daemon rebuilds its index at start.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use facegate::config::Config;
use facegate::store::{DataLock, Store};

#[derive(Args, Debug)]
pub struct ReembedArgs {
    /// Also re-embed templates already made with the current model.
    #[arg(long)]
    force: bool,
}

pub fn run(config: &Config, args: &ReembedArgs) -> anyhow::Result<ExitCode> {
    let _lock = DataLock::acquire(&config.store.data_dir).context("facegate reembed")?;
    let store = Store::open(&config.store.data_dir, config.store.map_size_mb)
        .with_context(|| format!("data folder {}", config.store.data_dir.display()))?;
    let pipeline = super::load_pipeline(config)?;
    let report = facegate::gallery::reembed(&store, &pipeline, args.force)?;
    println!(
        "re-embedded {} template(s); {} already current; {} without a stored crop (need re-enrollment)",
        report.updated, report.current, report.without_crop
    );
    Ok(ExitCode::SUCCESS)
}
