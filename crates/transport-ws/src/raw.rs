//! A link run by a layer above this crate in that layer's own task (the adaptive transport's
//! session layer), instead of behind a [`Connection`](transport_core::Connection) with a
//! driver task and a channel each way. Client links come from
//! [`WsConnector::connect_raw`](crate::WsConnector::connect_raw), server links from
//! [`PendingUpgrade::finish_raw`](crate::PendingUpgrade::finish_raw).

use std::task::{Context, Poll};

use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as WsCloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use transport_core::driver::{LinkIo, RunOutcome};
use transport_core::metrics::ConnectionGauge;
use transport_core::tls::ClientStream;
use transport_core::{ConnectionInfo, Message, TransportError};

use crate::error::{ReadFailure, classify};
use crate::link::{self, Link};
use crate::read_buf::AdaptiveRead;

/// An open WebSocket link that its owner runs itself: a message exchange first
/// ([`send`](Self::send), [`recv`](Self::recv)), then [`poll_run`](Self::poll_run) against a
/// [`LinkIo`] — with keepalive, dead-peer detection and the close handshake of a
/// [`Connection`](transport_core::Connection)'s link, but no reconnects. Made by
/// [`WsConnector::connect_raw`](crate::WsConnector::connect_raw) (client) and
/// [`PendingUpgrade::finish_raw`](crate::PendingUpgrade::finish_raw) (server).
///
/// For a transport built on this one; applications use [`Connection`](transport_core::Connection).
/// Dropping it drops the socket without a close frame; [`close`](Self::close) sends one.
pub struct RawLink {
    inner: Inner,
    info: ConnectionInfo,
}

enum Inner {
    Client(Link<AdaptiveRead<ClientStream>>),
    /// With the server's open-connections gauge, held for the link's life.
    Server {
        link: Link<AdaptiveRead<TokioIo<hyper::upgrade::Upgraded>>>,
        _gauge: ConnectionGauge,
    },
}

/// Runs `$body` with `$link` bound to the link, whatever its stream.
macro_rules! with_link {
    ($self:expr, $link:ident => $body:expr) => {
        match &mut $self.inner {
            Inner::Client($link) => $body,
            Inner::Server { link: $link, .. } => $body,
        }
    };
}

impl std::fmt::Debug for RawLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawLink")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl RawLink {
    pub(crate) fn client(link: Link<AdaptiveRead<ClientStream>>, info: ConnectionInfo) -> Self {
        Self {
            inner: Inner::Client(link),
            info,
        }
    }

    pub(crate) fn server(
        link: Link<AdaptiveRead<TokioIo<hyper::upgrade::Upgraded>>>,
        gauge: ConnectionGauge,
        info: ConnectionInfo,
    ) -> Self {
        Self {
            inner: Inner::Server {
                link,
                _gauge: gauge,
            },
            info,
        }
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
        with_link!(self, l => l.ws().send(message).await.map_err(link::classify_write))
    }

    /// The next application message; `None` when the peer closed. Pings are answered on
    /// the way (by tungstenite, flushed with the next write). Not bounded in time: the caller
    /// bounds it.
    ///
    /// # Errors
    /// [`TransportError::ConnectionLost`] or a protocol violation of the peer.
    pub async fn recv(&mut self) -> Result<Option<Message>, TransportError> {
        with_link!(self, l => recv(l.ws()).await)
    }

    /// Serves `io` until the link ends, or until `io` ends the run
    /// ([`LinkIo::poll_end`]): the link is then left as it is, to be run again or closed.
    pub fn poll_run<I: LinkIo>(&mut self, io: &mut I, cx: &mut Context<'_>) -> Poll<RunOutcome> {
        with_link!(self, l => l.poll(io, cx))
    }

    /// Closes the link: a close frame, then the peer's, within the close timeout.
    pub async fn close(&mut self, code: u16, reason: &str) {
        let frame = WsCloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        with_link!(self, l => {
            let timeout = l.close_timeout();
            close(l.ws(), frame, timeout).await;
        });
    }
}

async fn recv<S>(ws: &mut WebSocketStream<S>) -> Result<Option<Message>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let Some(item) = ws.next().await else {
            return Ok(None);
        };
        match item {
            Ok(WsMessage::Text(text)) => {
                return Message::text_from_bytes(tokio_tungstenite::tungstenite::Bytes::from(text))
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

async fn close<S>(ws: &mut WebSocketStream<S>, frame: WsCloseFrame, timeout: std::time::Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(timeout, async {
        if ws.close(Some(frame)).await.is_ok() {
            // Until the peer's close frame ends the stream (bounded by the timeout).
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}
