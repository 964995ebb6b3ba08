//! Plain data types of the API: records with public fields and simple enums,
//! converted one to one from klad-core's views. No logic lives here.

use klad_core::views;

/// The role of a member in a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Role {
    /// A resident who writes the article text.
    Drafter,
    /// A civil servant who comments, suggests wording and gives formal answers.
    Official,
    /// A member of the facilitation team.
    Facilitator,
    /// Reads everything.
    Observer,
}

impl From<klad_core::Role> for Role {
    fn from(r: klad_core::Role) -> Self {
        match r {
            klad_core::Role::Drafter => Role::Drafter,
            klad_core::Role::Official => Role::Official,
            klad_core::Role::Facilitator => Role::Facilitator,
            klad_core::Role::Observer => Role::Observer,
        }
    }
}

/// The phase of a process (phases only move forward).
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Phase {
    /// Residents write the text.
    Drafting,
    /// The text is frozen; discussion and answers.
    Consultation,
    /// Closed; only answers, moderation and reading remain.
    Final,
}

impl From<klad_core::Phase> for Phase {
    fn from(p: klad_core::Phase) -> Self {
        match p {
            klad_core::Phase::Drafting => Phase::Drafting,
            klad_core::Phase::Consultation => Phase::Consultation,
            klad_core::Phase::Final => Phase::Final,
        }
    }
}

/// A formal answer's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum AnswerStatus {
    /// Taken over in full.
    Adopted,
    /// Taken over in part.
    PartlyAdopted,
    /// Not taken over.
    NotAdopted,
    /// Taken note of.
    Noted,
}

impl From<klad_core::AnswerStatus> for AnswerStatus {
    fn from(a: klad_core::AnswerStatus) -> Self {
        match a {
            klad_core::AnswerStatus::Adopted => AnswerStatus::Adopted,
            klad_core::AnswerStatus::PartlyAdopted => AnswerStatus::PartlyAdopted,
            klad_core::AnswerStatus::NotAdopted => AnswerStatus::NotAdopted,
            klad_core::AnswerStatus::Noted => AnswerStatus::Noted,
        }
    }
}

impl From<AnswerStatus> for klad_core::AnswerStatus {
    fn from(a: AnswerStatus) -> Self {
        match a {
            AnswerStatus::Adopted => klad_core::AnswerStatus::Adopted,
            AnswerStatus::PartlyAdopted => klad_core::AnswerStatus::PartlyAdopted,
            AnswerStatus::NotAdopted => klad_core::AnswerStatus::NotAdopted,
            AnswerStatus::Noted => klad_core::AnswerStatus::Noted,
        }
    }
}

/// A process this phone has joined.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ProcessSummary {
    /// The process id.
    pub process_id: String,
    /// The ordinance's title (empty until the process document has arrived).
    pub title: String,
    /// The member this phone acts as.
    pub member_id: String,
    /// Their role.
    pub role: Option<Role>,
    /// The current phase.
    pub phase: Option<Phase>,
    /// The server it syncs with.
    pub server_url: String,
}

/// A member of the process.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The Automerge actor ids (hex) of the devices they write from, as the
    /// server registered them; a change from any other device is never
    /// attributed to them.
    pub devices: Vec<String>,
}

/// The articles as this phone shows them, with the version of the text they
/// show (pass it back with keystrokes typed into them).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct TextSnapshot {
    /// The version of the text (opaque; hand it back unchanged).
    pub version: String,
    /// The articles in order.
    pub articles: Vec<Article>,
}

/// An article as people read it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Article {
    /// Stable id.
    pub id: String,
    /// 1-based number, derived from order.
    pub number: u32,
    /// "Artikel N".
    pub label: String,
    /// Heading.
    pub heading: String,
    /// Body text (including typing not yet committed).
    pub body: String,
}

impl From<views::ArticleView> for Article {
    fn from(a: views::ArticleView) -> Self {
        Article {
            id: a.id.0,
            number: a.number as u32,
            label: a.label,
            heading: a.heading,
            body: a.body,
        }
    }
}

/// Who wrote something.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Attribution {
    /// The member whose document holds it.
    pub member: String,
    /// Their display name.
    pub name: String,
    /// For an entry on behalf of someone without a phone: that person.
    pub on_behalf_of: Option<String>,
    /// The line to show: "Anna" or "entered by Fenna on behalf of Piet".
    pub label: String,
}

impl From<views::Attribution> for Attribution {
    fn from(a: views::Attribution) -> Self {
        Attribution {
            member: a.member.0,
            name: a.name,
            on_behalf_of: a.on_behalf_of,
            label: a.label,
        }
    }
}

/// Why something is hidden.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Hidden {
    /// The facilitator who hid it.
    pub by: Attribution,
    /// The reason everyone sees.
    pub reason: String,
}

impl From<views::Hidden> for Hidden {
    fn from(h: views::Hidden) -> Self {
        Hidden {
            by: h.by.into(),
            reason: h.reason,
        }
    }
}

/// Where a comment or suggestion points now.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Anchor {
    /// The passage is at characters `start..end` of the article body.
    Live {
        /// First character.
        start: u32,
        /// End (exclusive).
        end: u32,
        /// The passage as it reads now.
        text: String,
        /// The passage as it read when written.
        quote: String,
    },
    /// The passage was deleted; only the quote remains.
    Orphaned {
        /// The passage as it read when written.
        quote: String,
    },
    /// The edits it refers to have not arrived yet.
    Pending {
        /// The passage as it read when written.
        quote: String,
    },
}

impl From<klad_core::AnchorView> for Anchor {
    fn from(a: klad_core::AnchorView) -> Self {
        match a {
            klad_core::AnchorView::Live {
                start,
                end,
                text,
                quote,
            } => Anchor::Live {
                start: start as u32,
                end: end as u32,
                text,
                quote,
            },
            klad_core::AnchorView::Orphaned { quote } => Anchor::Orphaned { quote },
            klad_core::AnchorView::Pending { quote } => Anchor::Pending { quote },
        }
    }
}

/// Comment or suggestion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum ThreadKind {
    /// A comment.
    Comment,
    /// A suggestion of new wording.
    Suggestion,
}

/// The derived state of a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum ThreadStatus {
    /// Waiting for a formal answer.
    Open,
    /// An official has answered.
    Answered,
    /// Resolved (or the suggestion decided).
    Resolved,
    /// Hidden by a facilitator.
    Hidden,
}

/// The decision on a suggestion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum SuggestionState {
    /// Not decided.
    Open,
    /// Accepted and applied.
    Accepted,
    /// Rejected.
    Rejected,
}

/// A reply in a thread.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Reply {
    /// Id.
    pub id: String,
    /// Who wrote it.
    pub author: Attribution,
    /// What was said (empty while hidden).
    pub text: String,
    /// When (ms since the Unix epoch).
    pub created_at: i64,
    /// Set while hidden.
    pub hidden: Option<Hidden>,
}

/// A formal answer.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Answer {
    /// Id.
    pub id: String,
    /// The official who gave it.
    pub author: Attribution,
    /// The verdict.
    pub status: AnswerStatus,
    /// The reasoning (empty while hidden).
    pub reason: String,
    /// When (ms).
    pub created_at: i64,
    /// Set while hidden.
    pub hidden: Option<Hidden>,
}

/// A thread: a comment or suggestion with everything said about it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ThreadView {
    /// Thread id (= id of its first contribution).
    pub id: String,
    /// Comment or suggestion.
    pub kind: ThreadKind,
    /// The article it is about.
    pub article: String,
    /// Who started it.
    pub author: Attribution,
    /// What was said (empty while hidden).
    pub text: String,
    /// For a suggestion: the proposed wording.
    pub replacement: Option<String>,
    /// Where it points now.
    pub anchor: Anchor,
    /// When it was started (ms).
    pub created_at: i64,
    /// Replies, oldest first.
    pub replies: Vec<Reply>,
    /// Formal answers, oldest first.
    pub answers: Vec<Answer>,
    /// Derived status.
    pub status: ThreadStatus,
    /// For a suggestion: the decision.
    pub suggestion: Option<SuggestionState>,
    /// Whole days waiting for a formal answer, while open.
    pub days_waiting: Option<u32>,
    /// Set while hidden.
    pub hidden: Option<Hidden>,
}

impl From<views::ThreadView> for ThreadView {
    fn from(t: views::ThreadView) -> Self {
        ThreadView {
            id: t.id.0,
            kind: match t.kind {
                views::ThreadKind::Comment => ThreadKind::Comment,
                views::ThreadKind::Suggestion => ThreadKind::Suggestion,
            },
            article: t.article.0,
            author: t.author.into(),
            text: t.text,
            replacement: t.replacement,
            anchor: t.anchor.into(),
            created_at: t.created_at,
            replies: t
                .replies
                .into_iter()
                .map(|r| Reply {
                    id: r.id.0,
                    author: r.author.into(),
                    text: r.text,
                    created_at: r.created_at,
                    hidden: r.hidden.map(Into::into),
                })
                .collect(),
            answers: t
                .answers
                .into_iter()
                .map(|a| Answer {
                    id: a.id.0,
                    author: a.author.into(),
                    status: a.status.into(),
                    reason: a.reason,
                    created_at: a.created_at,
                    hidden: a.hidden.map(Into::into),
                })
                .collect(),
            status: match t.status {
                views::ThreadStatus::Open => ThreadStatus::Open,
                views::ThreadStatus::Answered => ThreadStatus::Answered,
                views::ThreadStatus::Resolved => ThreadStatus::Resolved,
                views::ThreadStatus::Hidden => ThreadStatus::Hidden,
            },
            suggestion: t.suggestion.map(|s| match s {
                views::SuggestionState::Open => SuggestionState::Open,
                views::SuggestionState::Accepted => SuggestionState::Accepted,
                views::SuggestionState::Rejected => SuggestionState::Rejected,
            }),
            days_waiting: t.days_waiting,
            hidden: t.hidden.map(Into::into),
        }
    }
}

/// Text edits to one article since the read mark.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ArticleChanges {
    /// The article.
    pub article: String,
    /// Its current number, or none if removed.
    pub number: Option<u32>,
    /// How many separate edits.
    pub edits: u32,
}

/// "What changed since I last read".
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct ChangesSinceRead {
    /// When the read mark was set (none: never).
    pub since: Option<i64>,
    /// Articles whose text changed.
    pub articles: Vec<ArticleChanges>,
    /// New threads by others.
    pub new_threads: Vec<String>,
    /// New replies by others.
    pub new_replies: Vec<String>,
    /// New formal answers.
    pub new_answers: Vec<String>,
}

impl From<views::ChangesSinceRead> for ChangesSinceRead {
    fn from(c: views::ChangesSinceRead) -> Self {
        let ids = |v: Vec<klad_core::ContributionId>| v.into_iter().map(|i| i.0).collect();
        ChangesSinceRead {
            since: c.since,
            articles: c
                .articles
                .into_iter()
                .map(|a| ArticleChanges {
                    article: a.article.0,
                    number: a.number.map(|n| n as u32),
                    edits: a.edits as u32,
                })
                .collect(),
            new_threads: ids(c.new_threads),
            new_replies: ids(c.new_replies),
            new_answers: ids(c.new_answers),
        }
    }
}

/// A run of characters written by one member.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct BlameSpan {
    /// First character.
    pub start: u32,
    /// End (exclusive).
    pub end: u32,
    /// The characters.
    pub text: String,
    /// The member who typed them, if their device is registered.
    pub member: Option<String>,
    /// Their name, or "unknown device".
    pub name: String,
}

impl From<views::BlameSpan> for BlameSpan {
    fn from(b: views::BlameSpan) -> Self {
        BlameSpan {
            start: b.start as u32,
            end: b.end as u32,
            text: b.text,
            member: b.member.map(|m| m.0),
            name: b.name,
        }
    }
}

/// Which kind of document a change was made to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum DocKind {
    /// The process document.
    Process,
    /// The text.
    Text,
    /// A member's contributions.
    Contributions,
}

/// One change in the history of a process.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct HistoryEntry {
    /// Which document it changed.
    pub doc: DocKind,
    /// For a contributions document: whose.
    pub owner: Option<String>,
    /// The change hash (hex).
    pub hash: String,
    /// The member whose device made it, if known.
    pub author: Option<String>,
    /// Their name, "Klad server" or "unknown device".
    pub name: String,
    /// When (ms since the Unix epoch, whole seconds).
    pub time: i64,
    /// What it did.
    pub message: String,
}

impl From<views::HistoryEntry> for HistoryEntry {
    fn from(h: views::HistoryEntry) -> Self {
        HistoryEntry {
            doc: match h.doc {
                klad_core::DocKind::Process => DocKind::Process,
                klad_core::DocKind::Text => DocKind::Text,
                klad_core::DocKind::Contributions => DocKind::Contributions,
            },
            owner: h.owner.map(|m| m.0),
            hash: h.hash,
            author: h.author.map(|m| m.0),
            name: h.name,
            time: h.time,
            message: h.message,
        }
    }
}

/// What a facilitator enters on behalf of someone without a phone.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum OnBehalf {
    /// A comment on characters `start..end` of an article.
    Comment {
        /// The article.
        article: String,
        /// First character.
        start: u32,
        /// End (exclusive).
        end: u32,
        /// What they said.
        text: String,
    },
    /// A reply in a thread.
    Reply {
        /// The thread.
        thread: String,
        /// What they said.
        text: String,
    },
    /// A suggestion for characters `start..end`.
    Suggestion {
        /// The article.
        article: String,
        /// First character.
        start: u32,
        /// End (exclusive).
        end: u32,
        /// Proposed wording.
        replacement: String,
        /// Why.
        text: String,
    },
}

impl From<OnBehalf> for klad_core::OnBehalf {
    fn from(o: OnBehalf) -> Self {
        match o {
            OnBehalf::Comment {
                article,
                start,
                end,
                text,
            } => klad_core::OnBehalf::Comment {
                article: article.into(),
                start: start as usize,
                end: end as usize,
                text,
            },
            OnBehalf::Reply { thread, text } => klad_core::OnBehalf::Reply {
                thread: thread.into(),
                text,
            },
            OnBehalf::Suggestion {
                article,
                start,
                end,
                replacement,
                text,
            } => klad_core::OnBehalf::Suggestion {
                article: article.into(),
                start: start as usize,
                end: end as usize,
                replacement,
                text,
            },
        }
    }
}

/// How this phone stands with the server for one process.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SyncStatus {
    /// Connected to the server right now.
    pub online: bool,
    /// Local changes (committed ones plus typing not yet committed) the
    /// server has not acknowledged yet.
    pub unsynced_changes: u32,
    /// True only when the server has acknowledged, after storing it durably,
    /// every change made on this phone.
    pub all_on_server: bool,
    /// Set while typing is on screen but could not be saved on this phone
    /// (its storage is full or failing): why, as a sentence. The library
    /// tries again every few seconds and with every keystroke; the text is
    /// lost if the app is closed before then. Show it until it is `None`.
    pub not_saved: Option<String>,
}

/// Where a peer link stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum PeerLinkState {
    /// Waiting for the other phone to introduce itself.
    Handshaking,
    /// The other phone's invitation checked out; documents sync.
    Connected,
    /// The link has ended (see `closed_reason`).
    Closed,
}

/// A peer link's status.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct PeerLinkStatus {
    /// Handshaking, connected or closed.
    pub state: PeerLinkState,
    /// The member on the other phone, once their invitation checked out.
    pub peer: Option<Member>,
    /// How many changes from the other phone were refused because their
    /// member may not write the document they were for.
    pub refused_changes: u32,
    /// Why the last refused changes were refused, as a sentence.
    pub last_refusal: Option<String>,
    /// Why the link ended, as a sentence (when closed).
    pub closed_reason: Option<String>,
}
