//! `provtrail-bench ingest`: the real server on a temporary store, driven over loopback by N
//! connections posting distinct ~1 KB events, next to a bare axum server that reads the body and
//! answers 200, driven by the same client in the same run.
//!
//! Figures:
//! - `baseline.http_echo` and `ingest.durable`: the most events/s each sustains with N connections
//!   (closed loop: each connection sends its next request when the previous one is answered), with
//!   latency quantiles at that load;
//! - `ingest.durable_half_rate`: latency when the durable server is offered half its maximum rate
//!   (open loop, measured from the scheduled send time so that a stall is not hidden);
//! - with `--routes`: `ingest.durable_no_routes` and `ingest.durable_routes` measured in turns,
//!   their ratio (`ratio.durable_routes_vs_durable`), and `routes.drain_after_load`: how long the
//!   outbox takes to empty once the load stops, and `cpu.durable_routes_vs_durable`: the CPU time
//!   per event of each (the routed one charged until its outbox is empty), which is steadier on a
//!   shared machine than events/s.
//!
//! Every closed-loop figure carries `cpu_us_per_event`: the process's CPU time (client and
//! server) per request answered 200.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use provtrail::app::{App, Settings};
use provtrail::config::FileConfig;
use provtrail::server::{RunningServer, ServerConfig};
use provtrail::synth::{Generator, SynthOptions};
use serde_json::json;
use tokio::net::TcpStream;

use crate::measure::{emit, process_cpu_seconds};

/// Arguments of `provtrail-bench ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Also measure the durable server with three routes configured (failures to a webhook on
    /// loopback, events with a ticket id to a second one, every event to a JSON-lines file) in
    /// turns with one without routes, and print both, their ratio, and the time to drain the
    /// outbox after each run.
    #[arg(long)]
    routes: bool,
    /// With --routes: measurements in turns, without and with routes; medians are printed.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Drive an already running server at this address (e.g. 127.0.0.1:8080, token
    /// `bench-token`) instead of starting one; only the closed-loop figure is printed. For profiling
    /// the server on its own.
    #[arg(long, value_name = "ADDR")]
    target: Option<SocketAddr>,
}

const TOKEN: &str = "bench-token";

/// Distinct ~1 KB events: a pool of realistic ones, each sent with a fresh invocation id so that
/// no two requests are duplicates.
struct Events {
    pool: Vec<(String, String)>,
    counter: AtomicU64,
}

impl Events {
    fn new() -> anyhow::Result<Self> {
        let mut generator = Generator::new(&SynthOptions::default());
        let mut pool = Vec::new();
        while pool.len() < 256 {
            let json = generator.next_json();
            // Keep events close to 1 KB, as the figure promises.
            if !(800..=1300).contains(&json.len()) {
                continue;
            }
            let text = String::from_utf8(json)?;
            let marker = "\"invocationId\":\"";
            let start = text
                .find(marker)
                .context("synthetic event without invocationId")?
                + marker.len();
            let end = start
                + text[start..]
                    .find('"')
                    .context("unterminated invocationId")?;
            pool.push((text[..start].to_owned(), text[end..].to_owned()));
        }
        Ok(Events {
            pool,
            counter: AtomicU64::new(0),
        })
    }

    fn next(&self) -> Bytes {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let (head, tail) = &self.pool[(n as usize) % self.pool.len()];
        Bytes::from(format!(
            "{head}bench-{n:016x}-{:08x}{tail}",
            std::process::id()
        ))
    }
}

pub fn run(args: IngestArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: IngestArgs) -> anyhow::Result<()> {
    let events = Arc::new(Events::new()?);
    let duration = Duration::from_secs_f64(args.seconds);
    let connections = args.connections.max(1);
    if let Some(target) = args.target {
        let outcome = closed_loop(target, connections, duration, &events).await?;
        emit(outcome.figure("ingest.external", connections));
        return Ok(());
    }

    // The baseline: a bare axum server that reads the body and answers 200.
    let echo = Router::new().route(
        "/events",
        post(|body: Bytes| async move {
            std::hint::black_box(body.len());
            axum::Json(json!({"status": "accepted"}))
        }),
    );
    let echo_config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ServerConfig::default()
    };
    let echo_server = RunningServer::start(echo, &echo_config, None).await?;
    let cpu = process_cpu_seconds();
    let echo_result = closed_loop(echo_server.local_addr(), connections, duration, &events).await?;
    let echo_cpu = cpu_per_event(cpu, &echo_result);
    echo_server.shutdown().await;
    let mut line = echo_result.figure("baseline.http_echo", connections);
    line["cpu_us_per_event"] = json!(echo_cpu);
    emit(line);

    // The real server on a temporary store.
    let dir = tempfile::tempdir()?;
    let mut config = FileConfig::default();
    config.server.listen = Some("127.0.0.1:0".into());
    config.server.max_concurrent_requests = Some(connections * 4);
    config.store.path = Some(dir.path().join("bench.db"));
    config.ingest.tokens = vec![TOKEN.into()];
    let settings = Settings::from_config(&config)?;
    let app = App::start(&settings).await?;
    let addr = app.server.local_addr();
    let cpu = process_cpu_seconds();
    let durable = closed_loop(addr, connections, duration, &events).await?;
    let mut line = durable.figure("ingest.durable", connections);
    line["cpu_us_per_event"] = json!(cpu_per_event(cpu, &durable));
    emit(line);
    let half = durable.events_per_s / 2.0;
    let paced = open_loop(addr, connections, duration, half, &events).await?;
    let mut line = paced.figure("ingest.durable_half_rate", connections);
    line["offered_per_s"] = json!(half.round());
    emit(line);
    emit(json!({
        "bench": "ratio.durable_vs_echo",
        "connections": connections,
        "ratio": (durable.events_per_s / echo_result.events_per_s * 1000.0).round() / 1000.0,
    }));
    let stored = app.store.counts().await?.events;
    let accepted = durable.ok + paced.ok;
    anyhow::ensure!(
        stored == accepted,
        "{accepted} events were answered 200 but {stored} are stored"
    );
    app.shutdown().await;
    if args.routes {
        with_routes(&config, connections, duration, &events, args.rounds).await?;
    }
    Ok(())
}

/// CPU time of the whole process (server and client) per request answered 200 since `before`,
/// in microseconds, rounded to one decimal.
fn cpu_per_event(before: Option<f64>, outcome: &Outcome) -> Option<f64> {
    let used = process_cpu_seconds()? - before?;
    Some((used * 1e7 / outcome.ok.max(1) as f64).round() / 10.0)
}

/// The routing overhead: two servers on fresh stores, one without routes and one with three,
/// measured in turns (without, with, then the outbox drained) so that a change in the machine's
/// background load affects both alike; the figures are the medians of the rounds.
async fn with_routes(
    base: &FileConfig,
    connections: usize,
    duration: Duration,
    events: &Arc<Events>,
    rounds: usize,
) -> anyhow::Result<()> {
    let receiver = Router::new().route(
        "/hook",
        post(|body: Bytes| async move {
            std::hint::black_box(body.len());
            "ok"
        }),
    );
    let receiver_config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ServerConfig::default()
    };
    let receiver = RunningServer::start(receiver, &receiver_config, None).await?;
    let hook = format!("http://{}/hook", receiver.local_addr());
    let dir = tempfile::tempdir()?;
    let routes = format!(
        r#"
[[routes]]
name = "failures"
filter = '$.accountRequests[?(@.provisioningResult == "FAILED")]'
allow_private = true
[routes.sink]
type = "webhook"
url = "{hook}"

[[routes]]
name = "tickets"
filter = '$.accountRequests[?(@.ticketId)]'
allow_private = true
[routes.sink]
type = "webhook"
url = "{hook}"

[[routes]]
name = "archive"
[routes.sink]
type = "file"
path = "{}"
"#,
        dir.path().join("archive.jsonl").display()
    );
    let mut plain = base.clone();
    plain.store.path = Some(dir.path().join("bench-plain.db"));
    let mut routed = base.clone();
    routed.store.path = Some(dir.path().join("bench-routes.db"));
    routed.routes = FileConfig::parse(&routes, std::path::Path::new("bench-routes.toml"))?.routes;
    let plain = App::start(&Settings::from_config(&plain)?).await?;
    let routed = App::start(&Settings::from_config(&routed)?).await?;
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut drains = Vec::new();
    // CPU per accepted event, client included (the same for both): for the routed server it
    // counts from the start of the load until its last delivery is done, so that deliveries
    // made after the load are charged to it too.
    let mut cpu_without = Vec::new();
    let mut cpu_with = Vec::new();
    for _ in 0..rounds.max(1) {
        let cpu = process_cpu_seconds();
        let outcome = closed_loop(plain.server.local_addr(), connections, duration, events).await?;
        cpu_without.extend(cpu_per_event(cpu, &outcome));
        without.push(outcome);
        let cpu = process_cpu_seconds();
        let outcome =
            closed_loop(routed.server.local_addr(), connections, duration, events).await?;
        // The load has stopped: how long until every delivery is done?
        let stopped = Instant::now();
        loop {
            let counts = routed.store.route_counts().await?;
            if counts.iter().all(|c| c.pending == 0) || stopped.elapsed() > Duration::from_secs(300)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drains.push(stopped.elapsed().as_secs_f64());
        cpu_with.extend(cpu_per_event(cpu, &outcome));
        with.push(outcome);
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let rate = |outcomes: &[Outcome]| median(outcomes.iter().map(|o| o.events_per_s).collect());
    let (plain_rate, routed_rate) = (rate(&without), rate(&with));
    let pick = |outcomes: &[Outcome], target: f64| {
        outcomes
            .iter()
            .find(|o| o.events_per_s == target)
            .map(|o| o.figure("", connections))
            .unwrap_or_default()
    };
    let mut line = pick(&without, plain_rate);
    line["bench"] = json!("ingest.durable_no_routes");
    line["rounds"] = json!(rounds);
    line["all_events_per_s"] = json!(
        without
            .iter()
            .map(|o| o.events_per_s.round())
            .collect::<Vec<_>>()
    );
    emit(line);
    let mut line = pick(&with, routed_rate);
    line["bench"] = json!("ingest.durable_routes");
    line["routes"] = json!(3);
    line["rounds"] = json!(rounds);
    line["all_events_per_s"] = json!(
        with.iter()
            .map(|o| o.events_per_s.round())
            .collect::<Vec<_>>()
    );
    emit(line);
    emit(json!({
        "bench": "ratio.durable_routes_vs_durable",
        "connections": connections,
        "ratio": (routed_rate / plain_rate * 1000.0).round() / 1000.0,
        "overhead_percent": ((1.0 - routed_rate / plain_rate) * 1000.0).round() / 10.0,
    }));
    if !cpu_without.is_empty() && !cpu_with.is_empty() {
        let (plain_cpu, routed_cpu) = (median(cpu_without.clone()), median(cpu_with.clone()));
        emit(json!({
            "bench": "cpu.durable_routes_vs_durable",
            "connections": connections,
            "cpu_us_per_event_no_routes": cpu_without,
            "cpu_us_per_event_routes": cpu_with,
            "overhead_percent": ((routed_cpu / plain_cpu - 1.0) * 1000.0).round() / 10.0,
        }));
    }
    let counts = routed.store.route_counts().await?;
    emit(json!({
        "bench": "routes.drain_after_load",
        "connections": connections,
        "drain_s": drains.iter().map(|d| (d * 100.0).round() / 100.0).collect::<Vec<_>>(),
        "per_route": counts.iter().map(|c| json!({
            "route": c.route, "matched": c.matched, "delivered": c.delivered,
            "pending": c.pending, "dead": c.dead,
        })).collect::<Vec<_>>(),
    }));
    plain.shutdown().await;
    routed.shutdown().await;
    receiver.shutdown().await;
    Ok(())
}

#[derive(Debug, Default)]
struct Outcome {
    ok: u64,
    failed: u64,
    latencies_ms: Vec<f64>,
    events_per_s: f64,
}

impl Outcome {
    fn quantile(&self, q: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies_ms.len() - 1) as f64 * q).round() as usize;
        self.latencies_ms[index]
    }

    fn figure(&self, bench: &str, connections: usize) -> serde_json::Value {
        json!({
            "bench": bench,
            "connections": connections,
            "events_per_s": self.events_per_s.round(),
            "p50_ms": (self.quantile(0.5) * 100.0).round() / 100.0,
            "p99_ms": (self.quantile(0.99) * 100.0).round() / 100.0,
            "requests": self.ok + self.failed,
            "failed": self.failed,
        })
    }

    fn merge(parts: Vec<Outcome>, elapsed: Duration) -> Outcome {
        let mut all = Outcome::default();
        for part in parts {
            all.ok += part.ok;
            all.failed += part.failed;
            all.latencies_ms.extend(part.latencies_ms);
        }
        all.latencies_ms.sort_by(f64::total_cmp);
        all.events_per_s = all.ok as f64 / elapsed.as_secs_f64();
        all
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn send(sender: &mut Sender, addr: SocketAddr, body: Bytes) -> anyhow::Result<bool> {
    sender.ready().await?;
    let request = Request::post("/events")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(body))?;
    let response = sender.send_request(request).await?;
    let ok = response.status().is_success();
    response.into_body().collect().await?;
    Ok(ok)
}

/// Each connection sends as fast as it is answered, for `duration`.
async fn closed_loop(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    events: &Arc<Events>,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            let mut sender = connect(addr).await?;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let ok = send(&mut sender, addr, events.next())
                    .await
                    .unwrap_or(false);
                outcome
                    .latencies_ms
                    .push(sent.elapsed().as_secs_f64() * 1000.0);
                if ok {
                    outcome.ok += 1;
                } else {
                    outcome.failed += 1;
                    sender = connect(addr).await?;
                }
            }
            anyhow::Ok(outcome)
        }));
    }
    let mut parts = Vec::new();
    for task in tasks {
        parts.push(task.await??);
    }
    Ok(Outcome::merge(parts, started.elapsed()))
}

/// Offers `rate` events/s spread over the connections, each on a fixed schedule; latency counts
/// from the scheduled time.
async fn open_loop(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    rate: f64,
    events: &Arc<Events>,
) -> anyhow::Result<Outcome> {
    let per_connection = Duration::from_secs_f64(connections as f64 / rate.max(1.0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..connections {
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            let mut sender = connect(addr).await?;
            // Stagger the connections over one interval.
            let offset = per_connection.mul_f64(index as f64 / connections as f64);
            let mut scheduled = started + offset;
            while scheduled < started + duration {
                tokio::time::sleep_until(scheduled.into()).await;
                let ok = send(&mut sender, addr, events.next())
                    .await
                    .unwrap_or(false);
                outcome
                    .latencies_ms
                    .push(scheduled.elapsed().as_secs_f64() * 1000.0);
                if ok {
                    outcome.ok += 1;
                } else {
                    outcome.failed += 1;
                    sender = connect(addr).await?;
                }
                scheduled += per_connection;
            }
            anyhow::Ok(outcome)
        }));
    }
    let mut parts = Vec::new();
    for task in tasks {
        parts.push(task.await??);
    }
    Ok(Outcome::merge(parts, started.elapsed()))
}
