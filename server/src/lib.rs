//! `klad-server`: the sync server.
//!
//! An axum + tokio adapter around klad-sync's sans-IO sync hub: it speaks the
//! automerge-repo sync protocol on `/sync`, stores every document in
//! klad-core's sled store, authenticates members with Ed25519-signed tokens,
//! and enforces Klad's rules per document (access) and per change
//! (authorship) through the hub's gate.
//!
//! Code map:
//! - [`server`]: opening the data directory, serving, shutting down.
//! - [`hubs`]: one hub task per process, started on demand, stopped when
//!   idle; carries out the hub's effects (send, close, load, store).
//! - [`gate`]: the hub's access decisions and the per-change authorship check.
//! - [`auth`]: signing key, tokens, admin secret.
//! - [`directory`]: who is in which process with which role.
//! - [`facilitation`]: creating processes, inviting members, changing phase
//!   (written through the process's hub).
//! - [`connection`]: one websocket between axum and its hub, with limits.
//! - [`http`]: the routes.
//! - [`desk`]: the web desk's backend (klad-web, mounted under `/desk`).
//! - [`client`]: a small HTTP client the command line uses to reach a running server.
//! - [`metrics`]: Prometheus counters.
//!
//! The wire format, token verification and the per-document access decision
//! live in `klad-sync`, shared with the phones.

pub mod auth;
pub mod client;
pub mod cluster;
pub mod connection;
pub mod desk;
pub mod directory;
pub mod facilitation;
pub mod gate;
pub mod http;
pub mod hubs;
pub mod metrics;
pub mod migrate;
pub mod relay;
pub mod server;
pub mod store;
