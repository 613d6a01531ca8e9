//! The adaptive server: WebSocket, SSE and the negotiation endpoint on one TCP port (hyper),
//! WebTransport on UDP (the same port number), one `accept()` for all of them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use transport_core::{
    AcceptPolicy, Connection, IpLimiter, IpLimits, RefusalLog, TransportConfig, TransportError,
};
use transport_sse::{SseBody, SseEndpoint, SseServerConfig};
use transport_ws::WsServerConfig;
use transport_wt::cert::SelfSignedCert;
use transport_wt::{StreamConfig, WtServer, WtServerConfig};

use crate::config::TransportKind;
use crate::race::AnyLink;
use crate::session::SessionLimits;
use crate::sessions::{self, SessionRequest, SessionSettings, SessionTable};

/// Settings of an [`AdaptiveServer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AdaptiveServerConfig {
    /// Settings of every accepted connection (queues to and from the application, message
    /// limit, close timeout) and of the links under it.
    pub transport: TransportConfig,
    /// Which requests are accepted (origin allow-list, `authorize` hook), applied to all three
    /// transports. Default: all.
    pub policy: AcceptPolicy,
    /// WebSocket settings (its `transport` and `policy` are replaced by the fields above).
    pub ws: WsServerConfig,
    /// SSE settings (`transport`, `policy` and `path` are replaced). Its `session_grace`
    /// defaults to 5 s here: the session layer resumes across links itself.
    pub sse: SseServerConfig,
    /// WebTransport settings (`transport`, `policy` and `ip_limits` replaced).
    pub wt: WtServerConfig,
    /// Per-IP limits, enforced on the TCP listener (every accepted TCP connection, WebSocket,
    /// SSE stream or POST and negotiation alike, holds a slot for its life; one over the limit
    /// is answered 429 and closed) and passed to the WebTransport server on UDP. The
    /// `ip_limits` of `ws` and `sse` are not used (this server accepts TCP itself). Default:
    /// [`IpLimits::default`]; benchmarks and tests that connect from loopback hundreds of
    /// times a second want [`IpLimits::unlimited`].
    pub ip_limits: IpLimits,
    /// Whether to serve WebTransport (needs UDP). Default: `true`.
    pub enable_wt: bool,
    /// The WebTransport certificate; `None` generates a self-signed one (valid 13 days) whose
    /// SHA-256 the negotiation endpoint publishes for pinning.
    pub wt_cert: Option<SelfSignedCert>,
    /// Path of the WebSocket endpoint. Default: `/ws`.
    pub ws_path: String,
    /// Path of the SSE stream (send URLs below it). Default: `/sse`.
    pub sse_path: String,
    /// Path of WebTransport CONNECT requests. Default: `/wt`.
    pub wt_path: String,
    /// Path of the negotiation endpoint. Default: `/transport/negotiate`.
    pub negotiate_path: String,
    /// Most sessions alive at once (attached or detached); more are refused. Default: 10,000.
    pub max_sessions: usize,
    /// How long a session without a link waits for its client before it ends. Default: 30 s.
    pub session_expiry: Duration,
    /// How long a new link may take to send its first message; a link that stays silent is
    /// handed out as a connection without session. Default: 5 s.
    pub hello_timeout: Duration,
    /// Session bounds (replay buffer, acknowledgement pacing).
    pub session: SessionLimits,
    /// Connections accepted and not yet taken by `accept()`. Default: 128.
    pub accept_backlog: usize,
    /// Listen backlog of the TCP listener (WebSocket, SSE, negotiation): completed TCP
    /// handshakes the kernel queues until they are accepted (capped by `net.core.somaxconn`).
    /// The `listen_backlog` of `ws` and `sse` is not used. Default:
    /// [`DEFAULT_LISTEN_BACKLOG`](transport_core::DEFAULT_LISTEN_BACKLOG) (1024).
    pub listen_backlog: u32,
    /// The largest event (and line) the SSE clients' parsers accept: a session frame travels
    /// over SSE as one base64 line, so the application's messages are capped at 3/4 of this
    /// (less the session header) on every transport, since a session may move to SSE at any
    /// time (and 6 bytes of the line are its `data: ` prefix). A larger `send` fails at once with
    /// [`TransportError::MessageTooLarge`], instead of breaking the link on every replay.
    /// Default: 1 MiB, the limit of this crate's client ([`AdaptiveConfig`](crate::AdaptiveConfig)).
    pub sse_client_event_limit: usize,
}

impl Default for AdaptiveServerConfig {
    fn default() -> Self {
        let mut sse = SseServerConfig::default();
        sse.session_grace = Duration::from_secs(5);
        Self {
            transport: TransportConfig::default(),
            policy: AcceptPolicy::default(),
            ws: WsServerConfig::default(),
            sse,
            wt: WtServerConfig::default(),
            ip_limits: IpLimits::default(),
            enable_wt: true,
            wt_cert: None,
            ws_path: "/ws".into(),
            sse_path: "/sse".into(),
            wt_path: "/wt".into(),
            negotiate_path: "/transport/negotiate".into(),
            max_sessions: 10_000,
            session_expiry: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(5),
            session: SessionLimits::default(),
            accept_backlog: 128,
            listen_backlog: transport_core::DEFAULT_LISTEN_BACKLOG,
            sse_client_event_limit: transport_sse::DEFAULT_MAX_EVENT_SIZE,
        }
    }
}

struct Shared {
    ws: Arc<WsServerConfig>,
    ip_limiter: IpLimiter,
    refusals: RefusalLog,
    sse: SseEndpoint,
    ws_path: String,
    sse_path: String,
    negotiate_path: String,
    wt_path: String,
    wt_port: Option<u16>,
    cert_hash: Option<String>,
    settings: Arc<SessionSettings>,
    table: SessionTable,
    incoming: sessions::Incoming,
    stop: CancellationToken,
    /// Cancelled before `stop` by [`AdaptiveServer::shutdown`]: sessions end too.
    end: CancellationToken,
    /// The session tasks started by this server.
    sessions: TaskTracker,
    sever: watch::Sender<u64>,
    tracker: TaskTracker,
}

impl Shared {
    fn handle_link(&self, conn: AnyLink, kind: TransportKind, peer: Option<SocketAddr>) {
        self.tracker.spawn(sessions::handle_link(
            conn,
            kind,
            peer,
            sessions::Hub {
                settings: self.settings.clone(),
                table: self.table.clone(),
                incoming: self.incoming.clone(),
                stop: self.stop.clone(),
                end: self.end.clone(),
                sessions: self.sessions.clone(),
                sever: self.sever.subscribe(),
            },
        ));
    }
}

/// One server for all three transports. Every accepted connection implements
/// [`Transport`](transport_core::Transport) whatever carries it; sessions move between links
/// and transports without the application noticing.
#[derive(Debug)]
pub struct AdaptiveServer {
    local_addr: SocketAddr,
    wt: Option<WtServer>,
    shared: Arc<Shared>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<(Connection, SessionRequest)>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("sessions", &self.table.len())
            .finish_non_exhaustive()
    }
}

impl AdaptiveServer {
    /// Binds TCP on `addr` (port 0 picks one), then UDP for WebTransport on the same port
    /// number (retried a few times on a fresh TCP port when that UDP port is taken).
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`], [`TransportError::ConnectionFailed`] when binding
    /// fails, [`TransportError::Tls`] for a bad certificate.
    pub async fn bind(
        addr: SocketAddr,
        config: AdaptiveServerConfig,
    ) -> Result<Self, TransportError> {
        let table = SessionTable::new(config.max_sessions);
        Self::bind_with_sessions(addr, config, table).await
    }

    /// As [`bind`](Self::bind), with the sessions of `table` (e.g. of a server that was shut
    /// down): clients of those sessions resume them, with every message exactly once.
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub async fn bind_with_sessions(
        addr: SocketAddr,
        mut config: AdaptiveServerConfig,
        table: SessionTable,
    ) -> Result<Self, TransportError> {
        config.ws.transport = config.transport.clone();
        config.ws.policy = config.policy.clone();
        config.ws.validate()?;
        config.sse.transport = config.transport.clone();
        config.sse.transport.keepalive_interval = config
            .sse
            .transport
            .keepalive_interval
            .or(Some(Duration::from_secs(15)));
        config.sse.policy = config.policy.clone();
        config.sse.path.clone_from(&config.sse_path);
        config.ip_limits.validate()?;
        if config.listen_backlog == 0 {
            return Err(TransportError::InvalidConfig(
                "listen_backlog must be at least 1".into(),
            ));
        }
        config.wt.transport = config.transport.clone();
        config.wt.policy = config.policy.clone();
        config.wt.ip_limits(config.ip_limits.clone());
        config.session.validate()?;
        let cert = match (&config.wt_cert, config.enable_wt) {
            (_, false) => None,
            (Some(c), true) => Some(c.clone()),
            (None, true) => Some(transport_wt::cert::generate(&[])?),
        };
        let (tcp, wt) = bind_both(addr, &config, cert.as_ref()).await?;
        let local_addr = tcp
            .local_addr()
            .map_err(|e| TransportError::connection_failed("listener address", e))?;
        let (sse, sse_incoming) = SseEndpoint::new(config.sse.clone())?;
        let (tx, incoming) = mpsc::channel(config.accept_backlog.max(1));
        let shared = Arc::new(Shared {
            ws: Arc::new(config.ws.clone()),
            ip_limiter: IpLimiter::new(config.ip_limits.clone()),
            refusals: RefusalLog::default(),
            sse,
            ws_path: config.ws_path.clone(),
            sse_path: config.sse_path.clone(),
            negotiate_path: config.negotiate_path.clone(),
            wt_path: config.wt_path.clone(),
            wt_port: wt.as_ref().map(|w| w.local_addr().port()),
            cert_hash: cert.as_ref().map(SelfSignedCert::sha256_hex),
            settings: Arc::new(SessionSettings {
                transport: app_transport(&config.transport, config.sse_client_event_limit),
                limits: config.session.clone(),
                hello_timeout: config.hello_timeout,
                expiry: config.session_expiry,
            }),
            table,
            incoming: tx,
            stop: CancellationToken::new(),
            end: CancellationToken::new(),
            sessions: TaskTracker::new(),
            sever: watch::channel(0).0,
            tracker: TaskTracker::new(),
        });
        shared.tracker.spawn(tcp_loop(tcp, shared.clone()));
        shared.tracker.spawn(sse_loop(sse_incoming, shared.clone()));
        let mut server = Self {
            local_addr,
            wt: None,
            shared,
            incoming: tokio::sync::Mutex::new(incoming),
        };
        if let Some(wt) = wt {
            server.wt = Some(wt);
        }
        server.spawn_wt_loop(config.transport);
        Ok(server)
    }

    fn spawn_wt_loop(&mut self, transport: TransportConfig) {
        let Some(mut wt) = self.wt.take() else {
            return;
        };
        let shared = self.shared.clone();
        self.shared.tracker.spawn(async move {
            loop {
                let incoming = tokio::select! {
                    i = wt.accept() => i,
                    () = shared.stop.cancelled() => break,
                };
                let Some(incoming) = incoming else { break };
                let shared2 = shared.clone();
                let transport = transport.clone();
                shared.tracker.spawn(async move {
                    let Ok((session, request)) = incoming.accept().await else {
                        return;
                    };
                    if request.path != shared2.wt_path {
                        debug!(path = %request.path, "WebTransport request for another path");
                    }
                    match session
                        .into_connection(&transport, StreamConfig::default())
                        .await
                    {
                        Ok(conn) => shared2.handle_link(
                            AnyLink::Conn(conn),
                            TransportKind::WebTransport,
                            Some(request.peer_addr),
                        ),
                        Err(e) => debug!(error = %e, "WebTransport session without a stream"),
                    }
                });
            }
            wt.shutdown().await;
        });
    }

    /// The TCP address (WebSocket, SSE, negotiation); WebTransport listens on UDP, same port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://ADDR`, the base URL for [`negotiate`](crate::negotiate).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.local_addr, self.shared.ws_path)
    }

    /// The SSE stream URL.
    pub fn sse_url(&self) -> String {
        format!("http://{}{}", self.local_addr, self.shared.sse_path)
    }

    /// The WebTransport URL, when WebTransport is served.
    pub fn wt_url(&self) -> Option<String> {
        let port = self.shared.wt_port?;
        Some(format!(
            "https://{}{}",
            SocketAddr::new(self.local_addr.ip(), port),
            self.shared.wt_path
        ))
    }

    /// SHA-256 of the WebTransport certificate, hex, for pinning.
    pub fn wt_cert_hash(&self) -> Option<&str> {
        self.shared.cert_hash.as_deref()
    }

    /// The session table (to hand to a server bound later, see
    /// [`bind_with_sessions`](Self::bind_with_sessions)).
    pub fn sessions(&self) -> SessionTable {
        self.shared.table.clone()
    }

    /// The next connection (a new session, or a client without session); `None` after
    /// shutdown. Resumed sessions are not yielded again: the application already holds them.
    ///
    /// Takes `&self`, so a server behind an `Arc` can accept in one task and be shut down
    /// from another; concurrent callers take turns.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept(&self) -> Option<(Connection, SessionRequest)> {
        let mut incoming = self.incoming.lock().await;
        tokio::select! {
            c = incoming.recv() => c,
            () = self.shared.stop.cancelled() => None,
        }
    }

    /// Drops every link that carries a session now, abruptly and without ending the sessions
    /// (a fault drill for tests): clients reconnect and resume, exactly once.
    pub fn sever_links(&self) {
        self.shared.sever.send_modify(|g| *g += 1);
    }

    /// Ends every session and stops listening: each attached client gets the session `CLOSE`
    /// (1001, "server shutting down") and stops reconnecting, its connection ending with
    /// [`TransportError::ClosedByPeer`] with that code and reason; the application's
    /// connections of those sessions (and detached ones) end with the same error. Then every
    /// link is closed (WebSocket and WebTransport with 1001, SSE streams with
    /// `transport.close`), waiting a bounded time.
    ///
    /// To restart the listeners and keep the sessions, use
    /// [`shutdown_for_restart`](Self::shutdown_for_restart) instead.
    pub async fn shutdown(&self) {
        self.shared.end.cancel();
        // The sessions send CLOSE while their links are still up, then end.
        self.shared.sessions.close();
        let limit = self.shared.settings.transport.close_timeout + Duration::from_secs(1);
        if tokio::time::timeout(limit, self.shared.sessions.wait())
            .await
            .is_err()
        {
            warn!("adaptive server shutdown: sessions still running after {limit:?}");
        }
        self.stop().await;
    }

    /// Stops listening and closes every link, like [`shutdown`](Self::shutdown), but keeps
    /// the sessions: they stay in their [`SessionTable`] until they expire, clients keep
    /// reconnecting, and a server bound later with that table
    /// ([`bind_with_sessions`](Self::bind_with_sessions)) resumes them, exactly once. Clients
    /// of a server bound without it get a "session lost" error. Dropping the server without a
    /// shutdown behaves like this too.
    pub async fn shutdown_for_restart(&self) {
        self.stop().await;
    }

    async fn stop(&self) {
        self.shared.stop.cancel();
        self.shared.sse.shutdown().await;
        self.shared.tracker.close();
        let limit = self.shared.settings.transport.close_timeout + Duration::from_secs(1);
        if tokio::time::timeout(limit, self.shared.tracker.wait())
            .await
            .is_err()
        {
            warn!("adaptive server shutdown: tasks still running after {limit:?}");
        }
    }
}

impl Drop for AdaptiveServer {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

/// `data: `, before the base64 of a session frame on its SSE line (the line limit counts it).
const SSE_DATA_PREFIX: usize = 6;

/// The settings of the application's connections: room for the session header inside the
/// smallest message limit of any link a session may use (SSE: the client's event limit, after
/// base64), so that an oversized send fails at once rather than on the link.
fn app_transport(links: &TransportConfig, sse_event_limit: usize) -> TransportConfig {
    let mut t = links.clone();
    t.max_message_size = t
        .max_message_size
        .min(sse_event_limit.saturating_sub(SSE_DATA_PREFIX) / 4 * 3)
        .saturating_sub(crate::session::DATA_OVERHEAD)
        .max(1);
    t
}

async fn bind_both(
    addr: SocketAddr,
    config: &AdaptiveServerConfig,
    cert: Option<&SelfSignedCert>,
) -> Result<(TcpListener, Option<WtServer>), TransportError> {
    let mut last = None;
    // A fixed port is usually a restart: the old UDP socket may take a moment to close.
    let attempts = if addr.port() == 0 { 8 } else { 50 };
    for _ in 0..attempts {
        let tcp = transport_core::bind_listener(addr, config.listen_backlog)
            .await
            .map_err(|e| TransportError::connection_failed("binding the TCP listener", e))?;
        let Some(cert) = cert else {
            return Ok((tcp, None));
        };
        let port = tcp
            .local_addr()
            .map_err(|e| TransportError::connection_failed("listener address", e))?
            .port();
        let udp = SocketAddr::new(addr.ip(), port);
        match WtServer::bind(
            udp,
            config.wt.clone(),
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
        ) {
            Ok(wt) => return Ok((tcp, Some(wt))),
            Err(e @ TransportError::ConnectionFailed { .. }) => {
                debug!(error = %e, port, "UDP port taken");
                last = Some(e);
                if addr.port() != 0 {
                    // A fixed port (a restart): the old socket may still be closing.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(TransportError::NotConnected))
}

type Body = Either<Either<Empty<Bytes>, SseBody>, Full<Bytes>>;

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::from(body)));
    *r.status_mut() = status;
    r
}

async fn route(
    mut request: Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    if path == shared.ws_path {
        return match transport_ws::upgrade(&mut request, shared.ws.clone(), Some(peer)) {
            Ok((response, pending)) => {
                let s = shared.clone();
                shared.tracker.spawn(async move {
                    // The session layer runs this link in its own task (see `layer.rs`).
                    if let Ok((raw, _)) = pending.finish_raw().await {
                        s.handle_link(
                            AnyLink::Ws(Box::new(raw)),
                            TransportKind::WebSocket,
                            Some(peer),
                        );
                    }
                });
                response.map(|b| Either::Left(Either::Left(b)))
            }
            Err(refusal) => refusal.map(|b| Either::Left(Either::Left(b))),
        };
    }
    if path == shared.negotiate_path {
        return negotiate_response(&request, &shared);
    }
    match shared.sse.handle(request, Some(peer)).await {
        Some(r) => r.map(|b| Either::Left(Either::Right(b))),
        None => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn negotiate_response(request: &Request<Incoming>, shared: &Shared) -> Response<Body> {
    let Some(host) = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return text(StatusCode::BAD_REQUEST, "Host header required\n");
    };
    let hostname = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let doc = crate::negotiate::Negotiation {
        version: 1,
        ws: Some(format!("ws://{host}{}", shared.ws_path)),
        sse: Some(format!("http://{host}{}", shared.sse_path)),
        wt: shared
            .wt_port
            .map(|p| format!("https://{hostname}:{p}{}", shared.wt_path)),
        wt_cert_sha256: shared.cert_hash.clone(),
    };
    let body = serde_json::to_vec(&doc).unwrap_or_default();
    let mut r = Response::new(Either::Right(Full::from(body)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn tcp_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shared.stop.cancelled() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small session frames (DATA, ACK) go out at once: without this, Nagle holds an echo
        // behind an unacknowledged ACK frame (about 1.4 ms per round trip over WebSocket).
        let _ = tcp.set_nodelay(true);
        // The slot is held for the connection's life (the permit moves into its task).
        let ip_permit = match shared.ip_limiter.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                transport_core::metrics::handshake_rejected(TCP_LABEL, refusal.reason());
                shared.refusals.refused(TCP_LABEL, peer.ip(), refusal);
                shared.tracker.spawn(refuse(tcp));
                continue;
            }
        };
        let s = shared.clone();
        shared.tracker.spawn(async move {
            let _ip_permit = ip_permit;
            let stop = s.stop.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let s = s.clone();
                async move { Ok::<_, Infallible>(route(req, peer, s).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::select! {
                _ = conn => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// The `transport` label of what the TCP listener refuses before it knows which transport
/// the connection is for (WebSocket, SSE or negotiation).
const TCP_LABEL: &str = "adaptive";

/// Answers an over-limit connection `429 Too Many Requests` and closes it.
async fn refuse(mut tcp: TcpStream) {
    let head = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(head)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.shutdown()).await;
}

async fn sse_loop(mut incoming: transport_sse::SseIncoming, shared: Arc<Shared>) {
    loop {
        let next = tokio::select! {
            n = incoming.accept() => n,
            () = shared.stop.cancelled() => return,
        };
        let Some((conn, request)) = next else { return };
        shared.handle_link(AnyLink::Conn(conn), TransportKind::Sse, request.peer_addr);
    }
}
