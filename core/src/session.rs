//! A member at work on one process: the domain operations, each checked
//! against the rules before it touches a document.

use std::collections::BTreeMap;

use automerge::ActorId;
use serde::{Deserialize, Serialize};

use crate::anchor::{self, AnchorView};
use crate::contributions::{AnswerStatus, Body, Contribution, ContributionsDoc, ReadMark};
use crate::document::KladDocument;
use crate::error::{Error, Result};
use crate::ids::{ArticleId, ContributionId, DocId, MemberId, ProcessId};
use crate::process::ProcessDoc;
use crate::reason::Reason;
use crate::rules::{Action, Phase, may};
use crate::text::{Splice, TextDoc};

/// All documents of one process as one device holds them.
#[derive(Clone, Debug)]
pub struct ProcessDocs {
    /// The process document.
    pub process: ProcessDoc,
    /// The text document.
    pub text: TextDoc,
    /// Contributions documents by owner.
    pub contributions: BTreeMap<MemberId, ContributionsDoc>,
}

impl ProcessDocs {
    /// Creates all documents of a new process (in the drafting phase, no members yet).
    pub fn create(
        now_ms: i64,
        id: &ProcessId,
        title: &str,
        text_doc: &DocId,
    ) -> Result<ProcessDocs> {
        Ok(ProcessDocs {
            process: ProcessDoc::create(now_ms, id, title, text_doc)?,
            text: TextDoc::create(now_ms, id)?,
            contributions: BTreeMap::new(),
        })
    }

    /// Adds a member and creates their contributions document (stored under
    /// `contributions_doc`). `by` is the facilitator asking, or `None` for the
    /// server operator. Returns the new member's id.
    pub fn add_member(
        &mut self,
        now_ms: i64,
        by: Option<&MemberId>,
        name: &str,
        role: crate::rules::Role,
        contributions_doc: &DocId,
    ) -> Result<MemberId> {
        let info = self.process.info()?;
        let id = MemberId::random();
        let doc = ContributionsDoc::create(now_ms, &info.id, &id)?;
        self.process.add_member(
            now_ms,
            by,
            &crate::process::NewMember {
                id: id.clone(),
                name: name.to_owned(),
                role,
                contributions_doc: contributions_doc.clone(),
            },
        )?;
        self.contributions.insert(id.clone(), doc);
        Ok(id)
    }

    /// Merges everything `other` holds into these documents (used by tests and
    /// by peers that exchange whole documents; the sync layer uses changes).
    pub fn merge(&mut self, other: &ProcessDocs) -> Result<()> {
        self.process.merge(&other.process)?;
        self.text.merge(&other.text)?;
        for (m, doc) in &other.contributions {
            match self.contributions.get_mut(m) {
                Some(mine) => mine.merge(doc)?,
                None => {
                    self.contributions.insert(m.clone(), doc.clone());
                }
            }
        }
        Ok(())
    }

    /// Every contribution of the process, from the documents of its members,
    /// each document read only if its owner matches the member it is held for.
    pub fn all_contributions(&self) -> Vec<Contribution> {
        self.contributions
            .iter()
            .filter(|(m, doc)| doc.owner().as_ref() == Some(m))
            .flat_map(|(_, doc)| doc.contributions())
            .collect()
    }

    /// The contribution with `id`, wherever it is.
    pub fn contribution(&self, id: &ContributionId) -> Option<Contribution> {
        self.contributions
            .iter()
            .filter(|(m, doc)| doc.owner().as_ref() == Some(m) && doc.contains(id))
            .flat_map(|(_, doc)| doc.contributions())
            .find(|c| &c.id == id)
    }
}

/// What a facilitator enters on behalf of someone without a phone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OnBehalf {
    /// A comment on characters `start..end` of an article.
    Comment {
        /// The article.
        article: ArticleId,
        /// First character.
        start: usize,
        /// End (exclusive).
        end: usize,
        /// What they said.
        text: String,
    },
    /// A reply in a thread.
    Reply {
        /// The thread.
        thread: ContributionId,
        /// What they said.
        text: String,
    },
    /// A suggestion for characters `start..end` of an article.
    Suggestion {
        /// The article.
        article: ArticleId,
        /// First character.
        start: usize,
        /// End (exclusive).
        end: usize,
        /// Proposed wording.
        replacement: String,
        /// Why.
        text: String,
    },
}

/// One member working on one process on one device.
///
/// Every operation takes `now_ms` (milliseconds since the Unix epoch) from the
/// caller: core reads no clock. Every operation first asks [`may`] with the
/// member's role and the process phase, then writes one Automerge change.
#[derive(Clone, Debug)]
pub struct Session {
    docs: ProcessDocs,
    me: MemberId,
}

/// `text` trimmed, or `empty` (the reason that says which text was empty).
fn non_blank(text: &str, empty: Reason) -> Result<String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(Error::InvalidInput(empty));
    }
    Ok(t.to_owned())
}

impl Session {
    /// Starts a session for member `me` whose device writes with `device`.
    pub fn new(mut docs: ProcessDocs, me: MemberId, device: ActorId) -> Session {
        docs.text.set_actor(device.clone());
        for doc in docs.contributions.values_mut() {
            doc.set_actor(device.clone());
        }
        Session { docs, me }
    }

    /// The documents, for views, storage and sync.
    pub fn docs(&self) -> &ProcessDocs {
        &self.docs
    }

    /// The documents, for applying changes from sync. Writing through them
    /// bypasses the rules; the server re-checks everything anyway.
    pub fn docs_mut(&mut self) -> &mut ProcessDocs {
        &mut self.docs
    }

    /// Ends the session, returning the documents.
    pub fn into_docs(self) -> ProcessDocs {
        self.docs
    }

    /// The member this session acts for.
    pub fn member_id(&self) -> &MemberId {
        &self.me
    }

    /// Gives the process's current version (text and contributions as this
    /// device holds them) a name, as a facilitator; returns its id.
    ///
    /// This writes the process document, which only the server writes: call
    /// it on the server's copy (the web desk does, through facilitation). A
    /// phone's change to the process document is refused by sync.
    pub fn name_version(&mut self, now_ms: i64, name: &str) -> Result<String> {
        self.check(Action::NameVersion)?;
        let version = self.docs.version();
        let me = self.me.clone();
        self.docs
            .process
            .name_version(now_ms, Some(&me), name, &version)
    }

    /// The named versions of the process, oldest first.
    pub fn named_versions(&self) -> Vec<crate::history::NamedVersion> {
        self.docs.process.named_versions()
    }

    fn check(&self, action: Action) -> Result<Phase> {
        let (role, phase) = self.docs.process.role_and_phase(&self.me)?;
        may(role, phase, action)?;
        Ok(phase)
    }

    fn my_doc(&mut self) -> Result<&mut ContributionsDoc> {
        let me = self.me.clone();
        let doc = self
            .docs
            .contributions
            .get_mut(&me)
            .ok_or(Error::NotFound(Reason::OwnContributionsNotHere))?;
        if doc.owner().as_ref() != Some(&me) {
            return Err(Error::NotAllowed(Reason::NotYourContributions));
        }
        Ok(doc)
    }

    fn add(
        &mut self,
        now_ms: i64,
        on_behalf_of: Option<&str>,
        body: Body,
    ) -> Result<ContributionId> {
        let id = ContributionId::random();
        self.my_doc()?.add(now_ms, &id, on_behalf_of, &body)?;
        Ok(id)
    }

    fn thread_root(&self, thread: &ContributionId) -> Result<Contribution> {
        match self.docs.contribution(thread) {
            Some(c) if matches!(c.body, Body::Comment { .. } | Body::Suggestion { .. }) => Ok(c),
            Some(_) => Err(Error::InvalidInput(Reason::NotAThread {
                id: thread.clone(),
            })),
            None => Err(Error::NotFound(Reason::NoSuchThread {
                thread: thread.clone(),
            })),
        }
    }

    // ---- the text ----

    /// Adds an article after `after` (or at the start), returning its id.
    pub fn create_article(
        &mut self,
        now_ms: i64,
        after: Option<&ArticleId>,
        heading: &str,
        body: &str,
    ) -> Result<ArticleId> {
        self.check(Action::EditText)?;
        let id = ArticleId::random();
        self.docs
            .text
            .create_article(now_ms, &id, after, heading, body)?;
        Ok(id)
    }

    /// Moves an article to just after `after` (or to the start).
    pub fn move_article(
        &mut self,
        now_ms: i64,
        id: &ArticleId,
        after: Option<&ArticleId>,
    ) -> Result<()> {
        self.check(Action::EditText)?;
        self.docs.text.move_article(now_ms, id, after)
    }

    /// Removes an article. Its history stays; comments on it become orphaned.
    pub fn remove_article(&mut self, now_ms: i64, id: &ArticleId) -> Result<()> {
        self.check(Action::EditText)?;
        self.docs.text.remove_article(now_ms, id)
    }

    /// Applies edits to an article body as one change (one batch of keystrokes).
    pub fn edit_body(&mut self, now_ms: i64, id: &ArticleId, splices: &[Splice]) -> Result<()> {
        self.check(Action::EditText)?;
        self.docs.text.edit_text(now_ms, id, false, splices)
    }

    /// Applies keystroke batches typed against the text as it was at `heads`
    /// (see [`TextDoc::edit_text_at`]): one change per `(article, heading?,
    /// splices)`, merged into the text. Returns the new changes; on an error
    /// nothing is applied.
    pub fn edit_text_at(
        &mut self,
        now_ms: i64,
        heads: &[automerge::ChangeHash],
        edits: &[(ArticleId, bool, Vec<Splice>)],
    ) -> Result<crate::text::EditedAt> {
        self.check(Action::EditText)?;
        self.docs.text.edit_text_at(now_ms, heads, edits)
    }

    /// Checks that this member may type into the text now.
    pub fn may_edit_text(&self) -> Result<()> {
        self.check(Action::EditText).map(|_| ())
    }

    /// Applies edits to an article heading as one change.
    pub fn edit_heading(&mut self, now_ms: i64, id: &ArticleId, splices: &[Splice]) -> Result<()> {
        self.check(Action::EditText)?;
        self.docs.text.edit_text(now_ms, id, true, splices)
    }

    /// At character `pos` of a body, deletes `delete` characters and inserts `insert`.
    pub fn splice_body(
        &mut self,
        now_ms: i64,
        id: &ArticleId,
        pos: usize,
        delete: usize,
        insert: &str,
    ) -> Result<()> {
        self.edit_body(
            now_ms,
            id,
            &[Splice {
                pos,
                delete,
                insert: insert.to_owned(),
            }],
        )
    }

    /// Replaces characters `start..end` of a body with `text`.
    pub fn replace_range(
        &mut self,
        now_ms: i64,
        id: &ArticleId,
        start: usize,
        end: usize,
        text: &str,
    ) -> Result<()> {
        if end < start {
            return Err(Error::InvalidInput(Reason::RangeReversed {
                start: start as u64,
                end: end as u64,
            }));
        }
        self.splice_body(now_ms, id, start, end - start, text)
    }

    // ---- contributions ----

    fn comment_body(
        &self,
        article: &ArticleId,
        start: usize,
        end: usize,
        text: &str,
    ) -> Result<Body> {
        Ok(Body::Comment {
            anchor: anchor::make(&self.docs.text, article, start, end)?,
            text: non_blank(text, Reason::EmptyComment)?,
        })
    }

    fn suggestion_body(
        &self,
        article: &ArticleId,
        start: usize,
        end: usize,
        replacement: &str,
        text: &str,
    ) -> Result<Body> {
        let anchor = anchor::make(&self.docs.text, article, start, end)?;
        if anchor.quote == replacement {
            return Err(Error::InvalidInput(Reason::SuggestionUnchanged));
        }
        Ok(Body::Suggestion {
            anchor,
            replacement: replacement.to_owned(),
            text: text.trim().to_owned(),
        })
    }

    /// Comments on characters `start..end` of an article; returns the thread id.
    pub fn comment(
        &mut self,
        now_ms: i64,
        article: &ArticleId,
        start: usize,
        end: usize,
        text: &str,
    ) -> Result<ContributionId> {
        self.check(Action::Comment)?;
        let body = self.comment_body(article, start, end, text)?;
        self.add(now_ms, None, body)
    }

    /// Replies in a thread.
    pub fn reply(
        &mut self,
        now_ms: i64,
        thread: &ContributionId,
        text: &str,
    ) -> Result<ContributionId> {
        self.check(Action::Reply)?;
        self.thread_root(thread)?;
        let text = non_blank(text, Reason::EmptyReply)?;
        self.add(
            now_ms,
            None,
            Body::Reply {
                thread: thread.clone(),
                text,
            },
        )
    }

    /// Suggests `replacement` for characters `start..end` of an article; returns the thread id.
    pub fn suggest(
        &mut self,
        now_ms: i64,
        article: &ArticleId,
        start: usize,
        end: usize,
        replacement: &str,
        text: &str,
    ) -> Result<ContributionId> {
        self.check(Action::Suggest)?;
        let body = self.suggestion_body(article, start, end, replacement, text)?;
        self.add(now_ms, None, body)
    }

    fn suggestion(
        &self,
        id: &ContributionId,
    ) -> Result<(crate::contributions::StoredAnchor, String)> {
        match self.thread_root(id)?.body {
            Body::Suggestion {
                anchor,
                replacement,
                ..
            } => Ok((anchor, replacement)),
            _ => Err(Error::InvalidInput(Reason::NotASuggestion {
                id: id.clone(),
            })),
        }
    }

    /// Accepts a suggestion: replaces the passage it is anchored to with its
    /// wording, then records the decision.
    pub fn accept_suggestion(&mut self, now_ms: i64, id: &ContributionId) -> Result<()> {
        self.check(Action::DecideSuggestion)?;
        let (anchor, replacement) = self.suggestion(id)?;
        match anchor::resolve(&self.docs.text, &anchor) {
            AnchorView::Live { start, end, .. } => {
                self.my_doc()?;
                self.docs.text.edit_text(
                    now_ms,
                    &anchor.article,
                    false,
                    &[Splice {
                        pos: start,
                        delete: end - start,
                        insert: replacement,
                    }],
                )?;
            }
            AnchorView::Orphaned { .. } => {
                return Err(Error::InvalidInput(Reason::SuggestionPassageDeleted));
            }
            AnchorView::Pending { .. } => {
                return Err(Error::NotFound(Reason::SuggestionPassageNotHere));
            }
        }
        self.add(
            now_ms,
            None,
            Body::Decision {
                suggestion: id.clone(),
                accepted: true,
            },
        )
        .map(|_| ())
    }

    /// Rejects a suggestion (the text stays as it is).
    pub fn reject_suggestion(&mut self, now_ms: i64, id: &ContributionId) -> Result<()> {
        self.check(Action::DecideSuggestion)?;
        self.suggestion(id)?;
        self.add(
            now_ms,
            None,
            Body::Decision {
                suggestion: id.clone(),
                accepted: false,
            },
        )
        .map(|_| ())
    }

    /// Gives a formal answer to a thread.
    pub fn answer(
        &mut self,
        now_ms: i64,
        thread: &ContributionId,
        status: AnswerStatus,
        reason: &str,
    ) -> Result<ContributionId> {
        self.check(Action::Answer)?;
        self.thread_root(thread)?;
        let reason = non_blank(reason, Reason::EmptyAnswerReason)?;
        self.add(
            now_ms,
            None,
            Body::Answer {
                thread: thread.clone(),
                status,
                reason,
            },
        )
    }

    /// Resolves a thread.
    pub fn resolve(&mut self, now_ms: i64, thread: &ContributionId) -> Result<()> {
        self.set_resolved(now_ms, thread, true)
    }

    /// Reopens a resolved thread.
    pub fn reopen(&mut self, now_ms: i64, thread: &ContributionId) -> Result<()> {
        self.set_resolved(now_ms, thread, false)
    }

    fn set_resolved(&mut self, now_ms: i64, thread: &ContributionId, resolved: bool) -> Result<()> {
        self.check(Action::Resolve)?;
        self.thread_root(thread)?;
        self.add(
            now_ms,
            None,
            Body::Resolution {
                thread: thread.clone(),
                resolved,
            },
        )
        .map(|_| ())
    }

    /// Hides a contribution from views, with a reason everyone sees.
    pub fn hide(&mut self, now_ms: i64, target: &ContributionId, reason: &str) -> Result<()> {
        self.moderate(now_ms, target, true, reason)
    }

    /// Shows a hidden contribution again, with a reason.
    pub fn unhide(&mut self, now_ms: i64, target: &ContributionId, reason: &str) -> Result<()> {
        self.moderate(now_ms, target, false, reason)
    }

    fn moderate(
        &mut self,
        now_ms: i64,
        target: &ContributionId,
        hidden: bool,
        reason: &str,
    ) -> Result<()> {
        self.check(Action::Hide)?;
        let reason = non_blank(reason, Reason::EmptyHideReason)?;
        if self.docs.contribution(target).is_none() {
            return Err(Error::NotFound(Reason::NoSuchContribution {
                id: target.clone(),
            }));
        }
        self.add(
            now_ms,
            None,
            Body::Moderation {
                target: target.clone(),
                hidden,
                reason,
            },
        )
        .map(|_| ())
    }

    /// Enters a contribution on behalf of `person` (someone without a phone).
    /// It is stored in the facilitator's own document and shown as
    /// "entered by F on behalf of P".
    pub fn enter_on_behalf(
        &mut self,
        now_ms: i64,
        person: &str,
        what: OnBehalf,
    ) -> Result<ContributionId> {
        let phase = self.check(Action::EnterOnBehalf)?;
        let person = non_blank(person, Reason::EmptyOnBehalfName)?;
        let body = match &what {
            OnBehalf::Comment {
                article,
                start,
                end,
                text,
            } => {
                // The entry is a comment like any other: same phases.
                may(crate::rules::Role::Drafter, phase, Action::Comment)?;
                self.comment_body(article, *start, *end, text)?
            }
            OnBehalf::Reply { thread, text } => {
                may(crate::rules::Role::Drafter, phase, Action::Reply)?;
                self.thread_root(thread)?;
                Body::Reply {
                    thread: thread.clone(),
                    text: non_blank(text, Reason::EmptyReply)?,
                }
            }
            OnBehalf::Suggestion {
                article,
                start,
                end,
                replacement,
                text,
            } => {
                may(crate::rules::Role::Drafter, phase, Action::Suggest)?;
                self.suggestion_body(article, *start, *end, replacement, text)?
            }
        };
        self.add(now_ms, Some(&person), body)
    }

    /// Records that the member has now seen everything on this device.
    pub fn mark_read(&mut self, now_ms: i64) -> Result<()> {
        self.check(Action::MarkRead)?;
        let info = self.docs.process.info()?;
        let mut heads = BTreeMap::new();
        heads.insert(info.text_doc.clone(), self.docs.text.heads());
        for m in info.members.values() {
            if let Some(doc) = self.docs.contributions.get(&m.id) {
                heads.insert(m.contributions_doc.clone(), doc.heads());
            }
        }
        let mark = ReadMark { at: now_ms, heads };
        self.my_doc()?.set_read_mark(now_ms, &mark)
    }
}
