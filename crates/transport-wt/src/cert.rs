//! Self-signed certificates that browsers accept through `serverCertificateHashes`.
//!
//! The WebTransport API lets a page trust a certificate by its SHA-256 hash instead of a CA, on
//! conditions (W3C WebTransport, "verify a certificate hash"): an X.509v3 certificate with an
//! ECDSA P-256 (secp256r1) key and a total validity of at most two weeks. [`generate`] makes
//! such a certificate; [`SelfSignedCert::sha256`] is the hash to hand to the page.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use transport_core::TransportError;

/// How far `not_before` lies in the past, to tolerate clocks slightly behind ours.
const BACKDATE: Duration = Duration::from_secs(60 * 60);
/// How far `not_after` lies in the future. With [`BACKDATE`] the total stays under the 14 days
/// browsers allow.
const LIFETIME: Duration = Duration::from_secs(13 * 24 * 60 * 60);
/// The names used when [`generate`] is given none.
const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A freshly generated self-signed certificate and its private key.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SelfSignedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// SHA-256 of [`cert_der`](Self::cert_der): the value for a browser's
    /// `serverCertificateHashes`.
    pub sha256: [u8; 32],
}

impl SelfSignedCert {
    /// [`sha256`](Self::sha256) as lower-case hex, 64 characters.
    pub fn sha256_hex(&self) -> String {
        self.sha256
            .iter()
            .fold(String::with_capacity(64), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }
}

impl std::fmt::Debug for SelfSignedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("SelfSignedCert")
            .field("sha256", &self.sha256_hex())
            .finish_non_exhaustive()
    }
}

/// Generates a self-signed ECDSA P-256 certificate for `names` (DNS names or IP addresses),
/// valid from one hour ago for 13 days, fit for `serverCertificateHashes`. With no names it
/// covers `localhost`, `127.0.0.1` and `::1`.
///
/// # Errors
/// [`TransportError::InvalidConfig`] for a name that is not a valid DNS name or IP address,
/// [`TransportError::Tls`] when key generation or signing fails.
pub fn generate(names: &[&str]) -> Result<SelfSignedCert, TransportError> {
    let params = params_for(names, SystemTime::now())?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| TransportError::tls(format!("generating a P-256 key: {e}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TransportError::tls(format!("signing the certificate: {e}")))?;
    let cert_der = cert.der().to_vec();
    let digest = ring::digest::digest(&ring::digest::SHA256, &cert_der);
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(digest.as_ref());
    Ok(SelfSignedCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der,
        sha256,
    })
}

fn params_for(names: &[&str], now: SystemTime) -> Result<CertificateParams, TransportError> {
    let names: Vec<String> = if names.is_empty() {
        DEFAULT_NAMES.iter().map(|n| (*n).to_owned()).collect()
    } else {
        names.iter().map(|n| (*n).to_owned()).collect()
    };
    let mut params = CertificateParams::new(names)
        .map_err(|e| TransportError::InvalidConfig(format!("certificate names: {e}")))?;
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + LIFETIME).into();
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_is_fit_for_hashes() {
        let cert = generate(&[]).unwrap();
        assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.key_pem.contains("PRIVATE KEY"));
        let hex = cert.sha256_hex();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let again = ring::digest::digest(&ring::digest::SHA256, &cert.cert_der);
        assert_eq!(again.as_ref(), &cert.sha256);
        // Parseable by rustls as a certificate and a key that match.
        transport_core::tls::server_config(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes(), &[])
            .unwrap();
        assert!(!format!("{cert:?}").contains("PRIVATE"));
    }

    #[test]
    fn validity_and_names() {
        let now = SystemTime::now();
        let params = params_for(&["example.test", "10.0.0.1"], now).unwrap();
        let lifetime = params.not_after - params.not_before;
        assert!(
            lifetime <= Duration::from_secs(14 * 24 * 3600),
            "validity {lifetime}"
        );
        assert!(
            lifetime >= Duration::from_secs(13 * 24 * 3600),
            "validity {lifetime}"
        );
        assert!(params.not_before < now);
        let sans = format!("{:?}", params.subject_alt_names);
        assert!(
            sans.contains("example.test") && sans.contains("10.0.0.1"),
            "{sans}"
        );
        let defaults = format!("{:?}", params_for(&[], now).unwrap().subject_alt_names);
        assert!(
            defaults.contains("localhost") && defaults.contains("127.0.0.1"),
            "{defaults}"
        );
        assert!(defaults.contains("IpAddress"), "{defaults}");
    }

    #[test]
    fn certificates_differ() {
        assert_ne!(generate(&[]).unwrap().sha256, generate(&[]).unwrap().sha256);
    }

    #[test]
    fn bad_name_is_a_config_error() {
        assert!(matches!(
            generate(&["b\u{e4}d.example"]),
            Err(TransportError::InvalidConfig(_))
        ));
    }
}
