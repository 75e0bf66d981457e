//! Command-line options of `feeder`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::target::Delivery;

/// Consumes events from Apache Pulsar (or a JSONL file) and delivers each
/// event to every leaf worker of its key in every running job. A message is
/// acknowledged only after the runtime has durably acknowledged it.
#[derive(Debug, Clone, Parser)]
#[command(name = "feeder", version)]
pub struct Options {
    /// Pulsar service URL.
    #[arg(long, env = "PULSAR_URL", default_value = "pulsar://127.0.0.1:6650")]
    pub service_url: String,
    /// Topic(s) to consume (repeat the option, or separate with commas).
    #[arg(
        long = "topic",
        env = "FEEDER_TOPICS",
        value_delimiter = ',',
        required_unless_present = "from_file"
    )]
    pub topics: Vec<String>,
    /// Subscription name.
    #[arg(long, default_value = "timeline-feeder")]
    pub subscription: String,
    /// Subscription type: `key-shared` and `shared` let several feeders split the load.
    #[arg(long, value_enum, default_value = "key-shared")]
    pub subscription_type: SubscriptionType,
    /// Where a new subscription starts.
    #[arg(long, value_enum, default_value = "earliest")]
    pub initial_position: InitialPosition,
    /// This feeder's consumer name (shown by the broker).
    #[arg(long)]
    pub consumer_name: Option<String>,
    /// Pulsar authentication token (JWT).
    #[arg(long, env = "PULSAR_TOKEN", hide_env_values = true)]
    pub pulsar_token: Option<String>,
    /// Topic for messages that cannot be delivered [default: <first topic>-<subscription>-DLQ].
    #[arg(long)]
    pub dead_letter_topic: Option<String>,
    /// Read JSON lines from this file (- for standard input) instead of Pulsar.
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<PathBuf>,
    /// The runtime's base URL: `timeline serve`, or a Golem deployment.
    #[arg(long, env = "TIMELINE_URL", default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// Bearer token for the runtime.
    #[arg(long, env = "TIMELINE_TOKEN", hide_env_values = true)]
    pub target_token: Option<String>,
    /// How events reach the workers.
    #[arg(long, value_enum, default_value = "auto")]
    pub delivery: Delivery,
    /// The event field that names the key [default: the runtime's, else session_id].
    #[arg(long)]
    pub key_field: Option<String>,
    /// Largest batch, in messages.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// How long a batch waits for more messages (e.g. 20ms, 1s).
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    pub linger: Duration,
    /// Requests to the runtime in flight at once (per-worker delivery).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Batches delivered at once; they are still acknowledged in order.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub in_flight: u32,
    /// How often the job plans are read again (new or removed jobs).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub refresh: Duration,
    /// Longest wait between retries of a failed delivery.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (`off` to disable).
    #[arg(long, default_value = "127.0.0.1:9464", value_parser = parse_metrics_addr)]
    pub metrics_addr: MetricsAddr,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Pulsar subscription types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SubscriptionType {
    /// One consumer only.
    Exclusive,
    /// One active consumer, others on standby.
    Failover,
    /// Messages spread over consumers.
    Shared,
    /// Messages spread over consumers, each key to one consumer.
    KeyShared,
}

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitialPosition {
    /// The oldest message kept.
    Earliest,
    /// Messages published from now on.
    Latest,
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where metrics are served, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

fn parse_metrics_addr(text: &str) -> Result<MetricsAddr, String> {
    if text == "off" {
        return Ok(MetricsAddr(None));
    }
    text.parse()
        .map(|a| MetricsAddr(Some(a)))
        .map_err(|e| format!("`{text}` is not ADDR:PORT or `off`: {e}"))
}

impl Options {
    /// The topics in full (`persistent://tenant/namespace/name`): brokers
    /// complete short names, but not every Pulsar-protocol broker does.
    pub fn full_topics(&self) -> Vec<String> {
        self.topics.iter().map(|t| full_topic_name(t)).collect()
    }

    /// The dead-letter topic, defaulted as Pulsar's own clients do.
    pub fn dead_letter_topic(&self) -> String {
        full_topic_name(&self.dead_letter_topic.clone().unwrap_or_else(|| {
            let topic = self.topics.first().map(String::as_str).unwrap_or("events");
            format!("{topic}-{}-DLQ", self.subscription)
        }))
    }
}

/// Completes a topic name as Pulsar does: `events` is
/// `persistent://public/default/events`, `t/ns/events` is `persistent://t/ns/events`.
pub fn full_topic_name(topic: &str) -> String {
    if topic.contains("://") {
        topic.to_string()
    } else if topic.contains('/') {
        format!("persistent://{topic}")
    } else {
        format!("persistent://public/default/{topic}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let o = Options::try_parse_from(["feeder", "--topic", "a,b", "--linger", "5ms"]).unwrap();
        assert_eq!(o.topics, ["a", "b"]);
        assert_eq!(o.linger, Duration::from_millis(5));
        assert_eq!(
            o.dead_letter_topic(),
            "persistent://public/default/a-timeline-feeder-DLQ"
        );
        assert_eq!(
            o.full_topics(),
            ["persistent://public/default/a", "persistent://public/default/b"]
        );
        assert_eq!(full_topic_name("t/ns/x"), "persistent://t/ns/x");
        assert_eq!(full_topic_name("non-persistent://t/ns/x"), "non-persistent://t/ns/x");
        assert_eq!(o.subscription_type, SubscriptionType::KeyShared);
        let e = Options::try_parse_from(["feeder"]).unwrap_err().to_string();
        assert!(e.contains("--topic"), "{e}");
        assert!(Options::try_parse_from(["feeder", "--from-file", "x.jsonl"]).is_ok());
        let e = Options::try_parse_from(["feeder", "--topic", "a", "--linger", "soon"]).unwrap_err();
        assert!(e.to_string().contains("soon"), "{e}");
        let o = Options::try_parse_from(["feeder", "--topic", "a", "--metrics-addr", "off"]).unwrap();
        assert_eq!(o.metrics_addr, MetricsAddr(None));
    }
}
