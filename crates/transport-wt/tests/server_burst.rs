//! A burst of sessions, all at once, from our client: every one is accepted. QUIC does not
//! order streams, so under load the server reads a client's CONNECT before its SETTINGS; the
//! server must then wait for the SETTINGS rather than refuse the session with
//! H3_SETTINGS_ERROR (which it did, for 5-11 % of 1,000 sessions, before it waited).

mod client_common;

use std::time::{Duration, Instant};

use client_common::{pinned, server};
use tokio::task::JoinSet;
use transport_core::IpLimits;
use transport_wt::WtServerConfig;

const SESSIONS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sessions_is_accepted_whole() {
    let mut config = WtServerConfig::default();
    config
        .max_sessions(SESSIONS * 2)
        .accept_backlog(SESSIONS * 2);
    // Every client comes from 127.0.0.1 at once.
    config.ip_limits(IpLimits::unlimited());
    let (mut server, cert) = server(config);
    let url = format!("{}/burst", server.url());
    let accepting = tokio::spawn(async move {
        let mut sessions = Vec::new();
        while sessions.len() < SESSIONS {
            match tokio::time::timeout(Duration::from_secs(30), server.accept_session()).await {
                Ok(Some((session, _))) => sessions.push(session),
                _ => break,
            }
        }
        // The sessions stay open (returned): dropping one closes its connection, maybe
        // before its client has finished connecting.
        (server, sessions)
    });
    let started = Instant::now();
    let mut clients = JoinSet::new();
    for _ in 0..SESSIONS {
        let (url, config) = (url.clone(), pinned(&cert));
        clients.spawn(async move { transport_wt::connect(&url, config).await });
    }
    let mut failures = Vec::new();
    let mut open = Vec::new();
    while let Some(joined) = tokio::time::timeout(Duration::from_secs(60), clients.join_next())
        .await
        .expect("the burst finished within 60 s")
    {
        match joined.expect("client task") {
            Ok(session) => open.push(session),
            Err(e) => failures.push(e.to_string()),
        }
    }
    println!(
        "{} of {SESSIONS} sessions in {:?}",
        open.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let (_server, accepted) = accepting.await.unwrap();
    assert_eq!(accepted.len(), SESSIONS);
}
