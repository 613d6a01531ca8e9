//! WebSocket client and server configuration.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use transport_core::{AcceptPolicy, IpLimits, TransportConfig, TransportError};

use crate::proxy::ProxyConfig;

/// Read buffer per connection. tungstenite allocates 128 KiB by default, eagerly, per socket;
/// 4 KiB keeps an idle connection cheap and still reads a typical message in one call. Larger
/// messages do not cost one system call per 4 KiB: below tungstenite, reads go ahead into a
/// buffer of up to 64 KiB while the peer sends faster than 4 KiB per read, freed again as soon
/// as the socket has nothing more to read.
pub const DEFAULT_READ_BUFFER: usize = 4 * 1024;

/// Bytes buffered before tungstenite writes to the socket; the driver flushes after each batch
/// of queued messages, so this only groups small messages.
pub const DEFAULT_WRITE_BUFFER: usize = 16 * 1024;

/// Largest single frame accepted. Default: 16 MiB (tungstenite's).
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// WebSocket client settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WsConfig {
    /// Settings shared with every transport (timeouts, limits, buffers, keepalive, headers,
    /// TLS, reconnect).
    pub transport: TransportConfig,
    /// Subprotocols offered in `Sec-WebSocket-Protocol`, in preference order. The server must
    /// pick one of them when any are offered.
    pub subprotocols: Vec<String>,
    /// How to reach the server: from the environment (default), direct, or an explicit proxy.
    pub proxy: ProxyConfig,
    /// Socket read buffer, bytes. Default: [`DEFAULT_READ_BUFFER`].
    pub read_buffer_size: usize,
    /// Write buffer target, bytes. Default: [`DEFAULT_WRITE_BUFFER`].
    pub write_buffer_size: usize,
    /// Largest incoming frame, bytes. Default: [`DEFAULT_MAX_FRAME`] (capped by the message
    /// limit).
    pub max_frame_size: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            transport: TransportConfig::default(),
            subprotocols: Vec::new(),
            proxy: ProxyConfig::default(),
            read_buffer_size: DEFAULT_READ_BUFFER,
            write_buffer_size: DEFAULT_WRITE_BUFFER,
            max_frame_size: DEFAULT_MAX_FRAME,
        }
    }
}

impl WsConfig {
    /// Adds an offered subprotocol.
    pub fn subprotocol(&mut self, protocol: impl Into<String>) -> &mut Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// Sets how the server is reached.
    pub fn proxy(&mut self, proxy: ProxyConfig) -> &mut Self {
        self.proxy = proxy;
        self
    }

    /// The tungstenite settings these imply.
    pub(crate) fn tungstenite(&self) -> WebSocketConfig {
        tungstenite_config(
            &self.transport,
            self.read_buffer_size,
            self.write_buffer_size,
            self.max_frame_size,
        )
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> Result<(), TransportError> {
        self.transport.validate()?;
        check_buffers(self.read_buffer_size, self.max_frame_size)
    }
}

fn check_buffers(read_buffer_size: usize, max_frame_size: usize) -> Result<(), TransportError> {
    if read_buffer_size < 256 {
        return Err(TransportError::InvalidConfig(
            "read_buffer_size must be at least 256 bytes".into(),
        ));
    }
    if max_frame_size == 0 {
        return Err(TransportError::InvalidConfig(
            "max_frame_size must be at least 1".into(),
        ));
    }
    Ok(())
}

pub(crate) fn tungstenite_config(
    transport: &TransportConfig,
    read_buffer_size: usize,
    write_buffer_size: usize,
    max_frame_size: usize,
) -> WebSocketConfig {
    let max_message = transport.max_message_size;
    WebSocketConfig::default()
        .read_buffer_size(read_buffer_size)
        .write_buffer_size(write_buffer_size)
        // Bounded: the write buffer may hold the target plus one maximal message.
        .max_write_buffer_size(write_buffer_size + max_message + 1024)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_frame_size.min(max_message)))
}

/// WebSocket server settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WsServerConfig {
    /// Per-connection settings (limits, buffers, keepalive, close timeout). Its `reconnect`,
    /// `headers` and `tls` fields do not apply to accepted connections.
    pub transport: TransportConfig,
    /// Which handshakes are accepted: origin allow-list and application check. Default: all.
    pub policy: AcceptPolicy,
    /// Most connections open at once (handshakes in progress included); more are refused with
    /// HTTP 503. Default: 10,000.
    pub max_connections: usize,
    /// Deadline for the TCP-accept-to-upgrade phase (TLS and HTTP handshake); a client that
    /// dribbles its request (slowloris) is dropped. Default: 10 s.
    pub handshake_timeout: Duration,
    /// Subprotocols the server speaks, in preference order; the first one the client also
    /// offers is chosen.
    pub subprotocols: Vec<String>,
    /// Accepted connections not yet taken by `accept()`; beyond it, handshakes wait.
    /// Default: 128.
    pub accept_backlog: usize,
    /// Listen backlog of the TCP listener: completed TCP handshakes the kernel queues until
    /// they are accepted (capped by `net.core.somaxconn`). Default:
    /// [`DEFAULT_LISTEN_BACKLOG`](transport_core::DEFAULT_LISTEN_BACKLOG) (1024), not the 128 of
    /// `std`, which a burst of connects overflows (the clients beyond it retry after 1 s).
    pub listen_backlog: u32,
    /// Socket read buffer per connection, bytes. Default: [`DEFAULT_READ_BUFFER`].
    pub read_buffer_size: usize,
    /// Write buffer target per connection, bytes. Default: [`DEFAULT_WRITE_BUFFER`].
    pub write_buffer_size: usize,
    /// Largest incoming frame, bytes. Default: [`DEFAULT_MAX_FRAME`].
    pub max_frame_size: usize,
    /// Per-remote-IP limits of [`WsServer`](crate::WsServer): concurrent connections and
    /// handshake rate per address; refusals are answered with HTTP 429. Default:
    /// [`IpLimits::default`] (1024 connections, 100 handshakes/s with bursts of 200).
    pub ip_limits: IpLimits,
}

impl Default for WsServerConfig {
    fn default() -> Self {
        Self {
            transport: TransportConfig::default(),
            policy: AcceptPolicy::default(),
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            subprotocols: Vec::new(),
            accept_backlog: 128,
            listen_backlog: transport_core::DEFAULT_LISTEN_BACKLOG,
            read_buffer_size: DEFAULT_READ_BUFFER,
            write_buffer_size: DEFAULT_WRITE_BUFFER,
            max_frame_size: DEFAULT_MAX_FRAME,
            ip_limits: IpLimits::default(),
        }
    }
}

impl WsServerConfig {
    pub(crate) fn tungstenite(&self) -> WebSocketConfig {
        tungstenite_config(
            &self.transport,
            self.read_buffer_size,
            self.write_buffer_size,
            self.max_frame_size,
        )
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`TransportError::InvalidConfig`] naming the offending field.
    pub fn validate(&self) -> Result<(), TransportError> {
        self.transport.validate()?;
        if self.max_connections == 0 || self.accept_backlog == 0 || self.listen_backlog == 0 {
            return Err(TransportError::InvalidConfig(
                "max_connections, accept_backlog and listen_backlog must be at least 1".into(),
            ));
        }
        self.ip_limits.validate()?;
        check_buffers(self.read_buffer_size, self.max_frame_size)
    }
}
