//! Who a connected peer is and what it may do with each document of a
//! process: the decision both the server (for a websocket) and a phone (for
//! a peer link) make. [`crate::authorship`] applies it to every change, for
//! the change's author.
//!
//! The decision itself is klad-core's [`document_access`]; this module maps
//! documents and peers onto it.

use klad_core::rules::{DocumentAccess, Phase, ReadOnlyReason, Role, document_access};
use klad_core::{DocKind, MemberId, ProcessInfo};
use samod_core::ShareConfig;

/// The peer id the server uses towards every client.
pub const SERVER_PEER_ID: &str = "klad-server";

/// The separator between a member id and a device name in a peer id.
pub const DEVICE_SEPARATOR: char = ':';

/// The peer id a connection of `member` uses: the member id, or
/// `<member id>:<device>` when the client names its device.
pub fn peer_id_for(member: &MemberId, device: Option<&str>) -> String {
    match device {
        Some(d) => format!("{member}{DEVICE_SEPARATOR}{d}"),
        None => member.to_string(),
    }
}

/// Checks a device name given by a client: 1 to 64 of `A-Z a-z 0-9 _ -`.
pub fn valid_device(d: &str) -> bool {
    (1..=64).contains(&d.len())
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The member a peer id belongs to.
pub fn member_of_peer(peer: &str) -> MemberId {
    MemberId(
        peer.split_once(DEVICE_SEPARATOR)
            .map_or(peer, |(m, _)| m)
            .to_owned(),
    )
}

pub use klad_core::process::DocRole;

/// Which document of the process `info` describes `doc` is, if any.
pub fn doc_role(info: &ProcessInfo, doc: &str) -> Option<DocRole> {
    info.doc_role(doc)
}

/// The access a peer gets to a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The document appears not to exist.
    None,
    /// Changes are sent to the peer; theirs are refused.
    ReadOnly(ReadOnlyReason),
    /// Changes flow both ways.
    ReadWrite,
}

impl Access {
    /// The samod decision. Every document a peer may read is read-write for
    /// samod: what of the peer's changes is accepted is decided change by
    /// change before samod sees them ([`crate::authorship`]), which is what
    /// lets a member relay another member's signed changes. `announce`:
    /// whether to offer the document to the peer unasked (the server never
    /// does: clients ask for the documents they want; phones on a peer link
    /// do, so both sides start syncing).
    pub fn share_config(self, announce: bool) -> ShareConfig {
        match self {
            Access::None => ShareConfig::none(),
            Access::ReadOnly(_) | Access::ReadWrite => {
                ShareConfig::read_write().with_announce(announce)
            }
        }
    }

    /// The metric/log label of a refusal, or `None` for read-write.
    pub fn refusal_label(self) -> Option<&'static str> {
        match self {
            Access::ReadWrite => None,
            Access::ReadOnly(reason) => Some(reason.label()),
            Access::None => Some("no_access"),
        }
    }
}

/// The policy table at the document boundary: klad-core's [`document_access`]
/// for `member` (with `role`, in `phase`) on `doc`.
pub fn decide(role: Role, phase: Phase, member: &MemberId, doc: &DocRole) -> Access {
    let (kind, own) = match doc {
        DocRole::Process => (DocKind::Process, false),
        DocRole::Text => (DocKind::Text, false),
        DocRole::Contributions(owner) => (DocKind::Contributions, owner == member),
    };
    match document_access(role, phase, kind, own) {
        DocumentAccess::ReadWrite => Access::ReadWrite,
        DocumentAccess::ReadOnly(reason) => Access::ReadOnly(reason),
    }
}

/// What `member` may do with `doc` in the process `info` describes: nothing
/// for documents of other processes and for people who are not members.
pub fn access(info: &ProcessInfo, doc: &str, member: &MemberId) -> Access {
    let (Some(role), Some(m)) = (doc_role(info, doc), info.members.get(member)) else {
        return Access::None;
    };
    decide(m.role, info.phase, member, &role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_table() {
        let me = MemberId::from("me");
        let other = DocRole::Contributions(MemberId::from("other"));
        let mine = DocRole::Contributions(me.clone());
        use Access::*;
        use ReadOnlyReason::*;
        let d = |role, phase, doc: &DocRole| decide(role, phase, &me, doc);
        assert_eq!(d(Role::Drafter, Phase::Drafting, &DocRole::Text), ReadWrite);
        assert_eq!(
            d(Role::Drafter, Phase::Consultation, &DocRole::Text),
            ReadOnly(TextOutsideDrafting)
        );
        assert_eq!(
            d(Role::Official, Phase::Drafting, &DocRole::Text),
            ReadOnly(TextNotADrafter)
        );
        assert_eq!(
            d(Role::Facilitator, Phase::Drafting, &DocRole::Text),
            ReadOnly(TextNotADrafter)
        );
        for role in [Role::Drafter, Role::Official, Role::Facilitator] {
            assert_eq!(
                d(role, Phase::Drafting, &DocRole::Process),
                ReadOnly(ProcessDocument)
            );
            assert_eq!(d(role, Phase::Final, &mine), ReadWrite);
            assert_eq!(
                d(role, Phase::Drafting, &other),
                ReadOnly(AnotherMembersContributions)
            );
        }
        for doc in [&DocRole::Process, &DocRole::Text, &other] {
            assert_eq!(d(Role::Observer, Phase::Drafting, doc), ReadOnly(Observer));
        }
        // An observer's read marks sync: their own contributions are theirs.
        assert_eq!(d(Role::Observer, Phase::Final, &mine), ReadWrite);
    }

    #[test]
    fn peer_ids_carry_the_member() {
        let m = MemberId::from("6f1c-aa");
        assert_eq!(member_of_peer(&peer_id_for(&m, None)), m);
        assert_eq!(member_of_peer(&peer_id_for(&m, Some("phone-1"))), m);
        assert!(valid_device("phone_1-A"));
        assert!(!valid_device(""));
        assert!(!valid_device("a:b"));
        assert!(!valid_device(&"x".repeat(65)));
    }
}
