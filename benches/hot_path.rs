//! Micro-benchmarks of the per-request pure functions on the hit path: route match, cache key
//! (with the credential hash), correlation IDs, If-None-Match, and building a hit's response.
//! Run: `cargo bench --bench hot_path`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use partner_gateway::cache::key::KeyMaker;
use partner_gateway::cache::lookup::answer;
use partner_gateway::cache::store::Entry;
use partner_gateway::config::Partition;
use partner_gateway::outcome::{CacheState, Note};
use partner_gateway::request::conditional::if_none_match_matches;
use partner_gateway::request::correlation::Correlation;
use partner_gateway::request::credential::{CredentialMemo, Fingerprinter};
use partner_gateway::request::route::{classify, Route};
use partner_gateway::resource::{Resource, Resources};

const PATH: &str = "/v1/customers/4a2f6c1e-8b3d-4e5f-9a7b-1c2d3e4f5a60/orders/0d0e0000-0000-4000-8000-0000000a11ce";

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_static(
            "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIsIng1dCI6Ik1uQ19WWmNBVGZNNXBP",
        ),
    );
    h.insert("accept", HeaderValue::from_static("application/json"));
    h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
    h
}

fn bench(c: &mut Criterion) {
    let uri: Uri = PATH.parse().expect("uri");
    // All three resources enabled: the most a path is matched against.
    let enabled: Resources = Resource::ALL.into_iter().collect();
    c.bench_function("route::classify (order)", |b| {
        b.iter(|| classify(black_box(&Method::GET), black_box(&uri), enabled))
    });
    let Route::Cached(order) = classify(&Method::GET, &uri, enabled) else {
        panic!("order route");
    };

    let keys = KeyMaker::new(Partition::Credential);
    let hasher = Fingerprinter::new();
    let h = headers();
    // A fresh memo each time: the hash itself (a connection's first request).
    c.bench_function("key::KeyMaker::key (credential hash)", |b| {
        b.iter(|| {
            let caller = hasher.caller(black_box(&h), Some(&CredentialMemo::default()));
            keys.key(black_box(order), black_box(&h), caller)
        })
    });
    // The same connection's next requests: the credential compared, not hashed.
    let memo = CredentialMemo::default();
    c.bench_function("key::KeyMaker::key (same connection, memo)", |b| {
        b.iter(|| {
            let caller = hasher.caller(black_box(&h), Some(&memo));
            keys.key(black_box(order), black_box(&h), caller)
        })
    });

    c.bench_function("correlation::Correlation::from_request (mint both)", |b| {
        b.iter(|| Correlation::from_request(black_box(&h)))
    });

    let etag = HeaderValue::from_static(
        "\"eyJpZCI6IjBkMGUwMDAwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDBhMTFjZSIsInZlcnNpb24iOjF9\"",
    );
    let mut inm = HeaderMap::new();
    inm.insert("if-none-match", HeaderValue::from_static("\"old\", W/\"eyJpZCI6IjBkMGUwMDAwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDBhMTFjZSIsInZlcnNpb24iOjF9\""));
    c.bench_function("conditional::if_none_match_matches (list, weak)", |b| {
        b.iter(|| if_none_match_matches(black_box(&inm), black_box(&etag)))
    });

    let entry = Arc::new(Entry::new(
        http::StatusCode::OK,
        Bytes::from(vec![b'x'; 1200]),
        Some(HeaderValue::from_static("application/json; charset=utf-8")),
        Some(etag.clone()),
        Instant::now(),
    ));
    let (parts, ()) = Request::get(PATH).body(()).expect("request").into_parts();
    let correlation = Correlation::from_request(&h);
    c.bench_function("order::answer (hit response head)", |b| {
        b.iter(|| {
            let mut note = Note::default();
            answer(
                black_box(&entry),
                CacheState::Hit,
                black_box(&parts),
                &correlation,
                &mut note,
                Instant::now(),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
