//! [`WtConfig`] and [`StreamConfig`]: how messages travel over a WebTransport session.

use std::sync::Arc;

use transport_core::TransportError;

use crate::WtClientConfig;

/// Whether messages are retransmitted when lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Reliability {
    /// Streams: every message arrives (default).
    #[default]
    Reliable,
    /// QUIC datagrams: one message per datagram; a lost datagram is a lost message, and a
    /// message must fit in one datagram.
    Unreliable,
}

/// Whether messages arrive in the order they were sent (reliable mode only; datagrams have no
/// order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Ordering {
    /// One bidirectional stream carries every message, in order (default).
    #[default]
    Ordered,
    /// Each message on a unidirectional stream of its own: a lost packet delays only its own
    /// message (no head-of-line blocking), and messages may overtake each other.
    Unordered,
}

/// The congestion controller of the QUIC connection (it governs what this side sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CongestionControl {
    /// CUBIC (RFC 9438), quinn's default (default here too).
    #[default]
    Cubic,
    /// NewReno (RFC 9002).
    NewReno,
    /// BBR (quinn's experimental BBRv1).
    Bbr,
}

impl CongestionControl {
    /// quinn's controller factory for this choice.
    pub(crate) fn factory(self) -> Arc<dyn quinn::congestion::ControllerFactory + Send + Sync> {
        match self {
            Self::Cubic => Arc::new(quinn::congestion::CubicConfig::default()),
            Self::NewReno => Arc::new(quinn::congestion::NewRenoConfig::default()),
            Self::Bbr => Arc::new(quinn::congestion::BbrConfig::default()),
        }
    }
}

/// How messages are carried (see `docs/protocols/wt.md`).
///
/// | reliability | ordering  | carried on                                      |
/// |-------------|-----------|-------------------------------------------------|
/// | Reliable    | Ordered   | the session's message stream (one bidi stream)  |
/// | Reliable    | Unordered | a new unidirectional stream per message         |
/// | Unreliable  | (any)     | one QUIC datagram per message                   |
///
/// Only the *sending* side follows its mode: every endpoint accepts messages from the message
/// stream, from unidirectional streams and from datagrams at any time, so the two sides need
/// not agree. Closes always travel on the message stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StreamConfig {
    /// Default: [`Reliability::Reliable`].
    pub reliability: Reliability,
    /// Default: [`Ordering::Ordered`].
    pub ordering: Ordering,
    /// Congestion controller of the connection. Applies to clients (each connection gets its
    /// own); a server sets it for all its connections with
    /// [`WtServerConfig::congestion_control`](crate::WtServerConfig::congestion_control).
    /// Default: [`CongestionControl::Cubic`].
    pub congestion_control: CongestionControl,
    /// quinn stream priority of the message stream and of per-message streams (higher is sent
    /// first when streams compete). A server applies it to its per-message streams only: its
    /// side of the message stream is an h3-quinn stream, which exposes no priority. Default: 0.
    pub priority: i32,
}

impl StreamConfig {
    /// Sets [`reliability`](Self::reliability).
    pub fn reliability(&mut self, reliability: Reliability) -> &mut Self {
        self.reliability = reliability;
        self
    }

    /// Sets [`ordering`](Self::ordering).
    pub fn ordering(&mut self, ordering: Ordering) -> &mut Self {
        self.ordering = ordering;
        self
    }

    /// Sets [`congestion_control`](Self::congestion_control).
    pub fn congestion_control(&mut self, cc: CongestionControl) -> &mut Self {
        self.congestion_control = cc;
        self
    }

    /// Sets [`priority`](Self::priority).
    pub fn priority(&mut self, priority: i32) -> &mut Self {
        self.priority = priority;
        self
    }

    /// Where this side sends its messages.
    pub(crate) fn mode(self) -> SendMode {
        match (self.reliability, self.ordering) {
            (Reliability::Unreliable, _) => SendMode::Datagram,
            (Reliability::Reliable, Ordering::Unordered) => SendMode::UniStream,
            (Reliability::Reliable, Ordering::Ordered) => SendMode::MessageStream,
        }
    }
}

/// Where messages are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendMode {
    MessageStream,
    UniStream,
    Datagram,
}

/// Settings of a WebTransport [`Connection`](transport_core::Connection) client
/// ([`connect_transport`](crate::connect_transport), [`WtConnector`](crate::WtConnector)).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct WtConfig {
    /// The session settings (shared transport settings, pinned certificate hashes, origin).
    /// Beyond what [`WtClientConfig`] documents, `transport` gives the message limit
    /// (`max_message_size`), the queues (`send_buffer`, `recv_buffer`), the close handshake's
    /// deadline (`close_timeout`) and the [`ReconnectPolicy`](transport_core::ReconnectPolicy).
    /// Its `congestion` is overridden by `stream.congestion_control`.
    pub client: WtClientConfig,
    /// How messages are carried.
    pub stream: StreamConfig,
}

impl WtConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> Result<(), TransportError> {
        self.client.validate()
    }

    /// The client configuration with the stream settings applied.
    pub(crate) fn client_config(&self) -> WtClientConfig {
        let mut client = self.client.clone();
        client.congestion = self.stream.congestion_control;
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let mut s = StreamConfig::default();
        assert_eq!(s.mode(), SendMode::MessageStream);
        s.ordering(Ordering::Unordered);
        assert_eq!(s.mode(), SendMode::UniStream);
        s.reliability(Reliability::Unreliable);
        assert_eq!(s.mode(), SendMode::Datagram);
        let mut c = WtConfig::default();
        c.stream.congestion_control(CongestionControl::Bbr);
        assert_eq!(c.client_config().congestion, CongestionControl::Bbr);
        c.validate().unwrap();
    }
}
