//! [`WtSession`]: an established session's raw API, and how it ended ([`SessionClose`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::{ConnectionError, RecvStream, SendStream, VarInt};
use tokio::sync::{Mutex, mpsc, watch};
use transport_core::TransportError;

use super::driver::ConnectEnded;
use super::error::{connection_error, h3_code, write_error};
use crate::proto::capsule::{self, Capsule};
use crate::proto::frame::Frame;

/// How long a client's close waits for its CONNECTION_CLOSE to be sent (see
/// [`WtSession::close_connection`]): one turn of quinn's endpoint driver, with room for a loaded
/// machine.
const CLOSE_FLUSH: Duration = Duration::from_millis(10);
use crate::proto::{datagram, stream};

/// How a session ended, as [`WtSession::closed`] and, on the server,
/// [`WtServerSession::session_closed`](crate::WtServerSession::session_closed) report it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SessionClose {
    /// The peer closed the session: a CLOSE_WEBTRANSPORT_SESSION capsule, the end of the
    /// CONNECT stream (code 0, empty reason, as the draft says), or a QUIC CONNECTION_CLOSE with
    /// an application code (servers that cannot send the capsule, such as h3-webtransport's, end a
    /// session that way). A reason that is not UTF-8 in a capsule is a protocol violation
    /// ([`Lost`](Self::Lost)); in a CONNECTION_CLOSE it is kept with its bytes escaped.
    Peer {
        /// The application's error code.
        code: u32,
        /// The reason (may be empty).
        reason: String,
    },
    /// This side closed the session with [`WtSession::close`] /
    /// [`WtServerSession::close`](crate::WtServerSession::close), by dropping it, or (server) by
    /// a server shutdown.
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

    pub(crate) fn from_connection(e: &ConnectionError) -> Self {
        match e {
            ConnectionError::ApplicationClosed(c) => match u32::try_from(c.error_code.into_inner())
            {
                Ok(code) => Self::Peer {
                    code,
                    reason: reason_text(&c.reason),
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

/// A QUIC CONNECTION_CLOSE reason as text, losslessly: UTF-8 as is, anything else with each
/// byte outside printable ASCII escaped (`\xff`), so no byte of the peer's reason is replaced.
pub(crate) fn reason_text(reason: &[u8]) -> String {
    match std::str::from_utf8(reason) {
        Ok(text) => text.to_owned(),
        Err(_) => reason.escape_ascii().to_string(),
    }
}

pub(super) type CloseCell = Arc<watch::Sender<Option<SessionClose>>>;

/// Records how the session ended; the first record wins.
pub(super) fn set_close(cell: &CloseCell, close: SessionClose) -> bool {
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
pub(super) fn fail(conn: &quinn::Connection, cell: &CloseCell, code: u32, error: TransportError) {
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
    pub(super) endpoint: quinn::Endpoint,
    pub(super) conn: quinn::Connection,
    pub(super) session_id: u64,
    pub(super) response_headers: http::HeaderMap,
    /// Our control stream: it must stay open for the whole connection.
    pub(super) _control: SendStream,
    pub(super) connect_send: Mutex<Option<SendStream>>,
    pub(super) bi: Mutex<mpsc::Receiver<(SendStream, RecvStream)>>,
    pub(super) uni: Mutex<mpsc::Receiver<(u64, RecvStream)>>,
    pub(super) close: CloseCell,
    /// Set once the server sent DRAIN_WEBTRANSPORT_SESSION.
    pub(super) drain: Arc<watch::Sender<bool>>,
    /// Set once the server answered our close by ending its side of the CONNECT stream.
    pub(super) connect_ended: Arc<watch::Sender<ConnectEnded>>,
    pub(super) close_timeout: Duration,
    pub(super) zero_rtt_accepted: bool,
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

    /// Whether the session was set up with 0-RTT data the server accepted (see
    /// [`WtClientConfig::zero_rtt`](crate::WtClientConfig::zero_rtt)).
    pub fn zero_rtt_accepted(&self) -> bool {
        self.zero_rtt_accepted
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
            let mut connect_ended = self.connect_ended.subscribe();
            let acked = tokio::time::timeout(self.close_timeout, async {
                send.write_all(&buf).await.ok()?;
                send.finish().ok()?;
                // Acknowledged, or answered: the server ends its side of the CONNECT stream
                // once it has read the capsule (and may wait for our CONNECTION_CLOSE before
                // acknowledging, so the answer is often first).
                tokio::select! {
                    stopped = send.stopped() => stopped.ok().map(|_| "acknowledged"),
                    _ = connect_ended.wait_for(Option::is_some) => Some("answered"),
                }
            })
            .await;
            tracing::debug!(?acked, "close capsule sent");
        }
        // quinn's endpoint driver outlives its handles until every connection has drained, so
        // the CONNECTION_CLOSE goes out even if the session is dropped right away, as long as
        // the runtime runs: `close_connection` gives it the moment a process about to exit
        // needs.
        self.close_connection(code, reason.as_bytes()).await;
        Ok(())
    }

    /// Closes the QUIC connection with `code` and `reason`, then waits (at most
    /// [`CLOSE_FLUSH`]) until quinn's connection driver has sent the CONNECTION_CLOSE. A process
    /// that exits right after closing would otherwise often exit first, and the server would
    /// only learn of the end from its idle timeout. The full drain (three probe timeouts) is not
    /// waited for.
    ///
    /// A closed connection sends nothing but its CONNECTION_CLOSE, so the first datagram it
    /// sends after this close is that frame. The driver, woken by the close, usually sends it
    /// within a turn or two of the scheduler: a few yields see it go out (counted under the
    /// connection's lock, which the driver holds until the datagram is with the socket) and
    /// spare the close a wait for a timer. The count is read after the close (here, or by the
    /// session's driver when it closed the connection for [`close`](Self::close) on the
    /// server's answer), so a datagram sent before it cannot pass for the CONNECTION_CLOSE;
    /// when quinn's driver was faster than the count (another worker thread) or is slow, the
    /// wait falls back to quinn's `wait_idle` within the same bound. A connection the peer
    /// already closed (or that timed out) sends nothing more: no wait.
    pub(crate) async fn close_connection(&self, code: u32, reason: &[u8]) {
        /// Scheduler turns to look for the CONNECTION_CLOSE before waiting on a timer.
        const YIELDS: usize = 4;
        let deadline = tokio::time::Instant::now() + CLOSE_FLUSH;
        let earlier = self.conn.close_reason();
        self.conn.close(VarInt::from_u32(code), reason);
        let sent = || self.conn.stats().udp_tx.datagrams;
        let closed_at = match earlier {
            None => Some(sent()),
            // The driver closed it for this close, when the server answered it.
            Some(ConnectionError::LocallyClosed) => *self.connect_ended.borrow(),
            // Draining (RFC 9000 §10.2.2) or gone: nothing left to send.
            Some(
                ConnectionError::ApplicationClosed(_)
                | ConnectionError::ConnectionClosed(_)
                | ConnectionError::Reset
                | ConnectionError::TimedOut,
            ) => return,
            // Closed here before: its CONNECTION_CLOSE may still be on its way.
            Some(_) => None,
        };
        if let Some(before) = closed_at {
            for turn in 0..=YIELDS {
                if sent() > before {
                    return;
                }
                if turn < YIELDS {
                    tokio::task::yield_now().await;
                }
            }
        }
        let _ = tokio::time::timeout_at(deadline, self.endpoint.wait_idle()).await;
    }

    /// Whether the server sent DRAIN_WEBTRANSPORT_SESSION (it asks the client to finish and
    /// close the session; the session stays usable).
    pub fn drain_requested(&self) -> bool {
        *self.drain.borrow()
    }

    /// Waits until the server sends DRAIN_WEBTRANSPORT_SESSION or the session ends.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn drain_received(&self) {
        let mut drain = self.drain.subscribe();
        let mut close = self.close.subscribe();
        tokio::select! {
            _ = drain.wait_for(|d| *d) => {}
            _ = close.wait_for(Option::is_some) => {}
        }
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

#[cfg(test)]
mod tests {
    #[test]
    fn reasons_are_never_lossy() {
        assert_eq!(super::reason_text("bye é".as_bytes()), "bye é");
        assert_eq!(super::reason_text(b"bad \xff\xfe"), "bad \\xff\\xfe");
    }
}
