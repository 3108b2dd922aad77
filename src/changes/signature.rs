//! Whether an event notification was signed by Partner Center (SPEC §15.2, step 1).
//!
//! A notification carries `Authorization: Signature <base64>` and `X-MS-Signature-Algorithm:
//! rsa-sha256` (header names and the scheme in any case): RSA PKCS#1 v1.5 with SHA-256 over the
//! raw body bytes, made with the key of the signing certificate (which one: `certificate`). The
//! X.509 reading and the signature check are rustls's own
//! (`rustls-webpki` on `ring`); nothing here is hand-written cryptography.

use base64::Engine;
use http::header::AUTHORIZATION;
use http::HeaderMap;
use rustls::pki_types::CertificateDer;

/// The algorithm header and the only value it may have.
const ALGORITHM: &str = "x-ms-signature-algorithm";

/// Why a notification is not taken as Partner Center's (for the log; the sender only learns
/// `401 WebhookUnauthorized`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unverified {
    #[error("no Authorization: Signature header")]
    NoSignature,
    #[error("the signature is not base64")]
    NotBase64,
    #[error("the signature algorithm is not rsa-sha256")]
    Algorithm,
    #[error("the signature does not match the body and the signing certificate")]
    Mismatch,
    #[error("no X-MS-Certificate-Url header")]
    NoCertificateUrl,
    #[error("the certificate URL is not https on a host of webhooks.certificate_hosts")]
    UrlNotAllowed,
    #[error("the certificate could not be fetched: {0}")]
    Fetch(String),
    #[error("the certificate is not trusted: {0}")]
    Untrusted(String),
    #[error("the certificate's issuer is not webhooks.certificate_issuer")]
    Issuer,
}

/// The certificate whose key signs notifications.
#[derive(Debug, Clone)]
pub struct Signer {
    certificate: CertificateDer<'static>,
}

impl Signer {
    /// The signer holding `certificate` (pinned by `webhooks.certificate_file`, or fetched and
    /// checked).
    pub fn pinned(certificate: CertificateDer<'static>) -> Signer {
        Signer { certificate }
    }

    /// Checks the signature `headers` carry over `body`.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), Unverified> {
        let algorithm = headers.get(ALGORITHM).map(|v| v.as_bytes());
        if !algorithm.is_some_and(|a| a.trim_ascii().eq_ignore_ascii_case(b"rsa-sha256")) {
            return Err(Unverified::Algorithm);
        }
        let signature = signature_of(headers).ok_or(Unverified::NoSignature)?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .map_err(|_| Unverified::NotBase64)?;
        let certificate =
            webpki::EndEntityCert::try_from(&self.certificate).map_err(|_| Unverified::Mismatch)?;
        certificate
            .verify_signature(webpki::ring::RSA_PKCS1_2048_8192_SHA256, body, &signature)
            .map_err(|_| Unverified::Mismatch)
    }
}

/// The base64 of `Authorization: Signature <base64>` (one such field; the scheme in any case).
fn signature_of(headers: &HeaderMap) -> Option<&[u8]> {
    let mut fields = headers.get_all(AUTHORIZATION).iter();
    let (value, None) = (fields.next()?, fields.next()) else {
        return None;
    };
    let value = value.as_bytes().trim_ascii();
    let (scheme, rest) = value.split_at(value.iter().position(|b| *b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"signature")
        .then(|| rest.trim_ascii())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn the_signature_header_is_read_in_any_case_once() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("SIGNATURE  abc= "));
        assert_eq!(signature_of(&headers), Some(&b"abc="[..]));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(signature_of(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Signature "));
        assert_eq!(signature_of(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Signature a"));
        headers.append(AUTHORIZATION, HeaderValue::from_static("Signature b"));
        assert_eq!(signature_of(&headers), None, "two signatures: none taken");
    }
}
