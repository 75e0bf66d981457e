//! An in-memory broker that speaks the Apache Pulsar binary protocol, for
//! testing the feeder with a real Pulsar client and no Pulsar cluster.
//!
//! It is built on the `pulsar` crate's own protocol types (`pulsar::proto`) and
//! frame codec (`pulsar::message::Codec`), so clients exchange real frames with
//! it: CONNECT, PING, PARTITIONED_METADATA, LOOKUP, PRODUCER/SEND, SUBSCRIBE,
//! FLOW, MESSAGE, ACK, REDELIVER_UNACKNOWLEDGED_MESSAGES, SEEK,
//! GET_TOPICS_OF_NAMESPACE, AUTH_CHALLENGE/AUTH_RESPONSE and CLOSE_*.
//!
//! Key decision: one lock over the whole state and a dispatcher that runs after
//! every change. That is slow next to a real broker but easy to reason about,
//! and it keeps Pulsar's guarantees that the feeder relies on: a message stays
//! unacknowledged until its consumer acknowledges it, and messages a consumer
//! held when it went away are delivered again, with a higher redelivery count.
//!
//! Topics are non-partitioned unless [`Broker::set_partitions`] says
//! otherwise (each partition is then a topic of its own); LOOKUP can be
//! redirected ([`Broker::redirect_lookups`]). Subscriptions Exclusive, Failover (both: the
//! first consumer gets everything), Shared (round robin) and Key_Shared (by a
//! hash of the message key). Message metadata (compression codec,
//! uncompressed size, batching, event time) passes from producers to consumers
//! untouched; [`Broker::inject`] stores any payload (raw Snappy, corrupt
//! data). Faults: [`Broker::drop_connections`], [`Broker::close_consumers`],
//! [`Broker::refuse_subscribes`] and [`Broker::set_dispatch_delay`]. It
//! records the message ids of every ACK frame and REDELIVER request, and
//! can require client certificates ([`Broker::start_mtls`]) and spoil the
//! checksum of messages ([`Broker::corrupt_next_messages`]).
//!
//! Producer deduplication is on, as on a namespace where `pulsar-admin
//! namespaces set-deduplication --enable` was run: per topic and producer
//! name the broker remembers the highest sequence id it stored; a SEND whose
//! sequence id (a batch's highest) is not above it gets a receipt (with
//! message id -1:-1, as Pulsar answers a duplicate) but is not stored, and
//! PRODUCER answers `last_sequence_id` with it (-1 if none). A producer name
//! already connected to a topic is refused (`ProducerBusy`).
//! [`Broker::set_deduplication`] turns it off (every SEND stored,
//! `last_sequence_id` -1).
#![deny(missing_docs)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pulsar::message::proto::{self, base_command::Type};
use pulsar::message::{Codec, Message, Payload};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use tokio_util::codec::{Decoder, Encoder, Framed};

/// A message as the broker stored it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Position in the topic (the entry id; the ledger id is always 1).
    pub entry: u64,
    /// The message key, if the producer set one.
    pub key: Option<String>,
    /// The producer's properties.
    pub properties: BTreeMap<String, String>,
    /// The payload.
    pub data: Vec<u8>,
    metadata: proto::MessageMetadata,
}

impl StoredMessage {
    /// The producer's sequence id.
    pub fn sequence_id(&self) -> u64 {
        self.metadata.sequence_id
    }

    /// The producer's name.
    pub fn producer_name(&self) -> &str {
        &self.metadata.producer_name
    }
}

/// A running broker; it stops when dropped.
pub struct Broker {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    accept: AbortHandle,
    dispatcher: AbortHandle,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    /// MESSAGE frames still to send with a wrong payload checksum.
    corrupt: std::sync::atomic::AtomicU32,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Topic>,
    connections: HashMap<u64, Connection>,
    /// (connection, producer id) -> (topic, producer name).
    producers: HashMap<(u64, u64), (String, String)>,
    /// Producer deduplication is off.
    deduplication_off: bool,
    next_connection: u64,
    dispatch_delay: Duration,
    /// SUBSCRIBE requests still to refuse.
    refuse_subscribes: u32,
    /// Partitioned topics (full name) and their partitions.
    partitions: HashMap<String, u32>,
    /// LOOKUP requests still to answer with a redirect.
    redirect_lookups: u32,
    /// Each LOOKUP: (topic, authoritative).
    lookups: Vec<(String, bool)>,
    /// Each CONNECT's authentication: (method, data).
    authentications: Vec<(String, Vec<u8>)>,
    /// Each AUTH_RESPONSE's authentication: (method, data).
    auth_responses: Vec<(String, Vec<u8>)>,
}

struct Connection {
    out: mpsc::UnboundedSender<Message>,
    task: Option<AbortHandle>,
}

#[derive(Default)]
struct Topic {
    messages: Vec<StoredMessage>,
    subscriptions: HashMap<String, Subscription>,
    /// Producer name -> the highest sequence id stored from it.
    sequences: HashMap<String, u64>,
    /// SENDs answered as duplicates, not stored.
    duplicates: u64,
}

#[derive(Default)]
struct Subscription {
    kind: i32,
    consumers: Vec<Consumer>,
    /// Next entry never dispatched.
    cursor: usize,
    /// Entries to dispatch again, in order.
    redeliver: BTreeSet<u64>,
    /// Dispatched, not acknowledged: entry -> (connection, consumer id).
    pending: HashMap<u64, (u64, u64)>,
    acked: BTreeSet<u64>,
    redeliveries: HashMap<u64, u32>,
    round_robin: usize,
    dispatched: u64,
    /// The ACK frames received, in order.
    ack_frames: Vec<AckFrame>,
    /// The entries of each REDELIVER_UNACKNOWLEDGED_MESSAGES, in order
    /// (empty: all of the consumer's).
    redeliver_requests: Vec<Vec<u64>>,
}

/// One ACK frame as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckFrame {
    /// Whether it acknowledges cumulatively.
    pub cumulative: bool,
    /// The entries it names, in order.
    pub entries: Vec<u64>,
}

struct Consumer {
    connection: u64,
    id: u64,
    name: String,
    permits: u32,
    delivered: u64,
}

/// What one consumer of a subscription has received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerStats {
    /// The consumer's name.
    pub name: String,
    /// Messages dispatched to it (redeliveries included).
    pub delivered: u64,
}

impl Broker {
    /// Starts a broker on a free port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Broker> {
        Broker::bind("127.0.0.1:0".parse().expect("valid address")).await
    }

    /// Starts a broker on `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Broker> {
        Broker::listen(addr, None).await
    }

    /// Starts a broker on a free port of 127.0.0.1 that speaks TLS only,
    /// with the PEM certificate chain `cert_chain` and PEM private key `key`;
    /// clients connect to `pulsar+ssl://localhost:PORT` ([`Broker::url`]).
    /// Client certificates are not asked for.
    pub async fn start_tls(cert_chain: &str, key: &str) -> std::io::Result<Broker> {
        let acceptor = tls_acceptor(cert_chain, key, None)?;
        Broker::listen("127.0.0.1:0".parse().expect("valid address"), Some(acceptor)).await
    }

    /// As [`Broker::start_tls`], but the handshake fails unless the client
    /// presents a certificate that `client_ca` (PEM) signed (mutual TLS).
    pub async fn start_mtls(cert_chain: &str, key: &str, client_ca: &str) -> std::io::Result<Broker> {
        let acceptor = tls_acceptor(cert_chain, key, Some(client_ca))?;
        Broker::listen("127.0.0.1:0".parse().expect("valid address"), Some(acceptor)).await
    }

    async fn listen(addr: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<Broker> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let tls_enabled = tls.is_some();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            corrupt: std::sync::atomic::AtomicU32::new(0),
        });
        let url = broker_url(addr, tls.is_some());
        let accept = {
            let shared = shared.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    let stream: Box<dyn Stream> = match &tls {
                        None => Box::new(stream),
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => Box::new(s),
                            Err(e) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                continue;
                            }
                        },
                    };
                    let (out, rx) = mpsc::unbounded_channel();
                    let id = {
                        let mut state = shared.lock();
                        state.next_connection += 1;
                        let id = state.next_connection;
                        state.connections.insert(id, Connection { out, task: None });
                        id
                    };
                    let task = tokio::spawn(serve(shared.clone(), id, stream, rx, url.clone()));
                    if let Some(c) = shared.lock().connections.get_mut(&id) {
                        c.task = Some(task.abort_handle());
                    }
                }
            })
            .abort_handle()
        };
        let dispatcher = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    shared.wake.notified().await;
                    loop {
                        let delay = {
                            let mut state = shared.lock();
                            let delay = state.dispatch_delay;
                            let sent = state.dispatch(if delay.is_zero() { usize::MAX } else { 1 });
                            if sent == 0 {
                                break;
                            }
                            delay
                        };
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            })
            .abort_handle()
        };
        Ok(Broker {
            addr,
            tls: tls_enabled,
            shared,
            accept,
            dispatcher,
        })
    }

    /// The service URL clients connect to, `pulsar://127.0.0.1:PORT`, or
    /// `pulsar+ssl://localhost:PORT` with TLS.
    pub fn url(&self) -> String {
        broker_url(self.addr, self.tls)
    }

    /// The address the broker listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stores a message on `topic` as if a producer had sent it with this
    /// metadata and payload, unchecked (to test messages that clients cannot
    /// decode); returns its entry id.
    pub fn inject(&self, topic: &str, metadata: proto::MessageMetadata, data: Vec<u8>) -> u64 {
        let mut state = self.shared.lock();
        let topic = state.topics.entry(full_topic_name(topic)).or_default();
        let entry = topic.messages.len() as u64;
        topic.messages.push(StoredMessage {
            entry,
            key: metadata.partition_key.clone(),
            properties: metadata
                .properties
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone()))
                .collect(),
            data,
            metadata,
        });
        drop(state);
        self.shared.wake.notify_one();
        entry
    }

    /// Turns producer deduplication on (the default) or off.
    pub fn set_deduplication(&self, enabled: bool) {
        self.shared.lock().deduplication_off = !enabled;
    }

    /// SENDs to `topic` answered with a receipt but not stored, because
    /// their producer had sent that sequence id already.
    pub fn duplicates(&self, topic: &str) -> u64 {
        let state = self.shared.lock();
        state.topics.get(&full_topic_name(topic)).map_or(0, |t| t.duplicates)
    }

    /// The highest sequence id stored on `topic` from producer `name`, as
    /// PRODUCER answers it (-1 if none).
    pub fn last_sequence_id(&self, topic: &str, name: &str) -> i64 {
        let state = self.shared.lock();
        state
            .topics
            .get(&full_topic_name(topic))
            .and_then(|t| t.sequences.get(name))
            .map_or(-1, |s| *s as i64)
    }

    /// Every message of `topic` (short names are completed as clients do).
    pub fn messages(&self, topic: &str) -> Vec<StoredMessage> {
        let state = self.shared.lock();
        state
            .topics
            .get(&full_topic_name(topic))
            .map(|t| t.messages.clone())
            .unwrap_or_default()
    }

    /// Messages of `topic` not yet acknowledged on `subscription`.
    pub fn backlog(&self, topic: &str, subscription: &str) -> usize {
        let state = self.shared.lock();
        let Some(topic) = state.topics.get(&full_topic_name(topic)) else {
            return 0;
        };
        let acked = topic.subscriptions.get(subscription).map_or(0, |s| s.acked.len());
        topic.messages.len() - acked
    }

    /// Messages dispatched on `subscription` of `topic`, redeliveries included.
    pub fn dispatched(&self, topic: &str, subscription: &str) -> u64 {
        let state = self.shared.lock();
        state
            .topics
            .get(&full_topic_name(topic))
            .and_then(|t| t.subscriptions.get(subscription))
            .map_or(0, |s| s.dispatched)
    }

    /// The ACK frames `subscription` of `topic` received, in order.
    pub fn ack_frames(&self, topic: &str, subscription: &str) -> Vec<AckFrame> {
        self.with_subscription(topic, subscription, |s| s.ack_frames.clone())
            .unwrap_or_default()
    }

    /// The entries each REDELIVER_UNACKNOWLEDGED_MESSAGES on `subscription`
    /// of `topic` named, in order (empty: all of the consumer's).
    pub fn redeliver_requests(&self, topic: &str, subscription: &str) -> Vec<Vec<u64>> {
        self.with_subscription(topic, subscription, |s| s.redeliver_requests.clone())
            .unwrap_or_default()
    }

    fn with_subscription<T>(&self, topic: &str, subscription: &str, f: impl FnOnce(&Subscription) -> T) -> Option<T> {
        let state = self.shared.lock();
        state
            .topics
            .get(&full_topic_name(topic))
            .and_then(|t| t.subscriptions.get(subscription))
            .map(f)
    }

    /// The consumers connected to `subscription` of `topic`.
    pub fn consumers(&self, topic: &str, subscription: &str) -> Vec<ConsumerStats> {
        let state = self.shared.lock();
        state
            .topics
            .get(&full_topic_name(topic))
            .and_then(|t| t.subscriptions.get(subscription))
            .map(|s| {
                s.consumers
                    .iter()
                    .map(|c| ConsumerStats {
                        name: c.name.clone(),
                        delivered: c.delivered,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops every client connection at once, as a broker crash would.
    pub fn drop_connections(&self) {
        let mut state = self.shared.lock();
        let ids: Vec<u64> = state.connections.keys().copied().collect();
        for id in ids {
            if let Some(task) = state.connections.get(&id).and_then(|c| c.task.clone()) {
                task.abort();
            }
            state.disconnect(id);
        }
        drop(state);
        self.shared.wake.notify_one();
    }

    /// Closes every consumer from the broker side (CLOSE_CONSUMER), as a
    /// broker does when a topic moves; clients are expected to subscribe again.
    pub fn close_consumers(&self) {
        let mut state = self.shared.lock();
        let mut closed = Vec::new();
        for topic in state.topics.values_mut() {
            for sub in topic.subscriptions.values_mut() {
                for c in sub.consumers.drain(..) {
                    closed.push((c.connection, c.id));
                }
                sub.release(|_, _| true);
            }
        }
        for (connection, id) in closed {
            state.send(
                connection,
                command(Type::CloseConsumer, |c| {
                    c.close_consumer = Some(proto::CommandCloseConsumer {
                        consumer_id: id,
                        request_id: u64::MAX,
                    })
                }),
            );
        }
    }

    /// Refuses the next `n` SUBSCRIBE requests with "Consumer already
    /// exists", as a broker may right after a restart while it still holds
    /// the consumer of a dead connection. The error code is `UnknownError`,
    /// which pulsar-rs does not retry by itself (it retries `ConsumerBusy`).
    pub fn refuse_subscribes(&self, n: u32) {
        self.shared.lock().refuse_subscribes = n;
    }

    /// The authentication (method name, data) of every CONNECT so far, in
    /// order; the broker accepts any.
    pub fn authentications(&self) -> Vec<(String, Vec<u8>)> {
        self.shared.lock().authentications.clone()
    }

    /// Asks every connected client to authenticate again (AUTH_CHALLENGE),
    /// as a broker does when a token is about to expire.
    pub fn challenge_auth(&self) {
        let state = self.shared.lock();
        for connection in state.connections.keys() {
            state.send(
                *connection,
                command(Type::AuthChallenge, |c| {
                    c.auth_challenge = Some(proto::CommandAuthChallenge {
                        server_version: Some("pulsar-test-broker".into()),
                        challenge: Some(proto::AuthData {
                            auth_method_name: Some("token".into()),
                            auth_data: Some(b"refresh".to_vec()),
                        }),
                        protocol_version: Some(12),
                    })
                }),
            );
        }
    }

    /// The authentication (method name, data) of every AUTH_RESPONSE so
    /// far, in order.
    pub fn auth_responses(&self) -> Vec<(String, Vec<u8>)> {
        self.shared.lock().auth_responses.clone()
    }

    /// Sends the next `n` MESSAGE frames with a payload that does not match
    /// its checksum (one byte flipped after the checksum was computed).
    pub fn corrupt_next_messages(&self, n: u32) {
        self.shared.corrupt.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes `topic` a partitioned topic of `n` partitions, as
    /// PARTITIONED_METADATA tells; its partitions are the topics
    /// `<topic>-partition-<i>`.
    pub fn set_partitions(&self, topic: &str, n: u32) {
        self.shared.lock().partitions.insert(full_topic_name(topic), n);
    }

    /// Answers the next `n` LOOKUP requests with a redirect (to this same
    /// broker, authoritative), as a cluster whose topics move does.
    pub fn redirect_lookups(&self, n: u32) {
        self.shared.lock().redirect_lookups = n;
    }

    /// Every LOOKUP so far: (topic, whether it was authoritative).
    pub fn lookups(&self) -> Vec<(String, bool)> {
        self.shared.lock().lookups.clone()
    }

    /// SUBSCRIBE requests still to be refused.
    pub fn subscribes_to_refuse(&self) -> u32 {
        self.shared.lock().refuse_subscribes
    }

    /// Waits `delay` between dispatched messages (zero: no wait), as a slow
    /// or overloaded broker would.
    pub fn set_dispatch_delay(&self, delay: Duration) {
        self.shared.lock().dispatch_delay = delay;
        self.shared.wake.notify_one();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.accept.abort();
        self.dispatcher.abort();
        let mut state = self.shared.lock();
        for c in state.connections.values() {
            if let Some(task) = &c.task {
                task.abort();
            }
        }
        state.connections.clear();
    }
}

/// The frame codec, which spoils the payload of the next MESSAGE frames
/// when [`Broker::corrupt_next_messages`] asks.
struct CorruptingCodec {
    shared: Arc<Shared>,
}

impl Decoder for CorruptingCodec {
    type Item = Message;
    type Error = pulsar::error::ConnectionError;

    fn decode(&mut self, src: &mut bytes::BytesMut) -> Result<Option<Message>, Self::Error> {
        Codec.decode(src)
    }
}

impl Encoder<Message> for CorruptingCodec {
    type Error = pulsar::error::ConnectionError;

    fn encode(&mut self, item: Message, dst: &mut bytes::BytesMut) -> Result<(), Self::Error> {
        use std::sync::atomic::Ordering::SeqCst;
        let spoil = item.payload.is_some()
            && item.command.r#type == Type::Message as i32
            && self
                .shared
                .corrupt
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok();
        Codec.encode(item, dst)?;
        if spoil && let Some(last) = dst.last_mut() {
            // The checksum covers the payload's last byte.
            *last ^= 0xff;
        }
        Ok(())
    }
}

/// The TLS side of a broker: its certificate and key and, with
/// `client_ca`, the CA client certificates must be signed by.
fn tls_acceptor(cert_chain: &str, key: &str, client_ca: Option<&str>) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    };
    let certs = CertificateDer::pem_slice_iter(cert_chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("the certificate chain", &e))?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| invalid("the private key", &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS versions", &e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots
                    .add(cert.map_err(|e| invalid("the client CA", &e))?)
                    .map_err(|e| invalid("the client CA", &e))?;
            }
            let verifier =
                tokio_rustls::rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| invalid("the client CA", &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| invalid("the certificate", &e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A client connection, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

fn broker_url(addr: SocketAddr, tls: bool) -> String {
    if tls {
        format!("pulsar+ssl://localhost:{}", addr.port())
    } else {
        format!("pulsar://{addr}")
    }
}

/// Completes a short topic name as Pulsar clients do:
/// `events` -> `persistent://public/default/events`.
pub fn full_topic_name(topic: &str) -> String {
    if topic.contains("://") {
        topic.to_string()
    } else if topic.contains('/') {
        format!("persistent://{topic}")
    } else {
        format!("persistent://public/default/{topic}")
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn send(&self, connection: u64, message: Message) {
        if let Some(c) = self.connections.get(&connection) {
            let _ = c.out.send(message);
        }
    }

    /// Forgets a connection: its consumers' unacknowledged messages become
    /// due for redelivery.
    fn disconnect(&mut self, connection: u64) {
        self.connections.remove(&connection);
        self.producers.retain(|(conn, _), _| *conn != connection);
        for topic in self.topics.values_mut() {
            for sub in topic.subscriptions.values_mut() {
                sub.consumers.retain(|c| c.connection != connection);
                sub.release(|_, (conn, _)| conn == connection);
            }
        }
    }

    /// Sends up to `limit` messages to consumers with permits; returns how
    /// many were sent.
    fn dispatch(&mut self, limit: usize) -> usize {
        let mut sent = 0;
        let mut out = Vec::new();
        for topic in self.topics.values_mut() {
            for sub in topic.subscriptions.values_mut() {
                while sent < limit {
                    let Some(entry) = sub.next_entry(topic.messages.len()) else {
                        break;
                    };
                    let message = &topic.messages[entry as usize];
                    let Some(index) = sub.choose(message.key.as_deref()) else {
                        sub.redeliver.insert(entry);
                        break;
                    };
                    let consumer = &mut sub.consumers[index];
                    consumer.permits -= 1;
                    consumer.delivered += 1;
                    sub.dispatched += 1;
                    sub.pending.insert(entry, (consumer.connection, consumer.id));
                    let redelivery_count = *sub.redeliveries.get(&entry).unwrap_or(&0);
                    out.push((consumer.connection, deliver(consumer.id, message, redelivery_count)));
                    sent += 1;
                }
            }
        }
        for (connection, message) in out {
            self.send(connection, message);
        }
        sent
    }
}

impl Subscription {
    fn next_entry(&mut self, len: usize) -> Option<u64> {
        while let Some(entry) = self.redeliver.pop_first() {
            if !self.acked.contains(&entry) && !self.pending.contains_key(&entry) {
                return Some(entry);
            }
        }
        while self.cursor < len {
            let entry = self.cursor as u64;
            self.cursor += 1;
            if !self.acked.contains(&entry) {
                return Some(entry);
            }
        }
        None
    }

    /// The consumer the next message goes to, if it may take one now.
    fn choose(&mut self, key: Option<&str>) -> Option<usize> {
        let n = self.consumers.len();
        if n == 0 {
            return None;
        }
        let pick = match self.kind {
            1 => (0..n)
                .map(|i| (self.round_robin + i) % n)
                .find(|&i| self.consumers[i].permits > 0)
                .inspect(|&i| self.round_robin = i + 1),
            3 => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                key.unwrap_or("").hash(&mut hasher);
                Some((hasher.finish() % n as u64) as usize)
            }
            _ => Some(0),
        };
        pick.filter(|&i| self.consumers[i].permits > 0)
    }

    /// Makes the pending messages that `held` selects due for redelivery.
    fn release(&mut self, held: impl Fn(u64, (u64, u64)) -> bool) {
        let released: Vec<u64> = self
            .pending
            .iter()
            .filter(|(e, h)| held(**e, **h))
            .map(|(e, _)| *e)
            .collect();
        for entry in released {
            self.pending.remove(&entry);
            self.redeliver.insert(entry);
            *self.redeliveries.entry(entry).or_default() += 1;
        }
    }
}

fn command(kind: Type, fill: impl FnOnce(&mut proto::BaseCommand)) -> Message {
    let mut command = proto::BaseCommand {
        r#type: kind as i32,
        ..Default::default()
    };
    fill(&mut command);
    Message { command, payload: None }
}

fn message_id(entry: u64) -> proto::MessageIdData {
    proto::MessageIdData {
        ledger_id: 1,
        entry_id: entry,
        partition: Some(-1),
        ..Default::default()
    }
}

fn deliver(consumer_id: u64, message: &StoredMessage, redelivery_count: u32) -> Message {
    let mut m = command(Type::Message, |c| {
        c.message = Some(proto::CommandMessage {
            consumer_id,
            message_id: message_id(message.entry),
            redelivery_count: Some(redelivery_count),
            ..Default::default()
        })
    });
    m.payload = Some(Payload {
        metadata: message.metadata.clone(),
        data: message.data.clone(),
    });
    m
}

fn success(request_id: u64) -> Message {
    command(Type::Success, |c| {
        c.success = Some(proto::CommandSuccess {
            request_id,
            ..Default::default()
        })
    })
}

fn error(request_id: u64, code: proto::ServerError, text: &str) -> Message {
    command(Type::Error, |c| {
        c.error = Some(proto::CommandError {
            request_id,
            error: code as i32,
            message: text.to_string(),
        })
    })
}

async fn serve(
    shared: Arc<Shared>,
    connection: u64,
    stream: Box<dyn Stream>,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
    url: String,
) {
    let codec = CorruptingCodec { shared: shared.clone() };
    let (mut sink, mut source) = Framed::new(stream, codec).split();
    let writer = tokio::spawn(async move {
        // Write what is queued, then flush once: one syscall per burst.
        while let Some(message) = outgoing.recv().await {
            let mut result = sink.feed(message).await;
            while let (Ok(()), Ok(more)) = (&result, outgoing.try_recv()) {
                result = sink.feed(more).await;
            }
            if result.is_err() || sink.flush().await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(frame)) = source.next().await {
        // Acknowledgements and pings never make messages dispatchable.
        let quiet = matches!(
            Type::try_from(frame.command.r#type),
            Ok(Type::Ack | Type::Ping | Type::Pong)
        );
        let reply = handle(&shared, connection, frame, &url);
        if let Some(reply) = reply {
            shared.lock().send(connection, reply);
        }
        if !quiet {
            shared.wake.notify_one();
        }
    }
    writer.abort();
    shared.lock().disconnect(connection);
    shared.wake.notify_one();
}

/// Handles one frame from a client; returns the direct reply, if any.
fn handle(shared: &Shared, connection: u64, frame: Message, url: &str) -> Option<Message> {
    let c = frame.command;
    let kind = Type::try_from(c.r#type).ok()?;
    tracing::trace!(connection, ?kind, "command");
    match kind {
        Type::Connect => Some(command(Type::Connected, |r| {
            if let Some(connect) = &c.connect {
                shared.lock().authentications.push((
                    connect.auth_method_name.clone().unwrap_or_default(),
                    connect.auth_data.clone().unwrap_or_default(),
                ));
            }
            let version = c.connect.and_then(|c| c.protocol_version).unwrap_or(12).min(12);
            r.connected = Some(proto::CommandConnected {
                server_version: "pulsar-test-broker".into(),
                protocol_version: Some(version),
                max_message_size: Some(5 * 1024 * 1024),
            })
        })),
        Type::Ping => Some(command(Type::Pong, |r| r.pong = Some(proto::CommandPong {}))),
        Type::AuthResponse => {
            let data = c.auth_response?.response?;
            shared.lock().auth_responses.push((
                data.auth_method_name.unwrap_or_default(),
                data.auth_data.unwrap_or_default(),
            ));
            None
        }
        Type::PartitionedMetadata => {
            let p = c.partition_metadata?;
            let request_id = p.request_id;
            let partitions = shared
                .lock()
                .partitions
                .get(&full_topic_name(&p.topic))
                .copied()
                .unwrap_or(0);
            Some(command(Type::PartitionedMetadataResponse, |r| {
                r.partition_metadata_response = Some(proto::CommandPartitionedTopicMetadataResponse {
                    partitions: Some(partitions),
                    request_id,
                    response: Some(0),
                    ..Default::default()
                })
            }))
        }
        Type::GetTopicsOfNamespace => {
            let g = c.get_topics_of_namespace?;
            let prefix = format!("persistent://{}/", g.namespace);
            let mut topics: Vec<String> = shared
                .lock()
                .topics
                .keys()
                .filter(|t| t.starts_with(&prefix))
                .cloned()
                .collect();
            topics.sort();
            Some(command(Type::GetTopicsOfNamespaceResponse, |r| {
                r.get_topics_of_namespace_response = Some(proto::CommandGetTopicsOfNamespaceResponse {
                    request_id: g.request_id,
                    topics,
                    ..Default::default()
                })
            }))
        }
        Type::Lookup => {
            let lookup = c.lookup_topic?;
            let request_id = lookup.request_id;
            let redirect = {
                let mut state = shared.lock();
                state
                    .lookups
                    .push((lookup.topic.clone(), lookup.authoritative.unwrap_or(false)));
                let redirect = state.redirect_lookups > 0;
                state.redirect_lookups = state.redirect_lookups.saturating_sub(1);
                redirect
            };
            let response = if redirect {
                proto::command_lookup_topic_response::LookupType::Redirect
            } else {
                proto::command_lookup_topic_response::LookupType::Connect
            };
            Some(command(Type::LookupResponse, |r| {
                r.lookup_topic_response = Some(proto::CommandLookupTopicResponse {
                    broker_service_url: Some(url.to_string()),
                    broker_service_url_tls: Some(url.to_string()),
                    response: Some(response as i32),
                    request_id,
                    authoritative: Some(true),
                    proxy_through_service_url: Some(false),
                    ..Default::default()
                })
            }))
        }
        Type::Producer => {
            let p = c.producer?;
            let mut state = shared.lock();
            let topic = full_topic_name(&p.topic);
            let name = p
                .producer_name
                .unwrap_or_else(|| format!("producer-{connection}-{}", p.producer_id));
            let busy = state
                .producers
                .iter()
                .any(|(&(conn, id), (t, n))| *t == topic && *n == name && (conn, id) != (connection, p.producer_id));
            if busy {
                return Some(error(
                    p.request_id,
                    proto::ServerError::ProducerBusy,
                    &format!("Producer with name '{name}' is already connected to topic"),
                ));
            }
            let dedup = !state.deduplication_off;
            let last = state
                .topics
                .entry(topic.clone())
                .or_default()
                .sequences
                .get(&name)
                .copied();
            state
                .producers
                .insert((connection, p.producer_id), (topic, name.clone()));
            drop(state);
            Some(command(Type::ProducerSuccess, |r| {
                r.producer_success = Some(proto::CommandProducerSuccess {
                    request_id: p.request_id,
                    producer_name: name,
                    last_sequence_id: Some(last.filter(|_| dedup).map_or(-1, |s| s as i64)),
                    producer_ready: Some(true),
                    ..Default::default()
                })
            }))
        }
        Type::Send => {
            let send = c.send?;
            let payload = frame.payload?;
            let mut state = shared.lock();
            let (topic_name, producer_name) = state.producer(connection, send.producer_id)?;
            let dedup = !state.deduplication_off;
            let topic = state.topics.entry(topic_name).or_default();
            // A batch's sequence id is its first message's; it counts by its
            // highest, as Pulsar's deduplication does.
            let highest = send.sequence_id.max(send.highest_sequence_id.unwrap_or(0));
            let last = topic.sequences.get(&producer_name).copied();
            if dedup && last.is_some_and(|last| highest <= last) {
                topic.duplicates += 1;
                return Some(command(Type::SendReceipt, |r| {
                    r.send_receipt = Some(proto::CommandSendReceipt {
                        producer_id: send.producer_id,
                        sequence_id: send.sequence_id,
                        message_id: Some(proto::MessageIdData {
                            ledger_id: u64::MAX,
                            entry_id: u64::MAX,
                            ..Default::default()
                        }),
                        highest_sequence_id: send.highest_sequence_id,
                    })
                }));
            }
            topic.sequences.insert(producer_name, highest.max(last.unwrap_or(0)));
            let entry = topic.messages.len() as u64;
            topic.messages.push(StoredMessage {
                entry,
                key: payload.metadata.partition_key.clone(),
                properties: payload
                    .metadata
                    .properties
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.value.clone()))
                    .collect(),
                data: payload.data,
                metadata: payload.metadata,
            });
            Some(command(Type::SendReceipt, |r| {
                r.send_receipt = Some(proto::CommandSendReceipt {
                    producer_id: send.producer_id,
                    sequence_id: send.sequence_id,
                    message_id: Some(message_id(entry)),
                    highest_sequence_id: send.highest_sequence_id,
                })
            }))
        }
        Type::Subscribe => {
            let s = c.subscribe?;
            let mut state = shared.lock();
            if state.refuse_subscribes > 0 {
                state.refuse_subscribes -= 1;
                return Some(error(
                    s.request_id,
                    proto::ServerError::UnknownError,
                    "Consumer already exists",
                ));
            }
            let topic = state.topics.entry(full_topic_name(&s.topic)).or_default();
            let latest = s.initial_position == Some(proto::command_subscribe::InitialPosition::Latest as i32);
            let len = topic.messages.len();
            let sub = topic
                .subscriptions
                .entry(s.subscription.clone())
                .or_insert_with(|| Subscription {
                    kind: s.sub_type,
                    cursor: if latest { len } else { 0 },
                    ..Default::default()
                });
            if sub.kind != s.sub_type {
                return Some(error(
                    s.request_id,
                    proto::ServerError::ConsumerBusy,
                    "subscription type differs",
                ));
            }
            if sub.kind == 0 && !sub.consumers.is_empty() {
                return Some(error(
                    s.request_id,
                    proto::ServerError::ConsumerBusy,
                    "exclusive subscription is taken",
                ));
            }
            sub.consumers
                .retain(|x| !(x.connection == connection && x.id == s.consumer_id));
            sub.consumers.push(Consumer {
                connection,
                id: s.consumer_id,
                name: s.consumer_name.unwrap_or_default(),
                permits: 0,
                delivered: 0,
            });
            // A Key_Shared subscription re-balances keys when consumers change;
            // what the others held is due again.
            if sub.kind == 3 {
                sub.release(|_, _| true);
            }
            Some(success(s.request_id))
        }
        Type::Flow => {
            let f = c.flow?;
            let mut state = shared.lock();
            if let Some(consumer) = state.consumer_mut(connection, f.consumer_id) {
                consumer.permits = consumer.permits.saturating_add(f.message_permits);
            }
            None
        }
        Type::Ack => {
            let a = c.ack?;
            let mut state = shared.lock();
            if let Some(sub) = state.subscription_mut(connection, a.consumer_id) {
                sub.ack_frames.push(AckFrame {
                    cumulative: a.ack_type == proto::command_ack::AckType::Cumulative as i32,
                    entries: a.message_id.iter().map(|m| m.entry_id).collect(),
                });
                for id in &a.message_id {
                    if a.ack_type == proto::command_ack::AckType::Cumulative as i32 {
                        let upto: Vec<u64> = sub.pending.keys().copied().filter(|e| *e <= id.entry_id).collect();
                        for e in upto {
                            sub.pending.remove(&e);
                            sub.acked.insert(e);
                        }
                    } else {
                        sub.pending.remove(&id.entry_id);
                        sub.redeliver.remove(&id.entry_id);
                        sub.acked.insert(id.entry_id);
                    }
                }
            }
            a.request_id.map(success)
        }
        Type::RedeliverUnacknowledgedMessages => {
            let r = c.redeliver_unacknowledged_messages?;
            let mut state = shared.lock();
            if let Some(sub) = state.subscription_mut(connection, r.consumer_id) {
                let only: BTreeSet<u64> = r.message_ids.iter().map(|m| m.entry_id).collect();
                sub.redeliver_requests.push(only.iter().copied().collect());
                let consumer = r.consumer_id;
                sub.release(|entry, (conn, id)| {
                    conn == connection && id == consumer && (only.is_empty() || only.contains(&entry))
                });
            }
            None
        }
        Type::Seek => {
            let seek = c.seek?;
            let mut state = shared.lock();
            let found = state.topics.values_mut().find_map(|t| {
                let messages = &t.messages;
                t.subscriptions
                    .values_mut()
                    .find(|s| {
                        s.consumers
                            .iter()
                            .any(|x| x.connection == connection && x.id == seek.consumer_id)
                    })
                    .map(|s| (messages, s))
            });
            let Some((messages, sub)) = found else {
                return Some(error(
                    seek.request_id,
                    proto::ServerError::ConsumerNotFound,
                    "no such consumer",
                ));
            };
            let start = match (&seek.message_id, seek.message_publish_time) {
                (Some(id), _) => id.entry_id.min(messages.len() as u64),
                (None, Some(time)) => messages
                    .iter()
                    .find(|m| m.metadata.publish_time >= time)
                    .map_or(messages.len() as u64, |m| m.entry),
                (None, None) => {
                    return Some(error(
                        seek.request_id,
                        proto::ServerError::MetadataError,
                        "seek to nowhere",
                    ));
                }
            };
            // As Pulsar: the cursor moves, everything before it counts as
            // acknowledged, and the subscription's consumers are closed.
            sub.acked = (0..start).collect();
            sub.pending.clear();
            sub.redeliver.clear();
            sub.cursor = start as usize;
            let closed: Vec<(u64, u64)> = sub.consumers.drain(..).map(|x| (x.connection, x.id)).collect();
            for (conn, id) in closed {
                state.send(
                    conn,
                    command(Type::CloseConsumer, |c| {
                        c.close_consumer = Some(proto::CommandCloseConsumer {
                            consumer_id: id,
                            request_id: u64::MAX,
                        })
                    }),
                );
            }
            Some(success(seek.request_id))
        }
        Type::CloseConsumer => {
            let close = c.close_consumer?;
            let mut state = shared.lock();
            if let Some(sub) = state.subscription_mut(connection, close.consumer_id) {
                sub.consumers
                    .retain(|x| !(x.connection == connection && x.id == close.consumer_id));
                sub.release(|_, (conn, id)| conn == connection && id == close.consumer_id);
            }
            Some(success(close.request_id))
        }
        Type::CloseProducer => {
            let close = c.close_producer?;
            shared.lock().producers.remove(&(connection, close.producer_id));
            Some(success(close.request_id))
        }
        Type::Unsubscribe => Some(success(c.unsubscribe?.request_id)),
        _ => {
            tracing::debug!(?kind, "pulsar-test-broker ignores a command");
            None
        }
    }
}

impl State {
    /// The topic and name of a producer.
    fn producer(&self, connection: u64, producer: u64) -> Option<(String, String)> {
        self.producers.get(&(connection, producer)).cloned()
    }

    fn consumer_mut(&mut self, connection: u64, consumer: u64) -> Option<&mut Consumer> {
        self.topics
            .values_mut()
            .flat_map(|t| t.subscriptions.values_mut())
            .find_map(|s| {
                s.consumers
                    .iter_mut()
                    .find(|c| c.connection == connection && c.id == consumer)
            })
    }

    fn subscription_mut(&mut self, connection: u64, consumer: u64) -> Option<&mut Subscription> {
        self.topics
            .values_mut()
            .flat_map(|t| t.subscriptions.values_mut())
            .find(|s| {
                s.consumers
                    .iter()
                    .any(|c| c.connection == connection && c.id == consumer)
                    || s.pending
                        .values()
                        .any(|&(conn, id)| conn == connection && id == consumer)
            })
    }
}
