//! Binding the servers' TCP listeners with a listen backlog sized for bursts of connects.
//!
//! `std` and tokio listen with a backlog of 128: the kernel queues at most that many
//! completed TCP handshakes the server has not accepted yet, and drops the SYNs of clients
//! beyond it, which retry one second later (then 3 s, 7 s, ...). A burst of a few hundred
//! connects, common when a fleet of clients reconnects after a restart, then costs every
//! client caught in the overflow a second or more.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket, ToSocketAddrs, lookup_host};

/// Default listen backlog of the workspace's TCP servers. The kernel caps it at
/// `net.core.somaxconn` (4096 on current Linux).
pub const DEFAULT_LISTEN_BACKLOG: u32 = 1024;

/// Binds a TCP listener on the first address `addr` resolves to that can be bound, with
/// `SO_REUSEADDR` set on Unix (as `std` does) and the given listen `backlog`.
///
/// # Errors
/// The bind or listen error of the last address tried, or `InvalidInput` if `addr` resolves
/// to nothing.
///
/// # Cancel safety
/// Cancel safe: a dropped call leaves no listener behind.
pub async fn bind_listener(addr: impl ToSocketAddrs, backlog: u32) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in lookup_host(addr).await? {
        match bind_one(addr, backlog) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing")
    }))
}

fn bind_one(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_backlog_admits_a_burst_the_default_would_overflow() {
        let listener = bind_listener("127.0.0.1:0", 512).await.unwrap();
        let addr = listener.local_addr().unwrap();
        // 300 connects, none accepted yet: all complete at once with a backlog of 512, where
        // a backlog of 128 would leave the rest waiting for a SYN retransmission (1 s).
        let burst = async {
            let mut clients = Vec::new();
            for _ in 0..300 {
                clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            }
            clients
        };
        let clients = tokio::time::timeout(std::time::Duration::from_millis(900), burst).await;
        assert!(clients.is_ok(), "a connect waited for a SYN retransmission");
        drop(listener);
    }

    #[tokio::test]
    async fn an_unresolvable_or_taken_address_is_an_error() {
        let listener = bind_listener("127.0.0.1:0", 16).await.unwrap();
        let taken = listener.local_addr().unwrap();
        assert!(bind_listener(taken, 16).await.is_err());
        let none: &[SocketAddr] = &[];
        assert!(bind_listener(none, 16).await.is_err());
    }
}
