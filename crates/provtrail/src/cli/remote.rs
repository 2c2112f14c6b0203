//! Where `search`, `show`, `stats` and `quarantine` get their answers: a running server's read API (`--url`), or
//! a database file read directly (`--db`). Both give the read API's documents: on a file, the
//! same service functions the server's handlers call run here, so the output is the same either
//! way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use provtrail::metrics::Metrics;
use provtrail::server::api::error::ApiError;
use provtrail::server::api::model::{
    ErrorBody, EventDetail, EventList, QuarantineDetail, QuarantineList, Stats,
};
use provtrail::server::api::service;
use provtrail::store::SharedStore;
use provtrail::store::sqlite::{SqliteSettings, SqliteStore};
use serde::de::DeserializeOwned;

/// Which store to read: flags shared by `search`, `show`, `stats` and `quarantine`.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// Read this database file directly [default, unless a URL is given: $PROVTRAIL_DB, else
    /// the configuration file's store.path, else provtrail.db]. Takes precedence over --url.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// The configuration file whose store.path names the database when neither --db, --url
    /// nor PROVTRAIL_DB does [default: $PROVTRAIL_CONFIG, else ./provtrail.toml when it
    /// exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Ask the server at this URL instead (e.g. http://127.0.0.1:8080).
    #[arg(long, env = "PROVTRAIL_URL", value_name = "URL")]
    pub url: Option<String>,
    /// A read token for --url. It may be, or hold, `${env:NAME}` or `${file:PATH}`; from
    /// PROVTRAIL_READ_TOKEN, which `serve` reads as a comma-separated list, the first is taken.
    #[arg(
        long,
        env = "PROVTRAIL_READ_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Read the token for --url from a file (e.g. the provtrail.db.read-token a server
    /// generated); takes precedence over --token.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Accept an invalid TLS certificate (self-signed test servers).
    #[arg(long)]
    pub insecure: bool,
}

/// One document, or `None` when the store or server says there is none (404).
fn found<T>(answer: Result<T, Refusal>) -> anyhow::Result<Option<T>> {
    match answer {
        Ok(detail) => Ok(Some(detail)),
        Err(Refusal::Api(err)) if err.status == 404 => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Whether an event search with the parameter `name` reads the search index: every one but
/// the time range, the paging and a filter (a list by time reads the events themselves, and a
/// filter is evaluated on them).
fn needs_index(name: &str) -> bool {
    !matches!(name, "since" | "until" | "limit" | "cursor" | "filter")
}

/// A store to ask.
#[derive(Debug)]
pub enum Backend {
    /// A database file, read in this process.
    Local {
        /// The store.
        store: SharedStore,
        /// Set when its search index lacks events and cannot be brought up to date here (a
        /// store this process cannot write): why, for the searches that need the index.
        index_gap: Option<String>,
    },
    /// A server's read API.
    Remote {
        /// The HTTP client.
        client: reqwest::Client,
        /// `scheme://host:port`, without a trailing slash.
        base: String,
        /// The read token.
        token: Option<String>,
    },
}

impl Backend {
    /// Opens what `args` names. A database file is opened for reading only (see
    /// [`SqliteStore::open_reader`]) when it can be; `search_index` says whether the command
    /// searches the index.
    pub async fn open(args: &SourceArgs, search_index: bool) -> anyhow::Result<Backend> {
        let db = match (&args.db, &args.url) {
            (Some(_), _) | (None, None) => Some(
                super::database::DatabaseArgs {
                    db: args.db.clone(),
                    config: args.config.clone(),
                }
                .path()?,
            ),
            (None, Some(_)) => None,
        };
        if let Some(db) = db {
            anyhow::ensure!(
                db.is_file(),
                "there is no database at {} (give --db PATH, or --url URL to ask a server)",
                db.display()
            );
            let path = db.clone();
            let reader =
                tokio::task::spawn_blocking(move || SqliteStore::open_reader(&path, search_index))
                    .await?
                    .with_context(|| format!("cannot open the database {}", db.display()))?;
            if let Some(reader) = reader {
                let lag = reader.search_index_lag();
                if search_index && lag > 0 {
                    note!(
                        "note: the search index of {} lacks the newest {lag} event(s), which a \
                         running server is indexing now; a search may miss them",
                        db.display()
                    );
                }
                return Ok(Backend::Local {
                    store: Arc::new(reader),
                    index_gap: None,
                });
            }
            // An older schema, or a search index that lacks events: the full store brings them
            // up to date.
            let settings = SqliteSettings::new(&db);
            let metrics = Arc::new(Metrics::new());
            let opened =
                tokio::task::spawn_blocking(move || SqliteStore::open(settings, metrics)).await?;
            let store = match opened {
                Ok(store) => store,
                Err(err) if search_index => {
                    // A store that cannot be written (a read-only copy, a backup without its
                    // search index) still answers what needs no index: read it as it is.
                    let path = db.clone();
                    let reader =
                        tokio::task::spawn_blocking(move || SqliteStore::open_reader(&path, false))
                            .await?;
                    let Ok(Some(reader)) = reader else {
                        return Err(anyhow::Error::new(err)
                            .context(format!("cannot open the database {}", db.display())));
                    };
                    // Locked by another process (an import, a backup tool): waiting is the fix,
                    // not a copy.
                    let remedy = if err.to_string().contains("locked") {
                        "another process holds the database locked; search again once it is done"
                    } else {
                        "copy the index beside the database, or work on a copy that can be written"
                    };
                    let gap = format!(
                        "the search index of {} ({}.search) lacks events and cannot be brought up \
                         to date here ({err}): {remedy}",
                        db.display(),
                        db.display()
                    );
                    note!(
                        "note: {gap}; events are shown by id, and listed by time, but not \
                         searched"
                    );
                    return Ok(Backend::Local {
                        store: Arc::new(reader),
                        index_gap: Some(gap),
                    });
                }
                Err(err) => {
                    return Err(anyhow::Error::new(err)
                        .context(format!("cannot open the database {}", db.display())));
                }
            };
            return Ok(Backend::Local {
                store: Arc::new(store),
                index_gap: None,
            });
        }
        let url = args.url.clone().unwrap_or_default();
        let given_by = match super::from_environment("url", "PROVTRAIL_URL".into()) {
            Some(variable) => format!("{variable}, "),
            None => "--url, ".to_owned(),
        };
        anyhow::ensure!(
            url.starts_with("http://") || url.starts_with("https://"),
            "the URL must start with http:// or https:// ({given_by}{url:?})"
        );
        // The API's paths are put after it: a query or fragment would end up before them, and
        // credentials in it are not what the read API takes (nor to be echoed in messages).
        if let Ok(parsed) = reqwest::Url::parse(&url) {
            anyhow::ensure!(
                parsed.query().is_none() && parsed.fragment().is_none(),
                "the URL is the server's address, without a ?query or #fragment ({given_by}{})",
                parsed.origin().ascii_serialization()
            );
            anyhow::ensure!(
                parsed.username().is_empty() && parsed.password().is_none(),
                "the URL holds a user name or password, which the read API does not take; give \
                 the read token with --token, --token-file or PROVTRAIL_READ_TOKEN ({given_by}{})",
                parsed.origin().ascii_serialization()
            );
        }
        let mut base = url.trim_end_matches('/').to_owned();
        if let Some(stripped) = base.strip_suffix("/api/v1") {
            base = stripped.to_owned();
        }
        // The file first: it is only ever given on the command line, while a token may come from
        // the environment.
        let token = match (&args.token_file, &args.token) {
            (None, Some(token)) => Some(super::client_credential(
                token,
                super::from_environment("token", "PROVTRAIL_READ_TOKEN".into()).as_deref(),
                true,
            )?),
            (Some(path), _) => Some(super::token_from_file(path)?),
            (None, None) => None,
        };
        provtrail::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .tls_danger_accept_invalid_certs(args.insecure)
            .user_agent(concat!("provtrail-cli/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Backend::Remote {
            client,
            base,
            token,
        })
    }

    /// `GET /api/v1/events` with these parameters.
    pub async fn search(&self, pairs: Vec<(String, String)>) -> anyhow::Result<EventList> {
        self.listing("/api/v1/events", pairs, |store, pairs| async move {
            service::search_events(store.as_ref(), pairs).await
        })
        .await
    }

    /// `GET /api/v1/events/{id}`; `None` when there is no such event.
    pub async fn event(&self, id: i64) -> anyhow::Result<Option<EventDetail>> {
        let answer = match self {
            Backend::Local { store, .. } => service::event(store.as_ref(), id)
                .await
                .map_err(Refusal::Api),
            Backend::Remote { .. } => self.get(&format!("/api/v1/events/{id}"), &[]).await,
        };
        found(answer)
    }

    /// `GET /api/v1/stats` with these parameters.
    pub async fn stats(&self, pairs: Vec<(String, String)>) -> anyhow::Result<Stats> {
        self.listing("/api/v1/stats", pairs, |store, pairs| async move {
            service::stats(store.as_ref(), pairs).await
        })
        .await
    }

    /// `GET /api/v1/quarantine` with these parameters.
    pub async fn quarantine(&self, pairs: Vec<(String, String)>) -> anyhow::Result<QuarantineList> {
        self.listing("/api/v1/quarantine", pairs, |store, pairs| async move {
            service::quarantine(store.as_ref(), pairs).await
        })
        .await
    }

    /// A read API request with query parameters: asked of the store through `local`, or of the
    /// server at `path`; a refusal names the flags its parameters came from.
    async fn listing<T, F>(
        &self,
        path: &str,
        pairs: Vec<(String, String)>,
        local: impl FnOnce(SharedStore, Vec<(String, String)>) -> F,
    ) -> anyhow::Result<T>
    where
        T: DeserializeOwned,
        F: Future<Output = Result<T, ApiError>>,
    {
        let names = flag_names(&pairs);
        let answer = match self {
            Backend::Local {
                index_gap: Some(gap),
                ..
            } if path == "/api/v1/events" && pairs.iter().any(|(name, _)| needs_index(name)) => {
                anyhow::bail!("cannot search this store: {gap}")
            }
            Backend::Local { store, .. } => local(store.clone(), pairs).await.map_err(Refusal::Api),
            Backend::Remote { .. } => self.get(path, &pairs).await,
        };
        Ok(answer.map_err(|refusal| refusal.in_flag_words(&names))?)
    }

    /// `GET /api/v1/quarantine/{id}`; `None` when there is no such entry.
    pub async fn quarantine_entry(&self, id: i64) -> anyhow::Result<Option<QuarantineDetail>> {
        let answer = match self {
            Backend::Local { store, .. } => service::quarantine_entry(store.as_ref(), id)
                .await
                .map_err(Refusal::Api),
            Backend::Remote { .. } => self.get(&format!("/api/v1/quarantine/{id}"), &[]).await,
        };
        found(answer)
    }

    /// Closes a local store.
    pub async fn close(self) {
        if let Backend::Local { store, .. } = self {
            store.close().await;
        }
    }

    /// A GET to the server's read API.
    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        pairs: &[(String, String)],
    ) -> Result<T, Refusal> {
        let Backend::Remote {
            client,
            base,
            token,
        } = self
        else {
            return Err(Refusal::Other(anyhow::anyhow!("not a server")));
        };
        let url = format!("{base}{path}");
        let mut full = reqwest::Url::parse(&url).with_context(|| format!("{url} is not a URL"))?;
        if !pairs.is_empty() {
            full.query_pairs_mut().extend_pairs(pairs);
        }
        let mut request = client.get(full);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let body = read_answer(response)
            .await
            .with_context(|| format!("cannot read the answer of {url}"))?;
        if status.is_success() {
            return Ok(serde_json::from_slice(&body).with_context(|| {
                format!("the answer of {url} is not what this version expects")
            })?);
        }
        let message = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(error) => error.error.message,
            Err(_) => format!(
                "the server answered {status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(500)
                    .collect::<String>()
            ),
        };
        let mut err = if status.as_u16() == 401 {
            ApiError::unauthorized(format!(
                "{message} (give --token, --token-file or PROVTRAIL_READ_TOKEN)"
            ))
        } else {
            ApiError::invalid_body(message)
        };
        err.status = status.as_u16();
        Err(Refusal::Api(err))
    }
}

/// The most of an answer read: far more than the read API's largest at the default ingest
/// limit (a page of events, or one event of 1 MiB, given twice: parsed and as received), so
/// that a server that sends without end cannot take the memory of the machine.
const MAX_ANSWER: usize = 256 * 1024 * 1024;

/// An answer's body, up to [`MAX_ANSWER`].
async fn read_answer(mut response: reqwest::Response) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        anyhow::ensure!(
            body.len() + chunk.len() <= MAX_ANSWER,
            "it is larger than {} MiB, more than the read API answers unless the server takes \
             events of nearly 100 MiB (ingest.max_body); on the server's machine, use --db",
            MAX_ANSWER / (1024 * 1024)
        );
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why an answer did not come.
#[derive(Debug)]
enum Refusal {
    /// The API (local or remote) refused the request.
    Api(ApiError),
    /// The server could not be asked.
    Other(anyhow::Error),
}

impl Refusal {
    /// The API's refusal with the parameters it names (`` `q` ``) said as the flags they came
    /// from (`` `--text` ``): `names` pairs each parameter sent with its flag.
    fn in_flag_words(self, names: &[(String, String)]) -> Self {
        match self {
            Refusal::Api(mut err) => {
                for (parameter, flag) in names {
                    err.message = err
                        .message
                        .replace(&format!("`{parameter}`"), &format!("`{flag}`"));
                }
                Refusal::Api(err)
            }
            other => other,
        }
    }
}

/// Each read API parameter in `pairs` with the flag of the commands that send it: the
/// parameter's name with hyphens, except `q`, which is `--text`.
fn flag_names(pairs: &[(String, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(parameter, _)| {
            let flag = match parameter.as_str() {
                "q" => "--text".to_owned(),
                other => format!("--{}", other.replace('_', "-")),
            };
            (parameter.clone(), flag)
        })
        .collect()
}

impl From<anyhow::Error> for Refusal {
    fn from(err: anyhow::Error) -> Self {
        Refusal::Other(err)
    }
}

impl From<Refusal> for anyhow::Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Api(err) => anyhow::Error::new(err),
            Refusal::Other(err) => err,
        }
    }
}

/// Adds `name=value` to `pairs` when a value is given.
pub fn push(pairs: &mut Vec<(String, String)>, name: &str, value: Option<impl ToString>) {
    if let Some(value) = value {
        pairs.push((name.to_owned(), value.to_string()));
    }
}

/// Width of the terminal standard output goes to; `COLUMNS` when it is not a terminal; `None`
/// (no limit) otherwise.
pub fn output_width() -> Option<usize> {
    use std::io::IsTerminal as _;
    if std::io::stdout().is_terminal() {
        if let Some((terminal_size::Width(width), _)) = terminal_size::terminal_size() {
            return Some(usize::from(width));
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|columns| columns.trim().parse().ok())
        .filter(|columns: &usize| *columns >= 40)
}

/// How many terminal columns `text` takes: two for a wide character (CJK), none for a
/// combining mark.
pub fn display_width(text: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(text)
}

/// `text` cut to `width` columns, with an ellipsis when cut.
pub fn shorten(text: &str, width: usize) -> String {
    if display_width(text) <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut cut = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > width - 1 {
            break;
        }
        used += w;
        cut.push(c);
    }
    cut.push('…');
    cut
}

/// Widest column of a table that is not fitted to a width (see [`table`]).
const WIDEST_UNFITTED_COLUMN: usize = 120;

/// Rows as aligned columns separated by two spaces; the columns in `flexible` shrink, each to
/// no less than 8 characters (or its header), until the table fits `width`: the widest first
/// (ties: the one listed first), and the last listed only when the others cannot shrink. Cells
/// are escaped for the terminal, each on its one line, before they are measured.
pub fn table(
    header: &[&str],
    rows: &[Vec<String>],
    flexible: &[usize],
    right: &[usize],
    width: Option<usize>,
) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| super::terminal_line(cell).into_owned())
                .collect()
        })
        .collect();
    let count = display_width;
    let mut widths: Vec<usize> = header.iter().map(|h| count(h)).collect();
    for row in &rows {
        for (column, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(column) {
                *w = (*w).max(count(cell));
            }
        }
    }
    // With no width to fit (not a terminal, no COLUMNS), one long value (a source named with
    // ten thousand characters) would still pad every row to its width: a column is cut at
    // [`WIDEST_UNFITTED_COLUMN`] then. `--format json` gives every value whole.
    if width.is_none() {
        for (column, w) in widths.iter_mut().enumerate() {
            *w = (*w).min(WIDEST_UNFITTED_COLUMN.max(count(header[column])));
        }
    }
    if let Some(limit) = width {
        let total = |widths: &[usize]| widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        let floor = |column: usize| count(header[column]).max(8);
        // One character at a time from the widest flexible column (ties: the one listed first),
        // so that no column is cut much more than the others; the last listed only when the
        // others are down to their floor.
        let (last, others) = flexible
            .split_last()
            .map_or((None, &[][..]), |(l, o)| (Some(*l), o));
        while total(&widths) > limit {
            let widest = others
                .iter()
                .copied()
                .filter(|&column| widths[column] > floor(column))
                .max_by(|&a, &b| {
                    widths[a]
                        .cmp(&widths[b])
                        .then_with(|| flexible_rank(flexible, b).cmp(&flexible_rank(flexible, a)))
                });
            match widest.or(last.filter(|&column| widths[column] > floor(column))) {
                Some(column) => widths[column] -= 1,
                None => break,
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (column, cell) in cells.into_iter().enumerate() {
            let w = widths[column];
            let cell = shorten(&cell, w);
            let pad = " ".repeat(w - count(&cell));
            if right.contains(&column) {
                text.push_str(&pad);
                text.push_str(&cell);
            } else {
                text.push_str(&cell);
                if column != last {
                    text.push_str(&pad);
                }
            }
            if column != last {
                text.push_str("  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row);
    }
    out
}

fn flexible_rank(flexible: &[usize], column: usize) -> usize {
    flexible
        .iter()
        .position(|&c| c == column)
        .unwrap_or(usize::MAX)
}

/// `2026-11-01 10:00:00Z` for Unix milliseconds: short enough for a table.
pub fn table_time(millis: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(millis)
        .map(|time| time.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| millis.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_by_terminal_width_for_wide_and_combining_characters() {
        let rows = vec![
            vec!["山田太郎".to_owned(), "x".to_owned()],
            vec!["Zoe\u{0301}".to_owned(), "y".to_owned()],
            vec!["plain".to_owned(), "z".to_owned()],
        ];
        let text = table(&["name", "v"], &rows, &[0], &[], None);
        // Every second column starts at the same terminal column.
        let starts: Vec<usize> = text.lines().map(|line| display_width(line) - 1).collect();
        assert!(starts.iter().all(|&at| at == starts[0]), "{text}");
        // Cut to fit, a wide character is not split across the limit.
        assert_eq!(shorten("山田太郎", 5), "山田…");
        assert_eq!(display_width(&shorten("山田太郎", 5)), 5);
    }

    #[test]
    fn one_long_value_does_not_widen_a_table_with_no_width_to_fit() {
        let rows = vec![
            vec!["x".repeat(10_000), "1".to_owned()],
            vec!["short".to_owned(), "2".to_owned()],
        ];
        let text = table(&["source", "n"], &rows, &[0], &[1], None);
        for line in text.lines() {
            assert!(display_width(line) <= WIDEST_UNFITTED_COLUMN + 3, "{line}");
        }
        assert!(text.contains('…'), "{text}");
    }
}
