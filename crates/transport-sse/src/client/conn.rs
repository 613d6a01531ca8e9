//! HTTP connections of the client: TCP, TLS with ALPN, then hyper's HTTP/1.1 or HTTP/2
//! connection API. Each connection's hyper task is aborted when the connection is dropped.

use std::net::SocketAddr;

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

/// One HTTP connection: its request half and its hyper task (aborted on drop). An HTTP/2
/// connection's request half may be cloned to share the connection.
#[derive(Debug)]
pub(crate) struct HttpConn {
    pub(crate) send: SendHalf,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) origin: Target,
    _task: AbortOnDrop,
}

impl HttpConn {
    /// Connects to `target`'s origin: TCP, TLS (ALPN `h2`, `http/1.1`) for `https`, then the
    /// HTTP handshake. Not bounded in time: callers bound it.
    pub(crate) async fn open(inner: &Inner, target: &Target) -> Result<Self, TransportError> {
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
        let (send, task) = match version {
            Version::Http1 => {
                let (send, conn) = http1::Builder::new()
                    .handshake(io)
                    .await
                    .map_err(|e| handshake_failed(&e))?;
                let task = tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        debug!(error = %e, "HTTP/1.1 connection ended");
                    }
                });
                (SendHalf::Http1(send), task)
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
                (SendHalf::Http2(send), task)
            }
        };
        Ok(Self {
            send,
            peer_addr,
            origin: target.clone(),
            _task: AbortOnDrop(task),
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
