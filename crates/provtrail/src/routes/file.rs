//! `file`: append one JSON line per delivery, rotated by size.
//!
//! Each line is `{"delivery": key, "route", "event_id", "received_at", "event": {…}}`. A line is
//! written whole with one `write` and, unless `fsync = false`, flushed to disk before the
//! delivery counts as done (a line whose flush failed is delivered again: at least once). When the file would grow past `max_size`, it is renamed to `.1` (the
//! older ones to `.2`, … up to `keep`) and a new one is started.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
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
        inner: Arc::new(Appender {
            path,
            max_size,
            keep: settings.keep.unwrap_or(5).max(1),
            fsync: settings.fsync.unwrap_or(true),
            state: Mutex::new(None),
        }),
    }))
}

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
    /// The open file and its size; one writer at a time, so that lines never interleave.
    state: Mutex<Option<(File, u64)>>,
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
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| std::io::Error::other("file sink lock poisoned"))?;
        if let Some((_, size)) = state.as_ref() {
            if *size > 0 && size + line.len() as u64 > self.max_size {
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
            *state = Some((file, size));
        }
        let Some((file, size)) = state.as_mut() else {
            return Err(std::io::Error::other("file sink not open"));
        };
        // The line is written under the lock (lines never interleave); the flush to disk is not,
        // so that concurrent deliveries wait for their flushes together rather than in a row.
        let written = file.write_all(line).and_then(|()| {
            if self.fsync {
                file.try_clone().map(Some)
            } else {
                Ok(None)
            }
        });
        let handle = match written {
            Ok(handle) => {
                *size += line.len() as u64;
                handle
            }
            Err(err) => {
                // Start from a fresh handle next time (the file may have been removed).
                *state = None;
                return Err(err);
            }
        };
        drop(state);
        match handle {
            Some(handle) => handle.sync_data(),
            None => Ok(()),
        }
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
        let line = line(delivery);
        // The write and its fsync block; keep them off the async threads.
        let inner = self.inner.clone();
        let written = tokio::task::spawn_blocking(move || inner.append(&line))
            .await
            .map_err(|err| SinkError::transient(format!("the write task failed: {err}")))?;
        written.map_err(|err| {
            SinkError::transient(format!(
                "cannot append to {}: {err}",
                self.inner.path.display()
            ))
        })?;
        Ok(Sent::default())
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
        let appender = Appender {
            path: path.clone(),
            max_size: 1024,
            keep: 2,
            fsync: false,
            state: Mutex::new(None),
        };
        let line = [b'x'; 299];
        for _ in 0..20 {
            let mut text = line.to_vec();
            text.push(b'\n');
            appender.append(&text).unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 1024 && size(&path) > 0);
        assert_eq!(size(&rotated(&path, 1)), 900);
        assert_eq!(size(&rotated(&path, 2)), 900);
        assert!(!rotated(&path, 3).exists());
    }
}
