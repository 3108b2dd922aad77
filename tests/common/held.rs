//! An upstream that holds every request until the test releases it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

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
