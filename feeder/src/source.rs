//! Sources: a Pulsar subscription, or a JSONL file.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use pulsar::consumer::InitialPosition;
use pulsar::message::proto::MessageIdData;
use pulsar::{ConsumerOptions, Pulsar, SubType, TokioExecutor, producer};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::options::{self, Options, StreamTopics};
use crate::pipeline::{Pipeline, Settle, Summary};
use crate::prepare::{Incoming, pulsar_event_id};

/// Consumes the Pulsar subscription of `options` on every stream's topics,
/// each stream through its own consumer and pipeline, until `stop` resolves;
/// then finishes the batches in hand and closes the consumers.
pub async fn run_pulsar(
    options: &Options,
    streams: Vec<(StreamTopics, Pipeline)>,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Summary> {
    let pulsar = connect(|| crate::client::builder(options), &options.service_url).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let consumers = streams.into_iter().map(|(topics, pipeline)| {
        let mut stopped = stop_rx.clone();
        let stop = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        consume(options, pulsar.clone(), topics, pipeline, metrics.clone(), stop)
    });
    let mut total = Summary::default();
    for summary in futures::future::try_join_all(consumers).await? {
        total.consumed += summary.consumed;
        total.delivered += summary.delivered;
        total.dead_lettered += summary.dead_lettered;
    }
    Ok(total)
}

/// The Pulsar consumer of one stream.
type PulsarConsumer = pulsar::Consumer<Vec<u8>, TokioExecutor>;

/// A subscription attempt under way (after its backoff).
type Subscribing<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<PulsarConsumer, pulsar::Error>> + Send + 'a>>;

/// Longest wait between two subscription attempts.
const MAX_SUBSCRIBE_BACKOFF: Duration = Duration::from_secs(5);

/// Subscribes to one stream's topics.
async fn subscribe(
    options: &Options,
    pulsar: Pulsar<TokioExecutor>,
    stream: &StreamTopics,
) -> Result<PulsarConsumer, pulsar::Error> {
    let kind = match options.subscription_type {
        options::SubscriptionType::Exclusive => SubType::Exclusive,
        options::SubscriptionType::Failover => SubType::Failover,
        options::SubscriptionType::Shared => SubType::Shared,
        options::SubscriptionType::KeyShared => SubType::KeyShared,
    };
    let position = match options.initial_position {
        options::InitialPosition::Earliest => InitialPosition::Earliest,
        options::InitialPosition::Latest => InitialPosition::Latest,
    };
    let mut consumer_options = ConsumerOptions::default().with_initial_position(position);
    if let Some(size) = options.receiver_queue_size {
        consumer_options = consumer_options.with_receiver_queue_size(size);
    }
    let mut builder = pulsar
        .consumer()
        .with_topics(stream.full_topics())
        .with_subscription(&options.subscription)
        .with_subscription_type(kind)
        .with_consumer_name(options.consumer_name.clone().unwrap_or_else(default_consumer_name))
        .with_options(consumer_options)
        .with_batch_size(options.batch_size.max(1000))
        .with_unacked_message_resend_delay(options.ack_timeout);
    if let Some(pattern) = &stream.pattern {
        let regex = regex::Regex::new(pattern).map_err(|e| pulsar::Error::Custom(format!("--topic-pattern: {e}")))?;
        builder = builder
            .with_topic_regex(regex)
            .with_lookup_namespace(options.topic_namespace.clone())
            .with_topic_refresh(options.topic_refresh);
    }
    if let Some(max) = options.max_redeliveries {
        builder = builder.with_dead_letter_policy(pulsar::consumer::DeadLetterPolicy {
            max_redeliver_count: max as usize,
            dead_letter_topic: options.dead_letter_topic(stream),
        });
    }
    builder.build::<Vec<u8>>().await
}

/// Whether a consumer error is about one message that cannot be decoded
/// (unknown codec, corrupt compressed payload or batch) rather than about
/// the connection or the subscription.
fn undecodable(error: &pulsar::Error) -> bool {
    matches!(
        error,
        pulsar::Error::Consumer(pulsar::error::ConsumerError::Io(_) | pulsar::error::ConsumerError::MissingPayload(_))
    )
}

/// The next message of `consumer`; never resolves without one.
async fn next_message(
    consumer: &mut Option<PulsarConsumer>,
) -> Option<Result<pulsar::consumer::Message<Vec<u8>>, pulsar::Error>> {
    match consumer {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

/// The outcome of `attempt`; never resolves without one.
async fn subscribed(attempt: &mut Option<Subscribing<'_>>) -> Result<PulsarConsumer, pulsar::Error> {
    match attempt {
        Some(a) => a.await,
        None => std::future::pending().await,
    }
}

/// Connects to Pulsar, retrying with backoff until it answers.
async fn connect(
    builder: impl Fn() -> anyhow::Result<pulsar::PulsarBuilder<TokioExecutor>>,
    url: &str,
) -> Pulsar<TokioExecutor> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let built = match builder() {
            Ok(b) => b.build().await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match built {
            Ok(pulsar) => return pulsar,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), url, retry_in = ?backoff, "cannot connect to Pulsar; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_SUBSCRIBE_BACKOFF);
            }
        }
    }
}

/// Consumes one stream's topics into its pipeline until `stop` resolves.
/// A refused subscription, a closed consumer or any other broker error
/// only makes it subscribe again, with backoff.
async fn consume(
    options: &Options,
    pulsar: Pulsar<TokioExecutor>,
    stream: StreamTopics,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let capacity = options.batch_size as usize * 2;
    let (tx, rx) = mpsc::channel::<(Incoming, Token)>(capacity);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Vec<Token>>();
    let settle = PulsarSettle {
        pulsar: pulsar.clone(),
        topic: options.dead_letter_topic(&stream),
        stream: stream.stream.clone(),
        producer: None,
        acks: ack_tx,
        metrics: metrics.clone(),
    };
    // On Exclusive and Failover subscriptions messages arrive in order and
    // batches finish in order, so one cumulative acknowledgement per topic
    // and batch covers them all: one frame instead of one per message.
    let mut cumulative = matches!(
        options.subscription_type,
        options::SubscriptionType::Exclusive | options::SubscriptionType::Failover
    );
    let mut pipeline = tokio::spawn(pipeline.run(rx, settle));
    let mut tx = Some(tx);
    tokio::pin!(stop);
    let mut consumer: Option<PulsarConsumer> = None;
    let mut attempt: Option<Subscribing<'_>> = None;
    let mut backoff = Duration::ZERO;
    let mut subscribed_once = false;
    // Acknowledgements due while no consumer is subscribed.
    let mut unsent: Vec<Token> = Vec::new();
    let summary = loop {
        if consumer.is_none() && attempt.is_none() && tx.is_some() {
            let (pulsar, stream, delay) = (pulsar.clone(), &stream, backoff);
            attempt = Some(Box::pin(async move {
                tokio::time::sleep(delay).await;
                subscribe(options, pulsar, stream).await
            }));
        }
        tokio::select! {
            biased;
            acks = ack_rx.recv() => match acks {
                Some(acks) => {
                    unsent.extend(acks);
                    if let Some(c) = consumer.as_mut() {
                        send_acks(c, std::mem::take(&mut unsent), cumulative).await;
                    }
                }
                None => break pipeline.await??,
            },
            done = &mut pipeline => break done??,
            _ = &mut stop, if tx.is_some() => {
                tracing::info!("stopping: finishing the batch in hand");
                tx = None;
                attempt = None;
            }
            result = subscribed(&mut attempt) => {
                attempt = None;
                match result {
                    Ok(mut c) => {
                        if subscribed_once {
                            metrics.resubscribes.inc();
                        }
                        subscribed_once = true;
                        backoff = Duration::ZERO;
                        tracing::info!(stream = %stream.stream, topics = ?stream.topics, pattern = ?stream.pattern, subscription = %options.subscription, "consuming");
                        send_acks(&mut c, std::mem::take(&mut unsent), cumulative).await;
                        consumer = Some(c);
                    }
                    Err(e) => {
                        backoff = (backoff * 2).clamp(Duration::from_millis(100), MAX_SUBSCRIBE_BACKOFF);
                        tracing::warn!(
                            error = %e,
                            subscription = %options.subscription,
                            topics = ?stream.topics,
                            retry_in = ?backoff,
                            "cannot subscribe; retrying"
                        );
                    }
                }
            }
            next = next_message(&mut consumer), if tx.as_ref().is_some_and(|t| t.capacity() > 0) => {
                let message = match next {
                    Some(Ok(m)) => m,
                    Some(Err(e)) if undecodable(&e) => {
                        // pulsar-rs gives neither the message's id nor its
                        // bytes: it can be neither dead-lettered nor
                        // acknowledged. It stays in the backlog; no later
                        // cumulative acknowledgement may cover it.
                        metrics.undecodable.inc();
                        cumulative = false;
                        tracing::error!(
                            error = %e,
                            stream = %stream.stream,
                            "a message cannot be decoded; it stays unacknowledged in the subscription's backlog"
                        );
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer error; subscribing again");
                        close(consumer.take()).await;
                        continue;
                    }
                    None => {
                        tracing::warn!("the Pulsar consumer closed; subscribing again");
                        close(consumer.take()).await;
                        continue;
                    }
                };
                let id = message.message_id().clone();
                let incoming = Incoming {
                    source_id: Some(pulsar_event_id(
                        id.ledger_id,
                        id.entry_id,
                        id.partition.unwrap_or(-1),
                        id.batch_index.unwrap_or(-1),
                    )),
                    key: message.key(),
                    origin: format!("{}@{}:{}", message.topic, id.ledger_id, id.entry_id),
                    time: match options.time_from {
                        options::TimeFrom::Payload => None,
                        options::TimeFrom::EventTime => message.payload.metadata.event_time.filter(|t| *t > 0),
                        options::TimeFrom::PublishTime => Some(message.payload.metadata.publish_time),
                    },
                    payload: message.payload.data,
                };
                let token = Token { topic: message.topic, id };
                if let Some(tx) = &tx {
                    tx.send((incoming, token)).await.context("the pipeline stopped")?;
                }
            }
        }
    };
    close(consumer).await;
    Ok(summary)
}

/// Closes a consumer on the broker (so that it dispatches nothing more to
/// it), giving up after a second.
async fn close(consumer: Option<PulsarConsumer>) {
    if let Some(mut c) = consumer {
        let _ = tokio::time::timeout(Duration::from_secs(1), c.close()).await;
    }
}

/// Acknowledges `tokens` (cumulatively: only the last one of each topic).
async fn send_acks(consumer: &mut PulsarConsumer, tokens: Vec<Token>, cumulative: bool) {
    let tokens = if cumulative { last_per_topic(tokens) } else { tokens };
    for Token { topic, id } in tokens {
        let sent = if cumulative {
            consumer.cumulative_ack_with_id(&topic, id).await
        } else {
            consumer.ack_with_id(&topic, id).await
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "acknowledgement not sent; the message will be delivered again");
        }
    }
}

/// The latest message of each topic (partition) of a batch.
fn last_per_topic(tokens: Vec<Token>) -> Vec<Token> {
    let mut last: HashMap<String, MessageIdData> = HashMap::new();
    for Token { topic, id } in tokens {
        let position = |m: &MessageIdData| (m.ledger_id, m.entry_id, m.batch_index.unwrap_or(-1));
        match last.get(&topic) {
            Some(seen) if position(seen) >= position(&id) => {}
            _ => {
                last.insert(topic, id);
            }
        }
    }
    last.into_iter().map(|(topic, id)| Token { topic, id }).collect()
}

fn default_consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "feeder".into());
    format!("{host}-{}", std::process::id())
}

/// A Pulsar message to acknowledge.
pub struct Token {
    topic: String,
    id: MessageIdData,
}

struct PulsarSettle {
    pulsar: Pulsar<TokioExecutor>,
    topic: String,
    stream: String,
    producer: Option<pulsar::Producer<TokioExecutor>>,
    acks: mpsc::UnboundedSender<Vec<Token>>,
    metrics: Arc<Metrics>,
}

impl Settle<Token> for PulsarSettle {
    async fn dead_letter(&mut self, message: &Incoming, reason: &str) -> anyhow::Result<()> {
        tracing::warn!(origin = %message.origin, %reason, topic = %self.topic, "dead letter");
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.try_dead_letter(message, reason).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.metrics.retried.inc();
                    tracing::warn!(error = %e, "cannot publish to the dead-letter topic; retrying");
                    self.producer = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn ack(&mut self, tokens: Vec<Token>) -> anyhow::Result<()> {
        self.acks
            .send(tokens)
            .map_err(|_| anyhow::anyhow!("the consumer stopped"))
    }
}

impl PulsarSettle {
    async fn try_dead_letter(&mut self, message: &Incoming, reason: &str) -> anyhow::Result<()> {
        if self.producer.is_none() {
            let options = producer::ProducerOptions {
                block_queue_if_full: true,
                ..Default::default()
            };
            self.producer = Some(
                self.pulsar
                    .producer()
                    .with_topic(&self.topic)
                    .with_options(options)
                    .build()
                    .await?,
            );
        }
        let producer = self.producer.as_mut().expect("just set");
        let mut properties = HashMap::new();
        properties.insert("reason".to_string(), reason.to_string());
        properties.insert("origin".to_string(), message.origin.clone());
        properties.insert("stream".to_string(), self.stream.clone());
        let receipt = producer
            .send_non_blocking(producer::Message {
                payload: message.payload.clone(),
                properties,
                partition_key: message.key.clone(),
                ..Default::default()
            })
            .await?;
        receipt.await?;
        Ok(())
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
