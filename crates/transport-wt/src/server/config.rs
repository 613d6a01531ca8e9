//! [`WtServerConfig`]: limits and policy of the WebTransport server.

use std::sync::Arc;
use std::time::Duration;

use transport_core::{AcceptPolicy, IpLimits, TransportConfig, TransportError};

use crate::CongestionControl;

/// Default [`WtServerConfig::udp_recv_buffer`]: 4 MiB.
pub const DEFAULT_UDP_RECV_BUFFER: usize = 4 << 20;

/// Settings of a [`WtServer`](super::WtServer).
///
/// Every queue is bounded and every wait has a deadline, so a client that opens connections and
/// then does nothing costs a bounded amount of memory for a bounded time.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WtServerConfig {
    /// Shared settings. Used here: `keepalive_interval` (QUIC keep-alive pings, so NAT bindings
    /// and idle peers stay visible), `dead_peer_timeout` (the QUIC idle timeout: a connection
    /// silent for that long is dropped) and `close_timeout` (how long
    /// [`shutdown`](super::WtServer::shutdown) waits for connections to close).
    pub transport: TransportConfig,
    /// Which CONNECT requests are accepted: origin allow-list and an `authorize` hook, checked
    /// before the application sees the request. A refused request is answered with the status
    /// the policy returns (403 for a foreign origin). Default: accept all.
    pub policy: AcceptPolicy,
    /// Most QUIC connections (each carrying at most one session) open at once, handshakes
    /// included. Further connection attempts are refused at the QUIC level. Default: 1024.
    pub max_sessions: usize,
    /// Most concurrent streams the client may open in each direction (QUIC
    /// `initial_max_streams_bidi` / `_uni`, plus the streams HTTP/3 itself needs: one
    /// bidirectional for the CONNECT request, three unidirectional for the control and QPACK
    /// streams). Default: 100, as HTTP/3 recommends.
    pub max_streams_per_session: u32,
    /// Bytes of received datagrams buffered while the application does not read them; beyond,
    /// the oldest are dropped (datagrams are unreliable by design). The same bound applies to
    /// datagrams waiting to be sent. Default: 1 MiB.
    pub datagram_queue: usize,
    /// Deadline from a client's first QUIC packet until its WebTransport CONNECT request has
    /// been read; a connection that has not sent one by then is closed. Default: 10 s.
    pub handshake_timeout: Duration,
    /// Sessions waiting for [`accept`](super::WtServer::accept) before the server stops reading
    /// further CONNECT requests (backpressure). Default: 64.
    pub accept_backlog: usize,
    /// Per-remote-IP limits: QUIC connections open at once and connection attempts per second
    /// from one address; refused attempts are refused at the QUIC level, like those over
    /// `max_sessions`. Once an address has used half of either budget, its unvalidated attempts
    /// first get a stateless retry (source addresses of QUIC Initials can be spoofed).
    /// Default: [`IpLimits::default`] (1024 connections, 100 attempts/s with
    /// bursts of 200).
    pub ip_limits: IpLimits,
    /// The congestion controller of every connection of the server (it governs what the server
    /// sends): quinn picks it per endpoint, before a session's
    /// [`StreamConfig`](crate::StreamConfig) is known, so a `StreamConfig`'s
    /// `congestion_control` given to [`WtServer::accept_transport`](super::WtServer::accept_transport)
    /// or [`into_connection`](super::WtServerSession::into_connection) is not used on the server.
    /// Default: [`CongestionControl::Cubic`], quinn's default.
    pub congestion_control: CongestionControl,
    /// Receive buffer requested for the server's UDP socket (`SO_RCVBUF`), in bytes; the
    /// kernel caps it (Linux: `net.core.rmem_max`) and `None` keeps the system default. Every
    /// session of the server shares this one socket: with Linux's default of about 208 KiB it
    /// holds some 90 of the 1,200-byte padded packets that open a QUIC connection, so a burst
    /// of connection attempts overflows it and each client whose first packet was dropped
    /// waits about a second for its retransmission. Default: 4 MiB.
    pub udp_recv_buffer: Option<usize>,
}

impl Default for WtServerConfig {
    fn default() -> Self {
        Self {
            transport: TransportConfig::default(),
            policy: AcceptPolicy::default(),
            max_sessions: 1024,
            max_streams_per_session: 100,
            datagram_queue: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            accept_backlog: 64,
            ip_limits: IpLimits::default(),
            congestion_control: CongestionControl::default(),
            udp_recv_buffer: Some(DEFAULT_UDP_RECV_BUFFER),
        }
    }
}

impl WtServerConfig {
    /// Sets [`policy`](Self::policy).
    pub fn policy(&mut self, policy: AcceptPolicy) -> &mut Self {
        self.policy = policy;
        self
    }

    /// Sets [`max_sessions`](Self::max_sessions).
    pub fn max_sessions(&mut self, sessions: usize) -> &mut Self {
        self.max_sessions = sessions;
        self
    }

    /// Sets [`max_streams_per_session`](Self::max_streams_per_session).
    pub fn max_streams_per_session(&mut self, streams: u32) -> &mut Self {
        self.max_streams_per_session = streams;
        self
    }

    /// Sets [`datagram_queue`](Self::datagram_queue).
    pub fn datagram_queue(&mut self, bytes: usize) -> &mut Self {
        self.datagram_queue = bytes;
        self
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    pub fn handshake_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`ip_limits`](Self::ip_limits).
    pub fn ip_limits(&mut self, limits: IpLimits) -> &mut Self {
        self.ip_limits = limits;
        self
    }

    /// Sets [`congestion_control`](Self::congestion_control).
    pub fn congestion_control(&mut self, cc: CongestionControl) -> &mut Self {
        self.congestion_control = cc;
        self
    }

    /// Sets [`udp_recv_buffer`](Self::udp_recv_buffer).
    pub fn udp_recv_buffer(&mut self, bytes: Option<usize>) -> &mut Self {
        self.udp_recv_buffer = bytes;
        self
    }

    /// Sets [`accept_backlog`](Self::accept_backlog).
    pub fn accept_backlog(&mut self, sessions: usize) -> &mut Self {
        self.accept_backlog = sessions;
        self
    }

    /// Checks that the values make sense together.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad = |what: &str| Err(TransportError::InvalidConfig(what.to_owned()));
        self.transport.validate()?;
        if self.max_sessions == 0 || self.accept_backlog == 0 {
            return bad("max_sessions and accept_backlog must be at least 1");
        }
        if self.max_streams_per_session > (1 << 20) {
            return bad("max_streams_per_session must be at most 2^20");
        }
        if self.datagram_queue < 1500 {
            return bad("datagram_queue must hold at least one datagram (1500 bytes)");
        }
        if self.udp_recv_buffer == Some(0) {
            return bad("udp_recv_buffer must be non-zero (None keeps the system default)");
        }
        if self.handshake_timeout.is_zero() {
            return bad("handshake_timeout must be non-zero");
        }
        if quinn::IdleTimeout::try_from(self.transport.dead_peer_timeout).is_err() {
            return bad("dead_peer_timeout is too long for a QUIC idle timeout");
        }
        self.ip_limits.validate()
    }

    /// The quinn transport parameters for these settings.
    pub(crate) fn quic_transport(&self) -> Result<Arc<quinn::TransportConfig>, TransportError> {
        let idle =
            quinn::IdleTimeout::try_from(self.transport.dead_peer_timeout).map_err(|_| {
                TransportError::InvalidConfig("dead_peer_timeout is too long".to_owned())
            })?;
        let mut quic = quinn::TransportConfig::default();
        quic.max_idle_timeout(Some(idle))
            .keep_alive_interval(self.transport.keepalive_interval)
            // The CONNECT request stream takes one bidirectional stream.
            .max_concurrent_bidi_streams((self.max_streams_per_session + 1).into())
            // HTTP/3 control, QPACK encoder and QPACK decoder streams come on top.
            .max_concurrent_uni_streams((self.max_streams_per_session + 3).into())
            .datagram_receive_buffer_size(Some(self.datagram_queue))
            .datagram_send_buffer_size(self.datagram_queue)
            .congestion_controller_factory(self.congestion_control.factory());
        Ok(Arc::new(quic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = WtServerConfig::default();
        c.validate().unwrap();
        c.quic_transport().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = WtServerConfig::default();
        c.max_sessions(0);
        assert!(
            matches!(c.validate(), Err(TransportError::InvalidConfig(m)) if m.contains("max_sessions"))
        );
        let mut c = WtServerConfig::default();
        c.handshake_timeout(Duration::ZERO);
        assert!(c.validate().is_err());
        let mut c = WtServerConfig::default();
        c.datagram_queue(10);
        assert!(c.validate().is_err());
    }
}
