//! Loopback numbers for the client against the echo server: session set-up time, 32-byte bidi
//! round trip, datagram loss. Ignored by default (timing, not correctness); run with
//! `cargo test -p transport-wt --release --test client_timings -- --ignored --nocapture`.

mod client_common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use client_common::{bounded, pinned, server};
use transport_wt::{WtServerConfig, connect, echo};

#[tokio::test]
#[ignore = "timing report, not a correctness test"]
async fn loopback_timings() {
    let (mut srv, cert) = server(WtServerConfig::default());
    let url = srv.url();
    let accept = tokio::spawn(async move {
        while let Some((session, _)) = srv.accept_session().await {
            tokio::spawn(echo(session));
        }
    });

    let rounds = 20u32;
    let mut setup = Duration::ZERO;
    for _ in 0..rounds {
        let start = Instant::now();
        let s = bounded(connect(&url, pinned(&cert))).await.unwrap();
        setup += start.elapsed();
        bounded(s.close(0, "")).await.unwrap();
    }
    let setup = setup / rounds;

    let session = bounded(connect(&url, pinned(&cert))).await.unwrap();
    let echoes = 200u32;
    let start = Instant::now();
    for _ in 0..echoes {
        let (mut send, mut recv) = bounded(session.open_bi()).await.unwrap();
        send.write_all(&[7; 32]).await.unwrap();
        send.finish().unwrap();
        assert_eq!(bounded(recv.read_to_end(64)).await.unwrap().len(), 32);
    }
    let rtt = start.elapsed() / echoes;

    let total = 1000;
    let mut got = 0;
    for i in 0..total {
        session
            .send_datagram(Bytes::from(format!("{i:08}")))
            .unwrap();
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(500), session.read_datagram()).await
    {
        got += 1;
    }
    println!("session set-up {setup:?}, 32 B bidi echo {rtt:?}, datagrams {got}/{total}");
    accept.abort();
}
