//! Why the hub closes a connection: a typed reason with its websocket close
//! code, its metric label and the sentence the peer reads (at most 123 bytes,
//! the room a websocket close frame has for a reason).

use crate::wire::FrameError;

/// The websocket close code for a kind of data the server does not take at
/// all, such as text frames (1003; the adapter's, the hub sees bytes only).
pub const UNSUPPORTED_DATA: u16 = 1003;
/// The websocket close code for a frame whose data is not what the protocol
/// says it must be (1007).
pub const INVALID_DATA: u16 = 1007;
/// The websocket close code for a frame that breaks the protocol or a rule (1008).
pub const POLICY_VIOLATION: u16 = 1008;
/// The websocket close code for a failure on the server's side (1011).
pub const INTERNAL_ERROR: u16 = 1011;

/// Why a connection was closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// A frame that is not an automerge-repo message, or one with a bad field.
    #[error("{}", frame_sentence(.0))]
    BadFrame(FrameError),
    /// A message other than `join` before the handshake.
    #[error("The first message must be a join; reconnect and send join before anything else.")]
    NotJoined,
    /// A second `join` on an open connection.
    #[error("This connection has already joined; reconnect to join again.")]
    JoinedTwice,
    /// A `join` without a sender.
    #[error("The join message has no senderId; send the peer id your token gives you.")]
    JoinWithoutSender,
    /// A `join` naming another peer than the connection's token.
    #[error(
        "The join names another peer than your token; connect with the peer id your token gives you."
    )]
    PeerIdMismatch,
    /// A `join` that offers no protocol version the hub speaks.
    #[error(
        "This server speaks automerge-repo protocol version 1 only; update the app and connect again."
    )]
    UnsupportedVersion,
    /// A sync message whose changes Automerge could not apply.
    #[error(
        "The changes in a sync message could not be applied; the app should reconnect and sync again."
    )]
    ChangesNotApplied,
    /// A change reuses a sequence number of its device that another change
    /// already has (a device restored from an old copy, say).
    #[error(
        "Not stored: device {} used sequence number {seq} twice. Give this device a new actor id.",
        short(.actor)
    )]
    DuplicateSeq {
        /// The device's actor id (hex).
        actor: String,
        /// The sequence number used twice.
        seq: u64,
    },
    /// Another connection sent changes that made Automerge fail while
    /// applying them, so the hub dropped its copy of a document this
    /// connection syncs (everything confirmed is stored; the next request
    /// loads it again).
    #[error(
        "The server had to reload a document after changes it could not apply; nothing confirmed is lost. Connect again."
    )]
    DocumentReloaded,
    /// The server could not store a document this connection syncs.
    #[error(
        "The server could not save a document; nothing unsaved was confirmed. Connect again in a minute."
    )]
    StoreFailed,
    /// The adapter's [`super::Gate`] refused a message (its own code and sentence).
    #[error("{reason}")]
    Refused {
        /// The websocket close code.
        code: u16,
        /// The sentence the peer reads.
        reason: String,
        /// The metric/log label.
        label: &'static str,
    },
}

/// The first 12 characters of a hex id, for sentences.
fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

fn frame_sentence(e: &FrameError) -> &'static str {
    match e {
        FrameError::NotAMessage => {
            "A frame was not an automerge-repo message (a CBOR map with a type); use an automerge-repo client."
        }
        FrameError::BadDocumentId => {
            "A frame names an invalid document id; use the ids the process document lists."
        }
        FrameError::BadSyncData | FrameError::BadChanges(_) => {
            "A frame's sync data is not a valid Automerge sync message; the app should reconnect and sync again."
        }
        FrameError::BadSignatures => {
            "A frame's change signatures could not be read; update the app and connect again."
        }
    }
}

impl CloseReason {
    /// The websocket close code.
    pub fn code(&self) -> u16 {
        match self {
            CloseReason::BadFrame(_) => INVALID_DATA,
            CloseReason::StoreFailed | CloseReason::DocumentReloaded => INTERNAL_ERROR,
            CloseReason::Refused { code, .. } => *code,
            _ => POLICY_VIOLATION,
        }
    }

    /// The metric/log label.
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::BadFrame(e) => e.label(),
            CloseReason::NotJoined => "not_joined",
            CloseReason::JoinedTwice => "joined_twice",
            CloseReason::JoinWithoutSender => "join_without_sender",
            CloseReason::PeerIdMismatch => "peer_id_mismatch",
            CloseReason::UnsupportedVersion => "unsupported_version",
            CloseReason::ChangesNotApplied => "changes_not_applied",
            CloseReason::DuplicateSeq { .. } => "duplicate_seq",
            CloseReason::StoreFailed => "store_failed",
            CloseReason::DocumentReloaded => "document_reloaded",
            CloseReason::Refused { label, .. } => label,
        }
    }

    /// The sentence for the close frame: [`Display`](std::fmt::Display),
    /// cut at a character boundary to fit the 123 bytes a close frame allows.
    pub fn sentence(&self) -> String {
        let mut s = self.to_string();
        if s.len() > 123 {
            let mut end = 123;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
        s
    }
}
