//! Bench origin for `benches/compare.sh`: answers every `GET /v1/customers/{c}/orders/{o}` with a
//! ~1.2 KB Order (`id` = o, `referenceCustomerId` = c, `attributes.etag` a string) and counts
//! the requests it receives; `GET /__count` answers that count (and is not counted itself).
//! `GET /__stall` (for `benches/adversarial.sh`) answers 200 declaring a 100,000-byte body, sends
//! its first 16 bytes and then nothing for ten minutes: a stalled upstream body (SPEC §14).
//! Anything else is a counted 404; a request that may carry a body (not GET/HEAD) is answered
//! only once its whole body has arrived, as a real API would, so a trickled body holds the
//! upstream exchange. HTTP/1.1 keep-alive, one-threaded runtime (it shares a core with the load
//! generator).
//!
//! `cargo run --release --example bench-origin -- --listen 127.0.0.1:9000`

#[path = "common.rs"]
mod common;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{self, Either};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The length `GET /__stall` declares.
const STALL_LENGTH: u64 = 100_000;

/// How long `GET /__stall` stays silent after its first bytes (then it fails the body).
const STALL_FOR: Duration = Duration::from_secs(600);

/// The body of `GET /__stall`: 16 bytes, then silence.
struct StallBody {
    first: Option<Bytes>,
    silence: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for StallBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        ready!(self.silence.as_mut().poll(cx));
        Poll::Ready(Some(Err(std::io::Error::other("stalled body given up"))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(STALL_LENGTH)
    }
}

type OriginBody = http_body_util::Either<Full<Bytes>, StallBody>;

fn full(bytes: Bytes) -> OriginBody {
    http_body_util::Either::Left(Full::new(bytes))
}

fn handle<B>(count: &AtomicU64, request: &Request<B>) -> Response<OriginBody> {
    let path = request.uri().path();
    if path == "/__count" {
        let n = count.load(Ordering::SeqCst);
        return Response::new(full(Bytes::from(format!("{n}\n"))));
    }
    count.fetch_add(1, Ordering::SeqCst);
    if path == "/__stall" && request.method() == Method::GET {
        let mut response = Response::new(http_body_util::Either::Right(StallBody {
            first: Some(Bytes::from_static(br#"{"stalled":true,"#)),
            silence: Box::pin(tokio::time::sleep(STALL_FOR)),
        }));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(STALL_LENGTH));
        return response;
    }
    let route = if request.uri().query().is_none() {
        common::order_route(path)
    } else {
        None
    };
    match (request.method(), route) {
        (&Method::GET | &Method::HEAD, Some((customer, order))) => {
            let mut response =
                Response::new(full(Bytes::from(common::order_body(customer, order))));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        _ => {
            let mut response = Response::new(full(Bytes::from_static(
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
                if request.method() == Method::GET || request.method() == Method::HEAD {
                    return Either::Left(future::ready(Ok::<_, Infallible>(handle(
                        &count, &request,
                    ))));
                }
                // Anything else is answered once its whole body has arrived.
                let count = count.clone();
                Either::Right(async move {
                    let (parts, body) = request.into_parts();
                    let _ = body.collect().await;
                    Ok(handle(&count, &Request::from_parts(parts, ())))
                })
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
