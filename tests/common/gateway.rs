//! A real gateway on ephemeral loopback ports, seen from outside only: its front and admin
//! ports.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use partner_gateway::config::{Config, Sources};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::http::get;

/// A running gateway; dropping it does not stop it, call [`TestGateway::stop`].
pub struct TestGateway {
    pub front: SocketAddr,
    admin: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Config from the built-in defaults, ports 0, plus `overrides` as `section.key = value`.
fn config(upstream: &str, overrides: &[(&str, &str)]) -> Config {
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
    /// Starts a gateway in this runtime against `upstream`, with `overrides`.
    pub async fn with(upstream: &str, overrides: &[(&str, &str)]) -> TestGateway {
        let bound = partner_gateway::server::bind(config(upstream, overrides))
            .await
            .expect("bind");
        let front = bound.front_addr();
        let admin = bound.admin_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(async move {
            let _ = rx.await;
        }));
        TestGateway {
            front,
            admin,
            shutdown: Some(tx),
            task,
        }
    }

    /// A URL on the front port.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.front, path)
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

// The admin side: not every test file looks at it (shield.rs and tls.rs never do).
#[allow(dead_code)]
impl TestGateway {
    /// A URL on the admin port.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// `GET /cache/stats` on the admin port: `entries`, `bytes`, `fills_in_progress`, ….
    pub async fn stats(&self) -> serde_json::Value {
        let reply = get(&self.admin_url("/cache/stats"), &[]).await;
        assert_eq!(reply.status, http::StatusCode::OK, "{:?}", reply.body);
        reply.json()
    }
}
