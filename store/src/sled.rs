//! The embedded default backend: [`KvStore`] on sled 0.34.
//!
//! Key encoding: each component's UTF-8 bytes followed by one `0x00` byte
//! (components never contain NUL, see [`Key`]). So `[a, b]` is stored as
//! `a\0b\0`. Because the terminator sorts below every other byte, sled's byte
//! order equals [`Key`]'s component-wise order (`[a] < [a, b] < [ab]`), and a
//! byte-prefix scan for `a\0` finds exactly the keys whose first component is
//! `a` (not `ab`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::kv::{Key, KvStore, StoreError, decode_key, encode_key};

/// A [`KvStore`] on a sled database in one directory.
///
/// Invariants:
/// - every `put`, `delete` and `write_batch` calls sled's `flush` and then
///   `fdatasync`s sled's log file before it returns, so an acknowledged write
///   survives a crash of the process and of the machine. (sled 0.34's flush
///   alone writes with `sync_file_range`, which neither flushes the drive's
///   cache nor the file's size, and fsyncs only every 500 ms. Values above
///   sled's blob threshold go to blob files that sled does not fsync: Klad's
///   values are changes and compacted snapshots, far smaller than a segment.)
/// - `write_batch` is one `sled::Batch`, which sled applies atomically, also
///   across a crash;
/// - within this process a scan never observes half of a `write_batch`
///   (batches and scans are ordered by a lock shared by all clones);
/// - once a write or a sync has failed, every later write is refused with
///   [`StoreError::NeedsReopen`] until the store is opened again
///   ([`Self::broken`] says why). sled 0.34 keeps a failed write's I/O error
///   for good anyway, and after a failed `fdatasync` the kernel may have
///   dropped pages it had accepted, so a later sync that succeeds would
///   confirm writes that are not on disk (PostgreSQL's "fsyncgate").
///
/// sled locks the directory: only one `SledStore` (in one process) can have a
/// directory open at a time. Clone the handle to share it.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    /// sled's log file (`<dir>/db`), opened again only to `fdatasync` it.
    log: Option<Arc<std::fs::File>>,
    /// Group commit: writes that finish while a flush runs share the next one.
    commit: Arc<GroupCommit>,
    /// Scans hold it shared, batches exclusive, so a scan is consistent.
    batch_lock: Arc<RwLock<()>>,
    /// Where the data lives, for messages (`None` when temporary).
    path: Option<Arc<PathBuf>>,
    /// Why writes are refused until the store is opened again (see above).
    broken: Arc<Mutex<Option<String>>>,
    /// Injected sync failures (tests and fault campaigns).
    fault: Arc<SyncFault>,
}

/// Fault injection: from the `fail_from`-th sync of the log on (counting
/// from 1; 0 never), the sync fails as a disk's would, with `EIO`.
#[derive(Default)]
struct SyncFault {
    fail_from: AtomicU64,
    syncs: AtomicU64,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (creating if needed) the store in directory `path`.
    ///
    /// Fails with [`StoreError::Locked`] when another process (or another
    /// `SledStore` in this process) has the directory open — after waiting
    /// up to a second for a store of this process that was just dropped —
    /// and with
    /// [`StoreError::Open`] when it cannot be created or read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, sled::Config::new())
    }

    /// [`Self::open`], with sled's page cache limited to `bytes` (sled's
    /// default is 1 GiB, which suits a server, not a phone).
    pub fn open_with_cache(path: impl AsRef<Path>, bytes: u64) -> Result<Self, StoreError> {
        Self::open_with(path, sled::Config::new().cache_capacity(bytes))
    }

    fn open_with(path: impl AsRef<Path>, config: sled::Config) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let config = config.path(path);
        // sled lets go of a directory shortly after the last handle on it is
        // dropped (its flusher thread finishes first): a store closed a
        // moment ago in this process is waited for, up to a second, before
        // the directory counts as in use.
        let mut waited = 0;
        let db = loop {
            match config.open().map_err(|e| open_error(&shown, e)) {
                Err(StoreError::Locked { .. }) if waited < 20 => {
                    waited += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        let log = std::fs::File::open(path.join("db")).map_err(|e| StoreError::Open {
            path: shown.clone(),
            detail: format!("its log file could not be opened for syncing ({e})"),
        })?;
        Ok(Self {
            db,
            log: Some(Arc::new(log)),
            commit: Arc::default(),
            batch_lock: Arc::new(RwLock::new(())),
            path: Some(Arc::new(path.to_path_buf())),
            broken: Arc::default(),
            fault: Arc::default(),
        })
    }

    /// A store in a fresh temporary directory that is removed when the last
    /// clone is dropped. For tests.
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|e| open_error("(temporary directory)", e))?;
        Ok(Self {
            db,
            log: None,
            commit: Arc::default(),
            batch_lock: Arc::new(RwLock::new(())),
            path: None,
            broken: Arc::default(),
            fault: Arc::default(),
        })
    }

    /// The directory this store lives in (`None` for a temporary store).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref().map(PathBuf::as_path)
    }

    /// Why this store refuses writes until it is opened again (an earlier
    /// write or sync failed at the disk), or `None` while it is healthy.
    /// A program that must keep running opens the store again once the disk
    /// takes writes again; the server restarts itself in place for that
    /// (sled cannot be closed and reopened within a process after such an
    /// error: its final flush blocks).
    pub fn broken(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Fault injection for tests and fault campaigns: the `n`-th sync of
    /// the log from now on (1 is the next) and every later one fail with an
    /// I/O error, as a failing disk's `fdatasync` does. `0` turns it off.
    pub fn inject_sync_failure(&self, n: u64) {
        let from = if n == 0 {
            0
        } else {
            self.fault.syncs.load(Ordering::SeqCst) + n
        };
        self.fault.fail_from.store(from, Ordering::SeqCst);
    }

    /// Refuses writes from now on, for `why`, as after a failed write: for a
    /// caller that gave up waiting on a write that never returned (sled
    /// can block on a full disk). The first reason given stays.
    pub fn give_up(&self, why: &str) {
        self.break_with(why);
    }

    fn break_with(&self, why: &str) {
        let mut b = self.broken.lock().unwrap_or_else(|e| e.into_inner());
        if b.is_none() {
            *b = Some(why.to_owned());
        }
    }

    /// Refuses a write when the store is broken.
    fn check_writable(&self) -> Result<(), StoreError> {
        match self.broken() {
            Some(why) => Err(StoreError::NeedsReopen(why)),
            None => Ok(()),
        }
    }

    /// A write failed at sled: the store is broken from now on.
    fn write_failed(&self, e: sled::Error) -> StoreError {
        let detail = e.to_string();
        self.break_with(&detail);
        StoreError::Backend(detail)
    }

    /// Makes this call's write (already in sled's memory) durable: it is
    /// once a flush that started after it has finished. Concurrent writers
    /// share flushes instead of each paying for their own.
    fn flush(&self) -> Result<(), StoreError> {
        let mine = self.commit.written.fetch_add(1, Ordering::SeqCst) + 1;
        let mut st = self.commit.lock();
        loop {
            if st.durable >= mine {
                return Ok(());
            }
            if !st.flushing {
                break;
            }
            st = self.commit.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.flushing = true;
        let target = self.commit.written.load(Ordering::SeqCst);
        drop(st);
        let result = self.flush_now();
        let mut st = self.commit.lock();
        st.flushing = false;
        if result.is_ok() {
            st.durable = st.durable.max(target);
        }
        self.commit.done.notify_all();
        result
    }

    fn flush_now(&self) -> Result<(), StoreError> {
        self.check_writable()?;
        self.db.flush().map_err(|e| self.write_failed(e))?;
        let n = self.fault.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        let from = self.fault.fail_from.load(Ordering::SeqCst);
        let synced = if from != 0 && n >= from {
            Err(std::io::Error::from_raw_os_error(5)) // EIO
        } else {
            match &self.log {
                Some(log) => log.sync_data(),
                None => Ok(()),
            }
        };
        synced.map_err(|e| {
            let detail = format!("the store's log file could not be synced to disk ({e})");
            self.break_with(&detail);
            StoreError::Backend(detail)
        })
    }

    fn shared(&self) -> RwLockReadGuard<'_, ()> {
        // The guarded value is `()`, so a poisoned lock protects nothing broken.
        self.batch_lock.read().unwrap_or_else(|e| e.into_inner())
    }

    fn exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.batch_lock.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Turns an error from opening sled into a sentence about the directory.
fn open_error(path: &str, e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock") =>
        {
            StoreError::Locked {
                path: path.to_string(),
            }
        }
        sled::Error::Io(io) => StoreError::Open {
            path: path.to_string(),
            detail: io.to_string(),
        },
        sled::Error::Corruption { .. } => StoreError::Open {
            path: path.to_string(),
            detail: "the database files are damaged".to_string(),
        },
        other => StoreError::Open {
            path: path.to_string(),
            detail: other.to_string(),
        },
    }
}

/// The state of group commit (see [`SledStore::flush`]).
#[derive(Default)]
struct GroupCommit {
    /// Writes applied to sled's memory so far.
    written: AtomicU64,
    state: Mutex<CommitState>,
    done: Condvar,
}

#[derive(Default)]
struct CommitState {
    /// Every write up to this count is on disk.
    durable: u64,
    /// A flush is running.
    flushing: bool,
}

impl GroupCommit {
    fn lock(&self) -> std::sync::MutexGuard<'_, CommitState> {
        // Plain counters: a panic elsewhere leaves them consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl KvStore for SledStore {
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .get(encode_key(key))
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn put(&self, key: &Key, value: &[u8]) -> Result<(), StoreError> {
        self.check_writable()?;
        {
            let _shared = self.shared();
            self.db
                .insert(encode_key(key), value)
                .map_err(|e| self.write_failed(e))?;
        }
        self.flush()
    }

    fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.check_writable()?;
        {
            let _shared = self.shared();
            self.db
                .remove(encode_key(key))
                .map_err(|e| self.write_failed(e))?;
        }
        self.flush()
    }

    fn scan_prefix(&self, prefix: &Key) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        let _shared = self.shared();
        self.db
            .scan_prefix(encode_key(prefix))
            .map(|entry| {
                let (k, v) = entry.map_err(backend)?;
                Ok((decode_key(&k)?, v.to_vec()))
            })
            .collect()
    }

    fn scan_keys(&self, prefix: Option<&Key>) -> Result<Vec<Key>, StoreError> {
        let _shared = self.shared();
        let iter = match prefix {
            Some(prefix) => self.db.scan_prefix(encode_key(prefix)),
            None => self.db.iter(),
        };
        iter.keys()
            .map(|k| decode_key(&k.map_err(backend)?))
            .collect()
    }

    fn write_batch(&self, puts: &[(Key, Vec<u8>)], deletes: &[Key]) -> Result<(), StoreError> {
        if puts.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        self.check_writable()?;
        let mut batch = sled::Batch::default();
        for (k, v) in puts {
            batch.insert(encode_key(k), v.as_slice());
        }
        // Later operations on the same key win, so deletes override puts.
        for k in deletes {
            batch.remove(encode_key(k));
        }
        {
            let _exclusive = self.exclusive();
            self.db
                .apply_batch(batch)
                .map_err(|e| self.write_failed(e))?;
        }
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> Key {
        Key::new(parts.iter().copied()).unwrap()
    }

    #[test]
    fn concurrent_writers_share_flushes_and_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            let threads: Vec<_> = (0..8)
                .map(|t| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        for i in 0..100 {
                            s.put(&key(&["k", &format!("{t}-{i:03}")]), b"v").unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let c = s.commit.lock();
            assert_eq!(c.durable, 800, "every write was covered by a flush");
            assert!(!c.flushing);
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.scan_keys(Some(&key(&["k"]))).unwrap().len(), 800);
    }

    #[test]
    fn a_failed_sync_refuses_every_later_write_until_the_store_is_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.put(&key(&["a"]), b"1").unwrap();
            s.inject_sync_failure(1);
            let err = s.put(&key(&["b"]), b"2").unwrap_err();
            assert!(err.to_string().contains("synced"), "{err}");
            assert!(s.broken().is_some());
            // The disk works again, yet the store refuses: the failed sync
            // may have dropped what it had accepted.
            s.inject_sync_failure(0);
            let again = s.put(&key(&["c"]), b"3").unwrap_err();
            assert!(matches!(again, StoreError::NeedsReopen(_)), "{again:?}");
            assert!(
                again.to_string().ends_with("(restart the program)."),
                "{again}"
            );
            assert!(s.write_batch(&[(key(&["d"]), b"4".to_vec())], &[]).is_err());
            assert!(s.delete(&key(&["a"])).is_err());
            // Reads go on.
            assert_eq!(s.get(&key(&["a"])).unwrap().as_deref(), Some(&b"1"[..]));
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert!(s.broken().is_none(), "opened again, the store writes");
        assert_eq!(s.get(&key(&["a"])).unwrap().as_deref(), Some(&b"1"[..]));
        s.put(&key(&["e"]), b"5").unwrap();
    }

    #[test]
    fn store_open_twice_says_the_directory_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        let err = SledStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("already in use"), "{msg}");
        assert!(msg.ends_with('.'), "{msg}");
    }

    #[test]
    fn store_open_on_a_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"hello").unwrap();
        let err = SledStore::open(&file).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}
