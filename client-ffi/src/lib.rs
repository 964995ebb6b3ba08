//! `klad-ffi`: the offline-first phone client, exported with UniFFI to
//! Kotlin, Swift and Python.
//!
//! A façade over klad-core (sessions, views, the sled store) and samod (the
//! automerge-repo sync protocol). It holds no domain logic: it converts types
//! and errors, keeps every operation on disk before it returns, coalesces
//! typing, and runs sync in the background.
//!
//! - [`KladClient`]: one per data directory; joins processes, lists them.
//! - [`KladProcess`]: one joined process: every operation and view of
//!   klad-core for the member this phone acts as, and its sync status.
//! - [`KladListener`]: implemented by the app; told when documents or the
//!   sync status change.
//! - [`KladPeerLink`] over a [`PeerTransport`]: phone-to-phone sync without a
//!   server, with the server's checks.
//! - [`KladError`]: the one error type (five kinds, each with a stable code and
//!   a sentence in the app's language: [`set_language`], Dutch by default).

uniffi::setup_scaffolding!();

mod client;
mod error;
mod net;
mod peer;
mod process;
mod signing;
mod storage;
mod types;

pub use client::{KladClient, KladListener};
pub use error::{KladError, Result, language, set_language};
pub use peer::{KladPeerLink, PeerTransport};
pub use process::KladProcess;
pub use types::*;
