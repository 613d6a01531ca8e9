//! An echo service over a [`WtServerSession`], for tests and `tcat serve --wt`.

use tokio::io::{AsyncWriteExt, copy, split};
use tokio::task::JoinSet;
use tracing::debug;
use transport_core::TransportError;

use super::WtServerSession;

/// Echoes everything the client sends until the session ends: the bytes of each bidirectional
/// stream back on the same stream (finished when the client finishes its side), each
/// unidirectional stream back on a new unidirectional stream, each datagram back as a datagram.
///
/// Streams are copied chunk by chunk, so memory stays bounded whatever their length; their
/// number is bounded by [`WtServerConfig::max_streams_per_session`](super::WtServerConfig).
///
/// # Errors
/// How the session ended when that was not a close: [`TransportError::ConnectionLost`] for an
/// idle timeout, [`TransportError::ProtocolViolation`] for a broken peer. A close by the client
/// ([`TransportError::ClosedByPeer`]) or by this side returns `Ok`.
///
/// # Cancel safety
/// Cancelling stops echoing; streams being echoed are dropped (reset).
pub async fn echo(session: WtServerSession) -> Result<(), TransportError> {
    echo_session(&session).await
}

/// [`echo`] on a borrowed session, so the caller can ask it afterwards how it ended
/// ([`WtServerSession::session_closed`]).
///
/// # Errors
/// As [`echo`].
///
/// # Cancel safety
/// As [`echo`].
pub async fn echo_session(session: &WtServerSession) -> Result<(), TransportError> {
    // Three loops polled side by side; each keeps its accept future alive between streams
    // (`accept_bi` is not cancel safe), and the first to end ends them all.
    let bidi = async {
        let mut streams = JoinSet::new();
        loop {
            let stream = match session.accept_bi().await {
                Ok(stream) => stream,
                Err(e) => break e,
            };
            reap(&mut streams);
            streams.spawn(async move {
                let (mut recv, mut send) = split(stream);
                copy(&mut recv, &mut send).await?;
                send.shutdown().await
            });
        }
    };
    let uni = async {
        let mut streams = JoinSet::new();
        loop {
            let (mut recv, mut send) = match session.accept_uni().await {
                Ok(recv) => match session.open_uni().await {
                    Ok(send) => (recv, send),
                    Err(e) => break e,
                },
                Err(e) => break e,
            };
            reap(&mut streams);
            streams.spawn(async move {
                copy(&mut recv, &mut send).await?;
                send.shutdown().await
            });
        }
    };
    let datagrams = async {
        loop {
            let datagram = match session.read_datagram().await {
                Ok(datagram) => datagram,
                Err(e) => break e,
            };
            if let Err(e) = session.send_datagram(datagram) {
                debug!(error = %e, "echoing a datagram failed");
            }
        }
    };
    let end = tokio::select! {
        e = bidi => e,
        e = uni => e,
        e = datagrams => e,
    };
    match end {
        TransportError::ClosedByPeer { .. } | TransportError::Closed => Ok(()),
        other => Err(other),
    }
}

/// Collects finished stream echoes so the set does not grow with the session's age.
fn reap(streams: &mut JoinSet<std::io::Result<()>>) {
    while let Some(done) = streams.try_join_next() {
        if let Ok(Err(e)) = done {
            debug!(error = %e, "echoing a stream failed");
        }
    }
}
