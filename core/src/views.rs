//! What people read: pure functions over a process's documents.
//!
//! Every view is deterministic: two devices holding the same changes produce
//! identical views, whatever order the changes arrived in. Statements about a
//! thread (answers, resolutions, decisions, moderation) count only when their
//! author's role may make them (the rules table), and the latest statement
//! wins, ordered by (time written, author, id).

use std::collections::{BTreeMap, BTreeSet};

use automerge::{ObjId, ObjType, Prop, ROOT, ReadDoc, ScalarValueRef, ValueRef};
use serde::{Deserialize, Serialize};

use crate::anchor::{self, AnchorView};
use crate::contributions::{AnswerStatus, Body, Contribution};
use crate::document::{DocKind, KladDocument, get_obj};
use crate::error::Result;
use crate::ids::{ArticleId, ContributionId, DocId, MemberId};
use crate::process::ProcessInfo;
use crate::rules::{Action, Role};
use crate::session::ProcessDocs;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// An article as people read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleView {
    /// Stable id.
    pub id: ArticleId,
    /// 1-based number, derived from order.
    pub number: usize,
    /// "Artikel N", the label shown in the ordinance.
    pub label: String,
    /// Heading.
    pub heading: String,
    /// Body text.
    pub body: String,
}

/// The live articles in order, numbered.
pub fn articles(docs: &ProcessDocs) -> Vec<ArticleView> {
    docs.text
        .article_ids()
        .into_iter()
        .enumerate()
        .map(|(i, id)| ArticleView {
            number: i + 1,
            label: format!("Artikel {}", i + 1),
            heading: docs.text.heading(&id).unwrap_or_default(),
            body: docs.text.body(&id).unwrap_or_default(),
            id,
        })
        .collect()
}

/// Who wrote something, as shown next to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// The member whose document holds it.
    pub member: MemberId,
    /// Their display name.
    pub name: String,
    /// For an entry on behalf of someone without a phone: that person.
    pub on_behalf_of: Option<String>,
    /// The line shown: "Anna", or "entered by Fenna on behalf of Piet".
    pub label: String,
}

fn attribution(info: &ProcessInfo, c: &Contribution) -> Attribution {
    let name = info
        .members
        .get(&c.author)
        .map(|m| m.name.clone())
        .unwrap_or_else(|| c.author.to_string());
    let label = match &c.on_behalf_of {
        Some(p) => format!("entered by {name} on behalf of {p}"),
        None => name.clone(),
    };
    Attribution {
        member: c.author.clone(),
        name,
        on_behalf_of: c.on_behalf_of.clone(),
        label,
    }
}

/// Whether a thread starts with a comment or a suggestion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadKind {
    /// A comment.
    Comment,
    /// A suggestion of new wording.
    Suggestion,
}

/// The derived state of a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadStatus {
    /// Waiting for a formal answer.
    Open,
    /// An official has given a formal answer.
    Answered,
    /// Resolved (or, for a suggestion, accepted or rejected) and not reopened.
    Resolved,
    /// Hidden by a facilitator.
    Hidden,
}

/// The decision on a suggestion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionState {
    /// Not decided yet.
    Open,
    /// Accepted and applied to the text.
    Accepted,
    /// Rejected.
    Rejected,
}

/// Why something is hidden, and by whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hidden {
    /// The facilitator who hid it.
    pub by: Attribution,
    /// The reason everyone sees.
    pub reason: String,
}

/// A reply in a thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyView {
    /// Id.
    pub id: ContributionId,
    /// Who wrote it.
    pub author: Attribution,
    /// What was said (empty while hidden).
    pub text: String,
    /// When (ms).
    pub created_at: i64,
    /// Set while a facilitator has it hidden.
    pub hidden: Option<Hidden>,
}

/// A formal answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerView {
    /// Id.
    pub id: ContributionId,
    /// The official who gave it.
    pub author: Attribution,
    /// The verdict.
    pub status: AnswerStatus,
    /// The reasoning (empty while hidden).
    pub reason: String,
    /// When (ms).
    pub created_at: i64,
    /// Set while a facilitator has it hidden.
    pub hidden: Option<Hidden>,
}

/// A thread: a comment or suggestion with everything said about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadView {
    /// The thread id (= the id of its first contribution).
    pub id: ContributionId,
    /// Comment or suggestion.
    pub kind: ThreadKind,
    /// The article it is about.
    pub article: ArticleId,
    /// Who started it.
    pub author: Attribution,
    /// What was said (empty while hidden).
    pub text: String,
    /// For a suggestion: the proposed wording (empty while hidden).
    pub replacement: Option<String>,
    /// Where it points now.
    pub anchor: AnchorView,
    /// When it was started (ms).
    pub created_at: i64,
    /// Replies, oldest first.
    pub replies: Vec<ReplyView>,
    /// Formal answers, oldest first; the last visible one is the current answer.
    pub answers: Vec<AnswerView>,
    /// Derived status.
    pub status: ThreadStatus,
    /// For a suggestion: the decision on it.
    pub suggestion: Option<SuggestionState>,
    /// Whole days it has been waiting for a formal answer, while open.
    pub days_waiting: Option<u32>,
    /// Set while a facilitator has the thread hidden.
    pub hidden: Option<Hidden>,
}

fn order_key(c: &Contribution) -> (i64, &MemberId, &ContributionId) {
    (c.created_at, &c.author, &c.id)
}

/// Contributions that count: their author is a member whose role may make them.
fn valid_contributions(docs: &ProcessDocs, info: &ProcessInfo) -> Vec<Contribution> {
    let mut all: Vec<Contribution> = docs
        .all_contributions()
        .into_iter()
        .filter(|c| {
            let Some(member) = info.members.get(&c.author) else {
                return false;
            };
            if c.on_behalf_of.is_some() && !Action::EnterOnBehalf.roles().contains(&member.role) {
                return false;
            }
            let action = match (&c.body, c.on_behalf_of.is_some()) {
                (Body::Comment { .. } | Body::Reply { .. } | Body::Suggestion { .. }, true) => {
                    Action::EnterOnBehalf
                }
                (Body::Comment { .. }, false) => Action::Comment,
                (Body::Reply { .. }, false) => Action::Reply,
                (Body::Suggestion { .. }, false) => Action::Suggest,
                (Body::Answer { .. }, _) => Action::Answer,
                (Body::Resolution { .. }, _) => Action::Resolve,
                (Body::Decision { .. }, _) => Action::DecideSuggestion,
                (Body::Moderation { .. }, _) => Action::Hide,
            };
            action.roles().contains(&member.role)
        })
        .collect();
    all.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    all
}

/// Every thread of the process (or of one article), ordered by where it sits
/// in the text (orphaned and pending threads last), then by time.
pub fn threads(
    docs: &ProcessDocs,
    article: Option<&ArticleId>,
    now_ms: i64,
) -> Result<Vec<ThreadView>> {
    let info = docs.process.info()?;
    let all = valid_contributions(docs, &info);
    let mut bodies = anchor::Bodies::default();
    // Latest moderation per target.
    let mut hidden: BTreeMap<&ContributionId, Option<Hidden>> = BTreeMap::new();
    for c in &all {
        if let Body::Moderation {
            target,
            hidden: h,
            reason,
        } = &c.body
        {
            hidden.insert(
                target,
                h.then(|| Hidden {
                    by: attribution(&info, c),
                    reason: reason.clone(),
                }),
            );
        }
    }
    let hidden_of = |id: &ContributionId| hidden.get(id).cloned().flatten();

    // Statements by the thread they are about, in statement order.
    let mut by_thread: BTreeMap<&ContributionId, Vec<&Contribution>> = BTreeMap::new();
    for c in &all {
        by_thread.entry(c.body.thread(&c.id)).or_default().push(c);
    }
    let mut out = Vec::new();
    for root in &all {
        let (kind, anchor, text, replacement) = match &root.body {
            Body::Comment { anchor, text } => (ThreadKind::Comment, anchor, text, None),
            Body::Suggestion {
                anchor,
                replacement,
                text,
            } => (
                ThreadKind::Suggestion,
                anchor,
                text,
                Some(replacement.clone()),
            ),
            _ => continue,
        };
        if article.is_some_and(|a| a != &anchor.article) {
            continue;
        }
        let mut replies = Vec::new();
        let mut answers = Vec::new();
        // (resolved?) of the latest resolution or decision
        let mut closed: Option<bool> = None;
        let mut decision: Option<bool> = None;
        for c in by_thread.get(&root.id).into_iter().flatten() {
            match &c.body {
                Body::Reply { thread, text } if thread == &root.id => {
                    let h = hidden_of(&c.id);
                    replies.push(ReplyView {
                        id: c.id.clone(),
                        author: attribution(&info, c),
                        text: if h.is_some() {
                            String::new()
                        } else {
                            text.clone()
                        },
                        created_at: c.created_at,
                        hidden: h,
                    });
                }
                Body::Answer {
                    thread,
                    status,
                    reason,
                } if thread == &root.id => {
                    let h = hidden_of(&c.id);
                    answers.push(AnswerView {
                        id: c.id.clone(),
                        author: attribution(&info, c),
                        status: *status,
                        reason: if h.is_some() {
                            String::new()
                        } else {
                            reason.clone()
                        },
                        created_at: c.created_at,
                        hidden: h,
                    });
                }
                Body::Resolution { thread, resolved } if thread == &root.id => {
                    closed = Some(*resolved);
                }
                Body::Decision {
                    suggestion,
                    accepted,
                } if suggestion == &root.id && kind == ThreadKind::Suggestion => {
                    closed = Some(true);
                    decision = Some(*accepted);
                }
                _ => {}
            }
        }
        let root_hidden = hidden_of(&root.id);
        let answered = answers.iter().any(|a| a.hidden.is_none());
        let status = if root_hidden.is_some() {
            ThreadStatus::Hidden
        } else if closed == Some(true) {
            ThreadStatus::Resolved
        } else if answered {
            ThreadStatus::Answered
        } else {
            ThreadStatus::Open
        };
        let days_waiting = (status == ThreadStatus::Open)
            .then(|| ((now_ms - root.created_at).max(0) / DAY_MS).min(u32::MAX as i64) as u32);
        let shown = root_hidden.is_none();
        out.push(ThreadView {
            id: root.id.clone(),
            kind,
            article: anchor.article.clone(),
            author: attribution(&info, root),
            text: if shown { text.clone() } else { String::new() },
            replacement: replacement.map(|r| if shown { r } else { String::new() }),
            anchor: anchor::resolve_with(&docs.text, anchor, &mut bodies),
            created_at: root.created_at,
            replies,
            answers,
            status,
            suggestion: (kind == ThreadKind::Suggestion).then_some(match decision {
                None => SuggestionState::Open,
                Some(true) => SuggestionState::Accepted,
                Some(false) => SuggestionState::Rejected,
            }),
            days_waiting,
            hidden: root_hidden,
        });
    }
    let place = |t: &ThreadView| match &t.anchor {
        AnchorView::Live { start, .. } => (0, *start),
        AnchorView::Orphaned { .. } => (1, 0),
        AnchorView::Pending { .. } => (2, 0),
    };
    let article_rank: BTreeMap<ArticleId, usize> = docs
        .text
        .article_ids()
        .into_iter()
        .enumerate()
        .map(|(i, a)| (a, i))
        .collect();
    out.sort_by(|a, b| {
        let ra = article_rank.get(&a.article).copied().unwrap_or(usize::MAX);
        let rb = article_rank.get(&b.article).copied().unwrap_or(usize::MAX);
        (ra, place(a), a.created_at, &a.author.member, &a.id).cmp(&(
            rb,
            place(b),
            b.created_at,
            &b.author.member,
            &b.id,
        ))
    });
    Ok(out)
}

/// Suggestions not yet accepted or rejected (and not hidden), in text order.
pub fn open_suggestions(docs: &ProcessDocs, now_ms: i64) -> Result<Vec<ThreadView>> {
    Ok(threads(docs, None, now_ms)?
        .into_iter()
        .filter(|t| t.suggestion == Some(SuggestionState::Open) && t.hidden.is_none())
        .collect())
}

/// Text edits to one article since the read mark.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleChanges {
    /// The article.
    pub article: ArticleId,
    /// Its current number, or `None` if it has since been removed.
    pub number: Option<usize>,
    /// How many separate edits (insertions, deletions, changes of place) it had.
    pub edits: usize,
}

/// "What changed since I last read": everything others did after the member's read mark.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesSinceRead {
    /// When the read mark was set (`None`: never, so everything counts as new).
    pub since: Option<i64>,
    /// Articles whose text changed, in text order.
    pub articles: Vec<ArticleChanges>,
    /// New threads (comments and suggestions) by others.
    pub new_threads: Vec<ContributionId>,
    /// New replies by others.
    pub new_replies: Vec<ContributionId>,
    /// New formal answers.
    pub new_answers: Vec<ContributionId>,
}

/// What changed since `member` last marked the process as read.
pub fn changes_since_read(docs: &ProcessDocs, member: &MemberId) -> Result<ChangesSinceRead> {
    let info = docs.process.info()?;
    info.member(member)?;
    let mark = docs.contributions.get(member).and_then(|d| d.read_mark());
    let known_heads = |doc: &automerge::Automerge, id: &DocId| -> Vec<automerge::ChangeHash> {
        mark.as_ref()
            .and_then(|m| m.heads.get(id))
            .filter(|hs| hs.iter().all(|h| doc.get_change_by_hash(h).is_some()))
            .cloned()
            .unwrap_or_default()
    };

    // Text: diff from the marked heads to now, grouped by article.
    let text = docs.text.automerge();
    let before = known_heads(text, &info.text_doc);
    let mut edits: BTreeMap<String, usize> = BTreeMap::new();
    if let Some(articles_obj) = get_obj(text, &ROOT, "articles", ObjType::Map) {
        for patch in text.diff(&before, &text.get_heads()) {
            let in_path = patch.path.iter().find_map(|(obj, prop)| match prop {
                Prop::Map(k) if obj == &articles_obj => Some(k.clone()),
                _ => None,
            });
            let direct = match (&patch.action, patch.obj == articles_obj) {
                (automerge::PatchAction::PutMap { key, .. }, true) => Some(key.clone()),
                _ => None,
            };
            if let Some(a) = in_path.or(direct) {
                *edits.entry(a).or_default() += 1;
            }
        }
    }
    let order: Vec<ArticleId> = docs.text.article_ids();
    let mut articles: Vec<ArticleChanges> = edits
        .into_iter()
        .map(|(a, n)| {
            let id = ArticleId(a);
            ArticleChanges {
                number: order.iter().position(|x| x == &id).map(|i| i + 1),
                article: id,
                edits: n,
            }
        })
        .collect();
    articles.sort_by_key(|a| (a.number.unwrap_or(usize::MAX), a.article.clone()));

    // Contributions: ids present now but not at the mark.
    let mut new_ids: BTreeSet<ContributionId> = BTreeSet::new();
    for m in info.members.values() {
        if &m.id == member {
            continue;
        }
        let Some(doc) = docs.contributions.get(&m.id) else {
            continue;
        };
        let before = known_heads(doc.automerge(), &m.contributions_doc);
        let old: BTreeSet<ContributionId> = if before.is_empty() {
            BTreeSet::new()
        } else {
            doc.ids_at(Some(&before)).into_iter().collect()
        };
        new_ids.extend(doc.ids_at(None).into_iter().filter(|id| !old.contains(id)));
    }
    let mut out = ChangesSinceRead {
        since: mark.as_ref().map(|m| m.at),
        articles,
        new_threads: Vec::new(),
        new_replies: Vec::new(),
        new_answers: Vec::new(),
    };
    for c in valid_contributions(docs, &info) {
        if !new_ids.contains(&c.id) {
            continue;
        }
        match c.body {
            Body::Comment { .. } | Body::Suggestion { .. } => out.new_threads.push(c.id),
            Body::Reply { .. } => out.new_replies.push(c.id),
            Body::Answer { .. } => out.new_answers.push(c.id),
            _ => {}
        }
    }
    Ok(out)
}

/// A run of characters written by one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlameSpan {
    /// First character (inclusive).
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
    /// The characters.
    pub text: String,
    /// The member who typed them, if their device is registered.
    pub member: Option<MemberId>,
    /// Their name, or "unknown device".
    pub name: String,
}

fn author_of(info: &ProcessInfo, actor_hex: &str) -> (Option<MemberId>, String) {
    match info.member_for_actor(actor_hex) {
        Some(m) => (Some(m.id.clone()), m.name.clone()),
        None => (None, "unknown device".to_owned()),
    }
}

/// Who wrote each span of an article's body.
pub fn blame(docs: &ProcessDocs, article: &ArticleId) -> Result<Vec<BlameSpan>> {
    let info = docs.process.info()?;
    let body = docs.text.body_obj(article)?;
    let doc = docs.text.automerge();
    let mut spans: Vec<BlameSpan> = Vec::new();
    let mut names: BTreeMap<String, (Option<MemberId>, String)> = BTreeMap::new();
    for item in doc.list_range(&body, ..) {
        let actor_hex = match item.id() {
            ObjId::Id(_, actor, _) => actor.to_hex_string(),
            ObjId::Root => String::new(),
        };
        let (member, name) = names
            .entry(actor_hex.clone())
            .or_insert_with(|| author_of(&info, &actor_hex))
            .clone();
        let ch: &str = match &item.value {
            ValueRef::Scalar(ScalarValueRef::Str(s)) => s,
            _ => "",
        };
        match spans.last_mut() {
            Some(last) if last.member == member && last.name == name => {
                last.end = item.index + 1;
                last.text.push_str(ch);
            }
            _ => spans.push(BlameSpan {
                start: item.index,
                end: item.index + 1,
                text: ch.to_owned(),
                member,
                name,
            }),
        }
    }
    Ok(spans)
}

/// One change in the history of a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Which document it changed.
    pub doc: DocKind,
    /// For a contributions document: whose.
    pub owner: Option<MemberId>,
    /// The Automerge change hash (hex).
    pub hash: String,
    /// The member whose device made it (`None` for the server or an unknown device).
    pub author: Option<MemberId>,
    /// Their name, "Klad server", or "unknown device".
    pub name: String,
    /// When (ms since the Unix epoch, whole seconds, the author's clock).
    pub time: i64,
    /// What it did, as recorded by the operation.
    pub message: String,
}

/// Every change to every document of the process, oldest first.
pub fn history(docs: &ProcessDocs) -> Result<Vec<HistoryEntry>> {
    let info = docs.process.info()?;
    let mut out = Vec::new();
    let mut add = |doc: &automerge::Automerge, kind: DocKind, owner: Option<&MemberId>| {
        for meta in doc.get_changes_meta(&[]) {
            let (author, name) = if kind == DocKind::Process {
                (None, "Klad server".to_owned())
            } else {
                author_of(&info, &meta.actor.to_hex_string())
            };
            out.push(HistoryEntry {
                doc: kind,
                owner: owner.cloned(),
                hash: meta.hash.to_string(),
                author,
                name,
                time: meta.timestamp.saturating_mul(1000),
                message: meta.message.map(|m| m.to_string()).unwrap_or_default(),
            });
        }
    };
    add(docs.process.automerge(), DocKind::Process, None);
    add(docs.text.automerge(), DocKind::Text, None);
    for (m, doc) in &docs.contributions {
        if info.members.contains_key(m) && doc.owner().as_ref() == Some(m) {
            add(doc.automerge(), DocKind::Contributions, Some(m));
        }
    }
    out.sort_by(|a, b| (a.time, &a.hash).cmp(&(b.time, &b.hash)));
    Ok(out)
}

/// The role a member has, for callers that only hold views.
pub fn role_of(docs: &ProcessDocs, member: &MemberId) -> Result<Role> {
    Ok(docs.process.info()?.member(member)?.role)
}
