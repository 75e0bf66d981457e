//! One connection to a broker: the handshake (CONNECT and authentication),
//! requests and their responses, keep-alive, and the routing of messages to
//! consumers and of receipts to producers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use bytes::BytesMut;
use futures::StreamExt;
use pulsar::message::proto::{self, BaseCommand, MessageMetadata, base_command::Type};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_rustls::rustls::ClientConfig;
use tokio_util::codec::FramedRead;

use super::auth::Auth;
use super::frame::{Codec, Outgoing, Payload, encode};
use super::url::ServiceUrl;

/// The protocol version the feeder speaks.
const PROTOCOL_VERSION: i32 = 12;
/// How long a TCP connection, a TLS handshake and CONNECT may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for its response.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a ping is sent.
const PING_EVERY: Duration = Duration::from_secs(30);
/// A connection that brings nothing (not even a pong) for this long is dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh id for a request, a consumer or a producer.
pub fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A command of `kind`, filled in by `fill`.
pub fn command(kind: Type, fill: impl FnOnce(&mut BaseCommand)) -> BaseCommand {
    let mut command = BaseCommand {
        r#type: kind as i32,
        ..Default::default()
    };
    fill(&mut command);
    command
}

/// What every connection of a client shares.
#[derive(Clone, Default)]
pub struct Config {
    /// TLS for `pulsar+ssl://` URLs.
    pub tls: Option<Arc<ClientConfig>>,
    /// Authentication, if any.
    pub auth: Option<Arc<Auth>>,
}

/// What the broker sends a consumer.
#[derive(Debug)]
pub enum Event {
    /// A message.
    Message {
        /// The consumer.
        consumer_id: u64,
        /// The MESSAGE command.
        message: Box<proto::CommandMessage>,
        /// Its payload.
        payload: Option<Box<Payload>>,
    },
    /// The consumer is gone: closed by the broker, or its connection lost.
    Closed {
        /// The consumer.
        consumer_id: u64,
    },
}

/// A connection to a broker; cheap to clone.
#[derive(Clone)]
pub struct Connection(Arc<Inner>);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Connection").field(&self.0.address).finish()
    }
}

struct Inner {
    address: String,
    out: mpsc::UnboundedSender<Outgoing>,
    routes: Mutex<Routes>,
    tasks: Mutex<Vec<AbortHandle>>,
    auth: Option<Arc<Auth>>,
}

type Receipt = oneshot::Sender<Result<(), String>>;

#[derive(Default)]
struct Routes {
    closed: bool,
    requests: HashMap<u64, oneshot::Sender<BaseCommand>>,
    receipts: HashMap<(u64, u64), Receipt>,
    consumers: HashMap<u64, mpsc::UnboundedSender<Event>>,
    closed_producers: HashSet<u64>,
}

/// A byte stream to a broker, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Connects to the broker at `url` (the first of its hosts that answers);
/// through a proxy, `proxy_to` names the broker behind it.
pub async fn connect(config: &Config, url: &str, proxy_to: Option<&str>) -> anyhow::Result<Connection> {
    let target = ServiceUrl::parse(url)?;
    let mut last = None;
    for (host, port) in &target.hosts {
        match tokio::time::timeout(CONNECT_TIMEOUT, open(config, target.tls, host, *port, url, proxy_to)).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(e)) => last = Some(e.context(format!("{host}:{port}"))),
            Err(_) => last = Some(anyhow::anyhow!("{host}:{port}: no answer within {CONNECT_TIMEOUT:?}")),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("`{url}` names no host")))
}

async fn open(
    config: &Config,
    tls: bool,
    host: &str,
    port: u16,
    url: &str,
    proxy_to: Option<&str>,
) -> anyhow::Result<Connection> {
    let tcp = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .context("cannot connect")?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = if tls {
        let config = config
            .tls
            .clone()
            .context("a pulsar+ssl:// URL but no TLS configuration")?;
        let connector = tokio_rustls::TlsConnector::from(config);
        Box::new(
            connector
                .connect(super::tls::server_name(host)?, tcp)
                .await
                .context("TLS handshake")?,
        )
    } else {
        Box::new(tcp)
    };
    let (read, mut write) = tokio::io::split(stream);
    let mut frames = FramedRead::new(read, Codec);
    let (auth_method_name, auth_data) = match &config.auth {
        Some(auth) => (Some(auth.method().to_string()), Some(auth.data().await?)),
        None => (None, None),
    };
    let connect = command(Type::Connect, |c| {
        c.connect = Some(proto::CommandConnect {
            client_version: client_version(),
            auth_method_name,
            auth_data,
            protocol_version: Some(PROTOCOL_VERSION),
            proxy_to_broker_url: proxy_to.map(str::to_string),
            feature_flags: Some(proto::FeatureFlags {
                supports_auth_refresh: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    write_frame(&mut write, connect.into()).await?;
    loop {
        let frame = frames
            .next()
            .await
            .context("the broker closed the connection during the handshake")??;
        match Type::try_from(frame.command.r#type) {
            Ok(Type::Connected) => break,
            Ok(Type::AuthChallenge) => {
                let response = auth_response(config.auth.as_deref()).await?;
                write_frame(&mut write, response.into()).await?;
            }
            Ok(Type::Ping) => {
                write_frame(
                    &mut write,
                    command(Type::Pong, |c| c.pong = Some(Default::default())).into(),
                )
                .await?
            }
            Ok(Type::Error) => {
                let e = frame.command.error.unwrap_or_default();
                anyhow::bail!(
                    "the broker refused the connection: {} ({:?})",
                    e.message,
                    server_error(e.error)
                );
            }
            other => tracing::debug!(?other, "ignored during the handshake"),
        }
    }
    let (out, outgoing) = mpsc::unbounded_channel();
    let inner = Arc::new(Inner {
        address: url.to_string(),
        out,
        routes: Mutex::new(Routes::default()),
        tasks: Mutex::new(Vec::new()),
        auth: config.auth.clone(),
    });
    let writer = tokio::spawn(write_loop(inner.clone(), write, outgoing));
    let reader = tokio::spawn(read_loop(inner.clone(), frames));
    lock(&inner.tasks).extend([writer.abort_handle(), reader.abort_handle()]);
    if lock(&inner.routes).closed {
        writer.abort();
        reader.abort();
    }
    tracing::debug!(url, "connected");
    Ok(Connection(inner))
}

fn client_version() -> String {
    format!("timeline-feeder {}", env!("CARGO_PKG_VERSION"))
}

fn server_error(code: i32) -> String {
    proto::ServerError::try_from(code)
        .map(|e| e.as_str_name().to_string())
        .unwrap_or_else(|_| format!("error {code}"))
}

async fn auth_response(auth: Option<&Auth>) -> anyhow::Result<BaseCommand> {
    let auth =
        auth.context("the broker asks for authentication; give --pulsar-token, --pulsar-token-file or OAuth2")?;
    let data = auth.data().await?;
    Ok(command(Type::AuthResponse, |c| {
        c.auth_response = Some(proto::CommandAuthResponse {
            client_version: Some(client_version()),
            response: Some(proto::AuthData {
                auth_method_name: Some(auth.method().to_string()),
                auth_data: Some(data),
            }),
            protocol_version: Some(PROTOCOL_VERSION),
        })
    }))
}

async fn write_frame(write: &mut (impl AsyncWrite + Unpin), frame: Outgoing) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    encode(&frame, &mut buf);
    write.write_all(&buf).await?;
    write.flush().await
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes what is queued (several frames per write), and a ping every
/// [`PING_EVERY`].
async fn write_loop(
    inner: Arc<Inner>,
    mut write: impl AsyncWrite + Unpin,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
) {
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            next = outgoing.recv() => match next {
                Some(frame) => {
                    encode(&frame, &mut buf);
                    while buf.len() < (1 << 20) {
                        match outgoing.try_recv() {
                            Ok(frame) => encode(&frame, &mut buf),
                            Err(_) => break,
                        }
                    }
                }
                None => break,
            },
            _ = ping.tick() => encode(&command(Type::Ping, |c| c.ping = Some(Default::default())).into(), &mut buf),
        }
        if let Err(e) = write.write_all(&buf).await {
            tracing::warn!(error = %e, url = %inner.address, "cannot write to the broker; the connection is closed");
            break;
        }
        buf.clear();
    }
    let _ = write.shutdown().await;
    inner.close();
}

async fn read_loop<R: AsyncRead + Unpin>(inner: Arc<Inner>, mut frames: FramedRead<R, Codec>) {
    loop {
        match tokio::time::timeout(IDLE_TIMEOUT, frames.next()).await {
            Ok(Some(Ok(frame))) => inner.dispatch(frame.command, frame.payload),
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, url = %inner.address, "unreadable frame from the broker; the connection is closed");
                break;
            }
            Ok(None) => {
                tracing::info!(url = %inner.address, "the broker closed the connection");
                break;
            }
            Err(_) => {
                tracing::warn!(url = %inner.address, "nothing from the broker for {IDLE_TIMEOUT:?}; the connection is closed");
                break;
            }
        }
    }
    inner.close();
}

/// The request a response answers.
fn request_id(c: &BaseCommand) -> Option<u64> {
    c.success
        .as_ref()
        .map(|x| x.request_id)
        .or(c.error.as_ref().map(|x| x.request_id))
        .or(c.lookup_topic_response.as_ref().map(|x| x.request_id))
        .or(c.partition_metadata_response.as_ref().map(|x| x.request_id))
        .or(c.get_topics_of_namespace_response.as_ref().map(|x| x.request_id))
        .or(c.producer_success.as_ref().map(|x| x.request_id))
}

impl Inner {
    fn send(&self, frame: Outgoing) {
        let _ = self.out.send(frame);
    }

    fn dispatch(self: &Arc<Self>, c: BaseCommand, payload: Option<Payload>) {
        let kind = Type::try_from(c.r#type);
        match kind {
            Ok(Type::Ping) => self.send(command(Type::Pong, |r| r.pong = Some(Default::default())).into()),
            Ok(Type::Pong) => {}
            Ok(Type::Message) => {
                let Some(message) = c.message else { return };
                let consumer_id = message.consumer_id;
                if let Some(tx) = lock(&self.routes).consumers.get(&consumer_id) {
                    let _ = tx.send(Event::Message {
                        consumer_id,
                        message: Box::new(message),
                        payload: payload.map(Box::new),
                    });
                }
            }
            Ok(Type::CloseConsumer) => {
                let Some(close) = c.close_consumer else { return };
                let consumer_id = close.consumer_id;
                tracing::info!(consumer_id, url = %self.address, "the broker closed a consumer");
                if let Some(tx) = lock(&self.routes).consumers.remove(&consumer_id) {
                    let _ = tx.send(Event::Closed { consumer_id });
                }
            }
            Ok(Type::CloseProducer) => {
                let Some(close) = c.close_producer else { return };
                let mut routes = lock(&self.routes);
                routes.closed_producers.insert(close.producer_id);
                routes.receipts.retain(|(p, _), _| *p != close.producer_id);
            }
            Ok(Type::SendReceipt) => {
                let Some(r) = c.send_receipt else { return };
                if let Some(tx) = lock(&self.routes).receipts.remove(&(r.producer_id, r.sequence_id)) {
                    let _ = tx.send(Ok(()));
                }
            }
            Ok(Type::SendError) => {
                let Some(e) = c.send_error else { return };
                if let Some(tx) = lock(&self.routes).receipts.remove(&(e.producer_id, e.sequence_id)) {
                    let _ = tx.send(Err(format!("{} ({})", e.message, server_error(e.error))));
                }
            }
            Ok(Type::AuthChallenge) => {
                let inner = self.clone();
                tokio::spawn(async move {
                    match auth_response(inner.auth.as_deref()).await {
                        Ok(response) => inner.send(response.into()),
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "cannot answer the broker's authentication challenge");
                            inner.close();
                        }
                    }
                });
            }
            _ => {
                let Some(id) = request_id(&c) else {
                    tracing::debug!(?kind, "ignored a command from the broker");
                    return;
                };
                // A producer not ready yet gets a second answer.
                if c.producer_success
                    .as_ref()
                    .is_some_and(|p| p.producer_ready == Some(false))
                {
                    return;
                }
                if let Some(tx) = lock(&self.routes).requests.remove(&id) {
                    let _ = tx.send(c);
                }
            }
        }
    }

    /// Marks the connection closed: consumers are told, waiting requests
    /// and receipts fail, the tasks stop.
    fn close(&self) {
        let routes = {
            let mut routes = lock(&self.routes);
            if routes.closed {
                return;
            }
            let taken = std::mem::take(&mut *routes);
            routes.closed = true;
            taken
        };
        for (consumer_id, tx) in routes.consumers {
            let _ = tx.send(Event::Closed { consumer_id });
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl Connection {
    /// The URL it is connected to.
    pub fn address(&self) -> &str {
        &self.0.address
    }

    /// Whether it is closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.0.routes).closed
    }

    /// Closes it.
    pub fn close(&self) {
        self.0.close();
    }

    /// Sends a command that gets no response.
    pub fn send(&self, command: BaseCommand) {
        self.0.send(command.into());
    }

    /// Sends a request (`fill` gets its request id) and waits for its
    /// response; an ERROR response is an error.
    pub async fn request(&self, kind: Type, fill: impl FnOnce(&mut BaseCommand, u64)) -> anyhow::Result<BaseCommand> {
        let id = next_id();
        let (tx, rx) = oneshot::channel();
        {
            let mut routes = lock(&self.0.routes);
            if routes.closed {
                anyhow::bail!("the connection to {} is closed", self.0.address);
            }
            routes.requests.insert(id, tx);
        }
        self.send(command(kind, |c| fill(c, id)));
        let reply = match tokio::time::timeout(OPERATION_TIMEOUT, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => anyhow::bail!("the connection to {} closed", self.0.address),
            Err(_) => {
                lock(&self.0.routes).requests.remove(&id);
                anyhow::bail!(
                    "{} did not answer {kind:?} within {OPERATION_TIMEOUT:?}",
                    self.0.address
                );
            }
        };
        if let Some(e) = &reply.error {
            anyhow::bail!("{} ({})", e.message, server_error(e.error));
        }
        Ok(reply)
    }

    /// Routes the events of consumer `consumer_id` to `events`; false if the
    /// connection is closed.
    pub fn register(&self, consumer_id: u64, events: mpsc::UnboundedSender<Event>) -> bool {
        let mut routes = lock(&self.0.routes);
        if routes.closed {
            return false;
        }
        routes.consumers.insert(consumer_id, events);
        true
    }

    /// Stops routing the events of consumer `consumer_id`.
    pub fn unregister(&self, consumer_id: u64) {
        lock(&self.0.routes).consumers.remove(&consumer_id);
    }

    /// Publishes one message as producer `producer_id` and waits for its
    /// receipt.
    pub async fn publish(&self, producer_id: u64, metadata: MessageMetadata, data: Vec<u8>) -> anyhow::Result<()> {
        self.start_publish(producer_id, metadata, data)?.wait().await
    }

    /// Queues one message as producer `producer_id` (frames go out in the
    /// order they are queued) and returns its receipt to wait for: several
    /// messages can be in flight at once.
    pub fn start_publish(
        &self,
        producer_id: u64,
        metadata: MessageMetadata,
        data: Vec<u8>,
    ) -> anyhow::Result<PendingReceipt> {
        let sequence_id = metadata.sequence_id;
        let (tx, rx) = oneshot::channel();
        {
            let mut routes = lock(&self.0.routes);
            if routes.closed {
                anyhow::bail!("the connection to {} is closed", self.0.address);
            }
            if routes.closed_producers.contains(&producer_id) {
                anyhow::bail!("the broker closed the producer");
            }
            if routes.receipts.contains_key(&(producer_id, sequence_id)) {
                anyhow::bail!("sequence id {sequence_id} is already in flight");
            }
            routes.receipts.insert((producer_id, sequence_id), tx);
        }
        let send = command(Type::Send, |c| {
            c.send = Some(proto::CommandSend {
                producer_id,
                sequence_id,
                num_messages: Some(1),
                ..Default::default()
            })
        });
        self.0.send(Outgoing {
            command: send,
            payload: Some((metadata, data)),
        });
        Ok(PendingReceipt {
            connection: self.clone(),
            key: (producer_id, sequence_id),
            rx,
        })
    }
}

/// The receipt of a message queued by [`Connection::start_publish`].
pub struct PendingReceipt {
    connection: Connection,
    key: (u64, u64),
    rx: oneshot::Receiver<Result<(), String>>,
}

impl PendingReceipt {
    /// Waits until the broker has stored the message (or, for a producer
    /// the broker deduplicates, recognised it as already stored).
    pub async fn wait(self) -> anyhow::Result<()> {
        match tokio::time::timeout(OPERATION_TIMEOUT, self.rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => anyhow::bail!("the broker refused the message: {e}"),
            Ok(Err(_)) => anyhow::bail!("no receipt: the connection or the producer closed"),
            Err(_) => {
                lock(&self.connection.0.routes).receipts.remove(&self.key);
                anyhow::bail!("no receipt within {OPERATION_TIMEOUT:?}")
            }
        }
    }
}
