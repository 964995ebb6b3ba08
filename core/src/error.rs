//! The one error type of klad-core. Every message is a sentence for a person:
//! what happened and what to do about it.

use crate::rules::Refusal;

/// Everything that can go wrong in a domain operation or when opening a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The member's role or the process phase does not allow this action.
    #[error("{0}")]
    NotAllowed(String),
    /// Something the operation refers to does not exist (yet) on this device.
    #[error("{0}")]
    NotFound(String),
    /// The input itself is wrong (a range outside the text, an empty comment, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// The document was written by a newer version of Klad.
    #[error(
        "This {kind} document was written by a newer version of Klad (schema version {found}; this version understands up to {supported}). Update Klad to open it."
    )]
    NewerSchema {
        /// Which kind of document (process, text, contributions).
        kind: &'static str,
        /// The schema version found in the document.
        found: u64,
        /// The newest schema version this build understands.
        supported: u64,
    },
    /// The bytes are not a readable Automerge document, or not a Klad document of the expected kind.
    #[error("{0}")]
    Corrupt(String),
}

/// Result with klad-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Error::NotAllowed(r.message)
    }
}

/// Automerge errors inside an operation on a well-formed document mean the
/// document does not have the shape we wrote; report that as corruption.
impl From<automerge::AutomergeError> for Error {
    fn from(e: automerge::AutomergeError) -> Self {
        Error::Corrupt(format!(
            "The document does not have the structure Klad expects ({e}). Sync it again from the server or restore it from a backup."
        ))
    }
}
