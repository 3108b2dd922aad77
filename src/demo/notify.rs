//! The simulator's event notifications (SPEC §15.4): when a subscription changes, it posts a
//! signed `subscription-updated` notification — as Partner Center does — to the webhook URL it
//! was given, signed with a key of its own (RSA PKCS#1 v1.5 SHA-256 over the body, by `ring`),
//! whose certificate it writes out for `webhooks.certificate_file`.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivatePkcs8KeyDer;

/// The simulator's signing key (a test key: it guards nothing).
const KEY: &str = include_str!("simulator-signer.key.pem");

/// Its certificate, for `webhooks.certificate_file`.
pub const CERTIFICATE: &str = include_str!("simulator-signer.cert.pem");

/// Where a notification says its certificate is (a gateway with the certificate pinned never
/// fetches it).
const CERTIFICATE_URL: &str =
    "https://3psostorageacct.blob.core.windows.net/cert/partner-gateway-simulator.cer";

/// Posts signed notifications to one URL.
pub(crate) struct Notifier {
    url: Uri,
    key: Arc<ring::signature::RsaKeyPair>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Notifier {
    /// A notifier posting to `url`; `None` when the URL or the key cannot be used.
    pub(crate) fn new(url: &str) -> Option<Notifier> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(KEY.as_bytes()).ok()?;
        let key = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).ok()?;
        Some(Notifier {
            url: url.parse().ok()?,
            key: Arc::new(key),
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Announces that `subscription` of `customer` changed (in the background; a failed
    /// delivery is logged, as Partner Center would retry it).
    pub(crate) fn subscription_updated(&self, customer: &str, subscription: &str) {
        let body = serde_json::json!({
            "EventName": "subscription-updated",
            "ResourceUri": format!("https://api.partnercenter.microsoft.com/webhooks/v1/customers/{customer}/subscriptions/{subscription}"),
            "ResourceName": "subscription",
            "AuditUri": null,
            "ResourceChangeUtcDate": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        })
        .to_string();
        let Some(signature) = self.sign(body.as_bytes()) else {
            tracing::warn!("simulator notification could not be signed");
            return;
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header("content-type", "application/json")
            .header("authorization", format!("Signature {signature}"))
            .header("x-ms-signature-algorithm", "rsa-sha256")
            .header("x-ms-certificate-url", CERTIFICATE_URL)
            .body(Full::new(Bytes::from(body)));
        let Ok(request) = request else {
            return;
        };
        let client = self.client.clone();
        tokio::spawn(async move {
            match client.request(request).await {
                Ok(answer) => {
                    tracing::info!(status = answer.status().as_u16(), "notification delivered")
                }
                Err(e) => tracing::warn!(error = %e, "notification not delivered"),
            }
        });
    }

    fn sign(&self, body: &[u8]) -> Option<String> {
        let mut signature = vec![0; self.key.public().modulus_len()];
        let rng = ring::rand::SystemRandom::new();
        self.key
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &rng,
                body,
                &mut signature,
            )
            .ok()?;
        Some(base64::engine::general_purpose::STANDARD.encode(signature))
    }
}
