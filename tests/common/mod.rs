//! Shared test harness: a real gateway on ephemeral loopback ports, and a small HTTP client.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use partner_gateway::config::{Config, Sources};
use partner_gateway::pipeline::Gateway;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const CUSTOMER: &str = "3b6d6e5a-7f6f-4c1f-9d2a-1b2c3d4e5f60";
pub const ORDER: &str = "d6595733-265f-4918-a62e-026e64bc8384";
pub const GUID_A: &str = "8a53b025-d5be-4d98-ab20-229d1813de76";
pub const GUID_B: &str = "0e5fc923-8e3c-4560-9100-ce7283c3e081";

/// A running gateway; dropping it does not stop it, call [`TestGateway::stop`].
pub struct TestGateway {
    pub front: SocketAddr,
    pub admin: SocketAddr,
    pub gateway: Arc<Gateway>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Config from the built-in defaults, ports 0, plus `overrides` as `section.key = value`.
pub fn config(upstream: &str, overrides: &[(&str, &str)]) -> Config {
    let mut env: HashMap<String, String> = HashMap::new();
    let mut set = |key: &str, value: &str| {
        let name = format!(
            "PARTNER_GATEWAY__{}",
            key.replace('.', "__").to_ascii_uppercase()
        );
        env.insert(name, value.to_owned());
    };
    set("server.listen", "127.0.0.1:0");
    set("admin.listen", "127.0.0.1:0");
    set("upstream.base_url", upstream);
    set("server.shutdown_grace", "5s");
    for (k, v) in overrides {
        set(k, v);
    }
    Config::load(&Sources {
        env,
        ..Sources::default()
    })
    .expect("test config is valid")
}

impl TestGateway {
    /// Starts a gateway in this runtime.
    pub async fn start(config: Config) -> TestGateway {
        let bound = partner_gateway::server::bind(config).await.expect("bind");
        let front = bound.front_addr();
        let admin = bound.admin_addr();
        let gateway = bound.gateway();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(async move {
            let _ = rx.await;
        }));
        TestGateway {
            front,
            admin,
            gateway,
            shutdown: Some(tx),
            task,
        }
    }

    /// Starts a gateway against `upstream` with overrides.
    pub async fn with(upstream: &str, overrides: &[(&str, &str)]) -> TestGateway {
        TestGateway::start(config(upstream, overrides)).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.front, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Fires the shutdown trigger without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Fires the shutdown trigger and waits for the server to return (bounded).
    pub async fn stop(mut self) {
        self.trigger_shutdown();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("gateway stops in time")
            .expect("serve task did not panic");
    }
}

/// A received response, body collected.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: Version,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// An HTTP/1.1 client (or h2c with prior knowledge).
pub struct TestClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl TestClient {
    pub fn http1() -> TestClient {
        TestClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn h2c() -> TestClient {
        TestClient {
            client: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(Full::new(body.into())).expect("request");
        let response = tokio::time::timeout(Duration::from_secs(30), self.client.request(request))
            .await
            .expect("response in time")
            .expect("response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
            version: parts.version,
        }
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, url, headers, Bytes::new()).await
    }
}

/// The path of the sample order.
pub fn order_path(customer: &str, order: &str) -> String {
    format!("/v1/customers/{customer}/orders/{order}")
}

/// A minimal Order JSON as Partner Center returns it.
pub fn order_json(customer: &str, order: &str, version: u32) -> String {
    serde_json::json!({
        "id": order,
        "referenceCustomerId": customer,
        "billingCycle": "monthly",
        "currencyCode": "USD",
        "lineItems": [{"lineItemNumber": 0, "offerId": "031C9E47-4802-4248-838E-778FB1D2CC05", "quantity": 1}],
        "status": "completed",
        "creationDate": "2015-10-08T10:42:36.54-07:00",
        "attributes": {"etag": etag_for(order, version), "objectType": "Order"}
    })
    .to_string()
}

/// Partner Center's etag shape: base64 of {"id":…,"version":N} (here: a readable stand-in).
pub fn etag_for(order: &str, version: u32) -> String {
    format!("eyJpZCI6{order}-v{version}")
}

/// Waits until `check` holds, polling; panics after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An upstream that announces each request's arrival and answers only when released.
pub struct HeldUpstream {
    pub base_url: String,
    arrivals: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<()>>,
    release: Arc<tokio::sync::Semaphore>,
}

impl HeldUpstream {
    pub async fn start() -> HeldUpstream {
        use hyper::service::service_fn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let gate = release.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let gate = gate.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        let gate = gate.clone();
                        async move {
                            let _ = tx.send(());
                            if let Ok(permit) = gate.acquire().await {
                                permit.forget();
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from("finished"),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HeldUpstream {
            base_url: format!("http://{addr}"),
            arrivals: tokio::sync::Mutex::new(rx),
            release,
        }
    }

    /// Waits (bounded) until one more request has arrived.
    pub async fn arrived(&self) {
        let mut rx = self.arrivals.lock().await;
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a request reached the upstream")
            .expect("upstream running");
    }

    /// Lets one held request be answered.
    pub fn release(&self) {
        self.release.add_permits(1);
    }
}
