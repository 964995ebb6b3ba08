//! `klad-ffi`: the offline-first phone client.
//!
//! Not built yet: this crate holds the place of the UniFFI façade over klad-core
//! and the sync client that issue 4 asks for.
