//! `provtrail-bench`: measures provtrail against baselines on the same machine in the same run and
//! prints one JSON line per figure, so that results can be compared and recorded by scripts.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The allocator the `provtrail` binary uses, so that the servers and parsers measured here run
/// as they do in the product.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod dict;
mod filter;
mod ingest;
mod measure;
mod model;
mod search;
mod ui;

#[derive(Debug, Parser)]
#[command(name = "provtrail-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse + validate and serialize throughput of the event model, with baselines.
    Model(model::ModelArgs),
    /// Durable ingest over loopback against a bare HTTP echo server.
    Ingest(ingest::IngestArgs),
    /// Searches and statistics on a large store, and its size per event.
    Search(search::SearchArgs),
    /// Train the dictionary that compresses stored event bodies (written into the repository).
    TrainDict(dict::DictArgs),
    /// Evaluate a subscription filter on a parsed event, against parsing that event.
    Filter(filter::FilterBenchArgs),
    /// Page load times of the web UI over HTTP from a large store.
    Ui(ui::UiArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Model(args) => model::run(args),
        Command::Filter(args) => filter::run(args),
        Command::Ingest(args) => ingest::run(args),
        Command::Search(args) => search::run(args),
        Command::TrainDict(args) => dict::run(args),
        Command::Ui(args) => ui::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
