//! One module per subcommand; each exposes an `Args` struct and `run(args) -> anyhow::Result<ExitCode>`.

pub mod filter;
pub mod validate;
