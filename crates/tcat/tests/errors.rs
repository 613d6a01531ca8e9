//! Exit codes for failures: timeouts (3), connection and protocol errors (1), usage (2).

mod common;

use std::time::{Duration, Instant};

use common::{Proc, WAIT, run, tcat};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use transport_core::Transport as _;
use transport_ws::{WsServer, WsServerConfig};

/// Runs `tcat ARGS` on a blocking thread so the test's runtime can keep serving.
async fn run_async(args: Vec<String>) -> common::Finished {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Proc::spawn(tcat().args(&args)).finish(WAIT)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn timeout_against_a_server_that_never_answers_the_handshake_exits_3() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    // Accepts and stays silent, holding the sockets until the test ends.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while held.len() < 16 {
            let Ok((socket, _)) = listener.accept().await else {
                break;
            };
            held.push(socket);
        }
        std::future::pending::<()>().await;
    });
    let started = Instant::now();
    let out = run_async(vec![
        "connect".into(),
        "--timeout".into(),
        "1".into(),
        url.clone(),
    ])
    .await;
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);

    // The connect timeout alone exits 3 as well.
    let out = run_async(vec![
        "connect".into(),
        "--connect-timeout".into(),
        "0.5".into(),
        url,
    ])
    .await;
    assert_eq!(out.code(), Some(3), "{out:?}");
    silent.abort();
}

#[test]
fn connecting_to_a_closed_port_exits_1() {
    // Bind, note the port, release it: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(&["connect", &format!("ws://127.0.0.1:{port}/")], b"");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
}

#[tokio::test]
async fn handshake_refused_with_http_404_exits_1() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/nope", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ =
            tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut socket, &mut buf)).await;
        let _ = socket
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            .await;
        let _ = socket.shutdown().await;
    });
    let out = run_async(vec!["connect".into(), url]).await;
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("404"), "{}", out.stderr);
    server.abort();
}

#[tokio::test]
async fn peer_close_with_a_code_other_than_1000_exits_1() {
    let mut server = WsServer::bind("127.0.0.1:0", WsServerConfig::default())
        .await
        .unwrap();
    let url = server.url();
    let peer = tokio::spawn(async move {
        let (mut conn, _) = tokio::time::timeout(WAIT, server.accept())
            .await
            .unwrap()
            .unwrap();
        let first = tokio::time::timeout(WAIT, conn.recv()).await.unwrap();
        assert_eq!(first.unwrap().unwrap().as_text(), Some("hi"));
        conn.close(4000, "go away").await.unwrap();
    });
    let args: [String; 4] = ["connect".into(), "--count".into(), "5".into(), url];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = Proc::spawn(tcat().args(&args));
        proc.write(b"hi\n");
        proc.finish(WAIT)
    })
    .await
    .unwrap();
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("4000"), "{}", out.stderr);
    assert!(out.stderr.contains("go away"), "{}", out.stderr);
    peer.await.unwrap();
}

#[test]
fn usage_errors_exit_2() {
    let cases: &[&[&str]] = &[
        &[],
        &["connect"],
        &["connect", "ftp://127.0.0.1:1/"],
        &["connect", "--transport", "sse", "ws://127.0.0.1:1/"],
        &["connect", "--subprotocol", "chat", "http://127.0.0.1:1/"],
        &[
            "connect",
            "--proxy",
            "http://127.0.0.1:2",
            "http://127.0.0.1:1/",
        ],
        &["connect", "127.0.0.1:80"],
        &["connect", "--transport", "ws", "https://127.0.0.1:1/"],
        &[
            "connect",
            "--transport",
            "carrier-pigeon",
            "ws://127.0.0.1:1/",
        ],
        &["connect", "--count", "0", "ws://127.0.0.1:1/"],
        &["connect", "--format", "xml", "ws://127.0.0.1:1/"],
        &["connect", "--timeout", "soon", "ws://127.0.0.1:1/"],
        &["connect", "--header", "no colon", "ws://127.0.0.1:1/"],
        &[
            "connect",
            "--ca-cert",
            "/nonexistent/ca.pem",
            "wss://127.0.0.1:1/",
        ],
        &["connect", "ws://"],
        &["serve"],
        &["serve", "--mode", "echo"],
        &["serve", "--ws", "nonsense"],
        &["serve", "--wss", "127.0.0.1:0"],
        &["serve", "--sse", "nonsense"],
        &["serve", "--sses", "127.0.0.1:0"],
        &[
            "serve",
            "--sse",
            "127.0.0.1:0",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
        ],
        &["serve", "--ws", "127.0.0.1:0", "--mode", "shout"],
        &["frobnicate"],
    ];
    for args in cases {
        let out = run(args, b"");
        assert_eq!(out.code(), Some(2), "tcat {args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "tcat {args:?} explains itself");
    }
}

#[test]
fn help_shows_examples() {
    let out = run(&["connect", "--help"], b"");
    assert_eq!(out.code(), Some(0));
    let help = out.stdout.join("\n");
    assert!(help.contains("Examples:"), "{help}");
    assert!(help.contains("--danger-accept-invalid-certs"), "{help}");
}
