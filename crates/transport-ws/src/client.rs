//! The WebSocket client: [`WsConnector`] (a [`Connector`]) and [`connect`].

use std::sync::Arc;

use http::HeaderValue;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use transport_core::driver::{self, Dial, DriverIo, RunOutcome};
use transport_core::tls::ClientStream;
use transport_core::{Connection, ConnectionInfo, Connector, TransportError};

use crate::WsConfig;
use crate::error::handshake_error;
use crate::link::{self, Link, LinkOptions};
use crate::raw::RawLink;
use crate::read_buf::AdaptiveRead;
use crate::url::WsUrl;

pub(crate) const TRANSPORT: &str = "ws";

/// Connects to a `ws://` or `wss://` URL.
///
/// The returned [`Connection`] reconnects on its own when the link drops, as
/// `config.transport.reconnect` says.
///
/// # Errors
/// [`TransportError::InvalidUrl`], [`TransportError::InvalidConfig`], or the first attempt's
/// failure: [`TransportError::ConnectionFailed`], [`TransportError::Timeout`],
/// [`TransportError::Tls`], [`TransportError::HandshakeRejected`] (with the HTTP status).
///
/// # Cancel safety
/// Cancel safe: a dropped attempt closes the socket it had opened.
pub async fn connect(url: &str, config: WsConfig) -> Result<Connection, TransportError> {
    WsConnector::new(url, config)?.connect().await
}

/// Connects to one WebSocket endpoint; each [`connect`](Connector::connect) opens a new
/// connection. Cheap to clone.
#[derive(Clone)]
pub struct WsConnector {
    url: Arc<WsUrl>,
    config: Arc<WsConfig>,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for WsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConnector")
            .field("url", &self.url.uri)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WsConnector {
    /// A connector for `url` (`ws://` or `wss://`).
    ///
    /// # Errors
    /// [`TransportError::InvalidUrl`], [`TransportError::InvalidConfig`], or
    /// [`TransportError::Tls`] when the TLS options cannot be loaded.
    pub fn new(url: &str, config: WsConfig) -> Result<Self, TransportError> {
        config.validate()?;
        let url = WsUrl::parse(url)?;
        let tls = if url.tls {
            let client = transport_core::tls::client_config(&config.transport.tls, &[b"http/1.1"])?;
            Some(TlsConnector::from(client))
        } else {
            None
        };
        Ok(Self {
            url: Arc::new(url),
            config: Arc::new(config),
            tls,
        })
    }

    /// The URL this connector connects to.
    pub fn url(&self) -> String {
        self.url.uri.to_string()
    }

    /// Opens a link for a transport built on this one, which runs it in its own task (see
    /// [`RawLink`]), bounded by the connect timeout. Proxy, TLS and subprotocols as
    /// [`connect`](Connector::connect).
    ///
    /// # Errors
    /// As [`connect`](Connector::connect).
    #[doc(hidden)]
    pub async fn connect_raw(&self) -> Result<RawLink, TransportError> {
        let timeout = self.config.transport.connect_timeout;
        let (ws, info) = tokio::time::timeout(timeout, self.open())
            .await
            .map_err(|_| TransportError::Timeout {
                operation: "connect",
                after: timeout,
            })??;
        let options = LinkOptions::new(&self.config.transport, None);
        Ok(RawLink::client(Link::new(ws, options), info))
    }

    async fn open(
        &self,
    ) -> Result<(WebSocketStream<AdaptiveRead<ClientStream>>, ConnectionInfo), TransportError> {
        let url = &self.url;
        let config = &self.config;
        // As `proxy::connect_tcp`, minus the timer of a direct connection: the dial running
        // this is bounded by the same `connect_timeout`, and each timer registered costs a
        // wake-up of the runtime.
        let (tcp, known_peer) = match config.proxy.resolve(url.tls, &url.host, url.port)? {
            Some(proxy) => {
                let tcp = crate::proxy::connect_through(
                    &proxy,
                    &url.host,
                    url.port,
                    config.transport.connect_timeout,
                )
                .await?;
                (tcp, None)
            }
            // A direct connection to an IP literal reaches exactly that address: no
            // `getpeername` needed to know it (one system call less per connect).
            None => (
                crate::proxy::open_direct(&url.host, url.port).await?,
                crate::proxy::literal_addr(&url.host, url.port),
            ),
        };
        let peer_addr = known_peer.or_else(|| tcp.peer_addr().ok());
        let stream = match &self.tls {
            Some(connector) => {
                transport_core::tls::connect(connector, url.bare_host(), tcp).await?
            }
            None => ClientStream::Plain(tcp),
        };
        let mut request = url
            .uri
            .to_string()
            .into_client_request()
            .map_err(handshake_error)?;
        let headers = request.headers_mut();
        for (name, value) in &config.transport.headers {
            headers.append(name, value.clone());
        }
        if !config.subprotocols.is_empty() {
            let offered = HeaderValue::from_str(&config.subprotocols.join(", "))
                .map_err(|e| TransportError::InvalidConfig(format!("subprotocols: {e}")))?;
            headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, offered);
        }
        let (ws, response) = tokio_tungstenite::client_async_with_config(
            request,
            AdaptiveRead::new(stream),
            Some(config.tungstenite()),
        )
        .await
        .map_err(handshake_error)?;
        let subprotocol = response
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(chosen) = &subprotocol
            && !config.subprotocols.iter().any(|p| p == chosen)
        {
            return Err(TransportError::protocol(format!(
                "server chose subprotocol {chosen:?}, which was not offered"
            )));
        }
        let info = ConnectionInfo::new(TRANSPORT)
            .with_peer_addr(peer_addr)
            .with_subprotocol(subprotocol);
        Ok((ws, info))
    }
}

struct WsDial {
    connector: WsConnector,
}

impl Dial for WsDial {
    type Link = (WebSocketStream<AdaptiveRead<ClientStream>>, ConnectionInfo);

    async fn dial(&mut self) -> Result<Self::Link, TransportError> {
        self.connector.open().await
    }

    fn info(&self, link: &Self::Link) -> ConnectionInfo {
        link.1.clone()
    }

    async fn run(&mut self, link: Self::Link, io: &mut DriverIo) -> RunOutcome {
        link::run(
            link.0,
            io,
            LinkOptions::new(&self.connector.config.transport, None),
        )
        .await
    }
}

impl Connector for WsConnector {
    type Transport = Connection;

    async fn connect(&self) -> Result<Connection, TransportError> {
        let dial = WsDial {
            connector: self.clone(),
        };
        driver::connect(dial, &self.config.transport, TRANSPORT).await
    }
}
