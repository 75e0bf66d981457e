//! The dead-letter topic of a stream: messages that cannot be delivered,
//! published with their reason, origin and stream.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::prepare::Incoming;
use crate::wire::client::Client;
use crate::wire::producer::Producer;

/// The dead-letter topic of one stream, and its producer.
pub struct DeadLetters {
    client: Arc<Client>,
    topic: String,
    stream: String,
    producer: tokio::sync::Mutex<Option<Producer>>,
    metrics: Arc<Metrics>,
}

impl DeadLetters {
    /// The dead-letter topic `topic` of `stream`; its producer is made on
    /// first use.
    pub fn new(client: Arc<Client>, topic: String, stream: String, metrics: Arc<Metrics>) -> DeadLetters {
        DeadLetters {
            client,
            topic,
            stream,
            producer: tokio::sync::Mutex::new(None),
            metrics,
        }
    }

    /// Closes the producer, if any.
    pub async fn close(&self) {
        if let Some(producer) = self.producer.lock().await.take() {
            producer.close().await;
        }
    }

    /// Publishes `message` with its reason, origin and stream as
    /// properties; retries until the broker has stored it.
    pub async fn publish(&self, message: &Incoming, reason: &str) {
        tracing::warn!(origin = %message.origin, %reason, topic = %self.topic, "dead letter");
        let properties = vec![
            ("reason".to_string(), reason.to_string()),
            ("origin".to_string(), message.origin.clone()),
            ("stream".to_string(), self.stream.clone()),
        ];
        let mut backoff = Duration::from_millis(100);
        let mut producer = self.producer.lock().await;
        loop {
            let sent = match producer.as_mut() {
                Some(p) => {
                    p.send(message.payload.clone(), message.key.clone(), properties.clone())
                        .await
                }
                None => match Producer::create(&self.client, &self.topic).await {
                    Ok(p) => {
                        *producer = Some(p);
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match sent {
                Ok(()) => return,
                Err(e) => {
                    self.metrics.retried.inc();
                    tracing::warn!(error = %format!("{e:#}"), "cannot publish to the dead-letter topic; retrying");
                    *producer = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
