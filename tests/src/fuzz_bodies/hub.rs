//! Targets `hub_frame` and `hub_changes`: the server's sync hub
//! ([`klad_sync::hub::Hub`]) with a connected, joined member (Anna, a
//! drafter, on her phone) subscribed to the process's text document, next to
//! a second member (Bram) subscribed to it too; then one inbound frame from
//! Anna made from the fuzz input.
//!
//! - `hub_frame`: the input is the whole frame.
//! - `hub_changes`: the input becomes the changes of an otherwise valid sync
//!   message (see [`run_changes`]), so Automerge's change parsing and
//!   applying are reached behind the gate.
//!
//! The gate is [`CheckingGate`]: access from the process document
//! (klad-sync's `access::access`) and the real authorship check
//! (`authorship::inspect_message`, `judge`, `retain_message`), as the
//! server's gate runs it, without the server's directory and metrics.
//!
//! A small adapter drives the hub as the server does (loads answered, stores
//! acknowledged, ticks at the deadline) and checks after every event: every
//! frame sent parses; nothing is sent about the document while its store is
//! in flight; a close carries a sentence and the connection is not used
//! again; the hub's counts match what the adapter saw; the stored chunks
//! load and give exactly the hub's document; every change the hub holds was
//! in the document before or let through by the gate.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::OnceLock;

use automerge::sync::{self, ChunkList, Message, MessageVersion, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, Change, ChangeHash, ObjType, ROOT};
use ciborium::Value;
use klad_core::{DocId, KladDocument, MemberId, NewMember, ProcessDoc, ProcessId, Role};
use klad_sync::access::{self, Access};
use klad_sync::authorship::{self, DeviceKey, Registry, Sender, Signatures};
use klad_sync::hub::{Admission, ConnId, Effect, Event, Gate, Hub, HubConfig, Inbound};
use klad_sync::wire;

use super::assert_sentence;
use super::bytes::{self, Input};

/// Anna's connection (the one the fuzz input arrives on).
pub const ANNA: ConnId = ConnId(1);
/// Bram's connection.
pub const BRAM: ConnId = ConnId(2);
/// Anna's peer id.
pub const ANNA_PEER: &str = "anna:phone";
/// Bram's peer id.
pub const BRAM_PEER: &str = "bram:phone";
/// The Automerge actor of Anna's registered device.
pub const ANNA_ACTOR: [u8; 16] = [0xa1; 16];
/// The Automerge actor of Bram's registered device.
pub const BRAM_ACTOR: [u8; 16] = [0xb2; 16];
/// The seed of Anna's device key.
pub const ANNA_SEED: [u8; 32] = [0x0a; 32];
/// The seed of Bram's device key.
pub const BRAM_SEED: [u8; 32] = [0x0b; 32];

/// The process the hub serves, made once.
pub struct World {
    /// The process document's contents, indexed for the authorship check.
    pub registry: Registry,
    /// The text document's id.
    pub text: String,
    /// Anna's contributions document's id.
    pub anna_contributions: String,
    /// Bram's contributions document's id.
    pub bram_contributions: String,
    /// What the store holds of the text document when the hub loads it.
    pub base: Vec<u8>,
    /// The process document, saved.
    pub process: Vec<u8>,
}

fn doc_id(n: u8) -> String {
    wire::document_id([n; 16])
}

fn commit(tx: automerge::transaction::Transaction<'_>, time: i64) {
    tx.commit_with(CommitOptions::default().with_time(time));
}

/// The text document as stored: a few changes by Anna's and Bram's devices
/// (fixed actors and times, so every input means the same on every run),
/// with two heads.
fn base_document() -> Automerge {
    let mut doc = Automerge::new().with_actor(ActorId::from(&ANNA_ACTOR[..]));
    let mut tx = doc.transaction();
    tx.put(ROOT, "klad", "text").expect("put");
    tx.put(ROOT, "schema_version", 1u64).expect("put");
    let articles = tx.put_object(ROOT, "articles", ObjType::Map).expect("map");
    let a = tx.put_object(&articles, "a1", ObjType::Map).expect("map");
    tx.put(&a, "position", "a").expect("put");
    let body = tx.put_object(&a, "body", ObjType::Text).expect("text");
    tx.splice_text(&body, 0, 0, "Iedereen mag hier fietsen.")
        .expect("splice");
    commit(tx, 1);
    let mut bram = doc.fork().with_actor(ActorId::from(&BRAM_ACTOR[..]));
    let mut tx = bram.transaction();
    tx.splice_text(&body, 0, 0, "Artikel: ").expect("splice");
    commit(tx, 2);
    let mut tx = doc.transaction();
    tx.splice_text(&body, 8, 0, " niet").expect("splice");
    commit(tx, 3);
    doc.merge(&mut bram).expect("merge");
    doc
}

/// The process, its documents and the stored text document, made once.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let text = doc_id(2);
        let pid = ProcessId(doc_id(1));
        let mut process =
            ProcessDoc::create(0, &pid, "Fietsen", &DocId(text.clone())).expect("process");
        let members = [
            ("anna", Role::Drafter, 3, Some((ANNA_ACTOR, ANNA_SEED))),
            ("bram", Role::Drafter, 4, Some((BRAM_ACTOR, BRAM_SEED))),
            ("olga", Role::Official, 5, None),
        ];
        for (name, role, contributions, device) in members {
            let id = MemberId::from(name);
            let new = NewMember {
                id: id.clone(),
                name: name.to_owned(),
                role,
                contributions_doc: DocId(doc_id(contributions)),
            };
            process.add_member(0, None, &new).expect("member");
            if let Some((actor, seed)) = device {
                let key = DeviceKey::from_seed(seed).public_key();
                process
                    .register_device(0, &id, &ActorId::from(&actor[..]), Some(&key))
                    .expect("device");
            }
        }
        World {
            registry: Registry::new(process.info().expect("info")),
            text,
            anna_contributions: doc_id(3),
            bram_contributions: doc_id(4),
            base: base_document().save(),
            process: process.save(),
        }
    })
}

/// The hub's gate: access from the process document, and per change the
/// authorship check the server runs (a forgery closes the connection;
/// refused changes are removed; an actor nobody has is the sender's).
pub struct CheckingGate {
    /// Signatures each connection sent ahead of its changes.
    pub signatures: BTreeMap<ConnId, Signatures>,
    /// Every change the gate let through.
    pub admitted: HashSet<ChangeHash>,
}

impl Gate for CheckingGate {
    fn access(&self, peer: &str, doc: &str) -> Access {
        let member = access::member_of_peer(peer);
        access::access(world().registry.info(), doc, &member)
    }

    fn admit(&mut self, inbound: Inbound<'_>) -> Admission {
        let Inbound {
            conn,
            peer,
            doc_id,
            doc,
            message,
            ..
        } = inbound;
        let inspected = match authorship::inspect_message(doc_id.to_owned(), message) {
            Ok(i) => i,
            Err(e) => {
                let why = klad_sync::hub::CloseReason::BadFrame(e);
                return Admission::Close {
                    code: why.code(),
                    reason: why.sentence(),
                    label: why.label(),
                };
            }
        };
        let member = access::member_of_peer(peer);
        let known = inspected.known_in(doc);
        let signatures = self.signatures.entry(conn).or_default();
        let sender = Sender {
            member: &member,
            may_register: true,
        };
        let judged = inspected.judge(Some(&world().registry), sender, signatures, &known);
        signatures.used(inspected.hashes());
        if let Some((_, _, refusal)) = judged.forgery() {
            return Admission::Close {
                code: klad_sync::hub::POLICY_VIOLATION,
                reason: format!("Not stored: {}.", refusal.label()),
                label: refusal.label(),
            };
        }
        let keep: HashSet<ChangeHash> = judged
            .accepted
            .iter()
            .map(|(h, _)| *h)
            .chain(known)
            .collect();
        let message = inspected.retain_message(&keep);
        // What goes on to Automerge: exactly the kept changes.
        let passed = authorship::inspect_message(doc_id.to_owned(), message.clone())
            .map(|i| i.hashes())
            .unwrap_or_default();
        for h in &passed {
            assert!(keep.contains(h), "the gate passed a change it refused");
        }
        self.admitted.extend(passed);
        Admission::Apply(message)
    }
}

/// The server's side of the hub, as far as the checks need it.
struct Adapter {
    hub: Hub,
    gate: CheckingGate,
    now: u64,
    open: BTreeSet<ConnId>,
    /// Documents in the hub's memory, as its effects said.
    loaded: BTreeSet<String>,
    /// Every stored chunk of the text document, in order.
    stored: Vec<u8>,
}

/// The document a frame names, if it is a `sync` frame.
fn sync_doc(bytes: &[u8]) -> Option<String> {
    let frame = wire::parse(bytes).expect("every frame the hub sends parses");
    assert!(!frame.kind.is_empty());
    (frame.kind == "sync")
        .then_some(frame.document_id)
        .flatten()
}

impl Adapter {
    fn new() -> Self {
        Adapter {
            hub: Hub::new(HubConfig::default()),
            gate: CheckingGate {
                signatures: BTreeMap::new(),
                admitted: HashSet::new(),
            },
            now: 1_000,
            open: BTreeSet::new(),
            loaded: BTreeSet::new(),
            stored: Vec::new(),
        }
    }

    /// Hands `event` to the hub and carries out what it says, checking
    /// every effect, until nothing is left to do at this time.
    fn handle(&mut self, event: Event) {
        let mut queue = vec![event];
        while let Some(event) = queue.pop() {
            let effects = self.hub.handle(self.now, event, &mut self.gate);
            // Documents with a store in flight, within this call.
            let mut storing: BTreeSet<String> = BTreeSet::new();
            for effect in effects {
                match effect {
                    Effect::Send { conn, bytes } => {
                        assert!(self.open.contains(&conn), "sent on a closed connection");
                        if let Some(doc) = sync_doc(&bytes) {
                            assert!(
                                !storing.contains(&doc),
                                "sent a sync message while the document's store is in flight"
                            );
                        }
                    }
                    Effect::Close { conn, why } => {
                        assert!(self.open.remove(&conn), "closed a connection twice");
                        assert_sentence(&why.sentence());
                        assert!(why.code() >= 1000, "a close code below 1000");
                    }
                    Effect::Load { doc } => {
                        assert!(self.loaded.insert(doc.clone()), "loaded a document twice");
                        let content = (doc == world().text).then(|| {
                            Box::new(Automerge::load(&world().base).expect("the base loads"))
                        });
                        queue.insert(0, Event::DocLoaded { doc, content });
                    }
                    Effect::Store {
                        doc,
                        token,
                        changes,
                    } => {
                        assert!(storing.insert(doc.clone()), "two stores of one document");
                        assert!(!changes.is_empty(), "an empty store");
                        klad_core::chunks::check_chunks(&changes)
                            .expect("the hub stores whole Automerge chunks");
                        if doc == world().text {
                            self.stored.extend_from_slice(&changes);
                        }
                        queue.insert(0, Event::Stored { doc, upto: token });
                    }
                    Effect::Written { .. } => panic!("no write was asked for"),
                    Effect::Unload { doc } => {
                        assert!(self.loaded.remove(&doc), "unloaded a document not loaded");
                    }
                }
            }
        }
        self.check_counts();
    }

    /// Moves the clock to every deadline the hub asks for (a few at most).
    fn settle(&mut self) {
        for _ in 0..8 {
            match self.hub.next_deadline() {
                Some(at) if at <= self.now + 1_000 => {
                    self.now = self.now.max(at);
                    self.handle(Event::Tick);
                }
                _ => return,
            }
        }
    }

    fn check_counts(&self) {
        let stats = self.hub.stats();
        assert_eq!(stats.connections, self.open.len(), "{stats:?}");
        assert_eq!(stats.documents, self.loaded.len(), "{stats:?}");
        // Stores are acknowledged at once and loads answered at once.
        assert_eq!(stats.stores_in_flight, 0, "{stats:?}");
        assert_eq!(stats.waiting_messages, 0, "{stats:?}");
        // At most one subscription per open connection and document.
        assert!(
            stats.sync_states <= self.open.len() * self.loaded.len(),
            "{stats:?}"
        );
    }

    fn frame(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.handle(Event::FrameReceived { conn, bytes });
    }

    /// The hub's text document, the stored chunks loaded on the base, and
    /// the gate's record must agree.
    fn check_document(&self) {
        let Some(held) = self.hub.document(&world().text) else {
            return;
        };
        let mut reloaded = Automerge::load(&world().base).expect("the base loads");
        reloaded
            .load_incremental(&self.stored)
            .expect("the stored chunks load");
        assert_eq!(
            reloaded.get_heads(),
            held.get_heads(),
            "the stored chunks do not give the hub's document"
        );
        let base = Automerge::load(&world().base).expect("the base loads");
        for change in held.get_changes(&base.get_heads()) {
            assert!(
                self.gate.admitted.contains(&change.hash()),
                "the hub holds a change the gate did not let through"
            );
        }
    }
}

fn text(k: &str, v: &str) -> (Value, Value) {
    (Value::Text(k.into()), Value::Text(v.into()))
}

fn cbor(entries: Vec<(Value, Value)>) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Map(entries), &mut out).expect("CBOR into a Vec");
    out
}

/// A `join` frame from `peer`.
pub fn join_frame(peer: &str) -> Vec<u8> {
    cbor(vec![
        text("type", "join"),
        text("senderId", peer),
        (Value::Text("peerMetadata".into()), Value::Map(Vec::new())),
        (
            Value::Text("supportedProtocolVersions".into()),
            Value::Array(vec![Value::Text("1".into())]),
        ),
    ])
}

/// A `sync` (or `request`) frame from `peer` about `doc`.
pub fn sync_frame(kind: &str, peer: &str, doc: &str, msg: Message) -> Vec<u8> {
    cbor(vec![
        text("type", kind),
        text("senderId", peer),
        text("targetId", klad_sync::access::SERVER_PEER_ID),
        text("documentId", doc),
        (Value::Text("data".into()), Value::Bytes(msg.encode())),
    ])
}

/// A peer's copy of the text document after its first exchange with the
/// hub: the base, synced over Automerge's protocol (so the peer's sync
/// state is a real one).
pub struct Phone {
    /// The peer's document.
    pub doc: Automerge,
    /// Its sync state with the hub.
    pub state: sync::State,
}

impl Phone {
    fn first_message(&mut self) -> Message {
        self.doc
            .generate_sync_message(&mut self.state)
            .unwrap_or_else(|| Message {
                heads: self.doc.get_heads(),
                need: Vec::new(),
                have: Vec::new(),
                changes: ChunkList::empty(),
                flags: None,
                version: MessageVersion::V1,
            })
    }
}

/// The hub after Anna and Bram connected, joined and asked for the text
/// document (Anna with the stored copy, Bram with nothing), with their
/// answers sent.
fn connected() -> Adapter {
    let mut a = Adapter::new();
    for (conn, peer) in [(ANNA, ANNA_PEER), (BRAM, BRAM_PEER)] {
        a.open.insert(conn);
        a.handle(Event::PeerConnected {
            conn,
            peer_id: peer.to_owned(),
        });
        a.frame(conn, join_frame(peer));
    }
    let text = world().text.clone();
    let mut anna = Phone {
        doc: Automerge::load(&world().base).expect("base"),
        state: sync::State::new(),
    };
    a.frame(
        ANNA,
        sync_frame("sync", ANNA_PEER, &text, anna.first_message()),
    );
    let mut bram = Phone {
        doc: Automerge::new(),
        state: sync::State::new(),
    };
    a.frame(
        BRAM,
        sync_frame("request", BRAM_PEER, &text, bram.first_message()),
    );
    a.settle();
    assert_eq!(a.open.len(), 2, "the set-up closed a connection");
    a
}

/// The body of the `hub_frame` target: the input is one whole frame from
/// Anna's connection.
pub fn run_frame(data: &[u8]) {
    let mut a = connected();
    a.frame(ANNA, data.to_vec());
    a.settle();
    a.check_document();
    if a.open.contains(&ANNA) {
        // The connection still works: Anna can ask for the document again.
        let msg = Phone {
            doc: Automerge::new(),
            state: sync::State::new(),
        }
        .first_message();
        let text = world().text.clone();
        a.frame(ANNA, sync_frame("request", ANNA_PEER, &text, msg));
        a.settle();
        a.check_document();
    }
}

/// `bytes` cut into its chunks, as a V1 message carries them (one change
/// each); what does not read as a chunk stays one piece.
fn one_per_chunk(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some((_, _, tail)) = bytes::split_chunk(rest) {
        out.push(rest[..rest.len() - tail.len()].to_vec());
        rest = tail;
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest.to_vec());
    }
    out
}

/// The body of the `hub_changes` target. The first byte chooses how the rest
/// becomes the changes of a sync message from Anna about the text document
/// (bits 0–1: the bytes as they are, or the contents of one change,
/// document or bundle chunk with a valid checksum, see [`bytes::wrap`];
/// bit 2: a V2 message; bit 3: a `request` instead of a `sync`; bit 4: the
/// changes relayed with Bram's valid signatures; bit 5: the message's heads
/// are those of its changes instead of the hub's; bits 6–7: which document,
/// text or Anna's or Bram's contributions).
pub fn run_changes(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let changes = bytes::wrap(flags & 3, input.rest());
    let w = world();
    let doc = match flags >> 6 {
        1 => &w.anna_contributions,
        2 => &w.bram_contributions,
        _ => &w.text,
    };
    let decoded: Vec<Change> = klad_core::chunks::decode_changes(&changes).unwrap_or_default();
    let base = Automerge::load(&w.base).expect("base");
    let heads = if flags & 0x20 != 0 {
        decoded.iter().map(Change::hash).collect()
    } else {
        base.get_heads()
    };
    let (version, chunks) = if flags & 4 != 0 {
        (MessageVersion::V2, ChunkList::from(changes))
    } else {
        (MessageVersion::V1, ChunkList::from(one_per_chunk(&changes)))
    };
    let msg = Message {
        heads,
        need: Vec::new(),
        have: vec![sync::Have {
            last_sync: base.get_heads(),
            bloom: Default::default(),
        }],
        changes: chunks,
        flags: None,
        version,
    };
    let mut a = connected();
    if flags & 0x10 != 0 {
        let key = DeviceKey::from_seed(BRAM_SEED);
        let list: Vec<_> = decoded
            .iter()
            .map(|c| (c.hash(), key.sign(&c.hash())))
            .collect();
        // As the server's connection does with a klad-signatures frame.
        let frame = authorship::encode_signatures(doc, &list);
        let parsed = authorship::parse_signatures(&frame).expect("our own signatures parse");
        a.gate.signatures.entry(ANNA).or_default().add(parsed);
    }
    let kind = if flags & 8 != 0 { "request" } else { "sync" };
    a.frame(ANNA, sync_frame(kind, ANNA_PEER, doc, msg));
    a.settle();
    a.check_document();
}
