//! What `tcat connect` does differently for Server-Sent Events.
//!
//! * The client config: the size limit also sizes the event stream parser, silence detection
//!   replaces pings, `--subprotocol` and `--proxy` are refused (the SSE client has neither).
//! * A `204 No Content` answer is the server's way to say "stop" (WHATWG HTML 9.2.3): a clean
//!   end, whether it answers the first request or a reconnect.
//! * A plain SSE server offers no send URL: stdin lines cannot go anywhere. They are read and
//!   dropped with one warning, and stdin EOF does not end the stream.

use std::time::Duration;

use tracing::{info, warn};
use transport_core::{ConnectionState, Sender, TransportConfig, TransportError};
use transport_sse::{DEFAULT_MAX_EVENT_SIZE, DEFAULT_MAX_LINE_LENGTH, ParserLimits, SseConfig};

use crate::cli::ConnectArgs;
use crate::connect::dead_peer_timeout;
use crate::exit::Failure;

/// Silence timeout used for `--keepalive 0` ("never"): long enough to never matter, short
/// enough to stay far from any timer's range limit.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// Room for the field name, the space and the line break around an event's data.
const LINE_SLACK: usize = 1024;

/// How long the event stream may stay completely silent before it counts as lost and is
/// reconnected: as long as the WebSocket dead-peer timeout for the same `--keepalive` (30 s
/// by default, more than twice the 15 s between the keepalive comments of this workspace's
/// server), or never for 0.
pub(crate) fn silence_timeout(keepalive: Duration) -> Duration {
    if keepalive.is_zero() {
        NEVER
    } else {
        dead_peer_timeout(keepalive)
    }
}

/// The SSE client settings from the command line.
pub(crate) fn client_config(
    transport: TransportConfig,
    args: &ConnectArgs,
) -> Result<SseConfig, Failure> {
    if !args.subprotocols.is_empty() {
        return Err(Failure::usage(
            "--subprotocol is a WebSocket option; SSE has no subprotocols",
        ));
    }
    if args.proxy.is_some() {
        return Err(Failure::usage(
            "--proxy is not supported for SSE: the SSE client connects directly",
        ));
    }
    let mut config = SseConfig::default();
    config.transport = transport;
    config.parser_limits(parser_limits(args.max_message_size));
    config
        .validate()
        .map_err(|e| Failure::usage(e.to_string()))?;
    Ok(config)
}

/// Parser limits that let through any message up to `max_message_size`: a binary message
/// travels as one line of base64, 4/3 of its size.
fn parser_limits(max_message_size: usize) -> ParserLimits {
    let encoded = max_message_size
        .div_ceil(3)
        .saturating_mul(4)
        .max(max_message_size)
        .saturating_add(LINE_SLACK);
    *ParserLimits::default()
        .max_line_length(encoded.max(DEFAULT_MAX_LINE_LENGTH))
        .max_event_size(encoded.max(DEFAULT_MAX_EVENT_SIZE))
}

/// Whether an error is the server's "stop": HTTP 204 No Content.
pub(crate) fn is_stop(error: &TransportError) -> bool {
    matches!(error, TransportError::HandshakeRejected { status: 204 })
}

/// Logs a change of the connection's state: a reconnect is a warning (the stream is silent
/// meanwhile, and may stay so for the reconnect policy's 5 minutes), its success is info.
pub(crate) fn log_state(state: ConnectionState) {
    match state {
        ConnectionState::Reconnecting => {
            warn!("the event stream dropped; reconnecting (with Last-Event-ID)");
        }
        ConnectionState::Connected => info!("the event stream is back"),
        _ => {}
    }
}

/// Says once, on stderr, that stdin lines go nowhere.
pub(crate) fn warn_stdin_ignored(reason: &str) {
    eprintln!("tcat: warning: {reason}; stdin lines are ignored");
}

/// Whether the connection can carry messages to the server: `false` for a plain SSE stream
/// (no send URL).
pub(crate) fn send_offered(sender: &Sender) -> bool {
    sender.send_unsupported().is_none()
}

#[cfg(test)]
mod tests {
    use transport_core::{Message, memory};

    use super::*;

    #[test]
    fn limits_fit_a_base64_message() {
        let small = parser_limits(10);
        assert_eq!(small.max_line_length, DEFAULT_MAX_LINE_LENGTH);
        assert_eq!(small.max_event_size, DEFAULT_MAX_EVENT_SIZE);
        let big = parser_limits(16 << 20);
        assert!(big.max_line_length >= (16 << 20) / 3 * 4 + 8);
        assert!(big.max_event_size >= (16 << 20) / 3 * 4);
        let huge = parser_limits(usize::MAX);
        assert_eq!(huge.max_line_length, usize::MAX);
    }

    #[test]
    fn silence() {
        assert_eq!(silence_timeout(Duration::ZERO), NEVER);
        assert_eq!(
            silence_timeout(Duration::from_secs(20)),
            Duration::from_secs(30)
        );
        assert_eq!(
            silence_timeout(Duration::from_secs(40)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn stop_is_204_only() {
        assert!(is_stop(&TransportError::HandshakeRejected { status: 204 }));
        assert!(!is_stop(&TransportError::HandshakeRejected { status: 200 }));
        assert!(!is_stop(&TransportError::HandshakeRejected { status: 500 }));
        assert!(!is_stop(&TransportError::Closed));
    }

    #[tokio::test]
    async fn probe_sends_nothing() {
        let mut config = TransportConfig::default();
        config.max_message_size(64);
        let (a, mut b) = memory::pair(&config);
        let (sender, _receiver) = a.split();
        assert!(send_offered(&sender));
        assert_eq!(sender.capacity(), config.send_buffer, "nothing was queued");
        sender.send(Message::text("real")).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), b.receiver().recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, Some(Message::text("real")));
    }
}
