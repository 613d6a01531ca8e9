//! Server-Sent Events scenario servers on raw tokio TCP: an independent HTTP/1.1 peer for the
//! SSE client, which writes exactly the bytes a test gives it.
//!
//! A server is started with a list of [`Reply`]s: the n-th GET gets the n-th reply (the last
//! one repeats), so successive connections can see different streams (reconnect tests). Every
//! request is recorded ([`SseTestServer::requests`]) with its headers and body, so tests can
//! assert `Last-Event-ID`, `Accept`, custom headers, and what was POSTed. POSTs are answered
//! with the statuses queued by [`SseTestServer::push_post_statuses`], then `204`, after
//! [`SseTestServer::set_post_delay`].
//!
//! ```text
//!  GET  ──▶ reply[n]: status line, headers, body chunks (a pause and a flush between them),
//!           then finish / drop mid-stream / hang
//!  POST ──▶ recorded; answered 204 (or the queued status), connection kept alive
//! ```

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Longest request head read.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body read.
const MAX_BODY: usize = 64 << 20;
/// An idle connection is closed after this long.
const IDLE: Duration = Duration::from_secs(30);

/// How a reply's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`, one HTTP chunk per body chunk.
    Chunked,
    /// No length: the body ends when the connection closes (HTTP/1.0 style).
    Close,
}

/// What happens after a reply's last chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// End the body properly (the final chunk), then close.
    Finish,
    /// Close the connection abruptly: a chunked body is cut short.
    Drop,
    /// Keep the connection open, sending nothing more, until the server is dropped.
    Hang,
}

/// One answer to a GET.
#[derive(Debug, Clone)]
pub struct Reply {
    status: u16,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    chunks: Vec<Vec<u8>>,
    chunk_delay: Duration,
    framing: Framing,
    end: End,
    /// Send nothing at all, not even the status line.
    stall: bool,
}

impl Reply {
    /// `200 OK`, `Content-Type: text/event-stream`, chunked, these body chunks (written with a
    /// 5 ms pause and a flush between them, so they arrive apart), then the body's end.
    pub fn events<I, C>(chunks: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<Vec<u8>>,
    {
        Self {
            status: 200,
            content_type: Some("text/event-stream".to_owned()),
            headers: Vec::new(),
            chunks: chunks.into_iter().map(Into::into).collect(),
            chunk_delay: Duration::from_millis(5),
            framing: Framing::Chunked,
            end: End::Finish,
            stall: false,
        }
    }

    /// This status with an empty body (`Content-Length: 0`).
    pub fn status(status: u16) -> Self {
        Self {
            status,
            content_type: None,
            ..Self::events(Vec::<Vec<u8>>::new())
        }
    }

    /// A redirect with this status to `location` (sent as given).
    pub fn redirect(status: u16, location: &str) -> Self {
        Self::status(status).header("Location", location)
    }

    /// `200 OK` event stream headers, then silence with the connection open.
    pub fn silent() -> Self {
        Self::events(Vec::<Vec<u8>>::new()).then(End::Hang)
    }

    /// Accept the connection, read the request, answer nothing at all.
    pub fn stall() -> Self {
        Self {
            stall: true,
            ..Self::silent()
        }
    }

    /// Replaces the `Content-Type` (`None`: no such header).
    #[must_use]
    pub fn content_type(mut self, content_type: Option<&str>) -> Self {
        self.content_type = content_type.map(str::to_owned);
        self
    }

    /// Adds a response header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the pause between chunks.
    #[must_use]
    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    /// Sets how the body is delimited.
    #[must_use]
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Sets what happens after the last chunk.
    #[must_use]
    pub fn then(mut self, end: End) -> Self {
        self.end = end;
        self
    }
}

/// Splits `bytes` into pieces of `n` bytes (the last may be shorter).
pub fn split_every(bytes: &[u8], n: usize) -> Vec<Vec<u8>> {
    bytes.chunks(n.max(1)).map(<[u8]>::to_vec).collect()
}

/// Splits `bytes` at these offsets (ascending; out-of-range ones are ignored).
pub fn split_at(bytes: &[u8], offsets: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    for &at in offsets {
        if at > start && at < bytes.len() {
            out.push(bytes[start..at].to_vec());
            start = at;
        }
    }
    out.push(bytes[start..].to_vec());
    out
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// Headers in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (POSTs).
    pub body: Vec<u8>,
    /// When its head had been read.
    pub at: Instant,
}

impl RecordedRequest {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Anything a connection can run over: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Wraps each accepted TCP stream (e.g. a TLS handshake) before HTTP is spoken over it.
pub type Acceptor = Arc<
    dyn Fn(TcpStream) -> Pin<Box<dyn Future<Output = io::Result<Box<dyn Io>>> + Send>>
        + Send
        + Sync,
>;

#[derive(Debug, Default)]
struct State {
    replies: Vec<Reply>,
    gets: AtomicUsize,
    accepted: AtomicUsize,
    requests: Mutex<Vec<RecordedRequest>>,
    post_statuses: Mutex<VecDeque<u16>>,
    post_delay: Mutex<Duration>,
    stream_ends: Mutex<Vec<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running SSE scenario server; stops (and drops its connections) when dropped.
#[derive(Debug)]
pub struct SseTestServer {
    addr: SocketAddr,
    tls: bool,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl SseTestServer {
    /// Starts a plain HTTP server on `127.0.0.1:0` answering the n-th GET with `replies[n]`
    /// (the last one repeats; none: 404).
    ///
    /// # Errors
    /// When binding fails.
    pub async fn start(replies: Vec<Reply>) -> io::Result<Self> {
        Self::bind(replies, None).await
    }

    /// As [`start`](Self::start), with every accepted stream wrapped by `acceptor` (a TLS
    /// handshake); [`url`](Self::url) then says `https`.
    ///
    /// # Errors
    /// When binding fails.
    pub async fn start_with(replies: Vec<Reply>, acceptor: Acceptor) -> io::Result<Self> {
        Self::bind(replies, Some(acceptor)).await
    }

    async fn bind(replies: Vec<Reply>, acceptor: Option<Acceptor>) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let tls = acceptor.is_some();
        let state = Arc::new(State {
            replies,
            ..State::default()
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accept = listener.accept() => {
                        let Ok((tcp, _)) = accept else { continue };
                        st.accepted.fetch_add(1, Ordering::Relaxed);
                        let _ = tcp.set_nodelay(true);
                        let (st, acceptor) = (st.clone(), acceptor.clone());
                        connections.spawn(async move {
                            let io: Box<dyn Io> = match acceptor {
                                Some(accept) => match accept(tcp).await {
                                    Ok(io) => io,
                                    Err(_) => return,
                                },
                                None => Box::new(tcp),
                            };
                            serve(io, st).await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Self {
            addr,
            tls,
            state,
            task,
        })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}` (`https` when started with an acceptor).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::Relaxed)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// The GET requests received so far.
    pub fn gets(&self) -> Vec<RecordedRequest> {
        self.with_method("GET")
    }

    /// The POST requests received so far.
    pub fn posts(&self) -> Vec<RecordedRequest> {
        self.with_method("POST")
    }

    fn with_method(&self, method: &str) -> Vec<RecordedRequest> {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.method == method)
            .cloned()
            .collect()
    }

    /// When each GET reply that ended (finished or dropped) had ended, in order.
    pub fn stream_ends(&self) -> Vec<Instant> {
        lock(&self.state.stream_ends).clone()
    }

    /// Queues statuses for the next POSTs (in order); POSTs beyond them get 204.
    pub fn push_post_statuses(&self, statuses: &[u16]) {
        lock(&self.state.post_statuses).extend(statuses);
    }

    /// Delays every answer to a POST by this much (a slow server application).
    pub fn set_post_delay(&self, delay: Duration) {
        *lock(&self.state.post_delay) = delay;
    }

    /// Waits until `pred` holds for the requests received, checking every 10 ms for at most
    /// `timeout`. Whether it held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[RecordedRequest]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&lock(&self.state.requests)) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for SseTestServer {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

/// Serves requests on one connection until it closes, a GET reply ends it, or it idles.
async fn serve(mut io: Box<dyn Io>, state: Arc<State>) {
    let mut buf = Vec::new();
    loop {
        let Ok(Ok(Some(request))) =
            tokio::time::timeout(IDLE, read_request(&mut io, &mut buf)).await
        else {
            return;
        };
        let keep_alive = !request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let method = request.method.clone();
        lock(&state.requests).push(request);
        if method == "POST" {
            let status = lock(&state.post_statuses).pop_front().unwrap_or(204);
            let delay = *lock(&state.post_delay);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\n{}\r\n",
                reason(status),
                if keep_alive {
                    ""
                } else {
                    "Connection: close\r\n"
                }
            );
            if io.write_all(head.as_bytes()).await.is_err() || !keep_alive {
                return;
            }
            continue;
        }
        let n = state.gets.fetch_add(1, Ordering::Relaxed);
        let Some(reply) = state
            .replies
            .get(n)
            .or_else(|| state.replies.last())
            .cloned()
        else {
            let _ = io
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        };
        let _ = write_reply(&mut io, &reply).await;
        match reply.end {
            End::Hang => std::future::pending::<()>().await,
            End::Finish | End::Drop => {
                if reply.end == End::Finish {
                    let _ = io.shutdown().await;
                }
                drop(io);
                lock(&state.stream_ends).push(Instant::now());
                return;
            }
        }
    }
}

async fn write_reply(io: &mut Box<dyn Io>, reply: &Reply) -> io::Result<()> {
    if reply.stall {
        std::future::pending::<()>().await;
    }
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nCache-Control: no-cache\r\nConnection: close\r\n",
        reply.status,
        reason(reply.status)
    );
    if let Some(ct) = &reply.content_type {
        let _ = write!(head, "Content-Type: {ct}\r\n");
    }
    for (name, value) in &reply.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let streaming = reply.status == 200 || !reply.chunks.is_empty();
    match (streaming, reply.framing) {
        (false, _) => head.push_str("Content-Length: 0\r\n"),
        (true, Framing::Chunked) => head.push_str("Transfer-Encoding: chunked\r\n"),
        (true, Framing::Close) => {}
    }
    head.push_str("\r\n");
    io.write_all(head.as_bytes()).await?;
    io.flush().await?;
    if !streaming {
        return Ok(());
    }
    for (i, chunk) in reply.chunks.iter().enumerate() {
        if i > 0 && !reply.chunk_delay.is_zero() {
            tokio::time::sleep(reply.chunk_delay).await;
        }
        if chunk.is_empty() {
            continue;
        }
        match reply.framing {
            Framing::Chunked => {
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(chunk);
                framed.extend_from_slice(b"\r\n");
                io.write_all(&framed).await?;
            }
            Framing::Close => io.write_all(chunk).await?,
        }
        io.flush().await?;
    }
    if reply.end == End::Finish && reply.framing == Framing::Chunked {
        io.write_all(b"0\r\n\r\n").await?;
        io.flush().await?;
    }
    Ok(())
}

/// Reads one request (head and `Content-Length` body). `Ok(None)` at a clean end of stream.
async fn read_request(
    io: &mut Box<dyn Io>,
    buf: &mut Vec<u8>,
) -> io::Result<Option<RecordedRequest>> {
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::other("request head too long"));
        }
        let mut chunk = [0u8; 4096];
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    if length > MAX_BODY {
        return Err(io::Error::other("request body too large"));
    }
    while buf.len() < length {
        let mut chunk = vec![0u8; (length - buf.len()).min(64 * 1024)];
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Vec<u8> = buf.drain(..length).collect();
    Ok(Some(RecordedRequest {
        method,
        path,
        headers,
        body,
        at,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting() {
        assert_eq!(
            split_every(b"abcde", 2),
            vec![b"ab".to_vec(), b"cd".to_vec(), b"e".to_vec()]
        );
        assert_eq!(
            split_at(b"abcde", &[1, 3, 9]),
            vec![b"a".to_vec(), b"bc".to_vec(), b"de".to_vec()]
        );
        assert_eq!(split_at(b"ab", &[0]), vec![b"ab".to_vec()]);
    }

    #[tokio::test]
    async fn serves_replies_in_order_and_records_requests() {
        let server = SseTestServer::start(vec![Reply::events(["data: 1\n\n"]), Reply::status(204)])
            .await
            .unwrap();
        let get = |path: &'static str| {
            let addr = server.addr();
            async move {
                let mut tcp = TcpStream::connect(addr).await.unwrap();
                let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n");
                tcp.write_all(req.as_bytes()).await.unwrap();
                let mut out = Vec::new();
                tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out))
                    .await
                    .unwrap()
                    .unwrap();
                String::from_utf8(out).unwrap()
            }
        };
        let first = get("/a").await;
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
        assert!(first.contains("text/event-stream"));
        assert!(
            first.ends_with("9\r\ndata: 1\n\n\r\n0\r\n\r\n"),
            "{first:?}"
        );
        let second = get("/b").await;
        assert!(
            second.starts_with("HTTP/1.1 204 No Content\r\n"),
            "{second}"
        );
        let third = get("/c").await;
        assert!(third.starts_with("HTTP/1.1 204"), "the last reply repeats");
        let gets = server.gets();
        assert_eq!(gets.len(), 3);
        assert_eq!(gets[1].path, "/b");
        assert_eq!(gets[0].header("last-event-id"), Some("7"));
    }
}
