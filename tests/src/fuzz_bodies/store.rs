//! Target `store`: the store's chunk reader, [`DocStore::load`] over values
//! as they sit in the key/value store (snapshots and incremental chunks in
//! samod's layout), and compaction of what it read.
//!
//! Input: a count byte (1–4 values), then per value a flags byte (bit 0:
//! a snapshot instead of an incremental chunk; bits 1–2: how the bytes are
//! made, [`super::bytes::wrap`]) and, except for the last, a u16 length.
//!
//! Invariants: nothing panics; damage is `StoreError::Corrupt` with a
//! sentence naming the document; a document that loads compacts to one
//! snapshot with the same heads, or is refused (changes missing, or a
//! snapshot that would not load again) with every value left in place.

use klad_store::{DocStore, INCREMENTAL, Key, KvStore, MemStore, SNAPSHOT, StoreError};

use super::assert_sentence;
use super::bytes::{self, Input};

const DOC: &str = "4NMNnkMhL8jXrdJ9jamS58PAVdXu";

fn corrupt(e: StoreError) {
    assert!(
        matches!(&e, StoreError::Corrupt { doc, .. } if doc == DOC),
        "damaged data gave another error: {e}"
    );
    assert_sentence(&e.to_string());
}

/// The body of the `store` target.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let count = 1 + usize::from(input.byte() % 4);
    let kv = MemStore::new();
    for i in 0..count {
        let flags = input.byte();
        let payload = if i + 1 == count {
            input.rest()
        } else {
            let len = usize::from(input.u16());
            input.take(len)
        };
        let kind = if flags & 1 != 0 {
            SNAPSHOT
        } else {
            INCREMENTAL
        };
        let key = Key::new([DOC, kind, &format!("{i:02}")]).expect("a valid key");
        kv.put(&key, &bytes::wrap(flags >> 1, payload))
            .expect("memory store");
    }
    let store = DocStore::new(kv);
    let doc = match store.load(DOC) {
        Ok(Some(doc)) => doc,
        Ok(None) => panic!("stored values were not found"),
        Err(e) => return corrupt(e),
    };
    let before = store.chunk_count(DOC).expect("count");
    match store.compact(DOC) {
        Ok(()) => {
            let again = store
                .load(DOC)
                .expect("a compacted document loads")
                .expect("a compacted document is there");
            assert_eq!(
                again.get_heads(),
                doc.get_heads(),
                "compaction changed the heads"
            );
            assert_eq!(store.chunk_count(DOC).expect("count"), 1);
        }
        Err(e) => {
            // Refused (changes missing, or a snapshot that would not load
            // again): everything stays as it was.
            corrupt(e);
            assert_eq!(store.chunk_count(DOC).expect("count"), before);
            let again = store
                .load(DOC)
                .expect("a refused compaction keeps the document");
            let heads = again.map(|d| d.get_heads());
            assert_eq!(heads, Some(doc.get_heads()));
        }
    }
}
