//! The server's [`Gate`] for its hubs: access from the [`Directory`]
//! (klad-sync's `access::decide`, per peer and document), and rule 3 change by
//! change ([`authorship`]) before the hub applies an inbound sync message.
//!
//! A change written in another member's name closes the connection (1008,
//! with a sentence naming whose device it was); changes the author may not
//! write are removed (counted and logged) and never reach the document, its
//! store or another peer; an actor nobody has registered becomes the
//! sender's device: the change is accepted as the sender's and the device is
//! registered in the process document right after (by facilitation, through
//! the same hub), see [`NewDevice`].

use std::collections::{HashMap, HashSet};

use automerge::{ActorId, ChangeHash};
use klad_core::{MemberId, ProcessId};
use klad_sync::authorship::{self, Judged, Refusal, Registry, Sender, Signatures};
use klad_sync::hub::{Admission, CloseReason, ConnId, Gate, Inbound, POLICY_VIOLATION};

use crate::directory::{Access, Directory};
use crate::metrics::Metrics;

/// An actor found in a change that nobody had registered: it is now the
/// sender's device and must be recorded in the process document.
#[derive(Debug)]
pub struct NewDevice {
    /// The process.
    pub process: ProcessId,
    /// The member whose connection wrote with it.
    pub member: MemberId,
    /// The actor.
    pub actor: ActorId,
}

/// What the gate keeps per connection.
#[derive(Debug)]
pub struct PeerState {
    /// The member the connection's token names.
    pub member: MemberId,
    /// Signatures sent ahead of the changes they sign (`klad-signatures`).
    pub signatures: Signatures,
}

/// The gate of one [`klad_sync::hub::Hub::handle`] call.
pub struct HubGate<'a> {
    /// The membership index.
    pub directory: &'a Directory,
    /// Counters.
    pub metrics: &'a Metrics,
    /// Each open connection's member and signatures.
    pub peers: &'a mut HashMap<ConnId, PeerState>,
    /// Devices found during the call, to register afterwards.
    pub new_devices: Vec<NewDevice>,
}

impl Gate for HubGate<'_> {
    fn access(&self, peer: &str, doc: &str) -> Access {
        self.directory.access(doc, peer)
    }

    fn admit(&mut self, inbound: Inbound<'_>) -> Admission {
        let Inbound {
            conn,
            doc_id,
            doc,
            message,
            ..
        } = inbound;
        let Some(peer) = self.peers.get_mut(&conn) else {
            // Not a connection of this hub (cannot happen: the hub asks only
            // for its own): apply nothing.
            let mut message = message;
            message.changes = automerge::sync::ChunkList::empty();
            return Admission::Apply(message);
        };
        let inspected = match authorship::inspect_message(doc_id.to_owned(), message) {
            Ok(i) => i,
            Err(e) => {
                let why = CloseReason::BadFrame(e);
                return Admission::Close {
                    code: why.code(),
                    reason: why.sentence(),
                    label: why.label(),
                };
            }
        };
        let registry = self.directory.registry_of_doc(doc_id);
        let known = inspected.known_in(doc);
        let sender = Sender {
            member: &peer.member,
            may_register: true,
        };
        let judged = inspected.judge(registry.as_deref(), sender, &peer.signatures, &known);
        peer.signatures.used(inspected.hashes());
        count_refusals(self.metrics, &peer.member, doc_id, &judged);
        if let Some((hash, actor, refusal)) = judged.forgery() {
            tracing::warn!(
                member = %peer.member,
                document = %doc_id,
                change = %hash,
                actor = %actor,
                reason = refusal.label(),
                "refused a change written in another member's name; closing the connection"
            );
            return Admission::Close {
                code: POLICY_VIOLATION,
                reason: forgery_sentence(registry.as_deref(), refusal),
                label: refusal.label(),
            };
        }
        if let Some(registry) = &registry {
            // An actor nobody has registered becomes the sender's: claimed at
            // once (the process document records it a moment later), so a
            // member who copies it from the forwarded change cannot write
            // with it in between.
            let pid = &registry.info().id;
            for actor in &judged.new_devices {
                let hex = actor.to_hex_string();
                if let Err(owner) = self.directory.claim(pid, &hex, &peer.member) {
                    self.metrics.refused_changes("forged_author", 1);
                    self.metrics.refused_write("forged_author");
                    tracing::warn!(
                        member = %peer.member,
                        document = %doc_id,
                        actor = %hex,
                        owner = %owner,
                        "refused a change written with a device another member claimed; closing the connection"
                    );
                    let refusal = Refusal::Unsigned { owner };
                    return Admission::Close {
                        code: POLICY_VIOLATION,
                        reason: forgery_sentence(Some(registry), &refusal),
                        label: refusal.label(),
                    };
                }
            }
            for actor in judged.new_devices {
                self.new_devices.push(NewDevice {
                    process: pid.clone(),
                    member: peer.member.clone(),
                    actor,
                });
            }
        }
        let keep: HashSet<ChangeHash> = judged
            .accepted
            .iter()
            .map(|(h, _)| *h)
            .chain(known)
            .collect();
        Admission::Apply(inspected.retain_message(&keep))
    }
}

/// Counts and logs the refused changes of one message, by reason.
fn count_refusals(metrics: &Metrics, member: &MemberId, document: &str, judged: &Judged) {
    let mut by_reason: HashMap<&'static str, usize> = HashMap::new();
    for (_, _, r) in &judged.refused {
        *by_reason.entry(r.label()).or_default() += 1;
    }
    for (reason, changes) in by_reason {
        metrics.refused_changes(reason, changes);
        metrics.refused_write(reason);
        tracing::warn!(
            member = %member,
            document = %document,
            reason,
            changes,
            "refused changes the member may not write"
        );
    }
}

/// The sentence a forger's connection is closed with (short: a close frame
/// carries at most 123 bytes of reason; the log has the details).
fn forgery_sentence(registry: Option<&Registry>, refusal: &Refusal) -> String {
    let (owner, how) = match refusal {
        Refusal::Unsigned { owner } => (owner, "without their signature"),
        Refusal::BadSignature { owner } => (owner, "with a false signature"),
        _ => return "Not stored: a change could not be attributed to its author.".into(),
    };
    let name = registry.map_or_else(|| owner.to_string(), |r| r.name(owner));
    format!(
        "Not stored: a change used the device id of {name} {how}. Write with your own device id."
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use automerge::sync::{Message, State, SyncDoc};
    use automerge::transaction::Transactable;
    use automerge::{ActorId, Automerge, ROOT};
    use klad_core::rules::Role;
    use klad_core::{DocId, MemberId, NewMember, ProcessDoc, ProcessId};
    use klad_sync::hub::{Admission, ConnId, Gate, Inbound};

    use super::{HubGate, PeerState};
    use crate::directory::{Access, Directory};
    use crate::metrics::Metrics;

    fn id(n: u8) -> String {
        klad_sync::wire::document_id([n; 16])
    }

    /// A sync message from a peer that wrote one change with `actor` to a
    /// document the hub has nothing of.
    fn message_with_change(actor: &[u8]) -> Message {
        let mut peer = Automerge::new().with_actor(ActorId::from(actor));
        let mut tx = peer.transaction();
        tx.put(ROOT, "k", 1).unwrap();
        tx.commit();
        let (mut ps, mut hs) = (State::new(), State::new());
        let mut hub = Automerge::new();
        let first = peer.generate_sync_message(&mut ps).unwrap();
        hub.receive_sync_message(&mut hs, first).unwrap();
        let answer = hub.generate_sync_message(&mut hs).unwrap();
        peer.receive_sync_message(&mut ps, answer).unwrap();
        let msg = peer.generate_sync_message(&mut ps).unwrap();
        assert!(!msg.changes.is_empty());
        msg
    }

    #[test]
    fn an_actor_first_seen_on_one_members_connection_is_refused_on_anothers() {
        let pid = ProcessId(id(1));
        let text = id(2);
        let mut pd = ProcessDoc::create(0, &pid, "Titel", &DocId(text.clone())).unwrap();
        let (anna, bram) = (MemberId::from("anna"), MemberId::from("bram"));
        for (m, c) in [(&anna, 3), (&bram, 4)] {
            let new = NewMember {
                id: m.clone(),
                name: m.to_string(),
                role: Role::Drafter,
                contributions_doc: DocId(id(c)),
            };
            pd.add_member(0, None, &new).unwrap();
        }
        let directory = Directory::new();
        directory.upsert(pd.info().unwrap());
        let metrics = Metrics::default();
        let mut peers = HashMap::new();
        for (conn, m) in [(1, &anna), (2, &bram)] {
            peers.insert(
                ConnId(conn),
                PeerState {
                    member: m.clone(),
                    signatures: Default::default(),
                },
            );
        }
        let mut gate = HubGate {
            directory: &directory,
            metrics: &metrics,
            peers: &mut peers,
            new_devices: Vec::new(),
        };
        let hub_copy = Automerge::new();
        let actor = [0xab; 16];
        let inbound = |conn: u64, peer: &'static str| Inbound {
            conn: ConnId(conn),
            peer,
            doc_id: &text,
            access: Access::ReadWrite,
            doc: &hub_copy,
            message: message_with_change(&actor),
        };
        // Anna writes with an actor nobody has: accepted, hers from now on.
        let Admission::Apply(m) = gate.admit(inbound(1, "anna")) else {
            panic!("Anna's change is accepted");
        };
        assert!(!m.changes.is_empty());
        assert_eq!(gate.new_devices.len(), 1);
        // Before the process document records it, Bram writes with it.
        match gate.admit(inbound(2, "bram")) {
            Admission::Close {
                code,
                reason,
                label,
            } => {
                assert_eq!((code, label), (1008, "forged_author"));
                assert!(reason.contains("device id of anna"), "{reason}");
            }
            Admission::Apply(_) => panic!("Bram's change with Anna's new device is refused"),
        }
        assert_eq!(metrics.refused_changes_total("forged_author"), 1);
        assert_eq!(gate.new_devices.len(), 1);
        // And he cannot register it when connecting either.
        assert_eq!(
            directory.claimant(&pid, &ActorId::from(&actor[..]).to_hex_string()),
            Some(anna)
        );
    }
}
