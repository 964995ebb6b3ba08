//! What the adapter decides for the hub: the access a peer has to a document,
//! and which changes of an inbound sync message the hub may apply.
//!
//! The hub asks the [`Gate`] passed to each [`super::Hub::handle`] call, so
//! the adapter keeps its own state (the process directory, the signatures a
//! connection sent) and the hub stays free of it.

use automerge::Automerge;
use automerge::sync::{ChunkList, Message as SyncMessage};

use super::ConnId;
use crate::access::Access;

/// An inbound sync message with changes, about to be applied.
#[derive(Debug)]
pub struct Inbound<'a> {
    /// The connection it came on.
    pub conn: ConnId,
    /// The connection's authenticated peer id.
    pub peer: &'a str,
    /// The document it is about.
    pub doc_id: &'a str,
    /// The peer's access to the document, as last decided.
    pub access: Access,
    /// The hub's copy of the document, before the message (for
    /// [`crate::authorship::Inspected::known_in`]).
    pub doc: &'a Automerge,
    /// The message; its `changes` are not empty.
    pub message: SyncMessage,
}

/// What the gate decided about an [`Inbound`] message.
#[derive(Debug)]
pub enum Admission {
    /// Apply this message (the one given, or one with changes removed).
    Apply(SyncMessage),
    /// Apply nothing and close the connection with this code and sentence.
    Close {
        /// The websocket close code.
        code: u16,
        /// The sentence the peer reads (at most 123 bytes are sent).
        reason: String,
        /// The metric/log label.
        label: &'static str,
    },
}

/// The adapter's decisions, asked by the hub while it handles an event.
pub trait Gate {
    /// What `peer` may do with the document `doc` now. Asked when a peer
    /// first asks for a document, for every sync message, and again for
    /// every subscribed peer of a document on [`super::Event::AccessChanged`].
    fn access(&self, peer: &str, doc: &str) -> Access;

    /// Which changes of `inbound` the hub applies. The default applies a
    /// read-write peer's message as it is and removes the changes of anyone
    /// else's. An adapter that judges changes one by one (rule 3,
    /// [`crate::authorship`]) does it here, or before the frame reaches the
    /// hub and then accepts what it passed.
    fn admit(&mut self, inbound: Inbound<'_>) -> Admission {
        let mut message = inbound.message;
        if inbound.access != Access::ReadWrite {
            message.changes = ChunkList::empty();
        }
        Admission::Apply(message)
    }
}

/// A closure deciding access is a gate with the default [`Gate::admit`].
impl<F: Fn(&str, &str) -> Access> Gate for F {
    fn access(&self, peer: &str, doc: &str) -> Access {
        self(peer, doc)
    }
}
