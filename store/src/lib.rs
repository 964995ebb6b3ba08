//! # klad-store
//!
//! Durable storage for Klad: a small key/value trait ([`KvStore`]), its
//! backends, and the document layer ([`DocStore`]) that keeps each Automerge
//! document as a snapshot plus incremental chunks.
//!
//! This is where Klad's IO to storage lives, so that klad-core (the domain)
//! does none. Backends:
//! - [`SledStore`] (feature `sled`, on by default): the embedded default, on
//!   the server and on phones; `cargo run` needs nothing else installed.
//! - [`PgStore`] (feature `postgres`): PostgreSQL, for several klad-server
//!   nodes on one database (only SQL that CockroachDB and YugabyteDB also
//!   accept).
//! - [`MemStore`]: in memory, for tests and tools.
//!
//! The key/value trait mirrors the shape of `samod`'s `Storage` (keys are
//! sequences of path components, with prefix range queries) so that the sync
//! server can put samod on the same store, and so that another backend only
//! has to provide these few calls. The document layer uses samod's key layout
//! (`[doc_id, "incremental" | "snapshot", hash]`, see [`DocStore`]), so samod
//! and Klad read each other's documents. Chunk checksums are checked by the
//! document layer (with klad-core's pure `chunks` module) on every load, so
//! every backend gets them.

mod doc;
mod kv;
mod mem;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "sled")]
mod sled;

pub mod journal;

pub use self::doc::{DocStore, INCREMENTAL, SNAPSHOT, incremental_value};
pub use self::kv::{Key, KvStore, StoreError};
pub use self::mem::MemStore;
#[cfg(feature = "postgres")]
pub use self::pg::{Claim, DEFAULT_CONNECTIONS, DEFAULT_TABLE, Fence, PgStore, SCHEMA_VERSION};
#[cfg(feature = "sled")]
pub use self::sled::SledStore;
