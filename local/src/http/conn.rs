//! The connection loop: HTTP/1.1 over hyper with the deadlines slow clients
//! need (headers, idle keep-alive, request bodies) and a cap on open
//! connections.
//!
//! The header and idle deadlines are kept by [`Deadlines`], a wrapper of the
//! TCP stream that follows where each request is (waiting for its first byte,
//! reading its head, being served) from the bytes it passes; the body deadline
//! by [`read_body`], which reads the whole body before the handler runs.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::extract::FromRequest;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

use super::*;

/// Deadlines and limits of client connections.
#[derive(Debug, Clone)]
pub struct Connections {
    /// Time from a request's first byte to the end of its headers.
    pub header_timeout: Duration,
    /// Time a connection may wait for a request, between requests or
    /// before the first.
    pub idle_timeout: Duration,
    /// Time from the end of a request's headers to the end of its body.
    pub body_timeout: Duration,
    /// Most connections open at once; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// How long open requests may finish after a shutdown signal.
const GRACE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then lets open
/// requests finish (for a while).
pub(super) async fn run(
    listener: TcpListener,
    app: Router,
    limits: Connections,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit?,
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(Deadlines::new(stream, &limits));
        let service = TowerToHyperService::new(app.clone());
        let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still open after {GRACE:?}; stopping anyway");
    }
    Ok(())
}

/// Reads the request's body within the body deadline, answering 408 if it
/// trickles in too slowly (and 413 beyond the body limit), then hands the
/// request on with its body in memory.
pub(super) async fn read_body(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let timeout = state.config.connections.body_timeout;
    let (parts, body) = request.into_parts();
    let headers = Request::from_parts(parts.clone(), body);
    match tokio::time::timeout(timeout, Bytes::from_request(headers, &())).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Ok(Err(rejection)) => body_error(rejection).into_response(),
        Err(_) => {
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the request body did not arrive within {} s; `timeline serve --body-timeout` sets the limit",
                    timeout.as_secs_f64()
                ),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            response
        }
    }
}

/// Where the connection's current request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's first byte: the idle deadline runs.
    Idle,
    /// Reading a request's head; `matched` bytes of the closing blank line
    /// (`\r\n\r\n`) seen: the header deadline runs.
    Head { matched: u8 },
    /// The head is read; the body (under [`read_body`]'s deadline) and the
    /// handler take what they take, until the response is written.
    Served,
}

/// A stream that fails reads with `TimedOut` when the client is idle or
/// sends its headers too slowly.
struct Deadlines<S> {
    inner: S,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Deadlines<TcpStream> {
    fn new(inner: TcpStream, limits: &Connections) -> Self {
        Deadlines {
            inner,
            phase: Phase::Idle,
            deadline: Box::pin(tokio::time::sleep(limits.idle_timeout)),
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
        }
    }
}

impl<S> Deadlines<S> {
    /// Follows the request through the bytes read.
    fn saw(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let matched = match self.phase {
                Phase::Served => return,
                Phase::Idle => {
                    self.deadline.as_mut().reset(Instant::now() + self.header_timeout);
                    0
                }
                Phase::Head { matched } => matched,
            };
            let matched = match (matched, b) {
                (0 | 2, b'\r') => matched + 1,
                (1 | 3, b'\n') => matched + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            self.phase = if matched == 4 {
                Phase::Served
            } else {
                Phase::Head { matched }
            };
        }
    }

    /// A response is being written: once it is (not a `100 Continue`), the
    /// connection is idle.
    fn wrote(&mut self, bytes: &[u8]) {
        if self.phase == Phase::Served && !bytes.starts_with(b"HTTP/1.1 1") {
            self.phase = Phase::Idle;
        }
        if self.phase == Phase::Idle {
            self.deadline.as_mut().reset(Instant::now() + self.idle_timeout);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlines<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.phase != Phase::Served && this.deadline.as_mut().poll(cx).is_ready() => {
                let what = match this.phase {
                    Phase::Head { .. } => "the request's headers did not arrive in time",
                    _ => "the connection was idle too long",
                };
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlines<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.wrote(&buf[..n]);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written
            && n > 0
        {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
            this.wrote(&first[..first.len().min(n)]);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phases(chunks: &[&[u8]]) -> Vec<Phase> {
        let mut d = Deadlines {
            inner: (),
            phase: Phase::Idle,
            deadline: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
        };
        chunks
            .iter()
            .map(|c| {
                d.saw(c);
                d.phase
            })
            .collect()
    }

    #[tokio::test]
    async fn follows_a_request_head_split_anywhere() {
        assert_eq!(
            phases(&[b"GET / HTTP/1.1\r\nHost: a\r", b"\n\r", b"\nbody"]),
            [Phase::Head { matched: 1 }, Phase::Head { matched: 3 }, Phase::Served]
        );
        assert_eq!(phases(&[b"GET / HTTP/1.1\r\n\r\r\n"]), [Phase::Head { matched: 2 }]);
    }
}
