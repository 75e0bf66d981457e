//! Command-line options of `feeder`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::target::Delivery;

/// Consumes events from Apache Pulsar (or a JSONL file) and delivers each
/// event to every leaf worker of its key in every running job. A message is
/// acknowledged only after the runtime has durably acknowledged it.
/// `feeder sink` does the opposite: a job's changes out to Pulsar or a
/// webhook.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "feeder",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Options {
    /// Another mode than feeding events in.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Pulsar service URL.
    #[arg(long, env = "PULSAR_URL", default_value = "pulsar://127.0.0.1:6650")]
    pub service_url: String,
    /// Topic(s) to consume into `--stream` (repeat the option, or separate
    /// with commas).
    #[arg(
        long = "topic",
        env = "FEEDER_TOPICS",
        value_delimiter = ',',
        required_unless_present_any = ["from_file", "stream_topics", "topic_pattern"]
    )]
    pub topics: Vec<String>,
    /// Also consume into `--stream` every topic of `--topic-namespace` whose
    /// full name (`persistent://public/default/events-eu`) matches this
    /// regular expression; topics created later are picked up within
    /// `--topic-refresh`.
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    pub topic_pattern: Option<String>,
    /// The namespace `--topic-pattern` lists the topics of.
    #[arg(long, default_value = "public/default", value_name = "TENANT/NAMESPACE")]
    pub topic_namespace: String,
    /// How often `--topic-pattern` looks for new topics.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub topic_refresh: Duration,
    /// The stream that `--topic` and `--from-file` events belong to (a
    /// query's `from` header names it): its jobs receive them, read with its
    /// key, time and id fields.
    #[arg(long, default_value = timeline::stream::DEFAULT_STREAM, value_parser = parse_stream_name)]
    pub stream: String,
    /// A topic of another stream, as STREAM=TOPIC (repeat for more): one
    /// feeder feeds several streams, each with its own consumer.
    #[arg(long = "stream-topic", value_name = "STREAM=TOPIC", value_parser = parse_stream_topic)]
    pub stream_topics: Vec<(String, String)>,
    /// Subscription name.
    #[arg(long, default_value = "timeline-feeder")]
    pub subscription: String,
    /// Subscription type: `key-shared` and `shared` let several feeders split the load.
    #[arg(long, value_enum, default_value = "key-shared")]
    pub subscription_type: SubscriptionType,
    /// Where a new subscription starts.
    #[arg(long, value_enum, default_value = "earliest")]
    pub initial_position: InitialPosition,
    /// Messages the broker may send ahead of the feeder, per topic
    /// (partition): the flow permits of each consumer.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub receiver_queue_size: u32,
    /// Acknowledgements are grouped, several message ids per ACK frame: a
    /// group is sent this long after its first acknowledgement is due, or
    /// at once when it holds 1000 ids (0: each batch's at once).
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    pub ack_group_time: Duration,
    /// Move the subscription to this message (LEDGER:ENTRY, as in the
    /// `pulsar:` ids the feeder gives events) on every topic, once at start
    /// (a seek): later messages are delivered again, earlier ones count as
    /// acknowledged. Drop the option before the next restart.
    #[arg(long, value_name = "LEDGER:ENTRY", value_parser = parse_message_id, conflicts_with = "start_publish_time")]
    pub start_message_id: Option<(u64, u64)>,
    /// Move the subscription, once at start (a seek), to the first message
    /// published at or after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z,
    /// or ms since the epoch). Drop the option before the next restart.
    #[arg(long, value_name = "TIME", value_parser = parse_publish_time)]
    pub start_publish_time: Option<u64>,
    /// Ask the broker to deliver a message again (a negative
    /// acknowledgement) when it is not acknowledged within this time (e.g.
    /// 5m) [default: never]. Keep it well above a batch's delivery time: a
    /// redelivered message is counted once, but delivered twice.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ack_timeout: Option<Duration>,
    /// A message the broker has delivered this many times without an
    /// acknowledgement goes to the dead-letter topic [default: unlimited].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_redeliveries: Option<u32>,
    /// Where an event's time comes from when its payload has no time field:
    /// nowhere (such a message is dead-lettered), the message's event time
    /// (set by the producer; messages without one are dead-lettered), or its
    /// publish time.
    #[arg(long, value_enum, default_value = "payload")]
    pub time_from: TimeFrom,
    /// This feeder's consumer name (shown by the broker).
    #[arg(long)]
    pub consumer_name: Option<String>,
    /// Pulsar authentication and TLS.
    #[command(flatten)]
    pub security: PulsarSecurity,
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
    /// The key field of the default stream [default: the runtime's, else
    /// session_id]; other streams' fields come from the runtime.
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

/// The modes of `feeder` other than feeding events in.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Follows a job's changes stream on the timeline server and publishes
    /// every change, exactly once in effect, to a Pulsar topic or a webhook.
    Sink(SinkOptions),
}

/// How a Pulsar client authenticates and checks the broker's certificate:
/// the same options for the feeder and `feeder sink`.
#[derive(Debug, Clone, clap::Args)]
pub struct PulsarSecurity {
    /// Pulsar authentication token (JWT).
    #[arg(
        long,
        env = "PULSAR_TOKEN",
        hide_env_values = true,
        conflicts_with = "pulsar_token_file"
    )]
    pub pulsar_token: Option<String>,
    /// File holding the Pulsar authentication token (JWT); read again on
    /// every connection and authentication challenge, so a rotated token is
    /// picked up.
    #[arg(
        long,
        env = "PULSAR_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "oauth2_issuer_url"
    )]
    pub pulsar_token_file: Option<PathBuf>,
    /// OAuth2 client credentials authentication: the issuer's URL (its
    /// token endpoint is discovered from it).
    #[arg(
        long,
        value_name = "URL",
        requires = "oauth2_credentials_url",
        conflicts_with = "pulsar_token"
    )]
    pub oauth2_issuer_url: Option<String>,
    /// OAuth2: where the client credentials JSON (`client_id`,
    /// `client_secret`) is, as `file:///path` or `data:` URL.
    #[arg(long, value_name = "URL", requires = "oauth2_issuer_url")]
    pub oauth2_credentials_url: Option<String>,
    /// OAuth2: the audience to ask a token for.
    #[arg(long, requires = "oauth2_issuer_url")]
    pub oauth2_audience: Option<String>,
    /// OAuth2: the scope to ask a token for.
    #[arg(long, requires = "oauth2_issuer_url")]
    pub oauth2_scope: Option<String>,
    /// PEM file of the certificate authorities trusted for `pulsar+ssl://`
    /// (e.g. a private CA), in addition to the public web roots.
    #[arg(long, env = "PULSAR_TLS_TRUST_CERTS", value_name = "FILE")]
    pub tls_trust_certs: Option<PathBuf>,
    /// Accept any server certificate, signed by anyone, for any host (the
    /// connection is encrypted, but the broker is not authenticated).
    #[arg(long)]
    pub tls_allow_insecure: bool,
    /// Whether the server certificate must name the host connected to
    /// (`off`: any host, still signed by a trusted CA).
    #[arg(long, value_enum, default_value = "on")]
    pub tls_hostname_verification: OnOff,
    /// PEM certificate chain the feeder presents to the broker (mutual TLS,
    /// the broker's `tlsRequireTrustedClientCertOnConnect`).
    #[arg(long, env = "PULSAR_TLS_CERT_FILE", value_name = "FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `--tls-cert-file`.
    #[arg(long, env = "PULSAR_TLS_KEY_FILE", value_name = "FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
}

/// Where an event's time comes from when its payload has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimeFrom {
    /// Only the payload's time field.
    Payload,
    /// The message's event time.
    EventTime,
    /// The message's publish time.
    PublishTime,
}

/// A switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
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

fn parse_regex(text: &str) -> Result<String, String> {
    regex::Regex::new(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("not a regular expression: {e}"))
}

fn parse_message_id(text: &str) -> Result<(u64, u64), String> {
    let (ledger, entry) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not LEDGER:ENTRY"))?;
    match (ledger.parse(), entry.parse()) {
        (Ok(ledger), Ok(entry)) => Ok((ledger, entry)),
        _ => Err(format!("`{text}` is not LEDGER:ENTRY (two whole numbers)")),
    }
}

fn parse_publish_time(text: &str) -> Result<u64, String> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let time = humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("`{text}` is neither RFC 3339 nor ms since the epoch: {e}"))?;
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .map_err(|_| format!("`{text}` is before 1970"))
}

fn parse_stream_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 64 || text.contains('=') || text.chars().any(char::is_control) {
        Err(format!(
            "`{text}` is not a stream name (1 to 64 characters, without `=`)"
        ))
    } else {
        Ok(text.to_string())
    }
}

fn parse_stream_topic(text: &str) -> Result<(String, String), String> {
    let (stream, topic) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not STREAM=TOPIC"))?;
    if topic.is_empty() {
        return Err(format!("`{text}` names no topic"));
    }
    let stream = parse_stream_name(stream).map_err(|e| format!("in `{text}`: {e}"))?;
    Ok((stream, topic.to_string()))
}

pub(crate) fn parse_metrics_addr(text: &str) -> Result<MetricsAddr, String> {
    if text == "off" {
        return Ok(MetricsAddr(None));
    }
    text.parse()
        .map(|a| MetricsAddr(Some(a)))
        .map_err(|e| format!("`{text}` is not ADDR:PORT or `off`: {e}"))
}

/// The topics one consumer reads into one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTopics {
    /// The stream.
    pub stream: String,
    /// Its topics, as given.
    pub topics: Vec<String>,
    /// A regular expression over full topic names, for more topics.
    pub pattern: Option<String>,
}

impl StreamTopics {
    /// The topics in full (`persistent://tenant/namespace/name`): brokers
    /// complete short names, but not every Pulsar-protocol broker does.
    pub fn full_topics(&self) -> Vec<String> {
        self.topics.iter().map(|t| full_topic_name(t)).collect()
    }
}

impl Options {
    /// The topics of each stream, in the order first given: `--topic`s for
    /// `--stream`, then each `--stream-topic`.
    pub fn streams(&self) -> Vec<StreamTopics> {
        let mut out: Vec<StreamTopics> = Vec::new();
        let given = self
            .topics
            .iter()
            .map(|t| (&self.stream, t))
            .chain(self.stream_topics.iter().map(|(s, t)| (s, t)));
        for (stream, topic) in given {
            match out.iter_mut().find(|s| s.stream == *stream) {
                Some(s) => s.topics.push(topic.clone()),
                None => out.push(StreamTopics {
                    stream: stream.clone(),
                    topics: vec![topic.clone()],
                    pattern: None,
                }),
            }
        }
        if let Some(pattern) = &self.topic_pattern {
            match out.iter_mut().find(|s| s.stream == self.stream) {
                Some(s) => s.pattern = Some(pattern.clone()),
                None => out.insert(
                    0,
                    StreamTopics {
                        stream: self.stream.clone(),
                        topics: Vec::new(),
                        pattern: Some(pattern.clone()),
                    },
                ),
            }
        }
        out
    }

    /// The dead-letter topic of `stream`'s consumer, defaulted as Pulsar's own
    /// clients do (after its first topic).
    pub fn dead_letter_topic(&self, stream: &StreamTopics) -> String {
        full_topic_name(
            &self
                .dead_letter_topic
                .clone()
                .unwrap_or_else(|| match stream.topics.first() {
                    Some(topic) => format!("{topic}-{}-DLQ", self.subscription),
                    None => format!("{}-DLQ", self.subscription),
                }),
        )
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
        let streams = o.streams();
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].stream, "default");
        assert_eq!(
            o.dead_letter_topic(&streams[0]),
            "persistent://public/default/a-timeline-feeder-DLQ"
        );
        assert_eq!(
            streams[0].full_topics(),
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
        let o = Options::try_parse_from(["feeder", "--topic", "a", "--start-message-id", "7:12"]).unwrap();
        assert_eq!(o.start_message_id, Some((7, 12)));
        for t in ["2026-12-01T00:00:00Z", "1796083200000"] {
            let o = Options::try_parse_from(["feeder", "--topic", "a", "--start-publish-time", t]).unwrap();
            assert_eq!(o.start_publish_time, Some(1_796_083_200_000), "{t}");
        }
        for bad in [&["--start-message-id", "7"][..], &["--start-publish-time", "soon"][..]] {
            let e = Options::try_parse_from(["feeder", "--topic", "a"].iter().chain(bad)).unwrap_err();
            assert!(e.to_string().contains(bad[1]), "{e}");
        }
        assert!(
            Options::try_parse_from(["feeder", "--topic", "a", "--tls-cert-file", "c.pem"]).is_err(),
            "no key"
        );
    }

    #[test]
    fn topics_map_to_streams() {
        let o = Options::try_parse_from([
            "feeder",
            "--stream-topic",
            "cards=swipes",
            "--topic",
            "plays",
            "--stream-topic",
            "cards=t/ns/more=swipes",
        ])
        .unwrap();
        let streams = o.streams();
        let pairs: Vec<(&str, Vec<&str>)> = streams
            .iter()
            .map(|s| (s.stream.as_str(), s.topics.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("default", vec!["plays"]),
                ("cards", vec!["swipes", "t/ns/more=swipes"])
            ],
            "a topic name may hold `=`; a stream name may not"
        );
        assert_eq!(
            o.dead_letter_topic(&streams[1]),
            "persistent://public/default/swipes-timeline-feeder-DLQ"
        );
        assert!(
            Options::try_parse_from(["feeder", "--stream-topic", "cards=x"]).is_ok(),
            "no --topic needed"
        );
        for bad in ["cards", "=t", "cards="] {
            let e = Options::try_parse_from(["feeder", "--stream-topic", bad]).unwrap_err();
            assert!(e.to_string().contains(&format!("`{bad}`")), "{bad}: {e}");
        }
        let o = Options::try_parse_from(["feeder", "--topic-pattern", "persistent://public/default/r-.*"]).unwrap();
        let streams = o.streams();
        assert_eq!(streams.len(), 1, "a pattern needs no --topic");
        assert_eq!(streams[0].pattern.as_deref(), Some("persistent://public/default/r-.*"));
        assert_eq!(
            o.dead_letter_topic(&streams[0]),
            "persistent://public/default/timeline-feeder-DLQ"
        );
        let e = Options::try_parse_from(["feeder", "--topic-pattern", "(unclosed"]).unwrap_err();
        assert!(e.to_string().contains("not a regular expression"), "{e}");
        let e = Options::try_parse_from(["feeder", "--from-file", "x", "--stream", ""]).unwrap_err();
        assert!(e.to_string().contains("not a stream name"), "{e}");
    }

    #[test]
    fn sink_is_a_subcommand_next_to_the_flat_options() {
        let sink = |extra: &[&str]| {
            let args = ["feeder", "sink", "--from", "http://h:8080", "--job", "alerts"];
            Options::try_parse_from(args.iter().chain(extra)).map(|o| match o.command {
                Some(Command::Sink(s)) => s,
                None => panic!("not the sink"),
            })
        };
        let s = sink(&["--topic", "out"]).unwrap();
        assert_eq!((s.batch, s.wait, s.filter.as_deref()), (500, 30, None));
        assert_eq!(s.name(), "timeline-sink-alerts");
        assert_eq!(s.checkpoint_path(), PathBuf::from("timeline-sink-alerts.checkpoint"));
        assert_eq!(s.max_backoff, Duration::from_secs(5));
        let s = sink(&[
            "--topic",
            "out",
            "--service-url",
            "pulsar://b:6650",
            "--name",
            "mine",
            "--where",
            "new == true",
            "--batch",
            "10000",
            "--pulsar-token",
            "t",
        ])
        .unwrap();
        assert_eq!(s.pulsar_url, "pulsar://b:6650", "--service-url is --pulsar-url");
        assert_eq!(s.name(), "mine");
        assert_eq!(s.filter.as_deref(), Some("new == true"));
        assert_eq!(s.security.pulsar_token.as_deref(), Some("t"));
        let s = sink(&["--webhook", "http://r/hook", "--checkpoint", "/tmp/c"]).unwrap();
        assert_eq!(s.webhook.as_deref(), Some("http://r/hook"));
        for (bad, why) in [
            (&[][..], "--topic"),
            (&["--topic", "t", "--webhook", "http://r"][..], "cannot be used with"),
            (&["--topic", "t", "--batch", "0"][..], "--batch"),
            (&["--topic", "t", "--batch", "10001"][..], "--batch"),
            (&["--topic", "t", "--wait", "61"][..], "--wait"),
            (&["--topic", "t", "--producer-name", "a b"][..], "not a producer name"),
        ] {
            let e = sink(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let e = Options::try_parse_from(["feeder", "sink", "--from", "http://h", "--job", "a/b", "--topic", "t"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a job name"), "{e}");
        let o = Options::try_parse_from(["feeder", "--topic", "a", "--pulsar-token", "t"]).unwrap();
        assert!(o.command.is_none(), "the flat options feed events in, as before");
        assert_eq!(o.security.pulsar_token.as_deref(), Some("t"));
        let e = Options::try_parse_from(["feeder", "--topic", "a", "sink", "--from", "http://h", "--job", "a"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be used with"), "{e}");
    }
}

/// Options of `feeder sink`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["topic", "webhook"])))]
pub struct SinkOptions {
    /// The timeline server's base URL (`timeline serve`).
    #[arg(long = "from", env = "TIMELINE_URL", value_name = "URL")]
    pub from: String,
    /// The job whose changes go out.
    #[arg(long, value_parser = parse_job)]
    pub job: String,
    /// Bearer token for the timeline server.
    #[arg(long, env = "TIMELINE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Only the changes that match this condition (passed to the server as
    /// `where`, unchanged).
    #[arg(long = "where", value_name = "COND")]
    pub filter: Option<String>,
    /// Changes per request to the server, and per batch published (one
    /// POST per batch to a webhook).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
    /// How long one request to the server waits for a new change (long
    /// poll), in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=60))]
    pub wait: u32,
    /// Pulsar service URL (with `--topic`).
    #[arg(
        long,
        visible_alias = "service-url",
        env = "PULSAR_URL",
        default_value = "pulsar://127.0.0.1:6650"
    )]
    pub pulsar_url: String,
    /// The Pulsar topic the changes go to, one message per change (not a
    /// partitioned topic). Its namespace needs deduplication enabled for
    /// exactly once.
    #[arg(long, conflicts_with = "webhook")]
    pub topic: Option<String>,
    /// The Pulsar producer name [default: timeline-sink-{job}]; keep it
    /// the same across restarts: the broker deduplicates by it. Also the
    /// prefix of webhook idempotency keys.
    #[arg(long, visible_alias = "name", value_parser = parse_name)]
    pub producer_name: Option<String>,
    /// Pulsar authentication and TLS.
    #[command(flatten)]
    pub security: PulsarSecurity,
    /// POST the changes to this URL instead, a batch per request.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// How long one webhook request may take.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub webhook_timeout: Duration,
    /// The checkpoint file [default: ./timeline-sink-{job}.checkpoint].
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Longest wait between retries (server, broker, webhook).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (`off` to disable).
    #[arg(long, default_value = "127.0.0.1:9465", value_parser = parse_metrics_addr)]
    pub metrics_addr: MetricsAddr,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

fn parse_job(text: &str) -> Result<String, String> {
    if timeline::registry::valid_job_name(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{text}` is not a job name (1 to 64 letters, digits, `-`, `_` or `.`)"
        ))
    }
}

fn parse_name(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.len() <= 200 && text.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{text}` is not a producer name (1 to 200 ASCII letters, digits and signs, no spaces)"
        ))
    }
}

impl SinkOptions {
    /// The producer name, and prefix of idempotency keys.
    pub fn name(&self) -> String {
        self.producer_name
            .clone()
            .unwrap_or_else(|| format!("timeline-sink-{}", self.job))
    }

    /// The checkpoint file.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.checkpoint
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("timeline-sink-{}.checkpoint", self.job)))
    }
}
