//! Static ceiling for `benches/compare.sh`: a minimal hyper server that answers every request
//! with the same ~1.2 KB Order bytes (`application/json`), HTTP/1.1 keep-alive. Same runtime
//! flavour as the gateway (multi-threaded tokio; under `taskset` to one CPU that is one worker).
//!
//! `bench-static --listen 127.0.0.1:9001 [--customer GUID] [--order GUID]` — the body is the
//! origin's body for that customer/order, so a check on the order path sees the right `id`.

#[path = "common.rs"]
mod common;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() {
    let customer = common::arg("--customer", common::CUSTOMER);
    let order = common::arg("--order", "5e2a1c3b-0000-4000-8000-000000000001");
    let body = Bytes::from(common::order_body(&customer, &order));
    let listener = TcpListener::bind(common::listen_addr())
        .await
        .expect("bind --listen");
    println!(
        "bench-static listening on {}",
        listener.local_addr().expect("local addr")
    );
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("bench-static: accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<Incoming>| {
                let mut response = Response::new(Full::new(body.clone()));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
