//! An accepted session ([`WtServerSession`]): its streams and datagrams on h3's public API,
//! its end through the CONNECT stream's [`driver`](super::driver).
//!
//! h3 accepts the streams (it strips the HTTP/3 stream types and reads the WebTransport
//! headers); each stream is h3's [`BufRecvStream`] over an h3-quinn stream, which keeps any
//! bytes read past the header.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h3::frame::FrameStream;
use h3::proto::frame::Frame;
use h3::quic::{OpenStreams as _, RecvStream as _, SendStream as _};
use h3::stream::BufRecvStream;
use h3::webtransport::SessionId;
use http::{Response, StatusCode};
use tokio::io::AsyncWriteExt as _;
use tracing::debug;
use transport_core::TransportError;
use transport_core::metrics::ConnectionGauge;

use super::TRANSPORT;
use super::driver::SessionState;
use super::session::H3Conn;
use crate::SessionClose;
use crate::proto::stream as wt_stream;

/// A bidirectional WebTransport stream: `tokio::io::AsyncRead + AsyncWrite`;
/// `shutdown()` finishes the sending half. Split it with [`tokio::io::split`].
pub type WtBiStream = BufRecvStream<h3_quinn::BidiStream<Bytes>, Bytes>;
/// The sending side of a unidirectional WebTransport stream: `tokio::io::AsyncWrite`;
/// `shutdown()` finishes it.
pub type WtSendStream = BufRecvStream<h3_quinn::SendStream<Bytes>, Bytes>;
/// The receiving side of a unidirectional WebTransport stream: `tokio::io::AsyncRead`.
pub type WtRecvStream = BufRecvStream<h3_quinn::RecvStream, Bytes>;

/// HTTP/3's H3_ID_ERROR: a stream names a session that does not exist here.
const H3_ID_ERROR: u64 = 0x108;

/// An accepted WebTransport session (server side): one per QUIC connection.
///
/// Streams and datagrams are raw: bytes in, bytes out. All methods take `&self`, so accepting
/// streams, reading datagrams and sending can run concurrently from one task (`select!`,
/// `join!`) or, behind an `Arc`, from several.
///
/// The session ends when the client sends CLOSE_WEBTRANSPORT_SESSION or finishes its CONNECT
/// stream ([`session_closed`](Self::session_closed) then reports
/// [`SessionClose::Peer`] with the client's code and reason), when this side calls
/// [`close`](Self::close) (or drops the session: code 0, empty reason), when the server shuts
/// down ([`H3_NO_ERROR`](super::H3_NO_ERROR), "server shutting down"), or when the connection
/// breaks.
pub struct WtServerSession {
    quic: quinn::Connection,
    /// Shared with the driver: h3 closes the connection when its `Connection` is dropped, so
    /// the driver keeps it until the close capsule is out.
    h3: Arc<Mutex<Box<H3Conn>>>,
    opener: Mutex<h3_quinn::OpenStreams>,
    /// The session id: the stream id of the CONNECT request.
    session_id: u64,
    session: SessionId,
    state: Arc<SessionState>,
    /// The datagram prefix: the quarter stream ID of the CONNECT stream, as a varint.
    datagram_prefix: Bytes,
    _gauge: ConnectionGauge,
}

impl std::fmt::Debug for WtServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WtServerSession")
            .field("peer", &self.quic.remote_address())
            .field("session_id", &self.session_id)
            .field("closed", &self.state.close())
            .finish_non_exhaustive()
    }
}

impl WtServerSession {
    pub(crate) fn new(
        quic: quinn::Connection,
        h3: Arc<Mutex<Box<H3Conn>>>,
        connect_id: h3::quic::StreamId,
        state: Arc<SessionState>,
    ) -> Self {
        let opener =
            h3::quic::Connection::<Bytes>::opener(&h3_quinn::Connection::new(quic.clone()));
        let session_id = connect_id.into_inner();
        Self {
            quic,
            h3,
            opener: Mutex::new(opener),
            session_id,
            session: SessionId::from(connect_id),
            state,
            datagram_prefix: encode_varint(session_id / 4),
            _gauge: ConnectionGauge::new(TRANSPORT),
        }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.quic.remote_address()
    }

    /// The session id: the stream id of the client's CONNECT request.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The QUIC connection underneath (statistics, RTT, ...). Closing it closes the session
    /// without a CLOSE_WEBTRANSPORT_SESSION capsule.
    pub fn quic(&self) -> &quinn::Connection {
        &self.quic
    }

    fn h3(&self) -> MutexGuard<'_, Box<H3Conn>> {
        self.h3.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next bidirectional stream the client opens.
    ///
    /// # Errors
    /// The session's end once it has ended ([`TransportError::ClosedByPeer`] with the
    /// client's code and reason, [`TransportError::ConnectionLost`], [`TransportError::Closed`]).
    ///
    /// # Cancel safety
    /// Not cancel safe: the stream is taken from QUIC, then its header is read; a call
    /// cancelled in between loses that stream. Keep one `accept_bi` future alive in a loop of
    /// its own (as [`echo`](super::echo) does) rather than re-creating it in a `select!`.
    pub async fn accept_bi(&self) -> Result<WtBiStream, TransportError> {
        tokio::select! {
            biased;
            close = self.state.closed() => Err(close.to_error()),
            accepted = self.next_bi() => accepted,
        }
    }

    async fn next_bi(&self) -> Result<WtBiStream, TransportError> {
        loop {
            let stream = match poll_fn(|cx| self.h3().poll_accept_request_stream(cx)).await {
                Ok(Some(stream)) => stream,
                Ok(None) => return Err(self.closed_error()),
                Err(e) => {
                    return Err(self.error_or(|| TransportError::protocol(format!("HTTP/3: {e}"))));
                }
            };
            let mut frames = FrameStream::new(BufRecvStream::new(stream));
            let first = poll_fn(|cx| frames.poll_next(cx)).await;
            match first {
                Ok(Some(Frame::WebTransportStream(id))) if id == self.session => {
                    return Ok(frames.into_inner());
                }
                Ok(Some(Frame::WebTransportStream(_))) => {
                    debug!("refusing a stream of another session");
                    let mut stream = frames.into_inner();
                    stream.stop_sending(H3_ID_ERROR);
                    stream.reset(H3_ID_ERROR);
                }
                Ok(None) => debug!("skipping an empty stream"),
                Err(e) => debug!(error = ?e, "skipping an unreadable stream"),
                frame @ Ok(Some(_)) => {
                    // One session per connection: further requests get a plain refusal.
                    let resolver = self.h3().create_resolver(frames);
                    let request = match resolver.accept_with_frame(frame) {
                        Ok(pending) => pending.resolve().await,
                        Err(e) => Err(e),
                    };
                    match request {
                        Ok((request, mut stream)) => {
                            debug!(uri = %request.uri(), "refusing a request inside a session");
                            let mut response = Response::new(());
                            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                            let _ = stream.send_response(response).await;
                            let _ = stream.finish().await;
                        }
                        Err(e) => debug!(error = %e, "skipping an unreadable request"),
                    }
                }
            }
        }
    }

    /// The next unidirectional stream the client opens.
    ///
    /// # Errors
    /// As [`accept_bi`](Self::accept_bi).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept_uni(&self) -> Result<WtRecvStream, TransportError> {
        tokio::select! {
            biased;
            close = self.state.closed() => Err(close.to_error()),
            accepted = self.next_uni() => accepted,
        }
    }

    async fn next_uni(&self) -> Result<WtRecvStream, TransportError> {
        loop {
            let accepted = poll_fn(|cx| {
                let mut h3 = self.h3();
                if let Err(e) = h3.inner.poll_accept_recv(cx) {
                    return Poll::Ready(Err(e));
                }
                let streams = &mut h3.inner.accepted_streams_mut().wt_uni_streams;
                if streams.is_empty() {
                    Poll::Pending
                } else {
                    Poll::Ready(Ok(streams.remove(0)))
                }
            })
            .await;
            match accepted {
                Ok((id, stream)) if id == self.session => return Ok(stream),
                Ok((_, mut stream)) => {
                    debug!("refusing a stream of another session");
                    stream.stop_sending(H3_ID_ERROR);
                }
                Err(e) => {
                    return Err(self.error_or(|| TransportError::protocol(format!("HTTP/3: {e}"))));
                }
            }
        }
    }

    /// Opens a bidirectional stream to the client.
    ///
    /// # Errors
    /// As [`accept_bi`](Self::accept_bi).
    ///
    /// # Cancel safety
    /// Cancel safe; a cancelled open may leave an unused stream that is dropped.
    pub async fn open_bi(&self) -> Result<WtBiStream, TransportError> {
        self.check_open()?;
        let opened = poll_fn(|cx| {
            self.opener
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .poll_open_bidi(cx)
        })
        .await
        .map_err(|e| self.error_or(|| TransportError::lost(format!("opening a stream: {e}"))))?;
        let mut stream = BufRecvStream::new(opened);
        let mut header = Vec::with_capacity(16);
        wt_stream::encode_bidi_header(self.session_id, &mut header);
        stream
            .write_all(&header)
            .await
            .map_err(|e| self.error_or(|| TransportError::send_failed("a stream header", e)))?;
        Ok(stream)
    }

    /// Opens a unidirectional stream to the client.
    ///
    /// # Errors
    /// As [`accept_bi`](Self::accept_bi).
    ///
    /// # Cancel safety
    /// As [`open_bi`](Self::open_bi).
    pub async fn open_uni(&self) -> Result<WtSendStream, TransportError> {
        self.check_open()?;
        let opened = poll_fn(|cx| {
            self.opener
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .poll_open_send(cx)
        })
        .await
        .map_err(|e| self.error_or(|| TransportError::lost(format!("opening a stream: {e}"))))?;
        let mut stream = BufRecvStream::new(opened);
        let mut header = Vec::with_capacity(16);
        wt_stream::encode_uni_header(self.session_id, &mut header);
        stream
            .write_all(&header)
            .await
            .map_err(|e| self.error_or(|| TransportError::send_failed("a stream header", e)))?;
        Ok(stream)
    }

    /// Opens a unidirectional stream with quinn's stream `priority`, for the message link's
    /// per-message streams (h3-quinn's streams expose no priority, so this one is quinn's own).
    pub(crate) async fn open_uni_with_priority(
        &self,
        priority: i32,
    ) -> Result<quinn::SendStream, TransportError> {
        self.check_open()?;
        let mut send = self
            .quic
            .open_uni()
            .await
            .map_err(|e| self.error_or(|| connection_error(&e)))?;
        // Fails only on a stream already closed: the write below reports that.
        let _ = send.set_priority(priority);
        let mut header = Vec::with_capacity(16);
        wt_stream::encode_uni_header(self.session_id, &mut header);
        send.write_all(&header).await.map_err(|e| {
            self.error_or(|| {
                TransportError::send_failed("a stream header", std::io::Error::from(e))
            })
        })?;
        Ok(send)
    }

    /// Sends a datagram (unreliable, unordered). Waits for nothing: when the send buffer is
    /// full, older queued datagrams are dropped.
    ///
    /// # Errors
    /// [`TransportError::MessageTooLarge`] beyond [`max_datagram_size`](Self::max_datagram_size),
    /// [`TransportError::Unsupported`] when the client did not enable datagrams, or the close
    /// error once the session is closed.
    // `Bytes` like every payload of the workspace, although the prefix forces a copy.
    #[allow(clippy::needless_pass_by_value)]
    pub fn send_datagram(&self, payload: Bytes) -> Result<(), TransportError> {
        self.check_open()?;
        let mut datagram = BytesMut::with_capacity(self.datagram_prefix.len() + payload.len());
        datagram.put_slice(&self.datagram_prefix);
        datagram.put_slice(&payload);
        self.quic
            .send_datagram(datagram.freeze())
            .map_err(|e| match e {
                quinn::SendDatagramError::TooLarge => TransportError::MessageTooLarge {
                    size: payload.len(),
                    limit: self.max_datagram_size().unwrap_or(0),
                },
                quinn::SendDatagramError::UnsupportedByPeer
                | quinn::SendDatagramError::Disabled => {
                    TransportError::Unsupported("datagrams are not enabled by the peer".into())
                }
                quinn::SendDatagramError::ConnectionLost(e) => {
                    self.error_or(|| connection_error(&e))
                }
            })
    }

    /// The next datagram of this session. Datagrams that arrive while nobody reads are kept up
    /// to [`WtServerConfig::datagram_queue`](super::WtServerConfig::datagram_queue) bytes, the
    /// oldest dropped first.
    ///
    /// # Errors
    /// The close error once the session is closed.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn read_datagram(&self) -> Result<Bytes, TransportError> {
        let next = async {
            loop {
                let mut datagram = self
                    .quic
                    .read_datagram()
                    .await
                    .map_err(|e| self.error_or(|| connection_error(&e)))?;
                match decode_varint(&mut datagram) {
                    Some(id) if encode_varint(id) == self.datagram_prefix => return Ok(datagram),
                    // A datagram for another (unknown) session, or a malformed prefix: dropped.
                    _ => debug!("dropping a datagram for another session"),
                }
            }
        };
        tokio::select! {
            biased;
            close = self.state.closed() => Err(close.to_error()),
            datagram = next => datagram,
        }
    }

    /// The largest datagram payload that fits in one QUIC packet now (the path MTU minus
    /// overheads); `None` when the client does not accept datagrams.
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.quic
            .max_datagram_size()
            .map(|n| n.saturating_sub(self.datagram_prefix.len()))
    }

    /// Closes the session: sends CLOSE_WEBTRANSPORT_SESSION with `code` and `reason` (cut to
    /// 1024 bytes, the draft's limit, at a character boundary) on the CONNECT stream and
    /// finishes it, then closes the QUIC connection with the same code and reason once the
    /// client has closed its side, or after the close timeout. Returns at once; the session's
    /// driver task does the sending. Closing a closed session does nothing.
    ///
    /// Use 0 for a normal close (what dropping the session sends).
    /// [`H3_NO_ERROR`](super::H3_NO_ERROR) is what a server shutdown sends.
    pub fn close(&self, code: u32, reason: &str) {
        self.state.request_close(code, reason);
    }

    /// Sends DRAIN_WEBTRANSPORT_SESSION: asks the client to finish what it is doing and close
    /// the session. The session stays open.
    pub fn drain(&self) {
        self.state.request_drain();
    }

    /// Whether the client sent DRAIN_WEBTRANSPORT_SESSION.
    pub fn drain_requested(&self) -> bool {
        self.state.peer_drained()
    }

    /// Waits until the client sends DRAIN_WEBTRANSPORT_SESSION or the session ends.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn drain_received(&self) {
        self.state.wait_peer_drain().await;
    }

    /// Waits until the session is closed (by either side, or by a timeout) and returns why as
    /// an error: [`TransportError::ClosedByPeer`] with the client's code (saturated to 16
    /// bits) and reason, [`TransportError::Closed`] after a local close. See
    /// [`session_closed`](Self::session_closed) for the full 32-bit code.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn closed(&self) -> TransportError {
        self.state.closed().await.to_error()
    }

    /// Waits until the session has ended and says how: [`SessionClose::Peer`] with the
    /// client's code and reason (a FIN without a capsule is code 0 and an empty reason),
    /// [`SessionClose::Local`] after [`close`](Self::close) or a server shutdown,
    /// [`SessionClose::Lost`] when the connection broke.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn session_closed(&self) -> SessionClose {
        self.state.closed().await
    }

    fn check_open(&self) -> Result<(), TransportError> {
        match self.state.close() {
            Some(close) => Err(close.to_error()),
            None => Ok(()),
        }
    }

    /// The session's end if it has ended, else the connection's, else `other`.
    fn error_or(&self, other: impl FnOnce() -> TransportError) -> TransportError {
        if let Some(close) = self.state.close() {
            return close.to_error();
        }
        close_error(&self.quic).unwrap_or_else(other)
    }

    fn closed_error(&self) -> TransportError {
        self.error_or(|| TransportError::lost("session ended"))
    }
}

impl Drop for WtServerSession {
    fn drop(&mut self) {
        self.state.request_close(0, "");
    }
}

/// The error a closed connection stands for, if it is closed.
pub(crate) fn close_error(quic: &quinn::Connection) -> Option<TransportError> {
    quic.close_reason().map(|e| connection_error(&e))
}

/// Maps quinn's reason for a closed connection to the shared error.
pub(crate) fn connection_error(e: &quinn::ConnectionError) -> TransportError {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => TransportError::ClosedByPeer {
            code: u16::try_from(close.error_code.into_inner()).unwrap_or(u16::MAX),
            reason: crate::client::reason_text(&close.reason),
        },
        quinn::ConnectionError::LocallyClosed => TransportError::Closed,
        quinn::ConnectionError::TimedOut => {
            TransportError::lost("the client stopped answering (QUIC idle timeout)")
        }
        quinn::ConnectionError::TransportError(e) => TransportError::protocol(e.to_string()),
        quinn::ConnectionError::ConnectionClosed(e) => TransportError::lost(e.to_string()),
        other => TransportError::lost(other.to_string()),
    }
}

/// Encodes a QUIC variable-length integer (RFC 9000, section 16). `v` must be below 2^62;
/// quarter stream IDs always are.
pub(crate) fn encode_varint(v: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(8);
    if v < 1 << 6 {
        out.put_u8(u8::try_from(v).unwrap_or(0));
    } else if v < 1 << 14 {
        out.put_u16(u16::try_from(v).unwrap_or(0) | 0x4000);
    } else if v < 1 << 30 {
        out.put_u32(u32::try_from(v).unwrap_or(0) | 0x8000_0000);
    } else {
        out.put_u64(v | 0xc000_0000_0000_0000);
    }
    out.freeze()
}

/// Decodes a QUIC variable-length integer from the front of `buf`; `None` when it is cut short.
pub(crate) fn decode_varint(buf: &mut Bytes) -> Option<u64> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    if buf.len() < len {
        return None;
    }
    let mut value = u64::from(first & 0x3f);
    buf.advance(1);
    for _ in 1..len {
        value = (value << 8) | u64::from(buf.get_u8());
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [
            0,
            1,
            63,
            64,
            16383,
            16384,
            (1 << 30) - 1,
            1 << 30,
            (1 << 62) - 1,
        ] {
            let encoded = encode_varint(v);
            let mut buf = Bytes::from([encoded.as_ref(), b"rest"].concat());
            assert_eq!(decode_varint(&mut buf), Some(v), "{v}");
            assert_eq!(&buf[..], b"rest");
        }
        assert_eq!(encode_varint(37).as_ref(), &[0x25]);
        assert_eq!(encode_varint(15293).as_ref(), &[0x7b, 0xbd]);
        assert_eq!(decode_varint(&mut Bytes::from_static(&[0x7b])), None);
        assert_eq!(decode_varint(&mut Bytes::new()), None);
    }
}
