//! The `eventsource/format-*` cases of web-platform-tests, ported to the sans-IO parser.
//!
//! Each test names the WPT file it ports and asserts the events (data, type, last event id)
//! and reconnection times that the browser test asserts. The WPT server scripts are mirrored
//! here as plain functions: `resources/message.py` answers `message + newline + "\n"` (newline
//! `"\n\n"` unless `newline=none`), `resources/last-event-id.py` and
//! `resources/last-event-id2.py` as noted at their helpers. A "connection" feeds one response
//! body and ends the stream; every body is also fed one byte at a time, which must not change
//! anything.
//!
//! Not ported: `format-mime-bogus`, `format-mime-trailing-semicolon` and
//! `format-mime-valid-bogus` check the response's `Content-Type`, which is the client's job
//! (it must fail the connection unless the type is `text/event-stream`), not the parser's.

use std::time::Duration;

use transport_sse::{SseEvent, SseParser};

/// What one connection produced.
#[derive(Debug, PartialEq)]
struct Connection {
    events: Vec<SseEvent>,
    retry: Option<Duration>,
}

/// Feeds one response body to `parser` and ends the stream, as a browser does with one
/// response. Checks that byte-at-a-time feeding gives the same.
fn connect(parser: &mut SseParser, body: &[u8]) -> Connection {
    let mut bytewise = parser.clone();
    let run = |p: &mut SseParser, chunks: &mut dyn Iterator<Item = &[u8]>| {
        let mut events = Vec::new();
        for chunk in chunks {
            p.feed(chunk);
            events.extend(p.events().map(|e| e.expect("no limit is reached")));
        }
        p.finish();
        Connection {
            events,
            retry: p.take_retry(),
        }
    };
    let whole = run(parser, &mut std::iter::once(body));
    let one_by_one = run(&mut bytewise, &mut body.chunks(1));
    assert_eq!(whole, one_by_one, "byte-at-a-time feeding differs");
    assert_eq!(parser.last_event_id(), bytewise.last_event_id());
    whole
}

/// `resources/message.py?message=...`: the message, then `"\n\n"`, then `"\n"`.
fn message_py(message: &[u8]) -> Vec<u8> {
    [message, b"\n\n\n"].concat()
}

/// `resources/message.py?message=...&newline=none`: the message, then `"\n"`.
fn message_py_no_newline(message: &[u8]) -> Vec<u8> {
    [message, b"\n"].concat()
}

/// `resources/last-event-id.py`: echoes the `Last-Event-ID` request header as data, or, when
/// there is none, sends `id: <idvalue>` (default U+2026) with `retry: 200` and `data: hello`.
fn last_event_id_py(last_event_id: &str, idvalue: &[u8]) -> Vec<u8> {
    if last_event_id.is_empty() {
        [b"id: ", idvalue, b"\nretry: 200\ndata: hello\n\n"].concat()
    } else {
        format!("data: {last_event_id}\n\n").into_bytes()
    }
}

/// A connection to `resources/last-event-id.py`, sending the parser's last event id.
fn connect_last_event_id_py(parser: &mut SseParser, idvalue: &[u8]) -> Connection {
    let body = last_event_id_py(parser.last_event_id(), idvalue);
    connect(parser, &body)
}

fn data(connection: &Connection) -> Vec<&str> {
    connection.events.iter().map(|e| e.data.as_str()).collect()
}

fn ids(connection: &Connection) -> Vec<&str> {
    connection.events.iter().map(|e| e.id.as_str()).collect()
}

/// eventsource/format-bom.js: a BOM is stripped only at the start of the stream; a later one
/// makes `\u{FEFF}data` an unknown field, so "2" never arrives.
#[test]
fn format_bom() {
    let body = message_py(b"\xEF\xBB\xBFdata:1\n\n\xEF\xBB\xBFdata:2\n\ndata:3");
    let c = connect(&mut SseParser::default(), &body);
    assert_eq!(data(&c), ["1", "3"]);
}

/// eventsource/format-bom-2.any.js: of two leading BOMs only the first is stripped, so the
/// first event is lost and "2" and "3" arrive.
#[test]
fn format_bom_2() {
    let body = message_py(b"\xEF\xBB\xBF\xEF\xBB\xBFdata:1\n\ndata:2\n\ndata:3");
    let c = connect(&mut SseParser::default(), &body);
    assert_eq!(data(&c), ["2", "3"]);
}

/// eventsource/format-comments.js: comments (empty, with NUL, long, looking like fields)
/// between data lines ended by CR, LF and CRLF.
#[test]
fn format_comments() {
    let long = "x".repeat(2 * 1024);
    let message =
        format!("data:1\r:\0\n:\r\ndata:2\n:{long}\rdata:3\n:data:fail\r:{long}\ndata:4\n");
    let c = connect(
        &mut SseParser::default(),
        &message_py_no_newline(message.as_bytes()),
    );
    assert_eq!(data(&c), ["1\n2\n3\n4"]);
}

/// eventsource/format-data-before-final-empty-line.js: the stream ends inside an event that set
/// an id; the event is discarded, the id never becomes the last event id, and after the
/// reconnect "test1" arrives again with an empty `lastEventId`.
#[test]
fn format_data_before_final_empty_line() {
    let body = message_py_no_newline(b"retry:1000\ndata:test1\n\nid:test\ndata:test2");
    let mut parser = SseParser::default();
    let first = connect(&mut parser, &body);
    assert_eq!(data(&first), ["test1"]);
    assert_eq!(first.retry, Some(Duration::from_secs(1)));
    assert_eq!(parser.last_event_id(), "", "Last-Event-ID of the reconnect");
    parser.reset_for_reconnect();
    let second = connect(&mut parser, &body);
    assert_eq!(data(&second), ["test1"]);
    assert_eq!(ids(&second), [""]);
}

/// eventsource/format-field-data.js: `data:` then an empty line dispatches an empty string;
/// two `data` lines without colon dispatch "\n"; the final event is "test".
#[test]
fn format_field_data() {
    let body = message_py(b"data:\n\ndata\ndata\n\ndata:test");
    let c = connect(&mut SseParser::default(), &body);
    assert_eq!(data(&c), ["", "\n", "test"]);
}

/// eventsource/format-field-event-empty.htm: `event: ` (empty after the space) leaves the
/// default type, so `onmessage` fires.
#[test]
fn format_field_event_empty() {
    let c = connect(
        &mut SseParser::default(),
        &message_py(b"event: \ndata:data"),
    );
    assert_eq!(data(&c), ["data"]);
    assert_eq!(c.events[0].event_type(), "message");
}

/// eventsource/format-field-event.htm: a "test" event is dispatched, then a plain message: the
/// type applies to one event only.
#[test]
fn format_field_event() {
    let c = connect(
        &mut SseParser::default(),
        &message_py(b"event:test\ndata:x\n\ndata:x"),
    );
    let types: Vec<_> = c.events.iter().map(SseEvent::event_type).collect();
    assert_eq!(types, ["test", "message"]);
    assert_eq!(data(&c), ["x", "x"]);
}

/// eventsource/format-field-id.htm: the id "…" (non-ASCII) is the event's `lastEventId`, is
/// sent back as `Last-Event-ID` on the reconnect, and stays the `lastEventId` of the echoed
/// event.
#[test]
fn format_field_id() {
    let mut parser = SseParser::default();
    let first = connect_last_event_id_py(&mut parser, "…".as_bytes());
    assert_eq!((data(&first), ids(&first)), (vec!["hello"], vec!["…"]));
    assert_eq!(first.retry, Some(Duration::from_millis(200)));
    parser.reset_for_reconnect();
    assert_eq!(parser.last_event_id(), "…");
    let second = connect_last_event_id_py(&mut parser, b"");
    assert_eq!((data(&second), ids(&second)), (vec!["…"], vec!["…"]));
}

/// eventsource/format-field-id-2.any.js: as format-field-id, over two reconnects: the id
/// persists across connections that do not set one.
#[test]
fn format_field_id_2() {
    let mut parser = SseParser::default();
    let first = connect_last_event_id_py(&mut parser, "…".as_bytes());
    assert_eq!((data(&first), ids(&first)), (vec!["hello"], vec!["…"]));
    for _ in 0..2 {
        parser.reset_for_reconnect();
        let next = connect_last_event_id_py(&mut parser, b"");
        assert_eq!((data(&next), ids(&next)), (vec!["…"], vec!["…"]));
    }
}

/// `resources/last-event-id2.py?type=N`.
fn last_event_id2_py(test_type: u8) -> &'static [u8] {
    match test_type {
        // ID_PERSISTS
        1 => b"id: 1\ndata: 1\n\ndata: 2\n\nid: 2\ndata:3\n\ndata:4\n\n",
        // ID_RESETS_1
        2 => b"id: 1\ndata: 1\n\nid:\ndata:2\n\ndata:3\n\n",
        // ID_RESETS_2: an `id` line without colon resets too.
        3 => b"id: 1\ndata: 1\n\nid\ndata:2\n\ndata:3\n\n",
        _ => b"data: invalid_test\n\n",
    }
}

/// eventsource/format-field-id-3 (its current version, with `last-event-id2.py` types 1-3): `lastEventId` persists over events without `id`,
/// changes with a new `id`, and is reset by `id:` or a bare `id`.
#[test]
fn format_field_id_3() {
    let c = connect(&mut SseParser::default(), last_event_id2_py(1));
    assert_eq!(data(&c), ["1", "2", "3", "4"]);
    assert_eq!(ids(&c), ["1", "1", "2", "2"]);
    for resets in [2, 3] {
        let c = connect(&mut SseParser::default(), last_event_id2_py(resets));
        assert_eq!(data(&c), ["1", "2", "3"]);
        assert_eq!(ids(&c), ["1", "", ""], "type={resets}");
    }
}

/// eventsource/format-field-id-null.window.js: an `id` value containing U+0000 anywhere is
/// ignored, so `lastEventId` stays empty and no `Last-Event-ID` goes out on the reconnect
/// (the server then says "hello" again).
#[test]
fn format_field_id_null() {
    for idvalue in [&b"\0\0"[..], b"x\0", b"\0x", b"x\0x", b" \0"] {
        let mut parser = SseParser::default();
        let c = connect_last_event_id_py(&mut parser, idvalue);
        assert_eq!(
            (data(&c), ids(&c)),
            (vec!["hello"], vec![""]),
            "{idvalue:?}"
        );
        parser.reset_for_reconnect();
        assert_eq!(parser.last_event_id(), "");
        let again = connect_last_event_id_py(&mut parser, idvalue);
        assert_eq!((data(&again), ids(&again)), (vec!["hello"], vec![""]));
    }
}

/// eventsource/format-field-parsing.js: NUL in values and names, case, a space after the
/// colon kept beyond the first, unknown names (`da-ta`, `data_5`, ` data`), CR/LF/CRLF.
#[test]
fn format_field_parsing() {
    let message = b"data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n";
    let c = connect(&mut SseParser::default(), &message_py_no_newline(message));
    assert_eq!(data(&c), ["\0\n 2\n1\n3\n\n4"]);
}

/// eventsource/format-field-retry-bogus.htm: `retry:1000x` is ignored; the reconnection time
/// stays 2000 ms.
#[test]
fn format_field_retry_bogus() {
    let c = connect(
        &mut SseParser::default(),
        &message_py(b"retry:2000\nretry:1000x\ndata:x"),
    );
    assert_eq!(c.retry, Some(Duration::from_secs(2)));
    assert_eq!(data(&c), ["x"]);
}

/// eventsource/format-field-retry-empty.js: a bare `retry` line is ignored and does not
/// disturb the event.
#[test]
fn format_field_retry_empty() {
    let c = connect(&mut SseParser::default(), &message_py(b"retry\ndata:test"));
    assert_eq!(c.retry, None);
    assert_eq!(data(&c), ["test"]);
}

/// eventsource/format-field-retry.htm: `retry:02000` is 2000 ms in base ten, not octal.
#[test]
fn format_field_retry() {
    let c = connect(
        &mut SseParser::default(),
        &message_py(b"retry:02000\ndata:x"),
    );
    assert_eq!(c.retry, Some(Duration::from_secs(2)));
    assert_eq!(data(&c), ["x"]);
}

/// eventsource/format-field-unknown.htm: a leading space makes ` data` unknown; lines without
/// colon, unknown fields and comments are ignored.
#[test]
fn format_field_unknown() {
    let message =
        b"data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test";
    let c = connect(&mut SseParser::default(), &message_py(message));
    assert_eq!(data(&c), ["test\n\ntest"]);
}

/// eventsource/format-leading-space.js: a tab after the colon is kept; one space is stripped;
/// a lone CR ends a line.
#[test]
fn format_leading_space() {
    let c = connect(
        &mut SseParser::default(),
        &message_py(b"data:\ttest\rdata: \ndata:test"),
    );
    assert_eq!(data(&c), ["\ttest\n\ntest"]);
}

/// eventsource/format-newlines.js: CRLF, LF, and a final CR whose LF comes from the server's
/// trailing newline, all as single line breaks.
#[test]
fn format_newlines() {
    let body = message_py_no_newline(b"data:test\r\ndata\ndata:test\r\n\r");
    let c = connect(&mut SseParser::default(), &body);
    assert_eq!(data(&c), ["test\n\ntest"]);
}

/// eventsource/format-null-character.html: U+0000 in data is delivered, not an error.
#[test]
fn format_null_character() {
    let c = connect(&mut SseParser::default(), &message_py(b"data:\0\n\n"));
    assert_eq!(data(&c), ["\0"]);
}

/// eventsource/format-utf-8.any.js: the stream is always UTF-8, whatever `charset` the
/// Content-Type claims (windows-1252 there; the header is the client's concern).
#[test]
fn format_utf_8() {
    let c = connect(
        &mut SseParser::default(),
        &message_py(b"data:ok\xE2\x80\xA6"),
    );
    assert_eq!(data(&c), ["ok…"]);
}
