//! The fuzz targets' bodies, shared with the stable smoke test: the very
//! file klad-tests compiles (`tests/src/fuzz_bodies`), so the harness here
//! and the suite run the same code.

#[path = "../../tests/src/fuzz_bodies/mod.rs"]
pub mod fuzz_bodies;

/// Panics that the code under test catches at its own boundary (Klad
/// catches Automerge's panics on damaged bytes and turns them into a
/// sentence) are not crashes: libFuzzer's panic hook would abort on them
/// all the same. This hook only reports each place once; a panic nobody
/// catches still aborts, because libfuzzer-sys aborts after the input when
/// the body unwound.
pub fn report_caught_panics() {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map_or_else(|| "?".to_owned(), |l| format!("{}:{}", l.file(), l.line()));
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        if seen.insert(place.clone()) {
            eprintln!("klad-fuzz: panic at {place}: {info}");
        }
    }));
}
