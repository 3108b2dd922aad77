//! The one pooled connection to the upstream, shared by every request of the process.
//!
//! HTTP/1.1 or HTTP/2 (chosen by ALPN on https), TLS by rustls with the `ring` provider and the
//! webpki roots plus any roots from `upstream.ca_file`, connect timeout from config. It only
//! knows how to reach the upstream; admission, the request timeout and what an answer means
//! belong to the one exchange above it (`upstream::exchange`).

use std::error::Error as StdError;
use std::sync::Arc;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::Body;
use crate::config::UpstreamConfig;
use crate::error::GatewayError;

/// Why the upstream client could not be built (bad TLS material).
#[derive(Debug, thiserror::Error)]
#[error("upstream TLS setup: {0}")]
pub struct UpstreamSetupError(String);

impl UpstreamSetupError {
    /// A setup error with this description.
    pub fn new(message: impl Into<String>) -> UpstreamSetupError {
        UpstreamSetupError(message.into())
    }
}

/// The upstream as the rest of the gateway sees it: where, and how to send.
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    scheme: Scheme,
    authority: Authority,
    path_prefix: String,
}

impl Upstream {
    /// Builds the pooled client from validated config.
    pub fn new(cfg: &UpstreamConfig) -> Result<Upstream, UpstreamSetupError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &cfg.extra_roots {
            roots
                .add(cert.clone())
                .map_err(|e| UpstreamSetupError(format!("upstream.ca_file: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| UpstreamSetupError(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);

        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .build(connector);

        Ok(Upstream {
            client,
            scheme: cfg.scheme.clone(),
            authority: cfg.authority.clone(),
            path_prefix: cfg.path_prefix.clone(),
        })
    }

    /// The upstream URI for a client's path and query (the base URL's path prefix first).
    pub fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, GatewayError> {
        let pq: PathAndQuery = match path_and_query {
            // Already parsed and valid: shared, not parsed again.
            Some(pq) if self.path_prefix.is_empty() => pq.clone(),
            _ => {
                let pq = path_and_query.map_or("/", PathAndQuery::as_str);
                format!("{}{pq}", self.path_prefix).parse().map_err(|e| {
                    GatewayError::UpstreamUnavailable(format!("bad upstream path: {e}"))
                })?
            }
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| GatewayError::UpstreamUnavailable(format!("bad upstream URI: {e}")))
    }

    /// Sends one request; resolves with the response head (the body streams after it).
    pub async fn send(&self, request: Request<Body>) -> Result<Response<Incoming>, GatewayError> {
        self.client
            .request(request)
            .await
            .map_err(|e| GatewayError::UpstreamUnavailable(describe(&e)))
    }
}

/// An error and its causes on one line ("client error (Connect): tcp connect error: ...").
pub fn describe(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
