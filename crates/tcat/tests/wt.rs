//! WebTransport: `tcat serve --wt` (generated certificate, raw echo, broadcast) and
//! `tcat connect --transport wt` (stream and datagram messages, pinned certificate hash,
//! refused certificate), SIGTERM.

mod common;

use common::{Proc, WAIT, run, scratch, self_signed, tcat};

/// A running `tcat serve --wt` with its certificate hash and URL.
struct WtServe {
    proc: Proc,
    hash: String,
    url: String,
}

fn serve_wt(extra: &[&str]) -> WtServe {
    let mut cmd = tcat();
    cmd.args(["serve", "--wt", "127.0.0.1:0"]).args(extra);
    let mut proc = Proc::spawn(&mut cmd);
    let first = proc.line(WAIT).expect("a first line");
    let hash = first
        .strip_prefix("cert-sha256 ")
        .unwrap_or_else(|| panic!("expected the certificate hash first, got {first:?}"))
        .to_owned();
    assert_eq!(hash.len(), 64);
    let listening = proc.line(WAIT).expect("a listening line");
    let url = listening
        .strip_prefix("listening wt ")
        .unwrap_or_else(|| panic!("expected `listening wt URL`, got {listening:?}"))
        .to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    WtServe { proc, hash, url }
}

fn terminate(proc: &Proc) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &proc.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[test]
fn lines_round_trip_over_the_message_stream() {
    let server = serve_wt(&[]);
    let out = run(
        &[
            "connect",
            "--transport",
            "wt",
            "--cert-hash",
            &server.hash,
            &format!("{}/echo", server.url),
        ],
        b"first line\nsecond line\n\nlast\n",
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, ["first line", "second line", "", "last"]);
}

#[test]
fn datagrams_round_trip() {
    let server = serve_wt(&[]);
    let out = run(
        &[
            "connect",
            "--transport",
            "wt",
            "--datagram",
            "--linger",
            "0.5",
            "--cert-hash",
            &server.hash,
            &server.url,
        ],
        b"one\ntwo\n",
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    let mut got = out.stdout.clone();
    got.sort();
    assert_eq!(got, ["one", "two"], "datagrams may arrive in any order");
}

#[test]
fn a_wrong_certificate_hash_exits_1_and_prints_nothing() {
    let server = serve_wt(&[]);
    let wrong = "ab".repeat(32);
    let out = run(
        &[
            "connect",
            "--transport",
            "wt",
            "--cert-hash",
            &wrong,
            &server.url,
        ],
        b"never sent\n",
    );
    assert_eq!(out.code(), Some(1), "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    assert!(
        out.stderr.to_lowercase().contains("certificate") || out.stderr.contains("TLS"),
        "{}",
        out.stderr
    );
}

#[test]
fn cert_and_key_files_with_ca_cert() {
    let dir = scratch("wt-ca");
    let (cert, key) = self_signed(&dir);
    let mut cmd = tcat();
    cmd.args([
        "serve",
        "--wt",
        "127.0.0.1:0",
        "--cert",
        &cert,
        "--key",
        &key,
    ]);
    let mut server = Proc::spawn(&mut cmd);
    // No certificate is generated, so no hash line: the listening line comes first.
    let listening = server.line(WAIT).expect("a listening line");
    let url = listening
        .strip_prefix("listening wt ")
        .unwrap_or_else(|| panic!("expected `listening wt URL`, got {listening:?}"))
        .to_owned();
    let out = run(
        &["connect", "--transport", "wt", "--ca-cert", &cert, &url],
        b"trusted by a CA\n",
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, ["trusted by a CA"]);
}

#[test]
fn an_unknown_ca_exits_1() {
    // No --cert-hash: the self-signed certificate is checked against the system roots.
    let server = serve_wt(&[]);
    let out = run(&["connect", "--transport", "wt", &server.url], b"x\n");
    assert_eq!(out.code(), Some(1), "stderr: {}", out.stderr);
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
}

#[test]
fn https_without_transport_is_still_sse() {
    let out = run(
        &["connect", "--datagram", "https://127.0.0.1:9/events"],
        b"",
    );
    assert_eq!(out.code(), Some(2), "stderr: {}", out.stderr);
    assert!(out.stderr.contains("--transport wt"), "{}", out.stderr);
}

#[test]
fn broadcast_mode_speaks_messages() {
    let server = serve_wt(&["--mode", "broadcast"]);
    let out = run(
        &[
            "connect",
            "--transport",
            "wt",
            "--cert-hash",
            &server.hash,
            &server.url,
        ],
        b"to everyone\n",
    );
    assert_eq!(out.code(), Some(0), "stderr: {}", out.stderr);
    assert_eq!(out.stdout, ["to everyone"]);
}

#[test]
fn sigterm_exits_0() {
    let mut server = serve_wt(&[]);
    // A client in the middle of a session.
    let mut client = Proc::spawn(tcat().args([
        "connect",
        "--transport",
        "wt",
        "--cert-hash",
        &server.hash,
        &server.url,
    ]));
    client.write(b"hello\n");
    assert_eq!(client.line(WAIT).as_deref(), Some("hello"));
    terminate(&server.proc);
    let status = server.proc.wait(WAIT);
    assert_eq!(status.code(), Some(0), "serve exits 0 on SIGTERM");
    // The client sees its session end (not a close handshake) and exits 1.
    let out = client.finish(WAIT);
    assert_eq!(out.code(), Some(1), "stderr: {}", out.stderr);
}
