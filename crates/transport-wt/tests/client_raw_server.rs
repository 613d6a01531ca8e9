//! The client against a scripted HTTP/3 server written here on quinn with this crate's `proto`
//! module, to drive what a well-behaved server does not: odd orderings of CLOSE_WEBTRANSPORT_SESSION
//! and the end of the CONNECT stream, Huffman-coded responses, SETTINGS without WebTransport.

mod client_common;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use client_common::bounded;
use transport_core::TransportError;
use transport_wt::proto::capsule::{self, Capsule};
use transport_wt::proto::frame::{Frame, FrameReader};
use transport_wt::proto::settings::{self, Settings};
use transport_wt::proto::{huffman, qpack, stream, varint};
use transport_wt::{SessionClose, WtClientConfig, connect};

/// A QUIC server endpoint on 127.0.0.1:0 with a fresh certificate, and a client config pinning
/// it.
fn endpoint() -> (quinn::Endpoint, WtClientConfig) {
    let cert = transport_wt::cert::generate(&[]).unwrap();
    let tls = transport_core::tls::server_config(
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
        &[b"h3"],
    )
    .unwrap();
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(Arc::unwrap_or_clone(tls)).unwrap();
    let server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let ep = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
    let mut config = WtClientConfig::default();
    config.cert_hash(cert.sha256);
    (ep, config)
}

fn url(ep: &quinn::Endpoint) -> String {
    format!("https://{}/raw", ep.local_addr().unwrap())
}

/// Reads frames from `recv` until `reader` yields one.
async fn next_frame(recv: &mut quinn::RecvStream, reader: &mut FrameReader) -> Option<Frame> {
    loop {
        if let Some(f) = reader.next_frame().unwrap() {
            return Some(f);
        }
        let chunk = recv.read_chunk(65_536, true).await.unwrap()?;
        reader.push(&chunk.bytes);
    }
}

/// The server side of one session up to the response; returns the CONNECT stream.
struct Accepted {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    reader: FrameReader,
    _control: quinn::SendStream,
}

async fn accept(ep: &quinn::Endpoint, settings: Settings, response: Vec<u8>) -> Option<Accepted> {
    let conn = ep.accept().await.unwrap().await.unwrap();
    let mut control = conn.open_uni().await.unwrap();
    let mut buf = BytesMut::new();
    varint::encode(stream::CONTROL, &mut buf).unwrap();
    Frame::Settings(settings).encode(&mut buf);
    control.write_all(&buf).await.unwrap();

    // The client's control stream: type 0, then SETTINGS enabling WebTransport and datagrams.
    let mut uni = conn.accept_uni().await.unwrap();
    let mut ty = [0u8; 1];
    uni.read_exact(&mut ty).await.unwrap();
    assert_eq!(ty, [0]);
    let mut reader = FrameReader::default();
    let Some(Frame::Settings(client)) = next_frame(&mut uni, &mut reader).await else {
        panic!("no SETTINGS");
    };
    assert!(client.enabled(settings::ENABLE_WEBTRANSPORT));
    assert!(client.enabled(settings::H3_DATAGRAM));
    tokio::spawn(async move {
        // Keep the client's control stream open and drained.
        let _ = uni.read_to_end(1 << 20).await;
    });

    let (mut send, mut recv) =
        tokio::time::timeout(std::time::Duration::from_millis(500), conn.accept_bi())
            .await
            .ok()?
            .ok()?;
    let mut reader = FrameReader::default();
    let Some(Frame::Headers(block)) = next_frame(&mut recv, &mut reader).await else {
        panic!("no HEADERS");
    };
    let fields = qpack::decode_field_section(&block, 4096).unwrap();
    let get = |n: &str| {
        fields
            .iter()
            .find(|f| f.name == n.as_bytes())
            .map(|f| String::from_utf8(f.value.clone()).unwrap())
    };
    assert_eq!(get(":method").as_deref(), Some("CONNECT"));
    assert_eq!(get(":protocol").as_deref(), Some("webtransport"));
    assert_eq!(get(":scheme").as_deref(), Some("https"));
    assert_eq!(get(":path").as_deref(), Some("/raw"));
    send.write_all(&Frame::Headers(Bytes::from(response)).to_bytes())
        .await
        .unwrap();
    Some(Accepted {
        conn,
        send,
        recv,
        reader,
        _control: control,
    })
}

fn server_settings() -> Settings {
    let mut s = Settings::new();
    s.set(settings::ENABLE_WEBTRANSPORT, 1).unwrap();
    s.set(settings::H3_DATAGRAM, 1).unwrap();
    s.set(settings::ENABLE_CONNECT_PROTOCOL, 1).unwrap();
    s.set(0x21, 0).unwrap(); // a grease setting
    s
}

/// `:status` with a Huffman-coded literal value (literal with static name reference 24), and a
/// Huffman-coded `server` header.
fn huffman_response(status: &str) -> Vec<u8> {
    let mut block = vec![0, 0];
    let v = huffman::encode(status.as_bytes());
    qpack::encode_int(24, 4, 0x50, &mut block);
    qpack::encode_int(v.len() as u64, 7, 0x80, &mut block);
    block.extend(&v);
    let v = huffman::encode(b"raw-test");
    qpack::encode_int(92, 4, 0x50, &mut block);
    qpack::encode_int(v.len() as u64, 7, 0x80, &mut block);
    block.extend(&v);
    block
}

#[tokio::test]
async fn server_close_capsule_reaches_the_client() {
    let (ep, config) = endpoint();
    let server = {
        let ep = ep.clone();
        tokio::spawn(async move {
            let mut a = accept(&ep, server_settings(), huffman_response("200"))
                .await
                .unwrap();
            let close = Capsule::close(9, "raw bye").unwrap().to_bytes();
            a.send
                .write_all(&Frame::Data(close).to_bytes())
                .await
                .unwrap();
            a.send.finish().unwrap();
            a.conn.closed().await;
        })
    };
    let session = bounded(connect(&url(&ep), config)).await.unwrap();
    assert_eq!(session.response_headers()["server"], "raw-test");
    assert_eq!(
        bounded(session.closed()).await,
        SessionClose::Peer {
            code: 9,
            reason: "raw bye".into()
        }
    );
    assert_eq!(
        bounded(session.accept_uni()).await.unwrap_err(),
        TransportError::ClosedByPeer {
            code: 9,
            reason: "raw bye".into()
        }
    );
    bounded(server).await.unwrap();
}

#[tokio::test]
async fn client_close_sends_the_capsule_then_fin() {
    let (ep, config) = endpoint();
    let server = {
        let ep = ep.clone();
        tokio::spawn(async move {
            let mut a = accept(&ep, server_settings(), huffman_response("200"))
                .await
                .unwrap();
            let mut capsules = Vec::new();
            while let Some(f) = next_frame(&mut a.recv, &mut a.reader).await {
                let Frame::Data(p) = f else {
                    panic!("unexpected frame {f:?}")
                };
                capsules.extend_from_slice(&p);
            }
            // The stream ended (FIN) after exactly one capsule.
            let (c, n) = capsule::decode(&capsules, 4096).unwrap().unwrap();
            assert_eq!(n, capsules.len());
            c
        })
    };
    let session = bounded(connect(&url(&ep), config)).await.unwrap();
    bounded(session.close(5, "cya")).await.unwrap();
    assert_eq!(
        bounded(server).await.unwrap(),
        Capsule::Close {
            code: 5,
            reason: "cya".into()
        }
    );
}

/// A server that answers the client's close with its own FIN (as ours and browsers do) gets the
/// connection closed with the application's code and reason, not HTTP/3's NO_ERROR.
#[tokio::test]
async fn a_close_answered_with_a_fin_carries_the_application_code() {
    let (ep, config) = endpoint();
    let server = {
        let ep = ep.clone();
        tokio::spawn(async move {
            let mut a = accept(&ep, server_settings(), huffman_response("200"))
                .await
                .unwrap();
            let Some(Frame::Data(_)) = next_frame(&mut a.recv, &mut a.reader).await else {
                panic!("no capsule");
            };
            a.send.finish().unwrap();
            a.conn.closed().await
        })
    };
    let session = bounded(connect(&url(&ep), config)).await.unwrap();
    bounded(session.close(9, "done")).await.unwrap();
    match bounded(server).await.unwrap() {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), 9);
            assert_eq!(&close.reason[..], b"done");
        }
        other => panic!("the server saw {other:?}"),
    }
}

/// A client that closes and then ends at once (its runtime dropped, as a process exits) has
/// sent its CONNECTION_CLOSE: the server learns the code and reason from it, not from its idle
/// timeout (quinn's default, 30 s, beyond the test's bound).
#[tokio::test]
async fn a_close_right_before_exit_still_reaches_the_server() {
    let (ep, config) = endpoint();
    let server = {
        let ep = ep.clone();
        tokio::spawn(async move {
            let a = accept(&ep, server_settings(), huffman_response("200"))
                .await
                .unwrap();
            a.conn.closed().await
        })
    };
    let url = url(&ep);
    let client = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let session = bounded(connect(&url, config)).await.unwrap();
            bounded(session.close(5, "cya")).await.unwrap();
        });
        // The runtime, quinn's drivers with it, ends here.
    });
    let seen = bounded(server).await.unwrap();
    tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    match seen {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), 5);
            assert_eq!(&close.reason[..], b"cya");
        }
        other => panic!("the server saw {other:?}"),
    }
}

#[tokio::test]
async fn end_of_connect_stream_is_a_clean_close() {
    let (ep, config) = endpoint();
    let server = {
        let ep = ep.clone();
        tokio::spawn(async move {
            let mut a = accept(&ep, server_settings(), huffman_response("200"))
                .await
                .unwrap();
            a.send.finish().unwrap();
            a.conn.closed().await;
        })
    };
    let session = bounded(connect(&url(&ep), config)).await.unwrap();
    assert_eq!(
        bounded(session.closed()).await,
        SessionClose::Peer {
            code: 0,
            reason: String::new()
        }
    );
    bounded(server).await.unwrap();
}

#[tokio::test]
async fn huffman_coded_refusal() {
    let (ep, config) = endpoint();
    let server = {
        let ep = ep.clone();
        tokio::spawn(async move {
            let a = accept(&ep, server_settings(), huffman_response("404"))
                .await
                .unwrap();
            a.conn.closed().await;
        })
    };
    let err = bounded(connect(&url(&ep), config)).await.unwrap_err();
    assert_eq!(err, TransportError::HandshakeRejected { status: 404 });
    bounded(server).await.unwrap();
}

#[tokio::test]
async fn settings_without_webtransport_are_unsupported() {
    let (ep, config) = endpoint();
    let server = {
        let ep = ep.clone();
        tokio::spawn(async move {
            let mut plain = Settings::new();
            plain.set(settings::H3_DATAGRAM, 1).unwrap();
            // The client must not even send its CONNECT.
            assert!(accept(&ep, plain, Vec::new()).await.is_none());
        })
    };
    let err = bounded(connect(&url(&ep), config)).await.unwrap_err();
    assert!(matches!(err, TransportError::Unsupported(_)), "{err:?}");
    bounded(server).await.unwrap();
}
