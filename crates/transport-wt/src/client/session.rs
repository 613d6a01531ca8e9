//! [`WtSession`]: the HTTP/3 handshake of a WebTransport session and its raw API.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::{ConnectionError, RecvStream, SendStream, VarInt};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use transport_core::TransportError;

use super::config::WtClientConfig;
use super::connect::Target;
use super::error::{connection_error, h3_code, read_error, setup_error, write_error};
use crate::proto::capsule::{self, Capsule};
use crate::proto::frame::{self, Frame, FrameReader};
use crate::proto::settings::{self, Settings};
use crate::proto::stream::{self, BidiStream, UniStream};
use crate::proto::{Decoded, ProtoError, datagram, qpack, varint};

/// How a session ended, as [`WtSession::closed`] reports it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SessionClose {
    /// The server closed the session: a CLOSE_WEBTRANSPORT_SESSION capsule, the end of the
    /// CONNECT stream (code 0, empty reason, as the draft says), or a QUIC CONNECTION_CLOSE with
    /// an application code (h3-webtransport servers, which cannot send the capsule, end a
    /// session that way).
    Peer {
        /// The application's error code.
        code: u32,
        /// The reason (may be empty).
        reason: String,
    },
    /// This side closed the session with [`WtSession::close`] or by dropping it.
    Local {
        /// The code sent.
        code: u32,
        /// The reason sent.
        reason: String,
    },
    /// The connection broke: idle timeout ([`TransportError::ConnectionLost`]), a reset, a
    /// protocol violation, or a stream reset of the CONNECT stream.
    Lost(TransportError),
}

impl SessionClose {
    /// The error operations report once the session has ended this way.
    pub fn to_error(&self) -> TransportError {
        match self {
            Self::Peer { code, reason } => TransportError::ClosedByPeer {
                code: u16::try_from(*code).unwrap_or(u16::MAX),
                reason: reason.clone(),
            },
            Self::Local { .. } => TransportError::Closed,
            Self::Lost(e) => e.clone(),
        }
    }

    fn from_connection(e: &ConnectionError) -> Self {
        match e {
            ConnectionError::ApplicationClosed(c) => match u32::try_from(c.error_code.into_inner())
            {
                Ok(code) => Self::Peer {
                    code,
                    reason: String::from_utf8_lossy(&c.reason).into_owned(),
                },
                Err(_) => Self::Lost(connection_error(e)),
            },
            ConnectionError::LocallyClosed => Self::Local {
                code: 0,
                reason: String::new(),
            },
            other => Self::Lost(connection_error(other)),
        }
    }
}

type CloseCell = Arc<watch::Sender<Option<SessionClose>>>;

/// Records how the session ended; the first record wins.
fn set_close(cell: &CloseCell, close: SessionClose) -> bool {
    cell.send_if_modified(|current| {
        if current.is_none() {
            *current = Some(close);
            true
        } else {
            false
        }
    })
}

/// Fails the connection with an HTTP/3 error code, recording why.
fn fail(conn: &quinn::Connection, cell: &CloseCell, code: u32, error: TransportError) {
    tracing::debug!(%error, code, "closing the connection");
    let text = error.to_string();
    set_close(cell, SessionClose::Lost(error));
    conn.close(VarInt::from_u32(code), text.as_bytes());
}

/// An established WebTransport session (one per QUIC connection).
///
/// Every method takes `&self`: share it in an `Arc` between tasks. Streams are quinn's own
/// [`SendStream`]/[`RecvStream`], already past the WebTransport stream header. Dropping the
/// session closes the connection (code 0).
pub struct WtSession {
    /// Keeps the UDP socket's endpoint for the session's lifetime.
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    session_id: u64,
    response_headers: http::HeaderMap,
    /// Our control stream: it must stay open for the whole connection.
    _control: SendStream,
    connect_send: Mutex<Option<SendStream>>,
    bi: Mutex<mpsc::Receiver<(SendStream, RecvStream)>>,
    uni: Mutex<mpsc::Receiver<(u64, RecvStream)>>,
    close: CloseCell,
    close_timeout: Duration,
}

impl std::fmt::Debug for WtSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WtSession")
            .field("remote", &self.conn.remote_address())
            .field("session_id", &self.session_id)
            .field("closed", &*self.close.borrow())
            .finish_non_exhaustive()
    }
}

impl WtSession {
    /// The session id: the stream id of the CONNECT request.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The headers of the server's 2xx answer (without pseudo-headers).
    pub fn response_headers(&self) -> &http::HeaderMap {
        &self.response_headers
    }

    /// The server's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// The QUIC connection underneath (for statistics; streams opened on it directly are not
    /// part of the session).
    pub fn quic(&self) -> &quinn::Connection {
        &self.conn
    }

    fn closed_error(&self) -> TransportError {
        if let Some(close) = &*self.close.borrow() {
            return close.to_error();
        }
        self.conn
            .close_reason()
            .map_or(TransportError::Closed, |e| {
                SessionClose::from_connection(&e).to_error()
            })
    }

    fn check_open(&self) -> Result<(), TransportError> {
        match &*self.close.borrow() {
            Some(close) => Err(close.to_error()),
            None => Ok(()),
        }
    }

    /// Opens a bidirectional stream of the session.
    ///
    /// # Errors
    /// The session's end ([`TransportError::Closed`], [`TransportError::ClosedByPeer`],
    /// [`TransportError::ConnectionLost`]) or a failed header write.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled call may have opened a stream, which is reset when dropped.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), TransportError> {
        self.check_open()?;
        let (mut send, recv) = self.conn.open_bi().await.map_err(|_| self.closed_error())?;
        let mut header = Vec::with_capacity(16);
        stream::encode_bidi_header(self.session_id, &mut header);
        send.write_all(&header).await.map_err(|e| write_error(&e))?;
        Ok((send, recv))
    }

    /// Opens a unidirectional stream of the session.
    ///
    /// # Errors
    /// As [`open_bi`](Self::open_bi).
    ///
    /// # Cancel safety
    /// As [`open_bi`](Self::open_bi).
    pub async fn open_uni(&self) -> Result<SendStream, TransportError> {
        self.check_open()?;
        let mut send = self
            .conn
            .open_uni()
            .await
            .map_err(|_| self.closed_error())?;
        let mut header = Vec::with_capacity(16);
        stream::encode_uni_header(self.session_id, &mut header);
        send.write_all(&header).await.map_err(|e| write_error(&e))?;
        Ok(send)
    }

    /// Waits for the server to open a bidirectional stream of the session.
    ///
    /// # Errors
    /// The session's end.
    ///
    /// # Cancel safety
    /// Cancel safe: a stream that arrives meanwhile waits for the next call.
    pub async fn accept_bi(&self) -> Result<(SendStream, RecvStream), TransportError> {
        match self.bi.lock().await.recv().await {
            Some(pair) => Ok(pair),
            None => Err(self.closed_error()),
        }
    }

    /// Waits for the server to open a unidirectional stream of the session.
    ///
    /// # Errors
    /// The session's end.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept_uni(&self) -> Result<RecvStream, TransportError> {
        let mut rx = self.uni.lock().await;
        loop {
            match rx.recv().await {
                Some((id, recv)) if id == self.session_id => return Ok(recv),
                Some((id, mut recv)) => {
                    tracing::debug!(id, "refusing a stream of another session");
                    let _ = recv.stop(VarInt::from_u32(h3_code::ID_ERROR));
                }
                None => return Err(self.closed_error()),
            }
        }
    }

    /// Sends a datagram (unreliable, unordered).
    ///
    /// # Errors
    /// [`TransportError::MessageTooLarge`] over [`max_datagram_size`](Self::max_datagram_size),
    /// [`TransportError::Unsupported`] when the server disabled QUIC datagrams, or the
    /// session's end.
    // `Bytes` like every payload of the workspace, although the prefix forces a copy.
    #[allow(clippy::needless_pass_by_value)]
    pub fn send_datagram(&self, payload: Bytes) -> Result<(), TransportError> {
        self.check_open()?;
        let limit = self.max_datagram_size().ok_or_else(|| {
            TransportError::Unsupported("the server does not accept QUIC datagrams".into())
        })?;
        if payload.len() > limit {
            return Err(TransportError::MessageTooLarge {
                size: payload.len(),
                limit,
            });
        }
        let datagram = datagram::encode(self.session_id, &payload)?;
        self.conn.send_datagram(datagram).map_err(|e| match e {
            quinn::SendDatagramError::TooLarge => TransportError::MessageTooLarge {
                size: payload.len(),
                limit,
            },
            quinn::SendDatagramError::ConnectionLost(_) => self.closed_error(),
            other => TransportError::Unsupported(other.to_string()),
        })
    }

    /// Waits for the next datagram of the session (datagrams of other sessions are dropped).
    ///
    /// # Errors
    /// The session's end.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn read_datagram(&self) -> Result<Bytes, TransportError> {
        loop {
            let d = self
                .conn
                .read_datagram()
                .await
                .map_err(|_| self.closed_error())?;
            match datagram::decode(&d) {
                Ok((id, payload)) if id == self.session_id => return Ok(payload),
                Ok((id, _)) => tracing::debug!(id, "dropping a datagram of another session"),
                Err(e) => tracing::debug!(error = %e, "dropping a malformed datagram"),
            }
        }
    }

    /// The largest datagram payload the path takes now, `None` when the server does not accept
    /// datagrams.
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.conn
            .max_datagram_size()
            .map(|m| m.saturating_sub(datagram::prefix_len(self.session_id)))
    }

    /// Closes the session: sends CLOSE_WEBTRANSPORT_SESSION with `code` and `reason` (cut to
    /// 1024 bytes) on the CONNECT stream, ends the stream, waits (at most `close_timeout`) until
    /// the server acknowledged it, then closes the QUIC connection with `code` as its
    /// application error code. Closing a closed session does nothing.
    ///
    /// # Errors
    /// None so far; the `Result` leaves room for reporting a close that could not be sent.
    ///
    /// # Cancel safety
    /// Cancel safe in effect: the session counts as closed from the first poll on, and
    /// dropping the session closes the connection.
    pub async fn close(&self, code: u32, reason: &str) -> Result<(), TransportError> {
        let mut cut = reason.len().min(capsule::MAX_CLOSE_REASON);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let reason = &reason[..cut];
        if !set_close(
            &self.close,
            SessionClose::Local {
                code,
                reason: reason.to_owned(),
            },
        ) {
            return Ok(());
        }
        let send = self.connect_send.lock().await.take();
        if let Some(mut send) = send {
            let capsule = Capsule::Close {
                code,
                reason: reason.to_owned(),
            };
            let mut buf = BytesMut::new();
            Frame::Data(capsule.to_bytes()).encode(&mut buf);
            let acked = tokio::time::timeout(self.close_timeout, async {
                send.write_all(&buf).await.ok()?;
                send.finish().ok()?;
                send.stopped().await.ok()
            })
            .await;
            tracing::debug!(acknowledged = ?acked, "close capsule sent");
        }
        // quinn's endpoint driver outlives its handles until every connection has drained, so
        // the CONNECTION_CLOSE goes out even if the session is dropped right away.
        self.conn.close(VarInt::from_u32(code), reason.as_bytes());
        Ok(())
    }

    /// Waits until the session has ended and says how.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn closed(&self) -> SessionClose {
        let mut rx = self.close.subscribe();
        loop {
            if let Some(close) = &*rx.borrow_and_update() {
                return close.clone();
            }
            if rx.changed().await.is_err() {
                return SessionClose::Lost(TransportError::Closed);
            }
        }
    }
}

impl Drop for WtSession {
    fn drop(&mut self) {
        set_close(
            &self.close,
            SessionClose::Local {
                code: 0,
                reason: String::new(),
            },
        );
        self.conn.close(VarInt::from_u32(0), b"");
    }
}

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
    target: &Target,
    config: WtClientConfig,
) -> Result<WtSession, TransportError> {
    let mut guard = CloseGuard(Some(conn.clone()));
    let close: CloseCell = Arc::new(watch::channel(None).0);
    let t = &config.transport;

    // Our control stream with SETTINGS.
    let mut control = conn
        .open_uni()
        .await
        .map_err(|e| setup_error(&e, t.dead_peer_timeout))?;
    let mut buf = BytesMut::new();
    varint::put(stream::CONTROL, &mut buf);
    Frame::Settings(Settings::webtransport_client(1)).encode(&mut buf);
    control.write_all(&buf).await.map_err(|e| write_error(&e))?;

    // The server's unidirectional streams; its SETTINGS come back through `settings_rx`.
    let (settings_tx, settings_rx) = oneshot::channel();
    let (uni_tx, uni_rx) = mpsc::channel(t.recv_buffer);
    tokio::spawn(accept_uni_loop(
        conn.clone(),
        Arc::new(StdMutex::new(Some(settings_tx))),
        uni_tx,
        close.clone(),
    ));
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

    // The extended CONNECT.
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| setup_error(&e, t.dead_peer_timeout))?;
    let session_id = u64::from(send.id());
    send.write_all(&connect_request(target, &config))
        .await
        .map_err(|e| write_error(&e))?;
    let mut reader = FrameReader::new(frame::DEFAULT_MAX_PAYLOAD);
    let (status, response_headers) =
        read_response(&mut recv, &mut reader, t.dead_peer_timeout).await?;
    if !(200..300).contains(&status) {
        tracing::debug!(status, "CONNECT refused");
        return Err(TransportError::HandshakeRejected { status });
    }
    tracing::debug!(session_id, "WebTransport session up");

    let (bi_tx, bi_rx) = mpsc::channel(t.recv_buffer);
    tokio::spawn(accept_bi_loop(
        conn.clone(),
        session_id,
        bi_tx,
        close.clone(),
    ));
    tokio::spawn(connect_stream_loop(
        conn.clone(),
        recv,
        reader,
        close.clone(),
    ));
    tokio::spawn(watch_connection(conn.clone(), close.clone()));
    guard.0 = None;
    Ok(WtSession {
        _endpoint: endpoint,
        conn,
        session_id,
        response_headers,
        _control: control,
        connect_send: Mutex::new(Some(send)),
        bi: Mutex::new(bi_rx),
        uni: Mutex::new(uni_rx),
        close,
        close_timeout: t.close_timeout,
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

type SettingsSlot = Arc<StdMutex<Option<oneshot::Sender<Settings>>>>;

async fn accept_uni_loop(
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

async fn accept_bi_loop(
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
async fn connect_stream_loop(
    conn: quinn::Connection,
    mut recv: RecvStream,
    mut reader: FrameReader,
    close: CloseCell,
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
                        Capsule::Drain => tracing::debug!("server asks to drain the session"),
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

async fn watch_connection(conn: quinn::Connection, close: CloseCell) {
    let e = conn.closed().await;
    tracing::debug!(error = %e, "connection closed");
    set_close(&close, SessionClose::from_connection(&e));
}
