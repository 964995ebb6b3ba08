#![no_main]
//! cargo-fuzz target `journal`: see `klad_fuzz::fuzz_bodies::journal::run`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: { klad_fuzz::report_caught_panics(); },
    |data: &[u8]| klad_fuzz::fuzz_bodies::body("journal").expect("target")(data)
);
