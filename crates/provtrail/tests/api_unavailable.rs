//! A store that cannot be read: the read API answers 503 with `Retry-After`, in its error shape.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use provtrail::ingest::Ingestor;
use provtrail::metrics::Metrics;
use provtrail::server::{AppState, RunningServer, ServerConfig, router};
use provtrail::store::{
    DeliveryAttempt, DeliveryQuery, DeliveryRecord, EventDetail, EventQuery, EventSummary,
    ExportRange, Incoming, IngestOutcome, Millis, OutboxItem, OutboxWrite, Page, QuarantineEntry,
    QuarantineQuery, Rejection, RouteCounts, RouteDelivery, RouteDeliveryQuery, SharedStore, Stats,
    StatsQuery, Store, StoreCounts, StoreError, StoredEvent,
};

const READ: &str = "read-token-for-the-broken-store";

/// Every call fails as a store that cannot be reached does.
#[derive(Debug)]
struct Unreachable;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable(
        "cannot open the database for reading: disk I/O error".into(),
    ))
}

#[async_trait]
impl Store for Unreachable {
    async fn ingest(&self, _: Incoming) -> Result<IngestOutcome, StoreError> {
        down()
    }
    fn record_rejection(&self, _: Rejection) {}
    async fn check_writable(&self) -> Result<(), StoreError> {
        down()
    }
    async fn size_bytes(&self) -> Result<u64, StoreError> {
        down()
    }
    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        down()
    }
    async fn export_events(
        &self,
        _: &ExportRange,
        _: i64,
        _: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        down()
    }
    async fn count_events(&self, _: &ExportRange) -> Result<u64, StoreError> {
        down()
    }
    async fn search_events(
        &self,
        _: &EventQuery,
        _: bool,
    ) -> Result<Page<EventSummary>, StoreError> {
        down()
    }
    async fn get_event(&self, _: i64) -> Result<Option<EventDetail>, StoreError> {
        down()
    }
    async fn stats(&self, _: &StatsQuery) -> Result<Stats, StoreError> {
        down()
    }
    async fn deliveries(&self, _: &DeliveryQuery) -> Result<Page<DeliveryRecord>, StoreError> {
        down()
    }
    async fn quarantine(&self, _: &QuarantineQuery) -> Result<Page<QuarantineEntry>, StoreError> {
        down()
    }
    async fn get_quarantine(&self, _: i64) -> Result<Option<QuarantineEntry>, StoreError> {
        down()
    }
    async fn close(&self) {}
    async fn outbox_write(&self, _: OutboxWrite) -> Result<u64, StoreError> {
        down()
    }
    async fn outbox_due(
        &self,
        _: &str,
        _: Millis,
        _: usize,
        _: Vec<i64>,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        down()
    }
    async fn route_counts(&self) -> Result<Vec<RouteCounts>, StoreError> {
        down()
    }
    async fn route_deliveries(
        &self,
        _: &RouteDeliveryQuery,
    ) -> Result<Page<RouteDelivery>, StoreError> {
        down()
    }
    async fn delivery_attempts(&self, _: i64) -> Result<Vec<DeliveryAttempt>, StoreError> {
        down()
    }
    fn outbox_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        tokio::sync::watch::channel(0).1
    }
}

#[tokio::test]
async fn an_unavailable_store_is_503_with_retry_after() {
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    config.read_credentials.add_bearer(READ);
    let store: SharedStore = Arc::new(Unreachable);
    let state = AppState::new(
        store,
        Arc::new(Ingestor::new(config.max_body)),
        Arc::new(Metrics::new()),
        &config,
    );
    let server = RunningServer::start(router(state, &config), &config, None)
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    for path in [
        "/api/v1/events",
        "/api/v1/events?filter=%24",
        "/api/v1/events/1",
        "/api/v1/stats",
        "/api/v1/deliveries",
        "/api/v1/quarantine",
        "/api/v1/quarantine/1",
    ] {
        let answer = common::Answer::read(
            common::client()
                .get(format!("{base}{path}"))
                .bearer_auth(READ)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, 503, "{path}: {}", answer.text());
        assert_eq!(answer.header("retry-after"), Some("5"), "{path}");
        let error = answer.json()["error"].clone();
        assert_eq!(error["code"], "unavailable", "{path}");
        assert!(
            error["message"].as_str().unwrap().contains("try again"),
            "{error}"
        );
    }
    let answer = common::Answer::read(
        common::client()
            .post(format!("{base}/api/v1/filter/test"))
            .bearer_auth(READ)
            .json(&serde_json::json!({"filter": "$"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    server.shutdown().await;
}
