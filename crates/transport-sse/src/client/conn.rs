//! HTTP connections of the client: TCP, TLS with ALPN, then hyper's HTTP/1.1 or HTTP/2
//! connection API. A connection's hyper future runs in a task of its own (aborted when the
//! connection is dropped), or, for the event stream's HTTP/1.1 connection, inline: polled by
//! the task that reads the stream, so an event goes from the socket to the parser without
//! waking another task.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tracing::debug;
use transport_core::TransportError;
use transport_core::tls::ClientStream;

use super::Inner;
use super::url::Target;

/// Request body of every request the client makes.
pub(crate) type Body = Full<Bytes>;

/// The protocol spoken on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Http1,
    Http2,
}

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Not written: the connection was closed. The request is handed back.
    NotSent(Box<Request<Body>>, hyper::Error),
    /// Failed after it was (perhaps partly) written.
    Failed(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotSent(_, e) | Self::Failed(e) => e.fmt(f),
        }
    }
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The request half of a hyper connection.
#[derive(Debug)]
pub(crate) enum SendHalf {
    Http1(http1::SendRequest<Body>),
    Http2(http2::SendRequest<Body>),
}

impl SendHalf {
    /// Waits until the connection can take a request; an error means it is closed.
    async fn ready(&mut self) -> Result<(), hyper::Error> {
        match self {
            Self::Http1(s) => s.ready().await,
            Self::Http2(s) => s.ready().await,
        }
    }

    /// Another handle on the same connection, when it is HTTP/2 (which multiplexes).
    pub(crate) fn share(&self) -> Option<Self> {
        match self {
            Self::Http1(_) => None,
            Self::Http2(s) => Some(Self::Http2(s.clone())),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Self::Http1(s) => s.is_closed(),
            Self::Http2(s) => s.is_closed(),
        }
    }

    /// Sends a request built by [`request`]. The request comes back with the error when it
    /// was not written at all (the connection had closed), so it can go on another one.
    pub(crate) async fn send(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        if let Err(e) = self.ready().await {
            return Err(SendError::NotSent(Box::new(request), e));
        }
        let result = match self {
            Self::Http1(s) => s.try_send_request(request).await,
            Self::Http2(s) => s.try_send_request(request).await,
        };
        result.map_err(|mut e| match e.take_message() {
            Some(request) => SendError::NotSent(Box::new(request), e.into_error()),
            None => SendError::Failed(e.into_error()),
        })
    }

    pub(crate) fn version(&self) -> Version {
        match self {
            Self::Http1(_) => Version::Http1,
            Self::Http2(_) => Version::Http2,
        }
    }
}

/// A hyper HTTP/1.1 client connection future.
type Http1Conn = http1::Connection<TokioIo<ClientStream>, Body>;

/// What drives a connection's hyper future.
enum Driver {
    /// Its own task, aborted on drop.
    Task { _abort: AbortOnDrop },
    /// The owner polls it with [`HttpConn::poll_driver`] (HTTP/1.1 only).
    Inline(Pin<Box<Http1Conn>>),
    /// The inline connection ended.
    Done,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Task { .. } => "Task",
            Self::Inline(_) => "Inline",
            Self::Done => "Done",
        })
    }
}

/// How a connection's hyper future should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drive {
    /// In a task of its own.
    Spawn,
    /// Inline when it speaks HTTP/1.1 (the owner polls [`HttpConn::poll_driver`]); HTTP/2
    /// connections, which carry the POSTs too, always get a task.
    InlineHttp1,
}

/// One HTTP connection: its request half and its hyper future (in a task aborted on drop, or
/// inline). An HTTP/2 connection's request half may be cloned to share the connection.
#[derive(Debug)]
pub(crate) struct HttpConn {
    pub(crate) send: SendHalf,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) origin: Target,
    driver: Driver,
}

impl HttpConn {
    /// Polls an inline connection's hyper future: reads the socket into the response body,
    /// writes requests. `Ready` once it has ended (it is then dropped, which fails what was in
    /// flight on it); always `Pending` for a connection with its own task.
    pub(crate) fn poll_driver(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Driver::Inline(conn) = &mut self.driver else {
            return if matches!(self.driver, Driver::Done) {
                Poll::Ready(())
            } else {
                Poll::Pending
            };
        };
        let Poll::Ready(result) = conn.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        if let Err(e) = result {
            debug!(error = %e, "HTTP/1.1 connection ended");
        }
        self.driver = Driver::Done;
        Poll::Ready(())
    }

    /// Sends a request (as [`SendHalf::send`]) while driving an inline connection.
    pub(crate) async fn send(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        let Self { send, driver, .. } = self;
        if !matches!(driver, Driver::Inline(_)) {
            return send.send(request).await;
        }
        let sending = send.send(request);
        tokio::pin!(sending);
        poll_fn(|cx| {
            if let Poll::Ready(result) = sending.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            if let Driver::Inline(conn) = driver
                && let Poll::Ready(result) = conn.as_mut().poll(cx)
            {
                if let Err(e) = result {
                    debug!(error = %e, "HTTP/1.1 connection ended");
                }
                // Dropping the connection fails the request in flight, which the next poll
                // of `sending` returns.
                *driver = Driver::Done;
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        })
        .await
    }

    /// Connects to `target`'s origin: TCP, TLS (ALPN `h2`, `http/1.1`) for `https`, then the
    /// HTTP handshake. Not bounded in time: callers bound it.
    pub(crate) async fn open(
        inner: &Inner,
        target: &Target,
        drive: Drive,
    ) -> Result<Self, TransportError> {
        let tcp = TcpStream::connect((target.bare_host(), target.port))
            .await
            .map_err(|e| {
                TransportError::connection_failed(format!("connecting to {}", target.authority), e)
            })?;
        let _ = tcp.set_nodelay(true);
        let peer_addr = tcp.peer_addr().ok();
        let (stream, version) = if target.tls {
            let stream =
                transport_core::tls::connect(&inner.tls()?, target.bare_host(), tcp).await?;
            let h2 = stream.alpn_protocol() == Some(b"h2");
            (stream, if h2 { Version::Http2 } else { Version::Http1 })
        } else if inner.config.http2_prior_knowledge {
            (ClientStream::Plain(tcp), Version::Http2)
        } else {
            (ClientStream::Plain(tcp), Version::Http1)
        };
        let io = TokioIo::new(stream);
        let (send, driver) = match version {
            Version::Http1 => {
                let (send, conn) = http1::Builder::new()
                    .handshake(io)
                    .await
                    .map_err(|e| handshake_failed(&e))?;
                let driver = if drive == Drive::InlineHttp1 {
                    Driver::Inline(Box::pin(conn))
                } else {
                    Driver::Task {
                        _abort: AbortOnDrop(tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                debug!(error = %e, "HTTP/1.1 connection ended");
                            }
                        })),
                    }
                };
                (SendHalf::Http1(send), driver)
            }
            Version::Http2 => {
                let (send, conn) = http2::Builder::new(TokioExecutor::new())
                    .handshake(io)
                    .await
                    .map_err(|e| handshake_failed(&e))?;
                let task = tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        debug!(error = %e, "HTTP/2 connection ended");
                    }
                });
                (
                    SendHalf::Http2(send),
                    Driver::Task {
                        _abort: AbortOnDrop(task),
                    },
                )
            }
        };
        Ok(Self {
            send,
            peer_addr,
            origin: target.clone(),
            driver,
        })
    }
}

/// A request to `target` for a connection speaking `version`: origin-form with `Host` on
/// HTTP/1.1, absolute on HTTP/2. The `custom` headers replace `defaults` of the same name;
/// `fixed` ones replace both.
pub(crate) fn request(
    version: Version,
    method: Method,
    target: &Target,
    headers: Headers<'_>,
    body: Bytes,
) -> Request<Body> {
    let uri = match version {
        Version::Http1 => target.origin_form(),
        Version::Http2 => target.uri(),
    };
    let is_post = method == Method::POST;
    let length = body.len();
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let map = request.headers_mut();
    if version == Version::Http1
        && let Ok(host) = HeaderValue::from_str(target.authority.as_str())
    {
        map.insert(HOST, host);
    }
    for (name, value) in headers.custom {
        if name != HOST {
            map.append(name, value.clone());
        }
    }
    for (name, value) in headers.defaults {
        if !map.contains_key(name) {
            map.insert(name, value.clone());
        }
    }
    for (name, value) in headers.fixed {
        map.insert(name, value.clone());
    }
    if is_post {
        map.insert(CONTENT_LENGTH, HeaderValue::from(length));
        if !map.contains_key(CONTENT_TYPE) {
            map.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
    }
    request
}

/// The headers of one request, by precedence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Headers<'a> {
    /// The application's (`TransportConfig::headers`).
    pub(crate) custom: &'a HeaderMap,
    /// Added unless the application set the same name.
    pub(crate) defaults: &'a [(HeaderName, HeaderValue)],
    /// Always as given.
    pub(crate) fixed: &'a [(HeaderName, HeaderValue)],
}

fn handshake_failed(e: &hyper::Error) -> TransportError {
    TransportError::ConnectionFailed {
        reason: format!("HTTP handshake: {e}"),
        source: None,
    }
}
