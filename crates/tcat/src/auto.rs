//! `tcat connect --transport auto`: the adaptive transport of `transport-adaptive`.
//!
//! The endpoints come from `--wt URL`, `--ws URL` and `--sse URL` (any subset, raced in that
//! order of preference), or from a BASE_URL whose negotiation endpoint
//! (`/transport/negotiate`, docs/protocols/session.md) lists them with the WebTransport
//! certificate hash. The race, the fallback, the reconnects and the resumption of the session
//! are the library's; tcat prints each of its events as one `transport: ...` line on stderr,
//! so a user sees which transport carries the run and every switch:
//!
//! ```text
//! transport: wt attempt failed: timed out after 250ms
//! transport: ws (connected)
//! transport: ws dropped: connection reset; reconnecting
//! transport: session resumed, 3 messages sent again
//! transport: ws -> wt (upgrade)
//! ```
//!
//! Past the connect, the run is the same as for the other transports: the adaptive
//! connection is a `transport_core::Connection`.

use std::time::Duration;

use tokio::sync::broadcast;
use tracing::info;
use transport_adaptive::{
    AdaptiveConfig, AdaptiveEvent, ChangeReason, TransportKind as Kind, negotiate,
};
use transport_core::{Connection, TransportConfig, TransportError};
use transport_ws::ProxyConfig;

use crate::cli::ConnectArgs;
use crate::exit::Failure;

/// Longest a single transport's attempt may take inside the race: a transport that is
/// silently blocked must not hold the run longer than this before the next one has its turn.
const MAX_ATTEMPT: Duration = Duration::from_secs(5);

/// An adaptive connection about to be made.
#[derive(Debug)]
pub(crate) struct AutoDialer {
    /// The negotiation base URL, when the endpoints come from the server.
    base: Option<String>,
    config: AdaptiveConfig,
    connect_timeout: Duration,
}

impl AutoDialer {
    /// The settings of `--transport auto`, from the command line and the settings every
    /// transport shares (`transport`: headers, TLS roots, message limit).
    pub(crate) fn new(args: &ConnectArgs, transport: &TransportConfig) -> Result<Self, Failure> {
        if args.datagram || !args.subprotocols.is_empty() {
            return Err(Failure::usage(
                "--datagram and --subprotocol name one transport; --transport auto races several",
            ));
        }
        let endpoints: [(Kind, &Option<String>, &[&str]); 3] = [
            (Kind::WebTransport, &args.wt_url, &["https"]),
            (Kind::WebSocket, &args.ws_url, &["ws", "wss"]),
            (Kind::Sse, &args.sse_url, &["http", "https"]),
        ];
        let mut config = AdaptiveConfig::default();
        for (kind, url, schemes) in endpoints {
            let Some(url) = url else { continue };
            let scheme = url.split_once("://").map_or("", |(s, _)| s);
            if !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
                return Err(Failure::usage(format!(
                    "--{kind} {url:?}: expected a {}:// URL",
                    schemes.join(":// or ")
                )));
            }
            config.endpoint(kind, url.clone());
        }
        let base = args.url.clone();
        if base.is_none() && config.endpoints.is_empty() {
            return Err(Failure::usage(
                "--transport auto needs a BASE_URL or at least one of --wt, --ws, --sse",
            ));
        }
        for hash in &args.cert_hashes {
            config.wt_cert_hash(*hash);
        }
        config.transport.max_message_size = transport.max_message_size;
        for protocol in [
            &mut config.ws.transport,
            &mut config.sse.transport,
            &mut config.wt.client.transport,
        ] {
            protocol.headers.clone_from(&transport.headers);
            protocol.tls = transport.tls.clone();
            protocol.max_message_size = transport.max_message_size;
        }
        config.attempt_timeout(args.connect_timeout.min(MAX_ATTEMPT));
        if args.no_proxy {
            config.ws.proxy(ProxyConfig::none());
        } else if let Some(proxy) = &args.proxy {
            let proxy =
                ProxyConfig::http(proxy).map_err(|e| Failure::usage(format!("--proxy: {e}")))?;
            config.ws.proxy(proxy);
        }
        // With a BASE_URL the endpoints arrive with the negotiation; `connect` checks then.
        if base.is_none() {
            config
                .validate()
                .map_err(|e| Failure::usage(e.to_string()))?;
        }
        Ok(Self {
            base,
            config,
            connect_timeout: args.connect_timeout,
        })
    }

    /// The settings of the adaptive connection handed to the application.
    pub(crate) fn transport(&self) -> &TransportConfig {
        &self.config.transport
    }

    /// What the run connects to, for logs.
    pub(crate) fn describe(&self) -> String {
        match &self.base {
            Some(base) => base.clone(),
            None => self
                .config
                .endpoints
                .iter()
                .map(|e| e.url.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// Negotiates (with a BASE_URL), races the endpoints, and returns the connection; its
    /// events are printed on stderr from then on. Bounded by `--connect-timeout` (exit 3).
    pub(crate) async fn connect(self) -> Result<Connection, Failure> {
        let limit = self.connect_timeout;
        let work = async {
            let config = match &self.base {
                Some(base) => Box::pin(negotiate(base, self.config)).await.map_err(|e| {
                    Failure::transport(&format!("cannot negotiate with {base}"), &e)
                })?,
                None => self.config,
            };
            // Boxed: the race holds every transport's connect future at once.
            Box::pin(transport_adaptive::connect(config))
                .await
                .map_err(|e| Failure::transport("cannot connect over any transport", &e))
        };
        let connection = tokio::time::timeout(limit, work)
            .await
            .map_err(|_| Failure::timeout(format!("not connected after {limit:?}")))??;
        info!(status = ?connection.status(), "adaptive connection up");
        tokio::spawn(report(connection.events()));
        Ok(connection.into_inner())
    }
}

/// Prints every event of the connection on stderr until it ends.
async fn report(mut events: broadcast::Receiver<AdaptiveEvent>) {
    // Ends when the connection's driver (the sender's owner) is gone.
    loop {
        match events.recv().await {
            Ok(event) => eprintln!("transport: {}", describe(&event)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                eprintln!("transport: ({n} events not shown)");
            }
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// One event, as the words after `transport: `.
fn describe(event: &AdaptiveEvent) -> String {
    match event {
        AdaptiveEvent::TransportChanged { from: None, to, .. } => format!("{to} (connected)"),
        AdaptiveEvent::TransportChanged {
            from: Some(from),
            to,
            reason,
        } => format!("{from} -> {to} ({})", reason_name(*reason)),
        AdaptiveEvent::Disconnected { transport, error } => {
            format!("{transport} dropped: {}; reconnecting", error_text(error))
        }
        AdaptiveEvent::AttemptFailed { transport, error } => {
            format!("{transport} attempt failed: {}", error_text(error))
        }
        AdaptiveEvent::Resumed { replayed } => match replayed {
            0 => "session resumed, nothing lost".to_owned(),
            1 => "session resumed, 1 message sent again".to_owned(),
            n => format!("session resumed, {n} messages sent again"),
        },
        AdaptiveEvent::NoDeliveryGuarantee { transport } => format!(
            "{transport}: the server has no session layer; messages may be lost or repeated \
             across reconnects"
        ),
        other => format!("{other:?}"),
    }
}

fn reason_name(reason: ChangeReason) -> &'static str {
    match reason {
        ChangeReason::Initial => "connected",
        ChangeReason::Reconnected => "reconnected",
        ChangeReason::Fallback => "fallback",
        ChangeReason::Recovered => "recovered",
        ChangeReason::Upgrade => "upgrade",
    }
}

/// An error on one line.
fn error_text(error: &TransportError) -> String {
    error.to_string().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_lines() {
        let changed = AdaptiveEvent::TransportChanged {
            from: Some(Kind::WebTransport),
            to: Kind::WebSocket,
            reason: ChangeReason::Fallback,
        };
        assert_eq!(describe(&changed), "wt -> ws (fallback)");
        let first = AdaptiveEvent::TransportChanged {
            from: None,
            to: Kind::Sse,
            reason: ChangeReason::Initial,
        };
        assert_eq!(describe(&first), "sse (connected)");
        assert_eq!(
            describe(&AdaptiveEvent::Resumed { replayed: 3 }),
            "session resumed, 3 messages sent again"
        );
    }
}
