//! Server-side checks of a handshake request shared by every transport: an origin allow-list
//! and an application hook.

use std::sync::Arc;

use http::{Request, StatusCode, header};

/// The application's check of a handshake request: `Err(status)` refuses it with that status
/// (e.g. 401 for a missing token).
pub type Authorize = Arc<dyn Fn(&Request<()>) -> Result<(), StatusCode> + Send + Sync>;

/// Which handshake requests a server accepts. The default accepts all.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct AcceptPolicy {
    /// Allowed `Origin` values (compared without regard to ASCII case, e.g.
    /// `https://app.example.com`). `None` allows any origin, including requests without one
    /// (non-browser clients); with a list, a request without `Origin` is refused.
    pub allowed_origins: Option<Vec<String>>,
    /// Optional application check, run after the origin check.
    pub authorize: Option<Authorize>,
}

impl AcceptPolicy {
    /// Restricts requests to these origins.
    pub fn allow_origins<I, S>(&mut self, origins: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the application's check.
    pub fn authorize(
        &mut self,
        check: impl Fn(&Request<()>) -> Result<(), StatusCode> + Send + Sync + 'static,
    ) -> &mut Self {
        self.authorize = Some(Arc::new(check));
        self
    }

    /// Checks a request: 403 for a refused origin, or the status the hook returns.
    ///
    /// # Errors
    /// The status to answer with.
    pub fn check(&self, request: &Request<()>) -> Result<(), StatusCode> {
        self.check_with_reason(request)
            .map_err(|(status, _)| status)
    }

    /// As [`check`](Self::check), with the `reason` label of a refusal for
    /// [`metrics::HANDSHAKES_REJECTED`](crate::metrics::HANDSHAKES_REJECTED): `origin` for the
    /// allow-list, otherwise derived from the hook's status
    /// ([`metrics::status_reason`](crate::metrics::status_reason)).
    ///
    /// # Errors
    /// The status to answer with and the reason.
    pub fn check_with_reason(
        &self,
        request: &Request<()>,
    ) -> Result<(), (StatusCode, &'static str)> {
        if let Some(allowed) = &self.allowed_origins {
            let origin = request
                .headers()
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok());
            if !origin.is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o))) {
                tracing::debug!(?origin, "handshake refused: origin not allowed");
                return Err((StatusCode::FORBIDDEN, crate::metrics::reason::ORIGIN));
            }
        }
        match &self.authorize {
            Some(authorize) => {
                authorize(request).map_err(|status| (status, crate::metrics::status_reason(status)))
            }
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for AcceptPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptPolicy")
            .field("allowed_origins", &self.allowed_origins)
            .field("authorize", &self.authorize.is_some())
            .finish()
    }
}

/// A copy of a request's head (method, URI, headers) without its body, as policies see it.
pub fn request_head<B>(request: &Request<B>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.headers_mut() = request.headers().clone();
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(origin: Option<&str>) -> Request<()> {
        let mut b = Request::get("/x");
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn default_accepts_everything() {
        assert_eq!(AcceptPolicy::default().check(&req(None)), Ok(()));
    }

    #[test]
    fn origins_and_hook() {
        let mut p = AcceptPolicy::default();
        p.allow_origins(["https://ok.example"]);
        assert_eq!(p.check(&req(Some("https://OK.example"))), Ok(()));
        assert_eq!(
            p.check(&req(Some("https://evil.example"))),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(p.check(&req(None)), Err(StatusCode::FORBIDDEN));
        p.authorize(|r| {
            if r.uri().path() == "/x" {
                Err(StatusCode::UNAUTHORIZED)
            } else {
                Ok(())
            }
        });
        assert_eq!(
            p.check(&req(Some("https://ok.example"))),
            Err(StatusCode::UNAUTHORIZED)
        );
    }

    #[test]
    fn head_copies_method_uri_headers() {
        let r = Request::post("/p?q=1")
            .header("a", "b")
            .body(vec![1u8])
            .unwrap();
        let h = request_head(&r);
        assert_eq!(h.method(), http::Method::POST);
        assert_eq!(h.uri().query(), Some("q=1"));
        assert_eq!(h.headers()["a"], "b");
    }
}
