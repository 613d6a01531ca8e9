//! Helpers shared by the client's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use transport_core::{Connection, Message, MessageMetadata, ReconnectPolicy, TransportError};
use transport_sse::SseConfig;

/// Bound of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A config with short, test-friendly timings: 5 s connect, no keepalive, a 10 s dead-stream
/// timeout, quick reconnects (at most 20 attempts).
pub fn config() -> SseConfig {
    let mut c = SseConfig::default();
    c.transport.connect_timeout(Duration::from_secs(5));
    c.transport.keepalive(None, Duration::from_secs(10));
    let mut policy = ReconnectPolicy::default();
    policy
        .delays(Duration::from_millis(20), Duration::from_millis(200))
        .max_attempts(Some(20))
        .max_elapsed(Some(Duration::from_secs(20)));
    c.transport.reconnect(policy);
    c
}

/// The same without reconnects.
pub fn no_reconnect() -> SseConfig {
    let mut c = config();
    c.transport.reconnect(ReconnectPolicy::disabled());
    c
}

/// A text message with SSE metadata, as the client delivers events.
pub fn event(data: &str, event: Option<&str>, id: Option<&str>) -> Message {
    Message::text(data).with_metadata(MessageMetadata::new(
        event.map(str::to_owned),
        id.map(str::to_owned),
    ))
}

/// The next message (panics after [`WAIT`] or at the end of the connection).
pub async fn recv(conn: &mut Connection) -> Message {
    match tokio::time::timeout(WAIT, conn.receiver().recv()).await {
        Ok(Ok(Some(m))) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The next item: a message, the end (`Ok(None)`) or the error that ended the connection.
pub async fn next(conn: &mut Connection) -> Result<Option<Message>, TransportError> {
    tokio::time::timeout(WAIT, conn.receiver().recv())
        .await
        .expect("the connection answered in time")
}

/// Receives until the connection ends; the messages and the error that ended it, if any.
pub async fn drain(conn: &mut Connection) -> (Vec<Message>, Option<TransportError>) {
    let mut messages = Vec::new();
    for _ in 0..10_000 {
        match next(conn).await {
            Ok(Some(m)) => messages.push(m),
            Ok(None) => return (messages, None),
            Err(e) => {
                // An error is followed by the end.
                let end = next(conn).await;
                assert!(matches!(end, Ok(None)), "after the error: {end:?}");
                return (messages, Some(e));
            }
        }
    }
    panic!("the connection did not end");
}
