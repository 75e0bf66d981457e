//! A producer of single, uncompressed messages (the dead-letter topic's).

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use pulsar::message::proto::{self, MessageMetadata, base_command::Type};

use super::client::Client;
use super::connection::{Connection, next_id};

/// A producer on one topic (the first partition of a partitioned one).
pub struct Producer {
    connection: Connection,
    id: u64,
    name: String,
    sequence: u64,
    topic: String,
}

impl Producer {
    /// Creates a producer on `topic`.
    pub async fn create(client: &Client, topic: &str) -> anyhow::Result<Producer> {
        let topic = if client.partitions(topic).await? > 0 {
            format!("{topic}-partition-0")
        } else {
            topic.to_string()
        };
        let connection = client.lookup(&topic).await?;
        let id = next_id();
        let reply = connection
            .request(Type::Producer, |c, request_id| {
                c.producer = Some(proto::CommandProducer {
                    topic: topic.clone(),
                    producer_id: id,
                    request_id,
                    ..Default::default()
                })
            })
            .await
            .with_context(|| format!("a producer on {topic}"))?;
        let success = reply.producer_success.context("the broker did not answer PRODUCER")?;
        Ok(Producer {
            connection,
            id,
            name: success.producer_name,
            sequence: u64::try_from(success.last_sequence_id.unwrap_or(-1).saturating_add(1)).unwrap_or(0),
            topic,
        })
    }

    /// Publishes one message and waits until the broker has stored it.
    pub async fn send(
        &mut self,
        data: Vec<u8>,
        key: Option<String>,
        properties: Vec<(String, String)>,
    ) -> anyhow::Result<()> {
        let publish_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let metadata = MessageMetadata {
            producer_name: self.name.clone(),
            sequence_id: self.sequence,
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
            .publish(self.id, metadata, data)
            .await
            .with_context(|| format!("publishing to {}", self.topic))?;
        self.sequence = self.sequence.wrapping_add(1);
        Ok(())
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
