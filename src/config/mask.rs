//! Secrets kept out of what the gateway prints: a password inside a URL becomes `***`, a set
//! secret prints as `***`, an unset path as `""`.
//!
//! One place for it, below everything else in the folder, because the validated structs print
//! through these helpers (`serialize_with`) and start-up logs name the upstream and Redis URLs.

use std::path::PathBuf;

use serde::Serializer;

/// Replaces the password of `scheme://user:password@host` with `***`.
pub fn mask_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    match authority[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &authority[..colon],
            &url[scheme_end + 3 + at..]
        ),
        None => url.to_owned(),
    }
}

/// Prints a URL with its password replaced by `***`.
pub fn masked_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_password(url))
}

/// Prints a secret as `***` when it is set (and as `""` when it is not, so the printed file
/// says whether one is needed).
pub fn masked_secret<S: Serializer>(secret: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if secret.is_empty() { "" } else { "***" })
}

/// Prints an optional path the way it is written: `""` for none.
pub fn path_or_empty<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => s.collect_str(&path.display()),
        None => s.serialize_str(""),
    }
}

/// Prints the URL list with every password replaced by `***`.
pub fn masked_urls<S: Serializer>(urls: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&masked_list(urls))
}

/// A comma-separated URL list with every password replaced by `***`.
pub fn masked_list(urls: &str) -> String {
    let masked: Vec<String> = urls.split(',').map(mask_password).collect();
    masked.join(",")
}
