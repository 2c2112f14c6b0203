//! `provtrail serve`: receive ISC events and keep them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use provtrail::app::{
    App, Settings, ensure_ingest_token, ensure_read_token, read_token_path, token_path,
};
use provtrail::config::FileConfig;

/// Where the configuration comes from; shared by the commands that start the server.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Configuration file (TOML). Default: ./provtrail.toml when it exists.
    #[arg(long, env = "PROVTRAIL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:8080].
    #[arg(long, env = "PROVTRAIL_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// The database file [default: the configuration file's store.path, else provtrail.db].
    #[arg(long, env = "PROVTRAIL_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// A bearer token ISC may present (repeatable, or comma-separated in the environment).
    /// Every token and password may be, or hold, `${env:NAME}` or `${file:PATH}` (write `$${`
    /// for a literal `${`).
    #[arg(
        long = "ingest-token",
        env = "PROVTRAIL_INGEST_TOKEN",
        value_delimiter = ',',
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub ingest_tokens: Vec<String>,
    /// A user:password pair ISC may present with Basic auth (repeatable).
    #[arg(
        long = "ingest-basic",
        env = "PROVTRAIL_INGEST_BASIC",
        value_delimiter = ',',
        value_name = "USER:PASS",
        hide_env_values = true
    )]
    pub ingest_basic: Vec<String>,
    /// A token that may use the read API and the web UI (repeatable); never an ingest token.
    #[arg(
        long = "read-token",
        env = "PROVTRAIL_READ_TOKEN",
        value_delimiter = ',',
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub read_tokens: Vec<String>,
    /// A token that may also retry dead letters and replay events through the API (repeatable);
    /// never a read or ingest token.
    #[arg(
        long = "admin-token",
        env = "PROVTRAIL_ADMIN_TOKEN",
        value_delimiter = ',',
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub admin_tokens: Vec<String>,
    /// Accept events without credentials (local use only); `--no-auth=false` turns off a
    /// `no_auth = true` of the configuration file.
    #[arg(
        long,
        env = "PROVTRAIL_NO_AUTH",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub no_auth: Option<bool>,
    /// Largest request body [default: 1MiB].
    #[arg(long, env = "PROVTRAIL_MAX_BODY", value_name = "SIZE")]
    pub max_body: Option<String>,
    /// Most memory ingest request bodies over 64KiB may take at once, until their events are
    /// committed; beyond it a request waits for room, and is answered 503 if none comes within
    /// the request timeout [default: 256MiB, at least --max-body].
    #[arg(long, env = "PROVTRAIL_MAX_BODY_MEMORY", value_name = "SIZE")]
    pub max_body_memory: Option<String>,
    /// PEM certificate chain, to serve HTTPS (with a key given here, in the environment or in
    /// the file).
    #[arg(long, env = "PROVTRAIL_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key, to serve HTTPS.
    #[arg(long, env = "PROVTRAIL_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Time for a whole request to arrive [default: 30s].
    #[arg(long, env = "PROVTRAIL_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub request_timeout: Option<String>,
    /// Time for a new connection's first request headers to arrive [default: 10s].
    #[arg(long, env = "PROVTRAIL_HEADER_TIMEOUT", value_name = "DURATION")]
    pub header_timeout: Option<String>,
    /// Time a connection may stay open with no request in flight, HTTP/1.1 keep-alive and HTTP/2
    /// alike [default: 60s].
    #[arg(long, env = "PROVTRAIL_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Requests handled at once before answering 503; the read API, the web UI and sign-in may
    /// hold a quarter of them [default: 1024].
    #[arg(long, env = "PROVTRAIL_MAX_CONCURRENT_REQUESTS", value_name = "N")]
    pub max_concurrent_requests: Option<usize>,
    /// Open connections at once; beyond, new ones are closed [default: 4096].
    #[arg(long, env = "PROVTRAIL_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Open connections one remote address may hold; raise it behind a reverse proxy, which is
    /// one address [default: half of --max-connections].
    #[arg(long, env = "PROVTRAIL_MAX_CONNECTIONS_PER_ADDRESS", value_name = "N")]
    pub max_connections_per_address: Option<usize>,
    /// Wrong read or admin tokens one remote address may send in a minute before no token from
    /// it is checked until the minute ends (429); 0 turns the limit off [default: 10].
    #[arg(long, env = "PROVTRAIL_MAX_WRONG_TOKENS", value_name = "N")]
    pub max_wrong_tokens: Option<u32>,
    /// A reverse proxy in front of provtrail (an address, or a block like 10.0.0.0/8;
    /// repeatable): the client of a request it passes on is the one its X-Forwarded-For names,
    /// for the wrong-token limit and the delivery log. Without it, every request through a proxy
    /// is the proxy's, and one client's wrong tokens lock every user out [default: none]
    #[arg(
        long = "trusted-proxy",
        env = "PROVTRAIL_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "ADDR[/BITS]"
    )]
    pub trusted_proxies: Vec<String>,
    /// Time to finish the requests in flight on SIGTERM or Ctrl-C before exiting (status 1 when
    /// it runs out with requests unanswered) [default: 30s].
    #[arg(long, env = "PROVTRAIL_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// Longest wait for the database's lock held by another process [default: 5s].
    #[arg(long, env = "PROVTRAIL_BUSY_TIMEOUT", value_name = "DURATION")]
    pub busy_timeout: Option<String>,
    /// Longest wait for more documents in a group commit [default: 0s].
    #[arg(long, env = "PROVTRAIL_COMMIT_MAX_WAIT", value_name = "DURATION")]
    pub commit_max_wait: Option<String>,
    /// Who waits for the disk: `inline` (SQLite syncs inside each commit) or `pipelined`
    /// (another thread syncs the log while the writer commits the next batch) [default:
    /// inline]. Either way a request is answered only once its commit is on disk.
    #[arg(long, env = "PROVTRAIL_LOG_SYNC", value_name = "MODE")]
    pub log_sync: Option<String>,
    /// Most documents in one group commit [default: 512].
    #[arg(long, env = "PROVTRAIL_COMMIT_MAX_BATCH", value_name = "N")]
    pub commit_max_batch: Option<usize>,
    /// Stop accepting events (503) when the database file reaches this size (its write-ahead
    /// log, up to about 40 MB under load and emptied by checkpoints, and the search index's
    /// file come on top; the routes' delivery records may take a sixteenth more, 256 KiB to
    /// 256 MiB, so that deliveries of the events kept still drain).
    #[arg(long, env = "PROVTRAIL_MAX_DB_SIZE", value_name = "SIZE")]
    pub max_db_size: Option<String>,
    /// Read only a configuration file named on the command line, never ./provtrail.toml by
    /// default (`demo`, which must not run on a real deployment's settings).
    #[arg(skip)]
    pub only_named_config: bool,
}

impl ServerArgs {
    /// The configuration file's settings with the flags and environment applied on top.
    /// The arguments `serve` would have with no flags but `--config path`: the file, with the
    /// `PROVTRAIL_*` variables of the environment over it.
    pub fn from_environment_with_config(path: &std::path::Path) -> anyhow::Result<ServerArgs> {
        use clap::{Args as _, FromArgMatches as _};
        // Every value but the path comes from the environment: clap's message names the flag,
        // not the variable, and tells of a usage that is not this command's.
        let command = ServerArgs::augment_args(clap::Command::new("provtrail"));
        let unusable = |err: clap::Error| {
            let variable = super::variable_behind(&command, &err);
            let said = super::clap_message(&err);
            match variable {
                Some(variable) => anyhow::anyhow!(
                    "the environment's {variable} holds a value serve could not use: {said}"
                ),
                None => anyhow::anyhow!(
                    "a PROVTRAIL_* variable of the environment holds a value serve could not \
                     use: {said} (see `provtrail serve --help` for the variable of each flag)"
                ),
            }
        };
        let matches = command
            .clone()
            .try_get_matches_from([
                std::ffi::OsStr::new("provtrail"),
                std::ffi::OsStr::new("--config"),
                path.as_os_str(),
            ])
            .map_err(unusable)?;
        ServerArgs::from_arg_matches(&matches).map_err(unusable)
    }

    /// The configuration file [`ServerArgs::resolve`] reads, if any.
    pub fn config_file(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            if self.only_named_config {
                None
            } else {
                FileConfig::default_path()
            }
        })
    }

    pub fn resolve(&self) -> anyhow::Result<FileConfig> {
        let default_path = || {
            if self.only_named_config {
                None
            } else {
                FileConfig::default_path()
            }
        };
        let mut config = match self.config.clone().or_else(default_path) {
            Some(path) => {
                let config = FileConfig::load(&path)?;
                // Appended to, the file would not read as a configuration again.
                if let Some(over) = provtrail::routes::file_route_writing_to(&config.routes, &path)
                {
                    let route = over.route;
                    if over.rotating {
                        anyhow::bail!(
                            "route {route:?}: the configuration file {} is named like one of \
                             the files sink.path rotates to: a rotation would rename the route's \
                             file over it; give the route another file, or the configuration \
                             another name",
                            path.display()
                        );
                    }
                    anyhow::bail!(
                        "route {route:?}: sink.path is the configuration file {} itself: \
                         appending events to it would make it unreadable; give another file",
                        path.display()
                    );
                }
                config
            }
            None => FileConfig::default(),
        };
        let server = &mut config.server;
        set(&mut server.listen, &self.listen);
        set(&mut server.tls_cert, &self.tls_cert);
        set(&mut server.tls_key, &self.tls_key);
        set(&mut server.request_timeout, &self.request_timeout);
        set(&mut server.header_timeout, &self.header_timeout);
        set(&mut server.idle_timeout, &self.idle_timeout);
        set(
            &mut server.max_concurrent_requests,
            &self.max_concurrent_requests,
        );
        set(&mut server.max_connections, &self.max_connections);
        set(
            &mut server.max_connections_per_address,
            &self.max_connections_per_address,
        );
        set(&mut server.shutdown_grace, &self.shutdown_grace);
        set(&mut server.max_wrong_tokens, &self.max_wrong_tokens);
        if !self.trusted_proxies.is_empty() {
            server.trusted_proxies = Some(self.trusted_proxies.clone());
        }
        // Lists from the environment are split at commas: "a, b" is the tokens `a` and `b`.
        let trimmed = |list: &[String]| -> Vec<String> {
            list.iter().map(|item| item.trim().to_owned()).collect()
        };
        let ingest = &mut config.ingest;
        if !self.ingest_tokens.is_empty() {
            ingest.tokens = trimmed(&self.ingest_tokens);
        }
        if !self.ingest_basic.is_empty() {
            ingest.basic = trimmed(&self.ingest_basic);
        }
        if let Some(no_auth) = self.no_auth {
            ingest.no_auth = Some(no_auth);
        }
        set(&mut ingest.max_body, &self.max_body);
        set(&mut ingest.max_body_memory, &self.max_body_memory);
        if !self.read_tokens.is_empty() {
            config.read.tokens = trimmed(&self.read_tokens);
        }
        // Like the read tokens: given here, they replace the file's.
        if !self.admin_tokens.is_empty() {
            config.admin.tokens = trimmed(&self.admin_tokens);
        }
        let store = &mut config.store;
        set(&mut store.path, &self.db);
        set(&mut store.commit_max_wait, &self.commit_max_wait);
        set(&mut store.commit_max_batch, &self.commit_max_batch);
        set(&mut store.log_sync, &self.log_sync);
        set(&mut store.max_size, &self.max_db_size);
        set(&mut store.busy_timeout, &self.busy_timeout);
        Ok(config)
    }
}

fn set<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
    if value.is_some() {
        slot.clone_from(value);
    }
}

/// The flags of [`ServerArgs`] that say where the store and the routes are; the others only
/// matter to a running server.
/// A setting's error, with the flag or environment variable its value came from when it came
/// from one: the message names the setting of the file, where the value is not.
pub fn name_the_variable(err: provtrail::config::ConfigError) -> anyhow::Error {
    if let provtrail::config::ConfigError::Invalid { setting, .. } = &err {
        if let Some(source) = source_of(setting) {
            return anyhow::anyhow!("{err} (that value comes from {source})");
        }
    }
    err.into()
}

/// Where the value of `setting` (as the file names it) came from, when not from the file: the
/// command line's flag, or the environment's `PROVTRAIL_*` variable when the flag was not given.
fn source_of(setting: &str) -> Option<String> {
    use clap::Args as _;
    let id = match setting {
        "store.path" => "db",
        "store.max_size" => "max_db_size",
        "ingest.tokens" => "ingest_tokens",
        "ingest.basic" => "ingest_basic",
        "read.tokens" => "read_tokens",
        "admin.tokens" => "admin_tokens",
        other => other.split_once('.')?.1,
    };
    let command = ServerArgs::augment_args(clap::Command::new("provtrail"));
    let arg = command.get_arguments().find(|arg| arg.get_id() == id)?;
    let long = arg.get_long()?;
    if super::typed(long) {
        return Some(format!("the command line's --{long}"));
    }
    let variable = arg.get_env()?.to_string_lossy().into_owned();
    super::from_environment(long, variable).map(|variable| format!("the environment's {variable}"))
}

const STORE_FLAGS: &[&str] = &["config", "db", "busy_timeout", "max_db_size"];

/// `cli` with the serving flags hidden from the help of the commands that read the server's
/// configuration only for its store and routes (`routes`, `replay`, `deadletter`). They still
/// take them, and their `PROVTRAIL_*` variables, so that they resolve the configuration exactly
/// as `serve` does.
pub fn hide_serving_flags(cli: clap::Command) -> clap::Command {
    use clap::Args as _;
    let serving: Vec<clap::Id> = ServerArgs::augment_args(clap::Command::new("serve"))
        .get_arguments()
        .map(|arg| arg.get_id().clone())
        .filter(|id| !STORE_FLAGS.contains(&id.as_str()))
        .collect();
    let hide = |mut command: clap::Command| {
        for id in &serving {
            if command.get_arguments().any(|arg| arg.get_id() == id) {
                command = command.mut_arg(id, |arg| arg.hide(true));
            }
        }
        command
    };
    let in_each = |command: clap::Command, names: &[&str]| {
        names.iter().fold(command, |command, name| {
            if command.find_subcommand(name).is_some() {
                command.mut_subcommand(*name, hide)
            } else {
                command
            }
        })
    };
    let mut cli = in_each(cli, &["replay"]);
    for (parent, children) in [
        ("routes", &["list", "test"]),
        ("deadletter", &["list", "retry"]),
    ] {
        if cli.find_subcommand(parent).is_some() {
            cli = cli.mut_subcommand(parent, |command| in_each(command, children));
        }
    }
    cli
}

/// Arguments of `provtrail serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Settings ready to start with: a zero-config start gets generated ingest and read tokens.
pub struct Prepared {
    pub settings: Settings,
    /// The token to print, when one was generated now.
    pub new_token: Option<String>,
    /// Where the generated token is kept, when one is used.
    pub token_file: Option<PathBuf>,
    /// The read token to print, when one was generated now.
    pub new_read_token: Option<String>,
    /// Where the generated read token is kept, when one is used.
    pub read_token_file: Option<PathBuf>,
    /// The store's lock, taken before any token was kept beside it: two starts at once on a
    /// fresh store would otherwise each write tokens, and the one that lost take them away.
    pub lock: Option<provtrail::app::StoreLock>,
}

impl Prepared {
    /// Starts the server on the prepared store; a start that fails takes back the tokens it
    /// generated and gives up the lock.
    pub async fn start(&mut self) -> anyhow::Result<App> {
        let lock = match self.lock.take() {
            Some(lock) => lock,
            None => provtrail::app::StoreLock::take(&self.settings.store.path)?,
        };
        match App::start_locked(&self.settings, lock).await {
            Ok(app) => Ok(app),
            Err(err) => {
                forget_new_tokens(self);
                Err(err.into())
            }
        }
    }
}

pub fn prepare(args: &ServerArgs) -> anyhow::Result<Prepared> {
    let config = args.resolve()?;
    let settings = Settings::from_config(&config).map_err(name_the_variable)?;
    // Before anything is written beside it (the generated tokens).
    check_database_path(&settings.store.path)?;
    let lock = provtrail::app::StoreLock::take(&settings.store.path)?;
    let mut prepared = Prepared {
        settings,
        new_token: None,
        token_file: None,
        new_read_token: None,
        read_token_file: None,
        lock: Some(lock),
    };
    // A start that fails here takes back what it made: a token file never shown would be
    // named as "the one kept" by the next start.
    if let Err(err) = keep_tokens(&mut prepared) {
        forget_new_tokens(&prepared);
        if let Some(lock) = prepared.lock.take() {
            lock.give_up();
        }
        return Err(err);
    }
    Ok(prepared)
}

/// Generates the tokens the configuration does not give and keeps them beside the database.
fn keep_tokens(prepared: &mut Prepared) -> anyhow::Result<()> {
    let settings = &mut prepared.settings;
    let path = token_path(&settings.store.path);
    if !settings.no_auth && settings.ingest_tokens.is_empty() && settings.ingest_basic.is_empty() {
        let store_existed =
            std::fs::metadata(&settings.store.path).is_ok_and(|meta| meta.len() > 0);
        let (token, generated) = ensure_ingest_token(&settings.store.path)
            .with_context(|| format!("cannot keep the ingest token in {}", path.display()))?;
        settings.ingest_tokens.push(token.clone());
        if generated {
            if store_existed {
                // The subscription that fed this store presents the token that was lost.
                tracing::warn!(
                    "{} was missing: a new ingest token was generated for a store that already \
                     exists, and the one its subscription sends is refused (401) until the \
                     subscription is given the new one (or the old file is put back)",
                    path.display()
                );
            }
            prepared.new_token = Some(token);
        }
        prepared.token_file = Some(path);
    } else if !settings.no_auth {
        // Credentials are configured: a token generated by an earlier start is not taken any
        // more, and a subscription that still sends it is refused.
        if let Ok(text) = std::fs::read_to_string(&path) {
            let kept = text.trim();
            if !kept.is_empty() && !settings.ingest_tokens.iter().any(|token| token == kept) {
                tracing::warn!(
                    "{} holds an ingest token that is not accepted now: with credentials \
                     configured, only those are; a subscription that sends the token of that \
                     file is refused (401) until it is given one of them (then remove the file)",
                    path.display()
                );
            }
        }
    }
    if settings.read_tokens.is_empty() {
        let path = read_token_path(&settings.store.path);
        let (token, generated) = ensure_read_token(&settings.store.path)
            .with_context(|| format!("cannot keep the read token in {}", path.display()))?;
        settings.read_tokens.push(token.clone());
        if generated {
            prepared.new_read_token = Some(token);
        }
        prepared.read_token_file = Some(path);
    }
    // Again with the tokens kept beside the database, which the configuration did not show: a
    // token copied from one into another role (the read token given as an ingest token, say)
    // would open that role to its holders.
    settings.check_token_roles()?;
    Ok(())
}

/// Refuses a database path the store could never open, naming what is wrong with it, rather
/// than SQLite's "unable to open database file" once the tokens are written beside it.
pub fn check_database_path(path: &std::path::Path) -> anyhow::Result<()> {
    if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
        anyhow::bail!(
            "the database path {} names a directory (it ends with /): give the database file's \
             path (such as {})",
            path.display(),
            path.join("provtrail.db").display()
        );
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => anyhow::bail!(
            "the database path {} is a directory: give the database file's path (such as {})",
            path.display(),
            path.join("provtrail.db").display()
        ),
        Ok(meta) if !meta.is_file() => anyhow::bail!(
            "the database path {} is not a regular file (a device or a pipe): give the database \
             file's path",
            path.display()
        ),
        Ok(_) => return Ok(()),
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            anyhow::bail!("cannot use the database path {}: {err}", path.display())
        }
        Err(_) => {}
    }
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    match std::fs::metadata(directory) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => anyhow::bail!(
            "cannot create the database {}: {} is not a directory",
            path.display(),
            directory.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "cannot create the database {}: its directory {} does not exist (create it, or \
             give another --db)",
            path.display(),
            directory.display()
        ),
        Err(err) => anyhow::bail!(
            "cannot create the database {}: its directory {}: {err}",
            path.display(),
            directory.display()
        ),
    }
}

/// Takes back the tokens generated by a start that failed: kept, they would be "the one kept
/// beside the database" at the next start, which never shows them.
pub fn forget_new_tokens(prepared: &Prepared) {
    for (generated, file) in [
        (&prepared.new_token, &prepared.token_file),
        (&prepared.new_read_token, &prepared.read_token_file),
    ] {
        if let (Some(_), Some(file)) = (generated, file) {
            let _ = std::fs::remove_file(file);
        }
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let paths = path_sources(&args.server);
    serve(args).await.map_err(|err| {
        // A file the environment names, when the refusal is about it, is said to come from
        // there: the message names the file, not where its name came from.
        let text = format!("{err:#}");
        match paths
            .iter()
            .find(|(path, _)| !path.is_empty() && names_path(&text, path))
        {
            Some((_, source)) => anyhow::anyhow!("{text} (that file is named by {source})"),
            None => err,
        }
    })
}

/// Whether `text` names `path` as a whole: not as part of a longer word or path (a database
/// `events` is not named by "events were kept", nor `x.db` by `x.db.token`).
fn names_path(text: &str, path: &str) -> bool {
    let part_of_a_name = |c: char| c.is_alphanumeric() || matches!(c, '/' | '_' | '-');
    text.match_indices(path).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let mut after = text[at + path.len()..].chars();
        let next = after.next();
        let extended = match next {
            Some('.') => after.next().is_some_and(part_of_a_name),
            Some(c) => part_of_a_name(c),
            None => false,
        };
        before.is_none_or(|c| !part_of_a_name(c) && c != '.') && !extended
    })
}

/// The files named by the environment rather than the command line (`--config`, `--db`, the TLS
/// certificate and key), each with its variable.
fn path_sources(server: &ServerArgs) -> Vec<(String, String)> {
    [
        ("config", "PROVTRAIL_CONFIG", &server.config),
        ("db", "PROVTRAIL_DB", &server.db),
        ("tls-cert", "PROVTRAIL_TLS_CERT", &server.tls_cert),
        ("tls-key", "PROVTRAIL_TLS_KEY", &server.tls_key),
    ]
    .into_iter()
    .filter_map(|(long, variable, value)| {
        let path = value.as_ref()?.display().to_string();
        let variable = super::from_environment(long, variable.to_owned())?;
        Some((path, format!("the environment's {variable}")))
    })
    .collect()
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut prepared = prepare(&args.server)?;
    ensure_open_file_room(prepared.settings.server.max_connections);
    // Heard from before the start: a SIGTERM while the store opens, or just after the banner
    // (a service manager stopping what it has just started), stops the server gracefully once
    // it runs, rather than killing it by the signal's default action.
    let mut signals = super::StopSignals::listen();
    let app = prepared.start().await?;
    let settings = &prepared.settings;
    print_banner(&prepared, app.server.local_addr());
    warn_when_full(settings);
    warn_when_readable_by_others(&settings.store.path);
    warn_when_secrets_readable_by_others(
        args.server.config_file().as_deref(),
        settings.server.tls.as_ref().map(|(_, key)| key.as_path()),
    );
    warn_of_short_secrets(settings);
    if settings.server.trusted_proxies.trusts_everyone() {
        tracing::warn!(
            "server.trusted_proxies holds a block of every address (/0): any client that \
             connects directly can name itself in X-Forwarded-For, to the wrong-token limit and \
             the delivery log; give the proxies' own addresses"
        );
    }
    signals.next().await;
    if super::logs_as_json() {
        tracing::info!("shutting down: finishing in-flight requests");
    } else {
        note!("shutting down: finishing in-flight requests… (Ctrl-C again to quit now)");
    }
    let metrics = app.metrics.clone();
    let keeping = app.keeping();
    let answered = tokio::select! {
        answered = app.shutdown() => answered,
        () = signals.next() => {
            // What was answered 200 is committed; what is still in flight gets no answer, and
            // its sender (ISC, on a timeout) may count it as failed; what is being kept for a
            // client that left is not kept. With neither, only the closing was cut short
            // (deliveries under way are made again later).
            let in_flight = metrics.requests_in_flight.get().unsigned_abs();
            let being_kept = keeping.len() as u64;
            let message = match (in_flight, being_kept) {
                (0, 0) => "quitting now: no request was in flight".to_owned(),
                (n, 0) => format!(
                    "quitting now: {} in flight {} no answer",
                    super::counted(n, "request", "requests"),
                    if n == 1 { "gets" } else { "get" }
                ),
                (n, kept) => format!(
                    "quitting now: {} in flight {} no answer, and {} received {} not kept",
                    super::counted(n, "request", "requests"),
                    if n == 1 { "gets" } else { "get" },
                    super::counted(kept, "body", "bodies"),
                    if kept == 1 { "is" } else { "are" },
                ),
            };
            if super::logs_as_json() {
                tracing::warn!("{message}");
            } else {
                note!("{message}");
            }
            return Ok(ExitCode::from(130));
        }
    };
    if !answered {
        // The grace period ended first: requests still in flight were cut off unanswered. The
        // exit status says so, for whatever restarts the service.
        if super::logs_as_json() {
            tracing::warn!(
                "stopped: requests still in flight at the end of the grace period got no answer"
            );
        } else {
            note!(
                "stopped: requests still in flight at the end of the grace period got no answer."
            );
        }
        return Ok(ExitCode::from(1));
    }
    if super::logs_as_json() {
        tracing::info!("stopped");
    } else {
        note!("stopped.");
    }
    Ok(ExitCode::SUCCESS)
}

/// Files the server keeps open besides its connections: the store's database, logs and search
/// index, the listener, the routes' files and outgoing connections, with room to spare.
const FILES_BESIDE_CONNECTIONS: u64 = 256;

/// Raises the open-file limit to what the connection cap needs, and says so at the start when
/// the hard limit does not allow it (rather than leaving it to `accept` failures under load).
pub fn ensure_open_file_room(max_connections: usize) {
    let wanted = max_connections as u64 + FILES_BESIDE_CONNECTIONS;
    if let Some(limit) = provtrail::raise_open_file_limit(wanted) {
        if limit < wanted {
            let connections = limit.saturating_sub(FILES_BESIDE_CONNECTIONS);
            loud_warning(&format!(
                "this process may open at most {limit} files (ulimit -n), so it can keep about \
                 {connections} connections open, not the {max_connections} that \
                 server.max_connections allows: connections beyond that are refused. Raise the \
                 limit (ulimit -n, or LimitNOFILE= under systemd) or lower \
                 server.max_connections."
            ));
        }
    }
}

/// Shortest token or password said nothing about at the start.
const SHORTEST_SECRET: usize = 16;

/// A token or password short enough to guess is said at the start (without the secret): the
/// sign-in form allows ten guesses a minute per address, the ingest and API endpoints each
/// guess a request.
pub(crate) fn warn_of_short_secrets(settings: &Settings) {
    let short = |secrets: &[String]| {
        secrets
            .iter()
            .any(|secret| secret.chars().count() < SHORTEST_SECRET)
    };
    let passwords: Vec<String> = settings
        .ingest_basic
        .iter()
        .map(|pair| {
            pair.split_once(':')
                .map_or("", |(_, password)| password)
                .to_owned()
        })
        .collect();
    for (setting, secrets) in [
        ("ingest.tokens", &settings.ingest_tokens),
        ("ingest.basic (password)", &passwords),
        ("read.tokens", &settings.read_tokens),
        ("admin.tokens", &settings.admin_tokens),
    ] {
        if short(secrets) {
            let message = format!(
                "a secret in {setting} is shorter than {SHORTEST_SECRET} characters and could be \
                 guessed; provtrail's own tokens have 48"
            );
            if super::logs_as_json() {
                tracing::warn!("{message}");
            } else {
                note!("warning: {message}");
            }
        }
    }
}

/// A database that other users may read (a copy put back with the umask's mode, a file made by
/// hand) holds every event, as the token files hold the credentials; the server makes its files
/// for their owner only, but does not take access away from files it did not make.
fn warn_when_readable_by_others(db: &std::path::Path) {
    for (path, mode) in readable_by_others(db) {
        tracing::warn!(
            "{} can be read by other users of this machine (mode {mode:o}): it holds every \
             event; `chmod 600` it",
            path.display()
        );
    }
}

/// A TLS key, or a configuration file that writes a secret out (not as a `${…}` reference),
/// that other users may read: the server cannot take access away from files it did not make,
/// but says so, as it does for the database.
fn warn_when_secrets_readable_by_others(
    config: Option<&std::path::Path>,
    tls_key: Option<&std::path::Path>,
) {
    let readable = mode_readable_by_others;
    if let Some((key, mode)) = tls_key.and_then(|key| Some((key, readable(key)?))) {
        tracing::warn!(
            "{} can be read by other users of this machine (mode {mode:o}): it is the TLS \
             private key; `chmod 600` it",
            key.display()
        );
    }
    if let Some((config, mode)) = config.and_then(|config| Some((config, readable(config)?))) {
        let text = std::fs::read_to_string(config).unwrap_or_default();
        if writes_out_a_secret(&text) {
            tracing::warn!(
                "{} can be read by other users of this machine (mode {mode:o}) and writes out \
                 a secret (a token or password not given as a ${{env:…}} or ${{file:…}} \
                 reference); `chmod 600` it",
                config.display()
            );
        }
    }
}

/// Whether a configuration file's text gives a token, password or secret as a literal value
/// rather than by reference.
fn writes_out_a_secret(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        let Some((key, value)) = line.split_once('=') else {
            return false;
        };
        let key = key.trim().to_ascii_lowercase();
        let secret_key = ["token", "basic", "password", "secret"]
            .iter()
            .any(|word| key.contains(word));
        // Every quoted string of the value: a literal unless it is a reference.
        let literal = value
            .split(['"', '\''])
            .skip(1)
            .step_by(2)
            .any(|quoted| !quoted.is_empty() && !quoted.starts_with("${"));
        !line.starts_with('#') && secret_key && literal
    })
}

/// The files of the database at `db` (the file, its log and shared memory) that other users
/// may read, with their modes.
fn readable_by_others(db: &std::path::Path) -> Vec<(PathBuf, u32)> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let mut path = db.as_os_str().to_owned();
            path.push(suffix);
            let path = PathBuf::from(path);
            let mode = mode_readable_by_others(&path)?;
            Some((path, mode))
        })
        .collect()
}

/// The mode of the file at `path` when its group or other users may read it.
fn mode_readable_by_others(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

/// A store already at its size cap takes no event: every delivery gets 503 until the cap is
/// raised or space is freed. Said at the start rather than discovered from ISC's failures.
fn warn_when_full(settings: &Settings) {
    let Some(max) = settings.store.max_size_bytes else {
        return;
    };
    // The cap is on the database's pages in use, not its logs or search index.
    let Some(size) = provtrail::store::sqlite::database_size_in_use(&settings.store.path) else {
        return;
    };
    if size >= max {
        loud_warning(&format!(
            "the database holds {size} bytes, at or above --max-db-size ({max} bytes): events \
             are answered 503 and /readyz says unavailable until the limit is raised (provtrail \
             deletes no event; `provtrail export` copies them out before a new store is started)."
        ));
    }
}

/// A warning that must not be missed at the start: set apart in capitals for a person, a
/// warning event among the others for logs written as JSON lines (`--log-json`).
fn loud_warning(message: &str) {
    if super::logs_as_json() {
        tracing::warn!("{message}");
    } else {
        note!();
        note!("WARNING: {message}");
        note!();
    }
}

/// The banner as log events, for logs written as JSON lines (`--log-json`), which are shipped
/// and kept: the generated tokens are named by the files that keep them, never written.
fn log_banner(prepared: &Prepared, listening: &str, url: &str) {
    let settings = &prepared.settings;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listening,
        ingest_url = url,
        store = %settings.store.path.display(),
        "provtrail listening"
    );
    if settings.no_auth {
        tracing::warn!("--no-auth is on: anyone who can reach the server can post events");
    }
    let kept = |path: &Option<PathBuf>| {
        path.as_ref()
            .map_or_else(String::new, |path| path.display().to_string())
    };
    if prepared.new_token.is_some() {
        tracing::info!(
            token_file = %kept(&prepared.token_file),
            "a new ingest token was generated; it is not written to the log: read it from its \
             file (mode 0600) to subscribe ISC with httpAuthenticationType BEARER_TOKEN"
        );
    }
    if prepared.new_read_token.is_some() {
        tracing::info!(
            read_token_file = %kept(&prepared.read_token_file),
            "a new read token (web UI and read API) was generated; it is not written to the \
             log: read it from its file (mode 0600)"
        );
    }
    for route in settings.routes.iter() {
        tracing::info!(
            route = %route.name,
            sink = route.sink.kind(),
            target = %route.sink.target(),
            filter = route.filter_text.as_deref().unwrap_or_default(),
            allow_private = route.allow_private,
            "route configured"
        );
    }
}

/// What to give ISC, printed once on start.
pub fn print_banner(prepared: &Prepared, addr: std::net::SocketAddr) {
    let settings = &prepared.settings;
    let scheme = if settings.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "<this-host>".to_owned(),
        // An IPv6 address in a URL is bracketed: `http://[::1]:8080/`.
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let url = format!("{scheme}://{host}:{}/events", addr.port());
    if super::logs_as_json() {
        log_banner(prepared, &format!("{scheme}://{addr}"), &url);
        return;
    }
    note!(
        "provtrail {} listening on {scheme}://{addr} (store: {})",
        env!("CARGO_PKG_VERSION"),
        settings.store.path.display()
    );
    if settings.no_auth {
        note!();
        note!("WARNING: --no-auth is on: anyone who can reach {addr} can post events.");
        note!("WARNING: use it for local tests only; give ISC a token in production.");
        note!();
    }
    note!("ISC posts events to:  {url}  (or {url}/<channel> to label a subscription)");
    if addr.ip().is_loopback() {
        note!(
            "  (a loopback address: only this machine reaches it. ISC posts from the internet: \
             listen on 0.0.0.0 behind your proxy, or give ISC the proxy's public URL)"
        );
    }
    if settings.no_auth {
        // Said above, loudly.
    } else if let Some(token) = &prepared.new_token {
        let subscription = serde_json::json!({
            "name": "provtrail",
            "triggerId": "idn:post-provisioning",
            "type": "HTTP",
            "enabled": true,
            "httpConfig": {
                "url": url,
                "httpDispatchMode": "SYNC",
                "httpAuthenticationType": "BEARER_TOKEN",
                "bearerTokenAuthConfig": {"bearerToken": token},
            },
        });
        note!();
        note!("A new ingest token was generated. It is shown this once; it is kept in");
        note!(
            "{} (mode 0600).",
            prepared
                .token_file
                .as_ref()
                .map_or_else(String::new, |path| path.display().to_string())
        );
        note!();
        note!("  Ingest token: {token}");
        note!();
        note!("Subscribe in ISC (Admin > Event Triggers > Provisioning Completed > Subscribe):");
        note!("  Subscription type:          HTTP");
        note!("  Integration URL:            {url}");
        note!("  httpAuthenticationType:     BEARER_TOKEN");
        note!("  Bearer token:               {token}");
        note!();
        note!("or POST /beta/trigger-subscriptions with:");
        note!(
            "{}",
            serde_json::to_string_pretty(&subscription).unwrap_or_default()
        );
    } else if let Some(path) = &prepared.token_file {
        note!("Ingest token: the one kept in {} (Bearer).", path.display());
    } else {
        let kinds = match (
            settings.ingest_tokens.is_empty(),
            settings.ingest_basic.is_empty(),
        ) {
            (false, false) => "bearer tokens and Basic credentials",
            (false, true) => "bearer tokens",
            _ => "Basic credentials",
        };
        note!("Ingest authentication: the configured {kinds}.");
    }
    note!();
    let ui = format!("{scheme}://{host}:{}/", addr.port());
    match (&prepared.new_read_token, &prepared.read_token_file) {
        (Some(token), _) => {
            note!("Web UI and read API: {ui}  (sign in with the read token, shown this once):");
            note!("  Read token: {token}");
        }
        (None, Some(path)) => note!(
            "Web UI and read API: {ui}  (read token kept in {})",
            path.display()
        ),
        (None, None) => note!("Web UI and read API: {ui}  (configured read tokens)"),
    }
    note!("Health: /healthz  Readiness: /readyz  Metrics: /metrics");
    // What the configuration turned into, so that a route left out (a file not read, a section
    // misspelt) or a target not as meant shows before any event is routed. Targets are shown
    // as everywhere else: secrets hidden.
    if !settings.routes.is_empty() {
        note!("Routes ({}):", settings.routes.len());
        for route in settings.routes.iter() {
            let filter = route.filter_text.as_deref().map_or_else(
                || "every event".to_owned(),
                |filter| format!("filter {}", super::terminal_line(filter)),
            );
            note!(
                "  {}: {} to {}{}; {filter}",
                route.name,
                route.sink.kind(),
                super::terminal_line(&route.sink.target()),
                if route.allow_private {
                    " (private addresses allowed)"
                } else {
                    ""
                }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_secret_written_out_in_the_configuration_is_told_from_a_reference() {
        use super::writes_out_a_secret;
        assert!(writes_out_a_secret("[ingest]\ntokens = [\"ptk_abc\"]\n"));
        assert!(writes_out_a_secret("bearer_token = 'abc'"));
        assert!(writes_out_a_secret("basic_password = \"pw\""));
        assert!(!writes_out_a_secret("tokens = [\"${env:TOKEN}\"]"));
        assert!(!writes_out_a_secret(
            "bearer_token = \"${file:/run/secrets/t}\""
        ));
        assert!(!writes_out_a_secret("# tokens = [\"example\"]"));
        assert!(!writes_out_a_secret("path = \"provtrail.db\""));
    }

    #[test]
    fn a_path_is_named_only_as_a_whole() {
        use super::names_path;
        assert!(names_path("cannot read events: no such file", "events"));
        assert!(names_path("the database x.db.", "x.db"));
        assert!(names_path(
            "cannot create the database dir/x.db: its directory",
            "dir/x.db"
        ));
        assert!(!names_path("3 events were kept", "vents"));
        assert!(!names_path("kept in x.db.token", "x.db"));
        assert!(!names_path("in /data/x.db", "x.db"));
        assert!(!names_path("eventsource", "events"));
    }

    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn database_files_other_users_may_read_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("p.db");
        let wal = dir.path().join("p.db-wal");
        for (path, mode) in [(&db, 0o644), (&wal, 0o600)] {
            std::fs::write(path, b"x").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        assert_eq!(readable_by_others(&db), vec![(db.clone(), 0o644)]);
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(readable_by_others(&db), vec![(wal, 0o640)]);
        // A store the server made is its owner's only.
        let made = dir.path().join("made.db");
        let store = provtrail::store::sqlite::SqliteStore::open(
            provtrail::store::sqlite::SqliteSettings::new(&made),
            std::sync::Arc::new(provtrail::metrics::Metrics::new()),
        )
        .unwrap();
        assert_eq!(readable_by_others(&made), Vec::new());
        drop(store);
    }
}
