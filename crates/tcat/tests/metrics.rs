//! `tcat serve --metrics ADDR`: the Prometheus endpoint reports connections, handshakes and
//! messages of the WebSocket and SSE listeners, and `--max-connections-per-ip` refusals.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use common::{Server, WAIT, serve};
use transport_core::{Connection, Message, ReconnectPolicy, Transport as _};

/// Starts `tcat serve ARGS --metrics 127.0.1:0` with `listeners` listeners; returns the
/// server and the metrics URL's `HOST:PORT`.
fn serve_with_metrics(args: &[&str], listeners: usize) -> (Server, String) {
    let mut all = args.to_vec();
    all.extend(["--metrics", "127.0.1:0"]);
    let mut server = serve(&all, listeners);
    let line = server.proc.wait_line(WAIT, |l| l.starts_with("metrics "));
    let url = line.split_whitespace().last().unwrap_or_default();
    let addr = url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected metrics line {line:?}"));
    (server, addr.to_owned())
}

/// `GET /metrics` over a plain socket; the body.
fn scrape(addr: &str) -> String {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        tcp,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    body.to_owned()
}

/// The value of the sample `name{labels...}` (all given labels present), 0 when absent.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            series.strip_prefix(name).is_some_and(|rest| {
                rest.starts_with('{')
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            })
        })
        .map_or(0, |(_, v)| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: {v:?} is not a whole number"))
        })
}

/// Scrapes until `done` holds for the text, at most `WAIT`.
async fn scrape_until(addr: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let addr2 = addr.to_owned();
        let text = tokio::task::spawn_blocking(move || scrape(&addr2))
            .await
            .unwrap();
        if done(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} not reached within {WAIT:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn echo_round_trips(conn: &mut Connection, n: usize) {
    for i in 0..n {
        conn.send(Message::text(format!("hello {i}")))
            .await
            .unwrap();
        let echo = tokio::time::timeout(WAIT, conn.recv()).await.unwrap();
        assert_eq!(
            echo.unwrap().unwrap().as_text(),
            Some(format!("hello {i}").as_str())
        );
    }
}

fn ws_config() -> transport_ws::WsConfig {
    let mut c = transport_ws::WsConfig::default();
    c.proxy(transport_ws::ProxyConfig::none());
    c.transport.reconnect(ReconnectPolicy::disabled());
    c
}

#[tokio::test]
async fn counts_connections_messages_and_rejected_handshakes() {
    let (server, metrics) = serve_with_metrics(&["--ws", "127.0.1:0", "--sse", "127.0.1:0"], 2);
    let ws_url = server.urls[0].clone();
    let sse_url = server.urls[1].clone();

    let before = tokio::task::spawn_blocking({
        let m = metrics.clone();
        move || scrape(&m)
    })
    .await
    .unwrap();
    let ws = [("transport", "ws")];
    let sse = [("transport", "sse")];
    assert_eq!(value(&before, "transport_connections", &ws), 0);
    assert_eq!(value(&before, "transport_messages_received_total", &ws), 0);

    let mut ws_conn = transport_ws::connect(&ws_url, ws_config()).await.unwrap();
    let mut sse_config = transport_sse::SseConfig::default();
    sse_config.transport.reconnect(ReconnectPolicy::disabled());
    let mut sse_conn = transport_sse::connect(&sse_url, sse_config).await.unwrap();
    echo_round_trips(&mut ws_conn, 3).await;
    echo_round_trips(&mut sse_conn, 2).await;

    // A request that is not a WebSocket handshake (the server drops it).
    let ws_addr = ws_url.strip_prefix("ws://").unwrap().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(&ws_addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
    })
    .await
    .unwrap();

    let during = scrape_until(&metrics, "counts while connected", |t| {
        value(t, "transport_handshakes_rejected_total", &ws) >= 1
    })
    .await;
    println!("{during}");
    assert_eq!(value(&during, "transport_connections", &ws), 1);
    assert_eq!(value(&during, "transport_connections", &sse), 1);
    assert_eq!(
        value(&during, "transport_handshakes_accepted_total", &ws),
        1
    );
    assert_eq!(
        value(&during, "transport_handshakes_accepted_total", &sse),
        1
    );
    assert_eq!(value(&during, "transport_messages_received_total", &ws), 3);
    assert_eq!(value(&during, "transport_messages_sent_total", &ws), 3);
    assert_eq!(value(&during, "transport_messages_received_total", &sse), 2);
    assert_eq!(value(&during, "transport_messages_sent_total", &sse), 2);
    // "hello 0".."hello 2": 7 bytes each.
    assert_eq!(value(&during, "transport_bytes_received_total", &ws), 21);
    assert_eq!(value(&during, "transport_bytes_sent_total", &ws), 21);
    assert_eq!(
        value(
            &during,
            "transport_handshakes_rejected_total",
            &[("transport", "ws"), ("reason", "bad_request")]
        ),
        1
    );

    ws_conn.close(1000, "").await.unwrap();
    sse_conn.close(1000, "").await.unwrap();
    scrape_until(&metrics, "the WebSocket connection gauge back to 0", |t| {
        value(t, "transport_connections", &ws) == 0
    })
    .await;
    server.terminate();
}

/// `--session-grace`: an SSE session whose stream dropped ends after the grace, not the
/// default 30 s (longer than `WAIT`).
#[tokio::test]
async fn session_grace_ends_an_abandoned_sse_session() {
    let (server, metrics) = serve_with_metrics(&["--sse", "127.0.1:0", "--session-grace", "1"], 1);
    let sse_url = server.urls[0].clone();
    let rest = sse_url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let (addr, path) = (addr.to_owned(), path.to_owned());
    // A raw stream request whose socket is dropped once the response head arrived.
    tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        write!(tcp, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    })
    .await
    .unwrap();
    let sse = [("transport", "sse")];
    scrape_until(&metrics, "the session counted", |t| {
        value(t, "transport_handshakes_accepted_total", &sse) == 1
    })
    .await;
    scrape_until(&metrics, "the abandoned session ended", |t| {
        value(t, "transport_connections", &sse) == 0
    })
    .await;
    server.terminate();
}

#[tokio::test]
async fn per_ip_limit_refusals_are_counted() {
    let (server, metrics) =
        serve_with_metrics(&["--ws", "127.0.1:0", "--max-connections-per-ip", "1"], 1);
    let url = server.url().to_owned();
    let mut first = transport_ws::connect(&url, ws_config()).await.unwrap();
    let refused = transport_ws::connect(&url, ws_config()).await.unwrap_err();
    assert_eq!(
        refused,
        transport_core::TransportError::HandshakeRejected { status: 429 }
    );
    echo_round_trips(&mut first, 1).await;
    let text = scrape_until(&metrics, "the ip_limit refusal", |t| {
        value(
            t,
            "transport_handshakes_rejected_total",
            &[("transport", "ws"), ("reason", "ip_limit")],
        ) == 1
    })
    .await;
    assert_eq!(
        value(&text, "transport_connections", &[("transport", "ws")]),
        1
    );
    server.terminate();
}

#[test]
fn other_paths_are_not_found() {
    let (server, metrics) = serve_with_metrics(&["--ws", "127.0.1:0"], 1);
    let mut tcp = TcpStream::connect(&metrics).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    server.terminate();
}

#[tokio::test]
async fn counts_webtransport_sessions() {
    let mut cmd = common::tcat();
    cmd.args(["serve", "--wt", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let mut proc = common::Proc::spawn(&mut cmd);
    let hash = proc
        .wait_line(WAIT, |l| l.starts_with("cert-sha256 "))
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_owned();
    let url = proc
        .wait_line(WAIT, |l| l.starts_with("listening wt "))
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_owned();
    let line = proc.wait_line(WAIT, |l| l.starts_with("metrics "));
    let metrics = line
        .trim_start_matches("metrics http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let wt = [("transport", "wt")];

    let mut client = common::tcat();
    client.args(["connect", "--transport", "wt", "--cert-hash", &hash, &url]);
    let mut client = common::Proc::spawn(&mut client);
    client.write(b"over quic\n");
    assert_eq!(client.line(WAIT).as_deref(), Some("over quic"));
    let during = scrape_until(&metrics, "the WebTransport session counted", |t| {
        value(t, "transport_connections", &wt) == 1
    })
    .await;
    assert_eq!(
        value(&during, "transport_handshakes_accepted_total", &wt),
        1
    );
    client.close_stdin();
    let out = tokio::task::spawn_blocking(move || client.finish(WAIT))
        .await
        .unwrap();
    assert_eq!(out.code(), Some(0), "{out:?}");
    scrape_until(&metrics, "the WebTransport gauge back to 0", |t| {
        value(t, "transport_connections", &wt) == 0
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &proc.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
