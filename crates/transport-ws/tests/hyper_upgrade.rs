//! Mounting the WebSocket server in an existing hyper HTTP/1.1 service.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use transport_core::{Message, ReconnectPolicy, Transport, TransportError};
use transport_ws::{ProxyConfig, WsConfig, WsServerConfig};

type Body = Either<Empty<Bytes>, Full<Bytes>>;

async fn serve(listener: TcpListener, config: Arc<WsServerConfig>) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            return;
        };
        let config = config.clone();
        tokio::spawn(async move {
            let service = service_fn(move |mut req: hyper::Request<Incoming>| {
                let config = config.clone();
                async move {
                    if req.uri().path() != "/ws" {
                        return Ok::<_, Infallible>(hyper::Response::new(Body::Right(Full::from(
                            "plain http",
                        ))));
                    }
                    match transport_ws::upgrade(&mut req, config, Some(peer)) {
                        Ok((response, pending)) => {
                            tokio::spawn(async move {
                                let Ok((mut conn, request)) = pending.finish().await else {
                                    return;
                                };
                                assert_eq!(request.path, "/ws");
                                while let Ok(Some(m)) = conn.recv().await {
                                    let _ = conn.send(m).await;
                                }
                            });
                            Ok(response.map(Body::Left))
                        }
                        Err(refusal) => Ok(refusal.map(Body::Left)),
                    }
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
        });
    }
}

fn client() -> WsConfig {
    let mut c = WsConfig::default();
    c.proxy(ProxyConfig::none());
    c.transport.reconnect(ReconnectPolicy::disabled());
    c
}

#[tokio::test]
async fn upgrades_inside_a_hyper_service() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = WsServerConfig::default();
    cfg.policy.allow_origins(["https://ok.example"]);
    let server = tokio::spawn(serve(listener, Arc::new(cfg)));

    let mut c = client();
    c.transport.header("Origin", "https://ok.example").unwrap();
    let mut conn = transport_ws::connect(&format!("ws://{addr}/ws"), c)
        .await
        .unwrap();
    conn.send(Message::text("through hyper")).await.unwrap();
    assert_eq!(
        conn.recv().await.unwrap(),
        Some(Message::text("through hyper"))
    );
    conn.close(1000, "").await.unwrap();

    let mut bad = client();
    bad.transport
        .header("Origin", "https://evil.example")
        .unwrap();
    assert_eq!(
        transport_ws::connect(&format!("ws://{addr}/ws"), bad)
            .await
            .unwrap_err(),
        TransportError::HandshakeRejected { status: 403 }
    );
    // A non-upgrade path is plain HTTP: the handshake is refused with its status.
    let err = transport_ws::connect(&format!("ws://{addr}/other"), client())
        .await
        .unwrap_err();
    assert_eq!(err, TransportError::HandshakeRejected { status: 200 });
    server.abort();
}
