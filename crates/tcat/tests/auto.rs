//! `tcat serve --all` (the unified server) and `tcat connect --transport auto` (the adaptive
//! transport): negotiation from a base URL, explicit endpoints, fallback past a WebTransport
//! endpoint that never answers, stderr reports, usage errors, SIGTERM.

mod common;

use std::net::UdpSocket;

use common::{WAIT, run, serve};

/// The four URLs of `tcat serve --all`, in the order printed.
struct All {
    server: common::Server,
}

impl All {
    fn start(extra: &[&str]) -> Self {
        let mut args = vec!["--all", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let server = serve(&args, 4);
        let urls = &server.urls;
        assert!(urls[0].starts_with("http://127.0.0.1:"), "{urls:?}");
        assert!(
            urls[1].starts_with("ws://") && urls[1].ends_with("/ws"),
            "{urls:?}"
        );
        assert!(
            urls[2].starts_with("http://") && urls[2].ends_with("/sse"),
            "{urls:?}"
        );
        assert!(
            urls[3].starts_with("https://") && urls[3].ends_with("/wt"),
            "{urls:?}"
        );
        Self { server }
    }

    fn base(&self) -> &str {
        &self.server.urls[0]
    }

    fn ws(&self) -> &str {
        &self.server.urls[1]
    }

    fn sse(&self) -> &str {
        &self.server.urls[2]
    }
}

#[test]
fn base_url_negotiates_and_webtransport_wins() {
    let all = All::start(&[]);
    let out = run(
        &["connect", "--transport", "auto", all.base()],
        b"one\ntwo\n\nthree\n",
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, ["one", "two", "", "three"]);
    assert!(
        out.stderr.contains("transport: wt (connected)"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn a_silent_webtransport_endpoint_falls_back_to_websocket() {
    let all = All::start(&[]);
    // A UDP port that is open and never answers: QUIC handshakes go nowhere.
    let hole = UdpSocket::bind("127.0.0.1:0").unwrap();
    let wt = format!("https://{}/wt", hole.local_addr().unwrap());
    let started = std::time::Instant::now();
    let out = run(
        &[
            "connect",
            "--transport",
            "auto",
            "--wt",
            &wt,
            "--ws",
            all.ws(),
            "--sse",
            all.sse(),
            "--linger",
            "0.2",
        ],
        b"hello\n",
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, ["hello"]);
    assert!(
        out.stderr.contains("transport: ws (connected)"),
        "stderr: {}",
        out.stderr
    );
    // Not the seconds a WebTransport timeout would take (process start and build included).
    assert!(started.elapsed() < WAIT / 2, "{:?}", started.elapsed());
}

#[test]
fn sse_alone_carries_the_run() {
    let all = All::start(&[]);
    let out = run(
        &[
            "connect",
            "--transport",
            "auto",
            "--sse",
            all.sse(),
            "--linger",
            "0.3",
        ],
        b"over sse\n",
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, ["over sse"]);
    assert!(
        out.stderr.contains("transport: sse (connected)"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn broadcast_reaches_clients_of_every_transport() {
    let all = All::start(&["--mode", "broadcast"]);
    // A listener over SSE only; it has joined once its own "ready" comes back to it.
    let mut listener = common::Proc::spawn_with_stdin(
        common::tcat().args([
            "connect",
            "--transport",
            "auto",
            "--sse",
            all.sse(),
            "--count",
            "2",
        ]),
        std::process::Stdio::piped(),
    );
    listener.write(b"ready\n");
    assert_eq!(listener.line(WAIT).as_deref(), Some("ready"));
    // A speaker that negotiates (WebTransport wins).
    let out = run(
        &[
            "connect",
            "--transport",
            "auto",
            all.base(),
            "--linger",
            "0.3",
        ],
        b"to everyone\n",
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, ["to everyone"]);
    let heard = listener.finish(WAIT);
    assert_eq!(heard.code(), Some(0), "stderr: {}", heard.stderr);
    assert_eq!(heard.stdout, ["to everyone"]);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["connect", "--transport", "auto"],
        vec!["connect", "--ws", "ws://127.0.0.1:1/ws"],
        vec![
            "connect",
            "--transport",
            "ws",
            "--ws",
            "ws://127.0.0.1:1/",
            "ws://127.0.0.1:1/",
        ],
        vec![
            "connect",
            "--transport",
            "auto",
            "--datagram",
            "--ws",
            "ws://127.0.0.1:1/",
        ],
        vec![
            "connect",
            "--transport",
            "auto",
            "--ws",
            "http://127.0.0.1:1/",
        ],
        vec![
            "connect",
            "--transport",
            "auto",
            "--wt",
            "ws://127.0.0.1:1/",
        ],
    ] {
        let out = run(&args, b"");
        assert_eq!(out.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn nothing_reachable_exits_1() {
    // Nothing listens on these (the ports were just freed).
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    drop(tcp);
    let ws = format!("ws://127.0.0.1:{port}/ws");
    let sse = format!("http://127.0.0.1:{port}/sse");
    let out = run(
        &[
            "connect",
            "--transport",
            "auto",
            "--ws",
            &ws,
            "--sse",
            &sse,
            "--connect-timeout",
            "5",
        ],
        b"",
    );
    assert_eq!(out.code(), Some(1), "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn sigterm_stops_the_unified_server() {
    let all = All::start(&[]);
    all.server.terminate();
    let mut server = all.server;
    let status = server.proc.wait(WAIT);
    assert_eq!(status.code(), Some(0));
}
