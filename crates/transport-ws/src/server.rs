//! The WebSocket server: accept on a `TcpListener` (plain or TLS) with [`WsServer`], or upgrade
//! requests inside an existing hyper service with [`upgrade`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, warn};
use transport_core::driver::{self, DriverIo, RunOutcome};
use transport_core::metrics::{self, ConnectionGauge, ServerMetrics, reason};
use transport_core::{Connection, ConnectionInfo, IpLimiter, IpPermit, RefusalLog, TransportError};

use crate::WsServerConfig;
use crate::client::TRANSPORT;
use crate::link::{self, Link, LinkOptions};
use crate::raw::RawLink;
use crate::read_buf::AdaptiveRead;

/// What the application learns about an accepted connection's handshake request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WsRequest {
    /// Request path, e.g. `/chat`.
    pub path: String,
    /// Query string without `?`, if any.
    pub query: Option<String>,
    /// All request headers (Origin, Authorization, cookies, ...).
    pub headers: HeaderMap,
    /// The client's address.
    pub peer_addr: Option<SocketAddr>,
    /// The negotiated subprotocol.
    pub subprotocol: Option<String>,
}

/// Checks a handshake request against the server's rules. Returns the chosen subprotocol, or
/// the refusal's status and its `reason` metric label.
fn check_request(
    request: &Request,
    config: &WsServerConfig,
) -> Result<Option<String>, (StatusCode, &'static str)> {
    config.policy.check_with_reason(request)?;
    let offered: Vec<&str> = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    Ok(config
        .subprotocols
        .iter()
        .find(|p| offered.contains(&p.as_str()))
        .cloned())
}

fn request_info(
    request: &Request,
    peer_addr: Option<SocketAddr>,
    subprotocol: Option<String>,
) -> WsRequest {
    WsRequest {
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        headers: request.headers().clone(),
        peer_addr,
        subprotocol,
    }
}

/// The connection of an upgraded socket and the future that drives its link (not started);
/// `guard` lives as long as the connection.
fn start_link<S, G>(
    ws: WebSocketStream<S>,
    config: &WsServerConfig,
    info: ConnectionInfo,
    shutdown: Option<CancellationToken>,
    guard: G,
    metrics: &ServerMetrics,
) -> (Connection, impl Future<Output = ()> + Send + 'static)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    G: Send + 'static,
{
    let options = LinkOptions::new(&config.transport, shutdown);
    let span = tracing::debug_span!("ws", transport = TRANSPORT, peer = ?info.peer_addr);
    let (gauge, messages) = metrics.accepted();
    let (connection, accepted) = driver::accept(&config.transport, info, messages);
    let serve = accepted.serve(move |mut io: DriverIo| {
        async move {
            let outcome: RunOutcome = link::run(ws, &mut io, options).await;
            drop(guard);
            drop(gauge);
            (outcome, io)
        }
        .instrument(span)
    });
    (connection, serve)
}

/// A WebSocket server on a TCP listener, plain or TLS.
///
/// Connections are accepted in the background (TLS and HTTP handshakes run concurrently, each
/// under `handshake_timeout`) and handed out by [`accept`](Self::accept). Dropping the server or
/// calling [`shutdown`](Self::shutdown) stops accepting and closes every connection with 1001.
#[derive(Debug)]
pub struct WsServer {
    local_addr: SocketAddr,
    tls: bool,
    incoming: mpsc::Receiver<(Connection, WsRequest)>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    open: Arc<AtomicUsize>,
    close_timeout: Duration,
}

impl WsServer {
    /// Binds a plain (`ws://`) server.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`], or [`TransportError::ConnectionFailed`] when binding
    /// fails.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        config: WsServerConfig,
    ) -> Result<Self, TransportError> {
        let listener = bind(addr, config.listen_backlog).await?;
        Self::from_listener(listener, config, None)
    }

    /// Binds a TLS (`wss://`) server with a rustls configuration (see
    /// [`transport_core::tls::server_config`]).
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub async fn bind_tls(
        addr: impl ToSocketAddrs,
        config: WsServerConfig,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<Self, TransportError> {
        let listener = bind(addr, config.listen_backlog).await?;
        Self::from_listener(listener, config, Some(tls))
    }

    /// Serves on an existing listener; TLS when `tls` is given.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`], or [`TransportError::ConnectionFailed`] when the
    /// listener has no local address.
    pub fn from_listener(
        listener: TcpListener,
        config: WsServerConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Self, TransportError> {
        config.validate()?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| TransportError::connection_failed("listener address", e))?;
        let (tx, incoming) = mpsc::channel(config.accept_backlog);
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let open = Arc::new(AtomicUsize::new(0));
        let close_timeout = config.transport.close_timeout;
        let acceptor = Acceptor {
            tls: tls.map(TlsAcceptor::from),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            open: open.clone(),
            tx,
            ip_limiter: IpLimiter::new(config.ip_limits.clone()),
            refusals: RefusalLog::default(),
            metrics: ServerMetrics::new(TRANSPORT),
            config: Arc::new(config),
        };
        let is_tls = acceptor.tls.is_some();
        tracker.spawn(
            acceptor
                .run(listener)
                .instrument(tracing::debug_span!("ws-server", %local_addr)),
        );
        Ok(Self {
            local_addr,
            tls: is_tls,
            incoming,
            shutdown,
            tracker,
            open,
            close_timeout,
        })
    }

    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `ws://ADDR` or `wss://ADDR`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "wss" } else { "ws" },
            self.local_addr
        )
    }

    /// Connections open now (including handshakes in progress).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The next accepted connection and its handshake request; `None` after shutdown.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept(&mut self) -> Option<(Connection, WsRequest)> {
        self.incoming.recv().await
    }

    /// Stops accepting, closes every open connection with 1001 ("going away"), and waits until
    /// they are closed, at most the close timeout plus one second.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.incoming.close();
        // Connections accepted but never taken by the application close too.
        while self.incoming.try_recv().is_ok() {}
        self.tracker.close();
        let limit = self.close_timeout + Duration::from_secs(1);
        if tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                open = self.open_connections(),
                "shutdown: connections still open after {limit:?}"
            );
        }
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn bind(addr: impl ToSocketAddrs, backlog: u32) -> Result<TcpListener, TransportError> {
    transport_core::bind_listener(addr, backlog.max(1))
        .await
        .map_err(|e| TransportError::connection_failed("binding the listener", e))
}

/// Counts an open connection until dropped.
struct OpenGuard {
    open: Arc<AtomicUsize>,
    _permit: OwnedSemaphorePermit,
    _ip: IpPermit,
}

/// A handshake that did not produce a connection: why (the `reason` metric label) and the
/// error.
struct Rejected {
    reason: &'static str,
    error: TransportError,
}

impl Rejected {
    fn new(reason: &'static str) -> impl FnOnce(TransportError) -> Self {
        move |error| Self { reason, error }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Acceptor {
    config: Arc<WsServerConfig>,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    open: Arc<AtomicUsize>,
    tx: mpsc::Sender<(Connection, WsRequest)>,
    ip_limiter: IpLimiter,
    refusals: RefusalLog,
    metrics: ServerMetrics,
}

/// A finished handshake: the connection for `accept()` and the future that drives its link,
/// which the handshake's task runs next (no task of its own).
struct Upgraded {
    connection: Connection,
    request: WsRequest,
    link: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Acceptor {
    async fn run(self, listener: TcpListener) {
        let limit = Arc::new(Semaphore::new(self.config.max_connections));
        let this = Arc::new(self);
        loop {
            let accepted = tokio::select! {
                () = this.shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let ip_permit = match this.ip_limiter.admit(peer.ip()) {
                Ok(permit) => permit,
                Err(refusal) => {
                    metrics::handshake_rejected(TRANSPORT, refusal.reason());
                    this.refusals.refused(TRANSPORT, peer.ip(), refusal);
                    this.tracker
                        .spawn(refuse(tcp, StatusCode::TOO_MANY_REQUESTS));
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                debug!(%peer, "refusing connection: max_connections reached");
                metrics::handshake_rejected(TRANSPORT, reason::LIMIT);
                this.tracker
                    .spawn(refuse(tcp, StatusCode::SERVICE_UNAVAILABLE));
                continue;
            };
            this.open.fetch_add(1, Ordering::Relaxed);
            let guard = OpenGuard {
                open: this.open.clone(),
                _permit: permit,
                _ip: ip_permit,
            };
            let this2 = this.clone();
            this.tracker.spawn(async move {
                let deadline = Instant::now() + this2.config.handshake_timeout;
                // Boxed: the TLS and WebSocket handshakes' state is ~11 KB, and a task's
                // future is copied whole when spawned and again when it completes.
                let shake = Box::pin(this2.handshake(tcp, peer, guard));
                let upgraded = tokio::select! {
                    () = this2.shutdown.cancelled() => return,
                    result = tokio::time::timeout_at(deadline, shake) => match result {
                        Ok(Ok(upgraded)) => upgraded,
                        Ok(Err(Rejected { reason, error })) => {
                            metrics::handshake_rejected(TRANSPORT, reason);
                            debug!(%peer, error = %error, reason, "handshake failed");
                            return;
                        }
                        Err(_) => {
                            metrics::handshake_rejected(TRANSPORT, reason::TIMEOUT);
                            let after = this2.config.handshake_timeout;
                            debug!(%peer, "handshake timed out after {after:?}");
                            return;
                        }
                    },
                };
                this2.serve(upgraded, deadline).await;
            });
        }
    }

    /// Hands the connection to `accept()` and drives its link in this task until it ends.
    /// While the application's accept backlog is full the link runs meanwhile (answering
    /// pings, reading into the receive queue), and the wait ends at the handshake deadline.
    async fn serve(&self, upgraded: Upgraded, deadline: Instant) {
        let Upgraded {
            connection,
            request,
            link,
        } = upgraded;
        let handed = match self.tx.try_send((connection, request)) {
            Ok(()) => return link.await,
            Err(mpsc::error::TrySendError::Full(item)) => item,
            // Shutting down: the connection, dropped here, closes its link.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                metrics::handshake_rejected(TRANSPORT, reason::SHUTDOWN);
                return link.await;
            }
        };
        let wait = async {
            match tokio::time::timeout_at(deadline, self.tx.send(handed)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => metrics::handshake_rejected(TRANSPORT, reason::SHUTDOWN),
                Err(_) => {
                    metrics::handshake_rejected(TRANSPORT, reason::TIMEOUT);
                    debug!("accept backlog full until the handshake deadline");
                }
            }
        };
        tokio::join!(link, wait);
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        guard: OpenGuard,
    ) -> Result<Upgraded, Rejected> {
        match &self.tls {
            Some(acceptor) => {
                let tls = acceptor
                    .accept(tcp)
                    .await
                    .map_err(|e| TransportError::tls(e.to_string()))
                    .map_err(Rejected::new(reason::TLS))?;
                self.upgrade(tls, peer, guard).await
            }
            None => self.upgrade(tcp, peer, guard).await,
        }
    }

    async fn upgrade<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        guard: OpenGuard,
    ) -> Result<Upgraded, Rejected>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let config = &self.config;
        let mut seen: Option<WsRequest> = None;
        let mut refused: Option<&'static str> = None;
        // The error type is tungstenite's; its size is not ours to choose.
        #[allow(clippy::result_large_err)]
        let callback =
            |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
                match check_request(request, config) {
                    Ok(subprotocol) => {
                        if let Some(p) = &subprotocol
                            && let Ok(v) = HeaderValue::from_str(p)
                        {
                            response
                                .headers_mut()
                                .insert(header::SEC_WEBSOCKET_PROTOCOL, v);
                        }
                        seen = Some(request_info(request, Some(peer), subprotocol));
                        Ok(response)
                    }
                    Err((status, why)) => {
                        refused = Some(why);
                        let mut refusal = ErrorResponse::new(None);
                        *refusal.status_mut() = status;
                        Err(refusal)
                    }
                }
            };
        let ws = tokio_tungstenite::accept_hdr_async_with_config(
            AdaptiveRead::new(stream),
            callback,
            Some(config.tungstenite()),
        )
        .await
        .map_err(|e| {
            let error = crate::error::handshake_error(e);
            let reason = refused.unwrap_or(match error {
                TransportError::ProtocolViolation { .. }
                | TransportError::HandshakeRejected { .. } => reason::BAD_REQUEST,
                _ => reason::FAILED,
            });
            Rejected { reason, error }
        })?;
        let request = seen
            .ok_or_else(|| TransportError::protocol("handshake finished without a request"))
            .map_err(Rejected::new(reason::BAD_REQUEST))?;
        let info = ConnectionInfo::new(TRANSPORT)
            .with_peer_addr(Some(peer))
            .with_subprotocol(request.subprotocol.clone());
        let (connection, link) = start_link(
            ws,
            config,
            info,
            Some(self.shutdown.child_token()),
            guard,
            &self.metrics,
        );
        Ok(Upgraded {
            connection,
            request,
            link: Box::pin(link),
        })
    }
}

/// Answers a refused TCP connection with a bare HTTP status, briefly.
async fn refuse(mut tcp: TcpStream, status: StatusCode) {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(head.as_bytes())).await;
}

/// An upgrade answered with 101 whose connection is not running yet: await
/// [`finish`](Self::finish) after the response has been returned to hyper.
#[derive(Debug)]
pub struct PendingUpgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
    config: Arc<WsServerConfig>,
    request: WsRequest,
}

impl PendingUpgrade {
    /// The handshake request.
    pub fn request(&self) -> &WsRequest {
        &self.request
    }

    /// Waits for hyper to hand over the upgraded socket and starts the connection.
    ///
    /// # Errors
    /// [`TransportError::ConnectionFailed`] when the upgrade did not happen (the client went
    /// away, or the service was not served `with_upgrades()`).
    pub async fn finish(mut self) -> Result<(Connection, WsRequest), TransportError> {
        let (ws, info) = self.socket().await?;
        let metrics = ServerMetrics::new(TRANSPORT);
        let (connection, link) = start_link(ws, &self.config, info, None, (), &metrics);
        tokio::spawn(link);
        Ok((connection, self.request))
    }

    /// As [`finish`](Self::finish), but the link is not given a driver task: its owner runs it
    /// (see [`RawLink`]), e.g. the adaptive transport's session layer.
    ///
    /// # Errors
    /// As [`finish`](Self::finish).
    #[doc(hidden)]
    pub async fn finish_raw(mut self) -> Result<(RawLink, WsRequest), TransportError> {
        let (ws, info) = self.socket().await?;
        metrics::handshake_accepted(TRANSPORT);
        let link = Link::new(ws, LinkOptions::new(&self.config.transport, None));
        let raw = RawLink::server(link, ConnectionGauge::new(TRANSPORT), info);
        Ok((raw, self.request))
    }

    /// The upgraded socket as a server WebSocket, and the facts about it.
    async fn socket(
        &mut self,
    ) -> Result<
        (
            WebSocketStream<AdaptiveRead<TokioIo<hyper::upgrade::Upgraded>>>,
            ConnectionInfo,
        ),
        TransportError,
    > {
        let upgraded =
            (&mut self.on_upgrade)
                .await
                .map_err(|e| TransportError::ConnectionFailed {
                    reason: format!("HTTP upgrade failed: {e}"),
                    source: None,
                })?;
        let ws = WebSocketStream::from_raw_socket(
            AdaptiveRead::new(TokioIo::new(upgraded)),
            Role::Server,
            Some(self.config.tungstenite()),
        )
        .await;
        let info = ConnectionInfo::new(TRANSPORT)
            .with_peer_addr(self.request.peer_addr)
            .with_subprotocol(self.request.subprotocol.clone());
        Ok((ws, info))
    }
}

/// Whether a request asks for a WebSocket upgrade (`Upgrade: websocket`).
pub fn is_upgrade_request<B>(request: &http::Request<B>) -> bool {
    header_has_token(request.headers(), header::UPGRADE, "websocket")
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The response [`upgrade`] produces: `101` on success, an error status otherwise.
pub type UpgradeResponse = http::Response<Empty<Bytes>>;

fn status_response(status: StatusCode) -> UpgradeResponse {
    let mut response = http::Response::new(Empty::new());
    *response.status_mut() = status;
    if status == StatusCode::UPGRADE_REQUIRED {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
    }
    response
}

/// Upgrades a request received by a hyper HTTP/1.1 service (served `with_upgrades()`) to a
/// WebSocket connection, applying the same checks as [`WsServer`] (origin allow-list,
/// `authorize`, subprotocol choice).
///
/// Returns the `101 Switching Protocols` response to send and a [`PendingUpgrade`] to finish
/// once hyper has sent it (typically in a spawned task). When the request is not an acceptable
/// WebSocket handshake, `Err` holds the response to send instead (400, 403, 426, ...).
pub fn upgrade<B>(
    request: &mut http::Request<B>,
    config: Arc<WsServerConfig>,
    peer_addr: Option<SocketAddr>,
) -> Result<(UpgradeResponse, PendingUpgrade), UpgradeResponse> {
    upgrade_inner(request, config, peer_addr).map_err(|(status, why)| {
        metrics::handshake_rejected(TRANSPORT, why);
        status_response(status)
    })
}

fn upgrade_inner<B>(
    request: &mut http::Request<B>,
    config: Arc<WsServerConfig>,
    peer_addr: Option<SocketAddr>,
) -> Result<(UpgradeResponse, PendingUpgrade), (StatusCode, &'static str)> {
    let bad = |status| (status, reason::BAD_REQUEST);
    let headers = request.headers();
    if request.method() != http::Method::GET
        || !is_upgrade_request(request)
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(bad(StatusCode::BAD_REQUEST));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(bad(StatusCode::UPGRADE_REQUIRED));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(bad(StatusCode::BAD_REQUEST));
    };
    let accept = derive_accept_key(key.as_bytes());
    let head = transport_core::request_head(request);
    let subprotocol = check_request(&head, &config)?;
    let info = request_info(&head, peer_addr, subprotocol.clone());

    let mut response = status_response(StatusCode::SWITCHING_PROTOCOLS);
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = subprotocol
        && let Ok(v) = HeaderValue::from_str(&p)
    {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    let pending = PendingUpgrade {
        on_upgrade: hyper::upgrade::on(request),
        config,
        request: info,
    };
    Ok((response, pending))
}
