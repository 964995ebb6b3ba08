//! Why klad-core refused something or could not do it: one typed [`Reason`]
//! per situation, with the data needed to say it, a stable code to branch on,
//! and its sentences in Dutch and English from the message catalogue
//! ([`crate::i18n`]).
//!
//! A reason is named after what happened, never after how it is worded. Its
//! [`Reason::code`] is the catalogue's message id and part of Klad's public
//! interface (the phone and the web desk branch on it): never rename one,
//! add a new reason instead.

use serde::{Deserialize, Serialize};

use crate::document::DocKind;
use crate::i18n::{self, Arg, Lang};
use crate::ids::{ArticleId, ContributionId, MemberId};
use crate::rules::{Action, Phase, Role};

/// Everything klad-core can refuse or fail with. The comment on each variant
/// says what happened; [`Reason::message`] says it to a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "kebab-case")]
pub enum Reason {
    // ---- the rules (not allowed) ----
    /// The member's role may never take this action.
    RoleMayNot {
        /// The role that asked.
        role: Role,
        /// What it asked to do.
        action: Action,
    },
    /// The action is not possible in the phase the process is in.
    PhaseClosed {
        /// What was asked.
        action: Action,
        /// The phase the process is in.
        phase: Phase,
    },
    /// Someone tried to write into another member's contributions document.
    NotYourContributions,

    // ---- not (yet) on this device ----
    /// A contributions document has not arrived yet.
    ContributionsNotHere,
    /// The member's own contributions document has not arrived yet.
    OwnContributionsNotHere,
    /// A version (heads) names changes this device does not have.
    VersionNotHere {
        /// Which document the version was of.
        kind: DocKind,
    },
    /// The member is not in the process.
    NoSuchMember {
        /// The member asked for.
        member: MemberId,
        /// The title of the process.
        process: String,
    },
    /// The process document has not (fully) arrived yet.
    ProcessNotHere,
    /// No thread with this id is known here.
    NoSuchThread {
        /// The id asked for.
        thread: ContributionId,
    },
    /// No contribution with this id is known here.
    NoSuchContribution {
        /// The id asked for.
        id: ContributionId,
    },
    /// The passage a suggestion is anchored to has not synced yet.
    SuggestionPassageNotHere,
    /// The text document has not arrived yet.
    TextNotHere,
    /// No article with this id is in the text.
    NoSuchArticle {
        /// The id asked for.
        article: ArticleId,
    },
    /// The article has been removed from the text.
    ArticleRemoved {
        /// The article.
        article: ArticleId,
    },
    /// The article to place another after is not (or no longer) in the text.
    NoArticleToPlaceAfter {
        /// The article asked for.
        article: ArticleId,
    },
    /// No named version with this id is in the process.
    NoSuchNamedVersion {
        /// The id asked for.
        id: String,
    },

    // ---- wrong input ----
    /// A passage is empty or reaches outside the article.
    PassageOutsideArticle {
        /// First character asked for.
        start: u64,
        /// One past the last character asked for.
        end: u64,
        /// The article's length in characters.
        len: u64,
    },
    /// A range ends before it starts.
    RangeReversed {
        /// Where it starts.
        start: u64,
        /// Where it ends.
        end: u64,
    },
    /// An edit reaches outside the heading or body it edits.
    EditOutsideField {
        /// Where the edit starts.
        pos: u64,
        /// How many characters it deletes.
        delete: u64,
        /// Whether it edits the heading (otherwise the body).
        heading: bool,
        /// The field's length in characters.
        len: u64,
    },
    /// A process was given an empty title.
    EmptyTitle,
    /// A member was given an empty name.
    EmptyMemberName,
    /// A comment is empty.
    EmptyComment,
    /// A reply is empty.
    EmptyReply,
    /// A formal answer has no reason.
    EmptyAnswerReason,
    /// Hiding or unhiding has no reason.
    EmptyHideReason,
    /// A contribution entered on behalf of someone does not name them.
    EmptyOnBehalfName,
    /// A named version has an empty name.
    EmptyVersionName,
    /// The member id is already in the process.
    AlreadyMember {
        /// The member id.
        member: MemberId,
    },
    /// The device id is registered to another member.
    DeviceTaken {
        /// The name of the member it belongs to.
        owner: String,
    },
    /// The device is registered with another signing key.
    DeviceKeyChanged,
    /// The phase asked for is not the next one.
    PhaseNotNext {
        /// The current phase.
        phase: Phase,
        /// The phase that would come next.
        next: Phase,
        /// The phase asked for.
        to: Phase,
    },
    /// The process is in its last phase.
    PhaseIsLast {
        /// The current (last) phase.
        phase: Phase,
        /// The phase asked for.
        to: Phase,
    },
    /// A reply or statement names a contribution that does not start a thread.
    NotAThread {
        /// The contribution.
        id: ContributionId,
    },
    /// A suggestion proposes the text it is anchored to.
    SuggestionUnchanged,
    /// Only suggestions can be accepted or rejected.
    NotASuggestion {
        /// The contribution.
        id: ContributionId,
    },
    /// The passage of the suggestion was deleted.
    SuggestionPassageDeleted,
    /// An article cannot be placed after itself.
    ArticleAfterItself,
    /// A write is still being stored (the phone's replica takes one at a time).
    WriteInProgress,
    /// Typing arrived against a version of the text that later typing superseded.
    TypingSuperseded,
    /// A language name Klad has no messages for.
    UnknownLanguage {
        /// What was given.
        given: String,
    },

    // ---- damaged or foreign documents ----
    /// The bytes are an Automerge document without Klad's header.
    NotKladDocument {
        /// The kind expected.
        kind: DocKind,
    },
    /// The document is a Klad document of another kind.
    WrongDocumentKind {
        /// The kind its header names.
        found: String,
        /// The kind expected.
        expected: DocKind,
    },
    /// The document was written by a newer version of Klad.
    NewerSchema {
        /// Which kind of document.
        kind: DocKind,
        /// The schema version found in the document.
        found: u64,
        /// The newest schema version this build understands.
        supported: u64,
    },
    /// A document is 0 bytes.
    DocumentEmpty {
        /// The kind expected.
        kind: DocKind,
    },
    /// A document's bytes are damaged.
    DocumentUnreadable {
        /// The kind expected.
        kind: DocKind,
        /// What is wrong with them (technical, English).
        detail: String,
    },
    /// Received changes are damaged; nothing was applied.
    ChangesUnreadable {
        /// The document they were for.
        kind: DocKind,
        /// What is wrong with them (technical, English).
        detail: String,
    },
    /// A document lacks structure Klad wrote.
    UnexpectedStructure {
        /// Automerge's error (technical, English).
        detail: String,
    },
    /// A member's role in the process document cannot be read.
    NoValidRole {
        /// The member.
        member: MemberId,
    },
    /// The process document has no member list.
    NoMemberList,
    /// A member's entry in the process document is damaged.
    MemberEntryDamaged {
        /// The member.
        member: MemberId,
    },
    /// An article lacks its heading or body.
    ArticleDamaged {
        /// The article.
        article: ArticleId,
    },
    /// Automerge could not start an edit of the text at a version.
    TextNotEditable {
        /// Automerge's error (technical, English).
        detail: String,
    },
}

impl Reason {
    /// The stable code of this reason (`role-may-not`, `phase-closed`, ...):
    /// the catalogue's message id, for callers to branch on.
    pub fn code(&self) -> &'static str {
        use Reason::*;
        match self {
            RoleMayNot { .. } => "role-may-not",
            PhaseClosed { .. } => "phase-closed",
            NotYourContributions => "not-your-contributions",
            ContributionsNotHere => "contributions-not-here",
            OwnContributionsNotHere => "own-contributions-not-here",
            VersionNotHere { .. } => "version-not-here",
            NoSuchMember { .. } => "no-such-member",
            ProcessNotHere => "process-not-here",
            NoSuchThread { .. } => "no-such-thread",
            NoSuchContribution { .. } => "no-such-contribution",
            SuggestionPassageNotHere => "suggestion-passage-not-here",
            TextNotHere => "text-not-here",
            NoSuchArticle { .. } => "no-such-article",
            ArticleRemoved { .. } => "article-removed",
            NoArticleToPlaceAfter { .. } => "no-article-to-place-after",
            NoSuchNamedVersion { .. } => "no-such-named-version",
            PassageOutsideArticle { .. } => "passage-outside-article",
            RangeReversed { .. } => "range-reversed",
            EditOutsideField { .. } => "edit-outside-field",
            EmptyTitle => "empty-title",
            EmptyMemberName => "empty-member-name",
            EmptyComment => "empty-comment",
            EmptyReply => "empty-reply",
            EmptyAnswerReason => "empty-answer-reason",
            EmptyHideReason => "empty-hide-reason",
            EmptyOnBehalfName => "empty-on-behalf-name",
            EmptyVersionName => "empty-version-name",
            AlreadyMember { .. } => "already-member",
            DeviceTaken { .. } => "device-taken",
            DeviceKeyChanged => "device-key-changed",
            PhaseNotNext { .. } => "phase-not-next",
            PhaseIsLast { .. } => "phase-is-last",
            NotAThread { .. } => "not-a-thread",
            SuggestionUnchanged => "suggestion-unchanged",
            NotASuggestion { .. } => "not-a-suggestion",
            SuggestionPassageDeleted => "suggestion-passage-deleted",
            ArticleAfterItself => "article-after-itself",
            WriteInProgress => "write-in-progress",
            TypingSuperseded => "typing-superseded",
            UnknownLanguage { .. } => "unknown-language",
            NotKladDocument { .. } => "not-klad-document",
            WrongDocumentKind { .. } => "wrong-document-kind",
            NewerSchema { .. } => "newer-schema",
            DocumentEmpty { .. } => "document-empty",
            DocumentUnreadable { .. } => "document-unreadable",
            ChangesUnreadable { .. } => "changes-unreadable",
            UnexpectedStructure { .. } => "unexpected-structure",
            NoValidRole { .. } => "no-valid-role",
            NoMemberList => "no-member-list",
            MemberEntryDamaged { .. } => "member-entry-damaged",
            ArticleDamaged { .. } => "article-damaged",
            TextNotEditable { .. } => "text-not-editable",
        }
    }

    /// The placeholders of this reason's sentence and what fills them.
    fn args(&self) -> Vec<(&'static str, Arg)> {
        use Reason::*;
        let text = |s: &str| Arg::Text(s.to_owned());
        match self {
            RoleMayNot { role, action } => vec![
                ("role", Arg::Role(*role)),
                ("action", Arg::Action(*action)),
                ("allowed", Arg::Roles(action.roles())),
            ],
            PhaseClosed { action, phase } => vec![
                ("action", Arg::Action(*action)),
                ("phase", Arg::Phase(*phase)),
                ("allowed", Arg::Phases(action.phases())),
            ],
            VersionNotHere { kind } | NotKladDocument { kind } | DocumentEmpty { kind } => {
                vec![("kind", Arg::Kind(*kind))]
            }
            NoSuchMember { member, process } => {
                vec![
                    ("member", text(member.as_str())),
                    ("process", text(process)),
                ]
            }
            NoSuchThread { thread: id }
            | NoSuchContribution { id }
            | NotAThread { id }
            | NotASuggestion { id } => vec![("id", text(id.as_str()))],
            NoSuchArticle { article }
            | ArticleRemoved { article }
            | NoArticleToPlaceAfter { article }
            | ArticleDamaged { article } => vec![("article", text(article.as_str()))],
            NoSuchNamedVersion { id } => vec![("id", text(id))],
            PassageOutsideArticle { start, end, len } => vec![
                ("start", Arg::Number(*start)),
                ("end", Arg::Number(*end)),
                ("len", Arg::Number(*len)),
            ],
            RangeReversed { start, end } => {
                vec![("start", Arg::Number(*start)), ("end", Arg::Number(*end))]
            }
            EditOutsideField {
                pos,
                delete,
                heading,
                len,
            } => vec![
                ("pos", Arg::Number(*pos)),
                ("delete", Arg::Number(*delete)),
                (
                    "field",
                    Arg::Select(if *heading { "heading" } else { "body" }),
                ),
                ("len", Arg::Number(*len)),
            ],
            AlreadyMember { member } | NoValidRole { member } | MemberEntryDamaged { member } => {
                vec![("member", text(member.as_str()))]
            }
            DeviceTaken { owner } => vec![("owner", text(owner))],
            PhaseNotNext { phase, next, to } => vec![
                ("phase", Arg::Phase(*phase)),
                ("next", Arg::Phase(*next)),
                ("to", Arg::Phase(*to)),
            ],
            PhaseIsLast { phase, to } => {
                vec![("phase", Arg::Phase(*phase)), ("to", Arg::Phase(*to))]
            }
            UnknownLanguage { given } => vec![("given", text(given))],
            WrongDocumentKind { found, expected } => {
                vec![("found", text(found)), ("expected", Arg::Kind(*expected))]
            }
            NewerSchema {
                kind,
                found,
                supported,
            } => vec![
                ("kind", Arg::Kind(*kind)),
                ("found", Arg::Number(*found)),
                ("supported", Arg::Number(*supported)),
            ],
            DocumentUnreadable { kind, detail } | ChangesUnreadable { kind, detail } => {
                vec![("kind", Arg::Kind(*kind)), ("detail", text(detail))]
            }
            UnexpectedStructure { detail } | TextNotEditable { detail } => {
                vec![("detail", text(detail))]
            }
            NotYourContributions
            | ContributionsNotHere
            | OwnContributionsNotHere
            | ProcessNotHere
            | SuggestionPassageNotHere
            | TextNotHere
            | EmptyTitle
            | EmptyMemberName
            | EmptyComment
            | EmptyReply
            | EmptyAnswerReason
            | EmptyHideReason
            | EmptyOnBehalfName
            | EmptyVersionName
            | DeviceKeyChanged
            | SuggestionUnchanged
            | SuggestionPassageDeleted
            | ArticleAfterItself
            | WriteInProgress
            | TypingSuperseded
            | NoMemberList => vec![],
        }
    }

    /// The sentence for a person in `lang`: what happened and what to do.
    ///
    /// Never fails: should the catalogue lack the message (a bug the tests
    /// catch), the English sentence is used, and failing that the code.
    pub fn message(&self, lang: Lang) -> String {
        let args = self.args();
        i18n::format(lang, self.code(), &args)
            .or_else(|_| i18n::format(Lang::En, self.code(), &args))
            .unwrap_or_else(|_| self.code().to_owned())
    }

    /// Like [`Reason::message`], but says what went wrong instead of falling
    /// back: the message is missing, a placeholder was not filled, or the
    /// catalogue did not parse. For tests of the catalogue.
    pub fn checked_message(&self, lang: Lang) -> Result<String, String> {
        i18n::format(lang, self.code(), &self.args())
    }
}

impl std::fmt::Display for Reason {
    /// The English sentence (logs and tests read English; people get
    /// [`Reason::message`] in their language).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message(Lang::En))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One example of every reason. [`variant`] below has no wildcard, so a
    /// new reason does not compile until it is listed there, and the test
    /// fails until an example of it is added here.
    fn examples() -> Vec<Reason> {
        use Reason::*;
        let member = MemberId::from("m-1");
        let article = ArticleId::from("a-1");
        let id = ContributionId::from("c-1");
        let mut all = vec![
            NotYourContributions,
            ContributionsNotHere,
            OwnContributionsNotHere,
            NoSuchMember {
                member: member.clone(),
                process: "Groen in de wijk".into(),
            },
            ProcessNotHere,
            NoSuchThread { thread: id.clone() },
            NoSuchContribution { id: id.clone() },
            SuggestionPassageNotHere,
            TextNotHere,
            NoSuchArticle {
                article: article.clone(),
            },
            ArticleRemoved {
                article: article.clone(),
            },
            NoArticleToPlaceAfter {
                article: article.clone(),
            },
            NoSuchNamedVersion { id: "v-1".into() },
            PassageOutsideArticle {
                start: 3,
                end: 90,
                len: 40,
            },
            RangeReversed { start: 9, end: 2 },
            EmptyTitle,
            EmptyMemberName,
            EmptyComment,
            EmptyReply,
            EmptyAnswerReason,
            EmptyHideReason,
            EmptyOnBehalfName,
            EmptyVersionName,
            AlreadyMember {
                member: member.clone(),
            },
            DeviceTaken {
                owner: "Anna".into(),
            },
            DeviceKeyChanged,
            PhaseNotNext {
                phase: Phase::Drafting,
                next: Phase::Consultation,
                to: Phase::Final,
            },
            PhaseIsLast {
                phase: Phase::Final,
                to: Phase::Drafting,
            },
            NotAThread { id: id.clone() },
            SuggestionUnchanged,
            NotASuggestion { id },
            SuggestionPassageDeleted,
            ArticleAfterItself,
            WriteInProgress,
            TypingSuperseded,
            UnknownLanguage { given: "fr".into() },
            WrongDocumentKind {
                found: "process".into(),
                expected: DocKind::Text,
            },
            UnexpectedStructure {
                detail: "invalid op".into(),
            },
            NoValidRole {
                member: member.clone(),
            },
            NoMemberList,
            MemberEntryDamaged { member },
            ArticleDamaged { article },
            TextNotEditable {
                detail: "invalid heads".into(),
            },
        ];
        for heading in [true, false] {
            all.push(EditOutsideField {
                pos: 7,
                delete: 2,
                heading,
                len: 5,
            });
        }
        for kind in [DocKind::Process, DocKind::Text, DocKind::Contributions] {
            all.extend([
                VersionNotHere { kind },
                NotKladDocument { kind },
                DocumentEmpty { kind },
                NewerSchema {
                    kind,
                    found: 2,
                    supported: 1,
                },
                DocumentUnreadable {
                    kind,
                    detail: "have a bad checksum".into(),
                },
                ChangesUnreadable {
                    kind,
                    detail: "have a bad checksum".into(),
                },
            ]);
        }
        // Every refusal the rules can give.
        for role in Role::ALL {
            for phase in Phase::ALL {
                for action in Action::ALL {
                    if let Err(r) = crate::rules::may(role, phase, action) {
                        all.push(r.reason());
                    }
                }
            }
        }
        all
    }

    /// The index of a reason's variant; no wildcard (see [`examples`]).
    fn variant(r: &Reason) -> usize {
        use Reason::*;
        match r {
            RoleMayNot { .. } => 0,
            PhaseClosed { .. } => 1,
            NotYourContributions => 2,
            ContributionsNotHere => 3,
            OwnContributionsNotHere => 4,
            VersionNotHere { .. } => 5,
            NoSuchMember { .. } => 6,
            ProcessNotHere => 7,
            NoSuchThread { .. } => 8,
            NoSuchContribution { .. } => 9,
            SuggestionPassageNotHere => 10,
            TextNotHere => 11,
            NoSuchArticle { .. } => 12,
            ArticleRemoved { .. } => 13,
            NoArticleToPlaceAfter { .. } => 14,
            NoSuchNamedVersion { .. } => 15,
            PassageOutsideArticle { .. } => 16,
            RangeReversed { .. } => 17,
            EditOutsideField { .. } => 18,
            EmptyTitle => 19,
            EmptyMemberName => 20,
            EmptyComment => 21,
            EmptyReply => 22,
            EmptyAnswerReason => 23,
            EmptyHideReason => 24,
            EmptyOnBehalfName => 25,
            EmptyVersionName => 26,
            AlreadyMember { .. } => 27,
            DeviceTaken { .. } => 28,
            DeviceKeyChanged => 29,
            PhaseNotNext { .. } => 30,
            PhaseIsLast { .. } => 31,
            NotAThread { .. } => 32,
            SuggestionUnchanged => 33,
            NotASuggestion { .. } => 34,
            SuggestionPassageDeleted => 35,
            ArticleAfterItself => 36,
            WriteInProgress => 37,
            TypingSuperseded => 38,
            UnknownLanguage { .. } => 39,
            NotKladDocument { .. } => 40,
            WrongDocumentKind { .. } => 41,
            NewerSchema { .. } => 42,
            DocumentEmpty { .. } => 43,
            DocumentUnreadable { .. } => 44,
            ChangesUnreadable { .. } => 45,
            UnexpectedStructure { .. } => 46,
            NoValidRole { .. } => 47,
            NoMemberList => 48,
            MemberEntryDamaged { .. } => 49,
            ArticleDamaged { .. } => 50,
            TextNotEditable { .. } => 51,
        }
    }
    const VARIANTS: usize = 52;

    #[test]
    fn the_examples_cover_every_reason_and_codes_are_distinct() {
        let mut seen = vec![None; VARIANTS];
        for r in examples() {
            let code = r.code();
            match seen[variant(&r)] {
                None => seen[variant(&r)] = Some(code),
                Some(c) => assert_eq!(c, code, "one variant, one code"),
            }
        }
        let codes: Vec<&str> = seen
            .iter()
            .enumerate()
            .map(|(i, c)| c.unwrap_or_else(|| panic!("no example of reason {i}")))
            .collect();
        let mut distinct = codes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), codes.len(), "{codes:?}");
    }

    /// Every reason has a sentence in both languages, with every placeholder
    /// filled with its value, and the two languages differ.
    #[test]
    fn every_reason_has_a_full_sentence_in_dutch_and_english() {
        for r in examples() {
            let nl = r.checked_message(Lang::Nl);
            let en = r.checked_message(Lang::En);
            for (lang, m) in [(Lang::Nl, &nl), (Lang::En, &en)] {
                let m = m
                    .as_ref()
                    .unwrap_or_else(|e| panic!("{} in {lang}: {e}", r.code()));
                assert!(!m.contains('{') && !m.contains('}'), "{lang}: {m}");
                assert!(!m.contains('\u{2068}'), "no isolation marks: {m}");
                let starts_with_value = r
                    .args()
                    .iter()
                    .any(|(_, a)| matches!(a, Arg::Text(t) if m.starts_with(t.as_str())));
                assert!(
                    starts_with_value || m.chars().next().is_some_and(char::is_uppercase),
                    "{m}"
                );
                assert!(m.ends_with('.'), "a sentence: {m}");
                assert_eq!(r.message(lang), *m);
                for (_, arg) in r.args() {
                    match arg {
                        Arg::Text(t) => assert!(m.contains(&t), "{lang} {}: {t} in {m}", r.code()),
                        Arg::Number(n) => {
                            assert!(m.contains(&n.to_string()), "{lang}: {n} in {m}")
                        }
                        _ => {}
                    }
                }
            }
            assert_ne!(nl, en, "{}", r.code());
            assert_eq!(r.to_string(), en.unwrap_or_default());
        }
    }

    #[test]
    fn sentences_read_as_reviewed() {
        let r = Reason::RoleMayNot {
            role: Role::Official,
            action: Action::EditText,
        };
        assert_eq!(
            r.message(Lang::Nl),
            "Als ambtenaar mag u dit niet: de tekst van de artikelen wijzigen. Alleen inwoners mogen dat."
        );
        assert_eq!(
            r.message(Lang::En),
            "As an official, you cannot change the article text: only drafters can."
        );
        let r = Reason::PhaseClosed {
            action: Action::Comment,
            phase: Phase::Final,
        };
        assert_eq!(
            r.message(Lang::Nl),
            "Dit kan nu niet: een reactie geven op een stuk tekst. Het proces is in de fase afronding. Dit kan alleen in de fase schrijven of inspraak."
        );
        let r = Reason::EditOutsideField {
            pos: 7,
            delete: 2,
            heading: true,
            len: 5,
        };
        assert!(r.message(Lang::Nl).contains("buiten de kop"), "{r}");
        assert!(r.message(Lang::En).contains("outside the heading"), "{r}");
    }

    #[test]
    fn a_reason_serializes_with_its_code() {
        let r = Reason::RangeReversed { start: 9, end: 2 };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["code"], r.code());
        assert_eq!(json["start"], 9);
    }
}
