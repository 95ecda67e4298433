//! The `atrest` command.
//!
//! Today it inspects sealed records and streams (headers only: no key is needed and no
//! plaintext is read). `serve` and the client commands arrive with the vault service.

#![forbid(unsafe_code)]

mod inspect;

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

/// atrest: a self-hosted key vault and encryption-at-rest service.
#[derive(Parser)]
#[command(name = "atrest", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Describe a sealed record or stream file from its header: format, version,
    /// algorithms, segment size and plaintext length. Reads no key and no plaintext.
    Inspect {
        /// The file to inspect.
        file: std::path::PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// How to print results.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Output {
    /// Aligned `field: value` lines for people.
    Table,
    /// One JSON object, for scripts.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect { file, output } => inspect::run(&file, output),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
