//! A client link run by a layer above this crate in that layer's own task (the adaptive
//! transport's session layer), instead of behind a [`Connection`](transport_core::Connection)
//! with a driver task and a channel each way.

use std::task::{Context, Poll};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as WsCloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use transport_core::driver::{LinkIo, RunOutcome};
use transport_core::tls::ClientStream;
use transport_core::{ConnectionInfo, Message, TransportError};

use crate::error::{ReadFailure, classify};
use crate::link::{self, Link};
use crate::read_buf::AdaptiveRead;

/// An open client WebSocket link that its owner runs itself: a message exchange first
/// ([`send`](Self::send), [`recv`](Self::recv)), then [`poll_run`](Self::poll_run) against a
/// [`LinkIo`] — with keepalive, dead-peer detection and the close handshake of a
/// [`Connection`](transport_core::Connection)'s link, but no reconnects. Made by
/// [`WsConnector::connect_raw`](crate::WsConnector::connect_raw).
///
/// For a transport built on this one; applications use [`Connection`](transport_core::Connection).
/// Dropping it drops the socket without a close frame; [`close`](Self::close) sends one.
pub struct RawLink {
    link: Link<AdaptiveRead<ClientStream>>,
    info: ConnectionInfo,
}

impl std::fmt::Debug for RawLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawLink")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl RawLink {
    pub(crate) fn new(link: Link<AdaptiveRead<ClientStream>>, info: ConnectionInfo) -> Self {
        Self { link, info }
    }

    /// Facts about the link.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// Sends one message and flushes it.
    ///
    /// # Errors
    /// [`TransportError::SendFailed`] when the socket fails.
    pub async fn send(&mut self, message: Message) -> Result<(), TransportError> {
        let Some(message) = link::to_ws(message) else {
            return Ok(());
        };
        self.link
            .ws()
            .send(message)
            .await
            .map_err(link::classify_write)
    }

    /// The next application message; `None` when the peer closed. Pings are answered on
    /// the way (by tungstenite, flushed with the next write). Not bounded in time: the caller
    /// bounds it.
    ///
    /// # Errors
    /// [`TransportError::ConnectionLost`] or a protocol violation of the peer.
    pub async fn recv(&mut self) -> Result<Option<Message>, TransportError> {
        loop {
            let Some(item) = self.link.ws().next().await else {
                return Ok(None);
            };
            match item {
                Ok(WsMessage::Text(text)) => {
                    return Message::text_from_bytes(tokio_tungstenite::tungstenite::Bytes::from(
                        text,
                    ))
                    .map(Some);
                }
                Ok(WsMessage::Binary(data)) => return Ok(Some(Message::binary(data))),
                Ok(WsMessage::Close(_)) => return Ok(None),
                Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_)) => {}
                Err(e) => {
                    return match classify(e) {
                        ReadFailure::Closed => Ok(None),
                        ReadFailure::Lost(e) | ReadFailure::Violation(e, _) => Err(e),
                    };
                }
            }
        }
    }

    /// Serves `io` until the link ends, or until `io` ends the run
    /// ([`LinkIo::poll_end`]): the link is then left as it is, to be run again or closed.
    pub fn poll_run<I: LinkIo>(&mut self, io: &mut I, cx: &mut Context<'_>) -> Poll<RunOutcome> {
        self.link.poll(io, cx)
    }

    /// Closes the link: a close frame, then the peer's, within the close timeout.
    pub async fn close(mut self, code: u16, reason: &str) {
        let timeout = self.link.close_timeout();
        let frame = WsCloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let ws = self.link.ws();
        let _ = tokio::time::timeout(timeout, async {
            if ws.close(Some(frame)).await.is_ok() {
                // Until the peer's close frame ends the stream (bounded by the timeout).
                while let Some(Ok(_)) = ws.next().await {}
            }
        })
        .await;
    }
}
