//! `file`: append one JSON line per delivery, rotated by size.
//!
//! Each line is `{"delivery": key, "route", "event_id", "received_at", "event": {…}}`. A line is
//! written whole with one `write` and, unless `fsync = false`, flushed to disk before the
//! delivery counts as done (a line whose flush failed is delivered again: at least once).
//! Deliveries that finish their writes together share one flush, as events share a commit in the
//! store, so a busy route costs a few flushes per batch of lines rather than one per line. When
//! the file would grow past `max_size`, it is renamed to `.1` (the older ones to `.2`, … up to
//! `keep`) and a new one is started.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

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
    let path = PathBuf::from(
        context
            .secrets
            .resolve(&settings.path.to_string_lossy())
            .map_err(|err| SinkConfigError::new("path", err.to_string()))?,
    );
    let directory = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    if !directory.is_dir() {
        return Err(SinkConfigError::new(
            "path",
            format!("the directory {} does not exist", directory.display()),
        ));
    }
    let max_size = match &settings.max_size {
        Some(text) => crate::config::parse_size("max_size", text)
            .map_err(|err| SinkConfigError::new("max_size", err.to_string()))?,
        None => 100 * 1024 * 1024,
    };
    if max_size < 1024 {
        return Err(SinkConfigError::new("max_size", "at least 1KiB"));
    }
    Ok(Arc::new(FileSink {
        inner: Arc::new(Appender::new(
            path,
            max_size,
            settings.keep.unwrap_or(5).max(1),
            settings.fsync.unwrap_or(true),
        )),
    }))
}

/// Most lines one attempt writes: a backlog drains with one write and one flush per this many
/// deliveries.
const BATCH_LIMIT: usize = 256;

/// A JSON-lines file sink.
#[derive(Debug)]
pub struct FileSink {
    inner: Arc<Appender>,
}

#[derive(Debug)]
struct Appender {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    fsync: bool,
    /// The open file; one writer at a time, so that lines never interleave.
    state: Mutex<Option<OpenFile>>,
    /// Held while a flush to disk runs, so that deliveries waiting for theirs queue behind it and
    /// then find their line already on disk (one fsync for all lines written meanwhile, as the
    /// store's group commit).
    flushing: Mutex<()>,
    /// Lines on disk: every line numbered up to this one has been flushed.
    flushed: AtomicU64,
    /// Lines written so far, over every file (numbers each line).
    written: AtomicU64,
}

#[derive(Debug)]
struct OpenFile {
    file: Arc<File>,
    size: u64,
}
/// The line of a delivery. The event is embedded as received rather than parsed and written
/// again: a stored event is valid JSON, and a raw line break in JSON can only be whitespace
/// between tokens (inside strings they are escaped), so turning line breaks into spaces keeps it
/// valid and on one line.
fn line(delivery: &Delivery<'_>) -> Vec<u8> {
    let received_at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(delivery.received_at)
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let head = json!({
        "delivery": delivery.key,
        "route": delivery.route,
        "event_id": delivery.event_id,
        "received_at": received_at,
    })
    .to_string();
    let mut line = Vec::with_capacity(head.len() + delivery.raw.len() + 12);
    // `{"delivery":…,"received_at":…` without its closing brace, then the event.
    line.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    line.extend_from_slice(b",\"event\":");
    line.extend(delivery.raw.iter().map(|&byte| match byte {
        b'\n' | b'\r' => b' ',
        other => other,
    }));
    line.extend_from_slice(b"}\n");
    line
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl Appender {
    fn new(path: PathBuf, max_size: u64, keep: u32, fsync: bool) -> Appender {
        Appender {
            path,
            max_size,
            keep,
            fsync,
            state: Mutex::new(None),
            flushing: Mutex::new(()),
            flushed: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }

    /// Appends lines in order and, with `fsync`, flushes them with one flush. Returns how many
    /// are written (and on disk, with `fsync`) and, when that is not all, the error that stopped
    /// the rest.
    fn append_all(&self, lines: &[Vec<u8>]) -> (usize, Option<std::io::Error>) {
        let mut done = 0;
        let mut last = None;
        let mut failed = None;
        let mut buffer = Vec::new();
        while done < lines.len() {
            match self.write_run(&lines[done..], &mut buffer) {
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
    /// is rotated first when even that one does not fit) with a single `write`, so that a batch
    /// costs one system call rather than one per line. Returns how many were written and the
    /// number of the last.
    fn write_run(&self, lines: &[Vec<u8>], buffer: &mut Vec<u8>) -> std::io::Result<(usize, u64)> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| std::io::Error::other("file sink lock poisoned"))?;
        let first = lines.first().map_or(0, |line| line.len() as u64);
        if let Some(open) = state.as_ref() {
            if open.size > 0 && open.size + first > self.max_size {
                // The lines written so far go to disk before their file is renamed away, so
                // that a delivery waiting for its flush is not left with a file nobody flushes.
                if self.fsync {
                    open.file.sync_data()?;
                    self.flushed
                        .fetch_max(self.written.load(Ordering::Acquire), Ordering::AcqRel);
                }
                *state = None;
                for n in (1..self.keep).rev() {
                    let from = rotated(&self.path, n);
                    if from.exists() {
                        std::fs::rename(&from, rotated(&self.path, n + 1))?;
                    }
                }
                std::fs::rename(&self.path, rotated(&self.path, 1))?;
            }
        }
        if state.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let size = file.metadata()?.len();
            *state = Some(OpenFile {
                file: Arc::new(file),
                size,
            });
        }
        let Some(open) = state.as_mut() else {
            return Err(std::io::Error::other("file sink not open"));
        };
        // The first line always goes in (a line longer than the limit gets a file of its own);
        // the next ones while the file stays within its limit.
        let mut size = open.size;
        let mut count = 0;
        buffer.clear();
        for line in lines {
            if count > 0 && size + line.len() as u64 > self.max_size {
                break;
            }
            buffer.extend_from_slice(line);
            size += line.len() as u64;
            count += 1;
        }
        if let Err(err) = (&*open.file).write_all(buffer) {
            // Start from a fresh handle next time (the file may have been removed).
            *state = None;
            return Err(err);
        }
        open.size = size;
        let count64 = count as u64;
        Ok((
            count,
            self.written.fetch_add(count64, Ordering::AcqRel) + count64,
        ))
    }

    /// Returns once line `number` is on disk. The flush is not done under the write lock, so that
    /// lines keep being written while it runs; whoever flushes covers every line written before
    /// it started, and those waiting behind it usually find their line already flushed.
    fn flush_through(&self, number: u64) -> std::io::Result<()> {
        let _flushing = self
            .flushing
            .lock()
            .map_err(|_| std::io::Error::other("file sink lock poisoned"))?;
        if self.flushed.load(Ordering::Acquire) >= number {
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
        file.sync_data()?;
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
        self.inner.path.display().to_string()
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
        // The writes and their fsync block; keep them off the async threads.
        let inner = self.inner.clone();
        let (done, failed) =
            match tokio::task::spawn_blocking(move || inner.append_all(&lines)).await {
                Ok(outcome) => outcome,
                Err(err) => (
                    0,
                    Some(std::io::Error::other(format!(
                        "the write task failed: {err}"
                    ))),
                ),
            };
        let error = failed.map(|err| {
            SinkError::transient(format!(
                "cannot append to {}: {err}",
                self.inner.path.display()
            ))
        });
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

    #[test]
    fn a_line_embeds_the_event_as_received_on_one_line() {
        let raw = b"{\n  \"a\": \"x\\ny\",\r\n  \"b\": [1, 2]\n}";
        let delivery = Delivery {
            delivery_id: 1,
            route: "archive",
            event_id: 7,
            event_key: "inv",
            key: "pt-k",
            attempt: 1,
            received_at: 0,
            raw,
            event: &serde_json::Value::Null,
        };
        let line = line(&delivery);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(line.last(), Some(&b'\n'));
        let parsed: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed["event"]["a"], "x\ny");
        assert_eq!(parsed["event"]["b"][1], 2);
        assert_eq!(parsed["delivery"], "pt-k");
        assert_eq!(parsed["event_id"], 7);
    }

    #[test]
    fn files_rotate_by_size_and_keep_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let appender = Appender::new(path.clone(), 1024, 2, false);
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
        let appender = Appender::new(path.clone(), 1024, 3, true);
        let lines: Vec<Vec<u8>> = (0..12)
            .map(|n| format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(180)).into_bytes())
            .collect();
        let (done, failed) = appender.append_all(&lines);
        assert!(failed.is_none());
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
}
