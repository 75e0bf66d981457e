//! Prometheus metrics of the feeder, served at `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The feeder's counters.
pub struct Metrics {
    /// Messages read from the source.
    pub consumed: Counter,
    /// Events the runtime durably acknowledged (each event once, whatever the
    /// number of workers it reached).
    pub delivered: Counter,
    /// Requests to the runtime that succeeded.
    pub requests: Counter,
    /// Failed requests tried again.
    pub retried: Counter,
    /// Messages sent to the dead-letter topic, by reason.
    pub dead_lettered: Family<ReasonLabel, Counter>,
    /// Messages acknowledged to the source.
    pub acknowledged: Counter,
    /// Batches processed.
    pub batches: Counter,
    /// From a batch's first message to its acknowledgement, in seconds.
    pub delivery_seconds: Histogram,
    /// Contributors told of a key's new events (per-worker delivery).
    pub refreshes: Counter,
    /// Leaf workers routed to per key.
    pub leaves: Gauge,
    /// Jobs known.
    pub jobs: Gauge,
    /// Messages that could not be decoded (checksum mismatch, corrupt or
    /// unknown compression, a broken batch): dead-lettered as received.
    pub undecodable: Counter,
    /// Subscriptions made again after a broker error.
    pub resubscribes: Counter,
    registry: Registry,
}

/// The `reason` label of dead letters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `invalid` (refused by the feeder) or `rejected` (refused by the runtime).
    pub reason: String,
}

impl Metrics {
    /// New, all zero.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("feeder");
        let m = Metrics {
            consumed: Counter::default(),
            delivered: Counter::default(),
            requests: Counter::default(),
            retried: Counter::default(),
            dead_lettered: Family::default(),
            acknowledged: Counter::default(),
            batches: Counter::default(),
            delivery_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            refreshes: Counter::default(),
            leaves: Gauge::default(),
            jobs: Gauge::default(),
            undecodable: Counter::default(),
            resubscribes: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("messages_consumed", "Messages read from the source", m.consumed.clone());
        registry.register(
            "events_delivered",
            "Events durably acknowledged by the runtime",
            m.delivered.clone(),
        );
        registry.register("requests", "Successful requests to the runtime", m.requests.clone());
        registry.register(
            "aggregate_refreshes",
            "Contributors told of a key's new events",
            m.refreshes.clone(),
        );
        registry.register(
            "retries",
            "Failed requests to the runtime, tried again",
            m.retried.clone(),
        );
        registry.register(
            "dead_letters",
            "Messages sent to the dead-letter topic",
            m.dead_lettered.clone(),
        );
        registry.register(
            "messages_acknowledged",
            "Messages acknowledged to the source",
            m.acknowledged.clone(),
        );
        registry.register("batches", "Batches delivered", m.batches.clone());
        registry.register(
            "delivery_seconds",
            "Seconds from a batch's first message to its acknowledgement",
            m.delivery_seconds.clone(),
        );
        registry.register("leaf_workers", "Leaf workers each key's events go to", m.leaves.clone());
        registry.register("jobs", "Jobs running in the runtime", m.jobs.clone());
        registry.register(
            "undecodable_messages",
            "Messages that could not be decoded (corrupt, unknown codec, broken batch), dead-lettered as received",
            m.undecodable.clone(),
        );
        registry.register(
            "resubscribes",
            "Subscriptions made again after a broker error",
            m.resubscribes.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Counts one dead letter.
    pub fn dead_letter(&self, reason: &str) {
        self.dead_lettered
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}

/// Serves `/metrics` on `addr` until the process ends; returns the bound address.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    serve_text(addr, Arc::new(move || metrics.encode())).await
}

/// Serves the OpenMetrics text that `encode` makes at `/metrics` on `addr`
/// until the process ends; returns the bound address.
pub async fn serve_text(
    addr: SocketAddr,
    encode: Arc<dyn Fn() -> String + Send + Sync>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let encode = encode.clone();
            async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    encode(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });
    Ok(bound)
}
