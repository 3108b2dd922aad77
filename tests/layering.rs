//! The architecture as a test: data flows one way through `src/`.
//!
//! Every module has a level in [`LAYERS`] (top first, in the order a request meets them); a
//! module may name (`crate::…`) only modules below it. Strictly falling levels also mean no
//! import cycle. Test modules (`#[cfg(test)]` to the end of a file) are not checked: a test
//! may build whatever it needs. A new module must be given its level here.
//! Run it alone with `cargo test --test layering`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Modules from the top of the request's path to the bottom. `config` stands for the whole
/// `config` folder (its files are one unit).
const LAYERS: &[&str] = &[
    "cli",
    "demo::walkthrough",
    "demo::subscriptions",
    "demo::console",
    "demo::simulator",
    "demo::store",
    "demo::accounts",
    "demo::catalog",
    "front::server",
    "ops::admin",
    "ops::admin_auth",
    "front::connection",
    "front::pipeline",
    "cache::lookup",
    "cache::fill",
    "cache::ask",
    "cache::tier",
    "fleet::shared",
    "fleet::stored",
    "fleet::bus",
    "fleet::budget",
    "cache::store",
    "cache::index",
    "cache::cacheability",
    "cache::policy",
    "cache::key",
    "fleet::replica",
    "fleet::members",
    "fleet::link",
    "upstream::exchange",
    "upstream::shield",
    "upstream::forward",
    "upstream::client",
    "ops::metrics",
    "ops::telemetry",
    "error",
    "front::conditional",
    "front::correlation",
    "front::credential",
    "front::route",
    "front::target",
    "outcome",
    "body",
    "config",
    "resource",
    "front::guid",
];

/// Folders' `mod.rs`, `lib.rs` and `main.rs` only declare or call modules.
fn is_declaration_only(module: &str) -> bool {
    matches!(
        module,
        "" | "main" | "front" | "cache" | "fleet" | "upstream" | "ops" | "demo"
    )
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("read src");
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/cache/fill.rs` → `cache::fill`; `src/cache/mod.rs` → `cache`; `src/lib.rs` → "".
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    let module = parts.join("::");
    if module == "lib" {
        String::new()
    } else {
        module
    }
}

/// The level of a module path: the longest entry of [`LAYERS`] it starts with.
fn level(path: &str) -> Option<usize> {
    LAYERS
        .iter()
        .enumerate()
        .filter(|(_, layer)| path == **layer || path.starts_with(&format!("{layer}::")))
        .max_by_key(|(_, layer)| layer.len())
        .map(|(i, _)| i)
}

/// Every `crate::a::b::…` path named in `code`.
fn named_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        paths.push(path.trim_end_matches(':').to_owned());
    }
    paths
}

#[test]
fn every_module_names_only_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = BTreeMap::new();
    for file in files {
        let module = module_of(&src, &file);
        let text = std::fs::read_to_string(&file).expect("read file");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        if is_declaration_only(&module) {
            continue;
        }
        let Some(own) = level(&module) else {
            violations.insert(module.clone(), "has no level in LAYERS".to_owned());
            continue;
        };
        for path in named_paths(code) {
            let Some(target) = level(&path) else {
                violations.insert(format!("{module} → {path}"), "unknown module".to_owned());
                continue;
            };
            if LAYERS[target] == LAYERS[own] {
                continue; // within one module (or the config folder)
            }
            if target <= own {
                violations.insert(
                    format!("{module} → {path}"),
                    format!("{} is not below {}", LAYERS[target], LAYERS[own]),
                );
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the flow:\n{violations:#?}"
    );
}

#[test]
fn the_checker_sees_an_upward_import() {
    assert_eq!(
        named_paths("use crate::cache::tier::Tiers;\nlet x = crate::outcome::X_CACHE;"),
        vec!["cache::tier::Tiers", "outcome::X_CACHE"]
    );
    let (store, lookup) = (level("cache::store::Entry"), level("cache::lookup"));
    assert!(store > lookup, "store sits below lookup");
    assert_eq!(level("config::raw::RawConfig"), level("config"));
    assert_eq!(level("nowhere"), None);
}
