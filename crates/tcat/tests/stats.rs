//! `tcat connect --stats`: the connection's statistics on stderr at exit.

mod common;

use common::{run, serve};

/// The `stats ...` line of stderr as `key=value` pairs.
fn stats_fields(stderr: &str) -> Vec<(String, String)> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("stats "))
        .unwrap_or_else(|| panic!("no stats line in {stderr:?}"));
    line.split_whitespace()
        .skip(1)
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{kv:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map_or_else(|| panic!("no {key} in {fields:?}"), |(_, v)| v.as_str())
}

fn check_echo_stats(url: &str, transport: &str) {
    let out = run(&["connect", "--stats", url], b"one\ntwo\nthree\n");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, vec!["one", "two", "three"]);
    let fields = stats_fields(&out.stderr);
    println!("{fields:?}");
    assert_eq!(field(&fields, "transport"), transport);
    assert_eq!(field(&fields, "messages_sent"), "3");
    assert_eq!(field(&fields, "bytes_sent"), "11");
    assert_eq!(field(&fields, "messages_received"), "3");
    assert_eq!(field(&fields, "bytes_received"), "11");
    assert_eq!(field(&fields, "reconnects"), "0");
    let rtt = field(&fields, "rtt_ms");
    assert!(rtt == "-" || rtt.parse::<f64>().is_ok(), "{rtt:?}");
    let connected: u64 = field(&fields, "connected_ms").parse().unwrap();
    // The run lingers a second after stdin EOF (--linger default) while connected.
    assert!(connected > 0, "{connected}");
}

#[test]
fn websocket_stats_at_exit() {
    let server = serve(&["--ws", "127.0.0.1:0"], 1);
    check_echo_stats(server.url(), "ws");
}

#[test]
fn sse_stats_at_exit() {
    let server = serve(&["--sse", "127.0.0.1:0"], 1);
    check_echo_stats(server.url(), "sse");
}

#[test]
fn no_stats_line_without_the_flag() {
    let server = serve(&["--ws", "127.0.0.1:0"], 1);
    let out = run(&["connect", server.url()], b"one\n");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        !out.stderr.lines().any(|l| l.starts_with("stats ")),
        "{}",
        out.stderr
    );
}

#[test]
fn stats_are_printed_on_timeout_too() {
    let server = serve(&["--ws", "127.0.0.1:0"], 1);
    // The run ends by --timeout, exit 3: stdin's end (when `finish` closes it) is followed
    // by a linger far longer than the timeout.
    let mut cmd = common::tcat();
    cmd.args([
        "connect",
        "--stats",
        "--timeout",
        "1",
        "--linger",
        "10",
        server.url(),
    ]);
    let mut proc = common::Proc::spawn(&mut cmd);
    proc.write(b"hi\n");
    let out = proc.finish(common::WAIT);
    assert_eq!(out.code(), Some(3), "{out:?}");
    let fields = stats_fields(&out.stderr);
    assert_eq!(field(&fields, "messages_sent"), "1");
}
