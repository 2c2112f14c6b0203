//! `provtrail backfill`: read back from ISC the Provisioning Completed events it sent while the
//! receiver may have missed them, as JSON lines for `provtrail ingest` or `provtrail send`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use provtrail::isc::{Credentials, Invocation, IscError, TRIGGER_ID, Tenant};
use serde_json::json;

use super::OutputFormat;
use super::time::parse_time;

/// Rows that could not be turned into events that the summary lists one by one.
const LISTED_PROBLEMS: usize = 20;

/// Arguments of `provtrail backfill`.
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The tenant's API URL, https://TENANT.api.identitynow.com.
    #[arg(long, env = "PROVTRAIL_ISC_URL", value_name = "URL")]
    tenant: String,
    /// The id of an API client allowed to read trigger invocations (a personal access token's
    /// client id will do).
    #[arg(long, env = "PROVTRAIL_ISC_CLIENT_ID", value_name = "ID")]
    client_id: Option<String>,
    /// The client's secret. Better given in the environment (PROVTRAIL_ISC_CLIENT_SECRET): a
    /// command line is visible to every user of the machine.
    #[arg(
        long,
        env = "PROVTRAIL_ISC_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    client_secret: Option<String>,
    /// A bearer token obtained elsewhere, instead of a client id and secret.
    #[arg(
        long,
        env = "PROVTRAIL_ISC_ACCESS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    access_token: Option<String>,
    /// Only the invocations of this trigger subscription (its id). Without it, those of every
    /// subscription to the trigger: an event sent to two subscriptions then comes back twice,
    /// under two invocation ids.
    #[arg(long, value_name = "ID")]
    subscription: Option<String>,
    /// Only invocations that ISC created at or after this time: RFC 3339, a date, or a span
    /// back from now (6h, 2d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Keep test invocations too (a subscription's Test button, the test invocation API): their
    /// input is an example event, not a provisioning outcome.
    #[arg(long)]
    include_tests: bool,
    /// Write the events to this file (readable by its owner only) instead of standard output
    /// (`-`).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Seconds to wait for each of ISC's answers.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// The summary, on standard error: for people (`text`) or one JSON object (`json`).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    format: OutputFormat,
}

/// What was done with the rows read.
#[derive(Debug, Default)]
struct Summary {
    read: usize,
    written: usize,
    /// The invocation ids of the events written, to tell whether an earlier recovery holds
    /// events this run did not read again.
    written_ids: std::collections::HashSet<String>,
    tests: usize,
    before_since: usize,
    /// Rows kept although `--since` was given, for want of a creation time that can be read.
    undated: usize,
    /// Rows with no event to recover: (invocation id, why).
    unusable: Vec<(String, &'static str)>,
    /// The subscriptions the rows came from, by id, with their names.
    subscriptions: std::collections::BTreeMap<String, String>,
    /// Why the listing stopped before its end, if it did.
    ended_early: Option<String>,
    /// Rows of another trigger or subscription than asked for, which the tenant listed anyway.
    left_out: usize,
    /// Offsets of pages that shared no row with the page before: rows may have been missed.
    gaps: Vec<usize>,
    /// Invocations listed again with another event than the one written.
    changed: Vec<String>,
}

/// Longest invocation id quoted in the summary.
const SHOWN_ID: usize = 100;

pub async fn run(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let credentials = credentials(&args)?;
    let since = args.since.as_deref().map(parse_time).transpose()?;
    let subscription = args.subscription.as_deref().map(str::trim);
    if subscription.is_some_and(str::is_empty) {
        anyhow::bail!("--subscription is blank: give the id of the trigger subscription");
    }
    let tenant = Tenant::new(&args.tenant, Duration::from_secs(args.timeout))?;
    // The output first: a file that cannot be written is found before anything is read. It is
    // emptied only once the first page has come (below).
    let destination = match &args.output {
        Some(path) if path.as_os_str() != "-" && !is_standard_output(path) => Some(path.clone()),
        _ => None,
    };
    // A file this run makes is taken away again when the run writes nothing into it.
    let made_here = destination
        .as_ref()
        .is_some_and(|path| std::fs::symlink_metadata(path).is_err());
    let unmake = || {
        if let (true, Some(path)) = (made_here, &destination) {
            let _ = std::fs::remove_file(path);
        }
    };
    // A file that holds an earlier recovery is replaced only by a run that reads to the end:
    // until then the events go to a file beside it (see `Staged`), since the earlier recovery
    // may be the only copy left of events ISC has forgotten.
    let earlier = destination
        .as_ref()
        .filter(|path| std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.len() > 0));
    let file = match &destination {
        Some(path) => {
            if let Some(kept) = provtrail::store::kept_data_at(path) {
                anyhow::bail!("{kept}: writing the events there would destroy it");
            }
            // Readable by its owner only: it holds identities and their access.
            Some(
                provtrail::open_private(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            )
        }
        None => None,
    };
    let shown = destination.as_ref().map_or_else(
        || "standard output".to_owned(),
        |path| path.display().to_string(),
    );
    // Made before anything is read, so that a directory where it cannot be made stops the run
    // before the earlier recovery could be at stake; taken away again when nothing goes in it.
    let mut staged = match (earlier, &destination) {
        (Some(path), Some(_)) => Some(Staged::beside(path).with_context(|| {
            format!(
                "cannot make a file beside {} for this run's events: nothing was read, and \
                 {} is as it was",
                path.display(),
                path.display()
            )
        })?),
        _ => None,
    };
    let written_to = staged
        .as_ref()
        .map_or_else(|| shown.clone(), |staged| staged.path.display().to_string());
    let staging = staged.is_some();
    let write_error = |err: std::io::Error| match &destination {
        Some(path) if staging => anyhow::anyhow!(
            "cannot write to {written_to}: {err} ({} still holds the earlier recovery, as it \
             was)",
            path.display()
        ),
        _ => anyhow::anyhow!("cannot write to {written_to}: {err}"),
    };

    let token = match tenant.token(&credentials).await {
        Ok(token) => token,
        Err(err) => {
            unmake();
            discard(staged.take());
            return Err(anyhow::Error::new(err).context("cannot sign in to the tenant"));
        }
    };
    // The file is emptied once the first page has come: a run that reads nothing (the status
    // list refused or failing) leaves an earlier recovery in it as it was, which may be the
    // only copy left once ISC has forgotten those invocations.
    let mut file = Some(file);
    let mut out: Box<dyn Write> = Box::new(std::io::sink());
    let progress = super::progress_bar(None, "reading invocations");
    let mut pages = tenant.invocations(&token, &credentials, subscription);
    let mut summary = Summary::default();
    // Pages read when the token in use was had: a token refused after pages were read with it
    // has expired (ISC's last about 12 minutes, and a tenant that rate-limits stretches a run),
    // and client credentials can get a new one; one refused from the start cannot be helped.
    let mut read_at_sign_in = 0;
    // Each page is written as it comes: a tenant that fails half-way leaves the rows read
    // before in the output, and the summary says so.
    let failure = loop {
        let page = pages.next().await;
        if let (Err(IscError::Refused { status: 401, .. }), Credentials::Client { .. }) =
            (&page, &credentials)
        {
            if pages.pages_read() > read_at_sign_in {
                tracing::info!(
                    "the tenant refused the token after {} page(s): signing in again",
                    pages.pages_read()
                );
                // A failure here ends the run as a failing page would: with the summary, and
                // word of the rows already written.
                let token = match tenant.token(&credentials).await {
                    Ok(token) => token,
                    Err(err) => {
                        break Some(
                            anyhow::Error::new(err).context("cannot sign in to the tenant again"),
                        );
                    }
                };
                pages.renew_token(token);
                read_at_sign_in = pages.pages_read();
                continue;
            }
        }
        if page.is_ok() {
            if let Some(file) = file.take() {
                out = match file {
                    Some(file) => match &staged {
                        Some(beside) => {
                            let written = beside.file.try_clone().map_err(write_error)?;
                            Box::new(std::io::BufWriter::new(written))
                        }
                        None => {
                            provtrail::claim_output(&file).map_err(write_error)?;
                            Box::new(std::io::BufWriter::new(file))
                        }
                    },
                    None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                };
            }
        }
        let rows = match page {
            Ok(Some(rows)) => rows,
            Ok(None) => break None,
            Err(err) => break Some(anyhow::Error::new(err)),
        };
        summary.read += rows.len();
        progress.set_position(summary.read as u64);
        for invocation in &rows {
            write_row(&args, since, invocation, &mut out, &mut summary).map_err(write_error)?;
        }
        // On its way before the next page is asked for: an interrupted run keeps what it read.
        out.flush().map_err(write_error)?;
    };
    progress.finish_and_clear();
    out.flush().map_err(write_error)?;
    drop(out);
    summary.ended_early = pages.ended().map(ToString::to_string);
    summary.left_out = pages.left_out();
    summary.gaps = pages.gaps().to_vec();
    summary.changed = pages.changed().to_vec();
    // The earlier recovery is replaced only by a run that read the whole list and found events:
    // a list that ends early or skips rows, or an empty one (ISC has forgotten what the file
    // holds), leaves it as it was.
    let whole = failure.is_none() && summary.ended_early.is_none() && summary.gaps.is_empty();
    let mut kept_beside = None;
    if let (Some(beside), Some(path)) = (staged.take(), &destination) {
        if summary.written == 0 {
            discard(Some(beside));
            kept_beside = Some(format!(
                "no event was read: {} still holds the earlier recovery, as it was",
                path.display()
            ));
        } else if whole {
            // What the earlier recovery holds that this run did not read again (ISC has
            // forgotten it, or --since or --subscription left it out) is kept beside.
            let missing = events_not_in(path, &summary.written_ids);
            if missing > 0 {
                let previous = keep_previous(path).with_context(|| {
                    format!(
                        "{} holds {missing} line(s) that are not events this run read, and \
                         cannot be kept beside it: it is as it was, and this run's events are in \
                         {}",
                        path.display(),
                        beside.path.display()
                    )
                })?;
                kept_beside = Some(format!(
                    "{} held {missing} line(s) that are not events this run read (events ISC \
                     has forgotten since, or --since or --subscription left out, or lines that \
                     are no event at all): it is kept as {}",
                    path.display(),
                    previous.display()
                ));
            }
            beside.replace(path)?;
        } else {
            let _ = beside.file.sync_all();
            kept_beside = Some(format!(
                "{} still holds the earlier recovery, as it was: this run's events are in {}, \
                 since it did not read the whole list",
                path.display(),
                beside.path.display()
            ));
            staged = Some(beside);
        }
    }
    let shown = match (&staged, summary.written) {
        (Some(staged), _) => staged.path.display().to_string(),
        _ => shown,
    };
    report(&args, &shown, &summary)?;
    if let Some(err) = failure {
        let kept = match (&staged, &destination) {
            _ if file.is_some() => {
                unmake();
                format!("nothing was written: {shown} is as it was")
            }
            (Some(_), Some(path)) => format!(
                "the {} event(s) read before are in {shown}; {} still holds the earlier \
                 recovery, as it was",
                summary.written,
                path.display()
            ),
            (None, Some(_)) if kept_beside.is_some() => {
                format!("nothing was written: {shown} is as it was")
            }
            _ => format!(
                "the {} event(s) read before are in {shown}",
                summary.written
            ),
        };
        return Err(err.context(format!("cannot read the trigger invocations ({kept})")));
    }
    if let Some(kept) = kept_beside {
        super::tell(&kept);
    }
    Ok(
        if summary.unusable.is_empty()
            && summary.ended_early.is_none()
            && summary.gaps.is_empty()
            && summary.changed.is_empty()
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// The file a run writes into while an earlier recovery is still in its destination: the
/// destination's name with `.partial` added (numbered when taken), beside the file the
/// destination leads to (a link is followed, so that replacing the file does not replace the
/// link). It takes the destination's place once the run has read the whole list and found
/// events; a run that fails or stops early leaves it beside, named; one that found no event
/// takes it away.
struct Staged {
    path: PathBuf,
    file: std::fs::File,
}

impl Staged {
    /// A new file (never one that is there, link or file: an earlier run's events may be in
    /// it), numbered when the first name is taken.
    fn beside(destination: &std::path::Path) -> std::io::Result<Self> {
        let (path, file) = with_free_name(destination, ".partial", |path| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(path)
        })?;
        Ok(Staged { path, file })
    }

    /// Puts the events read in the destination's place, once they are on disk.
    fn replace(self, destination: &std::path::Path) -> anyhow::Result<()> {
        let on_disk = self.file.sync_all();
        let target = std::fs::canonicalize(destination).unwrap_or_else(|_| destination.into());
        on_disk
            .and_then(|()| std::fs::rename(&self.path, &target))
            .with_context(|| {
                format!(
                    "the events read are in {}, but cannot take the place of {}",
                    self.path.display(),
                    destination.display()
                )
            })?;
        if let Some(directory) = target.parent() {
            // Best effort: the rename is durable once its directory is.
            let _ = std::fs::File::open(directory).and_then(|dir| dir.sync_all());
        }
        Ok(())
    }
}

/// Lines of the file at `path` that are not events with one of `ids` as invocation id (a line
/// that cannot be read as one counts too): what replacing the file would lose.
fn events_not_in(path: &std::path::Path, ids: &std::collections::HashSet<String>) -> usize {
    use std::io::BufRead as _;
    let Ok(file) = std::fs::File::open(path) else {
        return 0;
    };
    std::io::BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .filter(|line| !line.trim_ascii().is_empty())
        .filter(|line| {
            let id = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|event| {
                    Some(
                        event
                            .get("_metadata")?
                            .get("invocationId")?
                            .as_str()?
                            .to_owned(),
                    )
                });
            id.is_none_or(|id| !ids.contains(&id))
        })
        .count()
}

/// Gives the file `path` leads to a second name beside it, `.prev` added (numbered when
/// taken), so that it outlives its replacement; the name given.
fn keep_previous(path: &std::path::Path) -> std::io::Result<PathBuf> {
    let real = std::fs::canonicalize(path)?;
    // A hard link is made only where nothing is: never over another file.
    with_free_name(path, ".prev", |previous| {
        std::fs::hard_link(&real, previous)
    })
    .map(|(previous, ())| previous)
}

/// Makes something (`make`) at the first free name beside the file `path` leads to: its name
/// with `suffix` added, then `.2` … `.100` after that. `make` must fail with `AlreadyExists`
/// where something is, and never replace it.
fn with_free_name<T>(
    path: &std::path::Path,
    suffix: &str,
    mut make: impl FnMut(&std::path::Path) -> std::io::Result<T>,
) -> std::io::Result<(PathBuf, T)> {
    let real = std::fs::canonicalize(path)?;
    let name = real.file_name().unwrap_or_default().to_os_string();
    for number in 1..=100 {
        let mut candidate = name.clone();
        candidate.push(suffix);
        if number > 1 {
            candidate.push(format!(".{number}"));
        }
        let candidate = real.with_file_name(candidate);
        match make(&candidate) {
            Ok(made) => return Ok((candidate, made)),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::other(format!(
        "every name up to {suffix}.100 is taken"
    )))
}

/// Takes away a staged file that is not to be kept.
fn discard(staged: Option<Staged>) {
    if let Some(staged) = staged {
        let _ = std::fs::remove_file(&staged.path);
    }
}

/// Whether `path` is the file this process's standard output already writes to (`/dev/stdout`,
/// `/proc/self/fd/1`, or the file the shell redirected it to): written as standard output,
/// it is neither emptied (a shell's `>>` appends) nor given another mode.
fn is_standard_output(path: &std::path::Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(named) = std::fs::metadata(path) else {
            return false;
        };
        rustix::fs::fstat(std::io::stdout())
            .is_ok_and(|out| out.st_dev == named.dev() && out.st_ino == named.ino())
    }
    #[cfg(not(target_os = "linux"))]
    {
        path == std::path::Path::new("/dev/stdout")
    }
}

/// Writes one row's event, or counts why it is left out.
fn write_row(
    args: &BackfillArgs,
    since: Option<i64>,
    invocation: &Invocation,
    out: &mut dyn Write,
    summary: &mut Summary,
) -> std::io::Result<()> {
    if let Some(id) = &invocation.subscription_id {
        summary.subscriptions.insert(
            id.clone(),
            invocation.subscription_name.clone().unwrap_or_default(),
        );
    }
    if invocation.is_test() && !args.include_tests {
        summary.tests += 1;
        return Ok(());
    }
    if let Some(since) = since {
        match created_millis(invocation) {
            Some(created) if created < since => {
                summary.before_since += 1;
                return Ok(());
            }
            Some(_) => {}
            None => summary.undated += 1,
        }
    }
    match invocation.event_body() {
        Ok(body) => {
            out.write_all(&body)?;
            out.write_all(b"\n")?;
            summary.written += 1;
            summary.written_ids.insert(invocation.id.clone());
        }
        Err(reason) => summary.unusable.push((invocation.id.clone(), reason)),
    }
    Ok(())
}

/// The credentials the arguments give, or what is missing.
fn credentials(args: &BackfillArgs) -> anyhow::Result<Credentials> {
    let given = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    match (
        given(&args.access_token),
        given(&args.client_id),
        given(&args.client_secret),
    ) {
        (Some(token), None, None) => Ok(Credentials::AccessToken(token)),
        (Some(_), _, _) => anyhow::bail!(
            "give either --access-token or --client-id with --client-secret, not both (check \
             the PROVTRAIL_ISC_* environment variables)"
        ),
        (None, Some(id), Some(secret)) => Ok(Credentials::Client { id, secret }),
        (None, Some(_), None) => {
            anyhow::bail!("--client-id needs --client-secret (or PROVTRAIL_ISC_CLIENT_SECRET)")
        }
        (None, None, Some(_)) => {
            anyhow::bail!("--client-secret needs --client-id (or PROVTRAIL_ISC_CLIENT_ID)")
        }
        (None, None, None) => anyhow::bail!(
            "the tenant needs credentials: --client-id and --client-secret of an API client \
             (or PROVTRAIL_ISC_CLIENT_ID and PROVTRAIL_ISC_CLIENT_SECRET), or --access-token"
        ),
    }
}

/// When ISC created the invocation, in milliseconds, a fraction of one counted as a whole (as
/// `--since` counts one): a row created in the millisecond `--since` names is kept rather than
/// lost, and importing it twice stores it once. `None` when the row does not say in a form
/// that can be read, and such a row is kept whatever `--since` says.
fn created_millis(invocation: &Invocation) -> Option<i64> {
    let created = invocation.created.as_deref()?;
    chrono::DateTime::parse_from_rfc3339(created)
        .ok()
        .map(|time| {
            let started = time.timestamp_millis();
            if time.timestamp_subsec_nanos() % 1_000_000 == 0 {
                started
            } else {
                started + 1
            }
        })
}

fn report(args: &BackfillArgs, destination: &str, summary: &Summary) -> anyhow::Result<()> {
    let mut err = std::io::stderr().lock();
    match args.format {
        OutputFormat::Json => {
            let record = json!({
                "trigger": TRIGGER_ID,
                "read": summary.read,
                "written": summary.written,
                "skipped_tests": summary.tests,
                "skipped_before_since": summary.before_since,
                "kept_undated": summary.undated,
                "ended_early": summary.ended_early,
                "left_out": summary.left_out,
                "gaps_at_offsets": summary.gaps,
                "listed_again_with_another_event": summary.changed.iter()
                    .map(|id| provtrail::visible::shortened(id, SHOWN_ID))
                    .collect::<Vec<_>>(),
                "unusable": summary.unusable.iter().map(|(id, reason)| json!({
                    "invocation_id": provtrail::visible::shortened(id, SHOWN_ID),
                    "reason": reason,
                })).collect::<Vec<_>>(),
                "subscriptions": summary.subscriptions.iter().map(|(id, name)| json!({
                    "id": id,
                    "name": name,
                })).collect::<Vec<_>>(),
                "output": destination,
            });
            writeln!(err, "{record}")?;
        }
        OutputFormat::Text => {
            if summary.written == 0 {
                // Said apart: "wrote 0 events to FILE" would read as if FILE were written.
                writeln!(
                    err,
                    "read {} invocation(s) of {TRIGGER_ID}; no event to write",
                    summary.read
                )?;
            } else {
                writeln!(
                    err,
                    "read {} invocation(s) of {TRIGGER_ID}; wrote {} event(s) to {destination}",
                    summary.read, summary.written
                )?;
            }
            if summary.tests > 0 {
                writeln!(
                    err,
                    "skipped {} test invocation(s) (--include-tests keeps them)",
                    summary.tests
                )?;
            }
            if summary.before_since > 0 {
                writeln!(
                    err,
                    "skipped {} invocation(s) created before --since",
                    summary.before_since
                )?;
            }
            if summary.undated > 0 {
                writeln!(
                    err,
                    "kept {} invocation(s) whose creation time cannot be read, whatever --since says",
                    summary.undated
                )?;
            }
            if let Some(ended) = &summary.ended_early {
                writeln!(err, "warning: {ended}")?;
            }
            if summary.left_out > 0 {
                writeln!(
                    err,
                    "left out {} row(s) of another trigger or subscription than asked for",
                    summary.left_out
                )?;
            }
            for offset in &summary.gaps {
                writeln!(
                    err,
                    "warning: the page at offset {offset} shared no row with the one before: rows \
                     that expired while the list was read moved it on by more than the overlap, \
                     and some may be missing; run it again"
                )?;
            }
            for id in summary.changed.iter().take(LISTED_PROBLEMS) {
                let id = provtrail::visible::shortened(&super::terminal_line(id), SHOWN_ID);
                writeln!(
                    err,
                    "warning: invocation {id} was listed again with another event: the first \
                     one listed was written"
                )?;
            }
            if summary.changed.len() > LISTED_PROBLEMS {
                writeln!(
                    err,
                    "… and {} more listed again with another event",
                    summary.changed.len() - LISTED_PROBLEMS
                )?;
            }
            for (id, reason) in summary.unusable.iter().take(LISTED_PROBLEMS) {
                let id = if id.is_empty() {
                    "(no id)".to_owned()
                } else {
                    provtrail::visible::shortened(&super::terminal_line(id), SHOWN_ID)
                };
                writeln!(err, "invocation {id}: no event: {reason}")?;
            }
            if summary.unusable.len() > LISTED_PROBLEMS {
                writeln!(
                    err,
                    "… and {} more without an event",
                    summary.unusable.len() - LISTED_PROBLEMS
                )?;
            }
            if args.subscription.is_none() && summary.subscriptions.len() > 1 {
                let names: Vec<String> = summary
                    .subscriptions
                    .iter()
                    .map(|(id, name)| {
                        provtrail::visible::shortened(
                            &super::terminal_line(&if name.trim().is_empty() {
                                id.clone()
                            } else {
                                format!("{id} ({name})")
                            }),
                            SHOWN_ID,
                        )
                    })
                    .collect();
                writeln!(
                    err,
                    "warning: the invocations come from {} subscriptions: {}. An event sent to \
                     several comes back once for each, under different invocation ids; give \
                     --subscription ID for the one that points at this receiver",
                    names.len(),
                    names.join(", ")
                )?;
            }
            if summary.written > 0 {
                writeln!(
                    err,
                    "send them to the running receiver, whose routes then deliver them: \
                     `provtrail send http://HOST:PORT/events/backfill FILE --token …`; or, with \
                     the receiver stopped, import them with `provtrail ingest --channel backfill \
                     FILE` (no routes run). Events already received count as duplicates, never \
                     stored twice"
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_creation_time_within_a_millisecond_counts_as_the_whole_millisecond() {
        let created =
            |text: &str| created_millis(&Invocation::from_row(&json!({ "created": text })));
        let since = parse_time("2025-12-01T00:00:00.0155Z").unwrap();
        // At or after --since, to the millisecond: kept.
        assert!(created("2025-12-01T00:00:00.0155Z").unwrap() >= since);
        assert!(created("2025-12-01T00:00:00.016Z").unwrap() >= since);
        // A whole millisecond before: not.
        assert!(created("2025-12-01T00:00:00.015Z").unwrap() < since);
        assert_eq!(created("2025-12-01T00:00:00Z"), Some(1_764_547_200_000));
        assert_eq!(created("yesterday"), None);
    }
}
