//! `provtrail validate`: checks events against the published schema and says exactly what is wrong.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use provtrail_model::{Issue, Limits, Mode, Options, validate_slice};
use serde_json::{Value, json};

use super::OutputFormat;

/// Arguments of `provtrail validate`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when every document is a valid event (warnings allowed), \
1 when a document is JSON but not a valid event, 2 when a document is not JSON or cannot be read, \
or a file holds no document at all."
)]
pub struct ValidateArgs {
    /// Files to check (`-` for standard input).
    #[arg(required = true, value_name = "FILE|-")]
    files: Vec<PathBuf>,
    /// Hold documents to exactly the published schema: unknown fields, unknown enum values,
    /// multi-valued attributes and `accountId: null` become errors.
    #[arg(long)]
    strict: bool,
    /// Read each file as JSON lines: one event per line, reported per line. A `.jsonl` or
    /// `.ndjson` file, or a document that is one JSON document per line, is read so anyway.
    #[arg(long)]
    jsonl: bool,
    /// Output for people (`text`) or one JSON object per document (`json`).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
    /// Largest document accepted, in bytes.
    #[arg(long, default_value_t = Limits::DEFAULT.max_bytes)]
    max_bytes: usize,
    /// Most errors, and most warnings, listed per document; the rest are counted.
    #[arg(long, default_value_t = Limits::DEFAULT.max_issues, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_issues: usize,
}

/// How one document fared; ordered so that the worst decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Valid = 0,
    Invalid = 1,
    Unreadable = 2,
}

/// Where a document came from, for the report.
struct Origin<'a> {
    file: &'a str,
    line: Option<usize>,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let options = Options {
        mode: if args.strict {
            Mode::Strict
        } else {
            Mode::Lenient
        },
        limits: Limits {
            max_bytes: args.max_bytes,
            max_issues: args.max_issues,
            ..Limits::DEFAULT
        },
    };
    let lines_of = |path: &PathBuf| args.jsonl || super::is_json_lines_path(path);
    // One document in JSON format prints exactly one object; anything more prints one per line
    // with its origin.
    let single = args.files.len() == 1 && !lines_of(&args.files[0]);
    let mut out = std::io::stdout().lock();
    let mut worst = Verdict::Valid;
    for path in &args.files {
        let name = path.display().to_string();
        let reader = match open(path) {
            Ok(reader) => reader,
            Err(err) => {
                let origin = Origin {
                    file: &name,
                    line: None,
                };
                report_unreadable(&mut out, &args, single, &origin, &format!("{err:#}"))?;
                worst = Verdict::Unreadable;
                continue;
            }
        };
        let verdict = if lines_of(path) {
            check_lines(&mut out, &args, &options, &name, reader)?
        } else {
            check_whole(&mut out, &args, &options, single, &name, reader)?
        };
        worst = worst.max(verdict);
    }
    Ok(ExitCode::from(worst as u8))
}

fn open(path: &PathBuf) -> anyhow::Result<Box<dyn BufRead>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(BufReader::new(file)))
}

fn check_whole(
    out: &mut impl Write,
    args: &ValidateArgs,
    options: &Options,
    single: bool,
    name: &str,
    reader: Box<dyn BufRead>,
) -> anyhow::Result<Verdict> {
    let origin = Origin {
        file: name,
        line: None,
    };
    // Read one byte past what is held whole (the limit of one document, or more for documents
    // one after another, as `ingest` holds them), so that an oversized document is reported as
    // such without reading all of it.
    let mut bytes = Vec::new();
    let max = options.limits.max_bytes;
    let held = max.max(super::WHOLE_INPUT_LIMIT);
    let mut reader = reader;
    let read = (&mut reader)
        .take(held as u64 + 1)
        .read_to_end(&mut bytes)
        .and_then(|_| {
            // Whether the input goes on past what is held (exactly one byte more is all of it).
            if bytes.len() > held {
                reader.fill_buf().map(|rest| !rest.is_empty())
            } else {
                Ok(false)
            }
        });
    let more = match read {
        Ok(more) => more,
        Err(err) => {
            report_unreadable(out, args, single, &origin, &format!("cannot read: {err}"))?;
            return Ok(Verdict::Unreadable);
        }
    };
    // Documents one after another (a stream printed by `jq`), or an array of objects: each
    // checked whole, as `ingest` and `send` read them.
    let array = (!more).then(|| super::events_in_array(&bytes)).flatten();
    if let Some(documents) = array.or_else(|| {
        (!more)
            .then(|| super::documents_one_after_another(&bytes))
            .flatten()
    }) {
        note!(
            "{}: {} JSON documents one after another, or in an array: checking each",
            origin_text(&origin),
            documents.len()
        );
        let mut worst = Verdict::Valid;
        for (line, range) in documents {
            let origin = Origin {
                file: name,
                line: Some(line as usize),
            };
            let verdict = check_document(out, args, options, false, &origin, &bytes[range])?;
            worst = worst.max(verdict);
        }
        return Ok(worst);
    }
    // One event per line past the limit: each line is a document of its own, read as it
    // comes.
    // Judged on whole lines only when the input goes on: the last line held may be cut anywhere.
    let json_lines = if more {
        super::begins_as_json_lines(&bytes)
    } else {
        super::looks_like_json_lines(&bytes)
    };
    if bytes.len() > max && json_lines {
        note!(
            "{}: one JSON document per line: reading it as JSON lines (--jsonl)",
            origin_text(&origin)
        );
        let rest = std::io::Cursor::new(bytes).chain(reader);
        return check_lines(out, args, options, name, Box::new(rest));
    }
    if bytes.len() > max {
        let message = format!(
            "the document is more than {max} bytes, the limit (--max-bytes); a file of one \
             event per line is read line by line with --jsonl"
        );
        report_unreadable(out, args, single, &origin, &message)?;
        return Ok(Verdict::Unreadable);
    }
    // One event per line, read as a whole, is not JSON: it is taken line by line, as `ingest`
    // and `send` take it.
    if super::reads_as_json_lines(&bytes) {
        note!(
            "{}: one JSON document per line: reading it as JSON lines (--jsonl)",
            origin_text(&origin)
        );
        return check_lines(
            out,
            args,
            options,
            name,
            Box::new(std::io::Cursor::new(bytes)),
        );
    }
    check_document(out, args, options, single, &origin, &bytes)
}

fn check_lines(
    out: &mut impl Write,
    args: &ValidateArgs,
    options: &Options,
    name: &str,
    mut reader: Box<dyn BufRead>,
) -> anyhow::Result<Verdict> {
    let mut worst = Verdict::Valid;
    let mut line = Vec::new();
    let mut number = 0;
    let mut documents = 0;
    loop {
        line.clear();
        number += 1;
        let origin = Origin {
            file: name,
            line: Some(number),
        };
        // A line is held up to just past the limit (and its line end); the rest of a longer one is
        // skipped.
        let max = options.limits.max_bytes;
        match (&mut reader)
            .take(max as u64 + 2)
            .read_until(b'\n', &mut line)
        {
            Ok(_) if super::without_line_end(&line).len() > max => {
                documents += 1;
                let ended = line.last() == Some(&b'\n');
                let skipped = if ended {
                    Ok(true)
                } else {
                    skip_line_within(&mut reader, LONGEST_LINE_SKIPPED)
                };
                match skipped {
                    Err(err) => {
                        let message = format!("cannot read: {err}");
                        report_unreadable(out, args, false, &origin, &message)?;
                        return Ok(Verdict::Unreadable);
                    }
                    // A line without end (a device such as /dev/zero, a file with no line
                    // breaks) is no document per line: reading on would never end.
                    Ok(false) => {
                        let message = format!(
                            "the line is more than {LONGEST_LINE_SKIPPED} bytes long and still \
                             goes on: the input is not one document per line, and nothing from \
                             this line on was read"
                        );
                        report_unreadable(out, args, false, &origin, &message)?;
                        return Ok(Verdict::Unreadable);
                    }
                    Ok(true) => {}
                }
                let message =
                    format!("the document is more than {max} bytes, the limit (--max-bytes)");
                report_unreadable(out, args, false, &origin, &message)?;
                worst = worst.max(Verdict::Unreadable);
                continue;
            }
            Ok(0) if documents == 0 => {
                let origin = Origin {
                    file: name,
                    line: None,
                };
                report_unreadable(out, args, false, &origin, super::NO_DOCUMENTS)?;
                return Ok(Verdict::Unreadable);
            }
            Ok(0) => return Ok(worst),
            Ok(_) => {}
            Err(err) => {
                report_unreadable(out, args, false, &origin, &format!("cannot read: {err}"))?;
                return Ok(Verdict::Unreadable);
            }
        }
        if super::is_blank(&line) {
            continue;
        }
        documents += 1;
        let document = super::without_line_end(&line);
        let verdict = check_document(out, args, options, false, &origin, document)?;
        worst = worst.max(verdict);
    }
}

/// The longest line stepped over to check the lines after it: a longer one is taken for an
/// input without line breaks (a device such as `/dev/zero`), which would be read for ever.
const LONGEST_LINE_SKIPPED: u64 = 1 << 30;

/// Skips the rest of a line, at most `limit` bytes of it: whether it ended (with a line break,
/// or with the input) within them.
fn skip_line_within(reader: &mut impl BufRead, limit: u64) -> std::io::Result<bool> {
    let mut skipped = 0;
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if buffer.is_empty() {
            return Ok(true);
        }
        if let Some(end) = memchr::memchr(b'\n', buffer) {
            reader.consume(end + 1);
            return Ok(true);
        }
        let length = buffer.len();
        reader.consume(length);
        skipped += length as u64;
        if skipped >= limit {
            return Ok(false);
        }
    }
}

fn check_document(
    out: &mut impl Write,
    args: &ValidateArgs,
    options: &Options,
    single: bool,
    origin: &Origin<'_>,
    bytes: &[u8],
) -> anyhow::Result<Verdict> {
    let line = origin.line.map_or(1, |line| line as u64);
    let body = super::body_of_export_line(bytes, line, "checking");
    let bytes = body.as_deref().map_or(bytes, str::as_bytes);
    let report = match validate_slice(bytes, options) {
        Ok(report) => report,
        Err(err) => {
            report_unreadable(out, args, single, origin, &err.to_string())?;
            return Ok(Verdict::Unreadable);
        }
    };
    let verdict = if report.is_valid() {
        Verdict::Valid
    } else {
        Verdict::Invalid
    };
    match args.format {
        OutputFormat::Json => {
            let mut object = json!({
                "valid": report.is_valid(),
                "errors": issues_json(&report.errors),
                "warnings": issues_json(&report.warnings),
            });
            // Only when the cap was reached, so that the usual object keeps its three keys.
            if report.errors_not_listed > 0 {
                object["errors_not_listed"] = json!(report.errors_not_listed);
            }
            if report.warnings_not_listed > 0 {
                object["warnings_not_listed"] = json!(report.warnings_not_listed);
            }
            if !single {
                add_origin(&mut object, origin);
            }
            writeln!(out, "{object}")?;
        }
        OutputFormat::Text => {
            let errors = report.errors.len() + report.errors_not_listed;
            let warnings = report.warnings.len() + report.warnings_not_listed;
            let status = match (report.is_valid(), warnings) {
                (true, 0) => "valid".to_owned(),
                (true, n) => format!("valid, {}", plural(n, "warning")),
                (false, 0) => format!("invalid, {}", plural(errors, "error")),
                (false, n) => format!(
                    "invalid, {} and {}",
                    plural(errors, "error"),
                    plural(n, "warning")
                ),
            };
            writeln!(out, "{}: {status}", origin_text(origin))?;
            // Paths and values come from the document: escaped for the terminal, one problem a line.
            for (kind, issues, not_listed) in [
                ("error", &report.errors, report.errors_not_listed),
                ("warning", &report.warnings, report.warnings_not_listed),
            ] {
                for issue in issues {
                    writeln!(
                        out,
                        "  {kind}: {}",
                        super::terminal_line(&issue.to_string())
                    )?;
                }
                if not_listed > 0 {
                    writeln!(
                        out,
                        "  … and {} not listed (--max-issues lists more)",
                        plural(not_listed, &format!("more {kind}"))
                    )?;
                }
            }
        }
    }
    Ok(verdict)
}

fn report_unreadable(
    out: &mut impl Write,
    args: &ValidateArgs,
    single: bool,
    origin: &Origin<'_>,
    message: &str,
) -> anyhow::Result<()> {
    match args.format {
        OutputFormat::Json => {
            let mut object = json!({
                "valid": false,
                "errors": [{"path": "$", "message": message}],
                "warnings": [],
            });
            if !single {
                add_origin(&mut object, origin);
            }
            writeln!(out, "{object}")?;
        }
        OutputFormat::Text => {
            writeln!(out, "{}: not checked: {message}", origin_text(origin))?;
        }
    }
    Ok(())
}

fn issues_json(issues: &[Issue]) -> Value {
    issues
        .iter()
        .map(|issue| json!({"path": issue.path, "message": issue.message}))
        .collect()
}

fn add_origin(object: &mut Value, origin: &Origin<'_>) {
    if let Value::Object(map) = object {
        map.insert("file".to_owned(), json!(origin.file));
        if let Some(line) = origin.line {
            map.insert("line".to_owned(), json!(line));
        }
    }
}

fn origin_text(origin: &Origin<'_>) -> String {
    let file = if origin.file == "-" {
        "<stdin>"
    } else {
        origin.file
    };
    match origin.line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_owned(),
    }
}

fn plural(count: usize, noun: &str) -> String {
    super::counted(count as u64, noun, &format!("{noun}s"))
}
