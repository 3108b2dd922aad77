//! Where a notification's signing certificate comes from (SPEC §15.2, step 1): the one
//! `webhooks.certificate_file` pins, or else the one its `X-MS-Certificate-Url` names — fetched
//! only over `https` from a host in `webhooks.certificate_hosts`, valid now, chaining to a trusted
//! root (webpki roots plus `webhooks.ca_file`), issued by `webhooks.certificate_issuer`. A fetched
//! certificate is kept per URL for an hour, and one fetch per URL runs at a time. The chain and
//! the names are read by rustls-webpki and x509-parser; nothing here parses X.509 by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};

use crate::body::Body;
use crate::changes::signature::{Signer, Unverified};
use crate::config::{UpstreamConfig, WebhooksConfig};
use crate::upstream::client::{Upstream, UpstreamSetupError};

/// How long a fetched certificate is kept for its URL.
const KEEP: Duration = Duration::from_secs(3600);

/// Largest certificate document fetched.
const MAX_DOCUMENT: usize = 64 * 1024;

/// URLs remembered at most (a sender varying paths on an allowed host cannot grow it further).
const MAX_URLS: usize = 64;

/// The header that names the certificate.
const CERTIFICATE_URL: &str = "x-ms-certificate-url";

/// One URL's certificate, fetched (and checked) at most once at a time.
type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Signer)>>>;

/// The signing certificates notifications may be verified with.
pub enum Certificates {
    /// `webhooks.certificate_file`: that one, no other; no URL is fetched.
    Pinned(Signer),
    /// Fetched from the URL each notification names, under the rules above.
    Fetched(Box<Fetcher>),
}

/// Fetches and checks certificates named by `X-MS-Certificate-Url`.
pub struct Fetcher {
    client: Upstream,
    hosts: Vec<String>,
    anchors: Vec<TrustAnchor<'static>>,
    issuer: String,
    timeout: Duration,
    slots: Mutex<HashMap<String, Slot>>,
}

impl Certificates {
    /// The certificates `config` allows; the fetch client uses the upstream's limits with the
    /// webpki roots and `webhooks.ca_file`.
    pub fn new(
        config: &WebhooksConfig,
        upstream: &UpstreamConfig,
    ) -> Result<Certificates, UpstreamSetupError> {
        if let Some(certificate) = &config.certificate {
            return Ok(Certificates::Pinned(Signer::pinned(certificate.clone())));
        }
        let mut fetching = upstream.clone();
        fetching
            .extra_roots
            .extend(config.extra_roots.iter().cloned());
        let mut anchors: Vec<TrustAnchor<'static>> = webpki_roots::TLS_SERVER_ROOTS.to_vec();
        for root in &config.extra_roots {
            let anchor = webpki::anchor_from_trusted_cert(root)
                .map_err(|e| UpstreamSetupError::new(format!("webhooks.ca_file: {e}")))?;
            anchors.push(anchor.to_owned());
        }
        Ok(Certificates::Fetched(Box::new(Fetcher {
            client: Upstream::new(&fetching)?,
            hosts: config.certificate_hosts.clone(),
            anchors,
            issuer: config.certificate_issuer.clone(),
            timeout: upstream.request_timeout,
            slots: Mutex::new(HashMap::new()),
        })))
    }

    /// The signer a notification with `headers` is to be verified with.
    pub async fn signer_for(&self, headers: &HeaderMap) -> Result<Signer, Unverified> {
        match self {
            Certificates::Pinned(signer) => Ok(signer.clone()),
            Certificates::Fetched(fetcher) => fetcher.signer_for(headers).await,
        }
    }
}

impl Fetcher {
    async fn signer_for(&self, headers: &HeaderMap) -> Result<Signer, Unverified> {
        let url = headers
            .get(CERTIFICATE_URL)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .ok_or(Unverified::NoCertificateUrl)?;
        let uri: Uri = url.parse().map_err(|_| Unverified::UrlNotAllowed)?;
        let host = uri.authority().map(|a| a.as_str().to_ascii_lowercase());
        let allowed = host.is_some_and(|host| self.hosts.contains(&host));
        if uri.scheme_str() != Some("https") || !allowed {
            return Err(Unverified::UrlNotAllowed);
        }
        let slot = self.slot(url);
        let mut kept = slot.lock().await;
        if let Some((at, signer)) = kept.as_ref() {
            if at.elapsed() < KEEP {
                return Ok(signer.clone());
            }
        }
        let signer = self.fetch(uri).await?;
        *kept = Some((Instant::now(), signer.clone()));
        Ok(signer)
    }

    /// The URL's slot (made on first use; the map is emptied when it holds too many).
    fn slot(&self, url: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.len() >= MAX_URLS && !slots.contains_key(url) {
            slots.clear();
        }
        slots.entry(url.to_owned()).or_default().clone()
    }

    /// Fetches the document at `uri` and checks the certificate it holds.
    async fn fetch(&self, uri: Uri) -> Result<Signer, Unverified> {
        let fetch = |why: String| Unverified::Fetch(why);
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = uri;
        let fetched = async {
            let response = self
                .client
                .send(request)
                .await
                .map_err(|e| fetch(e.to_string()))?;
            if response.status() != StatusCode::OK {
                return Err(fetch(format!("answered {}", response.status())));
            }
            let limited = http_body_util::Limited::new(response.into_body(), MAX_DOCUMENT);
            let body = limited.collect().await.map_err(|e| fetch(e.to_string()))?;
            Ok(body.to_bytes())
        };
        let document = tokio::time::timeout(self.timeout, fetched)
            .await
            .map_err(|_| fetch("no answer in time".to_owned()))??;
        self.check(&document)
    }

    /// The signer of a certificate document (one DER certificate, or PEM: the signing
    /// certificate first, then any intermediates), if it chains, is valid now and names the
    /// issuer required.
    fn check(&self, document: &[u8]) -> Result<Signer, Unverified> {
        let untrusted = |why: String| Unverified::Untrusted(why);
        let mut certificates: Vec<CertificateDer<'static>> = if document.starts_with(b"-----") {
            CertificateDer::pem_slice_iter(document)
                .collect::<Result<_, _>>()
                .map_err(|e| untrusted(format!("not PEM certificates ({e})")))?
        } else {
            vec![CertificateDer::from(document.to_vec())]
        };
        if certificates.is_empty() {
            return Err(untrusted("no certificate".to_owned()));
        }
        let leaf = certificates.remove(0);
        let end_entity =
            webpki::EndEntityCert::try_from(&leaf).map_err(|e| untrusted(e.to_string()))?;
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &self.anchors,
                &certificates,
                UnixTime::now(),
                AnyUsage,
                None,
                None,
            )
            .map_err(|e| untrusted(e.to_string()))?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&leaf).map_err(|e| untrusted(e.to_string()))?;
        let named = parsed
            .issuer()
            .iter_organization()
            .any(|o| o.as_str().is_ok_and(|o| o == self.issuer));
        if !named {
            return Err(Unverified::Issuer);
        }
        Ok(Signer::pinned(leaf))
    }
}

/// A signing certificate's extended key usage is not a TLS one: any (or none) is taken, as
/// long as the extension reads.
struct AnyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, purposes: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for purpose in purposes {
            purpose?;
        }
        Ok(())
    }
}
