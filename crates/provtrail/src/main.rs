//! The `provtrail` command line. This is the binary's edge: errors become `anyhow` here and exit
//! codes are decided here; everything else lives in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// mimalloc: the server allocates and frees many small buffers per request on every thread, which
/// it serves faster than the system allocator (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A durable, searchable trail of SailPoint ISC Provisioning Completed events.
#[derive(Debug, Parser)]
#[command(name = "provtrail", version, about, propagate_version = true)]
struct Cli {
    /// Log filter (e.g. `info`, `provtrail=debug`).
    #[arg(
        long,
        global = true,
        env = "PROVTRAIL_LOG",
        default_value = "info",
        value_parser = cli::parse_log_filter
    )]
    log: String,
    /// Log as JSON lines instead of text. PROVTRAIL_LOG_JSON takes true, yes, on or 1 (false,
    /// no, off or 0 to leave it off).
    #[arg(
        long,
        global = true,
        env = "PROVTRAIL_LOG_JSON",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start; boxing the arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Receive ISC events over HTTP and keep them.
    Serve(cli::serve::ServeArgs),
    /// Serve on a demo store and drive realistic synthetic traffic through the real HTTP path.
    Demo(cli::demo::DemoArgs),
    /// Import events from a JSON or JSON-lines file straight into the store.
    Ingest(cli::ingest::IngestArgs),
    /// Dump stored events with their receipt metadata (JSON lines or CSV).
    Export(cli::export::ExportArgs),
    /// Read back from ISC the events it sent in the last day or two, to import what was missed.
    Backfill(cli::backfill::BackfillArgs),
    /// Write or check the configuration file.
    Config(cli::config::ConfigArgs),
    /// Post events to a subscriber URL: a file, JSON lines, or synthetic events.
    Send(cli::send::SendArgs),
    /// Check Provisioning Completed events against the published schema.
    Validate(cli::validate::ValidateArgs),
    /// Check a database file: SQLite's check, then every stored body read back as it arrived.
    Verify(cli::verify::VerifyArgs),
    /// Evaluate a subscription filter (Jayway JsonPath) on events, as ISC would.
    Filter(cli::filter::FilterArgs),
    /// Find events by tracking number, identity, source, result, text, time or Jayway filter.
    Search(cli::search::SearchArgs),
    /// Show one event: account requests, attribute changes, errors, receipt, or its raw body.
    Show(cli::show::ShowArgs),
    /// The documents kept that are not valid events: list them with why, or show one with its body.
    Quarantine(cli::quarantine::QuarantineArgs),
    /// Count account requests by result and source, with failure rates and the top errors.
    Stats(cli::stats::StatsArgs),
    /// Print the read API's OpenAPI document.
    Openapi(cli::openapi::OpenApiArgs),
    /// Routes: list them with their counts, or test one on an event.
    Routes(cli::routes::RoutesArgs),
    /// Deliver stored events of a time range to a route again.
    Replay(cli::replay::ReplayArgs),
    /// Dead-letter deliveries: list them, or send them again.
    Deadletter(cli::deadletter::DeadletterArgs),
    /// Renders body templates for the process that started it (its standard input and output),
    /// within a memory limit given in bytes. Not for people.
    #[command(name = "render-worker", hide = true)]
    RenderWorker { memory: u64 },
}

fn main() -> ExitCode {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let command = cli::serve::hide_serving_flags(Cli::command());
    let matches = command.clone().try_get_matches().unwrap_or_else(|err| {
        let variable = cli::variable_behind(&command, &err);
        if err.use_stderr() && wants_json_logs() {
            // Logs read by a collector: the refusal of the command line is one of its records.
            let mut message = cli::clap_message(&err);
            if let Some(variable) = &variable {
                message.push_str(&format!(
                    " (that value comes from the environment's {variable})"
                ));
            }
            print_json_error(&message);
            std::process::exit(2);
        }
        if let Some(variable) = variable {
            let _ = err.print();
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr().lock(),
                "(that value comes from the environment's {variable})"
            );
            std::process::exit(2);
        }
        err.exit()
    });
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    cli::init_logging(&cli.log, cli.log_json);
    // Body templates render in child processes of this binary, so that a template that takes
    // too much memory or time on an event ends a child, not the server.
    // The running binary itself, also once an upgrade has replaced the file it was started
    // from (`/proc/self/exe` names the running one; its path would name the new one, or none).
    let running = std::path::Path::new("/proc/self/exe");
    let program = if running.exists() {
        Some(running.to_path_buf())
    } else {
        std::env::current_exe().ok()
    };
    if let Some(program) = program {
        provtrail::routes::render::isolate(provtrail::routes::render::Isolation::new(program));
    }
    let outcome = match cli.command {
        Command::Validate(args) => cli::validate::run(args),
        Command::Filter(args) => cli::filter::run(args),
        Command::Serve(args) => cli::block_on(cli::serve::run(args)),
        Command::Send(args) => cli::block_on(cli::send::run(args)),
        Command::Demo(args) => cli::block_on(cli::demo::run(args)),
        Command::Ingest(args) => cli::block_on(cli::ingest::run(args)),
        Command::Export(args) => cli::block_on(cli::export::run(args)),
        Command::Verify(args) => cli::block_on(cli::verify::run(args)),
        Command::Backfill(args) => cli::block_on(cli::backfill::run(args)),
        Command::Config(args) => cli::config::run(args),
        Command::Search(args) => cli::block_on(cli::search::run(args)),
        Command::Show(args) => cli::block_on(cli::show::run(args)),
        Command::Quarantine(args) => cli::block_on(cli::quarantine::run(args)),
        Command::Stats(args) => cli::block_on(cli::stats::run(args)),
        Command::Openapi(args) => cli::openapi::run(args),
        Command::Routes(args) => cli::block_on(cli::routes::run(args)),
        Command::Replay(args) => cli::block_on(cli::replay::run(args)),
        Command::Deadletter(args) => cli::block_on(cli::deadletter::run(args)),
        Command::RenderWorker { memory } => Ok(render_worker(memory)),
    };
    match outcome {
        Ok(code) => code,
        // Quietly, as a program that the signal ends, and not 0: the command stopped before it
        // finished (`validate` had not checked every document), and 0 would say it had.
        Err(err) if is_broken_pipe(&err) => ExitCode::from(BROKEN_PIPE_EXIT),
        Err(err) => {
            // Not `eprintln!`, which panics when standard error is a pipe already closed
            // (`2>&1 | head -c1`): the exit code still says what happened.
            use std::io::Write as _;
            // Errors may quote what others wrote (a server's answer, a file's content): no
            // terminal control codes from them.
            let message = format!("{err:#}");
            if cli::logs_as_json() {
                // With --log-json standard error is read by a log collector: the last line is
                // one of its records too.
                print_json_error(&message);
            } else {
                let _ = writeln!(std::io::stderr(), "error: {}", cli::terminal_safe(&message));
            }
            ExitCode::from(2)
        }
    }
}

/// The child's side of the rendering of body templates: exits 0 when its input ends.
fn render_worker(memory: u64) -> ExitCode {
    use provtrail::routes::render;
    if render::limit_memory(memory).is_err() {
        return ExitCode::from(2);
    }
    // SIGTERM and SIGINT are for the server, which stops gracefully; a service manager sends
    // them to every process of the service at once. The child ends when its input does, once
    // the server has, and a rendering under way meanwhile is finished. (The handlers stay once
    // installed, after the runtime that installed them is gone.)
    let ignored = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map(|runtime| {
            runtime.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                (
                    signal(SignalKind::terminate()).is_ok(),
                    signal(SignalKind::interrupt()).is_ok(),
                )
            })
        });
    if !matches!(ignored, Ok((true, true))) {
        return ExitCode::from(2);
    }
    match render::serve_renderings(std::io::stdin().lock(), std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(2),
    }
}

/// One error record in the form of the JSON logs.
fn print_json_error(message: &str) {
    use std::io::Write as _;
    let record = serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": "ERROR",
        "fields": {"message": message},
        "target": "provtrail",
    });
    let _ = writeln!(std::io::stderr(), "{record}");
}

/// Whether JSON logs were asked for, read before the command line is parsed (for the error that
/// refuses it): `--log-json` (with no value, or a true one) or a true `PROVTRAIL_LOG_JSON`.
fn wants_json_logs() -> bool {
    let truthy = |text: &str| {
        matches!(
            text.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "y" | "on"
        )
    };
    let mut from_flag = None;
    for arg in std::env::args_os().skip(1) {
        let arg = arg.to_string_lossy();
        if arg == "--log-json" {
            from_flag = Some(true);
        } else if let Some(value) = arg.strip_prefix("--log-json=") {
            from_flag = Some(truthy(value));
        }
    }
    from_flag
        .unwrap_or_else(|| std::env::var("PROVTRAIL_LOG_JSON").is_ok_and(|value| truthy(&value)))
}

/// The exit status of a program ended by `SIGPIPE`, as a shell reports it (128 + 13).
const BROKEN_PIPE_EXIT: u8 = 141;

/// Output piped into a program that stopped reading (`| head`) is not an error worth reporting.
/// The writers of JSON and CSV wrap the I/O error in their own, which do not hand it on as
/// their source: each is asked for its kind.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    let broken = |kind: std::io::ErrorKind| kind == std::io::ErrorKind::BrokenPipe;
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| broken(io.kind()))
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                .is_some_and(broken)
            || cause.downcast_ref::<csv::Error>().is_some_and(
                |csv| matches!(csv.kind(), csv::ErrorKind::Io(io) if broken(io.kind())),
            )
    })
}
