//! The walk-through's two hands: a [`Printer`] for its narrated output (steps, `curl` lines,
//! coloured fields) and a small HTTP client ([`send`]) that talks to the gateway like a partner
//! service would.
//!
//! Kept apart from the walk-through so its steps read as a script, not as formatting and
//! request plumbing. [`Captured`] lets tests read what was printed.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};

/// Writes the walk-through's lines, with ANSI colours when `color` is set.
pub(crate) struct Printer<'a> {
    /// Where the lines go.
    pub(crate) out: &'a mut dyn Write,
    /// Whether to paint with ANSI escapes.
    pub(crate) color: bool,
}

impl Printer<'_> {
    /// `text` in the ANSI style `code` (or plain without colour).
    pub(crate) fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// A numbered step's title.
    pub(crate) fn step(&mut self, n: usize, title: &str) {
        let line = self.paint("1", &format!("{n}. {title}"));
        let _ = writeln!(self.out, "\n{line}");
    }

    /// The shell command a reader can run for this step.
    pub(crate) fn curl(&mut self, cmd: &str) {
        let line = self.paint("2", &format!("   $ {cmd}"));
        let _ = writeln!(self.out, "{line}");
    }

    /// One observed value, cache states coloured.
    pub(crate) fn field(&mut self, name: &str, value: &str) {
        let value = match value {
            "HIT" | "REVALIDATED" => self.paint("32", value),
            "MISS" | "STALE" => self.paint("33", value),
            "BYPASS" => self.paint("36", value),
            _ => value.to_owned(),
        };
        let _ = writeln!(self.out, "   {name:<18} {value}");
    }

    /// A line of explanation.
    pub(crate) fn say(&mut self, text: &str) {
        let _ = writeln!(self.out, "   {text}");
    }
}

/// What the walk-through keeps of an answer: status, headers and body.
pub(crate) struct Reply {
    /// The answer's status.
    pub(crate) status: StatusCode,
    /// The answer's headers.
    pub(crate) headers: HeaderMap,
    /// The body (collected; the demo reads a few fields of it).
    pub(crate) body: Bytes,
}

impl Reply {
    /// The header's value as text, `-` when absent or not text.
    pub(crate) fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    }
}

/// The walk-through's HTTP client.
pub(crate) type DemoClient = Client<HttpConnector, Full<Bytes>>;

/// A walk-through request that got no answer; the text says why.
#[derive(Debug)]
pub(crate) struct RequestFailed(pub(crate) String);

/// Sends one request and waits (at most 30 s) for the whole answer.
pub(crate) async fn send(
    client: &DemoClient,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Reply, RequestFailed> {
    let mut builder = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder
        .body(Full::new(body.into()))
        .map_err(|e| RequestFailed(e.to_string()))?;
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .map_err(|_| RequestFailed(format!("{url}: no answer in 30 s")))?
        .map_err(|e| RequestFailed(format!("{url}: {e}")))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A shared writer for tests that capture the demo's output.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
