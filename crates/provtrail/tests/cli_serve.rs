//! `provtrail serve` with no configuration: the token it generates, where it keeps it, when it
//! shows it, and the warning `--no-auth` gives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::*;

/// Waits until the process has written `needle` to standard error.
async fn await_output(server: &ServerProcess, needle: &str) {
    let stderr = server.stderr.clone();
    eventually(&format!("the server to print {needle:?}"), || {
        let stderr = stderr.clone();
        let needle = needle.to_owned();
        async move { stderr.lock().unwrap().contains(&needle) }
    })
    .await;
}

async fn post_with(url: &str, token: Option<&str>, invocation: &str) -> Answer {
    let mut request = client()
        .post(url)
        .header("content-type", "application/json")
        .body(event(invocation));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Answer::read(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_start_generates_a_private_token_shows_it_once_and_it_authenticates() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let db_arg = db.display().to_string();
    let args = ["--db", db_arg.as_str(), "--listen", "127.0.0.1:0"];

    let mut first = ServerProcess::start(dir.path(), &args);
    await_output(&first, "Health: /healthz").await;
    let output = first.output();
    let token = output
        .lines()
        .find_map(|line| line.trim().strip_prefix("Ingest token: "))
        .expect("the generated token is printed")
        .trim()
        .to_owned();
    assert!(token.starts_with("ptk_") && token.len() >= 40, "{token}");

    let token_file = dir.path().join("trail.db.token");
    let kept = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(kept.trim(), token);
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the token file is private: {mode:o}");
    // So is the store: the events name identities and their access.
    for name in [
        "trail.db",
        "trail.db-wal",
        "trail.db-shm",
        "trail.db.search",
    ] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} is private: {mode:o}");
    }

    let url = first.url("/events");
    assert_eq!(
        post_with(&url, Some(&token), "inv-zero-1").await.status,
        200
    );
    assert_eq!(post_with(&url, None, "inv-zero-2").await.status, 401);
    assert_eq!(
        post_with(&url, Some("ptk_wrong"), "inv-zero-3")
            .await
            .status,
        401
    );
    first.terminate();
    let first = tokio::task::spawn_blocking(move || {
        assert!(first.wait_exit().success());
        first
    })
    .await
    .unwrap();
    drop(first);

    // The second start uses the kept token and does not show it again; a token file others
    // could read is made private, with a warning.
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let second = ServerProcess::start(dir.path(), &args);
    await_output(&second, "Health: /healthz").await;
    let output = second.output();
    assert!(output.contains("could be read by other users"), "{output}");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "made private again: {mode:o}");
    assert!(
        !output.contains(&token),
        "the token is shown only once:\n{output}"
    );
    assert!(output.contains("trail.db.token"), "{output}");
    let url = second.url("/events");
    let answer = post_with(&url, Some(&token), "inv-zero-1").await;
    assert_eq!(
        answer.outcome().0,
        "duplicate",
        "the same store, the same token"
    );
    assert_eq!(
        post_with(&url, Some(&token), "inv-zero-4").await.status,
        200
    );
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_token_means_no_token_file_is_generated() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("trail.db");
    let db_arg = db.display().to_string();
    let server = ServerProcess::start(
        dir.path(),
        &[
            "--db",
            &db_arg,
            "--listen",
            "127.0.0.1:0",
            "--ingest-token",
            TOKEN,
        ],
    );
    await_output(&server, "Health: /healthz").await;
    assert!(!dir.path().join("trail.db.token").exists());
    assert!(
        !server.output().contains(TOKEN),
        "a configured secret is never printed"
    );
    let url = server.url("/events");
    assert_eq!(
        post_with(&url, Some(TOKEN), "inv-configured").await.status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_already_past_its_size_cap_is_said_at_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capped.db");
    let db_arg = db.display().to_string();
    let args = [
        "--db",
        &db_arg,
        "--listen",
        "127.0.0.1:0",
        "--ingest-token",
        TOKEN,
    ];
    let mut server = ServerProcess::start(dir.path(), &args);
    await_output(&server, "Health: /healthz").await;
    // Stopped cleanly, so that the schema is in the database file rather than its log.
    server.terminate();
    assert!(server.wait_exit().success());
    // The store with its schema is larger than 64 KiB (the smallest cap taken).
    let capped = [&args[..], &["--max-db-size", "64KiB"]].concat();
    let server = ServerProcess::start(dir.path(), &capped);
    await_output(&server, "at or above --max-db-size").await;
    // Not writable from the start, before anything was tried.
    let metrics = text_at(&server.url("/metrics")).await;
    assert!(metrics.contains("provtrail_store_writable 0"), "{metrics}");
    // Readiness asks for room for a few events: there is none to grow into.
    let ready = client().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    // Nor is any event taken, though its pages have room left: the store is over its cap.
    for n in 0..5 {
        let answer = post_with(
            &server.url("/events"),
            Some(TOKEN),
            &format!("inv-over-{n}"),
        )
        .await;
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert!(
            answer.text().contains("over its size limit"),
            "{}",
            answer.text()
        );
    }
    drop(server);
    assert!(stored_invocations(&db).is_empty());
    // With room, no warning.
    let roomy = [&args[..], &["--max-db-size", "100MB"]].concat();
    let server = ServerProcess::start(dir.path(), &roomy);
    await_output(&server, "Health: /healthz").await;
    assert!(
        !server.output().contains("max-db-size"),
        "{}",
        server.output()
    );
    drop(server);
    // A cap below what an empty store takes, on a new database: a full store, not a start that
    // fails halfway through its schema.
    let fresh = dir.path().join("fresh.db").display().to_string();
    let tiny = [
        "--db",
        &fresh,
        "--listen",
        "127.0.0.1:0",
        "--ingest-token",
        TOKEN,
        "--max-db-size",
        "64KiB",
    ];
    let server = ServerProcess::start(dir.path(), &tiny);
    await_output(&server, "at or above --max-db-size").await;
    let ready = client().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503, "{}", server.output());
    drop(server);
    // With --log-json the warning is a log record like the others: a collector reading JSON
    // lines would drop a line of text.
    let json = [&["--log-json", "serve"][..], &tiny[..]].concat();
    assert_json_lines(&stderr_lines_until(dir.path(), &json, "max-db-size"));
    // So are the demo's own lines.
    let demo = [
        "--log-json",
        "demo",
        "--events",
        "5",
        "--db",
        "demo.db",
        "--listen",
        "127.0.0.1:0",
    ];
    assert_json_lines(&stderr_lines_until(dir.path(), &demo, "synthetic events"));
}

/// Every line of `said` that is not empty is a JSON log record.
fn assert_json_lines(said: &[String]) {
    for line in said.iter().filter(|line| !line.is_empty()) {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {line:?} in {said:?}"));
        assert!(record.get("level").is_some(), "{line}");
    }
}

/// `provtrail <args>` started in `cwd`, with the lines it writes to standard error as they come.
fn spawn_reading_stderr(
    cwd: &Path,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead as _;
    let mut child = bare_command(cwd, args).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, received)
}

/// The lines from `received` up to the first that holds `wanted`, waiting at most 30 s; `Err`
/// with what came when it never does.
fn lines_until(
    received: &std::sync::mpsc::Receiver<String>,
    wanted: &str,
) -> Result<Vec<String>, Vec<String>> {
    let mut said = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !said.iter().any(|line: &String| line.contains(wanted)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => said.push(line),
            Err(_) => return Err(said),
        }
    }
    Ok(said)
}

/// The lines `provtrail <args>`, run in `cwd`, writes to standard error up to the first that
/// holds `wanted`, after which the process is killed.
fn stderr_lines_until(cwd: &Path, args: &[&str], wanted: &str) -> Vec<String> {
    let (mut child, received) = spawn_reading_stderr(cwd, args);
    let said = lines_until(&received, wanted);
    let _ = child.kill();
    let _ = child.wait();
    let mut said = said.unwrap_or_else(|said| panic!("`{wanted}` never said: {said:?}"));
    said.extend(received.try_iter());
    said
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_prints_a_loud_warning_and_accepts_events_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("open.db");
    let db_arg = db.display().to_string();
    let server = ServerProcess::start(
        dir.path(),
        &["--db", &db_arg, "--listen", "127.0.0.1:0", "--no-auth"],
    );
    await_output(&server, "WARNING: use it for local tests only").await;
    let output = server.output();
    assert!(output.contains("WARNING: --no-auth is on"), "{output}");
    assert!(!dir.path().join("open.db.token").exists());
    let url = server.url("/events");
    assert_eq!(post_with(&url, None, "inv-open").await.status, 200);
}

/// `provtrail serve` under the open-file limits `limits` (a `ulimit` argument), with a short
/// connection cap; returns the limits the running process has and what it said.
fn serve_under_ulimit(limits: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("provtrail.toml"),
        "[server]\nmax_connections = 2000\n",
    )
    .unwrap();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit {limits} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_provtrail"))
        .args(["--log", "warn", "serve", "--listen", "127.0.0.1:0"])
        .args(["--ingest-token", "file-limit-token"])
        .env_remove("PROVTRAIL_CONFIG")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut said = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if line.contains("listening on") {
            break;
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    (open_files, said)
}

#[cfg(target_os = "linux")]
#[test]
fn the_open_file_limit_is_raised_to_fit_the_connection_cap_or_the_start_says_why_not() {
    // A soft limit of 300 under a hard one of 5,000: raised to the cap and room beside it.
    let (open_files, said) = serve_under_ulimit("-S -n 300 && ulimit -H -n 5000");
    let soft: u64 = open_files
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(soft, 2000 + 256, "{open_files}\n{said}");
    assert!(!said.contains("WARNING"), "{said}");
    // A hard limit of 300: the start says what that means and what to do.
    let (open_files, said) = serve_under_ulimit("-n 300");
    assert!(open_files.contains(" 300 "), "{open_files}");
    assert!(
        said.contains("may open at most 300 files (ulimit -n), so it can keep about 44 connections open, not the 2000"),
        "{said}"
    );
}

/// Runs `provtrail serve` with `args` in `dir`, expecting it to refuse to start: its exit status
/// and standard error (a start that serves instead fails the test after 30 s).
/// `provtrail <args>` in `dir`, with none of the environment's tokens or configuration, its
/// standard error piped.
fn bare_command(dir: &Path, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_provtrail"));
    command
        .args(args)
        .env_remove("PROVTRAIL_INGEST_TOKEN")
        .env_remove("PROVTRAIL_READ_TOKEN")
        .env_remove("PROVTRAIL_CONFIG")
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    command
}

fn refused_start(dir: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = bare_command(dir, &["--log", "warn", "serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("provtrail serve {args:?} started");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status, stderr)
}

#[test]
fn a_token_file_of_several_lines_fails_the_start_instead_of_refusing_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("two.db").display().to_string();
    std::fs::write(dir.path().join("two.db.token"), "ptk_first\nptk_second\n").unwrap();
    let (status, stderr) = refused_start(dir.path(), &["--db", &db]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("more than one token"), "{stderr}");
}

#[test]
fn a_generated_token_is_never_written_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("linked.db").display().to_string();
    // A link where the token goes, leading to a file that is not there yet (somewhere others
    // could read it): following it would hand them the secret.
    let elsewhere = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("linked.db.token")).unwrap();
    let (status, stderr) = refused_start(dir.path(), &["--db", &db]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("linked.db.token") && stderr.contains("not a regular file"),
        "{stderr}"
    );
    assert!(!elsewhere.exists(), "nothing was written through the link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_token_may_not_be_given_to_another_role_and_an_empty_one_is_made_private() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("roles.db").display().to_string();
    // Empty token files others could read: the generated tokens written there are private.
    for file in ["roles.db.token", "roles.db.read-token"] {
        let path = dir.path().join(file);
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut server = ServerProcess::start(dir.path(), &["--db", &db, "--listen", "127.0.0.1:0"]);
    await_output(&server, "Health: /healthz").await;
    server.terminate();
    assert!(server.wait_exit().success());
    for file in ["roles.db.token", "roles.db.read-token"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}: {mode:o}");
    }
    // The kept read token given as an ingest token: every reader could then post events.
    let read_token = std::fs::read_to_string(dir.path().join("roles.db.read-token")).unwrap();
    let (status, stderr) = refused_start(
        dir.path(),
        &["--db", &db, "--ingest-token", read_token.trim()],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("must not also be an ingest token"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(read_token.trim()),
        "the token is not printed"
    );
    // `config check` refuses what `serve` refuses, the kept token included.
    let config = dir.path().join("roles.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = {:?}\n[ingest]\ntokens = [{:?}]\n",
            db,
            read_token.trim()
        ),
    )
    .unwrap();
    // The file as a path, or as `--config` as every other command takes it.
    for args in [
        vec!["config", "check", config.to_str().unwrap()],
        vec!["config", "check", "--config", config.to_str().unwrap()],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_provtrail"))
            .args(&args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("must not also be an ingest token"),
            "{stderr}"
        );
        assert!(!stderr.contains(read_token.trim()), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_listed_in_the_environment_are_trimmed_and_the_file_s_no_auth_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("provtrail.toml");
    std::fs::write(&config, "[ingest]\nno_auth = true\n").unwrap();
    let db = dir.path().join("env.db").display().to_string();
    let config_arg = config.display().to_string();
    let server = ServerProcess::start_with_env(
        dir.path(),
        &[
            "--config",
            &config_arg,
            "--db",
            &db,
            "--listen",
            "127.0.0.1:0",
        ],
        &[
            ("PROVTRAIL_NO_AUTH", "false"),
            ("PROVTRAIL_INGEST_TOKEN", "ptk_rotated_old, ptk_rotated_new"),
        ],
    );
    await_output(&server, "Health: /healthz").await;
    let url = server.url("/events");
    for (token, n) in [("ptk_rotated_old", 1), ("ptk_rotated_new", 2)] {
        let answer = post_with(&url, Some(token), &format!("inv-env-{n}")).await;
        assert_eq!(answer.status, 200, "{token}");
    }
    assert_eq!(post_with(&url, None, "inv-env-3").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_and_key_may_come_from_different_places() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    // The key in the file, the certificate in the environment (a secret store's path, say).
    std::fs::write(
        dir.path().join("halves.toml"),
        "[server]\ntls_key = \"key.pem\"\n",
    )
    .unwrap();
    let db = dir.path().join("halves.db").display().to_string();
    let args = [
        "--config",
        "halves.toml",
        "--db",
        &db,
        "--listen",
        "127.0.0.1:0",
        "--ingest-token",
        TOKEN,
    ];
    let mut server =
        ServerProcess::start_with_env(dir.path(), &args, &[("PROVTRAIL_TLS_CERT", "cert.pem")]);
    await_output(&server, "listening on https://").await;
    server.terminate();
    assert!(server.wait_exit().success());
    // Half of it alone is refused, naming what is missing.
    let (status, stderr) = refused_start(dir.path(), &["--config", "halves.toml", "--db", &db]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tls_cert"), "{stderr}");
}

#[test]
fn a_database_path_the_store_cannot_use_is_named_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("x.db");
    let (status, stderr) = refused_start(dir.path(), &["--db", missing.to_str().unwrap()]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    std::fs::create_dir(dir.path().join("a-dir")).unwrap();
    let (status, stderr) = refused_start(dir.path(), &["--db", "a-dir"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a directory"), "{stderr}");
    // No token files were left behind for either.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("a-dir")]);

    // A start that cannot listen takes back the tokens it generated: kept, they would never be
    // shown (the next start says "the one kept beside the database").
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = bare_command(
        dir.path(),
        &[
            "--log", "warn", "serve", "--listen", &address, "--db", "busy.db",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(!dir.path().join("busy.db.token").exists());
    assert!(!dir.path().join("busy.db.read-token").exists());
    // Nor a database: the port is tried before the store is made.
    assert!(!dir.path().join("busy.db").exists());
    assert!(!dir.path().join("busy.db.search").exists());

    // A certificate and key that do not fit: refused before the store is made too.
    let one = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), one.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        other.signing_key.serialize_pem(),
    )
    .unwrap();
    let (status, stderr) = refused_tls_start(dir.path(), "cert.pem", "key.pem");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("key.pem is not the private key of the certificate in cert.pem"),
        "{stderr}"
    );
    assert!(!dir.path().join("tls.db").exists(), "{stderr}");
    // The server's own certificate after another in the file: the order is what is wrong.
    std::fs::write(
        dir.path().join("reversed.pem"),
        format!("{}{}", one.cert.pem(), other.cert.pem()),
    )
    .unwrap();
    let (status, stderr) = refused_tls_start(dir.path(), "reversed.pem", "key.pem");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("key.pem is the key of certificate 2 in reversed.pem")
            && stderr.contains("must come first"),
        "{stderr}"
    );
    // An encrypted key is named as such, with how to decrypt it.
    std::fs::write(
        dir.path().join("locked.pem"),
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n\
         -----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let (status, stderr) = refused_tls_start(dir.path(), "cert.pem", "locked.pem");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("locked.pem holds an encrypted private key")
            && stderr.contains("openssl pkey"),
        "{stderr}"
    );
    assert!(!dir.path().join("tls.db").exists(), "{stderr}");
    // A key on a curve TLS here cannot sign with (P-521, made for this test alone) is said to
    // be of the wrong kind, not the wrong key.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for name in ["p521-test-only.crt", "p521-test-only.key"] {
        std::fs::copy(data.join(name), dir.path().join(name)).unwrap();
    }
    let (status, stderr) =
        refused_tls_start(dir.path(), "p521-test-only.crt", "p521-test-only.key");
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is of a kind or size TLS here cannot sign with")
            && stderr.contains("P-521"),
        "{stderr}"
    );
    assert!(!dir.path().join("tls.db").exists(), "{stderr}");
}

#[test]
fn a_setting_that_cannot_be_used_names_the_flag_or_variable_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = refused_start(dir.path(), &["--max-db-size", "lots"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("store.max_size is not valid")
            && stderr.contains("(that value comes from the command line's --max-db-size)"),
        "{stderr}"
    );
    let output = bare_command(
        dir.path(),
        &["--log", "warn", "serve", "--listen", "127.0.0.1:0"],
    )
    .env("PROVTRAIL_MAX_DB_SIZE", "lots")
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("(that value comes from the environment's PROVTRAIL_MAX_DB_SIZE)"),
        "{stderr}"
    );
    assert!(!dir.path().join("provtrail.db").exists());
    // A file the environment names that cannot be used: the variable is named too.
    for (variable, value) in [
        ("PROVTRAIL_CONFIG", "no-such.toml"),
        ("PROVTRAIL_DB", "no-such-directory/x.db"),
    ] {
        let output = bare_command(
            dir.path(),
            &["--log", "warn", "serve", "--listen", "127.0.0.1:0"],
        )
        .env(variable, value)
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(value)
                && stderr.contains(&format!(
                    "(that file is named by the environment's {variable})"
                )),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_opened_through_a_symbolic_link_keeps_everything_beside_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = ServerProcess::start(dir.path(), &["--listen", "127.0.0.1:0", "--db", "a.db"]);
    await_output(&first, "Health: /healthz").await;
    first.terminate();
    assert!(first.wait_exit().success());
    let token = std::fs::read_to_string(dir.path().join("a.db.token")).unwrap();

    std::os::unix::fs::symlink("a.db", dir.path().join("link.db")).unwrap();
    let mut again =
        ServerProcess::start(dir.path(), &["--listen", "127.0.0.1:0", "--db", "link.db"]);
    await_output(&again, "Health: /healthz").await;
    assert!(!again.output().contains("A new ingest token was generated"));
    let url = again.url("/events");
    assert_eq!(
        post_with(&url, Some(token.trim()), "inv-link").await.status,
        200
    );
    again.terminate();
    assert!(again.wait_exit().success());
    for beside_the_link in [
        "link.db.token",
        "link.db.read-token",
        "link.db.search",
        "link.db.lock",
    ] {
        assert!(
            !dir.path().join(beside_the_link).exists(),
            "{beside_the_link}"
        );
    }

    // A link that leads nowhere yet: the database made through it is private.
    std::os::unix::fs::symlink("fresh.db", dir.path().join("new.db")).unwrap();
    let mut made = ServerProcess::start(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--db",
            "new.db",
            "--ingest-token",
            TOKEN,
        ],
    );
    made.terminate();
    assert!(made.wait_exit().success());
    let mode = std::fs::metadata(dir.path().join("fresh.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // A start that fails after taking the lock (no room for its token) takes back what it made.
    std::fs::create_dir(dir.path().join("f.db.read-token")).unwrap();
    let (status, stderr) = refused_start(dir.path(), &["--db", "f.db"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(!dir.path().join("f.db.lock").exists(), "{stderr}");
    assert!(!dir.path().join("f.db.token").exists(), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_store_is_refused_and_names_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--db",
        "one.db",
        "--ingest-token",
        TOKEN,
    ];
    let mut first = ServerProcess::start(dir.path(), &args);
    let (status, stderr) = refused_start(dir.path(), &["--db", "one.db", "--ingest-token", TOKEN]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another provtrail server is already using one.db (process {})",
            first.child.id()
        )),
        "{stderr}"
    );
    // Another name for the same database is the same store.
    std::os::unix::fs::symlink("one.db", dir.path().join("alias.db")).unwrap();
    let (status, stderr) =
        refused_start(dir.path(), &["--db", "alias.db", "--ingest-token", TOKEN]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another provtrail server is already using /")
            && stderr.contains("/one.db (process "),
        "{stderr}"
    );
    // A second hard link is refused outright: SQLite would keep a log for each name.
    std::fs::hard_link(dir.path().join("one.db"), dir.path().join("hard.db")).unwrap();
    let (status, stderr) = refused_start(dir.path(), &["--db", "hard.db", "--ingest-token", TOKEN]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the database has 2 hard links"), "{stderr}");
    std::fs::remove_file(dir.path().join("hard.db")).unwrap();
    let mode = std::fs::metadata(dir.path().join("one.db.lock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    // The first still serves; once it stops, the store is free again (also after a SIGKILL,
    // whose lock the kernel releases).
    let url = format!("http://{}/events", first.addr);
    assert_eq!(post_with(&url, Some(TOKEN), "inv-one").await.status, 200);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let mut second = ServerProcess::start(dir.path(), &args);
    let url = format!("http://{}/events", second.addr);
    assert_eq!(
        post_with(&url, Some(TOKEN), "inv-one").await.outcome().0,
        "duplicate"
    );
    second.terminate();
    assert!(second.wait_exit().success());
}

#[test]
fn json_logs_say_the_banner_as_events_and_never_write_a_generated_token() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, received) = spawn_reading_stderr(
        dir.path(),
        &[
            "--log-json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            "json.db",
        ],
    );
    let mut said = match lines_until(&received, "read_token_file") {
        Ok(said) => said,
        Err(said) => {
            let _ = child.kill();
            panic!("no banner in the log: {said:?}");
        }
    };
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    said.extend(received.try_iter());
    let ingest = std::fs::read_to_string(dir.path().join("json.db.token")).unwrap();
    let read = std::fs::read_to_string(dir.path().join("json.db.read-token")).unwrap();
    for line in &said {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON log line ({err}): {line}"));
        assert!(event["fields"]["message"].is_string(), "{line}");
        assert!(
            !line.contains(ingest.trim()) && !line.contains(read.trim()),
            "{line}"
        );
    }
    assert!(
        said.iter().any(|line| line.contains("\"stopped\"")),
        "{said:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_short_enough_to_guess_is_said_at_the_start_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let db_arg = dir.path().join("short.db").display().to_string();
    let server = ServerProcess::start(
        dir.path(),
        &[
            "--db",
            &db_arg,
            "--listen",
            "127.0.0.1:0",
            "--ingest-token",
            TOKEN,
            "--read-token",
            "r1x",
        ],
    );
    await_output(&server, "read.tokens is shorter than 16 characters").await;
    let output = server.output();
    assert!(!output.contains("ingest.tokens is shorter"), "{output}");
    assert!(!output.contains("r1x"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_lists_the_routes_it_took_with_their_secrets_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("provtrail.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[store]
path = "{db}"
[[routes]]
name = "failures"
filter = '$.accountRequests[?(@.provisioningResult == "FAILED")]'
[routes.sink]
type = "webhook"
url = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/s3cr3tPathT0ken1234567890"
[[routes]]
name = "archive"
[routes.sink]
type = "file"
path = "{archive}"
"#,
            db = dir.path().join("trail.db").display(),
            archive = dir.path().join("archive.jsonl").display()
        ),
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let mut server = ServerProcess::start(dir.path(), &["--config", config_arg.as_str()]);
    await_output(&server, "Routes (2):").await;
    await_output(&server, "archive: file").await;
    let output = server.output();
    assert!(
        output.contains(
            r#"failures: webhook to POST https://hooks.slack.com/…; filter $.accountRequests[?(@.provisioningResult == "FAILED")]"#
        ),
        "{output}"
    );
    assert!(output.contains("; every event"), "{output}");
    assert!(!output.contains("s3cr3tPathT0ken"), "{output}");
    server.kill();
}

/// A start with this certificate and key that is refused: its status and standard error.
fn refused_tls_start(dir: &Path, cert: &str, key: &str) -> (std::process::ExitStatus, String) {
    refused_start(
        dir,
        &[
            "--db",
            "tls.db",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--ingest-token",
            TOKEN,
        ],
    )
}

/// Standard error closed under a running server (the process reading it died): the server
/// goes on answering, logs into the void, and shuts down on SIGTERM as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_standard_error_is_closed_goes_on_and_stops_cleanly() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quiet.db");
    let db_arg = db.display().to_string();
    let mut child = bare_command(
        dir.path(),
        &[
            "serve",
            "--db",
            &db_arg,
            "--listen",
            "127.0.0.1:0",
            "--no-auth",
        ],
    )
    .spawn()
    .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut url = None;
    let mut line = String::new();
    while url.is_none() {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no banner");
        url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://") && word.ends_with("/events"))
            .map(str::to_owned);
    }
    drop(stderr);
    let url = url.unwrap();
    // Answered after the close, with log lines (a refusal is logged) written to nobody.
    assert_eq!(post_with(&url, None, "inv-quiet").await.status, 200);
    let bad = client()
        .post(&url)
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 415);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// A generated ingest token that stops being accepted is said: when credentials are configured
/// beside the file that holds it, and when its file is gone from a store that already exists
/// (its subscription still sends the old one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_token_no_longer_accepted_is_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    let listen = ["--listen", "127.0.0.1:0", "--db", "kept.db"];
    let mut first = ServerProcess::start(dir.path(), &listen);
    await_output(&first, "Health: /healthz").await;
    first.terminate();
    assert!(first.wait_exit().success());
    assert!(
        !first.output().contains("was missing"),
        "{}",
        first.output()
    );

    let configured = [
        &listen[..],
        &["--ingest-token", "configured-token-0123456789"],
    ]
    .concat();
    let mut second = ServerProcess::start(dir.path(), &configured);
    await_output(&second, "Health: /healthz").await;
    second.terminate();
    assert!(second.wait_exit().success());
    assert!(
        second
            .output()
            .contains("kept.db.token holds an ingest token that is not accepted now"),
        "{}",
        second.output()
    );

    std::fs::remove_file(dir.path().join("kept.db.token")).unwrap();
    let mut third = ServerProcess::start(dir.path(), &listen);
    await_output(&third, "Health: /healthz").await;
    third.terminate();
    assert!(third.wait_exit().success());
    assert!(
        third.output().contains(
            "kept.db.token was missing: a new ingest token was generated for a store that \
             already exists"
        ),
        "{}",
        third.output()
    );
}

/// Over TLS 1.3 a client may send its request with the end of its handshake and leave at once
/// (a reset): the server writes nothing after the client's handshake (no resumption tickets),
/// so that no failed write ends the connection with the request unread. Every event is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_that_sends_its_event_and_resets_at_once_has_it_kept() {
    use tokio::io::AsyncWriteExt as _;
    use tokio_rustls::rustls;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    let db = dir.path().join("tls13.db");
    let db_arg = db.display().to_string();
    let args = [
        "--db",
        &db_arg,
        "--listen",
        "127.0.0.1:0",
        "--ingest-token",
        TOKEN,
        "--tls-cert",
        "cert.pem",
        "--tls-key",
        "key.pem",
    ];
    let mut server = ServerProcess::start(dir.path(), &args);
    await_output(&server, "listening on https://").await;
    let addr = server.addr;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    const EVENTS: usize = 15;
    for n in 0..EVENTS {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let body = event(&format!("inv-tls13-{n}"));
        let mut request = format!(
            "POST /events HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {TOKEN}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        tls.write_all(&request).await.unwrap();
        tls.flush().await.unwrap();
        let (tcp, _) = tls.into_inner();
        tcp.set_zero_linger().unwrap();
        drop(tcp);
    }
    let stored = || stored_invocations(&db).len();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while stored() < EVENTS && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(stored(), EVENTS, "{}", server.output());
    server.terminate();
    assert!(server.wait_exit().success());
}
