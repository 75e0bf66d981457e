//! A producer of single, uncompressed messages: the dead-letter topic's
//! (sequence ids counted from the broker's last one), and the sink's (a
//! name of its own and the sequence ids it chooses, for the broker's
//! deduplication).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use pulsar::message::proto::{self, MessageMetadata, base_command::Type};

use super::client::Client;
use super::connection::{Connection, PendingReceipt, next_id};

/// A producer on one topic (the first partition of a partitioned one).
pub struct Producer {
    connection: Connection,
    id: u64,
    name: String,
    sequence: u64,
    last_sequence_id: Option<u64>,
    topic: String,
}

impl Producer {
    /// Creates a producer on `topic` (its first partition if it is
    /// partitioned), named by the broker.
    pub async fn create(client: &Client, topic: &str) -> anyhow::Result<Producer> {
        let topic = if client.partitions(topic).await? > 0 {
            format!("{topic}-partition-0")
        } else {
            topic.to_string()
        };
        Producer::open(client, &topic, None).await
    }

    /// Creates a producer on `topic` as it is named (a partition, or a topic
    /// that is not partitioned), named `name` (or by the broker). A broker
    /// that deduplicates remembers the highest sequence id it stored from
    /// each producer name: [`Producer::last_sequence_id`].
    pub async fn open(client: &Client, topic: &str, name: Option<&str>) -> anyhow::Result<Producer> {
        let connection = client.lookup(topic).await?;
        let id = next_id();
        let reply = connection
            .request(Type::Producer, |c, request_id| {
                c.producer = Some(proto::CommandProducer {
                    topic: topic.to_string(),
                    producer_id: id,
                    request_id,
                    producer_name: name.map(str::to_string),
                    ..Default::default()
                })
            })
            .await
            .with_context(|| format!("a producer on {topic}"))?;
        let success = reply.producer_success.context("the broker did not answer PRODUCER")?;
        let last_sequence_id = success.last_sequence_id.and_then(|s| u64::try_from(s).ok());
        Ok(Producer {
            connection,
            id,
            name: success.producer_name,
            sequence: last_sequence_id.map_or(0, |s| s.wrapping_add(1)),
            last_sequence_id,
            topic: topic.to_string(),
        })
    }

    /// The producer's name (as the broker confirmed it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The highest sequence id the broker has stored from a producer of
    /// this name on this topic, when it told (a broker with deduplication
    /// enabled does; -1 on the wire, `None` here, when it knows none).
    pub fn last_sequence_id(&self) -> Option<u64> {
        self.last_sequence_id
    }

    /// Publishes one message and waits until the broker has stored it.
    pub async fn send(
        &mut self,
        data: Vec<u8>,
        key: Option<String>,
        properties: Vec<(String, String)>,
    ) -> anyhow::Result<()> {
        let sequence_id = self.sequence;
        self.start_send(sequence_id, data, key, properties)?
            .wait()
            .await
            .with_context(|| format!("publishing to {}", self.topic))?;
        self.sequence = self.sequence.wrapping_add(1);
        Ok(())
    }

    /// Queues one message with sequence id `sequence_id` (which must be
    /// higher than the last one sent, for a broker that deduplicates to
    /// store it) and returns its receipt: several messages can be in flight,
    /// and go out in the order they were queued.
    pub fn start_send(
        &self,
        sequence_id: u64,
        data: Vec<u8>,
        key: Option<String>,
        properties: Vec<(String, String)>,
    ) -> anyhow::Result<PendingReceipt> {
        let publish_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let metadata = MessageMetadata {
            producer_name: self.name.clone(),
            sequence_id,
            publish_time,
            properties: properties
                .into_iter()
                .map(|(key, value)| proto::KeyValue { key, value })
                .collect(),
            partition_key: key,
            uncompressed_size: Some(data.len() as u32),
            ..Default::default()
        };
        self.connection
            .start_publish(self.id, metadata, data)
            .with_context(|| format!("publishing to {}", self.topic))
    }

    /// Closes the producer on the broker.
    pub async fn close(self) {
        let closed = self.connection.request(Type::CloseProducer, |c, request_id| {
            c.close_producer = Some(proto::CommandCloseProducer {
                producer_id: self.id,
                request_id,
            })
        });
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), closed).await;
    }
}
