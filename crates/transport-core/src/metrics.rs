//! Metric names and helpers shared by every server of the workspace, recorded through the
//! [`metrics`](https://docs.rs/metrics) facade: install any exporter (Prometheus, StatsD, ...)
//! in the application and the servers report to it; without one, recording costs next to
//! nothing.
//!
//! Every metric carries a `transport` label (`"ws"`, `"sse"`, `"wt"`, `"memory"`; `"adaptive"`
//! for what the adaptive server's shared TCP listener refuses before it knows the transport),
//! except the adaptive ones below. The names are documented in `docs/metrics.md`.
//!
//! | name | kind | labels | what |
//! | --- | --- | --- | --- |
//! | [`CONNECTIONS`] | gauge | transport | connections (SSE: sessions) open now |
//! | [`HANDSHAKES_ACCEPTED`] | counter | transport | handshakes that produced a connection |
//! | [`HANDSHAKES_REJECTED`] | counter | transport, reason | handshakes refused or failed ([`reason`]) |
//! | [`MESSAGES_RECEIVED`] / [`MESSAGES_SENT`] | counter | transport | messages in / out |
//! | [`BYTES_RECEIVED`] / [`BYTES_SENT`] | counter | transport | payload bytes in / out |
//! | [`ERRORS`] | counter | transport, kind | connections that ended with an error ([`error_kind`]) |
//! | [`QUEUE_FULL`] | counter | transport, queue | a bounded queue was found full (`send`, `receive`) |
//! | [`ADAPTIVE_FALLBACKS`] | counter | from, to | adaptive server: a session resumed on another transport |
//! | [`ADAPTIVE_RESUMES`] | counter | transport | adaptive server: a session resumed on a new link |
//!
//! Per-message counting uses [`Counter`] handles obtained once per connection, so the message
//! path pays one relaxed atomic add per counter and no label lookup.

use ::metrics::{Counter, Gauge, counter, gauge};
use http::StatusCode;

use crate::TransportError;

/// Gauge: connections open now (established; handshakes in progress are not counted). For SSE,
/// sessions alive, including those waiting for their client to reconnect.
pub const CONNECTIONS: &str = "transport_connections";
/// Counter: handshakes that produced a connection.
pub const HANDSHAKES_ACCEPTED: &str = "transport_handshakes_accepted_total";
/// Counter: handshakes refused or failed, by `reason` (see [`reason`]).
pub const HANDSHAKES_REJECTED: &str = "transport_handshakes_rejected_total";
/// Counter: messages received from peers and handed to the application.
pub const MESSAGES_RECEIVED: &str = "transport_messages_received_total";
/// Counter: messages the application queued for peers.
pub const MESSAGES_SENT: &str = "transport_messages_sent_total";
/// Counter: payload bytes of [`MESSAGES_RECEIVED`].
pub const BYTES_RECEIVED: &str = "transport_bytes_received_total";
/// Counter: payload bytes of [`MESSAGES_SENT`].
pub const BYTES_SENT: &str = "transport_bytes_sent_total";
/// Counter: connections that ended with an error, by `kind` (see [`error_kind`]).
pub const ERRORS: &str = "transport_errors_total";
/// Counter: times a bounded queue was found full, by `queue`: `send` (a `try_send` refused) or
/// `receive` (the driver had to wait for the application to read).
pub const QUEUE_FULL: &str = "transport_queue_full_total";
/// Counter, recorded by `transport_adaptive::AdaptiveServer`: a session resumed on a link of
/// another transport than its last one (a fallback, a recovery or an upgrade), labels `from`
/// and `to` (`"wt"`, `"ws"`, `"sse"`). Such a resume counts in [`ADAPTIVE_RESUMES`] too.
pub const ADAPTIVE_FALLBACKS: &str = "transport_adaptive_fallbacks_total";
/// Counter, recorded by `transport_adaptive::AdaptiveServer`: a session resumed on a new link
/// (after a drop, a fallback or an upgrade), label `transport` (the new link's). A new session
/// is not counted.
pub const ADAPTIVE_RESUMES: &str = "transport_adaptive_resumes_total";

/// The label naming the transport.
pub const LABEL_TRANSPORT: &str = "transport";

/// Values of the `reason` label of [`HANDSHAKES_REJECTED`].
pub mod reason {
    /// The `Origin` header is not on the allow-list (403).
    pub const ORIGIN: &str = "origin";
    /// The application's `authorize` check answered 401.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// The application's check (or the application itself) refused with another status.
    pub const FORBIDDEN: &str = "forbidden";
    /// The server's global connection limit (`max_connections`, `max_sessions`) was reached.
    pub const LIMIT: &str = "limit";
    /// The per-IP concurrent connection limit was reached.
    pub const IP_LIMIT: &str = "ip_limit";
    /// The per-IP handshake rate was exceeded.
    pub const IP_RATE: &str = "ip_rate";
    /// The handshake did not finish within the handshake deadline.
    pub const TIMEOUT: &str = "timeout";
    /// The request was not a valid handshake for this transport.
    pub const BAD_REQUEST: &str = "bad_request";
    /// The TLS (or QUIC crypto) handshake failed.
    pub const TLS: &str = "tls";
    /// The application's accept backlog was full.
    pub const BACKLOG: &str = "backlog";
    /// The server is shutting down.
    pub const SHUTDOWN: &str = "shutdown";
    /// The peer went away or the connection failed during the handshake.
    pub const FAILED: &str = "failed";
    /// The application dropped a pending request without answering it (WebTransport).
    pub const DROPPED: &str = "dropped";
}

/// The `reason` for a handshake refused with an HTTP status by a policy or the application.
pub fn status_reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => reason::UNAUTHORIZED,
        429 => reason::IP_RATE,
        503 => reason::LIMIT,
        400 | 404 | 405 | 426 => reason::BAD_REQUEST,
        _ => reason::FORBIDDEN,
    }
}

/// Counts a handshake that produced a connection.
pub fn handshake_accepted(transport: &'static str) {
    counter!(HANDSHAKES_ACCEPTED, LABEL_TRANSPORT => transport).increment(1);
}

/// Counts a refused or failed handshake.
pub fn handshake_rejected(transport: &'static str, reason: &'static str) {
    counter!(HANDSHAKES_REJECTED, LABEL_TRANSPORT => transport, "reason" => reason).increment(1);
}

/// The `kind` label of [`ERRORS`] for an error.
pub fn error_kind(error: &TransportError) -> &'static str {
    match error {
        TransportError::ConnectionFailed { .. } => "connection_failed",
        TransportError::HandshakeRejected { .. } => "handshake_rejected",
        TransportError::SendFailed { .. } => "send_failed",
        TransportError::ConnectionLost { .. } => "connection_lost",
        TransportError::ClosedByPeer { .. } => "closed_by_peer",
        TransportError::Closed => "closed",
        TransportError::Timeout { .. } => "timeout",
        TransportError::InvalidUrl { .. } => "invalid_url",
        TransportError::Tls { .. } => "tls",
        TransportError::ProtocolViolation { .. } => "protocol",
        TransportError::InvalidUtf8 { .. } => "invalid_utf8",
        TransportError::MessageTooLarge { .. } => "message_too_large",
        TransportError::NotConnected => "not_connected",
        TransportError::Unsupported(_) => "unsupported",
        TransportError::InvalidConfig(_) => "invalid_config",
    }
}

/// Counts a connection that ended with `error`.
pub fn connection_error(transport: &'static str, err: &TransportError) {
    error(transport, error_kind(err));
}

/// Counts an error of `kind` in [`ERRORS`] (e.g. the SSE server's `unknown_session` for a POST
/// to a send URL no session owns).
pub fn error(transport: &'static str, kind: &'static str) {
    counter!(ERRORS, LABEL_TRANSPORT => transport, "kind" => kind).increment(1);
}

/// Holds one unit of the [`CONNECTIONS`] gauge: incremented when made, decremented when
/// dropped.
#[derive(Debug)]
pub struct ConnectionGauge {
    gauge: Gauge,
}

impl ConnectionGauge {
    /// Counts one open connection of `transport` until dropped.
    pub fn new(transport: &'static str) -> Self {
        Self::hold(gauge!(CONNECTIONS, LABEL_TRANSPORT => transport))
    }

    /// One unit of `gauge`, a [`CONNECTIONS`] handle looked up already.
    fn hold(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self { gauge }
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// A server's metric handles, looked up once when the server starts rather than per
/// connection (building a labelled key costs more than the rest of the bookkeeping of an
/// accept). They are registered with the recorder installed when made: install the recorder
/// (the exporter) before starting servers.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    accepted: Counter,
    connections: Gauge,
    messages: MessageMetrics,
}

impl ServerMetrics {
    /// Handles for `transport`, registered with the recorder installed now.
    pub fn new(transport: &'static str) -> Self {
        Self {
            accepted: counter!(HANDSHAKES_ACCEPTED, LABEL_TRANSPORT => transport),
            connections: gauge!(CONNECTIONS, LABEL_TRANSPORT => transport),
            messages: MessageMetrics::new(transport),
        }
    }

    /// Counts a handshake that produced a connection: its unit of the [`CONNECTIONS`] gauge
    /// (held as long as the connection) and its message counters.
    pub fn accepted(&self) -> (ConnectionGauge, MessageMetrics) {
        self.accepted.increment(1);
        (
            ConnectionGauge::hold(self.connections.clone()),
            self.messages.clone(),
        )
    }
}

/// The per-message counters of one connection, looked up once.
#[derive(Debug, Clone)]
pub struct MessageMetrics {
    messages_received: Counter,
    bytes_received: Counter,
    messages_sent: Counter,
    bytes_sent: Counter,
    send_queue_full: Counter,
    receive_queue_full: Counter,
}

impl MessageMetrics {
    /// Handles for `transport`, registered with the recorder installed now.
    pub fn new(transport: &'static str) -> Self {
        Self {
            messages_received: counter!(MESSAGES_RECEIVED, LABEL_TRANSPORT => transport),
            bytes_received: counter!(BYTES_RECEIVED, LABEL_TRANSPORT => transport),
            messages_sent: counter!(MESSAGES_SENT, LABEL_TRANSPORT => transport),
            bytes_sent: counter!(BYTES_SENT, LABEL_TRANSPORT => transport),
            send_queue_full: counter!(QUEUE_FULL, LABEL_TRANSPORT => transport, "queue" => "send"),
            receive_queue_full: counter!(
                QUEUE_FULL, LABEL_TRANSPORT => transport, "queue" => "receive"
            ),
        }
    }

    /// Counts a received message of `bytes` payload bytes.
    pub fn received(&self, bytes: usize) {
        self.messages_received.increment(1);
        self.bytes_received.increment(bytes as u64);
    }

    /// Counts a sent message of `bytes` payload bytes.
    pub fn sent(&self, bytes: usize) {
        self.messages_sent.increment(1);
        self.bytes_sent.increment(bytes as u64);
    }

    /// Counts a `try_send` refused because the send queue was full.
    pub fn send_queue_full(&self) {
        self.send_queue_full.increment(1);
    }

    /// Counts a wait of the driver for room in the application's receive queue.
    pub fn receive_queue_full(&self) {
        self.receive_queue_full.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_for_statuses() {
        assert_eq!(
            status_reason(StatusCode::UNAUTHORIZED),
            reason::UNAUTHORIZED
        );
        assert_eq!(status_reason(StatusCode::FORBIDDEN), reason::FORBIDDEN);
        assert_eq!(
            status_reason(StatusCode::SERVICE_UNAVAILABLE),
            reason::LIMIT
        );
        assert_eq!(status_reason(StatusCode::BAD_REQUEST), reason::BAD_REQUEST);
    }

    #[test]
    fn error_kinds_are_snake_case() {
        let kind = error_kind(&TransportError::lost("x"));
        assert_eq!(kind, "connection_lost");
        assert!(kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
}
