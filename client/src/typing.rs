//! Typing: a resident's keystrokes, each placed where they typed it.
//!
//! A position only means something against a version of the text. The app
//! reads the text with its [`version`](Typing::version) and hands that version
//! back with every keystroke; the keystroke is then applied to the text *as
//! it was at that version* (plus this phone's own typing into it) and merged
//! into the text as it is now. A change from elsewhere that arrived in
//! between — before the keystroke, before the commit, or before a crash and
//! the replay after it — never moves it.
//!
//! Keystrokes are kept in a write-ahead journal (the caller stores each one
//! before the call that made it returns) and become one change per field per
//! typing window ([`Typing::commit`]). The journal entry records the version
//! it was typed against and the heads it applies at, so a replay after a
//! crash places it exactly as the commit would have. Entries leave the journal
//! only together with the stored change that contains them.
//!
//! Like the rest of this crate it does no IO: the caller stores what it is
//! given (see [`Commit`]) and reports back.

use std::collections::HashMap;

use automerge::{Change, ChangeHash};
use klad_core::{
    ArticleId, DocKind, Error, KladDocument, Reason, Result, Session, Splice, TextDoc,
};
use serde::{Deserialize, Serialize};

/// Versions whose committed typing is remembered, so that an app that keeps
/// typing into a version it read earlier types on top of its own keystrokes.
const REMEMBERED_VERSIONS: usize = 32;

/// One keystroke (or paste) as the journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keystroke {
    /// Its place in the journal (increasing; journals written before it
    /// was stored here keep it in their keys).
    #[serde(default)]
    pub seq: u64,
    /// The article typed into.
    pub article: String,
    /// Typed into the heading (otherwise the body).
    #[serde(default)]
    pub heading: bool,
    /// What was typed, in characters of the field as the app saw it.
    #[serde(flatten)]
    pub splice: Splice,
    /// The version of the text the app typed into (empty in journals written
    /// before versions existed: the text as it was when replayed).
    #[serde(default)]
    pub version: Vec<ChangeHash>,
    /// Where it applies: `version` plus this phone's own typing into that
    /// version that was already committed.
    #[serde(default)]
    pub base: Vec<ChangeHash>,
}

/// What a keystroke needs before it can be taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Prepared {
    /// Store this entry in the journal, then [`Typing::accept`] it.
    Append(Keystroke),
    /// Typing into another version is pending: [`Typing::commit`] it first,
    /// then prepare the keystroke again.
    CommitFirst,
}

/// Pending typing turned into changes, to be stored atomically with the
/// removal of the journal entries `seqs`; then [`Typing::committed`] (or, if
/// storing failed, [`Typing::abandon`]).
#[derive(Debug)]
pub struct Commit {
    /// The changes, already merged into the session's text.
    pub changes: Vec<Change>,
    /// The journal entries they contain.
    pub seqs: Vec<u64>,
    /// The text's heads before the changes were merged.
    pub before: Vec<ChangeHash>,
    version: Vec<ChangeHash>,
    after: Vec<ChangeHash>,
    /// The typing went onto a text that had changed since its version, and
    /// no set of heads describes what the app shows for it any more.
    moved: bool,
    /// The keystrokes it holds (out of the pending typing until the commit
    /// is stored or abandoned).
    keystrokes: Vec<Keystroke>,
}

/// The typing of one phone into one process's text.
#[derive(Debug, Default)]
pub struct Typing {
    /// Keystrokes in the journal and not yet committed, in order. All share
    /// one version and base.
    pending: Vec<Keystroke>,
    next_seq: u64,
    /// Per field with pending typing: the field's text with it applied, and
    /// that text's length in characters.
    typed: HashMap<(String, bool), (String, usize)>,
    /// Versions whose typing was committed onto the text as it was, with the
    /// heads after it (newest last): typing into them again goes on top.
    after: Vec<(Vec<ChangeHash>, Vec<ChangeHash>)>,
    /// Versions whose typing was committed onto a text that had changed
    /// since (newest last): no set of heads describes what the app shows
    /// for them any more, so typing into them again is refused (read again).
    superseded: Vec<Vec<ChangeHash>>,
}

impl Typing {
    /// Typing as a journal holds it (entries in any order). Entries written
    /// before versions existed apply at `heads`, the text as it is now.
    pub fn restore(mut journal: Vec<Keystroke>, heads: &[ChangeHash]) -> Typing {
        journal.sort_by_key(|k| k.seq);
        let next_seq = journal.last().map_or(0, |k| k.seq + 1);
        for k in &mut journal {
            if k.base.is_empty() {
                k.base = heads.to_vec();
                k.version = heads.to_vec();
            }
        }
        // Entries of different versions (a crash between a commit and the
        // removal of its entries cannot leave any, but an old journal might)
        // are committed group by group: keep the first group pending here and
        // let `commit` take the rest in turn.
        Typing {
            pending: journal,
            next_seq,
            typed: HashMap::new(),
            after: Vec::new(),
            superseded: Vec::new(),
        }
    }

    /// Raises the sequence number the next keystroke gets to at least `seq`
    /// (so a new keystroke never reuses the number of one already stored).
    pub fn with_next_seq(mut self, seq: u64) -> Typing {
        self.next_seq = self.next_seq.max(seq);
        self
    }

    /// The journal entries not yet committed, in order.
    pub fn pending(&self) -> &[Keystroke] {
        &self.pending
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The sequence number the next keystroke gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The (version, base) of the first pending group.
    fn group(&self) -> Option<(&[ChangeHash], &[ChangeHash])> {
        self.pending
            .first()
            .map(|k| (k.version.as_slice(), k.base.as_slice()))
    }

    /// True when the pending typing does not apply at the text as it is now
    /// (it was typed into an older version): commit it before showing the
    /// text, so what is shown is what is stored.
    pub fn is_stale(&self, text: &TextDoc) -> bool {
        self.group().is_some_and(|(_, base)| base != text.heads())
    }

    /// The version to hand out with the text as shown now (the text's heads;
    /// while typing is pending, the version it was typed into). Call after
    /// committing stale typing ([`Typing::is_stale`]).
    pub fn version(&self, text: &TextDoc) -> Vec<ChangeHash> {
        match self.group() {
            Some((version, base)) if base == text.heads() => version.to_vec(),
            _ => text.heads(),
        }
    }

    /// A field's text with the pending typing applied, if it has any (also
    /// right after a restore, before the replay has committed it).
    pub fn typed(&self, text: &TextDoc, article: &str, heading: bool) -> Option<String> {
        if let Some((t, _)) = self.typed.get(&(article.to_owned(), heading)) {
            return Some(t.clone());
        }
        let (_, base) = self.group()?;
        let group = self.pending.iter().take_while(|k| k.base == base);
        if !group
            .into_iter()
            .any(|k| k.article == article && k.heading == heading)
        {
            return None;
        }
        self.field_text(text, article, heading, base)
            .ok()
            .map(|(t, _)| t)
    }

    /// Checks one keystroke typed into `version` of the text (`None`: the
    /// text as it is shown now) and makes its journal entry. Nothing changes
    /// until [`Typing::accept`].
    pub fn prepare(
        &self,
        session: &Session,
        version: Option<&[ChangeHash]>,
        article: &str,
        heading: bool,
        splice: Splice,
    ) -> Result<Prepared> {
        session.may_edit_text()?;
        let text = &session.docs().text;
        // The text's own sentence for a missing or removed article.
        text.check_live_article(&ArticleId::from(article))?;
        let version = match version {
            Some(v) => v.to_vec(),
            None => self.version(text),
        };
        for h in &version {
            if text.automerge().get_change_meta_by_hash(h).is_none() {
                return Err(Error::NotFound(Reason::VersionNotHere {
                    kind: DocKind::Text,
                }));
            }
        }
        let base = match self.group() {
            Some((v, b)) if v == version.as_slice() => b.to_vec(),
            Some(_) => return Ok(Prepared::CommitFirst),
            None if self.superseded.contains(&version) => {
                return Err(Error::InvalidInput(Reason::TypingSuperseded));
            }
            None => self.after_of(&version).unwrap_or_else(|| version.clone()),
        };
        let len = match self.typed.get(&(article.to_owned(), heading)) {
            Some((_, len)) => *len,
            None => self.field_text(text, article, heading, &base)?.1,
        };
        TextDoc::check_field(len, heading, std::slice::from_ref(&splice))?;
        Ok(Prepared::Append(Keystroke {
            seq: self.next_seq,
            article: article.to_owned(),
            heading,
            splice,
            version,
            base,
        }))
    }

    /// The keystroke `k` (from [`Typing::prepare`]) is in the journal: it is
    /// pending now, and shows in [`Typing::typed`].
    pub fn accept(&mut self, text: &TextDoc, k: Keystroke) -> Result<()> {
        let field = (k.article.clone(), k.heading);
        let (current, len) = match self.typed.remove(&field) {
            Some(t) => t,
            None => self.field_text(text, &k.article, k.heading, &k.base)?,
        };
        let s = &k.splice;
        let after = apply_splice(&current, s.pos, s.delete, &s.insert);
        let n = len - s.delete + s.insert.chars().count();
        self.typed.insert(field, (after, n));
        self.next_seq = self.next_seq.max(k.seq + 1);
        self.pending.push(k);
        Ok(())
    }

    /// Turns the first group of pending typing into changes (one per run of
    /// keystrokes in one field), applied at the heads it was typed against and
    /// merged into the session's text. The group leaves the pending typing
    /// (so the next call takes the next group) until the commit is
    /// [`committed`](Typing::committed) or [`abandoned`](Typing::abandon).
    /// `Ok(None)` when nothing is pending. On an error nothing changes and
    /// the typing stays pending.
    pub fn commit(&mut self, session: &mut Session, now_ms: i64) -> Result<Option<Commit>> {
        let Some((version, base)) = self.group() else {
            return Ok(None);
        };
        let (version, mut base) = (version.to_vec(), base.to_vec());
        let group: Vec<&Keystroke> = self
            .pending
            .iter()
            .take_while(|k| k.version == version && k.base == base)
            .collect();
        let text = &session.docs().text;
        let before = text.heads();
        if base
            .iter()
            .any(|h| text.automerge().get_change_meta_by_hash(h).is_none())
        {
            // The journal names changes this phone no longer has (the text
            // is stored before typing starts, so only a damaged store does
            // this): place the typing on the text as it is.
            base = before.clone();
        }
        let mut edits: Vec<(ArticleId, bool, Vec<Splice>)> = Vec::new();
        for k in &group {
            match edits.last_mut() {
                Some((a, h, splices)) if a.as_str() == k.article && *h == k.heading => {
                    splices.push(k.splice.clone())
                }
                _ => edits.push((
                    ArticleId::from(k.article.as_str()),
                    k.heading,
                    vec![k.splice.clone()],
                )),
            }
        }
        let seqs: Vec<u64> = group.iter().map(|k| k.seq).collect();
        let edited = session.edit_text_at(now_ms, &base, &edits)?;
        let moved = edited.heads_after.is_none();
        let keystrokes: Vec<Keystroke> = self.pending.drain(..seqs.len()).collect();
        self.typed.clear();
        Ok(Some(Commit {
            changes: edited.changes,
            seqs,
            before,
            version,
            after: edited.heads_after.unwrap_or_default(),
            moved,
            keystrokes,
        }))
    }

    /// The commit is stored (with its journal entries removed).
    pub fn committed(&mut self, c: Commit) {
        self.after.retain(|(v, _)| *v != c.version);
        self.superseded.retain(|v| *v != c.version);
        if c.moved {
            self.superseded.push(c.version);
            if self.superseded.len() > REMEMBERED_VERSIONS {
                self.superseded.remove(0);
            }
        } else {
            self.after.push((c.version, c.after));
            if self.after.len() > REMEMBERED_VERSIONS {
                self.after.remove(0);
            }
        }
    }

    /// Storing the commit failed: its changes leave the session's text again
    /// and the typing is pending again (it is still in the journal), to be
    /// committed later. Abandon several commits newest first.
    pub fn abandon(&mut self, session: &mut Session, c: Commit) -> Result<()> {
        self.typed.clear();
        self.pending.splice(0..0, c.keystrokes);
        session.docs_mut().text.rollback(&c.before)
    }

    /// A field at `base` with the pending typing into it applied, and its length.
    fn field_text(
        &self,
        text: &TextDoc,
        article: &str,
        heading: bool,
        base: &[ChangeHash],
    ) -> Result<(String, usize)> {
        let mut t = text.field_at(base, &ArticleId::from(article), heading)?;
        for k in self
            .pending
            .iter()
            .filter(|k| k.article == article && k.heading == heading && k.base == base)
        {
            t = apply_splice(&t, k.splice.pos, k.splice.delete, &k.splice.insert);
        }
        let n = t.chars().count();
        Ok((t, n))
    }

    fn after_of(&self, version: &[ChangeHash]) -> Option<Vec<ChangeHash>> {
        self.after
            .iter()
            .rev()
            .find(|(v, _)| v == version)
            .map(|(_, a)| a.clone())
    }
}

/// `text` with `delete` characters at character `pos` replaced by `insert`.
fn apply_splice(text: &str, pos: usize, delete: usize, insert: &str) -> String {
    let mut out: String = text.chars().take(pos).collect();
    out.push_str(insert);
    out.extend(text.chars().skip(pos + delete));
    out
}

#[cfg(test)]
mod tests {
    use super::apply_splice;

    #[test]
    fn typing_is_applied_by_character_not_byte() {
        assert_eq!(apply_splice("café au lait", 4, 0, "!"), "café! au lait");
        assert_eq!(apply_splice("café au lait", 3, 1, "e"), "cafe au lait");
        assert_eq!(apply_splice("", 0, 0, "ä"), "ä");
        assert_eq!(apply_splice("abc", 3, 0, "d"), "abcd");
    }
}
