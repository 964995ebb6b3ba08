//! Who may do what, and when: the one table every part of Klad consults.
//!
//! [`may`] is used by core to refuse an operation locally with a clear sentence,
//! and by the server's share policy to decide which documents a connection may
//! write. The whole table is documented in `docs/SCHEMA.md`.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::i18n::Lang;
use crate::reason::Reason;

/// The role of a member in a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A resident who writes the article text.
    Drafter,
    /// A civil servant who comments, suggests wording and gives formal answers.
    Official,
    /// A member of the facilitation team who runs the process.
    Facilitator,
    /// Reads everything, writes nothing but their own read marks.
    Observer,
}

impl Role {
    /// Every role, in table order.
    pub const ALL: [Role; 4] = [
        Role::Drafter,
        Role::Official,
        Role::Facilitator,
        Role::Observer,
    ];

    /// The stored name (`drafter`, `official`, `facilitator`, `observer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Drafter => "drafter",
            Role::Official => "official",
            Role::Facilitator => "facilitator",
            Role::Observer => "observer",
        }
    }

    /// Parses a stored or typed role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phase of a process. Phases only move forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Residents write the text; everyone discusses it.
    Drafting,
    /// The text is frozen; officials and residents discuss and answer.
    Consultation,
    /// The process is closed; only formal answers, moderation and reading remain.
    Final,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 3] = [Phase::Drafting, Phase::Consultation, Phase::Final];

    /// The stored name (`drafting`, `consultation`, `final`).
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Drafting => "drafting",
            Phase::Consultation => "consultation",
            Phase::Final => "final",
        }
    }

    /// Parses a stored or typed phase name.
    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The phase after this one, if any.
    pub fn next(self) -> Option<Phase> {
        match self {
            Phase::Drafting => Some(Phase::Consultation),
            Phase::Consultation => Some(Phase::Final),
            Phase::Final => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a member can ask Klad to do that the rules decide on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Create, reorder or remove articles; edit a heading or body.
    EditText,
    /// Comment on a passage of an article.
    Comment,
    /// Reply in a thread.
    Reply,
    /// Suggest new wording for a passage.
    Suggest,
    /// Accept (applying it to the text) or reject a suggestion.
    DecideSuggestion,
    /// Give a formal answer to a thread.
    Answer,
    /// Resolve or reopen a thread.
    Resolve,
    /// Hide or unhide a contribution, with a reason.
    Hide,
    /// Enter a comment, reply or suggestion on behalf of someone without a phone.
    EnterOnBehalf,
    /// Record what one has read.
    MarkRead,
    /// Move the process to its next phase.
    ChangePhase,
    /// Invite members or change their devices.
    ManageMembers,
    /// Give the current version of the process a name ("Concept voor inspraak").
    NameVersion,
}

impl Action {
    /// Every action, in table order.
    pub const ALL: [Action; 13] = [
        Action::EditText,
        Action::Comment,
        Action::Reply,
        Action::Suggest,
        Action::DecideSuggestion,
        Action::Answer,
        Action::Resolve,
        Action::Hide,
        Action::EnterOnBehalf,
        Action::MarkRead,
        Action::ChangePhase,
        Action::ManageMembers,
        Action::NameVersion,
    ];

    /// The stored name (`edit_text`, `comment`, ...), as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::EditText => "edit_text",
            Action::Comment => "comment",
            Action::Reply => "reply",
            Action::Suggest => "suggest",
            Action::DecideSuggestion => "decide_suggestion",
            Action::Answer => "answer",
            Action::Resolve => "resolve",
            Action::Hide => "hide",
            Action::EnterOnBehalf => "enter_on_behalf",
            Action::MarkRead => "mark_read",
            Action::ChangePhase => "change_phase",
            Action::ManageMembers => "manage_members",
            Action::NameVersion => "name_version",
        }
    }

    /// What doing it is called in a sentence ("change the article text").
    pub fn phrase(self) -> &'static str {
        match self {
            Action::EditText => "change the article text",
            Action::Comment => "comment on a passage",
            Action::Reply => "reply in a thread",
            Action::Suggest => "suggest new wording",
            Action::DecideSuggestion => "accept or reject a suggestion",
            Action::Answer => "give a formal answer",
            Action::Resolve => "resolve or reopen a thread",
            Action::Hide => "hide or unhide a contribution",
            Action::EnterOnBehalf => "enter a contribution on behalf of someone else",
            Action::MarkRead => "mark contributions as read",
            Action::ChangePhase => "move the process to its next phase",
            Action::ManageMembers => "invite members or manage their devices",
            Action::NameVersion => "name a version of the text",
        }
    }

    /// The roles that may take this action (in some phase).
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Action::EditText | Action::DecideSuggestion => &[Drafter],
            Action::Comment | Action::Reply => &[Drafter, Official, Facilitator],
            Action::Suggest => &[Drafter, Official],
            Action::Answer => &[Official],
            Action::Resolve => &[Drafter, Facilitator],
            Action::Hide
            | Action::EnterOnBehalf
            | Action::ChangePhase
            | Action::ManageMembers
            | Action::NameVersion => &[Facilitator],
            Action::MarkRead => &[Drafter, Official, Facilitator, Observer],
        }
    }

    /// The phases in which this action is possible (for the roles that may take it).
    pub fn phases(self) -> &'static [Phase] {
        use Phase::*;
        match self {
            // Rule 1 (README, ARCHITECTURE.md): the text changes only while drafting.
            Action::EditText | Action::DecideSuggestion | Action::Suggest => &[Drafting],
            Action::Comment
            | Action::Reply
            | Action::Resolve
            | Action::EnterOnBehalf
            | Action::ChangePhase
            | Action::ManageMembers => &[Drafting, Consultation],
            // A version is worth a name in every phase (the final text too).
            Action::Answer | Action::Hide | Action::MarkRead | Action::NameVersion => {
                &[Drafting, Consultation, Final]
            }
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.phrase())
    }
}

/// Why an action was refused: what was asked, by which role, in which phase.
/// [`Refusal::reason`] says which rule stands in the way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The role that asked.
    pub role: Role,
    /// The phase the process was in.
    pub phase: Phase,
    /// What was asked.
    pub action: Action,
}

impl Refusal {
    /// The rule that stands in the way: the role ([`Reason::RoleMayNot`]) or,
    /// for a role that may take the action at other times, the phase
    /// ([`Reason::PhaseClosed`]).
    pub fn reason(&self) -> Reason {
        if self.action.roles().contains(&self.role) {
            Reason::PhaseClosed {
                action: self.action,
                phase: self.phase,
            }
        } else {
            Reason::RoleMayNot {
                role: self.role,
                action: self.action,
            }
        }
    }

    /// The sentence for a person in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        self.reason().message(lang)
    }
}

impl fmt::Display for Refusal {
    /// The English sentence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message(Lang::En))
    }
}

impl std::error::Error for Refusal {}

/// Decides whether a member with `role` may take `action` while the process is in `phase`.
///
/// This is the only place the rules live. A refusal's [`Refusal::reason`] says
/// what is not allowed and who or when it is allowed instead.
pub fn may(role: Role, phase: Phase, action: Action) -> Result<(), Refusal> {
    if action.roles().contains(&role) && action.phases().contains(&phase) {
        Ok(())
    } else {
        Err(Refusal {
            role,
            phase,
            action,
        })
    }
}

/// Why a member may read a whole document but not write it. The labels are
/// used in metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadOnlyReason {
    /// The process document is written by the server only.
    ProcessDocument,
    /// Only drafters change the text.
    TextNotADrafter,
    /// The text changes only in the drafting phase.
    TextOutsideDrafting,
    /// A contributions document is written by its owner only.
    AnotherMembersContributions,
    /// Observers write nothing that syncs (their read marks stay on their device).
    Observer,
}

impl ReadOnlyReason {
    /// The label used in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            ReadOnlyReason::ProcessDocument => "process_document",
            ReadOnlyReason::TextNotADrafter => "text_not_a_drafter",
            ReadOnlyReason::TextOutsideDrafting => "text_outside_drafting",
            ReadOnlyReason::AnotherMembersContributions => "another_members_contributions",
            ReadOnlyReason::Observer => "observer",
        }
    }

    /// Why such changes are refused, as the end of a sentence ("… were refused: <this>.").
    pub fn explanation(self) -> &'static str {
        match self {
            ReadOnlyReason::ProcessDocument => "only the server changes the process document",
            ReadOnlyReason::TextNotADrafter => "only drafters change the text",
            ReadOnlyReason::TextOutsideDrafting => {
                "the text changes only while the process is in the drafting phase"
            }
            ReadOnlyReason::AnotherMembersContributions => {
                "a contribution can only be written by its author"
            }
            ReadOnlyReason::Observer => "observers read, they do not write",
        }
    }
}

/// What a member of a process may do with one of its documents as a whole.
/// (Someone who is not a member gets nothing; that is decided before this.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentAccess {
    /// Read it; changes from this member are refused.
    ReadOnly(ReadOnlyReason),
    /// Read and write it.
    ReadWrite,
}

/// The rules at the document boundary, where a sync peer (the server, or a
/// phone on a peer link) accepts or refuses a whole document's changes:
/// the text is writable by those who may [`Action::EditText`] now, a
/// contributions document by its owner only, the process document by no member.
pub fn document_access(
    role: Role,
    phase: Phase,
    doc: crate::document::DocKind,
    own: bool,
) -> DocumentAccess {
    use crate::document::DocKind;
    // An observer writes only read marks, into their own contributions
    // document; whatever else they might put there is a statement their role
    // may not make, which every view ignores.
    if role == Role::Observer && !(doc == DocKind::Contributions && own) {
        return DocumentAccess::ReadOnly(ReadOnlyReason::Observer);
    }
    match doc {
        DocKind::Process => DocumentAccess::ReadOnly(ReadOnlyReason::ProcessDocument),
        DocKind::Text => match may(role, phase, Action::EditText) {
            Ok(()) => DocumentAccess::ReadWrite,
            Err(r) if !Action::EditText.roles().contains(&r.role) => {
                DocumentAccess::ReadOnly(ReadOnlyReason::TextNotADrafter)
            }
            Err(_) => DocumentAccess::ReadOnly(ReadOnlyReason::TextOutsideDrafting),
        },
        DocKind::Contributions if own => DocumentAccess::ReadWrite,
        DocKind::Contributions => {
            DocumentAccess::ReadOnly(ReadOnlyReason::AnotherMembersContributions)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
        assert_eq!(Role::parse("admin"), None);
    }

    #[test]
    fn text_is_only_for_drafters_while_drafting() {
        assert!(may(Role::Drafter, Phase::Drafting, Action::EditText).is_ok());
        let r = may(Role::Official, Phase::Drafting, Action::EditText).unwrap_err();
        assert_eq!(r.reason().code(), "role-may-not");
        assert_eq!(
            r.to_string(),
            "As an official, you cannot change the article text: only drafters can."
        );
        assert_eq!(
            r.message(Lang::Nl),
            "Als ambtenaar mag u dit niet: de tekst van de artikelen wijzigen. Alleen inwoners mogen dat."
        );
        let r = may(Role::Drafter, Phase::Consultation, Action::EditText).unwrap_err();
        assert_eq!(r.reason().code(), "phase-closed");
        assert!(r.to_string().contains("consultation phase"), "{r}");
    }
}
