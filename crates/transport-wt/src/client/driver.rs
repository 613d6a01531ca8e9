//! The session's driver: one task per session (spawned once the session is up; during the
//! set-up [`connect`](super::connect) polls it itself) that accepts the server's streams and
//! runs every background stream of the session: the server's unidirectional streams (control,
//! QPACK, WebTransport), its bidirectional streams, the CONNECT stream's capsules, and watches
//! the connection's end. It ends with the QUIC connection, once every stream it runs has ended.
//!
//! Each stream's work is a future in one [`FuturesUnordered`]: a stream that waits (a control
//! stream between frames, a WebTransport stream for room in a full channel) holds up no other.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::mpsc::error::TrySendError;
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

/// What a stream's future hands back to the driver.
enum Event {
    /// A unidirectional stream of the server and its header (`None`: it ended first).
    Uni(RecvStream, Result<Option<UniStream>, TransportError>),
    /// A bidirectional stream of the server and its header.
    Bidi(
        SendStream,
        RecvStream,
        Result<Option<BidiStream>, TransportError>,
    ),
    /// The stream's work is over.
    Done,
}

type StreamFuture = Pin<Box<dyn Future<Output = Event> + Send>>;

/// The session once the CONNECT was answered: what the driver needs to route its streams.
pub(super) struct Established {
    pub(super) session_id: u64,
    pub(super) bi_tx: mpsc::Sender<(SendStream, RecvStream)>,
    /// The CONNECT stream's receiving half and the frames read past the response.
    pub(super) connect_recv: RecvStream,
    pub(super) reader: FrameReader,
    pub(super) drain: Arc<watch::Sender<bool>>,
    /// See [`ConnectEnded`].
    pub(super) connect_ended: Arc<watch::Sender<ConnectEnded>>,
}

/// Whether the server has ended its side of the CONNECT stream (its FIN) while our close was
/// under way: `Some(n)` once it has, and the driver closed the connection with our close's code
/// (`n`: the datagrams the connection had sent right after that, see
/// [`WtSession::close_connection`](super::WtSession::close_connection)).
pub(super) type ConnectEnded = Option<u64>;

/// The driver of one session (see the module docs).
pub(super) struct Driver {
    conn: quinn::Connection,
    close: CloseCell,
    /// Where the server's SETTINGS go; taken by the first control stream (a second one is a
    /// connection error).
    settings: Option<oneshot::Sender<Settings>>,
    uni_tx: mpsc::Sender<(u64, RecvStream)>,
    /// The session's id and where its bidirectional streams go, once it is up: before, the
    /// server's bidirectional streams wait in quinn (it may not open one before its 2xx).
    bi: Option<(u64, mpsc::Sender<(SendStream, RecvStream)>)>,
    streams: FuturesUnordered<StreamFuture>,
    accepting_uni: bool,
    accepting_bi: bool,
    /// Until the connection's end has been recorded.
    watching: bool,
}

impl Driver {
    pub(super) fn new(
        conn: quinn::Connection,
        close: CloseCell,
        settings: oneshot::Sender<Settings>,
        uni_tx: mpsc::Sender<(u64, RecvStream)>,
    ) -> Self {
        Self {
            conn,
            close,
            settings: Some(settings),
            uni_tx,
            bi: None,
            streams: FuturesUnordered::new(),
            accepting_uni: true,
            accepting_bi: true,
            watching: true,
        }
    }

    /// Runs `f` (a step of the set-up) while driving the session: the server's SETTINGS arrive
    /// through the driver. Once the driver has nothing left to do (the connection ended), `f`
    /// runs alone.
    pub(super) async fn run_until<F: Future>(&mut self, f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        tokio::select! {
            // The driver first: what it hands `f` (the SETTINGS) is then there in the same poll.
            biased;
            () = self.drive() => {}
            out = &mut f => return out,
        }
        f.await
    }

    /// The session is up: its bidirectional streams are accepted from now on and its CONNECT
    /// stream read.
    pub(super) fn established(&mut self, session: Established) {
        let Established {
            session_id,
            bi_tx,
            connect_recv,
            reader,
            drain,
            connect_ended,
        } = session;
        self.bi = Some((session_id, bi_tx));
        let (conn, close) = (self.conn.clone(), self.close.clone());
        self.streams.push(Box::pin(async move {
            let ends = Ends {
                close: &close,
                drain: &drain,
                connect_ended: &connect_ended,
            };
            connect_stream_loop(&conn, connect_recv, reader, ends).await;
            Event::Done
        }));
    }

    /// Drives the session until the connection has ended and every stream it runs is over.
    ///
    /// Cancel safe: its state lives in `self`, and quinn's accepts take a stream only when
    /// they return it.
    pub(super) async fn drive(&mut self) {
        loop {
            tokio::select! {
                // Streams before the connection's end: what a stream carried before the end
                // (a CLOSE_WEBTRANSPORT_SESSION capsule) is read first.
                biased;
                Some(event) = self.streams.next(), if !self.streams.is_empty() => {
                    self.on_event(event);
                }
                accepted = self.conn.accept_uni(), if self.accepting_uni => match accepted {
                    Ok(mut recv) => self.streams.push(Box::pin(async move {
                        let header = read_header(&mut recv, stream::decode_uni).await;
                        Event::Uni(recv, header)
                    })),
                    Err(_) => self.accepting_uni = false,
                },
                accepted = self.conn.accept_bi(), if self.accepting_bi && self.bi.is_some() => {
                    match accepted {
                        Ok((send, mut recv)) => self.streams.push(Box::pin(async move {
                            let header = read_header(&mut recv, stream::decode_bidi).await;
                            Event::Bidi(send, recv, header)
                        })),
                        Err(_) => self.accepting_bi = false,
                    }
                }
                e = self.conn.closed(), if self.watching => {
                    tracing::debug!(error = %e, "connection closed");
                    set_close(&self.close, SessionClose::from_connection(&e));
                    self.watching = false;
                }
                else => return,
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Uni(recv, Ok(Some(kind))) => self.on_uni(recv, kind),
            Event::Bidi(send, recv, Ok(Some(kind))) => self.on_bidi(send, recv, kind),
            Event::Uni(_, Err(e)) | Event::Bidi(_, _, Err(e)) => {
                tracing::debug!(error = %e, "unreadable stream header");
            }
            Event::Uni(_, Ok(None)) | Event::Bidi(_, _, Ok(None)) | Event::Done => {}
        }
    }

    fn on_uni(&mut self, recv: RecvStream, kind: UniStream) {
        let (conn, close) = (self.conn.clone(), self.close.clone());
        match kind {
            UniStream::Control => match self.settings.take() {
                Some(sender) => self.streams.push(Box::pin(async move {
                    control_loop(&conn, recv, sender, &close).await;
                    Event::Done
                })),
                None => fail(
                    &conn,
                    &close,
                    h3_code::STREAM_CREATION_ERROR,
                    TransportError::protocol("the server opened a second control stream"),
                ),
            },
            UniStream::QpackEncoder | UniStream::QpackDecoder => {
                self.streams.push(Box::pin(async move {
                    qpack_loop(&conn, recv, &close).await;
                    Event::Done
                }));
            }
            UniStream::WebTransport { session_id } => {
                if let Err(TrySendError::Full(item)) = self.uni_tx.try_send((session_id, recv)) {
                    // Waits for room without holding up the other streams.
                    let tx = self.uni_tx.clone();
                    self.streams.push(Box::pin(async move {
                        let _ = tx.send(item).await;
                        Event::Done
                    }));
                }
            }
            other => {
                tracing::debug!(?other, "ignoring a unidirectional stream");
                let mut recv = recv;
                let _ = recv.stop(VarInt::from_u32(h3_code::STREAM_CREATION_ERROR));
            }
        }
    }

    fn on_bidi(&mut self, mut send: SendStream, mut recv: RecvStream, kind: BidiStream) {
        let Some((session_id, bi_tx)) = &self.bi else {
            return;
        };
        match kind {
            BidiStream::WebTransport { session_id: id } if id == *session_id => {
                if let Err(TrySendError::Full(pair)) = bi_tx.try_send((send, recv)) {
                    let tx = bi_tx.clone();
                    self.streams.push(Box::pin(async move {
                        let _ = tx.send(pair).await;
                        Event::Done
                    }));
                }
            }
            BidiStream::WebTransport { session_id: id } => {
                tracing::debug!(id, "refusing a stream of another session");
                let _ = recv.stop(VarInt::from_u32(h3_code::ID_ERROR));
                let _ = send.reset(VarInt::from_u32(h3_code::ID_ERROR));
            }
            // RFC 9114 §6.1: a server-initiated request stream is a connection error.
            BidiStream::Other(_) => fail(
                &self.conn,
                &self.close,
                h3_code::STREAM_CREATION_ERROR,
                TransportError::protocol("the server opened a bidirectional HTTP/3 stream"),
            ),
        }
    }
}

/// A QPACK stream of the server: with a zero-capacity dynamic table there is nothing to learn
/// from it; it must simply stay open.
async fn qpack_loop(conn: &quinn::Connection, mut recv: RecvStream, close: &CloseCell) {
    loop {
        match recv.read_chunk(4096, true).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return fail(
                    conn,
                    close,
                    h3_code::CLOSED_CRITICAL_STREAM,
                    TransportError::protocol("the server closed a QPACK stream"),
                );
            }
            Err(_) => return,
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

/// Where the CONNECT stream's reader records what it learns.
struct Ends<'a> {
    close: &'a CloseCell,
    drain: &'a watch::Sender<bool>,
    connect_ended: &'a watch::Sender<ConnectEnded>,
}

/// Reads the CONNECT stream after the response: capsules in DATA frames, and its end.
async fn connect_stream_loop(
    conn: &quinn::Connection,
    mut recv: RecvStream,
    mut reader: FrameReader,
    ends: Ends<'_>,
) {
    let Ends {
        close,
        drain,
        connect_ended,
    } = ends;
    let mut capsules = BytesMut::new();
    loop {
        loop {
            match reader.next_frame() {
                Ok(Some(Frame::Data(payload))) => capsules.extend_from_slice(&payload),
                // Trailers or interim headers mean nothing to a session.
                Ok(Some(Frame::Headers(_))) => {}
                Ok(Some(other)) => {
                    return fail(
                        conn,
                        close,
                        h3_code::FRAME_UNEXPECTED,
                        TransportError::protocol(format!(
                            "frame type {:#x} on the CONNECT stream",
                            other.frame_type()
                        )),
                    );
                }
                Ok(None) => break,
                Err(e) => return fail(conn, close, h3_code::FRAME_ERROR, e.into()),
            }
        }
        loop {
            match capsule::decode(&capsules, capsule::DEFAULT_MAX_CAPSULE) {
                Ok(Some((c, n))) => {
                    let _ = capsules.split_to(n);
                    match c {
                        Capsule::Close { code, reason } => {
                            tracing::debug!(code, %reason, "server closed the session");
                            set_close(close, SessionClose::Peer { code, reason });
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
                Err(e) => return fail(conn, close, h3_code::GENERAL_PROTOCOL_ERROR, e.into()),
            }
        }
        match recv.read_chunk(frame::DEFAULT_MAX_PAYLOAD, true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) => {
                // The end of the CONNECT stream ends the session (code 0, empty reason).
                let ended = set_close(
                    close,
                    SessionClose::Peer {
                        code: 0,
                        reason: String::new(),
                    },
                );
                if ended {
                    conn.close(VarInt::from_u32(h3_code::NO_ERROR), b"");
                } else if let Some(SessionClose::Local { code, reason }) = &*close.borrow() {
                    // The server's answer to our close (capsule and FIN): the connection
                    // closes now, with the application's code; `WtSession::close`, woken,
                    // waits for the CONNECTION_CLOSE to leave.
                    conn.close(VarInt::from_u32(*code), reason.as_bytes());
                    connect_ended.send_replace(Some(conn.stats().udp_tx.datagrams));
                }
                return;
            }
            Err(quinn::ReadError::Reset(code)) => {
                let code = code.into_inner();
                let error = TransportError::lost(format!(
                    "the server reset the CONNECT stream with {} ({code:#x})",
                    h3_code::name(code)
                ));
                return fail(conn, close, h3_code::NO_ERROR, error);
            }
            Err(_) => return,
        }
    }
}
