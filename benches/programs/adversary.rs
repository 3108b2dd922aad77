//! Adversarial load figure for `benches/adversarial.sh` (SPEC §14): a well-behaved client's
//! cache-hit latency and cache-miss success on an unloaded gateway, then on the same gateway
//! while attackers run, then once more after they stopped; prints a Markdown report.
//!
//! ```text
//! bench-adversary run --target 127.0.0.1:8080 [--gateway-pid PID] [--seconds 30] [--ramp 5]
//!     [--hit-conns 16] [--hit-rate 4000] [--miss-conns 4] [--miss-rate 100] [--keys 1000]
//!     [--slowloris 200] [--h2-idle 200] [--trickle 16] [--stall 16] [--after 1] …
//! ```
//!
//! The well-behaved client: `--hit-conns` keep-alive HTTP/1.1 connections (hyper) asking for
//! `--keys` warmed orders at `--hit-rate` requests/s in all (0: as fast as they can), and
//! `--miss-conns` connections asking for never-seen orders at `--miss-rate`/s. A hit counts when
//! it is `200` + `X-Cache: HIT`, a miss when it is `200` + `X-Cache: MISS` + that order's body;
//! anything else (status, transport error, `--timeout`) is a failure. Paced latencies are
//! measured from the moment the request was due when the previous answer on its connection came
//! late (no coordinated omission), else from the moment it was sent.
//!
//! The attackers (phase B only, one thread of their own, from `--ramp` seconds before the
//! measurement until its end); each reconnects `--reconnect-ms` after the gateway ends its
//! connection:
//! - slowloris: a request head sent one byte every `--slowloris-ms`, never finished;
//! - h2 idle: the HTTP/2 preface and an empty SETTINGS frame, then silence;
//! - trickle: `POST /v1/customers/{c}/carts` declaring `Content-Length: 100000` (a forwarded
//!   path; the bench origin reads whole bodies before it answers); half of them send one byte
//!   every `--trickle-ms`, the other half one byte and then nothing;
//! - stall: `GET /__stall`, which the bench origin answers with a 100,000-byte body that stops
//!   after 16 bytes.
//!
//! Exit status: 0 when the goal (hit p99 under attack within 2× the unloaded one, no failed
//! well-behaved request under attack) is met, 2 when it is not, 1 when the harness failed.

#[path = "common.rs"]
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// The well-behaved client's credential; the attackers use another one.
const BENCH_AUTH: &str = "Bearer bench";
const ATTACK_AUTH: &str = "Bearer attacker";
/// The hit p99 ratio (attacked / unloaded) the goal allows.
const GOAL_RATIO: f64 = 2.0;
/// How long after a phase's end a connection behind its schedule may still send what was due.
const BEHIND: Duration = Duration::from_secs(1);

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("bench-adversary: {message}");
    std::process::exit(1);
}

fn num<T: std::str::FromStr>(name: &str, default: &str) -> T {
    let text = common::arg(name, default);
    text.parse()
        .unwrap_or_else(|_| fail(format_args!("{name} {text}: not a number")))
}

#[derive(Clone)]
struct Options {
    target: SocketAddr,
    host: String,
    gateway_pid: Option<u32>,
    clk_tck: f64,
    server_cpu: Option<usize>,
    client_cpu: Option<usize>,
    seconds: f64,
    ramp: f64,
    after: bool,
    hit_conns: usize,
    hit_rate: f64,
    miss_conns: usize,
    miss_rate: f64,
    keys: usize,
    timeout: Duration,
    slowloris: usize,
    h2_idle: usize,
    trickle: usize,
    stall: usize,
    slowloris_every: Duration,
    trickle_every: Duration,
    reconnect: Duration,
}

impl Options {
    fn parse() -> Options {
        let target: SocketAddr = common::arg("--target", "127.0.0.1:8080")
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|e| fail(format_args!("--target: {e} (want 127.0.0.1:PORT)")));
        let pid: u32 = num("--gateway-pid", "0");
        let options = Options {
            target,
            host: target.to_string(),
            gateway_pid: (pid != 0).then_some(pid),
            clk_tck: num("--clk-tck", "100"),
            server_cpu: common::arg("--server-cpu", "").parse().ok(),
            client_cpu: common::arg("--client-cpu", "").parse().ok(),
            seconds: num("--seconds", "30"),
            ramp: num("--ramp", "5"),
            after: num::<u8>("--after", "1") != 0,
            hit_conns: num("--hit-conns", "16"),
            hit_rate: num("--hit-rate", "4000"),
            miss_conns: num("--miss-conns", "4"),
            miss_rate: num("--miss-rate", "100"),
            keys: num("--keys", "1000"),
            timeout: Duration::from_secs_f64(num("--timeout", "10")),
            slowloris: num("--slowloris", "200"),
            h2_idle: num("--h2-idle", "200"),
            trickle: num("--trickle", "16"),
            stall: num("--stall", "16"),
            slowloris_every: Duration::from_millis(num("--slowloris-ms", "1000")),
            trickle_every: Duration::from_millis(num("--trickle-ms", "1000")),
            reconnect: Duration::from_millis(num("--reconnect-ms", "200")),
        };
        if options.seconds <= 0.0 || options.ramp < 0.0 || options.hit_conns == 0 {
            fail("--seconds and --hit-conns must be positive, --ramp not negative");
        }
        if options.keys == 0 || options.miss_conns == 0 || options.miss_rate <= 0.0 {
            fail("--keys, --miss-conns and --miss-rate must be positive");
        }
        options
    }
}

// --- the well-behaved client -------------------------------------------------------------------

/// What one kind of well-behaved request came to in one phase.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    ok: u64,
    failures: BTreeMap<String, u64>,
    reconnects: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        for (k, v) in other.failures {
            *self.failures.entry(k).or_default() += v;
        }
        self.reconnects += other.reconnects;
    }

    fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    fn attempted(&self) -> u64 {
        self.ok + self.failed()
    }

    /// The `q` quantile in milliseconds (latencies must be sorted).
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let n = self.latencies_us.len();
        if n == 0 {
            return None;
        }
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        Some(self.latencies_us[i] as f64 / 1000.0)
    }

    fn failures_text(&self) -> String {
        if self.failures.is_empty() {
            return "0".to_owned();
        }
        let detail: Vec<String> = self
            .failures
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!("**{}** ({})", self.failed(), detail.join(", "))
    }
}

#[derive(Clone, Copy)]
enum Want {
    Hit,
    Miss,
}

/// One keep-alive connection of the well-behaved client.
struct Conn {
    target: SocketAddr,
    host: String,
    sender: Option<SendRequest<Empty<Bytes>>>,
    opened: u64,
}

impl Conn {
    async fn open(&mut self) -> Result<(), String> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(self.target))
            .await
            .map_err(|_| "connect timeout".to_owned())?
            .map_err(|_| "connect error".to_owned())?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| "handshake error".to_owned())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.sender = Some(sender);
        self.opened += 1;
        Ok(())
    }

    /// One GET; `Err` is the failure's class.
    async fn get(&mut self, path: &str, want: Want, order: &str) -> Result<(), String> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.open().await?;
        }
        let sender = self.sender.as_mut().expect("opened above");
        if sender.ready().await.is_err() {
            self.sender = None;
            return Err("connection closed".to_owned());
        }
        let request = http::Request::get(path)
            .header(http::header::HOST, &self.host)
            .header(http::header::AUTHORIZATION, BENCH_AUTH)
            .body(Empty::new())
            .map_err(|_| "bad request".to_owned())?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(_) => {
                self.sender = None;
                return Err("transport error".to_owned());
            }
        };
        let status = response.status();
        let x_cache = response
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let body = match response.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                self.sender = None;
                return Err("body error".to_owned());
            }
        };
        if status != http::StatusCode::OK {
            let name = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("errorName")?.as_str().map(str::to_owned));
            return Err(match name {
                Some(name) => format!("{} {name}", status.as_u16()),
                None => status.as_u16().to_string(),
            });
        }
        let expected = match want {
            Want::Hit => "HIT",
            Want::Miss => "MISS",
        };
        if x_cache != expected {
            return Err(format!("200 X-Cache {x_cache}"));
        }
        if !order.is_empty() && memchr(&body, order.as_bytes()).is_none() {
            return Err("200 wrong body".to_owned());
        }
        Ok(())
    }
}

fn memchr(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn hit_path(i: usize) -> (String, String) {
    let order = format!("5e2a1c3b-0000-4000-8000-{i:012x}");
    (
        format!("/v1/customers/{}/orders/{order}", common::CUSTOMER),
        order,
    )
}

fn miss_path(run: u32, phase: u16, n: u64) -> (String, String) {
    let order = format!("{run:08x}-{phase:04x}-4000-8000-{n:012x}");
    (
        format!("/v1/customers/{}/orders/{order}", common::CUSTOMER),
        order,
    )
}

/// One connection's share of a phase: requests every `every` (or back to back) until `end`.
#[allow(clippy::too_many_arguments)]
async fn drive(
    options: Arc<Options>,
    want: Want,
    index: usize,
    every: Option<Duration>,
    start: Instant,
    end: Instant,
    next_miss: Arc<AtomicU64>,
    run: u32,
    phase: u16,
) -> Tally {
    let mut tally = Tally::default();
    let mut conn = Conn {
        target: options.target,
        host: options.host.clone(),
        sender: None,
        opened: 0,
    };
    if let Err(e) = conn.open().await {
        *tally.failures.entry(e).or_default() += 1;
    }
    let conns = match want {
        Want::Hit => options.hit_conns,
        Want::Miss => options.miss_conns,
    };
    // Spread the connections' schedules over one interval.
    let mut due = start + every.map_or(Duration::ZERO, |e| e.mul_f64(index as f64 / conns as f64));
    tokio::time::sleep_until(start.into()).await;
    let mut last_answer = Instant::now();
    let mut k = index;
    loop {
        let began = match every {
            Some(every) => {
                if due >= end {
                    break;
                }
                if Instant::now() >= end + BEHIND {
                    // Fallen behind schedule: what was due in the phase and never sent failed.
                    let left = ((end - due).as_secs_f64() / every.as_secs_f64()).ceil() as u64;
                    *tally
                        .failures
                        .entry("due but never sent (connection busy)".to_owned())
                        .or_default() += left;
                    break;
                }
                let began = if last_answer >= due {
                    due // late because the previous answer was: count from when it was due
                } else {
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                };
                due += every;
                began
            }
            None => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                now
            }
        };
        let (path, order) = match want {
            Want::Hit => {
                k = (k + conns) % options.keys;
                hit_path(k)
            }
            Want::Miss => miss_path(run, phase, next_miss.fetch_add(1, Ordering::Relaxed)),
        };
        let outcome = tokio::time::timeout(options.timeout, conn.get(&path, want, &order)).await;
        last_answer = Instant::now();
        match outcome {
            Ok(Ok(())) => {
                tally.ok += 1;
                tally
                    .latencies_us
                    .push(last_answer.duration_since(began).as_micros() as u64);
            }
            Ok(Err(class)) => *tally.failures.entry(class).or_default() += 1,
            Err(_) => {
                conn.sender = None;
                *tally.failures.entry("timeout".to_owned()).or_default() += 1;
            }
        }
    }
    tally.reconnects = conn.opened.saturating_sub(1);
    tally
}

/// Gateway process figures over a phase's measurement.
#[derive(Default)]
struct ProcessFigures {
    cpu_share: Option<f64>,
    max_fds: usize,
    max_rss_kib: u64,
    /// Share of the gateway's core and of the client's core busy (any process).
    server_core: Option<f64>,
    client_core: Option<f64>,
}

/// `(busy, total)` clock ticks of CPU `cpu` since boot.
fn core_ticks(cpu: Option<usize>) -> Option<(u64, u64)> {
    let cpu = cpu?;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    // user nice system idle iowait irq softirq steal
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v.iter().sum();
    Some((total - v[3] - v[4], total))
}

fn busy_share(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (before?, after?);
    (t1 > t0).then(|| (b1 - b0) as f64 / (t1 - t0) as f64)
}

fn proc_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn proc_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn proc_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// A phase's results.
struct Phase {
    name: &'static str,
    seconds: f64,
    hits: Tally,
    misses: Tally,
    gateway: ProcessFigures,
}

/// Runs the well-behaved client for `options.seconds`.
async fn measure(options: &Arc<Options>, name: &'static str, run: u32, phase: u16) -> Phase {
    eprintln!("bench-adversary: phase {name}: {} s", options.seconds);
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs_f64(options.seconds);
    let next_miss = Arc::new(AtomicU64::new(0));
    let hit_every = (options.hit_rate > 0.0)
        .then(|| Duration::from_secs_f64(options.hit_conns as f64 / options.hit_rate));
    let miss_every = Duration::from_secs_f64(options.miss_conns as f64 / options.miss_rate);
    let mut hit_tasks = JoinSet::new();
    for i in 0..options.hit_conns {
        let (options, next_miss) = (options.clone(), next_miss.clone());
        hit_tasks.spawn(drive(
            options,
            Want::Hit,
            i,
            hit_every,
            start,
            end,
            next_miss,
            run,
            phase,
        ));
    }
    let mut miss_tasks = JoinSet::new();
    for i in 0..options.miss_conns {
        let (options, next_miss) = (options.clone(), next_miss.clone());
        miss_tasks.spawn(drive(
            options,
            Want::Miss,
            i,
            Some(miss_every),
            start,
            end,
            next_miss,
            run,
            phase,
        ));
    }
    // The gateway's CPU, descriptors and memory over the measurement.
    let pid = options.gateway_pid;
    let clk_tck = options.clk_tck;
    let (server_cpu, client_cpu) = (options.server_cpu, options.client_cpu);
    let sampler = tokio::spawn(async move {
        let mut figures = ProcessFigures::default();
        tokio::time::sleep_until(start.into()).await;
        let cores0 = (core_ticks(server_cpu), core_ticks(client_cpu));
        let Some(pid) = pid else {
            tokio::time::sleep_until(end.into()).await;
            figures.server_core = busy_share(cores0.0, core_ticks(server_cpu));
            figures.client_core = busy_share(cores0.1, core_ticks(client_cpu));
            return figures;
        };
        let ticks0 = proc_ticks(pid);
        let t0 = Instant::now();
        loop {
            figures.max_fds = figures.max_fds.max(proc_fds(pid));
            figures.max_rss_kib = figures.max_rss_kib.max(proc_rss_kib(pid));
            let now = Instant::now();
            if now >= end {
                break;
            }
            tokio::time::sleep((end - now).min(Duration::from_millis(500))).await;
        }
        if let (Some(a), Some(b)) = (ticks0, proc_ticks(pid)) {
            let seconds = t0.elapsed().as_secs_f64();
            figures.cpu_share = Some(b.saturating_sub(a) as f64 / clk_tck / seconds);
        }
        figures.server_core = busy_share(cores0.0, core_ticks(server_cpu));
        figures.client_core = busy_share(cores0.1, core_ticks(client_cpu));
        figures
    });
    let mut hits = Tally::default();
    while let Some(done) = hit_tasks.join_next().await {
        hits.merge(done.unwrap_or_else(|e| fail(format_args!("client task: {e}"))));
    }
    let mut misses = Tally::default();
    while let Some(done) = miss_tasks.join_next().await {
        misses.merge(done.unwrap_or_else(|e| fail(format_args!("client task: {e}"))));
    }
    let gateway = sampler.await.unwrap_or_default();
    hits.latencies_us.sort_unstable();
    misses.latencies_us.sort_unstable();
    Phase {
        name,
        seconds: options.seconds,
        hits,
        misses,
        gateway,
    }
}

// --- the attackers ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Slowloris,
    H2Idle,
    TrickleDrip,
    TrickleStall,
    Stall,
}

impl Kind {
    fn label(self, options: &Options) -> String {
        match self {
            Kind::Slowloris => format!(
                "slowloris (head, 1 byte / {} ms, never ends)",
                options.slowloris_every.as_millis()
            ),
            Kind::H2Idle => "idle h2c (preface + SETTINGS, then silence)".to_owned(),
            Kind::TrickleDrip => format!(
                "trickled body (POST, 100,000 B declared, 1 byte / {} ms)",
                options.trickle_every.as_millis()
            ),
            Kind::TrickleStall => {
                "stalled body (POST, 100,000 B declared, 1 byte, then none)".to_owned()
            }
            Kind::Stall => {
                "stalled upstream body (GET /__stall: 16 B of 100,000, then none)".to_owned()
            }
        }
    }
}

/// One kind of attacker's record.
#[derive(Default)]
struct KindStats {
    tasks: usize,
    opened: u64,
    connect_errors: u64,
    /// Attempt id → when its connection opened, while it is open.
    open: BTreeMap<u64, Instant>,
    window_min: Option<usize>,
    window_max: usize,
    /// How long each connection the gateway ended had been open, in seconds.
    holds: Vec<f64>,
    /// How the gateway ended them.
    answers: BTreeMap<String, u64>,
    /// Ages of the connections still open when the attack stopped, in seconds.
    open_at_end: Vec<f64>,
}

struct Attack {
    options: Arc<Options>,
    stats: Mutex<BTreeMap<Kind, KindStats>>,
    attempts: AtomicU64,
}

impl Attack {
    fn with<R>(&self, kind: Kind, f: impl FnOnce(&mut KindStats) -> R) -> R {
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        f(stats.entry(kind).or_default())
    }
}

/// What the gateway sent on an attacker's connection.
#[derive(Default)]
struct Answer {
    buf: Vec<u8>,
    received: usize,
    head_end: Option<usize>,
}

impl Answer {
    fn feed(&mut self, bytes: &[u8]) {
        self.received += bytes.len();
        if self.buf.len() < 16384 {
            self.buf.extend_from_slice(bytes);
        }
        if self.head_end.is_none() {
            self.head_end = memchr(&self.buf, b"\r\n\r\n").map(|i| i + 4);
        }
    }

    fn status(&self) -> Option<&str> {
        if !self.buf.starts_with(b"HTTP/1.") || self.buf.len() < 12 {
            return None;
        }
        std::str::from_utf8(&self.buf[9..12]).ok()
    }

    /// `408`, `429 GatewayRateLimited`, …
    fn describe(&self) -> Option<String> {
        let status = self.status()?;
        let marker = br#""errorName":""#;
        let name = memchr(&self.buf, marker).and_then(|i| {
            let rest = &self.buf[i + marker.len()..];
            let end = rest.iter().position(|&b| b == b'"')?;
            std::str::from_utf8(&rest[..end]).ok()
        });
        Some(match name {
            Some(name) => format!("{status} {name}"),
            None => status.to_owned(),
        })
    }

    fn content_length(&self) -> Option<usize> {
        let head = std::str::from_utf8(&self.buf[..self.head_end?]).ok()?;
        head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
    }

    fn body_received(&self) -> usize {
        self.head_end
            .map_or(0, |end| self.received.saturating_sub(end))
    }

    /// How the connection ended when the gateway closed it.
    fn closed(&self, how: &str) -> String {
        match self.describe() {
            Some(answer) => format!("{answer}, then {how}"),
            None => format!("{how}, no answer"),
        }
    }
}

fn read_outcome(result: std::io::Result<usize>) -> Result<usize, &'static str> {
    match result {
        Ok(0) => Err("closed"),
        Ok(n) => Ok(n),
        Err(_) => Err("reset"),
    }
}

/// Holds one attacker connection until the gateway ends it; returns how it did.
async fn behave(kind: Kind, stream: TcpStream, options: &Options, index: usize) -> String {
    let (mut rd, mut wr) = stream.into_split();
    let mut answer = Answer::default();
    let mut buf = vec![0u8; 16384];
    let customer = common::CUSTOMER;
    let host = &options.host;
    match kind {
        Kind::Slowloris => {
            let head = format!(
                "GET /v1/customers/{customer}/orders/5e2a1c3b-0000-4000-8000-{index:012x} \
                 HTTP/1.1\r\nHost: {host}\r\nAuthorization: {ATTACK_AUTH}\r\nX-Slow: "
            );
            let mut tick = tokio::time::interval(options.slowloris_every);
            let mut sent = 0;
            loop {
                tokio::select! {
                    read = rd.read(&mut buf) => match read_outcome(read) {
                        Ok(n) => {
                            answer.feed(&buf[..n]);
                            if answer.head_end.is_some() {
                                return answer.describe().unwrap_or_else(|| "garbage".to_owned());
                            }
                        }
                        Err(how) => return answer.closed(how),
                    },
                    _ = tick.tick() => {
                        let byte = head.as_bytes().get(sent).copied().unwrap_or(b'a');
                        sent += 1;
                        if wr.write_all(&[byte]).await.is_err() {
                            return answer.closed("write failed");
                        }
                    }
                }
            }
        }
        Kind::H2Idle => {
            // Preface, then an empty SETTINGS frame (length 0, type 4, no flags, stream 0).
            let hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
            if wr.write_all(hello).await.is_err() {
                return answer.closed("write failed");
            }
            let mut frames: Vec<u8> = Vec::new();
            loop {
                match read_outcome(rd.read(&mut buf).await) {
                    Ok(n) => {
                        if buf[..n].starts_with(b"HTTP/") || answer.received > 0 {
                            answer.feed(&buf[..n]);
                            if answer.head_end.is_some() {
                                return answer.describe().unwrap_or_else(|| "garbage".to_owned());
                            }
                            continue;
                        }
                        frames.extend_from_slice(&buf[..n]);
                        while frames.len() >= 9 {
                            let length = (usize::from(frames[0]) << 16)
                                | (usize::from(frames[1]) << 8)
                                | usize::from(frames[2]);
                            if frames.len() < 9 + length {
                                break;
                            }
                            if frames[3] == 7 {
                                return "GOAWAY".to_owned();
                            }
                            frames.drain(..9 + length);
                        }
                    }
                    Err(how) => return format!("{how} without GOAWAY"),
                }
            }
        }
        Kind::TrickleDrip | Kind::TrickleStall => {
            let head = format!(
                "POST /v1/customers/{customer}/carts HTTP/1.1\r\nHost: {host}\r\n\
                 Authorization: {ATTACK_AUTH}\r\nContent-Type: application/json\r\n\
                 Content-Length: 100000\r\n\r\n{{"
            );
            if wr.write_all(head.as_bytes()).await.is_err() {
                return answer.closed("write failed");
            }
            let drip = kind == Kind::TrickleDrip;
            let mut tick = tokio::time::interval(options.trickle_every);
            tick.tick().await; // the first tick is immediate; the head carried the first byte
            loop {
                tokio::select! {
                    read = rd.read(&mut buf) => match read_outcome(read) {
                        Ok(n) => {
                            answer.feed(&buf[..n]);
                            if answer.head_end.is_some() {
                                return answer.describe().unwrap_or_else(|| "garbage".to_owned());
                            }
                        }
                        Err(how) => return answer.closed(how),
                    },
                    _ = tick.tick(), if drip => {
                        if wr.write_all(b" ").await.is_err() {
                            return answer.closed("write failed");
                        }
                    }
                }
            }
        }
        Kind::Stall => {
            let request = format!(
                "GET /__stall HTTP/1.1\r\nHost: {host}\r\nAuthorization: {ATTACK_AUTH}\r\n\r\n"
            );
            if wr.write_all(request.as_bytes()).await.is_err() {
                return answer.closed("write failed");
            }
            loop {
                match read_outcome(rd.read(&mut buf).await) {
                    Ok(n) => {
                        answer.feed(&buf[..n]);
                        if answer.head_end.is_none() {
                            continue;
                        }
                        if answer.status() != Some("200") {
                            return answer.describe().unwrap_or_else(|| "garbage".to_owned());
                        }
                        if answer
                            .content_length()
                            .is_some_and(|length| answer.body_received() >= length)
                        {
                            return "200, whole body".to_owned();
                        }
                    }
                    Err(how) if answer.status() == Some("200") => {
                        return format!("200, body cut off ({how})");
                    }
                    Err(how) => return answer.closed(how),
                }
            }
        }
    }
}

/// One attacker: connects, holds, records, reconnects — until its runtime is dropped.
async fn attacker(attack: Arc<Attack>, kind: Kind, index: usize) {
    let options = attack.options.clone();
    // Spread the first connections over the first half second.
    tokio::time::sleep(Duration::from_micros((index as u64 * 2_500) % 500_000)).await;
    loop {
        let connected =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(options.target)).await;
        let Ok(Ok(stream)) = connected else {
            attack.with(kind, |s| s.connect_errors += 1);
            tokio::time::sleep(options.reconnect).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let id = attack.attempts.fetch_add(1, Ordering::Relaxed);
        let began = Instant::now();
        attack.with(kind, |s| {
            s.opened += 1;
            s.open.insert(id, began);
        });
        let how = behave(kind, stream, &options, index).await;
        let held = began.elapsed().as_secs_f64();
        attack.with(kind, |s| {
            s.open.remove(&id);
            s.holds.push(held);
            *s.answers.entry(how).or_default() += 1;
        });
        tokio::time::sleep(options.reconnect).await;
    }
}

/// The attack thread: runs every attacker until `stop` fires, then reports.
fn attack_main(
    options: Arc<Options>,
    in_window: Arc<std::sync::atomic::AtomicBool>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> BTreeMap<Kind, KindStats> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format_args!("attack runtime: {e}")));
    let attack = Arc::new(Attack {
        options: options.clone(),
        stats: Mutex::new(BTreeMap::new()),
        attempts: AtomicU64::new(0),
    });
    let kinds = [
        (Kind::Slowloris, options.slowloris),
        (Kind::H2Idle, options.h2_idle),
        (Kind::TrickleDrip, options.trickle.div_ceil(2)),
        (Kind::TrickleStall, options.trickle / 2),
        (Kind::Stall, options.stall),
    ];
    runtime.block_on(async {
        for (kind, count) in kinds {
            attack.with(kind, |s| s.tasks = count);
            for index in 0..count {
                tokio::spawn(attacker(attack.clone(), kind, index));
            }
        }
        // Open connections per kind, sampled during the measurement.
        let sampler_attack = attack.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if !in_window.load(Ordering::Relaxed) {
                    continue;
                }
                let mut stats = sampler_attack
                    .stats
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                for s in stats.values_mut() {
                    let open = s.open.len();
                    s.window_min = Some(s.window_min.map_or(open, |m| m.min(open)));
                    s.window_max = s.window_max.max(open);
                }
            }
        });
        let _ = stop.await;
    });
    let now = Instant::now();
    let mut stats =
        std::mem::take(&mut *attack.stats.lock().unwrap_or_else(PoisonError::into_inner));
    for s in stats.values_mut() {
        s.open_at_end = s.open.values().map(|t| (now - *t).as_secs_f64()).collect();
    }
    runtime.shutdown_timeout(Duration::from_secs(1));
    stats
}

// --- before the phases -------------------------------------------------------------------------

/// Reads from `stream` until a whole response head (and whatever came with it) or `limit`.
async fn read_head(stream: &mut TcpStream, limit: Duration) -> Answer {
    let mut answer = Answer::default();
    let mut buf = vec![0u8; 16384];
    let deadline = tokio::time::Instant::now() + limit;
    while answer.head_end.is_none() {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.feed(&buf[..n]),
            _ => break,
        }
    }
    answer
}

/// Checks that the routes the attackers use do what they should through this gateway, and
/// warms the hit keys. Notes go into the report; a broken set-up ends the run.
async fn preflight(options: &Options) -> Vec<String> {
    let mut notes = Vec::new();
    let host = &options.host;
    let connect = || async {
        TcpStream::connect(options.target)
            .await
            .unwrap_or_else(|e| fail(format_args!("connect {}: {e}", options.target)))
    };

    // A forwarded POST with a whole body reaches the origin (its 404).
    let mut stream = connect().await;
    let post = format!(
        "POST /v1/customers/{}/carts HTTP/1.1\r\nHost: {host}\r\nAuthorization: {BENCH_AUTH}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
        common::CUSTOMER
    );
    let _ = stream.write_all(post.as_bytes()).await;
    let answer = read_head(&mut stream, Duration::from_secs(5)).await;
    let mut rest = vec![0u8; 4096];
    let mut body = answer.buf.clone();
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut rest)).await
    {
        if n == 0 {
            break;
        }
        body.extend_from_slice(&rest[..n]);
    }
    if answer.status() != Some("404") || memchr(&body, b"bench-origin").is_none() {
        fail(format_args!(
            "a forwarded POST did not come back with the bench origin's 404: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    notes.push("a forwarded POST reaches the origin (its 404)".to_owned());

    // GET /__stall: 200 and the first bytes, then nothing.
    let mut stream = connect().await;
    let get =
        format!("GET /__stall HTTP/1.1\r\nHost: {host}\r\nAuthorization: {BENCH_AUTH}\r\n\r\n");
    let _ = stream.write_all(get.as_bytes()).await;
    let answer = read_head(&mut stream, Duration::from_secs(5)).await;
    match answer.status() {
        Some("200") => notes.push(format!(
            "`GET /__stall` through the gateway: 200, {} of {} body bytes, then silence",
            answer.body_received(),
            answer
                .content_length()
                .map_or("?".to_owned(), |n| n.to_string())
        )),
        other => fail(format_args!(
            "GET /__stall through the gateway: expected 200 and a stalled body, got {other:?} \
             (is the origin the bench origin?)"
        )),
    }
    drop(stream);

    // Warm the hit keys: a MISS, then a HIT for each.
    let workers = 8.min(options.keys);
    let mut tasks = JoinSet::new();
    for w in 0..workers {
        let options = options.clone();
        tasks.spawn(async move {
            let mut conn = Conn {
                target: options.target,
                host: options.host.clone(),
                sender: None,
                opened: 0,
            };
            for i in (w..options.keys).step_by(workers) {
                let (path, order) = hit_path(i);
                for want in [Want::Miss, Want::Hit] {
                    if let Err(e) = conn.get(&path, want, &order).await {
                        if !(matches!(want, Want::Miss) && e == "200 X-Cache HIT") {
                            return Err(format!("{path}: {e}"));
                        }
                    }
                }
            }
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.unwrap_or_else(|e| Err(e.to_string())) {
            fail(format_args!("warming the hit keys: {e}"));
        }
    }
    notes.push(format!(
        "{} orders warmed (each a MISS, then a HIT)",
        options.keys
    ));
    notes
}

// --- the report --------------------------------------------------------------------------------

fn ms(value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) if v < 10.0 => format!("{v:.2} ms"),
        Some(v) if v < 100.0 => format!("{v:.1} ms"),
        Some(v) => format!("{v:.0} ms"),
    }
}

fn seconds(values: &mut [f64]) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    values.sort_by(f64::total_cmp);
    format!(
        "{:.1} s / {:.1} s",
        values[values.len() / 2],
        values[values.len() - 1]
    )
}

fn report(
    options: &Options,
    notes: &[String],
    phases: &[Phase],
    attack: &mut BTreeMap<Kind, KindStats>,
) -> (String, bool) {
    let mut out = String::new();
    let hit_rate = if options.hit_rate > 0.0 {
        format!("{} hits/s in all", options.hit_rate)
    } else {
        "back to back".to_owned()
    };
    let _ = writeln!(
        out,
        "Well-behaved client (`{BENCH_AUTH}`): {} keep-alive connections asking for {} warmed \
         orders, {hit_rate}; {} connections asking for never-seen orders, {} misses/s in all; \
         {} s per phase; a request fails on any answer but `200` with the right `X-Cache` \
         (and, for a miss, that order's body), on a transport error or after {} s. Phase B: the \
         attackers run from {} s before its measurement to its end.",
        options.hit_conns,
        options.keys,
        options.miss_conns,
        options.miss_rate,
        options.seconds,
        options.timeout.as_secs_f64(),
        options.ramp,
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Checks before the run: {}.", notes.join("; "));
    let _ = writeln!(out);

    let titles: Vec<&str> = phases.iter().map(|p| p.name).collect();
    let _ = writeln!(out, "| well-behaved client | {} |", titles.join(" | "));
    let _ = writeln!(out, "| --- |{}", " ---: |".repeat(phases.len()));
    let row = |out: &mut String, label: &str, f: &dyn Fn(&Phase) -> String| {
        let cells: Vec<String> = phases.iter().map(f).collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    };
    row(&mut out, "hit p50", &|p| ms(p.hits.quantile_ms(0.50)));
    row(&mut out, "**hit p99**", &|p| {
        format!("**{}**", ms(p.hits.quantile_ms(0.99)))
    });
    row(&mut out, "hit p99.9 / max", &|p| {
        format!(
            "{} / {}",
            ms(p.hits.quantile_ms(0.999)),
            ms(p.hits.quantile_ms(1.0))
        )
    });
    row(&mut out, "hits/s (answered 200 HIT)", &|p| {
        format!("{:.0}", p.hits.ok as f64 / p.seconds)
    });
    row(&mut out, "hits failed", &|p| p.hits.failures_text());
    row(&mut out, "misses attempted", &|p| {
        p.misses.attempted().to_string()
    });
    row(&mut out, "misses succeeded (200 MISS)", &|p| {
        p.misses.ok.to_string()
    });
    row(&mut out, "**misses failed** (by answer)", &|p| {
        p.misses.failures_text()
    });
    row(&mut out, "miss p50 / p99", &|p| {
        format!(
            "{} / {}",
            ms(p.misses.quantile_ms(0.50)),
            ms(p.misses.quantile_ms(0.99))
        )
    });
    row(&mut out, "well-behaved reconnects", &|p| {
        (p.hits.reconnects + p.misses.reconnects).to_string()
    });
    let share = |v: Option<f64>| v.map_or("-".to_owned(), |c| format!("{:.0} %", c * 100.0));
    if let Some(cpu) = options.server_cpu {
        row(
            &mut out,
            &format!("CPU {cpu} busy (gateway's core, any process)"),
            &|p| share(p.gateway.server_core),
        );
    }
    if let Some(cpu) = options.client_cpu {
        row(
            &mut out,
            &format!("CPU {cpu} busy (client, origin, attackers)"),
            &|p| share(p.gateway.client_core),
        );
    }
    if options.gateway_pid.is_some() {
        row(&mut out, "gateway CPU (of its core)", &|p| {
            p.gateway
                .cpu_share
                .map_or("-".to_owned(), |c| format!("{:.0} %", c * 100.0))
        });
        row(&mut out, "gateway open fds (max)", &|p| {
            p.gateway.max_fds.to_string()
        });
        row(&mut out, "gateway RSS (max)", &|p| {
            format!("{:.1} MiB", p.gateway.max_rss_kib as f64 / 1024.0)
        });
    }
    let _ = writeln!(out);

    let _ = writeln!(
        out,
        "| attacker (phase B) | tasks | connections opened | open during the measurement (min–max) | ended by the gateway | open until ended (median / max) | still open at the end (oldest) | how the gateway ended them |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for (kind, s) in attack.iter_mut() {
        if s.tasks == 0 {
            continue;
        }
        let mut answers: Vec<(String, u64)> =
            s.answers.iter().map(|(k, v)| (k.clone(), *v)).collect();
        answers.sort_by_key(|a| std::cmp::Reverse(a.1));
        let mut how: Vec<String> = answers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        if s.connect_errors > 0 {
            how.push(format!("connect failed: {}", s.connect_errors));
        }
        let oldest = s.open_at_end.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}–{} | {} | {} | {} | {} |",
            kind.label(options),
            s.tasks,
            s.opened,
            s.window_min.unwrap_or(0),
            s.window_max,
            s.holds.len(),
            seconds(&mut s.holds),
            if s.open_at_end.is_empty() {
                "0".to_owned()
            } else {
                format!("{} ({oldest:.0} s)", s.open_at_end.len())
            },
            if how.is_empty() {
                "-".to_owned()
            } else {
                how.join(", ")
            }
        );
    }
    let _ = writeln!(out);

    let a = &phases[0];
    let b = &phases[1];
    let ratio = match (a.hits.quantile_ms(0.99), b.hits.quantile_ms(0.99)) {
        (Some(a), Some(b)) if a > 0.0 => Some(b / a),
        _ => None,
    };
    let failed_b = b.hits.failed() + b.misses.failed();
    let ratio_ok = ratio.is_some_and(|r| r <= GOAL_RATIO) && b.hits.ok > 0;
    let failures_ok = failed_b == 0 && b.misses.ok > 0;
    let met = ratio_ok && failures_ok;
    let mark = |ok: bool| if ok { "met" } else { "**not met**" };
    let _ = writeln!(
        out,
        "Goal: hit p99 under attack within {GOAL_RATIO}× the unloaded one, 0 failed well-behaved \
         requests under attack."
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "- hit p99 B/A: **{}** — {}{}",
        ratio.map_or("-".to_owned(), |r| format!("{r:.2}×")),
        mark(ratio_ok),
        match (phases.get(2), a.hits.quantile_ms(0.99)) {
            (Some(c), Some(pa)) if pa > 0.0 => format!(
                " (C/A, the same client with no attacker after the attack: {})",
                c.hits
                    .quantile_ms(0.99)
                    .map_or("-".to_owned(), |pc| format!("{:.2}×", pc / pa))
            ),
            _ => String::new(),
        }
    );
    let _ = writeln!(
        out,
        "- failed well-behaved requests in B: **{failed_b}** ({} hits, {} of {} misses) — {}",
        b.hits.failed(),
        b.misses.failed(),
        b.misses.attempted(),
        mark(failures_ok)
    );
    let _ = writeln!(
        out,
        "- **verdict: {}**",
        if met { "goal met" } else { "goal not met" }
    );
    (out, met)
}

// --- main --------------------------------------------------------------------------------------

async fn run(options: Arc<Options>) -> i32 {
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32))
        ^ std::process::id();
    let notes = preflight(&options).await;
    let mut phases = vec![measure(&options, "A: unloaded", run_id, 0xa).await];

    let in_window = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let attack_thread = {
        let (options, in_window) = (options.clone(), in_window.clone());
        std::thread::spawn(move || attack_main(options, in_window, stopped))
    };
    eprintln!(
        "bench-adversary: attackers started; {} s until phase B",
        options.ramp
    );
    tokio::time::sleep(Duration::from_secs_f64(options.ramp)).await;
    in_window.store(true, Ordering::Relaxed);
    phases.push(measure(&options, "B: under attack", run_id, 0xb).await);
    in_window.store(false, Ordering::Relaxed);
    let _ = stop.send(());
    let mut attack = tokio::task::spawn_blocking(move || attack_thread.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| fail("the attack thread failed"));
    eprintln!("bench-adversary: attackers stopped");

    if options.after {
        tokio::time::sleep(Duration::from_secs(1)).await;
        phases.push(measure(&options, "C: after the attack", run_id, 0xc).await);
    }
    let (text, met) = report(&options, &notes, &phases, &mut attack);
    print!("{text}");
    if met {
        0
    } else {
        2
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() != Some("run") {
        eprintln!("usage: bench-adversary run --target 127.0.0.1:PORT [options] (see the source)");
        std::process::exit(1);
    }
    let options = Arc::new(Options::parse());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format_args!("runtime: {e}")));
    let code = runtime.block_on(run(options));
    std::process::exit(code);
}
