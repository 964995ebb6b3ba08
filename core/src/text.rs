//! The text document: the ordinance as articles, each with a heading and a
//! body (Automerge Text). Article numbers come from order and are never stored.

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};

use crate::document::{
    DocKind, KladDocument, get_bool, get_obj, get_str, klad_document, transact, write_header,
};
use crate::error::{Error, Result};
use crate::ids::{ArticleId, ProcessId};
use crate::order;
use crate::reason::Reason;

/// One edit of a body: at character `pos`, delete `delete` characters, then
/// insert `insert`. Positions count Unicode code points.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Splice {
    /// Character position where the edit starts.
    pub pos: usize,
    /// How many characters to delete from `pos`.
    pub delete: usize,
    /// Text to insert at `pos` after deleting.
    pub insert: String,
}

/// An article as stored (order key and tombstone included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoredArticle {
    pub id: ArticleId,
    pub obj: ObjId,
    pub position: String,
    pub removed: bool,
}

/// What typing into an older version of the text made.
#[derive(Debug)]
pub struct EditedAt {
    /// The new changes, merged into the text.
    pub changes: Vec<automerge::Change>,
    /// The text the typist sees now (the version plus this typing), when a
    /// set of heads describes it.
    pub heads_after: Option<Vec<automerge::ChangeHash>>,
}

fn unknown_version() -> Error {
    Error::NotFound(Reason::VersionNotHere {
        kind: DocKind::Text,
    })
}

/// The text document.
#[derive(Clone, Debug)]
pub struct TextDoc {
    doc: Automerge,
    /// Object ids of articles (map, heading, body) by article id. An article's
    /// objects never change once created (ids are unique), except through
    /// changes from elsewhere, which clear the memo.
    memo: crate::document::Memo<std::collections::HashMap<ArticleId, ArticleObjs>>,
}

#[derive(Clone, Debug)]
struct ArticleObjs {
    article: ObjId,
    heading: ObjId,
    body: ObjId,
    /// Only `remove_article` (which updates the memo) and changes from
    /// elsewhere (which clear it) can change this.
    removed: bool,
    /// Lengths of the heading and the body in characters, once known; kept
    /// up to date by `edit_text` (the only local writer of both texts), so a
    /// keystroke need not count the text again.
    lengths: [Option<usize>; 2],
}

klad_document!(TextDoc, DocKind::Text);

impl TextDoc {
    /// Creates the (empty) text document of a process.
    pub fn create(now_ms: i64, process: &ProcessId) -> Result<TextDoc> {
        let mut doc = Automerge::new();
        transact(&mut doc, now_ms, "create text", |tx| {
            write_header(tx, DocKind::Text)?;
            tx.put(ROOT, "process", process.as_str())?;
            tx.put_object(ROOT, "articles", ObjType::Map)?;
            Ok(())
        })?;
        Ok(TextDoc {
            doc,
            memo: Default::default(),
        })
    }

    fn articles_obj(&self) -> Result<ObjId> {
        get_obj(&self.doc, &ROOT, "articles", ObjType::Map)
            .ok_or(Error::NotFound(Reason::TextNotHere))
    }

    /// All articles, including removed ones, in document order
    /// (by order key, then id, so every replica agrees).
    pub(crate) fn stored_articles(&self) -> Vec<StoredArticle> {
        let Ok(articles) = self.articles_obj() else {
            return Vec::new();
        };
        let mut out: Vec<StoredArticle> = self
            .doc
            .map_range(&articles, ..)
            .filter_map(|item| {
                let obj = item.id();
                let position = get_str(&self.doc, &obj, "position")?;
                Some(StoredArticle {
                    id: ArticleId(item.key.to_string()),
                    removed: get_bool(&self.doc, &obj, "removed").unwrap_or(false),
                    obj,
                    position,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.position, &a.id).cmp(&(&b.position, &b.id)));
        out
    }

    /// The ids of the articles that are not removed, in order.
    pub fn article_ids(&self) -> Vec<ArticleId> {
        self.stored_articles()
            .into_iter()
            .filter(|a| !a.removed)
            .map(|a| a.id)
            .collect()
    }

    pub(crate) fn article_obj(&self, id: &ArticleId) -> Result<ObjId> {
        let articles = self.articles_obj()?;
        let obj = get_obj(&self.doc, &articles, id.as_str(), ObjType::Map).ok_or_else(|| {
            Error::NotFound(Reason::NoSuchArticle {
                article: id.clone(),
            })
        })?;
        Ok(obj)
    }

    /// The objects of an article, remembered after the first lookup.
    fn article_objs(&self, id: &ArticleId) -> Result<ArticleObjs> {
        if let Some(objs) = self.memo.lock().get(id) {
            return Ok(objs.clone());
        }
        let article = self.article_obj(id)?;
        let text = |what: &str| {
            get_obj(&self.doc, &article, what, ObjType::Text).ok_or_else(|| {
                Error::Corrupt(Reason::ArticleDamaged {
                    article: id.clone(),
                })
            })
        };
        let objs = ArticleObjs {
            heading: text("heading")?,
            body: text("body")?,
            removed: get_bool(&self.doc, &article, "removed").unwrap_or(false),
            article: article.clone(),
            lengths: [None, None],
        };
        self.memo.lock().insert(id.clone(), objs.clone());
        Ok(objs)
    }

    /// `Ok` when the article exists and is not removed; otherwise the
    /// sentence saying which (cheap: the article's objects are remembered).
    pub fn check_live_article(&self, id: &ArticleId) -> Result<()> {
        self.live_article_obj(id).map(|_| ())
    }

    /// The object of a live (not removed) article, or a sentence saying why not.
    pub(crate) fn live_article_obj(&self, id: &ArticleId) -> Result<ObjId> {
        let objs = self.article_objs(id)?;
        if objs.removed {
            return Err(Error::NotFound(Reason::ArticleRemoved {
                article: id.clone(),
            }));
        }
        Ok(objs.article)
    }

    pub(crate) fn body_obj(&self, id: &ArticleId) -> Result<ObjId> {
        let obj = self.article_obj(id)?;
        get_obj(&self.doc, &obj, "body", ObjType::Text).ok_or_else(|| {
            Error::Corrupt(Reason::ArticleDamaged {
                article: id.clone(),
            })
        })
    }

    fn heading_obj(&self, id: &ArticleId) -> Result<ObjId> {
        let obj = self.article_obj(id)?;
        get_obj(&self.doc, &obj, "heading", ObjType::Text).ok_or_else(|| {
            Error::Corrupt(Reason::ArticleDamaged {
                article: id.clone(),
            })
        })
    }

    /// The heading of an article.
    pub fn heading(&self, id: &ArticleId) -> Result<String> {
        Ok(self.doc.text(self.heading_obj(id)?)?)
    }

    /// The body of an article.
    pub fn body(&self, id: &ArticleId) -> Result<String> {
        Ok(self.doc.text(self.body_obj(id)?)?)
    }

    /// The heading (`heading`) or body of an article as it was at `heads`
    /// (a version of this document).
    pub fn field_at(
        &self,
        heads: &[automerge::ChangeHash],
        id: &ArticleId,
        heading: bool,
    ) -> Result<String> {
        let objs = self.article_objs(id)?;
        let obj = if heading { &objs.heading } else { &objs.body };
        if heads == self.doc.get_heads().as_slice() {
            return Ok(self.doc.text(obj)?);
        }
        self.known_version(heads)?;
        self.doc.text_at(obj, heads).map_err(|_| unknown_version())
    }

    fn known_version(&self, heads: &[automerge::ChangeHash]) -> Result<()> {
        match heads
            .iter()
            .all(|h| self.doc.get_change_meta_by_hash(h).is_some())
        {
            true => Ok(()),
            false => Err(unknown_version()),
        }
    }

    /// Applies keystroke batches typed against the text as it was at `heads`
    /// (each `(article, heading?, splices)` becomes one change, in order; the
    /// positions of each batch count in the field as it was at `heads` with
    /// the batch's earlier splices applied) and merges them into the text as
    /// it is now: a change that arrived since `heads` never moves them.
    ///
    /// When this device has written nothing to the text since `heads`, the
    /// changes are made *at* `heads` (an isolated transaction: they depend on
    /// `heads` only), and [`EditedAt::heads_after`] names the text the typist
    /// sees now: `heads` plus this typing. Otherwise each typed character is
    /// carried over by cursors: it goes right after the character it was
    /// typed after, and deleted characters are deleted wherever they are now
    /// (unless someone deleted them already); then no set of heads describes
    /// the typist's text (`heads_after` is `None`). Typing into an article
    /// removed since is kept in its tombstone (its history stays readable).
    /// On an error nothing is applied.
    pub fn edit_text_at(
        &mut self,
        now_ms: i64,
        heads: &[automerge::ChangeHash],
        edits: &[(ArticleId, bool, Vec<Splice>)],
    ) -> Result<EditedAt> {
        let before = self.doc.get_heads();
        let mut heads_after = None;
        let result = if heads == before.as_slice() {
            let r = edits.iter().try_for_each(|(id, heading, splices)| {
                self.edit_text(now_ms, id, *heading, splices)
            });
            heads_after = Some(self.doc.get_heads());
            r
        } else {
            self.known_version(heads)?;
            let r = if self.wrote_nothing_since(heads) {
                let mut at = heads.to_vec();
                let r = edits.iter().try_for_each(|(id, heading, splices)| {
                    at = self.edit_text_isolated(now_ms, &at, id, *heading, splices)?;
                    Ok(())
                });
                heads_after = Some(at);
                r
            } else {
                edits.iter().try_for_each(|(id, heading, splices)| {
                    self.edit_text_then(now_ms, heads, id, *heading, splices)
                })
            };
            // The lengths the memo keeps are of the text before these edits.
            self.memo.clear();
            r
        };
        if let Err(e) = result {
            self.rollback(&before)?;
            return Err(e);
        }
        Ok(EditedAt {
            changes: self.doc.get_changes(&before),
            heads_after,
        })
    }

    /// True when every change this device's actor made is part of `heads`.
    fn wrote_nothing_since(&self, heads: &[automerge::ChangeHash]) -> bool {
        let me = self.doc.get_actor();
        self.doc
            .get_changes_meta(heads)
            .iter()
            .all(|c| *c.actor != *me)
    }

    /// One batch of splices as one change made at `at` (it depends on `at`
    /// only); returns the heads `at` plus this change.
    fn edit_text_isolated(
        &mut self,
        now_ms: i64,
        at: &[automerge::ChangeHash],
        id: &ArticleId,
        heading: bool,
        splices: &[Splice],
    ) -> Result<Vec<automerge::ChangeHash>> {
        let objs = self.article_objs(id)?;
        let obj = if heading { objs.heading } else { objs.body };
        let len = self
            .doc
            .text_at(&obj, at)
            .map_err(|_| unknown_version())?
            .chars()
            .count();
        Self::check_field(len, heading, splices)?;
        let message = if heading { "edit heading" } else { "edit body" };
        let mut tx = self
            .doc
            .transaction_at(automerge::PatchLog::inactive(), at)
            .map_err(|e| {
                Error::Corrupt(Reason::TextNotEditable {
                    detail: e.to_string(),
                })
            })?;
        for s in splices {
            if let Err(e) = tx.splice_text(&obj, s.pos, s.delete as isize, &s.insert) {
                tx.rollback();
                return Err(e.into());
            }
        }
        let (hash, _) = tx.commit_with(crate::document::commit(now_ms, message));
        Ok(hash.map_or_else(|| at.to_vec(), |h| vec![h]))
    }

    /// One batch of splices typed into a field as it was at `heads`, as one
    /// change on the text as it is now, positions carried over by cursors.
    fn edit_text_then(
        &mut self,
        now_ms: i64,
        heads: &[automerge::ChangeHash],
        id: &ArticleId,
        heading: bool,
        splices: &[Splice],
    ) -> Result<()> {
        let objs = self.article_objs(id)?;
        let obj = if heading { objs.heading } else { objs.body };
        let then = self
            .doc
            .text_at(&obj, heads)
            .map_err(|_| unknown_version())?;
        let len = then.chars().count();
        Self::check_field(len, heading, splices)?;
        // What the typist saw, one cursor per character: the field at
        // `heads`, then with each splice of the batch applied.
        let mut seen: Vec<automerge::Cursor> = (0..len)
            .map(|i| self.doc.get_cursor(&obj, i, Some(heads)))
            .collect::<std::result::Result<_, _>>()?;
        let message = if heading { "edit heading" } else { "edit body" };
        transact(&mut self.doc, now_ms, message, |tx| {
            for s in splices {
                for c in seen.drain(s.pos..s.pos + s.delete).collect::<Vec<_>>() {
                    // Deleted unless someone else deleted it already.
                    let at = tx.get_cursor_position(&obj, &c, None)?;
                    if at < tx.length(&obj) && tx.get_cursor(&obj, at, None)? == c {
                        tx.delete(&obj, at)?;
                    }
                }
                if s.insert.is_empty() {
                    continue;
                }
                // Right after the character typed after (or at the start).
                let at = match s.pos.checked_sub(1).map(|i| &seen[i]) {
                    None => 0,
                    Some(c) => {
                        let p = tx.get_cursor_position(&obj, c, None)?;
                        let visible = p < tx.length(&obj) && tx.get_cursor(&obj, p, None)? == *c;
                        if visible { p + 1 } else { p }
                    }
                };
                tx.splice_text(&obj, at, 0, &s.insert)?;
                let n = s.insert.chars().count();
                let new = (at..at + n)
                    .map(|i| tx.get_cursor(&obj, i, None))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                seen.splice(s.pos..s.pos, new);
            }
            Ok(())
        })
    }

    /// The length of an article's body in characters.
    pub fn body_len(&self, id: &ArticleId) -> Result<usize> {
        Ok(self.doc.length(self.body_obj(id)?))
    }

    /// The order key for a new position right after `after` (or first, if `None`).
    fn position_after(
        &self,
        after: Option<&ArticleId>,
        moving: Option<&ArticleId>,
    ) -> Result<String> {
        let live: Vec<StoredArticle> = self
            .stored_articles()
            .into_iter()
            .filter(|a| !a.removed && Some(&a.id) != moving)
            .collect();
        let idx = match after {
            None => 0,
            Some(a) => {
                let i = live.iter().position(|s| &s.id == a).ok_or_else(|| {
                    Error::NotFound(Reason::NoArticleToPlaceAfter { article: a.clone() })
                })?;
                i + 1
            }
        };
        let before = idx.checked_sub(1).map(|i| live[i].position.as_str());
        let next = live.get(idx).map(|s| s.position.as_str());
        Ok(order::between(before, next))
    }

    /// Adds an article after `after` (or at the start). Used through the session,
    /// which checks the rules first.
    pub(crate) fn create_article(
        &mut self,
        now_ms: i64,
        id: &ArticleId,
        after: Option<&ArticleId>,
        heading: &str,
        body: &str,
    ) -> Result<()> {
        let articles = self.articles_obj()?;
        let position = self.position_after(after, None)?;
        transact(
            &mut self.doc,
            now_ms,
            format!("create article {id}"),
            |tx| {
                let a = tx.put_object(&articles, id.as_str(), ObjType::Map)?;
                tx.put(&a, "position", position.as_str())?;
                tx.put(&a, "removed", false)?;
                tx.put(&a, "created_at", ScalarValue::Int(now_ms))?;
                let h = tx.put_object(&a, "heading", ObjType::Text)?;
                tx.splice_text(&h, 0, 0, heading)?;
                let b = tx.put_object(&a, "body", ObjType::Text)?;
                tx.splice_text(&b, 0, 0, body)?;
                Ok(())
            },
        )
    }

    pub(crate) fn move_article(
        &mut self,
        now_ms: i64,
        id: &ArticleId,
        after: Option<&ArticleId>,
    ) -> Result<()> {
        if after == Some(id) {
            return Err(Error::InvalidInput(Reason::ArticleAfterItself));
        }
        let obj = self.live_article_obj(id)?;
        let position = self.position_after(after, Some(id))?;
        transact(&mut self.doc, now_ms, format!("move article {id}"), |tx| {
            tx.put(&obj, "position", position.as_str())?;
            Ok(())
        })
    }

    pub(crate) fn remove_article(&mut self, now_ms: i64, id: &ArticleId) -> Result<()> {
        let obj = self.live_article_obj(id)?;
        transact(
            &mut self.doc,
            now_ms,
            format!("remove article {id}"),
            |tx| {
                tx.put(&obj, "removed", true)?;
                Ok(())
            },
        )?;
        if let Some(o) = self.memo.lock().get_mut(id) {
            o.removed = true;
        }
        Ok(())
    }

    /// Checks `splices` against a body of `len` characters, applied in
    /// order; the body's length after them, or the sentence saying which
    /// edit falls outside it.
    pub fn check_splices(len: usize, splices: &[Splice]) -> Result<usize> {
        Self::check_field(len, false, splices)
    }

    /// Checks `splices` against a heading (`heading`) or body of `len`
    /// characters, applied in order; its length after them, or the sentence
    /// saying which edit falls outside it.
    pub fn check_field(len: usize, heading: bool, splices: &[Splice]) -> Result<usize> {
        let mut len = len;
        for s in splices {
            if s.pos > len || s.delete > len - s.pos {
                return Err(Error::InvalidInput(Reason::EditOutsideField {
                    pos: s.pos as u64,
                    delete: s.delete as u64,
                    heading,
                    len: len as u64,
                }));
            }
            len = len - s.delete + s.insert.chars().count();
        }
        Ok(len)
    }

    pub(crate) fn edit_text(
        &mut self,
        now_ms: i64,
        id: &ArticleId,
        heading: bool,
        splices: &[Splice],
    ) -> Result<()> {
        let objs = self.article_objs(id)?;
        if objs.removed {
            // The same sentence as every other refusal on a removed article.
            self.live_article_obj(id)?;
        }
        let (message, obj, field) = if heading {
            ("edit heading", objs.heading, 0)
        } else {
            ("edit body", objs.body, 1)
        };
        let len = objs.lengths[field].unwrap_or_else(|| self.doc.length(&obj));
        let new_len = Self::check_field(len, heading, splices)?;
        // The message stays short: it is stored in every keystroke batch.
        transact(&mut self.doc, now_ms, message, |tx| {
            for s in splices {
                tx.splice_text(&obj, s.pos, s.delete as isize, &s.insert)?;
            }
            Ok(())
        })?;
        if let Some(o) = self.memo.lock().get_mut(id) {
            o.lengths[field] = Some(new_len);
        }
        Ok(())
    }
}
