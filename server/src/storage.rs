//! samod's [`Storage`] on klad-core's [`KvStore`] (sled by default).
//!
//! Keys map one to one: samod's `StorageKey` components become the components
//! of a klad-core [`Key`] (both forbid `/` and empty components). The server's
//! own records live under the first component [`SERVER_PREFIX`], which can
//! never be an automerge-repo document id (those are base58, which has no `l`).
//!
//! Every put is flushed before it returns (the [`KvStore`] contract), runs on
//! tokio's blocking pool so the sync loop never waits on the disk, and is
//! reported to the [`Durability`] tracker. samod's `Storage` trait has no
//! error channel: a put that fails is retried a few times, then logged,
//! counted and left out of the tracker, so nothing that depends on it is ever
//! acknowledged to a peer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use klad_core::store::{Key, KvStore, StoreError};
use samod::storage::{Storage, StorageKey};

use crate::durability::{Durability, stored_hashes};
use crate::metrics::Metrics;

/// First key component of everything the server stores besides documents.
pub const SERVER_PREFIX: &str = "klad-server";

/// How often a failing put is retried before it is given up.
const PUT_ATTEMPTS: u32 = 5;

/// samod storage over a [`KvStore`], reporting to a [`Durability`] tracker.
#[derive(Clone)]
pub struct SamodStore<S: KvStore> {
    kv: S,
    durability: Arc<Durability>,
    metrics: Arc<Metrics>,
    /// Fault injection for tests: wait this long before each put is written,
    /// so that acknowledging before the write would be caught.
    put_delay: Option<Duration>,
}

impl<S: KvStore> SamodStore<S> {
    /// Wraps `kv`.
    pub fn new(kv: S, durability: Arc<Durability>, metrics: Arc<Metrics>) -> Self {
        Self {
            kv,
            durability,
            metrics,
            put_delay: None,
        }
    }

    /// Delays every put by `delay` before it is written (fault injection for
    /// the durability tests; never set in production).
    pub fn with_put_delay(mut self, delay: Option<Duration>) -> Self {
        self.put_delay = delay;
        self
    }

    /// The underlying key/value store.
    pub fn kv(&self) -> &S {
        &self.kv
    }
}

fn to_key(key: &StorageKey) -> Result<Key, StoreError> {
    Key::new(key.into_iter().cloned())
}

fn from_key(key: &Key) -> Option<StorageKey> {
    StorageKey::from_parts(key.components()).ok()
}

/// The document a key belongs to (its first component).
fn doc_of(key: &StorageKey) -> String {
    key.into_iter().next().cloned().unwrap_or_default()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "a storage task panicked or was cancelled");
            None
        }
    }
}

impl<S: KvStore> Storage for SamodStore<S> {
    fn load(&self, key: StorageKey) -> impl Future<Output = Option<Vec<u8>>> + Send {
        let kv = self.kv.clone();
        async move {
            let k = match to_key(&key) {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!(%key, error = %e, "samod asked for a key the store cannot hold");
                    return None;
                }
            };
            match blocking(move || kv.get(&k)).await? {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(%key, error = %e, "storage load failed");
                    None
                }
            }
        }
    }

    fn load_range(
        &self,
        prefix: StorageKey,
    ) -> impl Future<Output = HashMap<StorageKey, Vec<u8>>> + Send {
        let kv = self.kv.clone();
        let durability = self.durability.clone();
        async move {
            let p = match to_key(&prefix) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(%prefix, error = %e, "samod asked for a range the store cannot hold");
                    return HashMap::new();
                }
            };
            let entries = match blocking(move || kv.scan_prefix(&p)).await {
                Some(Ok(entries)) => entries,
                Some(Err(e)) => {
                    tracing::error!(%prefix, error = %e, "storage range load failed");
                    return HashMap::new();
                }
                None => return HashMap::new(),
            };
            let doc = doc_of(&prefix);
            let mut out = HashMap::with_capacity(entries.len());
            for (k, v) in entries {
                if let Some(hashes) = stored_hashes(&v) {
                    durability.loaded(&doc, &hashes);
                }
                if let Some(sk) = from_key(&k) {
                    out.insert(sk, v);
                }
            }
            out
        }
    }

    fn put(&self, key: StorageKey, data: Vec<u8>) -> impl Future<Output = ()> + Send {
        // Registered now, when samod starts the put, not when it is first
        // polled: the durability barrier relies on the start order.
        let doc = doc_of(&key);
        let seq = self.durability.begin_put(&doc);
        let kv = self.kv.clone();
        let durability = self.durability.clone();
        let metrics = self.metrics.clone();
        let delay = self.put_delay;
        async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let hashes = stored_hashes(&data).unwrap_or_default();
            let k = match to_key(&key) {
                Ok(k) => k,
                Err(e) => {
                    tracing::error!(%key, error = %e, "samod wrote a key the store cannot hold");
                    metrics.storage_error();
                    durability.end_put(&doc, seq, &[]);
                    return;
                }
            };
            let data = Arc::new(data);
            for attempt in 1..=PUT_ATTEMPTS {
                let (kv, k2, d2) = (kv.clone(), k.clone(), data.clone());
                let started = Instant::now();
                let result = blocking(move || kv.put(&k2, &d2)).await;
                match result {
                    Some(Ok(())) => {
                        metrics.observe_flush(started.elapsed());
                        durability.end_put(&doc, seq, &hashes);
                        return;
                    }
                    Some(Err(e)) => {
                        metrics.storage_error();
                        tracing::error!(%key, attempt, error = %e, "storage put failed");
                    }
                    None => metrics.storage_error(),
                }
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            tracing::error!(%key, "giving up on a storage put; changes in it will not be acknowledged until they are stored again");
            durability.end_put(&doc, seq, &[]);
        }
    }

    fn delete(&self, key: StorageKey) -> impl Future<Output = ()> + Send {
        let kv = self.kv.clone();
        let metrics = self.metrics.clone();
        async move {
            let Ok(k) = to_key(&key) else {
                return;
            };
            match blocking(move || kv.delete(&k)).await {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    metrics.storage_error();
                    tracing::error!(%key, error = %e, "storage delete failed");
                }
                None => metrics.storage_error(),
            }
        }
    }
}
