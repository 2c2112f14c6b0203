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
    /// The route template, e.g. `/events/{*channel}`.
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

/// Labels of the route metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route's name.
    pub route: String,
    /// Its sink kind (`webhook`, `nats`, `file`).
    pub sink: String,
}

/// The route metrics.
#[derive(Debug)]
pub struct RouteMetrics {
    /// Deliveries created for matching events (and replays).
    pub matched: Family<RouteLabels, Counter>,
    /// Deliveries the sink took.
    pub delivered: Family<RouteLabels, Counter>,
    /// Attempts that failed.
    pub failed_attempts: Family<RouteLabels, Counter>,
    /// Deliveries sent to the dead letters.
    pub dead: Family<RouteLabels, Counter>,
    /// Deliveries waiting (refreshed by the workers every few seconds).
    pub pending: Family<RouteLabels, Gauge>,
    /// 1 while the route is paused because its sink keeps failing (refreshed with `pending`).
    pub paused: Family<RouteLabels, Gauge>,
    /// Duration of successful attempts.
    pub latency: Family<RouteLabels, Histogram>,
    /// 1 while no route starts a delivery because the store cannot record their results.
    pub held: Gauge,
    /// Route name to sink kind, so that counts made where only the name is known are labelled.
    sinks: std::sync::RwLock<std::collections::HashMap<String, String>>,
}

impl RouteMetrics {
    /// The labels of a route.
    pub fn labels(&self, route: &str) -> RouteLabels {
        let sink = self
            .sinks
            .read()
            .ok()
            .and_then(|sinks| sinks.get(route).cloned())
            .unwrap_or_else(|| "unknown".to_owned());
        RouteLabels {
            route: route.to_owned(),
            sink,
        }
    }

    /// Declares a configured route and its sink kind.
    pub fn register(&self, route: &str, sink: &str) {
        if let Ok(mut sinks) = self.sinks.write() {
            sinks.insert(route.to_owned(), sink.to_owned());
        }
        let labels = self.labels(route);
        // Created at zero so that a route shows in /metrics before its first event.
        let _ = self.matched.get_or_create(&labels);
        let _ = self.delivered.get_or_create(&labels);
        let _ = self.failed_attempts.get_or_create(&labels);
        let _ = self.dead.get_or_create(&labels);
        let _ = self.pending.get_or_create(&labels);
        let _ = self.paused.get_or_create(&labels);
    }
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
    /// Delivery records of rejected requests not written one by one for the rate limit.
    pub rejections_rate_limited: Counter,
    /// 1 when the last commit succeeded, 0 when the store cannot commit.
    pub store_writable: Gauge,
    /// Size of the store on disk, updated when metrics are read.
    pub store_size_bytes: Gauge,
    /// Events stored but not yet in the search index (written behind the commits).
    pub search_index_backlog: Gauge,
    /// Requests being handled now.
    pub requests_in_flight: Gauge,
    /// Room held now in the memory budget of ingest bodies, updated when metrics are read.
    pub body_memory_bytes: Gauge,
    /// The memory budget of ingest bodies (`ingest.max_body_memory`).
    pub body_memory_limit_bytes: Gauge,
    /// Per route and sink.
    pub routes: RouteMetrics,
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
            "Delivery records of rejected requests not written: the store was overloaded or at \
             its size cap, or more were held than it keeps while its commits failed",
            rejections_dropped.clone(),
        );
        let rejections_rate_limited = Counter::default();
        registry.register(
            "delivery_records_rate_limited",
            "Rejected requests not recorded one by one because rejections arrived faster than \
             the delivery log takes them; the next record of a rejection counts them",
            rejections_rate_limited.clone(),
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
        let search_index_backlog = Gauge::default();
        registry.register(
            "search_index_backlog",
            "Events stored but not yet in the search index, which is written behind the commits",
            search_index_backlog.clone(),
        );
        let requests_in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being handled now",
            requests_in_flight.clone(),
        );
        let body_memory_bytes = Gauge::default();
        registry.register(
            "ingest_body_memory_bytes",
            "Memory held now by ingest request bodies over 64 KiB, from the budget \
             ingest.max_body_memory (requests past it wait for room)",
            body_memory_bytes.clone(),
        );
        let body_memory_limit_bytes = Gauge::default();
        registry.register(
            "ingest_body_memory_limit_bytes",
            "The memory budget of ingest request bodies (ingest.max_body_memory)",
            body_memory_limit_bytes.clone(),
        );
        let routes = RouteMetrics {
            matched: Family::default(),
            delivered: Family::default(),
            failed_attempts: Family::default(),
            dead: Family::default(),
            pending: Family::default(),
            paused: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            held: Gauge::default(),
            sinks: std::sync::RwLock::default(),
        };
        registry.register(
            "route_matched",
            "Deliveries created for events that matched a route, and by replays (the store's \
             totals: replays and retries by other processes included)",
            routes.matched.clone(),
        );
        registry.register(
            "route_delivered",
            "Deliveries a route's sink took",
            routes.delivered.clone(),
        );
        registry.register(
            "route_failed_attempts",
            "Delivery attempts that failed (and will be retried or sent to the dead letters)",
            routes.failed_attempts.clone(),
        );
        registry.register(
            "route_dead",
            "Deliveries sent to the dead letters",
            routes.dead.clone(),
        );
        registry.register(
            "route_pending",
            "Deliveries waiting for an attempt",
            routes.pending.clone(),
        );
        registry.register(
            "route_paused",
            "1 while the route is paused because its sink keeps failing (it probes with one \
             delivery at a time; deliveries waiting behind the pause use none of their attempts)",
            routes.paused.clone(),
        );
        registry.register(
            "route_deliveries_held",
            "1 while no route starts a delivery because the store cannot record delivery results \
             (full, locked by another process, at its size cap); deliveries go on once it can",
            routes.held.clone(),
        );
        registry.register(
            "route_delivery_duration_seconds",
            "Duration of successful delivery attempts",
            routes.latency.clone(),
        );
        Metrics {
            routes,
            registry,
            http_requests,
            ingest_seconds,
            events,
            commit_batch_size,
            commit_seconds,
            commit_failures,
            rejections_dropped,
            rejections_rate_limited,
            store_writable,
            store_size_bytes,
            search_index_backlog,
            requests_in_flight,
            body_memory_bytes,
            body_memory_limit_bytes,
        }
    }

    /// Counts one delivered document's outcome.
    pub fn count_event(&self, outcome: EventOutcome) {
        self.events.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Counts deliveries created for a route.
    pub fn count_route_matched(&self, route: &str, n: u64) {
        self.routes
            .matched
            .get_or_create(&self.routes.labels(route))
            .inc_by(n);
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
