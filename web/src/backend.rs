//! What the desk asks of the server it is mounted in. The desk renders and
//! parses; everything that decides or stores goes through this trait, which
//! klad-server implements on its own facilitation, hubs and store (the same
//! path and checks as any connection or API call). Tests implement it too.

use std::future::Future;

use std::collections::HashMap;

use klad_core::rules::{Phase, Role};
use klad_core::{AnswerStatus, ContributionId, MemberId, OnBehalf, ProcessDocs, ProcessId};

/// Who an invitation link (a member token) lets in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invited {
    /// Their process.
    pub process: ProcessId,
    /// The member.
    pub member: MemberId,
    /// Their role when the token was issued.
    pub role: Role,
    /// The token's generation (a revocation raises the valid one).
    pub generation: u64,
    /// When the token expires, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Why an invitation link does not let anyone in. Each has its own page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvitationProblem {
    /// The token's time is up.
    Expired,
    /// A facilitator withdrew it (or gave the member a new one).
    Revoked,
    /// It is not a token of this server, or it is damaged.
    Invalid,
    /// It names a member or process this server does not know (any more).
    Unknown,
}

/// A new member's invitation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInvitation {
    /// The new member.
    pub member: MemberId,
    /// Their name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// The token their link carries.
    pub token: String,
    /// When it expires, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// A process the desk opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProcess {
    /// Its id.
    pub process: ProcessId,
    /// Its title.
    pub title: String,
}

/// Why the server could not do what a page asked. Every message is a
/// sentence for a person (from klad-core or the server); the desk shows it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeskError {
    /// The member's role or the phase does not allow it.
    #[error("{0}")]
    Refused(String),
    /// What was filled in is wrong.
    #[error("{0}")]
    BadInput(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It clashes with what is there (a member of that name exists).
    #[error("{0}")]
    Conflict(String),
    /// The server is shutting down or cannot store now.
    #[error("{0}")]
    Unavailable(String),
    /// The server failed.
    #[error("{0}")]
    Internal(String),
    /// klad-core refused (the rules, the input) or failed: the desk says
    /// it in the reader's language.
    #[error("{0}")]
    Core(klad_core::Error),
}

/// Something a member does at the desk, written in their name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    /// A formal answer to a thread (officials).
    Answer {
        /// The thread.
        thread: ContributionId,
        /// Taken over, partly, not, or noted.
        status: AnswerStatus,
        /// Why.
        reason: String,
    },
    /// New text for an article's body (drafters, while drafting): the part
    /// that differs from the body as it is replaces that part.
    EditBody {
        /// The article.
        article: klad_core::ArticleId,
        /// The whole body as it should read.
        body: String,
    },
    /// A reply in a thread.
    Reply {
        /// The thread.
        thread: ContributionId,
        /// What they say.
        text: String,
    },
    /// A comment on a passage of an article.
    Comment {
        /// The article.
        article: klad_core::ArticleId,
        /// First character of the passage.
        start: usize,
        /// End of the passage (exclusive).
        end: usize,
        /// What they say.
        text: String,
    },
    /// New wording for a passage of an article, with why.
    Suggest {
        /// The article.
        article: klad_core::ArticleId,
        /// First character of the passage.
        start: usize,
        /// End of the passage (exclusive).
        end: usize,
        /// The proposed wording.
        replacement: String,
        /// Why.
        text: String,
    },
    /// A letter or spoken contribution a facilitator enters for a person
    /// without a phone (shown as entered on their behalf).
    OnBehalf {
        /// The person.
        person: String,
        /// What they said.
        what: OnBehalf,
    },
    /// Hide a contribution (facilitators), with a reason everyone sees.
    Hide {
        /// The contribution.
        target: ContributionId,
        /// Why.
        reason: String,
    },
    /// Show a hidden contribution again, with a reason.
    Unhide {
        /// The contribution.
        target: ContributionId,
        /// Why.
        reason: String,
    },
    /// Mark everything as seen (a facilitator closes a check-in).
    MarkRead,
}

/// When the server last saw each member of a process sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastSeen {
    /// Since when the server has been watching (seconds since the epoch): a
    /// member not seen since then may have synced before it.
    pub since: u64,
    /// The last moment each member was connected (seconds since the epoch).
    pub members: HashMap<MemberId, u64>,
}

/// What a signed-in desk session records (stored by the server, so a
/// restart does not sign people out and several nodes can share it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredSession {
    /// The member.
    pub member: MemberId,
    /// Their process.
    pub process: ProcessId,
    /// The generation of the token they signed in with: revoking it ends
    /// the session too.
    pub generation: u64,
    /// The session ends then (the token's expiry), seconds since the epoch.
    pub expires_at: u64,
    /// The secret every form of this session carries (CSRF protection).
    pub csrf: String,
    /// Their language (`nl` or `en`).
    pub lang: String,
}

/// The server side of the desk.
pub trait Backend: Send + Sync + 'static {
    /// Checks an invitation token: signature, expiry, membership, revocation.
    fn check_invitation(&self, token: &str) -> Result<Invited, InvitationProblem>;

    /// True while `member`'s tokens of `generation` are neither revoked nor
    /// is the member gone from their process.
    fn still_valid(&self, member: &MemberId, process: &ProcessId, generation: u64) -> bool;

    /// True when the server holds no process yet (the first run).
    fn is_empty(&self) -> bool;

    /// Every document of `process`, as the server holds them now.
    fn process_docs(
        &self,
        process: &ProcessId,
    ) -> impl Future<Output = Result<ProcessDocs, DeskError>> + Send;

    /// Opens a process and invites its first facilitator (the first run).
    fn create_process(
        &self,
        title: &str,
        facilitator: &str,
    ) -> impl Future<Output = Result<(NewProcess, NewInvitation), DeskError>> + Send;

    /// Invites a member on behalf of the facilitator `by`.
    fn invite(
        &self,
        process: &ProcessId,
        by: &MemberId,
        name: &str,
        role: Role,
    ) -> impl Future<Output = Result<NewInvitation, DeskError>> + Send;

    /// Writes `act` as `member` of `process`: klad-core's rules decide
    /// whether they may, the server checks the change's author and access as
    /// for any connection of theirs, and returns once it is stored.
    fn act(
        &self,
        process: &ProcessId,
        member: &MemberId,
        act: Act,
    ) -> impl Future<Output = Result<(), DeskError>> + Send;

    /// Moves `process` to `phase`, as the facilitator `by`.
    fn set_phase(
        &self,
        process: &ProcessId,
        by: &MemberId,
        phase: Phase,
    ) -> impl Future<Output = Result<(), DeskError>> + Send;

    /// Names the process's current version (facilitators), as `by`.
    fn name_version(
        &self,
        process: &ProcessId,
        by: &MemberId,
        name: &str,
    ) -> impl Future<Output = Result<(), DeskError>> + Send;

    /// When the members of `process` last synced.
    fn last_seen(&self, process: &ProcessId) -> LastSeen;

    /// Stores a session under `id` (a hash of the cookie, never the cookie).
    fn save_session(
        &self,
        id: &str,
        session: &StoredSession,
    ) -> impl Future<Output = Result<(), DeskError>> + Send;

    /// The session stored under `id`, if any.
    fn load_session(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<StoredSession>, DeskError>> + Send;

    /// Forgets the session stored under `id`.
    fn delete_session(&self, id: &str) -> impl Future<Output = Result<(), DeskError>> + Send;
}
