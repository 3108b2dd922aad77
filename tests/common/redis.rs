//! A real `redis-server` for one test: started on a free loopback port with persistence off,
//! stopped by its PID when dropped.
//!
//! Where `redis-server` is not installed, [`RedisServer::start`] says plainly that the test did
//! not run and how to enable it, and returns `None`; under `CI=true` a missing server is a
//! failure instead (`.ci/run` installs it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` this test started.
pub struct RedisServer {
    pub addr: SocketAddr,
    child: Child,
}

impl RedisServer {
    /// Starts one, or explains why not (`None`) when `redis-server` is missing outside CI.
    pub fn start(test: &str) -> Option<RedisServer> {
        RedisServer::start_on(test, free_port())
    }

    /// Stops this server (as if it crashed) and starts a new, empty one on the same port.
    pub fn restart(&mut self, test: &str) {
        self.stop();
        let again = RedisServer::start_on(test, self.addr.port()).expect("redis-server restarts");
        let old = std::mem::replace(self, again);
        drop(old);
    }

    /// Stops this server (by its PID); it answers nothing from now on.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Three nodes joined into a Redis Cluster (`redis-cli --cluster create`), or `None` as
    /// [`RedisServer::start`] says.
    pub fn start_cluster(test: &str) -> Option<Vec<RedisServer>> {
        RedisServer::cluster(test, 3, 0)
    }

    /// Three masters, each with one replica (the first three nodes are the masters), failing
    /// over within about a second of a master's loss (`cluster-node-timeout 1000`).
    pub fn start_cluster_with_replicas(test: &str) -> Option<Vec<RedisServer>> {
        RedisServer::cluster(test, 6, 1)
    }

    /// A node's `ROLE` (`master` or `slave`).
    pub fn role(&self) -> String {
        let reply = self.command("ROLE");
        let role = reply.lines().find(|l| !l.starts_with(['*', '$', ':']));
        role.unwrap_or_default().to_owned()
    }

    fn cluster(test: &str, count: usize, replicas: u32) -> Option<Vec<RedisServer>> {
        let dir = std::env::temp_dir().join(format!("pg-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut nodes = Vec::new();
        for _ in 0..count {
            let port = free_port();
            let config = dir.join(format!("nodes-{port}.conf"));
            let config = config.to_string_lossy().into_owned();
            let extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &config,
                "--cluster-node-timeout",
                "1000",
            ];
            nodes.push(RedisServer::start_with(test, port, &extra)?);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(node.addr.to_string());
        }
        let created = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        for node in &nodes {
            while !node.command("CLUSTER INFO").contains("cluster_state:ok") {
                assert!(Instant::now() < deadline, "the cluster did not become ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(nodes)
    }

    fn start_on(test: &str, port: u16) -> Option<RedisServer> {
        RedisServer::start_with(test, port, &[])
    }

    fn start_with(test: &str, port: u16, extra: &[&str]) -> Option<RedisServer> {
        let spawned = Command::new("redis-server")
            .args(extra)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("{test}: redis-server is required under CI=true ({e})")
            }
            Err(e) => {
                // Straight to stderr, past the test harness's capture: it must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: redis-server could not be started ({e}); this fleet test \
                     did not run. Install it (Debian: apt-get install -y redis-server) to run it."
                );
                return None;
            }
        };
        let server = RedisServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        };
        server.wait_ready();
        Some(server)
    }

    /// `redis://` URL of this server.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Sends one inline command and returns the raw reply (for checks from the test).
    pub fn command(&self, line: &str) -> String {
        let mut stream = TcpStream::connect(self.addr).expect("connect to redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
        let mut buf = vec![0u8; 64 * 1024];
        let n = stream.read(&mut buf).expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut stream) = TcpStream::connect(self.addr) {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 16];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream
                        .read(&mut buf)
                        .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
                {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
