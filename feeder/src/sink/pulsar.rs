//! The Pulsar target: each change one message, its sequence id the change
//! id, from a producer whose name stays the same across restarts; so a
//! broker with deduplication enabled stores a change sent again (after a
//! crash between its receipt and the checkpoint) only once, and tells the
//! sink where to resume (`last_sequence_id`).

use std::sync::Arc;
use std::time::Duration;

use super::SinkMetrics;
use super::changes::Change;
use crate::wire::client::Client;
use crate::wire::producer::Producer;

/// A Pulsar topic and the sink's producer on it.
pub struct PulsarTarget {
    client: Arc<Client>,
    topic: String,
    name: String,
    job: String,
    producer: Option<Producer>,
    max_backoff: Duration,
    metrics: Arc<SinkMetrics>,
}

impl PulsarTarget {
    /// The topic `topic` (in full) of the cluster `client` reaches, written
    /// by producer `name`.
    pub fn new(
        client: Arc<Client>,
        topic: String,
        name: String,
        job: String,
        max_backoff: Duration,
        metrics: Arc<SinkMetrics>,
    ) -> PulsarTarget {
        PulsarTarget {
            client,
            topic,
            name,
            job,
            producer: None,
            max_backoff,
            metrics,
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Makes the producer, trying again with backoff while the broker
    /// cannot be reached or refuses it (a producer of the same name still
    /// connected, as right after a crash); returns the highest sequence id
    /// the broker has stored from this producer name (a change id), if it
    /// knows one. A partitioned topic is an error: the changes' order and
    /// the resume point hold on one partition only.
    pub async fn connect(&mut self) -> anyhow::Result<Option<u64>> {
        self.close().await;
        let mut backoff = Duration::from_millis(100);
        loop {
            let made = async {
                let partitions = self.client.partitions(&self.topic).await?;
                if partitions > 0 {
                    return Ok(Err(anyhow::anyhow!(
                        "{} is a partitioned topic ({partitions} partitions); the sink publishes every change of a job, in order, to one topic that is not partitioned",
                        self.topic
                    )));
                }
                Producer::open(&self.client, &self.topic, Some(&self.name))
                    .await
                    .map(Ok)
            }
            .await;
            match made {
                Ok(Ok(producer)) => {
                    let last = producer.last_sequence_id();
                    tracing::info!(topic = %self.topic, producer = %producer.name(), last_sequence_id = ?last, "producer ready");
                    self.producer = Some(producer);
                    return Ok(last);
                }
                Ok(Err(fatal)) => return Err(fatal),
                Err(e) => {
                    self.metrics.reconnects.inc();
                    tracing::warn!(topic = %self.topic, error = %format!("{e:#}"), "cannot make the producer; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }

    /// Publishes `changes` (all queued at once, in order) and waits for
    /// every receipt. An error means the producer must be made again
    /// ([`PulsarTarget::connect`]); the changes after the last stored one
    /// are sent again then.
    pub async fn publish(&mut self, changes: &[Change]) -> anyhow::Result<()> {
        let producer = self.producer.as_ref().ok_or_else(|| anyhow::anyhow!("no producer"))?;
        let mut receipts = Vec::with_capacity(changes.len());
        for c in changes {
            let properties = vec![
                ("change_id".to_string(), c.id.to_string()),
                ("job".to_string(), self.job.clone()),
            ];
            receipts.push(producer.start_send(c.id, c.json.clone().into_bytes(), c.key.clone(), properties)?);
        }
        for r in receipts {
            r.wait().await?;
        }
        Ok(())
    }

    /// Closes the producer, if any.
    pub async fn close(&mut self) {
        if let Some(p) = self.producer.take() {
            p.close().await;
        }
    }
}
