//! # transport-sse
//!
//! Server-Sent Events for the `transport` workspace. This first part is the protocol core: a
//! sans-IO parser of `text/event-stream` bodies ([`SseParser`]) that follows the WHATWG HTML
//! standard, §9.2.6 "Interpreting an event stream", to the letter. The HTTP client and server
//! build on it.
//!
//! ```text
//!  response body chunks ──feed──▶ SseParser ──next_event──▶ SseEvent { event, data, id }
//!                                    │ last_event_id() ──▶ Last-Event-ID of the reconnect
//!                                    │ take_retry()    ──▶ reconnection delay
//! ```
//!
//! ## What the parser guarantees
//! * **The standard's semantics**, with one choice of ours: invalid UTF-8 is not replaced by
//!   U+FFFD unless asked ([`InvalidUtf8::Replace`], what browsers do): by default the event
//!   holding it is discarded with a typed [`ParseError::InvalidUtf8`] (the workspace never
//!   converts text lossily). One leading BOM stripped per stream; lines ending in CRLF, LF or a lone CR; comments, `data`, `event`,
//!   `id` (ignored when it holds U+0000) and `retry` (ASCII digits only) exactly as specified;
//!   an event that the stream's end cuts short is never dispatched.
//! * **Chunking does not matter.** Any split of the same bytes gives the same events, errors,
//!   last event id and retry, including splits inside a CRLF, the BOM or a multi-byte
//!   character (lines are decoded only once complete).
//! * **Bounded memory.** A line is limited by [`ParserLimits::max_line_length`] (64 KiB by
//!   default) and detected while it is still arriving; an event's data by
//!   [`ParserLimits::max_event_size`] (1 MiB by default). Going past either yields a typed
//!   [`ParseError`] (convertible into [`transport_core::TransportError`]) and the parser skips
//!   to the next event; it never buffers more than the limits.
//! * **No I/O, no clock, no panics** on any input, which a fuzz target (`fuzz/` at the
//!   repository root) keeps checking.
//! * **Speed.** Line breaks are found with `memchr`, UTF-8 is checked with `simdutf8`;
//!   complete lines are parsed in place from the fed chunk and the data is copied once, into
//!   the event's `String`.
//!
//! ## Example
//!
//! ```
//! use std::time::Duration;
//! use transport_sse::{ParserLimits, SseParser};
//!
//! let mut parser = SseParser::new(ParserLimits::default());
//! // Chunks split anywhere, even inside a CRLF.
//! parser.feed(b"retry: 2500\r");
//! parser.feed(b"\nid: 7\nevent: update\ndata: {\"n\":1}\n\ndata: second");
//!
//! let event = parser.next_event().transpose()?.expect("an event");
//! assert_eq!(event.event_type(), "update");
//! assert_eq!(event.data, "{\"n\":1}");
//! assert_eq!(event.id, "7");
//! assert!(parser.next_event().is_none()); // "second" has no empty line yet
//! assert_eq!(parser.take_retry(), Some(Duration::from_millis(2500)));
//!
//! // The connection drops: the unfinished event is discarded, the id is kept.
//! parser.finish();
//! assert_eq!(parser.last_event_id(), "7");
//! # Ok::<(), transport_sse::ParseError>(())
//! ```
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod client;
mod parser;
pub mod protocol;
mod server;

pub use client::{SseConfig, SseConnector, connect};
pub use parser::{
    DEFAULT_MAX_EVENT_SIZE, DEFAULT_MAX_LINE_LENGTH, InvalidUtf8, ParseError, ParserLimits,
    SseEvent, SseParser,
};
pub use server::{
    EventStream, SseBody, SseEndpoint, SseIncoming, SseRequest, SseServer, SseServerConfig,
};
pub use transport_core;
