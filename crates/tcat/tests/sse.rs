//! Server-Sent Events end to end.
//!
//! * `tcat connect` against `tcat serve --sse`: stdin lines go out through the session's send
//!   URL and come back as events (echo, broadcast), formats, `--count`, TLS, SIGTERM.
//! * `tcat connect` against the raw scenario servers of `test_servers::sse`, which write
//!   exactly the bytes given: multi-line data, named events and ids, reconnects with
//!   `Last-Event-ID` after `retry:`, 204 (exit 0), 500 and a wrong content type (exit 1), and
//!   plain SSE servers (stdin ignored with a warning, stdin EOF does not end the stream).

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{Finished, Proc, WAIT, run, scratch, self_signed, serve, tcat};
use serde_json::{Value, json};
use test_servers::sse::{End, Reply, SseTestServer};
use transport_core::{CloseFrame, Message, ReconnectPolicy, Transport as _, TransportError};

/// Runs `tcat ARGS` with `input` on stdin (then EOF) on a blocking thread, so that the test's
/// runtime keeps serving meanwhile.
async fn run_async(args: &[&str], input: &[u8]) -> Finished {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let input = input.to_vec();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &input)
    })
    .await
    .unwrap()
}

fn json_lines(out: &Finished) -> Vec<Value> {
    out.stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// A scenario server for `replies`.
async fn scenario(replies: Vec<Reply>) -> SseTestServer {
    SseTestServer::start(replies).await.unwrap()
}

// --- against tcat serve --sse -------------------------------------------------------------

#[test]
fn lines_go_out_through_the_send_url_and_come_back_as_events() {
    let server = serve(&["--sse", "127.0.0.1:0"], 1);
    let url = server.url();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/events"),
        "{url}"
    );
    let lines = [
        "hello",
        "héllo wörld 😀",
        "",
        "  spaces kept  ",
        "tab\there",
        "{\"json\": true}",
        "last",
    ];
    let input = lines.join("\n") + "\n";
    let out = run(&["connect", url], input.as_bytes());
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, lines);

    // --transport sse says the same as the scheme.
    let out = run(&["connect", "--transport", "sse", url], b"explicit\n");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, ["explicit"]);

    // No input: stdin EOF closes gracefully (a close POSTed to the send URL), exit 0.
    let out = run(&["connect", "--linger", "0.2", url], b"");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn json_format_shows_event_type_and_id() {
    let server = serve(&["--sse", "127.0.0.1:0"], 1);
    let out = run(
        &["connect", "--format", "json", server.url()],
        "a\nmulti word ü\n".as_bytes(),
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    let values = json_lines(&out);
    assert_eq!(values.len(), 2, "{out:?}");
    let mut token = None;
    for (n, (value, data)) in values.iter().zip(["a", "multi word ü"]).enumerate() {
        // The server's ids are <session token>.<sequence number from 1>.
        let id = value["id"].as_str().unwrap();
        let (t, seq) = id.split_once('.').unwrap();
        assert_eq!(t.len(), 32, "{id}");
        assert_eq!(seq, (n + 1).to_string());
        assert_eq!(*token.get_or_insert(t.to_owned()), t, "one session");
        assert_eq!(
            *value,
            json!({"type": "text", "data": data, "event": "message", "id": id})
        );
    }
}

#[test]
fn binary_lines_come_back_as_binary_messages() {
    let server = serve(&["--sse", "127.0.0.1:0"], 1);
    let out = run(
        &["connect", "--binary", "--format", "json", server.url()],
        b"abc\n\x00\xff\xfe\n",
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    let values = json_lines(&out);
    assert_eq!(values.len(), 2, "{out:?}");
    for (value, expected) in values.iter().zip([&b"abc"[..], &b"\x00\xff\xfe"[..]]) {
        assert_eq!(value["type"], "binary", "{value}");
        assert_eq!(value["event"], "message", "{value}");
        assert_eq!(value["id"], Value::Null, "{value}");
        let data = BASE64.decode(value["data"].as_str().unwrap()).unwrap();
        assert_eq!(data, expected);
    }
    // Text format: as is when UTF-8, else base64, as for WebSocket.
    let out = run(&["connect", "--binary", server.url()], b"plain\n\xff\x00\n");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, ["plain".to_owned(), BASE64.encode(b"\xff\x00")]);
}

#[test]
fn count_exits_after_n_events_with_stdin_still_open() {
    let server = serve(&["--sse", "127.0.0.1:0"], 1);
    let mut client = Proc::spawn(tcat().args(["connect", "--count", "2", server.url()]));
    client.write(b"one\ntwo\nthree\n");
    let status = client.wait(WAIT);
    assert_eq!(status.code(), Some(0));
    assert_eq!(client.line(WAIT).as_deref(), Some("one"));
    assert_eq!(client.line(WAIT).as_deref(), Some("two"));
}

#[test]
fn broadcast_reaches_every_sse_client() {
    let server = serve(&["--sse", "127.0.0.1:0", "--mode", "broadcast"], 1);
    let mut a = Proc::spawn(tcat().args(["connect", server.url()]));
    // A hears its own message once it has joined: from then on it hears everything.
    a.write(b"from a\n");
    assert_eq!(a.wait_line(WAIT, |_| true), "from a");

    let mut b = Proc::spawn(tcat().args(["connect", server.url()]));
    b.write(b"from b\n");
    assert_eq!(b.wait_line(WAIT, |_| true), "from b");
    assert_eq!(a.wait_line(WAIT, |_| true), "from b");

    let a = a.finish(WAIT);
    let b = b.finish(WAIT);
    assert_eq!(a.code(), Some(0), "{a:?}");
    assert_eq!(b.code(), Some(0), "{b:?}");
}

#[test]
fn websocket_and_sse_listeners_share_a_broadcast_room() {
    let server = serve(
        &[
            "--ws",
            "127.0.0.1:0",
            "--sse",
            "127.0.0.1:0",
            "--mode",
            "broadcast",
        ],
        2,
    );
    let (ws, sse) = (server.urls[0].clone(), server.urls[1].clone());
    assert!(ws.starts_with("ws://"), "{ws}");
    assert!(sse.starts_with("http://"), "{sse}");
    let mut a = Proc::spawn(tcat().args(["connect", &sse]));
    a.write(b"sse joined\n");
    assert_eq!(a.wait_line(WAIT, |_| true), "sse joined");
    let mut b = Proc::spawn(tcat().args(["connect", &ws]));
    b.write(b"from ws\n");
    assert_eq!(b.wait_line(WAIT, |_| true), "from ws");
    assert_eq!(a.wait_line(WAIT, |_| true), "from ws");
}

#[test]
fn sses_with_the_ca_cert_works_and_without_it_is_a_tls_error() {
    let dir = scratch("sses");
    let (cert, key) = self_signed(&dir);
    let server = serve(
        &["--sses", "127.0.0.1:0", "--cert", &cert, "--key", &key],
        1,
    );
    let url = server.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let out = run(
        &["connect", "--ca-cert", &cert, url],
        "secure ✓\n".as_bytes(),
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, ["secure ✓"]);

    let out = run(&["connect", url], b"x\n");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.contains("TLS") || out.stderr.contains("certificate"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn sigterm_closes_sse_sessions_with_1001_and_exits_0() {
    let mut server = serve(&["--sse", "127.0.0.1:0"], 1);
    let url = server.url().to_owned();
    // A library client, to see the exact close (not reconnecting: 1001 is retryable).
    let mut config = transport_sse::SseConfig::default();
    config.transport.reconnect(ReconnectPolicy::disabled());
    let mut conn = transport_sse::connect(&url, config).await.unwrap();
    conn.send(Message::text("ping")).await.unwrap();
    let echo = tokio::time::timeout(WAIT, conn.recv()).await.unwrap();
    assert_eq!(echo.unwrap().unwrap().as_text(), Some("ping"));

    server.terminate();
    let status = tokio::task::spawn_blocking(move || server.proc.wait(WAIT))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "serve exits 0 on SIGTERM");
    let end = tokio::time::timeout(WAIT, conn.recv()).await.unwrap();
    assert_eq!(
        end,
        Err(TransportError::ClosedByPeer {
            code: CloseFrame::GOING_AWAY,
            reason: "server shutting down".into()
        })
    );
}

// --- against raw scenario servers ---------------------------------------------------------

/// Multi-line data, a field value's spaces, a comment, a named event with an id that stays in
/// force, an empty event and a binary one.
const STREAM: &str = "retry: 50\n\
                      data: line one\ndata:  two spaces\ndata: 😀\n\n\
                      : a comment\n\n\
                      id: 7\nevent: tick\ndata: {\"n\":1}\n\n\
                      data: after\n\n\
                      data:\n\n\
                      event: transport.binary\ndata: aGk=\n\n";

#[tokio::test]
async fn events_print_their_data_byte_for_byte() {
    // The stream ends; the reconnect (with Last-Event-ID) is answered 204: exit 0.
    let server = scenario(vec![Reply::events([STREAM]), Reply::status(204)]).await;
    let out = run_async(&["connect", &server.url("/events")], b"").await;
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        [
            "line one",
            " two spaces",
            "😀",
            "{\"n\":1}",
            "after",
            "",
            "hi"
        ]
    );
    let gets = server.gets();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].header("accept"), Some("text/event-stream"));
    assert_eq!(gets[0].header("last-event-id"), None);
    assert_eq!(gets[1].header("last-event-id"), Some("7"));
}

#[tokio::test]
async fn json_format_shows_event_types_and_ids_of_a_raw_stream() {
    let server = scenario(vec![Reply::events([STREAM]), Reply::status(204)]).await;
    let out = run_async(
        &["connect", "--format", "json", &server.url("/events")],
        b"",
    )
    .await;
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        json_lines(&out),
        [
            json!({"type": "text", "data": "line one\n two spaces\n😀", "event": "message", "id": null}),
            json!({"type": "text", "data": "{\"n\":1}", "event": "tick", "id": "7"}),
            json!({"type": "text", "data": "after", "event": "message", "id": "7"}),
            json!({"type": "text", "data": "", "event": "message", "id": "7"}),
            json!({"type": "binary", "data": "aGk=", "event": "message", "id": null}),
        ]
    );
}

#[tokio::test]
async fn a_dropped_stream_is_reconnected_with_last_event_id_after_retry() {
    let server = scenario(vec![
        Reply::events(["retry: 300\nid: a1\ndata: one\n\n"]).then(End::Drop),
        Reply::events(["id: a2\ndata: two\n\n"]),
        Reply::status(204),
    ])
    .await;
    let out = run_async(&["connect", "--count", "2", &server.url("/events")], b"").await;
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, ["one", "two"]);
    let gets = server.gets();
    assert!(gets.len() >= 2, "{gets:?}");
    assert_eq!(gets[1].header("last-event-id"), Some("a1"));
    // retry: 300 is honoured (the server notes the end right after dropping the stream).
    let ended = server.stream_ends()[0];
    let waited = gets[1].at.saturating_duration_since(ended);
    assert!(waited >= Duration::from_millis(250), "{waited:?}");

    // Without --count: the second stream ends too, its reconnect gets 204, exit 0.
    let server = scenario(vec![
        Reply::events(["retry: 20\nid: a1\ndata: one\n\n"]).then(End::Drop),
        Reply::events(["id: a2\ndata: two\n\n"]),
        Reply::status(204),
    ])
    .await;
    let out = run_async(&["connect", &server.url("/events")], b"").await;
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, ["one", "two"]);
    let gets = server.gets();
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert_eq!(gets[2].header("last-event-id"), Some("a2"));
}

#[tokio::test]
async fn http_204_exits_0() {
    let server = scenario(vec![Reply::status(204)]).await;
    let out = run_async(&["connect", &server.url("/events")], b"").await;
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(server.gets().len(), 1, "no reconnect after 204");

    // Like a normal close, it ends a --count run early: exit 1.
    let out = run_async(&["connect", "--count", "1", &server.url("/events")], b"").await;
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("204"), "{}", out.stderr);
}

#[tokio::test]
async fn http_500_exits_1_with_the_status() {
    let server = scenario(vec![Reply::status(500)]).await;
    let out = run_async(&["connect", &server.url("/events")], b"").await;
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("500"), "{}", out.stderr);
    assert_eq!(
        server.gets().len(),
        1,
        "no reconnect after a non-200 answer"
    );

    // Also when it answers a reconnect.
    let server = scenario(vec![
        Reply::events(["retry: 20\ndata: one\n\n"]),
        Reply::status(500),
    ])
    .await;
    let out = run_async(&["connect", &server.url("/events")], b"").await;
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_eq!(out.stdout, ["one"]);
    assert!(out.stderr.contains("500"), "{}", out.stderr);
}

#[tokio::test]
async fn a_wrong_content_type_exits_1() {
    let server = scenario(vec![
        Reply::events(["data: x\n\n"]).content_type(Some("text/html")),
    ])
    .await;
    let out = run_async(&["connect", &server.url("/events")], b"").await;
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(out.stderr.contains("text/html"), "{}", out.stderr);
    assert_eq!(server.gets().len(), 1);
}

#[tokio::test]
async fn a_plain_sse_stream_ignores_stdin_with_a_warning_and_outlives_its_end() {
    // The second event comes well after stdin's end and the linger time: a tcat that closed
    // at stdin EOF would miss it.
    let replies = || {
        vec![
            Reply::events(["data: first\n\n", "data: second\n\n"])
                .chunk_delay(Duration::from_millis(1500)),
            Reply::status(204),
        ]
    };
    for input in [&b"a line with nowhere to go\n"[..], &b""[..]] {
        let server = scenario(replies()).await;
        let out = run_async(
            &["connect", "--linger", "0.2", &server.url("/events")],
            input,
        )
        .await;
        assert_eq!(out.code(), Some(0), "{out:?}");
        assert_eq!(out.stdout, ["first", "second"], "{out:?}");
        assert!(server.posts().is_empty());
        if input.is_empty() {
            assert!(!out.stderr.contains("ignored"), "{}", out.stderr);
        } else {
            assert!(
                out.stderr.contains("no send URL") && out.stderr.contains("ignored"),
                "{}",
                out.stderr
            );
        }
    }
}

#[tokio::test]
async fn a_plain_sse_stream_runs_until_the_timeout() {
    let server = scenario(vec![Reply::events(["data: only\n\n"]).then(End::Hang)]).await;
    let out = run_async(
        &[
            "connect",
            "--timeout",
            "1",
            "--linger",
            "0",
            &server.url("/events"),
        ],
        b"",
    )
    .await;
    assert_eq!(out.code(), Some(3), "{out:?}");
    assert_eq!(out.stdout, ["only"]);
}
