//! Who is who: an in-memory index of every process (its members, phase and
//! documents), rebuilt from the process documents at start and updated by the
//! server whenever it writes one. The share policy reads it.
//!
//! The server is the only writer of process documents, so the index cannot go
//! stale behind its back.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt, stream};
use klad_core::DocKind;
use klad_core::rules::{DocumentAccess, Phase, Role, document_access};
use klad_core::{MemberId, ProcessId, ProcessInfo};
use samod::{DocumentId, PeerId, ShareConfig};
use tokio::sync::watch;

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

#[derive(Clone, Debug)]
struct DocEntry {
    process: ProcessId,
    role: DocRole,
}

#[derive(Default)]
struct Index {
    processes: HashMap<ProcessId, ProcessInfo>,
    docs: HashMap<String, DocEntry>,
    members: HashMap<MemberId, ProcessId>,
}

pub use klad_core::rules::ReadOnlyReason;

/// The access a connection gets to a document.
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
    /// The samod decision. The server never announces documents: clients ask
    /// for the documents they want (their ids are in the process document).
    pub fn share_config(self) -> ShareConfig {
        match self {
            Access::None => ShareConfig::none(),
            Access::ReadOnly(_) => ShareConfig::read_only().with_announce(false),
            Access::ReadWrite => ShareConfig::read_write().with_announce(false),
        }
    }
}

/// The separator between a member id and a device name in a peer id.
pub const DEVICE_SEPARATOR: char = ':';

/// The peer id a connection of `member` must use: the member id, or
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

/// The index, shared by the share policy, the HTTP API and connections.
pub struct Directory {
    index: RwLock<Index>,
    generation: watch::Sender<u64>,
}

impl Default for Directory {
    fn default() -> Self {
        Self::new()
    }
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Self {
            index: RwLock::new(Index::default()),
            generation: watch::Sender::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Records (or replaces) what a process document says. Every open
    /// connection's access is re-decided.
    pub fn upsert(&self, info: ProcessInfo) {
        {
            let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
            let pid = info.id.clone();
            idx.docs.retain(|_, e| e.process != pid);
            idx.members.retain(|_, p| *p != pid);
            idx.docs.insert(
                pid.to_string(),
                DocEntry {
                    process: pid.clone(),
                    role: DocRole::Process,
                },
            );
            idx.docs.insert(
                info.text_doc.to_string(),
                DocEntry {
                    process: pid.clone(),
                    role: DocRole::Text,
                },
            );
            for m in info.members.values() {
                idx.docs.insert(
                    m.contributions_doc.to_string(),
                    DocEntry {
                        process: pid.clone(),
                        role: DocRole::Contributions(m.id.clone()),
                    },
                );
                idx.members.insert(m.id.clone(), pid.clone());
            }
            idx.processes.insert(pid, info);
        }
        self.generation.send_modify(|g| *g += 1);
    }

    /// The process `id`, as last recorded.
    pub fn process(&self, id: &ProcessId) -> Option<ProcessInfo> {
        self.read().processes.get(id).cloned()
    }

    /// Every process id.
    pub fn process_ids(&self) -> Vec<ProcessId> {
        self.read().processes.keys().cloned().collect()
    }

    /// The process and role of a member, if they are one.
    pub fn membership(&self, member: &MemberId) -> Option<(ProcessId, Role)> {
        let idx = self.read();
        let pid = idx.members.get(member)?;
        let role = idx.processes.get(pid)?.members.get(member)?.role;
        Some((pid.clone(), role))
    }

    /// The ids of every document of process `id`.
    pub fn documents_of(&self, id: &ProcessId) -> Vec<String> {
        self.read()
            .docs
            .iter()
            .filter(|(_, e)| &e.process == id)
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// Number of documents the index knows.
    pub fn document_count(&self) -> usize {
        self.read().docs.len()
    }

    /// What `peer` may do with `doc` right now.
    pub fn access(&self, doc: &str, peer: &str) -> Access {
        let member = member_of_peer(peer);
        let idx = self.read();
        let Some(entry) = idx.docs.get(doc) else {
            return Access::None;
        };
        let Some(info) = idx.processes.get(&entry.process) else {
            return Access::None;
        };
        let Some(m) = info.members.get(&member) else {
            return Access::None;
        };
        decide(m.role, info.phase, &member, &entry.role)
    }

    /// A stream of decisions for (`doc`, `peer`): the current one at once,
    /// then a new one whenever the index changes (samod ignores repeats).
    pub fn watch(
        self: &Arc<Self>,
        doc: String,
        peer: String,
    ) -> impl Stream<Item = ShareConfig> + Send + 'static {
        let rx = self.generation.subscribe();
        let first = self.access(&doc, &peer).share_config();
        let this = self.clone();
        stream::once(async move { first }).chain(stream::unfold(
            (rx, this, doc, peer),
            |(mut rx, this, doc, peer)| async move {
                rx.changed().await.ok()?;
                let c = this.access(&doc, &peer).share_config();
                Some((c, (rx, this, doc, peer)))
            },
        ))
    }
}

/// The policy table at the document boundary (see `docs/PROTOCOL.md`): klad-core's
/// [`document_access`], the same table phones apply on a peer link.
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

/// samod's share policy over the [`Directory`].
#[derive(Clone)]
pub struct Policy(pub Arc<Directory>);

impl samod::SharePolicy for Policy {
    fn share(
        &self,
        doc_id: DocumentId,
        peer_id: PeerId,
    ) -> impl Stream<Item = ShareConfig> + Send + 'static {
        self.0.watch(doc_id.to_string(), peer_id.to_string())
    }
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
}
