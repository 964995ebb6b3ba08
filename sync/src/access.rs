//! Who a connected peer is and what it may do with each document of a
//! process: the decision both the server (for a websocket) and a phone (for
//! a peer link) make, and the inbound filter that applies it to every frame.
//!
//! The decision itself is klad-core's [`document_access`]; this module maps
//! documents and peers onto it.

use klad_core::rules::{DocumentAccess, Phase, ReadOnlyReason, Role, document_access};
use klad_core::{DocKind, MemberId, ProcessInfo};
use samod_core::ShareConfig;

use crate::wire::{self, FrameError};

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

/// What a document is, within its process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocRole {
    /// The process document (written by the server only).
    Process,
    /// The text document.
    Text,
    /// The contributions document of this member.
    Contributions(MemberId),
}

/// Which document of the process `info` describes `doc` is, if any.
pub fn doc_role(info: &ProcessInfo, doc: &str) -> Option<DocRole> {
    if doc == info.id.as_str() {
        return Some(DocRole::Process);
    }
    if doc == info.text_doc.as_str() {
        return Some(DocRole::Text);
    }
    info.members
        .values()
        .find(|m| m.contributions_doc.as_str() == doc)
        .map(|m| DocRole::Contributions(m.id.clone()))
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
    /// The samod decision. `announce`: whether to offer the document to the
    /// peer unasked (the server never does: clients ask for the documents they
    /// want; phones on a peer link do, so both sides start syncing).
    pub fn share_config(self, announce: bool) -> ShareConfig {
        match self {
            Access::None => ShareConfig::none(),
            Access::ReadOnly(_) => ShareConfig::read_only().with_announce(announce),
            Access::ReadWrite => ShareConfig::read_write().with_announce(announce),
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

/// What to do with one inbound frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// Hand the frame to samod as it is.
    Pass,
    /// The frame carried changes the peer may not write: hand `frame` (the
    /// same message without its changes) to samod instead.
    Stripped {
        /// The document the changes were for.
        document: String,
        /// Why they were refused (a metric/log label).
        reason: &'static str,
        /// How many changes were removed.
        changes: usize,
        /// The frame without the changes.
        frame: Vec<u8>,
    },
}

/// Checks one frame a peer sent: changes to a document the peer may not write
/// (`access_of(document id)` is not read-write) are removed before samod sees
/// them, so they are never stored nor passed on, even while samod's own
/// read-only state is still catching up with a phase change.
pub fn check_inbound(
    bytes: &[u8],
    access_of: impl FnOnce(&str) -> Access,
) -> Result<Inbound, FrameError> {
    let frame = wire::parse(bytes)?;
    let Some(msg) = frame.sync_message()? else {
        return Ok(Inbound::Pass);
    };
    let (false, Some(doc)) = (msg.changes.is_empty(), frame.document_id) else {
        return Ok(Inbound::Pass);
    };
    let Some(reason) = access_of(&doc).refusal_label() else {
        return Ok(Inbound::Pass);
    };
    Ok(Inbound::Stripped {
        reason,
        changes: msg.changes.len(),
        frame: wire::strip_changes(bytes)?,
        document: doc,
    })
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
        for doc in [&DocRole::Process, &DocRole::Text, &mine, &other] {
            assert_eq!(d(Role::Observer, Phase::Drafting, doc), ReadOnly(Observer));
        }
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

    #[test]
    fn frames_without_changes_or_to_writable_documents_pass() {
        use automerge::transaction::Transactable;
        use ciborium::Value;
        let mut doc = automerge::Automerge::new();
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "k", "v").unwrap();
        tx.commit();
        let id = samod_core::DocumentId::try_from(vec![3u8; 16])
            .unwrap()
            .to_string();
        let frame = |changes: Vec<Vec<u8>>| {
            let msg = automerge::sync::Message {
                heads: doc.get_heads(),
                need: vec![],
                have: vec![],
                changes: changes.into(),
                flags: None,
                version: automerge::sync::MessageVersion::V1,
            };
            let mut out = Vec::new();
            ciborium::into_writer(
                &Value::Map(vec![
                    (Value::Text("type".into()), Value::Text("sync".into())),
                    (Value::Text("documentId".into()), Value::Text(id.clone())),
                    (Value::Text("data".into()), Value::Bytes(msg.encode())),
                ]),
                &mut out,
            )
            .unwrap();
            out
        };
        let change = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
        let with = frame(vec![change]);
        assert_eq!(
            check_inbound(&with, |_| Access::ReadWrite),
            Ok(Inbound::Pass)
        );
        assert_eq!(
            check_inbound(&frame(vec![]), |_| Access::None),
            Ok(Inbound::Pass)
        );
        match check_inbound(&with, |d| {
            assert_eq!(d, id);
            Access::ReadOnly(ReadOnlyReason::TextNotADrafter)
        }) {
            Ok(Inbound::Stripped {
                document,
                reason,
                changes,
                frame,
            }) => {
                assert_eq!(
                    (document, reason, changes),
                    (id.clone(), "text_not_a_drafter", 1)
                );
                let m = wire::parse(&frame)
                    .unwrap()
                    .sync_message()
                    .unwrap()
                    .unwrap();
                assert!(m.changes.is_empty());
            }
            other => panic!("expected the changes to be stripped, got {other:?}"),
        }
        assert_eq!(
            check_inbound(b"\x01", |_| Access::ReadWrite),
            Err(FrameError::NotAMessage)
        );
    }
}
