//! The contributions document of one member: everything that member says about
//! the text. Only its owner writes it (rule 2 of the README); the state of a
//! thread is derived by merging all members' statements (see `views`).

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};
use serde::{Deserialize, Serialize};

use crate::document::{
    DocKind, get_bool, get_bytes, get_i64, get_obj, get_str, heads_from_string, heads_to_string,
    klad_document, transact, write_header,
};
use crate::error::{Error, Result};
use crate::ids::{ArticleId, ContributionId, DocId, MemberId, ProcessId};
use crate::reason::Reason;

/// A formal answer's verdict on what was asked or suggested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerStatus {
    /// Taken over in full.
    Adopted,
    /// Taken over in part.
    PartlyAdopted,
    /// Not taken over.
    NotAdopted,
    /// Taken note of, without a decision.
    Noted,
}

impl AnswerStatus {
    /// Every status.
    pub const ALL: [AnswerStatus; 4] = [
        AnswerStatus::Adopted,
        AnswerStatus::PartlyAdopted,
        AnswerStatus::NotAdopted,
        AnswerStatus::Noted,
    ];
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerStatus::Adopted => "adopted",
            AnswerStatus::PartlyAdopted => "partly_adopted",
            AnswerStatus::NotAdopted => "not_adopted",
            AnswerStatus::Noted => "noted",
        }
    }
    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<AnswerStatus> {
        AnswerStatus::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Where a comment or suggestion points in an article body: Automerge cursors
/// on its first and last character, plus the quoted text at the time of writing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnchor {
    /// The article.
    pub article: ArticleId,
    /// Cursor (Automerge bytes) on the first character of the passage.
    pub start: Vec<u8>,
    /// Cursor (Automerge bytes) on the last character of the passage.
    pub end: Vec<u8>,
    /// The passage as it read when the contribution was written.
    pub quote: String,
}

/// What a contribution is, with its own fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// A comment on a passage; starts a thread.
    Comment {
        /// The passage.
        anchor: StoredAnchor,
        /// What was said.
        text: String,
    },
    /// New wording for a passage; starts a thread.
    Suggestion {
        /// The passage to replace.
        anchor: StoredAnchor,
        /// The proposed wording.
        replacement: String,
        /// Why (may be empty).
        text: String,
    },
    /// A reply in a thread.
    Reply {
        /// The thread.
        thread: ContributionId,
        /// What was said.
        text: String,
    },
    /// A formal answer (by an official) to a thread.
    Answer {
        /// The thread.
        thread: ContributionId,
        /// The verdict.
        status: AnswerStatus,
        /// The reasoning.
        reason: String,
    },
    /// Resolving (or reopening) a thread.
    Resolution {
        /// The thread.
        thread: ContributionId,
        /// `true` resolves, `false` reopens.
        resolved: bool,
    },
    /// Accepting or rejecting a suggestion.
    Decision {
        /// The suggestion (its thread id).
        suggestion: ContributionId,
        /// `true` if accepted (and applied to the text).
        accepted: bool,
    },
    /// Hiding (or unhiding) a contribution, by a facilitator.
    Moderation {
        /// The contribution hidden or shown again.
        target: ContributionId,
        /// `true` hides, `false` shows again.
        hidden: bool,
        /// The reason everyone sees.
        reason: String,
    },
}

impl Body {
    fn kind(&self) -> &'static str {
        match self {
            Body::Comment { .. } => "comment",
            Body::Suggestion { .. } => "suggestion",
            Body::Reply { .. } => "reply",
            Body::Answer { .. } => "answer",
            Body::Resolution { .. } => "resolution",
            Body::Decision { .. } => "decision",
            Body::Moderation { .. } => "moderation",
        }
    }

    /// The thread this contribution belongs to (its own id for a thread root).
    pub fn thread<'a>(&'a self, own_id: &'a ContributionId) -> &'a ContributionId {
        match self {
            Body::Comment { .. } | Body::Suggestion { .. } => own_id,
            Body::Reply { thread, .. }
            | Body::Answer { thread, .. }
            | Body::Resolution { thread, .. } => thread,
            Body::Decision { suggestion, .. } => suggestion,
            Body::Moderation { target, .. } => target,
        }
    }
}

/// One contribution as stored in its author's document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contribution {
    /// Its id.
    pub id: ContributionId,
    /// The member whose document holds it (who wrote or entered it).
    pub author: MemberId,
    /// When it was written (ms since the Unix epoch, the author's clock).
    pub created_at: i64,
    /// For contributions a facilitator entered for someone without a phone:
    /// that person's name.
    pub on_behalf_of: Option<String>,
    /// What it is.
    pub body: Body,
}

/// A member's record of what they had seen: the heads of every document of the
/// process at that moment.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReadMark {
    /// When it was set (ms since the Unix epoch).
    pub at: i64,
    /// Heads per document id.
    pub heads: BTreeMap<DocId, Vec<ChangeHash>>,
}

/// The contributions document of one member.
#[derive(Clone, Debug)]
pub struct ContributionsDoc {
    doc: Automerge,
    memo: crate::document::Memo<()>,
}

klad_document!(ContributionsDoc, DocKind::Contributions);

impl ContributionsDoc {
    /// Creates the (empty) contributions document of `member`. The server does
    /// this when it invites the member, so the structure exists before anyone writes.
    pub fn create(now_ms: i64, process: &ProcessId, member: &MemberId) -> Result<ContributionsDoc> {
        let mut doc = Automerge::new();
        transact(
            &mut doc,
            now_ms,
            format!("create contributions of {member}"),
            |tx| {
                write_header(tx, DocKind::Contributions)?;
                tx.put(ROOT, "process", process.as_str())?;
                tx.put(ROOT, "member", member.as_str())?;
                tx.put_object(ROOT, "items", ObjType::Map)?;
                Ok(())
            },
        )?;
        Ok(ContributionsDoc {
            doc,
            memo: Default::default(),
        })
    }

    /// The member this document belongs to, once it has arrived.
    pub fn owner(&self) -> Option<MemberId> {
        get_str(&self.doc, &ROOT, "member").map(MemberId)
    }

    fn items_obj(&self) -> Result<ObjId> {
        get_obj(&self.doc, &ROOT, "items", ObjType::Map)
            .ok_or(Error::NotFound(Reason::ContributionsNotHere))
    }

    /// Ids of the contributions present at `heads` (all, if `None`).
    pub(crate) fn ids_at(&self, heads: Option<&[ChangeHash]>) -> Vec<ContributionId> {
        let Ok(items) = self.items_obj() else {
            return Vec::new();
        };
        match heads {
            Some(h) => self.doc.keys_at(&items, h).map(ContributionId).collect(),
            None => self.doc.keys(&items).map(ContributionId).collect(),
        }
    }

    /// True if a contribution with this id is in the document.
    pub fn contains(&self, id: &ContributionId) -> bool {
        self.items_obj()
            .ok()
            .and_then(|items| get_obj(&self.doc, &items, id.as_str(), ObjType::Map))
            .is_some()
    }

    /// Every readable contribution in the document, in id order. Items this
    /// version cannot read (written by a newer minor version, or damaged) are
    /// skipped rather than failing the whole view.
    pub fn contributions(&self) -> Vec<Contribution> {
        let Some(author) = self.owner() else {
            return Vec::new();
        };
        let Ok(items) = self.items_obj() else {
            return Vec::new();
        };
        self.doc
            .map_range(&items, ..)
            .filter_map(|item| {
                self.read_item(ContributionId(item.key.to_string()), &item.id(), &author)
            })
            .collect()
    }

    fn read_item(
        &self,
        id: ContributionId,
        obj: &ObjId,
        author: &MemberId,
    ) -> Option<Contribution> {
        let d = &self.doc;
        let s = |k: &str| get_str(d, obj, k);
        let anchor = || {
            Some(StoredAnchor {
                article: ArticleId(s("article")?),
                start: get_bytes(d, obj, "start")?,
                end: get_bytes(d, obj, "end")?,
                quote: s("quote")?,
            })
        };
        let body = match s("kind")?.as_str() {
            "comment" => Body::Comment {
                anchor: anchor()?,
                text: s("text")?,
            },
            "suggestion" => Body::Suggestion {
                anchor: anchor()?,
                replacement: s("replacement")?,
                text: s("text").unwrap_or_default(),
            },
            "reply" => Body::Reply {
                thread: ContributionId(s("thread")?),
                text: s("text")?,
            },
            "answer" => Body::Answer {
                thread: ContributionId(s("thread")?),
                status: AnswerStatus::parse(&s("status")?)?,
                reason: s("reason")?,
            },
            "resolution" => Body::Resolution {
                thread: ContributionId(s("thread")?),
                resolved: get_bool(d, obj, "resolved")?,
            },
            "decision" => Body::Decision {
                suggestion: ContributionId(s("suggestion")?),
                accepted: get_bool(d, obj, "accepted")?,
            },
            "moderation" => Body::Moderation {
                target: ContributionId(s("target")?),
                hidden: get_bool(d, obj, "hidden")?,
                reason: s("reason")?,
            },
            _ => return None,
        };
        Some(Contribution {
            id,
            author: author.clone(),
            created_at: get_i64(d, obj, "created_at")?,
            on_behalf_of: s("on_behalf_of"),
            body,
        })
    }

    /// Appends a contribution. The session checks rules and ownership first.
    pub(crate) fn add(
        &mut self,
        now_ms: i64,
        id: &ContributionId,
        on_behalf_of: Option<&str>,
        body: &Body,
    ) -> Result<()> {
        let items = self.items_obj()?;
        let message = match on_behalf_of {
            Some(p) => format!("{} {id} on behalf of {p}", body.kind()),
            None => format!("{} {id}", body.kind()),
        };
        transact(&mut self.doc, now_ms, message, |tx| {
            let o = tx.put_object(&items, id.as_str(), ObjType::Map)?;
            tx.put(&o, "kind", body.kind())?;
            tx.put(&o, "created_at", ScalarValue::Int(now_ms))?;
            if let Some(p) = on_behalf_of {
                tx.put(&o, "on_behalf_of", p)?;
            }
            let put_anchor = |tx: &mut automerge::transaction::Transaction<'_>,
                              a: &StoredAnchor|
             -> Result<()> {
                tx.put(&o, "article", a.article.as_str())?;
                tx.put(&o, "start", ScalarValue::Bytes(a.start.clone()))?;
                tx.put(&o, "end", ScalarValue::Bytes(a.end.clone()))?;
                tx.put(&o, "quote", a.quote.as_str())?;
                Ok(())
            };
            match body {
                Body::Comment { anchor, text } => {
                    put_anchor(tx, anchor)?;
                    tx.put(&o, "text", text.as_str())?;
                }
                Body::Suggestion {
                    anchor,
                    replacement,
                    text,
                } => {
                    put_anchor(tx, anchor)?;
                    tx.put(&o, "replacement", replacement.as_str())?;
                    tx.put(&o, "text", text.as_str())?;
                }
                Body::Reply { thread, text } => {
                    tx.put(&o, "thread", thread.as_str())?;
                    tx.put(&o, "text", text.as_str())?;
                }
                Body::Answer {
                    thread,
                    status,
                    reason,
                } => {
                    tx.put(&o, "thread", thread.as_str())?;
                    tx.put(&o, "status", status.as_str())?;
                    tx.put(&o, "reason", reason.as_str())?;
                }
                Body::Resolution { thread, resolved } => {
                    tx.put(&o, "thread", thread.as_str())?;
                    tx.put(&o, "resolved", *resolved)?;
                }
                Body::Decision {
                    suggestion,
                    accepted,
                } => {
                    tx.put(&o, "suggestion", suggestion.as_str())?;
                    tx.put(&o, "accepted", *accepted)?;
                }
                Body::Moderation {
                    target,
                    hidden,
                    reason,
                } => {
                    tx.put(&o, "target", target.as_str())?;
                    tx.put(&o, "hidden", *hidden)?;
                    tx.put(&o, "reason", reason.as_str())?;
                }
            }
            Ok(())
        })
    }

    /// The member's read mark, if they ever set one.
    pub fn read_mark(&self) -> Option<ReadMark> {
        let d = &self.doc;
        let mark = get_obj(d, &ROOT, "read_mark", ObjType::Map)?;
        let at = get_i64(d, &mark, "at")?;
        let heads_obj = get_obj(d, &mark, "heads", ObjType::Map)?;
        let mut heads = BTreeMap::new();
        for item in d.map_range(&heads_obj, ..) {
            if let Some(h) = get_str(d, &heads_obj, &item.key).and_then(|s| heads_from_string(&s)) {
                heads.insert(DocId(item.key.to_string()), h);
            }
        }
        Some(ReadMark { at, heads })
    }

    pub(crate) fn set_read_mark(&mut self, now_ms: i64, mark: &ReadMark) -> Result<()> {
        transact(&mut self.doc, now_ms, "mark read", |tx| {
            let m = tx.put_object(ROOT, "read_mark", ObjType::Map)?;
            tx.put(&m, "at", ScalarValue::Int(mark.at))?;
            let h = tx.put_object(&m, "heads", ObjType::Map)?;
            for (doc, heads) in &mark.heads {
                tx.put(&h, doc.as_str(), heads_to_string(heads))?;
            }
            Ok(())
        })
    }
}
