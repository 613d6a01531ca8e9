//! The command line: clap definitions and value parsers.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  tcat serve --ws 127.0.0.1:9000
  printf 'a\\nb\\n' | tcat connect ws://127.0.0.1:9000/      # prints a and b, exits 0
  tcat connect --format json --count 1 wss://example.com/feed
  tcat connect -H 'Authorization: Bearer t0k3n' --ca-cert ca.pem wss://localhost:8443/
  tcat serve --sse 127.0.0.1:9001                         # SSE at http://127.0.0.1:9001/events
  tcat connect --format json https://example.com/events   # Server-Sent Events
  tcat serve --wt 127.0.0.1:4433                          # prints cert-sha256 HEX first
  tcat connect --transport wt --cert-hash HEX https://127.0.0.1:4433/   # WebTransport

Exit codes: 0 ok, 1 connection or protocol error, 2 usage, 3 timeout.";

const CONNECT_EXAMPLES: &str = "\
Each stdin line (without its newline and a trailing \\r) is sent as one message; each received
message is printed as one line on stdout, flushed. At stdin EOF tcat waits until the peer has
been quiet for --linger seconds (replies may still be on their way), then closes gracefully
(code 1000), printing messages until the peer completes the close, and exits 0. With --count,
stdin EOF does not close: tcat waits for N messages.

SSE (http://, https://): each event's data is printed (several lines if it has several);
json adds the event type and id. The stream is reconnected when it drops (Last-Event-ID,
retry:); HTTP 204 ends the run with exit 0. stdin lines are POSTed to the server's send URL;
a plain SSE server offers none: stdin is then ignored (with a warning) and its end does not
end the stream.

WebTransport (--transport wt, https:// only; https:// alone means SSE): messages travel on one
stream of the session (docs/protocols/wt.md), or as datagrams with --datagram. At stdin EOF
tcat lingers as for WebSocket, then sends its close and finishes its stream (FIN), prints
every message that still arrives until the peer answers, ends the session and exits 0. The server certificate is
verified against the CA roots (plus --ca-cert), or pinned with --cert-hash (the hash that
`tcat serve --wt` prints); a certificate that fails verification exits 1.

Examples:
  printf 'a\\nb\\n' | tcat connect ws://127.0.0.1:9000/
  tcat connect --count 3 --timeout 10 ws://127.0.0.1:9000/ < /dev/null
  tcat connect --binary --format json ws://127.0.0.1:9000/ < lines.txt
  tcat connect --subprotocol chat.v1 -H 'Origin: https://app.example' wss://example.com/chat
  tcat connect --format json --count 10 https://example.com/events < /dev/null
  tcat connect --transport wt --cert-hash 3f2a... https://127.0.0.1:4433/ < lines.txt
  tcat connect --transport wt --datagram --cert-hash 3f2a... https://127.0.0.1:4433/

Exit codes: 0 ok, 1 connection or protocol error (also a peer close other than 1000),
2 usage, 3 timeout (--timeout or --connect-timeout), 130/143 interrupted by SIGINT/SIGTERM.";

const SERVE_EXAMPLES: &str = "\
Prints `listening ws://ADDR` (or `listening wss://ADDR`, `listening sse http://ADDR/events`,
`listening sse https://ADDR/events`, `listening wt https://ADDR`) on stdout per listener once
ready, with the real port when ADDR ends in :0. SSE clients send through the send URL of their
session (see docs/protocols/sse.md). --wt without --cert/--key generates a self-signed
certificate that browsers accept by hash (serverCertificateHashes) and prints
`cert-sha256 HEX` before the listening lines. WebTransport echo mode echoes raw bytes (streams
and datagrams), so any WebTransport client can test against it; broadcast mode speaks the
message framing of docs/protocols/wt.md. SIGINT or SIGTERM closes every client with code 1001
(WebTransport: the session is closed) and exits 0.

Examples:
  tcat serve --ws 127.0.0.1:0
  tcat serve --ws '[::1]:9000' --mode broadcast
  tcat serve --ws 0.0.0.0:80 --wss 0.0.0.0:443 --cert cert.pem --key key.pem
  tcat serve --ws 127.0.0.1:9000 --sse 127.0.0.1:9001 --mode broadcast
  tcat serve --wt 127.0.0.1:4433
  tcat serve --wt '[::]:443' --cert cert.pem --key key.pem --mode broadcast";

/// netcat for real-time transports: connect to or serve WebSocket, Server-Sent Events and
/// WebTransport.
#[derive(Debug, Parser)]
#[command(name = "tcat", version, after_help = EXAMPLES)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Connect to a server: stdin lines become messages, received messages become stdout lines.
    #[command(after_help = CONNECT_EXAMPLES)]
    Connect(ConnectArgs),
    /// Run an echo or broadcast server.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
}

/// The transports `tcat` speaks. WebTransport (`https://` over HTTP/3) needs `--transport wt`,
/// as `https://` alone selects SSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TransportKind {
    /// WebSocket (`ws://`, `wss://`).
    Ws,
    /// Server-Sent Events (`http://`, `https://`), with the send URL back channel.
    Sse,
    /// WebTransport over HTTP/3 (`https://`; never chosen by the scheme alone).
    Wt,
    /// The adaptive transport: races WebTransport, WebSocket and SSE (`--wt`, `--ws`, `--sse`
    /// URLs, or a BASE_URL that negotiates them), falls back, reconnects and resumes.
    Auto,
}

impl TransportKind {
    /// The transport a URL scheme selects when `--transport` is absent.
    pub(crate) fn for_scheme(scheme: &str) -> Option<Self> {
        match scheme.to_ascii_lowercase().as_str() {
            "ws" | "wss" => Some(Self::Ws),
            "http" | "https" => Some(Self::Sse),
            _ => None,
        }
    }

    /// The URL schemes this transport accepts.
    pub(crate) fn schemes(self) -> &'static [&'static str] {
        match self {
            Self::Ws => &["ws", "wss"],
            Self::Sse => &["http", "https"],
            Self::Wt => &["https"],
            Self::Auto => &["http"],
        }
    }

    /// The name used on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ws => "ws",
            Self::Sse => "sse",
            Self::Wt => "wt",
            Self::Auto => "auto",
        }
    }
}

/// How received messages are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Text as is; binary as is when it is valid UTF-8, else base64.
    Text,
    /// One JSON object per line: `{"type":"text"|"binary","data":...}`, binary data in base64.
    Json,
}

/// What the server does with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Send it back to its sender.
    Echo,
    /// Send it to every connected client, the sender included.
    Broadcast,
}

/// Options of `tcat connect`.
// Independent on/off flags of a command line, not a state machine.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// Transport to use; inferred from the URL scheme when absent (ws://, wss:// -> ws;
    /// http://, https:// -> sse). WebTransport (https://) needs `--transport wt`.
    #[arg(long, value_enum)]
    pub(crate) transport: Option<TransportKind>,

    /// Extra handshake header, e.g. 'Authorization: Bearer x' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub(crate) headers: Vec<(String, String)>,

    /// PEM file with a root CA to trust in addition to the system roots (repeatable).
    /// Certificate verification stays on.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_cert: Vec<PathBuf>,

    /// WebTransport: trust the server certificate whose SHA-256 is HEX (64 hex digits, colons
    /// allowed; repeatable), as a browser's serverCertificateHashes: the certificate must be
    /// ECDSA P-256 and valid for at most 14 days; CA roots are then not consulted.
    #[arg(long = "cert-hash", value_name = "SHA256HEX", value_parser = parse_cert_hash)]
    pub(crate) cert_hashes: Vec<[u8; 32]>,

    /// WebTransport: send and receive messages as datagrams (unreliable, unordered, each
    /// message must fit one datagram, about 1,150 bytes) instead of on a stream.
    #[arg(long)]
    pub(crate) datagram: bool,

    /// Accept any server certificate. DANGEROUS: anyone on the path can impersonate the server.
    #[arg(long)]
    pub(crate) danger_accept_invalid_certs: bool,

    /// Send stdin lines as binary messages instead of text.
    #[arg(long)]
    pub(crate) binary: bool,

    /// Output format of received messages.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,

    /// Exit 0 after N received messages (closing gracefully); stdin EOF does not close before.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,

    /// Deadline for the whole run, connect included (seconds, fractions allowed); exit 3 when it
    /// passes.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) timeout: Option<Duration>,

    /// After stdin EOF, wait until nothing has arrived for SECS before sending the close frame
    /// (at most 10 x SECS): replies to the last lines are still on their way, and a peer stops
    /// sending once it has our close. 0 closes at once.
    #[arg(long, value_name = "SECS", value_parser = parse_secs_or_zero, default_value = "1")]
    pub(crate) linger: Duration,

    /// Deadline for establishing the connection (TCP, proxy, TLS, handshake); exit 3.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "10")]
    pub(crate) connect_timeout: Duration,

    /// Subprotocol to offer in Sec-WebSocket-Protocol (repeatable, in preference order).
    /// WebSocket only.
    #[arg(long = "subprotocol", value_name = "P")]
    pub(crate) subprotocols: Vec<String>,

    /// Largest message sent or received (bytes; suffixes K, M, G / KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "16MiB")]
    pub(crate) max_message_size: usize,

    /// Keepalive ping interval in seconds; 0 turns pings and dead-peer detection off. SSE: a
    /// stream silent for max(30, 1.5 x SECS) seconds is reconnected (0: never).
    #[arg(long, value_name = "SECS", value_parser = parse_secs_or_zero, default_value = "20")]
    pub(crate) keepalive: Duration,

    /// HTTP CONNECT proxy, http://[user:pass@]host[:port]. Default: HTTPS_PROXY / HTTP_PROXY /
    /// ALL_PROXY / NO_PROXY from the environment. WebSocket only.
    #[arg(long, value_name = "URL", conflicts_with = "no_proxy")]
    pub(crate) proxy: Option<String>,

    /// Connect directly, ignoring the proxy environment variables.
    #[arg(long)]
    pub(crate) no_proxy: bool,

    /// --transport auto: the WebTransport endpoint to race (https://HOST:PORT/PATH).
    #[arg(long = "wt", value_name = "URL", requires = "transport")]
    pub(crate) wt_url: Option<String>,

    /// --transport auto: the WebSocket endpoint to race (ws:// or wss://).
    #[arg(long = "ws", value_name = "URL", requires = "transport")]
    pub(crate) ws_url: Option<String>,

    /// --transport auto: the Server-Sent Events endpoint to race (http:// or https://).
    #[arg(long = "sse", value_name = "URL", requires = "transport")]
    pub(crate) sse_url: Option<String>,

    /// At exit, print the connection's statistics on stderr, one line: `stats transport=T
    /// messages_sent=N bytes_sent=N messages_received=N bytes_received=N reconnects=N
    /// rtt_ms=MS|- connected_ms=MS` (rtt `-` when not measured).
    #[arg(long)]
    pub(crate) stats: bool,

    /// URL to connect to: ws:// or wss:// (WebSocket), http:// or https:// (SSE), https://
    /// with --transport wt (WebTransport); with --transport auto, the BASE_URL of a unified
    /// server (`tcat serve --all`), whose negotiation endpoint lists the others.
    #[arg(value_name = "URL", required_unless_present_any = ["wt_url", "ws_url", "sse_url"])]
    pub(crate) url: Option<String>,
}

/// Options of `tcat serve`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("listeners").required(true).multiple(true)
    .args(["ws", "wss", "sse", "sses", "wt", "all"])))]
#[command(group(ArgGroup::new("tls_listeners").multiple(true).args(["wss", "sses", "wt"])))]
pub(crate) struct ServeArgs {
    /// Plain WebSocket listener address, HOST:PORT (port 0 picks a free port; repeatable).
    #[arg(long = "ws", value_name = "ADDR", value_parser = parse_listen_addr)]
    pub(crate) ws: Vec<String>,

    /// TLS WebSocket listener address, HOST:PORT (needs --cert and --key; repeatable).
    #[arg(long = "wss", value_name = "ADDR", value_parser = parse_listen_addr,
          requires_all = ["cert", "key"])]
    pub(crate) wss: Vec<String>,

    /// Server-Sent Events listener address, HOST:PORT: the stream is http://ADDR/events, with
    /// a send URL per session for the way back (port 0 picks a free port; repeatable).
    #[arg(long = "sse", value_name = "ADDR", value_parser = parse_listen_addr)]
    pub(crate) sse: Vec<String>,

    /// TLS Server-Sent Events listener address (https://ADDR/events; needs --cert and --key;
    /// repeatable).
    #[arg(long = "sses", value_name = "ADDR", value_parser = parse_listen_addr,
          requires_all = ["cert", "key"])]
    pub(crate) sses: Vec<String>,

    /// WebTransport listener address, HOST:PORT (UDP): sessions at https://ADDR/ (any path).
    /// Uses --cert and --key when given, else a generated self-signed certificate whose
    /// SHA-256 is printed (`cert-sha256 HEX`) for --cert-hash or serverCertificateHashes
    /// (repeatable).
    #[arg(long = "wt", value_name = "ADDR", value_parser = parse_listen_addr)]
    pub(crate) wt: Vec<String>,

    /// Unified listener address, HOST:PORT, of the adaptive transport (`tcat connect
    /// --transport auto http://ADDR`): WebSocket at ws://ADDR/ws, SSE at http://ADDR/sse and the
    /// negotiation endpoint on TCP, WebTransport at https://ADDR/wt on UDP (same port number),
    /// with a generated self-signed certificate whose hash is printed and negotiated. Clients
    /// that reconnect, over any transport, resume their session without loss (repeatable).
    #[arg(long = "all", value_name = "ADDR", value_parser = parse_listen_addr)]
    pub(crate) all: Vec<String>,

    /// PEM certificate chain for --wss, --sses and --wt.
    #[arg(long, value_name = "PEM", requires = "tls_listeners", requires = "key")]
    pub(crate) cert: Option<PathBuf>,

    /// PEM private key for --wss, --sses and --wt.
    #[arg(
        long,
        value_name = "PEM",
        requires = "tls_listeners",
        requires = "cert"
    )]
    pub(crate) key: Option<PathBuf>,

    /// What to do with each message.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub(crate) mode: Mode,

    /// Subprotocol the server accepts (repeatable, in preference order). WebSocket only.
    #[arg(long = "subprotocol", value_name = "P")]
    pub(crate) subprotocols: Vec<String>,

    /// Largest message accepted or sent (bytes; suffixes K, M, G / KiB, MiB, GiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "64MiB")]
    pub(crate) max_message_size: usize,

    /// Most connections (SSE: sessions) open at once, per listener; more are refused with
    /// HTTP 503.
    #[arg(long, value_name = "N", default_value_t = 65_536, value_parser = parse_positive)]
    pub(crate) max_connections: usize,

    /// Messages queued per client before it counts as slow. In broadcast mode a client whose
    /// queue is full is disconnected (close 1008); in echo mode its sender simply waits.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = parse_queue)]
    pub(crate) queue: usize,

    /// Keepalive ping interval in seconds; 0 turns pings and dead-peer detection off. SSE: a
    /// keepalive comment every SECS on an idle stream.
    #[arg(long, value_name = "SECS", value_parser = parse_secs_or_zero, default_value = "20")]
    pub(crate) keepalive: Duration,

    /// Serve Prometheus metrics at http://ADDR/metrics (HOST:PORT; port 0 picks a free port).
    /// `metrics http://ADDR/metrics` is printed once it is ready. Names: docs/metrics.md.
    #[arg(long, value_name = "ADDR", value_parser = parse_listen_addr)]
    pub(crate) metrics: Option<String>,

    /// Most connections open at once from one IP address (IPv6: one /64), per listener; more
    /// are refused (HTTP 429; WebTransport: refused at the QUIC level). Default: no limit.
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    pub(crate) max_connections_per_ip: Option<usize>,

    /// SSE: how long a session whose event stream dropped waits for its client to reconnect
    /// (and resume with Last-Event-ID) before it ends, in seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "30")]
    pub(crate) session_grace: Duration,

    /// Handshakes (SSE: TCP connections) accepted per second from one IP address, per
    /// listener, with bursts of twice as many; more are refused like over
    /// --max-connections-per-ip. Default: no limit.
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub(crate) handshakes_per_ip: Option<u32>,
}

/// Parses a positive rate that fits a `u32`.
fn parse_rate(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

/// Parses `Name: value` (spaces around the value are trimmed).
fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("expected 'Name: value', got {s:?}"))?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("invalid header name {name:?}"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

/// Parses a SHA-256 hash: 64 hex digits, optionally separated by colons.
fn parse_cert_hash(s: &str) -> Result<[u8; 32], String> {
    let hex: Vec<u8> = s.trim().bytes().filter(|b| *b != b':').collect();
    let bad = || format!("{s:?} is not a SHA-256 hash (64 hex digits)");
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut hash = [0u8; 32];
    for (byte, pair) in hash.iter_mut().zip(hex.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(hash)
}

/// Parses a positive number of seconds (`1`, `0.5`).
fn parse_secs(s: &str) -> Result<Duration, String> {
    let d = parse_secs_or_zero(s)?;
    if d.is_zero() {
        return Err("must be greater than 0".into());
    }
    Ok(d)
}

/// Parses a non-negative number of seconds.
fn parse_secs_or_zero(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a non-negative number of seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Parses a byte count with an optional binary suffix (`1024`, `64K`, `16MiB`, `1G`).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count"))?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        other => return Err(format!("unknown size suffix {other:?} (use K, M or G)")),
    };
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes == 0 {
        return Err("must be at least 1 byte".into());
    }
    Ok(bytes)
}

/// Parses a count of at least 1.
fn parse_positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a positive integer")),
    }
}

/// Parses a queue length: 1 to 65,536 messages.
fn parse_queue(s: &str) -> Result<usize, String> {
    let n = parse_positive(s)?;
    if n > 65_536 {
        return Err("at most 65536 messages".into());
    }
    Ok(n)
}

/// Checks the shape `HOST:PORT` (IPv6 in brackets); resolution happens when binding.
fn parse_listen_addr(s: &str) -> Result<String, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("expected HOST:PORT, got {s:?}"))?;
    port.parse::<u16>()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    if host.is_empty() {
        return Err(format!(
            "missing host in {s:?} (use 0.0.0.0 or [::] for all)"
        ));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("IPv6 addresses go in brackets: [{host}]:{port}"));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_header("Authorization:  Bearer x "),
            Ok(("Authorization".into(), "Bearer x".into()))
        );
        assert_eq!(
            parse_header("X-Empty:"),
            Ok(("X-Empty".into(), String::new()))
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": value").is_err());
        assert!(parse_header("bad name: v").is_err());
    }

    #[test]
    fn cert_hashes() {
        let hex = "00".repeat(31) + "ff";
        let mut expected = [0u8; 32];
        expected[31] = 0xff;
        assert_eq!(parse_cert_hash(&hex), Ok(expected));
        assert_eq!(parse_cert_hash(&hex.to_uppercase()), Ok(expected));
        let colons = hex
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_cert_hash(&colons), Ok(expected));
        assert!(parse_cert_hash("abc").is_err());
        assert!(parse_cert_hash(&"zz".repeat(32)).is_err());
        assert!(parse_cert_hash(&"é".repeat(32)).is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("inf").is_err());
        assert!(parse_secs("soon").is_err());
        assert_eq!(parse_secs_or_zero("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn listen_addrs() {
        assert!(parse_listen_addr("127.0.0.1:0").is_ok());
        assert!(parse_listen_addr("[::1]:9000").is_ok());
        assert!(parse_listen_addr("localhost:80").is_ok());
        assert!(parse_listen_addr("::1:80").is_err());
        assert!(parse_listen_addr(":80").is_err());
        assert!(parse_listen_addr("127.0.0.1").is_err());
        assert!(parse_listen_addr("127.0.0.1:99999").is_err());
    }

    #[test]
    fn schemes_select_transports() {
        assert_eq!(TransportKind::for_scheme("ws"), Some(TransportKind::Ws));
        assert_eq!(TransportKind::for_scheme("WSS"), Some(TransportKind::Ws));
        assert_eq!(TransportKind::for_scheme("http"), Some(TransportKind::Sse));
        assert_eq!(TransportKind::for_scheme("HTTPS"), Some(TransportKind::Sse));
        assert_eq!(TransportKind::for_scheme("ftp"), None);
        assert!(TransportKind::Ws.schemes().contains(&"wss"));
        assert!(TransportKind::Sse.schemes().contains(&"https"));
    }

    #[test]
    fn serve_needs_a_listener_and_wss_needs_cert_and_key() {
        let parse = |args: &[&str]| Cli::try_parse_from(args.iter().copied());
        assert!(parse(&["tcat", "serve"]).is_err());
        assert!(parse(&["tcat", "serve", "--ws", "127.0.0.1:0"]).is_ok());
        assert!(parse(&["tcat", "serve", "--wss", "127.0.0.1:0"]).is_err());
        assert!(parse(&["tcat", "serve", "--wss", "127.0.0.1:0", "--cert", "c"]).is_err());
        assert!(
            parse(&[
                "tcat",
                "serve",
                "--wss",
                "127.0.0.1:0",
                "--cert",
                "c",
                "--key",
                "k"
            ])
            .is_ok()
        );
        assert!(parse(&["tcat", "connect", "--count", "0", "ws://x"]).is_err());
        assert!(parse(&["tcat", "serve", "--sse", "127.0.0.1:0"]).is_ok());
        assert!(
            parse(&[
                "tcat", "serve", "--sse", "a:1", "--sse", "b:2", "--ws", "c:3"
            ])
            .is_ok()
        );
        assert!(parse(&["tcat", "serve", "--sses", "127.0.0.1:0"]).is_err());
        assert!(
            parse(&[
                "tcat",
                "serve",
                "--sses",
                "127.0.0.1:0",
                "--cert",
                "c",
                "--key",
                "k"
            ])
            .is_ok()
        );
        // --cert and --key belong to a TLS listener.
        assert!(
            parse(&[
                "tcat",
                "serve",
                "--sse",
                "127.0.0.1:0",
                "--cert",
                "c",
                "--key",
                "k"
            ])
            .is_err()
        );
        assert!(parse(&["tcat", "connect", "--transport", "sse", "http://x/"]).is_ok());
        assert!(parse(&["tcat", "serve", "--wt", "127.0.0.1:0"]).is_ok());
        assert!(
            parse(&[
                "tcat",
                "serve",
                "--wt",
                "127.0.0.1:0",
                "--cert",
                "c",
                "--key",
                "k"
            ])
            .is_ok()
        );
        assert!(parse(&["tcat", "serve", "--wt", "127.0.0.1:0", "--cert", "c"]).is_err());
        let hash = "ab".repeat(32);
        assert!(
            parse(&[
                "tcat",
                "connect",
                "--transport",
                "wt",
                "--cert-hash",
                &hash,
                "--datagram",
                "https://x/"
            ])
            .is_ok()
        );
        assert!(
            parse(&[
                "tcat",
                "connect",
                "--proxy",
                "http://p",
                "--no-proxy",
                "ws://x"
            ])
            .is_err()
        );
    }
}
