//! `file`: append one JSON line per delivery, rotated by size.
//!
//! Each line is `{"delivery": key, "route", "event_id", "received_at", "event": {…}}`. A line is
//! written whole with one `write` and, unless `fsync = false`, flushed to disk before the
//! delivery counts as done (a line whose flush failed is delivered again: at least once).
//! Deliveries that finish their writes together share one flush, as events share a commit in the
//! store, so a busy route costs a few flushes per batch of lines rather than one per line. When
//! the file would grow past `max_size`, it is renamed to `.1` (the older ones to `.2`, … up to
//! `keep`) and a new one is started. When the file is removed or renamed away by someone else
//! (logrotate without `copytruncate`), the next batch notices and starts a new one at `path`; a
//! batch that cannot (the directory is gone, or the path now names a device, a pipe or a
//! database) fails and is tried again.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use super::sink::{
    Delivery, Preview, Sent, Sink, SinkConfigError, SinkContext, SinkError, settings,
};

/// `[routes.sink]` with `type = "file"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    /// The file to append to; its directory must exist.
    path: PathBuf,
    /// Rotate when the file would grow past this [default: 100MiB].
    #[serde(default, deserialize_with = "crate::config::size_text")]
    max_size: Option<String>,
    /// Rotated files kept [default: 5].
    keep: Option<u32>,
    /// Flush each line to disk before counting it delivered [default: true].
    fsync: Option<bool>,
}

pub(super) fn build(
    table: toml::Table,
    context: &SinkContext<'_>,
) -> Result<Arc<dyn Sink>, SinkConfigError> {
    let settings: FileSettings = settings(table)?;
    // The parts of the path that came from references are shown as `***`, like those of a
    // webhook's URL.
    let (path_text, references) = context
        .secrets
        .resolve_scoped(&settings.path.to_string_lossy())
        .map_err(|err| SinkConfigError::new("path", err.to_string()))?;
    if path_text.trim().is_empty() {
        return Err(SinkConfigError::new(
            "path",
            "is empty; give the path of the file to append to",
        ));
    }
    let shown = |path: &Path| references.redact(&path.display().to_string());
    let configured = PathBuf::from(path_text);
    let path = match followed_link(&configured) {
        Ok(None) => configured,
        Ok(Some(target)) => {
            tracing::info!(
                path = %shown(&configured),
                target = %shown(&target),
                "a file route's path is a symbolic link: its lines go to the file it names, \
                 which is the one rotated"
            );
            target
        }
        Err(err) if context.inspecting => {
            tracing::warn!(path = %shown(&configured), "{err}");
            configured
        }
        Err(err) => {
            return Err(SinkConfigError::new(
                "path",
                format!(
                    "{} is a symbolic link that leads nowhere: {err}",
                    shown(&configured)
                ),
            ));
        }
    };
    let directory = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    if !directory.is_dir() {
        // Said, not refused: a directory missing for a while (a volume not mounted yet, a
        // clean-up) is a sink that is down, whose deliveries wait for it, and the commands that
        // inspect and retry them (`routes list`, `deadletter`) must work meanwhile. The whole
        // path is shown: its directory alone may be part of a referenced value.
        tracing::warn!(
            path = %shown(&path),
            "the directory of a file route's path does not exist (yet): its deliveries wait \
             until it does"
        );
    }
    // Every append would fail with "is a directory"; say so once, at start, instead.
    if path.is_dir() && !context.inspecting {
        return Err(SinkConfigError::new(
            "path",
            format!(
                "{} is a directory; give the path of a file in it",
                shown(&path)
            ),
        ));
    }
    // A device, a pipe or a file of /proc cannot be appended to, synced and rotated: every
    // delivery would fail, or (/dev/null) vanish while counted as delivered.
    if path.exists() && !path.is_file() && !context.inspecting {
        return Err(SinkConfigError::new(
            "path",
            format!(
                "{} is not a regular file (a device, a pipe or a socket); give the path of a \
                 regular file",
                shown(&path)
            ),
        ));
    }
    if let Ok(canonical) = directory.canonicalize() {
        // /dev/shm is a memory file system whose files are regular ones.
        let special = ["/proc", "/sys", "/dev"]
            .iter()
            .any(|special| canonical.starts_with(special));
        if special && !canonical.starts_with("/dev/shm") {
            return Err(SinkConfigError::new(
                "path",
                format!(
                    "{} is in {}, which holds no regular files; give a path on a disk",
                    shown(&path),
                    canonical.display()
                ),
            ));
        }
    }
    let target = shown(&path);
    let max_size = match &settings.max_size {
        Some(text) => crate::config::parse_size("max_size", text)
            .map_err(|err| SinkConfigError::new("max_size", err.to_string()))?,
        None => 100 * 1024 * 1024,
    };
    if max_size < 1024 {
        return Err(SinkConfigError::new("max_size", "at least 1KiB"));
    }
    let keep = settings.keep.unwrap_or(DEFAULT_KEEP);
    if !(1..=MAX_KEEP).contains(&keep) {
        return Err(SinkConfigError::new(
            "keep",
            format!("rotated files kept: from 1 to {MAX_KEEP}, not {keep}"),
        ));
    }
    Ok(Arc::new(FileSink {
        target,
        timeout: context.timeout,
        inner: Arc::new(Appender::new(
            context.route,
            path,
            max_size,
            keep,
            settings.fsync.unwrap_or(true),
            context.store.map(Path::to_owned),
        )),
    }))
}

/// Where `path` is a symbolic link, the path of the file it leads to (which need not exist
/// yet), else `None`. It is followed once, at start: the route then appends to that file and
/// rotates it beside itself. Renaming the link instead would move the link to `.1` and start a
/// regular file in its place, and the file it named would never be rotated.
fn followed_link(path: &Path) -> std::io::Result<Option<PathBuf>> {
    let is_link = |path: &Path| {
        std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.file_type().is_symlink())
    };
    if !is_link(path) {
        return Ok(None);
    }
    if let Ok(target) = std::fs::canonicalize(path) {
        return Ok(Some(target));
    }
    // A link to a file not made yet: followed by its text, as the system follows it when the
    // file is created (the kernel's own limit on the links followed is 40).
    let mut current = path.to_owned();
    for _ in 0..40 {
        let text = std::fs::read_link(&current)?;
        let next = match current.parent() {
            Some(dir) if text.is_relative() => dir.join(text),
            _ => text,
        };
        if !is_link(&next) {
            return Ok(Some(next));
        }
        current = next;
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

/// Rotated files kept when `keep` is not given.
const DEFAULT_KEEP: u32 = 5;

/// Most rotated files `keep` may ask for. A rotation renames every kept file under the write
/// lock, so the count must stay small enough for that to be quick; a thousand files of at least
/// 1KiB is more history than a sink file is meant to hold (ship it elsewhere instead).
const MAX_KEEP: u32 = 1_000;

/// Most lines one attempt writes: a backlog drains with one write and one flush per this many
/// deliveries.
const BATCH_LIMIT: usize = 256;

/// A JSON-lines file sink.
#[derive(Debug)]
pub struct FileSink {
    /// The path as shown: parts that came from `${env:…}` or `${file:…}` as `***`.
    target: String,
    inner: Arc<Appender>,
    /// How long one attempt may take (the route's `timeout`).
    timeout: Duration,
}

/// The files that the file routes of this process append to, by their real path, and the route
/// of each. The start refuses two routes that name one file, but only through the directories
/// that exist then: a directory that appears later (a volume mounted, a link made to another
/// route's directory) can make two paths one file, whose rotations would then rename each
/// other's lines away. Each file is claimed when it is opened; a claim is the route's, so that a
/// server started again in the same process (tests, the bench) takes its own file back.
static CLAIMS: Mutex<Vec<Claim>> = Mutex::new(Vec::new());

struct Claim {
    route: String,
    /// The appender that holds it ([`Appender::id`]), so that it is released when that one goes.
    owner: u64,
    real_path: PathBuf,
    /// The device and inode of the file once opened.
    identity: Option<FileIdentity>,
}

/// The path of `path` with its directory's links and `..` resolved.
fn real_path(path: &Path) -> std::io::Result<PathBuf> {
    let directory = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    Ok(directory.canonicalize()?.join(name))
}

#[derive(Debug)]
struct Appender {
    /// The route, named in a claim's refusal.
    route: String,
    /// Tells the appenders apart in [`CLAIMS`].
    id: u64,
    path: PathBuf,
    max_size: u64,
    keep: u32,
    fsync: bool,
    /// The store's database: its files are never written, whatever name leads to them.
    store: Option<PathBuf>,
    /// The open file; one writer at a time, so that lines never interleave.
    state: Mutex<Option<OpenFile>>,
    /// Held while a flush to disk runs, so that deliveries waiting for theirs queue behind it and
    /// then find their line already on disk (one fsync for all lines written meanwhile, as the
    /// store's group commit). It holds the lines not known to be on disk: the ranges `(after,
    /// through]` of lines written on a handle whose flush failed. Linux reports a failed
    /// write-back once per open file, so a later flush (through the same handle, or a new one
    /// that moves `flushed` past them) succeeds although those lines may be lost: they are never
    /// taken for flushed.
    flushing: Mutex<Vec<(u64, u64)>>,
    /// Lines on disk: every line numbered up to this one has been flushed, but those in a failed
    /// range (`flushing`).
    flushed: AtomicU64,
    /// Lines written so far, over every file (numbers each line).
    written: AtomicU64,
}

/// Failed flushes whose lines an appender remembers as not on disk.
const MAX_FAILED_FLUSHES: usize = 64;

#[derive(Debug)]
struct OpenFile {
    file: Arc<File>,
    size: u64,
    /// The file ends inside a line (a write cut short by a crash, or by a full disk that the
    /// cut could not be taken back from): the next write ends that line first, so that its own
    /// lines are whole.
    ends_inside_a_line: bool,
    /// Which file the handle is, to notice when `path` no longer names it.
    identity: Option<FileIdentity>,
}

/// A file's device and inode numbers: two handles or paths with equal ones are the same file.
type FileIdentity = (u64, u64);

#[cfg(unix)]
fn file_identity(metadata: &std::fs::Metadata) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt as _;
    Some((metadata.dev(), metadata.ino()))
}

/// Elsewhere only a missing file is noticed.
#[cfg(not(unix))]
fn file_identity(_: &std::fs::Metadata) -> Option<FileIdentity> {
    None
}

impl OpenFile {
    /// Whether `path` still names this file. It does not once the file was removed or renamed
    /// away (logrotate without `copytruncate`, an operator's `rm`, the directory removed): lines
    /// written to the handle would then go to a file nobody reads, or to none at all, while
    /// counting as delivered.
    fn is_at(&self, path: &Path) -> bool {
        match std::fs::metadata(path) {
            Ok(metadata) => file_identity(&metadata) == self.identity,
            Err(_) => false,
        }
    }
}
/// The line of a delivery. The event is embedded as received rather than parsed and written
/// again: a stored event is valid JSON, and a raw line break in JSON can only be whitespace
/// between tokens (inside strings they are escaped), so turning line breaks into spaces keeps it
/// valid and on one line.
fn line(delivery: &Delivery<'_>) -> Vec<u8> {
    let received_at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(delivery.received_at)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    // Written field by field rather than through a `Value`: one line per event of every route
    // that archives, on the delivery threads.
    let mut line = Vec::with_capacity(delivery.raw.len() + 160);
    line.extend_from_slice(b"{\"delivery\":");
    json_string(&mut line, delivery.key);
    line.extend_from_slice(b",\"route\":");
    json_string(&mut line, delivery.route);
    line.extend_from_slice(b",\"event_id\":");
    line.extend_from_slice(delivery.event_id.to_string().as_bytes());
    line.extend_from_slice(b",\"received_at\":");
    match &received_at {
        Some(time) => json_string(&mut line, time),
        None => line.extend_from_slice(b"null"),
    }
    line.extend_from_slice(b",\"event\":");
    // Line breaks in a pretty-printed body become spaces (they can only be whitespace between
    // tokens: inside JSON strings they are escaped), so that the event stays on its line.
    let mut copied = 0;
    for at in memchr::memchr2_iter(b'\n', b'\r', delivery.raw) {
        line.extend_from_slice(&delivery.raw[copied..at]);
        line.push(b' ');
        copied = at + 1;
    }
    line.extend_from_slice(&delivery.raw[copied..]);
    line.extend_from_slice(b"}\n");
    line
}

/// `text` as a JSON string, escaped as serde_json escapes.
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing to a `Vec` cannot fail, and a `str` is always serializable.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Writes every byte of `lines`, in order, with as few `writev` calls as the system allows (it
/// takes at most `IOV_MAX` slices per call, and may write less than asked).
fn write_all_lines<'a>(
    mut file: &File,
    lines: impl Iterator<Item = &'a [u8]>,
) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = lines.map(IoSlice::new).collect();
    let mut rest = &mut slices[..];
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut rest, written),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

fn not_a_regular_file() -> std::io::Error {
    std::io::Error::other(
        "the path is not a regular file (a directory, a device, a pipe or a socket): lines \
         appended to it would be lost; the deliveries wait until it names a regular file",
    )
}

fn would_destroy(what: &str) -> std::io::Error {
    std::io::Error::other(format!(
        "{what}: appending to it would destroy it; the deliveries wait until the path names \
         another file"
    ))
}

/// Whether the opened file, of `size` bytes, ends with a line break (a failed read counts as
/// one: then nothing is added).
#[cfg(unix)]
fn ends_with_a_line_break(file: &File, size: u64) -> bool {
    let mut last = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut last, size - 1)
        .map_or(true, |()| last[0] == b'\n')
}

#[cfg(not(unix))]
fn ends_with_a_line_break(_: &File, _: u64) -> bool {
    true
}

/// Whether the opened file begins as an SQLite database does.
#[cfg(unix)]
fn starts_like_a_database(file: &File) -> bool {
    let mut header = [0u8; 16];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut header, 0).is_ok()
        && &header == b"SQLite format 3\0"
}

#[cfg(not(unix))]
fn starts_like_a_database(_: &File) -> bool {
    false
}

/// A rotation's rename that failed, naming both files: the one at fault is often not the file
/// the route writes (a directory where a rotated file goes).
fn renaming(from: &Path, to: &Path, err: std::io::Error) -> std::io::Error {
    std::io::Error::new(
        err.kind(),
        format!(
            "rotating: cannot rename {} to {}: {err}",
            from.display(),
            to.display()
        ),
    )
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl Drop for Appender {
    fn drop(&mut self) {
        if let Ok(mut claims) = CLAIMS.lock() {
            claims.retain(|claim| claim.owner != self.id);
        }
    }
}

impl Appender {
    fn new(
        route: &str,
        path: PathBuf,
        max_size: u64,
        keep: u32,
        fsync: bool,
        store: Option<PathBuf>,
    ) -> Appender {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Appender {
            route: route.to_owned(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            path,
            max_size,
            keep,
            fsync,
            store,
            state: Mutex::new(None),
            flushing: Mutex::new(Vec::new()),
            flushed: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }

    /// Appends lines in order and, with `fsync`, flushes them with one flush. Returns how many
    /// are written (and on disk, with `fsync`) and, when that is not all, the error that stopped
    /// the rest.
    #[cfg(test)]
    fn append_all(&self, lines: &[Vec<u8>]) -> (usize, Option<std::io::Error>) {
        self.append_within(lines, None)
    }

    /// As [`Appender::append_all`], starting no write past `deadline`: the lines not yet
    /// written are then left, with an error that says so, for the next attempt.
    fn append_within(
        &self,
        lines: &[Vec<u8>],
        deadline: Option<Instant>,
    ) -> (usize, Option<std::io::Error>) {
        let mut done = 0;
        let mut last = None;
        let mut failed = None;
        while done < lines.len() {
            if done > 0 && deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                failed = Some(std::io::Error::other(format!(
                    "not written: the attempt's time ran out after {done} of {} lines (each \
                     rotation takes time; a larger max_size or a smaller keep makes fewer)",
                    lines.len()
                )));
                break;
            }
            // The path is checked once per batch rather than per run: the runs after the first
            // follow a rotation of our own, which reopens the file anyway.
            let check_path = done == 0;
            match self.write_run(&lines[done..], check_path) {
                Ok((written, number)) => {
                    done += written;
                    last = Some(number);
                }
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            }
        }
        if let (true, Some(number)) = (self.fsync, last) {
            if let Err(err) = self.flush_through(number) {
                return (0, Some(err));
            }
        }
        (done, failed)
    }

    /// Writes the first lines of `lines` that fit in the current file (at least one; the file
    /// is rotated first when even that one does not fit) with one gathering `writev`, so that a
    /// batch costs one system call rather than one per line and the lines are not copied. Returns how many were written and the
    /// number of the last. With `check_path`, a handle that `path` no longer names is closed
    /// first and the file at `path` opened (created) in its place; when that cannot be done (the
    /// directory is gone), nothing is written and the error says why, so the deliveries are
    /// tried again rather than counted as delivered.
    fn write_run(&self, lines: &[Vec<u8>], check_path: bool) -> std::io::Result<(usize, u64)> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| std::io::Error::other("file sink lock poisoned"))?;
        if check_path {
            if let Some(open) = state.as_ref() {
                if !open.is_at(&self.path) {
                    // Lines written to it by other batches still go to disk (a file renamed
                    // away keeps them), as before a rotation of our own.
                    self.flush_before_closing(open)?;
                    *state = None;
                }
            }
        }
        let first = lines.first().map_or(0, |line| line.len() as u64);
        if state.is_none() {
            *state = Some(self.open_file()?);
        }
        // Checked after opening too: a file found at start (a restart) may already be full.
        if let Some(open) = state.as_ref() {
            if open.size > 0 && open.size + first > self.max_size {
                // The lines written so far go to disk before their file is renamed away, so
                // that a delivery waiting for its flush is not left with a file nobody flushes.
                self.flush_before_closing(open)?;
                // Only our own file is rotated: whatever was put at the path meanwhile (a link,
                // a pipe) is left where it is, and the opening below refuses it.
                let identity = open.identity;
                *state = None;
                self.rotate(identity)?;
                *state = Some(self.open_file()?);
            }
        }
        let Some(open) = state.as_mut() else {
            return Err(std::io::Error::other("file sink not open"));
        };
        // The first line always goes in (a line longer than the limit gets a file of its own);
        // the next ones while the file stays within its limit.
        let mut size = open.size;
        let mut count = 0;
        for line in lines {
            if count > 0 && size + line.len() as u64 > self.max_size {
                break;
            }
            size += line.len() as u64;
            count += 1;
        }
        // Where the lines begin: what a write that fails part way wrote is taken back to it.
        let end = open.file.metadata().map(|metadata| metadata.len());
        let line_end: &[u8] = if open.ends_inside_a_line { b"\n" } else { b"" };
        let run = std::iter::once(line_end).chain(lines[..count].iter().map(Vec::as_slice));
        if let Err(err) = write_all_lines(&open.file, run) {
            // A full disk, say, after some of the lines: a line cut short would have the next
            // write's first line glued to it, and the lines written whole would be written
            // again when the deliveries are retried. (Where the cut cannot be taken back, the
            // next opening ends the line first.)
            // Only ever shorter: a file emptied meanwhile (logrotate's `copytruncate`) is not
            // grown back with zeros.
            let now = open.file.metadata().map(|metadata| metadata.len());
            if let (Ok(end), Ok(now)) = (end, now) {
                if now > end {
                    let _ = open.file.set_len(end);
                }
            }
            // Start from a fresh handle next time (the file may have been removed).
            *state = None;
            return Err(err);
        }
        size += line_end.len() as u64;
        open.ends_inside_a_line = false;
        open.size = size;
        let count64 = count as u64;
        Ok((
            count,
            self.written.fetch_add(count64, Ordering::AcqRel) + count64,
        ))
    }

    /// Opens (creates) the file at `path` for appending, once this route holds the claim to it
    /// by path and by identity.
    ///
    /// The start refuses a path that is not a regular file or that is one of a store's files,
    /// but the file is opened again after every rotation and whenever `path` stopped naming it,
    /// and what `path` names then is whatever was put there meanwhile (a link to `/dev/null`,
    /// to a database). So the same is checked at every opening: lines appended to a device
    /// would be counted delivered and lost, and lines appended to a database would destroy it.
    /// The deliveries then wait, with the reason as their error, until the path is fixed.
    fn open_file(&self) -> std::io::Result<OpenFile> {
        self.claim()?;
        // What the path names before it is opened, for a clear reason (opening a socket or a
        // directory fails with the system's terse one). The checks that decide are made on what
        // was opened, below: the path may change in between.
        if let Ok(metadata) = std::fs::metadata(&self.path) {
            if !metadata.is_file() {
                return Err(not_a_regular_file());
            }
        }
        if let Some(kept) = crate::store::kept_data_at(&self.path) {
            return Err(would_destroy(&kept));
        }
        let mut options = OpenOptions::new();
        // Read too, so that the file opened can be told from a database by its own first bytes.
        options.read(true).append(true).create(true);
        // The lines hold the events, personal data: readable by the owner only, as the store.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        // A pipe put at the path must not hold the opening (and every delivery of the route):
        // the check below refuses it. The flag changes nothing for a regular file.
        #[cfg(target_os = "linux")]
        std::os::unix::fs::OpenOptionsExt::custom_flags(
            &mut options,
            rustix::fs::OFlags::NONBLOCK.bits() as i32,
        );
        let file = options.open(&self.path)?;
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            return Err(not_a_regular_file());
        }
        if starts_like_a_database(&file) {
            return Err(would_destroy("it is an SQLite database"));
        }
        let identity = file_identity(&metadata);
        // The path checks again, and the path must still name the file opened before and after
        // them: a link put at the path while it was being opened (and taken away again) would
        // otherwise have passed the checks on one file and opened another.
        let names_it =
            || std::fs::metadata(&self.path).is_ok_and(|now| file_identity(&now) == identity);
        if !names_it() {
            return Err(std::io::Error::other(
                "the path changed while the file was being opened; trying again",
            ));
        }
        if let Some(kept) = crate::store::kept_data_at(&self.path) {
            return Err(would_destroy(&kept));
        }
        // By identity: a hard link made to one of the store's files (its tokens, its lock)
        // has a name of its own, and no header to tell it by.
        if let Some(db) = self
            .store
            .as_deref()
            .filter(|db| crate::store::is_store_file(&self.path, db))
        {
            return Err(would_destroy(&format!(
                "it is one of the store's files (the database {}, its log, search index, tokens \
                 or lock)",
                db.display()
            )));
        }
        if !names_it() {
            return Err(std::io::Error::other(
                "the path changed while the file was being opened; trying again",
            ));
        }
        self.claim_identity(identity)?;
        let size = metadata.len();
        Ok(OpenFile {
            ends_inside_a_line: size > 0 && !ends_with_a_line_break(&file, size),
            file: Arc::new(file),
            size,
            identity,
        })
    }

    /// Claims the opened file by its device and inode too: a link made to another route's file
    /// (a symbolic link in place of the file, or a hard link) is the same file under another
    /// real path.
    fn claim_identity(&self, identity: Option<FileIdentity>) -> std::io::Result<()> {
        let Some(identity) = identity else {
            return Ok(());
        };
        let mut claims = CLAIMS
            .lock()
            .map_err(|_| std::io::Error::other("file sink claims poisoned"))?;
        // Only while the other route's path still names that file: once it was removed (and
        // not yet opened again), its device and inode numbers may be a new file's.
        let still_there = |claim: &Claim| {
            std::fs::metadata(&claim.real_path)
                .is_ok_and(|metadata| file_identity(&metadata) == Some(identity))
        };
        if let Some(other) = claims.iter().find(|claim| {
            claim.route != self.route && claim.identity == Some(identity) && still_there(claim)
        }) {
            return Err(std::io::Error::other(format!(
                "route {:?} writes to the same file ({}) through a link; give the two routes \
                 different files",
                other.route,
                other.real_path.display()
            )));
        }
        if let Some(own) = claims.iter_mut().find(|claim| claim.owner == self.id) {
            own.identity = Some(identity);
        }
        Ok(())
    }

    /// Claims the file at `path` for this route before it is opened (see [`CLAIMS`]); an error
    /// when another route's file is the same, or the rotated name of one, through the
    /// directories as they are now. The deliveries then wait, as for a missing directory.
    fn claim(&self) -> std::io::Result<()> {
        let real = real_path(&self.path)?;
        let mut claims = CLAIMS
            .lock()
            .map_err(|_| std::io::Error::other("file sink claims poisoned"))?;
        let clash = claims.iter().find(|claim| {
            claim.route != self.route
                && (claim.real_path == real
                    || super::is_rotated_name_of(&claim.real_path, &real)
                    || super::is_rotated_name_of(&real, &claim.real_path))
        });
        if let Some(other) = clash {
            return Err(std::io::Error::other(format!(
                "route {:?} writes to the same file ({}) through another path; give the two \
                 routes different files",
                other.route,
                real.display()
            )));
        }
        claims.retain(|claim| claim.owner != self.id);
        claims.push(Claim {
            route: self.route.clone(),
            owner: self.id,
            real_path: real,
            identity: None,
        });
        Ok(())
    }

    /// Flushes the lines written so far to `open` (with `fsync`) before it is closed, so that a
    /// delivery waiting for its flush is not left with a file nobody flushes.
    fn flush_before_closing(&self, open: &OpenFile) -> std::io::Result<()> {
        if self.fsync {
            open.file.sync_data()?;
            self.flushed
                .fetch_max(self.written.load(Ordering::Acquire), Ordering::AcqRel);
        }
        Ok(())
    }

    /// Renames the file (the one whose device and inode are `ours`) to `.1`, the rotated ones up
    /// by one, dropping the one numbered `keep`. Only the numbers in use are looked at: the
    /// search for a free one stops at the first gap (files are kept numbered without gaps), so a
    /// rotation costs about as many system calls as files are kept, not `keep`.
    ///
    /// The file is first moved aside at once, and rotated only if what was moved is ours: the
    /// path may name something else by now (a link or a pipe put there), and the shift of many
    /// kept files takes long enough for that to happen meanwhile. Something else is put back.
    fn rotate(&self, ours: Option<FileIdentity>) -> std::io::Result<()> {
        let mut aside = self.path.as_os_str().to_owned();
        aside.push(".rotating");
        let mut aside = PathBuf::from(aside);
        match std::fs::symlink_metadata(&aside) {
            // Left by a rotation that a crash interrupted: it is the newest rotated file.
            Ok(metadata) if metadata.is_file() => self.shift_in(&aside)?,
            // Something else by that name (a directory, a link) is not ours to rotate, nor to
            // write over: the file goes aside under a name of its own.
            Ok(_) => {
                let mut unique = aside.into_os_string();
                unique.push(format!(
                    ".{}.{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| since.as_nanos())
                ));
                aside = PathBuf::from(unique);
            }
            Err(_) => {}
        }
        match std::fs::rename(&self.path, &aside) {
            Ok(()) => {}
            // Removed or renamed away by someone else: nothing of ours to rotate.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(renaming(&self.path, &aside, err)),
        }
        let moved = std::fs::metadata(&aside)
            .ok()
            .and_then(|metadata| file_identity(&metadata));
        // (Where files have no identity, what is at the path is taken to be ours.)
        if ours.is_some() && moved != ours {
            if std::fs::symlink_metadata(&self.path).is_err() {
                let _ = std::fs::rename(&aside, &self.path);
            }
            return Ok(());
        }
        self.shift_in(&aside)
    }

    /// Moves the rotated files up by one and `file` in as `.1`.
    fn shift_in(&self, file: &Path) -> std::io::Result<()> {
        let mut free = 1;
        while free < self.keep && std::fs::symlink_metadata(rotated(&self.path, free)).is_ok() {
            free += 1;
        }
        // `free` is now unused, or `keep` (whose file the shift overwrites).
        for n in (1..free).rev() {
            let (from, to) = (rotated(&self.path, n), rotated(&self.path, n + 1));
            std::fs::rename(&from, &to).map_err(|err| renaming(&from, &to, err))?;
        }
        let first = rotated(&self.path, 1);
        std::fs::rename(file, &first).map_err(|err| renaming(file, &first, err))
    }

    /// Returns once line `number` is on disk. The flush is not done under the write lock, so that
    /// lines keep being written while it runs; whoever flushes covers every line written before
    /// it started, and those waiting behind it usually find their line already flushed.
    fn flush_through(&self, number: u64) -> std::io::Result<()> {
        let mut failed = self
            .flushing
            .lock()
            .map_err(|_| std::io::Error::other("file sink lock poisoned"))?;
        if failed
            .iter()
            .any(|&(after, through)| after < number && number <= through)
        {
            return Err(std::io::Error::other(
                "a flush of the file to disk failed after the line was written: it may not be \
                 on disk",
            ));
        }
        let flushed = self.flushed.load(Ordering::Acquire);
        if flushed >= number {
            return Ok(());
        }
        let (file, through) = {
            let state = self
                .state
                .lock()
                .map_err(|_| std::io::Error::other("file sink lock poisoned"))?;
            match state.as_ref() {
                Some(open) => (open.file.clone(), self.written.load(Ordering::Acquire)),
                // The file was closed after a failed write; the line may not be on disk.
                None => {
                    return Err(std::io::Error::other(
                        "the file was closed before the line was flushed",
                    ));
                }
            }
        };
        if let Err(err) = file.sync_data() {
            // The file's end is no longer known to be what was written: the next line goes
            // through a handle opened anew. Every line written on this one until then is in
            // doubt, those written while the flush ran too.
            let mut last = through;
            if let Ok(mut state) = self.state.lock() {
                if state
                    .as_ref()
                    .is_some_and(|open| Arc::ptr_eq(&open.file, &file))
                {
                    *state = None;
                    last = self.written.load(Ordering::Acquire);
                }
            }
            // Attempts wait for their flush for a short time only: the oldest ranges concern
            // no one after a while.
            if failed.len() >= MAX_FAILED_FLUSHES {
                failed.remove(0);
            }
            failed.push((flushed, last));
            return Err(err);
        }
        self.flushed.fetch_max(through, Ordering::AcqRel);
        Ok(())
    }
}

#[async_trait]
impl Sink for FileSink {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn target(&self) -> String {
        self.target.clone()
    }

    fn needs_value(&self) -> bool {
        false
    }

    fn preview(&self, delivery: &Delivery<'_>) -> Result<Preview, SinkError> {
        Ok(Preview {
            target: self.target(),
            headers: Vec::new(),
            body: String::from_utf8_lossy(&line(delivery)).into_owned(),
        })
    }

    async fn deliver(&self, delivery: &Delivery<'_>) -> Result<Sent, SinkError> {
        let mut results = self.deliver_batch(std::slice::from_ref(delivery)).await;
        results
            .pop()
            .unwrap_or_else(|| Err(SinkError::transient("the line was not written")))
    }

    fn batch_limit(&self) -> usize {
        BATCH_LIMIT
    }

    async fn deliver_batch(&self, deliveries: &[Delivery<'_>]) -> Vec<Result<Sent, SinkError>> {
        let lines: Vec<Vec<u8>> = deliveries.iter().map(line).collect();
        let count = lines.len();
        // The writes and their fsync block; keep them off the async threads. A blocking task
        // cannot be cancelled: were the attempt cut off at its timeout, the lines would be
        // written all the same while counted as failed, and written again at every retry.
        // So the batch ends itself within half the timeout, and says which lines it wrote.
        let inner = self.inner.clone();
        let deadline = Instant::now() + self.timeout / 2;
        let (done, failed) =
            match tokio::task::spawn_blocking(move || inner.append_within(&lines, Some(deadline)))
                .await
            {
                Ok(outcome) => outcome,
                Err(err) => (
                    0,
                    Some(std::io::Error::other(format!(
                        "the write task failed: {err}"
                    ))),
                ),
            };
        let error = failed
            .map(|err| SinkError::transient(format!("cannot append to {}: {err}", self.target)));
        (0..count)
            .map(|n| match &error {
                Some(error) if n >= done => Err(error.clone()),
                _ => Ok(Sent::default()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::secret::Secrets;

    fn build_with(settings: &str) -> Result<Arc<dyn Sink>, SinkConfigError> {
        crate::routes::sink::testing::build_sink(build, settings, &Secrets::default(), false)
    }

    fn delivery(raw: &[u8]) -> Delivery<'_> {
        Delivery {
            delivery_id: 1,
            route: "archive",
            event_id: 1,
            event_key: "inv",
            key: "pt-k",
            attempt: 1,
            received_at: 0,
            raw,
            event: &serde_json::Value::Null,
        }
    }

    fn line_count(path: &Path) -> usize {
        std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_path_that_is_a_link_appends_to_and_rotates_the_file_it_leads_to() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let link = dir.path().join("events.jsonl");
        // Relative, and to a file not made yet.
        std::os::unix::fs::symlink("data/real.jsonl", &link).unwrap();
        let sink = build_with(&format!(
            "path = \"{}\"\nmax_size = \"1KiB\"\nkeep = 3",
            link.display()
        ))
        .unwrap();
        let raw = format!("{{\"pad\":\"{}\"}}", "x".repeat(300));
        for _ in 0..8 {
            let results = sink.deliver_batch(&[delivery(raw.as_bytes())]).await;
            assert!(results.iter().all(Result::is_ok), "{results:?}");
        }
        // The link is still the link, to the same file; that file and its rotations hold every
        // line.
        let metadata = std::fs::symlink_metadata(&link).unwrap();
        assert!(metadata.file_type().is_symlink());
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            PathBuf::from("data/real.jsonl")
        );
        let real = data.join("real.jsonl");
        assert!(
            std::fs::symlink_metadata(rotated(&real, 1))
                .unwrap()
                .is_file()
        );
        assert!(std::fs::symlink_metadata(rotated(&link, 1)).is_err());
        let lines: usize = [
            real.clone(),
            rotated(&real, 1),
            rotated(&real, 2),
            rotated(&real, 3),
        ]
        .iter()
        .map(|path| line_count(path))
        .sum();
        assert_eq!(lines, 8);
        assert!(line_count(&real) < 8);

        // A link that leads round in a circle is refused at start, with the path named.
        let circle = dir.path().join("circle.jsonl");
        std::os::unix::fs::symlink("circle.jsonl", &circle).unwrap();
        let error = build_with(&format!("path = \"{}\"", circle.display()))
            .expect_err("refused")
            .message;
        assert!(
            error.contains("circle.jsonl") && error.contains("symbolic link"),
            "{error}"
        );
    }

    #[test]
    fn a_route_whose_directory_is_missing_is_taken_and_waits_for_it() {
        // A volume not mounted yet is a sink that is down: the route is taken (and the commands
        // that inspect its deliveries work); its deliveries fail until the directory is there.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later").join("events.jsonl");
        let sink = build_with(&format!("path = \"{}\"", path.display())).unwrap();
        let appender = Appender::new("test", path.clone(), 1 << 20, 2, false, None);
        let (done, failed) = appender.append_all(&[b"{}\n".to_vec()]);
        assert_eq!((done, failed.is_some()), (0, true));
        std::fs::create_dir(dir.path().join("later")).unwrap();
        let (done, failed) = appender.append_all(&[b"{}\n".to_vec()]);
        assert_eq!((done, failed.is_none()), (1, true));
        assert_eq!(sink.kind(), "file");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_opened_again_after_it_was_moved_away_gets_the_start_checks() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let appender = Appender::new("test", path.clone(), 1 << 20, 2, true, None);
        assert_eq!(appender.append_all(&[b"{}\n".to_vec()]).0, 1);
        // Created readable by its owner only: the lines hold personal data.
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");

        // Moved away (as logrotate does) and a link to a device put in its place: the lines
        // would vanish while counted delivered.
        std::fs::rename(&path, dir.path().join("events.jsonl.old")).unwrap();
        std::os::unix::fs::symlink("/dev/null", &path).unwrap();
        let (done, failed) = appender.append_all(&[b"{}\n".to_vec()]);
        let err = failed.expect("refused").to_string();
        assert_eq!(done, 0);
        assert!(err.contains("not a regular file"), "{err}");

        // A link to a database: appending would destroy it.
        std::fs::remove_file(&path).unwrap();
        let db = dir.path().join("store.db");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let before = std::fs::read(&db).unwrap();
        std::os::unix::fs::symlink(&db, &path).unwrap();
        let (done, failed) = appender.append_all(&[b"{}\n".to_vec()]);
        let err = failed.expect("refused").to_string();
        assert_eq!(done, 0);
        assert!(err.contains("SQLite database"), "{err}");
        assert_eq!(
            std::fs::read(&db).unwrap(),
            before,
            "the database is untouched"
        );

        // A pipe: refused without waiting for a reader.
        std::fs::remove_file(&path).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &path,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let (done, failed) = appender.append_all(&[b"{}\n".to_vec()]);
        assert_eq!(done, 0);
        assert!(failed.is_some());

        // What decides is the file opened, not the path: a database is told by its own bytes.
        assert!(starts_like_a_database(&File::open(&db).unwrap()));
        assert!(!starts_like_a_database(
            &File::open(dir.path().join("events.jsonl.old")).unwrap()
        ));

        // Fixed: a new file at the path, and the lines go on.
        std::fs::remove_file(&path).unwrap();
        let (done, failed) = appender.append_all(&[b"{}\n".to_vec()]);
        assert_eq!((done, failed.map(|err| err.to_string())), (1, None));
        assert_eq!(line_count(&path), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_hard_link_made_later_to_one_of_the_store_s_files_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.db");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE t (x);")
            .unwrap();
        let token = dir.path().join("store.db.read-token");
        std::fs::write(&token, "ptr_secret\n").unwrap();
        let path = dir.path().join("events.jsonl");
        let appender = Appender::new("test", path.clone(), 1 << 20, 2, false, Some(db.clone()));
        assert_eq!(appender.append_all(&[b"{}\n".to_vec()]).0, 1);
        // The file taken away and the token file linked in its place under the route's name:
        // nothing in the name or the bytes tells it from a file of lines.
        std::fs::remove_file(&path).unwrap();
        std::fs::hard_link(&token, &path).unwrap();
        let (done, failed) = appender.append_all(&[b"{}\n".to_vec()]);
        let err = failed.expect("refused").to_string();
        assert_eq!(done, 0);
        assert!(err.contains("one of the store's files"), "{err}");
        assert_eq!(std::fs::read_to_string(&token).unwrap(), "ptr_secret\n");
        // The link gone, the lines go on in a file of their own.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(appender.append_all(&[b"{}\n".to_vec()]).0, 1);
        assert_eq!(std::fs::read_to_string(&token).unwrap(), "ptr_secret\n");
    }

    /// A flush that failed leaves the lines it covered unknown: a later flush through the same
    /// handle succeeds (Linux reports a failed write-back once), and must not count them as on
    /// disk; lines written after it are flushed as usual.
    #[test]
    fn lines_a_failed_flush_covered_are_never_counted_as_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let appender = Appender::new("test", path.clone(), 1 << 20, 2, true, None);
        assert_eq!(appender.append_all(&[b"{}\n".to_vec()]).0, 1);
        let (written, _) = appender
            .write_run(&[b"{\"a\":1}\n".to_vec()], false)
            .unwrap();
        assert_eq!(written, 1);
        let number = appender.written.load(Ordering::Acquire);
        // What a failed `sync_data` covering this line records.
        appender.flushing.lock().unwrap().push((1, number));
        let err = appender.flush_through(number).unwrap_err();
        assert!(err.to_string().contains("may not be on disk"), "{err}");
        // An earlier line, flushed before, is still on disk; a later one is flushed anew.
        assert!(appender.flush_through(1).is_ok());
        let (appended, failed) = appender.append_all(&[b"{\"b\":2}\n".to_vec()]);
        assert_eq!((appended, failed.map(|err| err.to_string())), (1, None));
        // Flushed past it (the later line), the line in doubt stays in doubt.
        assert!(appender.flushed.load(Ordering::Acquire) > number);
        let err = appender.flush_through(number).unwrap_err();
        assert!(err.to_string().contains("may not be on disk"), "{err}");
    }

    #[test]
    fn a_file_that_ends_inside_a_line_gets_its_line_ended_before_new_lines() {
        // What a crash in the middle of a write leaves.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"whole\":1}\n{\"cut\":").unwrap();
        let appender = Appender::new("test", path.clone(), 1 << 20, 2, false, None);
        assert_eq!(appender.append_all(&[b"{\"n\":1}\n".to_vec()]).0, 1);
        assert_eq!(appender.append_all(&[b"{\"n\":2}\n".to_vec()]).0, 1);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"whole\":1}\n{\"cut\":\n{\"n\":1}\n{\"n\":2}\n"
        );
    }

    /// Run in a process of its own (the file size limit is the whole process's): a write that
    /// the system stops part way (a full disk; here the limit on a file's size) leaves no part
    /// of its lines behind, so that the deliveries' retry writes each line once, whole.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_write_stopped_part_way_is_taken_back_whole() {
        const CHILD: &str = "PROVTRAIL_TEST_FILE_SIZE_LIMIT";
        let Some(dir) = std::env::var_os(CHILD) else {
            let dir = tempfile::tempdir().unwrap();
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "routes::file::tests::a_write_stopped_part_way_is_taken_back_whole",
                    "--test-threads=1",
                ])
                .env(CHILD, dir.path())
                .status()
                .unwrap();
            assert!(status.success());
            // The test ran in the child (a name that no longer matches runs none, and passes).
            assert!(dir.path().join("ran").exists());
            return;
        };
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        // Past the limit the system sends SIGXFSZ, which ends the process unless handled.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _signal = runtime.block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25)).unwrap()
        });
        let path = PathBuf::from(dir).join("events.jsonl");
        let appender = Appender::new("test", path.clone(), 1 << 20, 2, false, None);
        let line =
            |n: usize| format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(100)).into_bytes();
        let first: Vec<Vec<u8>> = (0..10).map(line).collect();
        assert_eq!(appender.append_all(&first).0, 10);
        let written = std::fs::metadata(&path).unwrap().len();
        let limit = getrlimit(Resource::Fsize);
        // Room for two and a half lines more: the batch of five is stopped in its third.
        setrlimit(
            Resource::Fsize,
            Rlimit {
                current: Some(written + 2 * first[0].len() as u64 + 50),
                maximum: limit.maximum,
            },
        )
        .unwrap();
        let second: Vec<Vec<u8>> = (10..15).map(line).collect();
        let (done, failed) = appender.append_all(&second);
        assert_eq!(done, 0);
        assert!(failed.is_some());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            written,
            "taken back"
        );
        // Room again: the retry writes the five once.
        setrlimit(Resource::Fsize, limit).unwrap();
        assert_eq!(appender.append_all(&second).0, 5);
        let text = std::fs::read_to_string(&path).unwrap();
        let numbers: Vec<u64> = text
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(numbers, (0..15).collect::<Vec<u64>>());
        std::fs::write(path.with_file_name("ran"), "").unwrap();
    }

    #[test]
    fn a_path_part_from_a_reference_is_shown_as_stars() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("S3cretDir77")).unwrap();
        let name = dir.path().join("name.txt");
        std::fs::write(&name, "S3cretDir77\n").unwrap();
        let settings = format!(
            "path = \"{}/${{file:{}}}/events.jsonl\"",
            dir.path().display(),
            name.display()
        );
        let sink = build_with(&settings).unwrap();
        let target = sink.target();
        assert_eq!(
            target,
            format!("{}/***/events.jsonl", dir.path().display()),
            "{target}"
        );
        let preview = sink.preview(&delivery(b"{}")).unwrap();
        assert!(
            !preview.target.contains("S3cretDir77"),
            "{}",
            preview.target
        );
    }

    #[test]
    fn a_line_embeds_the_event_as_received_on_one_line() {
        let raw = b"{\n  \"a\": \"x\\ny\",\r\n  \"b\": [1, 2]\n}";
        let delivery = Delivery {
            event_id: 7,
            ..delivery(raw)
        };
        let line = line(&delivery);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        let parsed: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed["event"]["a"], "x\ny");
        assert_eq!(parsed["event"]["b"][1], 2);
        assert_eq!(parsed["delivery"], "pt-k");
        assert_eq!(parsed["event_id"], 7);
        // The receipt's fields come first, in this order, then the event.
        let text = String::from_utf8(line).unwrap();
        assert!(
            text.starts_with(
                r#"{"delivery":"pt-k","route":"archive","event_id":7,"received_at":"1970-01-01T00:00:00.000Z","event":{"#
            ),
            "{text}"
        );
        // Escaped as JSON.
        let odd = super::line(&Delivery {
            key: "a\"b\\c\u{1}",
            ..self::delivery(b"{}")
        });
        let parsed: serde_json::Value = serde_json::from_slice(&odd).unwrap();
        assert_eq!(parsed["delivery"], "a\"b\\c\u{1}");
    }

    #[test]
    fn two_routes_that_became_one_file_through_a_link_made_later_do_not_both_write() {
        let dir = tempfile::tempdir().unwrap();
        let first = Appender::new(
            "first",
            dir.path().join("out.jsonl"),
            1 << 20,
            2,
            false,
            None,
        );
        // At start the second route's directory does not exist; it appears later as a link to
        // the first route's directory.
        let alias = dir.path().join("later");
        let second = Appender::new("second", alias.join("out.jsonl"), 1 << 20, 2, false, None);
        let rotated = Appender::new("third", alias.join("out.jsonl.1"), 1 << 20, 2, false, None);
        assert_eq!(first.append_all(&[b"a\n".to_vec()]).0, 1);
        std::os::unix::fs::symlink(dir.path(), &alias).unwrap();
        for other in [&second, &rotated] {
            let (written, error) = other.append_all(&[b"b\n".to_vec()]);
            assert_eq!(written, 0);
            let error = error.unwrap().to_string();
            assert!(
                error.contains("route \"first\" writes to the same file"),
                "{error}"
            );
        }
        assert_eq!(line_count(&dir.path().join("out.jsonl")), 1);
        // A link in place of the file, or a hard link, is the same file under another path.
        let links = dir.path().join("links");
        std::fs::create_dir(&links).unwrap();
        std::os::unix::fs::symlink(dir.path().join("out.jsonl"), links.join("soft.jsonl")).unwrap();
        std::fs::hard_link(dir.path().join("out.jsonl"), links.join("hard.jsonl")).unwrap();
        for name in ["soft.jsonl", "hard.jsonl"] {
            let linked = Appender::new(name, links.join(name), 1 << 20, 2, false, None);
            let (written, error) = linked.append_all(&[b"c\n".to_vec()]);
            assert_eq!(written, 0, "{name}");
            assert!(
                error.unwrap().to_string().contains("route \"first\""),
                "{name}"
            );
        }
        assert_eq!(line_count(&dir.path().join("out.jsonl")), 1);
        // Once the first route is gone (a restart with a new configuration), the file is free.
        drop(first);
        assert_eq!(second.append_all(&[b"b\n".to_vec()]).0, 1);
        assert_eq!(line_count(&dir.path().join("out.jsonl")), 2);
    }

    #[test]
    fn a_batch_past_its_time_writes_no_more_lines_and_says_how_many_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow.jsonl");
        // Every line needs a file of its own: one rotation per line.
        let appender = Appender::new("slow", path.clone(), 16, 50, false, None);
        let lines: Vec<Vec<u8>> = (0..10)
            .map(|n| format!("{{\"line\":{n:03}}}\n").into_bytes())
            .collect();
        let (written, error) = appender.append_within(&lines, Some(Instant::now()));
        assert_eq!(written, 1);
        assert!(
            error
                .unwrap()
                .to_string()
                .contains("ran out after 1 of 10 lines"),
            "the remaining lines are said to be unwritten"
        );
        // The rest, written by the next attempt: each line once.
        let (written, error) = appender.append_within(&lines[written..], None);
        assert_eq!((written, error.is_none()), (9, true));
        let mut found: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flat_map(|entry| {
                std::fs::read_to_string(entry.unwrap().path())
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        found.sort();
        let expected: Vec<String> = (0..10).map(|n| format!("{{\"line\":{n:03}}}")).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_file_found_full_at_start_is_rotated_before_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.jsonl");
        std::fs::write(&path, vec![b'x'; 1000]).unwrap();
        let appender = Appender::new("test", path.clone(), 1024, 2, false, None);
        let line = vec![b'y'; 100];
        assert_eq!(appender.append_all(&[line]).0, 1);
        assert_eq!(std::fs::metadata(rotated(&path, 1)).unwrap().len(), 1000);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 100);
    }

    #[test]
    fn a_rotation_that_cannot_rename_names_the_file_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.jsonl");
        std::fs::write(&path, vec![b'x'; 1000]).unwrap();
        // Where the rotated file goes, a directory that is not empty.
        let first = rotated(&path, 1);
        std::fs::create_dir(&first).unwrap();
        std::fs::write(first.join("precious"), "x").unwrap();
        let appender = Appender::new("test", path.clone(), 1024, 1, false, None);
        let (written, failed) = appender.append_all(&[vec![b'y'; 100]]);
        assert_eq!(written, 0);
        let said = failed.unwrap().to_string();
        assert!(
            said.starts_with("rotating: cannot rename ")
                && said.contains(&format!("to {}", first.display())),
            "{said}"
        );
        assert!(first.join("precious").exists());
    }

    #[test]
    fn files_rotate_by_size_and_keep_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let appender = Appender::new("test", path.clone(), 1024, 2, false, None);
        let line = [b'x'; 299];
        for _ in 0..20 {
            let mut text = line.to_vec();
            text.push(b'\n');
            let (done, failed) = appender.append_all(&[text]);
            assert!(failed.is_none());
            assert_eq!(done, 1);
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 1024 && size(&path) > 0);
        assert_eq!(size(&rotated(&path, 1)), 900);
        assert_eq!(size(&rotated(&path, 2)), 900);
        assert!(!rotated(&path, 3).exists());
    }

    #[test]
    fn a_batch_is_written_in_order_and_flushed_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let appender = Appender::new("test", path.clone(), 1024, 3, true, None);
        let lines: Vec<Vec<u8>> = (0..12)
            .map(|n| format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(180)).into_bytes())
            .collect();
        let (done, failed) = appender.append_all(&lines);
        assert!(failed.is_none(), "{failed:?}");
        assert_eq!(done, 12);
        // Every line was numbered and flushed, also those written before the rotation.
        assert_eq!(appender.written.load(Ordering::Acquire), 12);
        assert_eq!(appender.flushed.load(Ordering::Acquire), 12);
        // Oldest file first: the lines come back whole and in order.
        let mut text = String::new();
        for file in [rotated(&path, 2), rotated(&path, 1), path.clone()] {
            text.push_str(&std::fs::read_to_string(file).unwrap_or_default());
        }
        let numbers: Vec<u64> = text
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(numbers, (0..12).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_removed_or_renamed_file_is_started_again_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let sink = build_with(&format!("path = {:?}", path.display().to_string())).unwrap();
        let raw = b"{\"a\":1}";

        assert!(sink.deliver(&delivery(raw)).await.is_ok());
        std::fs::remove_file(&path).unwrap();
        assert!(sink.deliver(&delivery(raw)).await.is_ok());
        assert_eq!(
            line_count(&path),
            1,
            "the line after the removal is in the file at path"
        );

        // logrotate without copytruncate: renamed away, then the next line starts a new file.
        let moved = dir.path().join("out.jsonl.old");
        std::fs::rename(&path, &moved).unwrap();
        assert!(sink.deliver(&delivery(raw)).await.is_ok());
        assert_eq!(line_count(&moved), 1);
        assert_eq!(line_count(&path), 1);
    }

    #[tokio::test]
    async fn a_delivery_fails_while_the_directory_is_gone_and_succeeds_once_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let path = out.join("a.jsonl");
        let sink = build_with(&format!("path = {:?}", path.display().to_string())).unwrap();
        let raw = b"{\"a\":1}";

        assert!(sink.deliver(&delivery(raw)).await.is_ok());
        std::fs::remove_dir_all(&out).unwrap();
        let failed = sink.deliver(&delivery(raw)).await.unwrap_err();
        assert!(!failed.permanent, "tried again: {failed:?}");
        assert!(failed.message.contains("a.jsonl"), "{failed:?}");
        let results = sink.deliver_batch(&[delivery(raw), delivery(raw)]).await;
        assert!(results.iter().all(Result::is_err), "{results:?}");

        std::fs::create_dir(&out).unwrap();
        assert!(sink.deliver(&delivery(raw)).await.is_ok());
        assert_eq!(line_count(&path), 1);
    }

    #[test]
    fn keep_is_bounded_and_a_directory_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl").display().to_string();
        for keep in [0_u64, 1_001, 4_000_000_000] {
            let err = build_with(&format!("path = {path:?}\nkeep = {keep}")).unwrap_err();
            assert_eq!(err.setting, "keep", "{keep}: {err:?}");
            assert!(err.message.contains("1 to 1000"), "{keep}: {err:?}");
        }
        for keep in [1, 5, 1_000] {
            assert!(build_with(&format!("path = {path:?}\nkeep = {keep}")).is_ok());
        }
        // Said in words, not in serde's names of types.
        let err = build_with(&format!("path = {path:?}\nkeep = -1")).unwrap_err();
        assert!(
            err.message.contains("a whole number from 0 up") && !err.message.contains("u32"),
            "{err:?}"
        );
        // A size may be a number of bytes, not a negative one.
        assert!(build_with(&format!("path = {path:?}\nmax_size = 2048")).is_ok());
        let err = build_with(&format!("path = {path:?}\nmax_size = -1")).unwrap_err();
        assert!(err.message.contains("negative"), "{err:?}");

        let err =
            build_with(&format!("path = {:?}", dir.path().display().to_string())).unwrap_err();
        assert_eq!(err.setting, "path");
        assert!(err.message.contains("is a directory"), "{err:?}");

        // Nothing can be appended, synced and rotated there.
        let err = build_with("path = \"/dev/null\"").unwrap_err();
        assert!(err.message.contains("not a regular file"), "{err:?}");
        let err = build_with("path = \"/proc/events.jsonl\"").unwrap_err();
        assert!(err.message.contains("holds no regular files"), "{err:?}");
        let err = build_with("path = \" \"").unwrap_err();
        assert!(err.message.contains("is empty"), "{err:?}");
    }

    #[test]
    fn a_rotation_looks_only_at_the_numbers_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        // With a billion files to keep, a rotation that probed every number would not finish.
        let appender = Appender::new("test", path.clone(), 1024, 1_000_000_000, false, None);
        let text = |n: usize| format!("{n:0>599}\n").into_bytes();
        for n in 0..5 {
            let (done, failed) = appender.append_all(&[text(n)]);
            assert!(failed.is_none(), "{failed:?}");
            assert_eq!(done, 1);
        }
        // One line per file: the newest at path, then .1 (the one before), … .4 (the first).
        assert_eq!(std::fs::read(&path).unwrap(), text(4));
        for n in 1..=4 {
            assert_eq!(
                std::fs::read(rotated(&path, n)).unwrap(),
                text(4 - n as usize)
            );
        }
        assert!(!rotated(&path, 5).exists());
    }

    #[cfg(unix)]
    #[test]
    fn only_the_sinks_own_file_is_rotated_and_one_left_aside_by_a_crash_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let appender = Appender::new("test", path.clone(), 1 << 20, 5, false, None);
        assert_eq!(appender.append_all(&[b"{\"n\":1}\n".to_vec()]).0, 1);
        let ours = file_identity(&std::fs::metadata(&path).unwrap());

        // Something else at the path when the rotation comes: left where it is.
        std::fs::rename(&path, dir.path().join("moved.jsonl")).unwrap();
        std::os::unix::fs::symlink("/dev/null", &path).unwrap();
        appender.rotate(ours).unwrap();
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(std::fs::symlink_metadata(rotated(&path, 1)).is_err());
        std::fs::remove_file(&path).unwrap();
        std::fs::rename(dir.path().join("moved.jsonl"), &path).unwrap();

        // Something that is not a regular file by the name a rotation moves the file aside
        // to is left alone, and the rotation still happens.
        let aside = dir.path().join("out.jsonl.rotating");
        std::fs::create_dir(&aside).unwrap();
        std::fs::write(aside.join("precious"), "x").unwrap();
        appender.rotate(ours).unwrap();
        assert!(aside.join("precious").exists());
        assert_eq!(
            std::fs::read_to_string(rotated(&path, 1)).unwrap(),
            "{\"n\":1}\n"
        );
        assert!(!path.exists());
        std::fs::remove_dir_all(&aside).unwrap();
        std::fs::rename(rotated(&path, 1), &path).unwrap();

        // A file moved aside by a rotation that a crash interrupted becomes `.1`, then ours
        // comes in front of it.
        let aside = dir.path().join("out.jsonl.rotating");
        std::fs::write(&aside, "{\"n\":0}\n").unwrap();
        appender.rotate(ours).unwrap();
        assert_eq!(
            std::fs::read_to_string(rotated(&path, 1)).unwrap(),
            "{\"n\":1}\n"
        );
        assert_eq!(
            std::fs::read_to_string(rotated(&path, 2)).unwrap(),
            "{\"n\":0}\n"
        );
        assert!(!aside.exists() && !path.exists());
    }
}
