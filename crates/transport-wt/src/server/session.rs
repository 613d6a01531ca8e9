//! A request waiting for the application's decision ([`WtIncomingSession`]); accepting it
//! answers the CONNECT and starts the session's [`driver`](super::driver).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug};
use transport_core::TransportError;
use transport_core::metrics::{self, reason};

use super::TRANSPORT;
use super::accepted::{WtServerSession, close_error};
use super::driver::{Driver, SessionState};

/// The HTTP/3 connection type underneath the server.
pub(crate) type H3Conn = h3::server::Connection<h3_quinn::Connection, Bytes>;
/// A request stream (the CONNECT stream) of that connection.
pub(crate) type H3Request = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;
/// HTTP/3's "no error" application code (RFC 9114), used for normal closes.
pub const H3_NO_ERROR: u32 = 0x100;
/// HTTP/3's "request rejected" code, used when a pending session is dropped unanswered.
const H3_REQUEST_REJECTED: u32 = 0x10b;
/// How long a refused request's connection stays open so the client can read the status.
const REFUSAL_GRACE: Duration = Duration::from_secs(2);

/// How long accepting a session waits for the client's SETTINGS when its CONNECT overtook
/// them: QUIC does not order streams, and under load the request stream can be read before
/// the control stream. Clients send SETTINGS first thing, so this is only ever a short wait.
const PEER_SETTINGS_WAIT: Duration = Duration::from_secs(5);

/// Checks that the client's SETTINGS enable WebTransport and HTTP datagrams.
fn check_peer_settings(h3: &H3Conn) -> Result<(), TransportError> {
    use h3::ConnectionState as _;
    let settings = h3.inner.shared.settings();
    if !settings.enable_webtransport() {
        return Err(TransportError::protocol(
            "the client's HTTP/3 SETTINGS do not enable WebTransport",
        ));
    }
    if !settings.enable_datagram() {
        return Err(TransportError::protocol(
            "the client's HTTP/3 SETTINGS do not enable HTTP datagrams",
        ));
    }
    Ok(())
}

/// Reads the client's control stream until its SETTINGS frame has arrived; returns at once
/// when it already has. After [`PEER_SETTINGS_WAIT`] it returns `Ok` and lets the accept that
/// follows report the missing settings.
async fn peer_settings(h3: &mut H3Conn) -> Result<(), TransportError> {
    use h3::ConnectionState as _;
    // `settings()` borrows the peer's SETTINGS once received and is an owned default before.
    let received =
        |h3: &H3Conn| matches!(h3.inner.shared.settings(), std::borrow::Cow::Borrowed(_));
    let wait = async {
        while !received(h3) {
            match std::future::poll_fn(|cx| h3.inner.poll_control(cx)).await {
                Ok(h3::proto::frame::Frame::Settings(_)) => break,
                Ok(_) => {}
                Err(e) => {
                    return Err(TransportError::protocol(format!(
                        "the client's HTTP/3 control stream: {e}"
                    )));
                }
            }
        }
        Ok(())
    };
    tokio::time::timeout(PEER_SETTINGS_WAIT, wait)
        .await
        .unwrap_or(Ok(()))
}

/// What the application learns about a WebTransport CONNECT request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WtRequest {
    /// Request path, e.g. `/chat`.
    pub path: String,
    /// Query string without `?`, if any.
    pub query: Option<String>,
    /// `:authority` of the request (host and port), if given.
    pub authority: Option<String>,
    /// All request headers (Origin, Authorization, cookies, ...).
    pub headers: HeaderMap,
    /// The `Origin` header, when present and valid text.
    pub origin: Option<String>,
    /// The client's address.
    pub peer_addr: SocketAddr,
}

impl WtRequest {
    pub(crate) fn new(request: &Request<()>, peer_addr: SocketAddr) -> Self {
        Self {
            path: request.uri().path().to_owned(),
            query: request.uri().query().map(str::to_owned),
            authority: request.uri().authority().map(ToString::to_string),
            headers: request.headers().clone(),
            origin: request
                .headers()
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            peer_addr,
        }
    }
}

/// Whether a request is a WebTransport extended CONNECT.
pub(crate) fn is_webtransport_connect(request: &Request<()>) -> bool {
    request.method() == http::Method::CONNECT
        && request.extensions().get::<h3::ext::Protocol>()
            == Some(&h3::ext::Protocol::WEB_TRANSPORT)
}

/// Answers `stream` with `status` and keeps the connection until the client goes away or a
/// short grace ends, so the answer is not lost to an immediate close.
pub(crate) async fn refuse(
    quic: &quinn::Connection,
    h3: Option<Box<H3Conn>>,
    mut stream: H3Request,
    status: StatusCode,
) {
    let mut response = Response::new(());
    *response.status_mut() = status;
    let sent = async {
        stream.send_response(response).await?;
        stream.finish().await
    };
    match tokio::time::timeout(REFUSAL_GRACE, sent).await {
        Ok(Ok(())) => {
            let _ = tokio::time::timeout(REFUSAL_GRACE, quic.closed()).await;
        }
        Ok(Err(e)) => debug!(error = %e, "sending the refusal failed"),
        Err(_) => debug!("sending the refusal timed out"),
    }
    drop(h3);
    quic.close(H3_REQUEST_REJECTED.into(), b"request refused");
}

/// A WebTransport CONNECT request that passed the server's [`AcceptPolicy`] and waits for the
/// application: [`accept`](Self::accept) it or [`reject`](Self::reject) it with a status.
/// Dropping it closes the connection (QUIC code `H3_REQUEST_REJECTED`).
///
/// [`AcceptPolicy`]: transport_core::AcceptPolicy
pub struct WtIncomingSession {
    request: WtRequest,
    parts: Option<Box<Parts>>,
    guard: Option<super::SessionGuard>,
}

struct Parts {
    quic: quinn::Connection,
    h3: Box<H3Conn>,
    connect: Request<()>,
    stream: H3Request,
    context: SessionContext,
}

/// What an accepted session's driver needs from the server.
#[derive(Debug, Clone)]
pub(crate) struct SessionContext {
    /// Tracks the driver, so a graceful shutdown waits for the close capsules.
    pub(crate) tracker: TaskTracker,
    /// The server's shutdown.
    pub(crate) shutdown: CancellationToken,
    /// How long a close waits for the client.
    pub(crate) close_timeout: Duration,
    /// The connection's span (`wt-connection`, with the peer), for the driver's events.
    pub(crate) span: tracing::Span,
}

impl std::fmt::Debug for WtIncomingSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WtIncomingSession")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl WtIncomingSession {
    pub(crate) fn new(
        request: WtRequest,
        quic: quinn::Connection,
        h3: Box<H3Conn>,
        connect: Request<()>,
        stream: H3Request,
        guard: super::SessionGuard,
        context: SessionContext,
    ) -> Self {
        Self {
            request,
            parts: Some(Box::new(Parts {
                quic,
                h3,
                connect,
                stream,
                context,
            })),
            guard: Some(guard),
        }
    }

    /// The CONNECT request.
    pub fn request(&self) -> &WtRequest {
        &self.request
    }

    /// Answers `200` and returns the established session.
    ///
    /// # Errors
    /// [`TransportError::ConnectionLost`] (or another close error) when the client went away
    /// meanwhile, [`TransportError::ProtocolViolation`] when the client's HTTP/3 settings lack
    /// WebTransport or datagram support.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled accept closes the connection.
    pub async fn accept(mut self) -> Result<(WtServerSession, WtRequest), TransportError> {
        let Parts {
            quic,
            mut h3,
            connect,
            mut stream,
            context,
        } = *self.parts.take().ok_or(TransportError::Closed)?;
        let guard = self.guard.take();
        let failed = |quic: &quinn::Connection, error: TransportError| {
            metrics::handshake_rejected(TRANSPORT, reason::FAILED);
            let error = close_error(quic).unwrap_or(error);
            quic.close(H3_REQUEST_REJECTED.into(), b"session setup failed");
            Err(error)
        };
        // The client's SETTINGS say whether it speaks WebTransport: they must be here.
        if let Err(e) = peer_settings(&mut h3).await {
            return failed(&quic, e);
        }
        if let Err(e) = check_peer_settings(&h3) {
            return failed(&quic, e);
        }
        // Our own settings enable WebTransport, extended CONNECT and datagrams, and the
        // request is a WebTransport CONNECT (the acceptor checked): answer 200.
        let response = Response::builder()
            // What Chromium looks for to pick the draft.
            .header("sec-webtransport-http3-draft", "draft02")
            .status(StatusCode::OK)
            .body(());
        let sent = match response {
            Ok(response) => stream.send_response(response).await,
            Err(e) => return failed(&quic, TransportError::protocol(format!("response: {e}"))),
        };
        if let Err(e) = sent {
            return failed(&quic, TransportError::protocol(format!("session: {e}")));
        }
        drop(connect);
        metrics::handshake_accepted(TRANSPORT);
        let request = std::mem::replace(&mut self.request, placeholder_request());
        let state = SessionState::new();
        let h3 = Arc::new(std::sync::Mutex::new(h3));
        let session =
            WtServerSession::new(quic.clone(), h3.clone(), stream.send_id(), state.clone());
        let driver = Driver {
            quic,
            connect: stream,
            state,
            shutdown: context.shutdown,
            close_timeout: context.close_timeout,
            guard,
            h3,
        };
        context.tracker.spawn(driver.run().instrument(context.span));
        Ok((session, request))
    }

    /// Refuses the request with `status` (e.g. 401, 403, 404, 429; a 2xx status is replaced by
    /// 403). The client sees the status; the connection closes once the client has read it and
    /// gone, or after a grace of two seconds.
    ///
    /// # Cancel safety
    /// Cancelling stops waiting; the connection is closed.
    pub async fn reject(mut self, status: StatusCode) {
        if let Some(parts) = self.parts.take() {
            let status = if status.is_success() {
                StatusCode::FORBIDDEN
            } else {
                status
            };
            metrics::handshake_rejected(TRANSPORT, metrics::status_reason(status));
            refuse(&parts.quic, Some(parts.h3), parts.stream, status).await;
        }
    }
}

impl Drop for WtIncomingSession {
    fn drop(&mut self) {
        if let Some(parts) = self.parts.take() {
            metrics::handshake_rejected(TRANSPORT, reason::DROPPED);
            parts
                .quic
                .close(H3_REQUEST_REJECTED.into(), b"request not accepted");
        }
    }
}

fn placeholder_request() -> WtRequest {
    WtRequest {
        path: String::new(),
        query: None,
        authority: None,
        headers: HeaderMap::new(),
        origin: None,
        peer_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_info() {
        let request = Request::builder()
            .method(http::Method::CONNECT)
            .uri("https://localhost:4433/chat?room=1")
            .header("origin", "https://app.example")
            .extension(h3::ext::Protocol::WEB_TRANSPORT)
            .body(())
            .unwrap();
        assert!(is_webtransport_connect(&request));
        let info = WtRequest::new(&request, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(info.path, "/chat");
        assert_eq!(info.query.as_deref(), Some("room=1"));
        assert_eq!(info.authority.as_deref(), Some("localhost:4433"));
        assert_eq!(info.origin.as_deref(), Some("https://app.example"));
        let get = Request::get("/").body(()).unwrap();
        assert!(!is_webtransport_connect(&get));
    }
}
