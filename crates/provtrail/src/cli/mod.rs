//! One module per subcommand; each exposes an `Args` struct and `run(args) -> anyhow::Result<ExitCode>`.

pub mod validate;
