//! `facegate client add|list|revoke|rotate`: local provisioning of API clients. Works
//! on the same data folder as a running `facegate serve` (LMDB allows it); tokens take
//! effect at once.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use facegate::config::Config;
use facegate::gallery::{Accounts, Scope, Settings};

#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Create a client; prints its new token alone on the last line. With `--scope
    /// kiosk`: a kiosk token for the client (created if missing, else kept as it is).
    Add {
        name: String,
        /// Also set a password for /oauth/client/token (read from stdin, or from
        /// FACEGATE_CLIENT_PASSWORD).
        #[arg(long)]
        password: bool,
        /// `full` (every endpoint, the default) or `kiosk` (only the client's kiosk
        /// events and frame: the token for the kiosk page's URL).
        #[arg(long, default_value = "full", value_parser = parse_scope)]
        scope: Scope,
    },
    /// List clients with their token count and usage.
    List,
    /// Revoke every token of a client.
    Revoke { name: String },
    /// Revoke every token of a client and print a new one on the last line.
    Rotate { name: String },
}

pub fn run(config: &Config, command: &ClientCommand) -> anyhow::Result<ExitCode> {
    let store = Arc::new(super::open_store(
        &config.store.data_dir,
        config.store.map_size_mb,
    )?);
    let accounts = Accounts::new(store, Settings::from_config(config).quota);
    match command {
        ClientCommand::Add {
            name,
            scope: Scope::Kiosk,
            password,
        } => {
            anyhow::ensure!(
                !*password,
                "--password is for full-power clients, not with --scope kiosk"
            );
            let token = accounts.add_kiosk_token(name)?;
            println!("kiosk token of client {name} (only its kiosk page and events; shown once):");
            println!("{token}");
        }
        ClientCommand::Add {
            name,
            scope: Scope::Full,
            password,
        } => {
            let password = if *password {
                Some(read_password()?)
            } else {
                None
            };
            let token = accounts.add_client(name, password.as_deref())?;
            println!("client {name} created; its access token (shown once):");
            println!("{token}");
        }
        ClientCommand::List => {
            println!("name\ttokens\tpassword\tgalleries\tfaces\tapi_hits\tcreated_at");
            for c in accounts.list_clients()? {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    c.name,
                    c.tokens,
                    if c.has_password { "yes" } else { "no" },
                    c.galleries,
                    c.faces,
                    c.api_hits,
                    c.created_at
                );
            }
        }
        ClientCommand::Revoke { name } => {
            let n = accounts.revoke_all(name)?;
            println!("revoked {n} token(s) of {name}");
        }
        ClientCommand::Rotate { name } => {
            let token = accounts.rotate(name)?;
            println!("old tokens of {name} revoked; new access token:");
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text).ok_or_else(|| format!("unknown scope {text:?} (full or kiosk)"))
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("FACEGATE_CLIENT_PASSWORD") {
        if !p.is_empty() {
            return Ok(p);
        }
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!password.is_empty(), "empty password");
    Ok(password)
}
