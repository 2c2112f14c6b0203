//! Body templates rendered in child processes (`provtrail render-worker`), so that a rendering
//! that takes too much memory or time ends a child, never the server.
//!
//! MiniJinja's fuel bounds most of what a rendering makes, but not all of it: a list that
//! repeats one long string (`[text] * n`) costs a slot per item, and joining it (`| join`,
//! `| tojson`, `~`) makes the whole text before the engine charges for it. A child renders with
//! a limit on its memory (`RLIMIT_DATA`): past it, an allocation fails and the child ends. The
//! parent kills a child whose rendering takes longer than its time limit. Either way the
//! rendering fails with an error that says why, and the next one starts a new child.
//!
//! Without [`isolate`] (the library in tests, or a program that does not call it), templates
//! render in the calling process, within the memory budget of `template`.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError, mpsc};
use std::time::Duration;

use super::sink::Delivery;
use super::template::{BodyTemplate, RenderError};

/// The hidden subcommand that runs a child.
pub const WORKER_COMMAND: &str = "render-worker";

/// How renderings are isolated.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The program to run as a child: the `provtrail` binary, given [`WORKER_COMMAND`].
    pub program: PathBuf,
    /// The memory a child may take (`RLIMIT_DATA`), beyond what it holds when it starts.
    pub memory: u64,
    /// The longest one rendering may take before its child is killed.
    pub time: Duration,
    /// Children at most, each rendering one template at a time.
    pub workers: usize,
}

impl Isolation {
    /// The server's settings: 1 GiB and 10 s per rendering, two children.
    pub fn new(program: PathBuf) -> Self {
        Isolation {
            program,
            memory: 1 << 30,
            time: Duration::from_secs(10),
            workers: 2,
        }
    }
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Renders every template of this process in children from now on. Returns false when the
/// process had already chosen (the first choice holds).
pub fn isolate(isolation: Isolation) -> bool {
    POOL.set(Pool::new(isolation)).is_ok()
}

/// The children, when renderings are isolated.
pub(crate) fn pool() -> Option<&'static Pool> {
    POOL.get()
}

/// Children waiting for work, and how many there are in all.
pub(crate) struct Pool {
    isolation: Isolation,
    workers: Mutex<Workers>,
    returned: Condvar,
}

struct Workers {
    idle: Vec<Worker>,
    /// Idle or rendering.
    running: usize,
}

/// One child: its input, and its answers as a thread reads them.
struct Worker {
    child: Child,
    input: BufWriter<ChildStdin>,
    answers: mpsc::Receiver<io::Result<Answer>>,
}

/// What a child answers for one rendering.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Body(String),
    Failed(String),
}

impl Pool {
    fn new(isolation: Isolation) -> Self {
        Pool {
            isolation,
            workers: Mutex::new(Workers {
                idle: Vec::new(),
                running: 0,
            }),
            returned: Condvar::new(),
        }
    }

    /// Renders `template` for the delivery in a child; blocks until it answers.
    pub(crate) fn render(
        &self,
        template: &str,
        delivery: &Delivery<'_>,
    ) -> Result<String, RenderError> {
        let mut worker = match self.take() {
            Ok(worker) => worker,
            Err(err) => {
                self.discarded();
                return Err(RenderError {
                    message: format!("could not start a process to render the template: {err}"),
                    retry: true,
                });
            }
        };
        let sent = write_request(&mut worker.input, template, delivery)
            .and_then(|()| worker.input.flush());
        let answer = match sent {
            Ok(()) => worker.answers.recv_timeout(self.isolation.time),
            // The child ended: what it says, or how it ended, is read below.
            Err(_) => worker
                .answers
                .recv_timeout(Duration::from_secs(1))
                .or(Err(mpsc::RecvTimeoutError::Disconnected)),
        };
        match answer {
            Ok(Ok(Answer::Body(body))) => {
                self.give_back(worker);
                Ok(body)
            }
            Ok(Ok(Answer::Failed(message))) => {
                self.give_back(worker);
                Err(RenderError::of_template(message))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // The template is to blame only when the child spent the time rendering (a
                // quarter of it at least, on a busy machine): one that was stopped (SIGSTOP, a
                // frozen container) or starved of the processor has not rendered, and the
                // delivery is tried again.
                let worked = cpu_time(worker.child.id());
                let _ = end(worker);
                self.discarded();
                let limit = self.isolation.time;
                match worked {
                    Some(worked) if worked < limit / 4 => Err(RenderError {
                        message: format!(
                            "the process rendering the template did not answer within {} s, \
                             having run for {:.1} s of it",
                            limit.as_secs_f64(),
                            worked.as_secs_f64()
                        ),
                        retry: true,
                    }),
                    _ => Err(RenderError::of_template(format!(
                        "template error: the rendering took longer than {} s and was stopped",
                        limit.as_secs_f64()
                    ))),
                }
            }
            Ok(Err(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = end(worker);
                self.discarded();
                let shown = status
                    .as_ref()
                    .map_or_else(|err| err.to_string(), |status| status.to_string());
                // An allocation past the limit aborts the child; any other end (killed from
                // outside, as a service's stop signals every process of it) says nothing of
                // the template, which is tried again.
                let aborted = rustix::process::Signal::ABORT.as_raw();
                if status.is_ok_and(|status| status.signal() == Some(aborted)) {
                    Err(RenderError::of_template(format!(
                        "template error: the rendering ended without a body ({shown}): a \
                         template that makes more text for this event than {} MiB of memory \
                         holds, most likely",
                        self.isolation.memory >> 20
                    )))
                } else {
                    Err(RenderError {
                        message: format!(
                            "the process rendering the template ended before it answered \
                             ({shown})"
                        ),
                        retry: true,
                    })
                }
            }
        }
    }

    /// An idle child, a new one when fewer than the most are running, or else the first one
    /// given back.
    fn take(&self) -> io::Result<Worker> {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(mut worker) = workers.idle.pop() {
                // One that ended while idle (killed from outside) is replaced, not given a
                // delivery to fail.
                if matches!(worker.child.try_wait(), Ok(None)) {
                    return Ok(worker);
                }
                let _ = worker.child.wait();
                workers.running -= 1;
                continue;
            }
            if workers.running < self.isolation.workers.max(1) {
                workers.running += 1;
                drop(workers);
                return self.spawn();
            }
            workers = self
                .returned
                .wait(workers)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn give_back(&self, worker: Worker) {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        workers.idle.push(worker);
        self.returned.notify_one();
    }

    /// A child ended (or never started): another may be started in its place.
    fn discarded(&self) {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        workers.running -= 1;
        self.returned.notify_one();
    }

    fn spawn(&self) -> io::Result<Worker> {
        use std::os::unix::process::CommandExt as _;
        let mut child = Command::new(&self.isolation.program)
            .arg(WORKER_COMMAND)
            .arg(self.isolation.memory.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // A child that runs out of memory says so on its standard error; the parent says it
            // in the delivery's error instead.
            .stderr(Stdio::null())
            .env_remove("PROVTRAIL_LOG_JSON")
            // The allocator's areas reserved as they are used, not ahead of it: reserved, they
            // count toward the limit on the child's memory (1 GiB at its start).
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
            // Its own process group: a Ctrl-C meant for the server does not end a rendering
            // (the child ends when its input does, once the server has).
            .process_group(0)
            .spawn()?;
        let input = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no input"))?;
        let output = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no output"))?;
        let (answers_in, answers) = mpsc::channel();
        std::thread::Builder::new()
            .name("render-answers".into())
            .spawn(move || {
                let mut output = BufReader::new(output);
                loop {
                    let answer = read_answer(&mut output);
                    let failed = answer.is_err();
                    if answers_in.send(answer).is_err() || failed {
                        return;
                    }
                }
            })?;
        Ok(Worker {
            child,
            input: BufWriter::new(input),
            answers,
        })
    }
}

/// The processor time a process has had (user and system), from `/proc`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (name) state …`: the fields after the name's closing parenthesis, of which utime and
    // stime are the 12th and 13th (fields 14 and 15 of the whole line).
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    // In clock ticks of 1/100 s: the value Linux gives user space on every architecture.
    Some(Duration::from_millis((user + system).saturating_mul(10)))
}

/// Ends a child (killed if it still runs) and says how it ended.
fn end(mut worker: Worker) -> io::Result<ExitStatus> {
    drop(worker.input);
    match worker.child.try_wait()? {
        Some(status) => Ok(status),
        None => {
            // Given a moment to end by itself (it may be writing its last words), then killed.
            std::thread::sleep(Duration::from_millis(20));
            if let Some(status) = worker.child.try_wait()? {
                return Ok(status);
            }
            let _ = worker.child.kill();
            worker.child.wait()
        }
    }
}

/// Most bytes of one field of a request or an answer: a bound on what a reader allocates.
const MAX_FIELD: u32 = 1 << 30;

fn write_field(output: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let length = u32::try_from(bytes.len())
        .ok()
        .filter(|length| *length <= MAX_FIELD)
        .ok_or_else(|| io::Error::other("a field too large to send"))?;
    output.write_all(&length.to_le_bytes())?;
    output.write_all(bytes)
}

/// Reads one field; `None` at the end of the input before it.
fn read_field(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut length = [0; 4];
    match input.read_exact(&mut length) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let length = u32::from_le_bytes(length);
    if length > MAX_FIELD {
        return Err(io::Error::other("a field too large"));
    }
    let mut bytes = vec![0; length as usize];
    input.read_exact(&mut bytes)?;
    Ok(Some(bytes))
}

fn read_text(input: &mut impl Read) -> io::Result<String> {
    let bytes = read_field(input)?.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    String::from_utf8(bytes).map_err(io::Error::other)
}

fn read_number<T: std::str::FromStr>(input: &mut impl Read) -> io::Result<T> {
    read_text(input)?
        .parse()
        .map_err(|_| io::Error::other("not a number"))
}

fn write_request(
    output: &mut impl Write,
    template: &str,
    delivery: &Delivery<'_>,
) -> io::Result<()> {
    write_field(output, template.as_bytes())?;
    write_field(output, delivery.delivery_id.to_string().as_bytes())?;
    write_field(output, delivery.route.as_bytes())?;
    write_field(output, delivery.event_id.to_string().as_bytes())?;
    write_field(output, delivery.event_key.as_bytes())?;
    write_field(output, delivery.key.as_bytes())?;
    write_field(output, delivery.attempt.to_string().as_bytes())?;
    write_field(output, delivery.received_at.to_string().as_bytes())?;
    write_field(output, delivery.raw)
}

fn write_answer(output: &mut impl Write, answer: &Answer) -> io::Result<()> {
    let (kind, text) = match answer {
        Answer::Body(body) => (b"body".as_slice(), body),
        Answer::Failed(message) => (b"failed".as_slice(), message),
    };
    write_field(output, kind)?;
    write_field(output, text.as_bytes())?;
    output.flush()
}

fn read_answer(input: &mut impl Read) -> io::Result<Answer> {
    let kind = read_field(input)?.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    let text = read_text(input)?;
    match kind.as_slice() {
        b"body" => Ok(Answer::Body(text)),
        b"failed" => Ok(Answer::Failed(text)),
        _ => Err(io::Error::other("an answer of an unknown kind")),
    }
}

/// Compiled templates a child keeps, by their text: a server has a few.
const TEMPLATES_KEPT: usize = 64;

/// The child's side: renders each request read from `input` and writes its answer to `output`,
/// until the input ends. The caller limits the process's memory first ([`limit_memory`]).
pub fn serve_renderings(input: impl Read, output: impl Write) -> io::Result<()> {
    let mut input = BufReader::new(input);
    let mut output = BufWriter::new(output);
    let mut templates: std::collections::HashMap<String, Result<BodyTemplate, String>> =
        std::collections::HashMap::new();
    loop {
        let Some(template) = read_field(&mut input)? else {
            return Ok(());
        };
        let template = String::from_utf8(template).map_err(io::Error::other)?;
        let delivery_id: i64 = read_number(&mut input)?;
        let route = read_text(&mut input)?;
        let event_id: i64 = read_number(&mut input)?;
        let event_key = read_text(&mut input)?;
        let key = read_text(&mut input)?;
        let attempt: u32 = read_number(&mut input)?;
        let received_at: i64 = read_number(&mut input)?;
        let raw =
            read_field(&mut input)?.ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        if templates.len() >= TEMPLATES_KEPT && !templates.contains_key(&template) {
            templates.clear();
        }
        let compiled = templates
            .entry(template)
            .or_insert_with_key(|source| BodyTemplate::compile(source));
        let answer = match compiled {
            Err(message) => Answer::Failed(message.clone()),
            Ok(compiled) => {
                let event: serde_json::Value =
                    serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
                let delivery = Delivery {
                    delivery_id,
                    route: &route,
                    event_id,
                    event_key: &event_key,
                    key: &key,
                    attempt,
                    received_at,
                    raw: &raw,
                    event: &event,
                };
                match compiled.render_here(&delivery) {
                    Ok(body) => Answer::Body(body),
                    Err(message) => Answer::Failed(message),
                }
            }
        };
        write_answer(&mut output, &answer)?;
    }
}

/// Limits this process's data (its heap and private mappings) to `bytes` beyond what it holds
/// now.
pub fn limit_memory(bytes: u64) -> io::Result<()> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let held = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmData:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        .saturating_mul(1024);
    let limit = held.saturating_add(bytes);
    let maximum = getrlimit(Resource::Data).maximum;
    let limit = maximum.map_or(limit, |maximum| limit.min(maximum));
    setrlimit(
        Resource::Data,
        Rlimit {
            current: Some(limit),
            maximum,
        },
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_read_back_as_written() {
        let raw = br#"{"trackingNumber":"tn-1"}"#;
        let event = serde_json::from_slice(raw).unwrap();
        let delivery = Delivery {
            delivery_id: 7,
            route: "r",
            event_id: 42,
            event_key: "inv-1",
            key: "pt-1",
            attempt: 3,
            received_at: 1_700_000_000_000,
            raw,
            event: &event,
        };
        let mut requests = Vec::new();
        for template in [
            "{{ route }} {{ event_id }} {{ attempt }} {{ event.trackingNumber }} {{ delivery_key }}",
            "{{ unclosed",
        ] {
            write_request(&mut requests, template, &delivery).unwrap();
        }
        let mut answers = Vec::new();
        serve_renderings(requests.as_slice(), &mut answers).unwrap();
        let mut answers = answers.as_slice();
        assert_eq!(
            read_answer(&mut answers).unwrap(),
            Answer::Body("r 42 3 tn-1 pt-1".into())
        );
        match read_answer(&mut answers).unwrap() {
            Answer::Failed(message) => assert!(message.contains("template error"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert!(answers.is_empty());
    }

    /// A pool whose children run `script` (a shell script in a directory of its own).
    fn pool_of(script: &str, time: Duration) -> (tempfile::TempDir, Pool) {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("child");
        std::fs::write(&program, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pool = Pool::new(Isolation {
            program,
            memory: 1 << 20,
            time,
            workers: 1,
        });
        (dir, pool)
    }

    /// A delivery of `{}` to route `r`.
    fn small_delivery(event: &serde_json::Value) -> Delivery<'_> {
        Delivery {
            delivery_id: 1,
            route: "r",
            event_id: 1,
            event_key: "k",
            key: "k",
            attempt: 1,
            received_at: 0,
            raw: b"{}",
            event,
        }
    }

    fn render_in(pool: &Pool) -> Result<String, RenderError> {
        let event = serde_json::Value::Null;
        pool.render("{{ route }}", &small_delivery(&event))
    }

    /// A child that never answers is killed at the time limit, and another started for the
    /// next rendering; so is one that ends without an answer.
    #[test]
    fn a_child_that_does_not_answer_in_time_is_killed_and_replaced() {
        let (dir, pool) = pool_of(
            "echo started >> \"$(dirname \"$0\")/starts\"; exec sleep 30",
            Duration::from_millis(300),
        );
        let started = std::time::Instant::now();
        // A child that never ran (it sleeps) has not rendered: the delivery is tried again.
        let err = render_in(&pool).unwrap_err();
        assert!(err.message.contains("did not answer within 0.3 s"), "{err}");
        assert!(err.retry);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(render_in(&pool).is_err());
        let starts = std::fs::read_to_string(dir.path().join("starts")).unwrap();
        assert_eq!(starts.lines().count(), 2);
        assert_eq!(pool.workers.lock().unwrap().running, 0);

        let (_dir, pool) = pool_of("exit 3", Duration::from_secs(30));
        let err = render_in(&pool).unwrap_err();
        assert!(
            err.message
                .contains("ended before it answered (exit status: 3)")
                && err.retry,
            "{err}"
        );
        assert_eq!(pool.workers.lock().unwrap().running, 0);
        // A program that cannot be started is an error too, and leaves no place taken.
        let pool = Pool::new(Isolation::new("/nonexistent/provtrail".into()));
        let err = render_in(&pool).unwrap_err();
        // Nothing was rendered: the delivery's attempt fails, to be tried again.
        assert!(err.message.contains("could not start a process"), "{err}");
        assert!(err.retry);
        assert_eq!(pool.workers.lock().unwrap().running, 0);
    }

    /// A child that spends its time running (a template that takes too long) is the
    /// template's fault: the delivery fails for good.
    #[test]
    fn a_child_that_runs_past_the_time_limit_fails_the_template() {
        let (_dir, pool) = pool_of("while :; do :; done", Duration::from_secs(2));
        let err = render_in(&pool).unwrap_err();
        assert!(err.message.contains("took longer than 2 s"), "{err}");
        assert!(!err.retry);
        assert!(cpu_time(std::process::id()).is_some());
    }

    #[test]
    fn a_request_cut_short_is_an_error_and_not_a_rendering() {
        let event = serde_json::Value::Null;
        let delivery = small_delivery(&event);
        let mut request = Vec::new();
        write_request(&mut request, "x", &delivery).unwrap();
        request.truncate(request.len() - 1);
        let mut answers = Vec::new();
        assert!(serve_renderings(request.as_slice(), &mut answers).is_err());
        assert!(answers.is_empty());
        // A length past the bound is refused before anything is allocated for it.
        let huge = (MAX_FIELD + 1).to_le_bytes();
        assert!(serve_renderings(huge.as_slice(), &mut answers).is_err());
    }
}
