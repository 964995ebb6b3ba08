//! The short smoke of every fuzz target, on stable Rust, in the normal suite
//! (so CI runs it): each target's body (`klad_tests::fuzz_bodies`, the same
//! code cargo-fuzz runs in `fuzz/`) gets every committed corpus file
//! (`fuzz/corpus/<target>/`), every crash found so far
//! (`fuzz/regressions/<target>/`, each fixed and kept as a regression test),
//! and 2,000 seeded mutations of the corpus. No time is measured or asserted.

use std::path::{Path, PathBuf};

use klad_tests::fuzz_bodies::mutate::{Rng, mutate};
use klad_tests::fuzz_bodies::{TARGETS, body};

/// Mutations tried per target.
const MUTATIONS: usize = 2_000;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of a directory, sorted by name (none if it does not exist).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("a corpus file reads");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    out.sort();
    out
}

fn smoke(target: &str) {
    let run = body(target).expect("a target");
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target} has no seeds");
    let regressions = files(&fuzz_dir().join("regressions").join(target));
    for (name, bytes) in corpus.iter().chain(&regressions) {
        eprintln!("{target}: {name}");
        run(bytes);
    }
    // The seed depends on the target only: every run tries the same inputs.
    let mut rng = Rng::new(
        target
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)),
    );
    let all: Vec<&Vec<u8>> = corpus.iter().chain(&regressions).map(|(_, b)| b).collect();
    for _ in 0..MUTATIONS {
        let input = all[rng.below(all.len())];
        let other = all[rng.below(all.len())];
        let mutated = mutate(&mut rng, input, other);
        let outcome = std::panic::catch_unwind(|| run(&mutated));
        if let Err(panic) = outcome {
            // Keep the input that failed, for fuzz/regressions once fixed.
            let path = std::env::temp_dir().join(format!("klad-fuzz-smoke-{target}"));
            let _ = std::fs::write(&path, &mutated);
            eprintln!(
                "{target}: a mutation failed; its input is in {}",
                path.display()
            );
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn every_target_has_a_smoke_test() {
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "wire",
            "hub_frame",
            "hub_changes",
            "load",
            "store",
            "journal",
            "token",
            "desk"
        ]
    );
    // And a cargo-fuzz target of the same name.
    for name in names {
        let file = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(file.is_file(), "{} is missing", file.display());
    }
}

#[test]
fn fuzz_smoke_wire() {
    smoke("wire");
}

#[test]
fn fuzz_smoke_hub_frame() {
    smoke("hub_frame");
}

#[test]
fn fuzz_smoke_hub_changes() {
    smoke("hub_changes");
}

#[test]
fn fuzz_smoke_load() {
    smoke("load");
}

#[test]
fn fuzz_smoke_store() {
    smoke("store");
}

#[test]
fn fuzz_smoke_journal() {
    smoke("journal");
}

#[test]
fn fuzz_smoke_token() {
    smoke("token");
}

#[test]
fn fuzz_smoke_desk() {
    smoke("desk");
}
