//! WebSocket echo and fault-scenario servers on bare tokio-tungstenite.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// What the server does with each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// Echo every text and binary message.
    Echo,
    /// Echo `n` messages, then send a close frame with `code` and `reason`.
    CloseAfter {
        /// Messages echoed first.
        n: usize,
        /// Close code sent.
        code: u16,
        /// Close reason sent.
        reason: String,
    },
    /// Echo `n` messages, then drop the TCP connection without a close frame.
    DropAfter(usize),
    /// Accept TCP and never answer (not even the handshake).
    StallBeforeHandshake,
    /// Complete the handshake, then never read or write again (no pongs).
    StallAfterHandshake,
    /// Complete the handshake and send a text frame with invalid UTF-8.
    InvalidUtf8,
    /// Complete the handshake and send a binary message of this many bytes.
    Oversized(usize),
    /// Read one message every `delay`, echoing nothing.
    SlowReader(Duration),
    /// Answer the handshake with this HTTP status instead of upgrading.
    RefuseHandshake(u16),
}

/// A running test server; stops (and drops its connections) when dropped.
#[derive(Debug)]
pub struct WsTestServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl WsTestServer {
    /// Starts a server for `scenario` on `127.0.0.1:0`.
    ///
    /// # Errors
    /// When binding fails.
    pub async fn start(scenario: Scenario) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let (a, r) = (accepted.clone(), received.clone());
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accept = listener.accept() => {
                        let Ok((tcp, _)) = accept else { continue };
                        a.fetch_add(1, Ordering::Relaxed);
                        connections.spawn(serve(tcp, scenario.clone(), r.clone()));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Self {
            addr,
            accepted,
            received,
            task,
        })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Data messages received so far, over all connections.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for WsTestServer {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(64 << 20))
}

async fn serve(tcp: TcpStream, scenario: Scenario, received: Arc<AtomicUsize>) {
    let _ = tcp.set_nodelay(true);
    match scenario {
        Scenario::StallBeforeHandshake => {
            let _keep = tcp;
            std::future::pending::<()>().await;
        }
        Scenario::RefuseHandshake(status) => {
            let mut tcp = tcp;
            let mut buf = [0u8; 4096];
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::io::AsyncReadExt::read(&mut tcp, &mut buf),
            )
            .await;
            let head = format!(
                "HTTP/1.1 {status} Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = tcp.write_all(head.as_bytes()).await;
        }
        other => {
            let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config())).await
            else {
                return;
            };
            match other {
                Scenario::StallAfterHandshake => {
                    let _keep = ws;
                    std::future::pending::<()>().await;
                }
                Scenario::InvalidUtf8 => {
                    // FIN + text opcode, unmasked, 2 bytes that are not UTF-8.
                    let _ = ws.get_mut().write_all(&[0x81, 0x02, 0xff, 0xfe]).await;
                    drain(&mut ws).await;
                }
                Scenario::Oversized(size) => {
                    let _ = ws
                        .send(Message::Binary(Bytes::from(vec![0x42; size])))
                        .await;
                    drain(&mut ws).await;
                }
                Scenario::SlowReader(delay) => {
                    while let Some(Ok(m)) = ws.next().await {
                        if m.is_text() || m.is_binary() {
                            received.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
                Scenario::Echo => echo(&mut ws, usize::MAX, &received).await,
                Scenario::CloseAfter { n, code, reason } => {
                    echo(&mut ws, n, &received).await;
                    let frame = CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    };
                    let _ = ws.close(Some(frame)).await;
                    drain(&mut ws).await;
                }
                Scenario::DropAfter(n) => {
                    echo(&mut ws, n, &received).await;
                    // Dropping the stream closes TCP without a close frame.
                    drop(ws);
                }
                Scenario::StallBeforeHandshake | Scenario::RefuseHandshake(_) => {}
            }
        }
    }
}

async fn echo<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, n: usize, received: &AtomicUsize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut count = 0;
    while count < n {
        let Some(Ok(m)) = ws.next().await else { return };
        if m.is_text() || m.is_binary() {
            received.fetch_add(1, Ordering::Relaxed);
            count += 1;
            if ws.send(m).await.is_err() {
                return;
            }
        }
    }
}

/// Reads until the peer closes (answering its close), bounded in time.
async fn drain<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
