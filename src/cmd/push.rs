//! `facegate push`: plays the central server (docs/sync.md).
//!
//! - `facegate push FILE`: publishes a gallery export's operations to
//!   `{prefix}/ops/{client}` of the configured broker.
//! - `facegate push --photos DIR --client C --gallery G [--export-to FILE]`: makes the
//!   gallery from a folder of photos (see push_photos.rs) and publishes it likewise.
//!   Exit status 0 when at least one user was pushed (skipped photos are reported on
//!   stderr), 1 when no user had a usable photo.
//! - Both send the `gallery_state` operation (removing users absent from the push) only
//!   with `--replace`; `--export-to` files always end with it (full snapshots).
//! - `facegate push --serve-snapshots --from FILE...`: answers the devices' snapshot
//!   requests from export files until SIGTERM or Ctrl-C.

use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use facegate::config::Config;
use facegate::gallery::{
    central_ops, read_export, write_export, ExportHeader, Op, OpKind, EXPORT_FORMAT, EXPORT_VERSION,
};
use facegate::sync::{Catalog, SnapshotEvent, SyncOptions};

#[derive(Args, Debug)]
pub struct PushArgs {
    /// An export file (`facegate gallery export`).
    #[arg(conflicts_with_all = ["photos", "serve_snapshots"])]
    file: Option<PathBuf>,
    /// A folder of photos, one sub-folder per user (DIR/<user_id>/*.jpg|png, optional
    /// name.txt with the display name).
    #[arg(long, requires_all = ["client", "gallery"], conflicts_with = "serve_snapshots")]
    photos: Option<PathBuf>,
    /// Client (tenant) of the gallery made from --photos.
    #[arg(long)]
    client: Option<String>,
    /// Gallery made from --photos.
    #[arg(long)]
    gallery: Option<String>,
    /// With --photos: also write the operations as an export file (for --from).
    #[arg(long, requires = "photos")]
    export_to: Option<PathBuf>,
    /// Answer the devices' snapshot requests from the --from export files until
    /// SIGTERM or Ctrl-C.
    #[arg(long, requires = "from")]
    serve_snapshots: bool,
    /// Export files to serve snapshots of (one gallery each; repeatable).
    #[arg(long)]
    from: Vec<PathBuf>,
    /// Also send the `gallery_state` (last): devices then delete the gallery's users
    /// that are not pushed (older than the push). Default: only the pushed users change.
    #[arg(long, conflicts_with = "serve_snapshots")]
    replace: bool,
    /// Seconds to wait for the broker's acknowledgements.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

fn read_file(path: &PathBuf) -> anyhow::Result<(ExportHeader, Vec<Op>)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read_export(BufReader::new(file)).with_context(|| path.display().to_string())
}

pub fn run(config: &Config, args: &PushArgs) -> anyhow::Result<ExitCode> {
    let options = SyncOptions::from_config(config)
        .context("[sync]")?
        .context("no broker: set [sync] url or FACEGATE_MQTT_URL")?;
    let timeout = Duration::from_secs(args.timeout);
    if args.serve_snapshots {
        return serve_snapshots(&options, &args.from);
    }
    let (header, ops) = match (&args.file, &args.photos) {
        (Some(file), None) => read_file(file)?,
        (None, Some(dir)) => {
            let (Some(client), Some(gallery)) = (&args.client, &args.gallery) else {
                bail!("--photos needs --client and --gallery");
            };
            let pipeline = super::load_pipeline(config)?;
            let photos = super::push_photos::read(config, &pipeline, dir)?;
            eprintln!(
                "{} user(s) from {} photo(s); {} photo(s) and {} user(s) skipped",
                photos.users.len(),
                photos.photos_used,
                photos.photos_skipped,
                photos.users_skipped
            );
            if photos.users.is_empty() {
                eprintln!("nothing to push: no user has a usable photo");
                return Ok(ExitCode::FAILURE);
            }
            let model = pipeline.fingerprint().to_string();
            let header = ExportHeader {
                format: EXPORT_FORMAT.into(),
                version: EXPORT_VERSION,
                client: client.clone(),
                gallery: gallery.clone(),
                model: model.clone(),
                exported_at: facegate::store::now(),
                users: photos.users.len(),
            };
            let ops = central_ops(client, gallery, &options.device_id, &model, photos.users);
            if let Some(path) = &args.export_to {
                super::files::replace_durably(path, |out| Ok(write_export(out, &header, &ops)?))?;
                eprintln!("wrote {}", path.display());
            }
            (header, ops)
        }
        _ => bail!("give an export FILE, --photos DIR or --serve-snapshots (see --help)"),
    };
    let ops: Vec<Op> = ops
        .into_iter()
        .filter(|op| args.replace || !matches!(op.kind, OpKind::GalleryState { .. }))
        .collect();
    let n = runtime()?.block_on(facegate::sync::push(&options, &ops, timeout))?;
    println!(
        "pushed {n} operation(s) of {}/{} ({} user(s))",
        header.client, header.gallery, header.users
    );
    Ok(ExitCode::SUCCESS)
}

fn serve_snapshots(options: &SyncOptions, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut catalog = Catalog::new();
    for path in files {
        let (header, ops) = read_file(path)?;
        println!(
            "snapshot of {}/{}: {} user(s) from {}",
            header.client,
            header.gallery,
            header.users,
            path.display()
        );
        catalog.insert((header.client, header.gallery), ops);
    }
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let stop = async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return stop.await,
            };
        tokio::select! {
            _ = stop => {}
            _ = term.recv() => {}
        }
    };
    runtime()?.block_on(facegate::sync::serve_snapshots(
        options,
        catalog,
        stop,
        |event| match event {
            SnapshotEvent::Listening => {
                println!("listening for snapshot requests on {}", options.broker())
            }
            SnapshotEvent::Served {
                device,
                client,
                gallery,
                operations,
            } => println!("sent {operations} operation(s) of {client}/{gallery} to {device}"),
            SnapshotEvent::UnknownGallery {
                device,
                client,
                gallery,
            } => eprintln!("{device} asked for {client}/{gallery}: not served here"),
            SnapshotEvent::Rejected { topic, reason } => {
                eprintln!("request on {topic} rejected: {reason}")
            }
            SnapshotEvent::ConnectionError(e) => eprintln!("broker {}: {e}", options.broker()),
        },
    ));
    Ok(ExitCode::SUCCESS)
}
