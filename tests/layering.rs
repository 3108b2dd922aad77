//! The architecture as a test: `src/` is built in floors, and data flows one way through them.
//!
//! [`FLOORS`] is the one declaration of the order, bottom first: each floor names folders of
//! `src/` and top-level files. A file may name (`crate::…`, `super::…`) its own folder and the
//! floors below its own, never one above; inside a folder, a file names a sibling by its module
//! (`super::raw::RawConfig`), never through the folder's re-exports; and no files name each
//! other in a loop, at any distance. A folder's `mod.rs` and `lib.rs` only declare and
//! re-export. Test modules (`#[cfg(test)]` to the end of a file) are not checked: a test may
//! build whatever it needs. A new folder or top-level file must be given its floor here.
//! Run it alone with `cargo test --test layering`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The floors of `src/`, bottom first; the order `src/lib.rs` tells them in.
const FLOORS: &[&[&str]] = &[
    // the vocabulary every stage speaks
    &["outcome", "resource", "guid"],
    // what the operator asked for
    &["config"],
    // the pure readers of a request
    &["request"],
    // the one body type; the errors and the one place they become answers
    &["body", "error"],
    // metrics and logs
    &["observe"],
    // Partner Center as the gateway reaches it
    &["upstream"],
    // Redis link, members, invalidation bus, shared budget
    &["fleet"],
    // memory and shared tiers, fills, freshness
    &["cache"],
    // the one invalidation path every change takes
    &["changes"],
    // the front listener and the request pipeline
    &["front"],
    // the admin listener, which looks into what the front built
    &["admin"],
    // the running gateway: both listeners, fleet and upkeep, the drain
    &["server"],
    // the walk-through and the simulator
    &["demo"],
    // the command line and the binary
    &["cli", "main", "lib"],
];

/// One source file: its path under `src/` (`cache/tier.rs`) and its text.
struct File {
    path: String,
    text: String,
}

/// The floor of a unit (a folder or a top-level file's stem).
fn floor(unit: &str) -> Option<usize> {
    FLOORS.iter().position(|floor| floor.contains(&unit))
}

/// `cache/tier.rs` → (`cache`, Some(`tier`)); `body.rs` → (`body`, None); `cache/mod.rs` →
/// (`cache`, Some(`mod`)).
fn split(path: &str) -> (String, Option<String>) {
    let stem = path.trim_end_matches(".rs");
    match stem.split_once('/') {
        Some((folder, module)) => (folder.to_owned(), Some(module.to_owned())),
        None => (stem.to_owned(), None),
    }
}

/// Every path the code names from the crate root, as segments: `crate::cache::tier::Tiers` →
/// [`cache`, `tier`, `Tiers`]; in a folder's file, `super::raw::X` → [folder, `raw`, `X`].
fn named_paths(code: &str, folder: Option<&str>) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (prefix, root) in [("crate::", None), ("super::", folder)] {
        if prefix == "super::" && root.is_none() {
            continue;
        }
        for (at, _) in code.match_indices(prefix) {
            // `super::super::…` and `a::super::…` are not this file's own `super`.
            let before = &code[..at];
            if before.ends_with("::") || before.ends_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            let rest = &code[at + prefix.len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut segments: Vec<String> = root.map(|r| vec![r.to_owned()]).unwrap_or_default();
            segments.extend(
                path.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            // `super::` alone (a grouped import from the folder) names no module.
            if segments.len() >= 2 || (prefix == "crate::" && segments.len() == 1) {
                paths.push(segments);
            }
        }
    }
    paths
}

/// Whether a declaration file (`mod.rs`, `lib.rs`) holds only declarations:
/// doc comments, attributes, `mod`, `pub mod` and `pub use`.
fn only_declares(code: &str) -> bool {
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("#["))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';').map(str::trim).all(|statement| {
        statement.is_empty()
            || statement.starts_with("pub mod ")
            || statement.starts_with("mod ")
            || statement.starts_with("pub use ")
    })
}

/// The checks of this file's doc, over a tree given as files; every breach, described.
fn violations(files: &[File]) -> Vec<String> {
    let paths: BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let mut found = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let (unit, module) = split(&file.path);
        let code = file.text.split("#[cfg(test)]").next().unwrap_or_default();
        // Comments (doc links included) name things for the reader, not the compiler.
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let code = code.as_str();
        let declares =
            matches!(module.as_deref(), Some("mod")) || (module.is_none() && unit == "lib");
        if declares {
            if !only_declares(code) {
                found.push(format!(
                    "{}: does more than declare and re-export",
                    file.path
                ));
            }
            continue;
        }
        let Some(own) = floor(&unit) else {
            found.push(format!("{}: `{unit}` has no floor in FLOORS", file.path));
            continue;
        };
        let folder = module.as_ref().map(|_| unit.as_str());
        for segments in named_paths(code, folder) {
            let named = segments.join("::");
            let target_unit = &segments[0];
            let Some(target) = floor(target_unit) else {
                found.push(format!(
                    "{} → {named}: `{target_unit}` has no floor",
                    file.path
                ));
                continue;
            };
            if target > own {
                found.push(format!(
                    "{} → {named}: `{target_unit}` is on floor {}, above `{unit}` (floor {})",
                    file.path,
                    target + 1,
                    own + 1
                ));
                continue;
            }
            // Resolve to the file named: `a/b.rs`, `a.rs`, or the folder's re-exports.
            let sibling = segments.get(1).map(|m| format!("{target_unit}/{m}.rs"));
            let node = match sibling.filter(|s| paths.contains(s.as_str())) {
                Some(sibling) => sibling,
                None if paths.contains(format!("{target_unit}.rs").as_str()) => {
                    format!("{target_unit}.rs")
                }
                None if folder == Some(target_unit.as_str()) => {
                    found.push(format!(
                        "{} → {named}: names its own folder's re-export; name the sibling module",
                        file.path
                    ));
                    continue;
                }
                None => continue, // another folder as a whole: a lower floor, no loop through it
            };
            if node != file.path {
                edges.entry(file.path.clone()).or_default().insert(node);
            }
        }
    }
    found.extend(loops(&edges));
    found
}

/// Every loop among files, each as `a → b → … → a` (found by depth-first search).
fn loops(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<String>,
    ) {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut circle = stack[at..].to_vec();
            circle.push(node.to_owned());
            found.push(format!("import loop: {}", circle.join(" → ")));
            return;
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, stack, done, found);
        }
        stack.pop();
        done.insert(node.to_owned());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, edges, &mut Vec::new(), &mut done, &mut found);
    }
    found
}

fn read_tree(dir: &Path, src: &Path, out: &mut Vec<File>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            read_tree(&path, src, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(src).expect("under src");
            out.push(File {
                path: relative.to_string_lossy().replace('\\', "/"),
                text: std::fs::read_to_string(&path).expect("read file"),
            });
        }
    }
}

#[test]
fn every_file_names_only_its_own_folder_and_floors_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_tree(&src, &src, &mut files);
    for file in &files {
        assert!(
            file.path.matches('/').nth(1).is_none(),
            "{}: folders are one level deep (a deeper one needs its own floor rules)",
            file.path
        );
    }
    let found = violations(&files);
    assert!(
        found.is_empty(),
        "the house runs against its floors:\n{found:#?}"
    );
}

fn tree(files: &[(&str, &str)]) -> Vec<File> {
    files
        .iter()
        .map(|(path, text)| File {
            path: (*path).to_owned(),
            text: (*text).to_owned(),
        })
        .collect()
}

#[test]
fn an_upward_import_is_refused() {
    let found = violations(&tree(&[
        ("cache/store.rs", "use crate::front::pipeline::Gateway;"),
        ("front/pipeline.rs", "use crate::cache::store::Store;"),
        ("outcome.rs", "use crate::config::Config;"),
        ("config/raw.rs", ""),
    ]));
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("cache/store.rs → front::pipeline::Gateway: `front`"));
    assert!(found[1].starts_with("outcome.rs → config::Config: `config` is on floor 2"));
}

#[test]
fn a_loop_between_files_is_refused_even_within_a_floor() {
    let found = violations(&tree(&[
        ("config/fleet.rs", "use super::raw::bounded;"),
        ("config/raw.rs", "use super::validate::x;"),
        (
            "config/validate.rs",
            "pub fn v() { super::fleet::validate() }",
        ),
        ("outcome.rs", "use crate::resource::Resource;"),
        ("resource.rs", "use crate::outcome::Note;"),
    ]));
    assert_eq!(
        found,
        vec![
            "import loop: config/fleet.rs → config/raw.rs → config/validate.rs → config/fleet.rs",
            "import loop: outcome.rs → resource.rs → outcome.rs",
        ]
    );
}

#[test]
fn a_sibling_is_named_by_its_module_and_declarations_only_declare() {
    let found = violations(&tree(&[
        (
            "config/mod.rs",
            "pub mod raw;\npub use raw::RawConfig;\nfn sneaky() {}",
        ),
        ("config/raw.rs", ""),
        (
            "config/validate.rs",
            "use crate::config::RawConfig;\nuse super::raw::RawConfig;",
        ),
        ("nowhere.rs", ""),
        (
            "cache/tier.rs",
            "use crate::config::Config; use super::store::Store;",
        ),
        (
            "cache/store.rs",
            "/// a doc link is no import: [`super::tier`]\nfn f() {}",
        ),
    ]));
    assert_eq!(
        found,
        vec![
            "config/mod.rs: does more than declare and re-export",
            "config/validate.rs → config::RawConfig: names its own folder's re-export; name the sibling module",
            "nowhere.rs: `nowhere` has no floor in FLOORS",
        ]
    );
}
