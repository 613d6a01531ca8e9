//! Opening links: one attempt (connect, then a health-check round trip) and the Happy Eyeballs
//! race over several (RFC 8305: staggered starts, first healthy wins, losers closed).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use transport_core::{Connection, Connector, Message, ReconnectPolicy, Transport, TransportError};
use transport_sse::SseConnector;
use transport_ws::{RawLink, WsConnector};
use transport_wt::WtConnector;

use crate::config::{AdaptiveConfig, SessionMode, TransportKind};
use crate::session::{self, Frame};

/// A connector of any of the three protocols.
#[derive(Debug)]
enum AnyConnector {
    Wt(WtConnector),
    Ws(WsConnector),
    Sse(SseConnector),
}

/// One configured endpoint, ready to connect.
#[derive(Debug)]
pub(crate) struct Candidate {
    pub(crate) kind: TransportKind,
    connector: AnyConnector,
}

impl Candidate {
    async fn connect(&self) -> Result<AnyLink, TransportError> {
        match &self.connector {
            AnyConnector::Wt(c) => c.connect().await.map(AnyLink::Conn),
            // The session layer runs a WebSocket link in its own task (no driver task and no
            // channel between them): see `client::serve_ws`.
            AnyConnector::Ws(c) => c.connect_raw().await.map(|l| AnyLink::Ws(Box::new(l))),
            AnyConnector::Sse(c) => c.connect().await.map(AnyLink::Conn),
        }
    }
}

/// An open link: a protocol connection with its own driver task, or a WebSocket link the
/// adaptive connection's task runs itself.
#[derive(Debug)]
pub(crate) enum AnyLink {
    Conn(Connection),
    Ws(Box<RawLink>),
}

impl AnyLink {
    /// Sends one message (the health check, the session handshake).
    pub(crate) async fn send(&mut self, message: Message) -> Result<(), TransportError> {
        match self {
            Self::Conn(c) => c.send(message).await,
            Self::Ws(w) => w.send(message).await,
        }
    }

    /// The next message; not bounded in time (the caller bounds it).
    pub(crate) async fn recv(&mut self) -> Result<Option<Message>, TransportError> {
        match self {
            Self::Conn(c) => c.recv().await,
            Self::Ws(w) => w.recv().await,
        }
    }

    /// The peer's address, when known.
    pub(crate) fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Conn(c) => c.info().peer_addr,
            Self::Ws(w) => w.info().peer_addr,
        }
    }

    /// Closes the link (within its close timeout).
    pub(crate) async fn close(self, code: u16, reason: &str) {
        match self {
            Self::Conn(c) => {
                let _ = c.close(code, reason).await;
            }
            Self::Ws(mut w) => w.close(code, reason).await,
        }
    }
}

/// Builds the candidates of `config`, protocol reconnects disabled.
pub(crate) fn candidates(config: &AdaptiveConfig) -> Result<Vec<Candidate>, TransportError> {
    config
        .endpoints
        .iter()
        .map(|e| {
            let connector = match e.kind {
                TransportKind::WebTransport => {
                    let mut c = config.wt.clone();
                    c.client.transport.reconnect = ReconnectPolicy::disabled();
                    AnyConnector::Wt(WtConnector::new(&e.url, c)?)
                }
                TransportKind::WebSocket => {
                    let mut c = config.ws.clone();
                    c.transport.reconnect = ReconnectPolicy::disabled();
                    AnyConnector::Ws(WsConnector::new(&e.url, c)?)
                }
                TransportKind::Sse => {
                    let mut c = config.sse.clone();
                    c.transport.reconnect = ReconnectPolicy::disabled();
                    AnyConnector::Sse(SseConnector::new(&e.url, c)?)
                }
            };
            Ok(Candidate {
                kind: e.kind,
                connector,
            })
        })
        .collect()
}

/// A link that connected and answered its health check.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) conn: AnyLink,
    pub(crate) index: usize,
    /// Whether the server answered `PONG` (speaks the session protocol).
    pub(crate) speaks_session: bool,
    /// A third-party server's first message (its answer to the health check), to deliver.
    pub(crate) first: Option<Message>,
}

/// What an attempt must find to count as healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Any answer (or none at all with [`SessionMode::Off`]).
    Any,
    /// A server speaking the session protocol.
    Session,
}

/// One attempt: connect, then `PING` and wait for the answer.
pub(crate) async fn attempt(
    candidate: &Candidate,
    index: usize,
    mode: SessionMode,
    need: Need,
    health_timeout: Duration,
) -> Result<Opened, TransportError> {
    let mut conn = candidate.connect().await?;
    if mode == SessionMode::Off {
        return Ok(Opened {
            conn,
            index,
            speaks_session: false,
            first: None,
        });
    }
    let ping = session::encode(&Frame::Ping);
    conn.send(ping.clone()).await?;
    let answer = tokio::time::timeout(health_timeout, conn.recv())
        .await
        .map_err(|_| TransportError::Timeout {
            operation: "health check",
            after: health_timeout,
        })??
        .ok_or_else(|| TransportError::lost("closed during the health check"))?;
    if session::decode(&answer) == Ok(Frame::Pong) {
        return Ok(Opened {
            conn,
            index,
            speaks_session: true,
            first: None,
        });
    }
    if need == Need::Session || mode == SessionMode::Required {
        drop(conn);
        return Err(TransportError::protocol(
            "the server does not speak the session protocol",
        ));
    }
    // A third-party server: an echo of our PING is not an application message.
    let first = (answer != ping).then_some(answer);
    Ok(Opened {
        conn,
        index,
        speaks_session: false,
        first,
    })
}

type Attempt<'a> =
    Pin<Box<dyn Future<Output = (usize, Result<Opened, TransportError>)> + Send + 'a>>;

/// Races `order` (indices into `candidates`, preferred first): the first starts at once, each
/// next one after `head_start` or as soon as the previous one failed; the first healthy link
/// wins and the others are dropped (closed). `on_failure` hears of each failed attempt.
pub(crate) async fn race(
    candidates: &[Candidate],
    order: &[usize],
    config: &AdaptiveConfig,
    need: Need,
    mut on_failure: impl FnMut(usize, &TransportError) + Send,
) -> Result<Opened, TransportError> {
    let mut pending: FuturesUnordered<Attempt<'_>> = FuturesUnordered::new();
    let mut next = 0;
    let mut errors: Vec<TransportError> = Vec::new();
    let start = |i: usize| -> Attempt<'_> {
        let c = &candidates[i];
        Box::pin(async move {
            (
                i,
                attempt(c, i, config.session_mode, need, config.health_timeout).await,
            )
        })
    };
    let timer = tokio::time::sleep(config.head_start);
    tokio::pin!(timer);
    loop {
        if pending.is_empty() {
            let Some(&i) = order.get(next) else {
                return Err(combine(errors));
            };
            next += 1;
            pending.push(start(i));
            timer
                .as_mut()
                .reset(tokio::time::Instant::now() + config.head_start);
        }
        tokio::select! {
            Some((i, result)) = pending.next() => match result {
                Ok(opened) => return Ok(opened),
                Err(e) => {
                    on_failure(i, &e);
                    errors.push(e);
                    // Start the next one now rather than after the head start.
                    if let Some(&j) = order.get(next) {
                        next += 1;
                        pending.push(start(j));
                        timer.as_mut().reset(tokio::time::Instant::now() + config.head_start);
                    }
                }
            },
            () = &mut timer, if next < order.len() => {
                let j = order[next];
                next += 1;
                pending.push(start(j));
                timer.as_mut().reset(tokio::time::Instant::now() + config.head_start);
            }
        }
    }
}

/// One error for a failed race: the first attempt's error when every attempt failed the same
/// way or none can pass by retrying (typed, e.g. a 403); otherwise a retryable
/// [`TransportError::ConnectionFailed`] naming every failure.
fn combine(errors: Vec<TransportError>) -> TransportError {
    let same = errors.windows(2).all(|w| w[0] == w[1]);
    let retryable = errors.iter().any(TransportError::is_retryable);
    if same || !retryable {
        return errors
            .into_iter()
            .next()
            .unwrap_or(TransportError::NotConnected);
    }
    let reason = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    TransportError::ConnectionFailed {
        reason: format!("every transport failed: {reason}"),
        source: None,
    }
}
