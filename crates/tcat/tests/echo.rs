//! `tcat connect` against `tcat serve` in echo mode: lines round-trip, output formats, binary,
//! `--count`.

mod common;

use std::fmt::Write as _;
use std::fs::File;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{Proc, WAIT, run, scratch, serve, tcat};

const LINES: &[&str] = &[
    "hello",
    "héllo wörld",
    "日本語のテキスト",
    "emoji 😀🎉",
    "",
    "  spaces kept  ",
    "tab\there",
    "{\"json\": true}",
    "last line",
];

#[test]
fn piped_file_of_lines_is_echoed_back_in_order() {
    let server = serve(&["--ws", "127.0.0.1:0"], 1);
    assert!(
        server.url().starts_with("ws://127.0.0.1:"),
        "{}",
        server.url()
    );
    let dir = scratch("lines");
    let path = dir.join("lines.txt");
    // CRLF on one line: the \r is stripped before sending.
    let mut content = LINES.join("\n");
    content.push_str("\r\n");
    std::fs::write(&path, &content).unwrap();

    let file = File::open(&path).unwrap();
    let out =
        Proc::spawn_with_stdin(tcat().args(["connect", server.url()]), file.into()).finish(WAIT);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let got: Vec<&str> = out.stdout.iter().map(String::as_str).collect();
    assert_eq!(got, LINES);
}

#[test]
fn json_format_shows_text_messages() {
    let server = serve(&["--ws", "127.0.0.1:0"], 1);
    let out = run(
        &["connect", "--format", "json", server.url()],
        "a\nmulti word ü\n".as_bytes(),
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    let values: Vec<serde_json::Value> = out
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(values.len(), 2, "{out:?}");
    assert_eq!(values[0], serde_json::json!({"type": "text", "data": "a"}));
    assert_eq!(
        values[1],
        serde_json::json!({"type": "text", "data": "multi word ü"})
    );
}

#[test]
fn binary_messages_in_json_are_base64() {
    let server = serve(&["--ws", "127.0.0.1:0"], 1);
    let input: &[u8] = b"abc\n\x00\xff\xfe\n";
    let out = run(
        &["connect", "--binary", "--format", "json", server.url()],
        input,
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    let values: Vec<serde_json::Value> = out
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(values.len(), 2, "{out:?}");
    for (value, expected) in values.iter().zip([&b"abc"[..], &b"\x00\xff\xfe"[..]]) {
        assert_eq!(value["type"], "binary");
        let data = value["data"].as_str().unwrap();
        assert_eq!(BASE64.decode(data).unwrap(), expected);
    }
}

#[test]
fn binary_messages_in_text_format_print_as_is_or_base64() {
    let server = serve(&["--ws", "127.0.0.1:0"], 1);
    let out = run(&["connect", "--binary", server.url()], b"plain\n\xff\x00\n");
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        vec!["plain".to_owned(), BASE64.encode(b"\xff\x00")]
    );
}

#[test]
fn count_exits_after_n_messages_with_stdin_still_open() {
    let server = serve(&["--ws", "127.0.0.1:0"], 1);
    let mut cmd = tcat();
    cmd.args(["connect", "--count", "2", server.url()]);
    let mut client = Proc::spawn(&mut cmd);
    client.write(b"one\ntwo\n");
    // stdin stays open: the exit comes from --count.
    let status = client.wait(WAIT);
    assert_eq!(status.code(), Some(0));
    assert_eq!(client.line(WAIT).as_deref(), Some("one"));
    assert_eq!(client.line(WAIT).as_deref(), Some("two"));
}

#[test]
fn count_ignores_stdin_eof_until_enough_messages_arrived() {
    let server = serve(&["--ws", "127.0.0.1:0"], 1);
    // Three lines and EOF, but only two messages are needed.
    let out = run(
        &["connect", "--count", "2", server.url()],
        b"one\ntwo\nthree\n",
    );
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, vec!["one", "two"]);
}

#[test]
fn many_lines_round_trip_without_stalling() {
    let server = serve(&["--ws", "127.0.0.1:0"], 1);
    let mut input = String::new();
    for i in 0..5_000 {
        writeln!(input, "line {i}").unwrap();
    }
    let out = run(&["connect", server.url()], input.as_bytes());
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.len(), 5_000);
    assert_eq!(out.stdout[4_999], "line 4999");
}

#[test]
fn invalid_utf8_line_in_text_mode_is_an_error() {
    let server = serve(&["--ws", "127.0.0.1:0"], 1);
    let out = run(&["connect", server.url()], b"ok\n\xff\n");
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("--binary"), "{}", out.stderr);
}
