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

/// Changes applied per size.
const CHANGES: usize = 200;

/// A small deterministic generator (no dependency, the same spots every run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

pub fn run() -> anyhow::Result<()> {
    println!(
        "| text (characters) | one call per change (µs per change) | {CHANGES} changes in one call (µs per change) | ratio |"
    );
    println!("|--:|--:|--:|--:|");
    let mut rng = Lcg(42);
    for size in [1_000usize, 5_000, 20_000, 50_000, 100_000] {
        let mut a = AutoCommit::new().with_actor(ActorId::from(b"typist-a".to_vec()));
        let text = a.put_object(ROOT, "body", ObjType::Text)?;
        while a.length(&text) < size {
            let at = rng.below(a.length(&text) + 1);
            a.splice_text(&text, at, 0, "word ")?;
            a.commit();
        }
        let mut b = a.fork().with_actor(ActorId::from(b"typist-b".to_vec()));
        let base = a.get_heads();
        for _ in 0..CHANGES {
            let at = rng.below(b.length(&text) + 1);
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
