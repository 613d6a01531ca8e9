//! `ws://` and `wss://` URLs.

use http::Uri;
use transport_core::TransportError;

/// A parsed WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WsUrl {
    pub(crate) uri: Uri,
    pub(crate) tls: bool,
    /// Host as written (IPv6 literals keep their brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl WsUrl {
    pub(crate) fn parse(url: &str) -> Result<Self, TransportError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| TransportError::invalid_url(url, format!("{e}")))?;
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            Some(other) => {
                return Err(TransportError::invalid_url(
                    url,
                    format!("scheme {other:?} is not ws or wss"),
                ));
            }
            None => {
                return Err(TransportError::invalid_url(
                    url,
                    "missing scheme (ws:// or wss://)",
                ));
            }
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| TransportError::invalid_url(url, "missing host"))?
            .to_owned();
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(TransportError::invalid_url(
                url,
                "credentials in the URL are not supported; send an Authorization header",
            ));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self {
            uri,
            tls,
            host,
            port,
        })
    }

    /// The host without IPv6 brackets, for DNS and TLS.
    pub(crate) fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_ports_and_hosts() {
        let u = WsUrl::parse("ws://example.com/chat?x=1").unwrap();
        assert_eq!((u.tls, u.port, u.host.as_str()), (false, 80, "example.com"));
        let u = WsUrl::parse("wss://example.com:8443/").unwrap();
        assert_eq!((u.tls, u.port), (true, 8443));
        let u = WsUrl::parse("ws://[::1]:9000").unwrap();
        assert_eq!((u.bare_host(), u.port), ("::1", 9000));
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "http://x",
            "x",
            "ws://",
            "ws://user:pw@host/",
            "ftp://host",
            "ws://ho st",
        ] {
            assert!(
                matches!(WsUrl::parse(bad), Err(TransportError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
