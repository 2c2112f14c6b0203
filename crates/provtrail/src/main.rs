//! The `provtrail` command line. This is the binary's edge: errors become `anyhow` here and exit
//! codes are decided here; everything else lives in the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// A durable, searchable trail of SailPoint ISC Provisioning Completed events.
#[derive(Debug, Parser)]
#[command(name = "provtrail", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check Provisioning Completed events against the published schema.
    Validate(cli::validate::ValidateArgs),
    /// Evaluate a subscription filter (Jayway JsonPath) on events, as ISC would.
    Filter(cli::filter::FilterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Validate(args) => cli::validate::run(args),
        Command::Filter(args) => cli::filter::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
