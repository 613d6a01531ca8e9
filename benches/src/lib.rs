//! Shared fixtures of the benchmarks: loopback echo servers for our transport, the bare
//! library it wraps and a raw TCP floor, and a realistic SSE stream.
//!
//! The benches themselves are in `benches/`: `ws.rs`, `wt.rs`, `sse.rs` (end to end,
//! loopback) and `sse_parser.rs` (sans-IO codec). [`wt`] and [`sse`] hold the fixtures of
//! their transports, [`extra`] the results measured outside criterion, and the load tool
//! (`src/bin/load.rs`) counts concurrent connections and server memory per connection.

pub mod adaptive;
pub mod extra;
pub mod paired;
pub mod sse;
pub mod wt;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use futures_util::{SinkExt, StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use transport_core::{Connector, ReconnectPolicy, Transport};
use transport_ws::{ProxyConfig, WsConfig, WsServer, WsServerConfig};

/// Starts our WebSocket echo server (transport-ws) on 127.0.0.1:0; returns its URL.
///
/// # Panics
/// When binding fails (benchmarks only).
pub async fn ours_ws_echo() -> String {
    ours_ws_echo_with(None).await
}

/// As [`ours_ws_echo`], over TLS (`wss://`) when `tls` is given.
///
/// # Panics
/// When binding fails (benchmarks only).
pub async fn ours_ws_echo_with(tls: Option<Arc<rustls::ServerConfig>>) -> String {
    let mut config = WsServerConfig::default();
    config.accept_backlog = 1024;
    // Every benchmark client comes from 127.0.0.1, thousands of times a second.
    config.ip_limits = transport_core::IpLimits::unlimited();
    ours_ws_echo_config(config, tls).await
}

/// As [`ours_ws_echo_with`] with these server settings.
///
/// # Panics
/// When binding fails (benchmarks only).
pub async fn ours_ws_echo_config(
    config: WsServerConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> String {
    let mut server = match tls {
        None => WsServer::bind("127.0.0.1:0", config).await,
        Some(tls) => WsServer::bind_tls("127.0.0.1:0", config, tls).await,
    }
    .expect("bind");
    let url = server.url();
    tokio::spawn(async move {
        while let Some((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                while let Ok(Some(m)) = conn.recv().await {
                    if conn.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    url
}

/// Starts a bare tokio-tungstenite echo server on 127.0.0.1:0; returns its URL.
///
/// # Panics
/// When binding fails (benchmarks only).
pub async fn bare_ws_echo() -> String {
    bare_ws_echo_with(None).await
}

/// As [`bare_ws_echo`], over TLS (tokio-rustls, `wss://`) when `tls` is given. Each connection
/// is echoed the way tokio-tungstenite's own echo server example does it: data messages
/// `forward`ed from the read half to the write half (which flushes once per ready batch).
///
/// # Panics
/// When binding fails (benchmarks only).
pub async fn bare_ws_echo_with(tls: Option<Arc<rustls::ServerConfig>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => {
                        if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                            echo_forward(ws).await;
                        }
                    }
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        if let Ok(ws) = tokio_tungstenite::accept_async(tls).await {
                            echo_forward(ws).await;
                        }
                    }
                }
            });
        }
    });
    format!("{scheme}://{addr}/")
}

async fn echo_forward<S>(ws: tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|m| std::future::ready(m.is_text() || m.is_binary()))
        .forward(write)
        .await;
}

/// A bare tokio-tungstenite client connection to `ws://` `url`: TCP connect, no Nagle,
/// WebSocket upgrade.
///
/// # Panics
/// When connecting fails (benchmarks only).
pub async fn bare_ws_connect(url: &str) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(host_port(url)).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("handshake");
    ws
}

/// As [`bare_ws_connect`] for a `wss://` `url`, with a TLS handshake (tokio-rustls) first.
///
/// # Panics
/// When connecting fails (benchmarks only).
pub async fn bare_wss_connect(
    url: &str,
    tls: &tokio_rustls::TlsConnector,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(host_port(url)).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tls.connect(name, tcp).await.expect("TLS");
    let (ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("handshake");
    ws
}

/// One connection set-up of our client through `connector`, and with `echo` one 32 B echo
/// round trip on it, timed; closed and settled (1 ms) outside the time. The `ws_connect`
/// iteration and its paired rows.
///
/// # Panics
/// When connecting or the echo fails (benchmarks only).
pub async fn ours_ws_connect_timed(connector: &transport_ws::WsConnector, echo: bool) -> Duration {
    let started = Instant::now();
    let mut conn = connector.connect().await.expect("connect");
    if echo {
        conn.send(transport_core::Message::binary(Bytes::from_static(
            &[0x5a; 32],
        )))
        .await
        .expect("send");
        conn.recv().await.expect("recv").expect("message");
    }
    let took = started.elapsed();
    let _ = conn.close(1000, "").await;
    settle().await;
    took
}

/// As [`ours_ws_connect_timed`] for bare tokio-tungstenite, with a TLS handshake first when
/// `tls` is given.
///
/// # Panics
/// When connecting or the echo fails (benchmarks only).
pub async fn bare_ws_connect_timed(
    url: &str,
    tls: Option<&tokio_rustls::TlsConnector>,
    echo: bool,
) -> Duration {
    let started = Instant::now();
    let took = match tls {
        Some(tls) => bare_timed(started, bare_wss_connect(url, tls).await, echo).await,
        None => bare_timed(started, bare_ws_connect(url).await, echo).await,
    };
    settle().await;
    took
}

/// The rest of [`bare_ws_connect_timed`] on an open connection: the echo, the time, the close.
async fn bare_timed<S>(
    started: Instant,
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    echo: bool,
) -> Duration
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if echo {
        ws.send(WsMessage::Binary(Bytes::from_static(&[0x5a; 32])))
            .await
            .expect("send");
        ws.next().await.expect("message").expect("ok");
    }
    let took = started.elapsed();
    let _ = ws.close(None).await;
    while let Some(Ok(_)) = ws.next().await {}
    took
}

/// Lets the teardown of a connection just closed (both ends run on the bench's runtime)
/// finish before the next measured one, outside the time.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn host_port(url: &str) -> &str {
    url.trim_start_matches("ws://")
        .trim_start_matches("wss://")
        .trim_end_matches('/')
}

/// Our client settings: no proxy, no reconnect; with `tls_any`, any server certificate is
/// accepted (the benches' self-signed one; the bare client gets the same rustls settings from
/// [`ws_tls_client`]).
pub fn ours_ws_config(tls_any: bool) -> WsConfig {
    let mut config = WsConfig::default();
    config.proxy(ProxyConfig::none());
    config.transport.reconnect(ReconnectPolicy::disabled());
    config.transport.tls.danger_accept_invalid_certs = tls_any;
    config
}

/// The TLS settings of the WebSocket benches: a fresh P-256 certificate for the servers, and a
/// client configuration (built as our client builds its own) that accepts it.
///
/// # Panics
/// When the configuration cannot be built (benchmarks only).
pub fn ws_tls() -> (Arc<rustls::ServerConfig>, tokio_rustls::TlsConnector) {
    let cert = transport_wt::cert::generate(&[]).expect("certificate");
    let server = transport_core::tls::server_config(
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
        &[b"http/1.1"],
    )
    .expect("server TLS");
    (server, ws_tls_client())
}

/// See [`ws_tls`].
///
/// # Panics
/// When the configuration cannot be built (benchmarks only).
pub fn ws_tls_client() -> tokio_rustls::TlsConnector {
    let mut options = transport_core::TlsOptions::default();
    options.danger_accept_invalid_certs = true;
    let client = transport_core::tls::client_config(&options, &[b"http/1.1"]).expect("client TLS");
    tokio_rustls::TlsConnector::from(client)
}

/// Starts a raw TCP echo server (length-prefixed frames: u32 big-endian length + payload) on
/// 127.0.0.1:0: the floor any WebSocket layer sits on.
///
/// # Panics
/// When binding fails (benchmarks only).
pub async fn raw_tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let Ok(len32) = tcp.read_u32().await else {
                        return;
                    };
                    let len = len32 as usize;
                    if len > buf.len() || tcp.read_exact(&mut buf[..len]).await.is_err() {
                        return;
                    }
                    let mut frame = Vec::with_capacity(4 + len);
                    frame.extend_from_slice(&len32.to_be_bytes());
                    frame.extend_from_slice(&buf[..len]);
                    if tcp.write_all(&frame).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// One round trip over a raw TCP connection to [`raw_tcp_echo`].
///
/// # Panics
/// On I/O errors (benchmarks only).
pub async fn raw_tcp_round_trip(tcp: &mut TcpStream, payload: &[u8], scratch: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("small payload");
    scratch.clear();
    scratch.extend_from_slice(&len.to_be_bytes());
    scratch.extend_from_slice(payload);
    tcp.write_all(scratch).await.expect("write");
    let back = tcp.read_u32().await.expect("read") as usize;
    scratch.resize(back, 0);
    tcp.read_exact(scratch).await.expect("read");
}

/// A realistic event stream: `events` events with ids, some with an event type, data of
/// 20-400 bytes (some multi-line), comments every 50 events, LF line endings.
pub fn sse_stream(events: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(events * 200);
    let mut state = 0x2545_f491_u32;
    for i in 0..events {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        if i % 50 == 0 {
            out.extend_from_slice(b": keepalive\n\n");
        }
        out.extend_from_slice(format!("id: {i}\n").as_bytes());
        if i % 3 == 0 {
            out.extend_from_slice(b"event: update\n");
        }
        let len = 20 + (state % 380) as usize;
        let line: String = (0..len)
            .map(|k| char::from(b"abcdefghijklmnopqrstuvwxyz"[(k + i) % 26]))
            .collect();
        if i % 7 == 0 {
            let (a, b) = line.split_at(len / 2);
            out.extend_from_slice(format!("data: {a}\ndata: {b}\n\n").as_bytes());
        } else {
            out.extend_from_slice(
                format!("data: {{\"seq\":{i},\"payload\":\"{line}\"}}\n\n").as_bytes(),
            );
        }
    }
    out
}
