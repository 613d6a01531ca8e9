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
    let mut streams = JoinSet::new();
    let end = loop {
        tokio::select! {
            bi = session.accept_bi() => match bi {
                Ok(stream) => {
                    streams.spawn(async move {
                        let (mut recv, mut send) = split(stream);
                        copy(&mut recv, &mut send).await?;
                        send.shutdown().await
                    });
                }
                Err(e) => break e,
            },
            uni = session.accept_uni() => match uni {
                Ok(mut recv) => match session.open_uni().await {
                    Ok(mut send) => {
                        streams.spawn(async move {
                            copy(&mut recv, &mut send).await?;
                            send.shutdown().await
                        });
                    }
                    Err(e) => break e,
                },
                Err(e) => break e,
            },
            datagram = session.read_datagram() => match datagram {
                Ok(datagram) => {
                    if let Err(e) = session.send_datagram(datagram) {
                        debug!(error = %e, "echoing a datagram failed");
                    }
                }
                Err(e) => break e,
            },
            Some(done) = streams.join_next(), if !streams.is_empty() => {
                if let Ok(Err(e)) = done {
                    debug!(error = %e, "echoing a stream failed");
                }
            }
        }
    };
    match end {
        TransportError::ClosedByPeer { .. } | TransportError::Closed => Ok(()),
        other => Err(other),
    }
}
