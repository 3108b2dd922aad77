//! Bench origin for `benches/compare.sh`: answers every `GET /v1/customers/{c}/orders/{o}` with a
//! ~1.2 KB Order (`id` = o, `referenceCustomerId` = c, `attributes.etag` a string) and counts
//! the requests it receives; `GET /__count` answers that count (and is not counted itself).
//! Anything else is a counted 404. HTTP/1.1 keep-alive, one-threaded runtime (it shares a core
//! with the load generator).
//!
//! `cargo run --release --example bench-origin -- --listen 127.0.0.1:9000`

#[path = "common.rs"]
mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn handle(count: &AtomicU64, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path == "/__count" {
        let n = count.load(Ordering::SeqCst);
        return Response::new(Full::new(Bytes::from(format!("{n}\n"))));
    }
    count.fetch_add(1, Ordering::SeqCst);
    let route = if request.uri().query().is_none() {
        common::order_route(path)
    } else {
        None
    };
    match (request.method(), route) {
        (&Method::GET | &Method::HEAD, Some((customer, order))) => {
            let mut response =
                Response::new(Full::new(Bytes::from(common::order_body(customer, order))));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        _ => {
            let mut response = Response::new(Full::new(Bytes::from_static(
                br#"{"code":404,"description":"not found","data":[],"source":"bench-origin"}"#,
            )));
            *response.status_mut() = StatusCode::NOT_FOUND;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let listener = TcpListener::bind(common::listen_addr())
        .await
        .expect("bind --listen");
    println!(
        "bench-origin listening on {}",
        listener.local_addr().expect("local addr")
    );
    let count = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("bench-origin: accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let count = count.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = handle(&count, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
