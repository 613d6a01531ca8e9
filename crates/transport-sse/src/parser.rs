//! The sans-IO event stream parser: WHATWG HTML §9.2.6 "Interpreting an event stream".
//!
//! Bytes go in through [`SseParser::feed`], events come out of [`SseParser::next_event`].
//! Complete lines are handled straight from the caller's chunk; only a line cut by a chunk
//! boundary is copied, into a buffer bounded by [`ParserLimits::max_line_length`].

use std::collections::VecDeque;
use std::mem;
use std::time::Duration;

use memchr::{memchr, memchr2};
use transport_core::TransportError;

/// Longest line accepted by default: 64 KiB, well above any sane field, small enough that a
/// peer that never sends a newline cannot make the parser hold much.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 64 * 1024;

/// Largest event data accepted by default: 1 MiB, room for big JSON payloads while bounding
/// what one event can make the parser hold.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 1024 * 1024;

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// How much the parser may hold while a line or an event is still arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParserLimits {
    /// Longest line, in bytes, not counting its line break. Comment lines (`:...`) are exempt:
    /// they are skipped without being stored. Default: [`DEFAULT_MAX_LINE_LENGTH`].
    pub max_line_length: usize,
    /// Largest data of one event, in bytes of UTF-8 after decoding, counting one LF per `data`
    /// line. Default: [`DEFAULT_MAX_EVENT_SIZE`].
    pub max_event_size: usize,
    /// What bytes that are not UTF-8 do. Default: [`InvalidUtf8::Reject`].
    pub invalid_utf8: InvalidUtf8,
}

/// What the parser does with an `event`, `data` or `id` value that is not valid UTF-8.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidUtf8 {
    /// The event holding it is not dispatched: [`ParseError::InvalidUtf8`] takes its place (an
    /// invalid `id` is not taken either), and parsing goes on with the next event. Nothing is
    /// converted lossily: an application never sees a message that differs from what was sent.
    #[default]
    Reject,
    /// The standard's rule (and browsers' `EventSource`): invalid sequences become U+FFFD.
    Replace,
}

impl Default for ParserLimits {
    fn default() -> Self {
        Self {
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
            invalid_utf8: InvalidUtf8::Reject,
        }
    }
}

impl ParserLimits {
    /// Sets the longest line, in bytes.
    pub fn max_line_length(&mut self, bytes: usize) -> &mut Self {
        self.max_line_length = bytes;
        self
    }

    /// Sets the largest event data, in bytes.
    pub fn max_event_size(&mut self, bytes: usize) -> &mut Self {
        self.max_event_size = bytes;
        self
    }

    /// Sets what bytes that are not UTF-8 do.
    pub fn invalid_utf8(&mut self, policy: InvalidUtf8) -> &mut Self {
        self.invalid_utf8 = policy;
        self
    }
}

/// A limit of [`ParserLimits`] was exceeded.
///
/// The parser has already recovered when it reports one: the event the offending line belonged
/// to is discarded (never dispatched, though its `id` still counts, so a reconnect resumes after
/// it), and parsing goes on with the next event. A client that would rather not skip events
/// drops the stream. Retrying the same stream cannot help: the peer will send the same thing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A line grew past [`ParserLimits::max_line_length`]. Reported as soon as the limit is
    /// passed, before the line's end has arrived; the rest of the line is skipped.
    #[error("event stream line longer than {limit} bytes")]
    LineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// The data of an event grew past [`ParserLimits::max_event_size`]. Its further `data`
    /// lines are skipped up to the empty line that ends it; reported once per event.
    #[error("event data larger than {limit} bytes")]
    EventTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// An `event`, `data` or `id` value of the event was not valid UTF-8 (with
    /// [`InvalidUtf8::Reject`], the default); reported once per event.
    #[error("event stream value is not valid UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 {
        /// Length of the value's longest valid prefix.
        valid_up_to: usize,
    },
}

impl From<ParseError> for TransportError {
    /// Both limits become [`TransportError::MessageTooLarge`]; the size is a lower bound
    /// (one byte over the limit), as the rest was never buffered.
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::LineTooLong { limit } | ParseError::EventTooLarge { limit } => {
                TransportError::MessageTooLarge {
                    size: limit.saturating_add(1),
                    limit,
                }
            }
            ParseError::InvalidUtf8 { valid_up_to } => TransportError::InvalidUtf8 { valid_up_to },
        }
    }
}

/// One dispatched event: the spec's `MessageEvent` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type from the `event` field; `None` means the default type, `message` (see
    /// [`SseEvent::event_type`]). Matches [`transport_core::MessageMetadata::event`].
    pub event: Option<String>,
    /// The `data` lines joined with LF.
    pub data: String,
    /// The last event id in force when the event was dispatched (empty when none was set).
    pub id: String,
}

impl SseEvent {
    /// The event type: the `event` field, or `"message"` when none was given.
    pub fn event_type(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// What is known about a line that a chunk boundary cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partial {
    /// No line is in progress.
    None,
    /// The line so far is in `SseParser::line`.
    Buffering,
    /// A comment: skipped without storing it.
    Comment,
    /// A line past the limit (already reported): skipped up to its end.
    TooLong,
}

/// The event stream parser. Sans-IO: it never reads a socket or a clock.
///
/// Feed it the response body in chunks of any size with [`feed`](Self::feed), take events with
/// [`next_event`](Self::next_event) (or [`events`](Self::events)) after each feed, call
/// [`finish`](Self::finish) when the body ends. The same parser (or a clone) serves the next
/// connection: the last event id carries over.
///
/// Chunking never changes the result: the events, errors, id and retry are the same whether the
/// stream arrives whole or one byte at a time.
#[derive(Debug, Clone)]
pub struct SseParser {
    limits: ParserLimits,
    /// Bytes of the UTF-8 BOM matched so far at the start of the stream; `None` once past it.
    bom_matched: Option<usize>,
    /// The previous chunk ended in CR: an LF starting the next one belongs to that break.
    skip_lf: bool,
    partial: Partial,
    line: Vec<u8>,
    data: String,
    event_type: String,
    /// The spec's "last event ID buffer": set by `id` lines of the event being assembled.
    id_buffer: String,
    /// The spec's "last event ID string": the buffer as of the latest dispatch.
    last_event_id: String,
    /// The event being assembled hit a limit: dispatch nothing for it.
    discard_event: bool,
    retry: Option<u64>,
    ready: VecDeque<Result<SseEvent, ParseError>>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(ParserLimits::default())
    }
}

impl SseParser {
    /// A parser for a new stream, with no last event id.
    pub fn new(limits: ParserLimits) -> Self {
        Self {
            limits,
            bom_matched: Some(0),
            skip_lf: false,
            partial: Partial::None,
            line: Vec::new(),
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            discard_event: false,
            retry: None,
            ready: VecDeque::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> ParserLimits {
        self.limits
    }

    /// Parses the next piece of the stream. Events it completes are queued for
    /// [`next_event`](Self::next_event); take them before the next feed, as the queue is only
    /// bounded by what is fed.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        if let Some(matched) = self.bom_matched {
            chunk = self.strip_bom(matched, chunk);
        }
        if chunk.is_empty() {
            return;
        }
        if mem::take(&mut self.skip_lf) && chunk[0] == b'\n' {
            chunk = &chunk[1..];
        }
        if self.partial != Partial::None {
            let Some(end) = memchr2(b'\r', b'\n', chunk) else {
                self.extend_partial(chunk);
                return;
            };
            self.extend_partial(&chunk[..end]);
            self.end_partial();
            chunk = self.after_break(chunk, end);
        }
        while let Some(end) = memchr2(b'\r', b'\n', chunk) {
            self.line(&chunk[..end]);
            chunk = self.after_break(chunk, end);
        }
        if !chunk.is_empty() {
            self.start_partial(chunk);
        }
    }

    /// The next event, or a limit error, in stream order; `None` when the fed bytes hold no
    /// more complete events.
    pub fn next_event(&mut self) -> Option<Result<SseEvent, ParseError>> {
        self.ready.pop_front()
    }

    /// The queued events, one [`next_event`](Self::next_event) call per item: those not taken
    /// when the iterator is dropped stay queued.
    pub fn events(&mut self) -> impl Iterator<Item = Result<SseEvent, ParseError>> + '_ {
        std::iter::from_fn(|| self.ready.pop_front())
    }

    /// The stream ended: the event not yet ended by an empty line is discarded, as are `id`
    /// lines not yet followed by an empty line. The next byte fed starts a new stream (its BOM
    /// is stripped again); the last event id and queued events are kept.
    pub fn finish(&mut self) {
        self.bom_matched = Some(0);
        self.skip_lf = false;
        self.partial = Partial::None;
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        self.id_buffer.clone_from(&self.last_event_id);
        self.discard_event = false;
    }

    /// A new connection is starting: the same as [`finish`](Self::finish), under the name a
    /// reconnecting client looks for. Whatever was left of the old stream is discarded; the
    /// last event id (to send as `Last-Event-ID`) is kept.
    pub fn reset_for_reconnect(&mut self) {
        self.finish();
    }

    /// The last event id: the id in force at the latest dispatch (an empty line), kept across
    /// events and reconnects. Empty when none was set, or when the server reset it with an
    /// empty `id`. This is the value for the `Last-Event-ID` header of a reconnect.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Sets the last event id, e.g. one persisted from an earlier session. Takes effect for the
    /// events that follow, as if the server had sent it.
    pub fn set_last_event_id(&mut self, id: impl Into<String>) {
        self.last_event_id = id.into();
        self.id_buffer.clone_from(&self.last_event_id);
    }

    /// The reconnection time from the latest valid `retry` field since the previous call, if
    /// any. Values past `u64::MAX` milliseconds saturate.
    pub fn take_retry(&mut self) -> Option<Duration> {
        self.retry.take().map(Duration::from_millis)
    }

    /// Bytes held by the buffers of the line and of the event data still arriving (their
    /// capacities): never more than `max_line_length + max_event_size`. The event type and
    /// last event id add at most three times `max_line_length` each (with
    /// [`InvalidUtf8::Replace`], an invalid byte decodes to the three bytes of U+FFFD); queued
    /// events are the caller's to take.
    pub fn buffered_bytes(&self) -> usize {
        self.line.capacity() + self.data.capacity()
    }

    /// Strips the stream's leading BOM, which may arrive split across chunks. Bytes that turn
    /// out not to be a BOM are parsed as ordinary input.
    fn strip_bom<'a>(&mut self, matched: usize, chunk: &'a [u8]) -> &'a [u8] {
        let want = &BOM[matched..];
        let n = want.len().min(chunk.len());
        if chunk[..n] == want[..n] {
            if n == want.len() {
                self.bom_matched = None;
            } else {
                self.bom_matched = Some(matched + n);
            }
            return &chunk[n..];
        }
        self.bom_matched = None;
        if matched > 0 {
            // The start of a BOM that was not one: it begins the first line.
            self.start_partial(&BOM[..matched]);
        }
        chunk
    }

    /// Skips the line break at `chunk[end]`: CRLF, LF or a lone CR, even when the LF of a CRLF
    /// is in the next chunk.
    fn after_break<'a>(&mut self, chunk: &'a [u8], end: usize) -> &'a [u8] {
        let rest = &chunk[end + 1..];
        if chunk[end] == b'\r' {
            match rest.first() {
                Some(b'\n') => return &rest[1..],
                None => self.skip_lf = true,
                Some(_) => {}
            }
        }
        rest
    }

    fn start_partial(&mut self, bytes: &[u8]) {
        if bytes[0] == b':' {
            self.partial = Partial::Comment;
        } else {
            self.partial = Partial::Buffering;
            self.extend_partial(bytes);
        }
    }

    fn extend_partial(&mut self, bytes: &[u8]) {
        if self.partial != Partial::Buffering {
            return;
        }
        let limit = self.limits.max_line_length;
        let needed = self.line.len() + bytes.len();
        if needed > limit {
            self.line_too_long();
            self.partial = Partial::TooLong;
            self.line.clear();
            return;
        }
        self.line.reserve_exact(room(
            self.line.len(),
            self.line.capacity(),
            bytes.len(),
            limit,
        ));
        self.line.extend_from_slice(bytes);
    }

    fn end_partial(&mut self) {
        if self.partial == Partial::Buffering {
            let line = mem::take(&mut self.line);
            self.line(&line);
            self.line = line;
            self.line.clear();
        }
        self.partial = Partial::None;
    }

    fn line_too_long(&mut self) {
        self.ready.push_back(Err(ParseError::LineTooLong {
            limit: self.limits.max_line_length,
        }));
        self.discard_event = true;
        self.data.clear();
    }

    /// Interprets one complete line (without its line break).
    fn line(&mut self, line: &[u8]) {
        let Some(&first) = line.first() else {
            self.dispatch();
            return;
        };
        if first == b':' {
            return;
        }
        if line.len() > self.limits.max_line_length {
            self.line_too_long();
            return;
        }
        // Field names are ASCII, so comparing bytes is comparing the decoded names, and a
        // colon byte is never part of a multi-byte or invalid sequence.
        let (name, value) = match memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => self.data_field(value),
            b"event" => {
                if let Some(value) = self.text(value) {
                    self.event_type.clear();
                    self.event_type.push_str(&value);
                }
            }
            // U+0000 is the byte 0 in UTF-8, never part of another sequence.
            b"id" if memchr(0, value).is_none() => {
                if let Some(value) = self.text(value) {
                    self.id_buffer.clear();
                    self.id_buffer.push_str(&value);
                }
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                let ms = value.iter().fold(0_u64, |ms, digit| {
                    ms.saturating_mul(10)
                        .saturating_add(u64::from(digit - b'0'))
                });
                self.retry = Some(ms);
            }
            _ => {}
        }
    }

    fn data_field(&mut self, value: &[u8]) {
        if self.discard_event {
            return;
        }
        let Some(value) = self.text(value) else {
            return;
        };
        let limit = self.limits.max_event_size;
        if self.data.len() + value.len() + 1 > limit {
            self.ready
                .push_back(Err(ParseError::EventTooLarge { limit }));
            self.discard_event = true;
            self.data = String::new();
            return;
        }
        self.data.reserve_exact(room(
            self.data.len(),
            self.data.capacity(),
            value.len() + 1,
            limit,
        ));
        self.data.push_str(&value);
        self.data.push('\n');
    }

    /// An empty line: dispatches the event being assembled.
    fn dispatch(&mut self) {
        if self.last_event_id != self.id_buffer {
            self.last_event_id.clone_from(&self.id_buffer);
        }
        if mem::take(&mut self.discard_event) || self.data.is_empty() {
            self.data.clear();
            self.event_type.clear();
            return;
        }
        self.data.pop();
        let event = (!self.event_type.is_empty()).then(|| mem::take(&mut self.event_type));
        self.ready.push_back(Ok(SseEvent {
            event,
            data: mem::take(&mut self.data),
            id: self.last_event_id.clone(),
        }));
    }

    /// `bytes` as UTF-8; what is not is replaced or rejected as [`ParserLimits::invalid_utf8`]
    /// says (`None`: rejected, the event discarded and the error queued once). Valid input (the
    /// usual case) is checked by `simdutf8` (AVX2 or SSE4.2 when the CPU has them, chosen at
    /// run time; callgrind: ~0.13 instructions a byte, against ~0.5 for `str::from_utf8`'s
    /// word-at-a-time ASCII path and ~7 for `from_utf8_lossy`'s byte-by-byte walk, which only
    /// invalid input takes). It is the only check: the `&str` it returns is copied into the
    /// event's `String` as it is.
    fn text<'a>(&mut self, bytes: &'a [u8]) -> Option<std::borrow::Cow<'a, str>> {
        if let Ok(text) = simdutf8::basic::from_utf8(bytes) {
            return Some(std::borrow::Cow::Borrowed(text));
        }
        match self.limits.invalid_utf8 {
            InvalidUtf8::Replace => Some(String::from_utf8_lossy(bytes)),
            InvalidUtf8::Reject => {
                if !self.discard_event {
                    let valid_up_to = std::str::from_utf8(bytes)
                        .err()
                        .map_or(0, |e| e.valid_up_to());
                    self.ready
                        .push_back(Err(ParseError::InvalidUtf8 { valid_up_to }));
                    self.discard_event = true;
                    self.data = String::new();
                }
                None
            }
        }
    }
}

/// How much to `reserve_exact` so that `additional` more bytes fit: the buffer grows
/// geometrically, as `Vec` does, but never past `limit` (the caller has checked that
/// `len + additional <= limit`).
fn room(len: usize, capacity: usize, additional: usize, limit: usize) -> usize {
    let needed = len + additional;
    if needed <= capacity {
        return 0;
    }
    needed.max(capacity * 2).max(64).min(limit).max(needed) - len
}

#[cfg(test)]
mod tests {
    use super::*;

    type Item = Result<SseEvent, ParseError>;

    #[allow(clippy::unnecessary_wraps)] // Compared with parser output, which is a `Result`.
    fn event(event: Option<&str>, data: &str, id: &str) -> Item {
        Ok(SseEvent {
            event: event.map(str::to_owned),
            data: data.to_owned(),
            id: id.to_owned(),
        })
    }

    fn msg(data: &str) -> Item {
        event(None, data, "")
    }

    fn feed_all(p: &mut SseParser, chunks: &[&[u8]]) -> Vec<Item> {
        for chunk in chunks {
            p.feed(chunk);
        }
        p.events().collect()
    }

    fn parse(input: &[u8]) -> Vec<Item> {
        feed_all(&mut SseParser::default(), &[input])
    }

    fn small(max_line_length: usize, max_event_size: usize) -> SseParser {
        let mut limits = ParserLimits::default();
        limits
            .max_line_length(max_line_length)
            .max_event_size(max_event_size);
        SseParser::new(limits)
    }

    #[test]
    fn lines_end_in_crlf_lf_or_lone_cr() {
        assert_eq!(parse(b"data:a\r\ndata:b\rdata:c\n\r\n"), [msg("a\nb\nc")]);
        // CR CR is two line breaks, LF CR too; CR LF is one.
        assert_eq!(
            parse(b"data:a\r\rdata:b\n\rdata:c\r\n\r\n"),
            [msg("a"), msg("b"), msg("c")]
        );
    }

    #[test]
    fn crlf_split_across_chunks_is_one_break() {
        let mut p = SseParser::default();
        let chunks: [&[u8]; 6] = [
            b"data:a\r",
            b"\ndata:b\r",
            b"",
            b"\n\r",
            b"\n",
            b"data:c\r\r",
        ];
        assert_eq!(feed_all(&mut p, &chunks), [msg("a\nb"), msg("c")]);
        // A CR ending a chunk followed by anything but LF: the CR alone was the break.
        assert_eq!(
            feed_all(&mut p, &[b"data:d\r", b"data:e\r", b"\r"]),
            [msg("d\ne")]
        );
    }

    #[test]
    fn one_leading_bom_is_stripped_a_second_is_data() {
        assert_eq!(
            parse(b"\xEF\xBB\xBFdata:1\n\n\xEF\xBB\xBFdata:2\n\ndata:3\n\n"),
            [msg("1"), msg("3")]
        );
        // Two BOMs: the second makes the field name "\u{FEFF}data", an unknown field.
        assert_eq!(
            parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata:1\n\ndata:2\n\n"),
            [msg("2")]
        );
    }

    #[test]
    fn bom_split_across_chunks() {
        let mut p = SseParser::default();
        let chunks: [&[u8]; 4] = [
            b"\xEF",
            b"\xBB",
            b"\xBFdata:x\n\n\xEF",
            b"\xBB\xBFdata:y\n\n",
        ];
        assert_eq!(feed_all(&mut p, &chunks), [msg("x")]);
        // The start of a BOM that is not one stays in the first line (here making the field
        // name unknown), it is not dropped.
        let mut p = SseParser::default();
        assert_eq!(
            feed_all(&mut p, &[b"\xEF\xBB", b"data:x\n\ndata:y\n\n"]),
            [msg("y")]
        );
        let mut p = SseParser::default();
        assert_eq!(feed_all(&mut p, &[b"\xEF", b"\n\ndata:z\n\n"]), [msg("z")]);
    }

    #[test]
    fn bom_is_stripped_again_after_a_reconnect() {
        let mut p = SseParser::default();
        assert_eq!(feed_all(&mut p, &[b"\xEF\xBB\xBFdata:1\n\n"]), [msg("1")]);
        p.reset_for_reconnect();
        assert_eq!(
            feed_all(&mut p, &[b"\xEF\xBB", b"\xBFdata:2\n\n"]),
            [msg("2")]
        );
    }

    #[test]
    fn multi_byte_characters_split_across_chunks() {
        let input = "data:ok…😀\n\n".as_bytes();
        for cut in 0..=input.len() {
            let mut p = SseParser::default();
            assert_eq!(
                feed_all(&mut p, &[&input[..cut], &input[cut..]]),
                [msg("ok…😀")],
                "cut {cut}"
            );
        }
    }

    fn replacing() -> SseParser {
        let mut limits = ParserLimits::default();
        limits.invalid_utf8(InvalidUtf8::Replace);
        SseParser::new(limits)
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters_when_asked() {
        let items = feed_all(
            &mut replacing(),
            &[b"event:e\xFF\nid:i\xC0\ndata:a\xFFb\xE2\x82\n\n"],
        );
        assert_eq!(
            items,
            [event(Some("e\u{FFFD}"), "a\u{FFFD}b\u{FFFD}", "i\u{FFFD}")]
        );
        // A character cut by the end of the line is invalid, not completed by the next line.
        assert_eq!(
            feed_all(&mut replacing(), &[b"data:\xE2\x80\ndata:\xA6\n\n"]),
            [msg("\u{FFFD}\n\u{FFFD}")]
        );
    }

    #[test]
    fn invalid_utf8_discards_its_event_with_one_error_by_default() {
        let bad = |valid_up_to| -> Item { Err(ParseError::InvalidUtf8 { valid_up_to }) };
        // In data, in the event type, in the id: the event is discarded, reported once, and
        // the next one is parsed; an invalid id is not taken.
        let mut parser = SseParser::default();
        let items = feed_all(
            &mut parser,
            &[b"id:1\ndata:a\xFFb\ndata:\xE2\x82\n\ndata:next\n\n"],
        );
        assert_eq!(items, [bad(1), event(None, "next", "1")]);
        assert_eq!(
            parse(b"event:e\xFF\ndata:x\n\ndata:y\n\n"),
            [bad(1), msg("y")]
        );
        let mut parser = SseParser::default();
        let items = feed_all(&mut parser, &[b"id:7\n\nid:i\xC0\ndata:x\n\n"]);
        assert_eq!(items, [bad(1)]);
        assert_eq!(parser.last_event_id(), "7");
        // Valid UTF-8 of every length passes.
        assert_eq!(parse("data:é€😀\n\n".as_bytes()), [msg("é€😀")]);
        assert_eq!(
            TransportError::from(ParseError::InvalidUtf8 { valid_up_to: 3 }),
            TransportError::InvalidUtf8 { valid_up_to: 3 }
        );
    }

    #[test]
    fn comments_are_ignored() {
        assert_eq!(parse(b":hi\ndata:x\n:\n: data:y\n\n"), [msg("x")]);
        // A comment is not an empty line: it dispatches nothing.
        assert_eq!(parse(b"data:x\n:\n"), []);
    }

    #[test]
    fn events_not_taken_stay_queued() {
        let mut p = SseParser::default();
        p.feed(b"data:a\n\ndata:b\n\n");
        assert_eq!(p.events().next(), Some(msg("a")));
        assert_eq!(p.next_event(), Some(msg("b")));
        assert_eq!(p.next_event(), None);
    }

    #[test]
    fn a_line_without_colon_is_a_field_with_an_empty_value() {
        assert_eq!(parse(b"data\ndata\n\n"), [msg("\n")]);
        assert_eq!(parse(b"data\n\n"), [msg("")]);
        assert_eq!(parse(b"event:x\nevent\ndata:d\n\n"), [msg("d")]);
    }

    #[test]
    fn exactly_one_leading_space_is_stripped() {
        assert_eq!(
            parse(b"data: x\ndata:  y\ndata:z\ndata: \n\n"),
            [msg("x\n y\nz\n")]
        );
        // A tab is kept.
        assert_eq!(parse(b"data:\tx\n\n"), [msg("\tx")]);
        assert_eq!(
            parse(b"event: e\ndata: d \n\n"),
            [event(Some("e"), "d ", "")]
        );
    }

    #[test]
    fn field_names_are_case_sensitive_and_unknown_ones_ignored() {
        assert_eq!(
            parse(b"Data:x\nDATA:y\nEvent:e\nID:1\nfoo:bar\ndata :z\ndata:ok\n\n"),
            [msg("ok")]
        );
    }

    #[test]
    fn data_lines_join_with_lf_and_one_trailing_lf_goes() {
        assert_eq!(parse(b"data:a\ndata:b\n\n"), [msg("a\nb")]);
        assert_eq!(parse(b"data:a\ndata:\n\n"), [msg("a\n")]);
        assert_eq!(parse(b"data:\n\n"), [msg("")]);
        assert_eq!(parse(b"data:a\0b\n\n"), [msg("a\0b")]);
    }

    #[test]
    fn empty_data_dispatches_nothing_and_resets_the_type() {
        assert_eq!(parse(b"event:e\n\ndata:x\n\n"), [msg("x")]);
        assert_eq!(parse(b"\n\n\n"), []);
    }

    #[test]
    fn event_field_sets_the_type_for_one_event() {
        let items =
            parse(b"event:add\ndata:1\n\ndata:2\n\nevent:\ndata:3\n\nevent:a\nevent:b\ndata:4\n\n");
        assert_eq!(
            items,
            [
                event(Some("add"), "1", ""),
                msg("2"),
                msg("3"),
                event(Some("b"), "4", "")
            ]
        );
        let Ok(first) = &items[0] else { panic!() };
        assert_eq!(first.event_type(), "add");
        let Ok(second) = &items[1] else { panic!() };
        assert_eq!(second.event_type(), "message");
    }

    #[test]
    fn id_persists_resets_and_ignores_nul() {
        let input = b"id:1\ndata:a\n\ndata:b\n\nid\ndata:c\n\nid:2\ndata:d\n\nid:\ndata:e\n\nid:3\nid:x\0\ndata:f\n\n";
        let items = parse(input);
        let ids: Vec<_> = items
            .iter()
            .map(|i| i.as_ref().map(|e| e.id.as_str()))
            .collect();
        assert_eq!(ids, [Ok("1"), Ok("1"), Ok(""), Ok("2"), Ok(""), Ok("3")]);
    }

    #[test]
    fn id_without_data_still_sets_the_last_event_id() {
        let mut p = SseParser::default();
        assert_eq!(feed_all(&mut p, &[b"id: 5\n\n"]), []);
        assert_eq!(p.last_event_id(), "5");
        assert_eq!(feed_all(&mut p, &[b"data:x\n\n"]), [event(None, "x", "5")]);
        // Not yet dispatched: not the last event id yet.
        assert_eq!(feed_all(&mut p, &[b"id: 6\n"]), []);
        assert_eq!(p.last_event_id(), "5");
    }

    #[test]
    fn retry_takes_ascii_digits_only() {
        let retry = |input: &[u8]| {
            let mut p = SseParser::default();
            p.feed(input);
            p.take_retry()
        };
        assert_eq!(retry(b"retry:1000\n"), Some(Duration::from_secs(1)));
        assert_eq!(retry(b"retry: 02000\n"), Some(Duration::from_secs(2)));
        assert_eq!(retry(b"retry:0\n"), Some(Duration::ZERO));
        for bogus in [
            &b"retry:10x\n"[..],
            b"retry:\n",
            b"retry\n",
            b"retry:-1\n",
            b"retry:1.5\n",
            b"retry:  1\n",
            b"retry:1 \n",
            b"retry:\xD9\xA1\n",
            b"Retry:1\n",
            b"retry:1",
        ] {
            assert_eq!(retry(bogus), None, "{:?}", String::from_utf8_lossy(bogus));
        }
        assert_eq!(
            retry(b"retry:99999999999999999999999\n"),
            Some(Duration::from_millis(u64::MAX))
        );
        // The latest valid value wins, a bogus one does not clear it; taking it empties it.
        let mut p = SseParser::default();
        p.feed(b"retry:1\nretry:2\nretry:x\n");
        assert_eq!(p.take_retry(), Some(Duration::from_millis(2)));
        assert_eq!(p.take_retry(), None);
    }

    #[test]
    fn an_unterminated_event_is_discarded_at_the_end() {
        let mut p = SseParser::default();
        assert_eq!(
            feed_all(&mut p, &[b"id:1\ndata:a\n\nid:2\nevent:e\ndata:b\n"]),
            [event(None, "a", "1")]
        );
        p.finish();
        assert_eq!(p.next_event(), None);
        assert_eq!(p.last_event_id(), "1");
        // Nothing of the old event leaks into the next stream.
        assert_eq!(feed_all(&mut p, &[b"data:c\n\n"]), [event(None, "c", "1")]);
    }

    #[test]
    fn a_reconnect_discards_the_partial_line_and_keeps_the_id() {
        let mut p = SseParser::default();
        assert_eq!(
            feed_all(&mut p, &[b"id:9\ndata:a\n\ndata:b\r"]),
            [event(None, "a", "9")]
        );
        p.reset_for_reconnect();
        // The old CR does not eat this LF, the old "data:b" is gone.
        assert_eq!(
            feed_all(&mut p, &[b"\ndata:c\n\n"]),
            [event(None, "c", "9")]
        );
        let mut p = SseParser::default();
        p.feed(b"data:par");
        p.reset_for_reconnect();
        assert_eq!(feed_all(&mut p, &[b"tial\n\ndata:x\n\n"]), [msg("x")]);
    }

    #[test]
    fn set_last_event_id_seeds_the_id() {
        let mut p = SseParser::default();
        p.set_last_event_id("42");
        assert_eq!(p.last_event_id(), "42");
        assert_eq!(feed_all(&mut p, &[b"data:x\n\n"]), [event(None, "x", "42")]);
    }

    #[test]
    fn a_long_line_is_refused_before_its_end_with_bounded_memory() {
        let mut p = SseParser::default();
        p.feed(b"data:x\n\ndata:");
        let chunk = vec![b'a'; 64 * 1024];
        let mut items = Vec::new();
        for _ in 0..160 {
            p.feed(&chunk); // 10 MiB, no line break
            items.extend(p.events());
            assert!(
                p.buffered_bytes() <= DEFAULT_MAX_LINE_LENGTH + 64,
                "{}",
                p.buffered_bytes()
            );
        }
        let too_long = Err(ParseError::LineTooLong {
            limit: DEFAULT_MAX_LINE_LENGTH,
        });
        assert_eq!(items, [msg("x"), too_long]);
        // The rest of the line and of its event is skipped, then parsing goes on.
        assert_eq!(
            feed_all(&mut p, &[b"\ndata:lost\n\ndata:y\n\n"]),
            [msg("y")]
        );
    }

    #[test]
    fn line_limit_is_exact_and_chunking_independent() {
        for split in [false, true] {
            let mut p = small(8, 100);
            let input = b"data:123\ndata:1234\n\ndata:ok\n\n";
            let items = if split {
                let chunks: Vec<&[u8]> = input.chunks(3).collect();
                feed_all(&mut p, &chunks)
            } else {
                feed_all(&mut p, &[input])
            };
            assert_eq!(
                items,
                [Err(ParseError::LineTooLong { limit: 8 }), msg("ok")]
            );
        }
        // Comments are skipped without being stored, so they are exempt.
        let mut p = small(8, 100);
        assert_eq!(
            feed_all(&mut p, &[b":", &[b'x'; 1000], b"\ndata:ok\n\n"]),
            [msg("ok")]
        );
        assert_eq!(
            feed_all(&mut p, &[b":0123456789\ndata:ok\n\n"]),
            [msg("ok")]
        );
    }

    #[test]
    fn a_large_event_is_refused_with_bounded_memory() {
        let mut p = small(100, 1000);
        let mut items = Vec::new();
        for _ in 0..10_000 {
            p.feed(b"data:0123456789\n");
            items.extend(p.events());
            assert!(p.buffered_bytes() <= 1100);
        }
        assert_eq!(items, [Err(ParseError::EventTooLarge { limit: 1000 })]);
        // The id of the skipped event still counts; the next event is fine.
        let items = feed_all(&mut p, &[b"id:7\n\ndata:ok\n\n"]);
        assert_eq!(items, [event(None, "ok", "7")]);
        assert_eq!(p.last_event_id(), "7");
        // Exactly at the limit is fine: 999 bytes + LF.
        let mut p = small(2000, 1000);
        let mut input = b"data:".to_vec();
        input.extend([b'a'; 999]);
        input.extend(b"\n\n");
        let items = feed_all(&mut p, &[&input]);
        assert!(matches!(&items[..], [Ok(e)] if e.data.len() == 999));
    }

    #[test]
    fn limit_errors_become_transport_errors() {
        let e: TransportError = ParseError::LineTooLong { limit: 10 }.into();
        assert_eq!(
            e,
            TransportError::MessageTooLarge {
                size: 11,
                limit: 10
            }
        );
        let e: TransportError = ParseError::EventTooLarge { limit: usize::MAX }.into();
        assert_eq!(
            e,
            TransportError::MessageTooLarge {
                size: usize::MAX,
                limit: usize::MAX
            }
        );
        assert!(!e.is_retryable());
    }

    /// A small deterministic PRNG (xorshift64*), enough to vary inputs and chunkings.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }

    /// Everything observable after feeding `chunks` and ending the stream.
    fn outcome(limits: ParserLimits, chunks: &[&[u8]]) -> (Vec<Item>, String, Option<Duration>) {
        let mut p = SseParser::new(limits);
        let mut items = Vec::new();
        for chunk in chunks {
            p.feed(chunk);
            items.extend(p.events());
            assert!(p.buffered_bytes() <= limits.max_line_length + limits.max_event_size);
        }
        p.finish();
        (items, p.last_event_id().to_owned(), p.take_retry())
    }

    #[test]
    fn any_chunking_gives_the_same_result() {
        // Line starts, value pieces and line breaks; stray breaks and BOMs inside values too.
        const STARTS: [&[u8]; 12] = [
            b"data:",
            b"data: ",
            b"data",
            b"event:",
            b"id: ",
            b"id",
            b"retry:",
            b":",
            b"Data:",
            b"\xEF\xBB\xBF",
            b"",
            b" data:",
        ];
        const PIECES: [&[u8]; 14] = [
            b"x",
            b"42",
            b" ",
            b"\t",
            b":",
            b"\0",
            b"\xE2\x80\xA6",
            b"\xFF",
            b"\xF0\x9F\x98",
            b"\x80",
            b"\xEF\xBB",
            b"\r",
            b"\n",
            b"data:",
        ];
        const BREAKS: [&[u8]; 4] = [b"\n", b"\r", b"\r\n", b"\n\n"];
        let mut rng = Rng(0x5EED_CAFE_F00D_BEEF);
        let mut tight = ParserLimits::default();
        tight.max_line_length(12).max_event_size(24);
        let (mut events, mut errors) = (0, 0);
        for round in 0..1000 {
            let mut input = Vec::new();
            for _ in 0..rng.below(16) {
                input.extend_from_slice(STARTS[rng.below(STARTS.len())]);
                for _ in 0..rng.below(5) {
                    input.extend_from_slice(PIECES[rng.below(PIECES.len())]);
                }
                input.extend_from_slice(BREAKS[rng.below(BREAKS.len())]);
            }
            // Both sizes of limits, each with both answers to invalid UTF-8.
            let mut limits = if round % 2 == 0 {
                ParserLimits::default()
            } else {
                tight
            };
            if round % 4 >= 2 {
                limits.invalid_utf8(InvalidUtf8::Replace);
            }
            let whole = outcome(limits, &[&input]);
            events += whole.0.iter().filter(|i| i.is_ok()).count();
            errors += whole.0.iter().filter(|i| i.is_err()).count();
            let ones: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(outcome(limits, &ones), whole, "1-byte chunks of {input:?}");
            for offset in 0..2 {
                let (head, tail) = input.split_at(offset.min(input.len()));
                let mut twos: Vec<&[u8]> = vec![head];
                twos.extend(tail.chunks(2));
                assert_eq!(outcome(limits, &twos), whole, "2-byte chunks of {input:?}");
            }
            for _ in 0..8 {
                let mut chunks = Vec::new();
                let mut rest = &input[..];
                while !rest.is_empty() {
                    let (chunk, tail) = rest.split_at(rng.below(rest.len() + 1));
                    chunks.push(chunk);
                    rest = tail;
                }
                assert_eq!(outcome(limits, &chunks), whole, "chunks {chunks:?}");
            }
        }
        assert!(
            events > 600 && errors > 150,
            "weak inputs: {events} events, {errors} errors"
        );
    }
}
