//! samod's `Storage` on the phone's sled store, and the phone's own records.
//!
//! samod and klad-core's `DocStore` use the same key layout
//! (`[doc_id, "incremental" | "snapshot", name]`), so both read what the other
//! wrote. Local changes are written by `DocStore` synchronously (on disk before
//! the call returns); samod writes the same changes again (same key, same
//! bytes) and the changes it receives from the server. Unlike the server's
//! adapter there is no durability barrier: a phone acknowledges nothing to anyone.
//!
//! The phone's own records live under the first component [`PREFIX`], which
//! is never an automerge-repo document id (those are base58, which has no `l`).

use std::collections::HashMap;

use klad_store::{Key, KvStore, SledStore};
use samod::storage::{Storage, StorageKey};

/// First key component of everything klad-ffi stores besides documents.
pub const PREFIX: &str = "klad-ffi";

/// samod storage over the phone's sled store.
#[derive(Clone)]
pub struct PhoneStorage {
    kv: SledStore,
}

impl PhoneStorage {
    /// Wraps `kv`.
    pub fn new(kv: SledStore) -> Self {
        Self { kv }
    }
}

fn to_key(key: &StorageKey) -> Option<Key> {
    Key::new(key.into_iter().cloned()).ok()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Option<T> + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok().flatten()
}

impl Storage for PhoneStorage {
    fn load(&self, key: StorageKey) -> impl Future<Output = Option<Vec<u8>>> + Send {
        let kv = self.kv.clone();
        async move {
            let k = to_key(&key)?;
            blocking(move || kv.get(&k).ok().flatten()).await
        }
    }

    fn load_range(
        &self,
        prefix: StorageKey,
    ) -> impl Future<Output = HashMap<StorageKey, Vec<u8>>> + Send {
        let kv = self.kv.clone();
        async move {
            let Some(p) = to_key(&prefix) else {
                return HashMap::new();
            };
            blocking(move || kv.scan_prefix(&p).ok())
                .await
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| Some((StorageKey::from_parts(k.components()).ok()?, v)))
                .collect()
        }
    }

    fn put(&self, key: StorageKey, data: Vec<u8>) -> impl Future<Output = ()> + Send {
        let kv = self.kv.clone();
        async move {
            if let Some(k) = to_key(&key) {
                // A failed put loses nothing: local changes are already stored
                // by the client, remote ones are synced again.
                let _ = blocking(move || kv.put(&k, &data).ok()).await;
            }
        }
    }

    fn delete(&self, key: StorageKey) -> impl Future<Output = ()> + Send {
        let kv = self.kv.clone();
        async move {
            if let Some(k) = to_key(&key) {
                let _ = blocking(move || kv.delete(&k).ok()).await;
            }
        }
    }
}
