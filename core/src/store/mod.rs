//! Durable storage: a small key/value trait, its sled implementation, and the
//! document layer that keeps each Automerge document as a snapshot plus
//! incremental chunks.
//!
//! The key/value trait mirrors the shape of `samod`'s `Storage` (keys are
//! sequences of path components, with prefix range queries) so that the sync
//! server can put samod on the same store, and so that a PostgreSQL
//! implementation only has to provide these few calls. The document layer
//! uses samod's key layout (`[doc_id, "incremental" | "snapshot", hash]`, see
//! [`DocStore`]), so samod and Klad read each other's documents.

mod doc;
mod kv;
mod mem;
mod sled;

pub mod journal;

pub use self::doc::{DocStore, INCREMENTAL, SNAPSHOT, incremental_value};
pub use self::kv::{Key, KvStore, StoreError};
pub use self::mem::MemStore;
pub use self::sled::SledStore;
