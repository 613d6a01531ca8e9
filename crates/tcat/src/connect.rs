//! `tcat connect`: stdin lines out as messages, received messages out as stdout lines.
//!
//! Two activities run side by side so that neither can stall the other (an echo server whose
//! answers we stop reading would otherwise stop reading us too):
//! * the pump task reads stdin lines and sends them, until EOF;
//! * the main loop prints every received message until the connection ends, `--count` is
//!   reached, or a signal arrives.
//!
//! At stdin EOF (without `--count`) the close frame does not go out at once: a peer stops
//! sending once it has received our close (RFC 6455 5.5.1), and every implementation we tried
//! (transport-ws, Python `websockets`) answers a close that arrives right behind the last
//! messages before the application has echoed them. So tcat lingers: it waits until its send
//! queue has drained and the peer has been quiet for `--linger` (default 1 s, at most ten
//! times that after EOF), then closes with 1000 and prints what still arrives until the peer
//! completes the close.
//!
//! SSE differs in three ways (see [`crate::sse`]): the stream is reconnected when it drops
//! (the reconnect policy is on), a 204 answer ends the run like a normal close, and stdin EOF
//! only closes when the server offers a send URL: a plain SSE stream has no way back, so
//! nothing can be closed gracefully and its end would be the only reason to stop reading.
//!
//! WebTransport (`--transport wt`) is WebSocket-like, on `transport-wt`'s message framing: one
//! connection per run, and stdin EOF lingers, then closes (close frame, then FIN of the
//! message stream). A raw echo would not need the linger (its echoes are ordered before the
//! echoed close), but a server running the message framing answers a close at once, like a
//! WebSocket one, and datagram echoes are not ordered with the close at all.
//!
//! The whole run sits under the `--timeout` deadline.

use std::io::{self, Write as _};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use transport_core::{
    CloseFrame, Connection, Message, Receiver, ReconnectPolicy, Sender, TransportConfig,
    TransportError,
};
use transport_sse::SseConfig;
use transport_ws::{ProxyConfig, WsConfig};
use transport_wt::{Reliability, WtConfig};

use crate::auto::AutoDialer;
use crate::cli::{ConnectArgs, Format, TransportKind};
use crate::exit::{Done, Failure};
use crate::input;
use crate::output::{Fields, Output};
use crate::signal::Signals;
use crate::sse;

/// How long a close started by tcat itself (after `--count`, on an error or a signal) may take
/// before tcat exits anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Runs `tcat connect`.
pub(crate) async fn run(args: ConnectArgs) -> Result<Done, Failure> {
    let started = Instant::now();
    let kind = match (args.transport, &args.url) {
        (Some(TransportKind::Auto), _) => TransportKind::Auto,
        (explicit, Some(url)) => transport_for(explicit, url)?,
        (_, None) => {
            return Err(Failure::usage(
                "--wt, --ws and --sse name the endpoints of --transport auto",
            ));
        }
    };
    let mut signals = Signals::install()
        .map_err(|e| Failure::error(format!("installing signal handlers: {e}")))?;
    let session = Session::prepare(kind, &args)?;
    let work = session.run(&mut signals);
    match args.timeout {
        Some(limit) => tokio::time::timeout_at(started + limit, work)
            .await
            .unwrap_or_else(|_| Err(Failure::timeout(format!("timed out after {limit:?}")))),
        None => work.await,
    }
}

/// The transport for `url`: the one named by `--transport`, else the one its scheme selects.
fn transport_for(explicit: Option<TransportKind>, url: &str) -> Result<TransportKind, Failure> {
    let scheme = url.split_once("://").map(|(s, _)| s).ok_or_else(|| {
        Failure::usage(format!(
            "{url:?} is not a URL: expected ws://HOST[:PORT][/PATH], wss://..., http://... \
             or https://..."
        ))
    })?;
    match explicit {
        Some(kind) => {
            if kind
                .schemes()
                .iter()
                .any(|s| s.eq_ignore_ascii_case(scheme))
            {
                Ok(kind)
            } else {
                Err(Failure::usage(format!(
                    "--transport {} does not speak {scheme}:// (use {})",
                    kind.name(),
                    kind.schemes().join(":// or ") + "://"
                )))
            }
        }
        None => TransportKind::for_scheme(scheme).ok_or_else(|| {
            Failure::usage(format!(
                "unsupported URL scheme {scheme:?}: tcat speaks ws:// and wss:// (WebSocket), \
                 http:// and https:// (Server-Sent Events)"
            ))
        }),
    }
}

/// The settings shared by every transport, from the command line.
fn transport_config(kind: TransportKind, args: &ConnectArgs) -> Result<TransportConfig, Failure> {
    let mut config = TransportConfig::default();
    config.connect_timeout(args.connect_timeout);
    config.max_message_size(args.max_message_size);
    match kind {
        TransportKind::Ws | TransportKind::Wt | TransportKind::Auto => {
            // One run is one connection (the adaptive transport reconnects on its own, under
            // its own policy).
            config.reconnect(ReconnectPolicy::disabled());
            config.keepalive(
                keepalive_interval(args.keepalive),
                dead_peer_timeout(args.keepalive),
            );
        }
        TransportKind::Sse => {
            // An event stream is meant to be reconnected (WHATWG HTML 9.2): the library's
            // policy, with the server's retry: as the lower bound of each delay.
            config.reconnect(ReconnectPolicy::default());
            // The server sends the keepalives; the client only notices silence.
            config.keepalive(None, sse::silence_timeout(args.keepalive));
        }
    }
    for (name, value) in &args.headers {
        config
            .header(name, value)
            .map_err(|e| Failure::usage(format!("--header {name}: {e}")))?;
    }
    for path in &args.ca_cert {
        let pem = std::fs::read(path)
            .map_err(|e| Failure::usage(format!("--ca-cert {}: {e}", path.display())))?;
        transport_core::tls::certs_from_pem(&pem)
            .map_err(|e| Failure::usage(format!("--ca-cert {}: {e}", path.display())))?;
        config.tls.add_root_ca_pem(pem);
    }
    if args.danger_accept_invalid_certs {
        warn!("--danger-accept-invalid-certs: the server's certificate is NOT verified");
        config.tls.danger_accept_invalid_certs = true;
    }
    config
        .validate()
        .map_err(|e| Failure::usage(e.to_string()))?;
    Ok(config)
}

/// `None` for 0 (keepalive off).
pub(crate) fn keepalive_interval(interval: Duration) -> Option<Duration> {
    (!interval.is_zero()).then_some(interval)
}

/// At least the library default of 30 s, and always longer than the ping interval.
pub(crate) fn dead_peer_timeout(interval: Duration) -> Duration {
    Duration::from_secs(30).max(interval + interval / 2)
}

/// The transport-specific settings of a connection about to be made.
#[derive(Debug)]
enum Dialer {
    Ws(WsConfig),
    Sse(SseConfig),
    Wt(WtConfig),
    Auto(Box<AutoDialer>),
}

impl Dialer {
    fn new(kind: TransportKind, args: &ConnectArgs) -> Result<Self, Failure> {
        let transport = transport_config(kind, args)?;
        let auto = kind == TransportKind::Auto;
        if !auto && (args.wt_url.is_some() || args.ws_url.is_some() || args.sse_url.is_some()) {
            return Err(Failure::usage(
                "--wt, --ws and --sse name the endpoints of --transport auto",
            ));
        }
        if !auto && kind != TransportKind::Wt && (!args.cert_hashes.is_empty() || args.datagram) {
            return Err(Failure::usage(
                "--cert-hash and --datagram are WebTransport options (--transport wt)",
            ));
        }
        match kind {
            TransportKind::Ws => {
                let mut ws = WsConfig::default();
                ws.transport = transport;
                for p in &args.subprotocols {
                    ws.subprotocol(p.clone());
                }
                if args.no_proxy {
                    ws.proxy(ProxyConfig::none());
                } else if let Some(proxy) = &args.proxy {
                    let proxy = ProxyConfig::http(proxy)
                        .map_err(|e| Failure::usage(format!("--proxy: {e}")))?;
                    ws.proxy(proxy);
                }
                ws.validate().map_err(|e| Failure::usage(e.to_string()))?;
                Ok(Self::Ws(ws))
            }
            TransportKind::Sse => sse::client_config(transport, args).map(Self::Sse),
            TransportKind::Auto => {
                AutoDialer::new(args, &transport).map(|a| Self::Auto(Box::new(a)))
            }
            TransportKind::Wt => {
                if !args.subprotocols.is_empty() || args.proxy.is_some() {
                    return Err(Failure::usage(
                        "--subprotocol and --proxy are WebSocket options",
                    ));
                }
                let mut wt = WtConfig::default();
                wt.client.transport = transport;
                wt.client.cert_hashes.clone_from(&args.cert_hashes);
                if args.datagram {
                    wt.stream.reliability(Reliability::Unreliable);
                }
                wt.validate().map_err(|e| Failure::usage(e.to_string()))?;
                Ok(Self::Wt(wt))
            }
        }
    }

    fn transport(&self) -> &TransportConfig {
        match self {
            Self::Ws(ws) => &ws.transport,
            Self::Sse(sse) => &sse.transport,
            Self::Wt(wt) => &wt.client.transport,
            Self::Auto(auto) => auto.transport(),
        }
    }

    /// Connects; `Ok(None)` when an SSE server answered 204 No Content ("stop, on purpose").
    async fn connect(self, url: &str) -> Result<Option<Connection>, Failure> {
        let (result, is_sse) = match self {
            Self::Ws(config) => (transport_ws::connect(url, config).await, false),
            Self::Sse(config) => (transport_sse::connect(url, config).await, true),
            Self::Wt(config) => (transport_wt::connect_transport(url, config).await, false),
            Self::Auto(auto) => return auto.connect().await.map(Some),
        };
        match result {
            Ok(connection) => Ok(Some(connection)),
            Err(e) if is_sse && sse::is_stop(&e) => {
                info!("the server answered 204 No Content: nothing to stream");
                Ok(None)
            }
            Err(e) => Err(Failure::transport(&format!("cannot connect to {url}"), &e)),
        }
    }
}

/// A connection about to be made.
#[derive(Debug)]
struct Session {
    kind: TransportKind,
    url: String,
    dialer: Dialer,
    binary: bool,
    format: Format,
    plan: Plan,
    max_message_size: usize,
    stats: bool,
}

/// Prints a connection's statistics on stderr when dropped: at every exit of the run, a
/// `--timeout` or a signal included.
struct StatsReport {
    transport: &'static str,
    sender: transport_core::Sender,
}

impl StatsReport {
    fn line(&self) -> String {
        let s = self.sender.stats();
        let rtt = s.rtt.map_or_else(
            || "-".to_owned(),
            |rtt| format!("{:.3}", rtt.as_secs_f64() * 1000.0),
        );
        format!(
            "stats transport={} messages_sent={} bytes_sent={} messages_received={} \
             bytes_received={} reconnects={} rtt_ms={rtt} connected_ms={}",
            self.transport,
            s.messages_sent,
            s.bytes_sent,
            s.messages_received,
            s.bytes_received,
            s.reconnects,
            s.connected_for.as_millis(),
        )
    }
}

impl Drop for StatsReport {
    fn drop(&mut self) {
        let line = self.line();
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{line}").and_then(|()| stderr.flush());
    }
}

impl Session {
    fn prepare(kind: TransportKind, args: &ConnectArgs) -> Result<Self, Failure> {
        let dialer = Dialer::new(kind, args)?;
        let send_buffer = dialer.transport().send_buffer;
        let url = match &dialer {
            Dialer::Auto(auto) => auto.describe(),
            _ => args.url.clone().unwrap_or_default(),
        };
        Ok(Self {
            kind,
            url,
            dialer,
            binary: args.binary,
            format: args.format,
            plan: Plan {
                count: args.count,
                linger: args.linger,
                send_buffer,
                sse: kind == TransportKind::Sse,
            },
            max_message_size: args.max_message_size,
            stats: args.stats,
        })
    }

    async fn run(self, signals: &mut Signals) -> Result<Done, Failure> {
        info!(url = %self.url, transport = self.kind.name(), "connecting");
        let connection = tokio::select! {
            result = self.dialer.connect(&self.url) => result?,
            signal = signals.recv() => return Ok(Done::Interrupted(signal)),
        };
        let Some(connection) = connection else {
            return ended(self.plan.count, 0, "the server answered 204 No Content");
        };
        let info = connection.info();
        info!(peer = ?info.peer_addr, subprotocol = ?info.subprotocol, "connected");
        let (sender, receiver) = connection.split();
        let _stats = self.stats.then(|| StatsReport {
            transport: self.kind.name(),
            sender: sender.clone(),
        });
        let lines = input::spawn_stdin(self.max_message_size)
            .map_err(|e| Failure::error(format!("starting the stdin reader: {e}")))?;
        let pump = tokio::spawn(pump(lines, sender.clone(), self.binary));
        let fields = match self.kind {
            TransportKind::Ws | TransportKind::Wt | TransportKind::Auto => Fields::Plain,
            TransportKind::Sse => Fields::Sse,
        };
        let result = receive(
            receiver,
            &sender,
            pump,
            Output::new(self.format, fields, tokio::io::stdout()),
            self.plan,
            signals,
        )
        .await;
        if let Err(failure) = &result {
            debug!(%failure, "run failed");
        }
        result
    }
}

/// The run's result when the connection ended cleanly after `printed` messages: exit 0, unless
/// `--count` asked for more.
fn ended(count: Option<u64>, printed: u64, why: &str) -> Result<Done, Failure> {
    debug!(printed, why, "connection ended");
    match count {
        Some(n) if printed < n => Err(Failure::error(format!(
            "{why} after {printed} of {n} messages"
        ))),
        _ => Ok(Done::Finished),
    }
}

/// Sends stdin lines until EOF. A send that fails because the connection ended ends the pump
/// quietly: the receiving side reports why. Against a plain SSE stream, which offers no way
/// back, lines are read and dropped, with one warning on stderr.
async fn pump(
    mut lines: mpsc::Receiver<io::Result<Vec<u8>>>,
    sender: Sender,
    binary: bool,
) -> Result<(), Failure> {
    let mut number: u64 = 0;
    let mut ignored: u64 = 0;
    while let Some(line) = lines.recv().await {
        number += 1;
        let line = line.map_err(|e| Failure::error(format!("reading stdin: {e}")))?;
        let message = if binary {
            Message::binary(line)
        } else {
            Message::text_from_bytes(line).map_err(|e| {
                Failure::error(format!(
                    "stdin line {number}: {e}; use --binary to send raw bytes"
                ))
            })?
        };
        match sender.send(message).await {
            Ok(()) => {}
            Err(e @ TransportError::MessageTooLarge { .. }) => {
                return Err(Failure::error(format!("stdin line {number}: {e}")));
            }
            Err(TransportError::Unsupported(reason)) => {
                if ignored == 0 {
                    sse::warn_stdin_ignored(&reason);
                }
                ignored += 1;
            }
            Err(e) => {
                debug!(error = %e, "send failed; the connection is ending");
                return Ok(());
            }
        }
    }
    debug!(lines = number, ignored, "stdin closed");
    Ok(())
}

/// When the run ends, besides the connection ending.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Exit after this many messages.
    count: Option<u64>,
    /// Quiet time after stdin EOF before the close frame goes out.
    linger: Duration,
    /// Capacity of the connection's send queue (to tell when it has drained).
    send_buffer: usize,
    /// SSE: stdin EOF closes only when there is a send URL, 204 is a clean end.
    sse: bool,
}

/// Where the run is with respect to stdin EOF and the close.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// stdin is open (or `--count` ignores its end).
    Open,
    /// stdin ended; the close frame goes out once the peer has been quiet for the linger time.
    Lingering {
        /// When stdin ended.
        since: Instant,
        /// Last message received, or last time the send queue was seen non-empty.
        last_activity: Instant,
        /// When to look again.
        check_at: Instant,
    },
    /// The close handshake is under way; messages are printed until it completes.
    Closing,
}

/// How often a lingering run checks whether the send queue has drained.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Prints received messages until the connection ends or the run is over for another reason.
async fn receive(
    mut receiver: Receiver,
    sender: &Sender,
    mut pump: JoinHandle<Result<(), Failure>>,
    mut output: Output<tokio::io::Stdout>,
    plan: Plan,
    signals: &mut Signals,
) -> Result<Done, Failure> {
    let mut printed: u64 = 0;
    let mut pumping = true;
    let mut phase = Phase::Open;
    // Reconnects (SSE only) are worth a word on stderr: the stream goes quiet meanwhile.
    let mut state = sender.watch_state();
    let mut watching = plan.sse;
    // Ends when the connection ends (lingering and closing are bounded), on a signal, or when
    // the pump fails.
    loop {
        let check_at = match phase {
            Phase::Lingering { check_at, .. } => Some(check_at),
            Phase::Open | Phase::Closing => None,
        };
        tokio::select! {
            item = receiver.recv() => match item {
                Ok(Some(message)) => {
                    printed += 1;
                    if let Err(e) = output.write(&message).await {
                        drop(receiver);
                        close_quickly(sender).await;
                        return if e.kind() == io::ErrorKind::BrokenPipe {
                            debug!("stdout closed; stopping");
                            Ok(Done::Finished)
                        } else {
                            Err(Failure::error(format!("writing to stdout: {e}")))
                        };
                    }
                    if plan.count.is_some_and(|n| printed >= n) {
                        debug!(printed, "--count reached; closing");
                        // Dropping the receiver lets the link discard what still arrives
                        // instead of waiting for us to read it.
                        drop(receiver);
                        close_quickly(sender).await;
                        return Ok(Done::Finished);
                    }
                    if let Phase::Lingering { last_activity, .. } = &mut phase {
                        *last_activity = Instant::now();
                    }
                }
                Ok(None) => return ended(plan.count, printed, "connection closed"),
                Err(e) if plan.sse && sse::is_stop(&e) => {
                    // A reconnect was answered with 204: the server wants no more.
                    return ended(plan.count, printed, "the server answered 204 No Content");
                }
                Err(e) => {
                    return Err(Failure::transport("connection closed", &e));
                }
            },
            joined = &mut pump, if pumping => {
                pumping = false;
                match joined {
                    Ok(Ok(())) if plan.sse
                        && plan.count.is_none()
                        && !sse::send_offered(sender) =>
                    {
                        // Nothing to close gracefully, and the stream is what was asked for.
                        debug!("stdin ended; a plain SSE stream goes on");
                    }
                    Ok(Ok(())) if plan.count.is_none() => {
                        let now = Instant::now();
                        phase = if plan.linger.is_zero() {
                            start_close(sender)
                        } else {
                            debug!(linger = ?plan.linger, "stdin ended; lingering before the close");
                            Phase::Lingering { since: now, last_activity: now, check_at: now }
                        };
                    }
                    Ok(Ok(())) => {}
                    Ok(Err(failure)) => {
                        drop(receiver);
                        close_quickly(sender).await;
                        return Err(failure);
                    }
                    Err(e) => return Err(Failure::error(format!("stdin task failed: {e}"))),
                }
            },
            () = sleep_until_some(check_at), if check_at.is_some() => {
                phase = linger_check(phase, plan, sender);
            },
            changed = state.changed(), if watching => match changed {
                Ok(()) => sse::log_state(*state.borrow_and_update()),
                Err(_) => watching = false,
            },
            signal = signals.recv() => {
                debug!(signal, "interrupted; closing");
                drop(receiver);
                tokio::select! {
                    () = close_quickly(sender) => {}
                    _ = signals.recv() => {}
                }
                return Ok(Done::Interrupted(signal));
            }
        }
    }
}

/// Decides, when a lingering deadline passes, whether to close now or wait more: until the
/// send queue has drained and nothing has arrived for one linger period, at most ten linger
/// periods after stdin EOF.
fn linger_check(phase: Phase, plan: Plan, sender: &Sender) -> Phase {
    let Phase::Lingering {
        since,
        mut last_activity,
        ..
    } = phase
    else {
        return phase;
    };
    let now = Instant::now();
    if now >= since + plan.linger * 10 {
        debug!("lingered for the maximum; closing");
        return start_close(sender);
    }
    let check_at = if sender.capacity() < plan.send_buffer {
        // Still sending: the quiet period starts once the queue has drained.
        last_activity = now;
        now + DRAIN_POLL
    } else if now >= last_activity + plan.linger {
        debug!("peer quiet; closing");
        return start_close(sender);
    } else {
        last_activity + plan.linger
    };
    Phase::Lingering {
        since,
        last_activity,
        check_at,
    }
}

/// Starts the graceful close (1000) in the background; the receiver sees the end.
fn start_close(sender: &Sender) -> Phase {
    let sender = sender.clone();
    tokio::spawn(async move {
        // Bounded by the close timeout; the link gives up on its own after it.
        if let Err(e) = sender.close(CloseFrame::NORMAL, "").await {
            debug!(error = %e, "close did not complete");
        }
    });
    Phase::Closing
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A graceful close (1000) that waits at most [`CLOSE_GRACE`].
async fn close_quickly(sender: &Sender) {
    match tokio::time::timeout(CLOSE_GRACE, sender.close(CloseFrame::NORMAL, "")).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "close did not complete"),
        Err(_) => debug!("close did not complete within {CLOSE_GRACE:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Code;

    #[test]
    fn schemes_are_checked() {
        assert_eq!(transport_for(None, "ws://h/"), Ok(TransportKind::Ws));
        assert_eq!(transport_for(None, "WSS://h/"), Ok(TransportKind::Ws));
        assert_eq!(
            transport_for(Some(TransportKind::Ws), "wss://h/"),
            Ok(TransportKind::Ws)
        );
        assert_eq!(transport_for(None, "http://h/"), Ok(TransportKind::Sse));
        assert_eq!(transport_for(None, "HTTPS://h/"), Ok(TransportKind::Sse));
        assert_eq!(
            transport_for(Some(TransportKind::Sse), "https://h/e"),
            Ok(TransportKind::Sse)
        );
        for bad in ["h:80", "ftp://h/", "wt://h/"] {
            assert_eq!(
                transport_for(None, bad).unwrap_err().code,
                Code::Usage,
                "{bad}"
            );
        }
        let err = transport_for(Some(TransportKind::Ws), "https://h/").unwrap_err();
        assert_eq!(err.code, Code::Usage);
        assert!(err.message.contains("ws:// or wss://"), "{err}");
        assert_eq!(
            transport_for(Some(TransportKind::Wt), "https://h:4433/"),
            Ok(TransportKind::Wt)
        );
        let err = transport_for(Some(TransportKind::Wt), "http://h/").unwrap_err();
        assert_eq!(err.code, Code::Usage);
        let err = transport_for(Some(TransportKind::Sse), "ws://h/").unwrap_err();
        assert_eq!(err.code, Code::Usage);
        assert!(err.message.contains("http:// or https://"), "{err}");
    }

    #[test]
    fn keepalive_settings_are_valid() {
        for secs in [0, 1, 20, 30, 100] {
            let interval = Duration::from_secs(secs);
            let mut config = TransportConfig::default();
            config.keepalive(keepalive_interval(interval), dead_peer_timeout(interval));
            config.validate().unwrap();
        }
    }
}
