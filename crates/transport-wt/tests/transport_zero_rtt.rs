//! 0-RTT: a second session made with the same client configuration resumes the TLS session
//! and sends its SETTINGS as 0-RTT data, which this crate's server accepts; the message
//! connection on top works the same. Without `zero_rtt`, no 0-RTT.

mod transport_common;

use transport_common::{AbortOnDrop, bounded, client, echoing, raw_echo};
use transport_core::{Connector, Message, Transport};
use transport_wt::{StreamConfig, WtConnector, connect};

#[tokio::test]
async fn a_second_session_uses_0rtt() {
    let (url, cert, server) = raw_echo();
    let _server = AbortOnDrop(server);
    let mut config = client(&cert, StreamConfig::default()).client;
    config.zero_rtt = true;

    let first = bounded(connect(&url, config.clone())).await.unwrap();
    assert!(!first.zero_rtt_accepted(), "no ticket yet");
    // The ticket comes right after the handshake; give it a moment to be stored.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    bounded(first.close(0, "")).await.unwrap();

    let second = bounded(connect(&url, config.clone())).await.unwrap();
    assert!(second.zero_rtt_accepted(), "the ticket is used for 0-RTT");
    let (mut send, mut recv) = bounded(second.open_bi()).await.unwrap();
    send.write_all(b"after 0-RTT").await.unwrap();
    send.finish().unwrap();
    assert_eq!(
        bounded(recv.read_to_end(1024)).await.unwrap(),
        b"after 0-RTT"
    );

    // Off by default.
    let mut plain = config;
    plain.zero_rtt = false;
    let third = bounded(connect(&url, plain)).await.unwrap();
    assert!(!third.zero_rtt_accepted());
}

#[tokio::test]
async fn message_connections_of_one_connector_share_tickets() {
    let (url, cert, server) = echoing(StreamConfig::default());
    let _server = AbortOnDrop(server);
    let mut config = client(&cert, StreamConfig::default());
    config.client.zero_rtt = true;
    let connector = WtConnector::new(&url, config).unwrap();
    for i in 0..2 {
        let mut conn = bounded(connector.connect()).await.unwrap();
        let m = Message::text(format!("connection {i}"));
        conn.send(m.clone()).await.unwrap();
        assert_eq!(bounded(conn.recv()).await.unwrap(), Some(m));
        bounded(conn.close(1000, "")).await.unwrap();
    }
}

#[tokio::test]
async fn a_refused_0rtt_falls_back_to_a_full_handshake() {
    // Tickets are kept per host name, not per port: a ticket of the first server is offered
    // to the second, which does not know it and refuses the 0-RTT data.
    let (url_a, cert_a, server_a) = raw_echo();
    let _server_a = AbortOnDrop(server_a);
    let (url_b, cert_b, server_b) = raw_echo();
    let _server_b = AbortOnDrop(server_b);
    let mut config = client(&cert_a, StreamConfig::default()).client;
    config.cert_hash(cert_b.sha256);
    config.zero_rtt = true;

    let first = bounded(connect(&url_a, config.clone())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    bounded(first.close(0, "")).await.unwrap();

    let second = bounded(connect(&url_b, config)).await.unwrap();
    assert!(!second.zero_rtt_accepted());
    // Our SETTINGS were sent again: the session works.
    let (mut send, mut recv) = bounded(second.open_bi()).await.unwrap();
    send.write_all(b"full handshake").await.unwrap();
    send.finish().unwrap();
    assert_eq!(
        bounded(recv.read_to_end(1024)).await.unwrap(),
        b"full handshake"
    );
}
