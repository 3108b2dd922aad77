//! `[log]`: the checks of the log keys (SPEC §9).
//!
//! Its own file because a mistyped level is worse than an error: tracing's filter reads a bare
//! word it does not know as a target, and the gateway would then run with no logs at all — not
//! even its listening line. So a level must be a level, and the gateway says so at start.

use super::raw::RawLog;
use super::settings::{ConfigError, LogConfig};

/// Checks `[log]`.
pub fn validate(raw: RawLog) -> Result<LogConfig, ConfigError> {
    let level = raw.level.trim().to_owned();
    log_filter(&level)?;
    Ok(LogConfig {
        format: raw.format,
        level,
    })
}

/// `log.level` (SPEC §9): a level, or filter directives whose every level is one. A bare word is
/// a level (`"warning"` or `"loud"` is a typo, not a target: tracing's filter would read it as
/// one and log nothing at all); a target is written `target=level`, or with `::`.
fn log_filter(level: &str) -> Result<(), ConfigError> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let fail = |why: String| {
        ConfigError::invalid(
            "log.level",
            format!("{level:?}: {why} (a level is one of trace, debug, info, warn, error, off; a filter reads like \"warn,partner_gateway=debug\")"),
        )
    };
    if level.is_empty() {
        return Err(fail("is empty".to_owned()));
    }
    for directive in level.split(',').map(str::trim) {
        let named_level = match directive.rsplit_once('=') {
            Some((_, named)) => Some(named),
            None if directive.contains("::") || directive.contains('[') => None,
            None => Some(directive),
        };
        if let Some(named) = named_level {
            if !LEVELS.contains(&named.to_ascii_lowercase().as_str()) {
                return Err(fail(format!("{named:?} is not a level")));
            }
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(|_| ())
        .map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use crate::config::load::load_env;

    #[test]
    fn log_level_is_a_level_or_filter_directives_whose_levels_are_levels() {
        for good in [
            "info",
            "WARN",
            "off",
            "warn,partner_gateway=debug",
            "hyper::proto=trace",
            "info,h2[x]",
        ] {
            let c = load_env(&[("PARTNER_GATEWAY__LOG__LEVEL", good)]);
            assert!(c.is_ok(), "{good}: {c:?}");
        }
        for bad in [
            "warning",
            "loud",
            "",
            "info,verbose",
            "partner_gateway=loud",
        ] {
            let err = load_env(&[("PARTNER_GATEWAY__LOG__LEVEL", bad)])
                .expect_err(bad)
                .to_string();
            assert!(err.contains("log.level"), "{bad}: {err}");
        }
    }
}
