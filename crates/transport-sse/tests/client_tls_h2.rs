//! `https://` with a self-signed certificate (verification on, a custom CA makes it pass), and
//! HTTP/2: chosen by ALPN over TLS or by prior knowledge over TCP, with the POSTs multiplexed
//! on the stream's connection. The HTTP/2 peer is a small hyper server written here, not the
//! crate's server.

mod client_common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use client_common::{event, no_reconnect, recv};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use test_servers::sse::{Acceptor, End, Io, Reply, SseTestServer};
use tokio::sync::mpsc;
use transport_core::{Message, Transport, TransportError};
use transport_sse::SseConfig;
use transport_sse::protocol::{
    CONTENT_BATCH, CONTENT_BINARY, CONTENT_CLOSE, decode_batch, message_to_event, write_event,
};

fn cert() -> (String, String) {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

fn tls_server_config(
    cert: &str,
    key: &str,
    alpn: &[&[u8]],
) -> Arc<tokio_rustls::rustls::ServerConfig> {
    transport_core::tls::server_config(cert.as_bytes(), key.as_bytes(), alpn).unwrap()
}

/// Wraps the raw scenario server's connections in TLS.
fn acceptor(cert: &str, key: &str) -> Acceptor {
    let tls = tokio_rustls::TlsAcceptor::from(tls_server_config(cert, key, &[b"http/1.1"]));
    Arc::new(move |tcp| {
        let tls = tls.clone();
        Box::pin(async move {
            let stream = tls.accept(tcp).await?;
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    })
}

fn trusting(cert: &str) -> SseConfig {
    let mut c = no_reconnect();
    c.transport.tls.add_root_ca_pem(cert.to_owned());
    c.transport.tls.only_custom_roots = true;
    c
}

#[tokio::test]
async fn https_with_a_custom_ca() {
    let (cert, key) = cert();
    let server = SseTestServer::start_with(
        vec![Reply::events(["id: 1\ndata: secure\n\n"]).then(End::Hang)],
        acceptor(&cert, &key),
    )
    .await
    .unwrap();
    let url = server.url("/events");
    assert!(url.starts_with("https://127.0.0.1:"));
    for url in [url.clone(), url.replace("127.0.0.1", "localhost")] {
        let mut conn = transport_sse::connect(&url, trusting(&cert)).await.unwrap();
        assert_eq!(recv(&mut conn).await, event("secure", None, Some("1")));
        conn.close(1000, "").await.unwrap();
    }
    assert_eq!(server.gets().len(), 2);
}

#[tokio::test]
async fn an_unknown_issuer_is_a_tls_error() {
    let (cert, key) = cert();
    let server = SseTestServer::start_with(vec![Reply::silent()], acceptor(&cert, &key))
        .await
        .unwrap();
    let (other, _) = self::cert();
    let error = transport_sse::connect(&server.url("/events"), trusting(&other))
        .await
        .unwrap_err();
    assert!(matches!(error, TransportError::Tls { .. }), "{error:?}");
    assert!(!error.is_retryable());
    assert!(server.gets().is_empty());

    // Only the explicitly dangerous switch skips verification.
    let mut c = no_reconnect();
    c.transport.tls.danger_accept_invalid_certs = true;
    let conn = transport_sse::connect(&server.url("/events"), c)
        .await
        .unwrap();
    conn.close(1000, "").await.unwrap();
}

/// What the hyper peer saw of one request.
#[derive(Debug, Clone)]
struct Logged {
    version: Version,
    method: Method,
    body: Bytes,
}

#[derive(Debug, Default)]
struct PeerState {
    log: Mutex<Vec<Logged>>,
    stream: Mutex<Option<mpsc::Sender<Bytes>>>,
}

/// An independent two-way SSE peer on hyper (HTTP/1.1 and HTTP/2): the stream says hello, every
/// POSTed message is echoed back as an event.
struct HyperPeer {
    addr: SocketAddr,
    tls: bool,
    accepted: Arc<AtomicUsize>,
    state: Arc<PeerState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HyperPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HyperPeer {
    async fn start(tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(PeerState::default());
        let (count, st) = (accepted.clone(), state.clone());
        let is_tls = tls.is_some();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                let (st, acceptor) = (st.clone(), acceptor.clone());
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, st.clone()));
                    let builder = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    );
                    if let Some(acceptor) = acceptor {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let io = hyper_util::rt::TokioIo::new(tls);
                        let _ = builder.serve_connection(io, service).await;
                    } else {
                        let io = hyper_util::rt::TokioIo::new(tcp);
                        let _ = builder.serve_connection(io, service).await;
                    }
                });
            }
        });
        Self {
            addr,
            tls: is_tls,
            accepted,
            state,
            task,
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/events", self.addr)
    }

    fn log(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }
}

type PeerBody = BoxBody<Bytes, Infallible>;

async fn handle(
    req: Request<Incoming>,
    state: Arc<PeerState>,
) -> Result<Response<PeerBody>, Infallible> {
    let version = req.version();
    let method = req.method().clone();
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if method == Method::GET {
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let _ = tx.try_send(Bytes::from_static(b"id: 1\ndata: hello\n\n"));
        *state.stream.lock().unwrap() = Some(tx);
        state.log.lock().unwrap().push(Logged {
            version,
            method,
            body: Bytes::new(),
        });
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
        });
        let response = Response::builder()
            .header("content-type", "text/event-stream")
            .header("x-transport-send", "/events/send/peer")
            .body(StreamBody::new(frames).boxed())
            .unwrap();
        return Ok(response);
    }
    let body = req.into_body().collect().await.unwrap().to_bytes();
    state.log.lock().unwrap().push(Logged {
        version,
        method,
        body: body.clone(),
    });
    let no_content = || {
        Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()).boxed())
            .unwrap()
    };
    if content_type.as_deref() == Some(CONTENT_CLOSE) {
        // Closing the session ends its stream.
        state.stream.lock().unwrap().take();
        return Ok(no_content());
    }
    let messages = match content_type.as_deref() {
        Some(CONTENT_BATCH) => decode_batch(body, 1 << 20).unwrap(),
        Some(CONTENT_BINARY) => vec![Message::binary(body)],
        _ => vec![Message::text_from_bytes(body).unwrap()],
    };
    let mut out = BytesMut::new();
    for m in &messages {
        let (kind, data) = message_to_event(m).unwrap();
        write_event(&mut out, None, kind.as_deref(), &data);
    }
    let stream = state.stream.lock().unwrap().clone();
    if let Some(stream) = stream {
        let _ = stream.send(out.freeze()).await;
    }
    Ok(no_content())
}

/// Sends three messages one at a time through the peer's echo; returns the versions seen.
async fn echo_three(peer: &HyperPeer, config: SseConfig) -> Vec<Version> {
    let mut conn = transport_sse::connect(&peer.url(), config).await.unwrap();
    assert_eq!(recv(&mut conn).await, event("hello", None, Some("1")));
    conn.send(Message::text("one")).await.unwrap();
    assert_eq!(recv(&mut conn).await, event("one", None, Some("1")));
    conn.send(Message::binary(vec![7, 8])).await.unwrap();
    assert_eq!(recv(&mut conn).await, Message::binary(vec![7, 8]));
    conn.send(Message::text("c\r\nr")).await.unwrap();
    assert_eq!(recv(&mut conn).await, Message::text("c\r\nr"));
    let start = std::time::Instant::now();
    conn.close(1000, "").await.unwrap();
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "the peer ended the stream"
    );
    let log = peer.log();
    assert_eq!(log.len(), 5, "a GET, three POSTs and the close");
    assert_eq!(log[0].method, Method::GET);
    assert!(log[1..].iter().all(|l| l.method == Method::POST));
    assert_eq!(
        log[4].body,
        Bytes::from_static(b"{\"code\":1000,\"reason\":\"\"}")
    );
    log.iter().map(|l| l.version).collect()
}

#[tokio::test]
async fn http2_over_tls_carries_the_posts_on_the_stream_connection() {
    let (cert, key) = cert();
    let peer = HyperPeer::start(Some(tls_server_config(&cert, &key, &[b"h2", b"http/1.1"]))).await;
    let versions = echo_three(&peer, trusting(&cert)).await;
    assert!(
        versions.iter().all(|v| *v == Version::HTTP_2),
        "{versions:?}"
    );
    assert_eq!(peer.accepted.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn http1_over_tls_posts_on_a_second_kept_connection() {
    let (cert, key) = cert();
    let peer = HyperPeer::start(Some(tls_server_config(&cert, &key, &[b"http/1.1"]))).await;
    let versions = echo_three(&peer, trusting(&cert)).await;
    assert!(
        versions.iter().all(|v| *v == Version::HTTP_11),
        "{versions:?}"
    );
    assert_eq!(peer.accepted.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn http2_with_prior_knowledge_over_tcp() {
    let peer = HyperPeer::start(None).await;
    let mut c = no_reconnect();
    c.http2_prior_knowledge(true);
    let versions = echo_three(&peer, c).await;
    assert!(
        versions.iter().all(|v| *v == Version::HTTP_2),
        "{versions:?}"
    );
    assert_eq!(peer.accepted.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn plain_http1_by_default() {
    let peer = HyperPeer::start(None).await;
    let versions = echo_three(&peer, no_reconnect()).await;
    assert!(
        versions.iter().all(|v| *v == Version::HTTP_11),
        "{versions:?}"
    );
    assert_eq!(peer.accepted.load(Ordering::Relaxed), 2);
}
