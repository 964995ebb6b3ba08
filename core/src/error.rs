//! The one error type of klad-core: a kind (what sort of trouble, for code
//! that only needs to know that) carrying a typed [`Reason`] (exactly what
//! happened, with its data, a stable code and sentences in Dutch and English).
//!
//! `Display` gives the English sentence, so logs and tests read the same in
//! every deployment; whatever a person reads comes from
//! [`Error::message`] in their [`Lang`] (Dutch unless they chose English).

use crate::document::DocKind;
use crate::i18n::Lang;
use crate::reason::Reason;
use crate::rules::Refusal;

/// Everything that can go wrong in a domain operation or when opening a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The member's role or the process phase does not allow this action.
    NotAllowed(Reason),
    /// Something the operation refers to does not exist (yet) on this device.
    NotFound(Reason),
    /// The input itself is wrong (a range outside the text, an empty comment, ...).
    InvalidInput(Reason),
    /// The document was written by a newer version of Klad.
    NewerSchema {
        /// Which kind of document (process, text, contributions).
        kind: DocKind,
        /// The schema version found in the document.
        found: u64,
        /// The newest schema version this build understands.
        supported: u64,
    },
    /// The bytes are not a readable Automerge document, or not a Klad document of the expected kind.
    Corrupt(Reason),
}

impl Error {
    /// Exactly what happened.
    pub fn reason(&self) -> Reason {
        match self {
            Error::NotAllowed(r)
            | Error::NotFound(r)
            | Error::InvalidInput(r)
            | Error::Corrupt(r) => r.clone(),
            Error::NewerSchema {
                kind,
                found,
                supported,
            } => Reason::NewerSchema {
                kind: *kind,
                found: *found,
                supported: *supported,
            },
        }
    }

    /// The stable code of the reason (`role-may-not`, `empty-comment`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotAllowed(r)
            | Error::NotFound(r)
            | Error::InvalidInput(r)
            | Error::Corrupt(r) => r.code(),
            Error::NewerSchema { .. } => "newer-schema",
        }
    }

    /// The sentence for a person in `lang`: what happened and what to do.
    pub fn message(&self, lang: Lang) -> String {
        self.reason().message(lang)
    }
}

impl std::fmt::Display for Error {
    /// The English sentence (see the module documentation).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message(Lang::En))
    }
}

impl std::error::Error for Error {}

/// Result with klad-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Error::NotAllowed(r.reason())
    }
}

/// Automerge errors inside an operation on a well-formed document mean the
/// document does not have the shape we wrote; report that as corruption.
impl From<automerge::AutomergeError> for Error {
    fn from(e: automerge::AutomergeError) -> Self {
        Error::Corrupt(Reason::UnexpectedStructure {
            detail: e.to_string(),
        })
    }
}
