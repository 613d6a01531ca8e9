//! `tcat serve`: an echo or broadcast server on one or more WebSocket and Server-Sent Events
//! listeners. Every listener hands out `transport_core::Connection`s (an SSE one is a session:
//! events out, POSTs to its send URL in), so echo and broadcast are the same for both.
//!
//! ```text
//!  listener task (per --ws/--wss/--sse/--sses) ──accept──▶ client task (per connection)
//!                                               echo:      recv ─▶ send back (waits: backpressure)
//!                                               broadcast: recv ─▶ Hub ─try_send─▶ every client
//! ```
//!
//! In broadcast mode every client's outgoing queue is its connection's bounded send queue
//! (`--queue` messages). A client whose queue is full when a message is published is too slow:
//! it is removed from the hub and closed with 1008, so it can neither block the others nor
//! make memory grow.
//!
//! WebTransport listeners (`--wt`) differ: in echo mode each session is echoed raw
//! (`transport_wt::echo`: every stream's bytes back on a stream, every datagram back), so any
//! WebTransport client can test against it, and `tcat connect --transport wt` works because
//! its framing is symmetric; in broadcast mode each session becomes a message connection
//! (`docs/protocols/wt.md`) and joins the same hub. Without `--cert`/`--key` a self-signed
//! certificate fit for `serverCertificateHashes` is generated and its hash printed
//! (`cert-sha256 HEX`) before the listening lines.
//!
//! SIGINT/SIGTERM: every listener stops accepting and closes its connections with 1001
//! (`WsServer::shutdown`; `SseServer::shutdown` sends a `transport.close` event with 1001;
//! `WtServer::shutdown` closes every session with `H3_NO_ERROR`), the client tasks finish, and
//! the process exits 0.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, info, warn};
use transport_core::{
    CloseFrame, Connection, IpLimits, Message, Sender, Transport as _, TransportConfig,
    TrySendError,
};
use transport_sse::{SseRequest, SseServer, SseServerConfig};
use transport_ws::{WsRequest, WsServer, WsServerConfig};
use transport_wt::cert::SelfSignedCert;
use transport_wt::{StreamConfig, WtServer, WtServerConfig};

use crate::cli::{Mode, ServeArgs};
use crate::connect::{dead_peer_timeout, keepalive_interval};
use crate::exit::{Done, Failure};
use crate::serve_all;
use crate::signal::Signals;

/// Close reason sent to a broadcast client that could not keep up.
const SLOW_REASON: &str = "too slow: broadcast queue full";

/// Extra time, beyond the close timeout, that shutdown waits for client tasks.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);

/// Runs `tcat serve` until SIGINT or SIGTERM.
pub(crate) async fn run(args: ServeArgs) -> Result<Done, Failure> {
    // Before anything is printed: a signal sent right after `listening` must be caught.
    let mut signals = Signals::install()
        .map_err(|e| Failure::error(format!("installing signal handlers: {e}")))?;
    // Before any listener: every connection's counters register with the recorder.
    let metrics = match &args.metrics {
        Some(addr) => Some(crate::metrics::MetricsServer::bind(addr).await?),
        None => None,
    };
    let config = server_config(&args);
    let sse_config = sse_server_config(&args);
    let close_timeout = config.transport.close_timeout;
    let servers = bind_all(&args, &config, &sse_config).await?;
    // One generated certificate serves every WebTransport listener that has no --cert.
    let generated = if (!args.wt.is_empty() && args.cert.is_none()) || !args.all.is_empty() {
        Some(
            transport_wt::cert::generate(&[])
                .map_err(|e| Failure::error(format!("generating a certificate: {e}")))?,
        )
    } else {
        None
    };
    let wt_servers = bind_wt(&args, &config.transport, generated.as_ref())?;
    let all_servers = serve_all::bind(
        &args,
        &config,
        &sse_config,
        &config.transport,
        generated.as_ref(),
    )
    .await?;

    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let hub = Arc::new(Hub::new(tracker.clone()));
    announce(
        &args,
        generated.as_ref(),
        &servers,
        &wt_servers,
        &all_servers,
        metrics.as_ref(),
    );
    if let Some(metrics) = metrics {
        tracker.spawn(metrics.run(stop.clone(), tracker.clone()));
    }
    for server in all_servers {
        tracker.spawn(accept_loop(
            Listener::All(Box::new(server)),
            args.mode,
            hub.clone(),
            stop.clone(),
            tracker.clone(),
        ));
    }
    for server in wt_servers {
        tracker.spawn(wt_accept_loop(
            server,
            args.mode,
            config.transport.clone(),
            hub.clone(),
            stop.clone(),
            tracker.clone(),
        ));
    }
    for server in servers {
        tracker.spawn(accept_loop(
            server,
            args.mode,
            hub.clone(),
            stop.clone(),
            tracker.clone(),
        ));
    }

    let signal = signals.recv().await;
    info!(signal, "shutting down: closing every connection with 1001");
    stop.cancel();
    tracker.close();
    let limit = close_timeout + SHUTDOWN_MARGIN;
    tokio::select! {
        finished = tokio::time::timeout(limit, tracker.wait()) => {
            if finished.is_err() {
                warn!("shutdown: some connections were still open after {limit:?}");
            }
        }
        signal = signals.recv() => debug!(signal, "second signal: exiting at once"),
    }
    Ok(Done::Finished)
}

/// Prints the certificate hash and one line per listener (and the metrics URL) on stdout.
fn announce(
    args: &ServeArgs,
    generated: Option<&SelfSignedCert>,
    servers: &[Listener],
    wt_servers: &[WtServer],
    all_servers: &[transport_adaptive::AdaptiveServer],
    metrics: Option<&crate::metrics::MetricsServer>,
) {
    let mut stdout = std::io::stdout().lock();
    let mut print = |line: String| {
        // A closed stdout must not stop the server; the address is in the log too.
        if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
            warn!(error = %e, "cannot print {line:?}");
        }
    };
    if let Some(cert) = generated {
        let hash = cert.sha256_hex();
        info!(sha256 = %hash, "WebTransport: generated a self-signed certificate");
        print(format!("cert-sha256 {hash}"));
    }
    for server in servers {
        print(format!("listening {}", server.label()));
        info!(url = %server.url(), mode = ?args.mode, "listening");
    }
    for server in wt_servers {
        print(format!("listening wt {}", server.url()));
        info!(url = %server.url(), mode = ?args.mode, "listening (WebTransport)");
    }
    for server in all_servers {
        for line in serve_all::listening_lines(server) {
            print(line);
        }
        info!(url = %server.base_url(), mode = ?args.mode, "listening (all transports)");
    }
    if let Some(metrics) = metrics {
        print(format!("metrics {}", metrics.url()));
        info!(url = %metrics.url(), "serving Prometheus metrics");
    }
}

/// Per-connection settings every listener shares: message limit, send queue, keepalive (for
/// SSE the interval of the keepalive comments, and the timeout a stream may stay blocked by a
/// client that does not read before it is dropped).
fn transport_config(args: &ServeArgs) -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport.max_message_size(args.max_message_size);
    transport.buffers(args.queue, TransportConfig::default().recv_buffer);
    transport.keepalive(
        keepalive_interval(args.keepalive),
        dead_peer_timeout(args.keepalive),
    );
    transport
}

fn server_config(args: &ServeArgs) -> WsServerConfig {
    let mut config = WsServerConfig::default();
    config.transport = transport_config(args);
    // One frame may carry a whole message (Autobahn sends 16 MiB single-frame messages).
    config.max_frame_size = args.max_message_size;
    config.max_connections = args.max_connections;
    config.subprotocols.clone_from(&args.subprotocols);
    config.ip_limits = ip_limits(args);
    config
}

/// `--max-connections-per-ip` and `--handshakes-per-ip`; without them no per-IP limit (tcat's
/// behaviour before these flags existed).
pub(crate) fn ip_limits(args: &ServeArgs) -> IpLimits {
    let mut limits = IpLimits::unlimited();
    limits.max_connections_per_ip(args.max_connections_per_ip);
    if let Some(rate) = args.handshakes_per_ip {
        limits.handshake_rate(Some(rate), rate.saturating_mul(2));
    }
    limits
}

/// The SSE server settings: the same per-connection settings as WebSocket, sessions bounded
/// like connections.
fn sse_server_config(args: &ServeArgs) -> SseServerConfig {
    let mut config = SseServerConfig::default();
    config.transport = transport_config(args);
    config.max_sessions = args.max_connections;
    config.session_grace = args.session_grace;
    config.ip_limits = ip_limits(args);
    config
}

/// A bound listener of any transport.
#[derive(Debug)]
enum Listener {
    Ws(WsServer),
    Sse(SseServer),
    /// The unified server of `--all`: any transport, one adaptive connection per session.
    All(Box<transport_adaptive::AdaptiveServer>),
}

impl Listener {
    /// The URL clients connect to.
    fn url(&self) -> String {
        match self {
            Self::Ws(server) => server.url(),
            Self::Sse(server) => server.url(),
            Self::All(server) => server.base_url(),
        }
    }

    /// What follows `listening ` on stdout: the URL, after `sse ` for SSE (an `http://` URL
    /// alone does not say which protocol it speaks).
    fn label(&self) -> String {
        match self {
            Self::Ws(server) => server.url(),
            Self::Sse(server) => format!("sse {}", server.url()),
            Self::All(server) => format!("auto {}", server.base_url()),
        }
    }

    /// The next connection; `None` when the listener stops accepting.
    ///
    /// # Cancel safety
    /// Cancel safe: both servers' `accept` are.
    async fn accept(&mut self) -> Option<Connection> {
        match self {
            Self::Ws(server) => {
                let (connection, request) = server.accept().await?;
                log_ws_accept(&request);
                Some(connection)
            }
            Self::Sse(server) => {
                let (connection, request) = server.accept().await?;
                log_sse_accept(&request);
                Some(connection)
            }
            Self::All(server) => {
                let (connection, request) = server.accept().await?;
                debug!(?request, "accepted an adaptive connection");
                Some(connection)
            }
        }
    }

    /// Stops accepting and closes every connection with 1001.
    async fn shutdown(self) {
        match self {
            Self::Ws(server) => server.shutdown().await,
            Self::Sse(server) => server.shutdown().await,
            Self::All(server) => server.shutdown().await,
        }
    }
}

async fn bind_all(
    args: &ServeArgs,
    config: &WsServerConfig,
    sse_config: &SseServerConfig,
) -> Result<Vec<Listener>, Failure> {
    let listen_error = |addr: &str, e: &transport_core::TransportError| {
        Failure::transport(&format!("cannot listen on {addr}"), e)
    };
    // The certificate files are read once, and only when a TLS listener needs them.
    let mut pem: Option<(Vec<u8>, Vec<u8>)> = None;
    let mut tls = |flag: &str, alpn: &[&[u8]]| {
        if pem.is_none() {
            pem = Some(read_cert_and_key(args, flag)?);
        }
        let (cert, key) = pem
            .as_ref()
            .ok_or_else(|| Failure::usage("no --cert/--key"))?;
        transport_core::tls::server_config(cert, key, alpn)
            .map_err(|e| Failure::usage(format!("--cert/--key: {e}")))
    };
    let mut servers = Vec::new();
    for addr in &args.ws {
        let server = WsServer::bind(addr.as_str(), config.clone())
            .await
            .map_err(|e| listen_error(addr, &e))?;
        servers.push(Listener::Ws(server));
    }
    if !args.wss.is_empty() {
        let tls = tls("--wss", &[b"http/1.1"])?;
        for addr in &args.wss {
            let server = WsServer::bind_tls(addr.as_str(), config.clone(), tls.clone())
                .await
                .map_err(|e| listen_error(addr, &e))?;
            servers.push(Listener::Ws(server));
        }
    }
    for addr in &args.sse {
        let server = SseServer::bind(addr.as_str(), sse_config.clone())
            .await
            .map_err(|e| listen_error(addr, &e))?;
        servers.push(Listener::Sse(server));
    }
    if !args.sses.is_empty() {
        // SseServer::bind_tls sets the ALPN list itself (h2, http/1.1).
        let tls = tls("--sses", &[b"h2", b"http/1.1"])?;
        for addr in &args.sses {
            let server = SseServer::bind_tls(addr.as_str(), sse_config.clone(), tls.clone())
                .await
                .map_err(|e| listen_error(addr, &e))?;
            servers.push(Listener::Sse(server));
        }
    }
    Ok(servers)
}

/// Binds the `--wt` listeners, with `--cert`/`--key` or else the `generated` certificate.
fn bind_wt(
    args: &ServeArgs,
    transport: &TransportConfig,
    generated: Option<&SelfSignedCert>,
) -> Result<Vec<WtServer>, Failure> {
    if args.wt.is_empty() {
        return Ok(Vec::new());
    }
    let (cert, key) = match (args.cert.is_some(), generated) {
        (false, Some(generated)) => (
            generated.cert_pem.clone().into_bytes(),
            generated.key_pem.clone().into_bytes(),
        ),
        _ => read_cert_and_key(args, "--wt")?,
    };
    let mut config = WtServerConfig::default();
    config.transport = transport.clone();
    config.max_sessions(args.max_connections);
    config.ip_limits(ip_limits(args));
    let mut servers = Vec::new();
    for addr in &args.wt {
        let resolved = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| Failure::error(format!("cannot listen on {addr}: unresolvable")))?;
        let server =
            WtServer::bind(resolved, config.clone(), &cert, &key).map_err(|e| match e {
                transport_core::TransportError::Tls { .. } => {
                    Failure::usage(format!("--cert/--key: {e}"))
                }
                other => Failure::transport(&format!("cannot listen on {addr}"), &other),
            })?;
        servers.push(server);
    }
    Ok(servers)
}

/// Accepts WebTransport sessions until `stop`, then shuts the listener down (every session
/// closed). Echo: raw bytes back. Broadcast: a message connection in the hub.
async fn wt_accept_loop(
    mut server: WtServer,
    mode: Mode,
    transport: TransportConfig,
    hub: Arc<Hub>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    // Ends on `stop` or when the server stops accepting. A session being accepted when `stop`
    // fires is closed, as every other one is.
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = server.accept_session() => accepted,
        };
        let Some((session, request)) = accepted else {
            break;
        };
        debug!(peer = %request.peer_addr, path = %request.path, "accepted a WebTransport session");
        let span = tracing::debug_span!("client", transport = "wt", peer = %request.peer_addr);
        match mode {
            Mode::Echo => tracker.spawn(
                async move {
                    if let Err(e) = transport_wt::echo(session).await {
                        debug!(error = %e, "WebTransport echo ended");
                    }
                }
                .instrument(span),
            ),
            Mode::Broadcast => {
                let hub = hub.clone();
                let transport = transport.clone();
                tracker.spawn(
                    async move {
                        match session
                            .into_connection(&transport, StreamConfig::default())
                            .await
                        {
                            Ok(connection) => broadcast(connection, hub).await,
                            Err(e) => debug!(error = %e, "no message stream"),
                        }
                    }
                    .instrument(span),
                )
            }
        };
    }
    server.shutdown().await;
}

/// The PEM files of `--cert` and `--key`, for the listener `flag`.
fn read_cert_and_key(args: &ServeArgs, flag: &str) -> Result<(Vec<u8>, Vec<u8>), Failure> {
    let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
        return Err(Failure::usage(format!("{flag} needs --cert and --key")));
    };
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| Failure::usage(format!("{flag} {}: {e}", path.display())))
    };
    Ok((read("--cert", cert)?, read("--key", key)?))
}

/// Accepts connections until `stop`, then shuts the listener down (1001 to every client).
async fn accept_loop(
    mut server: Listener,
    mode: Mode,
    hub: Arc<Hub>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    // Ends on `stop` or when the server stops accepting.
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = server.accept() => accepted,
        };
        let Some(connection) = accepted else {
            break;
        };
        let info = connection.info();
        let span =
            tracing::debug_span!("client", transport = info.transport, peer = ?info.peer_addr);
        match mode {
            Mode::Echo => tracker.spawn(echo(connection).instrument(span)),
            Mode::Broadcast => tracker.spawn(broadcast(connection, hub.clone()).instrument(span)),
        };
    }
    server.shutdown().await;
}

fn log_ws_accept(request: &WsRequest) {
    debug!(
        peer = ?request.peer_addr,
        path = %request.path,
        subprotocol = ?request.subprotocol,
        "accepted"
    );
}

fn log_sse_accept(request: &SseRequest) {
    debug!(
        peer = ?request.peer_addr,
        path = %request.path,
        session = %request.session,
        "accepted an SSE session"
    );
}

/// Sends every message back to its sender. Waiting on a full send queue stops reading the
/// client: backpressure instead of buffering.
async fn echo(mut connection: Connection) {
    // Ends with the connection.
    loop {
        match connection.recv().await {
            Ok(Some(message)) => {
                if let Err(e) = connection.send(message).await {
                    debug!(error = %e, "echo: send failed");
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                debug!(error = %e, "echo: connection ended");
                break;
            }
        }
    }
}

/// Publishes every message of one client to all clients.
async fn broadcast(connection: Connection, hub: Arc<Hub>) {
    let (sender, mut receiver) = connection.split();
    let id = hub.join(sender);
    // Ends with the connection.
    loop {
        match receiver.recv().await {
            Ok(Some(message)) => hub.publish(&message),
            Ok(None) => break,
            Err(e) => {
                debug!(error = %e, "broadcast: connection ended");
                break;
            }
        }
    }
    hub.leave(id);
}

/// The connected broadcast clients.
#[derive(Debug)]
struct Hub {
    clients: Mutex<HashMap<u64, Sender>>,
    next_id: AtomicU64,
    tracker: TaskTracker,
}

impl Hub {
    fn new(tracker: TaskTracker) -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            tracker,
        }
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Sender>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn join(&self, sender: Sender) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.clients().insert(id, sender);
        id
    }

    fn leave(&self, id: u64) {
        self.clients().remove(&id);
    }

    /// Queues `message` for every client without waiting; drops those that cannot take it.
    fn publish(&self, message: &Message) {
        let mut slow = Vec::new();
        {
            let mut clients = self.clients();
            clients.retain(|id, sender| match sender.try_send(message.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    slow.push((*id, sender.clone()));
                    false
                }
                Err(TrySendError::Failed(e)) => {
                    debug!(client = id, error = %e, "broadcast: client gone");
                    false
                }
            });
        }
        for (id, sender) in slow {
            warn!(
                client = id,
                "broadcast: client too slow (queue full); disconnecting it"
            );
            self.tracker.spawn(async move {
                // Bounded by the close timeout; the link then gives up on its own.
                if let Err(e) = sender.close(CloseFrame::POLICY, SLOW_REASON).await {
                    debug!(client = id, error = %e, "closing a slow client did not complete");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use transport_core::memory;

    use super::*;

    #[tokio::test]
    async fn hub_drops_clients_that_cannot_keep_up() {
        let tracker = TaskTracker::new();
        let hub = Hub::new(tracker.clone());
        let mut config = TransportConfig::default();
        config.buffers(2, 2);
        let (fast, mut fast_peer) = memory::pair(&config);
        let (slow, _slow_peer) = memory::pair(&config);
        let (fast_tx, _fast_rx) = fast.split();
        let (slow_tx, _slow_rx) = slow.split();
        hub.join(fast_tx);
        hub.join(slow_tx);
        let mut seen = 0;
        for i in 0..20 {
            hub.publish(&Message::text(format!("m{i}")));
            // The fast peer keeps up.
            while let Ok(Ok(Some(_))) =
                tokio::time::timeout(Duration::from_millis(50), fast_peer.recv()).await
            {
                seen += 1;
            }
        }
        assert_eq!(hub.clients().len(), 1, "the slow client is dropped");
        assert_eq!(seen, 20, "the fast client got every message");
        tracker.close();
    }
}
