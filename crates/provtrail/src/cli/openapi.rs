//! `provtrail openapi`: print (or write) the read API's OpenAPI document, generated from the code
//! exactly as the server serves it at `/api/v1/openapi.json`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `provtrail openapi`.
#[derive(Debug, clap::Args)]
#[command(after_help = "The checked-in copy is refreshed with:\n  \
cargo run -p provtrail -- openapi --output crates/provtrail/openapi.json")]
pub struct OpenApiArgs {
    /// Write to this file instead of standard output (`-` is standard output).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `provtrail openapi`.
pub fn run(args: OpenApiArgs) -> anyhow::Result<ExitCode> {
    let document = provtrail::server::api::openapi_json();
    // `-` is standard output, not a file named `-`.
    let output = args
        .output
        .filter(|path| path.as_path() != std::path::Path::new("-"));
    match &output {
        Some(path) => {
            if let Some(kept) = provtrail::store::kept_data_at(path) {
                anyhow::bail!("{kept}: writing the document there would destroy it");
            }
            std::fs::write(path, document)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => {
            use std::io::Write as _;
            std::io::stdout().lock().write_all(document.as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
