//! Which store the server keeps everything in: sled in the data directory
//! (the default; nothing else to install) or a PostgreSQL database
//! (`--store postgres://...`, for several nodes on one database).
//!
//! Everything the server keeps goes to the chosen store: documents, process
//! records, the directory's entries, the storage id and, with PostgreSQL,
//! the token signing key (so every node signs and verifies with the same
//! key). With sled the signing key stays a file in the data directory, as
//! before. The data directory holds only per-node files in either case
//! (`server.json`, the admin secret the local command line uses).

use std::path::Path;

use klad_store::{Fence, Key, KvStore, PgStore, SledStore, StoreError};

use crate::server::STORE_DIR;

/// Where the store is, as the command line names it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StoreLocation {
    /// sled in `<data>/store` (the default).
    #[default]
    DataDir,
    /// A PostgreSQL database at this address (it may hold a password:
    /// never print it; [`PgStore::address`] is the printable form).
    Postgres(String),
}

impl StoreLocation {
    /// Reads `--store` / `KLAD_STORE`: absent, empty or `sled` is the data
    /// directory, `postgres://` or `postgresql://` a database.
    pub fn parse(arg: Option<&str>) -> Result<Self, StoreError> {
        match arg.map(str::trim) {
            None | Some("") | Some("sled") => Ok(StoreLocation::DataDir),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(StoreLocation::Postgres(url.to_owned()))
            }
            Some(other) => Err(StoreError::Address {
                detail: format!(
                    "--store takes `sled` (the data directory, the default) or a postgres:// address, not {:?}",
                    // Only the scheme part: the rest may hold a password.
                    other.split("://").next().unwrap_or("")
                ),
            }),
        }
    }
}

/// The server's store: either backend behind one [`KvStore`].
#[derive(Clone, Debug)]
pub enum AnyStore {
    /// sled in the data directory.
    Sled(SledStore),
    /// A PostgreSQL database.
    Postgres(PgStore),
}

impl AnyStore {
    /// Opens the store at `location` (`data` is the data directory, for sled).
    pub fn open(location: &StoreLocation, data: &Path) -> Result<Self, StoreError> {
        Ok(match location {
            StoreLocation::DataDir => AnyStore::Sled(SledStore::open(data.join(STORE_DIR))?),
            StoreLocation::Postgres(url) => AnyStore::Postgres(PgStore::open(url)?),
        })
    }

    /// Why the store refuses writes until it is opened again (sled, after
    /// a write failed at the disk; see [`SledStore::broken`]), or `None`.
    /// PostgreSQL's errors are not sticky: it is never broken this way.
    pub fn broken(&self) -> Option<String> {
        match self {
            AnyStore::Sled(s) => s.broken(),
            AnyStore::Postgres(_) => None,
        }
    }

    /// A store call did not return within `limit`: on sled (which can block
    /// on a full disk) the store is given up until it is opened again, as
    /// after a failed write. A slow PostgreSQL call only fails that call.
    pub fn call_timed_out(&self, limit: std::time::Duration) {
        if let AnyStore::Sled(s) = self {
            s.give_up(&format!(
                "a write did not return within {} s",
                limit.as_secs()
            ));
        }
    }

    /// Where the store is, for logs (no password).
    pub fn describe(&self) -> String {
        match self {
            AnyStore::Sled(s) => s.path().map_or_else(
                || "sled (temporary)".to_owned(),
                |p| p.display().to_string(),
            ),
            AnyStore::Postgres(p) => p.address().to_owned(),
        }
    }
}

impl AnyStore {
    /// [`KvStore::write_batch`] for a process: on PostgreSQL with the
    /// process's `fence` (the lease this node holds, see
    /// [`crate::cluster`]), written only while that lease holds. sled has
    /// no leases (one node serves everything) and takes no fence.
    pub fn write_batch_fenced(
        &self,
        fence: Option<&Fence>,
        puts: &[(Key, Vec<u8>)],
        deletes: &[Key],
    ) -> Result<(), StoreError> {
        match (self, fence) {
            (AnyStore::Postgres(s), Some(f)) => s.write_batch_fenced(f, puts, deletes),
            _ => self.write_batch(puts, deletes),
        }
    }
}

/// The key of the token signing key when it lives in the store.
pub fn signing_key_key() -> Result<Key, StoreError> {
    Key::new(["klad-server", "signing-key"])
}

impl KvStore for AnyStore {
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            AnyStore::Sled(s) => s.get(key),
            AnyStore::Postgres(s) => s.get(key),
        }
    }

    fn put(&self, key: &Key, value: &[u8]) -> Result<(), StoreError> {
        match self {
            AnyStore::Sled(s) => s.put(key, value),
            AnyStore::Postgres(s) => s.put(key, value),
        }
    }

    fn delete(&self, key: &Key) -> Result<(), StoreError> {
        match self {
            AnyStore::Sled(s) => s.delete(key),
            AnyStore::Postgres(s) => s.delete(key),
        }
    }

    fn scan_prefix(&self, prefix: &Key) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        match self {
            AnyStore::Sled(s) => s.scan_prefix(prefix),
            AnyStore::Postgres(s) => s.scan_prefix(prefix),
        }
    }

    fn scan_keys(&self, prefix: Option<&Key>) -> Result<Vec<Key>, StoreError> {
        match self {
            AnyStore::Sled(s) => s.scan_keys(prefix),
            AnyStore::Postgres(s) => s.scan_keys(prefix),
        }
    }

    fn write_batch(&self, puts: &[(Key, Vec<u8>)], deletes: &[Key]) -> Result<(), StoreError> {
        match self {
            AnyStore::Sled(s) => s.write_batch(puts, deletes),
            AnyStore::Postgres(s) => s.write_batch(puts, deletes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_locations_parse() {
        assert_eq!(StoreLocation::parse(None).unwrap(), StoreLocation::DataDir);
        assert_eq!(
            StoreLocation::parse(Some("sled")).unwrap(),
            StoreLocation::DataDir
        );
        assert_eq!(
            StoreLocation::parse(Some("postgres://u:p@h/db")).unwrap(),
            StoreLocation::Postgres("postgres://u:p@h/db".into())
        );
        let err = StoreLocation::parse(Some("mysql://u:secret@h/db")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("\"mysql\"") && !msg.contains("secret"),
            "{msg}"
        );
        assert!(msg.ends_with('.'), "{msg}");
    }
}
