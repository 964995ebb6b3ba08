#![no_main]
//! cargo-fuzz target `wire`: see `klad_fuzz::fuzz_bodies::wire::run`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: { klad_fuzz::report_caught_panics(); },
    |data: &[u8]| klad_fuzz::fuzz_bodies::body("wire").expect("target")(data)
);
