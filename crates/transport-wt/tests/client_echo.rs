//! The client against this crate's server running `echo`: session set-up with a
//! pinned certificate hash and with a custom CA, bidirectional and unidirectional streams,
//! datagrams, server-opened streams.

use std::time::Duration;

use bytes::Bytes;
use transport_wt::cert::{self, SelfSignedCert};
use transport_wt::{WtClientConfig, WtServer, WtServerConfig, WtSession, connect, echo};

const LIMIT: Duration = Duration::from_secs(10);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f).await.expect("timed out")
}

/// An echo server on 127.0.0.1, port 0; returns its URL and certificate.
fn echo_server() -> (String, SelfSignedCert, tokio::task::JoinHandle<()>) {
    let cert = cert::generate(&[]).unwrap();
    let mut server = WtServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        WtServerConfig::default(),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .unwrap();
    let url = server.url();
    let task = tokio::spawn(async move {
        while let Some((session, _request)) = server.accept_session().await {
            tokio::spawn(echo(session));
        }
    });
    (url, cert, task)
}

fn pinned(cert: &SelfSignedCert) -> WtClientConfig {
    let mut config = WtClientConfig::default();
    config.cert_hash(cert.sha256);
    config
}

async fn bidi_round_trip(session: &WtSession, payload: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = session.open_bi().await.unwrap();
    send.write_all(payload).await.unwrap();
    send.finish().unwrap();
    recv.read_to_end(1 << 20).await.unwrap()
}

#[tokio::test]
async fn streams_and_datagrams_with_a_pinned_hash() {
    let (url, cert, server) = echo_server();
    let session = bounded(connect(&format!("{url}/echo"), pinned(&cert)))
        .await
        .unwrap();
    assert_eq!(session.session_id() % 4, 0);

    // Bidirectional: several at once, one large.
    for i in 0..5u8 {
        assert_eq!(bounded(bidi_round_trip(&session, &[i; 32])).await, [i; 32]);
    }
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(bounded(bidi_round_trip(&session, &big)).await, big);

    // Unidirectional: echo answers on a stream it opens.
    let mut send = bounded(session.open_uni()).await.unwrap();
    send.write_all(b"one way").await.unwrap();
    send.finish().unwrap();
    let mut back = bounded(session.accept_uni()).await.unwrap();
    assert_eq!(bounded(back.read_to_end(1024)).await.unwrap(), b"one way");

    // Datagrams: loopback loses none in practice, but allow a few.
    let max = session.max_datagram_size().unwrap();
    assert!(max > 1000, "{max}");
    let total = 200;
    for i in 0..total {
        session
            .send_datagram(Bytes::from(format!("dg {i}")))
            .unwrap();
    }
    let mut got = 0;
    while got < total {
        match tokio::time::timeout(Duration::from_secs(1), session.read_datagram()).await {
            Ok(d) => {
                assert!(d.unwrap().starts_with(b"dg "));
                got += 1;
            }
            Err(_) => break,
        }
    }
    assert!(
        got >= total * 9 / 10,
        "{got} of {total} datagrams came back"
    );
    assert!(matches!(
        session.send_datagram(Bytes::from(vec![0; max + 1])),
        Err(transport_core::TransportError::MessageTooLarge { .. })
    ));

    bounded(session.close(0, "done")).await.unwrap();
    assert!(matches!(
        session.open_bi().await,
        Err(transport_core::TransportError::Closed)
    ));
    server.abort();
}

#[tokio::test]
async fn custom_ca_instead_of_a_pin() {
    let (url, cert, server) = echo_server();
    let mut config = WtClientConfig::default();
    config.transport.tls.add_root_ca_pem(cert.cert_pem.clone());
    config.transport.tls.only_custom_roots = true;
    let session = bounded(connect(&url, config)).await.unwrap();
    assert_eq!(bounded(bidi_round_trip(&session, b"ca")).await, b"ca");
    server.abort();
}

#[tokio::test]
async fn session_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    fn future_is_send<F: std::future::Future + Send>(_: F) {}
    check::<WtSession>();
    future_is_send(connect("https://127.0.0.1:1", WtClientConfig::default()));
}
