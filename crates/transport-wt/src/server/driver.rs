//! The CONNECT stream of an accepted session, owned by one driver task per session.
//!
//! The draft (draft-ietf-webtrans-http3, "Session Termination") ends a session with a
//! CLOSE_WEBTRANSPORT_SESSION capsule (a 32-bit code and a UTF-8 reason of at most 1024 bytes)
//! followed by a FIN on the CONNECT stream, or with a bare FIN (code 0, empty reason). The
//! driver reads the client's capsules from the DATA frames of that stream (h3's
//! [`RequestStream`](h3::server::RequestStream) strips the framing), records how the session
//! ended in a [`CloseCell`], and writes this side's capsules when the application (or a server
//! shutdown) asks for them:
//!
//! ```text
//!  client ── DATA(capsules), FIN ──► recv half ─► CloseCell (Peer { code, reason }) ─► QUIC close
//!  close(code, reason) / shutdown ─► send half ─► DATA(CLOSE capsule), FIN ─► wait ─► QUIC close
//!  drain() ────────────────────────► send half ─► DATA(DRAIN capsule)
//! ```
//!
//! One session per QUIC connection: once the session has ended, the connection is closed,
//! which resets every stream of the session at once, as the draft asks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;
use transport_core::TransportError;

use super::session::H3_NO_ERROR;
use crate::SessionClose;
use crate::proto::capsule::{self, Capsule};

/// HTTP/3's H3_MESSAGE_ERROR: a malformed capsule on the CONNECT stream.
const H3_MESSAGE_ERROR: u32 = 0x10e;
/// What the FIN answering a client's close gets on top of four round trips.
const FIN_GRACE: Duration = Duration::from_millis(50);
/// The reason a server shutdown gives its sessions.
pub(crate) const SHUTDOWN_REASON: &str = "server shutting down";

type SendHalf = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type RecvHalf = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// What the session's handles and its driver share.
#[derive(Debug)]
pub(crate) struct SessionState {
    /// How the session ended; the first record wins.
    close: watch::Sender<Option<SessionClose>>,
    /// Wakes the driver after a local close or a drain request.
    wake: Notify,
    /// A DRAIN capsule to send.
    drain: AtomicBool,
    /// Whether the client asked to drain the session.
    peer_drain: watch::Sender<bool>,
}

impl SessionState {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            close: watch::Sender::new(None),
            wake: Notify::new(),
            drain: AtomicBool::new(false),
            peer_drain: watch::Sender::new(false),
        })
    }

    /// Records how the session ended unless it already has; `true` when this record won.
    pub(crate) fn set_close(&self, close: SessionClose) -> bool {
        self.close.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(close);
                true
            } else {
                false
            }
        })
    }

    /// How the session ended, if it has.
    pub(crate) fn close(&self) -> Option<SessionClose> {
        self.close.borrow().clone()
    }

    /// Asks the driver to close the session with `code` and `reason` (cut to 1024 bytes at a
    /// character boundary). Does nothing once the session has ended.
    pub(crate) fn request_close(&self, code: u32, reason: &str) {
        let reason = cut_reason(reason);
        if self.set_close(SessionClose::Local {
            code,
            reason: reason.to_owned(),
        }) {
            self.wake.notify_one();
        }
    }

    /// Asks the driver to send DRAIN_WEBTRANSPORT_SESSION.
    pub(crate) fn request_drain(&self) {
        if !self.drain.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    /// Whether the client sent DRAIN_WEBTRANSPORT_SESSION.
    pub(crate) fn peer_drained(&self) -> bool {
        *self.peer_drain.borrow()
    }

    /// Waits until the client sends DRAIN_WEBTRANSPORT_SESSION or the session ends.
    pub(crate) async fn wait_peer_drain(&self) {
        let mut drain = self.peer_drain.subscribe();
        let mut close = self.close.subscribe();
        tokio::select! {
            _ = drain.wait_for(|d| *d) => {}
            _ = close.wait_for(Option::is_some) => {}
        }
    }

    /// Waits until the session has ended and says how.
    pub(crate) async fn closed(&self) -> SessionClose {
        let mut rx = self.close.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(close) => close
                .clone()
                .unwrap_or(SessionClose::Lost(TransportError::Closed)),
            // Unreachable while `self` holds the sender.
            Err(_) => SessionClose::Lost(TransportError::Closed),
        }
    }
}

/// The longest prefix of `reason` that fits the draft's 1024 bytes.
pub(crate) fn cut_reason(reason: &str) -> &str {
    let mut cut = reason.len().min(capsule::MAX_CLOSE_REASON);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    &reason[..cut]
}

/// Everything the driver of one session needs.
pub(crate) struct Driver {
    pub(crate) quic: quinn::Connection,
    pub(crate) connect: h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    pub(crate) state: Arc<SessionState>,
    /// The server's shutdown: the session is closed with [`H3_NO_ERROR`].
    pub(crate) shutdown: CancellationToken,
    /// How long a close waits for the client before closing the connection.
    pub(crate) close_timeout: Duration,
    /// The session's slot in the server's limits, held until the connection is closed.
    pub(crate) guard: Option<super::SessionGuard>,
    /// h3 closes the connection when its `Connection` is dropped: kept until the driver ends.
    pub(crate) h3: Arc<std::sync::Mutex<Box<super::session::H3Conn>>>,
}

/// What ended the reading of the CONNECT stream.
enum PeerEnd {
    /// A CLOSE capsule or a FIN.
    Closed { code: u32, reason: String },
    /// A malformed capsule, a reset or a broken connection.
    Failed { code: u32, error: TransportError },
}

impl Driver {
    /// Runs until the session has ended and its connection is closed.
    pub(crate) async fn run(self) {
        let Self {
            quic,
            connect,
            state,
            shutdown,
            close_timeout,
            guard,
            h3,
        } = self;
        // Released when the driver ends (the connection closed), or before the session's end is
        // published when the connection closed first, so whoever sees that end sees the slot
        // free.
        let held = (guard, h3);
        let (mut send, recv) = connect.split();
        let reading = read_capsules(recv, state.clone());
        tokio::pin!(reading);
        let end = loop {
            tokio::select! {
                end = &mut reading => break Some(end),
                () = state.wake.notified() => {
                    if state.drain.swap(false, Ordering::AcqRel) {
                        debug!("sending DRAIN_WEBTRANSPORT_SESSION");
                        if let Err(e) = send.send_data(Capsule::Drain.to_bytes()).await {
                            debug!(error = %e, "sending the drain capsule failed");
                        }
                    }
                    if state.close().is_some() {
                        break None;
                    }
                }
                () = shutdown.cancelled() => {
                    state.request_close(H3_NO_ERROR, SHUTDOWN_REASON);
                    break None;
                }
                e = quic.closed() => {
                    drop(held);
                    state.set_close(SessionClose::from_connection(&e));
                    return;
                }
            }
        };
        match end {
            Some(PeerEnd::Closed { code, reason }) => {
                debug!(code, %reason, "the client closed the session");
                state.set_close(SessionClose::Peer { code, reason });
                // Our side of the CONNECT stream ends too, then the connection (and with it every
                // stream of the session). quinn drops unsent stream data when the connection
                // closes, so the FIN gets a few round trips unless the client closes first.
                let grace = close_timeout.min(quic.rtt() * 4 + FIN_GRACE);
                let _ = tokio::time::timeout(grace, async {
                    let _ = send.finish().await;
                    quic.closed().await
                })
                .await;
                quic.close(H3_NO_ERROR.into(), b"");
            }
            Some(PeerEnd::Failed { .. }) if quic.close_reason().is_some() => {
                if let Some(e) = quic.close_reason() {
                    state.set_close(SessionClose::from_connection(&e));
                }
            }
            Some(PeerEnd::Failed { code, error }) => {
                debug!(%error, "the session's CONNECT stream failed");
                let text = error.to_string();
                state.set_close(SessionClose::Lost(error));
                quic.close(code.into(), text.as_bytes());
            }
            None => close_locally(&quic, &mut send, &state, reading, close_timeout).await,
        }
    }
}

/// Sends the CLOSE capsule recorded in `state` and a FIN, waits (at most `close_timeout`) for
/// the client to end the CONNECT stream or the connection, then closes the connection with the
/// same code and reason.
async fn close_locally(
    quic: &quinn::Connection,
    send: &mut SendHalf,
    state: &SessionState,
    reading: std::pin::Pin<&mut impl std::future::Future<Output = PeerEnd>>,
    close_timeout: Duration,
) {
    let (code, reason) = match state.close() {
        Some(SessionClose::Local { code, reason }) => (code, reason),
        _ => (0, String::new()),
    };
    debug!(code, %reason, "closing the session");
    let capsule = Capsule::Close {
        code,
        reason: reason.clone(),
    };
    let written = tokio::time::timeout(close_timeout, async {
        send.send_data(capsule.to_bytes()).await?;
        send.finish().await
    })
    .await;
    if let Ok(Ok(())) = written {
        // Our client closes the connection when the capsule arrives; browsers answer with
        // their own FIN.
        let answered = tokio::time::timeout(close_timeout, async {
            tokio::select! {
                _ = reading => true,
                _ = quic.closed() => false,
            }
        })
        .await;
        if answered == Ok(true) {
            // The browser has the capsule and answered with its FIN, but closing the connection
            // at once can still overtake the close on its way to the page (Chromium then
            // reports "Connection lost" about one time in fifteen): linger a few round trips,
            // unless the client closes first.
            let linger = close_timeout.min(quic.rtt() * 4 + FIN_GRACE);
            let _ = tokio::time::timeout(linger, quic.closed()).await;
        }
    } else {
        debug!(?written, "the close capsule could not be sent");
    }
    quic.close(code.into(), reason.as_bytes());
}

/// Reads the client's capsules until the session ends.
async fn read_capsules(mut recv: RecvHalf, state: Arc<SessionState>) -> PeerEnd {
    let mut buf = BytesMut::new();
    loop {
        match recv.recv_data().await {
            Ok(Some(mut data)) => {
                while data.has_remaining() {
                    let chunk = data.chunk();
                    let n = chunk.len();
                    buf.extend_from_slice(chunk);
                    data.advance(n);
                }
            }
            // The FIN ends the session: code 0, empty reason.
            Ok(None) => {
                return PeerEnd::Closed {
                    code: 0,
                    reason: String::new(),
                };
            }
            Err(e) => {
                return PeerEnd::Failed {
                    code: H3_NO_ERROR,
                    error: TransportError::lost(format!("the CONNECT stream: {e}")),
                };
            }
        }
        loop {
            match capsule::decode(&buf, capsule::DEFAULT_MAX_CAPSULE) {
                Ok(Some((capsule, n))) => {
                    buf.advance(n);
                    match capsule {
                        Capsule::Close { code, reason } => {
                            return PeerEnd::Closed { code, reason };
                        }
                        Capsule::Drain => {
                            debug!("the client asks to drain the session");
                            state.peer_drain.send_replace(true);
                        }
                        other => debug!(?other, "skipping a capsule"),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return PeerEnd::Failed {
                        code: H3_MESSAGE_ERROR,
                        error: e.into(),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        assert_eq!(cut_reason("bye"), "bye");
        let long = "é".repeat(600);
        let cut = cut_reason(&long);
        assert_eq!(cut.len(), 1024);
        let odd = format!("a{long}");
        assert_eq!(cut_reason(&odd).len(), 1023);
    }

    #[tokio::test]
    async fn the_first_close_wins() {
        let state = SessionState::new();
        state.request_close(7, "bye");
        state.request_close(8, "again");
        assert!(!state.set_close(SessionClose::Peer {
            code: 1,
            reason: String::new()
        }));
        assert_eq!(
            state.closed().await,
            SessionClose::Local {
                code: 7,
                reason: "bye".into()
            }
        );
    }
}
