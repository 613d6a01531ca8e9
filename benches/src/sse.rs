//! Server-Sent Events fixtures: our server and client (transport-sse), and the floor: a raw
//! hyper HTTP/1.1 server streaming a body fed by a channel, read by a raw hyper client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use transport_core::{Connection, ReconnectPolicy};
use transport_sse::{SseConfig, SseServer, SseServerConfig};

/// Our server settings for the benches: room for `sessions` streams.
pub fn ours_server_config(sessions: usize) -> SseServerConfig {
    let mut config = SseServerConfig::default();
    config.max_sessions = sessions;
    config.accept_backlog = 1024;
    // Every benchmark client comes from 127.0.0.1, thousands of times a second.
    config.ip_limits = transport_core::IpLimits::unlimited();
    config
}

/// Our client settings: reconnect off.
pub fn ours_client_config() -> SseConfig {
    let mut config = SseConfig::default();
    config.transport.reconnect(ReconnectPolicy::disabled());
    config
}

/// Our server on 127.0.0.1:0 and one client connected to it: `(server side, client side)`.
///
/// # Panics
/// When binding or connecting fails (benchmarks only).
pub async fn ours_pair() -> (SseServer, Connection, Connection) {
    let mut server = SseServer::bind("127.0.0.1:0", ours_server_config(16))
        .await
        .expect("bind");
    let url = server.url();
    let (client, accepted) = tokio::join!(
        transport_sse::connect(&url, ours_client_config()),
        server.accept()
    );
    let (session, _request) = accepted.expect("a session");
    (server, session, client.expect("connect"))
}

/// The body chunks a raw stream sends: one per event.
pub type ChunkSender = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

/// A raw hyper server on 127.0.0.1:0 answering every request with a `text/event-stream` body
/// fed from a channel; the sender of each stream is handed out on `streams`.
///
/// # Panics
/// When binding fails (benchmarks only).
pub async fn raw_hyper_server() -> (SocketAddr, mpsc::Receiver<ChunkSender>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (streams_tx, streams) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let streams_tx = streams_tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    let (tx, rx) = mpsc::channel(64);
                    let streams_tx = streams_tx.clone();
                    async move {
                        let _ = streams_tx.send(tx).await;
                        let body = StreamBody::new(futures_util::stream::unfold(
                            rx,
                            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
                        ));
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "text/event-stream")
                                .header("cache-control", "no-store")
                                .body(body)
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, streams)
}

/// A raw hyper HTTP/1.1 client GET of `/events` on `addr`: the response body, read frame by
/// frame by the caller. The connection task runs in the background.
///
/// # Panics
/// When connecting fails (benchmarks only).
pub async fn raw_hyper_get(addr: SocketAddr) -> Incoming {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let request = http::Request::builder()
        .uri("/events")
        .header("host", addr.to_string())
        .header("accept", "text/event-stream")
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    // Keep the sender alive with the connection: dropping it would not close a streaming
    // response, but holding it is the honest shape of a client.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        drop(sender);
    });
    response.into_body()
}

/// Reads body frames until `len` bytes arrived (one event may come in several frames).
///
/// # Panics
/// When the body ends or fails (benchmarks only).
pub async fn read_body_bytes(body: &mut Incoming, len: usize) {
    let mut got = 0;
    while got < len {
        let frame = body.frame().await.expect("a frame").expect("ok");
        if let Ok(data) = frame.into_data() {
            got += data.len();
        }
    }
}
