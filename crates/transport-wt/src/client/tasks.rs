//! The background tasks of a session: the server's unidirectional streams (control, QPACK,
//! WebTransport), its bidirectional streams, the CONNECT stream's capsules, the connection's
//! end. Each ends with the QUIC connection.

use std::sync::{Arc, Mutex as StdMutex, PoisonError};

use bytes::BytesMut;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::{mpsc, oneshot, watch};
use transport_core::TransportError;

use super::error::{h3_code, read_error};
use super::session::{CloseCell, SessionClose, fail, set_close};
use crate::proto::capsule::{self, Capsule};
use crate::proto::frame::{self, Frame, FrameReader};
use crate::proto::settings::Settings;
use crate::proto::stream::{self, BidiStream, UniStream};
use crate::proto::{Decoded, ProtoError};

/// Reads a stream header one byte at a time (it is at most 16 bytes), so no stream data is
/// consumed. `Ok(None)` when the stream ends first.
async fn read_header<T>(
    recv: &mut RecvStream,
    decode: fn(&[u8]) -> Decoded<T>,
) -> Result<Option<T>, TransportError> {
    let mut buf = [0u8; 16];
    let mut len = 0;
    loop {
        if let Some((header, _)) = decode(&buf[..len])? {
            return Ok(Some(header));
        }
        if len == buf.len() {
            return Err(ProtoError::Truncated("stream header").into());
        }
        match recv.read(&mut buf[len..=len]).await {
            Ok(Some(n)) => len += n,
            Ok(None) => return Ok(None),
            Err(e) => return Err(read_error(&e)),
        }
    }
}

pub(super) type SettingsSlot = Arc<StdMutex<Option<oneshot::Sender<Settings>>>>;

pub(super) async fn accept_uni_loop(
    conn: quinn::Connection,
    settings: SettingsSlot,
    uni_tx: mpsc::Sender<(u64, RecvStream)>,
    close: CloseCell,
) {
    while let Ok(recv) = conn.accept_uni().await {
        tokio::spawn(handle_uni(
            conn.clone(),
            recv,
            settings.clone(),
            uni_tx.clone(),
            close.clone(),
        ));
    }
}

async fn handle_uni(
    conn: quinn::Connection,
    mut recv: RecvStream,
    settings: SettingsSlot,
    uni_tx: mpsc::Sender<(u64, RecvStream)>,
    close: CloseCell,
) {
    let kind = match read_header(&mut recv, stream::decode_uni).await {
        Ok(Some(kind)) => kind,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(error = %e, "unreadable stream header");
            return;
        }
    };
    match kind {
        UniStream::Control => {
            let sender = settings
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            match sender {
                Some(sender) => control_loop(&conn, recv, sender, &close).await,
                None => fail(
                    &conn,
                    &close,
                    h3_code::STREAM_CREATION_ERROR,
                    TransportError::protocol("the server opened a second control stream"),
                ),
            }
        }
        UniStream::QpackEncoder | UniStream::QpackDecoder => {
            // With a zero-capacity dynamic table there is nothing to learn here; the stream must
            // simply stay open.
            loop {
                match recv.read_chunk(4096, true).await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        fail(
                            &conn,
                            &close,
                            h3_code::CLOSED_CRITICAL_STREAM,
                            TransportError::protocol("the server closed a QPACK stream"),
                        );
                        return;
                    }
                    Err(_) => return,
                }
            }
        }
        UniStream::WebTransport { session_id } => {
            let _ = uni_tx.send((session_id, recv)).await;
        }
        other => {
            tracing::debug!(?other, "ignoring a unidirectional stream");
            let _ = recv.stop(VarInt::from_u32(h3_code::STREAM_CREATION_ERROR));
        }
    }
}

async fn control_loop(
    conn: &quinn::Connection,
    mut recv: RecvStream,
    settings: oneshot::Sender<Settings>,
    close: &CloseCell,
) {
    let mut reader = FrameReader::new(frame::DEFAULT_MAX_PAYLOAD);
    let mut settings = Some(settings);
    loop {
        loop {
            let f = match reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    let code = match e {
                        ProtoError::ReservedFrameType(_) => h3_code::FRAME_UNEXPECTED,
                        ProtoError::DuplicateSetting(_) | ProtoError::ReservedSetting(_) => {
                            h3_code::SETTINGS_ERROR
                        }
                        _ => h3_code::FRAME_ERROR,
                    };
                    return fail(conn, close, code, e.into());
                }
            };
            match (f, settings.take()) {
                (Frame::Settings(s), Some(tx)) => {
                    tracing::debug!(?s, "server SETTINGS");
                    let _ = tx.send(s);
                }
                (_, Some(_)) => {
                    return fail(
                        conn,
                        close,
                        h3_code::MISSING_SETTINGS,
                        TransportError::protocol(
                            "the server's control stream began without SETTINGS",
                        ),
                    );
                }
                (Frame::Goaway(id), None) => {
                    tracing::debug!(id, "server sent GOAWAY");
                }
                (other, None) => {
                    return fail(
                        conn,
                        close,
                        h3_code::FRAME_UNEXPECTED,
                        TransportError::protocol(format!(
                            "frame type {:#x} on the control stream",
                            other.frame_type()
                        )),
                    );
                }
            }
        }
        match recv.read_chunk(frame::DEFAULT_MAX_PAYLOAD, true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) => {
                return fail(
                    conn,
                    close,
                    h3_code::CLOSED_CRITICAL_STREAM,
                    TransportError::protocol("the server closed its control stream"),
                );
            }
            Err(_) => return,
        }
    }
}

pub(super) async fn accept_bi_loop(
    conn: quinn::Connection,
    session_id: u64,
    bi_tx: mpsc::Sender<(SendStream, RecvStream)>,
    close: CloseCell,
) {
    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
        let (conn, bi_tx, close) = (conn.clone(), bi_tx.clone(), close.clone());
        tokio::spawn(async move {
            match read_header(&mut recv, stream::decode_bidi).await {
                Ok(Some(BidiStream::WebTransport { session_id: id })) if id == session_id => {
                    let _ = bi_tx.send((send, recv)).await;
                }
                Ok(Some(BidiStream::WebTransport { session_id: id })) => {
                    tracing::debug!(id, "refusing a stream of another session");
                    let _ = recv.stop(VarInt::from_u32(h3_code::ID_ERROR));
                    let _ = send.reset(VarInt::from_u32(h3_code::ID_ERROR));
                }
                // RFC 9114 §6.1: a server-initiated request stream is a connection error.
                Ok(Some(BidiStream::Other(_))) => fail(
                    &conn,
                    &close,
                    h3_code::STREAM_CREATION_ERROR,
                    TransportError::protocol("the server opened a bidirectional HTTP/3 stream"),
                ),
                Ok(None) | Err(_) => {}
            }
        });
    }
}

/// Reads the CONNECT stream after the response: capsules in DATA frames, and its end.
pub(super) async fn connect_stream_loop(
    conn: quinn::Connection,
    mut recv: RecvStream,
    mut reader: FrameReader,
    close: CloseCell,
    drain: Arc<watch::Sender<bool>>,
) {
    let mut capsules = BytesMut::new();
    loop {
        loop {
            match reader.next_frame() {
                Ok(Some(Frame::Data(payload))) => capsules.extend_from_slice(&payload),
                // Trailers or interim headers mean nothing to a session.
                Ok(Some(Frame::Headers(_))) => {}
                Ok(Some(other)) => {
                    return fail(
                        &conn,
                        &close,
                        h3_code::FRAME_UNEXPECTED,
                        TransportError::protocol(format!(
                            "frame type {:#x} on the CONNECT stream",
                            other.frame_type()
                        )),
                    );
                }
                Ok(None) => break,
                Err(e) => return fail(&conn, &close, h3_code::FRAME_ERROR, e.into()),
            }
        }
        loop {
            match capsule::decode(&capsules, capsule::DEFAULT_MAX_CAPSULE) {
                Ok(Some((c, n))) => {
                    let _ = capsules.split_to(n);
                    match c {
                        Capsule::Close { code, reason } => {
                            tracing::debug!(code, %reason, "server closed the session");
                            set_close(&close, SessionClose::Peer { code, reason });
                            conn.close(VarInt::from_u32(h3_code::NO_ERROR), b"");
                            return;
                        }
                        Capsule::Drain => {
                            tracing::debug!("server asks to drain the session");
                            drain.send_replace(true);
                        }
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(e) => return fail(&conn, &close, h3_code::GENERAL_PROTOCOL_ERROR, e.into()),
            }
        }
        match recv.read_chunk(frame::DEFAULT_MAX_PAYLOAD, true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) => {
                // The end of the CONNECT stream ends the session (code 0, empty reason).
                set_close(
                    &close,
                    SessionClose::Peer {
                        code: 0,
                        reason: String::new(),
                    },
                );
                conn.close(VarInt::from_u32(h3_code::NO_ERROR), b"");
                return;
            }
            Err(quinn::ReadError::Reset(code)) => {
                let code = code.into_inner();
                let error = TransportError::lost(format!(
                    "the server reset the CONNECT stream with {} ({code:#x})",
                    h3_code::name(code)
                ));
                return fail(&conn, &close, h3_code::NO_ERROR, error);
            }
            Err(_) => return,
        }
    }
}

pub(super) async fn watch_connection(conn: quinn::Connection, close: CloseCell) {
    let e = conn.closed().await;
    tracing::debug!(error = %e, "connection closed");
    set_close(&close, SessionClose::from_connection(&e));
}
