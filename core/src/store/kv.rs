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
