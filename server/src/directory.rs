//! Who is who: an in-memory index of every process (its members, phase and
//! documents), rebuilt at start from the process records the server keeps next
//! to the process documents, and updated whenever it writes one. The hubs'
//! gate reads it (access per document, the device registry per process).
//!
//! The server is the only writer of process documents, so the index cannot go
//! stale behind its back.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use klad_core::rules::Role;
use klad_core::{MemberId, ProcessId, ProcessInfo};
use klad_sync::authorship::Registry;

#[derive(Clone, Debug)]
struct DocEntry {
    process: ProcessId,
    role: DocRole,
}

#[derive(Default)]
struct Index {
    processes: HashMap<ProcessId, ProcessInfo>,
    /// Each process's devices by actor, for the per-change authorship check.
    registries: HashMap<ProcessId, Arc<Registry>>,
    docs: HashMap<String, DocEntry>,
    members: HashMap<MemberId, ProcessId>,
    /// Actors first seen in a change on a member's connection, claimed for
    /// that member until (and after) the process document records them.
    claims: HashMap<(ProcessId, String), MemberId>,
}

pub use klad_core::rules::ReadOnlyReason;
pub use klad_sync::access::{
    Access, DEVICE_SEPARATOR, DocRole, decide, member_of_peer, peer_id_for, valid_device,
};

/// The index, shared by the hubs' gate, the HTTP API and facilitation.
pub struct Directory {
    index: RwLock<Index>,
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
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Records (or replaces) what a process document says. (Open
    /// connections hear of it through their hub's `AccessChanged`, sent by
    /// facilitation after every process-document change.)
    pub fn upsert(&self, info: ProcessInfo) {
        {
            let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
            let pid = info.id.clone();
            idx.docs.retain(|_, e| e.process != pid);
            idx.members.retain(|_, p| *p != pid);
            for (doc, role) in info.documents() {
                if let DocRole::Contributions(m) = &role {
                    idx.members.insert(m.clone(), pid.clone());
                }
                idx.docs.insert(
                    doc.to_string(),
                    DocEntry {
                        process: pid.clone(),
                        role,
                    },
                );
            }
            idx.registries
                .insert(pid.clone(), Arc::new(Registry::new(info.clone())));
            idx.processes.insert(pid, info);
        }
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

    /// The process `doc` belongs to, indexed for the authorship check.
    pub fn registry_of_doc(&self, doc: &str) -> Option<Arc<Registry>> {
        let idx = self.read();
        let entry = idx.docs.get(doc)?;
        idx.registries.get(&entry.process).cloned()
    }

    /// Claims `actor` (hex) of process `pid` for `member`, who wrote a change
    /// with it before it was registered: from now on nobody else may use it,
    /// in a change or when connecting, even before the process document
    /// records it. `Err(owner)` when another member claimed it first.
    pub fn claim(&self, pid: &ProcessId, actor: &str, member: &MemberId) -> Result<(), MemberId> {
        let mut idx = self.index.write().unwrap_or_else(|e| e.into_inner());
        let owner = idx
            .claims
            .entry((pid.clone(), actor.to_owned()))
            .or_insert_with(|| member.clone());
        if owner == member {
            Ok(())
        } else {
            Err(owner.clone())
        }
    }

    /// The member who claimed `actor` (hex) of process `pid`, if anyone did.
    pub fn claimant(&self, pid: &ProcessId, actor: &str) -> Option<MemberId> {
        self.read()
            .claims
            .get(&(pid.clone(), actor.to_owned()))
            .cloned()
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
}
