#![no_main]
//! cargo-fuzz target `load`: see `klad_fuzz::fuzz_bodies::load::run`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: { klad_fuzz::report_caught_panics(); },
    |data: &[u8]| klad_fuzz::fuzz_bodies::body("load").expect("target")(data)
);
