use std::fmt;

/// A storage key: a non-empty sequence of components, none of which is empty
/// or contains a `/` (so a key can be shown or stored as `a/b/c`) or a NUL
/// character (which backends may use as a component terminator).
///
/// This is the shape of samod's `StorageKey`: documents live under
/// `[doc_id, "snapshot" | "incremental", hash]`.
///
/// Ordering is component-wise (`[a] < [a, b] < [ab]`), which is what prefix
/// scans rely on; every backend returns scans in this order.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Vec<String>);

impl Key {
    /// Builds a key from its components; refuses empty keys, empty components
    /// and components containing `/` or NUL.
    pub fn new<I, S>(components: I) -> Result<Self, StoreError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let parts: Vec<String> = components.into_iter().map(Into::into).collect();
        if parts.is_empty() {
            return Err(StoreError::InvalidKey(
                "a storage key needs at least one component".into(),
            ));
        }
        if let Some(bad) = parts
            .iter()
            .find(|p| p.is_empty() || p.contains('/') || p.contains('\0'))
        {
            return Err(StoreError::InvalidKey(format!(
                "the key component {bad:?} is empty or contains '/' or a NUL character; use non-empty components without those"
            )));
        }
        Ok(Key(parts))
    }

    /// The components of this key.
    pub fn components(&self) -> &[String] {
        &self.0
    }

    /// True when `self` is a (not necessarily strict) component-wise prefix of `other`.
    pub fn is_prefix_of(&self, other: &Key) -> bool {
        other.0.len() >= self.0.len() && other.0[..self.0.len()] == self.0[..]
    }

    /// A new key with one more component at the end.
    pub fn child(&self, component: impl Into<String>) -> Result<Key, StoreError> {
        let mut parts = self.0.clone();
        parts.push(component.into());
        Key::new(parts)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.0.join("/"))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// Why a storage call failed. Every message is a sentence a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key itself is not valid.
    #[error("Invalid storage key: {0}.")]
    InvalidKey(String),
    /// The underlying database reported an error (disk full, permissions, I/O).
    #[error(
        "The local store could not be read or written ({0}). Check that the data directory exists, is writable and the disk is not full, then try again."
    )]
    Backend(String),
    /// An earlier write failed at the disk (full, or an I/O error), and the
    /// store refuses writes until it is opened again: after a failed sync
    /// the operating system may have dropped data it had accepted, so a
    /// later sync that succeeds proves nothing about it.
    #[error(
        "The local store refuses writes since an earlier write failed at the disk ({0}); nothing unsaved was confirmed. Free disk space or fix the disk, then open the store again (restart the program)."
    )]
    NeedsReopen(String),
    /// The data directory is locked because another process has it open.
    #[error(
        "The data directory {path} is already in use by another program (probably another Klad process or server using the same directory). Close that program or choose a different data directory, then try again."
    )]
    Locked {
        /// The data directory that could not be locked.
        path: String,
    },
    /// The data directory could not be opened at all (missing permissions,
    /// not a directory, damaged database files).
    #[error(
        "The data directory {path} could not be opened ({detail}). Check that it is a directory this program may read and write, and that the disk is not full; if the database files are damaged, restore them from a backup."
    )]
    Open {
        /// The data directory that could not be opened.
        path: String,
        /// What the database reported.
        detail: String,
    },
    /// The address of a PostgreSQL database does not parse.
    #[error(
        "The PostgreSQL address is not valid ({detail}). Write it as postgres://user:password@host:port/database and try again."
    )]
    Address {
        /// What is wrong with it (never the password).
        detail: String,
    },
    /// A PostgreSQL database could not be reached, or refused the login.
    #[error(
        "Could not connect to the PostgreSQL database {address} ({detail}). Check that the database server runs and accepts connections at that address, that the database exists, and that the user name and password are right, then try again."
    )]
    Unreachable {
        /// The address, without its password.
        address: String,
        /// What the driver or the database reported.
        detail: String,
    },
    /// TLS to a PostgreSQL database could not be set up: the address asks
    /// for a mode that is not supported, the CA file named by `sslrootcert`
    /// is unusable, the server offers no TLS where the address requires it,
    /// or its certificate did not verify.
    #[error("Could not set up TLS with the PostgreSQL database {address}: {detail}")]
    Tls {
        /// The address, without its password.
        address: String,
        /// What went wrong and what to do, as a sentence ending in a full
        /// stop.
        detail: String,
    },
    /// A PostgreSQL database refused or failed a read or write.
    #[error(
        "The PostgreSQL database {address} could not be read or written ({detail}). Check that the database server runs, that the user may read and write the store's tables and that its disk is not full, then try again."
    )]
    Database {
        /// The address, without its password.
        address: String,
        /// What the driver or the database reported.
        detail: String,
    },
    /// The store's tables were written by a Klad with another schema.
    #[error(
        "The PostgreSQL database {address} holds a Klad store in table {table} of schema version {found}, which this program does not know (it writes version 1). Run the klad-server version that wrote it, or use another database or table."
    )]
    Schema {
        /// The address, without its password.
        address: String,
        /// The store's table.
        table: String,
        /// The version found (`none` when the version row is missing).
        found: String,
    },
    /// A fenced write was refused: this node no longer holds the lease of
    /// the process it wrote for (another node took it over, or it expired).
    /// Nothing of the write was stored.
    #[error(
        "This server node no longer serves process {process} (its lease passed to another node or ran out), so the write was refused and nothing of it was stored. Reconnect: the process's current node takes it."
    )]
    Fenced {
        /// The process whose lease moved.
        process: String,
    },
    /// Stored bytes could not be decoded.
    #[error(
        "The stored copy of document {doc} is damaged ({detail}). Restore the data directory from a backup or sync the document again from the server."
    )]
    Corrupt {
        /// The document whose stored data is damaged.
        doc: String,
        /// What was wrong with it.
        detail: String,
    },
}

/// Encodes a key as its components, each followed by a NUL byte: the
/// byte order of encoded keys is [`Key`]'s component-wise order, because the
/// terminator sorts below every other byte (`[a] < [a, b] < [ab]`), and the
/// keys under a prefix are exactly those whose bytes start with the
/// prefix's bytes. sled and PostgreSQL (`bytea`) store keys this way.
#[cfg_attr(not(any(feature = "sled", feature = "postgres")), allow(dead_code))]
pub(crate) fn encode_key(key: &Key) -> Vec<u8> {
    let parts = key.components();
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for part in parts {
        out.extend_from_slice(part.as_bytes());
        out.push(0);
    }
    out
}

/// Decodes bytes written by [`encode_key`].
#[cfg_attr(not(any(feature = "sled", feature = "postgres")), allow(dead_code))]
pub(crate) fn decode_key(bytes: &[u8]) -> Result<Key, StoreError> {
    let bad = || {
        StoreError::Backend(format!(
            "the database holds a key that Klad did not write ({:?})",
            String::from_utf8_lossy(bytes)
        ))
    };
    let body = bytes.strip_suffix(&[0]).ok_or_else(bad)?;
    let parts = body
        .split(|b| *b == 0)
        .map(|p| std::str::from_utf8(p).map(str::to_owned))
        .collect::<Result<Vec<String>, _>>()
        .map_err(|_| bad())?;
    Key::new(parts).map_err(|_| bad())
}

/// A durable key/value store with prefix scans.
///
/// Contract every implementation keeps:
/// - when `put`, `delete` or `write_batch` returns `Ok`, the write is durable
///   (flushed to disk): a process killed right after still finds it on reopen;
/// - `write_batch` is atomic: after a crash either all of it or none of it is there;
/// - `scan_prefix` and `scan_keys` return entries in key order (see [`Key`]),
///   and a scan never observes half of a `write_batch`.
///
/// Implementations are cheap to clone handles onto one shared store and are
/// safe to use from several threads.
///
/// Backends: `SledStore` (embedded), `PgStore` (PostgreSQL, several server
/// nodes), `MemStore` (tests). The same test suite runs on each
/// (`store/tests/contract.rs`). Fenced batches (a batch that also checks a
/// process lease's fencing number in the same transaction, for several
/// nodes) exist only where leases do: `PgStore::write_batch_fenced`.
pub trait KvStore: Clone + Send + Sync + 'static {
    /// The value stored under `key`, if any.
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` under `key`, replacing any previous value; durable on return.
    fn put(&self, key: &Key, value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key` (no error if absent); durable on return.
    fn delete(&self, key: &Key) -> Result<(), StoreError>;
    /// All entries whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &Key) -> Result<Vec<(Key, Vec<u8>)>, StoreError>;
    /// The keys under `prefix` (all keys when `None`), in key order, without
    /// reading their values.
    fn scan_keys(&self, prefix: Option<&Key>) -> Result<Vec<Key>, StoreError>;
    /// Applies all puts and deletes atomically; durable on return.
    ///
    /// A key that is both put and deleted ends up deleted.
    fn write_batch(&self, puts: &[(Key, Vec<u8>)], deletes: &[Key]) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> Key {
        Key::new(parts.iter().copied()).unwrap()
    }

    #[test]
    fn encoding_round_trips() {
        for parts in [
            &["a"][..],
            &["doc", "incremental", "00ff"],
            &["ä", "ß", "x y"],
        ] {
            let k = key(parts);
            assert_eq!(decode_key(&encode_key(&k)).unwrap(), k);
        }
        assert_eq!(encode_key(&key(&["a", "b"])), b"a\0b\0");
    }

    #[test]
    fn foreign_keys_are_reported_not_panicked_on() {
        for bytes in [&b""[..], b"abc", b"a\0\0", b"\xff\0"] {
            let err = decode_key(bytes).unwrap_err();
            assert!(matches!(err, StoreError::Backend(_)), "{bytes:?}: {err}");
        }
    }

    #[test]
    fn byte_order_equals_component_order() {
        let mut keys = vec![
            key(&["ab"]),
            key(&["a", "b"]),
            key(&["a"]),
            key(&["a", "b", "c"]),
            key(&["a", "bc"]),
            key(&["a!"]),
            key(&["b"]),
            key(&["a", "a"]),
            key(&["A"]),
            key(&["é"]),
        ];
        keys.sort();
        let mut by_bytes = keys.clone();
        by_bytes.sort_by_key(encode_key);
        assert_eq!(keys, by_bytes);
        assert_eq!(keys[1], key(&["a"]));
        assert_eq!(keys[2], key(&["a", "a"]));
    }
}
