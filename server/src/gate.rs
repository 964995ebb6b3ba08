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
            for actor in judged.new_devices {
                self.new_devices.push(NewDevice {
                    process: registry.info().id.clone(),
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
