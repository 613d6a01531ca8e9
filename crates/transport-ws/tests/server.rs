//! Our server with our client and with raw peers: echo, request info, origin allow-list,
//! authorization, subprotocols, connection limit, handshake deadline, bad frames from the
//! client (1007, 1009), dead clients, graceful shutdown with close frames.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use transport_core::{
    Connection, ConnectionState, Message, ReconnectPolicy, Transport, TransportError,
};
use transport_ws::{ProxyConfig, WsConfig, WsServer, WsServerConfig};

const LIMIT: Duration = Duration::from_secs(15);

fn client_config() -> WsConfig {
    let mut c = WsConfig::default();
    c.proxy(ProxyConfig::none());
    c.transport.reconnect(ReconnectPolicy::disabled());
    c
}

/// Accepts connections and echoes on each until the server is dropped.
fn spawn_echo(mut server: WsServer) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((conn, _req)) = server.accept().await {
            tokio::spawn(echo(conn));
        }
    })
}

async fn echo(mut conn: Connection) {
    while let Ok(Some(m)) = conn.recv().await {
        if conn.send(m).await.is_err() {
            break;
        }
    }
}

async fn recv(t: &mut impl Transport) -> Result<Option<Message>, TransportError> {
    tokio::time::timeout(LIMIT, t.recv())
        .await
        .expect("recv timed out")
}

#[tokio::test]
async fn accepts_and_exposes_the_request() {
    let mut server = WsServer::bind("127.0.0.1:0", WsServerConfig::default())
        .await
        .unwrap();
    let url = format!("{}/chat?room=7", server.url());
    let mut cfg = client_config();
    cfg.transport
        .header("Authorization", "Bearer t0k3n")
        .unwrap();
    let (client, accepted) = tokio::join!(transport_ws::connect(&url, cfg), server.accept());
    let mut client = client.unwrap();
    let (mut conn, req) = accepted.unwrap();
    assert_eq!(req.path, "/chat");
    assert_eq!(req.query.as_deref(), Some("room=7"));
    assert_eq!(req.headers["authorization"], "Bearer t0k3n");
    assert!(req.peer_addr.is_some());
    assert_eq!(server.open_connections(), 1);
    client.send(Message::text("ping")).await.unwrap();
    assert_eq!(recv(&mut conn).await.unwrap(), Some(Message::text("ping")));
    conn.send(Message::binary(vec![1, 2])).await.unwrap();
    assert_eq!(
        recv(&mut client).await.unwrap(),
        Some(Message::binary(vec![1, 2]))
    );
    client.close(1000, "").await.unwrap();
    assert_eq!(recv(&mut conn).await.unwrap(), None);
}

#[tokio::test]
async fn origin_allow_list() {
    let mut cfg = WsServerConfig::default();
    cfg.policy.allow_origins(["https://app.example"]);
    let server = WsServer::bind("127.0.0.1:0", cfg).await.unwrap();
    let url = server.url();
    let _srv = spawn_echo(server);
    let mut good = client_config();
    good.transport
        .header("Origin", "https://app.example")
        .unwrap();
    transport_ws::connect(&url, good).await.unwrap();
    let mut bad = client_config();
    bad.transport
        .header("Origin", "https://evil.example")
        .unwrap();
    assert_eq!(
        transport_ws::connect(&url, bad).await.unwrap_err(),
        TransportError::HandshakeRejected { status: 403 }
    );
    assert_eq!(
        transport_ws::connect(&url, client_config())
            .await
            .unwrap_err(),
        TransportError::HandshakeRejected { status: 403 },
        "a missing Origin is refused when an allow-list is set"
    );
}

#[tokio::test]
async fn authorize_hook_can_refuse() {
    let mut cfg = WsServerConfig::default();
    cfg.policy
        .authorize(|req| match req.headers().get("authorization") {
            Some(v) if v == "Bearer good" => Ok(()),
            _ => Err(http::StatusCode::UNAUTHORIZED),
        });
    let server = WsServer::bind("127.0.0.1:0", cfg).await.unwrap();
    let url = server.url();
    let _srv = spawn_echo(server);
    assert_eq!(
        transport_ws::connect(&url, client_config())
            .await
            .unwrap_err(),
        TransportError::HandshakeRejected { status: 401 }
    );
    let mut ok = client_config();
    ok.transport.header("Authorization", "Bearer good").unwrap();
    transport_ws::connect(&url, ok).await.unwrap();
}

#[tokio::test]
async fn subprotocol_negotiation() {
    let mut cfg = WsServerConfig::default();
    cfg.subprotocols = vec!["v2.chat".into(), "v1.chat".into()];
    let server = WsServer::bind("127.0.0.1:0", cfg).await.unwrap();
    let url = server.url();
    let _srv = spawn_echo(server);
    let mut c = client_config();
    c.subprotocol("v1.chat").subprotocol("v2.chat");
    let conn = transport_ws::connect(&url, c).await.unwrap();
    assert_eq!(conn.info().subprotocol.as_deref(), Some("v2.chat"));
    let conn = transport_ws::connect(&url, client_config()).await.unwrap();
    assert_eq!(conn.info().subprotocol, None);
}

#[tokio::test]
async fn connection_limit_refuses_with_503() {
    let mut cfg = WsServerConfig::default();
    cfg.max_connections = 2;
    let server = WsServer::bind("127.0.0.1:0", cfg).await.unwrap();
    let url = server.url();
    let _srv = spawn_echo(server);
    let a = transport_ws::connect(&url, client_config()).await.unwrap();
    let _b = transport_ws::connect(&url, client_config()).await.unwrap();
    assert_eq!(
        transport_ws::connect(&url, client_config())
            .await
            .unwrap_err(),
        TransportError::HandshakeRejected { status: 503 }
    );
    a.close(1000, "").await.unwrap();
    // The slot frees once the server side has finished closing.
    let mut ok = false;
    for _ in 0..50 {
        if transport_ws::connect(&url, client_config()).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a closed connection gives its slot back");
}

#[tokio::test]
async fn slowloris_is_dropped_at_the_handshake_deadline() {
    let mut cfg = WsServerConfig::default();
    cfg.handshake_timeout = Duration::from_millis(300);
    let server = WsServer::bind("127.0.0.1:0", cfg).await.unwrap();
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(LIMIT, async {
        loop {
            // Dribble a byte now and then; the deadline still applies.
            match tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut buf)).await {
                Ok(result) => return result,
                Err(_) => {
                    let _ = tcp.write_all(b"X").await;
                }
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "connection dropped");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(server.open_connections(), 0);
}

#[tokio::test]
async fn a_connection_waiting_for_a_full_accept_backlog_is_served_meanwhile() {
    let mut cfg = WsServerConfig::default();
    cfg.accept_backlog = 1;
    let mut server = WsServer::bind("127.0.0.1:0", cfg).await.unwrap();
    let url = server.url();
    // The first fills the backlog; the second's link runs while it waits for room: its ping
    // is answered before the application takes it.
    let _first = transport_ws::connect(&url, client_config()).await.unwrap();
    let mut second = raw_client(&url).await;
    second.send(WsMessage::Ping("hi".into())).await.unwrap();
    let pong = tokio::time::timeout(LIMIT, second.next()).await.unwrap();
    assert!(
        matches!(&pong, Some(Ok(WsMessage::Pong(p))) if p.as_ref() == b"hi"),
        "{pong:?}"
    );
    second.send(WsMessage::text("early")).await.unwrap();
    let (_a, _) = tokio::time::timeout(LIMIT, server.accept())
        .await
        .unwrap()
        .unwrap();
    let (mut b, _) = tokio::time::timeout(LIMIT, server.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recv(&mut b).await.unwrap(), Some(Message::text("early")));
    b.send(Message::text("late")).await.unwrap();
    let late = tokio::time::timeout(LIMIT, second.next()).await.unwrap();
    assert!(
        matches!(&late, Some(Ok(WsMessage::Text(t))) if t.as_str() == "late"),
        "{late:?}"
    );
}

#[tokio::test]
async fn a_connection_the_backlog_has_no_room_for_by_the_deadline_is_closed() {
    let mut cfg = WsServerConfig::default();
    cfg.accept_backlog = 1;
    cfg.handshake_timeout = Duration::from_millis(300);
    let mut server = WsServer::bind("127.0.0.1:0", cfg).await.unwrap();
    let url = server.url();
    let _first = transport_ws::connect(&url, client_config()).await.unwrap();
    let mut second = transport_ws::connect(&url, client_config()).await.unwrap();
    let started = tokio::time::Instant::now();
    // Never taken: the server ends it once the handshake deadline has passed.
    let ended = recv(&mut second).await;
    assert!(matches!(ended, Ok(None) | Err(_)), "{ended:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let (_a, _) = tokio::time::timeout(LIMIT, server.accept())
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), server.accept())
            .await
            .is_err(),
        "the closed connection is not handed out"
    );
}

/// A raw client: handshake by tungstenite, then raw bytes on the socket.
async fn raw_client(url: &str) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let req = url.into_client_request().unwrap();
    let addr = format!(
        "{}:{}",
        req.uri().host().unwrap(),
        req.uri().port_u16().unwrap()
    );
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(req, tcp).await.unwrap().0
}

async fn expect_close_code(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>, code: u16) {
    let frame = tokio::time::timeout(LIMIT, async {
        while let Some(m) = ws.next().await {
            if let Ok(WsMessage::Close(f)) = m {
                return f;
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(frame.map(|f| u16::from(f.code)), Some(code));
}

#[tokio::test]
async fn invalid_utf8_from_a_client_closes_with_1007() {
    let mut server = WsServer::bind("127.0.0.1:0", WsServerConfig::default())
        .await
        .unwrap();
    let url = server.url();
    let (mut ws, accepted) = tokio::join!(raw_client(&url), server.accept());
    let (mut conn, _) = accepted.unwrap();
    // FIN+text, masked, length 2, mask 0, payload 0xff 0xfe.
    ws.get_mut()
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe])
        .await
        .unwrap();
    expect_close_code(&mut ws, 1007).await;
    let err = recv(&mut conn).await.unwrap_err();
    assert!(
        matches!(err, TransportError::ProtocolViolation { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn oversized_message_from_a_client_closes_with_1009() {
    let mut cfg = WsServerConfig::default();
    cfg.transport.max_message_size(1024);
    let mut server = WsServer::bind("127.0.0.1:0", cfg).await.unwrap();
    let url = server.url();
    let (mut ws, accepted) = tokio::join!(raw_client(&url), server.accept());
    let (mut conn, _) = accepted.unwrap();
    ws.send(WsMessage::Binary(vec![0u8; 4096].into()))
        .await
        .unwrap();
    expect_close_code(&mut ws, 1009).await;
    let err = recv(&mut conn).await.unwrap_err();
    assert!(
        matches!(err, TransportError::MessageTooLarge { limit: 1024, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn unmasked_client_frame_closes_with_1002() {
    let mut server = WsServer::bind("127.0.0.1:0", WsServerConfig::default())
        .await
        .unwrap();
    let url = server.url();
    let (mut ws, accepted) = tokio::join!(raw_client(&url), server.accept());
    let (mut conn, _) = accepted.unwrap();
    ws.get_mut()
        .write_all(&[0x81, 0x02, b'h', b'i'])
        .await
        .unwrap();
    expect_close_code(&mut ws, 1002).await;
    assert!(matches!(
        recv(&mut conn).await,
        Err(TransportError::ProtocolViolation { .. })
    ));
}

#[tokio::test]
async fn vanished_client_is_detected_by_keepalive() {
    let mut cfg = WsServerConfig::default();
    cfg.transport
        .keepalive(Some(Duration::from_millis(100)), Duration::from_millis(400));
    let mut server = WsServer::bind("127.0.0.1:0", cfg).await.unwrap();
    let url = server.url();
    // The raw client never reads, so it never answers pings.
    let (ws, accepted) = tokio::join!(raw_client(&url), server.accept());
    let (mut conn, _) = accepted.unwrap();
    let err = recv(&mut conn).await.unwrap_err();
    assert!(
        matches!(err, TransportError::ConnectionLost { .. }),
        "{err}"
    );
    drop(ws);
}

#[tokio::test]
async fn graceful_shutdown_sends_going_away() {
    let mut server = WsServer::bind("127.0.0.1:0", WsServerConfig::default())
        .await
        .unwrap();
    let url = server.url();
    let (client, accepted) = tokio::join!(
        transport_ws::connect(&url, client_config()),
        server.accept()
    );
    let mut client = client.unwrap();
    let (conn, _) = accepted.unwrap();
    let shutdown = tokio::spawn(server.shutdown());
    assert_eq!(
        recv(&mut client).await,
        Err(TransportError::ClosedByPeer {
            code: 1001,
            reason: "server shutting down".into()
        })
    );
    tokio::time::timeout(LIMIT, shutdown)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.state(), ConnectionState::Disconnected);
    assert!(
        transport_ws::connect(&url, client_config()).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn many_concurrent_senders_share_one_connection() {
    let mut server = WsServer::bind("127.0.0.1:0", WsServerConfig::default())
        .await
        .unwrap();
    let url = server.url();
    let (client, accepted) = tokio::join!(
        transport_ws::connect(&url, client_config()),
        server.accept()
    );
    let client = client.unwrap();
    let (mut conn, _) = accepted.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = client.sender();
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                s.send(Message::text(format!("{t}:{i}"))).await.unwrap();
            }
        }));
    }
    let mut last = [None::<u32>; 8];
    for _ in 0..1600 {
        let m = recv(&mut conn).await.unwrap().unwrap();
        let (t, i) = m.as_text().unwrap().split_once(':').unwrap();
        let (t, i): (usize, u32) = (t.parse().unwrap(), i.parse().unwrap());
        assert!(last[t].is_none_or(|l| l + 1 == i), "per-sender order kept");
        last[t] = Some(i);
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn stats_count_traffic_and_measure_keepalive_rtt() {
    let mut server = WsServer::bind("127.0.0.1:0", WsServerConfig::default())
        .await
        .unwrap();
    let url = server.url();
    let mut cfg = client_config();
    cfg.transport
        .keepalive(Some(Duration::from_millis(50)), Duration::from_secs(5));
    let (client, accepted) = tokio::join!(transport_ws::connect(&url, cfg), server.accept());
    let mut client = client.unwrap();
    let (conn, _) = accepted.unwrap();
    tokio::spawn(echo(conn));
    client.send(Message::text("12345")).await.unwrap();
    assert_eq!(
        recv(&mut client).await.unwrap(),
        Some(Message::text("12345"))
    );
    let s = client.stats();
    assert_eq!(
        (
            s.messages_sent,
            s.bytes_sent,
            s.messages_received,
            s.bytes_received
        ),
        (1, 5, 1, 5)
    );
    let mut rtt = None;
    for _ in 0..100 {
        rtt = client.stats().rtt;
        if rtt.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rtt = rtt.expect("a keepalive pong measured the round trip");
    assert!(rtt < Duration::from_secs(1), "{rtt:?}");
    assert!(client.stats().connected_for > Duration::ZERO);
}
