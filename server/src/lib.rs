//! `klad-server`: the sync server.
//!
//! An axum + tokio server that speaks the automerge-repo sync protocol (via
//! `samod`) on `/sync`, stores every document in klad-core's sled store,
//! authenticates members with Ed25519-signed tokens, and enforces Klad's
//! rules at the document boundary with samod's share policy.
//!
//! Code map:
//! - [`server`]: opening the data directory, serving, shutting down.
//! - [`repos`]: one samod repo per process, started on demand, stopped when idle.
//! - [`storage`]: samod's `Storage` on klad-core's `KvStore`.
//! - [`durability`]: the barrier that holds back acknowledgements until changes are on disk.
//! - [`auth`]: signing key, tokens, admin secret.
//! - [`directory`]: who is in which process with which role; the share policy.
//! - [`facilitation`]: creating processes, inviting members, changing phase.
//! - [`connection`]: one websocket between axum and samod, with limits.
//! - [`http`]: the routes.
//! - [`client`]: a small HTTP client the command line uses to reach a running server.
//! - [`metrics`]: Prometheus counters.
//!
//! The wire format, token verification and the per-document access decision
//! live in `klad-sync`, shared with the phones.

pub mod auth;
pub mod client;
pub mod connection;
pub mod directory;
pub mod durability;
pub mod facilitation;
pub mod http;
pub mod metrics;
pub mod repos;
pub mod server;
pub mod storage;
