//! Helpers of the adaptive integration tests: servers on 127.0.0.1 port 0, client settings,
//! and minimal fault tools (a UDP socket that swallows everything, a TCP listener that accepts
//! and never answers, a UDP forwarder that can be switched on and off).
#![allow(dead_code, unreachable_pub)]

pub mod recorder;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;
use transport_adaptive::{AdaptiveConfig, AdaptiveServer, AdaptiveServerConfig, TransportKind};
use transport_core::{Message, Transport};
use transport_ws::ProxyConfig;

/// Upper bound of every wait in the tests.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Runs `f` under [`LIMIT`].
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("timed out")
}

/// Server settings with short timeouts.
pub fn server_config() -> AdaptiveServerConfig {
    let mut c = AdaptiveServerConfig::default();
    c.transport.close_timeout = Duration::from_secs(1);
    c.session_expiry = Duration::from_secs(10);
    c
}

/// A server on 127.0.0.1, port 0.
pub async fn server() -> AdaptiveServer {
    AdaptiveServer::bind("127.0.0.1:0".parse().unwrap(), server_config())
        .await
        .unwrap()
}

/// Echoes every message of every connection `server` accepts, until aborted.
pub fn spawn_echo(server: Arc<AdaptiveServer>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        while let Some((mut conn, _)) = server.accept().await {
            tokio::spawn(async move {
                while let Ok(Some(m)) = conn.recv().await {
                    if conn.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    }))
}

/// Client settings for `kinds` of `server`, WebTransport certificate pinned, no proxy, quick
/// reconnects.
pub fn client_config(server: &AdaptiveServer, kinds: &[TransportKind]) -> AdaptiveConfig {
    let mut c = AdaptiveConfig::default();
    for kind in kinds {
        let url = match kind {
            TransportKind::WebTransport => server.wt_url().unwrap(),
            TransportKind::WebSocket => server.ws_url(),
            TransportKind::Sse => server.sse_url(),
        };
        c.endpoint(*kind, url);
    }
    tune(&mut c);
    if let Some(hash) = server.wt_cert_hash() {
        c.wt_cert_hash(hex32(hash));
    }
    c
}

/// Test tuning: no proxy, quick reconnects, 1 s attempts.
pub fn tune(c: &mut AdaptiveConfig) {
    c.ws.proxy(ProxyConfig::none());
    c.transport
        .reconnect
        .delays(Duration::from_millis(20), Duration::from_millis(200));
    c.transport.close_timeout = Duration::from_secs(1);
    c.attempt_timeout(Duration::from_secs(5));
}

/// 64 hex digits to bytes.
pub fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// A UDP socket that receives nothing back: every datagram sent to it vanishes.
pub async fn udp_blackhole() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    (s, addr)
}

/// A TCP listener that accepts connections and never answers (a stalled proxy). Holds at most
/// 32 connections; the task ends with the returned handle's abort.
pub async fn tcp_blackhole() -> (SocketAddr, AbortOnDrop) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            if held.len() < 32 {
                held.push(s);
            }
        }
    });
    (addr, AbortOnDrop(task))
}

/// A TCP port nobody listens on (connections are refused).
pub async fn refused_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A UDP forwarder to `target` that drops everything until switched on.
pub struct UdpGate {
    pub addr: SocketAddr,
    pub open: Arc<AtomicBool>,
    _task: AbortOnDrop,
}

impl UdpGate {
    pub async fn new(target: SocketAddr) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        back.connect(target).await.unwrap();
        let addr = front.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(false));
        let is_open = open.clone();
        let task = tokio::spawn(async move {
            let mut client: Option<SocketAddr> = None;
            let mut up = vec![0u8; 65_536];
            let mut down = vec![0u8; 65_536];
            loop {
                tokio::select! {
                    r = front.recv_from(&mut up) => {
                        let Ok((n, from)) = r else { return };
                        if is_open.load(Ordering::Relaxed) {
                            client = Some(from);
                            let _ = back.send(&up[..n]).await;
                        }
                    }
                    r = back.recv(&mut down) => {
                        let Ok(n) = r else { continue };
                        if let (true, Some(c)) = (is_open.load(Ordering::Relaxed), client) {
                            let _ = front.send_to(&down[..n], c).await;
                        }
                    }
                }
            }
        });
        Self {
            addr,
            open,
            _task: AbortOnDrop(task),
        }
    }
}

/// Aborts a task when dropped.
pub struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends `m` and expects it back.
pub async fn round_trip<T: Transport>(conn: &mut T, m: Message) {
    conn.send(m.clone()).await.unwrap();
    assert_eq!(bounded(conn.recv()).await.unwrap(), Some(m));
}
pub mod exchange;
