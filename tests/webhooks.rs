//! Partner Center's event notifications from outside (SPEC §15.2): verified against the pinned
//! certificate, then what their `ResourceUri` names is dropped, then they reach the partner's
//! handler unchanged; anything that does not verify changes nothing and goes nowhere.

mod common {
    pub mod gateway;
    pub mod http;
    #[allow(dead_code)]
    pub mod order_upstream;
    #[allow(dead_code)]
    pub mod orders;
    pub mod paths;
    #[allow(dead_code)]
    pub mod redis;
    #[allow(dead_code)]
    pub mod wait;
}

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use common::{gateway::*, http::*, order_upstream::*, orders::*};
use http::{Method, StatusCode};
use httpmock::prelude::*;
use partner_gateway::config::{Config, Sources};

const AUTH: (&str, &str) = ("authorization", "Bearer webhooks");
const PATH: &str = "/webhooks/partner-center";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// RSA PKCS#1 v1.5 SHA-256 over `body` with the key in `key_file` (PKCS#8 PEM), base64.
fn sign(key_file: &str, body: &[u8]) -> String {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(fixture(key_file)).expect("key");
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(&pem).expect("pkcs8");
    let key = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).expect("rsa key");
    let mut signature = vec![0; key.public().modulus_len()];
    let rng = ring::rand::SystemRandom::new();
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &rng,
        body,
        &mut signature,
    )
    .expect("sign");
    base64::engine::general_purpose::STANDARD.encode(signature)
}

fn subscription_event(customer: &str, subscription: &str) -> String {
    serde_json::json!({
        "EventName": "subscription-updated",
        "ResourceUri": format!("https://api.partnercenter.microsoft.com/webhooks/v1/customers/{customer}/subscriptions/{subscription}"),
        "ResourceName": "subscription",
        "AuditUri": null,
        "ResourceChangeUtcDate": "2026-12-06T08:00:00Z"
    })
    .to_string()
}

/// POSTs `body` to the webhook path, signed by `key_file` (`None`: unsigned) as `algorithm`.
async fn notify(gw: &TestGateway, body: &str, key_file: Option<&str>, algorithm: &str) -> Reply {
    let signature = key_file.map(|key| format!("Signature {}", sign(key, body.as_bytes())));
    let mut headers = vec![
        ("content-type", "application/json"),
        ("x-ms-signature-algorithm", algorithm),
        (
            "x-ms-certificate-url",
            "https://3psostorageacct.blob.core.windows.net/cert/x.cer",
        ),
    ];
    if let Some(signature) = signature.as_deref() {
        headers.push(("authorization", signature));
    }
    send(Method::POST, &gw.url(PATH), &headers, body.to_owned()).await
}

fn settings(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut settings = vec![
        ("webhooks.path", PATH.to_owned()),
        (
            "webhooks.certificate_file",
            fixture("webhook-signer.cert.pem"),
        ),
        (
            "cache.resources",
            "orders,subscriptions,customers".to_owned(),
        ),
    ];
    settings.extend_from_slice(extra);
    settings
}

async fn gateway(up: &OrderUpstream, settings: &[(&'static str, String)]) -> TestGateway {
    let overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestGateway::with(&up.base_url, &overrides).await
}

async fn metric(gw: &TestGateway, line: &str) -> Option<f64> {
    let text = get(&gw.admin_url("/metrics"), &[]).await.body;
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
}

#[tokio::test]
async fn a_verified_notification_drops_what_it_names_and_nothing_else_gets_in() {
    let up = OrderUpstream::start().await;
    let gw = gateway(&up, &settings(&[])).await;
    let (subscription, other) = (new_order(), new_order());
    let url = |s: &str| gw.url(&format!("/v1/customers/{CUSTOMER}/subscriptions/{s}"));
    for s in [&subscription, &other] {
        get(&url(s), &[AUTH]).await;
        assert_eq!(get(&url(s), &[AUTH]).await.header("x-cache"), Some("HIT"));
    }
    let event = subscription_event(CUSTOMER, &subscription);

    // Nothing that does not verify changes anything.
    let refused = [
        notify(&gw, &event, None, "rsa-sha256").await,
        notify(&gw, &event, Some("webhook-other.key.pem"), "rsa-sha256").await,
        notify(&gw, &event, Some("webhook-signer.key.pem"), "hmac-sha256").await,
        // Signed, then changed on the way.
        {
            let signature = format!(
                "Signature {}",
                sign("webhook-signer.key.pem", event.as_bytes())
            );
            let changed = event.replace("subscription-updated", "subscription-renewed");
            let headers = [
                ("authorization", signature.as_str()),
                ("x-ms-signature-algorithm", "rsa-sha256"),
            ];
            send(Method::POST, &gw.url(PATH), &headers, changed).await
        },
    ];
    for reply in &refused {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
        assert_eq!(reply.json()["errorName"], "WebhookUnauthorized");
        assert!(reply.header("ms-correlationid").is_some());
    }
    assert_eq!(
        get(&url(&subscription), &[AUTH]).await.header("x-cache"),
        Some("HIT")
    );

    // Verified (the scheme and the algorithm in any case): exactly what it names is dropped.
    let taken = notify(&gw, &event, Some("webhook-signer.key.pem"), "RSA-SHA256").await;
    assert_eq!(taken.status, StatusCode::OK, "{:?}", taken.body);
    assert_eq!(taken.json(), serde_json::json!({"invalidated": 1}));
    assert!(taken.header("ms-correlationid").is_some());
    assert_eq!(
        get(&url(&subscription), &[AUTH]).await.header("x-cache"),
        Some("MISS")
    );
    assert_eq!(
        get(&url(&other), &[AUTH]).await.header("x-cache"),
        Some("HIT")
    );

    // A URI that names nothing cached drops nothing; a body without the fields is refused.
    let invoice = r#"{"EventName":"invoice-ready","ResourceUri":"https://api.partnercenter.microsoft.com/webhooks/v1/invoices/D0000000"}"#;
    let reply = notify(&gw, invoice, Some("webhook-signer.key.pem"), "rsa-sha256").await;
    assert_eq!(reply.json(), serde_json::json!({"invalidated": 0}));
    let reply = notify(
        &gw,
        r#"{"EventName":"x"}"#,
        Some("webhook-signer.key.pem"),
        "rsa-sha256",
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["errorName"], "InvalidWebhookEvent");
    let big = format!(
        r#"{{"EventName":"x","ResourceUri":"/v1","pad":"{}"}}"#,
        "x".repeat(70_000)
    );
    let reply = notify(&gw, &big, Some("webhook-signer.key.pem"), "rsa-sha256").await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let reply = get(&gw.url(PATH), &[]).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);

    let counted =
        |outcome: &str| format!("partner_gateway_webhook_events_total{{outcome=\"{outcome}\"}} ");
    assert_eq!(metric(&gw, &counted("unauthorized")).await, Some(4.0));
    assert_eq!(metric(&gw, &counted("accepted")).await, Some(2.0));
    assert_eq!(metric(&gw, &counted("invalid")).await, Some(1.0));
    let logged = "partner_gateway_requests_total{route=\"webhook\",status=\"200\",cache=\"none\"} ";
    assert_eq!(metric(&gw, logged).await, Some(2.0));
    gw.stop().await;
}

#[tokio::test]
async fn a_verified_notification_reaches_the_handler_unchanged_after_its_invalidation() {
    let up = OrderUpstream::start().await;
    let handler = MockServer::start_async().await;
    let order = new_order();
    let event = serde_json::json!({
        "EventName": "order-updated",
        "ResourceUri": format!("https://api.partnercenter.microsoft.com/webhooks/v1/customers/{CUSTOMER}/orders/{order}"),
    })
    .to_string();
    let signature = format!(
        "Signature {}",
        sign("webhook-signer.key.pem", event.as_bytes())
    );
    let relayed = handler
        .mock_async(|when, then| {
            when.method(POST)
                .path("/events")
                .header("authorization", signature.as_str())
                .header("x-ms-signature-algorithm", "rsa-sha256")
                .header_exists("ms-correlationid")
                .body(event.as_str());
            then.status(202).body("handled");
        })
        .await;
    let relay = [("webhooks.relay_url", handler.url("/events"))];
    let gw = gateway(&up, &settings(&relay)).await;
    get(&gw.order_url(&order), &[AUTH]).await;
    assert_eq!(
        get(&gw.order_url(&order), &[AUTH]).await.header("x-cache"),
        Some("HIT")
    );

    let reply = notify(&gw, &event, Some("webhook-signer.key.pem"), "rsa-sha256").await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "the handler's answer");
    assert_eq!(reply.body, bytes::Bytes::from_static(b"handled"));
    relayed.assert_async().await;
    assert_eq!(
        get(&gw.order_url(&order), &[AUTH]).await.header("x-cache"),
        Some("MISS")
    );

    // A handler that does not answer within webhooks.relay_timeout: 504, counted.
    let slow = MockServer::start_async().await;
    slow.mock_async(|when, then| {
        when.method(POST).path("/events");
        then.status(200).delay(std::time::Duration::from_secs(3));
    })
    .await;
    let slow_relay = [
        ("webhooks.relay_url", slow.url("/events")),
        ("webhooks.relay_timeout", "300ms".to_owned()),
    ];
    let gw3 = gateway(&up, &settings(&slow_relay)).await;
    let reply = notify(&gw3, &event, Some("webhook-signer.key.pem"), "rsa-sha256").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reply.json()["errorName"], "UpstreamTimeout");
    gw3.stop().await;

    // A handler that cannot be reached: 502, counted; the invalidation was done all the same.
    let gone = [("webhooks.relay_url", "http://127.0.0.1:9/events".to_owned())];
    let gw2 = gateway(&up, &settings(&gone)).await;
    get(&gw2.order_url(&order), &[AUTH]).await;
    let reply = notify(&gw2, &event, Some("webhook-signer.key.pem"), "rsa-sha256").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let failed = "partner_gateway_webhook_events_total{outcome=\"relay_failed\"} ";
    assert_eq!(metric(&gw2, failed).await, Some(1.0));
    assert_eq!(
        get(&gw2.order_url(&order), &[AUTH]).await.header("x-cache"),
        Some("MISS")
    );
    gw.stop().await;
    gw2.stop().await;
}

#[test]
fn webhook_keys_are_checked_at_start() {
    let load = |pairs: &[(&str, &str)]| {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| {
                (
                    format!("PARTNER_GATEWAY__WEBHOOKS__{}", k.to_uppercase()),
                    v.to_string(),
                )
            })
            .collect();
        Config::load(&Sources {
            env,
            ..Sources::default()
        })
    };
    let cert = fixture("webhook-signer.cert.pem");
    assert!(load(&[]).is_ok(), "off by default");
    assert!(load(&[("path", PATH), ("certificate_file", &cert)]).is_ok());
    let key = fixture("webhook-signer.key.pem");
    assert!(
        load(&[("path", PATH)]).is_ok(),
        "certificates fetched from the default host"
    );
    for (pairs, named) in [
        (
            vec![("path", PATH), ("certificate_hosts", "")],
            "webhooks.certificate_hosts",
        ),
        (
            vec![("path", "/v1/customers/x"), ("certificate_file", &cert)],
            "webhooks.path",
        ),
        (
            vec![("path", "hooks"), ("certificate_file", &cert)],
            "webhooks.path",
        ),
        (
            vec![("path", PATH), ("certificate_file", &key)],
            "webhooks.certificate_file",
        ),
        (
            vec![("path", PATH), ("certificate_file", "/nonexistent.pem")],
            "webhooks.certificate_file",
        ),
        (
            vec![
                ("path", PATH),
                ("certificate_file", &cert),
                ("relay_url", "ftp://x"),
            ],
            "webhooks.relay_url",
        ),
    ] {
        let err = load(&pairs).expect_err(named).to_string();
        assert!(err.contains(named), "{pairs:?}: {err}");
    }
}

/// A test CA named `organisation`, its PEM written to a file, and the issuer for its leaves.
fn test_ca(organisation: &str) -> (rcgen::Issuer<'static, rcgen::KeyPair>, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::OrganizationName, organisation);
    params
        .distinguished_name
        .push(DnType::CommonName, "partner-gateway test CA");
    let cert = params.self_signed(&key).expect("ca cert");
    let path = std::env::temp_dir().join(format!("pg-webhook-ca-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&path, cert.pem()).expect("write ca");
    (Issuer::new(params, key), path)
}

/// The signing certificate for the test key `key_file`, issued by `issuer` (DER).
fn signing_certificate(key_file: &str, issuer: &rcgen::Issuer<'static, rcgen::KeyPair>) -> Vec<u8> {
    let pem = std::fs::read_to_string(fixture(key_file)).expect("key");
    let key = rcgen::KeyPair::from_pem(&pem).expect("rsa key");
    let params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .signed_by(&key, issuer)
        .expect("signing cert")
        .der()
        .to_vec()
}

/// An https server on 127.0.0.1 (its certificate issued by `issuer`) that serves `documents`
/// by path and counts the requests; returns its `host:port`.
async fn certificate_host(
    issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    documents: HashMap<String, Vec<u8>>,
    fetches: Arc<AtomicUsize>,
) -> String {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::KeyPair::generate().expect("server key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let cert = params.signed_by(&key, issuer).expect("server cert");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let documents = Arc::new(documents);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, documents, fetches) =
                (acceptor.clone(), documents.clone(), fetches.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (documents, fetches) = (documents.clone(), fetches.clone());
                        async move {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            let body = documents.get(req.uri().path()).cloned();
                            let status = if body.is_some() { 200 } else { 404 };
                            let body = http_body_util::Full::new(bytes::Bytes::from(
                                body.unwrap_or_default(),
                            ));
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(body)
                                    .expect("response"),
                            )
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    format!("127.0.0.1:{}", addr.port())
}

/// POSTs `body` signed by `key_file`, naming `certificate_url`.
async fn notify_with_url(
    gw: &TestGateway,
    body: &str,
    key_file: &str,
    certificate_url: &str,
) -> Reply {
    let signature = format!("Signature {}", sign(key_file, body.as_bytes()));
    let headers = [
        ("authorization", signature.as_str()),
        ("x-ms-signature-algorithm", "rsa-sha256"),
        ("x-ms-certificate-url", certificate_url),
    ];
    send(Method::POST, &gw.url(PATH), &headers, body.to_owned()).await
}

#[tokio::test]
async fn a_certificate_named_by_the_notification_is_fetched_once_from_an_allowed_host_and_checked()
{
    let (issuer, ca_file) = test_ca("Microsoft Corporation");
    let (stranger, stranger_file) = test_ca("Contoso");
    let mut documents = HashMap::new();
    documents.insert(
        "/signer.cer".to_owned(),
        signing_certificate("webhook-signer.key.pem", &issuer),
    );
    documents.insert(
        "/stranger.cer".to_owned(),
        signing_certificate("webhook-signer.key.pem", &stranger),
    );
    let fetches = Arc::new(AtomicUsize::new(0));
    let host = certificate_host(&issuer, documents, fetches.clone()).await;

    // The gateway trusts both test CAs (as roots), and takes certificates from that host only.
    let bundle =
        std::env::temp_dir().join(format!("pg-webhook-roots-{}.pem", uuid::Uuid::new_v4()));
    let roots = std::fs::read_to_string(&ca_file).expect("ca")
        + &std::fs::read_to_string(&stranger_file).expect("ca");
    std::fs::write(&bundle, roots).expect("bundle");
    let up = OrderUpstream::start().await;
    let settings = [
        ("webhooks.path", PATH.to_owned()),
        ("webhooks.certificate_hosts", host.clone()),
        ("webhooks.ca_file", bundle.to_string_lossy().into_owned()),
        (
            "cache.resources",
            "orders,subscriptions,customers".to_owned(),
        ),
    ];
    let overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = TestGateway::with(&up.base_url, &overrides).await;
    let event = subscription_event(CUSTOMER, &new_order());
    let signer_url = format!("https://{host}/signer.cer");

    // Several notifications, some at once: one fetch of the certificate for all.
    let replies = futures_util::future::join_all(
        (0..4).map(|_| notify_with_url(&gw, &event, "webhook-signer.key.pem", &signer_url)),
    )
    .await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
    assert_eq!(
        notify_with_url(&gw, &event, "webhook-signer.key.pem", &signer_url)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "kept per URL, one fetch at a time"
    );

    // Another key, another host, http, an issuer not named Microsoft Corporation: refused.
    let other_key = notify_with_url(&gw, &event, "webhook-other.key.pem", &signer_url).await;
    let elsewhere = notify_with_url(
        &gw,
        &event,
        "webhook-signer.key.pem",
        "https://127.0.0.1:9/signer.cer",
    )
    .await;
    let plain = notify_with_url(
        &gw,
        &event,
        "webhook-signer.key.pem",
        &format!("http://{host}/signer.cer"),
    )
    .await;
    let stranger_url = format!("https://{host}/stranger.cer");
    let wrong_issuer = notify_with_url(&gw, &event, "webhook-signer.key.pem", &stranger_url).await;
    let missing = notify_with_url(
        &gw,
        &event,
        "webhook-signer.key.pem",
        &format!("https://{host}/none.cer"),
    )
    .await;
    let expired_url = format!("https://{host}/expired.cer");
    let expired = notify_with_url(&gw, &event, "webhook-signer.key.pem", &expired_url).await;
    for (name, reply) in [
        ("another key", &other_key),
        ("another host", &elsewhere),
        ("http", &plain),
        ("another issuer", &wrong_issuer),
        ("no such certificate", &missing),
        ("an expired certificate", &expired),
    ] {
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{name}: {:?}",
            reply.body
        );
        assert_eq!(reply.json()["errorName"], "WebhookUnauthorized", "{name}");
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        4,
        "never fetched from another host or over http"
    );
    gw.stop().await;
    for file in [ca_file, stranger_file, bundle] {
        let _ = std::fs::remove_file(file);
    }
}

/// SPEC §15.4 end to end: a subscription changed in the simulator's portal is announced by a
/// notification the simulator signs with its own key; the gateway, its certificate pinned,
/// verifies it and drops the subscription (no audit follower here: only the notification can).
#[cfg(feature = "demo")]
#[tokio::test]
async fn the_simulators_signed_notification_reaches_the_cache() {
    use partner_gateway::demo::simulator::{Knobs, Simulator, PORTAL};
    let sim = Simulator::start(([127, 0, 0, 1], 0).into(), Knobs::default())
        .await
        .expect("simulator");
    let certificate =
        std::env::temp_dir().join(format!("pg-sim-cert-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&certificate, Simulator::certificate()).expect("certificate");
    let settings = [
        ("webhooks.path", PATH),
        (
            "webhooks.certificate_file",
            certificate.to_str().expect("path"),
        ),
        ("cache.resources", "orders,subscriptions,customers"),
    ];
    let gw = TestGateway::with(&sim.base_url(), &settings).await;
    assert!(sim.notify_to(&gw.url(PATH)));
    let account = Simulator::accounts().remove(0);
    let path = format!(
        "/v1/customers/{}/subscriptions/{}",
        account.customer, account.subscriptions[0].id
    );
    let url = gw.url(&path);
    get(&url, &[AUTH]).await;
    assert_eq!(get(&url, &[AUTH]).await.header("x-cache"), Some("HIT"));

    let portal = format!("{}{PORTAL}{path}", sim.base_url());
    let changed = send(Method::PATCH, &portal, &[], r#"{"quantity":77}"#).await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    common::wait::eventually(std::time::Duration::from_secs(10), || async {
        get(&url, &[AUTH]).await.json()["quantity"] == 77
    })
    .await;
    let accepted = "partner_gateway_webhook_events_total{outcome=\"accepted\"} ";
    assert_eq!(metric(&gw, accepted).await, Some(1.0));
    gw.stop().await;
    sim.stop();
    let _ = std::fs::remove_file(certificate);
}

/// SPEC §15.2 with §12.3: three replicas on a real Redis; a notification taken by A is relayed
/// only after every replica dropped the subscription, so a handler that reads it through C the
/// moment the event arrives reads the new version.
#[tokio::test]
async fn a_handler_reading_through_another_replica_when_the_event_arrives_reads_the_new_version() {
    use std::sync::Mutex;
    let Some(redis) = common::redis::RedisServer::start("webhook_relay_fleet") else {
        return;
    };
    let up = OrderUpstream::start().await;
    let subscription = new_order();
    let path = format!("/v1/customers/{CUSTOMER}/subscriptions/{subscription}");

    // The partner's handler: on each event, reads the subscription through replica C.
    let read_through: Arc<Mutex<Option<String>>> = Arc::default();
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handler_url = format!("http://{}/events", listener.local_addr().expect("addr"));
    let (through, record) = (read_through.clone(), seen.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (through, record) = (through.clone(), record.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |_req: hyper::Request<hyper::body::Incoming>| {
                        let (through, record) = (through.clone(), record.clone());
                        async move {
                            let url = through.lock().expect("lock").clone().expect("url");
                            let reply = get(&url, &[AUTH]).await;
                            record
                                .lock()
                                .expect("lock")
                                .push(reply.header("etag").map(str::to_owned));
                            Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(b"read"),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let redis_url = redis.url();
    let mut settings = settings(&[("webhooks.relay_url", handler_url)]);
    settings.extend([
        ("fleet.redis_url", redis_url),
        (
            "fleet.partition_secret",
            "webhook-secret-webhook-secret-webhook".to_owned(),
        ),
        ("fleet.timeout", "1s".to_owned()),
    ]);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(gateway(&up, &settings).await);
    }
    for gw in &replicas {
        common::wait::eventually(std::time::Duration::from_secs(5), || async {
            let stats = gw.stats().await;
            stats["fleet"]["up"] == true && stats["fleet"]["replicas"] == 3
        })
        .await;
    }
    *read_through.lock().expect("lock") = Some(replicas[2].url(&path));
    for gw in &replicas {
        get(&gw.url(&path), &[AUTH]).await;
        assert_eq!(
            get(&gw.url(&path), &[AUTH]).await.header("x-cache"),
            Some("HIT")
        );
    }

    // Partner Center changes it, and announces it through replica A.
    up.bump(&subscription);
    let event = subscription_event(CUSTOMER, &subscription);
    let reply = notify(
        &replicas[0],
        &event,
        Some("webhook-signer.key.pem"),
        "rsa-sha256",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body, bytes::Bytes::from_static(b"read"));
    let new_etag = format!("\"{}\"", etag_for(&subscription, 2));
    assert_eq!(*seen.lock().expect("lock"), vec![Some(new_etag)]);
    for gw in replicas {
        gw.stop().await;
    }
}

/// SPEC §14 holds for notifications too: a body that stalls past `server.body_read_timeout` is
/// a 408, not a connection held open.
#[tokio::test]
async fn a_notification_body_that_stalls_is_a_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = OrderUpstream::start().await;
    let stalls = [("server.body_read_timeout", "300ms".to_owned())];
    let gw = gateway(&up, &settings(&stalls)).await;
    let mut client = tokio::net::TcpStream::connect(gw.front)
        .await
        .expect("connect");
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n\
         x-ms-signature-algorithm: rsa-sha256\r\ncontent-length: 100\r\n\r\n{{\"Event"
    );
    client.write_all(head.as_bytes()).await.expect("write");
    let mut answer = vec![0u8; 512];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), client.read(&mut answer))
        .await
        .expect("answered, not held")
        .expect("read");
    let text = String::from_utf8_lossy(&answer[..read]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    gw.stop().await;
}
