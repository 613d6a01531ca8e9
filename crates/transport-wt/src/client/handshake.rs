//! The HTTP/3 part of the set-up: SETTINGS both ways, the extended CONNECT, its response.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use transport_core::TransportError;

use super::config::WtClientConfig;
use super::connect::Target;
use super::driver::{Driver, Established};
use super::error::{h3_code, read_error, setup_error, write_error};
use super::session::{CloseCell, WtSession};
use crate::proto::frame::{self, Frame, FrameReader};
use crate::proto::settings::{self, Settings};
use crate::proto::{qpack, stream, varint};

/// Closes the connection when dropped, unless disarmed: a failed or cancelled set-up leaves
/// nothing behind (the background tasks would otherwise keep it open).
struct CloseGuard(Option<quinn::Connection>);

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            conn.close(VarInt::from_u32(h3_code::REQUEST_CANCELLED), b"");
        }
    }
}

/// The HTTP/3 part of the set-up, on an established QUIC connection.
pub(crate) async fn handshake(
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    zero_rtt: Option<quinn::ZeroRttAccepted>,
    target: &Target,
    config: WtClientConfig,
) -> Result<WtSession, TransportError> {
    let mut guard = CloseGuard(Some(conn.clone()));
    let close: CloseCell = Arc::new(watch::channel(None).0);
    let t = &config.transport;

    // Our control stream with SETTINGS.
    let mut buf = BytesMut::new();
    varint::put(stream::CONTROL, &mut buf);
    Frame::Settings(Settings::webtransport_client(1)).encode(&mut buf);
    let mut control = conn
        .open_uni()
        .await
        .map_err(|e| setup_error(&e, t.dead_peer_timeout))?;
    control.write_all(&buf).await.map_err(|e| write_error(&e))?;

    // The server's unidirectional streams, through the session's driver; its SETTINGS come
    // back through `settings_rx`. Until the session is up the driver runs inside this future.
    let (settings_tx, settings_rx) = oneshot::channel();
    let (uni_tx, uni_rx) = mpsc::channel(t.recv_buffer);
    let mut driver = Driver::new(conn.clone(), close.clone(), settings_tx, uni_tx);
    let up = driver
        .run_until(exchange(
            &conn,
            zero_rtt,
            settings_rx,
            &buf,
            control,
            target,
            &config,
        ))
        .await?;
    tracing::debug!(session_id = up.session_id, "WebTransport session up");

    let (bi_tx, bi_rx) = mpsc::channel(t.recv_buffer);
    let drain = Arc::new(watch::channel(false).0);
    let connect_ended = Arc::new(watch::channel(None).0);
    driver.established(Established {
        session_id: up.session_id,
        bi_tx,
        connect_recv: up.recv,
        reader: up.reader,
        drain: drain.clone(),
        connect_ended: connect_ended.clone(),
    });
    tokio::spawn(async move { driver.drive().await });
    guard.0 = None;
    Ok(WtSession {
        endpoint,
        conn,
        session_id: up.session_id,
        response_headers: up.response_headers,
        _control: up.control,
        connect_send: Mutex::new(Some(up.send)),
        bi: Mutex::new(bi_rx),
        uni: Mutex::new(uni_rx),
        close,
        drain,
        connect_ended,
        close_timeout: t.close_timeout,
        zero_rtt_accepted: up.zero_rtt_accepted,
    })
}

/// What the HTTP/3 exchange of the set-up produced.
struct Up {
    /// Our control stream (it stays open).
    control: SendStream,
    session_id: u64,
    /// The CONNECT stream, and the frames read past the response.
    send: SendStream,
    recv: RecvStream,
    reader: FrameReader,
    response_headers: http::HeaderMap,
    zero_rtt_accepted: bool,
}

/// The server's SETTINGS, then the extended CONNECT and its 2xx response. `settings` is our
/// control stream's first bytes (sent again on a new control stream when the server refused
/// 0-RTT data).
async fn exchange(
    conn: &quinn::Connection,
    zero_rtt: Option<quinn::ZeroRttAccepted>,
    settings_rx: oneshot::Receiver<Settings>,
    settings: &[u8],
    mut control: SendStream,
    target: &Target,
    config: &WtClientConfig,
) -> Result<Up, TransportError> {
    let t = &config.transport;
    let Ok(peer) = settings_rx.await else {
        return Err(conn.close_reason().map_or(
            TransportError::lost("connection ended before SETTINGS"),
            |e| setup_error(&e, t.dead_peer_timeout),
        ));
    };
    // A client must not send a WebTransport CONNECT before the server announced support.
    if !peer.supports_webtransport() {
        return Err(TransportError::Unsupported(
            "the server's HTTP/3 SETTINGS do not enable WebTransport".into(),
        ));
    }
    if !peer.enabled(settings::H3_DATAGRAM) {
        return Err(TransportError::Unsupported(
            "the server's HTTP/3 SETTINGS do not enable HTTP datagrams".into(),
        ));
    }

    // With 0-RTT, the handshake is complete by now (the server's SETTINGS come after it). A
    // refusal discarded the 0-RTT streams: our SETTINGS go again on a new control stream.
    let used_zero_rtt = zero_rtt.is_some();
    let zero_rtt_accepted = match zero_rtt {
        Some(accepted) => accepted.await,
        None => false,
    };
    if used_zero_rtt && !zero_rtt_accepted {
        tracing::debug!("the server refused 0-RTT data; sending SETTINGS again");
        let mut again = conn
            .open_uni()
            .await
            .map_err(|e| setup_error(&e, t.dead_peer_timeout))?;
        again
            .write_all(settings)
            .await
            .map_err(|e| write_error(&e))?;
        control = again;
    }

    // The extended CONNECT.
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| setup_error(&e, t.dead_peer_timeout))?;
    let session_id = u64::from(send.id());
    send.write_all(&connect_request(target, config))
        .await
        .map_err(|e| write_error(&e))?;
    let mut reader = FrameReader::new(frame::DEFAULT_MAX_PAYLOAD);
    let (status, response_headers) =
        read_response(&mut recv, &mut reader, t.dead_peer_timeout).await?;
    if !(200..300).contains(&status) {
        tracing::debug!(status, "CONNECT refused");
        return Err(TransportError::HandshakeRejected { status });
    }
    Ok(Up {
        control,
        session_id,
        send,
        recv,
        reader,
        response_headers,
        zero_rtt_accepted,
    })
}

/// The HEADERS frame of the extended CONNECT.
fn connect_request(target: &Target, config: &WtClientConfig) -> Bytes {
    let mut fields: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"CONNECT"),
        (b":protocol", b"webtransport"),
        (b":scheme", b"https"),
        (b":authority", target.authority.as_bytes()),
        (b":path", target.path.as_bytes()),
    ];
    if let Some(origin) = &config.origin {
        fields.push((b"origin", origin.as_bytes()));
    }
    for (name, value) in &config.transport.headers {
        fields.push((name.as_str().as_bytes(), value.as_bytes()));
    }
    let mut block = BytesMut::new();
    qpack::encode_field_section(fields, &mut block);
    Frame::Headers(block.freeze()).to_bytes()
}

/// Reads the final response to the CONNECT: its status and headers.
async fn read_response(
    recv: &mut RecvStream,
    reader: &mut FrameReader,
    idle: Duration,
) -> Result<(u16, http::HeaderMap), TransportError> {
    loop {
        while let Some(f) = reader.next_frame()? {
            let Frame::Headers(block) = f else {
                return Err(TransportError::protocol(format!(
                    "frame type {:#x} before the response headers",
                    f.frame_type()
                )));
            };
            let fields =
                qpack::decode_field_section(&block, qpack::DEFAULT_MAX_FIELD_SECTION_SIZE)?;
            let status = qpack::response_status(&fields)?;
            if (100..200).contains(&status) {
                continue;
            }
            let mut headers = http::HeaderMap::new();
            for field in fields.iter().filter(|f| !f.name.starts_with(b":")) {
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(&field.name),
                    http::HeaderValue::from_bytes(&field.value),
                ) {
                    headers.append(name, value);
                }
            }
            return Ok((status, headers));
        }
        match recv.read_chunk(frame::DEFAULT_MAX_PAYLOAD, true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) => {
                return Err(TransportError::protocol(
                    "the server ended the CONNECT stream without a response",
                ));
            }
            Err(quinn::ReadError::Reset(code)) => {
                let code = code.into_inner();
                return Err(TransportError::ConnectionFailed {
                    reason: format!(
                        "the server reset the CONNECT stream with {} ({code:#x})",
                        h3_code::name(code)
                    ),
                    source: None,
                });
            }
            Err(quinn::ReadError::ConnectionLost(e)) => return Err(setup_error(&e, idle)),
            Err(e) => return Err(read_error(&e)),
        }
    }
}
