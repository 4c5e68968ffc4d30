//! Logging set-up: a `tracing` subscriber writing to stderr in human or JSON format,
//! filtered by a tracing filter string (`logging.level`, `FACEGATE_LOG`); readiness
//! reports to systemd ([`notify`]).

pub mod notify;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("logging.level {level:?} is not a valid tracing filter: {message}")]
    Filter { level: String, message: String },
}

/// Installs the global subscriber. A second call (tests starting several servers in
/// one process) keeps the first subscriber and succeeds.
pub fn init(config: &LoggingConfig) -> Result<(), Error> {
    let filter = EnvFilter::try_new(&config.level).map_err(|e| Error::Filter {
        level: config.level.clone(),
        message: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_set = match config.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    Ok(())
}
