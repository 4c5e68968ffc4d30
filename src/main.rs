//! The `facegate` binary: parses the command line and hands over to `cmd`.

mod cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cmd::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("facegate: {}", cmd::report(&error));
            ExitCode::from(cmd::exit_code(&error))
        }
    }
}
