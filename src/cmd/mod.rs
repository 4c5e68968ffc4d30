//! Subcommands. Each lives in its own file; this one holds the command line and the
//! dispatch. `anyhow` is used here, at the binary's edge, and nowhere in the library.

mod bench;
mod bench_index;
mod calibrate;
mod client;
mod compare;
mod config_cmd;
mod eval;
mod files;
mod gallery;
mod progress;
mod push;
mod push_photos;
mod reembed;
mod serve;
mod sync_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use facegate::config::{self, Config};
use facegate::runtime::Runtime;
use facegate::store::Store;
use facegate::vision::Pipeline;

/// `facegate --version`: the version and the optional cargo features built in (release
/// builds have camera-v4l; tests/cross-aarch64.sh checks it).
const VERSION: &str = if cfg!(feature = "camera-v4l") {
    concat!(env!("CARGO_PKG_VERSION"), " (features: camera-v4l)")
} else {
    concat!(env!("CARGO_PKG_VERSION"), " (features: none)")
};

#[derive(Parser, Debug)]
#[command(
    name = "facegate",
    version = VERSION,
    about = "Face recognition for camera kiosks"
)]
pub struct Cli {
    /// Config file (keys override the embedded default; see `facegate config default`).
    #[arg(long, global = true, env = "FACEGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Detect faces in an image: box, score, keypoints, mask probability.
    Detect(compare::DetectArgs),
    /// Compare the largest face of two images.
    Compare(compare::CompareArgs),
    /// Measure accuracy on labelled data.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Fit the embedder's cosine-to-similarity map on a pairs file and write it into the
    /// embedder's description (docs/own-model.md).
    Calibrate(calibrate::CalibrateArgs),
    /// Per-stage latency of the recognition pipeline.
    Bench(bench::BenchArgs),
    /// Print or check the configuration.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Serve the Face API over HTTP.
    Serve(serve::ServeArgs),
    /// Provision API clients and their tokens.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Re-embed stored face crops with the configured model (daemon stopped).
    Reembed(reembed::ReembedArgs),
    /// Publish a gallery (export file or folder of photos) to every device, or answer
    /// snapshot requests, as the central server (docs/sync.md).
    Push(push::PushArgs),
    /// Fleet sync of this device (docs/sync.md).
    #[command(subcommand)]
    Sync(sync_cmd::SyncCommand),
    /// Export or import a gallery (file format: docs/sync.md).
    #[command(subcommand)]
    Gallery(gallery::GalleryCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Config(c) = &cli.command {
        return config_cmd::run(c, cli.config.as_deref());
    }
    let config = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Detect(args) => compare::detect(&config, &args),
        Command::Compare(args) => compare::compare(&config, &args),
        Command::Eval(c) => eval::run(&config, &c),
        Command::Calibrate(args) => calibrate::run(&config, &args),
        Command::Bench(args) => bench::run(&config, &args),
        Command::Serve(args) => serve::run(&config, &args),
        Command::Client(c) => client::run(&config, &c),
        Command::Reembed(args) => reembed::run(&config, &args),
        Command::Gallery(c) => gallery::run(&config, &c),
        Command::Push(args) => push::run(&config, &args),
        Command::Sync(c) => sync_cmd::run(&config, &c),
        Command::Config(_) => unreachable!("handled above"),
    }
}

pub fn load_config(file: Option<&std::path::Path>) -> anyhow::Result<Config> {
    config::load(file, &config::ProcessEnv).context("configuration")
}

/// Refuses a data folder without a store, for commands that only make sense on one
/// (a mistyped folder would otherwise get a new, empty store and a report of success).
pub fn require_store(dir: &std::path::Path, nothing_to: &str) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(facegate::store::Error::NotAFolder(dir.to_path_buf()).into());
    }
    if !dir.join("data.mdb").is_file() {
        anyhow::bail!(
            "no facegate store in {} (no data.mdb): nothing to {nothing_to}; check \
             store.data_dir / FACEGATE_DATA_DIR",
            dir.display()
        );
    }
    Ok(())
}

/// Opens the store in `dir`, its errors prefixed with the folder (except the one that
/// names it already).
pub fn open_store(dir: &std::path::Path, map_size_mb: usize) -> anyhow::Result<Store> {
    Store::open(dir, map_size_mb).map_err(|e| match e {
        e @ facegate::store::Error::NotAFolder(_) => e.into(),
        e => anyhow::Error::from(e).context(format!("data folder {}", dir.display())),
    })
}

/// Loads the LiteRT library and the models the configuration names.
pub fn load_pipeline(config: &Config) -> anyhow::Result<Pipeline> {
    let runtime = Runtime::locate_and_load(config.runtime_library())?;
    Ok(Pipeline::load(&runtime, config.pipeline_options())?)
}

/// The error and its causes, joined with ": " as `{:#}` does, but without a cause that
/// its parent's message already ends with (errors that show their `source` in their own
/// message, as the library's do, would otherwise print it twice).
pub fn report(error: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        // Only a cause the parent shows as its own ": cause" ending is a repeat.
        if last != text && !last.ends_with(&format!(": {text}")) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        last = text;
    }
    out
}

/// Exit codes: 64 (EX_USAGE) for configuration errors (`[sync]` included), 69 (EX_UNAVAILABLE) when the
/// runtime or models cannot be loaded, 1 otherwise.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<config::Error>().is_some()
        || error.downcast_ref::<facegate::sync::Error>().is_some()
    {
        64
    } else if error.downcast_ref::<facegate::runtime::Error>().is_some()
        || matches!(
            error.downcast_ref::<facegate::vision::Error>(),
            Some(facegate::vision::Error::Runtime(_) | facegate::vision::Error::Embedder(_))
        )
    {
        69
    } else {
        1
    }
}

/// A command's JSON report on stdout: one line with `--json` (for scripts), indented
/// otherwise (for people).
pub(crate) fn print_report(
    report: &serde_json::Value,
    one_line: bool,
) -> anyhow::Result<std::process::ExitCode> {
    if one_line {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(report)?);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_its_parent_already_shows_is_reported_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let shown = facegate::runtime::Error::ModelFile {
            path: "m.tflite".into(),
            source: io,
        };
        let error = anyhow::Error::from(shown).context("loading");
        let text = super::report(&error);
        assert_eq!(text.matches("not found").count(), 1, "{text}");
        assert!(
            text.starts_with("loading: cannot read model m.tflite: "),
            "{text}"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::report(&plain), "outer: inner");
        // A short cause that merely ends the parent's text is still shown.
        let short = anyhow::anyhow!("1").context("threads 1");
        assert_eq!(super::report(&short), "threads 1: 1");
    }
}
