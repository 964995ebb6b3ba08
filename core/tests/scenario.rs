//! One drafting process from start to end, through the public API.

mod common;
use common::*;
use klad_core::views::{self, SuggestionState, ThreadStatus};
use klad_core::*;

#[test]
fn a_process_from_draft_to_final() {
    let mut w = World::new();
    let a1 = w
        .anna
        .create_article(
            T0,
            None,
            "Doel",
            "Deze verordening regelt het groen in de buurt.",
        )
        .unwrap();
    let a2 = w
        .anna
        .create_article(T0 + 1, Some(&a1), "Bomen", "Elke straat krijgt bomen.")
        .unwrap();
    w.sync_all();

    let arts = views::articles(w.otto.docs());
    assert_eq!(arts.len(), 2);
    assert_eq!(arts[0].label, "Artikel 1");
    assert_eq!(arts[1].heading, "Bomen");

    // Official comments on "bomen" in article 2, offline; Bram edits around it.
    let body = w.olga.docs().text.body(&a2).unwrap();
    let start = body.find("bomen").unwrap();
    let c = w
        .olga
        .comment(T0 + 10, &a2, start, start + 5, "Welke soort bomen?")
        .unwrap();
    w.bram
        .splice_body(T0 + 11, &a2, 0, 0, "Vanaf 2027: ")
        .unwrap();
    w.sync_all();
    let threads = views::threads(w.anna.docs(), Some(&a2), T0 + 10 + 3 * DAY).unwrap();
    assert_eq!(threads.len(), 1);
    match &threads[0].anchor {
        AnchorView::Live { text, .. } => assert_eq!(text, "bomen"),
        other => panic!("anchor should be live, is {other:?}"),
    }
    assert_eq!(threads[0].status, ThreadStatus::Open);
    assert_eq!(threads[0].days_waiting, Some(3));
    assert_eq!(threads[0].author.label, "Olga");

    // Anna replies, Olga answers formally, Anna resolves.
    w.anna.reply(T0 + 20, &c, "Inheemse soorten.").unwrap();
    w.olga
        .answer(T0 + 30, &c, AnswerStatus::Noted, "Dat nemen we mee.")
        .unwrap();
    w.sync_all();
    let t = &views::threads(w.otto.docs(), None, T0 + 40).unwrap()[0];
    assert_eq!(t.status, ThreadStatus::Answered);
    assert_eq!(t.days_waiting, None);
    assert_eq!(t.replies.len(), 1);
    w.anna.resolve(T0 + 50, &c).unwrap();
    w.sync_all();
    let t = &views::threads(w.otto.docs(), None, T0 + 60).unwrap()[0];
    assert_eq!(t.status, ThreadStatus::Resolved);
    // An observer cannot reopen it; a drafter can, and resolving again closes it.
    let err = w.otto.reopen(T0 + 55, &c).unwrap_err();
    assert_eq!(
        err.to_string(),
        "As an observer, you cannot resolve or reopen a thread: only drafters or facilitators can."
    );

    // A suggestion by the official, accepted by a drafter, changes the text.
    let body = w.olga.docs().text.body(&a1).unwrap();
    let start = body.find("het groen").unwrap();
    let s = w
        .olga
        .suggest(
            T0 + 70,
            &a1,
            start,
            start + 9,
            "bomen en struiken",
            "Concreter.",
        )
        .unwrap();
    w.sync_all();
    assert_eq!(views::open_suggestions(w.anna.docs(), T0).unwrap().len(), 1);
    w.anna.accept_suggestion(T0 + 80, &s).unwrap();
    w.sync_all();
    assert_eq!(
        w.otto.docs().text.body(&a1).unwrap(),
        "Deze verordening regelt bomen en struiken in de buurt."
    );
    let st = views::threads(w.otto.docs(), Some(&a1), T0).unwrap();
    assert_eq!(st[0].suggestion, Some(SuggestionState::Accepted));
    assert!(
        views::open_suggestions(w.anna.docs(), T0)
            .unwrap()
            .is_empty()
    );

    // Facilitator enters a comment for Piet, and hides an abusive reply.
    let piet = w
        .fenna
        .enter_on_behalf(
            T0 + 90,
            "Piet",
            OnBehalf::Comment {
                article: a1.clone(),
                start: 0,
                end: 4,
                text: "Goed begin.".into(),
            },
        )
        .unwrap();
    let rude = w.bram.reply(T0 + 91, &c, "Onzin!!").unwrap();
    w.sync_all();
    w.fenna.hide(T0 + 92, &rude, "Persoonlijke aanval").unwrap();
    w.sync_all();
    let all = views::threads(w.otto.docs(), None, T0 + 100).unwrap();
    let piet_thread = all.iter().find(|t| t.id == piet).unwrap();
    assert_eq!(
        piet_thread.author.label,
        "entered by Fenna on behalf of Piet"
    );
    let c_thread = all.iter().find(|t| t.id == c).unwrap();
    let hidden = c_thread.replies.iter().find(|r| r.id == rude).unwrap();
    assert_eq!(hidden.text, "");
    assert_eq!(
        hidden.hidden.as_ref().unwrap().reason,
        "Persoonlijke aanval"
    );

    // Blame and history name the people who wrote things.
    let blame = views::blame(w.otto.docs(), &a2).unwrap();
    assert_eq!(blame[0].name, "Bram");
    assert_eq!(blame[0].text, "Vanaf 2027: ");
    assert_eq!(blame[1].name, "Anna");
    let history = views::history(w.otto.docs()).unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.name == "Olga" && h.message.starts_with("comment"))
    );

    // What changed since Otto last read.
    w.otto.mark_read(T0 + 200).unwrap();
    w.anna.splice_body(T0 + 201, &a2, 0, 0, "X").unwrap();
    let q = w.olga.comment(T0 + 202, &a2, 0, 1, "Wat is X?").unwrap();
    w.sync_all();
    let ch = views::changes_since_read(w.otto.docs(), w.otto.member_id()).unwrap();
    assert_eq!(ch.since, Some(T0 + 200));
    assert_eq!(ch.articles.len(), 1);
    assert_eq!(ch.articles[0].article, a2);
    assert_eq!(ch.new_threads, vec![q]);

    // Consultation: the text freezes.
    w.set_phase(Phase::Consultation);
    let err = w.anna.splice_body(T0 + 300, &a1, 0, 0, "Y").unwrap_err();
    assert!(matches!(err, Error::NotAllowed(_)));
    assert!(err.to_string().contains("consultation phase"), "{err}");
}

/// A client that bypasses the rules and writes statements its role may not
/// make into its own document changes nothing anyone reads.
#[test]
fn forged_statements_do_not_count() {
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ROOT, ReadDoc, ScalarValue};

    let mut w = World::new();
    let a = w
        .anna
        .create_article(T0, None, "Doel", "Groen in de buurt.")
        .unwrap();
    w.sync_all();
    let c = w.olga.comment(T0 + 1, &a, 0, 5, "Hoe groen?").unwrap();
    w.sync_all();

    // Bram, a drafter, writes a formal answer and a moderation act directly
    // into his own document, as a modified app could.
    let bram = w.bram.member_id().clone();
    let doc = w.bram.docs_mut().contributions.get_mut(&bram).unwrap();
    let am = doc.automerge_mut();
    let items = match am.get(ROOT, "items").unwrap().unwrap() {
        (automerge::Value::Object(ObjType::Map), id) => id,
        _ => unreachable!(),
    };
    am.transact::<_, _, automerge::AutomergeError>(|tx| {
        let o = tx.put_object(&items, "forged-answer", ObjType::Map)?;
        tx.put(&o, "kind", "answer")?;
        tx.put(&o, "created_at", ScalarValue::Int(T0 + 2))?;
        tx.put(&o, "thread", c.as_str())?;
        tx.put(&o, "status", "adopted")?;
        tx.put(&o, "reason", "Ik beslis dit zelf.")?;
        let m = tx.put_object(&items, "forged-hide", ObjType::Map)?;
        tx.put(&m, "kind", "moderation")?;
        tx.put(&m, "created_at", ScalarValue::Int(T0 + 3))?;
        tx.put(&m, "target", c.as_str())?;
        tx.put(&m, "hidden", true)?;
        tx.put(&m, "reason", "Weg ermee.")?;
        Ok(())
    })
    .unwrap();
    w.sync_all();
    // The forged items are there for anyone to inspect in the history...
    assert!(w.otto.docs().contributions[&bram].contains(&ContributionId::from("forged-answer")));
    // ...but the thread is still open, unanswered and visible.
    let t = &views::threads(w.otto.docs(), None, T0 + 10).unwrap()[0];
    assert_eq!(t.status, ThreadStatus::Open);
    assert!(t.answers.is_empty());
    assert!(t.hidden.is_none());

    // A contributions document held under the wrong member is ignored entirely.
    let mut docs = w.otto.docs().clone();
    let olga = w.olga.member_id().clone();
    let bram_doc = docs.contributions[&bram].clone();
    docs.contributions.insert(olga, bram_doc);
    assert!(views::threads(&docs, None, T0).unwrap().is_empty());
}
