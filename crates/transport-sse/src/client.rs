//! The SSE client: [`SseConfig`], [`SseConnector`] (a [`Connector`]) and [`connect`].
//!
//! One GET opens the event stream; the generic driver of `transport-core` reconnects it when it
//! drops, with `Last-Event-ID` and no sooner than the server's `retry:`. Messages to the server
//! are POSTed to the session's send URL (`docs/protocols/sse.md`), batched, one request at a
//! time so their order is kept.
//!
//! ```text
//!  dial:  GET ──(redirects)──▶ 200 text/event-stream ── X-Transport-Send ─▶ send URL
//!  run:   body ──▶ SseParser ──▶ events ──▶ messages ──▶ Receiver
//!         Sender ──▶ commands ──▶ batch ──▶ POST send URL (204)
//! ```
//!
//! The parts: `conn` opens TCP/TLS connections and speaks HTTP/1.1 or HTTP/2 over them with
//! hyper's connection API, `url` parses and resolves URLs, `stream` opens the event stream
//! (redirects, status and content type checks), `link` runs it, `post` sends.

mod conn;
mod link;
mod post;
mod stream;
mod url;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_rustls::TlsConnector;
use tracing::Instrument as _;
use transport_core::driver::{self, Dial, DriverIo, RunOutcome};
use transport_core::{Connection, ConnectionInfo, Connector, TransportConfig, TransportError};

use crate::parser::{ParserLimits, SseParser};

use self::url::Target;

pub(crate) const TRANSPORT: &str = "sse";

/// Settings of an SSE client connection.
///
/// `transport.keepalive_interval` is not used by the client (the server sends the keepalive
/// comments); `transport.dead_peer_timeout` is how long the stream may stay completely silent
/// before it is considered lost and reconnected, so it must exceed the server's keepalive
/// interval (15 s for this workspace's server).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SseConfig {
    /// The settings shared by every transport: timeouts, limits, headers (sent with the GET and
    /// with every POST, e.g. `Authorization`), TLS, reconnect policy.
    pub transport: TransportConfig,
    /// Limits of the event stream parser. Default: 64 KiB lines, 1 MiB events.
    pub parser: ParserLimits,
    /// The event types delivered: `None` (the default) delivers every event; otherwise only the
    /// events whose type ([`SseEvent::event_type`](crate::SseEvent::event_type), `"message"`
    /// when the event names none) is listed. Binary and base64 text messages count as
    /// `"message"`. The protocol's own `transport.*` events are always handled and never
    /// delivered as such.
    pub subscribed_events: Option<Vec<String>>,
    /// Redirects (301, 302, 303, 307, 308) followed when opening the stream; one more fails the
    /// attempt. Default: 5, what browsers allow many times over, and enough for any sane chain.
    pub max_redirects: usize,
    /// Deadline of one POST to the send URL, from connecting to the answer's end. Default:
    /// 30 s, so a server that waits for its application (then answers 503) is given time.
    pub post_timeout: Duration,
    /// The `Last-Event-ID` to send with the first request, e.g. one persisted from an earlier
    /// run. Default: `None`; reconnects always send the id of the latest event.
    pub last_event_id: Option<String>,
    /// Speak HTTP/2 without TLS, with prior knowledge (RFC 9113 §3.3), to `http://` URLs.
    /// Default: `false` (HTTP/1.1). Over `https://` the protocol is chosen by ALPN (`h2`, then
    /// `http/1.1`) whatever this says.
    pub http2_prior_knowledge: bool,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            transport: TransportConfig::default(),
            parser: ParserLimits::default(),
            subscribed_events: None,
            max_redirects: 5,
            post_timeout: Duration::from_secs(30),
            last_event_id: None,
            http2_prior_knowledge: false,
        }
    }
}

impl SseConfig {
    /// Sets [`subscribed_events`](Self::subscribed_events) to these event types.
    pub fn subscribe<I, S>(&mut self, events: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subscribed_events = Some(events.into_iter().map(Into::into).collect());
        self
    }

    /// Sets [`max_redirects`](Self::max_redirects).
    pub fn max_redirects(&mut self, redirects: usize) -> &mut Self {
        self.max_redirects = redirects;
        self
    }

    /// Sets [`post_timeout`](Self::post_timeout).
    pub fn post_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.post_timeout = timeout;
        self
    }

    /// Sets [`last_event_id`](Self::last_event_id).
    pub fn last_event_id(&mut self, id: impl Into<String>) -> &mut Self {
        self.last_event_id = Some(id.into());
        self
    }

    /// Sets [`http2_prior_knowledge`](Self::http2_prior_knowledge).
    pub fn http2_prior_knowledge(&mut self, enabled: bool) -> &mut Self {
        self.http2_prior_knowledge = enabled;
        self
    }

    /// Sets [`parser`](Self::parser).
    pub fn parser_limits(&mut self, limits: ParserLimits) -> &mut Self {
        self.parser = limits;
        self
    }

    /// Checks that the values make sense together.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> Result<(), TransportError> {
        self.transport.validate()?;
        let bad = |what: &str| Err(TransportError::InvalidConfig(what.to_owned()));
        if self.parser.max_line_length == 0 || self.parser.max_event_size == 0 {
            return bad("parser limits must be at least 1 byte");
        }
        if self.post_timeout.is_zero() {
            return bad("post_timeout must be non-zero");
        }
        if let Some(id) = &self.last_event_id
            && (id.contains(['\0', '\r', '\n'])
                || http::HeaderValue::from_bytes(id.as_bytes()).is_err())
        {
            return bad("last_event_id must be usable as an HTTP header value");
        }
        Ok(())
    }
}

/// Connects to an `http://` or `https://` event stream.
///
/// The returned [`Connection`] delivers each event as a message (see [`SseConnector`]) and
/// reconnects on its own when the stream drops, as `config.transport.reconnect` says.
///
/// ```no_run
/// use transport_core::{Message, Transport};
/// use transport_sse::SseConfig;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), transport_core::TransportError> {
/// let mut config = SseConfig::default();
/// config.transport.header("Authorization", "Bearer token")?;
/// config.subscribe(["tick", "message"]);
/// let mut conn = transport_sse::connect("https://example.com/events", config).await?;
/// conn.send(Message::text("hello")).await?; // POSTed, if the server offers a send URL
/// while let Some(message) = conn.recv().await? {
///     let kind = message.metadata().and_then(|m| m.event.as_deref());
///     println!("{kind:?}: {:?}", message.as_text());
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// [`TransportError::InvalidUrl`], [`TransportError::InvalidConfig`], or the first attempt's
/// failure: [`TransportError::ConnectionFailed`], [`TransportError::Timeout`],
/// [`TransportError::Tls`], [`TransportError::HandshakeRejected`] (any status but 200 and the
/// redirects), [`TransportError::ProtocolViolation`] (a content type other than
/// `text/event-stream`, too many redirects).
///
/// # Cancel safety
/// Cancel safe: a dropped attempt closes the sockets it had opened.
pub async fn connect(url: &str, config: SseConfig) -> Result<Connection, TransportError> {
    SseConnector::new(url, config)?.connect().await
}

/// Connects to one SSE endpoint; each [`connect`](Connector::connect) opens a new connection.
/// Cheap to clone.
///
/// Each event becomes a [`Message`](transport_core::Message): a text message with
/// [`MessageMetadata`](transport_core::MessageMetadata) holding the event type (`None` for the
/// default `message`) and the last event id (`None` when empty); `transport.binary` events
/// become binary messages and `transport.text64` events text messages, without metadata. A
/// `transport.close` event ends the connection with its close frame (code 1000: no reconnect).
///
/// `send` POSTs to the send URL that the server announces (`X-Transport-Send` header or
/// `transport.session` event). Against a plain SSE server, which announces none, `send` fails
/// with [`TransportError::Unsupported`].
///
/// A non-200 answer, or a 200 that is not `text/event-stream`, fails for good: the SSE rule is
/// never to reconnect after one.
#[derive(Clone)]
pub struct SseConnector {
    inner: Arc<Inner>,
}

/// What every link and every POST of a connector shares.
pub(crate) struct Inner {
    pub(crate) url: Target,
    pub(crate) config: SseConfig,
    /// Built on first use: an `http://` URL may never need it (unless redirected).
    tls: OnceLock<TlsConnector>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("url", &self.url.to_string())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// The TLS connector, built on first use.
    pub(crate) fn tls(&self) -> Result<TlsConnector, TransportError> {
        if let Some(tls) = self.tls.get() {
            return Ok(tls.clone());
        }
        let config =
            transport_core::tls::client_config(&self.config.transport.tls, &[b"h2", b"http/1.1"])?;
        Ok(self.tls.get_or_init(|| TlsConnector::from(config)).clone())
    }
}

impl std::fmt::Debug for SseConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseConnector")
            .field("url", &self.inner.url.to_string())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl SseConnector {
    /// A connector for `url` (`http://` or `https://`).
    ///
    /// # Errors
    /// [`TransportError::InvalidUrl`], [`TransportError::InvalidConfig`], or
    /// [`TransportError::Tls`] when the TLS options of an `https://` URL cannot be loaded.
    pub fn new(url: &str, config: SseConfig) -> Result<Self, TransportError> {
        config.validate()?;
        let url = Target::parse(url)?;
        let inner = Inner {
            tls: OnceLock::new(),
            url,
            config,
        };
        if inner.url.tls {
            inner.tls()?;
        }
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The URL this connector connects to.
    pub fn url(&self) -> String {
        self.inner.url.to_string()
    }

    /// The configuration in use.
    pub fn config(&self) -> &SseConfig {
        &self.inner.config
    }
}

impl Connector for SseConnector {
    type Transport = Connection;

    async fn connect(&self) -> Result<Connection, TransportError> {
        let config = &self.inner.config;
        let mut parser = SseParser::new(config.parser);
        if let Some(id) = &config.last_event_id {
            parser.set_last_event_id(id.clone());
        }
        let dial = SseDial {
            inner: self.inner.clone(),
            parser,
            retry: None,
        };
        driver::connect(dial, &config.transport, TRANSPORT).await
    }
}

/// The [`Dial`] of one connection: keeps the parser (and so the last event id) and the
/// server's `retry` across reconnects.
struct SseDial {
    inner: Arc<Inner>,
    parser: SseParser,
    retry: Option<Duration>,
}

impl Dial for SseDial {
    type Link = stream::Link;

    async fn dial(&mut self) -> Result<Self::Link, TransportError> {
        self.parser.reset_for_reconnect();
        stream::open(&self.inner, self.parser.last_event_id()).await
    }

    fn info(&self, link: &Self::Link) -> ConnectionInfo {
        ConnectionInfo::new(TRANSPORT).with_peer_addr(link.peer_addr())
    }

    async fn run(&mut self, link: Self::Link, io: &mut DriverIo) -> RunOutcome {
        // The session id is recorded when the server's session event arrives.
        let span = tracing::debug_span!("sse-link", session = tracing::field::Empty);
        link::run(link, &self.inner, &mut self.parser, &mut self.retry, io)
            .instrument(span)
            .await
    }

    fn should_retry(&self, error: &TransportError) -> bool {
        should_retry(error)
    }

    fn send_unsupported(&self, link: &Self::Link) -> Option<String> {
        link.send_url
            .is_none()
            .then(|| link::NO_SEND_URL.to_owned())
    }

    fn min_reconnect_delay(&self) -> Option<Duration> {
        self.retry
    }
}

/// The SSE rule: any non-200 answer, or a 200 that is not an event stream, ends the connection
/// for good. Everything else follows [`TransportError::is_retryable`].
fn should_retry(error: &TransportError) -> bool {
    match error {
        TransportError::HandshakeRejected { .. } | TransportError::ProtocolViolation { .. } => {
            false
        }
        other => other.is_retryable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = SseConfig::default();
        c.validate().unwrap();
        assert_eq!(c.max_redirects, 5);
        assert!(c.subscribed_events.is_none());
    }

    #[test]
    fn validation_names_the_field() {
        let mut c = SseConfig::default();
        c.last_event_id("bad\nid");
        assert!(
            matches!(c.validate(), Err(TransportError::InvalidConfig(m)) if m.contains("last_event_id"))
        );
        let mut c = SseConfig::default();
        c.post_timeout(Duration::ZERO);
        assert!(c.validate().is_err());
        let mut c = SseConfig::default();
        c.parser_limits(*ParserLimits::default().max_line_length(0));
        assert!(c.validate().is_err());
        let mut c = SseConfig::default();
        c.subscribe(["a", "b"]).max_redirects(0).last_event_id("7");
        c.validate().unwrap();
        assert_eq!(c.subscribed_events.as_deref().map(<[_]>::len), Some(2));
    }

    #[test]
    fn refusals_are_final() {
        assert!(!should_retry(&TransportError::HandshakeRejected {
            status: 503
        }));
        assert!(!should_retry(&TransportError::HandshakeRejected {
            status: 204
        }));
        assert!(!should_retry(&TransportError::protocol("text/html")));
        assert!(should_retry(&TransportError::lost("stream ended")));
        assert!(!should_retry(&TransportError::tls("unknown issuer")));
        assert!(should_retry(&TransportError::ClosedByPeer {
            code: 1012,
            reason: String::new()
        }));
    }

    #[test]
    fn connector_refuses_bad_urls() {
        for bad in ["ws://x/", "x", "http://", "http://u:p@host/"] {
            assert!(
                matches!(
                    SseConnector::new(bad, SseConfig::default()),
                    Err(TransportError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
        let c = SseConnector::new("http://127.0.0.1:1/events?x=1", SseConfig::default()).unwrap();
        assert_eq!(c.url(), "http://127.0.0.1:1/events?x=1");
    }
}
