//! Discovery: `GET /transport/negotiate` on the server's base URL answers with the URLs of
//! every transport it serves and the WebTransport certificate hash (`docs/protocols/session.md`).

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use transport_core::{TlsOptions, TransportError};

use crate::config::{AdaptiveConfig, TransportKind};

/// Largest negotiation document accepted, bytes.
const MAX_DOCUMENT: usize = 16 << 10;

/// The negotiation document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Negotiation {
    /// Format version: 1.
    pub version: u32,
    /// WebTransport URL, when served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wt: Option<String>,
    /// WebSocket URL, when served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<String>,
    /// SSE stream URL, when served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<String>,
    /// SHA-256 of the WebTransport certificate, 64 hex digits, for pinning a self-signed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wt_cert_sha256: Option<String>,
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// Fetches `{base_url}/transport/negotiate` (`http://`, or `https://` verified with
/// `config.transport.tls`: extra roots, client certificate, ...) and returns `config` with
/// the advertised endpoints appended in the default order (WebTransport, WebSocket, SSE) and
/// the WebTransport certificate hash pinned.
///
/// # Errors
/// [`TransportError::InvalidUrl`] for a URL that is not `http[s]://host[:port][/path]`;
/// [`TransportError::Tls`] when the TLS handshake fails (e.g. an untrusted certificate);
/// [`TransportError::ConnectionFailed`] / [`TransportError::Timeout`] when the server cannot be
/// reached within `config.transport.connect_timeout`; [`TransportError::HandshakeRejected`] for
/// a non-200 answer; [`TransportError::ProtocolViolation`] for a malformed document.
///
/// # Cancel safety
/// Cancel safe.
pub async fn negotiate(
    base_url: &str,
    mut config: AdaptiveConfig,
) -> Result<AdaptiveConfig, TransportError> {
    let timeout = config.transport.connect_timeout;
    let doc = tokio::time::timeout(timeout, Box::pin(fetch(base_url, &config.transport.tls)))
        .await
        .map_err(|_| TransportError::Timeout {
            operation: "negotiate",
            after: timeout,
        })??;
    if doc.version != 1 {
        return Err(TransportError::protocol(format!(
            "negotiation version {} unsupported",
            doc.version
        )));
    }
    for (kind, url) in [
        (TransportKind::WebTransport, &doc.wt),
        (TransportKind::WebSocket, &doc.ws),
        (TransportKind::Sse, &doc.sse),
    ] {
        if let Some(url) = url {
            config.endpoint(kind, url.clone());
        }
    }
    if let Some(hash) = &doc.wt_cert_sha256 {
        let hash = hex32(hash)
            .ok_or_else(|| TransportError::protocol("wt_cert_sha256 is not 64 hex digits"))?;
        config.wt_cert_hash(hash);
    }
    Ok(config)
}

async fn fetch(base_url: &str, tls: &TlsOptions) -> Result<Negotiation, TransportError> {
    let bad = |reason: &str| TransportError::invalid_url(base_url, reason);
    let uri: Uri = base_url.parse().map_err(|_| bad("not a URL"))?;
    let secure = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad("negotiation supports http:// and https:// base URLs")),
    };
    let authority = uri.authority().ok_or_else(|| bad("no host"))?.clone();
    let port = authority
        .port_u16()
        .unwrap_or(if secure { 443 } else { 80 });
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(|e| TransportError::connection_failed("connecting for negotiation", e))?;
    let path = format!("{}/transport/negotiate", uri.path().trim_end_matches('/'));
    let request = Request::get(path)
        .header(header::HOST, authority.as_str())
        .header(header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| bad(&e.to_string()))?;
    if !secure {
        return get(tcp, request).await;
    }
    let config = transport_core::tls::client_config(tls, &[b"http/1.1"])?;
    let name = transport_core::tls::server_name(authority.host())?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| TransportError::tls(format!("negotiation TLS handshake: {e}")))?;
    get(stream, request).await
}

/// Sends the negotiation request over `io` and reads the document.
async fn get<S>(io: S, request: Request<Empty<Bytes>>) -> Result<Negotiation, TransportError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| TransportError::ConnectionFailed {
            reason: format!("negotiation HTTP handshake: {e}"),
            source: None,
        })?;
    let driver = tokio::spawn(conn);
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| TransportError::lost(format!("negotiation request: {e}")))?;
        if response.status() != StatusCode::OK {
            return Err(TransportError::HandshakeRejected {
                status: response.status().as_u16(),
            });
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT)
            .collect()
            .await
            .map_err(|e| TransportError::lost(format!("negotiation body: {e}")))?
            .to_bytes();
        serde_json::from_slice::<Negotiation>(&body)
            .map_err(|e| TransportError::protocol(format!("negotiation document: {e}")))
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_round_trips_and_hashes_parse() {
        let doc = Negotiation {
            version: 1,
            wt: Some("https://127.0.0.1:4433/wt".into()),
            ws: Some("ws://127.0.0.1:4433/ws".into()),
            sse: None,
            wt_cert_sha256: Some("ab".repeat(32)),
        };
        let json = serde_json::to_string(&doc).unwrap();
        assert!(!json.contains("sse"));
        assert_eq!(serde_json::from_str::<Negotiation>(&json).unwrap(), doc);
        assert_eq!(hex32(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(hex32("ab"), None);
        assert_eq!(hex32(&"zz".repeat(32)), None);
    }
}
