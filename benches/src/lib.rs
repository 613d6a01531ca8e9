//! Shared fixtures of the benchmarks: loopback echo servers for our transport, the bare
//! library it wraps and a raw TCP floor, and a realistic SSE stream.
//!
//! The benches themselves are in `benches/`: `ws.rs` (end to end, loopback) and
//! `sse_parser.rs` (sans-IO codec).

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use transport_core::Transport;
use transport_ws::{WsServer, WsServerConfig};

/// Starts our WebSocket echo server (transport-ws) on 127.0.0.1:0; returns its URL.
///
/// # Panics
/// When binding fails (benchmarks only).
pub async fn ours_ws_echo() -> String {
    let mut server = WsServer::bind("127.0.0.1:0", WsServerConfig::default())
        .await
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
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    format!("ws://{addr}/")
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
