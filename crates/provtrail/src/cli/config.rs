//! `provtrail config`: write the commented default configuration, or check a file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use provtrail::app::Settings;
use provtrail::config::DEFAULT_CONFIG;

/// Arguments of `provtrail config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// Write the fully commented default configuration.
    Init {
        /// Where to write it (`-` for standard output).
        #[arg(default_value = "provtrail.toml")]
        path: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Check a configuration file: syntax, unknown settings and values, read as `serve` reads
    /// it (with the PROVTRAIL_* variables of the environment over it).
    Check {
        /// The file (the one `serve` would read: PROVTRAIL_CONFIG, else ./provtrail.toml).
        #[arg(env = "PROVTRAIL_CONFIG", default_value = "provtrail.toml")]
        path: PathBuf,
        /// The file, given as every other command takes it (over PATH).
        #[arg(long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ConfigCommand::Init { path, force } => {
            if path.as_os_str() == "-" {
                use std::io::Write as _;
                write!(std::io::stdout().lock(), "{DEFAULT_CONFIG}")?;
                return Ok(ExitCode::SUCCESS);
            }
            anyhow::ensure!(
                force || !path.exists(),
                "{} exists; use --force to replace it",
                path.display()
            );
            // Not even with --force: that is kept data, not an old configuration.
            if let Some(kept) = provtrail::store::kept_data_at(&path) {
                anyhow::bail!("{kept}: writing a configuration there would destroy it");
            }
            // A new file is readable by its owner only: the tokens and passwords go in it. One
            // replaced with --force keeps the mode it was given.
            write_new_private(&path, DEFAULT_CONFIG)
                .with_context(|| format!("cannot write {}", path.display()))?;
            note!("wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Check { path, config } => {
            let path = config.unwrap_or(path);
            // As `serve` reads it: the file, with the PROVTRAIL_* variables over it.
            let config =
                super::serve::ServerArgs::from_environment_with_config(&path)?.resolve()?;
            let settings = match Settings::from_config(&config) {
                Ok(settings) => settings,
                Err(first) => return report_problems(&path, &config, first),
            };
            // What `serve` would load at start: a database path it can open (or create), the
            // tokens kept beside it, and the certificate and key, which must fit.
            super::serve::check_database_path(&settings.store.path)?;
            provtrail::app::check_single_name(&settings.store.path)?;
            provtrail::store::sqlite::check_database_file(&settings.store.path)?;
            // A configured token equal to a kept one (copied from the file into another
            // role) is refused by `serve`, so here too.
            provtrail::app::with_kept_tokens(&settings)?.check_token_roles()?;
            if let Some((cert, key)) = &settings.server.tls {
                let tls = provtrail::server::Tls::from_pem_files(cert, key)?;
                if let Some(warning) = tls.warning() {
                    note!("warning: {warning}");
                }
            }
            if let Some(warning) = cannot_listen(settings.server.listen) {
                note!("warning: {warning}");
            }
            super::serve::warn_of_short_secrets(&settings);
            // A new store's schema alone takes about this much: a cap below it refuses every
            // event from the start.
            const EMPTY_STORE: u64 = 112 * 1024;
            if let Some(max) = settings
                .store
                .max_size_bytes
                .filter(|max| *max < EMPTY_STORE)
            {
                note!(
                    "warning: store.max_size is {max} bytes, less than a new store takes (about \
                     {} KiB): every event would be answered 503",
                    EMPTY_STORE / 1024
                );
            }
            note!("{} is valid", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Why `serve` could not listen on `address` on this machine now, if it could not: a warning
/// only, since a configuration is often checked elsewhere than where it runs, or beside the
/// server that holds the address.
fn cannot_listen(address: std::net::SocketAddr) -> Option<String> {
    use std::io::ErrorKind;
    let err = std::net::TcpListener::bind(address).err()?;
    Some(match err.kind() {
        ErrorKind::AddrInUse => format!(
            "listen = {address}: that address is in use on this machine (a running server?); \
             `serve` cannot start on it while it is"
        ),
        ErrorKind::PermissionDenied if address.port() < 1024 => format!(
            "listen = {address}: this user may not listen there ({err}); ports below 1024 need \
             root or the CAP_NET_BIND_SERVICE capability"
        ),
        ErrorKind::PermissionDenied => {
            format!("listen = {address}: this user may not listen there ({err})")
        }
        ErrorKind::AddrNotAvailable => {
            format!("listen = {address}: not an address of this machine ({err})")
        }
        _ => format!("listen = {address}: cannot listen there on this machine: {err}"),
    })
}

/// The settings' first problem and every route's own, so that one run of `config check` names
/// what a configuration of several routes needs fixed (the settings stop at their first problem;
/// each route is checked on its own, which finds all but the problems between routes).
fn report_problems(
    path: &std::path::Path,
    config: &provtrail::config::FileConfig,
    first: provtrail::config::ConfigError,
) -> anyhow::Result<ExitCode> {
    let mut problems = vec![first.to_string()];
    let mut note = |err: provtrail::config::ConfigError| {
        let problem = err.to_string();
        if !problems.contains(&problem) {
            problems.push(problem);
        }
    };
    let mut sound = Vec::new();
    for section in &config.routes {
        match provtrail::routes::Routes::compile(std::slice::from_ref(section)) {
            Ok(_) => sound.push(section.clone()),
            Err(err) => note(err),
        }
    }
    // Between the routes that are sound on their own: two names alike, two routes on one file.
    if let Err(err) = provtrail::routes::Routes::compile(&sound) {
        note(err);
    }
    if problems.len() == 1 {
        return Err(super::serve::name_the_variable(first));
    }
    for problem in &problems {
        note!("error: {}", super::terminal_line(problem));
    }
    note!("{}: {} problems", path.display(), problems.len());
    Ok(ExitCode::from(2))
}

/// Writes `text` to `path`, made mode 0600 when it is new.
fn write_new_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
