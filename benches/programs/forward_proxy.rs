//! Bare forwarding proxy for `benches/compare.sh`, the miss-path reference: a minimal hyper
//! server that forwards every request to `--upstream` through a pooled hyper-util legacy client
//! (HTTP/1.1 keep-alive both sides), bodies streamed, no cache. Same runtime flavour as the
//! gateway (multi-threaded tokio; under `taskset` to one CPU that is one worker).
//!
//! `bench-forward-proxy --listen 127.0.0.1:9002 --upstream 127.0.0.1:9000`

#[path = "common.rs"]
mod common;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, HOST};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Answer = Response<Either<Incoming, Full<Bytes>>>;

async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: &str,
    mut request: Request<Incoming>,
) -> Answer {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let uri: Uri = match format!("http://{upstream}{path}").parse() {
        Ok(uri) => uri,
        Err(_) => return status(StatusCode::BAD_REQUEST),
    };
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.remove(CONNECTION);
    headers.insert(
        HOST,
        HeaderValue::from_str(upstream).expect("upstream is a valid host header"),
    );
    match client.request(request).await {
        Ok(response) => response.map(Either::Left),
        Err(e) => {
            eprintln!("bench-forward-proxy: upstream: {e}");
            status(StatusCode::BAD_GATEWAY)
        }
    }
}

fn status(code: StatusCode) -> Answer {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = code;
    response
}

#[tokio::main]
async fn main() {
    let upstream: &'static str =
        Box::leak(common::arg("--upstream", "127.0.0.1:9000").into_boxed_str());
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(connector);
    let listener = TcpListener::bind(common::listen_addr())
        .await
        .expect("bind --listen");
    println!(
        "bench-forward-proxy listening on {} -> {upstream}",
        listener.local_addr().expect("local addr")
    );
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("bench-forward-proxy: accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let client = client.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(forward(client, upstream, request).await)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
