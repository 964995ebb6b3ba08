//! The one public error type: five kinds, each with a stable code and a
//! sentence for a person in the app's language (see [`set_language`]).

use std::sync::atomic::{AtomicU8, Ordering};

use klad_core::Lang;
use klad_store::StoreError;

/// Everything that can go wrong in a klad-ffi call: its kind, a `code` to
/// branch on (klad-core's reason code, such as `role-may-not` or
/// `empty-comment`; for the phone library's own errors the kind's name:
/// `invalid-input`, `not-found`, `storage`, `network`) and a `sentence` that
/// says what happened and what to do, in the app's language ([`language`]):
/// show it as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum KladError {
    /// The member's role or the process phase does not allow this.
    #[error("{sentence}")]
    NotAllowed {
        /// What happened, as a stable code.
        code: String,
        /// The sentence to show.
        sentence: String,
    },
    /// Something the call refers to is not (yet) on this device.
    #[error("{sentence}")]
    NotFound {
        /// What happened, as a stable code.
        code: String,
        /// The sentence to show.
        sentence: String,
    },
    /// The input is wrong (a range outside the text, an empty comment, a malformed id).
    #[error("{sentence}")]
    InvalidInput {
        /// What happened, as a stable code.
        code: String,
        /// The sentence to show.
        sentence: String,
    },
    /// The phone's own store could not be read or written, or holds damaged data.
    #[error("{sentence}")]
    Storage {
        /// What happened, as a stable code.
        code: String,
        /// The sentence to show.
        sentence: String,
    },
    /// The server could not be reached or refused the connection.
    #[error("{sentence}")]
    Network {
        /// What happened, as a stable code.
        code: String,
        /// The sentence to show.
        sentence: String,
    },
}

/// Result with [`KladError`].
pub type Result<T, E = KladError> = std::result::Result<T, E>;

/// The app's language: 0 Dutch (the default), 1 English. One setting for the
/// library, like the phone's own language setting: an app shows one language.
static LANGUAGE: AtomicU8 = AtomicU8::new(0);

/// The language the library's sentences are in now.
pub(crate) fn current_language() -> Lang {
    match LANGUAGE.load(Ordering::Relaxed) {
        1 => Lang::En,
        _ => Lang::Nl,
    }
}

/// Sets the language of every sentence the library gives (errors' `sentence`)
/// from a tag as the platform writes it: `nl`, `nl-NL`, `en`, `en-GB`,
/// `en_US`. Dutch until set. An unknown language is refused
/// (`unknown-language`) and the language stays as it was.
#[uniffi::export]
pub fn set_language(tag: String) -> Result<()> {
    let lang: Lang = tag.parse()?;
    let n = match lang {
        Lang::Nl => 0,
        Lang::En => 1,
    };
    LANGUAGE.store(n, Ordering::Relaxed);
    Ok(())
}

/// The language of the library's sentences now (`nl` or `en`).
#[uniffi::export]
pub fn language() -> String {
    current_language().as_str().to_owned()
}

impl KladError {
    /// The stable code of what happened.
    pub fn code(&self) -> &str {
        match self {
            KladError::NotAllowed { code, .. }
            | KladError::NotFound { code, .. }
            | KladError::InvalidInput { code, .. }
            | KladError::Storage { code, .. }
            | KladError::Network { code, .. } => code,
        }
    }

    // The phone library's own errors: English sentences, the kind as code.
    pub(crate) fn invalid(sentence: impl Into<String>) -> Self {
        KladError::InvalidInput {
            code: "invalid-input".into(),
            sentence: sentence.into(),
        }
    }
    pub(crate) fn not_found(sentence: impl Into<String>) -> Self {
        KladError::NotFound {
            code: "not-found".into(),
            sentence: sentence.into(),
        }
    }
    pub(crate) fn network(sentence: impl Into<String>) -> Self {
        KladError::Network {
            code: "network".into(),
            sentence: sentence.into(),
        }
    }
    pub(crate) fn storage(sentence: impl Into<String>) -> Self {
        KladError::Storage {
            code: "storage".into(),
            sentence: sentence.into(),
        }
    }
}

impl From<klad_core::Error> for KladError {
    fn from(e: klad_core::Error) -> Self {
        let code = e.code().to_owned();
        let sentence = e.message(current_language());
        match e {
            klad_core::Error::NotAllowed(_) => KladError::NotAllowed { code, sentence },
            klad_core::Error::NotFound(_) => KladError::NotFound { code, sentence },
            klad_core::Error::InvalidInput(_) => KladError::InvalidInput { code, sentence },
            // Damaged or newer-schema documents are a problem of what is stored.
            klad_core::Error::NewerSchema { .. } | klad_core::Error::Corrupt(_) => {
                KladError::Storage { code, sentence }
            }
        }
    }
}

impl From<StoreError> for KladError {
    fn from(e: StoreError) -> Self {
        KladError::storage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_carry_their_code_and_the_sentence_in_the_language() {
        let refusal = || {
            klad_core::Error::from(
                klad_core::may(
                    klad_core::Role::Official,
                    klad_core::Phase::Drafting,
                    klad_core::Action::EditText,
                )
                .unwrap_err(),
            )
        };
        // The only test in this crate that sets the language; it ends in Dutch.
        assert_eq!(language(), "nl");
        let nl = KladError::from(refusal());
        assert_eq!(nl.code(), "role-may-not");
        assert!(
            matches!(&nl, KladError::NotAllowed { sentence, .. } if sentence.starts_with("Als ambtenaar")),
            "{nl}"
        );
        set_language("en-GB".into()).unwrap();
        assert_eq!(language(), "en");
        let en = KladError::from(refusal());
        assert_eq!(
            en.to_string(),
            "As an official, you cannot change the article text: only drafters can."
        );
        let bad = set_language("fr".into()).unwrap_err();
        assert_eq!(bad.code(), "unknown-language");
        assert_eq!(language(), "en", "an unknown language changes nothing");
        set_language("nl".into()).unwrap();
        assert_eq!(language(), "nl");
    }
}
