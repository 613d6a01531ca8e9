//! Certificate pinning by SHA-256 hash, with the rules browsers apply to
//! `serverCertificateHashes` (W3C WebTransport §4.4, "verify a certificate hash"): the hash of
//! the end-entity certificate must be listed, its key must be ECDSA P-256, its validity period
//! at most 14 days, and the current time inside it. The name is not checked and no chain is
//! built: the hash is the trust.
//!
//! The certificate fields are read by a small DER walker (no X.509 crate needed for two
//! fields); everything it does not understand is a refusal.

use std::sync::Arc;

use transport_core::tls::CertCheck;
use transport_core::{TlsOptions, TransportError};

use super::connect::ALPN_H3;

/// The longest validity period a pinned certificate may have.
pub(crate) const MAX_VALIDITY_SECS: u64 = 14 * 24 * 3600;

/// Why a pinned certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PinError {
    #[error("certificate hash is not among the pinned serverCertificateHashes")]
    HashMismatch,
    #[error("certificate is not DER X.509 this client can read ({0})")]
    Malformed(&'static str),
    #[error("pinned certificates must have an ECDSA P-256 key")]
    KeyType,
    #[error("pinned certificates may be valid for at most 14 days (this one: {0} s)")]
    ValidityTooLong(u64),
    #[error("certificate is not valid now")]
    Expired,
}

/// A client configuration that trusts exactly the pinned hashes (ALPN `h3`, TLS 1.3, the ring
/// provider; a client certificate from `tls` when set).
pub(crate) fn client_config(
    hashes: &[[u8; 32]],
    tls: &TlsOptions,
) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let hashes = hashes.to_vec();
    // Browsers accept only ECDSA P-256 for pinned certificates; so do we.
    let pinned = CertCheck::new(move |end_entity, now| {
        check(end_entity, &hashes, now.as_secs()).map_err(|e| {
            tracing::debug!(error = %e, "pinned certificate refused");
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(e),
            )))
        })
    })
    .with_schemes(vec![rustls::SignatureScheme::ECDSA_NISTP256_SHA256]);
    transport_core::tls::client_config_with_check(tls, &[ALPN_H3], &pinned)
}

/// The browser rule, on a DER certificate at `now` (Unix seconds).
pub(crate) fn check(der: &[u8], hashes: &[[u8; 32]], now: u64) -> Result<(), PinError> {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    if !hashes.iter().any(|h| h[..] == *digest.as_ref()) {
        return Err(PinError::HashMismatch);
    }
    let facts = parse(der)?;
    if !facts.p256 {
        return Err(PinError::KeyType);
    }
    let period = facts.not_after.saturating_sub(facts.not_before);
    if facts.not_after < facts.not_before || period > MAX_VALIDITY_SECS {
        return Err(PinError::ValidityTooLong(period));
    }
    if now < facts.not_before || now > facts.not_after {
        return Err(PinError::Expired);
    }
    Ok(())
}

/// What the pinning rule needs from a certificate.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CertFacts {
    pub(crate) not_before: u64,
    pub(crate) not_after: u64,
    pub(crate) p256: bool,
}

/// One DER element: tag, contents, and what follows it.
fn tlv(buf: &[u8]) -> Result<(u8, &[u8], &[u8]), PinError> {
    let bad = PinError::Malformed("DER length");
    let (&tag, rest) = buf.split_first().ok_or(bad.clone())?;
    let (&first, mut rest) = rest.split_first().ok_or(bad.clone())?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad);
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(bad);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect<'a>(
    buf: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), PinError> {
    match tlv(buf)? {
        (t, content, rest) if t == tag => Ok((content, rest)),
        _ => Err(PinError::Malformed(what)),
    }
}

const SEQUENCE: u8 = 0x30;
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Reads the validity and the key algorithm of an X.509 certificate.
pub(crate) fn parse(der: &[u8]) -> Result<CertFacts, PinError> {
    let (cert, _) = expect(der, SEQUENCE, "certificate")?;
    let (tbs, _) = expect(cert, SEQUENCE, "tbsCertificate")?;
    let mut rest = tbs;
    // [0] EXPLICIT version, optional.
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2;
    }
    rest = expect(rest, 0x02, "serialNumber")?.1;
    rest = expect(rest, SEQUENCE, "signature")?.1;
    rest = expect(rest, SEQUENCE, "issuer")?.1;
    let (validity, after_validity) = expect(rest, SEQUENCE, "validity")?;
    let (not_before, validity) = time(validity)?;
    let (not_after, _) = time(validity)?;
    rest = expect(after_validity, SEQUENCE, "subject")?.1;
    let (spki, _) = expect(rest, SEQUENCE, "subjectPublicKeyInfo")?;
    let (alg, _) = expect(spki, SEQUENCE, "algorithm")?;
    let (oid, params) = expect(alg, 0x06, "algorithm OID")?;
    let p256 = oid == OID_EC_PUBLIC_KEY
        && matches!(tlv(params), Ok((0x06, curve, _)) if curve == OID_PRIME256V1);
    Ok(CertFacts {
        not_before,
        not_after,
        p256,
    })
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as Unix seconds.
fn time(buf: &[u8]) -> Result<(u64, &[u8]), PinError> {
    let bad = PinError::Malformed("time");
    let (tag, s, rest) = tlv(buf)?;
    let digits = |range: std::ops::Range<usize>| -> Result<u64, PinError> {
        let part = s.get(range).ok_or(bad.clone())?;
        part.iter().try_fold(0u64, |acc, &c| {
            c.is_ascii_digit()
                .then(|| acc * 10 + u64::from(c - b'0'))
                .ok_or(bad.clone())
        })
    };
    let (year, at) = match (tag, s.len()) {
        (0x17, 13) => {
            let yy = digits(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        (0x18, 15) => (digits(0..4)?, 4),
        _ => return Err(bad),
    };
    if s.last() != Some(&b'Z') {
        return Err(bad);
    }
    let month = digits(at..at + 2)?;
    let day = digits(at + 2..at + 4)?;
    let (h, m, sec) = (
        digits(at + 4..at + 6)?,
        digits(at + 6..at + 8)?,
        digits(at + 8..at + 10)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return Err(bad);
    }
    let days = days_from_civil(year, month, day).ok_or(bad)?;
    Ok((days * 86_400 + h * 3600 + m * 60 + sec, rest))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm); `None`
/// before 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(alg: &'static rcgen::SignatureAlgorithm, days: u8) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2026, 1, 1 + days);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn sha(der: &[u8]) -> [u8; 32] {
        ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .try_into()
            .unwrap()
    }

    const JAN_2_2026: u64 = 1_767_312_000;

    #[test]
    fn dates() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(2026, 1, 2), Some(JAN_2_2026 / 86_400));
        assert_eq!(days_from_civil(1969, 12, 31), None);
    }

    #[test]
    fn reads_rcgen_certificates() {
        let der = cert(&rcgen::PKCS_ECDSA_P256_SHA256, 13);
        let facts = parse(&der).unwrap();
        assert!(facts.p256);
        assert_eq!(facts.not_after - facts.not_before, 13 * 86_400);
        assert!(!parse(&cert(&rcgen::PKCS_ED25519, 13)).unwrap().p256);
        assert!(
            !parse(&cert(&rcgen::PKCS_ECDSA_P384_SHA384, 13))
                .unwrap()
                .p256
        );
    }

    #[test]
    fn the_browser_rule() {
        let good = cert(&rcgen::PKCS_ECDSA_P256_SHA256, 13);
        assert_eq!(check(&good, &[[0; 32], sha(&good)], JAN_2_2026), Ok(()));
        assert_eq!(
            check(&good, &[[0; 32]], JAN_2_2026),
            Err(PinError::HashMismatch)
        );
        assert_eq!(
            check(&good, &[sha(&good)], JAN_2_2026 + 30 * 86_400),
            Err(PinError::Expired)
        );
        let long = cert(&rcgen::PKCS_ECDSA_P256_SHA256, 15);
        assert_eq!(
            check(&long, &[sha(&long)], JAN_2_2026),
            Err(PinError::ValidityTooLong(15 * 86_400))
        );
        let ed = cert(&rcgen::PKCS_ED25519, 13);
        assert_eq!(check(&ed, &[sha(&ed)], JAN_2_2026), Err(PinError::KeyType));
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let good = cert(&rcgen::PKCS_ECDSA_P256_SHA256, 13);
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        let mut bad = b"".to_vec();
        bad.extend([0x30, 0x03, 0x02, 0x01, 0x00]);
        let bad = parse(&bad);
        assert!(matches!(bad, Err(PinError::Malformed(_))));
    }
}
