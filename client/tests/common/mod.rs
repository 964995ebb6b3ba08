//! What the tests of klad-client share: a process with one article, the
//! other phone, and tokens that make "landed once, intact, in place"
//! readable off a text.
#![allow(dead_code)]

use std::collections::HashSet;

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ROOT, ReadDoc};
use klad_core::{ArticleId, DocId, MemberId, ProcessDocs, ProcessId, Role, Session};

/// A fixed clock start (2026-01-05, ms).
pub const T0: i64 = 1_767_571_200_000;

/// The body every test starts from: three tokens.
pub const BODY: &str = "[a][b][c]";
pub const HEADING: &str = "Heading";

pub fn phone_actor() -> ActorId {
    ActorId::from([1u8; 16])
}

pub fn remote_actor() -> ActorId {
    ActorId::from([9u8; 16])
}

/// A process with a drafter (Anna, this phone) and an official (Olga), and
/// one article; the documents as the server would hand them out.
pub fn process() -> (ProcessDocs, MemberId, MemberId, ArticleId) {
    let mut docs = ProcessDocs::create(
        T0,
        &ProcessId::from("p1"),
        "Verordening Groene Buurt",
        &DocId::from("text"),
    )
    .unwrap();
    let anna = docs
        .add_member(
            T0,
            None,
            "Anna",
            Role::Drafter,
            &DocId::from("contrib-Anna"),
        )
        .unwrap();
    docs.process
        .register_device(T0, &anna, &phone_actor(), None)
        .unwrap();
    let olga = docs
        .add_member(
            T0,
            None,
            "Olga",
            Role::Official,
            &DocId::from("contrib-Olga"),
        )
        .unwrap();
    docs.process
        .register_device(T0, &olga, &ActorId::from([3u8; 16]), None)
        .unwrap();
    let mut s = Session::new(docs, anna.clone(), ActorId::from([2u8; 16]));
    let article = s.create_article(T0, None, HEADING, BODY).unwrap();
    (s.into_docs(), anna, olga, article)
}

/// The other phone: a fork of the text with another actor.
pub struct Remote {
    pub doc: Automerge,
    pub article: ArticleId,
}

impl Remote {
    pub fn body_obj(&self) -> automerge::ObjId {
        let articles = self.doc.get(ROOT, "articles").unwrap().unwrap().1;
        let article = self
            .doc
            .get(&articles, self.article.as_str())
            .unwrap()
            .unwrap()
            .1;
        self.doc.get(&article, "body").unwrap().unwrap().1
    }

    pub fn body(&self) -> String {
        self.doc.text(self.body_obj()).unwrap()
    }

    pub fn insert(&mut self, pos: usize, s: &str) {
        let body = self.body_obj();
        let mut tx = self.doc.transaction();
        tx.splice_text(&body, pos, 0, s).unwrap();
        tx.commit();
    }
}

// ---------------------------------------------------------------------------
// Tokens: every test types whole tokens like "[k7]" (the app) and "{r3}"
// (the other phone), so "landed once, intact, in place" can be read off.
// ---------------------------------------------------------------------------

/// The text as tokens, or `None` if any token was split or damaged.
pub fn tokens(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(open) = chars.next() {
        let close = match open {
            '[' => ']',
            '{' => '}',
            '(' => ')',
            _ => return None,
        };
        let mut t = String::from(open);
        loop {
            let c = chars.next()?;
            t.push(c);
            if c == close {
                break;
            }
            if !c.is_ascii_alphanumeric() {
                return None;
            }
        }
        out.push(t);
    }
    Some(out)
}

/// Character positions between tokens (start and end included).
pub fn boundaries(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(
            text.chars()
                .enumerate()
                .filter(|(_, c)| matches!(c, ']' | '}' | ')'))
                .map(|(i, _)| i + 1),
        )
        .collect()
}

/// Every token of `model` is in `text`, in the same order (whatever else
/// `text` has between them).
pub fn assert_keeps_order(model: &str, text: &str, what: &str) {
    let model =
        tokens(model).unwrap_or_else(|| panic!("{what}: the app's model is damaged: {model}"));
    let all = tokens(text).unwrap_or_else(|| panic!("{what}: a token was split: {text}"));
    let in_model: HashSet<&String> = model.iter().collect();
    let kept: Vec<String> = all.into_iter().filter(|t| in_model.contains(t)).collect();
    assert_eq!(
        kept, model,
        "{what}: the text does not keep the tokens of the app's model in its order: {text}"
    );
}

/// Each of `expected` occurs exactly once in `text`.
pub fn assert_once(text: &str, expected: &[String], what: &str) {
    let all = tokens(text).unwrap_or_else(|| panic!("{what}: a token was split: {text}"));
    for t in expected {
        let n = all.iter().filter(|x| *x == t).count();
        assert_eq!(n, 1, "{what}: {t} occurs {n} times in {text}");
    }
}
