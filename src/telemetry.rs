//! Logs (SPEC §9): structured, JSON lines by default, `RUST_LOG` overrides the configured level.
//!
//! The access line itself is written by the pipeline; this module only decides where lines go
//! and how they look. Lines are collected in a 64 KiB buffer that a small thread flushes every
//! 50 ms (and at exit), so logging every request costs a copy, not a system call per request.
//! Nothing here ever sees a header value or a body.

use std::io::{BufWriter, Stdout, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// How long a line may wait in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// Standard output behind a shared buffer.
#[derive(Clone)]
pub struct BufferedStdout(Arc<Mutex<BufWriter<Stdout>>>);

/// One event's access to the buffer.
pub struct Line<'a>(MutexGuard<'a, BufWriter<Stdout>>);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Flushing is the flusher thread's job; an event ending is no reason to write.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStdout {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl BufferedStdout {
    fn flush(&self) {
        let _ = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush();
    }
}

/// Flushes the log buffer when dropped; hold it until exit.
pub struct LogGuard(Option<BufferedStdout>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(out) = &self.0 {
            out.flush();
        }
    }
}

/// Installs the process-wide subscriber. A second call changes nothing (the first one wins).
pub fn init(config: &LogConfig) -> LogGuard {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::new(directives),
        _ => EnvFilter::new(&config.level),
    };
    let out = BufferedStdout(Arc::new(Mutex::new(BufWriter::with_capacity(
        64 * 1024,
        std::io::stdout(),
    ))));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(out.clone());
    let installed = match config.format {
        // Events inside a request carry its span (and so its IDs); the access line is written
        // outside the span and carries the IDs as its own fields, not twice.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.pretty().try_init(),
    };
    if installed.is_err() {
        return LogGuard(None);
    }
    let flusher = out.clone();
    let _ = std::thread::Builder::new()
        .name("partner-gateway-log".to_owned())
        .spawn(move || loop {
            std::thread::sleep(FLUSH_EVERY);
            flusher.flush();
        });
    LogGuard(Some(out))
}
