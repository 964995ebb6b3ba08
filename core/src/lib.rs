//! # klad-core
//!
//! The co-written ordinance and everything people say about it, as Automerge
//! documents: the schema, the domain operations, the rules of who may do what,
//! and the views people read.
//!
//! Core does no IO, reads no clock (every operation takes `now_ms`) and
//! runs no async runtime: the server and the phone client are adapters around it.
//!
//! - [`rules::may`] is the one table of who may do what, when.
//! - [`ProcessDoc`], [`TextDoc`], [`ContributionsDoc`] are the three kinds of document.
//! - [`Session`] is one member at work: every domain operation, checked against the rules.
//! - [`views`] are pure functions over a process's documents.
//! - [`Reason`] is why something was refused or failed, with its sentences in
//!   Dutch and English ([`i18n`], [`Lang`]).
//! - [`history`] reads the past: moments, versions, word diffs, named versions.
//!
//! Storage is klad-store's: core does no IO at all (its `chunks` module
//! only checks bytes, and the store calls it).

pub mod anchor;
pub mod chunks;
pub mod contributions;
pub mod document;
pub mod error;
pub mod history;
pub mod i18n;
pub mod ids;
pub mod order;
pub mod process;
pub mod reason;
pub mod rules;
pub mod session;
pub mod text;
pub mod views;

pub use anchor::AnchorView;
pub use automerge::{ActorId, ChangeHash};
pub use contributions::{
    AnswerStatus, Body, Contribution, ContributionsDoc, ReadMark, StoredAnchor,
};
pub use document::{DocKind, KladDocument, SCHEMA_VERSION};
pub use error::{Error, Result};
pub use history::{
    ArticleDiff, DiffSpan, Moment, NamedVersion, Version, article_diff, text_moments, word_diff,
};
pub use i18n::Lang;
pub use ids::{ArticleId, ContributionId, DocId, MemberId, ProcessId};
pub use process::{DocRole, Member, NewMember, ProcessDoc, ProcessInfo};
pub use reason::Reason;
pub use rules::{
    Action, DocumentAccess, Phase, ReadOnlyReason, Refusal, Role, document_access, may,
};
pub use session::{OnBehalf, ProcessDocs, Session};
pub use text::{EditedAt, Splice, TextDoc};
