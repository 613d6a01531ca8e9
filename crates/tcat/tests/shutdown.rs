//! SIGTERM to `tcat serve`: every client gets close code 1001, the server exits 0.

mod common;

use common::{Proc, WAIT, serve, tcat};
use transport_core::{CloseFrame, ReconnectPolicy, Transport as _, TransportError};

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let mut server = serve(&["--ws", "127.0.0.1:0"], 1);
    let url = server.url().to_owned();

    // A library client, to see the exact close frame (not reconnecting: 1001 is retryable).
    let mut config = transport_ws::WsConfig::default();
    config.transport.reconnect(ReconnectPolicy::disabled());
    let mut conn = transport_ws::connect(&url, config).await.unwrap();
    conn.send(transport_core::Message::text("ping"))
        .await
        .unwrap();
    let echo = tokio::time::timeout(WAIT, conn.recv()).await.unwrap();
    assert_eq!(echo.unwrap().unwrap().as_text(), Some("ping"));

    // A tcat client with stdin held open: it must report the 1001 close and exit 1.
    let url2 = url.clone();
    let tcat_client = tokio::task::spawn_blocking(move || {
        let mut client = Proc::spawn(tcat().args(["connect", &url2]));
        client.write(b"hello\n");
        assert_eq!(client.wait_line(WAIT, |_| true), "hello");
        client
    })
    .await
    .unwrap();

    server.terminate();
    let status = tokio::task::spawn_blocking(move || server.proc.wait(WAIT))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "serve exits 0 on SIGTERM");

    let end = tokio::time::timeout(WAIT, conn.recv()).await.unwrap();
    assert_eq!(
        end,
        Err(TransportError::ClosedByPeer {
            code: CloseFrame::GOING_AWAY,
            reason: "server shutting down".into()
        })
    );
    assert_eq!(
        conn.peer_close_frame().map(|f| f.code),
        Some(CloseFrame::GOING_AWAY)
    );

    let out = tokio::task::spawn_blocking(move || {
        let mut client = tcat_client;
        // stdin is still open: the exit comes from the server's close.
        let status = client.wait(WAIT);
        (status, client.finish(WAIT))
    })
    .await
    .unwrap();
    assert_eq!(out.0.code(), Some(1), "{:?}", out.1);
    assert!(out.1.stderr.contains("1001"), "{}", out.1.stderr);
}
