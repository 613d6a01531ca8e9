//! The SSE server: an endpoint to mount in any hyper service ([`SseEndpoint`]) and a standalone
//! server around it ([`SseServer`]). Each stream is a session with a token and a send URL
//! (`docs/protocols/sse.md`); the application gets one [`Connection`] per session, which
//! survives reconnects of the stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Incoming};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, warn};
use transport_core::driver;
use transport_core::metrics::{self, ConnectionGauge, reason};
use transport_core::{
    AcceptPolicy, Connection, ConnectionInfo, IpLimiter, IpLimits, Message, RefusalLog,
    TransportConfig, TransportError,
};

use crate::protocol;

mod session;

pub use self::session::EventStream;
use self::session::{EventSender, Session, SessionEvent};

const TRANSPORT: &str = "sse";

/// SSE server settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SseServerConfig {
    /// Per-session settings: `max_message_size` (POST bodies), `send_buffer` and `recv_buffer`
    /// (queues to and from the application), `keepalive_interval` (comment keepalives),
    /// `dead_peer_timeout` (how long a stream may stay blocked by a client that does not read
    /// before it is dropped), `close_timeout`.
    pub transport: TransportConfig,
    /// Path of the event stream. Default: `/events`; send URLs are `{path}/send/{token}`.
    pub path: String,
    /// Which stream requests are accepted: origin allow-list and application check.
    /// Default: all.
    pub policy: AcceptPolicy,
    /// Most sessions at once; more streams are refused with 503. Default: 10,000.
    pub max_sessions: usize,
    /// How long a session waits for its client to reconnect after the stream drops.
    /// Default: 30 s.
    pub session_grace: Duration,
    /// Events kept per session for `Last-Event-ID` replay. Default: 256.
    pub replay_buffer: usize,
    /// Bytes kept per session for replay; the oldest events go first. Default: 1 MiB.
    pub replay_buffer_bytes: usize,
    /// Reconnection delay announced with `retry:` in the first event. Default: 1 s.
    pub retry: Option<Duration>,
    /// How long a POST waits for the application to take its messages before 503.
    /// Default: 10 s.
    pub send_timeout: Duration,
    /// Most missed events replayed to a resuming stream; a client that missed more starts a
    /// new session. Default: 64. (Live events are not queued per stream: the response body
    /// takes them from the session's send queue, `transport.send_buffer`, as the client
    /// reads.)
    pub stream_queue: usize,
    /// Sessions accepted but not yet taken by `accept()`. Default: 128.
    pub accept_backlog: usize,
    /// Listen backlog of the TCP listener: completed TCP handshakes the kernel queues until
    /// they are accepted (capped by `net.core.somaxconn`). Default:
    /// [`DEFAULT_LISTEN_BACKLOG`](transport_core::DEFAULT_LISTEN_BACKLOG) (1024), not the 128 of
    /// `std`, which a burst of connects overflows (the clients beyond it retry after 1 s).
    pub listen_backlog: u32,
    /// Deadline for a client to send its request headers (slowloris). Default: 10 s.
    pub header_read_timeout: Duration,
    /// Per-remote-IP limits of [`SseServer`] on its TCP connections (streams and POSTs alike):
    /// concurrent connections and connection rate per address; refusals are answered with
    /// HTTP 429. An [`SseEndpoint`] mounted in another server leaves this to that server.
    /// Default: [`IpLimits::default`] (1024 connections, 100 connections/s with bursts of 200).
    pub ip_limits: IpLimits,
}

impl Default for SseServerConfig {
    fn default() -> Self {
        let mut transport = TransportConfig::default();
        transport.keepalive_interval = Some(Duration::from_secs(15));
        Self {
            transport,
            path: "/events".into(),
            policy: AcceptPolicy::default(),
            max_sessions: 10_000,
            session_grace: Duration::from_secs(30),
            replay_buffer: 256,
            replay_buffer_bytes: 1 << 20,
            retry: Some(Duration::from_secs(1)),
            send_timeout: Duration::from_secs(10),
            stream_queue: 64,
            accept_backlog: 128,
            listen_backlog: transport_core::DEFAULT_LISTEN_BACKLOG,
            header_read_timeout: Duration::from_secs(10),
            ip_limits: IpLimits::default(),
        }
    }
}

impl SseServerConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> Result<(), TransportError> {
        self.transport.validate()?;
        if !self.path.starts_with('/') {
            return Err(TransportError::InvalidConfig(
                "path must start with '/'".into(),
            ));
        }
        if self.max_sessions == 0
            || self.replay_buffer == 0
            || self.stream_queue == 0
            || self.accept_backlog == 0
            || self.listen_backlog == 0
        {
            return Err(TransportError::InvalidConfig(
                "max_sessions, replay_buffer, stream_queue, accept_backlog and listen_backlog must be at least 1"
                    .into(),
            ));
        }
        self.ip_limits.validate()
    }

    fn send_prefix(&self) -> String {
        format!("{}/send/", self.path.trim_end_matches('/'))
    }
}

/// What the application learns about a session's first stream request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SseRequest {
    /// Request path.
    pub path: String,
    /// Query string without `?`, if any.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The client's address, when the embedding server passed it.
    pub peer_addr: Option<SocketAddr>,
    /// The session token.
    pub session: String,
}

/// The body of an SSE response: the event stream, or a short fixed body.
pub type SseBody = Either<EventStream, Full<Bytes>>;

fn plain(status: StatusCode, text: &'static str) -> Response<SseBody> {
    let mut r = Response::new(Either::Right(Full::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

struct Shared {
    config: SseServerConfig,
    send_prefix: String,
    sessions: Mutex<HashMap<String, EventSender>>,
    incoming: mpsc::Sender<(Connection, SseRequest)>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Shared {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, EventSender>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An SSE endpoint to mount in a hyper service: hand it every request with
/// [`handle`](Self::handle); it answers the stream path and its send URLs and returns `None`
/// for anything else. Sessions come out of the paired [`SseIncoming`].
#[derive(Clone)]
pub struct SseEndpoint {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SseEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseEndpoint")
            .field("path", &self.shared.config.path)
            .finish_non_exhaustive()
    }
}

/// The sessions an [`SseEndpoint`] accepts.
#[derive(Debug)]
pub struct SseIncoming {
    rx: mpsc::Receiver<(Connection, SseRequest)>,
}

impl SseIncoming {
    /// The next session and its first request; `None` when the endpoint is gone.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept(&mut self) -> Option<(Connection, SseRequest)> {
        self.rx.recv().await
    }
}

impl SseEndpoint {
    /// An endpoint and the receiver of its sessions.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`].
    pub fn new(config: SseServerConfig) -> Result<(Self, SseIncoming), TransportError> {
        config.validate()?;
        let (tx, rx) = mpsc::channel(config.accept_backlog);
        let shared = Arc::new(Shared {
            send_prefix: config.send_prefix(),
            config,
            sessions: Mutex::new(HashMap::new()),
            incoming: tx,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        Ok((Self { shared }, SseIncoming { rx }))
    }

    /// Sessions alive now (attached or in their grace period).
    pub fn session_count(&self) -> usize {
        self.shared.sessions().len()
    }

    /// Closes every session with 1001 and waits until they are gone, at most the close timeout
    /// plus one second.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        self.shared.tracker.close();
        let limit = self.shared.config.transport.close_timeout + Duration::from_secs(1);
        if tokio::time::timeout(limit, self.shared.tracker.wait())
            .await
            .is_err()
        {
            warn!("SSE shutdown: sessions still open after {limit:?}");
        }
    }

    /// Answers `request` if it is for this endpoint (the stream or a send URL); `None`
    /// otherwise, so the caller can route it elsewhere.
    pub async fn handle<B>(
        &self,
        request: Request<B>,
        peer_addr: Option<SocketAddr>,
    ) -> Option<Response<SseBody>>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path();
        if path == self.shared.config.path {
            return Some(if request.method() == Method::GET {
                self.open_stream(&request, peer_addr).await
            } else {
                plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use GET for the event stream\n",
                )
            });
        }
        let token = path.strip_prefix(&self.shared.send_prefix)?.to_owned();
        Some(if request.method() == Method::POST {
            self.receive_post(&token, request).await
        } else {
            plain(StatusCode::METHOD_NOT_ALLOWED, "use POST to send\n")
        })
    }

    async fn open_stream<B>(
        &self,
        request: &Request<B>,
        peer_addr: Option<SocketAddr>,
    ) -> Response<SseBody> {
        if self.shared.shutdown.is_cancelled() {
            metrics::handshake_rejected(TRANSPORT, reason::SHUTDOWN);
            return plain(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
        }
        let head = transport_core::request_head(request);
        if let Err((status, why)) = self.shared.config.policy.check_with_reason(&head) {
            metrics::handshake_rejected(TRANSPORT, why);
            return plain(status, "refused\n");
        }
        // Resume: Last-Event-ID "<token>.<seq>" of a live session.
        let resume = head
            .headers()
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|id| id.rsplit_once('.'))
            .and_then(|(token, seq)| Some((token.to_owned(), seq.parse::<u64>().ok()?)));
        let resumed = match resume {
            Some((token, after)) => self
                .try_resume(&token, after)
                .await
                .map(|stream| (token, stream)),
            None => None,
        };
        let (token, stream) = match resumed {
            Some(resumed) => resumed,
            None => match self.new_session(&head, peer_addr) {
                Ok(created) => {
                    metrics::handshake_accepted(TRANSPORT);
                    created
                }
                Err((status, why)) => {
                    metrics::handshake_rejected(TRANSPORT, why);
                    return plain(status, "no session available\n");
                }
            },
        };
        let mut response = Response::new(Either::Left(stream));
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        if let Ok(v) = HeaderValue::from_str(&token) {
            h.insert(protocol::HEADER_SESSION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("{}{token}", self.shared.send_prefix)) {
            h.insert(protocol::HEADER_SEND, v);
        }
        response
    }

    async fn try_resume(&self, token: &str, after: u64) -> Option<EventStream> {
        let events = self.shared.sessions().get(token).cloned()?;
        let (accepted, answer) = oneshot::channel();
        events
            .send(Box::new(SessionEvent::Attach { after, accepted }))
            .await
            .ok()?;
        answer.await.ok().flatten()
    }

    fn new_session(
        &self,
        head: &Request<()>,
        peer_addr: Option<SocketAddr>,
    ) -> Result<(String, EventStream), (StatusCode, &'static str)> {
        let shared = &self.shared;
        let token =
            new_token().map_err(|()| (StatusCode::INTERNAL_SERVER_ERROR, reason::FAILED))?;
        let (events_tx, events_rx) = session::event_channel();
        {
            let mut sessions = shared.sessions();
            if sessions.len() >= shared.config.max_sessions {
                return Err((StatusCode::SERVICE_UNAVAILABLE, reason::LIMIT));
            }
            sessions.insert(token.clone(), events_tx);
        }
        let send_path = format!("{}{token}", shared.send_prefix);
        let mut first = BytesMut::new();
        if let Some(retry) = shared.config.retry {
            first.extend_from_slice(format!("retry: {}\n", retry.as_millis()).as_bytes());
        }
        protocol::write_event(
            &mut first,
            Some(&format!("{token}.0")),
            Some(protocol::EVENT_SESSION),
            &protocol::session_json(&token, &send_path),
        );
        let info = ConnectionInfo::new(TRANSPORT).with_peer_addr(peer_addr);
        let request = SseRequest {
            path: head.uri().path().to_owned(),
            query: head.uri().query().map(str::to_owned),
            headers: head.headers().clone(),
            peer_addr,
            session: token.clone(),
        };
        let (session, stream) =
            Session::new(token.clone(), shared.clone(), events_rx, first.freeze());
        let tracker_token = shared.tracker.token();
        let span =
            tracing::debug_span!("sse", transport = TRANSPORT, session = %token, peer = ?peer_addr);
        let gauge = ConnectionGauge::new(TRANSPORT);
        let connection = driver::spawn_accepted(&shared.config.transport, info, move |io| {
            // `run` takes `io` before its future is built, and `map` holds that future once (an
            // `async` block awaiting it would keep it twice: captured, and being awaited).
            session
                .run(io)
                .map(move |ended| {
                    drop(tracker_token);
                    drop(gauge);
                    ended
                })
                .instrument(span)
        });
        if shared.incoming.try_send((connection, request)).is_err() {
            // The application is not accepting: refuse instead of queueing without bound.
            shared.sessions().remove(&token);
            return Err((StatusCode::SERVICE_UNAVAILABLE, reason::BACKLOG));
        }
        Ok((token, stream))
    }

    async fn receive_post<B>(&self, token: &str, request: Request<B>) -> Response<SseBody>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(events) = self.shared.sessions().get(token).cloned() else {
            metrics::error(TRANSPORT, "unknown_session");
            return plain(StatusCode::NOT_FOUND, "unknown or expired session\n");
        };
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let max = self.shared.config.transport.max_message_size;
        let limit = if media == protocol::CONTENT_BATCH {
            max.saturating_mul(4)
        } else {
            max
        };
        if !matches!(
            media.as_str(),
            "text/plain"
                | protocol::CONTENT_BINARY
                | protocol::CONTENT_BATCH
                | protocol::CONTENT_CLOSE
        ) {
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported content type\n",
            );
        }
        let body = match Limited::new(request.into_body(), limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return plain(StatusCode::PAYLOAD_TOO_LARGE, "message too large\n");
                }
                return plain(StatusCode::BAD_REQUEST, "could not read the body\n");
            }
        };
        let event = match media.as_str() {
            "text/plain" => match Message::text_from_bytes(body) {
                Ok(m) => Ok(vec![m]),
                Err(_) => return plain(StatusCode::BAD_REQUEST, "text is not valid UTF-8\n"),
            },
            protocol::CONTENT_BINARY => Ok(vec![Message::binary(body)]),
            protocol::CONTENT_BATCH => match protocol::decode_batch(body, max) {
                Ok(messages) => Ok(messages),
                Err(TransportError::MessageTooLarge { .. }) => {
                    return plain(StatusCode::PAYLOAD_TOO_LARGE, "message too large\n");
                }
                Err(_) => return plain(StatusCode::BAD_REQUEST, "malformed batch\n"),
            },
            _ => match protocol::parse_close_json(&body) {
                Ok(frame) => Err(frame),
                Err(_) => return plain(StatusCode::BAD_REQUEST, "malformed close body\n"),
            },
        };
        let (done_tx, done_rx) = oneshot::channel();
        let msg = match event {
            Ok(messages) => SessionEvent::Post {
                messages,
                done: done_tx,
            },
            Err(frame) => SessionEvent::Close(frame),
        };
        let is_post = matches!(msg, SessionEvent::Post { .. });
        let deliver = async {
            events.send(Box::new(msg)).await.map_err(|_| ())?;
            if is_post {
                done_rx.await.map_err(|_| ())
            } else {
                Ok(())
            }
        };
        match tokio::time::timeout(self.shared.config.send_timeout, deliver).await {
            Ok(Ok(())) => {
                let mut r = Response::new(Either::Right(Full::new(Bytes::new())));
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            Ok(Err(())) => plain(StatusCode::NOT_FOUND, "session ended\n"),
            Err(_) => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the application is not reading; retry later\n",
            ),
        }
    }
}

fn new_token() -> Result<String, ()> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|_| ())?;
    Ok(raw.iter().fold(String::with_capacity(32), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    }))
}

/// A standalone SSE server (HTTP/1.1 and HTTP/2, plain or TLS) serving one [`SseEndpoint`];
/// other paths answer 404.
#[derive(Debug)]
pub struct SseServer {
    local_addr: SocketAddr,
    tls: bool,
    endpoint: SseEndpoint,
    incoming: SseIncoming,
    stop: CancellationToken,
    connections: TaskTracker,
}

impl SseServer {
    /// Binds a plain `http://` server.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] or [`TransportError::ConnectionFailed`].
    pub async fn bind(
        addr: impl ToSocketAddrs,
        config: SseServerConfig,
    ) -> Result<Self, TransportError> {
        Self::start(addr, config, None).await
    }

    /// Binds an `https://` server (ALPN `h2`, `http/1.1`).
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub async fn bind_tls(
        addr: impl ToSocketAddrs,
        config: SseServerConfig,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<Self, TransportError> {
        Self::start(addr, config, Some(tls)).await
    }

    async fn start(
        addr: impl ToSocketAddrs,
        config: SseServerConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Self, TransportError> {
        let header_timeout = config.header_read_timeout;
        let listen_backlog = config.listen_backlog.max(1);
        let ip_limiter = IpLimiter::new(config.ip_limits.clone());
        let (endpoint, incoming) = SseEndpoint::new(config)?;
        let listener = transport_core::bind_listener(addr, listen_backlog)
            .await
            .map_err(|e| TransportError::connection_failed("binding the listener", e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| TransportError::connection_failed("listener address", e))?;
        let stop = CancellationToken::new();
        let connections = TaskTracker::new();
        let acceptor = tls.map(|mut cfg| {
            let c = Arc::make_mut(&mut cfg);
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(cfg)
        });
        let is_tls = acceptor.is_some();
        connections.spawn(accept_loop(
            listener,
            endpoint.clone(),
            AcceptOptions {
                tls: acceptor,
                stop: stop.clone(),
                connections: connections.clone(),
                header_timeout,
                ip_limiter,
            },
        ));
        Ok(Self {
            local_addr,
            tls: is_tls,
            endpoint,
            incoming,
            stop,
            connections,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The stream URL, e.g. `http://127.0.0.1:PORT/events`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            if self.tls { "https" } else { "http" },
            self.local_addr,
            self.endpoint.shared.config.path
        )
    }

    /// The endpoint (for session counts).
    pub fn endpoint(&self) -> &SseEndpoint {
        &self.endpoint
    }

    /// The next session; `None` after shutdown.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept(&mut self) -> Option<(Connection, SseRequest)> {
        self.incoming.accept().await
    }

    /// Stops accepting, closes every session with 1001, waits (bounded) for them.
    pub async fn shutdown(self) {
        self.endpoint.shutdown().await;
        self.stop.cancel();
        self.connections.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.connections.wait()).await;
    }
}

impl Drop for SseServer {
    fn drop(&mut self) {
        self.stop.cancel();
        self.endpoint.shared.shutdown.cancel();
    }
}

struct AcceptOptions {
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
    connections: TaskTracker,
    header_timeout: Duration,
    ip_limiter: IpLimiter,
}

async fn accept_loop(listener: TcpListener, endpoint: SseEndpoint, options: AcceptOptions) {
    let AcceptOptions {
        tls,
        stop,
        connections,
        header_timeout,
        ip_limiter,
    } = options;
    let refusals = RefusalLog::default();
    loop {
        let (tcp, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let ip_permit = match ip_limiter.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                metrics::handshake_rejected(TRANSPORT, refusal.reason());
                refusals.refused(TRANSPORT, peer.ip(), refusal);
                connections.spawn(refuse(tcp));
                continue;
            }
        };
        let endpoint = endpoint.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let _ip_permit = ip_permit;
            serve_connection(tcp, peer, endpoint, tls, stop, header_timeout).await;
        });
    }
}

/// Serves one accepted connection until it ends or the server stops.
///
/// Kept small: this future lives in the task of every idle stream. The TLS branch is boxed, so
/// a plain connection's task holds no room for a TLS stream (rustls' connection state) or the
/// handshake's timeout.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    endpoint: SseEndpoint,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
    header_timeout: Duration,
) {
    // Boxed: hyper keeps room for one request future per connection for as long as the
    // connection lives, and an idle stream's connection should not hold ours (2 KiB).
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let endpoint = endpoint.clone();
        Box::pin(async move {
            Ok::<_, Infallible>(match endpoint.handle(req, Some(peer)).await {
                Some(response) => response,
                None => plain(StatusCode::NOT_FOUND, "not found\n"),
            })
        })
    });
    // Each branch's connection future is boxed: the task holds only the one it runs
    // (an idle stream's task stays small), not room for every variant.
    let serve = async {
        if let Some(acceptor) = tls {
            // Boxed, so that a plain connection's task holds no room for this branch.
            Box::pin(async move {
                let accept = Box::pin(acceptor.accept(tcp));
                let stream = match tokio::time::timeout(header_timeout, accept).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        metrics::handshake_rejected(TRANSPORT, reason::TLS);
                        return debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        metrics::handshake_rejected(TRANSPORT, reason::TIMEOUT);
                        return debug!(%peer, "TLS handshake timed out");
                    }
                };
                let http1 = stream.get_ref().1.alpn_protocol() == Some(b"http/1.1");
                let io = hyper_util::rt::TokioIo::new(stream);
                if http1 {
                    let _ =
                        Box::pin(http1_builder(header_timeout).serve_connection(io, service)).await;
                } else {
                    let _ =
                        Box::pin(auto_builder(header_timeout).serve_connection(io, service)).await;
                }
            })
            .await;
        } else {
            match Box::pin(starts_http1(&tcp, header_timeout)).await {
                Some(true) => {
                    let io = hyper_util::rt::TokioIo::new(tcp);
                    let _ =
                        Box::pin(http1_builder(header_timeout).serve_connection(io, service)).await;
                }
                Some(false) => {
                    let io = hyper_util::rt::TokioIo::new(tcp);
                    let _ =
                        Box::pin(auto_builder(header_timeout).serve_connection(io, service)).await;
                }
                None => debug!(%peer, "no request before the header timeout"),
            }
        }
    };
    tokio::select! {
        () = stop.cancelled() => {}
        () = serve => {}
    }
}

/// The HTTP/1.1 server of a connection known to speak HTTP/1.1.
fn http1_builder(header_timeout: Duration) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
}

/// The server of a connection that may speak HTTP/2 (TLS without ALPN `http/1.1`, or plain
/// TCP starting like the HTTP/2 preface): hyper-util's version detection.
fn auto_builder(
    header_timeout: Duration,
) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
}

/// Whether a plain connection speaks HTTP/1: its first bytes (peeked, not consumed) cannot
/// begin the HTTP/2 connection preface. `Some(false)` when they might (h2c with prior
/// knowledge); `None` when nothing arrived within `timeout` or the connection closed.
///
/// Serving HTTP/1 directly spares hyper-util's version detection, whose rewind of the peeked
/// bytes makes hyper grow each connection's read buffer from 8 to 16 KiB.
async fn starts_http1(tcp: &TcpStream, timeout: Duration) -> Option<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut first = [0u8; PREFACE.len()];
    let n = tokio::time::timeout(timeout, tcp.peek(&mut first))
        .await
        .ok()?
        .ok()?;
    if n == 0 {
        return None;
    }
    Some(!PREFACE.starts_with(&first[..n]))
}

/// Answers a TCP connection refused by the per-IP limits with a bare 429, briefly.
async fn refuse(mut tcp: TcpStream) {
    const HEAD: &[u8] =
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(HEAD)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle stream keeps its connection's future in a task: the TLS branch's state (a
    /// rustls stream, the handshake's timeout) must not take room in it.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (endpoint, _incoming) = SseEndpoint::new(SseServerConfig::default()).unwrap();
        let future = serve_connection(
            accepted.unwrap().0,
            addr,
            endpoint,
            None,
            CancellationToken::new(),
            Duration::from_secs(1),
        );
        let size = std::mem::size_of_val(&future);
        println!("connection future: {size} bytes");
        assert!(size <= 768, "connection future of {size} bytes");
        drop(client);
    }
}
