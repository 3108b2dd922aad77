//! Shared by the comparison bench programs (`benches/compare.sh`); not a program itself.
//! Each program pulls it in with `#[path = "common.rs"] mod common;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use base64::Engine;

/// The customer GUID the script uses for its fixed order paths.
pub const CUSTOMER: &str = "0e5fc923-8e3c-4560-9100-ce7283c3e081";

/// A Partner Center Order resource (~1.2 KB) for `customer`/`order`: `id` is the order,
/// `referenceCustomerId` the customer, `attributes.etag` base64 of `{"id":"<order>","version":1}`.
/// Its length does not depend on the ids as long as they are GUIDs (36 characters).
pub fn order_body(customer: &str, order: &str) -> String {
    let etag = base64::engine::general_purpose::STANDARD
        .encode(format!(r#"{{"id":"{order}","version":1}}"#));
    let path = format!("/v1/customers/{customer}/orders/{order}");
    let sub = "00005ab1-1111-4222-8333-000000000001";
    format!(
        concat!(
            r#"{{"id":"{order}","referenceCustomerId":"{customer}","#,
            r#""billingCycle":"monthly","transactionType":"UserPurchase","currencyCode":"USD","#,
            r#""currencySymbol":"$","creationDate":"2026-02-11T10:42:36.54Z","status":"completed","#,
            r#""lineItems":[{{"lineItemNumber":0,"offerId":"CFQ7TTC0LH18:0001","#,
            r#""subscriptionId":"{sub}","friendlyName":"Microsoft 365 Business Basic","#,
            r#""quantity":25,"termDuration":"P1M","links":{{"subscription":{{"#,
            r#""uri":"/customers/{customer}/subscriptions/{sub}","method":"GET","headers":[]}}}}}}],"#,
            r#""links":{{"self":{{"uri":"{path}","#,
            r#""method":"GET","headers":[]}},"provisioningStatus":{{"#,
            r#""uri":"{path}/provisioningstatus","method":"GET","headers":[]}},"#,
            r#""patchOperation":{{"uri":"{path}","method":"PATCH","headers":[]}}}},"#,
            r#""attributes":{{"etag":"{etag}","objectType":"Order"}}}}"#,
        ),
        order = order,
        customer = customer,
        sub = sub,
        path = path,
        etag = etag,
    )
}

/// `(customer, order)` of `/v1/customers/{c}/orders/{o}` (no query, no extra segment).
pub fn order_route(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v1/customers/")?;
    let (customer, rest) = rest.split_once('/')?;
    let order = rest.strip_prefix("orders/")?;
    if customer.is_empty() || order.is_empty() || order.contains('/') {
        return None;
    }
    Some((customer, order))
}

/// The value after `--name` on the command line, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// `--listen ADDR` (default `127.0.0.1:0`).
pub fn listen_addr() -> SocketAddr {
    let text = arg("--listen", "127.0.0.1:0");
    text.parse()
        .unwrap_or_else(|e| panic!("--listen {text}: {e}"))
}

/// A gateway process this program started, and its front URL.
pub struct Gateway {
    child: Child,
    pub front: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin run` against `upstream` on free loopback ports (fleet mode on `redis` unless it is
/// empty; `extra` more `PARTNER_GATEWAY__…` variables), and waits for its listening line.
pub fn start_gateway(bin: &str, upstream: &str, redis: &str, extra: &[(&str, &str)]) -> Gateway {
    let mut command = Command::new(bin);
    command
        .arg("run")
        // Built-in defaults and the environment only: no config/default.toml of the checkout.
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PARTNER_GATEWAY__SERVER__LISTEN", "127.0.0.1:0")
        .env("PARTNER_GATEWAY__ADMIN__LISTEN", "127.0.0.1:0")
        .env("PARTNER_GATEWAY__UPSTREAM__BASE_URL", upstream)
        .env("PARTNER_GATEWAY__CACHE__TTL", "1h")
        .env(
            "PARTNER_GATEWAY__LOG__LEVEL",
            "warn,partner_gateway::server=info,partner_gateway::front::server=info",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if !redis.is_empty() {
        command
            .env("PARTNER_GATEWAY__FLEET__REDIS_URL", redis)
            .env(
                "PARTNER_GATEWAY__FLEET__PARTITION_SECRET",
                "races-secret-races-secret-races-secret",
            )
            .env("PARTNER_GATEWAY__FLEET__TIMEOUT", "1s");
    }
    for (key, value) in extra {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start the gateway");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let front = loop {
        let line = lines
            .next()
            .expect("the gateway logs that it listens")
            .expect("read");
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if json["message"] == "listening" {
            break json["front"].as_str().expect("front").to_owned();
        }
    };
    // Keep reading, so a full pipe never matters.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Gateway {
        child,
        front: format!("http://{front}"),
    }
}

/// Serves HTTP/1.1 on a free loopback port with `answer` (one call per request) until the
/// program ends; returns the base URL.
pub async fn serve_locally<F, Fut>(answer: F) -> String
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = hyper::Response<http_body_util::Full<bytes::Bytes>>>
        + Send
        + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let answer = answer.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}
