//! `http://` and `https://` URLs: parsing, and resolving a reference (a redirect's `Location`,
//! the send URL) against a base, as RFC 3986 §5.2 says.

use std::fmt;

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use transport_core::TransportError;

/// A parsed absolute `http(s)` URL, without fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) tls: bool,
    pub(crate) authority: Authority,
    /// Host as written (IPv6 literals keep their brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) path_and_query: PathAndQuery,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, TransportError> {
        let bad = |reason: &str| TransportError::invalid_url(url, reason);
        let without_fragment = url.split_once('#').map_or(url, |(u, _)| u);
        let uri: Uri = without_fragment
            .parse()
            .map_err(|e| TransportError::invalid_url(url, format!("{e}")))?;
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(other) => {
                return Err(bad(&format!("scheme {other:?} is not http or https")));
            }
            None => return Err(bad("missing scheme (http:// or https://)")),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad("missing host"))?;
        if authority.as_str().contains('@') {
            return Err(bad(
                "credentials in the URL are not supported; send an Authorization header",
            ));
        }
        let host = authority.host().to_owned();
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path_and_query = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Ok(Self {
            tls,
            authority,
            host,
            port,
            path_and_query,
        })
    }

    /// The host without IPv6 brackets, for DNS and TLS.
    pub(crate) fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// Same scheme, host and port.
    pub(crate) fn same_origin(&self, other: &Self) -> bool {
        self.tls == other.tls
            && self.port == other.port
            && self.host.eq_ignore_ascii_case(&other.host)
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The absolute URI (for HTTP/2 requests, which carry scheme and authority).
    pub(crate) fn uri(&self) -> Uri {
        Uri::builder()
            .scheme(if self.tls {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            })
            .authority(self.authority.clone())
            .path_and_query(self.path_and_query.clone())
            .build()
            .unwrap_or_else(|_| Uri::from(self.path_and_query.clone()))
    }

    /// The origin-form URI (for HTTP/1.1 requests, with a `Host` header).
    pub(crate) fn origin_form(&self) -> Uri {
        Uri::from(self.path_and_query.clone())
    }

    /// Resolves `reference` (absolute, network-path, absolute-path or relative) against this
    /// URL, RFC 3986 §5.2.2, dropping any fragment.
    pub(crate) fn resolve(&self, reference: &str) -> Result<Self, TransportError> {
        let reference = reference.trim();
        let reference = reference.split_once('#').map_or(reference, |(r, _)| r);
        if has_scheme(reference) {
            return Self::parse(reference);
        }
        if let Some(rest) = reference.strip_prefix("//") {
            return Self::parse(&format!("{}://{rest}", self.scheme()));
        }
        let base_path = self.path_and_query.path();
        let (path, query) = match reference.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (reference, None),
        };
        let (path, query) = if path.is_empty() {
            (
                base_path.to_owned(),
                query.or_else(|| self.path_and_query.query()),
            )
        } else if path.starts_with('/') {
            (remove_dot_segments(path), query)
        } else {
            let dir = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
            (remove_dot_segments(&format!("{dir}{path}")), query)
        };
        let url = match query {
            Some(q) => format!("{}://{}{path}?{q}", self.scheme(), self.authority),
            None => format!("{}://{}{path}", self.scheme(), self.authority),
        };
        Self::parse(&url)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme(),
            self.authority,
            self.path_and_query
        )
    }
}

/// Whether a reference starts with `scheme:` (RFC 3986 §3.1).
fn has_scheme(reference: &str) -> bool {
    let Some((scheme, _)) = reference.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// RFC 3986 §5.2.4 for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_ports_and_hosts() {
        let u = Target::parse("http://example.com/events?x=1#frag").unwrap();
        assert_eq!((u.tls, u.port, u.host.as_str()), (false, 80, "example.com"));
        assert_eq!(u.to_string(), "http://example.com/events?x=1");
        let u = Target::parse("HTTPS://example.com:8443").unwrap();
        assert_eq!(
            (u.tls, u.port, u.path_and_query.as_str()),
            (true, 8443, "/")
        );
        let u = Target::parse("http://[::1]:9000/e").unwrap();
        assert_eq!((u.bare_host(), u.port), ("::1", 9000));
        assert_eq!(u.uri().to_string(), "http://[::1]:9000/e");
        assert_eq!(u.origin_form().to_string(), "/e");
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "ws://x",
            "x",
            "http://",
            "http://u:p@host/",
            "ftp://h",
            "http://h st/",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(TransportError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn resolves_references() {
        let base = Target::parse("http://a.test:81/b/c/d?q").unwrap();
        let r = |s: &str| base.resolve(s).unwrap().to_string();
        assert_eq!(r("https://x.test/y"), "https://x.test/y");
        assert_eq!(r("//x.test/y"), "http://x.test/y");
        assert_eq!(r("/g"), "http://a.test:81/g");
        assert_eq!(r("g"), "http://a.test:81/b/c/g");
        assert_eq!(r("./g"), "http://a.test:81/b/c/g");
        assert_eq!(r("../g"), "http://a.test:81/b/g");
        assert_eq!(r("../../../../g"), "http://a.test:81/g");
        assert_eq!(r("g/.."), "http://a.test:81/b/c/");
        assert_eq!(r("?y"), "http://a.test:81/b/c/d?y");
        assert_eq!(r(""), "http://a.test:81/b/c/d?q");
        assert_eq!(r("g?y#f"), "http://a.test:81/b/c/g?y");
        assert!(base.resolve("mailto:x@y").is_err());
    }

    #[test]
    fn origins() {
        let a = Target::parse("http://h:80/x").unwrap();
        assert!(a.same_origin(&Target::parse("http://H/y").unwrap()));
        assert!(!a.same_origin(&Target::parse("https://h:80/").unwrap()));
        assert!(!a.same_origin(&Target::parse("http://h:81/").unwrap()));
    }
}
