//! Per-IP limits of `WtServer`: a connection beyond `max_connections_per_ip` from one address
//! is refused at the QUIC level while another address (127.0.0.2) is served; attempts beyond
//! the handshake rate are refused the same way.

mod server_common;

use std::time::Duration;

use server_common::{bare_quic_from, bounded, server};
use transport_core::IpLimits;
use transport_wt::WtServerConfig;

fn config(limits: IpLimits) -> WtServerConfig {
    let mut config = WtServerConfig::default();
    // Held connections never send a CONNECT; keep them for the whole test.
    config.handshake_timeout(Duration::from_secs(10));
    config.ip_limits(limits);
    config
}

fn is_refused(e: &quinn::ConnectionError) -> bool {
    matches!(e, quinn::ConnectionError::ConnectionClosed(close)
        if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED)
}

#[tokio::test]
async fn connection_beyond_the_per_ip_limit_is_refused_for_that_address_only() {
    let mut limits = IpLimits::unlimited();
    limits.max_connections_per_ip(Some(1));
    let (server, _cert) = server(config(limits));
    let addr = server.local_addr();
    let one = "127.0.0.1:0".parse().unwrap();
    let two = "127.0.0.2:0".parse().unwrap();

    let first = bounded(bare_quic_from(one, addr)).await.unwrap();
    let refused = bounded(bare_quic_from(one, addr)).await.unwrap_err();
    assert!(is_refused(&refused), "{refused:?}");
    let other = bounded(bare_quic_from(two, addr)).await.unwrap();
    assert_eq!(server.open_sessions(), 2);

    // Closing the first gives its slot back.
    first.close(0u32.into(), b"");
    let mut again = Err(refused);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        again = bounded(bare_quic_from(one, addr)).await;
        if again.is_ok() {
            break;
        }
    }
    assert!(again.is_ok(), "{again:?}");
    drop(other);
}

#[tokio::test]
async fn attempts_beyond_the_per_ip_rate_are_refused() {
    let mut limits = IpLimits::unlimited();
    limits.handshake_rate(Some(1), 3);
    let (server, _cert) = server(config(limits));
    let addr = server.local_addr();
    let one = "127.0.0.1:0".parse().unwrap();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..6 {
        match bounded(bare_quic_from(one, addr)).await {
            Ok(c) => held.push(c),
            Err(e) => {
                assert!(is_refused(&e), "{e:?}");
                refused += 1;
            }
        }
    }
    // A bucket of 3; at most one more token (1/s) can have come back meanwhile.
    assert!((3..=4).contains(&held.len()), "{} held", held.len());
    assert!(refused >= 2);
    let two = "127.0.0.2:0".parse().unwrap();
    bounded(bare_quic_from(two, addr)).await.unwrap();
}

#[tokio::test]
async fn a_busy_address_is_validated_with_a_retry_and_then_served() {
    // With 2 allowed and 1 open, the address is "under pressure": the next attempt gets a
    // stateless retry first (unvalidated source addresses may be spoofed), then is served.
    let mut limits = IpLimits::unlimited();
    limits.max_connections_per_ip(Some(2));
    let (server, _cert) = server(config(limits));
    let addr = server.local_addr();
    let one = "127.0.0.1:0".parse().unwrap();
    let _first = bounded(bare_quic_from(one, addr)).await.unwrap();
    let second = bounded(bare_quic_from(one, addr)).await;
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(server.open_sessions(), 2);
    let third = bounded(bare_quic_from(one, addr)).await.unwrap_err();
    assert!(is_refused(&third), "{third:?}");
}
