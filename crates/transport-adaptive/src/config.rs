//! Client settings: endpoints in preference order, racing, probing, buffers, session mode.

use std::fmt;
use std::time::Duration;

use transport_core::{ReconnectPolicy, TransportConfig, TransportError};
use transport_sse::SseConfig;
use transport_ws::WsConfig;
use transport_wt::WtConfig;

use crate::session::SessionLimits;

/// The transports the adaptive client can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// WebTransport over HTTP/3 (QUIC, UDP).
    WebTransport,
    /// WebSocket (TCP).
    WebSocket,
    /// Server-Sent Events with the POST back channel (TCP, plain HTTP).
    Sse,
}

impl TransportKind {
    /// The short name used in [`ConnectionInfo::transport`](transport_core::ConnectionInfo):
    /// `"wt"`, `"ws"`, `"sse"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::WebTransport => "wt",
            Self::WebSocket => "ws",
            Self::Sse => "sse",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One endpoint: a transport and its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The transport.
    pub kind: TransportKind,
    /// Its URL: `https://host:port/path` (WebTransport), `ws://` or `wss://` (WebSocket),
    /// `http://` or `https://` (SSE stream).
    pub url: String,
}

/// What the client does with messages sent while no link is up, once its send buffer
/// ([`TransportConfig::send_buffer`]) is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendBufferPolicy {
    /// `send` waits until the connection is back and the buffer drains (the default).
    #[default]
    Wait,
    /// `send` fails at once with [`TransportError::NotConnected`]; the message was not queued
    /// (never a silent drop).
    Error,
}

/// Whether the client speaks the session layer (exactly-once delivery across reconnects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionMode {
    /// Health-check every attempt with a `PING`; a server answering `PONG` gets a session,
    /// a server answering anything else (a third-party server) is used as is, without
    /// delivery guarantees (reported through the status and events). The default.
    #[default]
    Auto,
    /// Like `Auto`, but a server that does not speak the session protocol is a failed attempt.
    Required,
    /// No health check, no session: for third-party servers that never answer first.
    Off,
}

/// Settings of an adaptive client.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AdaptiveConfig {
    /// Endpoints in preference order. [`AdaptiveConfig::new`] orders WebTransport, WebSocket,
    /// SSE.
    pub endpoints: Vec<Endpoint>,
    /// Settings of the adaptive connection itself: `connect_timeout` bounds a whole race
    /// (default 10 s), `send_buffer` is the buffer that holds sends while reconnecting,
    /// `recv_buffer`, `max_message_size`, `close_timeout`, and the [`ReconnectPolicy`] the
    /// adaptive layer reconnects with. Its `headers` and `tls` are copied to the protocols'
    /// settings by the `with_*` constructors only.
    pub transport: TransportConfig,
    /// How long the preferred transport has alone before the next one starts in parallel
    /// (Happy Eyeballs, RFC 8305 §5 recommends 250 ms). A failed attempt starts the next one at
    /// once. Default: 250 ms.
    pub head_start: Duration,
    /// Deadline of the health check (`PING`/`PONG`) and of the session handshake on a freshly
    /// opened link; a proxy that accepts the upgrade and then stalls fails it. Default: 2 s.
    pub health_timeout: Duration,
    /// After falling back, how often the more preferred transports are tried again in the
    /// background; the connection moves over when one works (no loss, no reordering).
    /// `None` disables upgrades. Only with a server speaking the session protocol (moving a
    /// connection without it could lose messages). Default: 30 s.
    pub probe_interval: Option<Duration>,
    /// A transport that won before, e.g. in an earlier run (persist
    /// [`AdaptiveConnection::transport`](crate::AdaptiveConnection::transport) and hand it back
    /// here): it is raced first, ahead of the preference order, as the winner of this client's
    /// own earlier races is on every reconnect. A more preferred transport still gets its
    /// chance: the race gives the next one the head start, and while the remembered one carries
    /// the connection the preferred ones are probed in the background (`probe_interval`).
    /// Ignored when no endpoint has that transport. Default: `None`.
    pub remembered: Option<TransportKind>,
    /// What a full send buffer does while reconnecting. Default: [`SendBufferPolicy::Wait`].
    pub send_buffer_policy: SendBufferPolicy,
    /// Session layer use. Default: [`SessionMode::Auto`].
    pub session_mode: SessionMode,
    /// Session bounds (replay buffer, acknowledgement pacing).
    pub session: SessionLimits,
    /// WebSocket settings. Their reconnect policy is ignored (always disabled: the adaptive
    /// layer reconnects). Default: [`WsConfig::default`] with a 5 s connect timeout.
    pub ws: WsConfig,
    /// SSE settings (reconnect always disabled). Default: 5 s connect timeout, and lines as
    /// long as events (1 MiB): a binary message travels as one base64 line, so messages over
    /// SSE are limited to 3/4 of the smaller of the two parser limits (768 KiB by default).
    pub sse: SseConfig,
    /// WebTransport settings, e.g. pinned certificate hashes (reconnect always disabled).
    /// Default: 5 s connect timeout.
    pub wt: WtConfig,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        let attempt = Duration::from_secs(5);
        let mut ws = WsConfig::default();
        ws.transport.connect_timeout = attempt;
        let mut sse = SseConfig::default();
        sse.transport.connect_timeout = attempt;
        // Session frames travel as one base64 line each: allow a line as long as an event.
        let mut limits = sse.parser;
        limits.max_line_length(limits.max_event_size);
        sse.parser_limits(limits);
        let mut wt = WtConfig::default();
        wt.client.transport.connect_timeout = attempt;
        Self {
            endpoints: Vec::new(),
            transport: TransportConfig::default(),
            head_start: Duration::from_millis(250),
            health_timeout: Duration::from_secs(2),
            probe_interval: Some(Duration::from_secs(30)),
            remembered: None,
            send_buffer_policy: SendBufferPolicy::Wait,
            session_mode: SessionMode::Auto,
            session: SessionLimits::default(),
            ws,
            sse,
            wt,
        }
    }
}

impl AdaptiveConfig {
    /// Settings with the given endpoints, each optional, in the default preference order:
    /// WebTransport, WebSocket, SSE.
    pub fn new(wt: Option<&str>, ws: Option<&str>, sse: Option<&str>) -> Self {
        let mut c = Self::default();
        for (kind, url) in [
            (TransportKind::WebTransport, wt),
            (TransportKind::WebSocket, ws),
            (TransportKind::Sse, sse),
        ] {
            if let Some(url) = url {
                c.endpoint(kind, url);
            }
        }
        c
    }

    /// Appends an endpoint (lower preference than those before it).
    pub fn endpoint(&mut self, kind: TransportKind, url: impl Into<String>) -> &mut Self {
        self.endpoints.push(Endpoint {
            kind,
            url: url.into(),
        });
        self
    }

    /// Sets [`head_start`](Self::head_start).
    pub fn head_start(&mut self, head_start: Duration) -> &mut Self {
        self.head_start = head_start;
        self
    }

    /// Sets [`health_timeout`](Self::health_timeout).
    pub fn health_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.health_timeout = timeout;
        self
    }

    /// Sets [`probe_interval`](Self::probe_interval).
    pub fn probe_interval(&mut self, interval: Option<Duration>) -> &mut Self {
        self.probe_interval = interval;
        self
    }

    /// Sets [`remembered`](Self::remembered).
    pub fn remembered(&mut self, kind: Option<TransportKind>) -> &mut Self {
        self.remembered = kind;
        self
    }

    /// Sets [`send_buffer_policy`](Self::send_buffer_policy).
    pub fn send_buffer_policy(&mut self, policy: SendBufferPolicy) -> &mut Self {
        self.send_buffer_policy = policy;
        self
    }

    /// Sets [`session_mode`](Self::session_mode).
    pub fn session_mode(&mut self, mode: SessionMode) -> &mut Self {
        self.session_mode = mode;
        self
    }

    /// Sets the adaptive layer's [`ReconnectPolicy`].
    pub fn reconnect(&mut self, policy: ReconnectPolicy) -> &mut Self {
        self.transport.reconnect = policy;
        self
    }

    /// Sets the per-attempt connect timeout of every protocol.
    pub fn attempt_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.ws.transport.connect_timeout = timeout;
        self.sse.transport.connect_timeout = timeout;
        self.wt.client.transport.connect_timeout = timeout;
        self
    }

    /// Pins a WebTransport server certificate by its SHA-256 (self-signed certificates).
    pub fn wt_cert_hash(&mut self, sha256: [u8; 32]) -> &mut Self {
        self.wt.client.cert_hash(sha256);
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> Result<(), TransportError> {
        if self.endpoints.is_empty() {
            return Err(TransportError::InvalidConfig(
                "at least one endpoint is needed".into(),
            ));
        }
        if self.health_timeout.is_zero() {
            return Err(TransportError::InvalidConfig(
                "health_timeout must be non-zero".into(),
            ));
        }
        if self.probe_interval.is_some_and(|p| p.is_zero()) {
            return Err(TransportError::InvalidConfig(
                "probe_interval must be non-zero (None disables probing)".into(),
            ));
        }
        self.session.validate()?;
        self.transport.validate()?;
        self.ws.validate()?;
        self.sse.validate()?;
        self.wt.validate()
    }
}
