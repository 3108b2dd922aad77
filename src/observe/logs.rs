//! Logs (SPEC §9): structured, JSON lines by default, `RUST_LOG` overrides the configured level.
//!
//! The access line itself is written by the pipeline; this module only decides where lines go
//! and how they look. Writing a line never blocks a request: each line is handed to a bounded
//! queue (`tracing-appender`'s non-blocking writer, lossy) that one thread of its own drains
//! into a 64 KiB buffer on standard output, flushed whenever the queue runs empty. When the
//! output does not keep up (a log shipper that stopped reading), the queue fills and further
//! lines are dropped and counted ([`dropped_lines`], exported as
//! `partner_gateway_log_lines_dropped_total`), and requests go on at full speed. JSON lines are
//! written by [`JsonLines`]. Nothing here ever sees a header value or a body.

use std::fmt::{self, Write as _};
use std::io::BufWriter;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Lines that may wait for the output; past them, new lines are dropped (about 5 MB of
/// access lines: seconds of full load, so a shipper's short pause loses nothing).
const QUEUED_LINES: usize = 16_384;

/// The queue's count of dropped lines, once logs are set up.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped so far because the output did not keep up (0 before [`init`]).
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// Writes out the queued lines when dropped; hold it until exit.
pub struct LogGuard {
    _worker: Option<WorkerGuard>,
}

/// Installs the process-wide subscriber. A second call changes nothing (the first one wins).
pub fn init(config: &LogConfig) -> LogGuard {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::new(directives),
        _ => EnvFilter::new(&config.level),
    };
    let (out, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("partner-gateway-log")
        .finish(BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    let dropped = out.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(out);
    let installed = match config.format {
        // Events inside a request carry its span (and so its IDs); the access line is written
        // outside the span and carries the IDs as its own fields, not twice.
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .try_init(),
        LogFormat::Pretty => builder.pretty().try_init(),
    };
    if installed.is_err() {
        return LogGuard { _worker: None };
    }
    let _ = DROPPED.set(dropped);
    LogGuard {
        _worker: Some(guard),
    }
}

/// One JSON object per line, in the shape of tracing-subscriber's
/// `json().flatten_event(true).with_current_span(true)`: `timestamp`, `level`, the event's
/// fields at the top level, `target`, and `span` (the current span's fields and `name`) for
/// events inside a request. Written directly, without the generic JSON formatter's detour
/// through `serde_json::Value` and a UTF-8 check per write: with an access line per request,
/// that detour cost more than answering a cache hit.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Built in a plain String (inlined pushes), handed to the writer in one call.
        let mut line = String::with_capacity(384);
        line.push_str("{\"timestamp\":\"");
        // RFC 3339, UTC, microseconds: the same clock as tracing-subscriber's own lines.
        SystemTime.format_time(&mut Writer::new(&mut line))?;
        line.push_str("\",\"level\":\"");
        line.push_str(event.metadata().level().as_str());
        line.push('"');
        event.record(&mut JsonFieldWriter(&mut line));
        line.push_str(",\"target\":");
        push_json_str(&mut line, event.metadata().target());
        if let Some(span) = ctx.lookup_current() {
            line.push_str(",\"span\":{");
            let extensions = span.extensions();
            // The span's fields were formatted once, as a JSON object, by `JsonFields`.
            let recorded = extensions
                .get::<FormattedFields<N>>()
                .map(|f| f.fields.as_str())
                .unwrap_or_default();
            let inner = recorded
                .trim()
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .unwrap_or_default()
                .trim();
            if !inner.is_empty() {
                line.push_str(inner);
                line.push(',');
            }
            line.push_str("\"name\":");
            push_json_str(&mut line, span.name());
            line.push('}');
        }
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

/// Writes each field of an event as `,"name":value`.
struct JsonFieldWriter<'a>(&'a mut String);

impl JsonFieldWriter<'_> {
    fn name(&mut self, field: &Field) {
        self.0.push(',');
        push_json_str(self.0, field.name());
        self.0.push(':');
    }
}

impl Visit for JsonFieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        push_json_str(self.0, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        self.0.push_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        self.0.push_str(itoa::Buffer::new().format(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        // JSON has no NaN or infinity.
        if value.is_finite() {
            let _ = write!(self.0, "{value}");
        } else {
            self.0.push_str("null");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.0.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.name(field);
        self.0.push('"');
        let _ = write!(JsonEscaped(self.0), "{value:?}");
        self.0.push('"');
    }
}

/// A `fmt::Write` that escapes what passes through it for a JSON string's inside.
struct JsonEscaped<'a>(&'a mut String);

impl fmt::Write for JsonEscaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_escaped(self.0, s);
        Ok(())
    }
}

/// Appends `s` escaped for the inside of a JSON string.
fn push_escaped(out: &mut String, s: &str) {
    let needs_escape = |b: &u8| *b < 0x20 || *b == b'"' || *b == b'\\';
    // Most values (paths, IDs, names) need no escape: one scan (without an early exit, so
    // that it runs on whole vectors), one copy.
    if !s
        .as_bytes()
        .iter()
        .fold(false, |found, b| found | needs_escape(b))
    {
        out.push_str(s);
        return;
    }
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        if !needs_escape(&b) {
            continue;
        }
        out.push_str(&s[plain..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
}

/// `value` as a JSON string, quotes included.
fn push_json_str(out: &mut String, value: &str) {
    out.push('"');
    push_escaped(out, value);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex, PoisonError};
    use tracing_subscriber::fmt::MakeWriter;

    /// Collects what the formatter writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    fn lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(out.clone())
            .with_max_level(tracing::Level::TRACE)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn writes_one_json_object_per_event_with_span_fields() {
        let got = lines(|| {
            let span = tracing::info_span!("request", correlation_id = "c-1", request_id = "r-1");
            let _entered = span.enter();
            tracing::info!(
                target: "partner_gateway::access",
                path = "/v1/\"quoted\"\\and\nnew\u{1}line",
                status = 200u16,
                upstream_status = Option::<u16>::None,
                latency_ms = 0.125,
                bad = f64::NAN,
                negative = -3i64,
                smallest = i64::MIN,
                largest = u64::MAX,
                zero = 0u64,
                ok = true,
                peer = %"127.0.0.1:1",
                "request"
            );
        });
        assert_eq!(got.len(), 1);
        let line = &got[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "request");
        assert_eq!(line["target"], "partner_gateway::access");
        assert_eq!(line["path"], "/v1/\"quoted\"\\and\nnew\u{1}line");
        assert_eq!(line["status"], 200);
        assert!(line.get("upstream_status").is_none());
        assert_eq!(line["latency_ms"], 0.125);
        assert!(line["bad"].is_null());
        assert_eq!(line["negative"], -3);
        assert_eq!(line["smallest"], i64::MIN);
        assert_eq!(line["largest"], u64::MAX);
        assert_eq!(line["zero"], 0);
        assert_eq!(line["ok"], true);
        assert_eq!(line["peer"], "127.0.0.1:1");
        assert_eq!(line["span"]["name"], "request");
        assert_eq!(line["span"]["correlation_id"], "c-1");
        assert_eq!(line["span"]["request_id"], "r-1");
        // RFC 3339, UTC, microseconds, e.g. 2026-11-25T17:21:36.159159Z.
        let stamp = line["timestamp"].as_str().expect("timestamp");
        let shape: String = stamp
            .chars()
            .map(|c| if c.is_ascii_digit() { '9' } else { c })
            .collect();
        assert_eq!(shape, "9999-99-99T99:99:99.999999Z", "{stamp}");
    }

    #[test]
    fn events_outside_a_span_have_no_span_object() {
        let got = lines(|| tracing::warn!(grace_ms = 5u64, "draining"));
        assert_eq!(got[0]["level"], "WARN");
        assert_eq!(got[0]["grace_ms"], 5);
        assert!(got[0].get("span").is_none());
    }
}
