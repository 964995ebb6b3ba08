#![no_main]
//! cargo-fuzz target `hub_changes`: see `klad_fuzz::fuzz_bodies::hub::run_changes`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: { klad_fuzz::report_caught_panics(); },
    |data: &[u8]| klad_fuzz::fuzz_bodies::body("hub_changes").expect("target")(data)
);
