//! Fuzzes the SSE parser: it must never panic, never hold more than its limits, give the same
//! result whatever the chunking, and, when no limit was reached, agree with a literal
//! transcription of the standard's algorithm (below) when it replaces invalid UTF-8 as the
//! standard does; when it rejects it (the default), the same holds, and on valid UTF-8 the two
//! agree.
//!
//! Input: byte 0 picks the line limit (128 and up: the default), byte 1 the event limit (same),
//! byte 2 seeds the chunking; the rest is the stream.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use transport_sse::{InvalidUtf8, ParseError, ParserLimits, SseEvent, SseParser};

type Outcome = (Vec<Result<SseEvent, ParseError>>, String, Option<Duration>);

fn run<'a>(limits: ParserLimits, chunks: impl Iterator<Item = &'a [u8]>) -> Outcome {
    let mut parser = SseParser::new(limits);
    let mut items = Vec::new();
    for chunk in chunks {
        parser.feed(chunk);
        assert!(parser.buffered_bytes() <= limits.max_line_length + limits.max_event_size);
        for item in parser.events() {
            if let Ok(event) = &item {
                assert!(event.data.len() < limits.max_event_size);
            }
            items.push(item);
        }
    }
    parser.finish();
    assert!(parser.next_event().is_none());
    let id = parser.last_event_id().to_owned();
    (items, id, parser.take_retry())
}

/// Splits `body` into chunks of pseudo-random sizes (0 to 64 bytes) from `seed`.
fn chunks(body: &[u8], seed: u8) -> impl Iterator<Item = &[u8]> {
    let mut state = u32::from(seed) | 0x100;
    let mut rest = body;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = usize::try_from(state % 65).unwrap_or(1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// WHATWG HTML §9.2.6 step by step, on the whole stream, without limits: decode (stripping one
/// BOM), split into lines, interpret each; the unterminated last line and event are dropped.
fn reference(body: &[u8]) -> Outcome {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let text = String::from_utf8_lossy(body);
    let (mut data, mut event_type, mut id_buffer) = (String::new(), String::new(), String::new());
    let (mut last_event_id, mut retry, mut events) = (String::new(), None, Vec::new());
    let mut rest = &text[..];
    while let Some(end) = rest.find(['\r', '\n']) {
        let (line, cr) = (&rest[..end], rest.as_bytes()[end] == b'\r');
        rest = &rest[end + 1..];
        if cr {
            rest = rest.strip_prefix('\n').unwrap_or(rest);
        }
        if line.is_empty() {
            last_event_id.clone_from(&id_buffer);
            if data.is_empty() {
                event_type.clear();
                continue;
            }
            if data.ends_with('\n') {
                data.pop();
            }
            events.push(Ok(SseEvent {
                event: (!event_type.is_empty()).then(|| std::mem::take(&mut event_type)),
                data: std::mem::take(&mut data),
                id: last_event_id.clone(),
            }));
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event_type = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => id_buffer = value.to_owned(),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                retry = Some(Duration::from_millis(value.parse().unwrap_or(u64::MAX)));
            }
            _ => {}
        }
    }
    (events, last_event_id, retry)
}

fuzz_target!(|input: &[u8]| {
    let Some((&[line, event, seed], body)) = input.split_first_chunk::<3>() else {
        return;
    };
    let mut limits = ParserLimits::default();
    if line < 128 {
        limits.max_line_length(usize::from(line) % 64);
    }
    if event < 128 {
        limits.max_event_size(usize::from(event));
    }
    let mut replacing = limits;
    replacing.invalid_utf8(InvalidUtf8::Replace);
    let mut results = Vec::new();
    for limits in [limits, replacing] {
        let whole = run(limits, std::iter::once(body));
        assert_eq!(run(limits, chunks(body, seed)), whole);
        assert_eq!(run(limits, body.chunks(1)), whole);
        results.push(whole);
    }
    let replaced = &results[1];
    if replaced.0.iter().all(Result::is_ok) {
        assert_eq!(&reference(body), replaced);
    }
    if std::str::from_utf8(body).is_ok() {
        assert_eq!(&results[0], replaced);
    }
});
