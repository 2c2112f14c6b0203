//! `provtrail-bench`: measures provtrail against baselines on the same machine in the same run and
//! prints one JSON line per figure, so that results can be compared and recorded by scripts.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod filter;
mod measure;

#[derive(Debug, Parser)]
#[command(name = "provtrail-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Evaluate a subscription filter on a parsed event, against parsing that event.
    Filter(filter::FilterBenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome: anyhow::Result<()> = match cli.command {
        Command::Filter(args) => filter::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
