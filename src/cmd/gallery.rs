//! `facegate gallery export|import`: a gallery as a versioned file of replication
//! operations (docs/sync.md), to move it between devices, push it to a fleet
//! (`facegate push`) or compare two devices.

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use facegate::config::Config;
use facegate::gallery::{read_export, write_export, Applied, Gallery, Settings};
use facegate::store::DataLock;

#[derive(Subcommand, Debug)]
pub enum GalleryCommand {
    /// Write a gallery (users, embeddings, crops, names) to a file.
    Export(ExportArgs),
    /// Apply an export file to this device's store (as operations from elsewhere:
    /// idempotent, never over newer data, not republished), with the daemon stopped.
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long)]
    client: String,
    #[arg(long)]
    gallery: String,
    /// Output file.
    file: PathBuf,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    file: PathBuf,
}

fn open(config: &Config) -> anyhow::Result<Gallery> {
    let store = Arc::new(super::open_store(
        &config.store.data_dir,
        config.store.map_size_mb,
    )?);
    let pipeline = Arc::new(super::load_pipeline(config)?);
    Ok(Gallery::open(
        store,
        pipeline,
        Settings::from_config(config),
    )?)
}

pub fn run(config: &Config, command: &GalleryCommand) -> anyhow::Result<ExitCode> {
    // An import writes behind a running daemon's index: it would answer "applied" and the
    // daemon would not find the imported users until its next start. An export only reads
    // and may run beside the daemon.
    let _lock = match command {
        GalleryCommand::Import(_) => {
            Some(DataLock::acquire(&config.store.data_dir).context("facegate gallery import")?)
        }
        GalleryCommand::Export(_) => {
            // A read: a mistyped folder must not be created (empty) and exported from.
            super::require_store(&config.store.data_dir, "export")?;
            None
        }
    };
    let gallery = open(config)?;
    match command {
        GalleryCommand::Export(a) => {
            let origin = if config.sync.device_id.is_empty() {
                "export".to_string()
            } else {
                config.sync.device_id.clone()
            };
            let (header, ops) = match gallery.export_ops(&a.client, &a.gallery, &origin) {
                Err(facegate::gallery::Error::GalleryNotFound) => anyhow::bail!(
                    "client {} has no gallery {} in {}",
                    a.client,
                    a.gallery,
                    config.store.data_dir.display()
                ),
                other => other?,
            };
            super::files::replace_durably(&a.file, |out| Ok(write_export(out, &header, &ops)?))?;
            println!("exported {} user(s) to {}", header.users, a.file.display());
        }
        GalleryCommand::Import(a) => {
            let file = std::fs::File::open(&a.file)
                .with_context(|| format!("cannot open {}", a.file.display()))?;
            let (_, ops) = read_export(BufReader::new(file))
                .with_context(|| format!("{}", a.file.display()))?;
            let (mut applied, mut skipped, mut refused) = (0, 0, 0);
            for op in &ops {
                match gallery.apply_op(op)? {
                    Applied::Applied => applied += 1,
                    Applied::Refused(reason) => {
                        refused += 1;
                        eprintln!("refused {}: {reason}", op.op_id);
                    }
                    _ => skipped += 1,
                }
            }
            println!(
                "applied {applied} operation(s); {skipped} already present or older; {refused} refused"
            );
        }
    }
    gallery.flush()?;
    Ok(ExitCode::SUCCESS)
}
