//! `facegate reembed`: re-embed every stored face crop with the configured model.
//! Run it with the daemon stopped (it refuses while `facegate serve` holds the data
//! folder's lock); the daemon rebuilds its index at start. The writes go through the
//! gallery's one write path (src/gallery/commit.rs).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use facegate::config::Config;
use facegate::gallery::{Gallery, Settings};
use facegate::store::DataLock;

#[derive(Args, Debug)]
pub struct ReembedArgs {
    /// Also re-embed templates already made with the current model.
    #[arg(long)]
    force: bool,
}

pub fn run(config: &Config, args: &ReembedArgs) -> anyhow::Result<ExitCode> {
    // The templates it leaves (no crop, a crop this model cannot read) are named in the
    // log, on stderr.
    facegate::telemetry::init(&config.logging)?;
    let data = &config.store.data_dir;
    super::require_store(data, "re-embed")?;
    // The model first: a model that does not load leaves the store untouched.
    let pipeline = Arc::new(super::load_pipeline(config)?);
    let _lock = DataLock::acquire(data).context("facegate reembed")?;
    let store = super::open_store(data, config.store.map_size_mb)?;
    // Through a gallery: its one write path keeps the store and the index consistent.
    let gallery = Gallery::open(Arc::new(store), pipeline, Settings::from_config(config))?;
    let bar = super::progress::bar(0, "re-embedding");
    let report = gallery.reembed_with_progress(args.force, &|done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    gallery.flush()?;
    println!(
        "re-embedded {} template(s) ({} cut from crops of another layout); {} already current; \
         {} without a stored crop and {} with a crop this model cannot read (need \
         re-enrollment, see the log); {} changed meanwhile",
        report.updated,
        report.from_other_layout,
        report.current,
        report.without_crop,
        report.unusable_crop,
        report.changed_meanwhile
    );
    Ok(ExitCode::SUCCESS)
}
