//! rustls configurations built from [`TlsOptions`], with the one crypto provider of the
//! workspace (ring; see `docs/adr/0001-tls-provider.md`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::{TlsOptions, TransportError};

/// The crypto provider every transport uses: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every certificate in a PEM buffer.
///
/// # Errors
/// [`TransportError::Tls`] when the PEM is malformed or holds no certificate.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::tls(format!("reading certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TransportError::tls("no certificate found in PEM"));
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, PKCS#1 or SEC1) in a PEM buffer.
///
/// # Errors
/// [`TransportError::Tls`] when no key can be read.
pub fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TransportError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| TransportError::tls(format!("reading private key PEM: {e}")))
}

/// A rustls client configuration for these options, offering the given ALPN protocols.
///
/// # Errors
/// [`TransportError::Tls`] for unreadable PEM or an unusable root store.
pub fn client_config(
    options: &TlsOptions,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TransportError> {
    if options.danger_accept_invalid_certs {
        return client_config_with_check(options, alpn, &CertCheck::new(|_, _| Ok(())));
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::tls(e.to_string()))?
        .with_root_certificates(root_store(options)?);
    finish_client(builder, options, alpn)
}

type CheckFn = dyn Fn(&CertificateDer<'_>, UnixTime) -> Result<(), rustls::Error> + Send + Sync;

/// A custom decision on a server's end-entity certificate, in place of CA verification (e.g.
/// pinned certificate hashes). The handshake signatures are still verified with the provider's
/// algorithms, limited to `schemes` when given.
#[derive(Clone)]
pub struct CertCheck {
    check: Arc<CheckFn>,
    schemes: Option<Vec<SignatureScheme>>,
}

impl CertCheck {
    /// A check of the end-entity certificate at the handshake's time.
    pub fn new(
        check: impl Fn(&CertificateDer<'_>, UnixTime) -> Result<(), rustls::Error>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            check: Arc::new(check),
            schemes: None,
        }
    }

    /// Accepts handshake signatures only in these schemes.
    #[must_use]
    pub fn with_schemes(mut self, schemes: Vec<SignatureScheme>) -> Self {
        self.schemes = Some(schemes);
        self
    }
}

impl std::fmt::Debug for CertCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertCheck")
            .field("schemes", &self.schemes)
            .finish_non_exhaustive()
    }
}

/// A rustls client configuration that accepts server certificates by `check` instead of the
/// root store; versions, client certificates and ALPN as in [`client_config`].
///
/// # Errors
/// [`TransportError::Tls`] for an unreadable client certificate.
pub fn client_config_with_check(
    options: &TlsOptions,
    alpn: &[&[u8]],
    check: &CertCheck,
) -> Result<Arc<ClientConfig>, TransportError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CheckedCert {
            check: check.clone(),
            provider,
        }));
    finish_client(builder, options, alpn)
}

fn finish_client(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    options: &TlsOptions,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TransportError> {
    let mut config = match &options.client_cert_pem {
        Some((chain, key)) => builder
            .with_client_auth_cert(certs_from_pem(chain)?, key_from_pem(key)?)
            .map_err(|e| TransportError::tls(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn root_store(options: &TlsOptions) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    if !options.only_custom_roots {
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!(error = %e, "skipping unreadable system root certificate");
        }
        let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    }
    for pem in &options.root_ca_pem {
        for cert in certs_from_pem(pem)? {
            roots
                .add(cert)
                .map_err(|e| TransportError::tls(format!("custom root CA: {e}")))?;
        }
    }
    if roots.is_empty() {
        return Err(TransportError::tls(
            "no trusted root certificates (no system roots found and no custom CA given)",
        ));
    }
    Ok(roots)
}

/// A rustls server configuration from a PEM certificate chain and key, offering `alpn`.
///
/// # Errors
/// [`TransportError::Tls`] for unreadable PEM or a key that does not match.
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TransportError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs_from_pem(cert_chain_pem)?, key_from_pem(key_pem)?)
        .map_err(|e| TransportError::tls(format!("server certificate: {e}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The server name to verify for a host taken from a URL (DNS name or IP literal).
///
/// # Errors
/// [`TransportError::InvalidUrl`] when the host is neither.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TransportError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned())
        .map_err(|e| TransportError::invalid_url(host, format!("not a valid TLS server name: {e}")))
}

/// A client's byte stream: plain TCP, or TLS over TCP.
#[derive(Debug)]
pub enum ClientStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        }
    }

    /// The ALPN protocol negotiated by TLS, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(s) => s.get_ref().1.alpn_protocol(),
        }
    }
}

/// Runs the TLS handshake for `host` (DNS name or IP literal, brackets allowed) over `tcp`.
///
/// # Errors
/// [`TransportError::Tls`] for certificate and handshake failures (not retryable),
/// [`TransportError::ConnectionFailed`] when the connection breaks meanwhile,
/// [`TransportError::InvalidUrl`] for a host that is no valid server name.
pub async fn connect(
    connector: &TlsConnector,
    host: &str,
    tcp: TcpStream,
) -> Result<ClientStream, TransportError> {
    let name = server_name(host)?;
    match connector.connect(name, tcp).await {
        Ok(tls) => Ok(ClientStream::Tls(Box::new(tls))),
        // rustls reports certificate and handshake failures as InvalidData I/O errors.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(TransportError::tls(e.to_string())),
        Err(e) => Err(TransportError::connection_failed("TLS handshake", e)),
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The verifier behind [`client_config_with_check`]: the application's certificate check, and
/// the provider's signature verification.
#[derive(Debug)]
struct CheckedCert {
    check: CertCheck,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CheckedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        (self.check.check)(end_entity, now).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.check.schemes.clone().unwrap_or_else(|| {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    #[test]
    fn builds_client_and_server_configs() {
        let (cert, key) = self_signed();
        let mut opts = TlsOptions::default();
        opts.add_root_ca_pem(cert.clone());
        opts.only_custom_roots = true;
        let c = client_config(&opts, &[b"http/1.1"]).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"http/1.1".to_vec()]);
        server_config(cert.as_bytes(), key.as_bytes(), &[]).unwrap();
    }

    #[test]
    fn bad_pem_is_a_typed_error() {
        let mut opts = TlsOptions::default();
        opts.add_root_ca_pem(b"not a pem".to_vec());
        assert!(matches!(
            client_config(&opts, &[]),
            Err(TransportError::Tls { .. })
        ));
        assert!(matches!(
            key_from_pem(b"nothing"),
            Err(TransportError::Tls { .. })
        ));
        let opts = TlsOptions {
            only_custom_roots: true,
            ..TlsOptions::default()
        };
        assert!(matches!(
            client_config(&opts, &[]),
            Err(TransportError::Tls { .. })
        ));
    }

    #[test]
    fn server_names() {
        assert!(server_name("localhost").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("bad name!").is_err());
    }
}
