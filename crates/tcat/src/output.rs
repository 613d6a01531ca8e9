//! Rendering received messages as stdout lines.
//!
//! * `text`: a text message is printed as is; a binary message is printed as is when its bytes
//!   are valid UTF-8, otherwise as standard padded base64. Newlines inside a message are
//!   printed as is, so such a message spans several lines: use `json` when that matters.
//! * `json`: `{"type":"text","data":"..."}` or `{"type":"binary","data":"<base64>"}`, one
//!   object per line; newlines are escaped by JSON, so one message is always one line. For
//!   SSE two fields follow: `"event"`, the event type (`"message"` when the event names none),
//!   and `"id"`, the last event id in force when the event was dispatched (what `EventSource`
//!   calls `lastEventId`), `null` when there is none. Binary messages (`transport.binary`
//!   events) and text carried as base64 (`transport.text64`) count as `"message"` with a
//!   `null` id: the SSE client reports neither for them.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use transport_core::Message;

use crate::cli::Format;

#[derive(Serialize)]
struct JsonLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    data: Cow<'a, str>,
}

/// A JSON line with the SSE fields.
#[derive(Serialize)]
struct SseJsonLine<'a> {
    #[serde(flatten)]
    line: JsonLine<'a>,
    event: &'a str,
    id: Option<&'a str>,
}

/// The default SSE event type.
const DEFAULT_EVENT: &str = "message";

/// Which fields a JSON line has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fields {
    /// `type` and `data` (WebSocket).
    Plain,
    /// `type`, `data`, `event` and `id` (SSE).
    Sse,
}

/// One message as one output line (or several, for text with newlines in text format),
/// newline included.
pub(crate) fn render(format: Format, fields: Fields, message: &Message) -> Vec<u8> {
    let mut line = match format {
        Format::Text => match message.as_text() {
            Some(text) => text.as_bytes().to_vec(),
            None => match std::str::from_utf8(message.as_bytes()) {
                Ok(text) => text.as_bytes().to_vec(),
                Err(_) => BASE64.encode(message.as_bytes()).into_bytes(),
            },
        },
        Format::Json => {
            let json = match message.as_text() {
                Some(text) => JsonLine {
                    kind: "text",
                    data: Cow::Borrowed(text),
                },
                None => JsonLine {
                    kind: "binary",
                    data: Cow::Owned(BASE64.encode(message.as_bytes())),
                },
            };
            // Serializing a struct of strings cannot fail; an empty object is a safe fallback
            // all the same.
            match fields {
                Fields::Plain => serde_json::to_vec(&json),
                Fields::Sse => {
                    let metadata = message.metadata();
                    serde_json::to_vec(&SseJsonLine {
                        line: json,
                        event: metadata
                            .and_then(|m| m.event.as_deref())
                            .unwrap_or(DEFAULT_EVENT),
                        id: metadata.and_then(|m| m.id.as_deref()),
                    })
                }
            }
            .unwrap_or_else(|_| b"{}".to_vec())
        }
    };
    line.push(b'\n');
    line
}

/// Writes rendered messages, flushing after each line so readers see it at once.
#[derive(Debug)]
pub(crate) struct Output<W> {
    format: Format,
    fields: Fields,
    out: W,
}

impl<W: AsyncWrite + Unpin> Output<W> {
    pub(crate) fn new(format: Format, fields: Fields, out: W) -> Self {
        Self {
            format,
            fields,
            out,
        }
    }

    /// Prints one message and flushes.
    pub(crate) async fn write(&mut self, message: &Message) -> std::io::Result<()> {
        self.out
            .write_all(&render(self.format, self.fields, message))
            .await?;
        self.out.flush().await
    }
}

#[cfg(test)]
mod tests {
    use transport_core::MessageMetadata;

    use super::*;

    fn text(format: Format, message: &Message) -> String {
        String::from_utf8(render(format, Fields::Plain, message)).unwrap()
    }

    fn sse(format: Format, message: &Message) -> String {
        String::from_utf8(render(format, Fields::Sse, message)).unwrap()
    }

    #[test]
    fn text_format() {
        assert_eq!(text(Format::Text, &Message::text("héllo")), "héllo\n");
        assert_eq!(text(Format::Text, &Message::text("a\nb")), "a\nb\n");
        assert_eq!(text(Format::Text, &Message::binary(&b"raw"[..])), "raw\n");
        assert_eq!(
            text(Format::Text, &Message::binary(vec![0xff, 0x00, 0x01])),
            "/wAB\n"
        );
        assert_eq!(text(Format::Text, &Message::text("")), "\n");
    }

    #[test]
    fn json_format() {
        assert_eq!(
            text(Format::Json, &Message::text("a\n\"é\"")),
            "{\"type\":\"text\",\"data\":\"a\\n\\\"é\\\"\"}\n"
        );
        assert_eq!(
            text(Format::Json, &Message::binary(vec![0xff, 0x00])),
            "{\"type\":\"binary\",\"data\":\"/wA=\"}\n"
        );
        let v: serde_json::Value = serde_json::from_slice(&render(
            Format::Json,
            Fields::Plain,
            &Message::binary(&b"ok"[..]),
        ))
        .unwrap();
        assert_eq!(v["type"], "binary");
        assert_eq!(v["data"], "b2s=");
    }

    #[test]
    fn sse_fields() {
        let typed = Message::text("a\nb")
            .with_metadata(MessageMetadata::new(Some("tick".into()), Some("7".into())));
        assert_eq!(
            sse(Format::Json, &typed),
            "{\"type\":\"text\",\"data\":\"a\\nb\",\"event\":\"tick\",\"id\":\"7\"}\n"
        );
        // Text format: the data as is, one line per data line.
        assert_eq!(sse(Format::Text, &typed), "a\nb\n");
        let plain = Message::text("x").with_metadata(MessageMetadata::new(None, None));
        assert_eq!(
            sse(Format::Json, &plain),
            "{\"type\":\"text\",\"data\":\"x\",\"event\":\"message\",\"id\":null}\n"
        );
        assert_eq!(
            sse(Format::Json, &Message::binary(vec![0xff, 0x00])),
            "{\"type\":\"binary\",\"data\":\"/wA=\",\"event\":\"message\",\"id\":null}\n"
        );
    }

    #[tokio::test]
    async fn output_writes_lines() {
        let mut out = Output::new(Format::Text, Fields::Plain, Vec::new());
        out.write(&Message::text("one")).await.unwrap();
        out.write(&Message::text("two")).await.unwrap();
        assert_eq!(out.out, b"one\ntwo\n");
    }
}
