//! The WebTransport server: a quinn endpoint speaking HTTP/3 with h3; the WebTransport session
//! layer (streams, datagrams, the CONNECT stream's capsules) is ours, on h3's public API.
//!
//! ```text
//!  UDP ─ quinn Endpoint ─ accept loop ──(max_sessions)── per-connection task
//!                                                        │ QUIC handshake, HTTP/3 SETTINGS,
//!                                                        │ CONNECT request, AcceptPolicy
//!                                                        │ (all within handshake_timeout)
//!                    WtServer::accept() ◄── bounded ─────┘
//!                           │ WtIncomingSession: request() → accept() / reject(status)
//!                           ▼
//!                    WtServerSession: accept_bi/uni, open_bi/uni, datagrams, close, drain
//!                           │ shares a SessionState with
//!                           ▼
//!                    driver task: the CONNECT stream (CLOSE/DRAIN capsules, FIN both ways)
//! ```

mod accepted;
mod config;
mod driver;
mod echo;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, warn};
use transport_core::metrics::{self, reason};
use transport_core::{IpLimiter, IpPermit, RefusalLog, TransportError};

pub use accepted::{WtBiStream, WtRecvStream, WtSendStream, WtServerSession};
pub use config::{DEFAULT_UDP_RECV_BUFFER, WtServerConfig};
pub use echo::{echo, echo_session};
pub use session::{H3_NO_ERROR, WtIncomingSession, WtRequest};

use session::{H3Conn, SessionContext, WtRequest as Info};

/// ALPN of HTTP/3.
const ALPN_H3: &[u8] = b"h3";

/// The `transport` label of this server's metrics.
pub(crate) const TRANSPORT: &str = "wt";

/// Holds one of the `max_sessions` slots while a connection is being set up or a session is
/// alive.
#[derive(Debug)]
pub(crate) struct SessionGuard {
    _permit: OwnedSemaphorePermit,
    _ip: IpPermit,
}

/// A WebTransport server on a UDP socket.
///
/// Connections are set up in the background (QUIC handshake, HTTP/3 SETTINGS and the CONNECT
/// request, each connection under `handshake_timeout`), checked against the configured
/// [`AcceptPolicy`](transport_core::AcceptPolicy), and handed out by [`accept`](Self::accept) for
/// the application to accept or reject. Dropping the server or calling
/// [`shutdown`](Self::shutdown) stops accepting and closes every connection.
#[derive(Debug)]
pub struct WtServer {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    incoming: mpsc::Receiver<WtIncomingSession>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    limit: Arc<Semaphore>,
    max_sessions: usize,
    close_timeout: Duration,
}

impl WtServer {
    /// Binds a server with a PEM certificate chain and private key (e.g. from
    /// [`cert::generate`](crate::cert::generate)). Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`], [`TransportError::Tls`] for unreadable PEM, or
    /// [`TransportError::ConnectionFailed`] when binding fails.
    pub fn bind(
        addr: SocketAddr,
        config: WtServerConfig,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, TransportError> {
        let tls = transport_core::tls::server_config(cert_pem, key_pem, &[ALPN_H3])?;
        Self::bind_with_tls(addr, config, &tls)
    }

    /// Binds a server with a rustls configuration (built with the ring provider, see
    /// [`transport_core::tls::server_config`]). Its ALPN list is replaced by `h3`, and 0-RTT is
    /// enabled (`max_early_data_size = u32::MAX`, as QUIC requires). Must be called within a
    /// Tokio runtime.
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub fn bind_with_tls(
        addr: SocketAddr,
        config: WtServerConfig,
        tls: &rustls::ServerConfig,
    ) -> Result<Self, TransportError> {
        config.validate()?;
        let mut tls = tls.clone();
        tls.alpn_protocols = vec![ALPN_H3.to_vec()];
        tls.max_early_data_size = u32::MAX;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| TransportError::tls(format!("QUIC needs TLS 1.3: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(config.quic_transport()?);
        let socket = bind_udp(addr, config.udp_recv_buffer)
            .map_err(|e| TransportError::connection_failed("binding the UDP socket", e))?;
        let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            runtime,
        )
        .map_err(|e| TransportError::connection_failed("binding the UDP socket", e))?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|e| TransportError::connection_failed("socket address", e))?;

        let (tx, incoming) = mpsc::channel(config.accept_backlog);
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let limit = Arc::new(Semaphore::new(config.max_sessions));
        let max_sessions = config.max_sessions;
        let close_timeout = config.transport.close_timeout;
        let acceptor = Acceptor {
            ip_limiter: IpLimiter::new(config.ip_limits.clone()),
            refusals: RefusalLog::default(),
            config: Arc::new(config),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            tx,
        };
        tracker.spawn(
            acceptor
                .run(endpoint.clone(), limit.clone())
                .instrument(tracing::debug_span!("wt-server", %local_addr)),
        );
        Ok(Self {
            endpoint,
            local_addr,
            incoming,
            shutdown,
            tracker,
            limit,
            max_sessions,
            close_timeout,
        })
    }

    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `https://ADDR`, the URL clients connect to (append a path).
    pub fn url(&self) -> String {
        format!("https://{}", self.local_addr)
    }

    /// Connections holding a session slot now (set-ups in progress, pending and accepted
    /// sessions).
    pub fn open_sessions(&self) -> usize {
        self.max_sessions - self.limit.available_permits()
    }

    /// The next CONNECT request that passed the policy, for the application to
    /// [`accept`](WtIncomingSession::accept) or [`reject`](WtIncomingSession::reject);
    /// `None` after shutdown.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept(&mut self) -> Option<WtIncomingSession> {
        self.incoming.recv().await
    }

    /// The next session, accepted without further checks than the policy's; requests whose
    /// client vanished meanwhile are skipped. `None` after shutdown.
    ///
    /// # Cancel safety
    /// Not cancel safe: a request being accepted when cancelled is lost (its connection closed).
    pub async fn accept_session(&mut self) -> Option<(WtServerSession, WtRequest)> {
        loop {
            let incoming = self.accept().await?;
            match incoming.accept().await {
                Ok(session) => return Some(session),
                Err(e) => debug!(error = %e, "accepting a session failed"),
            }
        }
    }

    /// Stops accepting, closes every session with CLOSE_WEBTRANSPORT_SESSION
    /// ([`H3_NO_ERROR`], "server shutting down") and a FIN on its CONNECT stream, waits until
    /// the clients have closed (at most the close timeout), then closes every connection left
    /// with the same code.
    ///
    /// # Cancel safety
    /// Cancelling stops waiting; the connections are closed regardless.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.incoming.close();
        // Requests queued but never taken by the application are refused.
        while let Ok(pending) = self.incoming.try_recv() {
            drop(pending);
        }
        self.tracker.close();
        // The session drivers send their close capsules and wait for the clients.
        let deadline = Instant::now() + self.close_timeout;
        let drained = tokio::time::timeout_at(deadline, self.tracker.wait()).await;
        self.endpoint
            .close(H3_NO_ERROR.into(), driver::SHUTDOWN_REASON.as_bytes());
        let idle = tokio::time::timeout_at(deadline, self.endpoint.wait_idle()).await;
        if drained.is_err() || idle.is_err() {
            warn!(
                open = self.endpoint.open_connections(),
                "shutdown: connections still open after {:?}", self.close_timeout
            );
        }
    }
}

impl Drop for WtServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.endpoint
            .close(H3_NO_ERROR.into(), driver::SHUTDOWN_REASON.as_bytes());
    }
}

struct Acceptor {
    config: Arc<WtServerConfig>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    tx: mpsc::Sender<WtIncomingSession>,
    ip_limiter: IpLimiter,
    refusals: RefusalLog,
}

impl Acceptor {
    async fn run(self, endpoint: quinn::Endpoint, limit: Arc<Semaphore>) {
        let this = Arc::new(self);
        loop {
            let incoming = tokio::select! {
                () = this.shutdown.cancelled() => return,
                incoming = endpoint.accept() => match incoming {
                    Some(incoming) => incoming,
                    None => return,
                },
            };
            let peer = incoming.remote_address();
            // An unvalidated source address may be spoofed: near its limits, make the client
            // prove it (a stateless retry) before it counts against that address.
            if !incoming.remote_address_validated()
                && incoming.may_retry()
                && this.ip_limiter.under_pressure(peer.ip())
            {
                debug!(%peer, "validating the address of a busy source with a retry");
                if let Err(e) = incoming.retry() {
                    e.into_incoming().ignore();
                }
                continue;
            }
            let ip_permit = match this.ip_limiter.admit(peer.ip()) {
                Ok(permit) => permit,
                Err(refusal) => {
                    metrics::handshake_rejected(TRANSPORT, refusal.reason());
                    this.refusals.refused(TRANSPORT, peer.ip(), refusal);
                    incoming.refuse();
                    continue;
                }
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                debug!(%peer, "refusing connection: max_sessions reached");
                metrics::handshake_rejected(TRANSPORT, reason::LIMIT);
                incoming.refuse();
                continue;
            };
            let guard = SessionGuard {
                _permit: permit,
                _ip: ip_permit,
            };
            let this2 = this.clone();
            this.tracker.spawn(
                async move {
                    tokio::select! {
                        () = this2.shutdown.cancelled() => {}
                        () = this2.connection(incoming, guard) => {}
                    }
                }
                .instrument(tracing::debug_span!("wt-connection", transport = TRANSPORT, %peer)),
            );
        }
    }

    /// Sets one connection up and queues its session request for the application.
    async fn connection(&self, incoming: quinn::Incoming, guard: SessionGuard) {
        let deadline = Instant::now() + self.config.handshake_timeout;
        let rejected = |why| metrics::handshake_rejected(TRANSPORT, why);
        let connecting = match incoming.accept() {
            Ok(connecting) => connecting,
            Err(e) => {
                rejected(reason::FAILED);
                return debug!(error = %e, "QUIC accept failed");
            }
        };
        let quic = match tokio::time::timeout_at(deadline, connecting).await {
            Ok(Ok(quic)) => quic,
            Ok(Err(e)) => {
                rejected(match e {
                    quinn::ConnectionError::TransportError(_) => reason::TLS,
                    _ => reason::FAILED,
                });
                return debug!(error = %e, "QUIC handshake failed");
            }
            Err(_) => {
                rejected(reason::TIMEOUT);
                return debug!("QUIC handshake timed out");
            }
        };
        let peer = quic.remote_address();
        let request = match tokio::time::timeout_at(deadline, self.connect_request(&quic)).await {
            Ok(Some(request)) => request,
            Ok(None) => return rejected(reason::FAILED),
            Err(_) => {
                rejected(reason::TIMEOUT);
                debug!(
                    "no WebTransport CONNECT within {:?}",
                    self.config.handshake_timeout
                );
                quic.close(H3_NO_ERROR.into(), b"no WebTransport CONNECT in time");
                return;
            }
        };
        let (h3, connect, stream) = request;
        if let Err((status, why)) = self.config.policy.check_with_reason(&connect) {
            rejected(why);
            debug!(%status, uri = %connect.uri(), "CONNECT refused by the policy");
            session::refuse(&quic, Some(h3), stream, status).await;
            return;
        }
        let info = Info::new(&connect, peer);
        let context = SessionContext {
            tracker: self.tracker.clone(),
            shutdown: self.shutdown.clone(),
            close_timeout: self.config.transport.close_timeout,
            span: tracing::Span::current(),
        };
        let pending = WtIncomingSession::new(info, quic, h3, connect, stream, guard, context);
        // Waits while the application's backlog is full; the request is dropped (and its
        // connection closed) when the server shuts down.
        if self.tx.send(pending).await.is_err() {
            debug!("server gone before the session was accepted");
        }
    }

    /// Runs HTTP/3 on `quic` until the WebTransport CONNECT arrives; other requests are
    /// answered with 404 (or 405 for a non-WebTransport CONNECT). `None` when the connection
    /// ends first.
    async fn connect_request(
        &self,
        quic: &quinn::Connection,
    ) -> Option<(Box<H3Conn>, http::Request<()>, session::H3Request)> {
        let built = h3::server::builder()
            .enable_webtransport(true)
            .enable_extended_connect(true)
            .enable_datagram(true)
            .max_webtransport_sessions(1)
            // No GREASE (RFC 9114 §6.2.3, §7.2.8: optional): it costs every session set-up a
            // unidirectional stream the client opens, reads and stops (a STOP_SENDING back),
            // inside the time to the CONNECT's answer, on top of a reserved setting and frame.
            .send_grease(false)
            .build::<_, Bytes>(h3_quinn::Connection::new(quic.clone()))
            .await;
        let mut h3 = match built {
            Ok(h3) => Box::new(h3),
            Err(e) => {
                debug!(error = %e, "HTTP/3 set-up failed");
                return None;
            }
        };
        loop {
            let resolver = match h3.accept().await {
                Ok(Some(resolver)) => resolver,
                Ok(None) => return None,
                Err(e) => {
                    debug!(error = %e, "HTTP/3 connection ended before a CONNECT");
                    return None;
                }
            };
            let (request, stream) = match resolver.resolve_request().await {
                Ok(pair) => pair,
                Err(e) => {
                    debug!(error = %e, "unreadable request");
                    continue;
                }
            };
            if session::is_webtransport_connect(&request) {
                return Some((h3, request, stream));
            }
            let status = if request.method() == http::Method::CONNECT {
                StatusCode::METHOD_NOT_ALLOWED
            } else {
                StatusCode::NOT_FOUND
            };
            debug!(method = %request.method(), uri = %request.uri(), %status, "not a WebTransport request");
            let mut stream = stream;
            let mut response = http::Response::new(());
            *response.status_mut() = status;
            if stream.send_response(response).await.is_ok() {
                let _ = stream.finish().await;
            }
        }
    }
}

/// Binds a non-blocking UDP socket as [`WtServer`] binds its own: with the receive buffer
/// asked for (`SO_RCVBUF`; `None` keeps the system default). The kernel may grant less (it caps
/// the request), which is not an error. For a QUIC endpoint built by hand beside ours.
///
/// # Errors
/// When the socket cannot be created, bound or made non-blocking.
pub fn bind_udp(
    addr: SocketAddr,
    recv_buffer: Option<usize>,
) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Some(bytes) = recv_buffer
        && let Err(e) = socket.set_recv_buffer_size(bytes)
    {
        tracing::debug!(error = %e, bytes, "UDP receive buffer not enlarged");
    }
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcvbuf(socket: &std::net::UdpSocket) -> usize {
        socket2::SockRef::from(socket)
            .recv_buffer_size()
            .unwrap_or_default()
    }

    #[test]
    fn the_udp_receive_buffer_is_the_one_asked_for_up_to_the_kernel_cap() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let system = rcvbuf(&bind_udp(addr, None).unwrap());
        let asked = 1 << 20;
        let got = rcvbuf(&bind_udp(addr, Some(asked)).unwrap());
        // Linux doubles the value asked for (bookkeeping room) and caps it at rmem_max.
        let cap = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok());
        match cap {
            Some(cap) => assert_eq!(got, 2 * asked.min(cap), "system default {system}"),
            None => assert!(got >= system),
        }
    }
}
