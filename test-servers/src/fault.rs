//! A fault-injecting proxy for TCP and UDP: everything the adaptive transport must survive,
//! made to happen on demand between a real client and a real server.
//!
//! [`FaultProxy::tcp`] and [`FaultProxy::udp`] listen on `127.0.0.1:0` and forward to one
//! upstream address; [`FaultPair::bind`] puts a TCP and a UDP proxy on the same port number, as
//! the unified server does, so one base URL reaches WebSocket, SSE and WebTransport through it.
//! [`FaultProxy::set`] changes the [`Fault`] at any time and applies it to the flows already
//! open as well as to new ones; [`FaultProxy::sever`] resets every open flow once.
//!
//! Every buffer is bounded: a TCP direction forwards through one 16 KiB buffer; a UDP flow
//! queues at most [`UDP_QUEUE`] delayed datagrams and counts the rest as dropped (a router's
//! queue overflowing). The proxy stops, and drops every flow, when it is dropped.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Datagrams a UDP flow holds for delayed delivery before it drops new ones.
pub const UDP_QUEUE: usize = 1024;

/// How long a UDP flow with no traffic in either direction is kept.
const UDP_FLOW_IDLE: Duration = Duration::from_secs(60);

/// Most UDP flows (client source addresses) tracked at once; datagrams of new flows beyond it
/// are dropped.
const UDP_MAX_FLOWS: usize = 4096;

/// What the proxy does to the traffic it forwards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Forward everything unchanged.
    Pass,
    /// Hold every chunk (TCP) or datagram (UDP) for this long before forwarding it, each way.
    Delay(Duration),
    /// UDP: drop each datagram, each way, with this probability (0.0 to 1.0). TCP: as `Pass`
    /// (TCP's retransmission hides loss; use network namespaces and netem for real TCP loss).
    Loss(f64),
    /// Forward nothing and answer nothing, as a firewall that silently drops: TCP connections
    /// are accepted (the kernel does that) but no byte passes either way until the fault is
    /// lifted; UDP datagrams are discarded.
    Blackhole,
    /// TCP: reset open connections and new ones at once (RST). UDP: forget every flow and drop
    /// datagrams, as a NAT that lost its mappings and a port that refuses.
    Reset,
    /// TCP: forward the request and the response head (up to the blank line that ends it), then
    /// forward nothing more either way, as a proxy that accepts an upgrade and then stalls.
    /// UDP: as `Blackhole`.
    StallAfterUpgrade,
    /// Forward this many bytes per flow (both directions together), then reset (TCP) or drop
    /// everything after (UDP).
    CutAfter(u64),
}

/// Counters of a proxy, read with [`FaultProxy::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// TCP connections accepted, or UDP flows created.
    pub flows: u64,
    /// Bytes forwarded from clients to the upstream.
    pub bytes_up: u64,
    /// Bytes forwarded from the upstream to clients.
    pub bytes_down: u64,
    /// UDP datagrams dropped by a fault or a full queue.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    flows: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    fault: watch::Sender<Fault>,
    /// Bumped by [`FaultProxy::sever`]; every flow watches it and resets when it moves.
    sever: watch::Sender<u64>,
    counters: Counters,
}

/// A running proxy; stops, dropping every flow, when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// A TCP proxy on `127.0.0.1:0` forwarding to `upstream`, starting with [`Fault::Pass`].
    ///
    /// # Errors
    /// When binding fails.
    pub async fn tcp(upstream: SocketAddr) -> io::Result<Self> {
        Self::tcp_on(TcpListener::bind("127.0.0.1:0").await?, upstream)
    }

    /// A UDP proxy on `127.0.0.1:0` forwarding to `upstream`, starting with [`Fault::Pass`].
    ///
    /// # Errors
    /// When binding fails.
    pub async fn udp(upstream: SocketAddr) -> io::Result<Self> {
        Self::udp_on(UdpSocket::bind("127.0.0.1:0").await?, upstream)
    }

    fn tcp_on(listener: TcpListener, upstream: SocketAddr) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = new_shared();
        let task = tokio::spawn(run_tcp(listener, upstream, shared.clone()));
        Ok(Self {
            addr,
            upstream,
            shared,
            task,
        })
    }

    fn udp_on(socket: UdpSocket, upstream: SocketAddr) -> io::Result<Self> {
        let addr = socket.local_addr()?;
        let shared = new_shared();
        let task = tokio::spawn(run_udp(Arc::new(socket), upstream, shared.clone()));
        Ok(Self {
            addr,
            upstream,
            shared,
            task,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address traffic is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Applies `fault` from now on, to open flows and new ones.
    pub fn set(&self, fault: Fault) {
        self.shared.fault.send_replace(fault);
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        *self.shared.fault.borrow()
    }

    /// Resets every open flow once (TCP: RST both ways; UDP: forgets the flows); new flows are
    /// served as the current fault says.
    pub fn sever(&self) {
        self.shared.sever.send_modify(|generation| *generation += 1);
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        let c = &self.shared.counters;
        ProxyStats {
            flows: c.flows.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }
}

/// A TCP and a UDP [`FaultProxy`] on the same port number, in front of a server that listens
/// on one port number for both (WebSocket and SSE over TCP, WebTransport over UDP).
#[derive(Debug)]
pub struct FaultPair {
    /// The TCP proxy (WebSocket, SSE).
    pub tcp: FaultProxy,
    /// The UDP proxy (WebTransport).
    pub udp: FaultProxy,
}

impl FaultPair {
    /// Binds TCP on `127.0.0.1:0`, then UDP on the same port number (a few tries, since another
    /// program may hold that UDP port), forwarding to `tcp_upstream` and `udp_upstream`.
    ///
    /// # Errors
    /// When binding fails, or no port number was free for both within the tries.
    pub async fn bind(tcp_upstream: SocketAddr, udp_upstream: SocketAddr) -> io::Result<Self> {
        let mut last = None;
        for _ in 0..16 {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            match UdpSocket::bind(addr).await {
                Ok(socket) => {
                    return Ok(Self {
                        tcp: FaultProxy::tcp_on(listener, tcp_upstream)?,
                        udp: FaultProxy::udp_on(socket, udp_upstream)?,
                    });
                }
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no port free for TCP and UDP")))
    }

    /// The address both listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr()
    }

    /// Sets the same fault on both.
    pub fn set(&self, fault: Fault) {
        self.tcp.set(fault);
        self.udp.set(fault);
    }
}

fn new_shared() -> Arc<Shared> {
    Arc::new(Shared {
        fault: watch::Sender::new(Fault::Pass),
        sever: watch::Sender::new(0),
        counters: Counters::default(),
    })
}

// ---------------------------------------------------------------------------------------------
// TCP

async fn run_tcp(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut flows = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else {
                    // Out of descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                shared.counters.flows.fetch_add(1, Ordering::Relaxed);
                flows.spawn(tcp_flow(client, upstream, shared.clone()));
            }
            Some(_) = flows.join_next(), if !flows.is_empty() => {}
        }
    }
}

/// Per-connection state both directions share.
#[derive(Debug, Default)]
struct FlowState {
    /// Bytes forwarded both ways, for [`Fault::CutAfter`].
    forwarded: AtomicU64,
    /// Set once the response head has passed under [`Fault::StallAfterUpgrade`].
    stalled: std::sync::atomic::AtomicBool,
}

async fn tcp_flow(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut fault = shared.fault.subscribe();
    let mut sever = shared.sever.subscribe();
    sever.mark_unchanged();
    if *fault.borrow_and_update() == Fault::Reset {
        reset(client);
        return;
    }
    let Ok(backend) = TcpStream::connect(upstream).await else {
        reset(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let state = FlowState::default();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut backend_read, mut backend_write) = backend.into_split();
    let must_reset = {
        let up = pump(
            &mut client_read,
            &mut backend_write,
            true,
            shared.fault.subscribe(),
            &shared,
            &state,
        );
        let down = pump(
            &mut backend_read,
            &mut client_write,
            false,
            shared.fault.subscribe(),
            &shared,
            &state,
        );
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            tokio::select! {
                end = &mut up, if !up_done => {
                    if end == End::Reset { break true; }
                    up_done = true;
                }
                end = &mut down, if !down_done => {
                    if end == End::Reset { break true; }
                    down_done = true;
                }
                _ = sever.changed() => break true,
                () = wait_for_reset(&mut fault) => break true,
            }
            if up_done && down_done {
                break false;
            }
        }
    };
    if must_reset {
        if let Ok(client) = client_read.reunite(client_write) {
            reset(client);
        }
        if let Ok(backend) = backend_read.reunite(backend_write) {
            reset(backend);
        }
    }
}

async fn wait_for_reset(fault: &mut watch::Receiver<Fault>) {
    loop {
        if *fault.borrow_and_update() == Fault::Reset {
            return;
        }
        if fault.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The reading side sent FIN and it was passed on.
    Finished,
    /// The flow must be reset.
    Reset,
}

/// Forwards one direction of a TCP flow under the current fault until FIN or an error.
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    upward: bool,
    mut fault: watch::Receiver<Fault>,
    shared: &Shared,
    state: &FlowState,
) -> End {
    let counter = if upward {
        &shared.counters.bytes_up
    } else {
        &shared.counters.bytes_down
    };
    let mut buf = vec![0_u8; 16 * 1024];
    // The last bytes seen downstream, to find "\r\n\r\n" across reads.
    let mut tail: Vec<u8> = Vec::with_capacity(8);
    loop {
        // Hold off reading while the fault says nothing passes: the data waits in the
        // kernel's buffers and the peers see silence.
        loop {
            let current = *fault.borrow_and_update();
            let stalled =
                state.stalled.load(Ordering::Relaxed) && current == Fault::StallAfterUpgrade;
            if current != Fault::Blackhole && !stalled {
                break;
            }
            if fault.changed().await.is_err() {
                return End::Finished;
            }
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) => {
                    let _ = to.shutdown().await;
                    return End::Finished;
                }
                Ok(n) => n,
                Err(_) => return End::Reset,
            },
            // A fault that starts while this read waits must hold the next bytes back.
            changed = fault.changed() => {
                if changed.is_err() {
                    return End::Finished;
                }
                continue;
            }
        };
        let mut chunk = &buf[..n];
        let mut cut = false;
        let current = *fault.borrow();
        match current {
            Fault::Delay(delay) => tokio::time::sleep(delay).await,
            Fault::CutAfter(limit) => {
                let before = state.forwarded.fetch_add(n as u64, Ordering::Relaxed);
                if before + n as u64 > limit {
                    let allowed = usize::try_from(limit.saturating_sub(before)).unwrap_or(n);
                    chunk = &chunk[..allowed.min(n)];
                    cut = true;
                }
            }
            Fault::StallAfterUpgrade if !upward && !state.stalled.load(Ordering::Relaxed) => {
                if let Some(end) = head_end(&tail, chunk) {
                    chunk = &chunk[..end];
                    state.stalled.store(true, Ordering::Relaxed);
                } else {
                    tail.extend_from_slice(&chunk[chunk.len().saturating_sub(4)..]);
                    let excess = tail.len().saturating_sub(4);
                    tail.drain(..excess);
                }
            }
            _ => {}
        }
        if to.write_all(chunk).await.is_err() {
            return End::Reset;
        }
        counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if cut {
            return End::Reset;
        }
    }
}

/// Where the blank line that ends an HTTP head finishes in `chunk` (an index into `chunk`),
/// given the last bytes of the previous chunks in `tail`.
fn head_end(tail: &[u8], chunk: &[u8]) -> Option<usize> {
    let mut window: Vec<u8> = tail.to_vec();
    window.extend_from_slice(&chunk[..chunk.len().min(4)]);
    if let Some(at) = window.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some((at + 4).saturating_sub(tail.len()));
    }
    chunk
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

fn reset(stream: TcpStream) {
    // SO_LINGER 0: the close sends RST instead of FIN.
    #[allow(deprecated)] // set_zero_linger is not in every tokio 1.x this builds with.
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

// ---------------------------------------------------------------------------------------------
// UDP

#[derive(Debug)]
struct UdpFlow {
    /// Datagrams for the upstream, each with the instant it may leave.
    up: mpsc::Sender<(Instant, Vec<u8>)>,
    last_seen: Instant,
    /// Bytes forwarded both ways, for [`Fault::CutAfter`].
    forwarded: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for UdpFlow {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run_udp(listen: Arc<UdpSocket>, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut flows: HashMap<SocketAddr, UdpFlow> = HashMap::new();
    let mut sever = shared.sever.subscribe();
    let mut buf = vec![0_u8; 65_536];
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        let (n, from) = tokio::select! {
            received = listen.recv_from(&mut buf) => match received {
                Ok(got) => got,
                // ICMP errors surface here on some systems; they concern one datagram.
                Err(_) => continue,
            },
            _ = sever.changed() => {
                flows.clear();
                continue;
            }
            _ = sweep.tick() => {
                flows.retain(|_, flow| flow.last_seen.elapsed() < UDP_FLOW_IDLE);
                continue;
            }
        };
        let fault = *shared.fault.borrow();
        if fault == Fault::Reset {
            flows.clear();
        }
        if !flows.contains_key(&from) {
            if flows.len() >= UDP_MAX_FLOWS || fault == Fault::Reset {
                shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Ok(flow) = new_udp_flow(listen.clone(), from, upstream, shared.clone()).await
            else {
                shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            shared.counters.flows.fetch_add(1, Ordering::Relaxed);
            flows.insert(from, flow);
        }
        let Some(flow) = flows.get_mut(&from) else {
            continue;
        };
        flow.last_seen = Instant::now();
        match udp_verdict(fault, &flow.forwarded, n) {
            Some(delay) => {
                if flow
                    .up
                    .try_send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// `Some(delay)` to forward a datagram of `n` bytes after `delay`, `None` to drop it.
fn udp_verdict(fault: Fault, forwarded: &AtomicU64, n: usize) -> Option<Duration> {
    match fault {
        Fault::Pass => Some(Duration::ZERO),
        Fault::Delay(delay) => Some(delay),
        Fault::Loss(p) => (fastrand::f64() >= p).then_some(Duration::ZERO),
        Fault::Blackhole | Fault::Reset | Fault::StallAfterUpgrade => None,
        Fault::CutAfter(limit) => {
            let before = forwarded.fetch_add(n as u64, Ordering::Relaxed);
            (before + n as u64 <= limit).then_some(Duration::ZERO)
        }
    }
}

async fn new_udp_flow(
    listen: Arc<UdpSocket>,
    client: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
) -> io::Result<UdpFlow> {
    let bind: SocketAddr = if upstream.is_ipv6() {
        "[::1]:0".parse().map_err(io::Error::other)?
    } else {
        "127.0.0.1:0".parse().map_err(io::Error::other)?
    };
    let socket = Arc::new(UdpSocket::bind(bind).await?);
    socket.connect(upstream).await?;
    let (up_tx, up_rx) = mpsc::channel(UDP_QUEUE);
    let forwarded = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(udp_flow(
        listen,
        socket,
        client,
        up_rx,
        shared,
        forwarded.clone(),
    ));
    Ok(UdpFlow {
        up: up_tx,
        last_seen: Instant::now(),
        forwarded,
        task,
    })
}

/// Moves one flow's datagrams: queued ones up to the server when their time comes, and the
/// server's down to the client through a delay queue of its own.
async fn udp_flow(
    listen: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    mut up_rx: mpsc::Receiver<(Instant, Vec<u8>)>,
    shared: Arc<Shared>,
    forwarded: Arc<AtomicU64>,
) {
    let (down_tx, mut down_rx) = mpsc::channel::<(Instant, Vec<u8>)>(UDP_QUEUE);
    let up_socket = socket.clone();
    let up_shared = shared.clone();
    let sender_up = async move {
        while let Some((at, datagram)) = up_rx.recv().await {
            // Only a real delay waits: the timer wheel's millisecond tick would add ~1 ms
            // to every undelayed datagram.
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
            if up_socket.send(&datagram).await.is_ok() {
                up_shared
                    .counters
                    .bytes_up
                    .fetch_add(datagram.len() as u64, Ordering::Relaxed);
            }
        }
    };
    let down_shared = shared.clone();
    let sender_down = async move {
        while let Some((at, datagram)) = down_rx.recv().await {
            // Only a real delay waits: the timer wheel's millisecond tick would add ~1 ms
            // to every undelayed datagram.
            if at > Instant::now() {
                tokio::time::sleep_until(at).await;
            }
            if listen.send_to(&datagram, client).await.is_ok() {
                down_shared
                    .counters
                    .bytes_down
                    .fetch_add(datagram.len() as u64, Ordering::Relaxed);
            }
        }
    };
    let receiver_down = async move {
        let mut buf = vec![0_u8; 65_536];
        loop {
            let Ok(n) = socket.recv(&mut buf).await else {
                // An ICMP port-unreachable from a server that went away: keep the flow, the
                // server may come back on the same port.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let fault = *shared.fault.borrow();
            let verdict = udp_verdict(fault, &forwarded, n);
            let queued = verdict.is_some_and(|delay| {
                down_tx
                    .try_send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_ok()
            });
            if !queued {
                shared.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    tokio::join!(sender_up, sender_down, receiver_down);
}

#[cfg(test)]
mod tests {
    use super::head_end;

    #[test]
    fn head_end_within_a_chunk() {
        assert_eq!(head_end(b"", b"HTTP/1.1 101 OK\r\n\r\nDATA"), Some(19));
        assert_eq!(head_end(b"", b"HTTP/1.1 101 OK\r\n"), None);
    }

    #[test]
    fn head_end_across_chunks() {
        assert_eq!(head_end(b"OK\r\n", b"\r\nDATA"), Some(2));
        assert_eq!(head_end(b"K\r\n\r", b"\nDATA"), Some(1));
    }
}
