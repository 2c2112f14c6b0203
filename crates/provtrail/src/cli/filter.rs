//! `provtrail filter`: evaluates a subscription filter (Jayway JsonPath) on events, giving the
//! answer and the match decision ISC would give, without a tenant.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context as _;
use provtrail_jsonpath::{Options, Path};
use serde_json::{Value, json};

use super::OutputFormat as Format;

/// A Jayway option (`com.jayway.jsonpath.Option`); ISC uses none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JaywayOption {
    /// Missing leaf properties give null.
    DefaultPathLeafToNull,
    /// Definite answers are wrapped in a list.
    AlwaysReturnList,
    /// Answer the locations of the results instead of the values.
    AsPathList,
    /// Missing paths give null or [] instead of PathNotFound.
    SuppressExceptions,
    /// Missing properties fail even on indefinite paths.
    RequireProperties,
}

/// Arguments of `provtrail filter`.
///
/// Exit status: 0 when the expression compiled and every document was evaluated (an evaluation
/// that fails, as Jayway's PathNotFound, is an answer, reported in the output); 1 when some
/// documents are not JSON (each reported in the output with the others, and counted on standard
/// error); 2 when the expression does not compile, or the input cannot be read or holds no
/// document.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Treat the input as JSON lines: evaluate the expression on each non-empty line. An input
    /// that is one JSON document per line is read so without it.
    #[arg(long)]
    pub jsonl: bool,
    /// Show how the expression was parsed before evaluating it (on standard error with
    /// `--format json`).
    #[arg(long)]
    pub explain: bool,
    /// Evaluate with a Jayway option (repeatable).
    #[arg(long = "option", value_enum)]
    pub options: Vec<JaywayOption>,
    /// The filter, e.g. `$[?($.identity.name == "john.doe")]`.
    pub expr: String,
    /// The event file; `-` or nothing reads standard input.
    pub file: Option<std::path::PathBuf>,
}

/// Runs `provtrail filter`.
pub fn run(args: FilterArgs) -> anyhow::Result<ExitCode> {
    let path = match provtrail_jsonpath::compile(&args.expr) {
        Ok(p) => p,
        Err(e) => {
            note!("{}", caret_report(&args.expr, &e));
            return Ok(ExitCode::from(2));
        }
    };
    // Compiles, as in Jayway, but fails wherever the call is evaluated: a misspelling, most
    // likely.
    let unknown = path.unknown_functions();
    if !unknown.is_empty() {
        let called: Vec<String> = unknown.iter().map(|name| format!("{name}()")).collect();
        note!(
            "warning: the expression calls {}, which Jayway does not have: every evaluation that \
             reaches the call fails (Jayway's functions: {})",
            called.join(", "),
            Path::FUNCTIONS.join(", ")
        );
    }
    let mut options = Options::default();
    for o in &args.options {
        match o {
            JaywayOption::DefaultPathLeafToNull => options.default_path_leaf_to_null = true,
            JaywayOption::AlwaysReturnList => options.always_return_list = true,
            JaywayOption::AsPathList => options.as_path_list = true,
            JaywayOption::SuppressExceptions => options.suppress_exceptions = true,
            JaywayOption::RequireProperties => options.require_properties = true,
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.explain {
        let text = path.explain();
        if args.format == Format::Json {
            // Standard output holds the JSON; a closed standard error is no reason to fail.
            let _ = write!(std::io::stderr().lock(), "{text}");
        } else {
            writeln!(out, "{text}")?;
        }
    }
    let (input, rest) = match read_input(args.file.as_deref()) {
        Ok(read) => read,
        Err(e) => {
            note!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    // Past what is held whole, one document per line is evaluated line by line as it comes (an
    // export of millions of events); anything else is refused rather than held in memory.
    if let Some(rest) = rest {
        return evaluate_lines_as_they_come(&mut out, &args, &path, options, input, rest);
    }
    if super::is_blank(&input) {
        note!("error: {}", super::NO_DOCUMENTS);
        return Ok(ExitCode::from(2));
    }
    // Documents one after another (a stream printed by `jq`): each evaluated whole.
    if !args.jsonl
        && let Some(documents) = super::documents_one_after_another(&input)
    {
        note!(
            "the input holds {} JSON documents one after another: evaluating each",
            documents.len()
        );
        let mut tally = Tally::default();
        for (line, range) in documents {
            tally.add(report(
                &mut out,
                args.format,
                &path,
                options,
                &input[range],
                Some(line),
            )?);
        }
        out.flush()?;
        return Ok(tally.exit_code());
    }
    let jsonl = args.jsonl || super::reads_as_json_lines(&input);
    if jsonl && !args.jsonl {
        note!("the input holds one JSON document per line: reading it as JSON lines (--jsonl)");
    }
    let mut tally = Tally::default();
    if jsonl {
        for (n, line) in input.split(|&byte| byte == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if super::is_blank(line) {
                continue;
            }
            tally.add(report(
                &mut out,
                args.format,
                &path,
                options,
                line,
                Some(n as u64 + 1),
            )?);
        }
    } else {
        tally.add(report(&mut out, args.format, &path, options, &input, None)?);
    }
    out.flush()?;
    Ok(tally.exit_code())
}

/// How many documents were evaluated and how many were not JSON at all.
#[derive(Default)]
struct Tally {
    documents: u64,
    not_json: u64,
}

impl Tally {
    fn add(&mut self, read: Reading) {
        self.documents += 1;
        if read == Reading::NotJson {
            self.not_json += 1;
        }
    }

    /// 1 when a document could not be evaluated for not being JSON: a script that filters a
    /// file learns that part of it was never looked at.
    fn exit_code(&self) -> ExitCode {
        if self.not_json == 0 {
            return ExitCode::SUCCESS;
        }
        note!(
            "error: {} of {} documents are not JSON (each is reported with the answers)",
            self.not_json,
            self.documents
        );
        ExitCode::from(1)
    }
}

/// Whether a document read as JSON (and was evaluated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Evaluated,
    NotJson,
}

/// The input's bytes, up to [`super::WHOLE_INPUT_LIMIT`], and the reader of the rest when there
/// is more. A document that is not UTF-8 is reported as any document that is not JSON, line by
/// line in JSON lines, rather than stopping the whole run.
fn read_input(file: Option<&std::path::Path>) -> anyhow::Result<(Vec<u8>, Option<Rest>)> {
    let mut reader: Rest = match file {
        Some(file) if file != std::path::Path::new("-") => Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?,
        )),
        _ => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let mut bytes = Vec::new();
    (&mut reader)
        .take(super::WHOLE_INPUT_LIMIT as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| match file {
            Some(file) if file != std::path::Path::new("-") => {
                format!("cannot read {}", file.display())
            }
            _ => "cannot read standard input".to_owned(),
        })?;
    let more = bytes.len() > super::WHOLE_INPUT_LIMIT
        && !reader
            .fill_buf()
            .context("cannot read the input")?
            .is_empty();
    Ok((bytes, more.then_some(reader)))
}

/// What is left of an input past what is held whole.
type Rest = Box<dyn std::io::BufRead + Send>;

/// Evaluates each line of an input too long to hold whole, `first` then `rest`; refuses one
/// that is not one document per line.
fn evaluate_lines_as_they_come(
    out: &mut impl Write,
    args: &FilterArgs,
    path: &Path,
    options: Options,
    first: Vec<u8>,
    rest: Rest,
) -> anyhow::Result<ExitCode> {
    let limit = super::WHOLE_INPUT_LIMIT;
    if !(args.jsonl || super::begins_as_json_lines(&first)) {
        note!(
            "error: the input is more than {limit} bytes and not one document per line (a \
             single document, or documents spread over lines): split it, or write one event per \
             line, which is read line by line with --jsonl"
        );
        return Ok(ExitCode::from(2));
    }
    if !args.jsonl {
        note!("the input holds one JSON document per line: reading it as JSON lines (--jsonl)");
    }
    let mut tally = Tally::default();
    let mut failed = None;
    let lines = std::io::Cursor::new(first).chain(rest);
    let read = super::read_lines(Box::new(lines), limit, |line, document| {
        match report(out, args.format, path, options, &document, Some(line)) {
            Ok(reading) => {
                tally.add(reading);
                true
            }
            Err(err) => {
                failed = Some(err);
                false
            }
        }
    });
    if let Some(err) = failed {
        return Err(err);
    }
    out.flush()?;
    if let Err(err) = read {
        note!("error: {err:#}");
        return Ok(ExitCode::from(2));
    }
    Ok(tally.exit_code())
}

/// [`outcome`] of a document given as bytes, which may not be UTF-8.
fn outcome_of_bytes(path: &Path, options: Options, bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => outcome(path, options, text),
        Err(err) => json!({
            "match": false,
            "error": format!(
                "InvalidJson: the document is not UTF-8 (invalid byte at offset {})",
                err.valid_up_to()
            ),
        }),
    }
}

/// The outcome for one document as the JSON object printed with `--format json`.
pub fn outcome(path: &Path, options: Options, text: &str) -> Value {
    if text.starts_with('\u{feff}') {
        // Said as `validate` says it, rather than as "expected value at column 1".
        return json!({
            "match": false,
            "error": "InvalidJson: the document starts with a UTF-8 byte order mark (EF BB BF), \
                      which JSON does not allow; save it without one",
        });
    }
    let doc: Value = match serde_json::from_str(text) {
        Ok(d) => d,
        Err(e) => return json!({"match": false, "error": format!("InvalidJson: {e}")}),
    };
    match path.evaluate_with(&doc, options) {
        Ok(ev) => json!({"match": ev.is_match(), "result": ev.into_value()}),
        Err(e) => json!({"match": false, "error": format!("{}: {}", e.kind, e.message)}),
    }
}

fn report(
    out: &mut impl Write,
    format: Format,
    path: &Path,
    options: Options,
    document: &[u8],
    line: Option<u64>,
) -> anyhow::Result<Reading> {
    let body = super::body_of_export_line(document, line.unwrap_or(1), "evaluating on");
    let document = body.as_deref().map_or(document, str::as_bytes);
    let mut o = outcome_of_bytes(path, options, document);
    let read = match o.get("error").and_then(Value::as_str) {
        Some(error) if error.starts_with("InvalidJson") => Reading::NotJson,
        _ => Reading::Evaluated,
    };
    match format {
        Format::Json => {
            // Blank lines are skipped: each answer says which line it is about.
            if let (Some(line), Some(object)) = (line, o.as_object_mut()) {
                object.insert("line".to_owned(), line.into());
            }
            writeln!(out, "{o}")?
        }
        Format::Text => {
            if let Some(line) = line {
                writeln!(out, "line {line}:")?;
            }
            let matched = o["match"].as_bool().unwrap_or(false);
            writeln!(out, "match: {}", if matched { "yes" } else { "no" })?;
            // Text for a terminal: what the document holds is shown with its control and
            // direction characters escaped.
            if let Some(err) = o.get("error").and_then(Value::as_str) {
                writeln!(out, "error: {}", super::terminal_line(err))?;
            } else if let Some(r) = o.get("result") {
                let result = serde_json::to_string_pretty(r)?;
                writeln!(out, "result: {}", super::terminal_safe(&result))?;
            }
        }
    }
    Ok(read)
}

/// The compile error with the expression and a caret under the failing character.
fn caret_report(expr: &str, e: &provtrail_jsonpath::ParseError) -> String {
    let shown: String = expr
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let col = e.position.min(shown.chars().count());
    format!(
        "error: InvalidPath: {}\n  {shown}\n  {}^ expected {}",
        e.message,
        " ".repeat(col),
        e.expected
    )
}
