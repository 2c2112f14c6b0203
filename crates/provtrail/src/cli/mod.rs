//! One module per subcommand; each exposes an `Args` struct and `run(args) -> anyhow::Result<ExitCode>`.

/// `println!` that returns the write's error instead of panicking: output piped into a program
/// that stopped reading (`| head`) then ends the command quietly (`main` treats a broken pipe
/// as success) rather than with a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `eprintln!` that does not panic when standard error is a pipe already closed (`2>&1 | head
/// -1`): a message nobody can read is dropped, and the command's work and exit status stay
/// what they are.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub mod backfill;
pub mod config;
pub mod database;
pub mod deadletter;
pub mod demo;
pub mod export;
pub mod filter;
pub mod ingest;
pub mod openapi;
pub mod quarantine;
pub mod remote;
pub mod replay;
pub mod routes;
pub mod search;
pub mod send;
pub mod serve;
pub mod show;
pub mod stats;
pub mod time;
pub mod validate;
pub mod verify;

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use bytes::Bytes;

/// Output for people or for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Readable text.
    Text,
    /// JSON: a list one document per line, a single answer (`show`, `stats`) as one indented
    /// document.
    Json,
}

/// Logs go to standard error, so that standard output stays for results.
/// Checks a `--log` filter: each comma-separated part a level, or `target=level`. A bare word
/// is a target to `tracing`, so a misspelt level (`warnn`) would be taken as one and silence
/// every log line; it is refused instead.
pub fn parse_log_filter(text: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let level = part
            .rsplit_once('=')
            .map_or(part, |(_, level)| level)
            .trim();
        if !LEVELS.iter().any(|known| known.eq_ignore_ascii_case(level)) {
            return Err(format!(
                "`{part}`: each part is a level ({}) or target=level, like provtrail=debug",
                LEVELS.join(", ")
            ));
        }
    }
    // Parts that name targets only (`provtrail=debug`) would leave every other line off,
    // warnings included, and a misspelt target would silence everything: warnings and errors
    // stay on unless a level for everything is given.
    let levels_everything = text
        .split(',')
        .map(str::trim)
        .any(|part| !part.is_empty() && !part.contains('='));
    let filter = if levels_everything {
        text.to_owned()
    } else if text.trim().is_empty() {
        "info".to_owned()
    } else {
        format!("{text},warn")
    };
    tracing_subscriber::EnvFilter::try_new(&filter)
        .map(|_| filter)
        .map_err(|err| format!("`{text}`: {err}"))
}

/// Whether the logs are JSON lines (`--log-json`): what the server says for people then goes
/// to the log as events too, and secrets are left out of it.
static LOGS_AS_JSON: AtomicBool = AtomicBool::new(false);

/// See [`LOGS_AS_JSON`].
pub fn logs_as_json() -> bool {
    LOGS_AS_JSON.load(Ordering::Relaxed)
}

/// Says `message` to the person running the command, on standard error: a log event when logs
/// are JSON lines (`--log-json`), which a collector reads line by line.
pub fn tell(message: &str) {
    if logs_as_json() {
        tracing::info!("{message}");
    } else {
        // Not `eprintln!`, which panics when standard error is a pipe already closed.
        let _ = writeln!(std::io::stderr(), "{message}");
    }
}

pub fn init_logging(filter: &str, json: bool) {
    use tracing_subscriber::util::SubscriberInitExt as _;
    LOGS_AS_JSON.store(json, Ordering::Relaxed);
    log_subscriber(filter, json, || QuietStderr).init();
}

/// Standard error for log lines, whose failed writes are dropped: with standard error closed
/// under it (the log shipper died), tracing-subscriber reports a failed write with `eprintln!`,
/// which panics on that same closed pipe, in whichever thread logged.
struct QuietStderr;

impl Write for QuietStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Log targets held at a level whatever `--log` asks, and why: log lines never pass through the
/// routes' redactor. `async_nats` logs a server's URL with its password (`ServerAddr(Url { …
/// password: Some(…) })`) at debug and the CONNECT message with `pass` and `auth_token` at
/// trace, so `--log debug` or `--log trace` would write NATS credentials in the clear. At info
/// it says `client error: nats: IO error` at every try to reach a server that is down, naming
/// no route: the NATS sink logs connection changes itself, once each, with the route's name.
const CAPPED_LOG_TARGETS: &[(&str, tracing::level_filters::LevelFilter)] =
    &[("async_nats", tracing::level_filters::LevelFilter::WARN)];

/// The subscriber of [`init_logging`], writing to `writer`. The caps are a second filter that
/// must also let an event through, so they lower a target's level and never raise it (`--log
/// warn` keeps `async_nats` at warn).
fn log_subscriber<W>(
    filter: &str,
    json: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let caps = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::level_filters::LevelFilter::TRACE)
        .with_targets(CAPPED_LOG_TARGETS.iter().copied());
    // Colours only for a person at a terminal who has not asked for none (NO_COLOR, set to
    // anything but empty): in a file or a journal they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours_wanted(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR").as_deref(),
        ))
        .with_writer(writer);
    if json {
        Box::new(builder.json().finish().with(caps))
    } else {
        Box::new(builder.finish().with(caps))
    }
}

/// Whether log lines are coloured: on a terminal, unless `NO_COLOR` is set to a value that is
/// not empty (<https://no-color.org>).
fn colours_wanted(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

/// Runs an async command on a multi-threaded runtime.
pub fn block_on<F: Future<Output = anyhow::Result<std::process::ExitCode>>>(
    future: F,
) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("provtrail")
        .build()?;
    let outcome = runtime.block_on(future);
    // The command is done. A reader still blocked on standard input (a pipe whose writer is
    // open, after Ctrl-C stopped the reading) would hold the runtime's drop for ever.
    runtime.shutdown_background();
    outcome
}

/// The environment variable that gave the value clap refused, when the flag it names was not
/// on the command line: clap's message names only the flag (`--db <PATH>`), which the user
/// never typed.
pub fn variable_behind(command: &clap::Command, err: &clap::Error) -> Option<String> {
    let clap::error::ContextValue::String(flag) = err.get(clap::error::ContextKind::InvalidArg)?
    else {
        return None;
    };
    let long = flag.split_whitespace().next()?.strip_prefix("--")?;
    // `--db <PATH>`, `--no-auth[=<BOOL>]`, `--listen=<ADDR>`.
    let long = long.split(['=', '[']).next()?;
    fn find(command: &clap::Command, long: &str) -> Option<String> {
        command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long))
            .and_then(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .or_else(|| {
                command
                    .get_subcommands()
                    .find_map(|child| find(child, long))
            })
    }
    let variable = find(command, long)?;
    from_environment(long, variable)
}

/// `variable`, when it is set and the flag `--long` was not given: the value came from it.
pub fn from_environment(long: &str, variable: String) -> Option<String> {
    (!typed(long) && std::env::var_os(&variable).is_some()).then_some(variable)
}

/// Whether the flag `--long` is on the command line.
pub fn typed(long: &str) -> bool {
    std::env::args_os().any(|arg| {
        let arg = arg.to_string_lossy();
        arg == format!("--{long}") || arg.starts_with(&format!("--{long}="))
    })
}

/// A credential a client command presents, as given on the command line or in `variable` (the
/// environment variable it came from, if it did): `${env:NAME}` and `${file:PATH}` references
/// are resolved as `serve` resolves them. `serve` reads some variables as lists (tokens
/// separated by commas): from one of those (`first_of_list`), the first is taken, so that one
/// setting serves both.
pub fn client_credential(
    value: &str,
    variable: Option<&str>,
    first_of_list: bool,
) -> anyhow::Result<String> {
    let named = || match variable {
        Some(variable) => format!("the credential in {variable}"),
        None => "the credential given".to_owned(),
    };
    let value = match variable {
        Some(_) if first_of_list => value.split(',').next().unwrap_or(value),
        _ => value,
    };
    let resolved = provtrail::routes::Secrets::new(Default::default())
        .resolve(value.trim())
        .with_context(named)?;
    let resolved = resolved.trim();
    anyhow::ensure!(!resolved.is_empty(), "{} is empty", named());
    Ok(resolved.to_owned())
}

/// A token read from a file (a line, as `serve` writes them), which must not be empty.
pub fn token_from_file(path: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = token.trim();
    anyhow::ensure!(
        !token.is_empty(),
        "the token file {} is empty (a server writes its generated tokens to \
         <database>.token and <database>.read-token)",
        path.display()
    );
    Ok(token.to_owned())
}

/// What a clap error says, on one line: without its `error: ` prefix, usage and help hint.
pub fn clap_message(err: &clap::Error) -> String {
    err.render()
        .to_string()
        .lines()
        .map(|line| line.trim().trim_start_matches("error: "))
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with("Usage:")
                && !line.starts_with("For more information")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// SIGINT (Ctrl-C) and SIGTERM, listened for from the moment this is made, so that a signal
/// that comes between two waits is not missed.
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Starts listening (within a Tokio runtime).
    pub fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Completes at the next SIGINT or SIGTERM; never when neither can be listened for.
    pub async fn next(&mut self) {
        #[cfg(unix)]
        {
            let interrupt = async {
                match &mut self.interrupt {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let terminate = async {
                match &mut self.terminate {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = interrupt => {}
                () = terminate => {}
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Whether any signal can be listened for.
    pub fn can_listen(&self) -> bool {
        #[cfg(unix)]
        {
            self.interrupt.is_some() || self.terminate.is_some()
        }
        #[cfg(not(unix))]
        true
    }
}

/// A progress bar on standard error, shown only when it is a terminal; `total` when known.
pub fn progress_bar(total: Option<u64>, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    progress_bar_shown(total, what)
}

/// [`progress_bar`] for a command that writes its results to standard output as it goes: none
/// when that is the terminal too, where the bar would be drawn in among the results.
pub fn progress_bar_beside_output(total: Option<u64>, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if std::io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    progress_bar(total, what)
}

fn progress_bar_shown(total: Option<u64>, what: &str) -> indicatif::ProgressBar {
    let bar = match total {
        Some(total) if total > 1 => indicatif::ProgressBar::new(total),
        Some(_) => return indicatif::ProgressBar::hidden(),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = match total {
        Some(_) => "{prefix} [{bar:40}] {human_pos}/{human_len} ({rate}, eta {eta}) {msg}",
        None => "{prefix} {spinner} {human_pos} ({rate}) {msg}",
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        // Whole items a second: indicatif's own `per_sec` shows four decimals.
        let rate = |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
            let _ = write!(
                out,
                "{}/s",
                provtrail::grouped_thousands(state.per_sec().round() as u64)
            );
        };
        bar.set_style(style.progress_chars("=> ").with_key("rate", rate));
    }
    bar.set_prefix(what.to_owned());
    bar
}

/// Opens a file, or standard input for `-`.
pub fn open_input(path: &Path) -> anyhow::Result<Box<dyn BufRead + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // A directory opens, and only fails at the first read: said now, before anything is done.
    anyhow::ensure!(
        !file.metadata().is_ok_and(|meta| meta.is_dir()),
        "{} is a directory: give a file of events (JSON or JSON lines) or - for standard input",
        path.display()
    );
    Ok(Box::new(BufReader::new(file)))
}

/// A line of JSON lines without its `\n` or `\r\n`: the line's end is not part of the
/// document, nor of its size.
pub fn without_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Passes documents from `read` on to the returned receiver until Ctrl-C (or SIGTERM), then
/// stops passing them (and sets the interruption), so that the requests in flight finish and
/// the report covers what was sent. A signal after the last document was passed on interrupts
/// too (a document waiting to be sent again is then not). A second signal ends the process at
/// once.
pub fn stop_on_ctrl_c<T: Send + 'static>(
    mut read: tokio::sync::mpsc::Receiver<T>,
) -> (
    tokio::sync::mpsc::Receiver<T>,
    provtrail::sender::Interruption,
) {
    // One document waits at a time, so that little is sent after the interruption.
    let (forward, receiver) = tokio::sync::mpsc::channel::<T>(1);
    let interruption = provtrail::sender::Interruption::default();
    let flag = interruption.clone();
    let mut signals = StopSignals::listen();
    tokio::spawn(async move {
        let mut forwarding = Box::pin(async move {
            while let Some(document) = read.recv().await {
                if forward.send(document).await.is_err() {
                    return;
                }
            }
        });
        // One listener for the whole run: a signal that came while a fresh one was not yet
        // listening would be missed.
        if !signals.can_listen() {
            // Signals cannot be handled here: pass everything on.
            forwarding.await;
            return;
        }
        tokio::select! {
            () = &mut forwarding => {
                // Listened to until the run ends: once listened for, a signal no longer ends
                // the process, and one ignored would leave the run (documents waiting to be
                // sent again, the last commit) to its end.
                tokio::select! {
                    () = signals.next() => flag.interrupt(),
                    () = flag.wait_finished() => return,
                }
            }
            () = signals.next() => {
                // Set before the documents stop: whoever finds them at an end knows why.
                flag.interrupt();
                // Dropping both ends stops the senders after their requests in flight, and the
                // reader at its next hand-over.
                drop(forwarding);
            }
        }
        if logs_as_json() {
            tracing::warn!("interrupted: finishing what is in flight");
        } else {
            note!("\ninterrupted: finishing the requests in flight (Ctrl-C again to quit now)");
        }
        signals.next().await;
        std::process::exit(130);
    });
    (receiver, interruption)
}

/// Prints one document of the read API (an event, a quarantine entry) as `show` commands do:
/// its body exactly as received (`raw`), the API's JSON (`format`), or `describe`'s text for
/// people with control characters escaped.
pub fn print_detail<T: serde::Serialize>(
    detail: &T,
    body: (&str, provtrail::server::api::model::RawEncoding),
    raw: bool,
    format: OutputFormat,
    describe: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if raw {
        let bytes = provtrail::server::api::model::raw_bytes(body.0, body.1)
            .context("the stored body cannot be decoded")?;
        out.write_all(&bytes)?;
    } else if format == OutputFormat::Json {
        serde_json::to_writer_pretty(&mut out, detail)?;
        out.write_all(b"\n")?;
    } else {
        out.write_all(terminal_safe(&describe(detail)).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// `text` for a terminal: every control character but the line break escaped as JSON escapes
/// it (`\u001b`, `\t`), as are the characters that reorder text or separate lines without a line
/// break, and the invisible ones (zero-width spaces and joiners, the byte order mark, tag
/// characters: Unicode's format characters), which could make two different values look alike. Events and quarantined bodies hold whatever a sender posted: a string with escape
/// sequences, printed as it is, could drive the terminal that shows it, and a right-to-left
/// override could make it show something other than what is stored. The escapes are those of
/// the paths that name JSON keys, so a key reads the same in a path and in a message.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    escape_for_terminal(text, true)
}

/// `text` as one line of a terminal: as [`terminal_safe`], with line breaks escaped too (`\n`).
/// For what is printed as one line among others (a problem of a report, a field of an event, a
/// cell of a table), where a line break inside it would pass for a line of its own.
pub fn terminal_line(text: &str) -> std::borrow::Cow<'_, str> {
    escape_for_terminal(text, false)
}

fn escape_for_terminal(text: &str, keep_line_breaks: bool) -> std::borrow::Cow<'_, str> {
    provtrail::visible::escape_hidden(text, |c| keep_line_breaks && c == '\n')
}

/// Whether `path` names a JSON-lines file by its extension (`.jsonl`, `.ndjson`).
pub fn is_json_lines_path(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            extension.eq_ignore_ascii_case("jsonl") || extension.eq_ignore_ascii_case("ndjson")
        })
}

/// The documents of an input that is several JSON documents one after another (what `jq`
/// prints for a stream: documents pretty-printed, or on lines of their own, or both mixed), each
/// with the line it starts on and where its bytes are; `None` unless the input holds two or
/// more. A document that does not parse runs to the next line that opens one in its first
/// column (`{` or `[`, as `jq` starts each), or to the end: it is one broken document, and the
/// ones after it are read as if it were whole.
pub fn concatenated_documents(body: &[u8]) -> Option<Vec<(u64, std::ops::Range<usize>, bool)>> {
    let newlines = |bytes: &[u8]| bytes.iter().filter(|&&byte| byte == b'\n').count() as u64;
    let mut documents = Vec::new();
    let (mut end, mut line) = (0, 1);
    loop {
        let start = end
            + body[end..]
                .iter()
                .take_while(|byte| byte.is_ascii_whitespace())
                .count();
        if start == body.len() {
            break;
        }
        line += newlines(&body[end..start]);
        let mut stream = serde_json::Deserializer::from_slice(&body[start..])
            .into_iter::<serde::de::IgnoredAny>();
        let (stop, whole) = match stream.next() {
            Some(Ok(_)) => (start + stream.byte_offset(), true),
            _ => {
                let next = body[start..]
                    .windows(2)
                    .position(|pair| pair[0] == b'\n' && matches!(pair[1], b'{' | b'['))
                    .map_or(body.len(), |at| start + at + 1);
                (start + body[start..next].trim_ascii_end().len(), false)
            }
        };
        documents.push((line, start..stop, whole));
        line += newlines(&body[start..stop]);
        end = stop;
    }
    (documents.len() >= 2).then_some(documents)
}

/// The documents of an input that is not one document but several one after another, some
/// spread over lines (a stream printed by `jq`): each is read whole, where reading it line by
/// line would cut it up. `None` for any other input (one document, JSON lines, or one broken
/// document). Taken for such a stream only when a document that parsed spans lines and every
/// one that parsed is an object or an array: a pretty-printed event whose first line is missing
/// starts with a string that parses, and stays one broken document.
pub fn documents_one_after_another(body: &[u8]) -> Option<Vec<(u64, std::ops::Range<usize>)>> {
    if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return None;
    }
    let documents = concatenated_documents(body)?;
    let parsed = documents.iter().filter(|(_, _, whole)| *whole);
    let containers = parsed
        .clone()
        .all(|(_, range, _)| matches!(body[range.start], b'{' | b'['));
    let spread = parsed
        .clone()
        .any(|(_, range, _)| body[range.clone()].contains(&b'\n'));
    // Documents on lines of their own with a line that is only a bracket among them (a stray
    // `]` or `}` left from an edit): not JSON lines (the bracket may close a pretty-printed
    // document), yet the documents are whole. Read as one, every event would go to the
    // quarantine with the bracket.
    // Only lines whole by themselves: `{…},` lines of one broken array are no such lines.
    let line_of_its_own = |range: &std::ops::Range<usize>| {
        let before = &body[..range.start];
        let line_start = before
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(0, |at| at + 1);
        let after = &body[range.end..];
        let line_end = after
            .iter()
            .position(|&byte| byte == b'\n')
            .unwrap_or(after.len());
        before[line_start..].trim_ascii().is_empty() && after[..line_end].trim_ascii().is_empty()
    };
    let stray_bracket = !spread
        && parsed.clone().next().is_some()
        && parsed.clone().all(|(_, range, _)| line_of_its_own(range))
        && documents
            .iter()
            .any(|(_, range, whole)| !whole && is_bracket_line(body[range.clone()].trim_ascii()));
    (containers && (spread || stray_bracket)).then(|| {
        documents
            .into_iter()
            .map(|(line, range, _)| (line, range))
            .collect()
    })
}

/// The events of an input that is one JSON array holding objects (what an API that lists events
/// answers, or `jq -s`), each element with the line it starts on and where its bytes are: each
/// is a document of its own, where the array as one document is no event (an element that is
/// no object is then one document that is no event, not the end of the others). `None` for any
/// other input: an array without an object (an empty one included) is one document.
pub fn events_in_array(body: &[u8]) -> Option<Vec<(u64, std::ops::Range<usize>)>> {
    let skip_blank = |from: usize| {
        from + body[from..]
            .iter()
            .take_while(|byte| byte.is_ascii_whitespace())
            .count()
    };
    let mut at = skip_blank(0);
    if body.get(at) != Some(&b'[') {
        return None;
    }
    let mut line = 1 + body[..at].iter().filter(|&&byte| byte == b'\n').count() as u64;
    let mut elements = Vec::new();
    let mut objects = 0;
    let mut counted = at;
    at = skip_blank(at + 1);
    loop {
        objects += usize::from(body.get(at) == Some(&b'{'));
        let mut stream =
            serde_json::Deserializer::from_slice(&body[at..]).into_iter::<serde::de::IgnoredAny>();
        stream.next()?.ok()?;
        let end = at + stream.byte_offset();
        line += body[counted..at]
            .iter()
            .filter(|&&byte| byte == b'\n')
            .count() as u64;
        counted = at;
        elements.push((line, at..end));
        at = skip_blank(end);
        match body.get(at) {
            Some(b',') => at = skip_blank(at + 1),
            Some(b']') => break,
            _ => return None,
        }
    }
    (objects > 0 && skip_blank(at + 1) == body.len()).then_some(elements)
}

/// Whether `body` is an empty JSON array (`[]`, blanks aside): what an API that lists events
/// answers when there are none.
pub fn is_empty_array(body: &[u8]) -> bool {
    let inner = body.trim_ascii();
    inner.len() >= 2
        && inner[0] == b'['
        && inner[inner.len() - 1] == b']'
        && inner[1..inner.len() - 1].trim_ascii().is_empty()
}

/// Whether `body` is not one JSON document but reads as JSON lines (see
/// [`looks_like_json_lines`]): such input is taken line by line.
pub fn reads_as_json_lines(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() && looks_like_json_lines(body)
}

/// Whether `body`, which is not one JSON document, reads as JSON lines: more than one non-blank
/// line, and either the first is a JSON document by itself, or (a file of events whose first
/// line is broken) another line is a whole JSON object and no line is only the bracket of a
/// pretty-printed document. (A pretty-printed event that is broken somewhere starts with a line
/// holding only `{`; its members' lines are no documents by themselves.)
pub fn looks_like_json_lines(body: &[u8]) -> bool {
    let mut lines = body
        .split(|&byte| byte == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty());
    let (Some(first), Some(second)) = (lines.next(), lines.next()) else {
        return false;
    };
    let is_document = |line: &[u8]| serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok();
    let is_bracket = is_bracket_line;
    if is_document(first) {
        // Unless pretty-printed documents come after it: read line by line, each would be
        // cut into lines, every one kept as a document of its own.
        return !std::iter::once(second).chain(lines).any(is_bracket);
    }
    let mut whole_object = false;
    for line in std::iter::once(first)
        .chain(std::iter::once(second))
        .chain(lines)
    {
        if is_bracket(line) || line.ends_with(b"{") || line.ends_with(b"[") {
            return false;
        }
        whole_object = whole_object || (line.starts_with(b"{") && is_document(line));
    }
    whole_object
}

/// Whether a line (trimmed) is only a bracket, as a pretty-printed document's first or last.
fn is_bracket_line(line: &[u8]) -> bool {
    matches!(
        line.strip_suffix(b",").unwrap_or(line),
        b"{" | b"}" | b"[" | b"]"
    )
}

/// The document as a line of `provtrail export --format jsonl`, when it has that shape: the
/// event under `event`, its body under `raw`, the time under `received_at`, and neither a
/// `trackingNumber` nor an `_metadata` envelope at the top, which an event has instead.
pub fn export_line(document: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    // Cheap test first: events are read by the million, and almost none are export lines.
    let finder = |needle: &[u8]| memchr::memmem::find(document, needle).is_some();
    if !(finder(b"\"raw\"") && finder(b"\"received_at\"") && finder(b"\"event\"")) {
        return None;
    }
    let serde_json::Value::Object(line) = serde_json::from_slice(document).ok()? else {
        return None;
    };
    let is_export = ["event", "raw", "received_at"]
        .iter()
        .all(|key| line.contains_key(*key))
        && !line.contains_key("trackingNumber")
        && !line.contains_key("_metadata");
    is_export.then_some(line)
}

/// The body a line of `provtrail export` holds, as first received, when `document` is such a
/// line: what a receiver takes, and what is checked, is that body, not the line around it. The
/// first such line of a run is said on standard error (`doing` what to the body), once.
pub fn body_of_export_line(document: &[u8], line: u64, doing: &str) -> Option<String> {
    static NOTED: AtomicBool = AtomicBool::new(false);
    let raw = match export_line(document)?.remove("raw") {
        Some(serde_json::Value::String(raw)) => raw,
        _ => return None,
    };
    if !NOTED.swap(true, Ordering::Relaxed) {
        note!(
            "line {line} is a line of `provtrail export`: {doing} the body it holds as received \
             (so for each such line)"
        );
    }
    Some(raw)
}

/// At most `limit` bytes of the file at `path` (`-`: standard input): a device or a pipe that
/// has no end is read no further.
pub fn read_within(path: &Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(limit as u64)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(path)
            .and_then(|file| file.take(limit as u64).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(bytes)
}

/// Refuses a filter flag given an empty (or blank) value: on the command line it is rather a
/// script's empty variable than a wish to leave the filter out, and the read API, which takes a
/// form's empty field for none, would answer every event.
pub fn refuse_blank(flags: &[(&str, &Option<String>)]) -> anyhow::Result<()> {
    for (flag, value) in flags {
        if value
            .as_deref()
            .is_some_and(|value| value.trim().is_empty())
        {
            anyhow::bail!("{flag} is empty: give it a value, or leave {flag} out");
        }
    }
    Ok(())
}

/// Whether the first part of an input too long to hold whole, `head`, begins as JSON lines
/// would: judged on its whole lines only (the last one is cut where the part ends, and may be
/// a bare `{` or blank so far), which are blank, one JSON document, or read as JSON lines.
pub fn begins_as_json_lines(head: &[u8]) -> bool {
    let whole = &head[..memchr::memrchr(b'\n', head).map_or(0, |end| end + 1)];
    let mut lines = whole
        .split(|&byte| byte == b'\n')
        .filter(|line| !is_blank(line));
    match (lines.next(), lines.next()) {
        // Blank lines so far read on; no line end at all is a first line past the limit.
        (None, _) => !whole.is_empty(),
        (Some(line), None) => {
            serde_json::from_slice::<serde::de::IgnoredAny>(without_line_end(line)).is_ok()
        }
        _ => looks_like_json_lines(whole),
    }
}

/// The error for an input without a document: sending or storing nothing is not a success.
pub const NO_DOCUMENTS: &str = "no documents: the input is empty or holds only blank lines";

/// Whether `bytes` (an input, or one line of one) hold no document: only whitespace, after the
/// byte order mark an editor may put at the start of an empty file.
pub fn is_blank(bytes: &[u8]) -> bool {
    bytes
        .strip_prefix(b"\xEF\xBB\xBF")
        .unwrap_or(bytes)
        .iter()
        .all(u8::is_ascii_whitespace)
}

/// Calls `document` with each document of `reader` and the number of the line it starts on: with
/// `jsonl` each non-blank line (without its line end); otherwise the whole input as one
/// document, unless it is not one JSON document but reads as JSON lines (see
/// [`looks_like_json_lines`]), which is then taken line by line, with a note on standard error.
/// Stops early when `document` returns false (its receiver is gone).
pub fn read_documents(
    reader: Box<dyn BufRead + Send>,
    jsonl: bool,
    document: impl FnMut(u64, Bytes) -> bool,
) -> anyhow::Result<()> {
    read_documents_within(reader, jsonl, WHOLE_INPUT_LIMIT, document)
}

/// Most bytes of an input read before telling one document from JSON lines. Past it, JSON lines
/// are read line by line as they come (an export of millions of events piped into `ingest -`
/// must not be held in memory whole), and one document is refused.
pub const WHOLE_INPUT_LIMIT: usize = 64 * 1024 * 1024;

/// [`read_documents`], with the input held whole only up to `limit` bytes.
fn read_documents_within(
    mut reader: Box<dyn BufRead + Send>,
    jsonl: bool,
    limit: usize,
    mut document: impl FnMut(u64, Bytes) -> bool,
) -> anyhow::Result<()> {
    if !jsonl {
        let mut body = Vec::new();
        (&mut reader)
            .take(limit as u64 + 1)
            .read_to_end(&mut body)
            .context("cannot read the input")?;
        // Whether the input goes on past what is held: only then is it read line by line.
        let more = body.len() > limit
            && !reader
                .fill_buf()
                .context("cannot read the input")?
                .is_empty();
        // Blank up to the limit says nothing of what comes after: read on, line by line.
        anyhow::ensure!(more || !is_blank(&body), "{NO_DOCUMENTS}");
        anyhow::ensure!(
            !is_empty_array(&body),
            "no documents: the input is an empty JSON array"
        );
        if more {
            anyhow::ensure!(
                begins_as_json_lines(&body),
                "the input is more than {limit} bytes and not one document per line (a single \
                 document, or documents spread over lines): split it, or write one event per \
                 line, which is read line by line with --jsonl"
            );
            note!("the input holds one JSON document per line: reading it as JSON lines (--jsonl)");
            let rest = std::io::Cursor::new(body).chain(reader);
            return read_lines(Box::new(rest), limit, document);
        }
        // One array of events, or documents one after another, some spread over lines (a
        // stream printed by `jq`): each is one document, read whole.
        let split = events_in_array(&body)
            .map(|events| {
                let said = format!(
                    "the input is a JSON array of {} elements: reading each as a document",
                    events.len()
                );
                (said, events)
            })
            .or_else(|| {
                documents_one_after_another(&body).map(|documents| {
                    let said = format!(
                        "the input holds {} JSON documents one after another: reading each",
                        documents.len()
                    );
                    (said, documents)
                })
            });
        if let Some((said, documents)) = split {
            note!("{said}");
            let body = Bytes::from(body);
            for (line, range) in documents {
                if !document(line, body.slice(range)) {
                    return Ok(());
                }
            }
            return Ok(());
        }
        if !reads_as_json_lines(&body) {
            document(1, Bytes::from(body));
            return Ok(());
        }
        note!("the input holds one JSON document per line: reading it as JSON lines (--jsonl)");
        let body = Bytes::from(body);
        let mut start = 0;
        for (number, line) in body.split_inclusive(|&byte| byte == b'\n').enumerate() {
            let end = start + line.len();
            if !is_blank(line) {
                let kept = without_line_end(line).len();
                if !document(number as u64 + 1, body.slice(start..start + kept)) {
                    return Ok(());
                }
            }
            start = end;
        }
        return Ok(());
    }
    read_lines(reader, limit, document)
}

/// Each non-blank line of `reader` (without its line end) to `document`, with its number. A
/// line longer than `max_line` bytes stops the reading with an error: it is no event, and
/// holding it whole could take all the memory there is (a file without line breaks).
pub fn read_lines(
    mut reader: Box<dyn BufRead + Send>,
    max_line: usize,
    mut document: impl FnMut(u64, Bytes) -> bool,
) -> anyhow::Result<()> {
    let mut line = Vec::new();
    let mut number = 0;
    let mut any = false;
    loop {
        line.clear();
        number += 1;
        if (&mut reader)
            // With room for a line end of two bytes.
            .take(max_line as u64 + 2)
            .read_until(b'\n', &mut line)
            .context("cannot read the input")?
            == 0
        {
            anyhow::ensure!(any, "{NO_DOCUMENTS}");
            return Ok(());
        }
        if without_line_end(&line).len() > max_line {
            anyhow::bail!(
                "line {number} is more than {max_line} bytes long, which no event is: the input \
                 is not one JSON document per line, and nothing from this line on was read"
            );
        }
        if is_blank(&line) {
            continue;
        }
        any = true;
        if !document(number, Bytes::copy_from_slice(without_line_end(&line))) {
            return Ok(());
        }
    }
}

/// `count` followed by the singular or the plural of what it counts ("1 attempt", "2
/// attempts").
pub(crate) fn counted(count: u64, one: &str, many: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {many}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_log_filter_with_a_misspelt_level_is_refused() {
        for good in ["info", "WARN", "provtrail=debug,warn", "off", ""] {
            assert!(parse_log_filter(good).is_ok(), "{good}");
        }
        // A target alone, misspelt or not, leaves warnings on.
        assert_eq!(
            parse_log_filter("provtrl=debug").unwrap(),
            "provtrl=debug,warn"
        );
        assert_eq!(parse_log_filter("").unwrap(), "info");
        assert_eq!(parse_log_filter("error").unwrap(), "error");
        for bad in ["warnn", "provtrail=verbose", "zzz["] {
            let err = parse_log_filter(bad).unwrap_err();
            assert!(err.contains("target=level"), "{bad}: {err}");
        }
    }

    use super::*;

    #[test]
    fn log_lines_are_coloured_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colours_wanted(true, None));
        assert!(!colours_wanted(false, None));
        assert!(!colours_wanted(true, Some(OsStr::new("1"))));
        // An empty NO_COLOR asks for nothing.
        assert!(colours_wanted(true, Some(OsStr::new(""))));
    }

    /// The documents `read_documents_within` finds in `input`, with their line numbers.
    fn documents_within(input: &str, limit: usize) -> anyhow::Result<Vec<(u64, String)>> {
        let mut found = Vec::new();
        let reader = Box::new(std::io::Cursor::new(input.as_bytes().to_vec()));
        read_documents_within(reader, false, limit, |line, document| {
            found.push((line, String::from_utf8_lossy(&document).into_owned()));
            true
        })?;
        Ok(found)
    }

    #[test]
    fn json_lines_longer_than_the_whole_input_limit_are_read_line_by_line() {
        let lines = "{\"n\":1}\n\n{\"n\":2}\r\n{\"n\":3}\n";
        let expected = [(1, "{\"n\":1}"), (3, "{\"n\":2}"), (4, "{\"n\":3}")]
            .map(|(line, text)| (line, text.to_owned()));
        // Held whole, and past the limit (read as it comes): the same documents.
        assert_eq!(documents_within(lines, 1000).unwrap(), expected);
        assert_eq!(documents_within(lines, 10).unwrap(), expected);
        // One document past the limit is refused, not cut.
        let one = "{\n  \"n\": 1,\n  \"m\": 2\n}\n";
        assert_eq!(documents_within(one, 1000).unwrap().len(), 1);
        let err = documents_within(one, 10).unwrap_err().to_string();
        assert!(
            err.contains("more than 10 bytes and not one document per line"),
            "{err}"
        );
        // Lines, then pretty-printed documents, past the limit: refused, not cut into lines.
        let mixed = "{\"n\":1}\n{\n  \"n\": 2\n}\n{\"n\":3}\n";
        let err = documents_within(mixed, 10).unwrap_err().to_string();
        assert!(err.contains("not one document per line"), "{err}");
        // Blank lines past the limit, then documents: read on, not taken for an empty input.
        let late = format!("{}{{\"n\":1}}\n{{\"n\":2}}\n", "\n".repeat(12));
        let expected =
            [(13, "{\"n\":1}"), (14, "{\"n\":2}")].map(|(line, text)| (line, text.to_owned()));
        assert_eq!(documents_within(&late, 10).unwrap(), expected);
        let err = documents_within(&"\n".repeat(12), 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no documents"), "{err}");
        // The part held is judged by its whole lines: one cut after a line's first `{` (a
        // bracket line by itself), or after blank lines and a single line, still reads on.
        let cut_at_a_brace = "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n";
        assert_eq!(documents_within(cut_at_a_brace, 16).unwrap().len(), 3);
        let one_line_then_cut = format!("{}{{\"n\":1}}\n{{\"n\":2}}\n", "\n".repeat(3));
        assert_eq!(documents_within(&one_line_then_cut, 11).unwrap().len(), 2);
    }

    #[test]
    fn documents_one_after_another_are_read_each_whole() {
        // What `jq . a.json b.json` prints, and a line, a pretty-printed document and a line.
        for (input, expected) in [
            (
                "{\n  \"n\": 1\n}\n{\n  \"n\": 2\n}\n",
                vec![(1, "{\n  \"n\": 1\n}"), (4, "{\n  \"n\": 2\n}")],
            ),
            (
                "{\"n\":1}\n{\n  \"n\": 2,\n  \"m\": [1]\n}\n\n{\"n\":3}",
                vec![
                    (1, "{\"n\":1}"),
                    (2, "{\n  \"n\": 2,\n  \"m\": [1]\n}"),
                    (7, "{\"n\":3}"),
                ],
            ),
            (
                "{\"n\":1}{\n\"n\":2}",
                vec![(1, "{\"n\":1}"), (1, "{\n\"n\":2}")],
            ),
        ] {
            let expected: Vec<(u64, String)> = expected
                .into_iter()
                .map(|(line, text)| (line, text.to_owned()))
                .collect();
            assert_eq!(
                documents_within(input, 1000).unwrap(),
                expected,
                "{input:?}"
            );
        }
        // Documents on one line each stay JSON lines.
        assert!(concatenated_documents(b"{\"n\":1}\n{\"n\":2}\n").is_some());
        assert!(documents_one_after_another(b"{\"n\":1}\n{\"n\":2}\n").is_none());
        assert!(concatenated_documents(b"{\"n\":1}").is_none());
        assert!(documents_one_after_another(b"{\"n\":1} x").is_none());
        // A broken document among them is one document, at its line; the others are whole.
        let broken = "{\n  \"n\": 1\n}\n{\n  \"x\": ,\n}\n{\n  \"n\": 3\n}\n";
        let found = documents_within(broken, 1000).unwrap();
        assert_eq!(
            found,
            [
                (1, "{\n  \"n\": 1\n}".to_owned()),
                (4, "{\n  \"x\": ,\n}".to_owned()),
                (7, "{\n  \"n\": 3\n}".to_owned()),
            ]
        );
        // A line, a broken line, a pretty-printed document; and one cut short at the end.
        let mixed = "{\"n\":1}\n{\"n\": \n{\n  \"n\": 3\n}\n{\n  \"n\": 4,\n";
        let found = documents_within(mixed, 1000).unwrap();
        let lines: Vec<u64> = found.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [1, 2, 3, 6], "{found:?}");
        assert_eq!(found[3].1, "{\n  \"n\": 4,");
        // An array of objects: each, at its line. Anything else in an array keeps it whole.
        let array = "[\n  {\"n\": 1},\n  {\n    \"n\": [2]\n  }\n]\n";
        assert_eq!(
            documents_within(array, 1000).unwrap(),
            [
                (2, "{\"n\": 1}".to_owned()),
                (3, "{\n    \"n\": [2]\n  }".to_owned())
            ]
        );
        assert_eq!(
            documents_within("[{\"n\":1},{\"n\":2}]", 1000)
                .unwrap()
                .len(),
            2
        );
        // An element that is no object is a document of its own; an empty array is none.
        assert_eq!(
            documents_within("[{\"n\":1}, 2]", 1000).unwrap(),
            [(1, "{\"n\":1}".to_owned()), (1, "2".to_owned())]
        );
        assert!(documents_within("[ ]", 1000).is_err());
        for whole in [
            "[1, 2]",
            "[{\"n\":1},]",
            "[{\"n\":1}] x",
            "[{\"n\":1}",
            // One array broken by a comma after its last element: one broken document, not
            // its elements with every comma a document of its own.
            "[\n{\"n\":1},\n{\"n\":2},\n]\n",
        ] {
            assert_eq!(
                documents_within(whole, 1000).unwrap(),
                [(1, whole.to_owned())],
                "{whole}"
            );
        }
        // A pretty-printed event broken somewhere, alone, stays one document.
        let alone = "{\n  \"n\": 1,\n  \"m\": \n}\n";
        assert_eq!(documents_within(alone, 1000).unwrap().len(), 1);
        // Lines with a stray bracket at the end or among them: each line's document is whole,
        // the bracket one broken document at its line.
        for (input, bracket_line) in [
            ("{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n]\n", 4),
            ("{\"n\":1}\n{\"n\":2}\n}\n{\"n\":3}\n", 3),
            ("{\"n\":1}\n[\n{\"n\":2}\n{\"n\":3}", 2),
        ] {
            let found = documents_within(input, 1000).unwrap();
            assert_eq!(found.len(), 4, "{input:?}: {found:?}");
            let broken: Vec<u64> = found
                .iter()
                .filter(|(_, text)| serde_json::from_str::<serde_json::Value>(text).is_err())
                .map(|(line, _)| *line)
                .collect();
            assert_eq!(broken, [bracket_line], "{input:?}: {found:?}");
        }
    }

    #[test]
    fn an_input_of_a_byte_order_mark_and_blanks_holds_no_document() {
        // Held whole, and (with a limit of 3 bytes) past what is held, read on line by line.
        for input in ["\u{feff}", "\u{feff}\n\r\n  \n", "", " \n\t"] {
            for limit in [1000, 3] {
                let err = documents_within(input, limit).unwrap_err().to_string();
                assert_eq!(err, NO_DOCUMENTS, "{input:?}");
            }
        }
        // A mark before a document leaves it a document (which JSON then refuses for the mark).
        let found = documents_within("\u{feff}{\"n\":1}", 1000).unwrap();
        assert_eq!(found, [(1, "\u{feff}{\"n\":1}".to_owned())]);
        let mut found = Vec::new();
        let reader = Box::new(std::io::Cursor::new(b"\xEF\xBB\xBF\n{\"n\":1}\n".to_vec()));
        read_documents_within(reader, true, 1000, |line, document| {
            found.push((line, document));
            true
        })
        .unwrap();
        assert_eq!(found, [(2, Bytes::from_static(b"{\"n\":1}"))]);
    }

    #[test]
    fn a_line_longer_than_the_limit_stops_the_reading_without_being_held_whole() {
        let long = format!("{{\"n\":\"{}\"}}", "x".repeat(5000));
        let input = format!("{{\"n\":1}}\n{long}\n{{\"n\":3}}\n");
        let mut found = Vec::new();
        let reader = Box::new(std::io::Cursor::new(input.into_bytes()));
        let err = read_documents_within(reader, true, 100, |line, document| {
            found.push((line, document));
            true
        })
        .unwrap_err()
        .to_string();
        assert_eq!(found, [(1, Bytes::from_static(b"{\"n\":1}"))]);
        assert!(
            err.starts_with("line 2 is more than 100 bytes long"),
            "{err}"
        );
        // A line of exactly the limit is a line like any other.
        let exact = format!("{{\"n\":\"{}\"}}", "x".repeat(100 - 8));
        assert_eq!(exact.len(), 100);
        let mut found = Vec::new();
        let reader = Box::new(std::io::Cursor::new(
            format!("{exact}\r\n{exact}").into_bytes(),
        ));
        read_documents_within(reader, true, 100, |line, document| {
            found.push((line, document.len()));
            true
        })
        .unwrap();
        assert_eq!(found, [(1, 100), (2, 100)]);
    }

    #[test]
    fn json_lines_whose_first_line_is_broken_are_still_json_lines_and_a_broken_event_is_not() {
        // A file of events whose first line was cut: the others are read one by one.
        let lines = "{\"trackingNumber\":\n{\"n\":1}\n{\"n\":2}\nnot json\n";
        assert!(looks_like_json_lines(lines.as_bytes()));
        let found = documents_within(lines, 1000).unwrap();
        assert_eq!(found.len(), 4, "{found:?}");
        assert_eq!(found[1], (2, "{\"n\":1}".to_owned()));
        // A pretty-printed event broken somewhere, whatever its first line, is one document.
        for broken in [
            "{\n  \"a\": 1,\n  \"b\": {\"c\": 2}\n  \"d\": 3\n}\n",
            "  \"a\": 1,\n  \"b\": [\n    {\"c\": 2}\n  ]\n}\n",
            "\"a\": 1,\n\"b\": {\"c\": 2}\n\"d\": {\n}\n",
        ] {
            assert!(!looks_like_json_lines(broken.as_bytes()), "{broken}");
            assert_eq!(documents_within(broken, 1000).unwrap().len(), 1, "{broken}");
        }
        // Lines none of which is an object are not taken for events.
        assert!(!looks_like_json_lines(b"oops\n\"a\"\n42\n"));
    }

    #[test]
    fn text_for_a_terminal_escapes_what_could_forge_or_hide_output() {
        let hostile = "a\nb\r\u{1b}[2J\u{202e}\u{200b}\u{feff}\u{e0041}\u{2028}é\u{3164}";
        assert_eq!(
            terminal_line(hostile),
            "a\\nb\\r\\u001b[2J\\u202e\\u200b\\ufeff\\u{e0041}\\u2028é\\u3164"
        );
        // Text made of lines keeps its line breaks, and nothing else.
        assert_eq!(
            terminal_safe(hostile),
            "a\nb\\r\\u001b[2J\\u202e\\u200b\\ufeff\\u{e0041}\\u2028é\\u3164"
        );
        assert!(matches!(
            terminal_line("plain, é"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    /// A log writer the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(filter: &str, json: bool) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = log_subscriber(filter, json, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            // What async_nats logs, with its real targets and levels.
            tracing::trace!(target: "async_nats::connection", "CONNECT pass: trace-secret");
            tracing::debug!(target: "async_nats::connector", "attempting connection debug-secret");
            tracing::info!(target: "async_nats", "event: client error: nats: IO error nats-info");
            tracing::warn!(target: "async_nats", "slow consumer nats-warn");
            tracing::trace!(target: "provtrail::routes", "own trace");
        });
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn async_nats_never_logs_below_warn_whatever_the_filter_says() {
        for json in [false, true] {
            for filter in [
                "trace",
                "debug",
                "async_nats=trace",
                "info,async_nats=trace",
            ] {
                let text = logged(filter, json);
                assert!(!text.contains("trace-secret"), "{filter}: {text}");
                assert!(!text.contains("debug-secret"), "{filter}: {text}");
                // One line at every reconnect try while a server is down; the sink says it
                // once, with the route's name.
                assert!(!text.contains("nats-info"), "{filter}: {text}");
                assert!(text.contains("nats-warn"), "{filter}: {text}");
            }
            // Other targets keep the level asked for.
            assert!(logged("trace", json).contains("own trace"));
            // The cap never raises a level: at error, async_nats's warnings are not written.
            let text = logged("error", json);
            assert!(!text.contains("nats-warn"), "{text}");
        }
    }
}
