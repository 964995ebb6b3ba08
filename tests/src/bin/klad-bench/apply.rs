//! `klad-bench apply-cost`: what Automerge 0.12 pays to apply a change it
//! receives, against the size of the text it edits.
//!
//! For each size, one peer types a text of that many characters (a word of
//! five at a random spot per change), a second peer types 200 more words
//! into its own copy (one change each), and the first applies those 200
//! changes twice, on two copies: one `apply_changes` call per change, as a
//! server or phone does for one keystroke message at a time, and all 200
//! in one `load_incremental` call, as the hub does for messages held while
//! a store was in flight (the baseline, same process, same changes).
//! Automerge walks the whole history of an object it applies changes to,
//! so the first grows with the text and the second hardly does.

use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType, ROOT, ReadDoc};
use klad_tests::hostile::Rng;

/// Changes applied per size.
const CHANGES: usize = 200;

pub fn run() -> anyhow::Result<()> {
    println!(
        "| text (characters) | one call per change (µs per change) | {CHANGES} changes in one call (µs per change) | ratio |"
    );
    println!("|--:|--:|--:|--:|");
    let mut rng = Rng::new(42);
    // A spot in a text of `len` characters (its end included).
    let mut spot = |len: usize| rng.below(len as u64 + 1) as usize;
    for size in [1_000usize, 5_000, 20_000, 50_000, 100_000] {
        let mut a = AutoCommit::new().with_actor(ActorId::from(b"typist-a".to_vec()));
        let text = a.put_object(ROOT, "body", ObjType::Text)?;
        while a.length(&text) < size {
            let at = spot(a.length(&text));
            a.splice_text(&text, at, 0, "word ")?;
            a.commit();
        }
        let mut b = a.fork().with_actor(ActorId::from(b"typist-b".to_vec()));
        let base = a.get_heads();
        for _ in 0..CHANGES {
            let at = spot(b.length(&text));
            b.splice_text(&text, at, 0, "new ")?;
            b.commit();
        }
        let changes: Vec<automerge::Change> = b.get_changes(&base);

        let mut one_by_one = a.document().clone();
        let t = Instant::now();
        for c in &changes {
            one_by_one.apply_changes([c.clone()])?;
        }
        let single = t.elapsed().as_secs_f64() * 1e6 / CHANGES as f64;

        let mut together = a.document().clone();
        let joined: Vec<u8> = changes
            .iter()
            .flat_map(|c| c.raw_bytes().to_vec())
            .collect();
        let t = Instant::now();
        together.load_incremental(&joined)?;
        let joint = t.elapsed().as_secs_f64() * 1e6 / CHANGES as f64;

        anyhow::ensure!(
            one_by_one.get_heads() == together.get_heads(),
            "the two ways of applying ended with different heads"
        );
        println!(
            "| {size} | {single:.0} | {joint:.1} | {:.0}× |",
            single / joint.max(0.001)
        );
    }
    Ok(())
}
