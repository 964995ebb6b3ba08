//! An in-memory [`KvStore`] for tests and for tools that do not need persistence.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::kv::{Key, KvStore, StoreError};

/// A [`KvStore`] kept in memory: nothing survives the process.
///
/// "Durable on return" holds in the only sense available (the write is
/// visible to every handle at once). Clones share one map; a `write_batch` is
/// applied under one lock, so scans never see half of it.
#[derive(Clone, Default)]
pub struct MemStore {
    map: Arc<Mutex<BTreeMap<Key, Vec<u8>>>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Key, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every mutation is a single call), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore")
            .field("entries", &self.lock().len())
            .finish()
    }
}

/// The entries of `map` under `prefix`, in key order.
fn range_under<'a>(
    map: &'a BTreeMap<Key, Vec<u8>>,
    prefix: &'a Key,
) -> impl Iterator<Item = (&'a Key, &'a Vec<u8>)> + 'a {
    // Component-wise order puts a key's descendants right after it, so the
    // matches form one contiguous run starting at the prefix itself.
    map.range((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| prefix.is_prefix_of(k))
}

impl KvStore for MemStore {
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().get(key).cloned())
    }

    fn put(&self, key: &Key, value: &[u8]) -> Result<(), StoreError> {
        self.lock().insert(key.clone(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.lock().remove(key);
        Ok(())
    }

    fn scan_prefix(&self, prefix: &Key) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        let map = self.lock();
        Ok(range_under(&map, prefix)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_keys(&self, prefix: Option<&Key>) -> Result<Vec<Key>, StoreError> {
        let map = self.lock();
        Ok(match prefix {
            Some(prefix) => range_under(&map, prefix).map(|(k, _)| k.clone()).collect(),
            None => map.keys().cloned().collect(),
        })
    }

    fn write_batch(&self, puts: &[(Key, Vec<u8>)], deletes: &[Key]) -> Result<(), StoreError> {
        let mut map = self.lock();
        for (k, v) in puts {
            map.insert(k.clone(), v.clone());
        }
        for k in deletes {
            map.remove(k);
        }
        Ok(())
    }
}
