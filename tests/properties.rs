//! Property tests of every parser a client or the upstream feeds (hardening issue): arbitrary
//! bytes never panic, and structured near-misses (a GUID one edit away, a path with a dot
//! segment, a list with the tag in any position, JSON nested thousands deep) get exactly the
//! answer of a small reference model written here from SPEC §3–§6.
//!
//! Each property runs a few thousand cases by default; `PROPTEST_CASES=N` sets every property to
//! N cases instead (the long run: README, "Property tests"). Failures are not persisted to files:
//! proptest prints the shrunk input, and a case worth keeping becomes a plain test.
//!
//! Run alone with `cargo test --test properties`.

use proptest::test_runner::Config as ProptestConfig;

#[path = "properties/strategies.rs"]
mod strategies;

#[path = "properties/ids.rs"]
mod ids;

#[path = "properties/route.rs"]
mod route;

#[path = "properties/conditional.rs"]
mod conditional;

#[path = "properties/retry_after.rs"]
mod retry_after;

#[path = "properties/locale.rs"]
mod locale;

#[path = "properties/orders.rs"]
mod orders;

#[path = "properties/body.rs"]
mod body;

/// A property's runner settings: `default_cases` cases, or `PROPTEST_CASES` when it is set.
/// (`ProptestConfig::with_cases` would ignore the variable; the default config alone would
/// give every property proptest's 256.)
pub fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
