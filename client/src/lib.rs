//! # klad-client
//!
//! The phone's replica of a Klad process, as state machines without IO: the
//! phone library (`klad-ffi`) drives them, storing what they hand it and
//! telling them what happened, and they are tested here in plain Rust.
//!
//! - [`replica`]: the process on the phone: the session, what is stored
//!   (every durable operation hands back a [`Write`] to store), merging what
//!   sync brings, the server's acknowledgements and the unsynced count.
//! - [`typing`]: keystrokes placed where they were typed (versions, the
//!   write-ahead journal, coalescing into changes, replay after a crash).
//!
//! Like klad-core and klad-sync it does no IO: no runtime, no sockets, no
//! storage, no clock (times are passed in).

pub mod replica;
pub mod typing;

pub use replica::{Config, Disk, Effects, Replica, Write};
pub use typing::{Commit, Keystroke, Prepared, Typing};
