//! The fault proxy against real TCP and UDP echo servers on loopback.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use test_servers::fault::{Fault, FaultPair, FaultProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// A TCP server that first writes `greeting`, then echoes; aborted on drop.
struct TcpEcho {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tcp_echo(greeting: &'static [u8]) -> TcpEcho {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if tcp.write_all(greeting).await.is_err() {
                    return;
                }
                let mut buf = [0_u8; 4096];
                while let Ok(n) = tcp.read(&mut buf).await {
                    if n == 0 || tcp.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    TcpEcho { addr, task }
}

/// A UDP echo server; aborted on drop.
struct UdpEcho {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn udp_echo_on(socket: UdpSocket) -> UdpEcho {
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0_u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    UdpEcho { addr, task }
}

async fn udp_echo() -> UdpEcho {
    udp_echo_on(UdpSocket::bind("127.0.0.1:0").await.unwrap())
}

async fn read_exact(tcp: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0_u8; n];
    timeout(WAIT, tcp.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf
}

/// Reads for [`QUIET`]; returns what arrived (`Err` if the connection failed).
async fn read_quiet(tcp: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0_u8; 1024];
    let deadline = tokio::time::Instant::now() + QUIET;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) | Ok(Ok(0)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(err)) => return Err(err),
        }
    }
}

#[tokio::test]
async fn tcp_pass_forwards_both_ways_and_counts() {
    let echo = tcp_echo(b"hi").await;
    let proxy = FaultProxy::tcp(echo.addr).await.unwrap();
    let mut tcp = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(read_exact(&mut tcp, 2).await, b"hi");
    tcp.write_all(b"ping").await.unwrap();
    assert_eq!(read_exact(&mut tcp, 4).await, b"ping");
    let stats = proxy.stats();
    assert_eq!(stats.flows, 1);
    assert_eq!(stats.bytes_up, 4);
    assert_eq!(stats.bytes_down, 6);
}

#[tokio::test]
async fn tcp_blackhole_holds_bytes_until_lifted() {
    let echo = tcp_echo(b"").await;
    let proxy = FaultProxy::tcp(echo.addr).await.unwrap();
    let mut tcp = TcpStream::connect(proxy.local_addr()).await.unwrap();
    tcp.write_all(b"a").await.unwrap();
    assert_eq!(read_exact(&mut tcp, 1).await, b"a");
    proxy.set(Fault::Blackhole);
    tcp.write_all(b"b").await.unwrap();
    assert_eq!(read_quiet(&mut tcp).await.unwrap(), b"");
    proxy.set(Fault::Pass);
    assert_eq!(read_exact(&mut tcp, 1).await, b"b");
}

#[tokio::test]
async fn tcp_reset_resets_open_and_new_connections() {
    let echo = tcp_echo(b"").await;
    let proxy = FaultProxy::tcp(echo.addr).await.unwrap();
    let mut open = TcpStream::connect(proxy.local_addr()).await.unwrap();
    open.write_all(b"x").await.unwrap();
    assert_eq!(read_exact(&mut open, 1).await, b"x");
    proxy.set(Fault::Reset);
    let err = timeout(WAIT, open.read(&mut [0_u8; 8]))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);

    let mut fresh = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let read = timeout(WAIT, fresh.read(&mut [0_u8; 8])).await.unwrap();
    assert!(read.is_err(), "a new connection is reset: {read:?}");
}

#[tokio::test]
async fn tcp_stall_after_upgrade_passes_the_head_only() {
    let echo =
        tcp_echo(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nFRAME").await;
    let proxy = FaultProxy::tcp(echo.addr).await.unwrap();
    proxy.set(Fault::StallAfterUpgrade);
    let mut tcp = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let got = read_quiet(&mut tcp).await.unwrap();
    assert!(
        got.ends_with(b"\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    tcp.write_all(b"more").await.unwrap();
    assert_eq!(
        read_quiet(&mut tcp).await.unwrap(),
        b"",
        "nothing passes after the head"
    );
}

#[tokio::test]
async fn tcp_cut_after_n_bytes_then_reset() {
    let echo = tcp_echo(b"").await;
    let proxy = FaultProxy::tcp(echo.addr).await.unwrap();
    proxy.set(Fault::CutAfter(10));
    let mut tcp = TcpStream::connect(proxy.local_addr()).await.unwrap();
    tcp.write_all(b"12345").await.unwrap();
    assert_eq!(read_exact(&mut tcp, 5).await, b"12345");
    tcp.write_all(b"abcdefgh").await.unwrap();
    // 10 bytes in all: nothing of the second write may come back, and the flow ends.
    let mut buf = [0_u8; 16];
    let end = timeout(WAIT, tcp.read(&mut buf)).await.unwrap();
    assert!(matches!(end, Ok(0) | Err(_)), "{end:?}");
    assert!(proxy.stats().bytes_up + proxy.stats().bytes_down <= 10);
}

#[tokio::test]
async fn tcp_sever_resets_open_flows_only() {
    let echo = tcp_echo(b"").await;
    let proxy = FaultProxy::tcp(echo.addr).await.unwrap();
    let mut open = TcpStream::connect(proxy.local_addr()).await.unwrap();
    open.write_all(b"x").await.unwrap();
    assert_eq!(read_exact(&mut open, 1).await, b"x");
    proxy.sever();
    let read = timeout(WAIT, open.read(&mut [0_u8; 8])).await.unwrap();
    assert!(read.is_err(), "{read:?}");
    let mut fresh = TcpStream::connect(proxy.local_addr()).await.unwrap();
    fresh.write_all(b"y").await.unwrap();
    assert_eq!(read_exact(&mut fresh, 1).await, b"y");
}

#[tokio::test]
async fn tcp_delay_holds_each_chunk() {
    let echo = tcp_echo(b"").await;
    let proxy = FaultProxy::tcp(echo.addr).await.unwrap();
    proxy.set(Fault::Delay(Duration::from_millis(100)));
    let mut tcp = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let started = Instant::now();
    tcp.write_all(b"d").await.unwrap();
    assert_eq!(read_exact(&mut tcp, 1).await, b"d");
    // Delayed once up and once down.
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

async fn udp_round_trips(proxy: &FaultProxy, count: u32) -> u32 {
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(proxy.local_addr()).await.unwrap();
    // Replies are read while sending goes on: a socket buffer holds only a few hundred
    // small datagrams, and its overflow must not pass for the proxy's loss.
    let send = async {
        for i in 0..count {
            client.send(&i.to_be_bytes()).await.unwrap();
            if i % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let receive = async {
        let mut got = 0;
        let mut buf = [0_u8; 64];
        while let Ok(Ok(_)) = timeout(QUIET, client.recv(&mut buf)).await {
            got += 1;
            if got == count {
                break;
            }
        }
        got
    };
    tokio::join!(send, receive).1
}

#[tokio::test]
async fn udp_pass_loss_and_blackhole() {
    let echo = udp_echo().await;
    let proxy = FaultProxy::udp(echo.addr).await.unwrap();
    assert_eq!(udp_round_trips(&proxy, 200).await, 200);

    // 30% each way: about 49% of round trips survive.
    proxy.set(Fault::Loss(0.3));
    let survived = udp_round_trips(&proxy, 1000).await;
    assert!(
        (350..650).contains(&survived),
        "{survived} of 1000 survived 30% loss each way"
    );
    assert!(proxy.stats().dropped > 0);

    proxy.set(Fault::Blackhole);
    assert_eq!(udp_round_trips(&proxy, 20).await, 0);
    proxy.set(Fault::Pass);
    assert_eq!(udp_round_trips(&proxy, 20).await, 20);
}

#[tokio::test]
async fn udp_delay_and_cut() {
    let echo = udp_echo().await;
    let proxy = FaultProxy::udp(echo.addr).await.unwrap();
    proxy.set(Fault::Delay(Duration::from_millis(50)));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(proxy.local_addr()).await.unwrap();
    let started = Instant::now();
    client.send(b"d").await.unwrap();
    let mut buf = [0_u8; 8];
    timeout(WAIT, client.recv(&mut buf)).await.unwrap().unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );

    // A new flow (new source port) with a 40-byte budget: each round trip of a four-byte
    // datagram uses 8, so five fit.
    proxy.set(Fault::CutAfter(40));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(proxy.local_addr()).await.unwrap();
    let mut answered = 0;
    for i in 0_u32..10 {
        client.send(&i.to_be_bytes()).await.unwrap();
        if let Ok(Ok(_)) = timeout(QUIET, client.recv(&mut buf)).await {
            answered += 1;
        }
    }
    assert_eq!(answered, 5);
}

#[tokio::test]
async fn pair_shares_one_port_number() {
    let tcp = tcp_echo(b"").await;
    let udp = udp_echo().await;
    let pair = FaultPair::bind(tcp.addr, udp.addr).await.unwrap();
    assert_eq!(pair.tcp.local_addr(), pair.udp.local_addr());
    assert_eq!(udp_round_trips(&pair.udp, 10).await, 10);
    let mut stream = TcpStream::connect(pair.local_addr()).await.unwrap();
    stream.write_all(b"z").await.unwrap();
    assert_eq!(read_exact(&mut stream, 1).await, b"z");
    pair.set(Fault::Blackhole);
    assert_eq!(udp_round_trips(&pair.udp, 5).await, 0);
}
