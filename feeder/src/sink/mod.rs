//! `feeder sink`: a job's changes out of the timeline server, into a Pulsar
//! topic or a webhook, exactly once in effect.
//!
//! The sink follows `GET /v1/jobs/{job}/changes` (a long poll) from its
//! checkpoint, the last change its target acknowledged, and writes the
//! checkpoint again (atomically) after each batch the target acknowledged.
//! A crash between the target's acknowledgement and the checkpoint makes the
//! sink send that batch again; the target recognises it:
//!
//! - *Pulsar*: each change is one message whose sequence id is the change id,
//!   from a producer whose name does not change (`timeline-sink-{job}`). A
//!   broker with deduplication enabled stores a sequence id it has stored
//!   from that producer name only once, and names the highest one when the
//!   producer is made (`last_sequence_id`): the sink resumes after the higher
//!   of it and its checkpoint.
//! - *Webhook*: each batch is written to the checkpoint before it is posted
//!   (write-ahead), with its bounds and its idempotency key; after a crash the
//!   same changes go again with the same key. Receivers deduplicate by the
//!   key, or by change id (ids increase).
//!
//! Layout: [`changes`] (the server's stream), [`checkpoint`], [`pulsar`],
//! [`webhook`].

pub mod changes;
pub mod checkpoint;
pub mod pulsar;
pub mod webhook;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub use crate::options::SinkOptions;
use crate::options::full_topic_name;
use changes::{Change, ChangesClient, FetchError, Page};
use checkpoint::{CheckpointFile, InFlight};
use pulsar::PulsarTarget;
use webhook::Webhook;

/// Set (to a change id) in tests only: the sink exits (code 86) right after
/// its target acknowledged a batch holding a change with this id or a
/// higher one, before the checkpoint records it, as a crash at the worst
/// moment would.
pub const EXIT_AFTER_SEND_ENV: &str = "FEEDER_SINK_TEST_EXIT_AFTER_SEND";

/// How long a stopping sink waits for the batch in flight.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The sink's metrics (prefix `feeder_sink_`).
pub struct SinkMetrics {
    /// Changes the target acknowledged.
    pub published: Counter,
    /// Batches the target acknowledged.
    pub batches: Counter,
    /// The checkpoint: every change up to this id is acknowledged.
    pub last_change_id: Gauge,
    /// The newest change id of the job, as the server last said.
    pub server_last_change_id: Gauge,
    /// Failed requests (server or webhook) tried again.
    pub retries: Counter,
    /// Producers made again after a broker error.
    pub reconnects: Counter,
    registry: Registry,
}

impl SinkMetrics {
    /// New, all zero.
    pub fn new() -> Arc<SinkMetrics> {
        let mut registry = Registry::with_prefix("feeder_sink");
        let m = SinkMetrics {
            published: Counter::default(),
            batches: Counter::default(),
            last_change_id: Gauge::default(),
            server_last_change_id: Gauge::default(),
            retries: Counter::default(),
            reconnects: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "changes_published",
            "Changes the target acknowledged",
            m.published.clone(),
        );
        registry.register("batches", "Batches the target acknowledged", m.batches.clone());
        registry.register(
            "last_change_id",
            "The checkpoint: every change up to this id is acknowledged",
            m.last_change_id.clone(),
        );
        registry.register(
            "server_last_change_id",
            "The newest change id of the job, as the server last said",
            m.server_last_change_id.clone(),
        );
        registry.register(
            "retries",
            "Failed requests to the server or the webhook, tried again",
            m.retries.clone(),
        );
        registry.register(
            "reconnects",
            "Producers made again after a broker error",
            m.reconnects.clone(),
        );
        Arc::new(SinkMetrics { registry, ..m })
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}

fn gauge(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// Where the changes go.
enum Target {
    Pulsar(PulsarTarget),
    Webhook(Webhook),
}

/// Runs `feeder sink` until it is stopped (Ctrl-C, SIGTERM: exit 0) or
/// fails for good (an unknown job, a bad `where`, a receiver's 4xx).
pub async fn run(options: SinkOptions, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<ExitCode> {
    let metrics = SinkMetrics::new();
    let job = options.job.clone();
    let name = options.name();
    let changes = ChangesClient::new(&options.from, &job, options.token.clone(), options.filter.clone())
        .map_err(|e| anyhow::anyhow!("--from: {e:#}"))?;
    let (mut target, target_id) = match (&options.topic, &options.webhook) {
        (Some(topic), _) => {
            crate::wire::url::ServiceUrl::parse(&options.pulsar_url)
                .map_err(|e| anyhow::anyhow!("--pulsar-url: {e}"))?;
            let config = crate::client::security_config(&options.security)?;
            let client = Arc::new(crate::wire::client::Client::new(&options.pulsar_url, config)?);
            let topic = full_topic_name(topic);
            let id = format!("pulsar:{topic}");
            let target = PulsarTarget::new(
                client,
                topic,
                name.clone(),
                job.clone(),
                options.max_backoff,
                metrics.clone(),
            );
            (Target::Pulsar(target), id)
        }
        (None, Some(url)) => {
            let webhook = Webhook::new(url, &job, options.webhook_timeout, options.max_backoff, metrics.clone())
                .map_err(|e| anyhow::anyhow!("--webhook: {e:#}"))?;
            let id = format!("webhook:{}", webhook.url());
            (Target::Webhook(webhook), id)
        }
        (None, None) => anyhow::bail!("give --topic or --webhook"),
    };
    let checkpoint = CheckpointFile::open(&options.checkpoint_path(), &job, &target_id)?;
    if let Some(addr) = options.metrics_addr.0 {
        let m = metrics.clone();
        let bound = crate::metrics::serve_text(addr, Arc::new(move || m.encode()))
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e} (use --metrics-addr)"))?;
        tracing::info!("metrics at http://{bound}/metrics");
    }
    tracing::info!(
        job = %job,
        from = %changes.url(),
        to = %target_id,
        after = checkpoint.state.acked,
        checkpoint = %checkpoint.path().display(),
        "sinking changes"
    );
    metrics.last_change_id.set(gauge(checkpoint.state.acked));
    let exit_after = std::env::var(EXIT_AFTER_SEND_ENV).ok().and_then(|v| v.parse().ok());
    let (stop_tx, stop) = watch::channel(false);
    let mut stream = Stream {
        changes,
        checkpoint,
        batch: options.batch,
        wait: options.wait,
        max_backoff: options.max_backoff,
        metrics,
        stop,
        exit_after,
    };
    let result = {
        let running = async {
            // The job and the filter are checked first: an unknown job or a
            // bad `where` fails at once, whatever the target does.
            let filter = stream.changes.filter().map(str::to_string);
            if stream
                .next_page(stream.checkpoint.state.acked, 0, filter.as_deref())
                .await?
                .is_none()
            {
                return Ok(());
            }
            match &mut target {
                Target::Pulsar(t) => run_pulsar(&mut stream, t).await,
                Target::Webhook(w) => run_webhook(&mut stream, w, &name).await,
            }
        };
        tokio::pin!(running);
        tokio::select! {
            r = &mut running => r,
            _ = shutdown => {
                tracing::info!("stopping");
                let _ = stop_tx.send(true);
                match tokio::time::timeout(STOP_GRACE, &mut running).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::warn!("the batch in flight did not finish in {STOP_GRACE:?}; it is sent again on restart");
                        Ok(())
                    }
                }
            }
        }
    };
    if let Target::Pulsar(t) = &mut target {
        t.close().await;
    }
    result?;
    tracing::info!(acked = stream.checkpoint.state.acked, "stopped");
    Ok(ExitCode::SUCCESS)
}

/// The changes side: the server, the checkpoint, the settings.
struct Stream {
    changes: ChangesClient,
    checkpoint: CheckpointFile,
    batch: u32,
    wait: u32,
    max_backoff: Duration,
    metrics: Arc<SinkMetrics>,
    stop: watch::Receiver<bool>,
    exit_after: Option<u64>,
}

/// Waits until the sink is asked to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Stream {
    /// The next page after `after` (waiting up to `wait` seconds for one),
    /// trying again with backoff while the server is down or failing;
    /// `None` when the sink is asked to stop meanwhile.
    async fn next_page(&mut self, after: u64, wait: u32, filter: Option<&str>) -> anyhow::Result<Option<Page>> {
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        loop {
            let fetched = tokio::select! {
                r = self.changes.fetch(after, self.batch, wait, filter) => r,
                _ = stopped(&mut self.stop) => return Ok(None),
            };
            match fetched {
                Ok(page) => {
                    if failing {
                        tracing::info!(url = %self.changes.url(), "the timeline server answers again");
                    }
                    if page.last < after {
                        anyhow::bail!(
                            "job `{}` has changes up to {} only, but the sink is at change {after} (its checkpoint {}, or the topic's last sequence id): is this another timeline server, or one with a new data directory? Start with a new checkpoint file (and a new topic or --producer-name)",
                            self.changes.job(),
                            page.last,
                            self.checkpoint.path().display()
                        );
                    }
                    self.metrics.server_last_change_id.set(gauge(page.last));
                    return Ok(Some(page));
                }
                Err(FetchError::Fatal(e)) => anyhow::bail!(e),
                Err(FetchError::Transient(e)) => {
                    failing = true;
                    self.metrics.retries.inc();
                    tracing::warn!("{e}; retrying in {backoff:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped(&mut self.stop) => return Ok(None),
                    }
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }

    /// The changes after `after` up to `last` (a batch in flight before a
    /// crash), read again with the `filter` they were read with.
    async fn read_batch(&mut self, after: u64, last: u64, filter: Option<&str>) -> anyhow::Result<Option<Vec<Change>>> {
        let mut out: Vec<Change> = Vec::new();
        let mut cursor = after;
        while cursor < last {
            let Some(page) = self.next_page(cursor, 0, filter).await? else {
                return Ok(None);
            };
            if page.changes.is_empty() && page.next <= cursor {
                break;
            }
            out.extend(page.changes.into_iter().take_while(|c| c.id <= last));
            cursor = page.next;
        }
        if out.last().map(|c| c.id) != Some(last) {
            anyhow::bail!(
                "the timeline server no longer has change {last} of job `{}`, of the batch in flight in {}: is this another timeline server, or one with a new data directory?",
                self.changes.job(),
                self.checkpoint.path().display()
            );
        }
        Ok(Some(out))
    }

    /// Records that the target acknowledged `changes` and everything up to
    /// `next`.
    fn acknowledged(&mut self, changes: &[Change], next: u64) -> anyhow::Result<()> {
        if let Some(n) = self.exit_after
            && changes.last().is_some_and(|c| c.id >= n)
        {
            eprintln!("{EXIT_AFTER_SEND_ENV}: exiting after the target acknowledged change {n}");
            std::process::exit(86);
        }
        self.checkpoint.ack(next)?;
        self.metrics.published.inc_by(changes.len() as u64);
        self.metrics.batches.inc();
        self.metrics.last_change_id.set(gauge(next));
        tracing::debug!(
            first = changes.first().map(|c| c.id),
            last = changes.last().map(|c| c.id),
            next,
            "acknowledged"
        );
        Ok(())
    }

    /// Moves the checkpoint over changes the filter left out.
    fn skip_to(&mut self, next: u64) -> anyhow::Result<()> {
        if next > self.checkpoint.state.acked {
            self.checkpoint.ack(next)?;
            self.metrics.last_change_id.set(gauge(next));
        }
        Ok(())
    }
}

async fn run_pulsar(s: &mut Stream, t: &mut PulsarTarget) -> anyhow::Result<()> {
    loop {
        let last_sequence_id = tokio::select! {
            r = t.connect() => r?,
            _ = stopped(&mut s.stop) => return Ok(()),
        };
        let acked = s.checkpoint.state.acked;
        match last_sequence_id {
            Some(seq) if seq > acked => {
                tracing::info!(
                    topic = %t.topic(),
                    checkpoint = acked,
                    last_sequence_id = seq,
                    "the topic holds changes the checkpoint does not record yet; resuming after them"
                );
                s.skip_to(seq)?;
            }
            None if acked > 0 => tracing::warn!(
                topic = %t.topic(),
                checkpoint = acked,
                "the broker knows no sequence id of this producer: is deduplication enabled on the namespace \
                 (pulsar-admin namespaces set-deduplication --enable)? Without it a crash between a receipt and \
                 the checkpoint publishes changes twice"
            ),
            _ => {}
        }
        let mut cursor = s.checkpoint.state.acked;
        let filter = s.changes.filter().map(str::to_string);
        loop {
            let Some(page) = s.next_page(cursor, s.wait, filter.as_deref()).await? else {
                return Ok(());
            };
            if page.changes.is_empty() {
                s.skip_to(page.next)?;
                cursor = cursor.max(page.next);
                continue;
            }
            if let Err(e) = t.publish(&page.changes).await {
                s.metrics.reconnects.inc();
                tracing::warn!(topic = %t.topic(), error = %format!("{e:#}"), "publishing failed; making the producer again");
                break;
            }
            s.acknowledged(&page.changes, page.next)?;
            cursor = page.next;
        }
    }
}

async fn run_webhook(s: &mut Stream, w: &Webhook, name: &str) -> anyhow::Result<()> {
    if let Some(b) = s.checkpoint.state.in_flight.clone() {
        tracing::info!(key = %b.key, after = b.after, last = b.last, "sending the batch in flight at the last stop again");
        let Some(changes) = s.read_batch(b.after, b.last, b.filter.as_deref()).await? else {
            return Ok(());
        };
        tokio::select! {
            r = w.deliver(&b.key, &changes) => r?,
            _ = stopped(&mut s.stop) => return Ok(()),
        }
        s.acknowledged(&changes, b.next)?;
    }
    let mut cursor = s.checkpoint.state.acked;
    let filter = s.changes.filter().map(str::to_string);
    loop {
        let Some(page) = s.next_page(cursor, s.wait, filter.as_deref()).await? else {
            return Ok(());
        };
        let (Some(first), Some(last)) = (page.changes.first(), page.changes.last()) else {
            s.skip_to(page.next)?;
            cursor = cursor.max(page.next);
            continue;
        };
        let key = format!("{name}:{}-{}", first.id, last.id);
        s.checkpoint.write_ahead(InFlight {
            after: cursor,
            last: last.id,
            next: page.next,
            filter: filter.clone(),
            key: key.clone(),
        })?;
        tokio::select! {
            r = w.deliver(&key, &page.changes) => r?,
            _ = stopped(&mut s.stop) => return Ok(()),
        }
        s.acknowledged(&page.changes, page.next)?;
        cursor = page.next;
    }
}
