//! HTTP `CONNECT` proxy support: which proxy to use for a target, and the tunnel handshake.
//!
//! The WebSocket client opens its TCP connection through [`connect_tcp`], which asks a
//! [`ProxyConfig`] whether the target goes through a proxy, then connects directly or sends
//! `CONNECT host:port HTTP/1.1` to the proxy and hands back the tunnelled stream. TLS (for
//! `wss://`) and the WebSocket handshake then run inside the tunnel, end to end with the target.
//! Only plain-HTTP proxies are spoken to: TLS to the proxy itself (`https://` proxy URLs) and
//! SOCKS are refused with [`TransportError::Unsupported`].
//!
//! The rules for choosing a proxy are documented on [`ProxyConfig`].

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use transport_core::TransportError;

/// The largest proxy response head (status line and headers) read before giving up with a
/// [`TransportError::ProtocolViolation`]: an answer to `CONNECT` is a few hundred bytes.
pub(crate) const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// [`TransportError::Timeout::operation`] when the proxy path (TCP to the proxy plus the
/// `CONNECT` exchange) runs out of time.
pub(crate) const PROXY_CONNECT_OPERATION: &str = "proxy CONNECT";

/// [`TransportError::Timeout::operation`] when a direct TCP connect runs out of time.
#[cfg(test)]
pub(crate) const CONNECT_OPERATION: &str = "connect";

/// The port of a proxy URL without one.
const DEFAULT_PROXY_PORT: u16 = 80;

/// How the WebSocket client reaches its targets: directly, through a proxy named here, or as
/// the environment says (the default).
///
/// ```
/// # fn main() -> Result<(), transport_core::TransportError> {
/// use transport_ws::ProxyConfig;
///
/// let proxy = ProxyConfig::http("http://proxy.internal:3128")?
///     .with_basic_auth("alice", "s3cret")
///     .with_no_proxy("localhost, .internal, 10.0.0.0/8");
/// assert!(proxy.resolve(true, "api.internal", 443)?.is_none());
/// let chosen = proxy.resolve(true, "example.com", 443)?.expect("not exempt");
/// assert_eq!(chosen.to_string(), "http://proxy.internal:3128");
/// # Ok(())
/// # }
/// ```
///
/// # Which proxy
///
/// [`ProxyConfig::from_env`] (the default) reads the environment, following curl's conventions:
///
/// | target   | variables, first non-empty one wins                                         |
/// |----------|-----------------------------------------------------------------------------|
/// | `wss://` | `https_proxy`, `HTTPS_PROXY`, then `all_proxy`, `ALL_PROXY`                 |
/// | `ws://`  | `http_proxy`, `HTTP_PROXY` (*), then `all_proxy`, `ALL_PROXY`               |
///
/// - The lowercase spelling wins over the uppercase one when both are set (curl does the same);
///   an empty value counts as unset.
/// - (*) `HTTP_PROXY` is ignored when `REQUEST_METHOD` is set: in a CGI program, `HTTP_PROXY`
///   can be set by a request's `Proxy:` header ("httpoxy"). `http_proxy` is still honoured.
/// - A value without a scheme (`proxy:3128`) means `http://`. An unusable value (`https://`,
///   `socks5://`, malformed) is an error naming the variable, never a silent direct connection.
/// - `no_proxy`, else `NO_PROXY`, lists targets reached directly (see below).
///
/// [`ProxyConfig::http`] names a proxy explicitly; the environment is then not read at all (use
/// [`ProxyConfig::with_no_proxy`] to exempt targets). [`ProxyConfig::none`] always connects
/// directly.
///
/// Credentials: user and password in a proxy URL (`http://user:pass@host:port`,
/// percent-encoded) are sent as `Proxy-Authorization: Basic base64(user:pass)`. Credentials set
/// with [`ProxyConfig::with_basic_auth`] replace those of any URL, explicit or from the
/// environment. They are never printed: `Debug` and error messages redact them.
///
/// # `NO_PROXY` syntax
///
/// Entries are separated by commas and/or whitespace, and compared case-insensitively:
///
/// - `*` alone: no target uses the proxy.
/// - A host name, with or without a leading `.` or `*.`: matches that name and its subdomains on
///   a label boundary (`example.com` matches `example.com` and `api.example.com`, not
///   `badexample.com`). Names are not resolved: `localhost` does not match `127.0.0.1`.
/// - An IP address (`127.0.0.1`, `::1`, `[::1]`): matches that literal target address.
/// - A CIDR block (`10.0.0.0/8`, `fd00::/8`): matches literal target addresses inside it.
/// - Any of these with `:port` (`example.com:8080`, `[::1]:8080`) matches that port only.
///
/// An explicit list set with [`ProxyConfig::with_no_proxy`] replaces the environment's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    mode: Mode,
    /// Replaces the credentials of whichever proxy is chosen.
    credentials: Option<Credentials>,
    /// Replaces `NO_PROXY` when set.
    no_proxy: Option<NoProxy>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Mode {
    #[default]
    FromEnv,
    Direct,
    Http(ResolvedProxy),
}

impl ProxyConfig {
    /// Reads `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY` (and their lowercase spellings)
    /// at each connect. This is the default.
    pub fn from_env() -> Self {
        Self::default()
    }

    /// Always connects directly, whatever the environment says.
    pub fn none() -> Self {
        Self {
            mode: Mode::Direct,
            ..Self::default()
        }
    }

    /// Uses the HTTP proxy at `url`, `http://[user:pass@]host[:port]` (port 80 when absent;
    /// user and password percent-encoded; a path is ignored). The environment is not read.
    ///
    /// Fails with [`TransportError::InvalidUrl`] for a malformed URL, and with
    /// [`TransportError::Unsupported`] for `https://` (TLS to the proxy) and other schemes.
    pub fn http(url: &str) -> Result<Self, TransportError> {
        Ok(Self {
            mode: Mode::Http(parse_proxy_url(url, "")?),
            ..Self::default()
        })
    }

    /// Authenticates to the proxy with these credentials (`Proxy-Authorization: Basic`),
    /// replacing any in the proxy URL, explicit or from the environment. No effect with
    /// [`ProxyConfig::none`].
    #[must_use]
    pub fn with_basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// Targets reached directly, in `NO_PROXY` syntax (see the type's docs). Replaces
    /// the environment's `NO_PROXY`; unparsable entries are ignored, as in the environment.
    #[must_use]
    pub fn with_no_proxy(mut self, list: &str) -> Self {
        self.no_proxy = Some(NoProxy::parse(list));
        self
    }

    /// The proxy to use for `host:port` (`tls`: the target is `wss://`), reading the process
    /// environment; `None` means connect directly. See [`ProxyConfig::resolve_with`].
    pub fn resolve(
        &self,
        tls: bool,
        host: &str,
        port: u16,
    ) -> Result<Option<ResolvedProxy>, TransportError> {
        self.resolve_with(tls, host, port, |name| std::env::var(name).ok())
    }

    /// The proxy to use for `host:port` (`tls`: the target is `wss://`; `host` may be an IPv6
    /// literal with or without brackets), reading variables through `env` instead of the
    /// process environment; `None` means connect directly.
    ///
    /// Fails when the chosen proxy URL from the environment is unusable (the error names the
    /// variable); a target exempted by `NO_PROXY` never fails.
    pub fn resolve_with(
        &self,
        tls: bool,
        host: &str,
        port: u16,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ResolvedProxy>, TransportError> {
        let exempt = |list: &NoProxy| list.matches(host, port);
        let mut proxy = match &self.mode {
            Mode::Direct => return Ok(None),
            Mode::Http(proxy) => {
                if self.no_proxy.as_ref().is_some_and(exempt) {
                    return Ok(None);
                }
                proxy.clone()
            }
            Mode::FromEnv => {
                let Some((variable, url)) = env_proxy_url(tls, &env) else {
                    return Ok(None);
                };
                let exempted = match &self.no_proxy {
                    Some(list) => exempt(list),
                    None => exempt(&NoProxy::parse(
                        &first_set(&env, &["no_proxy", "NO_PROXY"]).unwrap_or_default(),
                    )),
                };
                if exempted {
                    return Ok(None);
                }
                parse_proxy_url(&url, &format!(" (from environment variable {variable})"))?
            }
        };
        if let Some(credentials) = &self.credentials {
            proxy.credentials = Some(credentials.clone());
        }
        Ok(Some(proxy))
    }
}

/// A proxy chosen for one target: where it is and how to authenticate to it.
///
/// Displays as `http://host:port` (never with credentials).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedProxy {
    /// Lowercase host name or IP address, without brackets.
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

impl ResolvedProxy {
    /// The proxy's host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether a `Proxy-Authorization` header will be sent.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }
}

impl fmt::Display for ResolvedProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", authority(&self.host, self.port))
    }
}

#[derive(Clone, PartialEq, Eq)]
struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    /// The value of the `Proxy-Authorization` header (RFC 7617).
    fn header_value(&self) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", self.user, self.password))
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Opens the TCP connection for a WebSocket target `target_host:target_port` (`tls`: the
/// target is `wss://`), through the proxy that `config` chooses or directly, with
/// `TCP_NODELAY` set. `timeout` bounds the whole of it (name resolution, TCP, `CONNECT`).
///
/// Errors: see [`connect_through`] and [`connect_direct`]; an unusable proxy setting in the
/// environment fails before any I/O.
///
/// The client does the same in `WsConnector::open`, except that a direct connection gets no
/// timer of its own there: the dial that runs it is bounded by the same `connect_timeout`.
///
/// # Cancel safety
///
/// Dropping the future closes any socket it opened; nothing is half-delivered.
#[cfg(test)]
pub(crate) async fn connect_tcp(
    target_host: &str,
    target_port: u16,
    tls: bool,
    config: &ProxyConfig,
    timeout: Duration,
) -> Result<TcpStream, TransportError> {
    match config.resolve(tls, target_host, target_port)? {
        Some(proxy) => connect_through(&proxy, target_host, target_port, timeout).await,
        None => connect_direct(target_host, target_port, timeout).await,
    }
}

/// Connects to `host:port` directly (`host` may be a bracketed IPv6 literal), with
/// `TCP_NODELAY` set.
///
/// Errors: [`TransportError::ConnectionFailed`] when resolution or connect fails, and
/// [`TransportError::Timeout`] (operation [`CONNECT_OPERATION`]) after `timeout`.
///
/// # Cancel safety
///
/// Dropping the future closes any socket it opened.
#[cfg(test)]
pub(crate) async fn connect_direct(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, TransportError> {
    tokio::time::timeout(timeout, open_direct(host, port))
        .await
        .map_err(|_| TransportError::Timeout {
            operation: CONNECT_OPERATION,
            after: timeout,
        })?
}

/// Connects to `host:port` directly (`host` may be a bracketed IPv6 literal), with
/// `TCP_NODELAY` set, without a deadline of its own: the caller bounds it.
///
/// Errors: [`TransportError::ConnectionFailed`] when resolution or connect fails.
///
/// # Cancel safety
///
/// Dropping the future closes any socket it opened.
pub(crate) async fn open_direct(host: &str, port: u16) -> Result<TcpStream, TransportError> {
    open_tcp(unbracket(host), port, "").await
}

/// Opens a tunnel to `target_host:target_port` through `proxy` with `CONNECT` and returns the
/// stream positioned just after the proxy's response head (nothing of the tunnel is consumed),
/// with `TCP_NODELAY` set.
///
/// Errors:
/// - [`TransportError::InvalidUrl`]: the target host cannot be written in a request.
/// - [`TransportError::ConnectionFailed`]: TCP to the proxy failed, or the proxy closed the
///   connection before answering (retryable).
/// - [`TransportError::HandshakeRejected`] with the proxy's status for any non-2xx answer,
///   so retrying follows [`TransportError::is_retryable`] (5xx yes, 4xx no). `407` means the
///   proxy refused missing or wrong credentials; a `401` is reported as `407` too, since only
///   the proxy can answer before the tunnel stands (tinyproxy 1.11 sends 401 for wrong
///   credentials). tinyproxy answers `500` when it cannot reach the target and `403` for a
///   forbidden port. The status alone cannot tell a proxy's refusal from a server's, but no
///   server status is seen before the tunnel stands: during [`connect_tcp`] every
///   `HandshakeRejected` is the proxy's.
/// - [`TransportError::ProtocolViolation`]: the answer is not HTTP/1.x, or its head exceeds
///   [`MAX_RESPONSE_HEAD`] bytes.
/// - [`TransportError::Timeout`] (operation [`PROXY_CONNECT_OPERATION`]): TCP and the exchange
///   together took longer than `timeout`, e.g. a proxy that accepts but never answers.
///
/// # Cancel safety
///
/// Dropping the future closes the connection to the proxy.
pub(crate) async fn connect_through(
    proxy: &ResolvedProxy,
    target_host: &str,
    target_port: u16,
    timeout: Duration,
) -> Result<TcpStream, TransportError> {
    let target = target_authority(target_host, target_port)?;
    let request = connect_request(&target, proxy.credentials.as_ref());
    tokio::time::timeout(timeout, tunnel(proxy, &request))
        .await
        .map_err(|_| TransportError::Timeout {
            operation: PROXY_CONNECT_OPERATION,
            after: timeout,
        })?
}

async fn tunnel(proxy: &ResolvedProxy, request: &str) -> Result<TcpStream, TransportError> {
    let mut stream = open_tcp(&proxy.host, proxy.port, "proxy ").await?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| TransportError::connection_failed(format!("sending CONNECT to {proxy}"), e))?;
    let head = read_response_head(&mut stream, proxy).await?;
    let status = parse_status(&head, proxy)?;
    match status {
        200..=299 => Ok(stream),
        // No origin server is involved before the tunnel stands, so a 401 can only be the
        // proxy refusing the credentials; tinyproxy 1.11 answers so (its issue #532).
        401 => Err(TransportError::HandshakeRejected { status: 407 }),
        _ => Err(TransportError::HandshakeRejected { status }),
    }
}

/// TCP connect to `host:port` (unbracketed), then `TCP_NODELAY`. `what` prefixes the host in
/// error messages ("proxy " or "").
async fn open_tcp(host: &str, port: u16, what: &str) -> Result<TcpStream, TransportError> {
    let shown = authority(host, port);
    let stream = TcpStream::connect((host, port)).await.map_err(|e| {
        TransportError::connection_failed(format!("cannot connect to {what}{shown}"), e)
    })?;
    stream.set_nodelay(true).map_err(|e| {
        TransportError::connection_failed(format!("setting TCP_NODELAY on {shown}"), e)
    })?;
    Ok(stream)
}

/// Reads the response head up to and including its blank line, never further: bytes are
/// peeked, and only those up to the end of the head are consumed.
async fn read_response_head(
    stream: &mut TcpStream,
    proxy: &ResolvedProxy,
) -> Result<Vec<u8>, TransportError> {
    let failed = |e| {
        TransportError::connection_failed(format!("reading the CONNECT response of {proxy}"), e)
    };
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    loop {
        let peeked = stream.peek(&mut buf).await.map_err(failed)?;
        if peeked == 0 {
            return Err(TransportError::connection_failed(
                format!("{proxy} closed the connection before answering CONNECT"),
                io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        let mut taken = 0;
        let mut complete = false;
        for &byte in &buf[..peeked] {
            head.push(byte);
            taken += 1;
            // A blank line ends the head; a bare LF line ending is tolerated.
            if head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n") {
                complete = true;
                break;
            }
            if head.len() >= MAX_RESPONSE_HEAD {
                break;
            }
        }
        // Consume exactly what was appended: it is already buffered, so this does not wait.
        stream.read_exact(&mut buf[..taken]).await.map_err(failed)?;
        if complete {
            return Ok(head);
        }
        if head.len() >= MAX_RESPONSE_HEAD {
            return Err(TransportError::protocol(format!(
                "the CONNECT response head of {proxy} exceeds {MAX_RESPONSE_HEAD} bytes"
            )));
        }
    }
}

/// The status code of a response head's `HTTP/1.x NNN reason` status line.
fn parse_status(head: &[u8], proxy: &ResolvedProxy) -> Result<u16, TransportError> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let status = line
        .strip_prefix(b"HTTP/1.")
        .and_then(|rest| match rest {
            [minor, b' ', code @ ..] if minor.is_ascii_digit() => Some(code),
            _ => None,
        })
        .and_then(|code| match code {
            [a, b, c] | [a, b, c, b' ', ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
                Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
            }
            _ => None,
        });
    status.ok_or_else(|| {
        let shown = String::from_utf8_lossy(&line[..line.len().min(100)]);
        TransportError::protocol(format!(
            "{proxy} answered CONNECT with a malformed status line {shown:?}"
        ))
    })
}

/// The `CONNECT` request head for `target` (`host:port`, IPv6 in brackets).
fn connect_request(target: &str, credentials: Option<&Credentials>) -> String {
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(credentials) = credentials {
        request.push_str("Proxy-Authorization: ");
        request.push_str(&credentials.header_value());
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

/// `host:port` for the request line, after checking that `host` cannot inject anything.
fn target_authority(host: &str, port: u16) -> Result<String, TransportError> {
    let bare = unbracket(host);
    let valid = if bare.contains(':') {
        bare.parse::<Ipv6Addr>().is_ok()
    } else {
        !bare.is_empty()
            && bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b))
    };
    if valid {
        Ok(authority(bare, port))
    } else {
        Err(TransportError::invalid_url(
            host,
            "the host cannot be sent to a proxy (not a plain host name or IP address)",
        ))
    }
}

/// `host:port`, with an IPv6 `host` in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The address a direct connection to `host:port` reaches when `host` is an IP literal
/// (bracketed or not): no lookup, so no `getpeername` needed to know it.
pub(crate) fn literal_addr(host: &str, port: u16) -> Option<std::net::SocketAddr> {
    unbracket(host)
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| std::net::SocketAddr::new(ip, port))
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// The proxy URL chosen by the environment for a target, with the variable it came from.
fn env_proxy_url(
    tls: bool,
    env: &impl Fn(&str) -> Option<String>,
) -> Option<(&'static str, String)> {
    let specific = if tls {
        first_set_named(env, &["https_proxy", "HTTPS_PROXY"])
    } else if env("REQUEST_METHOD").is_some() {
        // CGI: `HTTP_PROXY` may come from a request's `Proxy:` header (httpoxy).
        first_set_named(env, &["http_proxy"])
    } else {
        first_set_named(env, &["http_proxy", "HTTP_PROXY"])
    };
    specific.or_else(|| first_set_named(env, &["all_proxy", "ALL_PROXY"]))
}

fn first_set_named(
    env: &impl Fn(&str) -> Option<String>,
    names: &[&'static str],
) -> Option<(&'static str, String)> {
    names.iter().find_map(|&name| {
        env(name)
            .filter(|value| !value.trim().is_empty())
            .map(|value| (name, value))
    })
}

fn first_set(env: &impl Fn(&str) -> Option<String>, names: &[&'static str]) -> Option<String> {
    first_set_named(env, names).map(|(_, value)| value)
}

/// Parses `[http://][user[:pass]@]host[:port][/...]`. `origin` is appended to error reasons.
fn parse_proxy_url(url: &str, origin: &str) -> Result<ResolvedProxy, TransportError> {
    let url = url.trim();
    let shown = redact(url);
    let invalid = |reason: &str| TransportError::invalid_url(&shown, format!("{reason}{origin}"));
    let rest = match url.split_once("://") {
        None => url,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err(TransportError::Unsupported(format!(
                "proxy {shown}: HTTPS proxies (TLS to the proxy itself) are not supported, \
                 use an http:// proxy{origin}"
            )));
        }
        Some((scheme, _)) => {
            return Err(TransportError::Unsupported(format!(
                "proxy {shown}: scheme {scheme:?} is not supported, only http:// proxies are{origin}"
            )));
        }
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let credentials = match userinfo.filter(|u| !u.is_empty()) {
        None => None,
        Some(userinfo) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            match (percent_decode(user), percent_decode(password)) {
                (Some(user), Some(password)) => Some(Credentials { user, password }),
                _ => return Err(invalid("credentials are not valid percent-encoded UTF-8")),
            }
        }
    };
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid("unclosed '[' in host"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(invalid("not an IPv6 address between brackets"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(invalid("unexpected text after ']'")),
            },
        }
    } else {
        match host_port.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err(invalid("an IPv6 proxy address must be in brackets"));
            }
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let host_ok = host.contains(':')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    if !host_ok {
        return Err(invalid("missing or malformed proxy host"));
    }
    let port = match port {
        None | Some("") => DEFAULT_PROXY_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
    };
    Ok(ResolvedProxy {
        host: host.to_ascii_lowercase(),
        port,
        credentials,
    })
}

/// The URL with any userinfo replaced by `***`, for error messages.
fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let tail = &rest[at + 1..];
    match scheme {
        Some(scheme) => format!("{scheme}://***@{tail}"),
        None => format!("***@{tail}"),
    }
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    fn hex(digit: u8) -> Option<u8> {
        char::from(digit)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let high = hex(*bytes.get(i + 1)?)?;
            let low = hex(*bytes.get(i + 2)?)?;
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A parsed `NO_PROXY` list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct NoProxy {
    /// `*`: everything goes direct.
    all: bool,
    rules: Vec<NoProxyRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct NoProxyRule {
    pattern: Pattern,
    /// Only this target port, when set.
    port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// Lowercase, without leading `.`/`*.` or trailing `.`.
    Domain(String),
    Ip(IpAddr),
    Cidr(IpAddr, u8),
}

impl NoProxy {
    fn parse(list: &str) -> Self {
        let mut parsed = Self::default();
        for entry in list.split(|c: char| c == ',' || c.is_whitespace()) {
            match entry {
                "" => {}
                "*" => parsed.all = true,
                _ => parsed.rules.extend(NoProxyRule::parse(entry)),
            }
        }
        parsed
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let host = normalize_host(host);
        let ip = host.parse::<IpAddr>().ok().map(canonical_ip);
        self.rules.iter().any(|rule| {
            rule.port.is_none_or(|p| p == port)
                && match (&rule.pattern, ip) {
                    (Pattern::Domain(domain), None) => host
                        .strip_suffix(domain.as_str())
                        .is_some_and(|prefix| prefix.is_empty() || prefix.ends_with('.')),
                    (Pattern::Ip(entry), Some(ip)) => *entry == ip,
                    (Pattern::Cidr(network, prefix), Some(ip)) => in_cidr(ip, *network, *prefix),
                    _ => false,
                }
        })
    }
}

impl NoProxyRule {
    /// `None` for an entry that is not understood (it is then ignored, like curl does).
    fn parse(entry: &str) -> Option<Self> {
        let entry = entry.to_ascii_lowercase();
        let (host, port) = if let Some(bracketed) = entry.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']')?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        } else if entry.matches(':').count() == 1 {
            let (host, port) = entry.split_once(':')?;
            (host, Some(port))
        } else {
            (entry.as_str(), None)
        };
        let port = match port {
            None => None,
            Some(port) => Some(port.parse::<u16>().ok()?),
        };
        let pattern = if let Some((address, prefix)) = host.split_once('/') {
            let address = unbracket(address).parse::<IpAddr>().ok()?;
            let prefix = prefix.parse::<u8>().ok()?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                return None;
            }
            Pattern::Cidr(address, prefix)
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Pattern::Ip(canonical_ip(ip))
        } else {
            let domain = host.strip_prefix("*.").unwrap_or(host);
            let domain = domain.trim_start_matches('.').trim_end_matches('.');
            if domain.is_empty() || domain.contains(['*', '/']) {
                return None;
            }
            Pattern::Domain(domain.to_owned())
        };
        Some(Self { pattern, port })
    }
}

/// Lowercase, unbracketed, without a trailing dot.
fn normalize_host(host: &str) -> String {
    unbracket(host).trim_end_matches('.').to_ascii_lowercase()
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it carries.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn in_cidr(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::future::Future;

    use test_servers::tinyproxy::Tinyproxy;
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn literal_addr_is_the_address_of_an_ip_literal_only() {
        assert_eq!(
            literal_addr("127.0.0.1", 80),
            Some("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            literal_addr("[::1]", 443),
            Some("[::1]:443".parse().unwrap())
        );
        assert_eq!(literal_addr("::1", 443), Some("[::1]:443".parse().unwrap()));
        assert_eq!(literal_addr("localhost", 80), None);
        assert_eq!(literal_addr("fe80::1%eth0", 80), None);
    }

    /// Upper bound for every test that does I/O.
    const TEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// The connect timeout handed to the code under test.
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn proxy(host: &str, port: u16) -> ResolvedProxy {
        ResolvedProxy {
            host: host.to_owned(),
            port,
            credentials: None,
        }
    }

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// Resolves with `ProxyConfig::from_env()` and returns the proxy's `host:port`.
    fn from_env(tls: bool, host: &str, port: u16, vars: &[(&str, &str)]) -> Option<String> {
        ProxyConfig::from_env()
            .resolve_with(tls, host, port, env(vars))
            .expect("usable environment")
            .map(|p| authority(&p.host, p.port))
    }

    // ----- proxy URL parsing -------------------------------------------------------------

    #[test]
    fn parses_proxy_urls() {
        let cases = [
            ("http://proxy", proxy("proxy", 80)),
            ("http://proxy:3128", proxy("proxy", 3128)),
            ("http://proxy:3128/", proxy("proxy", 3128)),
            ("http://proxy:3128/ignored/path?q#f", proxy("proxy", 3128)),
            (
                "HTTP://Proxy.Example.COM:8080",
                proxy("proxy.example.com", 8080),
            ),
            ("http://proxy:", proxy("proxy", 80)),
            ("proxy:3128", proxy("proxy", 3128)),
            ("  http://10.1.2.3:3128  ", proxy("10.1.2.3", 3128)),
            ("http://[::1]:3128", proxy("::1", 3128)),
            ("http://[::1]", proxy("::1", 80)),
            ("http://@proxy:1", proxy("proxy", 1)),
        ];
        for (url, expected) in cases {
            let parsed = parse_proxy_url(url, "").unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(parsed, expected, "{url}");
        }
    }

    #[test]
    fn parses_and_percent_decodes_credentials() {
        let cases = [
            ("http://alice:s3cret@proxy:3128", "alice", "s3cret"),
            ("http://alice@proxy:3128", "alice", ""),
            (
                "http://al%69ce:p%40ss%3Aw%2fd@proxy:3128",
                "alice",
                "p@ss:w/d",
            ),
            ("http://us%C3%A9r:p@ss@proxy:3128", "usér", "p@ss"),
            ("http://:only-password@proxy:3128", "", "only-password"),
        ];
        for (url, user, password) in cases {
            let parsed = parse_proxy_url(url, "").unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(parsed.credentials, Some(creds(user, password)), "{url}");
            assert_eq!(
                (parsed.host.as_str(), parsed.port),
                ("proxy", 3128),
                "{url}"
            );
        }
    }

    #[test]
    fn rejects_malformed_proxy_urls() {
        let cases = [
            ("http://", "missing or malformed proxy host"),
            ("http://:3128", "missing or malformed proxy host"),
            ("http://pro xy:3128", "missing or malformed proxy host"),
            (
                "http://proxy:0",
                "the port must be a number from 1 to 65535",
            ),
            (
                "http://proxy:65536",
                "the port must be a number from 1 to 65535",
            ),
            (
                "http://proxy:+80",
                "the port must be a number from 1 to 65535",
            ),
            (
                "http://proxy:80a",
                "the port must be a number from 1 to 65535",
            ),
            (
                "http://::1:3128",
                "an IPv6 proxy address must be in brackets",
            ),
            ("http://[::1", "unclosed '[' in host"),
            ("http://[proxy]:1", "not an IPv6 address between brackets"),
            ("http://[::1]x", "unexpected text after ']'"),
            (
                "http://a%zz:b@proxy",
                "credentials are not valid percent-encoded UTF-8",
            ),
            (
                "http://a:%ff@proxy",
                "credentials are not valid percent-encoded UTF-8",
            ),
        ];
        for (url, reason) in cases {
            let error = parse_proxy_url(url, "").expect_err(url);
            let shown = redact(url.trim());
            assert_eq!(error, TransportError::invalid_url(shown, reason), "{url}");
        }
    }

    #[test]
    fn refuses_https_and_socks_proxies() {
        for url in [
            "https://proxy:443",
            "HTTPS://proxy",
            "socks5://proxy:1080",
            "socks5h://p",
        ] {
            let error = ProxyConfig::http(url).expect_err(url);
            assert!(
                matches!(&error, TransportError::Unsupported(reason) if reason.contains("proxy")),
                "{url}: {error:?}"
            );
        }
    }

    #[test]
    fn never_shows_the_password() {
        let error = parse_proxy_url("http://alice:hunter2@proxy:0", "").expect_err("port 0");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(error.to_string().contains("***@proxy:0"), "{error}");
        let error = parse_proxy_url("https://alice:hunter2@proxy", "").expect_err("https");
        assert!(!error.to_string().contains("hunter2"), "{error}");

        let config = ProxyConfig::http("http://alice:hunter2@proxy:3128")
            .expect("valid")
            .with_basic_auth("bob", "swordfish");
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("swordfish"),
            "{debug}"
        );
        let resolved = config
            .resolve_with(false, "example.com", 80, env(&[]))
            .expect("explicit")
            .expect("proxied");
        assert_eq!(resolved.to_string(), "http://proxy:3128");
        assert!(!format!("{resolved:?}").contains("swordfish"));
        assert_eq!(redact("http://proxy:3128/a@b"), "http://proxy:3128/a@b");
        assert_eq!(redact("u:p@proxy:1"), "***@proxy:1");
    }

    // ----- environment -------------------------------------------------------------------

    #[test]
    fn env_picks_the_variable_for_the_target_scheme() {
        let vars = [
            ("http_proxy", "http://plain:1"),
            ("https_proxy", "http://secure:2"),
        ];
        assert_eq!(
            from_env(false, "example.com", 80, &vars).as_deref(),
            Some("plain:1")
        );
        assert_eq!(
            from_env(true, "example.com", 443, &vars).as_deref(),
            Some("secure:2")
        );
        // A wss:// target never uses http_proxy, and the reverse.
        assert_eq!(from_env(true, "example.com", 443, &vars[..1]), None);
        assert_eq!(from_env(false, "example.com", 80, &vars[1..]), None);
        assert_eq!(from_env(false, "example.com", 80, &[]), None);
    }

    #[test]
    fn env_lowercase_wins_and_empty_counts_as_unset() {
        let both = [
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:2"),
        ];
        assert_eq!(from_env(true, "h", 443, &both).as_deref(), Some("lower:1"));
        let upper = [("https_proxy", ""), ("HTTPS_PROXY", "http://upper:2")];
        assert_eq!(from_env(true, "h", 443, &upper).as_deref(), Some("upper:2"));
        let both = [
            ("http_proxy", "http://lower:1"),
            ("HTTP_PROXY", "http://upper:2"),
        ];
        assert_eq!(from_env(false, "h", 80, &both).as_deref(), Some("lower:1"));
        let all = [
            ("all_proxy", "http://lower:3"),
            ("ALL_PROXY", "http://upper:4"),
        ];
        assert_eq!(from_env(false, "h", 80, &all).as_deref(), Some("lower:3"));
        assert_eq!(
            from_env(false, "h", 80, &all[1..]).as_deref(),
            Some("upper:4")
        );
    }

    #[test]
    fn env_falls_back_to_all_proxy() {
        let vars = [
            ("ALL_PROXY", "http://all:9"),
            ("https_proxy", "http://secure:2"),
        ];
        assert_eq!(from_env(true, "h", 443, &vars).as_deref(), Some("secure:2"));
        assert_eq!(from_env(false, "h", 80, &vars).as_deref(), Some("all:9"));
        let vars = [("ALL_PROXY", "http://all:9"), ("HTTPS_PROXY", " ")];
        assert_eq!(from_env(true, "h", 443, &vars).as_deref(), Some("all:9"));
    }

    #[test]
    fn env_ignores_uppercase_http_proxy_under_cgi() {
        let cgi = [
            ("REQUEST_METHOD", "GET"),
            ("HTTP_PROXY", "http://attacker:1"),
        ];
        assert_eq!(from_env(false, "h", 80, &cgi), None);
        let cgi = [
            ("REQUEST_METHOD", "GET"),
            ("HTTP_PROXY", "http://attacker:1"),
            ("ALL_PROXY", "http://all:9"),
        ];
        assert_eq!(from_env(false, "h", 80, &cgi).as_deref(), Some("all:9"));
        let cgi = [("REQUEST_METHOD", "GET"), ("http_proxy", "http://mine:1")];
        assert_eq!(from_env(false, "h", 80, &cgi).as_deref(), Some("mine:1"));
        let cgi = [
            ("REQUEST_METHOD", "GET"),
            ("HTTPS_PROXY", "http://secure:2"),
        ];
        assert_eq!(from_env(true, "h", 443, &cgi).as_deref(), Some("secure:2"));
    }

    #[test]
    fn env_no_proxy_exempts_targets() {
        let vars = [
            ("https_proxy", "http://secure:2"),
            ("no_proxy", "internal.example, 10.0.0.0/8"),
            ("NO_PROXY", "*"),
        ];
        assert_eq!(from_env(true, "api.internal.example", 443, &vars), None);
        assert_eq!(from_env(true, "10.9.8.7", 443, &vars), None);
        assert_eq!(
            from_env(true, "example.com", 443, &vars).as_deref(),
            Some("secure:2")
        );
        let upper = [("https_proxy", "http://secure:2"), ("NO_PROXY", "*")];
        assert_eq!(from_env(true, "example.com", 443, &upper), None);
        // An explicit list replaces the environment's.
        let config = ProxyConfig::from_env().with_no_proxy("example.com");
        let resolved = config
            .resolve_with(true, "internal.example", 443, env(&vars))
            .expect("usable");
        assert_eq!(resolved.map(|p| p.port), Some(2));
        let resolved = config
            .resolve_with(true, "example.com", 443, env(&vars))
            .expect("usable");
        assert_eq!(resolved, None);
    }

    #[test]
    fn env_proxy_credentials_and_explicit_override() {
        let vars = [("https_proxy", "http://al%69ce:pw@secure:2")];
        let resolved = ProxyConfig::from_env()
            .resolve_with(true, "h", 443, env(&vars))
            .expect("usable")
            .expect("proxied");
        assert_eq!(resolved.credentials, Some(creds("alice", "pw")));
        assert!(resolved.has_credentials());
        let resolved = ProxyConfig::from_env()
            .with_basic_auth("bob", "other")
            .resolve_with(true, "h", 443, env(&vars))
            .expect("usable")
            .expect("proxied");
        assert_eq!(resolved.credentials, Some(creds("bob", "other")));
    }

    #[test]
    fn unusable_env_proxy_is_an_error_naming_the_variable() {
        let vars = [("HTTPS_PROXY", "socks5://proxy:1080")];
        let error = ProxyConfig::from_env()
            .resolve_with(true, "h", 443, env(&vars))
            .expect_err("socks");
        assert!(
            matches!(&error, TransportError::Unsupported(r) if r.contains("HTTPS_PROXY")),
            "{error:?}"
        );
        let vars = [("all_proxy", "http://proxy:99999")];
        let error = ProxyConfig::from_env()
            .resolve_with(false, "h", 80, env(&vars))
            .expect_err("port");
        assert!(error.to_string().contains("all_proxy"), "{error}");
        // ...unless the target is exempt anyway.
        let vars = [("all_proxy", "http://proxy:99999"), ("no_proxy", "h")];
        let resolved = ProxyConfig::from_env().resolve_with(false, "h", 80, env(&vars));
        assert_eq!(resolved, Ok(None));
    }

    #[test]
    fn explicit_and_none_modes_ignore_the_environment() {
        let vars = [("https_proxy", "http://env:1"), ("no_proxy", "*")];
        let none = ProxyConfig::none().with_basic_auth("u", "p");
        assert_eq!(none.resolve_with(true, "h", 443, env(&vars)), Ok(None));
        let explicit = ProxyConfig::http("http://explicit:3128").expect("valid");
        let resolved = explicit
            .resolve_with(true, "h", 443, env(&vars))
            .expect("explicit")
            .expect("env NO_PROXY is not read");
        assert_eq!((resolved.host(), resolved.port()), ("explicit", 3128));
        assert!(!resolved.has_credentials());
        let exempt = explicit.with_no_proxy("h");
        assert_eq!(exempt.resolve_with(true, "h", 443, env(&[])), Ok(None));
        assert_eq!(ProxyConfig::default(), ProxyConfig::from_env());
    }

    // ----- NO_PROXY ----------------------------------------------------------------------

    #[test]
    fn no_proxy_matching() {
        // (list, host, port, exempt)
        let cases: &[(&str, &str, u16, bool)] = &[
            ("", "example.com", 80, false),
            ("*", "example.com", 80, true),
            ("*", "[::1]", 80, true),
            ("foo, *", "example.com", 80, true),
            // Domains: suffix on a label boundary, any spelling of the leading dot.
            ("example.com", "example.com", 80, true),
            ("example.com", "api.example.com", 80, true),
            ("example.com", "a.b.example.com", 80, true),
            ("example.com", "badexample.com", 80, false),
            ("example.com", "example.com.evil", 80, false),
            (".example.com", "example.com", 80, true),
            (".example.com", "api.example.com", 80, true),
            ("*.example.com", "api.example.com", 80, true),
            ("EXAMPLE.com", "Api.Example.COM", 80, true),
            ("example.com.", "api.example.com.", 80, true),
            ("localhost", "localhost", 80, true),
            ("localhost", "127.0.0.1", 80, false),
            ("com", "example.com", 80, true),
            // Separators: commas and/or whitespace.
            ("a.test,b.test", "b.test", 80, true),
            ("a.test b.test", "b.test", 80, true),
            (" a.test ,\tb.test ,, ", "b.test", 80, true),
            ("a.test,b.test", "c.test", 80, false),
            // IP addresses are literal.
            ("127.0.0.1", "127.0.0.1", 80, true),
            ("127.0.0.1", "127.0.0.2", 80, false),
            ("127.0.0.1", "localhost", 80, false),
            ("::1", "::1", 80, true),
            ("::1", "[::1]", 80, true),
            ("[::1]", "[::1]", 80, true),
            ("::1", "[0:0:0:0:0:0:0:1]", 80, true),
            ("::1", "::2", 80, false),
            ("10.0.0.1", "::ffff:10.0.0.1", 80, true),
            ("0.0.1", "10.0.0.1", 80, false),
            // CIDR blocks, both families.
            ("10.0.0.0/8", "10.255.1.2", 80, true),
            ("10.0.0.0/8", "11.0.0.1", 80, false),
            ("192.168.1.0/24", "192.168.1.200", 80, true),
            ("192.168.1.0/24", "192.168.2.1", 80, false),
            ("192.168.1.7/32", "192.168.1.7", 80, true),
            ("192.168.1.7/32", "192.168.1.8", 80, false),
            ("0.0.0.0/0", "8.8.8.8", 80, true),
            ("0.0.0.0/0", "::1", 80, false),
            ("10.0.0.0/8", "10.example.com", 80, false),
            ("fd00::/8", "fd12:3456::1", 80, true),
            ("fd00::/8", "[fd12:3456::1]", 80, true),
            ("fd00::/8", "fe80::1", 80, false),
            ("2001:db8::/32", "2001:db8:ffff::1", 443, true),
            ("2001:db8::/32", "2001:db9::1", 443, false),
            ("::/0", "::1", 80, true),
            ("::1/128", "::1", 80, true),
            // Ports.
            ("example.com:8080", "example.com", 8080, true),
            ("example.com:8080", "example.com", 80, false),
            ("example.com:8080", "api.example.com", 8080, true),
            ("127.0.0.1:9000", "127.0.0.1", 9000, true),
            ("127.0.0.1:9000", "127.0.0.1", 9001, false),
            ("[::1]:9000", "::1", 9000, true),
            ("[::1]:9000", "[::1]", 9001, false),
            ("10.0.0.0/8:443", "10.1.1.1", 443, true),
            ("10.0.0.0/8:443", "10.1.1.1", 80, false),
            // Unparsable entries are ignored, the rest still applies.
            ("10.0.0.0/33, ok.test", "10.0.0.1", 80, false),
            ("10.0.0.0/33, ok.test", "ok.test", 80, true),
            ("example.com:http", "example.com", 80, false),
            ("[::1, .", "::1", 80, false),
            ("fd00::/129", "fd00::1", 80, false),
        ];
        for &(list, host, port, exempt) in cases {
            assert_eq!(
                NoProxy::parse(list).matches(host, port),
                exempt,
                "NO_PROXY={list:?} target={host}:{port}"
            );
        }
    }

    // ----- request and response heads ----------------------------------------------------

    #[test]
    fn formats_connect_requests() {
        let target = |host, port| target_authority(host, port).expect("valid host");
        assert_eq!(
            connect_request(&target("example.com", 443), None),
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        );
        assert_eq!(
            connect_request(&target("::1", 8080), None),
            "CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"
        );
        assert_eq!(target("[::1]", 1), "[::1]:1");
        assert_eq!(target("127.0.0.1", 1), "127.0.0.1:1");
        // RFC 7617's example.
        assert_eq!(
            connect_request(&target("h", 1), Some(&creds("Aladdin", "open sesame"))),
            "CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\n\
             Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
        );
    }

    #[test]
    fn refuses_target_hosts_that_would_inject() {
        for host in [
            "",
            "a b",
            "h\r\nX-Evil: 1",
            "h/x",
            "u@h",
            "[::1",
            "::g",
            "hé",
        ] {
            let error = target_authority(host, 80).expect_err(host);
            assert!(
                matches!(error, TransportError::InvalidUrl { .. }),
                "{host:?}"
            );
        }
    }

    #[test]
    fn parses_status_lines() {
        let p = proxy("p", 1);
        let ok = [
            ("HTTP/1.1 200 Connection established\r\n\r\n", 200),
            ("HTTP/1.0 200 OK\r\nProxy-agent: x\r\n\r\n", 200),
            ("HTTP/1.1 204\r\n\r\n", 204),
            ("HTTP/1.1 407 Proxy Authentication Required\n\n", 407),
            ("HTTP/1.0 401 Unauthorized\r\n\r\n", 401),
            ("HTTP/1.1 502 \r\n\r\n", 502),
        ];
        for (head, status) in ok {
            assert_eq!(parse_status(head.as_bytes(), &p), Ok(status), "{head:?}");
        }
        let bad = [
            "HTTP/2 200\r\n\r\n",
            "HTTP/1.1 20\r\n\r\n",
            "HTTP/1.1 2000\r\n\r\n",
            "HTTP/1.1  200\r\n\r\n",
            "http/1.1 200\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
            "\r\n\r\n",
        ];
        for head in bad {
            let error = parse_status(head.as_bytes(), &p).expect_err(head);
            assert!(
                matches!(error, TransportError::ProtocolViolation { .. }),
                "{head:?}"
            );
        }
    }

    // ----- over real sockets -------------------------------------------------------------

    async fn bounded<T>(test: impl Future<Output = T>) -> T {
        tokio::time::timeout(TEST_TIMEOUT, test)
            .await
            .expect("test exceeded its time bound")
    }

    async fn start_tinyproxy(auth: Option<(&'static str, &'static str)>) -> Tinyproxy {
        tokio::task::spawn_blocking(move || Tinyproxy::start(auth))
            .await
            .expect("start task")
            .expect("tinyproxy starts (is it installed? `apt-get install tinyproxy`)")
    }

    /// A TCP echo server on 127.0.0.1:0 serving any number of connections.
    async fn echo_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut reader, mut writer) = stream.split();
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                });
            }
        });
        port
    }

    /// A fake proxy: reads one request head, hands it to the test, then runs `answer`.
    async fn fake_proxy<F, Fut>(answer: F) -> (ResolvedProxy, tokio::task::JoinHandle<String>)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read_u8().await {
                    Ok(byte) => request.push(byte),
                    Err(_) => break,
                }
            }
            answer(stream).await;
            String::from_utf8_lossy(&request).into_owned()
        });
        (proxy("127.0.0.1", port), task)
    }

    async fn assert_echoes(stream: &mut TcpStream, payload: &[u8]) {
        stream
            .write_all(payload)
            .await
            .expect("write through tunnel");
        let mut echoed = vec![0; payload.len()];
        stream
            .read_exact(&mut echoed)
            .await
            .expect("read through tunnel");
        assert_eq!(echoed, payload);
    }

    #[tokio::test]
    async fn tunnels_through_tinyproxy() {
        bounded(async {
            let tinyproxy = start_tinyproxy(None).await;
            let echo_port = echo_server().await;
            let config = ProxyConfig::http(&tinyproxy.url()).expect("tinyproxy url");
            let mut stream = connect_tcp("127.0.0.1", echo_port, false, &config, CONNECT_TIMEOUT)
                .await
                .expect("tunnel through tinyproxy");
            assert!(stream.nodelay().expect("nodelay"));
            assert_eq!(stream.peer_addr().expect("peer"), tinyproxy.addr());
            assert_echoes(&mut stream, b"hello through the proxy").await;
            assert_echoes(&mut stream, &[0, 255, 13, 10, 13, 10]).await;
            let request_line = format!("CONNECT 127.0.0.1:{echo_port} HTTP/1.1");
            assert!(tinyproxy.log().expect("log").contains(&request_line));
        })
        .await;
    }

    #[tokio::test]
    async fn tinyproxy_basic_auth() {
        bounded(async {
            let tinyproxy = start_tinyproxy(Some(("alice", "s3cret"))).await;
            let echo_port = echo_server().await;
            let url = tinyproxy.url();
            let with_creds = ProxyConfig::http(&url.replace("http://", "http://alice:s3cret@"))
                .expect("url with credentials");
            let mut stream =
                connect_tcp("127.0.0.1", echo_port, true, &with_creds, CONNECT_TIMEOUT)
                    .await
                    .expect("good credentials");
            assert_echoes(&mut stream, b"authenticated").await;

            let explicit = ProxyConfig::http(&url)
                .expect("url")
                .with_basic_auth("alice", "s3cret");
            let mut stream = connect_tcp("127.0.0.1", echo_port, true, &explicit, CONNECT_TIMEOUT)
                .await
                .expect("good explicit credentials");
            assert_echoes(&mut stream, b"explicit").await;

            let rejected = TransportError::HandshakeRejected { status: 407 };
            let missing = ProxyConfig::http(&url).expect("url");
            let wrong = ProxyConfig::http(&url)
                .expect("url")
                .with_basic_auth("alice", "wrong");
            for config in [missing, wrong] {
                let error = connect_tcp("127.0.0.1", echo_port, true, &config, CONNECT_TIMEOUT)
                    .await
                    .expect_err("no or wrong credentials");
                assert_eq!(error, rejected);
                assert!(!error.is_retryable());
            }
        })
        .await;
    }

    #[tokio::test]
    async fn tinyproxy_unreachable_target_is_a_retryable_rejection() {
        bounded(async {
            let tinyproxy = start_tinyproxy(None).await;
            let closed_port = closed_port().await;
            let config = ProxyConfig::http(&tinyproxy.url()).expect("url");
            let error = connect_tcp("127.0.0.1", closed_port, false, &config, CONNECT_TIMEOUT)
                .await
                .expect_err("nothing listens there");
            assert_eq!(error, TransportError::HandshakeRejected { status: 500 });
            assert!(error.is_retryable());
        })
        .await;
    }

    #[tokio::test]
    async fn no_proxy_and_none_connect_directly() {
        bounded(async {
            let tinyproxy = start_tinyproxy(None).await;
            let echo_port = echo_server().await;
            let exempt = ProxyConfig::http(&tinyproxy.url())
                .expect("url")
                .with_no_proxy("localhost, 127.0.0.0/8");
            for config in [exempt, ProxyConfig::none()] {
                let mut stream =
                    connect_tcp("127.0.0.1", echo_port, false, &config, CONNECT_TIMEOUT)
                        .await
                        .expect("direct");
                assert!(stream.nodelay().expect("nodelay"));
                assert_eq!(stream.peer_addr().expect("peer").port(), echo_port);
                assert_echoes(&mut stream, b"direct").await;
            }
            let request_line = format!("CONNECT 127.0.0.1:{echo_port} ");
            assert!(!tinyproxy.log().expect("log").contains(&request_line));
        })
        .await;
    }

    #[tokio::test]
    async fn keeps_tunnel_bytes_sent_with_the_response_head() {
        bounded(async {
            let (proxy, request) = fake_proxy(|mut stream| async move {
                let answer = b"HTTP/1.1 200 Connection established\r\nVia: fake\r\n\r\nEARLY";
                stream.write_all(answer).await.expect("answer");
                let mut rest = [0; 4];
                stream.read_exact(&mut rest).await.expect("client bytes");
                stream.write_all(&rest).await.expect("echo");
            })
            .await;
            let proxy = ResolvedProxy {
                credentials: Some(creds("Aladdin", "open sesame")),
                ..proxy
            };
            let mut stream = connect_through(&proxy, "::1", 9, CONNECT_TIMEOUT)
                .await
                .expect("200");
            let mut early = [0; 5];
            stream.read_exact(&mut early).await.expect("tunnel bytes");
            assert_eq!(&early, b"EARLY");
            assert_echoes(&mut stream, b"ping").await;
            assert_eq!(
                request.await.expect("fake proxy"),
                "CONNECT [::1]:9 HTTP/1.1\r\nHost: [::1]:9\r\n\
                 Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn silent_proxy_times_out() {
        bounded(async {
            let (proxy, _request) = fake_proxy(|stream| async move {
                tokio::time::sleep(TEST_TIMEOUT).await;
                drop(stream);
            })
            .await;
            let after = Duration::from_millis(300);
            let error = connect_through(&proxy, "example.com", 443, after)
                .await
                .expect_err("silent");
            assert_eq!(
                error,
                TransportError::Timeout {
                    operation: PROXY_CONNECT_OPERATION,
                    after
                }
            );
            assert!(error.is_retryable());
        })
        .await;
    }

    #[tokio::test]
    async fn oversized_response_head_is_a_protocol_error() {
        bounded(async {
            let (proxy, _request) = fake_proxy(|mut stream| async move {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
                let filler = format!("X-Filler: {}\r\n", "a".repeat(100));
                // Endless headers: only the client's cap ends this.
                while stream.write_all(filler.as_bytes()).await.is_ok() {}
            })
            .await;
            let error = connect_through(&proxy, "example.com", 443, CONNECT_TIMEOUT)
                .await
                .expect_err("oversized");
            assert_eq!(
                error,
                TransportError::protocol(format!(
                    "the CONNECT response head of {proxy} exceeds {MAX_RESPONSE_HEAD} bytes"
                ))
            );
        })
        .await;
    }

    #[tokio::test]
    async fn malformed_or_missing_answers() {
        bounded(async {
            let (proxy, _request) = fake_proxy(|mut stream| async move {
                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
            })
            .await;
            let error = connect_through(&proxy, "example.com", 443, CONNECT_TIMEOUT)
                .await
                .expect_err("not HTTP");
            assert!(
                matches!(error, TransportError::ProtocolViolation { .. }),
                "{error:?}"
            );

            let (proxy, _request) = fake_proxy(|stream| async move { drop(stream) }).await;
            let error = connect_through(&proxy, "example.com", 443, CONNECT_TIMEOUT)
                .await
                .expect_err("closed");
            assert!(
                matches!(&error, TransportError::ConnectionFailed { source: Some(s), .. }
                    if s.kind() == io::ErrorKind::UnexpectedEof),
                "{error:?}"
            );

            let (proxy, _request) = fake_proxy(|mut stream| async move {
                let _ = stream.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
            })
            .await;
            let error = connect_through(&proxy, "example.com", 25, CONNECT_TIMEOUT)
                .await
                .expect_err("forbidden");
            assert_eq!(error, TransportError::HandshakeRejected { status: 403 });
        })
        .await;
    }

    /// A port on 127.0.0.1 where nothing listens (bound by the OS, then released).
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").port()
    }

    #[tokio::test]
    async fn refused_proxy_is_connection_failed() {
        bounded(async {
            let proxy = proxy("127.0.0.1", closed_port().await);
            let error = connect_through(&proxy, "example.com", 443, CONNECT_TIMEOUT)
                .await
                .expect_err("refused");
            assert!(
                matches!(&error, TransportError::ConnectionFailed { source: Some(s), .. }
                    if s.kind() == io::ErrorKind::ConnectionRefused),
                "{error:?}"
            );
            assert!(error.is_retryable());
            let error = connect_direct("127.0.0.1", proxy.port, CONNECT_TIMEOUT)
                .await
                .expect_err("refused");
            assert!(
                matches!(error, TransportError::ConnectionFailed { .. }),
                "{error:?}"
            );
        })
        .await;
    }
}
