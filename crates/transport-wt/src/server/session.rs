//! A request waiting for the application's decision ([`WtIncomingSession`]) and an accepted
//! session ([`WtServerSession`]).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h3_webtransport::server::{AcceptedBi, WebTransportSession};
use http::{HeaderMap, Request, Response, StatusCode, header};
use tracing::debug;
use transport_core::TransportError;
use transport_core::metrics::{self, ConnectionGauge, reason};

use super::TRANSPORT;

/// The HTTP/3 connection type underneath the server.
pub(crate) type H3Conn = h3::server::Connection<h3_quinn::Connection, Bytes>;
/// A request stream (the CONNECT stream) of that connection.
pub(crate) type H3Request = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;
type Session = WebTransportSession<h3_quinn::Connection, Bytes>;

/// A bidirectional WebTransport stream: `tokio::io::AsyncRead + AsyncWrite`;
/// `shutdown()` finishes the sending half.
pub type WtBiStream = h3_webtransport::stream::BidiStream<h3_quinn::BidiStream<Bytes>, Bytes>;
/// The sending side of a unidirectional WebTransport stream: `tokio::io::AsyncWrite`;
/// `shutdown()` finishes it.
pub type WtSendStream = h3_webtransport::stream::SendStream<h3_quinn::SendStream<Bytes>, Bytes>;
/// The receiving side of a unidirectional WebTransport stream: `tokio::io::AsyncRead`.
pub type WtRecvStream = h3_webtransport::stream::RecvStream<h3_quinn::RecvStream, Bytes>;

/// HTTP/3's "no error" application code (RFC 9114), used for normal closes.
pub const H3_NO_ERROR: u32 = 0x100;
/// HTTP/3's "request rejected" code, used when a pending session is dropped unanswered.
const H3_REQUEST_REJECTED: u32 = 0x10b;
/// How long a refused request's connection stays open so the client can read the status.
const REFUSAL_GRACE: Duration = Duration::from_secs(2);

/// How long accepting a session waits for the client's SETTINGS when its CONNECT overtook
/// them: QUIC does not order streams, and under load the request stream can be read before
/// the control stream. Clients send SETTINGS first thing, so this is only ever a short wait.
const PEER_SETTINGS_WAIT: Duration = Duration::from_secs(5);

/// Reads the client's control stream until its SETTINGS frame has arrived; returns at once
/// when it already has. After [`PEER_SETTINGS_WAIT`] it returns `Ok` and lets the accept that
/// follows report the missing settings.
async fn peer_settings(h3: &mut H3Conn) -> Result<(), TransportError> {
    use h3::ConnectionState as _;
    // `settings()` borrows the peer's SETTINGS once received and is an owned default before.
    let received =
        |h3: &H3Conn| matches!(h3.inner.shared.settings(), std::borrow::Cow::Borrowed(_));
    let wait = async {
        while !received(h3) {
            match std::future::poll_fn(|cx| h3.inner.poll_control(cx)).await {
                Ok(h3::proto::frame::Frame::Settings(_)) => break,
                Ok(_) => {}
                Err(e) => {
                    return Err(TransportError::protocol(format!(
                        "the client's HTTP/3 control stream: {e}"
                    )));
                }
            }
        }
        Ok(())
    };
    tokio::time::timeout(PEER_SETTINGS_WAIT, wait)
        .await
        .unwrap_or(Ok(()))
}

/// What the application learns about a WebTransport CONNECT request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WtRequest {
    /// Request path, e.g. `/chat`.
    pub path: String,
    /// Query string without `?`, if any.
    pub query: Option<String>,
    /// `:authority` of the request (host and port), if given.
    pub authority: Option<String>,
    /// All request headers (Origin, Authorization, cookies, ...).
    pub headers: HeaderMap,
    /// The `Origin` header, when present and valid text.
    pub origin: Option<String>,
    /// The client's address.
    pub peer_addr: SocketAddr,
}

impl WtRequest {
    pub(crate) fn new(request: &Request<()>, peer_addr: SocketAddr) -> Self {
        Self {
            path: request.uri().path().to_owned(),
            query: request.uri().query().map(str::to_owned),
            authority: request.uri().authority().map(ToString::to_string),
            headers: request.headers().clone(),
            origin: request
                .headers()
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            peer_addr,
        }
    }
}

/// Whether a request is a WebTransport extended CONNECT.
pub(crate) fn is_webtransport_connect(request: &Request<()>) -> bool {
    request.method() == http::Method::CONNECT
        && request.extensions().get::<h3::ext::Protocol>()
            == Some(&h3::ext::Protocol::WEB_TRANSPORT)
}

/// Answers `stream` with `status` and keeps the connection until the client goes away or a
/// short grace ends, so the answer is not lost to an immediate close.
pub(crate) async fn refuse(
    quic: &quinn::Connection,
    h3: Option<Box<H3Conn>>,
    mut stream: H3Request,
    status: StatusCode,
) {
    let mut response = Response::new(());
    *response.status_mut() = status;
    let sent = async {
        stream.send_response(response).await?;
        stream.finish().await
    };
    match tokio::time::timeout(REFUSAL_GRACE, sent).await {
        Ok(Ok(())) => {
            let _ = tokio::time::timeout(REFUSAL_GRACE, quic.closed()).await;
        }
        Ok(Err(e)) => debug!(error = %e, "sending the refusal failed"),
        Err(_) => debug!("sending the refusal timed out"),
    }
    drop(h3);
    quic.close(H3_REQUEST_REJECTED.into(), b"request refused");
}

/// A WebTransport CONNECT request that passed the server's [`AcceptPolicy`] and waits for the
/// application: [`accept`](Self::accept) it or [`reject`](Self::reject) it with a status.
/// Dropping it closes the connection (QUIC code `H3_REQUEST_REJECTED`).
///
/// [`AcceptPolicy`]: transport_core::AcceptPolicy
pub struct WtIncomingSession {
    request: WtRequest,
    parts: Option<Box<Parts>>,
    guard: Option<super::SessionGuard>,
}

struct Parts {
    quic: quinn::Connection,
    h3: Box<H3Conn>,
    connect: Request<()>,
    stream: H3Request,
}

impl std::fmt::Debug for WtIncomingSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WtIncomingSession")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl WtIncomingSession {
    pub(crate) fn new(
        request: WtRequest,
        quic: quinn::Connection,
        h3: Box<H3Conn>,
        connect: Request<()>,
        stream: H3Request,
        guard: super::SessionGuard,
    ) -> Self {
        Self {
            request,
            parts: Some(Box::new(Parts {
                quic,
                h3,
                connect,
                stream,
            })),
            guard: Some(guard),
        }
    }

    /// The CONNECT request.
    pub fn request(&self) -> &WtRequest {
        &self.request
    }

    /// Answers `200` and returns the established session.
    ///
    /// # Errors
    /// [`TransportError::ConnectionLost`] (or another close error) when the client went away
    /// meanwhile, [`TransportError::ProtocolViolation`] when the client's HTTP/3 settings lack
    /// WebTransport or datagram support.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled accept closes the connection.
    pub async fn accept(mut self) -> Result<(WtServerSession, WtRequest), TransportError> {
        let Parts {
            quic,
            mut h3,
            connect,
            stream,
        } = *self.parts.take().ok_or(TransportError::Closed)?;
        let guard = self.guard.take();
        let connect_id = stream.send_id().into_inner();
        // h3-webtransport checks the client's SETTINGS when it accepts: they must be here.
        if let Err(e) = peer_settings(&mut h3).await {
            metrics::handshake_rejected(TRANSPORT, reason::FAILED);
            quic.close(H3_REQUEST_REJECTED.into(), b"session setup failed");
            return Err(e);
        }
        let session = match Box::pin(Session::accept(connect, stream, *h3)).await {
            Ok(session) => session,
            Err(e) => {
                metrics::handshake_rejected(TRANSPORT, reason::FAILED);
                let error = close_error(&quic)
                    .unwrap_or_else(|| TransportError::protocol(format!("session: {e}")));
                quic.close(H3_REQUEST_REJECTED.into(), b"session setup failed");
                return Err(error);
            }
        };
        metrics::handshake_accepted(TRANSPORT);
        let request = std::mem::replace(&mut self.request, placeholder_request());
        let session = WtServerSession {
            datagram_prefix: encode_varint(connect_id / 4),
            session: Box::new(session),
            quic,
            _guard: guard,
            _gauge: ConnectionGauge::new(TRANSPORT),
        };
        Ok((session, request))
    }

    /// Refuses the request with `status` (e.g. 401, 403, 404, 429; a 2xx status is replaced by
    /// 403). The client sees the status; the connection closes once the client has read it and
    /// gone, or after a grace of two seconds.
    ///
    /// # Cancel safety
    /// Cancelling stops waiting; the connection is closed.
    pub async fn reject(mut self, status: StatusCode) {
        if let Some(parts) = self.parts.take() {
            let status = if status.is_success() {
                StatusCode::FORBIDDEN
            } else {
                status
            };
            metrics::handshake_rejected(TRANSPORT, metrics::status_reason(status));
            refuse(&parts.quic, Some(parts.h3), parts.stream, status).await;
        }
    }
}

impl Drop for WtIncomingSession {
    fn drop(&mut self) {
        if let Some(parts) = self.parts.take() {
            metrics::handshake_rejected(TRANSPORT, reason::DROPPED);
            parts
                .quic
                .close(H3_REQUEST_REJECTED.into(), b"request not accepted");
        }
    }
}

fn placeholder_request() -> WtRequest {
    WtRequest {
        path: String::new(),
        query: None,
        authority: None,
        headers: HeaderMap::new(),
        origin: None,
        peer_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
    }
}

/// An accepted WebTransport session (server side): one per QUIC connection.
///
/// Streams and datagrams are raw: bytes in, bytes out. All methods take `&self`, so accepting
/// streams, reading datagrams and sending can run concurrently from one task (`select!`,
/// `join!`) or, behind an `Arc`, from several. Dropping the session closes the connection
/// with [`H3_NO_ERROR`].
pub struct WtServerSession {
    session: Box<Session>,
    quic: quinn::Connection,
    /// The datagram prefix: the quarter stream ID of the CONNECT stream, as a varint.
    datagram_prefix: Bytes,
    _guard: Option<super::SessionGuard>,
    _gauge: ConnectionGauge,
}

impl std::fmt::Debug for WtServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WtServerSession")
            .field("peer", &self.quic.remote_address())
            .field("session_id", &self.session.session_id())
            .finish_non_exhaustive()
    }
}

impl WtServerSession {
    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.quic.remote_address()
    }

    /// The QUIC connection underneath (statistics, RTT, ...). Closing it closes the session.
    pub fn quic(&self) -> &quinn::Connection {
        &self.quic
    }

    /// The next bidirectional stream the client opens.
    ///
    /// # Errors
    /// The close error once the session is closed ([`TransportError::ClosedByPeer`],
    /// [`TransportError::ConnectionLost`], [`TransportError::Closed`]).
    ///
    /// # Cancel safety
    /// Not cancel safe: h3-webtransport takes the stream from QUIC, then reads its header; a
    /// call cancelled in between loses that stream. Keep one `accept_bi` future alive in a
    /// loop of its own (as [`echo`](super::echo) does) rather than re-creating it in a
    /// `select!`.
    pub async fn accept_bi(&self) -> Result<WtBiStream, TransportError> {
        loop {
            match self.session.accept_bi().await {
                Ok(Some(AcceptedBi::BidiStream(_, stream))) => return Ok(stream),
                Ok(Some(AcceptedBi::Request(request, stream))) => {
                    // One session per connection: further requests get a plain refusal.
                    debug!(uri = %request.uri(), "refusing a request inside a session");
                    let mut stream = stream;
                    let mut response = Response::new(());
                    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                    let _ = stream.send_response(response).await;
                    let _ = stream.finish().await;
                }
                Ok(None) => return Err(self.closed_error()),
                Err(e) => return Err(close_error(&self.quic).unwrap_or_else(|| stream_error(&e))),
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
        match self.session.accept_uni().await {
            Ok(Some((_, stream))) => Ok(stream),
            Ok(None) => Err(self.closed_error()),
            Err(e) => Err(close_error(&self.quic)
                .unwrap_or_else(|| TransportError::protocol(format!("HTTP/3: {e}")))),
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
        self.session
            .open_bi(self.session.session_id())
            .await
            .map_err(|e| close_error(&self.quic).unwrap_or_else(|| stream_error(&e)))
    }

    /// Opens a unidirectional stream to the client.
    ///
    /// # Errors
    /// As [`accept_bi`](Self::accept_bi).
    ///
    /// # Cancel safety
    /// As [`open_bi`](Self::open_bi).
    pub async fn open_uni(&self) -> Result<WtSendStream, TransportError> {
        self.session
            .open_uni(self.session.session_id())
            .await
            .map_err(|e| close_error(&self.quic).unwrap_or_else(|| stream_error(&e)))
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
                quinn::SendDatagramError::ConnectionLost(e) => connection_error(&e),
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
        loop {
            let mut datagram = self
                .quic
                .read_datagram()
                .await
                .map_err(|e| connection_error(&e))?;
            match decode_varint(&mut datagram) {
                Some(id) if encode_varint(id) == self.datagram_prefix => return Ok(datagram),
                // A datagram for another (unknown) session, or a malformed prefix: dropped.
                _ => debug!("dropping a datagram for another session"),
            }
        }
    }

    /// The largest datagram payload that fits in one QUIC packet now (the path MTU minus
    /// overheads); `None` when the client does not accept datagrams.
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.quic
            .max_datagram_size()
            .map(|n| n.saturating_sub(self.datagram_prefix.len()))
    }

    /// Closes the session by closing its QUIC connection with application code `code` and a
    /// reason (at most a few hundred bytes are sent). Use [`H3_NO_ERROR`] for a normal close.
    ///
    /// h3-webtransport 0.1.2 cannot send `CLOSE_WEBTRANSPORT_SESSION`; with one session per
    /// connection, closing the connection ends the session just the same for the client.
    pub fn close(&self, code: u32, reason: &str) {
        let reason = reason.as_bytes();
        self.quic
            .close(code.into(), &reason[..reason.len().min(512)]);
    }

    /// Waits until the session is closed (by either side, or by a timeout) and returns why.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn closed(&self) -> TransportError {
        connection_error(&self.quic.closed().await)
    }

    fn closed_error(&self) -> TransportError {
        close_error(&self.quic).unwrap_or_else(|| TransportError::lost("session ended"))
    }
}

impl Drop for WtServerSession {
    fn drop(&mut self) {
        self.quic.close(H3_NO_ERROR.into(), b"");
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
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
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

fn stream_error(e: &h3::error::StreamError) -> TransportError {
    TransportError::protocol(format!("HTTP/3: {e}"))
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

    #[test]
    fn request_info() {
        let request = Request::builder()
            .method(http::Method::CONNECT)
            .uri("https://localhost:4433/chat?room=1")
            .header("origin", "https://app.example")
            .extension(h3::ext::Protocol::WEB_TRANSPORT)
            .body(())
            .unwrap();
        assert!(is_webtransport_connect(&request));
        let info = WtRequest::new(&request, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(info.path, "/chat");
        assert_eq!(info.query.as_deref(), Some("room=1"));
        assert_eq!(info.authority.as_deref(), Some("localhost:4433"));
        assert_eq!(info.origin.as_deref(), Some("https://app.example"));
        let get = Request::get("/").body(()).unwrap();
        assert!(!is_webtransport_connect(&get));
    }
}
