//! Writes the fuzz targets' seed corpus (`fuzz/corpus/<target>/<name>`),
//! generated from real frames, documents, stored values, journal records and
//! tokens by `klad_tests::fuzz_bodies::seeds`. Replaces the files it names and
//! leaves others (found by fuzzing and kept) alone.
//!
//! Usage: `cargo run -p klad-tests --bin klad-fuzz-seeds [DIR]` (default:
//! the repository's `fuzz/corpus`).

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus"),
        PathBuf::from,
    );
    let mut written = 0;
    for (target, name, bytes) in klad_tests::fuzz_bodies::seeds::generate() {
        // Every seed must pass its own target's checks.
        let body = klad_tests::fuzz_bodies::body(target)
            .ok_or_else(|| anyhow::anyhow!("no fuzz target called {target}"))?;
        body(&bytes);
        let target_dir = dir.join(target);
        std::fs::create_dir_all(&target_dir)?;
        std::fs::write(target_dir.join(&name), &bytes)?;
        written += 1;
    }
    println!("wrote {written} seeds under {}", dir.display());
    Ok(())
}
