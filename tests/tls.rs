//! https upstreams: trusted through `upstream.ca_file`, refused without it, HTTP/2 by ALPN.

mod common {
    pub mod gateway;
    pub mod http;
}

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use common::{gateway::*, http::*};
use http::StatusCode;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA (PEM written to a file) and a TLS upstream on 127.0.0.1 whose certificate it signed.
/// The upstream answers with the HTTP version it saw.
async fn tls_upstream() -> (String, PathBuf) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "partner-gateway test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).expect("leaf");

    let ca_path = std::env::temp_dir().join(format!("pg-test-ca-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&ca_path, ca_cert.pem()).expect("write ca");

    let mut server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .expect("server config");
    server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let body = format!("secure {:?} {}", req.version(), req.uri().path());
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("https://127.0.0.1:{}", addr.port()), ca_path)
}

#[tokio::test]
async fn https_upstream_trusted_through_ca_file_speaks_h2() {
    let (base, ca) = tls_upstream().await;
    let gw = TestGateway::with(&base, &[("upstream.ca_file", ca.to_str().expect("path"))]).await;
    let reply = get(&gw.url("/v1/secure"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body, Bytes::from("secure HTTP/2.0 /v1/secure"));
    gw.stop().await;
    let _ = std::fs::remove_file(ca);
}

#[tokio::test]
async fn https_upstream_without_its_ca_is_a_502() {
    let (base, ca) = tls_upstream().await;
    let gw = TestGateway::with(&base, &[]).await;
    let reply = get(&gw.url("/v1/secure"), &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let json = reply.json();
    assert_eq!(json["errorName"], "UpstreamUnavailable");
    // SPEC §7: no certificate problem in what the client reads (the log line has it).
    let description = json["description"].as_str().expect("description");
    for internal in ["Issuer", "certificate", "Certificate", "127.0.0.1"] {
        assert!(!description.contains(internal), "{description}");
    }
    gw.stop().await;
    let _ = std::fs::remove_file(ca);
}

#[test]
fn ca_file_without_certificates_is_a_startup_error() {
    let path = std::env::temp_dir().join(format!("pg-test-empty-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&path, "not a certificate\n").expect("write");
    let env = [(
        "PARTNER_GATEWAY__UPSTREAM__CA_FILE".to_owned(),
        path.display().to_string(),
    )];
    let err = partner_gateway::config::Config::load(&partner_gateway::config::Sources {
        env: env.into_iter().collect(),
        ..Default::default()
    })
    .expect_err("no certificate");
    assert!(err.to_string().contains("upstream.ca_file"), "{err}");
    let _ = std::fs::remove_file(path);
}
