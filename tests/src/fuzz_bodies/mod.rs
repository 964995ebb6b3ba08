//! The bodies of Klad's fuzz targets: one plain function per decoder that
//! takes arbitrary bytes, runs them through the decoder and asserts what must
//! hold (it never panics on its own; what it accepts round-trips; the hub's
//! counts and stored data stay consistent). A body panics only when an
//! invariant is broken, so a panic is a bug.
//!
//! The same file is compiled twice: here in klad-tests, where
//! `tests/tests/fuzz_smoke.rs` replays the committed corpus and crashes and a
//! few thousand seeded mutations of them on stable Rust (the short smoke the
//! normal suite and CI run), and in `fuzz/` (a path module), where
//! cargo-fuzz's libFuzzer harness on nightly calls the same functions. So
//! this module uses only crates both have: klad-core, klad-sync, automerge,
//! ciborium, pasetors, serde_json and sha2; and, for the web desk's target,
//! klad-server, klad-web, axum, tokio and tower.

pub mod bytes;
pub mod desk;
pub mod hub;
pub mod journal;
pub mod load;
pub mod mutate;
pub mod seeds;
pub mod store;
pub mod token;
pub mod wire;

/// A fuzz target's body.
pub type Body = fn(&[u8]);

/// Every target: its name (the cargo-fuzz target and the directory of its
/// corpus and regressions) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("wire", wire::run),
    ("hub_frame", hub::run_frame),
    ("hub_changes", hub::run_changes),
    ("load", load::run),
    ("store", store::run),
    ("journal", journal::run),
    ("token", token::run),
    ("desk", desk::run),
];

/// The body of the target called `name`.
pub fn body(name: &str) -> Option<Body> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Asserts that an error a person may read says something (its wording is
/// tested where it is written).
pub(crate) fn assert_sentence(text: &str) {
    assert!(
        !text.trim().is_empty(),
        "an error without a sentence: {text:?}"
    );
}
