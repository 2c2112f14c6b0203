//! Shared helpers of the ingest integration tests: a server in this process or as a child
//! process, events, raw HTTP/1.1 over TCP, and read-only looks into the SQLite file.

// Each test file uses a different part of this module.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use provtrail::app::{App, Settings};
use provtrail::config::FileConfig;
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The bearer token the test servers accept unless a test configures others.
pub const TOKEN: &str = "test-token-0123456789";

/// The example events shipped with the specification.
pub const PAYLOADS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/payloads/");

/// Longest a test waits for a condition that should hold almost at once.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Reads one of the example payloads.
pub fn payload(name: &str) -> Vec<u8> {
    std::fs::read(format!("{PAYLOADS}{name}")).unwrap()
}

/// A valid Provisioning Completed event with the given invocation id, as ISC sends it.
pub fn event(invocation_id: &str) -> Vec<u8> {
    format!(
        r#"{{
  "trackingNumber": "tn-{invocation_id}",
  "sources": "Corp AD",
  "recipient": {{"type": "IDENTITY", "id": "2c91808568c529c60168cca6f90c1313", "name": "William Wilson"}},
  "accountRequests": [
    {{
      "source": {{"id": "4e4d982dddff4267ab12f0f1e72b5a6d", "type": "SOURCE", "name": "Corporate Active Directory"}},
      "accountOperation": "Modify",
      "provisioningResult": "SUCCESS",
      "provisioningTarget": "Corp AD"
    }}
  ],
  "_metadata": {{"triggerId": "idn:post-provisioning", "triggerType": "fireAndForget", "invocationId": "{invocation_id}"}}
}}"#
    )
    .into_bytes()
}

/// A valid event of a failed request whose first error is `bytes` long.
pub fn event_with_a_long_error(bytes: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "trackingNumber": "tn-large",
        "sources": "Corp AD",
        "recipient": {"type": "IDENTITY", "id": "i1", "name": "Jane Doe"},
        "accountRequests": [{"source": {"id": "s1", "type": "SOURCE", "name": "Corp AD"},
            "accountOperation": "Create", "provisioningResult": "FAILED",
            "provisioningTarget": "Corp AD"}],
        "errors": ["x".repeat(bytes)],
        "_metadata": {"invocationId": "inv-large"},
    }))
    .unwrap()
}

/// A configuration for a test server on a loopback port chosen by the system, storing to `db`.
pub fn config(db: &Path) -> FileConfig {
    let mut config = FileConfig::default();
    config.server.listen = Some("127.0.0.1:0".into());
    config.store.path = Some(db.to_owned());
    config.ingest.tokens = vec![TOKEN.into()];
    config
}

/// An application running in this process on a temporary database.
pub struct TestServer {
    pub app: Option<App>,
    pub addr: SocketAddr,
    pub db: PathBuf,
    /// Kept so that the directory lives as long as the server.
    pub dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Starts a server with the default test configuration on a fresh database.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on a fresh database, with `adjust` applied to the configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut FileConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("provtrail.db");
        let mut config = config(&db);
        adjust(&mut config);
        let mut server = Self::start_config(&config).await;
        server.dir = Some(dir);
        server
    }

    /// Starts a server with exactly this configuration (its database path must be set).
    pub async fn start_config(config: &FileConfig) -> TestServer {
        let settings = Settings::from_config(config).unwrap();
        let app = App::start(&settings).await.unwrap();
        TestServer {
            addr: app.server.local_addr(),
            db: settings.store.path.clone(),
            app: Some(app),
            dir: None,
        }
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Posts `body` as JSON with the test token.
    pub async fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> Answer {
        let response = client()
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.into())
            .send()
            .await
            .unwrap();
        Answer::read(response).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        Answer::read(client().get(self.url(path)).send().await.unwrap()).await
    }

    /// Proves the server still answers: `/healthz` is 200 and a new valid event is accepted.
    pub async fn assert_still_serving(&self, invocation_id: &str) {
        let health = self.get("/healthz").await;
        assert_eq!(health.status, 200, "{}", health.text());
        let answer = self.post("/events", event(invocation_id)).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert_eq!(answer.outcome().0, "accepted");
    }

    /// Stops the server gracefully and closes the store.
    pub async fn shutdown(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }

    /// Waits until the delivery log holds `n` records (rejections are logged off the request).
    pub async fn await_deliveries(&self, n: u64) {
        let store = self.app().store.clone();
        eventually("the delivery log to hold every request", || {
            let store = store.clone();
            async move { delivery_count(store.as_ref()).await >= n }
        })
        .await;
        assert_eq!(delivery_count(self.app().store.as_ref()).await, n);
    }
}

/// The records in the delivery log, counted a page at a time.
pub async fn delivery_count(store: &dyn provtrail::store::Store) -> u64 {
    let mut count = 0;
    let mut before_id = None;
    loop {
        let page = store
            .deliveries(&provtrail::store::DeliveryQuery {
                before_id,
                limit: 1_000,
                ..Default::default()
            })
            .await
            .unwrap();
        count += page.items.len() as u64;
        match page.next_cursor {
            Some(cursor) => before_id = Some(cursor),
            None => return count,
        }
    }
}

/// A plain HTTP client for the tests (no proxy from the environment, no pooling surprises).
pub fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider and refuses to build a client until one is
    // installed, even for plain HTTP. A second install fails harmlessly.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Answer {
    pub async fn read(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.bytes().await.unwrap().to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "the answer ({}) is not JSON: {err}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `(status, id)` of an ingest answer.
    pub fn outcome(&self) -> (String, i64) {
        let json = self.json();
        (
            json["status"].as_str().unwrap_or_default().to_owned(),
            json["id"].as_i64().unwrap_or(-1),
        )
    }
}

/// Polls `condition` until it holds; fails the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1, for what a well-behaved client library will not do.

/// A response read from a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!("not JSON ({err}): {}", String::from_utf8_lossy(&self.body))
        })
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

/// Request head for a POST with the given extra header lines (each ending in `\r\n`).
pub fn post_head(path: &str, headers: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{headers}\r\n")
}

/// The authorization header line of the test token.
pub fn auth_line() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

/// Reads one HTTP/1.1 response (head and a Content-Length body) from `stream`. Returns `None`
/// when the connection ends before a whole head arrives.
pub async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = find(&buffer, b"\r\n\r\n") {
            break pos + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    Some(RawResponse { status, head, body })
}

/// Like [`read_response`], failing the test when nothing complete arrives within [`PATIENCE`].
pub async fn expect_response(stream: &mut TcpStream) -> RawResponse {
    tokio::time::timeout(PATIENCE, read_response(stream))
        .await
        .expect("no answer in time")
        .expect("the connection closed without an answer")
}

/// Sends `request` on a new connection and reads the answer.
/// The body of a GET of `url`, as text.
pub async fn text_at(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    expect_response(&mut stream).await
}

/// True when the server closes the connection (end of stream or reset) within [`PATIENCE`];
/// whatever it sent before closing is returned.
pub async fn closed_by_server(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    };
    match tokio::time::timeout(PATIENCE, read_all).await {
        Ok(()) => Some(seen),
        Err(_) => None,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

// ---------------------------------------------------------------------------------------------
// The database file, read behind the server's back.

/// A read-only connection on the database file.
pub fn open_db(db: &Path) -> Connection {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// One row of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub status: i64,
    pub outcome: String,
    pub reason: Option<String>,
    pub path: String,
    pub channel: Option<String>,
    pub remote_addr: Option<String>,
    pub invocation_id: Option<String>,
    pub event_id: Option<i64>,
    pub quarantine_id: Option<i64>,
    pub size: i64,
}

/// The delivery log, oldest first.
pub fn deliveries(db: &Path) -> Vec<Delivery> {
    let conn = open_db(db);
    let mut statement = conn
        .prepare(
            "SELECT status, outcome, reason, path, channel, remote_addr, invocation_id, event_id,
                quarantine_id, size
             FROM deliveries ORDER BY id",
        )
        .unwrap();
    statement
        .query_map([], |row| {
            Ok(Delivery {
                status: row.get(0)?,
                outcome: row.get(1)?,
                reason: row.get(2)?,
                path: row.get(3)?,
                channel: row.get(4)?,
                remote_addr: row.get(5)?,
                invocation_id: row.get(6)?,
                event_id: row.get(7)?,
                quarantine_id: row.get(8)?,
                size: row.get(9)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// One quarantine entry with its body decoded.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub id: i64,
    pub reason: String,
    pub errors: Value,
    pub warnings: Value,
    pub raw: Vec<u8>,
}

/// The quarantine, oldest first.
pub fn quarantine(db: &Path) -> Vec<Quarantined> {
    let conn = open_db(db);
    let mut statement = conn
        .prepare(
            "SELECT id, reason, errors, raw_codec, raw_size, raw, warnings FROM quarantine
             ORDER BY id",
        )
        .unwrap();
    statement
        .query_map([], |row| {
            let codec: i64 = row.get(3)?;
            let size: i64 = row.get(4)?;
            let stored: Vec<u8> = row.get(5)?;
            let errors: String = row.get(2)?;
            let warnings: String = row.get(6)?;
            Ok(Quarantined {
                id: row.get(0)?,
                reason: row.get(1)?,
                errors: serde_json::from_str(&errors).unwrap(),
                warnings: serde_json::from_str(&warnings).unwrap(),
                raw: decode_body(&conn, codec, stored, size),
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Decodes a stored body (0: as received, 1: zstd, 2: zstd with a dictionary the database holds)
/// without the application's code, which proves the database describes itself.
pub fn decode_body(conn: &Connection, codec: i64, stored: Vec<u8>, size: i64) -> Vec<u8> {
    let size = usize::try_from(size).unwrap().max(1);
    match codec {
        0 => stored,
        1 => zstd::bulk::decompress(&stored, size).unwrap(),
        2 => {
            let id = zstd::zstd_safe::get_dict_id_from_frame(&stored)
                .unwrap()
                .get();
            let dictionary: Vec<u8> = conn
                .query_row(
                    "SELECT data FROM dictionaries WHERE id = ?1",
                    [i64::from(id)],
                    |row| row.get(0),
                )
                .unwrap();
            zstd::bulk::Decompressor::with_dictionary(&dictionary)
                .unwrap()
                .decompress(&stored, size)
                .unwrap()
        }
        other => panic!("unknown codec {other}"),
    }
}

/// `invocation_id -> id` of every stored event.
pub fn stored_invocations(db: &Path) -> HashMap<String, i64> {
    let conn = open_db(db);
    let mut statement = conn
        .prepare("SELECT invocation_id, id FROM events WHERE invocation_id IS NOT NULL")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// `PRAGMA integrity_check` of the file.
pub fn integrity(db: &Path) -> String {
    open_db(db)
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The built binary as a child process.

/// `provtrail <args>` run to its end (without `PROVTRAIL_*` from the environment): exit code,
/// standard output and standard error.
pub fn run_provtrail(args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_provtrail"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PROVTRAIL_") {
            command.env_remove(name);
        }
    }
    let output = command.args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `provtrail serve` running as a child process; killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Everything the process wrote to standard error so far.
    pub stderr: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts `provtrail serve <args>` in `cwd` and waits for its banner.
    pub fn start(cwd: &Path, args: &[&str]) -> ServerProcess {
        Self::start_with_env(cwd, args, &[])
    }

    /// [`ServerProcess::start`] with these environment variables (and no other `PROVTRAIL_*`).
    pub fn start_with_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        Self::start_logging(cwd, args, env, "warn")
    }

    /// [`ServerProcess::start_with_env`] with this `--log` filter.
    pub fn start_logging(
        cwd: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &str,
    ) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_provtrail"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PROVTRAIL_") {
                command.env_remove(name);
            }
        }
        command.envs(env.iter().copied());
        let mut child = command
            .arg("--log")
            .arg(log)
            .arg("serve")
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (found, address) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        // Drains standard error for the life of the process, so that it never blocks on a full
        // pipe, and reports the address from the banner.
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let rest = line
                    .split("listening on http://")
                    .nth(1)
                    .or_else(|| line.split("listening on https://").nth(1));
                if let Some(rest) = rest {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    if let (Some(found), Ok(addr)) = (found.take(), addr.parse::<SocketAddr>()) {
                        let _ = found.send(addr);
                    }
                }
                let mut sink = sink.lock().unwrap();
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        let addr = match address.recv_timeout(PATIENCE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server printed no address; its output:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        ServerProcess {
            child,
            addr,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn output(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit by itself, up to [`PATIENCE`].
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("the server did not exit; its output:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A whole POST request with the test token and a Content-Length.
pub fn authorized_post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = post_head(
        path,
        &format!("{}Content-Length: {}\r\n", auth_line(), body.len()),
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// Runs provtrail with standard output a pipe that nobody reads: every write to it fails.
pub fn run_into_closed_pipe(args: &[&str]) -> (i32, String) {
    // The reading end is closed before the command starts: closed after, a quick command could
    // write its whole report into the pipe first, and see no closed pipe at all. (A socket pair
    // fails a write the same way, with EPIPE.)
    let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(reader);
    let child = Command::new(env!("CARGO_BIN_EXE_provtrail"))
        .args(args)
        .stdout(std::os::fd::OwnedFd::from(writer))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A self-signed certificate for `host` and its key, written as PEM files into `dir`: their
/// paths, certificate first.
pub fn self_signed_pem(dir: &Path, host: &str) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}
