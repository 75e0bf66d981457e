//! The consumers of one subscription on a set of topics (partitions):
//! subscribe, flow permits, acknowledgements, redelivery, seek, close.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pulsar::message::proto::{self, MessageIdData, base_command::Type, command_ack::AckType};
use tokio::sync::mpsc;

use super::acks::{Due, MAX_IDS_PER_FRAME};
use super::client::Client;
use super::connection::{Connection, Event, command, next_id};

/// Where the subscription starts reading, set once at start with a seek.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At this message (ledger, entry).
    MessageId(u64, u64),
    /// At the first message published at or after this time (ms since the epoch).
    PublishTime(u64),
}

/// How to subscribe.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The subscription.
    pub subscription: String,
    /// Its type (`CommandSubscribe.SubType`).
    pub sub_type: proto::command_subscribe::SubType,
    /// This consumer's name.
    pub consumer_name: String,
    /// Where a new subscription starts.
    pub initial_position: proto::command_subscribe::InitialPosition,
    /// Messages the broker may send ahead, per topic (partition).
    pub receiver_queue_size: u32,
    /// Where to move the subscription once, at start.
    pub start: Option<Start>,
}

/// One topic (partition) of the subscription.
#[derive(Debug)]
pub struct Topic {
    /// Its full name.
    pub name: String,
    /// Its partition index, or -1.
    pub partition: i32,
    live: Option<Live>,
    sought: bool,
}

#[derive(Debug)]
struct Live {
    consumer_id: u64,
    connection: Connection,
    /// Messages taken since the last FLOW.
    taken: u32,
}

/// The consumers of one subscription.
pub struct Subscription {
    client: Arc<Client>,
    settings: Settings,
    events_tx: mpsc::UnboundedSender<Event>,
    /// Messages and closings from every consumer.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// The topics, by index.
    pub topics: Vec<Topic>,
    by_consumer: HashMap<u64, usize>,
}

/// The partition index a topic name ends with (`-partition-3`), or -1.
pub fn partition_of(name: &str) -> i32 {
    name.rsplit_once("-partition-")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(-1)
}

impl Subscription {
    /// A subscription with no topic yet.
    pub fn new(client: Arc<Client>, settings: Settings) -> Subscription {
        let (events_tx, events) = mpsc::unbounded_channel();
        Subscription {
            client,
            settings,
            events_tx,
            events,
            topics: Vec::new(),
            by_consumer: HashMap::new(),
        }
    }

    /// Adds a topic (partition) to consume; false if it is there already.
    pub fn add_topic(&mut self, name: &str) -> bool {
        if self.topics.iter().any(|t| t.name == name) {
            return false;
        }
        self.topics.push(Topic {
            name: name.to_string(),
            partition: partition_of(name),
            live: None,
            sought: false,
        });
        true
    }

    /// Whether every topic has a consumer.
    pub fn complete(&self) -> bool {
        self.topics.iter().all(|t| t.live.is_some())
    }

    /// Whether topic `index` has a consumer.
    pub fn is_live(&self, index: usize) -> bool {
        self.topics.get(index).is_some_and(|t| t.live.is_some())
    }

    /// The topic of consumer `consumer_id`, if it is current.
    pub fn topic_of(&self, consumer_id: u64) -> Option<usize> {
        self.by_consumer.get(&consumer_id).copied()
    }

    /// Subscribes every topic that has no consumer; returns how many were
    /// subscribed, or the first error (those subscribed before it stay).
    pub async fn subscribe_missing(&mut self) -> anyhow::Result<usize> {
        let mut done = 0;
        for index in 0..self.topics.len() {
            if self.topics[index].live.is_none() {
                self.subscribe(index).await?;
                done += 1;
            }
        }
        Ok(done)
    }

    async fn subscribe(&mut self, index: usize) -> anyhow::Result<()> {
        let name = self.topics[index].name.clone();
        let connection = self.client.lookup(&name).await?;
        let consumer_id = next_id();
        if !connection.register(consumer_id, self.events_tx.clone()) {
            anyhow::bail!("the connection to {} closed", connection.address());
        }
        let settings = &self.settings;
        let subscribed = connection
            .request(Type::Subscribe, |c, request_id| {
                c.subscribe = Some(proto::CommandSubscribe {
                    topic: name.clone(),
                    subscription: settings.subscription.clone(),
                    sub_type: settings.sub_type as i32,
                    consumer_id,
                    request_id,
                    consumer_name: Some(settings.consumer_name.clone()),
                    durable: Some(true),
                    initial_position: Some(settings.initial_position as i32),
                    ..Default::default()
                })
            })
            .await;
        if let Err(e) = subscribed {
            connection.unregister(consumer_id);
            return Err(e.context(format!("subscription {} on {name}", settings.subscription)));
        }
        if let Some(start) = settings.start
            && !self.topics[index].sought
        {
            // A seek moves the subscription's cursor; brokers then close its
            // consumers. This one is closed here and subscribed again.
            let sought = connection
                .request(Type::Seek, |c, request_id| {
                    c.seek = Some(proto::CommandSeek {
                        consumer_id,
                        request_id,
                        message_id: match start {
                            Start::MessageId(ledger_id, entry_id) => Some(MessageIdData {
                                ledger_id,
                                entry_id,
                                ..Default::default()
                            }),
                            Start::PublishTime(_) => None,
                        },
                        message_publish_time: match start {
                            Start::PublishTime(t) => Some(t),
                            Start::MessageId(..) => None,
                        },
                    })
                })
                .await;
            connection.unregister(consumer_id);
            close_consumer(&connection, consumer_id).await;
            if let Err(e) = sought {
                return Err(e.context(format!("seek of {name} to {start:?}")));
            }
            tracing::info!(topic = %name, ?start, "the subscription starts again at the given position");
            self.topics[index].sought = true;
            return Box::pin(self.subscribe(index)).await;
        }
        connection.send(command(Type::Flow, |c| {
            c.flow = Some(proto::CommandFlow {
                consumer_id,
                message_permits: settings.receiver_queue_size,
            })
        }));
        self.topics[index].sought = true;
        self.topics[index].live = Some(Live {
            consumer_id,
            connection,
            taken: 0,
        });
        self.by_consumer.insert(consumer_id, index);
        Ok(())
    }

    /// Consumer `consumer_id` is gone (closed by the broker, or its
    /// connection lost); its topic needs a new one.
    pub fn lost(&mut self, consumer_id: u64) {
        if let Some(index) = self.by_consumer.remove(&consumer_id)
            && let Some(live) = self.topics.get_mut(index).and_then(|t| t.live.take())
        {
            live.connection.unregister(consumer_id);
        }
    }

    /// `n` messages of topic `index` were taken: permits go back to the
    /// broker once half the receiver queue is taken.
    pub fn taken(&mut self, index: usize, n: u32) {
        let queue = self.settings.receiver_queue_size;
        let Some(live) = self.topics.get_mut(index).and_then(|t| t.live.as_mut()) else {
            return;
        };
        live.taken = live.taken.saturating_add(n);
        if live.taken >= queue.div_ceil(2) {
            let permits = std::mem::take(&mut live.taken);
            let consumer_id = live.consumer_id;
            live.connection.send(command(Type::Flow, |c| {
                c.flow = Some(proto::CommandFlow {
                    consumer_id,
                    message_permits: permits,
                })
            }));
        }
    }

    /// Sends acknowledgements, several ids per frame.
    pub fn acknowledge(&self, due: Vec<(usize, Due)>) {
        for (index, due) in due {
            let Some(live) = self.topics.get(index).and_then(|t| t.live.as_ref()) else {
                continue;
            };
            let consumer_id = live.consumer_id;
            let frames = due
                .individual
                .chunks(MAX_IDS_PER_FRAME)
                .map(|ids| (AckType::Individual, ids.to_vec()))
                .chain(due.cumulative.map(|id| (AckType::Cumulative, vec![id])));
            for (ack_type, message_id) in frames {
                live.connection.send(command(Type::Ack, |c| {
                    c.ack = Some(proto::CommandAck {
                        consumer_id,
                        ack_type: ack_type as i32,
                        message_id,
                        ..Default::default()
                    })
                }));
            }
        }
    }

    /// Asks the broker to deliver these messages of topic `index` again
    /// (a negative acknowledgement).
    pub fn redeliver(&self, index: usize, ids: Vec<MessageIdData>) {
        let Some(live) = self.topics.get(index).and_then(|t| t.live.as_ref()) else {
            return;
        };
        let consumer_id = live.consumer_id;
        for ids in ids.chunks(MAX_IDS_PER_FRAME) {
            live.connection
                .send(command(Type::RedeliverUnacknowledgedMessages, |c| {
                    c.redeliver_unacknowledged_messages = Some(proto::CommandRedeliverUnacknowledgedMessages {
                        consumer_id,
                        message_ids: ids.to_vec(),
                        ..Default::default()
                    })
                }));
        }
    }

    /// Closes every consumer on the broker (so that it dispatches nothing
    /// more to them).
    pub async fn close(&mut self) {
        let closing: Vec<(u64, Connection)> = self
            .topics
            .iter_mut()
            .filter_map(|t| t.live.take())
            .map(|l| (l.consumer_id, l.connection))
            .collect();
        self.by_consumer.clear();
        futures::future::join_all(closing.iter().map(|(id, c)| async move {
            c.unregister(*id);
            close_consumer(c, *id).await;
        }))
        .await;
    }
}

async fn close_consumer(connection: &Connection, consumer_id: u64) {
    let closed = connection.request(Type::CloseConsumer, |c, request_id| {
        c.close_consumer = Some(proto::CommandCloseConsumer {
            consumer_id,
            request_id,
        })
    });
    let _ = tokio::time::timeout(Duration::from_secs(1), closed).await;
}
