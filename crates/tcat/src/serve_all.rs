//! `tcat serve --all ADDR`: the unified server of `transport-adaptive` on one port number:
//! WebSocket (`/ws`), SSE (`/sse`) and the negotiation endpoint (`/transport/negotiate`) on
//! TCP, WebTransport (`/wt`) on UDP. Every connection, whatever carries it, is an adaptive
//! session (or a plain connection for a client without the session layer) and joins the same
//! echo or broadcast as the other listeners; a client that reconnects, even over another
//! transport, resumes its session and loses nothing.
//!
//! It prints, per address, `cert-sha256 HEX` (the WebTransport certificate, generated and
//! shared with `--wt` listeners when no `--cert`/`--key` is given) and then:
//!
//! ```text
//! listening auto http://ADDR
//! listening ws://ADDR/ws
//! listening sse http://ADDR/sse
//! listening wt https://ADDR/wt
//! ```

use transport_adaptive::{AdaptiveServer, AdaptiveServerConfig};
use transport_core::TransportConfig;
use transport_sse::SseServerConfig;
use transport_ws::WsServerConfig;
use transport_wt::cert::SelfSignedCert;

use crate::cli::ServeArgs;
use crate::exit::Failure;

/// Binds one unified server per `--all` address.
pub(crate) async fn bind(
    args: &ServeArgs,
    ws: &WsServerConfig,
    sse: &SseServerConfig,
    transport: &TransportConfig,
    cert: Option<&SelfSignedCert>,
) -> Result<Vec<AdaptiveServer>, Failure> {
    let mut servers = Vec::new();
    for addr in &args.all {
        let resolved = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| Failure::error(format!("cannot listen on {addr}: unresolvable")))?;
        let mut config = AdaptiveServerConfig::default();
        config.transport = transport.clone();
        config.ws = ws.clone();
        // The unified server keeps its own grace for SSE sessions (the session layer resumes).
        let grace = config.sse.session_grace;
        config.sse = sse.clone();
        config.sse.session_grace = grace;
        config.wt_cert = cert.cloned();
        // The TCP listener (WebSocket, SSE) and WebTransport alike.
        config.ip_limits = crate::serve::ip_limits(args);
        config.max_sessions = args.max_connections;
        let server = AdaptiveServer::bind(resolved, config)
            .await
            .map_err(|e| Failure::transport(&format!("cannot listen on {addr}"), &e))?;
        servers.push(server);
    }
    Ok(servers)
}

/// The stdout lines announcing `server`: the cert hash is printed by the caller, once.
pub(crate) fn listening_lines(server: &AdaptiveServer) -> Vec<String> {
    let mut lines = vec![
        format!("listening auto {}", server.base_url()),
        format!("listening {}", server.ws_url()),
        format!("listening sse {}", server.sse_url()),
    ];
    if let Some(wt) = server.wt_url() {
        lines.push(format!("listening wt {wt}"));
    }
    lines
}
