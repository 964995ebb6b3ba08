//! Bad input gets a clear error, never a panic: documents of a newer schema,
//! truncated or garbage bytes, documents of the wrong kind, unknown ids.

mod common;
use automerge::transaction::Transactable;
use common::*;
use klad_core::*;
use proptest::prelude::*;

fn is_sentence(msg: &str) {
    assert!(msg.chars().next().is_some_and(char::is_uppercase), "{msg}");
    assert!(msg.ends_with('.'), "not a sentence: {msg}");
}

#[test]
fn a_newer_schema_version_is_refused_with_a_clear_error() {
    let text = TextDoc::create(T0, &ProcessId::from("p")).unwrap();
    let mut raw = text.automerge().clone();
    raw.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put(
            automerge::ROOT,
            "schema_version",
            automerge::ScalarValue::Uint(SCHEMA_VERSION + 1),
        )
    })
    .unwrap();
    let err = TextDoc::load(&raw.save()).unwrap_err();
    assert_eq!(
        err,
        Error::NewerSchema {
            kind: DocKind::Text,
            found: SCHEMA_VERSION + 1,
            supported: SCHEMA_VERSION
        }
    );
    let msg = err.to_string();
    is_sentence(&msg);
    assert!(
        msg.contains("newer version of Klad") && msg.contains("Update Klad"),
        "{msg}"
    );
    // Arriving through sync, it is refused too and nothing is applied.
    let mut mine = text.clone();
    let before = mine.heads();
    let bytes = raw.save_after(&text.heads());
    assert!(matches!(
        mine.load_incremental(&bytes),
        Err(Error::NewerSchema { .. })
    ));
    assert_eq!(mine.heads(), before);
}

#[test]
fn garbage_and_truncated_bytes_are_refused_with_a_clear_error() {
    let mut w = World::new();
    w.anna
        .create_article(T0, None, "Doel", "Een tekst van enige lengte.")
        .unwrap();
    let bytes = w.anna.docs().text.save();
    for bad in [
        b"not an automerge document".to_vec(),
        vec![],
        bytes[..bytes.len() / 2].to_vec(),
        bytes[..bytes.len() - 1].to_vec(),
    ] {
        let err = TextDoc::load(&bad).map(|_| ()).unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "{err:?}");
        is_sentence(&err.to_string());
    }
    // A process document is not a text document.
    let err = TextDoc::load(&w.server.process.save())
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("process document, not a text document"),
        "{err}"
    );
    // A plain Automerge document is not a Klad document.
    let plain = automerge::Automerge::new();
    let mut plain = plain;
    plain
        .transact::<_, _, automerge::AutomergeError>(|tx| tx.put(automerge::ROOT, "x", 1))
        .unwrap();
    let err = ContributionsDoc::load(&plain.save())
        .map(|_| ())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not a Klad contributions document"),
        "{err}"
    );
    // Garbage arriving as changes is refused and changes nothing.
    let mut text = w.anna.docs().text.clone();
    let before = text.heads();
    assert!(text.load_incremental(b"\x85\x6f\x4a\x83garbage").is_err());
    assert_eq!(text.heads(), before);
}

#[test]
fn unknown_ids_give_not_found_sentences() {
    let mut w = World::new();
    let a = w.anna.create_article(T0, None, "Doel", "Tekst").unwrap();
    w.sync_all();
    let nope = ArticleId::from("no-such-article");
    let thread = ContributionId::from("no-such-thread");
    let errors = [
        w.anna.splice_body(T0, &nope, 0, 0, "x").unwrap_err(),
        w.anna.move_article(T0, &a, Some(&nope)).unwrap_err(),
        w.olga.comment(T0, &nope, 0, 1, "Hm").unwrap_err(),
        w.olga.reply(T0, &thread, "Hm").unwrap_err(),
        w.olga
            .answer(T0, &thread, AnswerStatus::Noted, "Hm")
            .unwrap_err(),
        w.anna.accept_suggestion(T0, &thread).unwrap_err(),
        w.fenna.hide(T0, &thread, "Spam").unwrap_err(),
        views::blame(w.anna.docs(), &nope).unwrap_err(),
        w.server
            .process
            .set_phase(T0, Some(&MemberId::from("stranger")), Phase::Consultation)
            .unwrap_err(),
    ];
    for err in errors {
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
        is_sentence(&err.to_string());
    }
    // Out-of-range edits and empty input are invalid, with sentences.
    for err in [
        w.anna.splice_body(T0, &a, 6, 0, "x").unwrap_err(),
        w.anna.splice_body(T0, &a, 2, 9, "").unwrap_err(),
        w.olga.comment(T0, &a, 3, 3, "Leeg bereik").unwrap_err(),
        w.olga.comment(T0, &a, 0, 2, "   ").unwrap_err(),
        w.server
            .process
            .set_phase(T0, None, Phase::Final)
            .unwrap_err(),
    ] {
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
        is_sentence(&err.to_string());
    }
    // Nothing of the refused edits reached the text.
    assert_eq!(w.anna.docs().text.body(&a).unwrap(), "Tekst");
}

proptest! {
    /// Flipping, cutting or splicing bytes of a real document never panics:
    /// it loads (if the damage happens to be harmless) or gives an error.
    #[test]
    fn damaged_bytes_never_panic(cut in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)) {
        let mut w = World::new();
        w.anna.create_article(T0, None, "Doel", "Een tekst.").unwrap();
        let mut bytes = w.anna.docs().text.save();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= b;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Err(e) = TextDoc::load(&bytes) {
            is_sentence(&e.to_string());
        }
    }
}
