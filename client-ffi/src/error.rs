//! The one public error type: five kinds, each with a sentence for a person.

use klad_store::StoreError;

/// Everything that can go wrong in a klad-ffi call. Its message (Kotlin
/// `message`, Swift `localizedDescription`, Python `str(e)`) is a sentence that
/// says what happened and what to do; show it as it is.
///
/// Exported as a flat error: the bindings carry the kind and the sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum KladError {
    /// The member's role or the process phase does not allow this.
    #[error("{message}")]
    NotAllowed {
        /// The sentence to show.
        message: String,
    },
    /// Something the call refers to is not (yet) on this device.
    #[error("{message}")]
    NotFound {
        /// The sentence to show.
        message: String,
    },
    /// The input is wrong (a range outside the text, an empty comment, a malformed id).
    #[error("{message}")]
    InvalidInput {
        /// The sentence to show.
        message: String,
    },
    /// The phone's own store could not be read or written, or holds damaged data.
    #[error("{message}")]
    Storage {
        /// The sentence to show.
        message: String,
    },
    /// The server could not be reached or refused the connection.
    #[error("{message}")]
    Network {
        /// The sentence to show.
        message: String,
    },
}

/// Result with [`KladError`].
pub type Result<T, E = KladError> = std::result::Result<T, E>;

impl KladError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        KladError::InvalidInput {
            message: message.into(),
        }
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        KladError::NotFound {
            message: message.into(),
        }
    }
    pub(crate) fn network(message: impl Into<String>) -> Self {
        KladError::Network {
            message: message.into(),
        }
    }
    pub(crate) fn storage(message: impl Into<String>) -> Self {
        KladError::Storage {
            message: message.into(),
        }
    }
}

impl From<klad_core::Error> for KladError {
    fn from(e: klad_core::Error) -> Self {
        let message = e.to_string();
        match e {
            klad_core::Error::NotAllowed(_) => KladError::NotAllowed { message },
            klad_core::Error::NotFound(_) => KladError::NotFound { message },
            klad_core::Error::InvalidInput(_) => KladError::InvalidInput { message },
            // Damaged or newer-schema documents are a problem of what is stored.
            klad_core::Error::NewerSchema { .. } | klad_core::Error::Corrupt(_) => {
                KladError::Storage { message }
            }
        }
    }
}

impl From<StoreError> for KladError {
    fn from(e: StoreError) -> Self {
        KladError::Storage {
            message: e.to_string(),
        }
    }
}
