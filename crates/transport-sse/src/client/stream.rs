//! Opening the event stream: the GET, redirects, the status and content type checks, and the
//! send URL from the `X-Transport-Send` header.

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use hyper::body::Incoming;
use tracing::debug;
use transport_core::TransportError;

use super::Inner;
use super::conn::{self, Headers, HttpConn};
use super::url::Target;
use crate::protocol::HEADER_SEND;

/// An open event stream: the response body, the connection carrying it, and what the response
/// said about sending.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) body: Incoming,
    /// Kept so the connection lives as long as the body; an HTTP/2 one also carries the POSTs.
    pub(crate) conn: HttpConn,
    /// The URL the stream came from, after redirects.
    pub(crate) target: Target,
    /// The send URL from the `X-Transport-Send` header, resolved.
    pub(crate) send_url: Option<Target>,
}

impl Link {
    pub(crate) fn peer_addr(&self) -> Option<SocketAddr> {
        self.conn.peer_addr
    }
}

/// Opens the stream of `inner.url`, following redirects.
///
/// # Errors
/// Connection and TLS failures; [`TransportError::HandshakeRejected`] for any status but 200
/// and the redirects; [`TransportError::ProtocolViolation`] for a content type other than
/// `text/event-stream`, a bad redirect, more than `max_redirects`, or a send URL on another
/// origin.
pub(crate) async fn open(inner: &Inner, last_event_id: &str) -> Result<Link, TransportError> {
    let config = &inner.config;
    let mut target = inner.url.clone();
    let mut custom = config.transport.headers.clone();
    let defaults = [
        (ACCEPT, HeaderValue::from_static("text/event-stream")),
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    let mut fixed = Vec::new();
    if !last_event_id.is_empty() {
        if let Ok(v) = HeaderValue::from_bytes(last_event_id.as_bytes()) {
            fixed.push((HeaderName::from_static("last-event-id"), v));
        } else {
            debug!(
                id = last_event_id,
                "last event id is not a valid header value; not sent"
            );
        }
    }
    let mut redirects = 0;
    loop {
        let mut conn = HttpConn::open(inner, &target, conn::Drive::InlineHttp1).await?;
        let headers = Headers {
            custom: &custom,
            defaults: &defaults,
            fixed: &fixed,
        };
        let request = conn::request(
            conn.send.version(),
            Method::GET,
            &target,
            headers,
            Bytes::new(),
        );
        let response = conn
            .send(request)
            .await
            .map_err(|e| TransportError::ConnectionFailed {
                reason: format!("GET {target}: {e}"),
                source: None,
            })?;
        let status = response.status();
        if status == StatusCode::OK {
            check_content_type(response.headers().get(CONTENT_TYPE))?;
            let send_url = match response.headers().get(HEADER_SEND) {
                Some(v) => Some(send_url(&target, v.to_str().unwrap_or_default())?),
                None => None,
            };
            debug!(url = %target, version = ?conn.send.version(), send = ?send_url.as_ref().map(ToString::to_string), "event stream open");
            return Ok(Link {
                body: response.into_body(),
                conn,
                target,
                send_url,
            });
        }
        if !is_redirect(status) {
            return Err(TransportError::HandshakeRejected {
                status: status.as_u16(),
            });
        }
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                TransportError::protocol(format!("redirect {status} without a usable Location"))
            })?;
        if redirects >= config.max_redirects {
            return Err(TransportError::protocol(format!(
                "too many redirects: more than {} (the last: {} to {location:?})",
                config.max_redirects,
                status.as_u16()
            )));
        }
        let next = target.resolve(location).map_err(|e| {
            TransportError::protocol(format!("redirect to an unusable URL {location:?}: {e}"))
        })?;
        if !next.same_origin(&target) {
            // Credentials are for the origin they were configured for.
            for name in [AUTHORIZATION, COOKIE, http::header::PROXY_AUTHORIZATION] {
                custom.remove(name);
            }
        }
        debug!(from = %target, to = %next, status = status.as_u16(), "following redirect");
        redirects += 1;
        target = next;
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Only `text/event-stream` (any parameters, any case) is an event stream.
fn check_content_type(value: Option<&HeaderValue>) -> Result<(), TransportError> {
    let Some(value) = value else {
        return Err(TransportError::protocol(
            "the response has no Content-Type; expected text/event-stream",
        ));
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let essence = text.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("text/event-stream") {
        Ok(())
    } else {
        Err(TransportError::protocol(format!(
            "Content-Type {text:?} is not text/event-stream"
        )))
    }
}

/// The send URL as announced (a path), resolved against the stream's URL. It must stay on the
/// stream's origin: the POSTs carry the same credentials.
pub(crate) fn send_url(stream: &Target, announced: &str) -> Result<Target, TransportError> {
    let url = stream
        .resolve(announced)
        .map_err(|e| TransportError::protocol(format!("unusable send URL {announced:?}: {e}")))?;
    if url.same_origin(stream) {
        Ok(url)
    } else {
        Err(TransportError::protocol(format!(
            "send URL {announced:?} is not on the stream's origin"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let ok = |s: &'static str| check_content_type(Some(&HeaderValue::from_static(s)));
        assert!(ok("text/event-stream").is_ok());
        assert!(ok("Text/Event-Stream; charset=utf-8").is_ok());
        assert!(ok("text/event-stream;").is_ok());
        assert!(ok(" text/event-stream ;charset=x-bogus").is_ok());
        let err = ok("text/html").unwrap_err();
        assert!(err.to_string().contains("text/html"), "{err}");
        assert!(ok("text/event-streams").is_err());
        assert!(check_content_type(None).is_err());
    }

    #[test]
    fn send_urls_stay_on_the_origin() {
        let stream = Target::parse("https://h.test/app/events").unwrap();
        assert_eq!(
            send_url(&stream, "/app/send/abc").unwrap().to_string(),
            "https://h.test/app/send/abc"
        );
        assert!(send_url(&stream, "https://other.test/send").is_err());
        assert!(send_url(&stream, "http://h.test/send").is_err());
    }

    #[test]
    fn redirect_statuses() {
        for s in [301, 302, 303, 307, 308] {
            assert!(is_redirect(StatusCode::from_u16(s).unwrap()));
        }
        for s in [200, 204, 300, 304, 305, 400] {
            assert!(!is_redirect(StatusCode::from_u16(s).unwrap()));
        }
    }
}
