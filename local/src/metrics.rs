//! Prometheus metrics of the local runtime.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Events accepted and durably stored.
    pub events_accepted: Counter,
    /// Events rejected as invalid.
    pub events_rejected: Counter,
    /// Batches acknowledged.
    pub batches: Counter,
    /// Log commits (each may hold several batches).
    pub commits: Counter,
    /// Identified events left out of the log as repeats of ones it holds.
    pub repeats: Counter,
    /// Events refused as older than the retention horizon.
    pub events_too_old: Counter,
    /// Changes of results recorded for the jobs that record them.
    pub changes: Counter,
    /// Keys forgotten by retention.
    pub keys_expired: Counter,
    /// Log records removed by retention.
    pub log_records_removed: Counter,
    /// Time to commit and fsync.
    pub commit_seconds: Histogram,
    /// Jobs running.
    pub jobs: Gauge,
    /// Keys with events.
    pub keys: Gauge,
    /// Approximate bytes of worker state.
    pub state_bytes: Gauge,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("timeline");
        let m = Metrics {
            events_accepted: Counter::default(),
            events_rejected: Counter::default(),
            batches: Counter::default(),
            commits: Counter::default(),
            repeats: Counter::default(),
            events_too_old: Counter::default(),
            changes: Counter::default(),
            keys_expired: Counter::default(),
            log_records_removed: Counter::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            jobs: Gauge::default(),
            keys: Gauge::default(),
            state_bytes: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_accepted",
            "Events accepted and durably stored",
            m.events_accepted.clone(),
        );
        registry.register(
            "events_rejected",
            "Events rejected as invalid",
            m.events_rejected.clone(),
        );
        registry.register("batches", "Event batches acknowledged", m.batches.clone());
        registry.register("commits", "Event log commits (fsyncs)", m.commits.clone());
        registry.register(
            "repeats",
            "Identified events left out of the log as repeats",
            m.repeats.clone(),
        );
        registry.register(
            "changes",
            "Changes of job results recorded for the jobs that record them",
            m.changes.clone(),
        );
        registry.register(
            "events_too_old",
            "Events refused as older than the retention horizon",
            m.events_too_old.clone(),
        );
        registry.register(
            "keys_expired",
            "Keys forgotten by retention (their latest event behind the horizon)",
            m.keys_expired.clone(),
        );
        registry.register(
            "log_records_removed",
            "Event log records removed by retention",
            m.log_records_removed.clone(),
        );
        registry.register(
            "commit_seconds",
            "Time to commit and fsync the event log",
            m.commit_seconds.clone(),
        );
        registry.register("jobs", "Jobs running", m.jobs.clone());
        registry.register("keys", "Keys with events", m.keys.clone());
        registry.register(
            "state_bytes",
            "Approximate bytes of worker state",
            m.state_bytes.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
