//! `[webhooks]` and `[audit]`: the checks of the keys of changes announced elsewhere (SPEC §15.2,
//! §15.3).
//!
//! Its own file because notifications are one decision with rules of their own: where they
//! arrive (a path of the front listener that no Partner Center call uses), where they go (the
//! partner's handler), and which certificate's key may sign them — read and checked here, at
//! start, so a notification never meets a certificate that cannot be used.

use std::path::PathBuf;

use http::Uri;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::raw::{RawAudit, RawWebhooks};
use super::settings::{AuditConfig, ConfigError, WebhooksConfig};

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(key, message)
}

/// Checks `[webhooks]`.
pub fn validate(raw: RawWebhooks) -> Result<WebhooksConfig, ConfigError> {
    let path = raw.path.trim().to_owned();
    if !path.is_empty() && (!path.starts_with('/') || path.starts_with("/v1/") || path == "/v1") {
        return Err(invalid(
            "webhooks.path",
            format!("{path:?} must start with '/' and not be a Partner Center path (/v1/…)"),
        ));
    }
    let relay_url = raw.relay_url.trim().to_owned();
    if !relay_url.is_empty() {
        let uri: Uri = relay_url.parse().map_err(|e| {
            invalid(
                "webhooks.relay_url",
                format!("{relay_url:?} is not a URL ({e})"),
            )
        })?;
        let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
        if !scheme_ok || uri.host().is_none() {
            return Err(invalid(
                "webhooks.relay_url",
                format!("{relay_url:?} must be an http or https URL with a host"),
            ));
        }
    }
    if raw.relay_timeout.is_zero() {
        return Err(invalid(
            "webhooks.relay_timeout",
            "must be greater than zero",
        ));
    }
    let (certificate_file, certificate) = match raw.certificate_file.trim() {
        "" => (None, None),
        file => {
            let certs = read_certificates("webhooks.certificate_file", file)?;
            let [certificate] = <[CertificateDer<'static>; 1]>::try_from(certs).map_err(|certs| {
                invalid(
                    "webhooks.certificate_file",
                    format!("{file:?} holds {} certificates; it must hold the one signing certificate", certs.len()),
                )
            })?;
            if webpki::EndEntityCert::try_from(&certificate).is_err() {
                return Err(invalid(
                    "webhooks.certificate_file",
                    format!("{file:?} is not a usable X.509 certificate"),
                ));
            }
            (Some(PathBuf::from(file)), Some(certificate))
        }
    };
    let (ca_file, extra_roots) = match raw.ca_file.trim() {
        "" => (None, Vec::new()),
        file => {
            let roots = read_certificates("webhooks.ca_file", file)?;
            (Some(PathBuf::from(file)), roots)
        }
    };
    let issuer = raw.certificate_issuer.trim().to_owned();
    if !path.is_empty()
        && certificate.is_none()
        && (raw.certificate_hosts.is_empty() || issuer.is_empty())
    {
        return Err(invalid(
            "webhooks.certificate_hosts",
            "names no host (and no webhooks.certificate_file pins a certificate): no notification \
             could ever be verified; set one, or webhooks.certificate_issuer if it is empty",
        ));
    }
    let certificate_hosts = raw
        .certificate_hosts
        .iter()
        .map(|host| host.to_ascii_lowercase())
        .collect();
    Ok(WebhooksConfig {
        path,
        relay_url,
        relay_timeout: raw.relay_timeout,
        certificate_file,
        certificate,
        certificate_hosts,
        ca_file,
        extra_roots,
        certificate_issuer: issuer,
    })
}

/// Checks `[audit]`: a follower needs the file its token is read from.
pub fn validate_audit(raw: RawAudit) -> Result<AuditConfig, ConfigError> {
    let token_file = match raw.token_file.trim() {
        "" => None,
        file => Some(PathBuf::from(file)),
    };
    if !raw.interval.is_zero() && token_file.is_none() {
        return Err(invalid(
            "audit.token_file",
            "is required while audit.interval is above zero (the bearer token of the audit calls)",
        ));
    }
    Ok(AuditConfig {
        interval: raw.interval,
        token_file,
        overlap: raw.overlap,
    })
}

/// The PEM certificates of `file` (at least one), or an error naming `key` (also for
/// `upstream.ca_file`).
pub fn read_certificates(
    key: &'static str,
    file: &str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = std::fs::read(file).map_err(|e| invalid(key, format!("{file:?}: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, format!("{file:?}: not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(invalid(key, format!("{file:?} holds no PEM certificate")));
    }
    Ok(certs)
}
