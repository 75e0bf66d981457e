//! Sources: a Pulsar subscription, or a JSONL file.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pulsar::message::proto::{self, MessageIdData, MessageMetadata};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::dead_letters::DeadLetters;
use crate::metrics::Metrics;
use crate::options::{self, Options, StreamTopics};
use crate::pipeline::{Pipeline, Settle, Summary};
use crate::prepare::{Incoming, pulsar_event_id};
use crate::wire::acks::{Acks, MAX_IDS_PER_FRAME};
use crate::wire::client::Client;
use crate::wire::connection::Event;
use crate::wire::consumer::{Settings, Start, Subscription, partition_of};
use crate::wire::frame::Payload;
use crate::wire::payload::unpack;

/// Consumes the Pulsar subscription of `options` on every stream's topics,
/// each stream through its own consumer and pipeline, until `stop` resolves;
/// then finishes the batches in hand and closes the consumers.
pub async fn run_pulsar(
    options: &Options,
    streams: Vec<(StreamTopics, Pipeline)>,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Summary> {
    let client = crate::client::client(options)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let consumers = streams.into_iter().map(|(topics, pipeline)| {
        consume(
            options,
            client.clone(),
            topics,
            pipeline,
            metrics.clone(),
            stop_rx.clone(),
        )
    });
    let mut total = Summary::default();
    for summary in futures::future::try_join_all(consumers).await? {
        total.consumed += summary.consumed;
        total.delivered += summary.delivered;
        total.dead_lettered += summary.dead_lettered;
    }
    Ok(total)
}

/// Longest wait between two subscription attempts.
const MAX_SUBSCRIBE_BACKOFF: Duration = Duration::from_secs(5);

/// How the options ask to subscribe.
fn settings(options: &Options) -> Settings {
    use proto::command_subscribe::{InitialPosition, SubType};
    Settings {
        subscription: options.subscription.clone(),
        sub_type: match options.subscription_type {
            options::SubscriptionType::Exclusive => SubType::Exclusive,
            options::SubscriptionType::Failover => SubType::Failover,
            options::SubscriptionType::Shared => SubType::Shared,
            options::SubscriptionType::KeyShared => SubType::KeyShared,
        },
        consumer_name: options.consumer_name.clone().unwrap_or_else(default_consumer_name),
        initial_position: match options.initial_position {
            options::InitialPosition::Earliest => InitialPosition::Earliest,
            options::InitialPosition::Latest => InitialPosition::Latest,
        },
        receiver_queue_size: options.receiver_queue_size,
        start: options
            .start_message_id
            .map(|(ledger, entry)| Start::MessageId(ledger, entry))
            .or(options.start_publish_time.map(Start::PublishTime)),
    }
}

/// The topics of one stream: those given (their partitions, looked up
/// once) and those of the namespace that match the pattern (listed again
/// when asked).
struct Topics {
    given: Vec<String>,
    resolved: bool,
    pattern: Option<regex::Regex>,
    namespace: String,
    list: bool,
    /// Never consumed, even when the pattern matches it.
    dead_letter_topic: String,
}

impl Topics {
    fn new(options: &Options, stream: &StreamTopics) -> anyhow::Result<Topics> {
        let pattern = stream
            .pattern
            .as_ref()
            .map(|p| regex::Regex::new(&format!("^(?:{p})$")))
            .transpose()
            .context("--topic-pattern")?;
        Ok(Topics {
            given: stream.full_topics(),
            resolved: false,
            list: pattern.is_some(),
            pattern,
            namespace: options.topic_namespace.clone(),
            dead_letter_topic: options.dead_letter_topic(stream),
        })
    }

    /// Adds to `subscription` the topics not in it yet.
    async fn resolve(&mut self, client: &Client, subscription: &mut Subscription) -> anyhow::Result<()> {
        if !self.resolved {
            for topic in &self.given {
                match client.partitions(topic).await? {
                    0 => {
                        subscription.add_topic(topic);
                    }
                    n => {
                        for i in 0..n {
                            subscription.add_topic(&format!("{topic}-partition-{i}"));
                        }
                    }
                }
            }
            self.resolved = true;
        }
        if self.list
            && let Some(pattern) = &self.pattern
        {
            for topic in client.topics_of_namespace(&self.namespace).await? {
                let base = match topic.rsplit_once("-partition-") {
                    Some((base, _)) if partition_of(&topic) >= 0 => base,
                    _ => topic.as_str(),
                };
                if pattern.is_match(base) && base != self.dead_letter_topic && subscription.add_topic(&topic) {
                    tracing::info!(%topic, "a topic matches --topic-pattern");
                }
            }
            self.list = false;
        }
        Ok(())
    }
}

/// A message on its way to the pipeline: its topic's index and the flow
/// permits it gives back once taken.
struct Ready {
    incoming: Incoming,
    token: Token,
    topic: usize,
    permits: u32,
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Room for one message in the pipeline's channel.
async fn reserve<T>(tx: Option<mpsc::Sender<T>>) -> Option<mpsc::OwnedPermit<T>> {
    tx?.reserve_owned().await.ok()
}

/// Consumes one stream's topics into its pipeline until `stop` turns true.
/// A refused subscription, a closed consumer, a lost connection or any
/// other broker error only makes it subscribe again, with backoff.
async fn consume(
    options: &Options,
    client: Arc<Client>,
    stream: StreamTopics,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Summary> {
    let capacity = options.batch_size as usize * 2;
    let (tx, rx) = mpsc::channel::<(Incoming, Token)>(capacity);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Vec<Token>>();
    let dead_letters = Arc::new(DeadLetters::new(
        client.clone(),
        options.dead_letter_topic(&stream),
        stream.stream.clone(),
        metrics.clone(),
    ));
    let settle = PulsarSettle {
        dead_letters: dead_letters.clone(),
        acks: ack_tx,
    };
    // On Exclusive and Failover subscriptions messages arrive in order and
    // batches finish in order, so one cumulative acknowledgement per topic
    // covers them all.
    let cumulative = matches!(
        options.subscription_type,
        options::SubscriptionType::Exclusive | options::SubscriptionType::Failover
    );
    let mut pipeline = tokio::spawn(pipeline.run(rx, settle));
    let mut tx = Some(tx);
    let mut topics = Topics::new(options, &stream)?;
    let mut subscription = Subscription::new(client.clone(), settings(options));
    let mut acks = Acks::new(cumulative);
    let mut ready: VecDeque<Ready> = VecDeque::new();
    // Dead letters of messages delivered too often, published apart from
    // the pipeline (which may be waiting for a job): (entry serial, messages).
    let mut apart: JoinSet<(u64, u32)> = JoinSet::new();
    let mut attempt_at = Some(Instant::now());
    let mut backoff = Duration::ZERO;
    let mut subscribed_once = false;
    let mut list_at = stream.pattern.as_ref().map(|_| Instant::now() + options.topic_refresh);
    let ack_check = options.ack_timeout.map(|t| (t / 4).max(Duration::from_millis(50)));
    let mut ack_check_at = ack_check.map(|every| Instant::now() + every);
    let mut stopped = stop.clone();
    let summary = loop {
        // A cumulative acknowledgement must not cover a message whose dead
        // letter is still being published.
        let flush_at = acks
            .flush_at(options.ack_group_time, MAX_IDS_PER_FRAME)
            .filter(|_| !cumulative || apart.is_empty());
        let stopping = tx.is_none();
        tokio::select! {
            biased;
            tokens = ack_rx.recv() => match tokens {
                Some(tokens) => {
                    let now = std::time::Instant::now();
                    for token in tokens {
                        acks.settle(token.serial, now);
                    }
                }
                None => break pipeline.await??,
            },
            done = &mut pipeline => break done??,
            _ = stop.wait_for(|s| *s), if !stopping => {
                tracing::info!("stopping: finishing the batch in hand");
                tx = None;
                ready.clear();
                attempt_at = None;
            }
            Some(done) = apart.join_next(), if !apart.is_empty() => {
                let (serial, messages) = done.context("a dead letter task failed")?;
                let now = std::time::Instant::now();
                for _ in 0..messages.max(1) {
                    acks.settle(serial, now);
                }
            }
            _ = sleep_until(flush_at.map(Instant::from_std)) => {
                let due = acks.take(|t| subscription.is_live(t), std::time::Instant::now());
                subscription.acknowledge(due);
            }
            permit = reserve(tx.clone()), if !stopping && !ready.is_empty() => {
                let Some(mut permit) = permit else { continue };
                while let Some(next) = ready.pop_front() {
                    let sender = permit.send((next.incoming, next.token));
                    subscription.taken(next.topic, next.permits);
                    match sender.try_reserve_owned() {
                        Ok(p) => permit = p,
                        Err(_) => break,
                    }
                }
            }
            event = subscription.events.recv(), if ready.len() < capacity => match event {
                Some(Event::Closed { consumer_id }) => {
                    if subscription.topic_of(consumer_id).is_some() {
                        tracing::warn!(stream = %stream.stream, "the consumer was closed by the broker or lost its connection; subscribing again");
                        subscription.lost(consumer_id);
                        if !stopping {
                            attempt_at.get_or_insert(Instant::now() + backoff);
                        }
                    }
                }
                Some(Event::Message { consumer_id, message, payload }) => {
                    let Some(index) = subscription.topic_of(consumer_id) else { continue };
                    let topic = &subscription.topics[index];
                    let (ledger, entry) = (message.message_id.ledger_id, message.message_id.entry_id);
                    let id = MessageIdData {
                        ledger_id: ledger,
                        entry_id: entry,
                        partition: Some(topic.partition),
                        ..Default::default()
                    };
                    let origin = format!("{}@{ledger}:{entry}", topic.name);
                    let (messages, permits) = read_message(options, &metrics, topic.partition, (ledger, entry), origin, payload.map(|p| *p));
                    let count = messages.len() as u32;
                    let serial = acks.received(index, id, count, std::time::Instant::now());
                    let redeliveries = message.redelivery_count.unwrap_or(0);
                    match options.max_redeliveries {
                        Some(max) if redeliveries >= max && count > 0 => {
                            subscription.taken(index, permits);
                            let reason = format!(
                                "delivered {redeliveries} times without an acknowledgement (--max-redeliveries {max})"
                            );
                            let dead_letters = dead_letters.clone();
                            metrics.dead_letter("redelivered");
                            apart.spawn(async move {
                                for m in &messages {
                                    dead_letters.publish(m, &reason).await;
                                }
                                (serial, count)
                            });
                        }
                        _ if count == 0 => subscription.taken(index, permits),
                        _ => {
                            let mut permits = Some(permits);
                            for incoming in messages {
                                ready.push_back(Ready {
                                    incoming,
                                    token: Token { serial },
                                    topic: index,
                                    permits: permits.take().unwrap_or(0),
                                });
                            }
                        }
                    }
                }
                None => anyhow::bail!("the consumers' events stopped"),
            },
            _ = sleep_until(ack_check_at) => {
                let now = std::time::Instant::now();
                if let Some(timeout) = options.ack_timeout {
                    for (topic, ids) in acks.overdue(timeout, now) {
                        tracing::info!(count = ids.len(), "messages not acknowledged within --ack-timeout: asking the broker for them again");
                        subscription.redeliver(topic, ids);
                    }
                }
                ack_check_at = ack_check.map(|every| Instant::now() + every);
            }
            _ = sleep_until(list_at), if !stopping => {
                topics.list = true;
                attempt_at = Some(attempt_at.map_or(Instant::now(), |at| at.min(Instant::now())));
                list_at = Some(Instant::now() + options.topic_refresh);
            }
            _ = sleep_until(attempt_at), if !stopping => {
                let attempt = async {
                    topics.resolve(&client, &mut subscription).await?;
                    subscription.subscribe_missing().await
                };
                let result = tokio::select! {
                    r = attempt => Some(r),
                    _ = stopped.wait_for(|s| *s) => None,
                };
                match result {
                    None => {}
                    Some(Ok(subscribed)) => {
                        attempt_at = None;
                        backoff = Duration::ZERO;
                        if subscribed > 0 {
                            if subscribed_once {
                                metrics.resubscribes.inc();
                            }
                            subscribed_once = true;
                            tracing::info!(
                                stream = %stream.stream,
                                topics = ?subscription.topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
                                subscription = %options.subscription,
                                "consuming"
                            );
                        }
                    }
                    Some(Err(e)) => {
                        backoff = (backoff * 2).clamp(Duration::from_millis(100), MAX_SUBSCRIBE_BACKOFF);
                        attempt_at = Some(Instant::now() + backoff);
                        tracing::warn!(
                            error = %format!("{e:#}"),
                            subscription = %options.subscription,
                            topics = ?stream.topics,
                            retry_in = ?backoff,
                            "cannot subscribe; retrying"
                        );
                    }
                }
            }
        }
    };
    let due = acks.take(|t| subscription.is_live(t), std::time::Instant::now());
    subscription.acknowledge(due);
    subscription.close().await;
    dead_letters.close().await;
    Ok(summary)
}

/// The messages of one MESSAGE (several for a batch) and the flow permits
/// it took; a payload that cannot be read is one message to dead-letter,
/// with its bytes as received.
fn read_message(
    options: &Options,
    metrics: &Metrics,
    partition: i32,
    (ledger, entry): (u64, u64),
    origin: String,
    payload: Option<Payload>,
) -> (Vec<Incoming>, u32) {
    let decoded = match payload {
        None => Err(("a message without payload".to_string(), Vec::new(), None)),
        Some(Payload {
            metadata: Err(reason),
            data,
        }) => Err((reason, data, None)),
        Some(Payload {
            metadata: Ok(metadata),
            data,
        }) => match unpack(&metadata, &data) {
            Ok(singles) => Ok((metadata, singles)),
            Err(reason) => Err((reason, data, Some(metadata))),
        },
    };
    match decoded {
        Ok((metadata, singles)) => {
            let permits = permits(Some(&metadata));
            let messages = singles
                .into_iter()
                .map(|single| Incoming {
                    source_id: Some(pulsar_event_id(
                        ledger,
                        entry,
                        partition,
                        single.batch_index.unwrap_or(-1),
                    )),
                    key: single.key,
                    origin: origin.clone(),
                    time: match options.time_from {
                        options::TimeFrom::Payload => None,
                        options::TimeFrom::EventTime => single.event_time,
                        options::TimeFrom::PublishTime => Some(metadata.publish_time),
                    },
                    payload: single.data,
                    undecodable: None,
                })
                .collect();
            (messages, permits)
        }
        Err((reason, data, metadata)) => {
            metrics.undecodable.inc();
            tracing::warn!(%origin, %reason, "a message cannot be decoded; it goes to the dead-letter topic");
            let message = Incoming {
                source_id: Some(pulsar_event_id(ledger, entry, partition, -1)),
                key: metadata.as_ref().and_then(|m| m.partition_key.clone()),
                origin,
                time: None,
                payload: data,
                undecodable: Some(format!("cannot decode the message: {reason}")),
            };
            (vec![message], permits(metadata.as_ref()))
        }
    }
}

/// The flow permits a message takes: its batch's size.
fn permits(metadata: Option<&MessageMetadata>) -> u32 {
    metadata
        .and_then(|m| m.num_messages_in_batch)
        .map_or(1, |n| u32::try_from(n).unwrap_or(1).max(1))
}

fn default_consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "feeder".into());
    format!("{host}-{}", std::process::id())
}

/// A Pulsar message to acknowledge: one message of a received entry.
pub struct Token {
    serial: u64,
}

struct PulsarSettle {
    dead_letters: Arc<DeadLetters>,
    acks: mpsc::UnboundedSender<Vec<Token>>,
}

impl Settle<Token> for PulsarSettle {
    async fn dead_letter(&mut self, message: &Incoming, reason: &str) -> anyhow::Result<()> {
        self.dead_letters.publish(message, reason).await;
        Ok(())
    }

    async fn ack(&mut self, tokens: Vec<Token>) -> anyhow::Result<()> {
        self.acks
            .send(tokens)
            .map_err(|_| anyhow::anyhow!("the consumer stopped"))
    }
}

/// Feeds JSON lines from `path` (`-`: standard input) into `pipeline`. Lines
/// that cannot be delivered are reported with their line number.
pub async fn run_file(path: &std::path::Path, pipeline: Pipeline, batch_size: usize) -> anyhow::Result<Summary> {
    let reader: Box<dyn AsyncRead + Unpin + Send> = if path.as_os_str() == "-" {
        Box::new(tokio::io::stdin())
    } else {
        Box::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot open {}", path.display()))?,
        )
    };
    let (tx, rx) = mpsc::channel::<(Incoming, u64)>(batch_size * 2);
    let run = tokio::spawn(pipeline.run(rx, FileSettle));
    let mut lines = BufReader::with_capacity(1 << 20, reader).lines();
    let mut number = 0u64;
    while let Some(line) = lines.next_line().await.context("reading the events")? {
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        let incoming = Incoming {
            payload: line.into_bytes(),
            source_id: None,
            key: None,
            origin: format!("line {number}"),
            time: None,
            undecodable: None,
        };
        if tx.send((incoming, number)).await.is_err() {
            break;
        }
    }
    drop(tx);
    run.await?
}

struct FileSettle;

impl Settle<u64> for FileSettle {
    async fn dead_letter(&mut self, message: &Incoming, reason: &str) -> anyhow::Result<()> {
        tracing::error!(origin = %message.origin, %reason, "event not delivered");
        Ok(())
    }

    async fn ack(&mut self, _lines: Vec<u64>) -> anyhow::Result<()> {
        Ok(())
    }
}
