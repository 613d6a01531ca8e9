//! The client side: [`WtConnector`] (a [`Connector`]) and [`connect_transport`].

use std::sync::Arc;

use transport_core::driver::{self, Dial, DriverIo, RunOutcome};
use transport_core::{Connection, ConnectionInfo, Connector, TransportError};

use super::config::{SendMode, WtConfig};
use super::link::{self, Link, LinkOptions, MessageSend, Session, TRANSPORT};

/// Connects to a WebTransport endpoint (`https://` URL) and returns a message
/// [`Connection`]: the session is opened with [`connect`](crate::connect), then a
/// bidirectional message stream (see `docs/protocols/wt.md`).
///
/// The connection reconnects on its own (a new session) when the session drops, as
/// `config.client.transport.reconnect` says.
///
/// # Errors
/// [`TransportError::InvalidUrl`], [`TransportError::InvalidConfig`], or the first attempt's
/// failure, as [`connect`](crate::connect) lists them; [`TransportError::Unsupported`] in
/// unreliable mode when the server does not accept datagrams.
///
/// # Cancel safety
/// Cancel safe: a dropped attempt closes the session it had opened.
pub async fn connect_transport(url: &str, config: WtConfig) -> Result<Connection, TransportError> {
    WtConnector::new(url, config)?.connect().await
}

/// Connects to one WebTransport endpoint; each [`connect`](Connector::connect) opens a new
/// connection. Cheap to clone.
///
/// In unreliable mode the first session's datagram size caps what `send` accepts, so that it
/// refuses a message that cannot fit in one datagram with [`TransportError::MessageTooLarge`];
/// received messages (which may come on streams) are still bounded by `max_message_size`.
#[derive(Debug, Clone)]
pub struct WtConnector {
    url: Arc<str>,
    config: Arc<WtConfig>,
}

impl WtConnector {
    /// A connector for `url` (`https://host[:port][/path]`).
    ///
    /// # Errors
    /// [`TransportError::InvalidUrl`] for another scheme or an unparseable URL,
    /// [`TransportError::InvalidConfig`].
    pub fn new(url: &str, config: WtConfig) -> Result<Self, TransportError> {
        config.validate()?;
        let uri: http::Uri = url
            .parse()
            .map_err(|e| TransportError::invalid_url(url, format!("{e}")))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(TransportError::invalid_url(
                url,
                "WebTransport needs an https://host URL",
            ));
        }
        Ok(Self {
            url: url.into(),
            config: Arc::new(config),
        })
    }

    /// The URL this connector connects to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Opens a session and its message stream.
    async fn open(&self) -> Result<Link, TransportError> {
        let session = crate::connect(&self.url, self.config.client_config()).await?;
        let (send, recv) = session.open_bi().await?;
        let _ = send.set_priority(self.config.stream.priority);
        Ok(Link::new(
            Session::Client(Arc::new(session)),
            MessageSend::Quinn(send),
            Box::new(recv),
        ))
    }
}

struct WtDial {
    connector: WtConnector,
    options: LinkOptions,
    /// A link opened before the driver started (unreliable mode measures its datagram size).
    opened: Option<Link>,
}

impl Dial for WtDial {
    type Link = Link;

    async fn dial(&mut self) -> Result<Link, TransportError> {
        match self.opened.take() {
            Some(link) => Ok(link),
            None => self.connector.open().await,
        }
    }

    fn info(&self, link: &Link) -> ConnectionInfo {
        link.info()
    }

    async fn run(&mut self, link: Link, io: &mut DriverIo) -> RunOutcome {
        link::run(link, io, &self.options).await
    }
}

impl Connector for WtConnector {
    type Transport = Connection;

    async fn connect(&self) -> Result<Connection, TransportError> {
        let mut transport = self.config.client.transport.clone();
        let mut dial = WtDial {
            connector: self.clone(),
            options: LinkOptions::new(&transport, self.config.stream),
            opened: None,
        };
        if self.config.stream.mode() == SendMode::Datagram {
            let after = transport.connect_timeout;
            let link = tokio::time::timeout(after, self.open())
                .await
                .map_err(|_| TransportError::Timeout {
                    operation: "connect",
                    after,
                })??;
            let limit = link.session.datagram_message_limit().ok_or_else(|| {
                TransportError::Unsupported("the server does not accept QUIC datagrams".into())
            })?;
            transport.max_message_size = transport.max_message_size.min(limit).max(1);
            dial.opened = Some(link);
        }
        driver::connect(dial, &transport, TRANSPORT).await
    }
}
