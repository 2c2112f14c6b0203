//! Delivery workers: one loop per route takes due deliveries, attempts them under the route's
//! concurrency limit and timeout, and records the results through the store's writer.
//!
//! Where deliveries come from: the writer hands each route's worker the deliveries of newly
//! stored events as soon as they are committed (an [`OutboxFeed`]), so that a busy route does not
//! read back from the database what was just written. Everything else (a backlog from before a
//! restart, retries coming due, replays, deliveries the feed had no room for) is read from the
//! outbox when due: at start, when the store says deliveries were added without being handed
//! over, and every [`POLL`]. A delivery handed over is kept out of those reads until its attempt
//! starts, so that no delivery is attempted twice at once.
//!
//! At least once: a delivery is claimed in memory only; its row stays `pending` until the result
//! of an attempt is committed, and the claim is released only then. A process that dies with
//! deliveries in flight leaves them pending, and they are attempted again after the restart. A
//! receiver may therefore see a delivery twice (it deduplicates on `Idempotency-Key` /
//! `Nats-Msg-Id`), but never zero times. Deliveries are not ordered: they run concurrently and
//! retry independently (ISC does not keep events in order either).
//!
//! A sink that is down: every failed attempt schedules its delivery's next attempt with
//! exponential backoff and full jitter. On top of that, after [`BREAKER_THRESHOLD`] failures in a
//! row the route pauses (a breaker) and then sends a single probe at a time until one succeeds,
//! so that a day-long outage costs a few attempts per backoff period instead of one per pending
//! delivery. Deliveries that wait behind the breaker are not attempted and use none of their
//! retry budget; once the sink answers, they are all due and drain at full concurrency.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::sink::{Delivery, Sent, SinkError, delivery_key, event_key};
use super::{Route, Routes};
use crate::metrics::{Metrics, RouteLabels};
use crate::store::{
    AttemptResult, Millis, NextStep, OutboxFeed, OutboxItem, OutboxWrite, SharedStore,
};

/// How often a route looks for due deliveries when nothing wakes it sooner (retries coming due,
/// replays written by another process).
const POLL: Duration = Duration::from_millis(500);

/// How often a paused route looks for deliveries past its age limit.
const EXPIRY_CHECK: Duration = Duration::from_secs(10);

/// Failures in a row after which a route pauses.
pub const BREAKER_THRESHOLD: u32 = 3;

/// Deliveries a route takes from its feed ahead of starting them; more wait in the feed's queue.
const MAX_FRESH: usize = 1_024;

/// Deliveries the writer may queue for a route's worker; beyond that they are read when due.
const FEED_CAPACITY: usize = 4_096;

/// Bytes of event bodies a route's feed and its queue of deliveries not started may hold;
/// beyond that the deliveries are read when due (see [`OutboxFeed::held_bytes`]).
const FEED_MAX_BYTES: usize = 64 << 20;

/// Most attempt results written in one outbox job.
const MAX_RESULTS_PER_WRITE: usize = 1_000;

/// How long the recorder gathers attempt results before it writes them. Each write rides along
/// in one of the writer's group commits and dirties the outbox's latest pages; results written a
/// few at a time (a webhook route answers one delivery per attempt) would dirty and log the same
/// pages again in every commit. A delivery stays claimed until its result is written, so the
/// wait delays only the record, never a delivery.
const RECORD_GATHER: Duration = Duration::from_millis(50);

/// How long a write of delivery results may wait for the store before no delivery starts.
const RECORD_STALL: Duration = Duration::from_millis(500);

/// How often the store's refusal of delivery results is said again while it lasts.
const REFUSED_RESULTS_REMINDER: Duration = Duration::from_secs(60);

/// Deliveries of a route that may have been attempted and not yet recorded. An attempt frees
/// its place in the route's concurrency as soon as the sink has answered, so that recording
/// does not hold deliveries back; this bounds what waits for the store, should it be slow or
/// down.
const MAX_UNRECORDED: usize = 8_192;

fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Threads of the delivery runtime.
const DELIVERY_THREADS: usize = 2;

/// The running workers of every route.
#[derive(Debug)]
pub struct Dispatcher {
    /// Where the workers, their attempts and the recorder run.
    runtime: DeliveryRuntime,
    stop: watch::Sender<bool>,
    /// Set near the end of the shutdown's grace: attempts still waiting for their sink end then,
    /// recorded as interrupted.
    cut_short: watch::Sender<bool>,
    routes: Vec<JoinHandle<()>>,
    recorder: JoinHandle<()>,
    gauges: JoinHandle<()>,
}

impl Dispatcher {
    /// Starts one worker loop per route.
    pub fn start(routes: Arc<Routes>, store: SharedStore, metrics: Arc<Metrics>) -> Dispatcher {
        let runtime = DeliveryRuntime::start();
        let spawner = runtime.handle();
        let (stop, stopped) = watch::channel(false);
        let (cut_short, cut_short_signal) = watch::channel(false);
        let (results, receiver) = mpsc::unbounded_channel();
        let failing = Arc::new(AtomicBool::new(false));
        let counting = Arc::new(tokio::sync::Mutex::new(()));
        let recorder = spawner.spawn(record_results(
            store.clone(),
            receiver,
            stopped.clone(),
            Held {
                failing: failing.clone(),
                metrics: metrics.clone(),
            },
            counting.clone(),
        ));
        let recorder_handle = Recorder { results, failing };
        let mut tasks = Vec::new();
        for route in routes.iter() {
            metrics.routes.register(&route.name, route.sink.kind());
            let worker = RouteWorker {
                route: route.clone(),
                store: store.clone(),
                labels: metrics.routes.labels(&route.name),
                metrics: metrics.clone(),
                recorder: recorder_handle.clone(),
                redactor: routes.redactor().clone(),
                claimed: Arc::default(),
                breaker: Arc::default(),
                done: Arc::new(Notify::new()),
                permits: Arc::new(Semaphore::new(route.concurrency)),
                unrecorded: Arc::new(Semaphore::new(MAX_UNRECORDED)),
                cut_short: cut_short_signal.clone(),
            };
            let (sender, feed) = mpsc::channel(FEED_CAPACITY);
            let handed: Arc<Mutex<HashSet<i64>>> = Arc::default();
            let overflowed = Arc::new(Notify::new());
            let held_bytes = Arc::new(AtomicUsize::new(0));
            store.feed_outbox(
                &route.name,
                OutboxFeed {
                    sender,
                    handed: handed.clone(),
                    overflowed: overflowed.clone(),
                    held_bytes: held_bytes.clone(),
                    max_bytes: FEED_MAX_BYTES,
                },
            );
            let feed = Feed {
                items: feed,
                handed,
                overflowed,
                held_bytes,
            };
            tasks.push(spawner.spawn(worker.run(feed, stopped.clone())));
        }
        drop(recorder_handle);
        let gauges = spawner.spawn(refresh_gauges(routes, store, metrics, stopped, counting));
        Dispatcher {
            runtime,
            stop,
            cut_short,
            routes: tasks,
            recorder,
            gauges,
        }
    }

    /// Stops taking new deliveries, gives those in flight up to `grace` to finish and be
    /// recorded, and returns. An attempt whose sink has not answered near the end of the grace
    /// is cut short and recorded as interrupted (the sink may have received it); its delivery
    /// stays pending and is attempted again on the next start.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let began = tokio::time::Instant::now();
        let deadline = began + grace;
        // What is left after the cut is for the interrupted attempts' records.
        let cut_at = deadline - (grace / 2).min(INTERRUPTED_RECORD_TIME);
        let cut_short = self.cut_short;
        let cutter = tokio::spawn(async move {
            tokio::time::sleep_until(cut_at).await;
            let _ = cut_short.send(true);
            // Held until the shutdown is over: a dropped sender would read as a cut.
            std::future::pending::<()>().await;
        });
        for task in self.routes {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
        let abort = self.recorder.abort_handle();
        if tokio::time::timeout_at(deadline, self.recorder)
            .await
            .is_err()
        {
            abort.abort();
        }
        self.gauges.abort();
        cutter.abort();
        // Whatever is left on the delivery threads (a gauge refresh, a sink's connection) goes.
        drop(self.runtime);
    }
}

/// The runtime that delivers: its own threads, background threads
/// ([`crate::become_background_thread`]).
///
/// Deliveries may lag behind ingest: an event is safe once stored, and its deliveries can wait.
/// On a machine whose cores are all busy, a burst of events is taken at full speed and delivered
/// behind it.
#[derive(Debug)]
struct DeliveryRuntime {
    /// None when a runtime of its own could not be built: the caller's is used then.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl DeliveryRuntime {
    /// Must be called from within a runtime, which is the fallback.
    fn start() -> DeliveryRuntime {
        let built = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(DELIVERY_THREADS)
            .thread_name("provtrail-deliver")
            .on_thread_start(crate::become_background_thread)
            .enable_all()
            .build();
        match built {
            Ok(runtime) => DeliveryRuntime {
                handle: runtime.handle().clone(),
                runtime: Some(runtime),
            },
            Err(err) => {
                tracing::warn!(error = %err,
                    "cannot start the delivery threads; delivering on the server's");
                DeliveryRuntime {
                    runtime: None,
                    handle: tokio::runtime::Handle::current(),
                }
            }
        }
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for DeliveryRuntime {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which an async caller may not do; by the
        // time the dispatcher is dropped its tasks are done or given up.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Sends attempt results to the recording task and waits until they are committed.
#[derive(Debug, Clone)]
struct Recorder {
    results: mpsc::UnboundedSender<(Vec<AttemptResult>, oneshot::Sender<()>)>,
    /// Set while the store refuses the results (full, at its size cap and out of the room kept
    /// for them, read-only): no route starts a delivery then, since one made and not recorded
    /// is made again after a restart.
    failing: Arc<AtomicBool>,
}

impl Recorder {
    /// Whether the store refuses attempt results now.
    fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// True once the results (those of one attempt) are committed.
    async fn record(&self, results: Vec<AttemptResult>) -> bool {
        let (done, committed) = oneshot::channel();
        if self.results.send((results, done)).is_err() {
            return false;
        }
        committed.await.is_ok()
    }
}

/// Whether deliveries are held because the store refuses their results: the recorder's flag
/// and its gauge.
struct Held {
    failing: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Held {
    fn set(&self, held: bool) {
        self.failing.store(held, Ordering::Relaxed);
        self.metrics.routes.held.set(i64::from(held));
    }
}

/// Counts recorded results in the route counters. Counted once committed, not when the sink
/// answered: a delivery whose result is not recorded is made again, and would be counted twice.
fn count_recorded(metrics: &Metrics, results: &[AttemptResult]) {
    for result in results {
        let labels = metrics.routes.labels(&result.route);
        match result.next {
            NextStep::Delivered => metrics.routes.delivered.get_or_create(&labels).inc(),
            NextStep::RetryAt(_) => metrics.routes.failed_attempts.get_or_create(&labels).inc(),
            NextStep::Dead => {
                metrics.routes.failed_attempts.get_or_create(&labels).inc();
                metrics.routes.dead.get_or_create(&labels).inc()
            }
        };
    }
}

/// At most how long before the end of a shutdown's grace the attempts still in flight are cut
/// short, so that their records (interrupted) are written before the store closes.
const INTERRUPTED_RECORD_TIME: Duration = Duration::from_secs(2);

/// Writes attempt results in batches: whatever finished within [`RECORD_GATHER`] of the first
/// result, or while the previous write was being committed, goes into the next one (at most
/// [`MAX_RESULTS_PER_WRITE`]; at once when stopping).
///
/// `counting` is held from a write to the counting of its results, so that the gauges' refresh,
/// which raises the counters to the store's totals, never sees a total that holds results not
/// yet counted here (they would be counted twice).
async fn record_results(
    store: SharedStore,
    mut receiver: mpsc::UnboundedReceiver<(Vec<AttemptResult>, oneshot::Sender<()>)>,
    mut stopped: watch::Receiver<bool>,
    held: Held,
    counting: Arc<tokio::sync::Mutex<()>>,
) {
    // When the store began refusing results, and when that was last said.
    let mut refused_since: Option<tokio::time::Instant> = None;
    let mut said_at = tokio::time::Instant::now();
    let mut batch: Vec<(Vec<AttemptResult>, oneshot::Sender<()>)> = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut count = first.0.len();
        batch.push(first);
        let gathered_until = tokio::time::Instant::now() + RECORD_GATHER;
        while count < MAX_RESULTS_PER_WRITE && !*stopped.borrow() {
            let next = match receiver.try_recv() {
                Ok(next) => next,
                Err(_) => tokio::select! {
                    next = receiver.recv() => match next {
                        Some(next) => next,
                        None => break,
                    },
                    () = tokio::time::sleep_until(gathered_until) => break,
                    _ = stopped.changed() => break,
                },
            };
            count += next.0.len();
            batch.push(next);
        }
        loop {
            let results: Vec<AttemptResult> = batch
                .iter()
                .flat_map(|(results, _)| results.iter().cloned())
                .collect();
            let counted = counting.lock().await;
            let write = store.outbox_write(OutboxWrite::Results(results.clone()));
            tokio::pin!(write);
            let written = tokio::select! {
                written = &mut write => written,
                () = tokio::time::sleep(RECORD_STALL) => {
                    // Waiting for the store (a lock another process holds, a disk that
                    // stalls): no delivery starts until it answers, or every delivery made
                    // meanwhile would wait for a record it may never get.
                    held.set(true);
                    write.await
                }
            };
            if written.is_ok() {
                count_recorded(&held.metrics, &results);
            }
            drop(counted);
            match written {
                Ok(_) => {
                    for (_, done) in batch.drain(..) {
                        let _ = done.send(());
                    }
                    held.set(false);
                    if let Some(since) = refused_since.take().filter(|_| !*stopped.borrow()) {
                        tracing::info!(
                            refused_for_s = since.elapsed().as_secs(),
                            "delivery results are recorded again; deliveries go on"
                        );
                    }
                    break;
                }
                Err(err) => {
                    if *stopped.borrow() {
                        // Shutting down: the deliveries stay pending and are attempted again on
                        // the next start. Said once, however many batches fail so.
                        if refused_since.is_none() {
                            tracing::warn!(error = %err, results = batch.len(),
                                "cannot record delivery results while stopping; they will be \
                                 retried");
                        }
                        refused_since.get_or_insert_with(tokio::time::Instant::now);
                        held.set(true);
                        batch.clear();
                        break;
                    }
                    // Said when it starts, then once a minute: it is tried every second.
                    let now = tokio::time::Instant::now();
                    if refused_since.is_none() || now >= said_at + REFUSED_RESULTS_REMINDER {
                        tracing::error!(error = %err, results = count,
                            "cannot record delivery results: no route starts a delivery until \
                             they can be (deliveries made and not recorded are made again after \
                             a restart); trying again every second");
                        said_at = now;
                    }
                    refused_since.get_or_insert(now);
                    held.set(true);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Raises a counter to `total` when it is behind (never lowers it).
fn catch_up(counter: &prometheus_client::metrics::counter::Counter, total: u64) {
    let counted = counter.get();
    if total > counted {
        counter.inc_by(total - counted);
    }
}

async fn refresh_gauges(
    routes: Arc<Routes>,
    store: SharedStore,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
    counting: Arc<tokio::sync::Mutex<()>>,
) {
    let mut warned = false;
    loop {
        // Without the lock (a write of results under way) the counters wait for the next round.
        let counters_free = counting.try_lock().ok();
        if let Ok(counts) = store.route_counts().await {
            for route in routes.iter() {
                let labels = metrics.routes.labels(&route.name);
                metrics
                    .routes
                    .paused
                    .get_or_create(&labels)
                    .set(i64::from(route.status.paused_since().is_some()));
                let Some(counts) = counts.iter().find(|counts| counts.route == route.name) else {
                    metrics.routes.pending.get_or_create(&labels).set(0);
                    continue;
                };
                metrics
                    .routes
                    .pending
                    .get_or_create(&labels)
                    .set(i64::try_from(counts.pending).unwrap_or(i64::MAX));
                // The counters follow the store's totals, which also hold what other processes
                // wrote to it (`provtrail replay`, `deadletter retry`): counted only here, a
                // replay's deliveries would be delivered but never matched. Between refreshes
                // this process's own counts keep them current.
                catch_up(
                    &metrics.routes.matched.get_or_create(&labels),
                    counts.matched,
                );
                if counters_free.is_none() {
                    continue;
                }
                catch_up(
                    &metrics.routes.delivered.get_or_create(&labels),
                    counts.delivered,
                );
                catch_up(
                    &metrics.routes.failed_attempts.get_or_create(&labels),
                    counts.failed_attempts,
                );
                catch_up(
                    &metrics.routes.dead.get_or_create(&labels),
                    counts.dead_ever,
                );
            }
            if !warned {
                warned = true;
                for counts in counts.iter().filter(|c| c.pending > 0) {
                    if routes.get(&counts.route).is_none() {
                        tracing::warn!(route = %counts.route, pending = counts.pending,
                            "deliveries are pending for a route that is no longer configured; \
                             they wait until it is configured again");
                    }
                }
            }
        }
        drop(counters_free);
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Pauses a route whose sink keeps failing.
#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    /// The deliveries the sink refused with an error answer of its own (a 500) since it last
    /// took one: each counts as a failure once.
    refused: HashSet<i64>,
}

/// Deliveries [`Breaker::refused`] remembers; past it, every refusal counts.
const BREAKER_REFUSALS_REMEMBERED: usize = 10_000;

impl Breaker {
    fn succeeded(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.refused.clear();
    }

    /// Whether delivery `id`'s refusal is the first since the sink last took a delivery.
    fn first_refusal_of(&mut self, id: i64) -> bool {
        self.refused.len() >= BREAKER_REFUSALS_REMEMBERED || self.refused.insert(id)
    }

    /// Counts a failure; `retry_after` (the target's `Retry-After`) pauses the route at once
    /// for at least that long, since a target that asks for a pause asks it of every delivery.
    fn failed(&mut self, route: &Route, retry_after: Option<Duration>) {
        self.failures = self.failures.saturating_add(1);
        if let Some(wait) = retry_after {
            let now = Instant::now();
            let until = now
                .checked_add(wait)
                .unwrap_or_else(|| now + Duration::from_secs(86_400));
            if self.open_until.is_none_or(|open| open < until) {
                tracing::info!(route = %route.name,
                    pause = %humantime::format_duration(Duration::from_secs(wait.as_secs().max(1))),
                    "the route's sink asked to wait (Retry-After); pausing, then probing with one \
                     delivery");
                self.open_until = Some(until);
            }
            return;
        }
        if self.failures >= BREAKER_THRESHOLD {
            // Equal jitter: at least half the cap, so that the pause is a pause.
            let cap = route.policy.cap(self.failures - BREAKER_THRESHOLD + 1);
            let pause = cap / 2 + (cap / 2).mul_f64(rand::random::<f64>());
            if self.open_until.is_none() {
                tracing::warn!(route = %route.name, failures = self.failures,
                    pause = %humantime::format_duration(Duration::from_millis(pause.as_millis() as u64)),
                    "the route's sink keeps failing; pausing, then probing with one delivery");
            }
            // A pause past what the clock can hold (a policy of centuries) is no pause at all
            // in practice: a day is as good and cannot overflow.
            let now = Instant::now();
            self.open_until = Some(
                now.checked_add(pause)
                    .unwrap_or_else(|| now + Duration::from_secs(86_400)),
            );
        }
    }

    /// True while the route is paused or probing: an attempt started now is a probe.
    fn probing(&self) -> bool {
        self.open_until.is_some()
    }

    /// What may start now: attempts and deliveries per attempt (`batch` when the sink answers,
    /// 1 for a probe), and until when nothing may.
    fn allowance(&self, free: usize, in_flight: usize, batch: usize) -> Allowance {
        match self.open_until {
            None => Allowance {
                attempts: free,
                per_attempt: batch,
                paused_until: None,
            },
            Some(until) if Instant::now() < until => Allowance {
                attempts: 0,
                per_attempt: 1,
                paused_until: Some(until),
            },
            // Half open: one probe of one delivery at a time.
            Some(_) => Allowance {
                attempts: usize::from(in_flight == 0).min(free),
                per_attempt: 1,
                paused_until: None,
            },
        }
    }
}

/// What a route may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Allowance {
    attempts: usize,
    per_attempt: usize,
    paused_until: Option<Instant>,
}

struct RouteWorker {
    route: Arc<Route>,
    store: SharedStore,
    metrics: Arc<Metrics>,
    labels: RouteLabels,
    recorder: Recorder,
    redactor: super::Redactor,
    /// Deliveries being attempted now.
    claimed: Arc<Mutex<HashSet<i64>>>,
    breaker: Arc<Mutex<Breaker>>,
    /// Signalled when an attempt finishes or is recorded (a place is free again).
    done: Arc<Notify>,
    /// The route's concurrency: one per attempt until its sink answers.
    permits: Arc<Semaphore>,
    /// One per delivery attempted and not yet recorded ([`MAX_UNRECORDED`]).
    unrecorded: Arc<Semaphore>,
    /// True once attempts in flight are to end (see [`Dispatcher::shutdown`]).
    cut_short: watch::Receiver<bool>,
}

/// The worker's end of its [`OutboxFeed`].
struct Feed {
    items: mpsc::Receiver<OutboxItem>,
    handed: Arc<Mutex<HashSet<i64>>>,
    overflowed: Arc<Notify>,
    /// See [`OutboxFeed::held_bytes`]: taken away as deliveries from the feed start (or are
    /// dropped).
    held_bytes: Arc<AtomicUsize>,
}

impl RouteWorker {
    async fn run(self, feed: Feed, mut stopped: watch::Receiver<bool>) {
        let Feed {
            items: mut feed,
            handed,
            overflowed,
            held_bytes,
        } = feed;
        let mut changes = self.store.outbox_changes();
        let mut watching = true;
        let mut feeding = true;
        let mut tasks = JoinSet::new();
        let mut failing_reads = false;
        let batch = self.route.sink.batch_limit().max(1);
        // Deliveries taken from the feed and not started yet (still in `handed`, so that reads
        // leave them alone).
        let mut fresh: VecDeque<OutboxItem> = VecDeque::new();
        // Whether to read due deliveries from the database: at the start (a backlog from before),
        // when woken for deliveries that were not handed over, on the poll timer (retries coming
        // due), and as long as reads come back full.
        let mut read_due = true;
        // While the feed keeps every place busy, every other round that has a free place leaves
        // the first of them to the deliveries due in the store (retries, replays, dead letters
        // sent back), which would otherwise wait for the flow of new events to stop.
        let mut store_first = false;
        let mut next_poll = Instant::now() + POLL;
        let mut next_expiry = Instant::now();
        // Deliveries trying since before this went to the dead letters unattempted: those handed
        // over by the feed are dropped rather than attempted.
        let mut expired_before: Millis = Millis::MIN;
        let is_live = |item: &OutboxItem, expired_before: Millis| {
            let live = item.due_since >= expired_before;
            if !live {
                if let Ok(mut handed) = handed.lock() {
                    handed.remove(&item.id);
                }
                held_bytes.fetch_sub(item.raw.len(), Ordering::AcqRel);
            }
            live
        };
        loop {
            if *stopped.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            if Instant::now() >= next_poll {
                read_due = true;
                next_poll = Instant::now() + POLL;
                if tasks.is_empty() && fresh.is_empty() {
                    self.close_breaker_when_idle().await;
                }
                if Instant::now() >= next_expiry {
                    next_expiry = Instant::now() + EXPIRY_CHECK;
                    if let Some(cutoff) = self.expire_while_paused().await {
                        expired_before = expired_before.max(cutoff);
                        fresh.retain(|item| is_live(item, expired_before));
                    }
                }
            }
            let free = self.permits.available_permits();
            let in_flight = self.route.concurrency - free;
            let Allowance {
                attempts,
                per_attempt,
                paused_until,
            } = match self.breaker.lock() {
                Ok(breaker) => breaker.allowance(free, in_flight, batch),
                Err(_) => Allowance {
                    attempts: free,
                    per_attempt: 1,
                    paused_until: None,
                },
            };
            let mut attempts_left = attempts;
            let kept_for_store = usize::from(store_first && read_due && attempts > 0);
            if attempts > 0 && !fresh.is_empty() {
                store_first = !store_first;
            }
            // Fresh deliveries first: they need no read.
            attempts_left -= self.start_fresh(
                &mut tasks,
                &mut fresh,
                &handed,
                &held_bytes,
                per_attempt,
                attempts_left - kept_for_store,
            );
            // Deliveries read now must start, so read no more than may wait for their record
            // (none while the store refuses records).
            let room = if self.recorder.failing() {
                0
            } else {
                self.unrecorded.available_permits()
            };
            if attempts_left > 0 && read_due && room > 0 {
                let exclude: Vec<i64> = {
                    let mut exclude: Vec<i64> = self
                        .claimed
                        .lock()
                        .map(|claimed| claimed.iter().copied().collect())
                        .unwrap_or_default();
                    if let Ok(handed) = handed.lock() {
                        exclude.extend(handed.iter().copied());
                    }
                    exclude
                };
                let wanted = (attempts_left * per_attempt).min(room);
                match self
                    .store
                    .outbox_due(&self.route.name, now_millis(), wanted, exclude)
                    .await
                {
                    Ok(items) => {
                        failing_reads = false;
                        read_due = items.len() >= wanted;
                        // A delivery handed to the feed after the read's exclusions were taken
                        // is the feed's: reading it is how it would be attempted twice.
                        let items: Vec<OutboxItem> = match handed.lock() {
                            Ok(handed) => items
                                .into_iter()
                                .filter(|item| !handed.contains(&item.id))
                                .collect(),
                            Err(_) => items,
                        };
                        // As few attempts as the due deliveries fill: a backlog goes out in full
                        // batches, a trickle one delivery per attempt.
                        // Those left over when the places run out stay pending for a later read.
                        let mut items = items.into_iter().peekable();
                        while items.peek().is_some() {
                            let take = per_attempt.min(items.len());
                            let Some(places) = self.places(take) else {
                                break;
                            };
                            let chunk: Vec<OutboxItem> = items.by_ref().take(take).collect();
                            self.start(&mut tasks, chunk, places, &handed);
                            attempts_left = attempts_left.saturating_sub(1);
                        }
                    }
                    Err(err) => {
                        if !failing_reads {
                            tracing::warn!(route = %self.route.name, error = %err,
                                "cannot read due deliveries; trying again");
                        }
                        failing_reads = true;
                    }
                }
            }
            // The place kept for the store, when it had nothing due (half open, the one probe
            // allowed may have gone to the store).
            if kept_for_store > 0 && attempts_left > 0 {
                let free = attempts_left.min(kept_for_store);
                self.start_fresh(
                    &mut tasks,
                    &mut fresh,
                    &handed,
                    &held_bytes,
                    per_attempt,
                    free,
                );
            }
            let wake_at = paused_until.map_or(next_poll, |until| until.min(next_poll));
            tokio::select! {
                _ = stopped.changed() => {}
                changed = changes.changed(), if watching => {
                    watching = changed.is_ok();
                    read_due = true;
                }
                item = feed.recv(), if feeding && fresh.len() < MAX_FRESH => match item {
                    Some(item) => {
                        if is_live(&item, expired_before) {
                            fresh.push_back(item);
                        }
                        while fresh.len() < MAX_FRESH {
                            match feed.try_recv() {
                                Ok(item) if is_live(&item, expired_before) => {
                                    fresh.push_back(item)
                                }
                                Ok(_) => {}
                                Err(_) => break,
                            }
                        }
                    }
                    None => feeding = false,
                },
                () = overflowed.notified() => read_due = true,
                () = self.done.notified() => {}
                () = tokio::time::sleep_until(wake_at.into()) => {}
            }
        }
        // Let the attempts in flight finish and be recorded (the dispatcher bounds how long).
        while tasks.join_next().await.is_some() {}
    }

    /// Ends the deliveries past the policy's age limit while the route is paused: each waits
    /// for a probe, and a paused route probes one delivery at a time, so with many pending they
    /// would outlive `max_age` by days (a route that is not paused attempts them as they come
    /// due, and their next failure is their last).
    ///
    /// Returns the time before which the deliveries trying since then went dead, once that is
    /// committed; those the feed handed over and that wait to start must then not start.
    async fn expire_while_paused(&self) -> Option<Millis> {
        let paused = self.breaker.lock().is_ok_and(|breaker| breaker.probing());
        let limit = self.route.policy.age_limit_for_probes()?;
        if !paused {
            return None;
        }
        // Only those being attempted now are left to their attempt.
        let exclude: Vec<i64> = self
            .claimed
            .lock()
            .map(|claimed| claimed.iter().copied().collect())
            .unwrap_or_default();
        let now = now_millis();
        let limit_ms = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
        let due_before = now.saturating_sub(limit_ms);
        let write = OutboxWrite::Expire {
            route: self.route.name.clone(),
            due_before,
            exclude,
            reason: format!(
                "still undelivered after max_age ({}) while the route was paused (its sink \
                 failing, or asking to wait with Retry-After): not retried",
                humantime::format_duration(limit)
            ),
            at: now,
        };
        match self.store.outbox_write(write).await {
            Ok(expired) => {
                if expired > 0 {
                    tracing::warn!(route = %self.route.name, expired,
                        "deliveries past max_age while the route is paused went to the dead \
                         letters");
                }
                Some(due_before)
            }
            Err(err) => {
                tracing::debug!(route = %self.route.name, error = %err,
                    "cannot expire the deliveries past max_age now; trying again later");
                None
            }
        }
    }

    /// Ends a pause that nothing waits behind. A pause holds deliveries back until a probe gets
    /// through; when the last pending delivery went dead instead (its final attempt was also the
    /// failure that paused the route), no probe is ever sent, and the route would be shown
    /// paused (`paused_since`, `provtrail_route_paused`) until some new event matched it. Once
    /// the pause has run out with nothing pending, there is nothing to hold back: the next
    /// delivery is attempted as usual and pauses the route again if the sink still fails.
    async fn close_breaker_when_idle(&self) {
        // A pause that has not run out stays: a sink that asked to be left alone for a while
        // (`Retry-After`) is left alone, also by the next event's delivery.
        let half_open = |breaker: &Breaker| {
            breaker
                .open_until
                .is_some_and(|until| until <= Instant::now())
        };
        if !self.breaker.lock().is_ok_and(|breaker| half_open(&breaker)) {
            return;
        }
        // Any pending delivery at all, whenever it is due. Attempts whose results are not yet
        // written leave their rows pending, so a delivery dying right now counts until it is
        // recorded dead.
        let pending = self
            .store
            .outbox_due(&self.route.name, Millis::MAX, 1, Vec::new())
            .await;
        if !matches!(pending, Ok(items) if items.is_empty()) {
            return;
        }
        if let Ok(mut breaker) = self.breaker.lock() {
            if half_open(&breaker) {
                tracing::info!(route = %self.route.name,
                    "no delivery is pending; the route is no longer paused");
                breaker.succeeded();
                self.route.status.resume();
            }
        }
    }

    /// The places an attempt of `deliveries` deliveries needs: one of the route's concurrency
    /// and one per delivery until it is recorded; None when either is full.
    fn places(&self, deliveries: usize) -> Option<Places> {
        if self.recorder.failing() {
            return None;
        }
        let deliveries = u32::try_from(deliveries).ok().filter(|&n| n > 0)?;
        let unrecorded = self
            .unrecorded
            .clone()
            .try_acquire_many_owned(deliveries)
            .ok()?;
        let attempt = self.permits.clone().try_acquire_owned().ok()?;
        Some(Places {
            attempt,
            unrecorded,
        })
    }

    /// Starts up to `attempts` attempts of deliveries taken from `fresh`, `per_attempt` each;
    /// returns how many started.
    fn start_fresh(
        &self,
        tasks: &mut JoinSet<()>,
        fresh: &mut VecDeque<OutboxItem>,
        handed: &Mutex<HashSet<i64>>,
        held_bytes: &AtomicUsize,
        per_attempt: usize,
        attempts: usize,
    ) -> usize {
        let mut started = 0;
        while started < attempts && !fresh.is_empty() {
            // The places first: a delivery taken from `fresh` must start, or it would stay in
            // `handed`, out of every read.
            let take = per_attempt
                .min(fresh.len())
                .min(self.unrecorded.available_permits());
            let Some(places) = self.places(take) else {
                break;
            };
            let chunk: Vec<OutboxItem> = fresh.drain(..take).collect();
            let bytes: usize = chunk.iter().map(|item| item.raw.len()).sum();
            held_bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.start(tasks, chunk, places, handed);
            started += 1;
        }
        started
    }

    /// Starts one attempt of `items` in `places`: they leave `handed` (if they came from the
    /// feed) and are claimed until their results are committed.
    fn start(
        &self,
        tasks: &mut JoinSet<()>,
        items: Vec<OutboxItem>,
        places: Places,
        handed: &Mutex<HashSet<i64>>,
    ) {
        if let Ok(mut handed) = handed.lock() {
            for item in &items {
                handed.remove(&item.id);
            }
        }
        if let Ok(mut claimed) = self.claimed.lock() {
            claimed.extend(items.iter().map(|item| item.id));
        }
        tasks.spawn(self.attempt(items, places));
    }

    fn attempt(
        &self,
        items: Vec<OutboxItem>,
        places: Places,
    ) -> impl Future<Output = ()> + Send + 'static {
        let route = self.route.clone();
        let recorder = self.recorder.clone();
        let claimed = self.claimed.clone();
        let breaker = self.breaker.clone();
        let done = self.done.clone();
        let metrics = self.metrics.clone();
        let labels = self.labels.clone();
        let redactor = self.redactor.clone();
        let mut cut_short = self.cut_short.clone();
        async move {
            let started_at = now_millis();
            let started = Instant::now();
            let (attempted, cut) = tokio::select! {
                attempted = attempt_batch(&route, &items, &redactor) => (attempted, false),
                Ok(_) = cut_short.wait_for(|cut| *cut) => {
                    let latency_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
                    let now = now_millis();
                    let attempted = items
                        .iter()
                        .map(|item| interrupted(&route, item, started_at, latency_us, now))
                        .collect();
                    (attempted, true)
                }
            };
            // An attempt cut short says nothing of the sink.
            if let Some(mut breaker) = (!cut).then(|| breaker.lock().ok()).flatten() {
                // The sink answers when any delivery went through, or when every one was
                // refused for good (a 4xx is an answer: the sink is up, and those deliveries are
                // dead, not waiting); it is failing when none went through and one failed in a
                // way worth retrying. An error answer of the sink's own (a 500) counts once per
                // delivery while the route runs: one event that a receiver keeps refusing must
                // not pause the route, where a receiver that refuses every event does. Once
                // paused, a failed probe renews the pause, whatever the delivery it tried.
                let refused_for_good = !attempted.is_empty()
                    && attempted
                        .iter()
                        .all(|a| matches!(&a.outcome, Err(err) if err.permanent));
                let probing = breaker.probing();
                let failing = items
                    .iter()
                    .zip(&attempted)
                    .any(|(item, a)| match &a.outcome {
                        Err(err) if err.permanent => false,
                        Err(err) if err.found_sink_down() => true,
                        Err(_) => probing || breaker.first_refusal_of(item.id),
                        Ok(()) => false,
                    });
                if refused_for_good || attempted.iter().any(|a| a.outcome.is_ok()) {
                    breaker.succeeded();
                    route.status.resume();
                } else if failing {
                    let retry_after = attempted
                        .iter()
                        .filter_map(|a| a.outcome.as_ref().err()?.retry_after)
                        .max()
                        .map(|wait| route.policy.honoured_wait(wait));
                    breaker.failed(&route, retry_after);
                    if breaker.probing() {
                        route.status.pause(chrono::Utc::now().timestamp_millis());
                    }
                }
            }
            let mut records = Vec::with_capacity(attempted.len());
            for (item, Attempted { record, .. }) in items.iter().zip(attempted) {
                match record.next {
                    NextStep::Delivered => {
                        metrics
                            .routes
                            .latency
                            .get_or_create(&labels)
                            .observe(record.latency_us as f64 / 1e6);
                    }
                    NextStep::RetryAt(at) => {
                        tracing::debug!(route = %route.name, event_id = item.event_id,
                            attempt = record.attempt, retry_in_ms = at - now_millis(),
                            error = record.error.as_deref().unwrap_or_default(),
                            "delivery failed; will retry");
                    }
                    NextStep::Dead => {
                        tracing::warn!(route = %route.name, event_id = item.event_id,
                            delivery_id = item.id, attempts = record.attempt,
                            error = record.error.as_deref().unwrap_or_default(),
                            "delivery moved to the dead letters");
                    }
                }
                records.push(record);
            }
            // The sink has answered and the breaker knows: the next attempt may start while this
            // one's results wait for the store.
            let Places {
                attempt,
                unrecorded,
            } = places;
            drop(attempt);
            done.notify_one();
            // The bodies are not kept while the results wait for the store (as long as it
            // refuses them): the ids are all that is left to do with.
            let ids: Vec<i64> = items.iter().map(|item| item.id).collect();
            drop(items);
            recorder.record(records).await;
            if let Ok(mut claimed) = claimed.lock() {
                for id in &ids {
                    claimed.remove(id);
                }
            }
            drop(unrecorded);
            done.notify_one();
        }
    }
}

/// What an attempt holds while it runs ([`RouteWorker::places`]).
struct Places {
    attempt: OwnedSemaphorePermit,
    unrecorded: OwnedSemaphorePermit,
}

struct Attempted {
    outcome: Result<(), SinkError>,
    record: AttemptResult,
}

/// One attempt of a batch of deliveries (one delivery for most sinks), and what to record about
/// each.
async fn attempt_batch(
    route: &Route,
    items: &[OutboxItem],
    redactor: &super::Redactor,
) -> Vec<Attempted> {
    let started_at = now_millis();
    let started = Instant::now();
    let keys: Vec<(String, String)> = items
        .iter()
        .map(|item| {
            let event_key = event_key(&item.raw, item.invocation_id.as_deref());
            let key = delivery_key(&event_key, &route.name);
            (event_key, key)
        })
        .collect();
    let parsed: Vec<Result<Value, String>> = items
        .iter()
        .map(|item| {
            if let Some(reason) = &item.unreadable {
                Err(reason.clone())
            } else if route.sink.needs_value() {
                serde_json::from_slice::<Value>(&item.raw)
                    .map_err(|err| format!("the stored event is not JSON: {err}"))
            } else {
                Ok(Value::Null)
            }
        })
        .collect();
    // A stored event that is not JSON, or whose body cannot be read back, fails for good without
    // reaching the sink.
    let deliveries: Vec<Delivery<'_>> = items
        .iter()
        .zip(&keys)
        .zip(&parsed)
        .filter_map(|((item, (event_key, key)), event)| {
            Some(Delivery {
                delivery_id: item.id,
                route: &route.name,
                event_id: item.event_id,
                event_key,
                key,
                attempt: item.attempts.saturating_add(1),
                received_at: item.received_at,
                raw: &item.raw,
                event: event.as_ref().ok()?,
            })
        })
        .collect();
    let mut sent = if deliveries.is_empty() {
        Vec::new()
    } else {
        match tokio::time::timeout(route.timeout, route.sink.deliver_batch(&deliveries)).await {
            Ok(results) => results,
            Err(_) => {
                let timed_out = SinkError::transient(format!(
                    "timed out after {}",
                    humantime::format_duration(route.timeout)
                ));
                vec![Err(timed_out); deliveries.len()]
            }
        }
    };
    // A sink that answers for fewer deliveries than it was given has not taken the rest.
    sent.resize_with(deliveries.len(), || {
        Err(SinkError::transient(
            "the sink did not answer for this delivery",
        ))
    });
    let latency_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
    let now = now_millis();
    let mut sent = sent.into_iter();
    items
        .iter()
        .zip(parsed)
        .map(|(item, event)| {
            let outcome = match event {
                Err(message) => Err(SinkError::permanent(message)),
                Ok(_) => sent.next().unwrap_or_else(|| {
                    Err(SinkError::transient(
                        "the sink did not answer for this delivery",
                    ))
                }),
            };
            settle(route, item, started_at, latency_us, now, outcome, redactor)
        })
        .collect()
}

/// What to record about one delivery's attempt, and when to try again.
#[allow(clippy::too_many_arguments)]
/// The record of an attempt cut short by a graceful stop ([`Dispatcher::shutdown`]): the sink
/// may have received it, so it is recorded; it says nothing of the sink or of the delivery, so
/// it uses none of the delivery's budget, ends nothing, and the delivery is due again at once
/// (at the next start).
fn interrupted(
    route: &Route,
    item: &OutboxItem,
    started_at: Millis,
    latency_us: i64,
    now: Millis,
) -> Attempted {
    const WHY: &str = "interrupted: the server shut down before the sink answered (it may have \
                       received the delivery); attempted again at the next start";
    Attempted {
        outcome: Err(SinkError::transient(WHY)),
        record: AttemptResult {
            delivery_id: item.id,
            route: route.name.clone(),
            attempt: item.attempts.saturating_add(1),
            started_at,
            latency_us,
            status: None,
            error: Some(WHY.to_owned()),
            next: NextStep::RetryAt(now),
            uncharged: true,
        },
    }
}

fn settle(
    route: &Route,
    item: &OutboxItem,
    started_at: Millis,
    latency_us: i64,
    now: Millis,

    outcome: Result<Sent, SinkError>,
    redactor: &super::Redactor,
) -> Attempted {
    let attempt = item.attempts.saturating_add(1);
    let mut uncharged = false;
    let (next, status, error, outcome) = match outcome {
        Ok(sent) => (NextStep::Delivered, sent.status, None, Ok(())),
        Err(err) => {
            let round = attempt.saturating_sub(item.attempts_base);
            let age = Duration::from_millis(u64::try_from(now - item.due_since).unwrap_or(0));
            // A sink that gave no answer (refused the connection, timed out, could not be
            // written to) or said it is unavailable (429, 502, 503, 504: a gateway whose
            // backend is down) is down, whatever this delivery holds: the attempt tests the
            // sink and uses none of the delivery's budget, which `max_age` bounds instead. A
            // paused route's probes too, and attempts made before the route pauses or after a
            // restart (which forgets the pause), would otherwise use it up while the sink is
            // simply down. An answer that is an error of its own (500, 422) counts, probe or
            // not: the sink is up and refuses this delivery.
            uncharged = err.found_sink_down();
            let exhausted = if uncharged {
                route.policy.too_old_for_probes(age)
            } else {
                route.policy.exhausted(round, age)
            };
            let next = if err.permanent || exhausted {
                NextStep::Dead
            } else {
                // Not before the target said it would take deliveries again. The delay grows
                // with every failure since the delivery was made or retried from the dead
                // letters, those that used none of its budget too: a delivery a sink keeps
                // answering 503 while it takes the others is not tried again every second.
                let asked = err.retry_after.unwrap_or_default();
                let delay = route
                    .policy
                    .backoff(attempt.saturating_sub(item.backoff_base))
                    .max(route.policy.honoured_wait(asked));
                NextStep::RetryAt(
                    now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2)),
                )
            };
            let message = redactor.redact(&err.message);
            let message = if next != NextStep::Dead {
                message
            } else if err.permanent {
                format!("{message} (permanent: not retried)")
            } else if route.policy.too_old(age) || (uncharged && exhausted) {
                format!("{message} (still failing after max_age: not retried)")
            } else {
                format!("{message} (max_attempts reached: not retried)")
            };
            (next, err.status, Some(message), Err(err))
        }
    };
    Attempted {
        outcome,
        record: AttemptResult {
            delivery_id: item.id,
            route: route.name.clone(),
            attempt,
            started_at,
            latency_us,
            status,
            error,
            next,
            uncharged,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::RouteSection;

    fn route(dir: &std::path::Path, retry: &str) -> Arc<Route> {
        #[derive(serde::Deserialize)]
        struct Doc {
            routes: Vec<RouteSection>,
        }
        let text = format!(
            "[[routes]]\nname = \"hook\"\n[routes.sink]\ntype = \"file\"\npath = \"{}\"\n\
             [routes.retry]\n{retry}\n",
            dir.join("out.jsonl").display()
        );
        let sections = toml::from_str::<Doc>(&text).unwrap().routes;
        let routes = Routes::compile(&sections).unwrap();
        routes.get("hook").unwrap().clone()
    }

    fn item(attempts: u32, attempts_base: u32, backoff_base: u32, due_since: Millis) -> OutboxItem {
        OutboxItem {
            id: 1,
            event_id: 1,
            route: "hook".to_owned(),
            attempts,
            attempts_base,
            backoff_base,
            due_since,
            received_at: due_since,
            invocation_id: None,
            raw: bytes::Bytes::new(),
            unreadable: None,
        }
    }

    fn down(status: u16) -> Result<Sent, SinkError> {
        Err(SinkError {
            status: Some(status),
            ..SinkError::transient(format!("HTTP {status}"))
        })
    }

    /// An attempt of `item` made and answered at `now`, as the worker settles it.
    fn attempt(
        route: &Route,
        item: &OutboxItem,
        now: Millis,
        outcome: Result<Sent, SinkError>,
    ) -> Attempted {
        settle(
            route,
            item,
            now,
            0,
            now,
            outcome,
            &crate::routes::Redactor::default(),
        )
    }

    fn delay(attempted: &Attempted, now: Millis) -> Option<i64> {
        match attempted.record.next {
            NextStep::RetryAt(at) => Some(at - now),
            _ => None,
        }
    }

    #[test]
    fn the_backoff_grows_with_failures_that_use_no_budget() {
        let dir = tempfile::tempdir().unwrap();
        let route = route(
            dir.path(),
            "max_attempts = 5\ninitial_delay = \"1s\"\nmax_delay = \"1h\"",
        );
        let now = 1_000_000_000;
        // Ten failures that found the sink down (503): none used the budget, all count for
        // the delay. The cap is now 1024 s: twenty draws at or under the first step's 1 s would
        // all have to fall in its first thousandth.
        let delays: Vec<i64> = (0..20)
            .map(|_| {
                let attempted = attempt(&route, &item(10, 10, 0, now), now, down(503));
                assert!(attempted.record.uncharged);
                delay(&attempted, now).unwrap()
            })
            .collect();
        assert!(delays.iter().all(|&d| d <= 1_024_000), "{delays:?}");
        assert!(delays.iter().any(|&d| d > 1_000), "{delays:?}");
        // Retried from the dead letters after those ten: the backoff starts again.
        for _ in 0..20 {
            let attempted = attempt(&route, &item(10, 10, 10, now), now, down(503));
            assert!(delay(&attempted, now).unwrap() <= 1_000);
        }
    }

    #[test]
    fn a_dead_letter_says_why_it_was_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let route = route(dir.path(), "max_attempts = 2\nmax_age = \"1h\"");
        let now = 10_000_000_000;
        let error = |attempted: Attempted| {
            assert_eq!(attempted.record.next, NextStep::Dead);
            attempted.record.error.unwrap()
        };
        let spent = attempt(&route, &item(1, 0, 0, now), now, down(500));
        assert!(error(spent).ends_with("(max_attempts reached: not retried)"));
        let hour_ago = now - 3_600_000;
        let old = attempt(&route, &item(0, 0, 0, hour_ago), now, down(503));
        assert!(error(old).ends_with("(still failing after max_age: not retried)"));
        let refused = Err(SinkError {
            permanent: true,
            ..SinkError::transient("HTTP 400")
        });
        let permanent = attempt(&route, &item(0, 0, 0, now), now, refused);
        assert!(error(permanent).ends_with("(permanent: not retried)"));
    }
}
