//! Who wrote each change (rule 3: everything is attributed to the person who
//! made it), checked change by change on every inbound sync message, by the
//! server on a websocket and by a phone on a peer link.
//!
//! Every device writes with its own Automerge actor, registered under its
//! member in the process document together with the device's Ed25519 public
//! key. A change in an inbound message is accepted when
//! - its actor is one of the sending member's own devices (attributed by the
//!   connection), or
//! - its actor is nobody's yet and this side may register it to the sender
//!   (the server may: a plain automerge-repo client with random actors keeps
//!   working; a phone may not, it cannot write the process document), or
//! - its actor is another member's device and the sender passed that
//!   device's detached signature over the change hash (a relay), in a
//!   [`SIGNATURES`] frame before the sync message;
//!
//! and then only if its author may write the document ([`access::access`]).
//! Changes the recipient already has are not judged again. Anything else is
//! refused, with every change that depends on it, so the rest of a message
//! still applies.

use std::collections::{HashMap, HashSet};

use automerge::sync::{ChunkList, Message as SyncMessage, MessageVersion};
use automerge::{ActorId, Change, ChangeHash};
use ciborium::Value;
use klad_core::{MemberId, ProcessInfo};

use crate::access::{self, Access};
use crate::wire::{self, FrameError};

/// The `type` of the frame that carries detached change signatures. Peers
/// that do not know it never receive it (Klad sends it only to Klad peers).
pub const SIGNATURES: &str = "klad-signatures";

/// What a device signs: this context, then the 32 bytes of the change hash.
const SIGNING_CONTEXT: &[u8] = b"klad-change-signature-v1:";

/// A detached Ed25519 signature over a change hash.
pub type Signature = [u8; 64];

/// A device's Ed25519 public key.
pub type DeviceKeyBytes = [u8; 32];

/// How many signatures one connection may have waiting for their changes.
/// A sender that goes past it loses the signatures waiting so far (its
/// relayed changes are then refused, never wrongly accepted).
pub const MAX_WAITING_SIGNATURES: usize = 65_536;

fn signed_message(change: &ChangeHash) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + 32);
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(change.as_ref());
    m
}

/// A device's signing key, made from the 32-byte seed the device keeps
/// (randomness comes from the caller: this crate does no IO).
pub struct DeviceKey(ed25519_compact::KeyPair);

impl DeviceKey {
    /// The key of a seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        DeviceKey(ed25519_compact::KeyPair::from_seed(
            ed25519_compact::Seed::new(seed),
        ))
    }

    /// The public key, as registered in the process document.
    pub fn public_key(&self) -> DeviceKeyBytes {
        *self.0.pk
    }

    /// The detached signature of one change (deterministic).
    pub fn sign(&self, change: &ChangeHash) -> Signature {
        *self.0.sk.sign(signed_message(change), None)
    }
}

/// True when `signature` is `key`'s signature over `change`.
pub fn verify(key: &DeviceKeyBytes, change: &ChangeHash, signature: &Signature) -> bool {
    ed25519_compact::PublicKey::new(*key)
        .verify(
            signed_message(change),
            &ed25519_compact::Signature::new(*signature),
        )
        .is_ok()
}

/// Parses a hex public key as the process document records it.
pub fn parse_key(hex: &str) -> Option<DeviceKeyBytes> {
    let bytes = parse_hex(hex)?;
    bytes.try_into().ok()
}

fn parse_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Encodes a [`SIGNATURES`] frame for changes of `document`.
pub fn encode_signatures(document: &str, signatures: &[(ChangeHash, Signature)]) -> Vec<u8> {
    let list = signatures
        .iter()
        .map(|(h, s)| {
            Value::Array(vec![
                Value::Bytes(h.as_ref().to_vec()),
                Value::Bytes(s.to_vec()),
            ])
        })
        .collect();
    let map = Value::Map(vec![
        (Value::Text("type".into()), Value::Text(SIGNATURES.into())),
        (
            Value::Text("documentId".into()),
            Value::Text(document.into()),
        ),
        (Value::Text("signatures".into()), Value::Array(list)),
    ]);
    let mut out = Vec::new();
    // Writing CBOR into a Vec cannot fail.
    let _ = ciborium::into_writer(&map, &mut out);
    out
}

/// True when `frame` (already parsed) is a [`SIGNATURES`] frame.
pub fn is_signatures(frame: &wire::Frame) -> bool {
    frame.kind == SIGNATURES
}

/// Reads the signatures of a [`SIGNATURES`] frame.
pub fn parse_signatures(bytes: &[u8]) -> Result<Vec<(ChangeHash, Signature)>, FrameError> {
    let value: Value = ciborium::from_reader(bytes).map_err(|_| FrameError::NotAMessage)?;
    let Value::Map(entries) = value else {
        return Err(FrameError::NotAMessage);
    };
    let list = entries
        .into_iter()
        .find_map(|(k, v)| match (k, v) {
            (Value::Text(k), Value::Array(list)) if k == "signatures" => Some(list),
            _ => None,
        })
        .ok_or(FrameError::BadSignatures)?;
    list.into_iter()
        .map(|item| {
            let Value::Array(pair) = item else {
                return Err(FrameError::BadSignatures);
            };
            match pair.as_slice() {
                [Value::Bytes(h), Value::Bytes(s)] => {
                    let hash = ChangeHash::try_from(h.as_slice())
                        .map_err(|_| FrameError::BadSignatures)?;
                    let sig: Signature = s
                        .as_slice()
                        .try_into()
                        .map_err(|_| FrameError::BadSignatures)?;
                    Ok((hash, sig))
                }
                _ => Err(FrameError::BadSignatures),
            }
        })
        .collect()
}

/// Signatures a connection has received and not yet used.
#[derive(Debug, Default)]
pub struct Signatures {
    waiting: HashMap<ChangeHash, Signature>,
}

impl Signatures {
    /// Keeps `list` until its changes arrive.
    pub fn add(&mut self, list: Vec<(ChangeHash, Signature)>) {
        if self.waiting.len() + list.len() > MAX_WAITING_SIGNATURES {
            self.waiting.clear();
        }
        let skip = list.len().saturating_sub(MAX_WAITING_SIGNATURES);
        self.waiting.extend(list.into_iter().skip(skip));
    }

    /// The signature received for `change`, if any.
    pub fn get(&self, change: &ChangeHash) -> Option<&Signature> {
        self.waiting.get(change)
    }

    /// Forgets the signatures of changes that have been judged.
    pub fn used(&mut self, changes: impl IntoIterator<Item = ChangeHash>) {
        for h in changes {
            self.waiting.remove(&h);
        }
    }

    /// How many are waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// True when none are waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// One registered device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its member.
    pub member: MemberId,
    /// Its public key, if it registered one.
    pub key: Option<DeviceKeyBytes>,
}

/// A process as the check reads it: what the process document says, with
/// its devices indexed by actor.
#[derive(Clone, Debug)]
pub struct Registry {
    info: ProcessInfo,
    devices: HashMap<String, Device>,
}

impl Registry {
    /// Indexes what a process document says.
    pub fn new(info: ProcessInfo) -> Self {
        let mut devices = HashMap::new();
        for m in info.members.values() {
            for actor in &m.devices {
                let key = m.device_keys.get(actor).and_then(|k| parse_key(k));
                devices.insert(
                    actor.clone(),
                    Device {
                        member: m.id.clone(),
                        key,
                    },
                );
            }
        }
        Registry { info, devices }
    }

    /// What the process document says.
    pub fn info(&self) -> &ProcessInfo {
        &self.info
    }

    /// The device that writes with `actor` (hex), if one is registered.
    pub fn device(&self, actor_hex: &str) -> Option<&Device> {
        self.devices.get(actor_hex)
    }

    /// The display name of a member (their id if unknown).
    pub fn name(&self, member: &MemberId) -> String {
        self.info
            .members
            .get(member)
            .map_or_else(|| member.to_string(), |m| m.name.clone())
    }
}

/// Who sent a message, as the connection knows them.
#[derive(Clone, Copy, Debug)]
pub struct Sender<'a> {
    /// The member the connection is authenticated as.
    pub member: &'a MemberId,
    /// Whether a change by an actor nobody has registered yet makes that
    /// actor the sender's device (the server: yes; a phone: no).
    pub may_register: bool,
}

/// Whose a change is, once accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Author {
    /// One of the sender's registered devices.
    Sender,
    /// An actor nobody had registered; it becomes the sender's.
    NewDevice,
    /// Another member's device, proven by its signature (a relay).
    Signed(MemberId),
}

/// Why one change was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its author may not write this document (now).
    NotAllowed {
        /// Who wrote it.
        author: MemberId,
        /// What the author may do with the document.
        access: Access,
    },
    /// Written with another member's device and no signature came with it.
    Unsigned {
        /// The member the device belongs to.
        owner: MemberId,
    },
    /// Written with another member's device, with a signature that is not
    /// that device's (or the device has no key to check it with).
    BadSignature {
        /// The member the device belongs to.
        owner: MemberId,
    },
    /// Written by a device this side does not know and cannot register.
    UnknownDevice,
    /// Depends on a refused change.
    DependsOnRefused,
}

impl Refusal {
    /// The metric/log label.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::NotAllowed { access, .. } => access.refusal_label().unwrap_or("not_allowed"),
            Refusal::Unsigned { .. } => "forged_author",
            Refusal::BadSignature { .. } => "bad_signature",
            Refusal::UnknownDevice => "unknown_device",
            Refusal::DependsOnRefused => "depends_on_refused",
        }
    }

    /// True when the change claims an author it cannot prove: the server
    /// closes the connection that sent it.
    pub fn is_forgery(&self) -> bool {
        matches!(
            self,
            Refusal::Unsigned { .. } | Refusal::BadSignature { .. }
        )
    }
}

/// A sync message with changes, decoded for judging.
#[derive(Debug)]
pub struct Inspected {
    document: String,
    msg: SyncMessage,
    changes: Vec<Change>,
}

/// Decodes one inbound frame for judging. `Ok(None)` for frames that carry
/// no changes (they pass as they are).
pub fn inspect(bytes: &[u8]) -> Result<Option<Inspected>, FrameError> {
    let frame = wire::parse(bytes)?;
    let Some(msg) = frame.sync_message()? else {
        return Ok(None);
    };
    if msg.changes.is_empty() {
        return Ok(None);
    }
    let Some(document) = frame.document_id else {
        return Err(FrameError::BadDocumentId);
    };
    inspect_message(document, msg).map(Some)
}

/// Decodes the changes of a sync message already parsed (the server's hub
/// hands them over this way, see `klad_sync::hub::Gate::admit`).
pub fn inspect_message(document: String, msg: SyncMessage) -> Result<Inspected, FrameError> {
    let joined: Vec<u8> = msg.changes.iter().flatten().copied().collect();
    let changes = klad_core::chunks::decode_changes(&joined).map_err(FrameError::BadChanges)?;
    Ok(Inspected {
        document,
        msg,
        changes,
    })
}

/// Changes the server writes for a member itself (the web desk, acting as
/// the signed-in member), to be judged exactly as a message of that member's
/// carrying them would be.
pub fn inspect_changes(document: String, mut changes: Vec<Change>) -> Inspected {
    let msg = SyncMessage {
        heads: Vec::new(),
        need: Vec::new(),
        have: Vec::new(),
        changes: ChunkList::from(
            changes
                .iter_mut()
                .map(|c| c.raw_bytes().to_vec())
                .collect::<Vec<_>>(),
        ),
        flags: None,
        version: MessageVersion::V1,
    };
    Inspected {
        document,
        msg,
        changes,
    }
}

/// What the check decided about one message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Judged {
    /// Changes accepted, with their author.
    pub accepted: Vec<(ChangeHash, Author)>,
    /// Actors to register as the sender's devices before the message goes on.
    pub new_devices: Vec<ActorId>,
    /// Changes refused: hash, actor (hex), why.
    pub refused: Vec<(ChangeHash, String, Refusal)>,
    /// Changes the recipient already had (not judged again).
    pub known: usize,
}

impl Judged {
    /// The first refusal that is a forgery, if any.
    pub fn forgery(&self) -> Option<&(ChangeHash, String, Refusal)> {
        self.refused.iter().find(|(_, _, r)| r.is_forgery())
    }
}

impl Inspected {
    /// The document the changes are for.
    pub fn document(&self) -> &str {
        &self.document
    }

    /// The hashes of the changes, in message order.
    pub fn hashes(&self) -> Vec<ChangeHash> {
        self.changes.iter().map(Change::hash).collect()
    }

    /// The changes, in message order.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// The changes of this message that `doc` (the recipient's copy of the
    /// document) already has: they are not judged again.
    pub fn known_in(&self, doc: &automerge::Automerge) -> HashSet<ChangeHash> {
        self.changes
            .iter()
            .map(Change::hash)
            .filter(|h| doc.get_change_meta_by_hash(h).is_some())
            .collect()
    }

    /// Judges every change. `registry`: the process the document belongs to
    /// (`None`: no process of this server has it, so nothing is accepted);
    /// `known`: changes the recipient already has.
    pub fn judge(
        &self,
        registry: Option<&Registry>,
        sender: Sender<'_>,
        signatures: &Signatures,
        known: &HashSet<ChangeHash>,
    ) -> Judged {
        let mut out = Judged::default();
        let mut refused: HashMap<ChangeHash, (String, Refusal)> = HashMap::new();
        let mut accepted: Vec<(ChangeHash, &Change, Author)> = Vec::new();
        let mut new_devices: HashSet<String> = HashSet::new();
        let mut seen: HashSet<ChangeHash> = HashSet::new();
        for change in &self.changes {
            let hash = change.hash();
            if !seen.insert(hash) {
                continue;
            }
            if known.contains(&hash) {
                out.known += 1;
                continue;
            }
            let actor = change.actor_id().to_hex_string();
            match judge_one(
                registry,
                &self.document,
                sender,
                signatures,
                &new_devices,
                change,
            ) {
                Ok(author) => {
                    if author == Author::NewDevice {
                        new_devices.insert(actor);
                    }
                    accepted.push((hash, change, author));
                }
                Err(r) => {
                    refused.insert(hash, (actor, r));
                }
            }
        }
        // Whatever depends on a refused change is refused too (until nothing moves).
        loop {
            let before = refused.len();
            accepted.retain(|(hash, change, _)| {
                if change.deps().iter().any(|d| refused.contains_key(d)) {
                    let actor = change.actor_id().to_hex_string();
                    refused.insert(*hash, (actor, Refusal::DependsOnRefused));
                    false
                } else {
                    true
                }
            });
            if refused.len() == before {
                break;
            }
        }
        let mut registered: HashSet<String> = HashSet::new();
        for (hash, change, author) in accepted {
            if author == Author::NewDevice {
                let hex = change.actor_id().to_hex_string();
                if registered.insert(hex) {
                    out.new_devices.push(change.actor_id().clone());
                }
            }
            out.accepted.push((hash, author));
        }
        // Refusals in message order (once each).
        for change in &self.changes {
            if let Some((actor, r)) = refused.remove(&change.hash()) {
                out.refused.push((change.hash(), actor, r));
            }
        }
        out
    }

    /// The frame with only the changes in `keep` (and their order), or the
    /// original bytes when it keeps them all.
    pub fn retain(
        &self,
        original: &[u8],
        keep: &HashSet<ChangeHash>,
    ) -> Result<Vec<u8>, FrameError> {
        let kept: Vec<&Change> = self
            .changes
            .iter()
            .filter(|c| keep.contains(&c.hash()))
            .collect();
        if kept.len() == self.changes.len() {
            return Ok(original.to_vec());
        }
        wire::replace_sync_data(original, self.message_with(&kept))
    }

    /// The message with only the changes in `keep` (and their order).
    pub fn retain_message(&self, keep: &HashSet<ChangeHash>) -> SyncMessage {
        if self.changes.iter().all(|c| keep.contains(&c.hash())) {
            return self.msg.clone();
        }
        let kept: Vec<&Change> = self
            .changes
            .iter()
            .filter(|c| keep.contains(&c.hash()))
            .collect();
        self.message_with(&kept)
    }

    fn message_with(&self, kept: &[&Change]) -> SyncMessage {
        let mut msg = self.msg.clone();
        msg.changes = match msg.version {
            // V1 carries one chunk per change; V2 one buffer that Automerge
            // reads as a sequence of chunks.
            MessageVersion::V1 => ChunkList::from(
                kept.iter()
                    .map(|c| c.raw_bytes().to_vec())
                    .collect::<Vec<_>>(),
            ),
            MessageVersion::V2 if kept.is_empty() => ChunkList::empty(),
            MessageVersion::V2 => ChunkList::from(
                kept.iter()
                    .flat_map(|c| c.raw_bytes().iter().copied())
                    .collect::<Vec<u8>>(),
            ),
        };
        msg
    }
}

fn judge_one(
    registry: Option<&Registry>,
    document: &str,
    sender: Sender<'_>,
    signatures: &Signatures,
    new_devices: &HashSet<String>,
    change: &Change,
) -> Result<Author, Refusal> {
    let Some(registry) = registry else {
        return Err(Refusal::NotAllowed {
            author: sender.member.clone(),
            access: Access::None,
        });
    };
    let actor = change.actor_id().to_hex_string();
    let (author, member) = match registry.device(&actor) {
        Some(d) if &d.member == sender.member => (Author::Sender, d.member.clone()),
        Some(d) => {
            let owner = d.member.clone();
            let hash = change.hash();
            match (signatures.get(&hash), &d.key) {
                (None, _) => return Err(Refusal::Unsigned { owner }),
                (Some(sig), Some(key)) if verify(key, &hash, sig) => {
                    (Author::Signed(owner.clone()), owner)
                }
                (Some(_), _) => return Err(Refusal::BadSignature { owner }),
            }
        }
        None if sender.may_register || new_devices.contains(&actor) => {
            (Author::NewDevice, sender.member.clone())
        }
        None => return Err(Refusal::UnknownDevice),
    };
    match access::access(registry.info(), document, &member) {
        Access::ReadWrite => Ok(author),
        access => Err(Refusal::NotAllowed {
            author: member,
            access,
        }),
    }
}
