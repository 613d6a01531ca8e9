//! Sending: the POSTs to the session's send URL (`docs/protocols/sse.md` §4).
//!
//! One POST at a time, so the server sees the messages in order. On HTTP/2 the POSTs share the
//! stream's connection; on HTTP/1.1 (where the stream occupies its connection) the poster keeps
//! one connection of its own, reused while the server keeps it open.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use transport_core::{CloseFrame, Message, TransportError};

use super::Inner;
use super::conn::{self, HttpConn, SendError, SendHalf};
use super::url::Target;
use crate::protocol::{
    CONTENT_BATCH, CONTENT_BINARY, CONTENT_CLOSE, CONTENT_TEXT, close_json, encode_batch_frame,
};

/// Attempts of one POST answered 503 (the server's application is not taking messages).
const BUSY_ATTEMPTS: u32 = 5;
/// Wait before the first retry after a 503; doubled for each further one (0.1 + 0.2 + 0.4 +
/// 0.8 s in all).
const BUSY_DELAY: Duration = Duration::from_millis(100);
/// Largest answer body read (and discarded) to keep a connection reusable.
const MAX_ANSWER_BODY: usize = 64 * 1024;

/// The body of one POST.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    content_type: &'static str,
    body: Bytes,
    /// The size limit the server applies to this body, for a 413's error.
    limit: usize,
    pub(crate) count: usize,
}

impl Outgoing {
    /// One message as is, or several as a batch. `max_message_size` is the configured limit.
    pub(crate) fn messages(mut messages: Vec<Message>, max_message_size: usize) -> Self {
        if messages.len() == 1
            && let Some(message) = messages.pop()
        {
            return Self {
                content_type: if message.is_text() {
                    CONTENT_TEXT
                } else {
                    CONTENT_BINARY
                },
                body: message.into_payload(),
                limit: max_message_size,
                count: 1,
            };
        }
        let size = messages.iter().map(|m| 5 + m.len()).sum();
        let mut body = BytesMut::with_capacity(size);
        for message in &messages {
            encode_batch_frame(&mut body, message);
        }
        Self {
            content_type: CONTENT_BATCH,
            body: body.freeze(),
            limit: max_message_size.saturating_mul(4),
            count: messages.len(),
        }
    }

    /// Closing the session.
    pub(crate) fn close(frame: &CloseFrame) -> Self {
        Self {
            content_type: CONTENT_CLOSE,
            body: Bytes::from(close_json(frame)),
            limit: usize::MAX,
            count: 0,
        }
    }
}

/// A POST in flight; it hands the poster back with the result.
pub(crate) type PostFuture =
    Pin<Box<dyn Future<Output = (Poster, Result<(), TransportError>)> + Send>>;

/// Sends to one send URL.
#[derive(Debug)]
pub(crate) struct Poster {
    inner: Arc<Inner>,
    url: Target,
    /// The stream's HTTP/2 connection, when the send URL is on it.
    shared: Option<SendHalf>,
    /// A connection of the poster's own.
    own: Option<HttpConn>,
}

impl Poster {
    pub(crate) fn new(inner: Arc<Inner>, url: Target, stream: &HttpConn) -> Self {
        let shared = if stream.origin.same_origin(&url) {
            stream.send.share()
        } else {
            None
        };
        Self {
            inner,
            url,
            shared,
            own: None,
        }
    }

    pub(crate) fn url(&self) -> &Target {
        &self.url
    }

    /// Starts sending `out`.
    pub(crate) fn start(mut self, out: Outgoing) -> PostFuture {
        Box::pin(async move {
            let result = self.post(&out).await;
            (self, result)
        })
    }

    /// Sends `out`, retrying while the server answers 503, and maps the answer.
    async fn post(&mut self, out: &Outgoing) -> Result<(), TransportError> {
        let timeout = self.inner.config.post_timeout;
        let mut delay = BUSY_DELAY;
        let mut attempt = 1;
        loop {
            let Ok(status) = tokio::time::timeout(timeout, self.once(out)).await else {
                self.own = None;
                return Err(TransportError::Timeout {
                    operation: "POST",
                    after: timeout,
                });
            };
            let status = status?;
            match status.as_u16() {
                200..=299 => return Ok(()),
                413 => {
                    return Err(TransportError::MessageTooLarge {
                        size: out.body.len(),
                        limit: out.limit,
                    });
                }
                404 | 410 => {
                    return Err(TransportError::lost(format!(
                        "the session is gone: POST {} answered {status}",
                        self.url
                    )));
                }
                503 if attempt < BUSY_ATTEMPTS => {
                    tracing::debug!(attempt, ?delay, "POST answered 503; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                400..=499 => {
                    return Err(TransportError::protocol(format!(
                        "POST {} refused with {status}",
                        self.url
                    )));
                }
                _ => {
                    return Err(TransportError::SendFailed {
                        reason: format!("POST {} answered {status} (attempt {attempt})", self.url),
                        source: None,
                    });
                }
            }
        }
    }

    /// One request and its answer's status (the answer's body is read and dropped).
    async fn once(&mut self, out: &Outgoing) -> Result<StatusCode, TransportError> {
        let fixed = [(CONTENT_TYPE, HeaderValue::from_static(out.content_type))];
        let inner = self.inner.clone();
        let headers = conn::Headers {
            custom: &inner.config.transport.headers,
            defaults: &[],
            fixed: &fixed,
        };
        let request =
            |version| conn::request(version, Method::POST, &self.url, headers, out.body.clone());
        if let Some(shared) = &mut self.shared {
            let response = shared
                .send(request(shared.version()))
                .await
                .map_err(|e| self.failed(&e))?;
            return Ok(drain(response).await.0);
        }
        let reused = self.own.as_ref().is_some_and(|c| !c.send.is_closed());
        if !reused {
            self.own = None;
            self.own = Some(self.connect().await?);
        }
        let result = match &mut self.own {
            Some(conn) => conn.send.send(request(conn.send.version())).await,
            None => return Err(TransportError::NotConnected),
        };
        let response = match result {
            Ok(response) => response,
            // The kept connection had been closed by the server before the request went out:
            // it is safe to send again on a new one.
            Err(SendError::NotSent(request, _)) if reused => {
                let mut conn = self.connect().await?;
                let result = conn.send.send(*request).await;
                self.own = Some(conn);
                result.map_err(|e| self.failed(&e))?
            }
            Err(e) => return Err(self.failed(&e)),
        };
        let (status, reusable) = drain(response).await;
        if !reusable {
            self.own = None;
        }
        Ok(status)
    }

    async fn connect(&self) -> Result<HttpConn, TransportError> {
        let timeout = self.inner.config.transport.connect_timeout;
        tokio::time::timeout(
            timeout,
            HttpConn::open(&self.inner, &self.url, conn::Drive::Spawn),
        )
        .await
        .map_err(|_| TransportError::Timeout {
            operation: "connect",
            after: timeout,
        })?
    }

    fn failed(&mut self, e: &SendError) -> TransportError {
        self.own = None;
        TransportError::SendFailed {
            reason: format!("POST {}: {e}", self.url),
            source: None,
        }
    }
}

/// Reads and drops an answer's body; whether the connection is still usable.
async fn drain(response: http::Response<Incoming>) -> (StatusCode, bool) {
    let status = response.status();
    let reusable = Limited::new(response.into_body(), MAX_ANSWER_BODY)
        .collect()
        .await
        .is_ok();
    (status, reusable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::decode_batch;

    #[test]
    fn one_message_goes_as_is() {
        let out = Outgoing::messages(vec![Message::text("hi")], 100);
        assert_eq!(
            (out.content_type, &out.body[..]),
            (CONTENT_TEXT, &b"hi"[..])
        );
        let out = Outgoing::messages(vec![Message::binary(vec![1, 2])], 100);
        assert_eq!(
            (out.content_type, &out.body[..], out.limit),
            (CONTENT_BINARY, &[1u8, 2][..], 100)
        );
    }

    #[test]
    fn several_go_as_a_batch_in_order() {
        let msgs = vec![
            Message::text("a"),
            Message::binary(vec![0xff]),
            Message::text(""),
        ];
        let out = Outgoing::messages(msgs.clone(), 100);
        assert_eq!(
            (out.content_type, out.count, out.limit),
            (CONTENT_BATCH, 3, 400)
        );
        assert_eq!(decode_batch(out.body, 100).unwrap(), msgs);
    }

    #[test]
    fn close_body() {
        let out = Outgoing::close(&CloseFrame::new(4001, "bye"));
        assert_eq!(out.content_type, CONTENT_CLOSE);
        assert_eq!(
            crate::protocol::parse_close_json(&out.body).unwrap(),
            CloseFrame::new(4001, "bye")
        );
    }
}
