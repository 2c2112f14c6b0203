//! The `provtrail` command line. This is the binary's edge: errors become `anyhow` here and exit
//! codes are decided here; everything else lives in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// A durable, searchable trail of SailPoint ISC Provisioning Completed events.
#[derive(Debug, Parser)]
#[command(name = "provtrail", version, about, propagate_version = true)]
struct Cli {
    /// Log filter (e.g. `info`, `provtrail=debug`).
    #[arg(long, global = true, env = "PROVTRAIL_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "PROVTRAIL_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start; boxing the arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Receive ISC events over HTTP and keep them.
    Serve(cli::serve::ServeArgs),
    /// Check Provisioning Completed events against the published schema.
    Validate(cli::validate::ValidateArgs),
    /// Evaluate a subscription filter (Jayway JsonPath) on events, as ISC would.
    Filter(cli::filter::FilterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.log, cli.log_json);
    let outcome = match cli.command {
        Command::Validate(args) => cli::validate::run(args),
        Command::Filter(args) => cli::filter::run(args),
        Command::Serve(args) => cli::block_on(cli::serve::run(args)),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
