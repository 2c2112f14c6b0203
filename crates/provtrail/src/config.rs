//! The configuration file: a TOML document whose every setting is optional. The commented default
//! (`provtrail config init`) is [`DEFAULT_CONFIG`]. Flags and `PROVTRAIL_*` variables override
//! what the file says; that merging happens where the command line is read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The commented default configuration, as written by `provtrail config init`.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");

/// The longest configuration file read: the commented default is about 10 KiB, and routes'
/// templates are a few KiB each.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the configuration file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (in the message, and so not also its source: a chain would say it twice).
        reason: std::io::Error,
    },
    /// The file is not valid TOML or has settings this build does not know.
    #[error("the configuration file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with the line.
        message: String,
    },
    /// A setting has a value that cannot be used.
    #[error("the setting {setting} is not valid: {message}")]
    Invalid {
        /// Which setting.
        setting: String,
        /// Why.
        message: String,
    },
}

/// The configuration file. Unknown keys are errors, so that a typo is not silently ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// `[server]`.
    pub server: ServerSection,
    /// `[ingest]`.
    pub ingest: IngestSection,
    /// `[store]`.
    pub store: StoreSection,
    /// `[read]`.
    pub read: ReadSection,
    /// `[admin]`.
    pub admin: AdminSection,
    /// `[[routes]]`: where matching events are delivered.
    pub routes: Vec<crate::routes::RouteSection>,
}

/// `[admin]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Tokens that may change things through the API (retry dead letters, replay to a route).
    pub tokens: Vec<String>,
}

/// `[read]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadSection {
    /// Tokens that may use the read API and the web UI.
    pub tokens: Vec<String>,
}

/// `[server]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address to listen on.
    pub listen: Option<String>,
    /// PEM certificate chain.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Whole-request timeout.
    pub request_timeout: Option<String>,
    /// Header timeout.
    pub header_timeout: Option<String>,
    /// Idle connection timeout.
    pub idle_timeout: Option<String>,
    /// Requests handled at once.
    pub max_concurrent_requests: Option<usize>,
    /// Connections open at once.
    pub max_connections: Option<usize>,
    /// Connections one remote address may hold open at once.
    pub max_connections_per_address: Option<usize>,
    /// Wrong read or admin tokens one remote address may send a minute (0: no limit).
    pub max_wrong_tokens: Option<u32>,
    /// Reverse proxies (addresses or blocks) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Option<Vec<String>>,
    /// Time given to in-flight requests on shutdown.
    pub shutdown_grace: Option<String>,
}

/// `[ingest]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// Accepted bearer tokens.
    pub tokens: Vec<String>,
    /// Accepted `user:password` pairs.
    pub basic: Vec<String>,
    /// Accept without credentials.
    pub no_auth: Option<bool>,
    /// Largest body.
    #[serde(deserialize_with = "size_text")]
    pub max_body: Option<String>,
    /// Most memory the bodies being read and kept may take at once.
    #[serde(deserialize_with = "size_text")]
    pub max_body_memory: Option<String>,
}

/// A size written as text (`"1MiB"`) or as a number of bytes (`1048576`), as text.
pub(crate) fn size_text<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct SizeVisitor;
    impl<'de> serde::de::Visitor<'de> for SizeVisitor {
        type Value = Option<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a size like \"1MiB\" or a number of bytes")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(Some(text.to_owned()))
        }

        fn visit_u64<E: serde::de::Error>(self, bytes: u64) -> Result<Self::Value, E> {
            Ok(Some(bytes.to_string()))
        }

        fn visit_i64<E: serde::de::Error>(self, bytes: i64) -> Result<Self::Value, E> {
            u64::try_from(bytes)
                .map(|bytes| Some(bytes.to_string()))
                .map_err(|_| E::custom(format!("a size cannot be negative ({bytes})")))
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(SizeVisitor)
        }
    }
    deserializer.deserialize_option(SizeVisitor)
}

/// `[store]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Database file.
    pub path: Option<PathBuf>,
    /// Most documents in one commit.
    pub commit_max_batch: Option<usize>,
    /// Longest wait for more documents.
    pub commit_max_wait: Option<String>,
    /// `pipelined` or `inline`.
    pub log_sync: Option<String>,
    /// Lock wait.
    pub busy_timeout: Option<String>,
    /// Size cap.
    #[serde(deserialize_with = "size_text")]
    pub max_size: Option<String>,
}

impl FileConfig {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        use std::io::Read as _;
        let unreadable = |reason| ConfigError::Read {
            path: path.to_owned(),
            reason,
        };
        // Read no further than a configuration could be: a device or a pipe without end
        // (`/dev/zero`) given by mistake would otherwise fill the memory.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|file| {
                file.take(MAX_CONFIG_BYTES as u64 + 1)
                    .read_to_end(&mut bytes)
            })
            .map_err(unreadable)?;
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(unreadable(std::io::Error::other(format!(
                "it is more than {} MiB long, which no configuration is (is it the right file?)",
                MAX_CONFIG_BYTES >> 20
            ))));
        }
        let text = String::from_utf8(bytes).map_err(|err| {
            unreadable(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "it is not UTF-8 text (invalid byte at offset {})",
                    err.utf8_error().valid_up_to()
                ),
            ))
        })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` is only used in messages. The message gives the line
    /// and column but not the line itself, nor the value a type error is about: the file holds
    /// tokens and passwords, and start-up errors end up in service logs.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|err: toml::de::Error| {
            let message = err.message().trim();
            let mut what = in_plain_terms(message);
            // A whole number past every integer's range reaches the settings without its value
            // or sign ("invalid type: integer"): the text says which side it is past.
            let literal = err
                .span()
                .and_then(|span| text.get(span))
                .map(str::trim)
                .filter(|value| {
                    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
                });
            let size = what.contains("expected a size");
            if literal.is_some() && (size || what.starts_with("the number is too large")) {
                let negative = literal.is_some_and(|value| value.starts_with('-'));
                what = match (negative, size) {
                    (true, true) => "a size cannot be negative".to_owned(),
                    (false, true) => "the number is too large for a size".to_owned(),
                    (true, false) => {
                        "the number is negative: expected a whole number from 0 up".to_owned()
                    }
                    (false, false) => what,
                };
            }
            let message = match err.span() {
                Some(span) => {
                    let before = &text.as_bytes()[..span.start.min(text.len())];
                    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
                    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
                    match setting_on_line(text, line) {
                        Some(setting) => {
                            format!("{setting} (line {line}, column {column}): {what}")
                        }
                        None => format!("line {line}, column {column}: {what}"),
                    }
                }
                None => what,
            };
            ConfigError::Parse {
                path: path.to_owned(),
                message,
            }
        })
    }

    /// The file to read when none is named: `./provtrail.toml` if it exists.
    pub fn default_path() -> Option<PathBuf> {
        let path = PathBuf::from("provtrail.toml");
        path.exists().then_some(path)
    }
}

/// The setting a line of the file gives a value to, with its table (`server.listen`), when the
/// line is one of `key = value` with a bare key, under a table header of bare names: parse
/// errors point at a line, and the reader wants the name. Nothing from inside a string or a
/// comment is ever taken for a name (a token spread over lines can hold `key = value` or
/// `[table]`); when in doubt, no name is given.
fn setting_on_line(text: &str, line: usize) -> Option<String> {
    let lines = toml_code_lines(text);
    let bare = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    let code = lines.get(line.checked_sub(1)?)?.as_deref()?;
    let (key, _) = code.split_once('=')?;
    let key = key.trim();
    if !bare(key) {
        return None;
    }
    let header = lines[..line - 1]
        .iter()
        .rev()
        .flatten()
        .map(|code| code.trim())
        .find(|code| code.starts_with('['));
    let table = match header {
        None => None,
        Some(header) => {
            let name = header
                .strip_prefix("[[")
                .and_then(|rest| rest.strip_suffix("]]"))
                .or_else(|| header.strip_prefix('[')?.strip_suffix(']'))?
                .trim();
            if !bare(name) {
                return None;
            }
            Some(name)
        }
    };
    Some(match table {
        Some(table) => match element_named(text, &lines[..line - 1], table) {
            Some(element) => format!("{element}.{key}"),
            None => format!("{table}.{key}"),
        },
        None => key.to_owned(),
    })
}

/// `table` with the name of the element of an array of tables it is in (`routes.slack` for the
/// `[[routes]]` named `slack`, `routes.slack.sink` for its `[routes.sink]`), as errors about a
/// route's settings name it; `None` when the element has no name to show (the file's syntax is
/// broken, or the name is missing or not one a route can have). `before` is the code of the
/// lines before the setting.
fn element_named(text: &str, before: &[Option<String>], table: &str) -> Option<String> {
    let array_headers: Vec<&str> = before
        .iter()
        .flatten()
        .filter_map(|code| code.trim().strip_prefix("[[")?.strip_suffix("]]"))
        .map(str::trim)
        .collect();
    // `[routes.sink]` belongs to the last `[[routes]]` before it.
    let array = *array_headers.last()?;
    let rest = table.strip_prefix(array)?;
    if !(rest.is_empty() || rest.starts_with('.')) {
        return None;
    }
    let index = array_headers.iter().filter(|&&h| h == array).count() - 1;
    let document: toml::Table = toml::from_str(text).ok()?;
    let name = document
        .get(array)?
        .as_array()?
        .get(index)?
        .get("name")?
        .as_str()?;
    crate::routes::is_route_name(name).then(|| format!("{array}.{name}{rest}"))
}

/// Each line of a TOML text as its code: strings emptied (their quotes kept) and comments left
/// out; `None` for a line that begins inside a multi-line string, which holds no code at all.
fn toml_code_lines(text: &str) -> Vec<Option<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum In {
        Code,
        Basic,
        Literal,
        MultiBasic,
        MultiLiteral,
        Comment,
    }
    let mut lines = Vec::new();
    let mut state = In::Code;
    for line in text.split('\n') {
        let begins_inside = matches!(state, In::MultiBasic | In::MultiLiteral);
        let chars: Vec<char> = line.chars().collect();
        let triple = |at: usize, quote: char| {
            chars[at..].iter().take(3).all(|&c| c == quote) && chars.len() >= at + 3
        };
        let mut code = String::new();
        let mut at = 0;
        while at < chars.len() {
            let c = chars[at];
            let mut step = 1;
            match state {
                In::Code => match c {
                    '#' => state = In::Comment,
                    '"' if triple(at, '"') => (state, step) = (In::MultiBasic, 3),
                    '\'' if triple(at, '\'') => (state, step) = (In::MultiLiteral, 3),
                    '"' => state = In::Basic,
                    '\'' => state = In::Literal,
                    _ => code.push(c),
                },
                In::Basic | In::MultiBasic if c == '\\' => step = 2,
                In::Basic if c == '"' => state = In::Code,
                In::Literal if c == '\'' => state = In::Code,
                In::MultiBasic if triple(at, '"') => (state, step) = (In::Code, 3),
                In::MultiLiteral if triple(at, '\'') => (state, step) = (In::Code, 3),
                _ => {}
            }
            if matches!(c, '"' | '\'') && state != In::Comment {
                code.push(c);
            }
            at += step;
        }
        // A comment, or a one-line string left open (an error of its own), ends with its line.
        if matches!(state, In::Comment | In::Basic | In::Literal) {
            state = In::Code;
        }
        lines.push((!begins_inside).then_some(code));
    }
    lines
}

/// serde's refusal of a setting's value said for the reader of the file: without the value
/// (which may be a secret), with numbers' types in words.
pub(crate) fn in_plain_terms(message: &str) -> String {
    too_large(message).unwrap_or_else(|| in_plain_words(&without_values(message)))
}

/// serde's refusal of a whole number past an unsigned setting's range, said as such (read as it
/// is, "a whole number from 0 up" would be wrong: the number is one). Names the largest the
/// setting takes, not the number given.
fn too_large(message: &str) -> Option<String> {
    let rest = message.strip_prefix("invalid value: integer `")?;
    let (number, kind) = rest.split_once("`, expected ")?;
    if number.starts_with('-') || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let most = match kind {
        "u8" => u64::from(u8::MAX),
        "u16" => u64::from(u16::MAX),
        "u32" => u64::from(u32::MAX),
        "u64" | "usize" => u64::MAX,
        _ => return None,
    };
    Some(format!(
        "the number is too large: expected a whole number from 0 to {most}"
    ))
}

/// serde's names of number types as a reader of the file says them.
fn in_plain_words(message: &str) -> String {
    let whole = "a whole number from 0 up";
    let mut out = message.to_owned();
    // A number too large for any integer reaches the settings as another kind of integer.
    for unsigned in ["usize", "u64", "u32", "u16", "u8"] {
        if out == format!("invalid type: integer, expected {unsigned}") {
            return format!("the number is too large: expected {whole} that fits the setting");
        }
    }
    for (rust, words) in [
        ("expected usize", whole),
        ("expected u64", whole),
        ("expected u32", whole),
        ("expected u16", whole),
        ("expected u8", whole),
        ("expected i64", "a whole number"),
        ("expected i32", "a whole number"),
        ("expected f64", "a number"),
    ] {
        if let Some(at) = out.find(rust) {
            let end = at + rust.len();
            // Only a whole word: `u8` is not the start of `u80`.
            if out[end..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_alphanumeric())
            {
                out.replace_range(at..end, &format!("expected {words}"));
            }
        }
    }
    out
}

/// A settings error without the value it is about: serde quotes the value that has the wrong
/// type ("invalid type: integer `987654321`, expected a string"), and that value may be a
/// token or password written in the wrong form.
pub(crate) fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    for lead in ["invalid type: ", "invalid value: "] {
        if let Some(at) = rest.find(lead) {
            let after = &rest[at + lead.len()..];
            // "<kind> `value`" or "<kind> \"value\"": keep the kind, drop the quoted value.
            let kind_end = after.find([' ', ',']).unwrap_or(after.len());
            let value_end = after.find(", expected").unwrap_or(after.len());
            if kind_end < value_end {
                out.push_str(&rest[..at + lead.len()]);
                out.push_str(&after[..kind_end]);
                rest = &after[value_end..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses a duration such as `30s`, `500us` or `2m`.
pub fn parse_duration(setting: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text.trim()).map_err(|err| ConfigError::Invalid {
        setting: setting.to_owned(),
        message: format!("{text:?} is not a duration like 30s or 500ms ({err})"),
    })
}

/// Parses a size such as `1MiB`, `512KB`, `10485760` (bytes) or `50GiB`.
pub fn parse_size(setting: &str, text: &str) -> Result<u64, ConfigError> {
    let invalid = || ConfigError::Invalid {
        setting: setting.to_owned(),
        message: format!("{text:?} is not a size like 1MiB, 512KB or 1048576"),
    };
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "p" | "pb" => 1e15,
        "pib" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(invalid()),
    };
    let bytes = number * multiplier;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_give_the_place_but_not_the_line_or_the_value() {
        let text = "[ingest]\ntokens = [\"fine\"]\n[read]\ntokens = \"Zq8\\w9SECRETESC\"\n";
        let err = FileConfig::parse(text, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4, column"), "{err}");
        assert!(!err.contains("SECRETESC"), "{err}");
        let text = "[ingest]\ntokens = 987654321012345\n";
        let err = FileConfig::parse(text, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("invalid type"),
            "{err}"
        );
        assert!(!err.contains("987654321012345"), "{err}");
    }

    #[test]
    fn parse_errors_name_the_setting_in_words_a_reader_knows() {
        let err = |text: &str| {
            FileConfig::parse(text, Path::new("p.toml"))
                .unwrap_err()
                .to_string()
        };
        let wrong_type = err("# settings\n[server]\nmax_connections = \"many\"\n");
        assert!(
            wrong_type.contains("server.max_connections (line 3, column 19)"),
            "{wrong_type}"
        );
        assert!(
            wrong_type.contains("expected a whole number from 0 up"),
            "{wrong_type}"
        );
        assert!(!wrong_type.contains("usize"), "{wrong_type}");
        // A number past the setting's range is said to be too large, not to be no number.
        let past = err("[server]\nmax_wrong_tokens = 4294967296\n");
        assert!(
            past.contains("server.max_wrong_tokens (line 2")
                && past.contains("too large: expected a whole number from 0 to 4294967295"),
            "{past}"
        );
        let negative = err("[server]\nmax_wrong_tokens = -1\n");
        assert!(
            negative.contains("expected a whole number from 0 up"),
            "{negative}"
        );
        // Past every integer's range, either way.
        let far = err("[server]\nmax_wrong_tokens = -9223372036854775809\n");
        assert!(
            far.contains("the number is negative: expected a whole number from 0 up"),
            "{far}"
        );
        let far = err("[server]\nmax_wrong_tokens = 99999999999999999999999\n");
        assert!(far.contains("the number is too large"), "{far}");
        // Sizes, which take a number of bytes too.
        let far = err("[ingest]\nmax_body = 18446744073709551616\n");
        assert!(
            far.contains("ingest.max_body") && far.contains("the number is too large for a size"),
            "{far}"
        );
        let far = err("[ingest]\nmax_body_memory = -99999999999999999999999\n");
        assert!(far.contains("a size cannot be negative"), "{far}");
        // A whole number where text belongs is a wrong type, not a number out of range.
        let typed = err("[server]\nlisten = 8080\n");
        assert!(typed.contains("expected a string"), "{typed}");
        let twice = err("[server]\nlisten = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n");
        assert!(twice.contains("server.listen (line 3"), "{twice}");
        let routes = err("[[routes]]\nname = \"x\"\nconcurrency = -1\n");
        assert!(routes.contains("routes.x.concurrency (line 3"), "{routes}");
        // A line inside a list of values is no setting: nothing of the value is shown as one.
        let listed = err("[ingest]\ntokens = [\n  \"SECRET=part\",\n  7,\n]\n");
        assert!(!listed.contains("SECRET"), "{listed}");
        // Nor is a line inside a string spread over lines, whatever it looks like.
        for quotes in ["'''", "\"\"\""] {
            let spread = err(&format!(
                "[ingest]\ntokens = [{quotes}ptk_aaaa\nS3CRsecret = part{quotes}, 3]\n"
            ));
            assert!(!spread.contains("S3CR"), "{spread}");
            let header = err(&format!(
                "[ingest]\ntokens = [{quotes}x\n[S3CRtab]\n{quotes}]\nno_auth = 3\n"
            ));
            assert!(!header.contains("S3CR"), "{header}");
            assert!(header.contains("ingest.no_auth (line 5"), "{header}");
        }
        // A header with a comment after it is still the table.
        let commented =
            err("[server]\nlisten = \"0.0.0.0:8080\"\n[ingest] # creds\nno_auth = \"x\"\n");
        assert!(commented.contains("ingest.no_auth (line 4"), "{commented}");
        // A quoted table name is not guessed at: the place alone.
        let quoted = err("[\"server\"]\nmax_connections = \"x\"\n");
        assert!(quoted.contains(": line 2, column"), "{quoted}");
        assert!(!quoted.contains(".max_connections"), "{quoted}");
    }

    #[test]
    fn the_commented_default_parses_and_says_what_the_defaults_are() {
        let config = FileConfig::parse(DEFAULT_CONFIG, Path::new("default.toml")).unwrap();
        assert_eq!(config.server.listen.as_deref(), Some("0.0.0.0:8080"));
        assert_eq!(config.ingest.max_body.as_deref(), Some("1MiB"));
        assert_eq!(
            config.store.path.as_deref(),
            Some(Path::new("provtrail.db"))
        );
        assert!(config.ingest.tokens.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = FileConfig::parse("[server]\nlisten_on = \"x\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.listen_on (line 2"), "{err}");
    }

    #[test]
    fn an_unknown_key_in_a_route_names_the_route_as_other_route_errors_do() {
        let routes = "[[routes]]\nname = \"first\"\n[routes.retry]\nmax_attempts = 3\n\
                      [[routes]]\nfilter = \"$\"\n";
        let parse = |tail: &str| {
            FileConfig::parse(&format!("{routes}{tail}"), Path::new("c.toml"))
                .unwrap_err()
                .to_string()
        };
        // The name may come after the mistake, and a `[routes.retry]` belongs to the last route.
        let err = parse("bogus = 1\nname = \"second\"\n");
        assert!(err.contains("routes.second.bogus (line 7"), "{err}");
        let err = parse("name = \"second\"\n[routes.retry]\nmax_attempt = 3\n");
        assert!(
            err.contains("routes.second.retry.max_attempt (line 9"),
            "{err}"
        );
        let err = parse("name = \"second\"\n[[routes]]\nname = \"third\"\nbogus = 1\n");
        assert!(err.contains("routes.third.bogus (line 10"), "{err}");
        // Without a name a route can have, the line says which.
        let err = FileConfig::parse(
            "[[routes]]\nname = \"a b\"\nbogus = 1\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("routes.bogus (line 3"), "{err}");
    }

    #[test]
    fn a_file_no_configuration_could_be_is_refused_without_reading_it_all() {
        // A device without end, given by mistake, is read no further than the cap.
        let err = FileConfig::load(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/dev/zero") && err.contains("more than 4 MiB"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("binary.toml");
        std::fs::write(&binary, b"[server]\nlisten = \"\xff\"\n").unwrap();
        let err = FileConfig::load(&binary).unwrap_err().to_string();
        assert!(
            err.contains("not UTF-8 text (invalid byte at offset 19)"),
            "{err}"
        );
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("s", "1MiB").unwrap(), 1_048_576);
        assert_eq!(parse_size("s", "512KB").unwrap(), 512_000);
        assert_eq!(parse_size("s", "1048576").unwrap(), 1_048_576);
        // In the file, a size may be a number of bytes too.
        let config = FileConfig::parse(
            "[ingest]\nmax_body = 1048576\n[store]\nmax_size = \"2GiB\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(config.ingest.max_body.as_deref(), Some("1048576"));
        assert_eq!(config.store.max_size.as_deref(), Some("2GiB"));
        assert!(FileConfig::parse("[ingest]\nmax_body = -1\n", Path::new("t.toml")).is_err());
        assert!(parse_size("s", "lots").is_err());
        assert!(parse_size("s", "-1MB").is_err());
        assert_eq!(
            parse_duration("d", "500us").unwrap(),
            Duration::from_micros(500)
        );
        assert!(parse_duration("d", "soon").is_err());
    }
}
