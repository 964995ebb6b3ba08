//! The durability barrier: nothing that tells a peer the server has a change
//! leaves the server before that change (and everything it depends on) is
//! flushed to disk.
//!
//! # Why samod needs help here
//!
//! In samod 0.16 a document actor's `step` first generates the sync messages
//! for every connection and then queues the storage puts for the new changes,
//! in the same `DocActorResult`. The puts go to the IO loop's channel and the
//! messages to the hub's channel; nothing orders one after the other. So a
//! reply whose heads include a just-received change can reach the socket
//! before that change is on disk. (Read in `samod-core`
//! `actors/document/document_actor.rs` `step`, and `samod`
//! `doc_actor_inner.rs` `handle_results` / `io_loop.rs`.)
//!
//! # What this module does
//!
//! The storage adapter reports every put to a [`Durability`] tracker: when a
//! put starts it gets a sequence number, when it has been flushed the change
//! hashes it holds are recorded as durable with that number. Every outgoing
//! sync message is held back until, for each of its heads `h`:
//! - `h` is recorded as durable (or was loaded from disk), and
//! - no put of the same document that started before `h`'s put is still running.
//!
//! The second condition covers `h`'s ancestors: samod queues the puts of one
//! document in causal order, its IO loop starts them in queue order, so every
//! ancestor's put started before `h`'s (or in an earlier step) and is either
//! finished (durable) or still running (then we wait).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use automerge::ChangeHash;
use tokio::sync::Notify;

/// Per-document bookkeeping.
#[derive(Default)]
struct DocState {
    /// Sequence numbers of puts that started and have not finished.
    in_flight: BTreeSet<u64>,
    /// Change hash -> sequence number of the put that made it durable (0: loaded).
    durable: HashMap<ChangeHash, u64>,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    docs: HashMap<String, DocState>,
}

/// Tracks which changes of which documents are on disk. Shared by the storage
/// adapter (which reports) and every connection (which waits).
#[derive(Default)]
pub struct Durability {
    state: Mutex<State>,
    changed: Notify,
}

impl Durability {
    /// A new, empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain bookkeeping; a panic elsewhere does not break it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A put for `doc` is starting; returns its sequence number.
    pub fn begin_put(&self, doc: &str) -> u64 {
        let mut s = self.lock();
        s.next_seq += 1;
        let seq = s.next_seq;
        s.docs
            .entry(doc.to_owned())
            .or_default()
            .in_flight
            .insert(seq);
        seq
    }

    /// The put `seq` of `doc` has finished. `durable` are the change hashes it
    /// made durable (empty when it failed).
    pub fn end_put(&self, doc: &str, seq: u64, durable: &[ChangeHash]) {
        {
            let mut s = self.lock();
            let d = s.docs.entry(doc.to_owned()).or_default();
            d.in_flight.remove(&seq);
            for h in durable {
                d.durable.insert(*h, seq);
            }
        }
        self.changed.notify_waiters();
    }

    /// Records changes read from disk (durable by definition).
    pub fn loaded(&self, doc: &str, hashes: &[ChangeHash]) {
        {
            let mut s = self.lock();
            let d = s.docs.entry(doc.to_owned()).or_default();
            for h in hashes {
                d.durable.entry(*h).or_insert(0);
            }
        }
        self.changed.notify_waiters();
    }

    /// Drops the bookkeeping of `doc` once it has been unloaded (no put
    /// running); loading it again records its stored changes afresh.
    pub fn forget(&self, doc: &str) {
        let mut s = self.lock();
        if s.docs.get(doc).is_some_and(|d| d.in_flight.is_empty()) {
            s.docs.remove(doc);
        }
    }

    /// True when every change up to `heads` of `doc` is on disk.
    pub fn is_durable(&self, doc: &str, heads: &[ChangeHash]) -> bool {
        if heads.is_empty() {
            return true;
        }
        let s = self.lock();
        let Some(d) = s.docs.get(doc) else {
            return false;
        };
        let oldest_running = d.in_flight.first().copied().unwrap_or(u64::MAX);
        heads.iter().all(|h| match d.durable.get(h) {
            Some(seq) => *seq < oldest_running,
            None => false,
        })
    }

    /// Waits until [`Durability::is_durable`] holds.
    pub async fn wait_durable(&self, doc: &str, heads: &[ChangeHash]) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_durable(doc, heads) {
                return;
            }
            notified.await;
        }
    }
}

/// The four bytes that start every Automerge chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_DOCUMENT: u8 = 0;
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED_CHANGE: u8 = 2;

fn read_uleb(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        if shift >= 64 {
            return None;
        }
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
        shift += 7;
    }
}

/// The change hashes that stored Automerge bytes make durable: the hash of
/// each change chunk, and the heads of each document chunk (a document chunk
/// holds every ancestor of its heads). Returns `None` for bytes that are not
/// a sequence of Automerge chunks.
pub fn stored_hashes(bytes: &[u8]) -> Option<Vec<ChangeHash>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let start = pos;
        if bytes.get(pos..pos + 4)? != MAGIC {
            return None;
        }
        pos += 8; // magic + checksum
        let kind = *bytes.get(pos)?;
        pos += 1;
        let len = usize::try_from(read_uleb(bytes, &mut pos)?).ok()?;
        let body_start = pos;
        let end = body_start.checked_add(len)?;
        if end > bytes.len() {
            return None;
        }
        match kind {
            CHUNK_DOCUMENT => {
                let mut p = body_start;
                let actors = read_uleb(bytes, &mut p)?;
                for _ in 0..actors {
                    let n = usize::try_from(read_uleb(bytes, &mut p)?).ok()?;
                    p = p.checked_add(n)?;
                }
                let heads = read_uleb(bytes, &mut p)?;
                for _ in 0..heads {
                    let h: [u8; 32] = bytes.get(p..p + 32)?.try_into().ok()?;
                    out.push(ChangeHash(h));
                    p += 32;
                }
            }
            CHUNK_CHANGE | CHUNK_COMPRESSED_CHANGE => {
                let change = automerge::Change::from_bytes(bytes[start..end].to_vec()).ok()?;
                out.push(change.hash());
            }
            _ => return None,
        }
        pos = end;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ROOT};

    fn doc_with_changes(n: usize) -> Automerge {
        let mut doc = Automerge::new();
        for i in 0..n {
            let mut tx = doc.transaction();
            tx.put(ROOT, format!("k{i}"), i as i64).unwrap();
            tx.commit();
        }
        doc
    }

    #[test]
    fn document_chunk_yields_its_heads() {
        let mut a = doc_with_changes(3);
        let mut b = a.fork();
        let mut tx = b.transaction();
        tx.put(ROOT, "b", "x").unwrap();
        tx.commit();
        let mut tx = a.transaction();
        tx.put(ROOT, "a", "y").unwrap();
        tx.commit();
        a.merge(&mut b).unwrap();
        let mut heads = a.get_heads();
        let mut got = stored_hashes(&a.save()).unwrap();
        heads.sort();
        got.sort();
        assert_eq!(heads.len(), 2);
        assert_eq!(got, heads);
    }

    #[test]
    fn change_chunks_yield_their_hashes() {
        let doc = doc_with_changes(4);
        let changes = doc.get_changes(&[]);
        let mut all = Vec::new();
        for c in &changes {
            assert_eq!(stored_hashes(c.raw_bytes()).unwrap(), vec![c.hash()]);
            all.extend_from_slice(c.raw_bytes());
        }
        let hashes: Vec<ChangeHash> = changes.iter().map(|c| c.hash()).collect();
        assert_eq!(stored_hashes(&all).unwrap(), hashes);
        assert_eq!(stored_hashes(&doc.save_after(&[])).unwrap(), hashes);
    }

    #[test]
    fn big_changes_compress_and_still_parse() {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "big", "x".repeat(10_000)).unwrap();
        tx.commit();
        let mut c = doc.get_changes(&[])[0].clone();
        let compressed = c.bytes().into_owned();
        assert_eq!(stored_hashes(&compressed).unwrap(), vec![c.hash()]);
    }

    #[test]
    fn garbage_is_not_hashes() {
        assert!(stored_hashes(b"hello world").is_none());
        assert!(stored_hashes(&[0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 9, 1, 0]).is_none());
        assert_eq!(stored_hashes(b"").unwrap(), vec![]);
    }

    #[test]
    fn barrier_waits_for_earlier_puts() {
        let d = Durability::new();
        let h1 = ChangeHash([1; 32]);
        let h2 = ChangeHash([2; 32]);
        let s1 = d.begin_put("doc");
        let s2 = d.begin_put("doc");
        d.end_put("doc", s2, &[h2]);
        // h2 is on disk but its ancestor's put (s1) is still running.
        assert!(!d.is_durable("doc", &[h2]));
        d.end_put("doc", s1, &[h1]);
        assert!(d.is_durable("doc", &[h2]));
        assert!(d.is_durable("doc", &[h1, h2]));
        assert!(!d.is_durable("other", &[h1]));
        assert!(d.is_durable("other", &[]));
        d.loaded("other", &[h1]);
        assert!(d.is_durable("other", &[h1]));
        // Unloaded and loaded again: durable again once its stored changes are read.
        d.forget("other");
        assert!(!d.is_durable("other", &[h1]));
        d.loaded("other", &[h1]);
        assert!(d.is_durable("other", &[h1]));
        // Never while a put is running.
        let s3 = d.begin_put("doc");
        d.forget("doc");
        d.end_put("doc", s3, &[]);
        assert!(d.is_durable("doc", &[h1, h2]));
    }
}
