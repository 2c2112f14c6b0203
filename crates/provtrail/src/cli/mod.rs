//! One module per subcommand; each exposes an `Args` struct and `run(args) -> anyhow::Result<ExitCode>`.

pub mod filter;
pub mod validate;

/// Output for people or for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Readable text.
    Text,
    /// JSON, one document per line.
    Json,
}
