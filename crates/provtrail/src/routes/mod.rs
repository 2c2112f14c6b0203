//! Routes: deliver stored events that match a filter to a sink, at least once.
//!
//! ```text
//! ingest core ──RouteMatcher (Jayway filter)──▶ PreparedEvent.routes
//!        writer: event row + one outbox row per matching route, in the same transaction
//!        dispatcher (one task per route): due outbox rows ──▶ Sink::deliver (timeout,
//!            concurrency limit) ──▶ attempt results, written back through the writer
//! ```
//!
//! - `config` is the `[[routes]]` section as written; [`Routes::compile`] checks it (filters,
//!   sinks, secrets, durations) and fails with the route's name and the setting at fault.
//! - `sink` is the [`Sink`] trait; `webhook`, `nats` and `file` are one module each.
//! - `worker` is the [`Dispatcher`]: polling, backoff with full jitter, dead letters, a per-route
//!   breaker that stops hammering a sink that is down.
//! - `ssrf` guards webhook targets; `secret` resolves `${env:…}`/`${file:…}` and redacts.

mod file;
mod nats;
pub mod render;
pub mod replay;
pub mod secret;
pub mod sink;
pub mod ssrf;
pub mod template;
mod webhook;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use provtrail_jsonpath::Path;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use secret::{REDACTED, Redactor, SecretError, Secrets};
pub use sink::{Delivery, Preview, Sent, Sink, SinkError, delivery_key, event_key};
pub use worker::Dispatcher;

use crate::config::ConfigError;
use crate::ingest::RouteMatcher;

/// One `[[routes]]` entry as written in the configuration file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Unique name: letters, digits, `-`, `_`, `.`. (Missing settings default to empty so that
    /// [`Routes::compile`] reports them with the route's name rather than the parser's line.)
    #[serde(default)]
    pub name: String,
    /// Jayway JsonPath filter, as in an ISC subscription; every event matches without one.
    #[serde(default)]
    pub filter: Option<String>,
    /// The sink: `type = "webhook" | "nats" | "file"` and that sink's settings.
    #[serde(default)]
    pub sink: toml::Table,
    /// When to try again and when to give up.
    #[serde(default)]
    pub retry: RetrySection,
    /// Deliveries in flight at once [default: 4].
    pub concurrency: Option<usize>,
    /// Time one attempt may take [default: 10s].
    pub timeout: Option<String>,
    /// Allow webhook targets in private, loopback and link-local ranges.
    #[serde(default)]
    pub allow_private: bool,
}

// The sink table may hold literal secrets: never print it.
impl std::fmt::Debug for RouteSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSection")
            .field("name", &self.name)
            .field("filter", &self.filter)
            .field("sink", &self.sink.get("type").and_then(|t| t.as_str()))
            .finish_non_exhaustive()
    }
}

/// `[routes.retry]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts before a delivery goes to the dead letters.
    pub max_attempts: Option<u32>,
    /// Age after which a failed attempt sends the delivery to the dead letters [default: 3d when
    /// `max_attempts` is not set].
    pub max_age: Option<String>,
    /// Upper bound of the first retry delay [default: 1s].
    pub initial_delay: Option<String>,
    /// Largest retry delay [default: 5m].
    pub max_delay: Option<String>,
}

/// When to try again and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before giving up.
    pub max_attempts: Option<u32>,
    /// Age (since the delivery was created or last retried from the dead letters) after which a
    /// failed attempt is the last.
    pub max_age: Option<Duration>,
    /// Cap of the first delay; each further attempt doubles the cap.
    pub initial_delay: Duration,
    /// Largest cap.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: None,
            max_age: Some(Duration::from_secs(3 * 86_400)),
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The cap of the delay after failed attempt `attempt` (1-based): `initial * 2^(attempt-1)`,
    /// at most `max_delay`.
    pub fn cap(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
        self.initial_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The delay after failed attempt `attempt`: exponential backoff with full jitter (uniform
    /// between zero and the cap), so that deliveries that failed together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.cap(attempt).mul_f64(rand::random::<f64>())
    }

    /// True when a delivery that has failed `attempts` times and is `age` old gets no more.
    pub fn exhausted(&self, attempts: u32, age: Duration) -> bool {
        self.max_attempts.is_some_and(|max| attempts >= max) || self.too_old(age)
    }

    /// True when a delivery `age` old gets no more attempts, however few it has had.
    pub fn too_old(&self, age: Duration) -> bool {
        self.max_age.is_some_and(|max| age >= max)
    }

    /// True when a delivery `age` old that fails as a paused route's probe gets no more: past
    /// `max_age`, or past the default age when the policy sets only `max_attempts` (which
    /// probes do not use), so that a sink gone for good does not keep its deliveries for ever.
    pub fn too_old_for_probes(&self, age: Duration) -> bool {
        self.age_limit_for_probes().is_some_and(|max| age >= max)
    }

    /// The age past which a delivery that only finds the sink down ends (see
    /// [`RetryPolicy::too_old_for_probes`]).
    pub fn age_limit_for_probes(&self) -> Option<Duration> {
        self.max_age.or(RetryPolicy::default().max_age)
    }

    /// How long to honour a target's `Retry-After`: up to the larger of `max_delay` and five
    /// minutes, so that one answer cannot stop the route for a day.
    pub fn honoured_wait(&self, retry_after: Duration) -> Duration {
        retry_after.min(self.max_delay.max(Duration::from_secs(300)))
    }
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// The name.
    pub name: String,
    /// The filter as written.
    pub filter_text: Option<String>,
    filter: Option<Path>,
    /// Where deliveries go.
    pub sink: Arc<dyn Sink>,
    /// Retries.
    pub policy: RetryPolicy,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Time one attempt may take.
    pub timeout: Duration,
    /// Private targets allowed.
    pub allow_private: bool,
    /// Whether its sink is paused now, as the server's workers see it.
    pub status: RouteStatus,
}

/// What a route's workers are doing, for the API and the pages of the same process.
#[derive(Debug, Default)]
pub struct RouteStatus {
    /// When the route paused (Unix milliseconds); 0 while it delivers.
    paused_since: std::sync::atomic::AtomicI64,
}

impl RouteStatus {
    /// Since when the route has been paused because its sink keeps failing (or asked to wait),
    /// probing with one delivery at a time; none while it delivers.
    pub fn paused_since(&self) -> Option<crate::store::Millis> {
        match self.paused_since.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            at => Some(at),
        }
    }

    /// The route paused (kept at the first pause's time while it stays paused).
    pub fn pause(&self, at: crate::store::Millis) {
        let _ = self.paused_since.compare_exchange(
            0,
            at.max(1),
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The sink answered: the route delivers again.
    pub fn resume(&self) {
        self.paused_since
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Route {
    /// Does the filter match this event (as ISC decides: a non-empty answer)?
    pub fn matches(&self, event: &Value) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|filter| filter.matches(event))
    }

    /// The compiled filter, if the route has one.
    pub fn compiled_filter(&self) -> Option<&Path> {
        self.filter.as_ref()
    }

    /// What `routes list` and the API show; no secrets.
    pub fn info(&self) -> RouteInfo {
        RouteInfo {
            name: self.name.clone(),
            filter: self.filter_text.clone(),
            sink: self.sink.kind().to_owned(),
            target: self.sink.target(),
            concurrency: self.concurrency,
            timeout: humantime::format_duration(self.timeout).to_string(),
            allow_private: self.allow_private,
            retry: RetryInfo {
                max_attempts: self.policy.max_attempts,
                max_age: self
                    .policy
                    .max_age
                    .map(|age| humantime::format_duration(age).to_string()),
                initial_delay: humantime::format_duration(self.policy.initial_delay).to_string(),
                max_delay: humantime::format_duration(self.policy.max_delay).to_string(),
            },
        }
    }
}

/// What `routes test` shows: does the event match, and what would be sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestOutcome {
    /// The route.
    pub route: String,
    /// Does the route's filter match the event?
    pub matched: bool,
    /// Sink kind.
    pub sink: String,
    /// What would be sent (secrets removed), when the sink can render it.
    pub preview: Option<Preview>,
    /// Why nothing could be rendered (a template error, an event that is not JSON).
    pub error: Option<String>,
}

impl Route {
    /// Evaluates the filter on `raw` and renders what the sink would send, without sending.
    pub fn test(
        &self,
        raw: &[u8],
        event_id: i64,
        received_at: crate::store::Millis,
    ) -> TestOutcome {
        let mut outcome = TestOutcome {
            route: self.name.clone(),
            matched: false,
            sink: self.sink.kind().to_owned(),
            preview: None,
            error: None,
        };
        let event: Value = match serde_json::from_slice(raw) {
            Ok(event) => event,
            Err(err) => {
                outcome.error = Some(format!("the event is not JSON: {err}"));
                return outcome;
            }
        };
        outcome.matched = self.matches(&event);
        let invocation_id = event
            .get("_metadata")
            .and_then(|metadata| metadata.get("invocationId"))
            .and_then(Value::as_str);
        let event_key = event_key(raw, invocation_id);
        let key = delivery_key(&event_key, &self.name);
        let delivery = Delivery {
            delivery_id: 0,
            route: &self.name,
            event_id,
            event_key: &event_key,
            key: &key,
            attempt: 1,
            received_at,
            raw,
            event: &event,
        };
        match self.sink.preview(&delivery) {
            Ok(preview) => outcome.preview = Some(preview),
            Err(err) => outcome.error = Some(err.message),
        }
        outcome
    }
}

/// A route as shown to people and scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteInfo {
    /// Name.
    pub name: String,
    /// Filter as written (none: every event).
    pub filter: Option<String>,
    /// Sink kind.
    pub sink: String,
    /// Where it delivers (secrets removed).
    pub target: String,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Time one attempt may take.
    pub timeout: String,
    /// Private targets allowed.
    pub allow_private: bool,
    /// Retry policy.
    pub retry: RetryInfo,
}

/// A retry policy as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetryInfo {
    /// Attempts before the dead letters.
    pub max_attempts: Option<u32>,
    /// Age after which a failure is the last.
    pub max_age: Option<String>,
    /// Cap of the first delay.
    pub initial_delay: String,
    /// Largest delay.
    pub max_delay: String,
}

/// Every configured route.
#[derive(Debug, Default)]
pub struct Routes {
    routes: Vec<Arc<Route>>,
    redactor: Redactor,
    /// The event's top-level members that the filters read, when they read only some
    /// ([`RouteMatcher::read_members`]).
    read_members: Option<Vec<String>>,
}

/// Longest route name.
const MAX_NAME_LEN: usize = 64;

/// Whether `name` is one a route can have: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `-`,
/// `_` or `.`, and not `.` or `..`, which would be the route's path in the API and the web UI
/// (`/routes/{name}`), where they mean this folder and the one above. Not trimmed: the name
/// written is the one the commands, the API and the metrics use.
pub fn is_route_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !matches!(name, "." | "..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn invalid(route: &str, setting: &str, message: impl Into<String>) -> ConfigError {
    let setting = if setting.is_empty() {
        format!("routes.{route}")
    } else {
        format!("routes.{route}.{setting}")
    };
    ConfigError::Invalid {
        setting,
        message: message.into(),
    }
}

/// Longest duration any route setting takes: longer ones are mistakes (a year of backoff is
/// already no retry), and they would overflow the clocks that schedule attempts.
const MAX_SETTING_DURATION: Duration = Duration::from_secs(366 * 86_400);

fn duration(
    route: &str,
    setting: &str,
    text: Option<&str>,
) -> Result<Option<Duration>, ConfigError> {
    text.map(|text| {
        let parsed = humantime::parse_duration(text.trim()).map_err(|err| {
            invalid(
                route,
                setting,
                format!("{text:?} is not a duration like 30s or 5m ({err})"),
            )
        })?;
        if parsed > MAX_SETTING_DURATION {
            return Err(invalid(
                route,
                setting,
                format!("{text:?} is longer than the limit of 366 days"),
            ));
        }
        Ok(parsed)
    })
    .transpose()
}

/// True when `candidate` is `<path>.<number>`, a name `path`'s rotation uses.
pub(crate) fn is_rotated_name_of(candidate: &std::path::Path, path: &std::path::Path) -> bool {
    let (candidate, path) = (
        candidate.as_os_str().as_encoded_bytes(),
        path.as_os_str().as_encoded_bytes(),
    );
    candidate.len() > path.len() + 1
        && candidate.starts_with(path)
        && candidate[path.len()] == b'.'
        && candidate[path.len() + 1..].iter().all(u8::is_ascii_digit)
}

/// The file a `file` sink section writes (its directory resolved when it exists; a reference
/// to a secret as written), so that two routes appending to one file are caught at start.
fn file_sink_path(table: &toml::Table) -> Option<PathBuf> {
    let path = PathBuf::from(table.get("path")?.as_str()?.trim());
    if path.to_string_lossy().contains("${") {
        return Some(path);
    }
    crate::store::written_path(&path)
}

/// A `file` route that would write over a file that is not its own ([`file_route_writing_to`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritesOver {
    /// The route.
    pub route: String,
    /// Through its rotation (the file is named like one of the route's rotated files, which a
    /// rotation renames over it), not by appending to it.
    pub rotating: bool,
}

/// The route whose `file` sink writes to the file at `target`, if one does (`target` a file
/// that is not the sink's to write, such as the configuration file the routes come from): by
/// appending to it, or by rotating one of its files onto its name. A path given by references
/// (`${env:…}`) is compared as the sink resolves it.
pub fn file_route_writing_to(
    sections: &[RouteSection],
    target: &std::path::Path,
) -> Option<WritesOver> {
    let written = crate::store::written_path(target)?;
    // By name (links followed), or as the same file under another name (a hard link).
    let identity = crate::store::file_identity(&written);
    let secrets = Secrets::new(Redactor::default());
    sections.iter().find_map(|section| {
        if section.sink.get("type").and_then(toml::Value::as_str) != Some("file") {
            return None;
        }
        let given = section.sink.get("path")?.as_str()?.trim();
        // A reference that cannot be resolved here fails the start anyway, with its own reason.
        let resolved = secrets.resolve_scoped(given).ok()?.0;
        let path = crate::store::written_path(std::path::Path::new(resolved.trim()))?;
        let appending = path == written
            || (identity.is_some() && crate::store::file_identity(&path) == identity);
        let rotating = !appending && is_rotated_name_of(&written, &path);
        (appending || rotating).then(|| WritesOver {
            route: section.name.clone(),
            rotating,
        })
    })
}

impl Routes {
    /// No routes.
    pub fn none() -> Self {
        Routes::default()
    }

    /// Checks and builds the configured routes. Errors name the route and the setting.
    pub fn compile(sections: &[RouteSection]) -> Result<Routes, ConfigError> {
        Routes::compile_beside(sections, None)
    }

    /// Compiles like [`Routes::compile`], and refuses a `file` sink that would write over one of
    /// the files of the store at `store` (the database, its log, its search index, its tokens:
    /// any `<database>-…` or `<database>.…` beside it), which would destroy the store.
    pub fn compile_beside(
        sections: &[RouteSection],
        store: Option<&std::path::Path>,
    ) -> Result<Routes, ConfigError> {
        let redactor = Redactor::default();
        Routes::compile_with(
            sections,
            store,
            Secrets::new(redactor.clone()),
            redactor,
            false,
        )
    }

    /// Compiles like [`Routes::compile_beside`] for a command that reads the routes but delivers
    /// nothing: a secret that only the server's environment holds stands in as
    /// one of [`secret::STAND_INS`] instead of failing it. Also returns why each stand-in was needed.
    pub fn compile_standing_in(
        sections: &[RouteSection],
        store: Option<&std::path::Path>,
    ) -> Result<(Routes, Vec<SecretError>), ConfigError> {
        let mut first_error = None;
        for stand_in in secret::STAND_INS {
            let redactor = Redactor::default();
            let secrets = Secrets::standing_in(redactor.clone(), stand_in);
            match Routes::compile_with(sections, store, secrets.clone(), redactor, true) {
                Ok(routes) => return Ok((routes, secrets.stood_in())),
                // Without a stand-in in play, another cannot help.
                Err(err) if secrets.stood_in().is_empty() => return Err(err),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| ConfigError::Invalid {
            setting: "routes".into(),
            message: "no stand-in for the missing secrets fits".into(),
        }))
    }

    /// `inspecting`: for a command that delivers nothing, which must work while a sink's target
    /// is in a state the server waits out (a file route's path a pipe or a link for a while).
    fn compile_with(
        sections: &[RouteSection],
        store: Option<&std::path::Path>,
        secrets: Secrets,
        redactor: Redactor,
        inspecting: bool,
    ) -> Result<Routes, ConfigError> {
        let mut routes: Vec<Arc<Route>> = Vec::with_capacity(sections.len());
        // Files that `file` sinks append to, by route: two routes rotating one file would
        // rename each other's lines away.
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        for section in sections {
            // Not trimmed: the name written is the one the commands, the API and the metrics
            // use, so a space around it is refused with the other characters a name cannot hold.
            let name = section.name.as_str();
            if name.is_empty() {
                return Err(ConfigError::Invalid {
                    setting: "routes.name".into(),
                    message: format!(
                        "route number {} has no name; every route needs one",
                        routes.len() + 1
                    ),
                });
            }
            if !is_route_name(name) {
                return Err(ConfigError::Invalid {
                    setting: "routes.name".into(),
                    message: format!(
                        "{name:?}: a route name has 1 to {MAX_NAME_LEN} letters, digits, '-', \
                         '_' or '.', and is not `.` or `..`"
                    ),
                });
            }
            if routes.iter().any(|route| route.name == name) {
                return Err(invalid(name, "", "two routes have this name"));
            }
            let filter_text = section.filter.as_deref().map(str::trim).map(str::to_owned);
            // A filter left blank by mistake would send every event to the sink: a route for
            // every event leaves the setting out.
            if filter_text.as_deref() == Some("") {
                return Err(invalid(
                    name,
                    "filter",
                    "is empty; leave `filter` out for a route that takes every event",
                ));
            }
            let filter = match &filter_text {
                Some(text) => Some(provtrail_jsonpath::compile(text).map_err(|err| {
                    invalid(
                        name,
                        "filter",
                        format!("{text:?} does not compile: {}", err.message),
                    )
                })?),
                None => None,
            };
            // Jayway compiles a call of a function it does not have and fails only when it
            // evaluates it: such a route would quietly match nothing (or less than meant).
            let unknown = filter
                .as_ref()
                .map(Path::unknown_functions)
                .unwrap_or_default();
            if !unknown.is_empty() {
                let called: Vec<String> = unknown.iter().map(|name| format!("{name}()")).collect();
                return Err(invalid(
                    name,
                    "filter",
                    format!(
                        "{:?} calls {}, which Jayway does not have: every evaluation that reaches \
                         the call fails, so the route would not match (the functions are {})",
                        filter_text.as_deref().unwrap_or_default(),
                        called.join(", "),
                        Path::FUNCTIONS.join(", ")
                    ),
                ));
            }
            let retry = &section.retry;
            let mut policy = RetryPolicy {
                max_attempts: retry.max_attempts,
                max_age: duration(name, "retry.max_age", retry.max_age.as_deref())?,
                ..RetryPolicy::default()
            };
            if policy.max_attempts.is_none() && policy.max_age.is_none() {
                policy.max_age = RetryPolicy::default().max_age;
            }
            if policy.max_attempts == Some(0) {
                return Err(invalid(name, "retry.max_attempts", "must be at least 1"));
            }
            if policy.max_age.is_some_and(|age| age.is_zero()) {
                return Err(invalid(name, "retry.max_age", "must be above zero"));
            }
            if let Some(delay) =
                duration(name, "retry.initial_delay", retry.initial_delay.as_deref())?
            {
                policy.initial_delay = delay;
            }
            if let Some(delay) = duration(name, "retry.max_delay", retry.max_delay.as_deref())? {
                policy.max_delay = delay;
            }
            if policy.initial_delay.is_zero() {
                return Err(invalid(name, "retry.initial_delay", "must be above zero"));
            }
            if policy.initial_delay > policy.max_delay {
                // The setting written is the one named: a `max_delay` under the default first
                // delay is its own mistake.
                return Err(if retry.initial_delay.is_some() {
                    invalid(
                        name,
                        "retry.initial_delay",
                        "must be at most retry.max_delay",
                    )
                } else {
                    invalid(
                        name,
                        "retry.max_delay",
                        format!(
                            "must be at least retry.initial_delay ({} when not set)",
                            humantime::format_duration(policy.initial_delay)
                        ),
                    )
                });
            }
            let concurrency = section.concurrency.unwrap_or(4);
            if !(1..=1024).contains(&concurrency) {
                return Err(invalid(name, "concurrency", "between 1 and 1024"));
            }
            let timeout = duration(name, "timeout", section.timeout.as_deref())?
                .unwrap_or(Duration::from_secs(10));
            if timeout.is_zero() {
                return Err(invalid(name, "timeout", "must be above zero"));
            }
            let mut table = section.sink.clone();
            let kind = match table.remove("type") {
                Some(toml::Value::String(kind)) => kind,
                Some(_) => return Err(invalid(name, "sink.type", "must be a string")),
                None => {
                    return Err(invalid(
                        name,
                        "sink.type",
                        "missing: one of webhook, nats, file",
                    ));
                }
            };
            // What a path leads to now (a link to the store's files or to another route's
            // file, for a while) is what the server's deliveries wait out: a command that
            // inspects them must run meanwhile.
            if kind == "file" && !inspecting {
                if let Some(path) = file_sink_path(&table) {
                    // One route's rotation renames its file to `<path>.1`, `.2`, …: a route
                    // writing to one of those names would see its file renamed away.
                    let clashes = |known: &PathBuf| {
                        *known == path
                            || is_rotated_name_of(known, &path)
                            || is_rotated_name_of(&path, known)
                    };
                    if let Some((_, other)) = files.iter().find(|(known, _)| clashes(known)) {
                        return Err(invalid(
                            name,
                            "sink.path",
                            format!("route {other:?} writes to the same file"),
                        ));
                    }
                    if let Some(db) = store.filter(|db| crate::store::is_store_file(&path, db)) {
                        return Err(invalid(
                            name,
                            "sink.path",
                            format!(
                                "{} is one of the store's files (the database {}, its log, \
                                 search index, tokens or lock): appending to it would destroy the \
                                 store; give another file",
                                path.display(),
                                db.display()
                            ),
                        ));
                    }
                    // Another store, or a file kept beside one: the file sink refuses to
                    // write there at every delivery, and the deliveries would wait for good.
                    if let Some(kept) = crate::store::kept_data_at(&path) {
                        return Err(invalid(
                            name,
                            "sink.path",
                            format!("{kept}: appending to it would destroy it; give another file"),
                        ));
                    }
                    files.push((path, name.to_owned()));
                }
            }
            let Some((_, build)) = sink::KINDS.iter().find(|(known, _)| *known == kind) else {
                let known: Vec<&str> = sink::KINDS.iter().map(|(known, _)| *known).collect();
                return Err(invalid(
                    name,
                    "sink.type",
                    format!("{kind:?} is not a sink; use one of {}", known.join(", ")),
                ));
            };
            let context = sink::SinkContext {
                route: name,
                allow_private: section.allow_private,
                timeout,
                secrets: &secrets,
                inspecting,
                store,
            };
            let sink = build(table, &context).map_err(|err| {
                let setting = if err.setting.is_empty() {
                    "sink".to_owned()
                } else {
                    format!("sink.{}", err.setting)
                };
                let message = if err.names_no_secret {
                    err.message
                } else {
                    redactor.redact(&err.message)
                };
                invalid(name, &setting, message)
            })?;
            routes.push(Arc::new(Route {
                name: name.to_owned(),
                filter_text,
                filter,
                sink,
                policy,
                concurrency,
                timeout,
                allow_private: section.allow_private,
                status: RouteStatus::default(),
            }));
        }
        let read_members = read_members(&routes);
        Ok(Routes {
            routes,
            redactor,
            read_members,
        })
    }

    /// The routes, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }

    /// The route with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|route| route.name == name)
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True without routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Removes every configured secret from `text`.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// The redactor of every configured secret.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }
}

/// The top-level members that the routes' filters read (none without filters); None when one
/// filter may read any.
fn read_members(routes: &[Arc<Route>]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for filter in routes.iter().filter_map(|route| route.filter.as_ref()) {
        names.extend(filter.root_members()?);
    }
    names.sort_unstable();
    names.dedup();
    Some(names)
}

/// Longest the routes' filters may take, together, on one event at ingest. An event is
/// answered only once its commit is done, after the matching: a filter that a large event makes
/// run for minutes (a list compared with itself) would hold the answer past ISC's wait.
pub const MATCH_LIMIT: Duration = Duration::from_secs(5);

/// What each route's filter is given at least, past [`MATCH_LIMIT`].
const MATCH_MOMENT: Duration = Duration::from_millis(100);

impl RouteMatcher for Routes {
    /// A filter still running at [`MATCH_LIMIT`] is stopped and its route taken as matching, so
    /// that nothing is lost (the delivery is made, and a warning names the route).
    fn matching_routes(&self, event: &Value) -> Vec<String> {
        // Nothing stops a matching early but its time: one flag for every event, never set.
        static NEVER: std::sync::LazyLock<Arc<std::sync::atomic::AtomicBool>> =
            std::sync::LazyLock::new(Arc::default);
        let deadline = std::time::Instant::now() + MATCH_LIMIT;
        self.routes
            .iter()
            .filter(|route| match &route.filter {
                None => true,
                // Each filter has a moment at least, so that a quick one after a slow one still
                // decides.
                Some(filter) => match filter.matches_within_unless(
                    event,
                    deadline.max(std::time::Instant::now() + MATCH_MOMENT),
                    &NEVER,
                ) {
                    Some(matched) => matched,
                    None => {
                        tracing::warn!(route = %route.name,
                            limit = %humantime::format_duration(MATCH_LIMIT),
                            "the route's filter ran past its time limit on an event; the \
                             event is taken as matching, so that nothing is lost");
                        true
                    }
                },
            })
            .map(|route| route.name.clone())
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn reads_event(&self) -> bool {
        self.routes.iter().any(|route| route.filter.is_some())
    }

    fn read_members(&self) -> Option<&[String]> {
        self.read_members.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_route_may_not_write_over_the_store_or_share_a_file_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("p.db");
        std::fs::write(&db, b"").unwrap();
        let route = |name: &str, path: &std::path::Path| {
            format!(
                "[[routes]]\nname = \"{name}\"\n[routes.sink]\ntype = \"file\"\npath = {:?}\n",
                path.display().to_string()
            )
        };
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        for file in [
            "p.db",
            "p.db-wal",
            "p.db.search",
            "p.db.token",
            "p.db.lock",
            "link.jsonl",
        ] {
            let text = route("archive", &dir.path().join(file));
            let err = Routes::compile_beside(&sections(&text), Some(&db))
                .unwrap_err()
                .to_string();
            assert!(err.contains("routes.archive.sink.path"), "{file}: {err}");
            assert!(err.contains("one of the store's files"), "{file}: {err}");
        }
        let beside = route("archive", &dir.path().join("p.jsonl"));
        assert!(Routes::compile_beside(&sections(&beside), Some(&db)).is_ok());
        // Before the first start there is no database yet: its name is still its.
        let new_db = dir.path().join("new.db");
        for file in ["new.db", "new.db-wal", "new.db.read-token"] {
            let text = route("archive", &dir.path().join("sub/..").join(file));
            std::fs::create_dir_all(dir.path().join("sub")).unwrap();
            let err = Routes::compile_beside(&sections(&text), Some(&new_db))
                .unwrap_err()
                .to_string();
            assert!(err.contains("one of the store's files"), "{file}: {err}");
        }
        assert!(!new_db.exists());

        // One file under two names is one file.
        let shared = dir.path().join("shared.jsonl");
        std::fs::write(&shared, b"").unwrap();
        let alias = dir.path().join("alias.jsonl");
        std::os::unix::fs::symlink(&shared, &alias).unwrap();
        let text = format!("{}{}", route("a", &shared), route("b", &alias));
        let err = Routes::compile(&sections(&text)).unwrap_err().to_string();
        assert!(err.contains("writes to the same file"), "{err}");
    }

    fn sections(text: &str) -> Vec<RouteSection> {
        #[derive(Deserialize)]
        struct Doc {
            routes: Vec<RouteSection>,
        }
        toml::from_str::<Doc>(text).unwrap().routes
    }

    fn error(text: &str) -> String {
        Routes::compile(&sections(text)).unwrap_err().to_string()
    }

    #[test]
    fn a_refused_host_given_by_reference_keeps_the_range_it_is_in_whole() {
        let dir = tempfile::tempdir().unwrap();
        for (host, range) in [
            ("127.0.0.1", "loopback (127.0.0.0/8)"),
            ("169.254.169.254", "link-local (169.254.0.0/16)"),
            ("100.64.0.1", "(100.64.0.0/10)"),
        ] {
            let file = dir.path().join("host");
            std::fs::write(&file, host).unwrap();
            let err = error(&format!(
                "[[routes]]\nname = \"hook\"\n[routes.sink]\ntype = \"webhook\"\n\
                 url = \"http://${{file:{}}}:8080/x\"\n",
                file.display()
            ));
            assert!(err.contains("routes.hook.sink.url"), "{host}: {err}");
            assert!(
                err.contains("the host (given by reference, not shown)") && err.contains(range),
                "{host}: {err}"
            );
            assert!(!err.contains(host), "{host}: {err}");
        }
    }

    #[test]
    fn a_max_delay_under_the_first_delay_names_the_setting_written() {
        let route = |retry: &str| {
            format!(
                "[[routes]]\nname = \"r\"\n[routes.retry]\n{retry}\n[routes.sink]\n\
                 type = \"file\"\npath = \"/tmp/x.jsonl\"\n"
            )
        };
        let err = error(&route("max_delay = \"500ms\""));
        assert!(err.contains("routes.r.retry.max_delay"), "{err}");
        assert!(err.contains("(1s when not set)"), "{err}");
        let err = error(&route("initial_delay = \"2s\"\nmax_delay = \"1s\""));
        assert!(err.contains("routes.r.retry.initial_delay"), "{err}");
        let err = error(&route("initial_delay = \"0s\""));
        assert!(err.contains("routes.r.retry.initial_delay"), "{err}");
        assert!(err.contains("above zero"), "{err}");
    }

    #[test]
    fn errors_name_the_route_and_the_setting() {
        let err = error(
            "[[routes]]\nname = \"bad\"\nfilter = \"$[?(\"\n[routes.sink]\ntype = \"file\"\npath = \"/tmp/x.jsonl\"\n",
        );
        assert!(err.contains("routes.bad.filter"), "{err}");
        // A misspelt function compiles in Jayway but fails every evaluation that reaches it.
        let err = error(
            "[[routes]]\nname = \"typo\"\nfilter = \"$[?($.accountRequests.lenght() > 0 || @.x.count())]\"\n[routes.sink]\ntype = \"file\"\npath = \"/tmp/x.jsonl\"\n",
        );
        assert!(
            err.contains("routes.typo.filter")
                && err.contains("calls count(), lenght(), which Jayway does not have")
                && err.contains("length"),
            "{err}"
        );
        // Blank is not "every event": that route leaves the filter out.
        for blank in ["", "  "] {
            let err = error(&format!(
                "[[routes]]\nname = \"blank\"\nfilter = \"{blank}\"\n[routes.sink]\ntype = \"file\"\npath = \"/tmp/x.jsonl\"\n"
            ));
            assert!(
                err.contains("routes.blank.filter") && err.contains("is empty"),
                "{err}"
            );
        }
        let err = error("[[routes]]\nname = \"s\"\n[routes.sink]\ntype = \"smtp\"\n");
        assert!(
            err.contains("routes.s.sink.type") && err.contains("smtp"),
            "{err}"
        );
        let err = error(
            "[[routes]]\nname = \"w\"\n[routes.sink]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/x\"\n",
        );
        assert!(
            err.contains("routes.w.sink.url") && err.contains("loopback"),
            "{err}"
        );
        let err = error(
            "[[routes]]\nname = \"w\"\n[routes.sink]\ntype = \"webhook\"\nurl = \"https://example.com/\"\nbearer_token = \"${env:PROVTRAIL_TEST_UNSET_TOKEN}\"\n",
        );
        assert!(
            err.contains("routes.w.sink.bearer_token")
                && err.contains("PROVTRAIL_TEST_UNSET_TOKEN"),
            "{err}"
        );
        let err = error(
            "[[routes]]\nname = \"w\"\n[routes.sink]\ntype = \"webhook\"\nurl = \"https://example.com/\"\nbody_template = \"{{ x\"\n",
        );
        assert!(err.contains("routes.w.sink.body_template"), "{err}");
        let err = error(
            "[[routes]]\nname = \"w\"\n[routes.sink]\ntype = \"webhook\"\nurl = \"https://example.com/\"\nverb = \"PUT\"\n",
        );
        assert!(
            err.contains("routes.w.sink") && err.contains("verb"),
            "{err}"
        );
        let err = error(
            "[[routes]]\nname = \"a\"\n[routes.sink]\ntype = \"nats\"\nsubject = \"x\"\n[[routes]]\nname = \"a\"\n[routes.sink]\ntype = \"nats\"\nsubject = \"y\"\n",
        );
        assert!(
            err.contains("routes.a") && err.contains("two routes"),
            "{err}"
        );
        // A space around a name is refused, not taken away: the name written must be the one
        // the commands, the API and the metrics use.
        for spaced in [" x", "x ", "\\tx"] {
            let err = error(&format!(
                "[[routes]]\nname = \"{spaced}\"\n[routes.sink]\ntype = \"file\"\npath = \"/tmp/x.jsonl\"\n"
            ));
            assert!(
                err.contains("routes.name") && err.contains("a route name has"),
                "{spaced:?}: {err}"
            );
        }
        // Names that a URL's path would read as "this folder" or "the one above".
        for dots in [".", ".."] {
            let err = error(&format!(
                "[[routes]]\nname = \"{dots}\"\n[routes.sink]\ntype = \"file\"\npath = \"/tmp/x.jsonl\"\n"
            ));
            assert!(
                err.contains("routes.name") && err.contains("is not `.` or `..`"),
                "{err}"
            );
        }
        assert!(
            Routes::compile(&sections(
                "[[routes]]\nname = \"...\"\n[routes.sink]\ntype = \"file\"\npath = \"/tmp/x.jsonl\"\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn settings_that_cannot_work_are_refused_at_start() {
        let nats = "[routes.sink]\ntype = \"nats\"\nsubject = \"x\"\n";
        let err = error("[[routes]]\nname = \"nosink\"\n");
        assert!(
            err.contains("routes.nosink.sink.type") && err.contains("missing"),
            "{err}"
        );
        let err = error(&format!(
            "[[routes]]\nname = \"first\"\n{nats}[[routes]]\n{nats}"
        ));
        assert!(
            err.contains("routes.name") && err.contains("route number 2 has no name"),
            "{err}"
        );
        let err = error(&format!(
            "[[routes]]\nname = \"young\"\n[routes.retry]\nmax_age = \"0s\"\n{nats}"
        ));
        assert!(
            err.contains("routes.young.retry.max_age") && err.contains("above zero"),
            "{err}"
        );
        // A delay of centuries would overflow the clock that schedules the next attempt.
        for setting in [
            "timeout = \"400000000000y\"",
            "[routes.retry]\nmax_delay = \"367d\"",
        ] {
            let err = error(&format!("[[routes]]\nname = \"long\"\n{setting}\n{nats}"));
            assert!(
                err.contains("routes.long.") && err.contains("366 days"),
                "{err}"
            );
        }
        let file = |name: &str, path: &str| {
            format!(
                "[[routes]]\nname = \"{name}\"\n[routes.sink]\ntype = \"file\"\npath = \"{path}\"\n"
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let same = dir.path().join("sub").join("..").join("a.jsonl");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let err = error(&format!(
            "{}{}",
            file("one", &path.display().to_string()),
            file("two", &same.display().to_string())
        ));
        assert!(
            err.contains("routes.two.sink.path") && err.contains("\"one\""),
            "{err}"
        );
        let rotated = dir.path().join("a.jsonl.2");
        let err = error(&format!(
            "{}{}",
            file("one", &path.display().to_string()),
            file("three", &rotated.display().to_string())
        ));
        assert!(err.contains("routes.three.sink.path"), "{err}");
    }
    #[test]
    fn filters_decide_which_routes_match() {
        let routes = Routes::compile(&sections(
            r#"
[[routes]]
name = "failures"
filter = '$.accountRequests[?(@.provisioningResult == "FAILED")]'
[routes.sink]
type = "nats"
subject = "a"

[[routes]]
name = "all"
[routes.sink]
type = "nats"
subject = "b"
"#,
        ))
        .unwrap();
        let failed: Value =
            serde_json::json!({"accountRequests": [{"provisioningResult": "FAILED"}]});
        let ok: Value = serde_json::json!({"accountRequests": [{"provisioningResult": "SUCCESS"}]});
        assert_eq!(routes.matching_routes(&failed), vec!["failures", "all"]);
        assert_eq!(routes.matching_routes(&ok), vec!["all"]);
        assert!(routes.reads_event());

        // Without filters the event is not read: every route takes `null` as well as any event.
        let unfiltered = Routes::compile(&sections(
            r#"
[[routes]]
name = "all"
[routes.sink]
type = "nats"
subject = "b"
"#,
        ))
        .unwrap();
        assert!(!unfiltered.reads_event());
        assert_eq!(unfiltered.matching_routes(&Value::Null), vec!["all"]);
    }

    /// A filter that a large event makes run for minutes (a list compared with itself) is
    /// stopped at the limit, and the event taken as matching: nothing is lost, and the answer to
    /// the sender is not held past its wait. A quick filter beside it decides as usual.
    #[test]
    fn a_filter_past_its_time_limit_at_ingest_is_taken_as_matching() {
        let routes = Routes::compile(&sections(
            r#"
[[routes]]
name = "slow"
filter = '$.errors[?(@ in $.errors)]'
[routes.sink]
type = "nats"
subject = "a"

[[routes]]
name = "none"
filter = '$[?(@.trackingNumber == "nothing")]'
[routes.sink]
type = "nats"
subject = "b"
"#,
        ))
        .unwrap();
        let errors: Vec<String> = (0..40_000).map(|n| format!("error number {n}")).collect();
        let event = serde_json::json!({"trackingNumber": "tn-1", "errors": errors});
        let started = std::time::Instant::now();
        assert_eq!(routes.matching_routes(&event), vec!["slow"]);
        assert!(
            started.elapsed() >= MATCH_LIMIT,
            "the filter was quick after all"
        );
    }

    #[test]
    fn only_the_members_the_filters_read_are_built() {
        let route = |name: &str, filter: &str| {
            format!(
                "[[routes]]\nname = \"{name}\"\nfilter = '{filter}'\n[routes.sink]\ntype = \"nats\"\nsubject = \"{name}\"\n"
            )
        };
        let failures = route(
            "failures",
            "$.accountRequests[?(@.provisioningResult == \"FAILED\")]",
        );
        let by_recipient = route("recipient", "$[?($.recipient.name == \"Ann\")].action");
        let named = route("named", "$.recipient[?(@.name == $.requester.name)]");
        let routes = Routes::compile(&sections(&format!("{failures}{named}"))).unwrap();
        assert_eq!(
            routes.read_members(),
            Some(
                &[
                    "accountRequests".to_owned(),
                    "recipient".to_owned(),
                    "requester".to_owned()
                ][..]
            )
        );
        // One filter that may read any member (a filter on the root) needs the whole event.
        let routes = Routes::compile(&sections(&format!("{failures}{by_recipient}"))).unwrap();
        assert_eq!(routes.read_members(), None);
    }

    /// The examples of the commented default configuration compile (with their secrets given
    /// literally, since tests cannot set environment variables).
    #[test]
    fn the_default_configuration_examples_compile() {
        let text = crate::config::DEFAULT_CONFIG;
        let start = text.find("\n##").unwrap() + 1;
        let mut examples = String::new();
        for line in text[start..].lines() {
            if line.starts_with("##") {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# ") {
                examples.push_str(rest);
            }
            examples.push('\n');
        }
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken-from-file\n").unwrap();
        let examples = examples
            .replace(
                "${env:SLACK_WEBHOOK_URL}",
                "https://hooks.slack.com/services/T0/B0/XYZ",
            )
            .replace(
                "${env:TEAMS_WEBHOOK_URL}",
                "https://example.webhook.office.com/webhookb2/x",
            )
            .replace(
                "/run/secrets/servicedesk-token",
                &token.display().to_string(),
            )
            .replace("/var/lib/provtrail/", &format!("{}/", dir.path().display()));
        let routes = Routes::compile(&sections(&examples)).unwrap();
        assert_eq!(routes.len(), 5);
        let mut generator = crate::synth::Generator::new(&crate::synth::SynthOptions {
            failure_rate: 1.0,
            ..crate::synth::SynthOptions::default()
        });
        let raw = generator.next_json();
        for route in routes.iter() {
            let outcome = route.test(&raw, 1, 0);
            assert!(
                outcome.matched || route.name == "close-tickets",
                "{outcome:?}"
            );
            let preview = outcome.preview.unwrap();
            if route.sink.kind() == "webhook" {
                let body: Value = serde_json::from_str(&preview.body).unwrap();
                assert!(body.is_object(), "{body}");
            }
            assert!(!preview.target.contains("XYZ"), "{}", preview.target);
            assert!(!format!("{:?}", preview.headers).contains("t0ken"));
        }
    }

    #[test]
    fn probes_die_of_age_and_retry_after_is_honoured_within_bounds() {
        let day = Duration::from_secs(86_400);
        let only_attempts = RetryPolicy {
            max_attempts: Some(5),
            max_age: None,
            ..RetryPolicy::default()
        };
        // Probes use no attempts; without max_age they still end at the default age.
        assert!(!only_attempts.too_old(10 * day));
        assert!(!only_attempts.too_old_for_probes(2 * day));
        assert!(only_attempts.too_old_for_probes(3 * day));
        let aged = RetryPolicy {
            max_age: Some(Duration::from_secs(60)),
            ..RetryPolicy::default()
        };
        assert!(aged.too_old_for_probes(Duration::from_secs(60)));
        // Retry-After: up to the larger of max_delay (5 minutes here) and five minutes.
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.honoured_wait(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        assert_eq!(policy.honoured_wait(day), Duration::from_secs(300));
        let patient = RetryPolicy {
            max_delay: Duration::from_secs(3_600),
            ..RetryPolicy::default()
        };
        assert_eq!(patient.honoured_wait(day), Duration::from_secs(3_600));
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_below_it() {
        let policy = RetryPolicy {
            max_attempts: Some(5),
            max_age: None,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        };
        assert_eq!(policy.cap(1), Duration::from_secs(1));
        assert_eq!(policy.cap(3), Duration::from_secs(4));
        assert_eq!(policy.cap(30), Duration::from_secs(60));
        assert_eq!(policy.cap(u32::MAX), Duration::from_secs(60));
        for attempt in 1..40 {
            assert!(policy.backoff(attempt) <= policy.cap(attempt));
        }
        assert!(!policy.exhausted(4, Duration::ZERO));
        assert!(policy.exhausted(5, Duration::ZERO));
    }
}
