//! # klad-sync
//!
//! What Klad's sync server and its phones share at a connection, whichever
//! end they are on: the few fields of automerge-repo frames they inspect,
//! member tokens and their verification, and the access a connected peer gets
//! to each document of a process.
//!
//! Like klad-core it does no IO and runs no runtime: the server (over a
//! websocket) and a phone (over a peer link to another phone) call the same
//! functions on the bytes they carry, so a phone refuses from a peer exactly
//! what the server would refuse.
//!
//! - [`connect`]: the sync URL's path and query, the server-key header, actor ids.
//! - [`wire`]: automerge-repo frames (parse, replace sync data) and the peer-link handshake frames.
//! - [`token`]: what a member token says, verified with the server's public key.
//! - [`access`]: peer ids and the per-document decision ([`access::decide`]).
//! - [`authorship`]: the per-change check every inbound sync message passes (who wrote it, may they
//!   write there), device keys and the detached change signatures relays carry.

pub mod access;
pub mod authorship;
pub mod connect;
pub mod hub;
pub mod token;
pub mod wire;
