//! `facegate config default|check`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use facegate::config;

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the embedded default configuration (every key, documented).
    Default,
    /// Validate the config file merged with the environment (and the [sync] TLS files),
    /// and print the result (broker password redacted).
    Check,
}

pub fn run(command: &ConfigCommand, file: Option<&Path>) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Default => print!("{}", config::DEFAULT_TOML),
        ConfigCommand::Check => {
            let merged = super::load_config(file)?;
            let models = config::resolve_models_dir(&merged.models.dir);
            for (key, file) in [
                ("models.detector", merged.models.detector.file_name()),
                ("models.embedder", merged.models.embedder.as_str()),
                ("models.mask", merged.models.mask.as_str()),
            ] {
                anyhow::ensure!(!file.is_empty(), "{key} is empty: name a model file");
                let path = models.join(file);
                // The error serve gives for it (exit 69), not a generic one.
                if !path.is_file() {
                    return Err(facegate::runtime::Error::ModelFile {
                        path,
                        source: std::io::ErrorKind::NotFound.into(),
                    }
                    .into());
                }
            }
            // The models as `serve` loads them: the embedder's description (sidecar or
            // manifest entry) and every file's shapes against it, so that a model serve
            // would refuse is not reported "ok" here.
            super::load_pipeline(&merged)?;
            let data = &merged.store.data_dir;
            if data.exists() && !data.is_dir() {
                return Err(facegate::store::Error::NotAFolder(data.clone()).into());
            }
            // The [sync] section: URL, device id, TLS files (read and checked now).
            facegate::sync::SyncOptions::from_config(&merged).context("[sync]")?;
            facegate::door::DoorOptions::from_config(&merged).context("[door]")?;
            println!(
                "config ok: {}",
                file.map(|p| p.display().to_string())
                    .unwrap_or_else(|| "<embedded default>".into())
            );
            let mut shown = merged.clone();
            if !shown.sync.password.is_empty() {
                shown.sync.password = "<redacted>".into();
            }
            if !shown.door.webhook_secret.is_empty() {
                shown.door.webhook_secret = "<redacted>".into();
            }
            println!("{shown:#?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
