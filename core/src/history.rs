//! Reading the past: the moments of a process's history, the process as it
//! was at a version or a time, a word-level diff between two versions of an
//! article, and the versions a facilitator named.
//!
//! A [`Version`] is the heads of the text document and of each member's
//! contributions document: what a device held at one moment. [`ProcessDocs::at`]
//! forks every document at its heads, so every view in [`crate::views`] reads
//! the past exactly as it reads the present (articles, threads with their
//! anchors, blame). The process document is not rewound: names, roles and
//! devices are read as they are now, so a person keeps their name in old
//! versions.

use std::collections::BTreeMap;

use automerge::{ActorId, Automerge, ChangeHash, ObjType, ROOT, ReadDoc};
use serde::{Deserialize, Serialize};

use crate::document::{DocKind, KladDocument, get_obj};
use crate::error::{Error, Result};
use crate::ids::{ArticleId, MemberId};
use crate::process::ProcessInfo;
use crate::reason::Reason;
use crate::session::ProcessDocs;
use crate::text::TextDoc;

/// One change in a document's history: a moment a page can offer
/// ("the text as it was on 3 March 14:20").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moment {
    /// Which document it changed.
    pub doc: DocKind,
    /// For a contributions document: whose.
    pub owner: Option<MemberId>,
    /// The change.
    pub hash: ChangeHash,
    /// The document's heads right after this change, counting the changes
    /// listed before it in the same document (its version at that moment).
    pub heads: Vec<ChangeHash>,
    /// When (ms since the Unix epoch; Automerge keeps whole seconds, the
    /// writer's clock).
    pub time_ms: i64,
    /// The Automerge actor (device) that wrote it.
    pub actor: ActorId,
    /// The member whose registered device that is (`None` for the server's
    /// own changes and for devices nobody registered).
    pub author: Option<MemberId>,
    /// What it did, as the operation recorded it (`edit body`, `comment <id>`).
    pub message: String,
}

/// The moments of one document, in causal order (every change after the
/// changes it depends on, then by time).
fn doc_moments(
    doc: &Automerge,
    kind: DocKind,
    owner: Option<&MemberId>,
    info: &ProcessInfo,
) -> Vec<Moment> {
    let mut heads: Vec<ChangeHash> = Vec::new();
    doc.get_changes(&[])
        .into_iter()
        .map(|c| {
            heads.retain(|h| !c.deps().contains(h));
            heads.push(c.hash());
            let actor = c.actor_id().clone();
            let author = match kind {
                DocKind::Process => None,
                _ => info
                    .member_for_actor(&actor.to_hex_string())
                    .map(|m| m.id.clone()),
            };
            Moment {
                doc: kind,
                owner: owner.cloned(),
                hash: c.hash(),
                heads: sorted(heads.clone()),
                time_ms: c.timestamp().saturating_mul(1000),
                actor,
                author,
                message: c.message().map(str::to_owned).unwrap_or_default(),
            }
        })
        .collect()
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// Every moment of the text document, in causal order.
pub fn text_moments(docs: &ProcessDocs) -> Result<Vec<Moment>> {
    let info = docs.process.info()?;
    Ok(doc_moments(
        docs.text.automerge(),
        DocKind::Text,
        None,
        &info,
    ))
}

/// Every moment of the process: the process document, the text and each
/// member's contributions, ordered by time (and, within a document and a
/// second, causally).
pub fn moments(docs: &ProcessDocs) -> Result<Vec<Moment>> {
    let info = docs.process.info()?;
    let mut all: Vec<(usize, Moment)> = Vec::new();
    let mut add = |ms: Vec<Moment>| all.extend(ms.into_iter().enumerate());
    add(doc_moments(
        docs.process.automerge(),
        DocKind::Process,
        None,
        &info,
    ));
    add(doc_moments(
        docs.text.automerge(),
        DocKind::Text,
        None,
        &info,
    ));
    for (m, doc) in &docs.contributions {
        if info.members.contains_key(m) && doc.owner().as_ref() == Some(m) {
            add(doc_moments(
                doc.automerge(),
                DocKind::Contributions,
                Some(m),
                &info,
            ));
        }
    }
    // A stable sort by time keeps each document's causal order within a second.
    all.sort_by_key(|(i, m)| (m.time_ms, *i));
    Ok(all.into_iter().map(|(_, m)| m).collect())
}

/// The heads of `doc` as it was at `time_ms`: its changes made at or before
/// then (by their writers' clocks), without any change whose dependencies
/// came later (a skewed clock cannot make a version that never existed).
fn heads_at_time(doc: &Automerge, time_ms: i64) -> Vec<ChangeHash> {
    let mut included = std::collections::HashSet::new();
    let mut heads: Vec<ChangeHash> = Vec::new();
    for c in doc.get_changes(&[]) {
        if c.timestamp().saturating_mul(1000) <= time_ms
            && c.deps().iter().all(|d| included.contains(d))
        {
            included.insert(c.hash());
            heads.retain(|h| !c.deps().contains(h));
            heads.push(c.hash());
        }
    }
    sorted(heads)
}

/// A version of a process: the heads of its text and of each member's
/// contributions document. Members absent from `contributions` had nothing
/// yet (they are left out of [`ProcessDocs::at`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Heads of the text document.
    pub text: Vec<ChangeHash>,
    /// Heads of each member's contributions document.
    pub contributions: BTreeMap<MemberId, Vec<ChangeHash>>,
}

impl ProcessDocs {
    /// The version these documents are at now.
    pub fn version(&self) -> Version {
        Version {
            text: sorted(self.text.heads()),
            contributions: self
                .contributions
                .iter()
                .map(|(m, d)| (m.clone(), sorted(d.heads())))
                .filter(|(_, h)| !h.is_empty())
                .collect(),
        }
    }

    /// The version as it was at `time_ms` (ms since the Unix epoch), by the
    /// clocks of the devices that wrote the changes.
    pub fn version_at_time(&self, time_ms: i64) -> Version {
        Version {
            text: heads_at_time(self.text.automerge(), time_ms),
            contributions: self
                .contributions
                .iter()
                .map(|(m, d)| (m.clone(), heads_at_time(d.automerge(), time_ms)))
                .filter(|(_, h)| !h.is_empty())
                .collect(),
        }
    }

    /// The process as it was at `version`, to read with every view
    /// ([`crate::views::articles`], [`crate::views::threads`], ...). The
    /// process document stays as it is now (see the module documentation).
    /// Read it only: it is a copy, and writing to it changes nothing here.
    /// Fails with [`Reason::VersionNotHere`] when this device lacks a change
    /// the version names.
    pub fn at(&self, version: &Version) -> Result<ProcessDocs> {
        let mut contributions = BTreeMap::new();
        for (m, heads) in &version.contributions {
            let doc = self
                .contributions
                .get(m)
                .ok_or(Error::NotFound(Reason::VersionNotHere {
                    kind: DocKind::Contributions,
                }))?;
            contributions.insert(m.clone(), doc.at(heads)?);
        }
        Ok(ProcessDocs {
            process: self.process.clone(),
            text: self.text.at(&version.text)?,
            contributions,
        })
    }
}

/// A piece of a word-level diff. Concatenating the `Same` and `Removed`
/// pieces in order gives the old text; the `Same` and `Added` pieces, the new.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "text", rename_all = "snake_case")]
pub enum DiffSpan {
    /// In both versions.
    Same(String),
    /// Only in the new version.
    Added(String),
    /// Only in the old version.
    Removed(String),
}

impl DiffSpan {
    /// The text of the piece.
    pub fn text(&self) -> &str {
        match self {
            DiffSpan::Same(t) | DiffSpan::Added(t) | DiffSpan::Removed(t) => t,
        }
    }
}

/// The word-level difference from `old` to `new`: runs of unchanged, added
/// and removed words (with the spaces between them), on word boundaries.
/// Where a passage was replaced, the removed words come before the added ones.
///
/// The diff is the `similar` crate's (Myers' algorithm over the words and
/// whitespace runs of both texts): it is well kept and widely used, and a
/// diff is easy to get subtly wrong. No deadline is set, so the result
/// depends on the texts only (views are deterministic); Myers is fast for
/// texts of an article's size. A minimal diff may keep a lone space between
/// two changes ("groen" → "bomen", " ", +"en struiken "); for people, one
/// replaced passage reads better, so such spaces join the change around
/// them and whitespace both sides of a change share moves out of it.
pub fn word_diff(old: &str, new: &str) -> Vec<DiffSpan> {
    let diff = similar::TextDiff::from_words(old, new);
    let mut tokens: Vec<DiffSpan> = Vec::new();
    for change in diff.iter_all_changes() {
        let word = change.value().to_owned();
        tokens.push(match change.tag() {
            similar::ChangeTag::Equal => DiffSpan::Same(word),
            similar::ChangeTag::Insert => DiffSpan::Added(word),
            similar::ChangeTag::Delete => DiffSpan::Removed(word),
        });
    }
    let mut out: Vec<DiffSpan> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if let DiffSpan::Same(t) = &tokens[i] {
            push(&mut out, DiffSpan::Same(t.clone()));
            i += 1;
            continue;
        }
        // A changed region: changes, and whitespace kept between two changes.
        let (mut removed, mut added) = (String::new(), String::new());
        while i < tokens.len() {
            match &tokens[i] {
                DiffSpan::Removed(t) => removed.push_str(t),
                DiffSpan::Added(t) => added.push_str(t),
                DiffSpan::Same(t)
                    if t.chars().all(char::is_whitespace)
                        && tokens
                            .get(i + 1)
                            .is_some_and(|n| !matches!(n, DiffSpan::Same(_))) =>
                {
                    removed.push_str(t);
                    added.push_str(t);
                }
                DiffSpan::Same(_) => break,
            }
            i += 1;
        }
        let lead = common_whitespace(removed.chars(), added.chars());
        let trail = common_whitespace(removed.chars().rev(), added.chars().rev());
        let (lead, trail) = if lead + trail > removed.len().min(added.len()) {
            (lead, 0)
        } else {
            (lead, trail)
        };
        push(&mut out, DiffSpan::Same(removed[..lead].to_owned()));
        push(
            &mut out,
            DiffSpan::Removed(removed[lead..removed.len() - trail].to_owned()),
        );
        push(
            &mut out,
            DiffSpan::Added(added[lead..added.len() - trail].to_owned()),
        );
        push(
            &mut out,
            DiffSpan::Same(removed[removed.len() - trail..].to_owned()),
        );
    }
    out
}

/// How many bytes of whitespace the two character sequences start with in common.
fn common_whitespace(a: impl Iterator<Item = char>, b: impl Iterator<Item = char>) -> usize {
    a.zip(b)
        .take_while(|(x, y)| x == y && x.is_whitespace())
        .map(|(x, _)| x.len_utf8())
        .sum()
}

/// Appends `span` to `spans`, joining it to a last span of the same kind;
/// empty spans are dropped.
fn push(spans: &mut Vec<DiffSpan>, span: DiffSpan) {
    if span.text().is_empty() {
        return;
    }
    match (spans.last_mut(), span) {
        (Some(DiffSpan::Same(t)), DiffSpan::Same(w))
        | (Some(DiffSpan::Added(t)), DiffSpan::Added(w))
        | (Some(DiffSpan::Removed(t)), DiffSpan::Removed(w)) => t.push_str(&w),
        (_, span) => spans.push(span),
    }
}

/// The heading and body of an article at a version of the text; `None` if
/// the article did not exist then.
fn article_at(
    text: &TextDoc,
    heads: &[ChangeHash],
    id: &ArticleId,
) -> Result<Option<(String, String)>> {
    let doc = text.automerge();
    if heads
        .iter()
        .any(|h| doc.get_change_meta_by_hash(h).is_none())
    {
        return Err(Error::NotFound(Reason::VersionNotHere {
            kind: DocKind::Text,
        }));
    }
    let Some(articles) = get_obj(doc, &ROOT, "articles", ObjType::Map) else {
        return Err(Error::NotFound(Reason::TextNotHere));
    };
    let article = match doc.get_at(&articles, id.as_str(), heads)? {
        Some((automerge::Value::Object(ObjType::Map), obj)) => obj,
        _ => return Ok(None),
    };
    let field = |name: &str| -> Result<String> {
        match doc.get_at(&article, name, heads)? {
            Some((automerge::Value::Object(ObjType::Text), obj)) => Ok(doc.text_at(&obj, heads)?),
            _ => Err(Error::Corrupt(Reason::ArticleDamaged {
                article: id.clone(),
            })),
        }
    };
    Ok(Some((field("heading")?, field("body")?)))
}

/// The word-level difference of one article between two versions of the text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleDiff {
    /// The article.
    pub id: ArticleId,
    /// Whether it existed in the old version (if not, everything is added).
    pub in_old: bool,
    /// Whether it exists in the new version (if not, everything is removed).
    pub in_new: bool,
    /// The heading's diff.
    pub heading: Vec<DiffSpan>,
    /// The body's diff.
    pub body: Vec<DiffSpan>,
}

/// How article `id` changed from the text at `old` to the text at `new`
/// (heads of the text document, e.g. [`Version::text`] or [`Moment::heads`]).
/// An article that did not exist in one of them counts as empty there; one
/// that existed in neither is [`Reason::NoSuchArticle`].
pub fn article_diff(
    text: &TextDoc,
    id: &ArticleId,
    old: &[ChangeHash],
    new: &[ChangeHash],
) -> Result<ArticleDiff> {
    let before = article_at(text, old, id)?;
    let after = article_at(text, new, id)?;
    if before.is_none() && after.is_none() {
        return Err(Error::NotFound(Reason::NoSuchArticle {
            article: id.clone(),
        }));
    }
    let (in_old, in_new) = (before.is_some(), after.is_some());
    let (h0, b0) = before.unwrap_or_default();
    let (h1, b1) = after.unwrap_or_default();
    Ok(ArticleDiff {
        id: id.clone(),
        in_old,
        in_new,
        heading: word_diff(&h0, &h1),
        body: word_diff(&b0, &b1),
    })
}

/// A version a facilitator gave a name ("Concept voor inspraak").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedVersion {
    /// Its id (random, stable).
    pub id: String,
    /// The name people see.
    pub name: String,
    /// The facilitator who named it (`None`: the server's operator).
    pub by: Option<MemberId>,
    /// When it was named (ms since the Unix epoch).
    pub at_ms: i64,
    /// The version it names.
    pub version: Version,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old_text(spans: &[DiffSpan]) -> String {
        spans
            .iter()
            .filter(|s| !matches!(s, DiffSpan::Added(_)))
            .map(DiffSpan::text)
            .collect()
    }

    fn new_text(spans: &[DiffSpan]) -> String {
        spans
            .iter()
            .filter(|s| !matches!(s, DiffSpan::Removed(_)))
            .map(DiffSpan::text)
            .collect()
    }

    /// True if byte `at` of `text` is not inside a word.
    fn on_boundary(text: &str, at: usize) -> bool {
        let before = text[..at].chars().next_back();
        let after = text[at..].chars().next();
        match (before, after) {
            (Some(b), Some(a)) => b.is_whitespace() || a.is_whitespace(),
            _ => true,
        }
    }

    #[test]
    fn a_replaced_word_is_removed_then_added() {
        let d = word_diff(
            "De gemeente zorgt voor groen in de wijk.",
            "De gemeente zorgt voor bomen in de wijk.",
        );
        assert_eq!(
            d,
            vec![
                DiffSpan::Same("De gemeente zorgt voor ".into()),
                DiffSpan::Removed("groen".into()),
                DiffSpan::Added("bomen".into()),
                DiffSpan::Same(" in de wijk.".into()),
            ]
        );
    }

    #[test]
    fn a_replacement_by_several_words_is_one_change() {
        let d = word_diff(
            "De gemeente zorgt voor groen in de wijk.",
            "De gemeente zorgt voor bomen en struiken in de wijk.",
        );
        assert_eq!(
            d,
            vec![
                DiffSpan::Same("De gemeente zorgt voor ".into()),
                DiffSpan::Removed("groen".into()),
                DiffSpan::Added("bomen en struiken".into()),
                DiffSpan::Same(" in de wijk.".into()),
            ]
        );
        // A removed word takes one of its spaces with it (which one is the
        // diff's choice; both read the same).
        let d = word_diff("een twee drie", "een drie");
        let changed: Vec<&DiffSpan> = d
            .iter()
            .filter(|s| !matches!(s, DiffSpan::Same(_)))
            .collect();
        assert!(
            matches!(changed.as_slice(), [DiffSpan::Removed(t)] if t.trim() == "twee"),
            "{d:?}"
        );
    }

    #[test]
    fn empty_sides() {
        assert_eq!(word_diff("", ""), vec![]);
        assert_eq!(
            word_diff("", "Nieuw"),
            vec![DiffSpan::Added("Nieuw".into())]
        );
        assert_eq!(word_diff("Oud", ""), vec![DiffSpan::Removed("Oud".into())]);
    }

    proptest::proptest! {
        /// The diff rebuilds both texts, never has two neighbours of one
        /// kind, and marks nothing changed between equal texts.
        #[test]
        fn the_diff_rebuilds_both_texts(
            old in "([a-e]{1,4}[ ,.\n]{1,2}){0,12}",
            new in "([a-e]{1,4}[ ,.\n]{1,2}){0,12}",
        ) {
            let d = word_diff(&old, &new);
            proptest::prop_assert_eq!(old_text(&d), old.clone());
            proptest::prop_assert_eq!(new_text(&d), new.clone());
            for pair in d.windows(2) {
                proptest::prop_assert!(
                    std::mem::discriminant(&pair[0]) != std::mem::discriminant(&pair[1]),
                    "{:?}", d
                );
            }
            // Changes fall on word boundaries: never inside a word of the
            // text they belong to.
            let (mut o, mut n) = (0, 0);
            for span in &d {
                let len = span.text().len();
                let (text, at) = match span {
                    DiffSpan::Same(_) => {
                        o += len;
                        n += len;
                        continue;
                    }
                    DiffSpan::Removed(_) => (&old, &mut o),
                    DiffSpan::Added(_) => (&new, &mut n),
                };
                proptest::prop_assert!(on_boundary(text, *at), "{:?} at {} of {:?}", d, *at, text);
                *at += len;
                proptest::prop_assert!(on_boundary(text, *at), "{:?} at {} of {:?}", d, *at, text);
            }
            let same = word_diff(&old, &old);
            proptest::prop_assert!(same.iter().all(|s| matches!(s, DiffSpan::Same(_))));
        }
    }
}
