//! Anchors hold: a comment on a phrase still covers exactly that phrase after
//! random concurrent insertions and deletions around and inside it, and
//! deleting the whole phrase orphans it with the quote intact.
//!
//! Every character ever written is a distinct code point, so the merged text
//! tells exactly where each character went. The anchor sits on the phrase's
//! first and last characters: the random edits insert and delete everywhere,
//! inside the phrase too, but leave those two standing, and then the passage
//! must be exactly from the first to the last (text inserted between them is
//! part of it, text before the first or after the last is not). When the whole
//! phrase is deleted, the comment is orphaned with its quote intact.

mod common;
use common::*;
use klad_core::views;
use klad_core::*;
use proptest::prelude::*;

const PREFIX: u32 = 0x4E00; // original text before the phrase
const PHRASE: u32 = 0x5000; // the phrase
const SUFFIX: u32 = 0x5200; // original text after the phrase
const INSERTED: u32 = 0x6000; // everything typed later

fn run_of(base: u32, n: usize) -> String {
    (0..n as u32)
        .map(|i| char::from_u32(base + i).unwrap())
        .collect()
}

fn class(c: char) -> u32 {
    match c as u32 {
        x if x >= INSERTED => INSERTED,
        x if x >= SUFFIX => SUFFIX,
        x if x >= PHRASE => PHRASE,
        _ => PREFIX,
    }
}

/// What the anchor must resolve to while the phrase's first and last
/// characters stand, computed from the merged text alone.
fn expected(text: &str, quote: &str) -> AnchorView {
    let chars: Vec<char> = text.chars().collect();
    let at = |c: u32| chars.iter().position(|x| *x as u32 == c).unwrap();
    let (start, end) = (at(PHRASE), at(PHRASE + 7) + 1);
    AnchorView::Live {
        start,
        end,
        text: chars[start..end].iter().collect(),
        quote: quote.to_owned(),
    }
}

#[derive(Clone, Debug)]
struct Edit {
    who: usize, // 0: Anna, 1: Bram (both drafters, offline from each other)
    pos: u32,   // seed for the position
    delete: u8, // characters to delete (0..=3)
    insert: u8, // characters to insert (0..=3)
    sync: bool, // afterwards, exchange everything between the two
}

fn edit() -> impl Strategy<Value = Edit> {
    (
        0..2usize,
        any::<u32>(),
        0..4u8,
        0..4u8,
        prop::bool::weighted(0.15),
    )
        .prop_map(|(who, pos, delete, insert, sync)| Edit {
            who,
            pos,
            delete,
            insert,
            sync,
        })
}

fn run(
    edits: Vec<Edit>,
    comment_after: usize,
    then_delete_phrase: bool,
) -> Result<(), TestCaseError> {
    let mut w = World::new();
    let (prefix, phrase, suffix) = (run_of(PREFIX, 12), run_of(PHRASE, 8), run_of(SUFFIX, 12));
    let body = format!("{prefix}{phrase}{suffix}");
    let article = w.anna.create_article(T0, None, "Artikel", &body).unwrap();
    w.sync_all();
    let mut next_insert = INSERTED;
    let mut comment = None;
    for (i, e) in edits.iter().enumerate() {
        if i == comment_after {
            // The official comments concurrently with edits she has not seen.
            let text = w.olga.docs().text.body(&article).unwrap();
            let chars: Vec<char> = text.chars().collect();
            let start = chars.iter().position(|c| class(*c) == PHRASE).unwrap();
            comment = Some(
                w.olga
                    .comment(T0 + 1, &article, start, start + 8, "Wat betekent dit?")
                    .unwrap(),
            );
        }
        let s = if e.who == 0 { &mut w.anna } else { &mut w.bram };
        let len = s.docs().text.body_len(&article).unwrap();
        let pos = e.pos as usize % (len + 1);
        let mut delete = (e.delete as usize).min(len - pos);
        let current: Vec<char> = s.docs().text.body(&article).unwrap().chars().collect();
        if current[pos..pos + delete]
            .iter()
            .any(|c| *c as u32 == PHRASE || *c as u32 == PHRASE + 7)
        {
            delete = 0; // the anchor's own characters stay; everything else may go
        }
        let insert: String = (0..e.insert)
            .map(|_| {
                next_insert += 1;
                char::from_u32(next_insert).unwrap()
            })
            .collect();
        s.splice_body(T0 + 2 + i as i64, &article, pos, delete, &insert)
            .unwrap();
        if e.sync {
            let (a, b) = (w.anna.docs().clone(), w.bram.docs().clone());
            w.anna.docs_mut().merge(&b).unwrap();
            w.bram.docs_mut().merge(&a).unwrap();
        }
    }
    if comment.is_none() {
        let text = w.olga.docs().text.body(&article).unwrap();
        let chars: Vec<char> = text.chars().collect();
        let start = chars.iter().position(|c| class(*c) == PHRASE).unwrap();
        comment = Some(
            w.olga
                .comment(T0 + 1, &article, start, start + 8, "Wat betekent dit?")
                .unwrap(),
        );
    }
    w.sync_all();
    let id = comment.unwrap();
    let text = w.otto.docs().text.body(&article).unwrap();
    let mut want = expected(&text, &phrase);
    if then_delete_phrase {
        // Two drafters delete the passage concurrently, each a part of it.
        let AnchorView::Live { start, end, .. } = want else {
            unreachable!()
        };
        let mid = start + (end - start) / 2;
        w.anna
            .splice_body(T0 + 500, &article, start, mid - start, "")
            .unwrap();
        w.bram
            .splice_body(T0 + 500, &article, mid, end - mid, "")
            .unwrap();
        w.sync_all();
        want = AnchorView::Orphaned {
            quote: phrase.clone(),
        };
    }
    for s in w.sessions() {
        let t = views::threads(s.docs(), Some(&article), T0).unwrap();
        let thread = t.iter().find(|t| t.id == id).unwrap();
        prop_assert_eq!(&thread.anchor, &want, "text: {}", text);
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 200, ..Default::default() })]
    #[test]
    fn anchor_follows_its_phrase(edits in proptest::collection::vec(edit(), 1..40), comment_after in 0..10usize) {
        run(edits, comment_after, false)?;
    }

    #[test]
    fn deleting_the_phrase_after_random_edits_orphans_it(edits in proptest::collection::vec(edit(), 1..30), comment_after in 0..10usize) {
        run(edits, comment_after, true)?;
    }
}

#[test]
fn untouched_phrase_keeps_its_exact_range_and_text() {
    let mut w = World::new();
    let a = w
        .anna
        .create_article(T0, None, "A", "De gemeente plant bomen in elke straat.")
        .unwrap();
    w.sync_all();
    let c = w.olga.comment(T0 + 1, &a, 18, 23, "Welke bomen?").unwrap();
    w.anna.splice_body(T0 + 2, &a, 0, 3, "Onze").unwrap(); // before
    w.bram
        .splice_body(T0 + 2, &a, 23, 0, " en struiken")
        .unwrap(); // right after the last character
    w.bram.splice_body(T0 + 3, &a, 18, 0, "veel ").unwrap(); // right before the first character
    w.sync_all();
    let t = &views::threads(w.otto.docs(), Some(&a), T0).unwrap()[0];
    assert_eq!(t.id, c);
    match &t.anchor {
        AnchorView::Live { text, quote, .. } => {
            assert_eq!(text, "bomen");
            assert_eq!(quote, "bomen");
        }
        other => panic!("expected a live anchor, got {other:?}"),
    }
}

#[test]
fn deleting_the_whole_phrase_orphans_the_comment_with_its_quote() {
    let mut w = World::new();
    let a = w
        .anna
        .create_article(T0, None, "A", "De gemeente plant bomen in elke straat.")
        .unwrap();
    w.sync_all();
    w.olga.comment(T0 + 1, &a, 18, 23, "Welke bomen?").unwrap();
    // Two drafters each delete half of the phrase, concurrently, and type around it.
    w.anna.splice_body(T0 + 2, &a, 18, 3, "").unwrap();
    w.bram.splice_body(T0 + 2, &a, 21, 2, "").unwrap();
    w.bram.splice_body(T0 + 3, &a, 0, 0, "Nu: ").unwrap();
    w.sync_all();
    assert_eq!(
        w.otto.docs().text.body(&a).unwrap(),
        "Nu: De gemeente plant  in elke straat."
    );
    let t = &views::threads(w.otto.docs(), Some(&a), T0).unwrap()[0];
    assert_eq!(
        t.anchor,
        AnchorView::Orphaned {
            quote: "bomen".into()
        }
    );

    // Removing the article orphans comments on it too.
    let mut w = World::new();
    let a = w.anna.create_article(T0, None, "A", "Tekst").unwrap();
    w.sync_all();
    w.olga.comment(T0 + 1, &a, 0, 5, "Hm").unwrap();
    w.anna.remove_article(T0 + 2, &a).unwrap();
    w.sync_all();
    let t = &views::threads(w.otto.docs(), None, T0).unwrap()[0];
    assert_eq!(
        t.anchor,
        AnchorView::Orphaned {
            quote: "Tekst".into()
        }
    );
}
