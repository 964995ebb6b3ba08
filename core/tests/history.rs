//! Reading the past through the public API: moments, the process at a
//! version or a time (texts and the comments anchored to them), word diffs
//! between versions, and named versions.

mod common;
use common::*;
use klad_core::*;

const MIN: i64 = 60 * 1000;
const BODY: &str = "De gemeente zorgt voor groen in de wijk.";

/// Anna writes an article (T0), Olga comments on "groen" (T0 + 5 min), Anna
/// rewrites "groen" to "bomen en struiken" (T0 + 10 min).
fn story() -> (World, ArticleId) {
    let mut w = World::new();
    let art = w.anna.create_article(T0, None, "Groen", BODY).unwrap();
    w.sync_all();
    let start = BODY.find("groen").unwrap();
    w.olga
        .comment(T0 + 5 * MIN, &art, start, start + 5, "Welk groen?")
        .unwrap();
    w.anna
        .replace_range(T0 + 10 * MIN, &art, start, start + 5, "bomen en struiken")
        .unwrap();
    w.sync_all();
    (w, art)
}

fn body_of(docs: &ProcessDocs) -> Vec<String> {
    views::articles(docs).into_iter().map(|a| a.body).collect()
}

#[test]
fn the_text_and_its_comments_as_they_were_at_a_time() {
    let (w, _) = story();
    let docs = w.fenna.docs();
    let now = docs.at(&docs.version()).unwrap();
    assert_eq!(
        body_of(&now),
        ["De gemeente zorgt voor bomen en struiken in de wijk."]
    );

    let before_all = docs.at(&docs.version_at_time(T0 - MIN)).unwrap();
    assert!(views::articles(&before_all).is_empty());

    let written = docs.at(&docs.version_at_time(T0 + MIN)).unwrap();
    assert_eq!(body_of(&written), [BODY]);
    assert!(views::threads(&written, None, T0).unwrap().is_empty());

    let commented = docs.at(&docs.version_at_time(T0 + 6 * MIN)).unwrap();
    assert_eq!(body_of(&commented), [BODY]);
    let threads = views::threads(&commented, None, T0 + 6 * MIN).unwrap();
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].text, "Welk groen?");
    match &threads[0].anchor {
        AnchorView::Live { quote, .. } => assert_eq!(quote, "groen"),
        other => panic!("the comment sits on its passage then: {other:?}"),
    }
    // Reading the past changed nothing in the present.
    assert_eq!(
        body_of(docs),
        ["De gemeente zorgt voor bomen en struiken in de wijk."]
    );
}

#[test]
fn moments_list_every_change_with_its_time_author_and_version() {
    let (w, art) = story();
    let docs = w.fenna.docs();
    let anna = w.anna.member_id().clone();
    let text = text_moments(docs).unwrap();
    assert_eq!(text.last().unwrap().heads, {
        let mut h = docs.text.heads();
        h.sort();
        h
    });
    let by_anna: Vec<&Moment> = text
        .iter()
        .filter(|m| m.author.as_ref() == Some(&anna))
        .collect();
    assert_eq!(by_anna.len(), 2, "{text:#?}");
    assert_eq!(by_anna[0].time_ms, T0);
    assert_eq!(by_anna[1].time_ms, T0 + 10 * MIN);
    // Each moment's heads are the text as it was right after it.
    let first = docs.text.at(&by_anna[0].heads).unwrap();
    assert_eq!(first.body(&art).unwrap(), BODY);

    // The whole process: Olga's comment sits between Anna's two changes.
    let olga = w.olga.member_id().clone();
    let all = klad_core::history::moments(docs).unwrap();
    assert!(all.windows(2).all(|p| p[0].time_ms <= p[1].time_ms));
    let comment = all
        .iter()
        .find(|m| m.doc == DocKind::Contributions && m.author.as_ref() == Some(&olga))
        .expect("Olga's comment is a moment");
    assert_eq!(comment.owner.as_ref(), Some(&olga));
    assert_eq!(comment.time_ms, T0 + 5 * MIN);
    assert!(
        comment.message.starts_with("comment"),
        "{}",
        comment.message
    );
    assert!(
        all.iter()
            .any(|m| m.doc == DocKind::Process && m.author.is_none())
    );
}

#[test]
fn a_word_diff_between_two_versions_of_an_article() {
    let (mut w, art) = story();
    let first = w.fenna.docs().version_at_time(T0).text;
    let now = w.fenna.docs().version().text;
    let d = article_diff(&w.fenna.docs().text, &art, &first, &now).unwrap();
    assert!(d.in_old && d.in_new);
    assert_eq!(d.heading, vec![DiffSpan::Same("Groen".into())]);
    assert_eq!(
        d.body,
        vec![
            DiffSpan::Same("De gemeente zorgt voor ".into()),
            DiffSpan::Removed("groen".into()),
            DiffSpan::Added("bomen en struiken".into()),
            DiffSpan::Same(" in de wijk.".into()),
        ]
    );
    // Backwards, the same change the other way round.
    let back = article_diff(&w.fenna.docs().text, &art, &now, &first).unwrap();
    assert!(back.body.contains(&DiffSpan::Added("groen".into())));

    // An article written later did not exist in the old version.
    let later = w
        .anna
        .create_article(
            T0 + 20 * MIN,
            Some(&art),
            "Bomen",
            "Elke straat krijgt bomen.",
        )
        .unwrap();
    w.sync_all();
    let now = w.fenna.docs().version().text;
    let d = article_diff(&w.fenna.docs().text, &later, &first, &now).unwrap();
    assert!(!d.in_old && d.in_new);
    assert_eq!(
        d.body,
        vec![DiffSpan::Added("Elke straat krijgt bomen.".into())]
    );
    let err = article_diff(
        &w.fenna.docs().text,
        &ArticleId::from("nowhere"),
        &first,
        &now,
    )
    .unwrap_err();
    assert_eq!(err.code(), "no-such-article");
}

#[test]
fn a_version_this_device_lacks_is_refused_with_its_reason() {
    let (mut w, art) = story();
    w.bram
        .splice_body(T0 + 30 * MIN, &art, 0, 0, "Ook ")
        .unwrap();
    let unseen = w.bram.docs().version();
    let err = w.anna.docs().at(&unseen).unwrap_err();
    assert_eq!(err.code(), "version-not-here");
    assert!(matches!(err, Error::NotFound(_)));
    let err = article_diff(&w.anna.docs().text, &art, &[], &unseen.text).unwrap_err();
    assert_eq!(err.code(), "version-not-here");
}

#[test]
fn facilitators_name_versions_and_others_may_not() {
    let (mut w, art) = story();
    let id = w
        .fenna
        .name_version(T0 + 15 * MIN, "  Concept voor inspraak ")
        .unwrap();
    let fenna = w.fenna.member_id().clone();
    let named = w.fenna.named_versions();
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].id, id);
    assert_eq!(named[0].name, "Concept voor inspraak");
    assert_eq!(named[0].by.as_ref(), Some(&fenna));
    assert_eq!(named[0].at_ms, T0 + 15 * MIN);
    assert_eq!(named[0].version, w.fenna.docs().version());

    // Only facilitators: an official is refused with the rule's reason.
    let err = w
        .olga
        .name_version(T0 + 16 * MIN, "Mijn versie")
        .unwrap_err();
    assert_eq!(err.code(), "role-may-not");
    assert_eq!(
        err.reason(),
        Reason::RoleMayNot {
            role: Role::Official,
            action: Action::NameVersion
        }
    );
    assert_eq!(
        err.message(Lang::Nl),
        "Als ambtenaar mag u dit niet: een versie van de tekst een naam geven. Alleen facilitators mogen dat."
    );
    assert!(w.olga.named_versions().is_empty());
    let err = w.fenna.name_version(T0 + 16 * MIN, "  ").unwrap_err();
    assert_eq!(err.code(), "empty-version-name");

    // The name travels with the process document (the server's copy) and
    // still shows the text as it was when it was named.
    w.sync_all();
    w.anna
        .replace_range(T0 + 20 * MIN, &art, 0, 2, "Het")
        .unwrap();
    w.sync_all();
    let named = w.server.process.named_version(&id).unwrap();
    let then = w.anna.docs().at(&named.version).unwrap();
    assert_eq!(
        body_of(&then),
        ["De gemeente zorgt voor bomen en struiken in de wijk."]
    );
    assert_eq!(
        body_of(w.anna.docs()),
        ["Het gemeente zorgt voor bomen en struiken in de wijk."]
    );
    let threads = views::threads(&then, None, T0 + 20 * MIN).unwrap();
    assert_eq!(
        threads.len(),
        1,
        "Olga's comment belongs to the named version"
    );
    assert_eq!(
        w.server.process.named_version("nope").unwrap_err().code(),
        "no-such-named-version"
    );
    // The operator (no member) may name a version too, in any phase.
    w.set_phase(Phase::Consultation);
    w.set_phase(Phase::Final);
    let version = w.server.version();
    w.server
        .process
        .name_version(T0 + DAY, None, "Vastgesteld", &version)
        .unwrap();
    let names: Vec<String> = w
        .server
        .process
        .named_versions()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["Concept voor inspraak", "Vastgesteld"]);
}
