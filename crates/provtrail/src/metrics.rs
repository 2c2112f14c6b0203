//! Every metric the process exposes, in one place, served as Prometheus text at `/metrics`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// What happened to a delivered document.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum EventOutcome {
    /// Kept as a new event.
    accepted,
    /// Already kept; counted, not stored again.
    duplicate,
    /// Kept in quarantine.
    quarantined,
    /// Refused (401, 413, 503, …).
    rejected,
}

/// Labels of HTTP request counters.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template, e.g. `/events/{channel}`.
    pub route: String,
    /// The status code answered.
    pub status: u16,
}

/// Labels of the event outcome counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What happened.
    pub outcome: EventOutcome,
}

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// HTTP requests by route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Time from request to answer on the ingest routes.
    pub ingest_seconds: Histogram,
    /// Delivered documents by outcome.
    pub events: Family<OutcomeLabels, Counter>,
    /// Documents per group commit.
    pub commit_batch_size: Histogram,
    /// Duration of a group commit, fsync included.
    pub commit_seconds: Histogram,
    /// Group commits that failed (their requests were answered 503).
    pub commit_failures: Counter,
    /// Delivery records of rejected requests dropped because the store was overloaded.
    pub rejections_dropped: Counter,
    /// 1 when the last commit succeeded, 0 when the store cannot commit.
    pub store_writable: Gauge,
    /// Size of the store on disk, updated when metrics are read.
    pub store_size_bytes: Gauge,
    /// Requests being handled now.
    pub requests_in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("provtrail");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        let ingest_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "ingest_request_duration_seconds",
            "Time from receiving an ingest request to answering it",
            ingest_seconds.clone(),
        );
        let events = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "events",
            "Delivered documents by outcome (accepted, duplicate, quarantined, rejected)",
            events.clone(),
        );
        let commit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "commit_batch_size",
            "Documents committed together in one group commit (one fsync)",
            commit_batch_size.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "commit_duration_seconds",
            "Duration of a group commit, fsync included",
            commit_seconds.clone(),
        );
        let commit_failures = Counter::default();
        registry.register(
            "commit_failures",
            "Group commits that failed; their requests were answered 503",
            commit_failures.clone(),
        );
        let rejections_dropped = Counter::default();
        registry.register(
            "delivery_records_dropped",
            "Delivery records of rejected requests not written because the store was overloaded",
            rejections_dropped.clone(),
        );
        let store_writable = Gauge::default();
        registry.register(
            "store_writable",
            "1 when the store can commit, 0 when it cannot",
            store_writable.clone(),
        );
        let store_size_bytes = Gauge::default();
        registry.register(
            "store_size_bytes",
            "Size of the store on disk, write-ahead log included",
            store_size_bytes.clone(),
        );
        let requests_in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being handled now",
            requests_in_flight.clone(),
        );
        Metrics {
            registry,
            http_requests,
            ingest_seconds,
            events,
            commit_batch_size,
            commit_seconds,
            commit_failures,
            rejections_dropped,
            store_writable,
            store_size_bytes,
            requests_in_flight,
        }
    }

    /// Counts one delivered document's outcome.
    pub fn count_event(&self, outcome: EventOutcome) {
        self.events.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Counts one HTTP request.
    pub fn count_request(&self, route: &str, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
