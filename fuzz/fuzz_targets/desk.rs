#![no_main]
//! cargo-fuzz target `desk`: see `klad_fuzz::fuzz_bodies::desk::run`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: { klad_fuzz::report_caught_panics(); },
    |data: &[u8]| klad_fuzz::fuzz_bodies::body("desk").expect("target")(data)
);
