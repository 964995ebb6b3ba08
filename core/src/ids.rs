//! Identifiers. All are opaque strings on the outside; new ones are random UUIDs.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// A new random (UUID v4) identifier.
            pub fn random() -> Self {
                Self(uuid::Uuid::new_v4().to_string())
            }
            /// The identifier as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// Identifies one drafting process (one ordinance being written).
    ProcessId
);
string_id!(
    /// Identifies a member of a process; stable for the life of the process.
    MemberId
);
string_id!(
    /// Identifies an article in the text; stable across reordering. Article
    /// *numbers* are derived from order and never stored.
    ArticleId
);
string_id!(
    /// Identifies one contribution (comment, reply, suggestion, answer, ...).
    /// The id of a comment or suggestion is also the id of its thread.
    ContributionId
);
string_id!(
    /// Identifies an Automerge document to the sync layer (for example an
    /// automerge-repo document id). Core treats it as opaque.
    DocId
);
