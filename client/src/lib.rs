//! # klad-client
//!
//! The phone's replica of a Klad process, as state machines without IO: the
//! phone library (`klad-ffi`) drives them, storing what they hand it and
//! telling them what happened, and they are tested here in plain Rust.
//!
//! - [`typing`]: keystrokes placed where they were typed (versions, the
//!   write-ahead journal, coalescing into changes, replay after a crash).
//!
//! Like klad-core and klad-sync it does no IO: no runtime, no sockets, no
//! storage, no clock (times are passed in).

pub mod typing;

pub use typing::{Commit, Keystroke, Prepared, Typing};
