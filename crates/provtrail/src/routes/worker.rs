//! Delivery workers: one loop per route takes due deliveries from the outbox, attempts each under
//! the route's concurrency limit and timeout, and records the result through the store's writer.
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

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::sink::{Delivery, SinkError, delivery_key, event_key};
use super::{Route, Routes};
use crate::metrics::{Metrics, RouteLabels};
use crate::store::{AttemptResult, Millis, NextStep, OutboxItem, OutboxWrite, SharedStore};

/// How often a route looks for due deliveries when nothing wakes it sooner (retries coming due,
/// replays written by another process).
const POLL: Duration = Duration::from_millis(500);

/// Failures in a row after which a route pauses.
pub const BREAKER_THRESHOLD: u32 = 3;

/// Most attempt results written in one outbox job.
const MAX_RESULTS_PER_WRITE: usize = 1_000;

fn now_millis() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// The running workers of every route.
#[derive(Debug)]
pub struct Dispatcher {
    stop: watch::Sender<bool>,
    routes: Vec<JoinHandle<()>>,
    recorder: JoinHandle<()>,
    gauges: JoinHandle<()>,
}

impl Dispatcher {
    /// Starts one worker loop per route.
    pub fn start(routes: Arc<Routes>, store: SharedStore, metrics: Arc<Metrics>) -> Dispatcher {
        let (stop, stopped) = watch::channel(false);
        let (results, receiver) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(record_results(store.clone(), receiver, stopped.clone()));
        let recorder_handle = Recorder { results };
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
            };
            tasks.push(tokio::spawn(worker.run(stopped.clone())));
        }
        drop(recorder_handle);
        let gauges = tokio::spawn(refresh_gauges(routes, store, metrics, stopped));
        Dispatcher {
            stop,
            routes: tasks,
            recorder,
            gauges,
        }
    }

    /// Stops taking new deliveries, gives those in flight up to `grace` to finish and be
    /// recorded, and returns. Deliveries still in flight after that stay pending and are attempted
    /// again on the next start.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
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
    }
}

/// Sends attempt results to the recording task and waits until they are committed.
#[derive(Debug, Clone)]
struct Recorder {
    results: mpsc::UnboundedSender<(AttemptResult, oneshot::Sender<()>)>,
}

impl Recorder {
    /// True once the result is committed.
    async fn record(&self, result: AttemptResult) -> bool {
        let (done, committed) = oneshot::channel();
        if self.results.send((result, done)).is_err() {
            return false;
        }
        committed.await.is_ok()
    }
}

/// Writes attempt results in batches: whatever finished while the previous write was being
/// committed goes into the next one.
async fn record_results(
    store: SharedStore,
    mut receiver: mpsc::UnboundedReceiver<(AttemptResult, oneshot::Sender<()>)>,
    stopped: watch::Receiver<bool>,
) {
    let mut batch = Vec::new();
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        while batch.len() < MAX_RESULTS_PER_WRITE {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        loop {
            let results = batch.iter().map(|(result, _)| result.clone()).collect();
            match store.outbox_write(OutboxWrite::Results(results)).await {
                Ok(_) => {
                    for (_, done) in batch.drain(..) {
                        let _ = done.send(());
                    }
                    break;
                }
                Err(err) => {
                    if *stopped.borrow() {
                        // Shutting down: the deliveries stay pending and are attempted again on
                        // the next start.
                        tracing::warn!(error = %err, results = batch.len(),
                            "cannot record delivery results while stopping; they will be retried");
                        batch.clear();
                        break;
                    }
                    tracing::warn!(error = %err, results = batch.len(),
                        "cannot record delivery results; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

async fn refresh_gauges(
    routes: Arc<Routes>,
    store: SharedStore,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut warned = false;
    loop {
        if let Ok(counts) = store.route_counts().await {
            for route in routes.iter() {
                let pending = counts
                    .iter()
                    .find(|counts| counts.route == route.name)
                    .map_or(0, |counts| counts.pending);
                metrics
                    .routes
                    .pending
                    .get_or_create(&metrics.routes.labels(&route.name))
                    .set(i64::try_from(pending).unwrap_or(i64::MAX));
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
}

impl Breaker {
    fn succeeded(&mut self) {
        self.failures = 0;
        self.open_until = None;
    }

    fn failed(&mut self, route: &Route) {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= BREAKER_THRESHOLD {
            // Equal jitter: at least half the cap, so that the pause is a pause.
            let cap = route.policy.cap(self.failures - BREAKER_THRESHOLD + 1);
            let pause = cap / 2 + (cap / 2).mul_f64(rand::random::<f64>());
            if self.open_until.is_none() {
                tracing::warn!(route = %route.name, failures = self.failures,
                    pause = %humantime::format_duration(Duration::from_millis(pause.as_millis() as u64)),
                    "the route's sink keeps failing; pausing, then probing with one delivery");
            }
            self.open_until = Some(Instant::now() + pause);
        }
    }

    /// How many deliveries may start now, and until when nothing may.
    fn allowance(&self, free: usize, in_flight: usize) -> (usize, Option<Instant>) {
        match self.open_until {
            None => (free, None),
            Some(until) if Instant::now() < until => (0, Some(until)),
            // Half open: one probe at a time.
            Some(_) => (usize::from(in_flight == 0).min(free), None),
        }
    }
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
    /// Signalled when an attempt finishes (a permit is free again).
    done: Arc<Notify>,
    permits: Arc<Semaphore>,
}

impl RouteWorker {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut changes = self.store.outbox_changes();
        let mut watching = true;
        let mut tasks = JoinSet::new();
        let mut failing_reads = false;
        loop {
            if *stopped.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            let free = self.permits.available_permits();
            let in_flight = self.route.concurrency - free;
            let (allowed, paused_until) = match self.breaker.lock() {
                Ok(breaker) => breaker.allowance(free, in_flight),
                Err(_) => (free, None),
            };
            if allowed > 0 {
                let exclude: Vec<i64> = self
                    .claimed
                    .lock()
                    .map(|claimed| claimed.iter().copied().collect())
                    .unwrap_or_default();
                match self
                    .store
                    .outbox_due(&self.route.name, now_millis(), allowed, exclude)
                    .await
                {
                    Ok(items) => {
                        failing_reads = false;
                        for item in items {
                            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                                break;
                            };
                            if let Ok(mut claimed) = self.claimed.lock() {
                                claimed.insert(item.id);
                            }
                            tasks.spawn(self.attempt(item, permit));
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
            let wait = paused_until
                .map_or(POLL, |until| {
                    until.saturating_duration_since(Instant::now())
                })
                .min(POLL);
            tokio::select! {
                _ = stopped.changed() => {}
                changed = changes.changed(), if watching => {
                    watching = changed.is_ok();
                }
                () = self.done.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        // Let the attempts in flight finish and be recorded (the dispatcher bounds how long).
        while tasks.join_next().await.is_some() {}
    }

    fn attempt(
        &self,
        item: OutboxItem,
        permit: OwnedSemaphorePermit,
    ) -> impl Future<Output = ()> + Send + 'static {
        let route = self.route.clone();
        let recorder = self.recorder.clone();
        let claimed = self.claimed.clone();
        let breaker = self.breaker.clone();
        let done = self.done.clone();
        let metrics = self.metrics.clone();
        let labels = self.labels.clone();
        let redactor = self.redactor.clone();
        async move {
            let result = attempt_once(&route, &item, &redactor).await;
            if let Ok(mut breaker) = breaker.lock() {
                match &result.outcome {
                    Ok(()) => breaker.succeeded(),
                    Err(err) if !err.permanent => breaker.failed(&route),
                    Err(_) => {}
                }
            }
            let record = result.record;
            match record.next {
                NextStep::Delivered => {
                    metrics.routes.delivered.get_or_create(&labels).inc();
                    metrics
                        .routes
                        .latency
                        .get_or_create(&labels)
                        .observe(record.latency_us as f64 / 1e6);
                }
                NextStep::RetryAt(at) => {
                    metrics.routes.failed_attempts.get_or_create(&labels).inc();
                    tracing::debug!(route = %route.name, event_id = item.event_id,
                        attempt = record.attempt, retry_in_ms = at - now_millis(),
                        error = record.error.as_deref().unwrap_or_default(),
                        "delivery failed; will retry");
                }
                NextStep::Dead => {
                    metrics.routes.failed_attempts.get_or_create(&labels).inc();
                    metrics.routes.dead.get_or_create(&labels).inc();
                    tracing::warn!(route = %route.name, event_id = item.event_id,
                        delivery_id = item.id, attempts = record.attempt,
                        error = record.error.as_deref().unwrap_or_default(),
                        "delivery moved to the dead letters");
                }
            }
            recorder.record(record).await;
            if let Ok(mut claimed) = claimed.lock() {
                claimed.remove(&item.id);
            }
            drop(permit);
            done.notify_one();
        }
    }
}

struct Attempted {
    outcome: Result<(), SinkError>,
    record: AttemptResult,
}

/// One attempt of one delivery, and what to record about it.
async fn attempt_once(route: &Route, item: &OutboxItem, redactor: &super::Redactor) -> Attempted {
    let started_at = now_millis();
    let started = Instant::now();
    let attempt = item.attempts.saturating_add(1);
    let event_key = event_key(item.event_id, item.invocation_id.as_deref());
    let key = delivery_key(&event_key, &route.name);
    let parsed = if route.sink.needs_value() {
        serde_json::from_slice::<Value>(&item.raw)
    } else {
        Ok(Value::Null)
    };
    let outcome = match parsed {
        Err(err) => Err(SinkError::permanent(format!(
            "the stored event is not JSON: {err}"
        ))),
        Ok(event) => {
            let delivery = Delivery {
                delivery_id: item.id,
                route: &route.name,
                event_id: item.event_id,
                event_key: &event_key,
                key: &key,
                attempt,
                received_at: item.received_at,
                raw: &item.raw,
                event: &event,
            };
            match tokio::time::timeout(route.timeout, route.sink.deliver(&delivery)).await {
                Ok(result) => result,
                Err(_) => Err(SinkError::transient(format!(
                    "timed out after {}",
                    humantime::format_duration(route.timeout)
                ))),
            }
        }
    };
    let latency_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
    let now = now_millis();
    let (next, status, error, outcome) = match outcome {
        Ok(sent) => (NextStep::Delivered, sent.status, None, Ok(())),
        Err(err) => {
            let round = attempt.saturating_sub(item.attempts_base);
            let age = Duration::from_millis(u64::try_from(now - item.due_since).unwrap_or(0));
            let next = if err.permanent || route.policy.exhausted(round, age) {
                NextStep::Dead
            } else {
                let delay = route.policy.backoff(round);
                NextStep::RetryAt(now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2))
            };
            let message = redactor.redact(&err.message);
            let message = if err.permanent && next == NextStep::Dead {
                format!("{message} (permanent: not retried)")
            } else {
                message
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
        },
    }
}
