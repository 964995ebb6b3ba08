#![no_main]
//! cargo-fuzz target `store`: see `klad_fuzz::fuzz_bodies::store::run`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: { klad_fuzz::report_caught_panics(); },
    |data: &[u8]| klad_fuzz::fuzz_bodies::body("store").expect("target")(data)
);
