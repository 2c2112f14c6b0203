//! Wiring: resolved settings in, a running application (store + server) out. `serve`, `demo`, the
//! tests and the benchmark all start the application through here, so they run the same thing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Credentials, generate_token};
use crate::config::{ConfigError, FileConfig, parse_duration, parse_size};
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::routes::{Dispatcher, Routes};
use crate::server::{
    AppState, RunningServer, ServerConfig, Tls, malformed_request_recorder, router,
};
use crate::store::sqlite::{GroupCommit, LogSync, SqliteSettings, SqliteStore};
use crate::store::{SharedStore, StoreError};

/// Everything needed to run, after file, environment and flags are merged.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The HTTP server.
    pub server: ServerConfig,
    /// The embedded store.
    pub store: SqliteSettings,
    /// Ingest bearer tokens as configured (empty when only Basic or no auth is used).
    pub ingest_tokens: Vec<String>,
    /// Ingest `user:password` pairs as configured.
    pub ingest_basic: Vec<String>,
    /// Accept events without credentials.
    pub no_auth: bool,
    /// Tokens of the read API and web UI.
    pub read_tokens: Vec<String>,
    /// Tokens that may retry dead letters and replay through the API.
    pub admin_tokens: Vec<String>,
    /// The compiled routes (none when the file has no `[[routes]]`).
    pub routes: Arc<Routes>,
}

impl Settings {
    /// Resolves a configuration (file settings with overrides already applied) into settings,
    /// checking every value.
    pub fn from_config(config: &FileConfig) -> Result<Self, ConfigError> {
        Settings::build(config, false).map(|(settings, _)| settings)
    }

    /// Resolves like [`Settings::from_config`] for a command that reads the store and the routes
    /// but delivers nothing (`routes list`, `deadletter`, `replay`): a route's secret that only
    /// the server's environment holds stands in as `unset-secret`; the second value says which.
    pub fn from_config_standing_in(
        config: &FileConfig,
    ) -> Result<(Self, Vec<crate::routes::SecretError>), ConfigError> {
        Settings::build(config, true)
    }

    fn build(
        config: &FileConfig,
        stand_in_secrets: bool,
    ) -> Result<(Self, Vec<crate::routes::SecretError>), ConfigError> {
        let mut server = ServerConfig::default();
        let s = &config.server;
        if let Some(listen) = &s.listen {
            server.listen = listen.parse().map_err(|_| ConfigError::Invalid {
                setting: "server.listen".into(),
                message: format!("{listen:?} is not an address like 0.0.0.0:8080"),
            })?;
        }
        server.tls = match (&s.tls_cert, &s.tls_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid {
                    setting: "server.tls_cert / server.tls_key".into(),
                    message: "HTTPS needs both a certificate and a key (each from a flag, \
                              PROVTRAIL_TLS_CERT / PROVTRAIL_TLS_KEY or the file's [server])"
                        .into(),
                });
            }
        };
        if let Some(text) = &s.request_timeout {
            server.request_timeout = timeout("server.request_timeout", text)?;
        }
        if let Some(text) = &s.header_timeout {
            server.header_timeout = timeout("server.header_timeout", text)?;
        }
        if let Some(text) = &s.idle_timeout {
            server.idle_timeout = timeout("server.idle_timeout", text)?;
        }
        if let Some(text) = &s.shutdown_grace {
            server.shutdown_grace = parse_duration("server.shutdown_grace", text)?;
            if server.shutdown_grace > MAX_TIMEOUT {
                return Err(ConfigError::Invalid {
                    setting: "server.shutdown_grace".into(),
                    message: format!("{text:?}: at most 1day"),
                });
            }
        }
        if let Some(n) = s.max_concurrent_requests {
            server.max_concurrent_requests =
                count("server.max_concurrent_requests", n, MAX_REQUESTS)?;
        }
        if let Some(n) = s.max_connections {
            server.max_connections = count("server.max_connections", n, MAX_REQUESTS)?;
        }
        if let Some(n) = s.max_connections_per_address {
            let n = count("server.max_connections_per_address", n, MAX_REQUESTS)?;
            if n > server.max_connections {
                return Err(ConfigError::Invalid {
                    setting: "server.max_connections_per_address".into(),
                    message: format!(
                        "{n}: more than server.max_connections ({})",
                        server.max_connections
                    ),
                });
            }
            server.max_connections_per_address = Some(n);
        }
        if let Some(n) = s.max_wrong_tokens {
            server.max_wrong_tokens = n;
        }
        if let Some(proxies) = &s.trusted_proxies {
            server.trusted_proxies = crate::server::forwarded::TrustedProxies::parse(proxies)
                .map_err(|message| ConfigError::Invalid {
                    setting: "server.trusted_proxies".into(),
                    message,
                })?;
        }
        let i = &config.ingest;
        if let Some(text) = &i.max_body {
            let size = parse_size("ingest.max_body", text)?;
            // Bodies are held in memory whole, several at once.
            server.max_body = usize::try_from(size)
                .ok()
                .filter(|size| (1..=MAX_BODY).contains(size))
                .ok_or_else(|| ConfigError::Invalid {
                    setting: "ingest.max_body".into(),
                    message: format!(
                        "{text:?}: must be between 1 byte and 1GiB (an event is a few \
                         kilobytes; each body is held in memory while it is read)"
                    ),
                })?;
        }
        match &i.max_body_memory {
            // Unset, it makes room for at least one body of the largest size.
            None => server.max_body_memory = server.max_body_memory.max(server.max_body),
            Some(text) => {
                let size = parse_size("ingest.max_body_memory", text)?;
                server.max_body_memory = usize::try_from(size)
                    .ok()
                    .filter(|size| (server.max_body..=MAX_BODY_MEMORY).contains(size))
                    .ok_or_else(|| ConfigError::Invalid {
                        setting: "ingest.max_body_memory".into(),
                        message: format!(
                            "{text:?}: must be between ingest.max_body ({} bytes: room for one \
                             body of the largest size) and 64GiB",
                            server.max_body
                        ),
                    })?;
            }
        }
        let path = config
            .store
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from("provtrail.db"));
        if path.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                setting: "store.path".into(),
                message: "is empty; give the database file's path".into(),
            });
        }
        let mut store = SqliteSettings::new(path);
        let st = &config.store;
        let mut group = GroupCommit::default();
        if let Some(n) = st.commit_max_batch {
            group.max_batch = count("store.commit_max_batch", n, MAX_COMMIT_BATCH)?;
        }
        if let Some(text) = &st.commit_max_wait {
            group.max_wait = parse_duration("store.commit_max_wait", text)?;
            if group.max_wait > Duration::from_secs(1) {
                return Err(ConfigError::Invalid {
                    setting: "store.commit_max_wait".into(),
                    message: "at most 1s: every request waits up to this long".into(),
                });
            }
        }
        if let Some(text) = &st.log_sync {
            group.log_sync = match text.trim() {
                "pipelined" => LogSync::Pipelined,
                "inline" => LogSync::Inline,
                other => {
                    return Err(ConfigError::Invalid {
                        setting: "store.log_sync".into(),
                        message: format!("`{other}`: expected `pipelined` or `inline`"),
                    });
                }
            };
        }
        store.group = group;
        if let Some(text) = &st.busy_timeout {
            store.busy_timeout = parse_duration("store.busy_timeout", text)?;
            // A commit waits this long with its requests unanswered; SQLite itself takes no
            // more than about 24 days.
            if store.busy_timeout > Duration::from_secs(3600) {
                return Err(ConfigError::Invalid {
                    setting: "store.busy_timeout".into(),
                    message: format!("{text:?}: at most 1h"),
                });
            }
        }
        if let Some(text) = &st.max_size {
            store.max_size_bytes = Some(store_max_size(text)?);
        }
        // Credentials may come from the environment or a file, as the routes' secrets do
        // (`${env:NAME}`, `${file:/path}`): taken as written, a reference would be the token
        // itself, and the real one refused. Commands that serve nothing stand a missing one
        // in, one stand-in per setting, so that two unset ones do not pass for one token given
        // to two roles.
        let mut credentials_stood_in = Vec::new();
        let mut resolved = |setting: &str,
                            stand_in: &'static str,
                            values: &[String]|
         -> Result<Vec<String>, ConfigError> {
            let secrets = if stand_in_secrets {
                crate::routes::Secrets::standing_in(Default::default(), stand_in)
            } else {
                crate::routes::Secrets::new(Default::default())
            };
            let values = values
                .iter()
                .map(|value| {
                    secrets.resolve(value).map_err(|err| ConfigError::Invalid {
                        setting: setting.into(),
                        message: err.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            credentials_stood_in.extend(secrets.stood_in());
            Ok(values)
        };
        let ingest_tokens = resolved("ingest.tokens", "unset-ingest-token", &i.tokens)?;
        let ingest_basic = resolved("ingest.basic", "unset:unset-password", &i.basic)?;
        let read_tokens = resolved("read.tokens", "unset-read-token", &config.read.tokens)?;
        let admin_tokens = resolved("admin.tokens", "unset-admin-token", &config.admin.tokens)?;
        for pair in &ingest_basic {
            match pair.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {}
                _ => {
                    return Err(ConfigError::Invalid {
                        setting: "ingest.basic".into(),
                        message: "each entry is user:password, neither of them empty".into(),
                    });
                }
            }
        }
        for (setting, tokens) in [
            ("ingest.tokens", &ingest_tokens),
            ("read.tokens", &read_tokens),
            ("admin.tokens", &admin_tokens),
        ] {
            let unsendable = |token: &&String| !token.is_empty() && !is_sendable_token(token);
            if let Some(token) = tokens.iter().find(unsendable) {
                // Never quoted: it is a secret, and the error may be logged.
                return Err(ConfigError::Invalid {
                    setting: setting.into(),
                    message: format!(
                        "a token of {} characters holds a space or a character an HTTP header \
                         cannot carry: a client could never present it (give printable ASCII \
                         without spaces; in the environment, separate tokens with commas alone)",
                        token.chars().count()
                    ),
                });
            }
        }
        if i.no_auth == Some(true) && (!ingest_tokens.is_empty() || !ingest_basic.is_empty()) {
            return Err(ConfigError::Invalid {
                setting: "ingest.no_auth".into(),
                message: "authentication is off, and ingest credentials are given: they would \
                          be ignored and any request accepted; give either, not both"
                    .into(),
            });
        }
        if read_tokens.iter().any(|token| token.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                setting: "read.tokens".into(),
                message: "a token cannot be empty".into(),
            });
        }
        if ingest_tokens.iter().any(|token| token.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                setting: "ingest.tokens".into(),
                message: "a token cannot be empty".into(),
            });
        }
        let (routes, stood_in) = if stand_in_secrets {
            Routes::compile_standing_in(&config.routes, Some(&store.path))?
        } else {
            (
                Routes::compile_beside(&config.routes, Some(&store.path))?,
                Vec::new(),
            )
        };
        let mut stood_in = stood_in;
        for missing in credentials_stood_in {
            if !stood_in.contains(&missing) {
                stood_in.push(missing);
            }
        }
        let routes = Arc::new(routes);
        let settings = Settings {
            server,
            store,
            ingest_tokens,
            ingest_basic,
            no_auth: i.no_auth.unwrap_or(false),
            read_tokens,
            admin_tokens,
            routes,
        };
        settings.check_token_roles()?;
        Ok((settings, stood_in))
    }

    /// Checks that the roles' tokens stay apart: no read token is an ingest token (a sender
    /// could read the trail), and no admin token is empty or also an ingest or read token (a
    /// read token that is also an admin token would let everyone who reads retry and replay).
    pub fn check_token_roles(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| ConfigError::Invalid {
            setting: "admin.tokens".into(),
            message: message.into(),
        };
        if self
            .read_tokens
            .iter()
            .any(|token| self.ingest_tokens.contains(token))
        {
            // Also called once the tokens kept beside the database have joined the settings.
            return Err(ConfigError::Invalid {
                setting: "read.tokens".into(),
                message: "a read token must not also be an ingest token (the one kept beside \
                          the database included)"
                    .into(),
            });
        }
        for token in &self.admin_tokens {
            if token.trim().is_empty() {
                return Err(invalid("a token cannot be empty"));
            }
            if self.ingest_tokens.contains(token) {
                return Err(invalid("an admin token must not also be an ingest token"));
            }
            if self.read_tokens.contains(token) {
                return Err(invalid(
                    "an admin token must not also be a read token: every reader could then retry \
                     dead letters and replay events",
                ));
            }
        }
        Ok(())
    }

    /// The credentials the read API and the web UI accept.
    pub fn read_credentials(&self) -> Credentials {
        let mut credentials = Credentials::default();
        for token in &self.read_tokens {
            credentials.add_bearer(token);
        }
        credentials
    }

    /// The credentials that may change things through the API (`[admin] tokens`).
    pub fn admin_credentials(&self) -> Credentials {
        let mut credentials = Credentials::default();
        for token in &self.admin_tokens {
            credentials.add_bearer(token);
        }
        credentials
    }

    /// The credentials the ingest routes accept.
    pub fn credentials(&self) -> Credentials {
        if self.no_auth {
            return Credentials::open();
        }
        let mut credentials = Credentials::default();
        for token in &self.ingest_tokens {
            credentials.add_bearer(token);
        }
        for pair in &self.ingest_basic {
            // Checked in `from_config`.
            let _ = credentials.add_basic(pair);
        }
        credentials
    }
}

/// Most requests (or connections) served at once: far beyond what one machine serves, and within
/// what the server's semaphores can count.
const MAX_REQUESTS: usize = 1_000_000;

/// Most documents in one group commit: each holds its place in memory until the commit.
const MAX_COMMIT_BATCH: usize = 100_000;

/// Largest request body.
const MAX_BODY: usize = 1 << 30;

/// Largest `ingest.max_body_memory`: its kibibytes fit the permits of one request.
const MAX_BODY_MEMORY: usize = 64 << 30;

/// Smallest `store.max_size`.
const MIN_STORE_SIZE: u64 = 64 << 10;

/// The bytes of a `store.max_size` (`--max-db-size`) as written (`2GiB`).
pub fn store_max_size(text: &str) -> Result<u64, ConfigError> {
    let size = parse_size("store.max_size", text)?;
    // Below this, the schema alone fills the cap and nothing could be stored.
    if size < MIN_STORE_SIZE {
        return Err(ConfigError::Invalid {
            setting: "store.max_size".into(),
            message: format!(
                "{text:?}: at least 64KiB (an empty database takes more than that; leave the \
                 setting out for no limit)"
            ),
        });
    }
    Ok(size)
}

/// Longest timeout: a day, far beyond any request's need, and within what a timer can add to
/// the current time.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

fn count(setting: &str, n: usize, max: usize) -> Result<usize, ConfigError> {
    if (1..=max).contains(&n) {
        Ok(n)
    } else {
        Err(ConfigError::Invalid {
            setting: setting.into(),
            message: format!("{n}: must be between 1 and {max}"),
        })
    }
}

/// A timeout of at least a second (one shorter cuts off ordinary requests: a body that takes a
/// moment to arrive, a commit that waits for the disk) and at most a day.
fn timeout(setting: &str, text: &str) -> Result<Duration, ConfigError> {
    let duration = parse_duration(setting, text)?;
    if duration < Duration::from_secs(1) {
        return Err(ConfigError::Invalid {
            setting: setting.into(),
            message: format!("{text:?}: at least 1s"),
        });
    }
    if duration > MAX_TIMEOUT {
        return Err(ConfigError::Invalid {
            setting: setting.into(),
            message: format!("{text:?}: at most 1day"),
        });
    }
    Ok(duration)
}

/// Whether a client can present this token in an `Authorization` header: printable ASCII, no
/// spaces, not empty.
fn is_sendable_token(token: &str) -> bool {
    !token.is_empty() && token.chars().all(|c| c.is_ascii_graphic())
}

/// Where a generated ingest token is kept: beside the database.
pub fn token_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".token");
    PathBuf::from(name)
}

/// Where a generated read token is kept: beside the database.
pub fn read_token_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".read-token");
    PathBuf::from(name)
}

/// Reads the ingest token kept beside the database, or generates and keeps one (mode 0600).
/// Returns the token and whether it was generated now.
pub fn ensure_ingest_token(db: &Path) -> std::io::Result<(String, bool)> {
    ensure_token(&token_path(db), "ptk")
}

/// Reads the read token kept beside the database, or generates and keeps one (mode 0600).
pub fn ensure_read_token(db: &Path) -> std::io::Result<(String, bool)> {
    ensure_token(&read_token_path(db), "ptr")
}

fn ensure_token(path: &Path, prefix: &str) -> std::io::Result<(String, bool)> {
    if let Some(token) = kept_token(path)? {
        keep_private(path);
        return Ok((token, false));
    }
    let token = generate_token(prefix);
    write_new_token(path, &format!("{token}\n"))?;
    Ok((token, true))
}

/// Writes a generated token where no token is kept: into a new file, or into a blank regular
/// one. Never through a link: a link left where the token goes (one that leads nowhere, say)
/// would put the secret wherever it points, perhaps where others read.
fn write_new_token(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    match std::fs::symlink_metadata(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            options.write(true).create_new(true);
        }
        Err(err) => return Err(err),
        Ok(meta) if meta.is_file() => {
            options.write(true);
        }
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file (a link, a directory or a device): a generated token \
                 is only written into a file of its own; remove it, or pass tokens with the \
                 command line or the configuration",
                path.display()
            )));
        }
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    // A link put in its place between the look above and the open is not followed either.
    #[cfg(target_os = "linux")]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        rustix::fs::OFlags::NOFOLLOW.bits() as i32,
    );
    let mut file = options.open(path)?;
    crate::claim_output(&file)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// The token kept in `path`, if there is one (none for a missing or blank file); an error for
/// a file that holds something no client could present.
fn kept_token(path: &Path) -> std::io::Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let token = text.trim();
    if token.is_empty() {
        return Ok(None);
    }
    // One token, one line: several lines would be taken as one token that no client presents,
    // and every request refused.
    if !is_sendable_token(token) {
        return Err(std::io::Error::other(format!(
            "{} holds more than one token, or characters no client can send: it must hold one \
             token on one line (printable ASCII); remove the file to have a new one generated, \
             or pass tokens with the command line or the configuration",
            path.display()
        )));
    }
    Ok(Some(token.to_owned()))
}

/// The settings with the tokens kept beside the database joined to them, without generating
/// any, as `serve` takes them (a kept token serves a role the configuration gives none): for
/// `provtrail config check`, which then checks the roles apart as `serve` does.
pub fn with_kept_tokens(settings: &Settings) -> std::io::Result<Settings> {
    let mut joined = settings.clone();
    let ingest = kept_token(&token_path(&settings.store.path))?;
    let read = kept_token(&read_token_path(&settings.store.path))?;
    if !joined.no_auth && joined.ingest_tokens.is_empty() && joined.ingest_basic.is_empty() {
        joined.ingest_tokens.extend(ingest);
    }
    if joined.read_tokens.is_empty() {
        joined.read_tokens.extend(read);
    }
    Ok(joined)
}

/// A token file others can read is made the owner's alone, with a warning: anyone who reads it
/// can post events, or read them.
#[cfg(unix)]
fn keep_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        let made = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700));
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "the token file could be read by other users; {}",
            if made.is_ok() {
                "it is now readable by its owner only (mode 0600)"
            } else {
                "its mode could not be changed: make it 0600"
            }
        );
    }
}

#[cfg(not(unix))]
fn keep_private(_path: &Path) {}

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server cannot start.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    /// Another server already serves from the same store.
    #[error(
        "another provtrail server is already using {db}{holder}: two servers on one store \
         would each deliver every route's events; stop it first, or give this one another \
         --db"
    )]
    StoreInUse { db: String, holder: String },
    /// The lock that keeps a second server off the store cannot be taken.
    #[error("cannot lock the store for this server ({path}): {reason}")]
    Lock { path: String, reason: String },
}

/// Takes an exclusive `flock` on `file` without waiting: false when another process holds it.
#[cfg(target_os = "linux")]
fn lock_exclusively(file: &std::fs::File) -> std::io::Result<bool> {
    use rustix::fs::{FlockOperation, flock};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(err) if err == rustix::io::Errno::WOULDBLOCK => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Elsewhere a second server is not detected.
#[cfg(not(target_os = "linux"))]
fn lock_exclusively(_file: &std::fs::File) -> std::io::Result<bool> {
    Ok(true)
}

/// Refuses a database file with a second name (a hard link): SQLite keeps a log for each name,
/// and writers under two names corrupt it. Refused rather than locked under one of them.
pub fn check_single_name(db: &Path) -> Result<(), StartError> {
    let db = crate::store::written_path(db).unwrap_or_else(|| db.to_path_buf());
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(&db) {
        use std::os::unix::fs::MetadataExt as _;
        if meta.is_file() && meta.nlink() > 1 {
            return Err(StartError::Lock {
                path: db.display().to_string(),
                reason: format!(
                    "the database has {} hard links: SQLite keeps a log for each name, and \
                     writes under two names corrupt it; keep one name (a symbolic link is \
                     fine)",
                    meta.nlink()
                ),
            });
        }
    }
    Ok(())
}

/// The lock a server holds on its store while it runs: `<database>.lock` beside the file the
/// path leads to (links followed, so that two names of one database share one lock), locked
/// exclusively (`flock`, released by the kernel when the process ends, however it ends) and
/// holding the process id for the message a second server gives. Other commands that write
/// (`ingest`) do not take it: they may run beside a server.
#[derive(Debug)]
pub struct StoreLock {
    _file: std::fs::File,
    /// The lock file, when this start made it (a start that fails takes it away again).
    made: Option<PathBuf>,
}

impl StoreLock {
    /// Takes the lock of the store at `db`, or says who holds it.
    pub fn take(db: &Path) -> Result<StoreLock, StartError> {
        use std::io::{Read as _, Seek as _, Write as _};
        let failed = |path: &Path, err: std::io::Error| StartError::Lock {
            path: path.display().to_string(),
            reason: err.to_string(),
        };
        let target = crate::store::written_path(db).unwrap_or_else(|| db.to_path_buf());
        check_single_name(&target)?;
        let mut name = target.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let existed = path.exists();
        let mut file = crate::open_private(&path).map_err(|err| failed(&path, err))?;
        match lock_exclusively(&file) {
            Ok(true) => {}
            Ok(false) => {
                let mut holder = String::new();
                let _ = std::fs::File::open(&path).and_then(|mut f| f.read_to_string(&mut holder));
                let holder = holder.trim();
                return Err(StartError::StoreInUse {
                    db: db.display().to_string(),
                    holder: if holder.chars().all(|c| c.is_ascii_digit()) && !holder.is_empty() {
                        format!(" (process {holder})")
                    } else {
                        String::new()
                    },
                });
            }
            Err(err) => return Err(failed(&path, err)),
        }
        // Best effort: the lock is what counts, the id only names the holder.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()));
        Ok(StoreLock {
            _file: file,
            made: (!existed).then_some(path),
        })
    }

    /// For a start that failed: the lock file goes if this start made it, then the lock.
    pub fn give_up(self) {
        if let Some(path) = &self.made {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The running application.
#[derive(Debug)]
pub struct App {
    /// The HTTP server.
    pub server: RunningServer,
    /// The store.
    pub store: SharedStore,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The configured routes.
    pub routes: Arc<Routes>,
    dispatcher: Option<Dispatcher>,
    /// The ingest requests' tasks that keep what arrived (see `AppState::keeping`).
    keeping: tokio_util::task::TaskTracker,
    /// `server.shutdown_grace`.
    shutdown_grace: Duration,
    /// Held until the store is closed.
    _lock: StoreLock,
}

/// An [`App`] but for its lock.
struct Started {
    server: RunningServer,
    store: SharedStore,
    metrics: Arc<Metrics>,
    routes: Arc<Routes>,
    dispatcher: Option<Dispatcher>,
    keeping: tokio_util::task::TaskTracker,
    shutdown_grace: Duration,
}

impl Started {
    fn with_lock(self, lock: StoreLock) -> App {
        App {
            server: self.server,
            store: self.store,
            metrics: self.metrics,
            routes: self.routes,
            dispatcher: self.dispatcher,
            keeping: self.keeping,
            shutdown_grace: self.shutdown_grace,
            _lock: lock,
        }
    }
}

/// Least time the store gets to close on shutdown, past the grace: its last commit, and a
/// checkpoint.
const STORE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Longest time deliveries in flight get to finish on shutdown (within `shutdown_grace`); those
/// still running stay pending and are attempted again on the next start.
const DELIVERY_GRACE: Duration = Duration::from_secs(10);

impl App {
    /// The tasks keeping what ingest requests received, also those whose clients left: how
    /// many are under way (`len`) while the server stops.
    pub fn keeping(&self) -> tokio_util::task::TaskTracker {
        self.keeping.clone()
    }

    /// Takes the store's lock, opens the store and starts serving.
    pub async fn start(settings: &Settings) -> Result<App, StartError> {
        let lock = StoreLock::take(&settings.store.path)?;
        Self::start_locked(settings, lock).await
    }

    /// Opens the store whose lock is taken and starts serving; on failure the lock is given up.
    pub async fn start_locked(settings: &Settings, lock: StoreLock) -> Result<App, StartError> {
        match Self::start_with(settings).await {
            Ok(parts) => Ok(parts.with_lock(lock)),
            Err(err) => {
                lock.give_up();
                Err(err)
            }
        }
    }

    async fn start_with(settings: &Settings) -> Result<Started, StartError> {
        // What can fail without the store is tried first (the certificate, the port), so that a
        // failed start leaves no new database behind.
        let tls = match &settings.server.tls {
            Some((cert, key)) => Some(Tls::from_pem_files(cert, key)?),
            None => None,
        };
        if let Some(warning) = tls.as_ref().and_then(Tls::warning) {
            tracing::warn!("{warning}");
        }
        let listener = RunningServer::bind(&settings.server).await?;
        let metrics = Arc::new(Metrics::new());
        let store_settings = settings.store.clone();
        let store_metrics = metrics.clone();
        let store =
            tokio::task::spawn_blocking(move || SqliteStore::open(store_settings, store_metrics))
                .await
                .map_err(|err| {
                    StoreError::Internal(format!("opening the store failed: {err}"))
                })??;
        let store: SharedStore = Arc::new(store);
        let mut server_config = settings.server.clone();
        server_config.ingest_credentials = settings.credentials();
        server_config.read_credentials = settings.read_credentials();
        let routes = settings.routes.clone();
        let mut ingestor = Ingestor::new(server_config.max_body);
        if !routes.is_empty() {
            ingestor = ingestor.with_routes(routes.clone());
        }
        let state = AppState::new(
            store.clone(),
            Arc::new(ingestor),
            metrics.clone(),
            &server_config,
        )
        .with_routes(routes.clone(), settings.admin_credentials());
        let on_malformed = malformed_request_recorder(state.clone());
        let keeping = state.keeping();
        let router = router(state, &server_config);
        let server = match RunningServer::start_on(
            listener,
            router,
            &server_config,
            tls,
            Some(on_malformed),
        ) {
            Ok(server) => server,
            Err(err) => {
                store.close().await;
                return Err(err.into());
            }
        };
        let dispatcher = (!routes.is_empty())
            .then(|| Dispatcher::start(routes.clone(), store.clone(), metrics.clone()));
        Ok(Started {
            server,
            store,
            metrics,
            routes,
            dispatcher,
            keeping,
            shutdown_grace: server_config.shutdown_grace,
        })
    }

    /// Stops accepting, answers in-flight requests, then commits what is queued and closes the
    /// store. False when the grace period ended with requests still unanswered, or with the
    /// store's last commits unfinished.
    pub async fn shutdown(self) -> bool {
        let began = std::time::Instant::now();
        let answered = self.server.shutdown().await;
        // A body that arrived whole is kept though its client left (its request is no longer
        // among those answered above): its commit is waited for, within the grace, before the
        // store closes.
        self.keeping.close();
        let left = self
            .shutdown_grace
            .saturating_sub(began.elapsed())
            .max(Duration::from_millis(500));
        if tokio::time::timeout(left, self.keeping.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "shutdown grace period over with events still being kept; they are not answered"
            );
        }
        if let Some(dispatcher) = self.dispatcher {
            // What is left of the grace, at most DELIVERY_GRACE: a sink that hangs does not
            // hold the process past the time it was given (its deliveries stay pending). A
            // moment at least, for attempts that are done to be recorded.
            let left = self
                .shutdown_grace
                .saturating_sub(began.elapsed())
                .clamp(Duration::from_millis(500), DELIVERY_GRACE);
            dispatcher.shutdown(left).await;
        }
        // A store that cannot commit (a database another process holds locked, a stalled disk)
        // would hold the stop for its lock wait, once per batch still queued: what is left of
        // the grace, a moment at least, is what it gets. Stopping then is what a crash is to the
        // store (every commit is whole or absent); what was answered 200 is on disk.
        // Except while it saves the copy of a database file deleted or replaced under it: that
        // copy holds events acknowledged and found nowhere else, and is waited for.
        let left = self
            .shutdown_grace
            .saturating_sub(began.elapsed())
            .max(STORE_CLOSE_GRACE);
        let store = self.store.clone();
        if close_within(self.store.close(), left, || {
            store.is_saving_what_would_be_lost()
        })
        .await
        {
            return answered;
        }
        tracing::warn!(
            "shutdown grace period over with the store's last commits unfinished (the database \
             locked by another process, a stalled disk, or a search index far behind); stopping \
             without them: what was answered 200 is on disk, records of requests cut off by the \
             stop may be missing from the delivery log, and the search index catches up at the \
             next start"
        );
        false
    }
}

/// Awaits `close` for `left` at most, and after that for as long as `saving()` says it is saving
/// what would be lost (checked every [`STORE_CLOSE_GRACE`]); whether it finished.
async fn close_within(
    close: impl Future<Output = ()>,
    mut left: Duration,
    saving: impl Fn() -> bool,
) -> bool {
    tokio::pin!(close);
    let mut told = false;
    loop {
        if tokio::time::timeout(left, &mut close).await.is_ok() {
            return true;
        }
        if !saving() {
            return false;
        }
        if !told {
            told = true;
            tracing::warn!(
                "shutdown grace period over while the database file, deleted or replaced while \
                 serving, is being saved as it was; waiting for the copy"
            );
        }
        left = STORE_CLOSE_GRACE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_close_that_saves_what_would_be_lost_is_waited_for_past_the_grace() {
        let saving = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let done = saving.clone();
        // Saving for 5 s, then 10 s more of other work: waited for while saving, then for one
        // more grace.
        let close = async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            done.store(false, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(10)).await;
        };
        let started = tokio::time::Instant::now();
        let check = saving.clone();
        let finished = close_within(close, Duration::from_secs(2), move || {
            check.load(std::sync::atomic::Ordering::Relaxed)
        })
        .await;
        assert!(!finished);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(5)
                && waited <= Duration::from_secs(5) + 2 * STORE_CLOSE_GRACE,
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_close_that_saves_nothing_is_cut_at_the_grace() {
        let close = tokio::time::sleep(Duration::from_secs(60));
        let started = tokio::time::Instant::now();
        assert!(!close_within(close, Duration::from_secs(2), || false).await);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        let quick = tokio::time::sleep(Duration::from_millis(10));
        assert!(close_within(quick, Duration::from_secs(2), || false).await);
    }

    fn with_log_sync(value: &str) -> Result<Settings, ConfigError> {
        let mut config = FileConfig::default();
        config.store.log_sync = Some(value.into());
        Settings::from_config(&config)
    }

    #[test]
    fn the_log_is_synced_inline_unless_configured_pipelined() {
        let default = Settings::from_config(&FileConfig::default()).unwrap();
        assert_eq!(default.store.group.log_sync, LogSync::Inline);
        let pipelined = with_log_sync("pipelined").unwrap();
        assert_eq!(pipelined.store.group.log_sync, LogSync::Pipelined);
        let err = with_log_sync("sometimes").unwrap_err().to_string();
        assert!(
            err.contains("store.log_sync") && err.contains("sometimes"),
            "{err}"
        );
    }

    fn settings_error(change: impl FnOnce(&mut FileConfig)) -> String {
        let mut config = FileConfig::default();
        change(&mut config);
        Settings::from_config(&config).unwrap_err().to_string()
    }

    #[test]
    fn numbers_past_what_the_server_can_hold_are_refused_with_their_setting() {
        type Change = fn(&mut FileConfig);
        let cases: [(&str, Change); 11] = [
            ("store.commit_max_batch", |c| {
                c.store.commit_max_batch = Some(usize::MAX)
            }),
            ("server.max_concurrent_requests", |c| {
                c.server.max_concurrent_requests = Some(usize::MAX)
            }),
            ("server.max_connections", |c| {
                c.server.max_connections = Some(1 << 40)
            }),
            ("server.idle_timeout", |c| {
                c.server.idle_timeout = Some("500000000000y".into())
            }),
            ("server.header_timeout", |c| {
                c.server.header_timeout = Some("2days".into())
            }),
            ("server.request_timeout", |c| {
                c.server.request_timeout = Some("1000y".into())
            }),
            ("server.shutdown_grace", |c| {
                c.server.shutdown_grace = Some("1000y".into())
            }),
            ("ingest.max_body", |c| {
                c.ingest.max_body = Some("1TiB".into())
            }),
            ("ingest.max_body_memory", |c| {
                c.ingest.max_body_memory = Some("65GiB".into())
            }),
            // Room for less than one body of the largest size.
            ("ingest.max_body_memory", |c| {
                c.ingest.max_body = Some("2MiB".into());
                c.ingest.max_body_memory = Some("1MiB".into())
            }),
            ("store.max_size", |c| c.store.max_size = Some("0".into())),
        ];
        for (setting, change) in cases {
            let err = settings_error(change);
            assert!(err.contains(setting), "{setting}: {err}");
        }
        // The largest of each still starts.
        let mut config = FileConfig::default();
        config.store.commit_max_batch = Some(100_000);
        config.server.max_concurrent_requests = Some(1_000_000);
        config.server.idle_timeout = Some("1day".into());
        config.ingest.max_body = Some("1GiB".into());
        config.store.max_size = Some("2TB".into());
        let settings = Settings::from_config(&config).unwrap();
        assert_eq!(settings.store.max_size_bytes, Some(2_000_000_000_000));
        // Unset, the bodies' room holds at least one of the largest.
        assert_eq!(settings.server.max_body_memory, 1 << 30);
        config.ingest.max_body = None;
        let settings = Settings::from_config(&config).unwrap();
        assert_eq!(
            settings.server.max_body_memory,
            crate::server::DEFAULT_MAX_BODY_MEMORY
        );
        config.ingest.max_body_memory = Some("64GiB".into());
        let settings = Settings::from_config(&config).unwrap();
        assert_eq!(settings.server.max_body_memory, 64 << 30);
    }

    #[test]
    fn the_share_of_one_address_is_at_most_the_cap() {
        let err = settings_error(|c| {
            c.server.max_connections = Some(100);
            c.server.max_connections_per_address = Some(101);
        });
        assert!(
            err.contains("server.max_connections_per_address") && err.contains("(100)"),
            "{err}"
        );
        let err = settings_error(|c| c.server.max_connections_per_address = Some(0));
        assert!(err.contains("server.max_connections_per_address"), "{err}");
        let mut config = FileConfig::default();
        config.server.max_connections = Some(100);
        config.server.max_connections_per_address = Some(100);
        let settings = Settings::from_config(&config).unwrap();
        assert_eq!(settings.server.max_connections_per_address, Some(100));
        // Unset, the listener gives one address half of the cap.
        let settings = Settings::from_config(&FileConfig::default()).unwrap();
        assert_eq!(settings.server.max_connections_per_address, None);
    }

    #[test]
    fn settings_no_client_could_use_are_refused() {
        let err = settings_error(|c| c.store.busy_timeout = Some("30d".into()));
        assert!(err.contains("store.busy_timeout"), "{err}");
        let err = settings_error(|c| c.ingest.tokens = vec!["tök".into()]);
        assert!(
            err.contains("ingest.tokens") && !err.contains("tök"),
            "{err}"
        );
        let err = settings_error(|c| c.read.tokens = vec!["has space".into()]);
        assert!(err.contains("read.tokens"), "{err}");
        for basic in [":", "user:", ":password", "nocolon"] {
            let err = settings_error(|c| c.ingest.basic = vec![basic.into()]);
            assert!(err.contains("ingest.basic"), "{basic}: {err}");
        }
        let err = settings_error(|c| {
            c.ingest.no_auth = Some(true);
            c.ingest.tokens = vec!["ptk_token".into()];
        });
        assert!(err.contains("ingest.no_auth"), "{err}");
        for timeout in ["0s", "500ms"] {
            let err = settings_error(|c| c.server.request_timeout = Some(timeout.into()));
            assert!(err.contains("at least 1s"), "{timeout}: {err}");
        }
        // Passwords may hold anything Basic can carry.
        let mut config = FileConfig::default();
        config.ingest.basic = vec!["isc:pa:ss wörd".into()];
        assert!(Settings::from_config(&config).is_ok());
    }
}
