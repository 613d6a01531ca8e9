//! The two-way SSE wire protocol shared by client and server (`docs/protocols/sse.md`):
//! reserved event types, header names, content types, the batch body codec, and how messages
//! become events.

use bytes::{BufMut, Bytes, BytesMut};
use transport_core::{CloseFrame, Message, TransportError};

/// First event of a session: `{"session":..,"send":..}`.
pub const EVENT_SESSION: &str = "transport.session";
/// A binary message, data = base64.
pub const EVENT_BINARY: &str = "transport.binary";
/// A text message containing CR, data = base64 of its UTF-8.
pub const EVENT_TEXT64: &str = "transport.text64";
/// The server closes: `{"code":..,"reason":..}`, then the response ends.
pub const EVENT_CLOSE: &str = "transport.close";
/// Prefix reserved for the protocol's own event types.
pub const RESERVED_PREFIX: &str = "transport.";

/// Response header with the session token.
pub const HEADER_SESSION: &str = "x-transport-session";
/// Response header with the send URL (path).
pub const HEADER_SEND: &str = "x-transport-send";

/// One text message per POST.
pub const CONTENT_TEXT: &str = "text/plain; charset=utf-8";
/// One binary message per POST.
pub const CONTENT_BINARY: &str = "application/octet-stream";
/// Several messages per POST (see [`encode_batch_frame`]).
pub const CONTENT_BATCH: &str = "application/vnd.transport.batch";
/// Closing the session: `{"code":..,"reason":..}`.
pub const CONTENT_CLOSE: &str = "application/vnd.transport.close+json";

const FRAME_TEXT: u8 = 0x01;
const FRAME_BINARY: u8 = 0x02;

/// Appends one message to a batch body.
pub fn encode_batch_frame(out: &mut BytesMut, message: &Message) {
    let payload = message.as_bytes();
    out.reserve(5 + payload.len());
    out.put_u8(if message.is_text() {
        FRAME_TEXT
    } else {
        FRAME_BINARY
    });
    // Messages are bounded by max_message_size, far below 4 GiB.
    out.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    out.put_slice(payload);
}

/// Decodes a batch body into messages, refusing any message over `max_message_size`.
///
/// # Errors
/// [`TransportError::ProtocolViolation`] for a truncated frame or unknown type,
/// [`TransportError::InvalidUtf8`] for bad text, [`TransportError::MessageTooLarge`].
pub fn decode_batch(
    mut body: Bytes,
    max_message_size: usize,
) -> Result<Vec<Message>, TransportError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        if body.len() < 5 {
            return Err(TransportError::protocol("truncated batch frame header"));
        }
        let kind = body[0];
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        if len > max_message_size {
            return Err(TransportError::MessageTooLarge {
                size: len,
                limit: max_message_size,
            });
        }
        if body.len() < 5 + len {
            return Err(TransportError::protocol("truncated batch frame payload"));
        }
        let _ = body.split_to(5);
        let payload = body.split_to(len);
        out.push(match kind {
            FRAME_TEXT => Message::text_from_bytes(payload)?,
            FRAME_BINARY => Message::binary(payload),
            other => {
                return Err(TransportError::protocol(format!(
                    "unknown batch frame type {other:#04x}"
                )));
            }
        });
    }
    Ok(out)
}

/// JSON of a close frame: `{"code":1000,"reason":"..."}`.
pub fn close_json(frame: &CloseFrame) -> String {
    serde_json::json!({ "code": frame.code, "reason": frame.reason }).to_string()
}

/// Parses a close frame's JSON.
///
/// # Errors
/// [`TransportError::ProtocolViolation`] when it is not `{"code":u16,"reason":string}`.
pub fn parse_close_json(data: &[u8]) -> Result<CloseFrame, TransportError> {
    #[derive(serde::Deserialize)]
    struct Close {
        code: u16,
        #[serde(default)]
        reason: String,
    }
    let c: Close = serde_json::from_slice(data)
        .map_err(|e| TransportError::protocol(format!("close body: {e}")))?;
    Ok(CloseFrame::new(c.code, c.reason))
}

/// JSON of the session event.
pub fn session_json(token: &str, send_path: &str) -> String {
    serde_json::json!({ "session": token, "send": send_path }).to_string()
}

/// Parses the session event's data: `(token, send path)`.
///
/// # Errors
/// [`TransportError::ProtocolViolation`] when malformed.
pub fn parse_session_json(data: &str) -> Result<(String, String), TransportError> {
    #[derive(serde::Deserialize)]
    struct Session {
        session: String,
        send: String,
    }
    let s: Session = serde_json::from_str(data)
        .map_err(|e| TransportError::protocol(format!("session event: {e}")))?;
    Ok((s.session, s.send))
}

/// Writes one event to `out`: optional `id`, optional `event`, and `data` lines.
pub fn write_event(out: &mut BytesMut, id: Option<&str>, event: Option<&str>, data: &str) {
    if let Some(id) = id {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    if let Some(event) = event {
        out.put_slice(b"event: ");
        out.put_slice(event.as_bytes());
        out.put_u8(b'\n');
    }
    // memchr's vectorised search, not `str::split`: the std search walks the data a word at
    // a time, about 2 instructions a byte (callgrind: ~4,000 instructions per 4 KiB event).
    let data = data.as_bytes();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', data) {
        out.put_slice(b"data: ");
        out.put_slice(&data[start..end]);
        out.put_u8(b'\n');
        start = end + 1;
    }
    out.put_slice(b"data: ");
    out.put_slice(&data[start..]);
    out.put_slice(b"\n\n");
}

/// Writes `message` as one event with the id `<token>.<seq>`, as [`message_to_event`] and
/// [`write_event`] together would, with one pass over a text's bytes for the common case: a
/// single search for CR or LF. None: the text is one `data` line. An LF first: the text is
/// split into lines (after a search for a CR in the rest). A CR first: base64.
///
/// # Errors
/// [`TransportError::InvalidConfig`] for an unusable application event type; nothing is
/// written then.
pub fn write_message_event(
    out: &mut BytesMut,
    token: &str,
    seq: u64,
    message: &Message,
) -> Result<(), TransportError> {
    let text = match message.as_text() {
        Some(text) => match memchr::memchr2(b'\r', b'\n', text.as_bytes()) {
            None => Some((text, false)),
            Some(at) if text.as_bytes()[at] == b'\n' => {
                (memchr::memchr(b'\r', &text.as_bytes()[at + 1..]).is_none())
                    .then_some((text, true))
            }
            Some(_) => None,
        },
        None => None,
    };
    let Some((text, multiline)) = text else {
        // Binary, or text with a CR: base64 under a reserved type.
        let (event, data) = message_to_event(message)?;
        write_id(out, token, seq);
        write_event(out, None, event.as_deref(), &data);
        return Ok(());
    };
    let event = message.metadata().and_then(|m| m.event.as_deref());
    if let Some(e) = event {
        check_event_type(e)?;
    }
    write_id(out, token, seq);
    if multiline {
        write_event(out, None, event, text);
    } else {
        if let Some(event) = event {
            out.put_slice(b"event: ");
            out.put_slice(event.as_bytes());
            out.put_u8(b'\n');
        }
        out.put_slice(b"data: ");
        out.put_slice(text.as_bytes());
        out.put_slice(b"\n\n");
    }
    Ok(())
}

/// `id: <token>.<seq>\n`, the number written without `fmt`.
fn write_id(out: &mut BytesMut, token: &str, mut seq: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // `seq % 10` is below 10.
        digits[at] = b'0' + (seq % 10) as u8;
        seq /= 10;
        if seq == 0 {
            break;
        }
    }
    out.put_slice(b"id: ");
    out.put_slice(token.as_bytes());
    out.put_u8(b'.');
    out.put_slice(&digits[at..]);
    out.put_u8(b'\n');
}

/// An application event type must not contain line breaks nor use the reserved prefix.
fn check_event_type(e: &str) -> Result<(), TransportError> {
    if e.contains(['\r', '\n']) || e.starts_with(RESERVED_PREFIX) {
        return Err(TransportError::InvalidConfig(format!(
            "event type {e:?} has a line break or the reserved prefix {RESERVED_PREFIX:?}"
        )));
    }
    Ok(())
}

/// How a message is written as an event: `(event type, data)`. Binary and CR-containing text
/// are base64-encoded under reserved types; an application event type must not contain line
/// breaks and must not use the reserved prefix.
///
/// # Errors
/// [`TransportError::InvalidConfig`] for an unusable application event type.
pub fn message_to_event(
    message: &Message,
) -> Result<(Option<String>, std::borrow::Cow<'_, str>), TransportError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    match message.as_text() {
        None => Ok((
            Some(EVENT_BINARY.into()),
            b64.encode(message.as_bytes()).into(),
        )),
        // memchr rather than `str::contains`, for the same reason as in `write_event`.
        Some(text) if memchr::memchr(b'\r', text.as_bytes()).is_some() => {
            Ok((Some(EVENT_TEXT64.into()), b64.encode(text).into()))
        }
        Some(text) => {
            let event = message.metadata().and_then(|m| m.event.clone());
            if let Some(e) = &event {
                check_event_type(e)?;
            }
            Ok((event, text.into()))
        }
    }
}

/// Decodes base64 event data (for [`EVENT_BINARY`] and [`EVENT_TEXT64`]).
///
/// # Errors
/// [`TransportError::ProtocolViolation`] for bad base64, [`TransportError::InvalidUtf8`] for
/// text64 that is not UTF-8.
pub fn decode_b64(data: &str, text: bool) -> Result<Message, TransportError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| TransportError::protocol(format!("bad base64 in event data: {e}")))?;
    if text {
        Message::text_from_bytes(bytes)
    } else {
        Ok(Message::binary(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_roundtrip() {
        let msgs = vec![
            Message::text("héllo"),
            Message::binary(vec![0, 1, 2]),
            Message::text(""),
            Message::binary(Vec::new()),
        ];
        let mut buf = BytesMut::new();
        for m in &msgs {
            encode_batch_frame(&mut buf, m);
        }
        assert_eq!(decode_batch(buf.freeze(), 1024).unwrap(), msgs);
    }

    #[test]
    fn batch_errors_are_typed() {
        assert!(matches!(
            decode_batch(Bytes::from_static(&[1, 0, 0]), 10),
            Err(TransportError::ProtocolViolation { .. })
        ));
        assert!(matches!(
            decode_batch(Bytes::from_static(&[1, 0, 0, 0, 5, b'a']), 10),
            Err(TransportError::ProtocolViolation { .. })
        ));
        assert!(matches!(
            decode_batch(Bytes::from_static(&[1, 0, 0, 0, 11]), 10),
            Err(TransportError::MessageTooLarge {
                size: 11,
                limit: 10
            })
        ));
        assert!(matches!(
            decode_batch(Bytes::from_static(&[1, 0, 0, 0, 1, 0xff]), 10),
            Err(TransportError::InvalidUtf8 { .. })
        ));
        assert!(matches!(
            decode_batch(Bytes::from_static(&[9, 0, 0, 0, 0]), 10),
            Err(TransportError::ProtocolViolation { .. })
        ));
    }

    #[test]
    fn events_are_written_per_spec() {
        let mut out = BytesMut::new();
        write_event(&mut out, Some("t.1"), Some("tick"), "a\nb");
        assert_eq!(&out[..], b"id: t.1\nevent: tick\ndata: a\ndata: b\n\n");
    }

    #[test]
    fn data_lines_split_at_every_lf() {
        // Each LF starts a new `data` line, including a leading, trailing or doubled one and
        // one beyond the first vector of a long text.
        let long = format!("{}\n{}", "x".repeat(100), "y".repeat(70));
        for data in ["", "\n", "a\n", "\na", "a\n\nb", "é\nü", long.as_str()] {
            let mut out = BytesMut::new();
            write_event(&mut out, None, None, data);
            let mut expected = String::new();
            for line in data.split('\n') {
                expected.push_str("data: ");
                expected.push_str(line);
                expected.push('\n');
            }
            expected.push('\n');
            assert_eq!(std::str::from_utf8(&out).unwrap(), expected, "{data:?}");
        }
    }

    #[test]
    fn messages_map_to_events_and_back() {
        let binary = Message::binary(vec![0xff, 0]);
        let (e, d) = message_to_event(&binary).unwrap();
        assert_eq!(e.as_deref(), Some(EVENT_BINARY));
        assert_eq!(
            decode_b64(&d, false).unwrap(),
            Message::binary(vec![0xff, 0])
        );
        let crlf = Message::text("a\r\nb");
        let (e, d) = message_to_event(&crlf).unwrap();
        assert_eq!(e.as_deref(), Some(EVENT_TEXT64));
        assert_eq!(decode_b64(&d, true).unwrap(), Message::text("a\r\nb"));
        let late_cr = Message::text(format!("{}\r", "x".repeat(100)));
        let (e, _) = message_to_event(&late_cr).unwrap();
        assert_eq!(
            e.as_deref(),
            Some(EVENT_TEXT64),
            "a CR past the first vector"
        );
        let plain = Message::text("plain");
        let (e, d) = message_to_event(&plain).unwrap();
        assert_eq!((e, d.as_ref()), (None, "plain"));
        let bad = Message::text("x").with_metadata(transport_core::MessageMetadata::new(
            Some("transport.x".into()),
            None,
        ));
        assert!(message_to_event(&bad).is_err());
    }

    #[test]
    fn message_events_match_the_two_step_encoding() {
        use transport_core::MessageMetadata;
        let typed = |text: &str, event: &str| {
            Message::text(text).with_metadata(MessageMetadata::new(Some(event.into()), None))
        };
        let long = "y".repeat(100);
        let messages = [
            Message::text(""),
            Message::text("plain"),
            Message::text("a\nb\n"),
            Message::text(format!("{long}\n{long}")),
            Message::text("a\r\nb"),
            Message::text(format!("a\n{long}\r")),
            Message::text(format!("{long}\r")),
            Message::binary(vec![0xff, 0, b'\n']),
            typed("tick", "update"),
            typed("a\nb", "update"),
            typed("a\rb", "update"),
        ];
        for message in &messages {
            for seq in [0, 7, 10, 1234, u64::MAX] {
                let mut out = BytesMut::new();
                write_message_event(&mut out, "tok", seq, message).unwrap();
                let (event, data) = message_to_event(message).unwrap();
                let mut expected = BytesMut::new();
                let id = format!("tok.{seq}");
                write_event(&mut expected, Some(&id), event.as_deref(), &data);
                assert_eq!(out, expected, "{message:?} {seq}");
            }
        }
        for bad in ["transport.x", "a\nb", "a\r"] {
            let mut out = BytesMut::new();
            let err = write_message_event(&mut out, "tok", 1, &typed("x", bad)).unwrap_err();
            assert!(matches!(err, TransportError::InvalidConfig(_)), "{bad:?}");
            assert!(out.is_empty(), "nothing written for {bad:?}");
        }
    }

    #[test]
    fn json_bodies() {
        let f = CloseFrame::new(4000, "bye \"now\"");
        assert_eq!(parse_close_json(close_json(&f).as_bytes()).unwrap(), f);
        assert!(parse_close_json(b"{}").is_err());
        let (t, s) = parse_session_json(&session_json("abc", "/events/send/abc")).unwrap();
        assert_eq!((t.as_str(), s.as_str()), ("abc", "/events/send/abc"));
    }
}
