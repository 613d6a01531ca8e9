//! The server side: a [`WtServerSession`] turned into a message [`Connection`].

use std::sync::Arc;

use futures_util::future::Either;
use tracing::Instrument as _;
use transport_core::driver;
use transport_core::{Connection, TransportConfig, TransportError};

use super::config::{SendMode, StreamConfig};
use super::link::{self, Link, LinkOptions, MessageSend, Session};
use crate::{WtRequest, WtServer, WtServerSession};

impl WtServerSession {
    /// Turns the session into a message [`Connection`] (see `docs/protocols/wt.md`): waits
    /// (at most `transport.connect_timeout`) for the client's message stream, the first
    /// bidirectional stream it opens, then runs the framing on it. Messages are also accepted
    /// on unidirectional streams and in datagrams; `stream` says how this side sends.
    ///
    /// Used from `transport`: `max_message_size`, `send_buffer`, `recv_buffer`,
    /// `close_timeout`, `connect_timeout`. Keepalive and idle timeout are the server's
    /// ([`WtServerConfig::transport`](crate::WtServerConfig::transport)). In unreliable mode,
    /// what `send` accepts is capped by the session's datagram size.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`]; [`TransportError::Timeout`] when the client opens no
    /// stream in time; the session's end when it ends first; [`TransportError::Unsupported`]
    /// in unreliable mode when the client does not accept datagrams.
    ///
    /// # Cancel safety
    /// Not cancel safe: the session is dropped (closed) with the future.
    pub async fn into_connection(
        self,
        transport: &TransportConfig,
        stream: StreamConfig,
    ) -> Result<Connection, TransportError> {
        transport.validate()?;
        let after = transport.connect_timeout;
        let bidi = tokio::time::timeout(after, self.accept_bi())
            .await
            .map_err(|_| TransportError::Timeout {
                operation: "waiting for the client's message stream",
                after,
            })??;
        // h3's own split: two halves over quinn's, no lock shared between reads and writes (as
        // `tokio::io::split` would add to every poll).
        let (send, recv) = h3::quic::BidiStream::split(bidi);
        let session = Session::Server(Arc::new(self));
        let mut config = transport.clone();
        if stream.mode() == SendMode::Datagram {
            let limit = session.datagram_message_limit().ok_or_else(|| {
                TransportError::Unsupported("the client does not accept QUIC datagrams".into())
            })?;
            config.max_message_size = config.max_message_size.min(limit).max(1);
        }
        let options = LinkOptions::new(transport, stream);
        let link = Link::new(session, MessageSend::H3(Box::new(send)), Box::new(recv));
        let info = link.info();
        let span = tracing::debug_span!("wt", transport = info.transport, peer = ?info.peer_addr);
        Ok(driver::spawn_accepted(&config, info, move |mut io| {
            let run = async move {
                let outcome = link::run(link, &mut io, &options).await;
                (outcome, io)
            };
            // Entering a span on each poll is not free, even when nothing records it.
            if span.is_disabled() {
                Either::Left(run)
            } else {
                Either::Right(run.instrument(span))
            }
        }))
    }
}

impl WtServer {
    /// The next session as a message [`Connection`]: [`accept_session`](Self::accept_session)
    /// then [`WtServerSession::into_connection`]. Sessions whose message stream does not come
    /// in time are skipped (and closed). `None` after shutdown.
    ///
    /// Sessions are taken one at a time: a client slow to open its message stream delays the
    /// next ones (up to `connect_timeout`). To serve many clients, call `accept_session` and
    /// `into_connection` in a task per session.
    ///
    /// # Cancel safety
    /// Not cancel safe: a session being set up when cancelled is closed.
    pub async fn accept_transport(
        &mut self,
        transport: &TransportConfig,
        stream: StreamConfig,
    ) -> Option<(Connection, WtRequest)> {
        loop {
            let (session, request) = self.accept_session().await?;
            match session.into_connection(transport, stream).await {
                Ok(connection) => return Some((connection, request)),
                Err(e) => tracing::debug!(error = %e, "session without a message stream"),
            }
        }
    }
}
