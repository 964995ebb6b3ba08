//! The document layer: each Automerge document kept as snapshots plus
//! incremental chunks, in the key layout of samod / automerge-repo.
//!
//! # Key layout
//!
//! Mirrors `samod-core` 0.16 (`StorageKey::incremental_path`,
//! `StorageKey::snapshot_path` in `samod-core/src/storage_key.rs`, and
//! `CompactionHash` in `src/actors/document/on_disk_state/compaction_hash.rs`):
//!
//! - `[doc_id, "incremental", name]`: one chunk of changes, the concatenated
//!   raw change chunks (`Automerge::save_after`). `name` is the change hash
//!   (hex) when the chunk holds a single change, exactly as samod names its
//!   chunks; for several changes it is the SHA-256 (hex) of the chunk's bytes,
//!   as the JavaScript automerge-repo names its incremental chunks.
//! - `[doc_id, "snapshot", name]`: a whole document (`Automerge::save`).
//!   `name` is the SHA-256 (hex) of the concatenated bytes of the document's
//!   sorted heads, samod's `CompactionHash`.
//!
//! Loading reads every value under both prefixes and feeds it to Automerge,
//! as samod does, so samod can read what this module writes and vice versa.
//! Names are content hashes: a key never changes meaning, so writing a key
//! twice is harmless and deleting a key that was read deletes exactly what
//! was read.
//!
//! # Crash safety
//!
//! Compaction writes the new snapshot and deletes the chunks it replaces in
//! one atomic [`KvStore::write_batch`], and deletes only keys whose contents
//! it loaded into that snapshot. So at every moment every change that was ever
//! acknowledged is in some stored value.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;

use automerge::{Automerge, Change, ChangeHash, ReadDoc};
use sha2::{Digest, Sha256};

use crate::kv::{Key, KvStore, StoreError};
#[cfg(test)]
use klad_core::chunks::COMPRESSED_CHANGE;
use klad_core::chunks::check_chunks;

/// The second key component of incremental chunks (samod's name).
pub const INCREMENTAL: &str = "incremental";
/// The second key component of snapshots (samod's name).
pub const SNAPSHOT: &str = "snapshot";

/// Stores Automerge documents in a [`KvStore`], incrementally.
///
/// Invariants:
/// - a successful `save_*` call is durable: the changes are in the store;
/// - no call ever removes a change from the store without writing it, in the
///   same atomic batch, into a snapshot (except [`DocStore::delete_document`]);
/// - damaged stored data is reported as [`StoreError::Corrupt`], never a panic.
///
/// `DocStore` is `Send + Sync`; share it behind an `Arc`. Several `DocStore`s
/// on clones of one store are safe too (compaction never deletes what it did
/// not read), they only do redundant work.
pub struct DocStore<S: KvStore> {
    kv: S,
    shared: Arc<Shared>,
    auto: Option<AutoCompaction>,
}

/// State shared with the background compaction thread.
#[derive(Default)]
struct Shared {
    /// Held while compacting, so that this store runs one compaction at a time.
    compaction: Mutex<()>,
    /// Approximate number of stored values per document (auto compaction).
    counts: Mutex<HashMap<String, usize>>,
    /// Documents handed to the worker and not yet compacted.
    queued: Mutex<HashSet<String>>,
    /// The latest error of a background compaction, until taken.
    background_error: Mutex<Option<StoreError>>,
    /// Set on drop: the worker finishes its current document and stops.
    stopping: AtomicBool,
}

struct AutoCompaction {
    threshold: usize,
    sender: Option<mpsc::Sender<String>>,
    worker: Option<JoinHandle<()>>,
}

/// Locks a mutex, ignoring poisoning: every guarded value here stays valid
/// when a holder panics (plain maps, sets and options).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: KvStore> DocStore<S> {
    /// A document store on `kv`, without automatic compaction (call
    /// [`DocStore::compact`] yourself).
    pub fn new(kv: S) -> Self {
        Self {
            kv,
            shared: Arc::new(Shared::default()),
            auto: None,
        }
    }

    /// A document store on `kv` that compacts a document in a background
    /// thread once it has more than `threshold_chunks` stored values
    /// (snapshots plus incremental chunks; at least 1).
    ///
    /// Dropping the store stops the thread: a compaction in progress finishes,
    /// queued ones are skipped. Errors of background compactions are kept for
    /// [`DocStore::take_background_error`].
    pub fn with_auto_compaction(kv: S, threshold_chunks: usize) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared::default());
        let (sender, receiver) = mpsc::channel::<String>();
        let worker = {
            let kv = kv.clone();
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("klad-compaction".into())
                .spawn(move || compaction_worker(kv, shared, receiver))
                .map_err(|e| {
                    StoreError::Backend(format!(
                        "the background compaction thread could not be started: {e}"
                    ))
                })?
        };
        Ok(Self {
            kv,
            shared,
            auto: Some(AutoCompaction {
                threshold: threshold_chunks.max(1),
                sender: Some(sender),
                worker: Some(worker),
            }),
        })
    }

    /// The underlying key/value store.
    pub fn kv(&self) -> &S {
        &self.kv
    }

    /// Persists the changes of `doc` that are not covered by `since_heads`
    /// as one incremental chunk, durably, and returns the heads to pass as
    /// `since_heads` next time.
    ///
    /// `since_heads` are heads of an earlier state of this same document that
    /// is already stored (as returned by the previous call, or the heads of
    /// the document returned by [`DocStore::load`]); pass `&[]` to store all
    /// changes. Writes nothing when there is nothing new. Saving changes that
    /// are already stored is harmless.
    pub fn save_incremental(
        &self,
        doc_id: &str,
        doc: &Automerge,
        since_heads: &[ChangeHash],
    ) -> Result<Vec<ChangeHash>, StoreError> {
        if let Some((key, bytes)) = incremental_value(doc_id, &doc.get_changes(since_heads))? {
            self.kv.put(&key, &bytes)?;
            self.note_new_value(doc_id);
        }
        Ok(doc.get_heads())
    }

    /// Writes `puts` and removes `deletes` in one atomic batch, like
    /// [`KvStore::write_batch`], counting the document values among the puts
    /// (from [`incremental_value`]) for compaction as a save would.
    pub fn write_batch(&self, puts: &[(Key, Vec<u8>)], deletes: &[Key]) -> Result<(), StoreError> {
        self.write_batch_with(puts, |kv| kv.write_batch(puts, deletes))
    }

    /// [`Self::write_batch`] through `write`, a call that writes `puts`
    /// (and perhaps more) to the store in its own way, such as a fenced
    /// batch of a backend with leases. The document values among `puts`
    /// count for compaction once `write` succeeded.
    pub fn write_batch_with(
        &self,
        puts: &[(Key, Vec<u8>)],
        write: impl FnOnce(&S) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        write(&self.kv)?;
        for (key, _) in puts {
            if let [doc, kind, ..] = key.components()
                && is_value_kind(kind)
            {
                self.note_new_value(doc);
            }
        }
        Ok(())
    }

    /// Persists the whole of `doc` as one snapshot, durably, and returns its
    /// heads. Removes nothing; older values are removed by compaction.
    pub fn save_full(&self, doc_id: &str, doc: &Automerge) -> Result<Vec<ChangeHash>, StoreError> {
        let heads = doc.get_heads();
        self.kv.put(&snapshot_key(doc_id, &heads)?, &doc.save())?;
        self.note_new_value(doc_id);
        Ok(heads)
    }

    /// Loads a document from all its snapshots and incremental chunks.
    ///
    /// `Ok(None)` when nothing is stored for `doc_id`. A damaged value (not
    /// Automerge data, truncated, failing its checksum) gives
    /// [`StoreError::Corrupt`] naming the document and the key. Changes whose
    /// dependencies are not stored stay pending inside the returned document
    /// (see `ReadDoc::get_missing_deps`), as they would after a partial sync.
    pub fn load(&self, doc_id: &str) -> Result<Option<Automerge>, StoreError> {
        let values = read_values(&self.kv, doc_id)?;
        if values.is_empty() {
            return Ok(None);
        }
        load_values(doc_id, &values).map(Some)
    }

    /// Replaces all stored values of a document by one snapshot.
    ///
    /// Loads everything, then in one atomic batch writes the snapshot and
    /// deletes exactly the values it loaded. A crash at any point leaves
    /// either the old values or the snapshot (or both); a chunk saved while
    /// compaction runs is not deleted. Does nothing when the document is
    /// absent or already one snapshot. Refuses (with [`StoreError::Corrupt`],
    /// deleting nothing) when a value is damaged or changes are missing.
    pub fn compact(&self, doc_id: &str) -> Result<(), StoreError> {
        compact_doc(&self.kv, &self.shared, doc_id)
    }

    /// The number of values (snapshots plus incremental chunks) stored for
    /// `doc_id`, read from the store.
    pub fn chunk_count(&self, doc_id: &str) -> Result<usize, StoreError> {
        count_values(&self.kv, doc_id)
    }

    /// The ids of all documents that have at least one stored value, sorted.
    pub fn list_documents(&self) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = Vec::new();
        for key in self.kv.scan_keys(None)? {
            if let [doc, kind, ..] = key.components()
                && is_value_kind(kind)
                && ids.last() != Some(doc)
            {
                ids.push(doc.clone());
            }
        }
        Ok(ids)
    }

    /// Deletes everything stored under `doc_id`, atomically. A chunk saved
    /// concurrently with this call may survive it.
    pub fn delete_document(&self, doc_id: &str) -> Result<(), StoreError> {
        let keys = self.kv.scan_keys(Some(&Key::new([doc_id])?))?;
        self.kv.write_batch(&[], &keys)?;
        lock(&self.shared.counts).remove(doc_id);
        Ok(())
    }

    /// The latest error of a background compaction since the last call, if
    /// any. Background compaction only ever skips work on error; stored data
    /// stays as it was.
    pub fn take_background_error(&self) -> Option<StoreError> {
        lock(&self.shared.background_error).take()
    }

    /// Counts a newly written value and hands the document to the worker when
    /// it has too many. Best effort: it never fails a save that succeeded.
    fn note_new_value(&self, doc_id: &str) {
        let Some(auto) = &self.auto else { return };
        let count = {
            let mut counts = lock(&self.shared.counts);
            match counts.get_mut(doc_id) {
                Some(n) => {
                    *n += 1;
                    *n
                }
                None => {
                    // First write in this process: learn what is already stored.
                    let n = count_values(&self.kv, doc_id).unwrap_or(1);
                    counts.insert(doc_id.to_string(), n);
                    n
                }
            }
        };
        if count > auto.threshold
            && lock(&self.shared.queued).insert(doc_id.to_string())
            && let Some(sender) = &auto.sender
            && sender.send(doc_id.to_string()).is_err()
        {
            lock(&self.shared.queued).remove(doc_id);
        }
    }
}

impl<S: KvStore> Drop for DocStore<S> {
    fn drop(&mut self) {
        if let Some(auto) = &mut self.auto {
            self.shared.stopping.store(true, Ordering::SeqCst);
            drop(auto.sender.take());
            if let Some(worker) = auto.worker.take() {
                // A panic in the worker was already reported by its thread.
                let _ = worker.join();
            }
        }
    }
}

impl<S: KvStore + std::fmt::Debug> std::fmt::Debug for DocStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocStore")
            .field("kv", &self.kv)
            .field(
                "auto_compaction_threshold",
                &self.auto.as_ref().map(|a| a.threshold),
            )
            .finish()
    }
}

/// The background thread: compacts the documents it is sent until the
/// channel closes or the store is dropped.
fn compaction_worker<S: KvStore>(kv: S, shared: Arc<Shared>, receiver: mpsc::Receiver<String>) {
    while let Ok(doc_id) = receiver.recv() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        // Unqueue first: a save during this compaction may queue it again,
        // so that chunks written meanwhile are compacted too.
        lock(&shared.queued).remove(&doc_id);
        if let Err(e) = compact_doc(&kv, &shared, &doc_id) {
            *lock(&shared.background_error) = Some(e);
        }
    }
}

/// The store entry (key and value) that holds `changes` of document
/// `doc_id`, as [`DocStore::save_incremental`] writes it: a single change
/// under its hash, several as one chunk under the SHA-256 of their bytes (the
/// names samod and automerge-repo use). `None` for no changes. For callers
/// that store it in a batch with other entries ([`DocStore::write_batch`]).
pub fn incremental_value(
    doc_id: &str,
    changes: &[Change],
) -> Result<Option<(Key, Vec<u8>)>, StoreError> {
    let (name, bytes) = match changes {
        [] => return Ok(None),
        [single] => (single.hash().to_string(), single.raw_bytes().to_vec()),
        many => {
            let bytes: Vec<u8> = many.iter().flat_map(Change::raw_bytes).copied().collect();
            (hex(&Sha256::digest(&bytes)), bytes)
        }
    };
    Ok(Some((Key::new([doc_id, INCREMENTAL, &name])?, bytes)))
}

fn is_value_kind(kind: &str) -> bool {
    kind == SNAPSHOT || kind == INCREMENTAL
}

/// `[doc_id, "snapshot", sha256(heads)]`, samod's `snapshot_path`.
fn snapshot_key(doc_id: &str, heads: &[ChangeHash]) -> Result<Key, StoreError> {
    let mut hasher = Sha256::new();
    for head in heads {
        hasher.update(head.as_ref());
    }
    Key::new([doc_id, SNAPSHOT, &hex(&hasher.finalize())])
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// One stored value of a document.
struct Value {
    key: Key,
    bytes: Vec<u8>,
}

/// All snapshots, then all incremental chunks, of `doc_id`, from one scan
/// (so a concurrent compaction batch is seen entirely or not at all).
fn read_values<S: KvStore>(kv: &S, doc_id: &str) -> Result<Vec<Value>, StoreError> {
    let mut values: Vec<(bool, Value)> = kv
        .scan_prefix(&Key::new([doc_id])?)?
        .into_iter()
        .filter_map(|(key, bytes)| match key.components() {
            [_, kind, _] if is_value_kind(kind) => {
                Some((kind == INCREMENTAL, Value { key, bytes }))
            }
            _ => None,
        })
        .collect();
    // Snapshots first, as samod does: later chunks mostly apply on top.
    values.sort_by_key(|(incremental, _)| *incremental);
    Ok(values.into_iter().map(|(_, v)| v).collect())
}

fn count_values<S: KvStore>(kv: &S, doc_id: &str) -> Result<usize, StoreError> {
    Ok(kv
        .scan_keys(Some(&Key::new([doc_id])?))?
        .iter()
        .filter(|k| matches!(k.components(), [_, kind, _] if is_value_kind(kind)))
        .count())
}

fn corrupt(doc_id: &str, detail: String) -> StoreError {
    StoreError::Corrupt {
        doc: doc_id.to_string(),
        detail,
    }
}

/// Builds the document from its stored values, checking each value first.
fn load_values(doc_id: &str, values: &[Value]) -> Result<Automerge, StoreError> {
    let mut doc = Automerge::new();
    for value in values {
        check_chunks(&value.bytes)
            .map_err(|why| corrupt(doc_id, format!("the entry {} {why}", value.key)))?;
        // The bytes passed their checksums, so Automerge should accept them;
        // guard against its panics all the same: a bad file must not crash us.
        match catch_unwind(AssertUnwindSafe(|| doc.load_incremental(&value.bytes))) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(corrupt(
                    doc_id,
                    format!("the entry {} could not be applied: {e}", value.key),
                ));
            }
            Err(_) => {
                return Err(corrupt(
                    doc_id,
                    format!("the entry {} made the Automerge library fail", value.key),
                ));
            }
        }
    }
    Ok(doc)
}

/// Checks that `snapshot` (`doc` saved) loads again as `doc`, before
/// compaction deletes the values it replaces. Automerge 0.12 can save a
/// document it cannot load again (found by fuzzing: a loaded document whose
/// save failed to load with "mismatching heads"); written, such a snapshot
/// would lose the document.
fn check_snapshot(doc_id: &str, doc: &Automerge, snapshot: &[u8]) -> Result<(), StoreError> {
    let reloaded = catch_unwind(AssertUnwindSafe(|| Automerge::load(snapshot)));
    let why = match reloaded {
        Ok(Ok(again)) if again.get_heads() == doc.get_heads() => return Ok(()),
        Ok(Ok(_)) => "it would have other heads".to_owned(),
        Ok(Err(e)) => format!("it would not load ({e})"),
        Err(_) => "loading it made the Automerge library fail".to_owned(),
    };
    Err(corrupt(
        doc_id,
        format!(
            "compacting it would write a snapshot that does not load again ({why}), so it was not compacted and every stored value was kept"
        ),
    ))
}

fn compact_doc<S: KvStore>(kv: &S, shared: &Shared, doc_id: &str) -> Result<(), StoreError> {
    let _one_at_a_time = lock(&shared.compaction);
    let values = read_values(kv, doc_id)?;
    let already_compact = match values.as_slice() {
        [] => true,
        [only] => only.key.components()[1] == SNAPSHOT,
        _ => false,
    };
    if !already_compact {
        let doc = load_values(doc_id, &values)?;
        let missing = doc.get_missing_deps(&[]);
        if let Some(first) = missing.first() {
            return Err(corrupt(
                doc_id,
                format!(
                    "some stored changes depend on {} changes that are not stored (such as {first}), so it was not compacted",
                    missing.len()
                ),
            ));
        }
        let key = snapshot_key(doc_id, &doc.get_heads())?;
        // If a snapshot with these heads exists it is overwritten with the
        // same content, never deleted (samod guards against the same case).
        let deletes: Vec<Key> = values
            .into_iter()
            .map(|v| v.key)
            .filter(|k| *k != key)
            .collect();
        let snapshot = doc.save();
        check_snapshot(doc_id, &doc, &snapshot)?;
        kv.write_batch(&[(key, snapshot)], &deletes)?;
    }
    // Recount under the lock that saves increment under: a concurrent save is
    // then counted at least once (over-counting only compacts sooner).
    let mut counts = lock(&shared.counts);
    if let Ok(n) = count_values(kv, doc_id) {
        counts.insert(doc_id.to_string(), n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ROOT, ScalarValue, Value as AmValue};

    const DOC: &str = "4NMNnkMhL8jXrdJ9jamS58PAVdXu";

    /// Appends `n` to the list `items` in one change.
    fn append(doc: &mut Automerge, n: i64) {
        let mut tx = doc.transaction();
        let list = match tx.get(ROOT, "items").unwrap() {
            Some((AmValue::Object(ObjType::List), id)) => id,
            _ => tx.put_object(ROOT, "items", ObjType::List).unwrap(),
        };
        let len = tx.length(&list);
        tx.insert(&list, len, n).unwrap();
        tx.commit();
    }

    fn items(doc: &Automerge) -> Vec<i64> {
        let Some((_, list)) = doc.get(ROOT, "items").unwrap() else {
            return vec![];
        };
        (0..doc.length(&list))
            .map(|i| match doc.get(&list, i).unwrap() {
                Some((AmValue::Scalar(s), _)) => match s.as_ref() {
                    ScalarValue::Int(n) => *n,
                    other => panic!("not an int: {other:?}"),
                },
                other => panic!("not a scalar: {other:?}"),
            })
            .collect()
    }

    fn incremental_keys(store: &DocStore<MemStore>) -> Vec<Key> {
        store
            .kv()
            .scan_keys(Some(&Key::new([DOC, INCREMENTAL]).unwrap()))
            .unwrap()
    }

    #[test]
    fn store_load_of_unknown_document_is_none() {
        let store = DocStore::new(MemStore::new());
        assert!(store.load(DOC).unwrap().is_none());
        assert_eq!(store.chunk_count(DOC).unwrap(), 0);
    }

    #[test]
    fn store_incremental_saves_load_back() {
        let store = DocStore::new(MemStore::new());
        let mut doc = Automerge::new();
        let mut heads = vec![];
        for n in 0..10 {
            append(&mut doc, n);
            heads = store.save_incremental(DOC, &doc, &heads).unwrap();
            assert_eq!(heads, doc.get_heads());
        }
        assert_eq!(store.chunk_count(DOC).unwrap(), 10);
        let loaded = store.load(DOC).unwrap().unwrap();
        assert_eq!(loaded.get_heads(), doc.get_heads());
        assert_eq!(items(&loaded), (0..10).collect::<Vec<_>>());
        assert!(loaded.get_missing_deps(&[]).is_empty());
    }

    #[test]
    fn store_save_without_new_changes_writes_nothing() {
        let store = DocStore::new(MemStore::new());
        let mut doc = Automerge::new();
        assert_eq!(store.save_incremental(DOC, &doc, &[]).unwrap(), vec![]);
        assert_eq!(store.chunk_count(DOC).unwrap(), 0);
        append(&mut doc, 1);
        let heads = store.save_incremental(DOC, &doc, &[]).unwrap();
        let again = store.save_incremental(DOC, &doc, &heads).unwrap();
        assert_eq!(again, heads);
        assert_eq!(store.chunk_count(DOC).unwrap(), 1);
    }

    #[test]
    fn store_chunk_names_follow_samod_and_automerge_repo() {
        let store = DocStore::new(MemStore::new());
        let mut doc = Automerge::new();
        append(&mut doc, 1);
        let heads = store.save_incremental(DOC, &doc, &[]).unwrap();
        // One change: named by its change hash, like samod's incremental_path.
        let single = incremental_keys(&store);
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].components()[2], heads[0].to_string());

        append(&mut doc, 2);
        append(&mut doc, 3);
        let bytes = doc.save_after(&heads);
        store.save_incremental(DOC, &doc, &heads).unwrap();
        // Several changes: one chunk named by the SHA-256 of its bytes.
        let name = hex(&Sha256::digest(&bytes));
        let key = Key::new([DOC, INCREMENTAL, &name]).unwrap();
        assert_eq!(store.kv().get(&key).unwrap(), Some(bytes));
        assert_eq!(incremental_keys(&store).len(), 2);
    }

    #[test]
    fn store_snapshot_name_is_samods_compaction_hash() {
        let store = DocStore::new(MemStore::new());
        let mut a = Automerge::new();
        append(&mut a, 1);
        let mut b = a.fork();
        append(&mut a, 2);
        append(&mut b, 3);
        a.merge(&mut b).unwrap();
        let heads = store.save_full(DOC, &a).unwrap();
        assert_eq!(heads.len(), 2);
        let mut concatenated = Vec::new();
        for h in &a.get_heads() {
            concatenated.extend_from_slice(h.as_ref());
        }
        let expected = hex(&Sha256::digest(&concatenated));
        let keys = store
            .kv()
            .scan_keys(Some(&Key::new([DOC]).unwrap()))
            .unwrap();
        assert_eq!(keys, vec![Key::new([DOC, SNAPSHOT, &expected]).unwrap()]);
    }

    #[test]
    fn store_values_load_the_way_samod_loads_them() {
        // samod feeds every value under both prefixes to load_incremental.
        let store = DocStore::new(MemStore::new());
        let mut doc = Automerge::new();
        append(&mut doc, 1);
        store.save_full(DOC, &doc).unwrap();
        let mut heads = doc.get_heads();
        for n in 2..6 {
            append(&mut doc, n);
            append(&mut doc, n * 10);
            heads = store.save_incremental(DOC, &doc, &heads).unwrap();
        }
        let mut samod_view = Automerge::new();
        for (_, bytes) in store.kv().scan_prefix(&Key::new([DOC]).unwrap()).unwrap() {
            samod_view.load_incremental(&bytes).unwrap();
        }
        assert_eq!(samod_view.get_heads(), doc.get_heads());
        assert_eq!(items(&samod_view), items(&doc));
    }

    #[test]
    fn store_reads_samod_style_single_change_chunks() {
        let kv = MemStore::new();
        let mut doc = Automerge::new();
        for n in 0..5 {
            append(&mut doc, n);
        }
        for change in doc.get_changes(&[]) {
            let key = Key::new([DOC, INCREMENTAL, &change.hash().to_string()]).unwrap();
            kv.put(&key, change.raw_bytes()).unwrap();
        }
        let store = DocStore::new(kv);
        let loaded = store.load(DOC).unwrap().unwrap();
        assert_eq!(items(&loaded), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn store_compaction_preserves_content_and_heads() {
        let store = DocStore::new(MemStore::new());
        let mut doc = Automerge::new();
        let mut heads = vec![];
        for n in 0..20 {
            append(&mut doc, n);
            heads = store.save_incremental(DOC, &doc, &heads).unwrap();
            if n == 7 {
                store.compact(DOC).unwrap();
                assert_eq!(store.chunk_count(DOC).unwrap(), 1);
            }
        }
        // A concurrent branch, as after a sync.
        let mut other = store.load(DOC).unwrap().unwrap();
        append(&mut other, 100);
        store.save_incremental(DOC, &other, &heads).unwrap();
        doc.merge(&mut other).unwrap();

        assert!(store.chunk_count(DOC).unwrap() > 1);
        store.compact(DOC).unwrap();
        assert_eq!(store.chunk_count(DOC).unwrap(), 1);
        let loaded = store.load(DOC).unwrap().unwrap();
        assert_eq!(loaded.get_heads(), doc.get_heads());
        assert_eq!(items(&loaded), items(&doc));
        // Compacting a compact document changes nothing.
        let before = store.kv().scan_prefix(&Key::new([DOC]).unwrap()).unwrap();
        store.compact(DOC).unwrap();
        let after = store.kv().scan_prefix(&Key::new([DOC]).unwrap()).unwrap();
        assert_eq!(before, after);
        // Saving on after compaction with the old heads still works.
        append(&mut doc, 200);
        store
            .save_incremental(DOC, &doc, &loaded.get_heads())
            .unwrap();
        assert_eq!(items(&store.load(DOC).unwrap().unwrap()), items(&doc));
    }

    #[test]
    fn store_compaction_on_sled_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut doc = Automerge::new();
        {
            let store = DocStore::new(crate::SledStore::open(dir.path()).unwrap());
            let mut heads = vec![];
            for n in 0..5 {
                append(&mut doc, n);
                heads = store.save_incremental(DOC, &doc, &heads).unwrap();
            }
            store.compact(DOC).unwrap();
            append(&mut doc, 5);
            store.save_incremental(DOC, &doc, &heads).unwrap();
        }
        let store = DocStore::new(crate::SledStore::open(dir.path()).unwrap());
        assert_eq!(store.chunk_count(DOC).unwrap(), 2);
        let loaded = store.load(DOC).unwrap().unwrap();
        assert_eq!(items(&loaded), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(loaded.get_heads(), doc.get_heads());
    }

    type ScanHook = Box<dyn FnOnce(&MemStore) + Send>;

    /// A store that runs a hook right after a scan, to race with compaction,
    /// and can be told to fail batches, to stand in for a crash.
    #[derive(Clone, Default)]
    struct Meddling {
        inner: MemStore,
        after_scan: Arc<Mutex<Option<ScanHook>>>,
        fail_batches: Arc<AtomicBool>,
    }

    impl KvStore for Meddling {
        fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn put(&self, key: &Key, value: &[u8]) -> Result<(), StoreError> {
            self.inner.put(key, value)
        }
        fn delete(&self, key: &Key) -> Result<(), StoreError> {
            self.inner.delete(key)
        }
        fn scan_prefix(&self, prefix: &Key) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
            let out = self.inner.scan_prefix(prefix)?;
            if let Some(hook) = lock(&self.after_scan).take() {
                hook(&self.inner);
            }
            Ok(out)
        }
        fn scan_keys(&self, prefix: Option<&Key>) -> Result<Vec<Key>, StoreError> {
            self.inner.scan_keys(prefix)
        }
        fn write_batch(&self, puts: &[(Key, Vec<u8>)], deletes: &[Key]) -> Result<(), StoreError> {
            if self.fail_batches.load(Ordering::SeqCst) {
                return Err(StoreError::Backend("simulated crash".into()));
            }
            self.inner.write_batch(puts, deletes)
        }
    }

    #[test]
    fn store_compaction_keeps_chunks_saved_while_it_runs() {
        let kv = Meddling::default();
        let store = DocStore::new(kv.clone());
        let mut doc = Automerge::new();
        let mut heads = vec![];
        for n in 0..4 {
            append(&mut doc, n);
            heads = store.save_incremental(DOC, &doc, &heads).unwrap();
        }
        // Right after compaction has read the document, another writer
        // saves a new change.
        let mut late = doc.fork();
        append(&mut late, 99);
        let late_heads = late.get_heads();
        {
            let writer = DocStore::new(kv.inner.clone());
            let late = late.fork();
            let heads = heads.clone();
            *lock(&kv.after_scan) = Some(Box::new(move |_| {
                writer.save_incremental(DOC, &late, &heads).unwrap();
            }));
        }
        store.compact(DOC).unwrap();
        assert_eq!(
            store.chunk_count(DOC).unwrap(),
            2,
            "snapshot plus the late chunk"
        );
        let loaded = store.load(DOC).unwrap().unwrap();
        assert_eq!(loaded.get_heads(), late_heads);
        assert_eq!(items(&loaded), vec![0, 1, 2, 3, 99]);
    }

    #[test]
    fn store_failed_compaction_batch_loses_nothing() {
        let kv = Meddling::default();
        let store = DocStore::new(kv.clone());
        let mut doc = Automerge::new();
        let mut heads = vec![];
        for n in 0..6 {
            append(&mut doc, n);
            heads = store.save_incremental(DOC, &doc, &heads).unwrap();
        }
        kv.fail_batches.store(true, Ordering::SeqCst);
        assert!(matches!(store.compact(DOC), Err(StoreError::Backend(_))));
        assert_eq!(store.chunk_count(DOC).unwrap(), 6);
        assert_eq!(
            items(&store.load(DOC).unwrap().unwrap()),
            (0..6).collect::<Vec<_>>()
        );
    }

    fn assert_corrupt(err: StoreError, needle: &str) {
        let msg = err.to_string();
        match &err {
            StoreError::Corrupt { doc, detail } => {
                assert_eq!(doc, DOC);
                assert!(detail.contains(needle), "{detail:?} lacks {needle:?}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(msg.contains(DOC) && msg.ends_with('.'), "{msg}");
    }

    /// A document with three stored chunks; returns the store and the key of
    /// the last chunk.
    fn three_chunks() -> (DocStore<MemStore>, Key, Vec<u8>) {
        let store = DocStore::new(MemStore::new());
        let mut doc = Automerge::new();
        let mut heads = vec![];
        for n in 0..3 {
            append(&mut doc, n);
            heads = store.save_incremental(DOC, &doc, &heads).unwrap();
        }
        let key = Key::new([DOC, INCREMENTAL, &heads[0].to_string()]).unwrap();
        let bytes = store.kv().get(&key).unwrap().unwrap();
        (store, key, bytes)
    }

    #[test]
    fn store_garbage_chunk_is_a_clear_error() {
        let (store, key, _) = three_chunks();
        store.kv().put(&key, b"this is not automerge").unwrap();
        assert_corrupt(store.load(DOC).unwrap_err(), "no Automerge chunk");
        // Compaction refuses and deletes nothing.
        assert!(matches!(
            store.compact(DOC),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(store.chunk_count(DOC).unwrap(), 3);
    }

    #[test]
    fn store_truncated_chunk_is_a_clear_error() {
        let (store, key, bytes) = three_chunks();
        for cut in [1, 5, 9, bytes.len() / 2, bytes.len() - 1] {
            store.kv().put(&key, &bytes[..cut]).unwrap();
            let err = store.load(DOC).unwrap_err();
            let detail = match &err {
                StoreError::Corrupt { detail, .. } => detail.clone(),
                other => panic!("cut {cut}: expected Corrupt, got {other:?}"),
            };
            assert!(detail.contains(&key.to_string()), "{detail}");
        }
        store.kv().put(&key, &bytes[..bytes.len() / 2]).unwrap();
        assert_corrupt(store.load(DOC).unwrap_err(), "truncated");
        store.kv().put(&key, b"").unwrap();
        assert_corrupt(store.load(DOC).unwrap_err(), "is empty");
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(&bytes[..10]);
        store.kv().put(&key, &trailing).unwrap();
        assert_corrupt(store.load(DOC).unwrap_err(), "truncated");
    }

    #[test]
    fn store_flipped_byte_is_a_clear_error() {
        let (store, key, bytes) = three_chunks();
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        store.kv().put(&key, &flipped).unwrap();
        assert_corrupt(store.load(DOC).unwrap_err(), "checksum");
    }

    #[test]
    fn store_damaged_snapshot_is_a_clear_error() {
        let store = DocStore::new(MemStore::new());
        let mut doc = Automerge::new();
        for n in 0..50 {
            append(&mut doc, n);
        }
        store.save_full(DOC, &doc).unwrap();
        let (key, mut bytes) = store
            .kv()
            .scan_prefix(&Key::new([DOC]).unwrap())
            .unwrap()
            .remove(0);
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        store.kv().put(&key, &bytes).unwrap();
        assert_corrupt(store.load(DOC).unwrap_err(), "checksum");
    }

    #[test]
    fn store_compressed_changes_are_checked_and_loaded() {
        // Large changes are stored deflated by Automerge; check those too.
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        let text = tx.put_object(ROOT, "text", ObjType::Text).unwrap();
        tx.splice_text(&text, 0, 0, &"lorem ipsum ".repeat(2000))
            .unwrap();
        tx.commit();
        let mut change = doc.get_changes(&[]).remove(0);
        let compressed = change.bytes().into_owned();
        assert_eq!(
            compressed[8], COMPRESSED_CHANGE,
            "test needs a compressed chunk"
        );
        assert!(check_chunks(&compressed).is_ok());
        let kv = MemStore::new();
        let key = Key::new([DOC, INCREMENTAL, "x"]).unwrap();
        kv.put(&key, &compressed).unwrap();
        let store = DocStore::new(kv);
        assert_eq!(
            store.load(DOC).unwrap().unwrap().get_heads(),
            doc.get_heads()
        );
        let mut bad = compressed.clone();
        bad[5] ^= 0x01;
        store.kv().put(&key, &bad).unwrap();
        assert_corrupt(store.load(DOC).unwrap_err(), "checksum");
    }

    #[test]
    fn store_missing_dependencies_block_compaction() {
        let store = DocStore::new(MemStore::new());
        let mut doc = Automerge::new();
        append(&mut doc, 1);
        let heads = doc.get_heads();
        append(&mut doc, 2);
        append(&mut doc, 3);
        // Only the later changes are stored: they wait for the first one.
        store.save_incremental(DOC, &doc, &heads).unwrap();
        append(&mut doc, 4);
        store.save_incremental(DOC, &doc, &heads).unwrap();
        let loaded = store.load(DOC).unwrap().unwrap();
        assert_eq!(loaded.get_missing_deps(&[]), heads);
        assert_corrupt(store.compact(DOC).unwrap_err(), "not stored");
        assert_eq!(store.chunk_count(DOC).unwrap(), 2);
    }

    #[test]
    fn store_lists_and_deletes_documents() {
        let store = DocStore::new(MemStore::new());
        let mut doc = Automerge::new();
        append(&mut doc, 1);
        for id in ["b-doc", "a-doc", "a"] {
            store.save_incremental(id, &doc, &[]).unwrap();
        }
        store.save_full("a-doc", &doc).unwrap();
        store
            .kv()
            .put(&Key::new(["storage-adapter-id"]).unwrap(), b"x")
            .unwrap();
        assert_eq!(store.list_documents().unwrap(), vec!["a", "a-doc", "b-doc"]);
        store.delete_document("a").unwrap();
        assert_eq!(store.list_documents().unwrap(), vec!["a-doc", "b-doc"]);
        assert!(store.load("a").unwrap().is_none());
        assert_eq!(store.chunk_count("a-doc").unwrap(), 2);
    }

    #[test]
    fn store_invalid_document_ids_are_refused() {
        let store = DocStore::new(MemStore::new());
        for bad in ["", "a/b", "nul\0"] {
            assert!(
                matches!(store.load(bad), Err(StoreError::InvalidKey(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn store_auto_compaction_runs_in_the_background() {
        let store = DocStore::with_auto_compaction(MemStore::new(), 4).unwrap();
        let mut doc = Automerge::new();
        let mut heads = vec![];
        for n in 0..40 {
            append(&mut doc, n);
            heads = store.save_incremental(DOC, &doc, &heads).unwrap();
        }
        // Wait (bounded) for the worker to catch up; no timing is asserted,
        // only that it eventually compacts.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while store.chunk_count(DOC).unwrap() > 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(store.chunk_count(DOC).unwrap() <= 5);
        assert!(store.take_background_error().is_none());
        let loaded = store.load(DOC).unwrap().unwrap();
        assert_eq!(items(&loaded), (0..40).collect::<Vec<_>>());
        drop(store); // joins the worker
    }

    #[test]
    fn store_background_errors_are_kept() {
        let kv = MemStore::new();
        let store = DocStore::with_auto_compaction(kv.clone(), 1).unwrap();
        let mut doc = Automerge::new();
        append(&mut doc, 1);
        let heads = store.save_incremental(DOC, &doc, &[]).unwrap();
        let key = Key::new([DOC, INCREMENTAL, &heads[0].to_string()]).unwrap();
        kv.put(&key, b"garbage").unwrap();
        append(&mut doc, 2);
        store.save_incremental(DOC, &doc, &heads).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut err = None;
        while err.is_none() && std::time::Instant::now() < deadline {
            err = store.take_background_error();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_corrupt(err.expect("background error"), "no Automerge chunk");
        assert_eq!(store.chunk_count(DOC).unwrap(), 2);
    }

    #[test]
    fn store_doc_store_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<DocStore<MemStore>>();
        shareable::<DocStore<crate::SledStore>>();
    }
}
