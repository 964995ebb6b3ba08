#![no_main]
//! cargo-fuzz target `hub_frame`: see `klad_fuzz::fuzz_bodies::hub::run_frame`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: { klad_fuzz::report_caught_panics(); },
    |data: &[u8]| klad_fuzz::fuzz_bodies::body("hub_frame").expect("target")(data)
);
