//! The documentation stands alone and matches the code: every "SPEC §N" cited in the README,
//! the configuration, the deployment notes and the source names a section of `docs/SPEC.md`
//! (kept in the repository), every configuration key is in the README's table, and every metric
//! family a running gateway exports is described in the README.

mod common {
    #[allow(dead_code)]
    pub mod gateway;
    pub mod http;
}

use std::path::{Path, PathBuf};

use common::{gateway::*, http::*};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files that cite the contract: the README, the configuration, deployment notes, the source.
fn citing_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = vec![
        root().join("README.md"),
        root().join("config/default.toml"),
        root().join("deploy/README.md"),
    ];
    walk(&root().join("src"), &mut files);
    files
}

/// Whether `docs/SPEC.md` has section `N`, and `N.M` as a heading or as item `M.` of section N.
fn has_section(spec: &str, number: &str) -> bool {
    let (major, minor) = match number.split_once('.') {
        Some((major, minor)) if !minor.is_empty() => (major, Some(minor)),
        _ => (number.trim_end_matches('.'), None),
    };
    let heading = format!("## {major}. ");
    let Some(start) = spec.find(&heading) else {
        return false;
    };
    let Some(minor) = minor else {
        return true;
    };
    let body = &spec[start + heading.len()..];
    let section = &body[..body.find("\n## ").unwrap_or(body.len())];
    section.contains(&format!("### {major}.{minor} ")) || section.contains(&format!("\n{minor}. "))
}

#[test]
fn every_spec_citation_names_a_section_of_the_spec_in_the_repository() {
    let spec = read(&root().join("docs/SPEC.md"));
    let mut missing = Vec::new();
    let mut cited = 0;
    for file in citing_files() {
        let text = read(&file);
        for (at, _) in text.match_indices("SPEC §") {
            let number: String = text[at + "SPEC §".len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let number = number.trim_end_matches('.');
            cited += 1;
            if number.is_empty() || !has_section(&spec, number) {
                missing.push(format!("{}: SPEC §{number}", file.display()));
            }
        }
    }
    assert!(cited > 100, "the citations were found ({cited})");
    assert!(missing.is_empty(), "citations of no section:\n{missing:#?}");
    assert!(has_section(&spec, "12.3") && has_section(&spec, "4.2") && !has_section(&spec, "4.9"));
}

#[test]
fn every_configuration_key_is_in_the_readme() {
    let defaults: toml::Table = read(&root().join("config/default.toml"))
        .parse()
        .expect("config/default.toml is TOML");
    let readme = read(&root().join("README.md"));
    let mut missing = Vec::new();
    for (section, keys) in &defaults {
        for key in keys.as_table().expect("a section").keys() {
            let name = format!("`{section}.{key}`");
            if !readme.contains(&name) {
                missing.push(name);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys the README does not describe: {missing:?}"
    );
}

#[tokio::test]
async fn every_metric_family_a_gateway_exports_is_in_the_readme() {
    // Nothing is sent upstream: the families are declared from start-up.
    let gw = TestGateway::with("http://127.0.0.1:9", &[]).await;
    let metrics = get(&gw.admin_url("/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(families.len() >= 15, "{text}");
    let readme = read(&root().join("README.md"));
    let missing: Vec<&&str> = families.iter().filter(|f| !readme.contains(**f)).collect();
    assert!(
        missing.is_empty(),
        "families the README does not describe: {missing:?}"
    );
    gw.stop().await;
}
