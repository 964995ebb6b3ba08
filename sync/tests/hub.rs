//! The sync hub through its public API: events in, effects out, no sockets.

use std::collections::HashMap;

use automerge::sync::{Message, State, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{ActorId, Automerge, ChangeHash, ROOT, ReadDoc};
use ciborium::Value;
use klad_core::rules::ReadOnlyReason;
use klad_sync::access::Access;
use klad_sync::hub::{
    CloseReason, ConnId, Effect, Event, Gate, Hub, HubConfig, StoreToken, WriteId,
};
use klad_sync::wire;

mod common;
use common::{cbor, doc_id, t};

const HUB: &str = "klad-server";
const WINDOW: u64 = 5;
const IDLE: u64 = 1_000;

fn join(peer: &str) -> Vec<u8> {
    cbor(vec![
        ("type", t("join")),
        ("senderId", t(peer)),
        ("supportedProtocolVersions", Value::Array(vec![t("1")])),
        (
            "peerMetadata",
            Value::Map(vec![(t("isEphemeral"), Value::Bool(true))]),
        ),
    ])
}

fn sync_frame(kind: &str, peer: &str, doc: &str, msg: Message) -> Vec<u8> {
    cbor(vec![
        ("type", t(kind)),
        ("senderId", t(peer)),
        ("targetId", t(HUB)),
        ("documentId", t(doc)),
        ("data", Value::Bytes(msg.encode())),
    ])
}

/// Access per (peer, document); nothing for anything not listed.
#[derive(Default)]
struct Table(HashMap<(String, String), Access>);

impl Table {
    fn set(&mut self, peer: &str, doc: &str, access: Access) {
        self.0.insert((peer.into(), doc.into()), access);
    }
}

impl Gate for Table {
    fn access(&self, peer: &str, doc: &str) -> Access {
        self.0
            .get(&(peer.to_owned(), doc.to_owned()))
            .copied()
            .unwrap_or(Access::None)
    }
}

/// An empty document whose changes carry `actor`. Tests fix actors and
/// times so that change hashes, and with them the sync protocol's Bloom
/// filters, are the same on every run: a filter's false positive (about one
/// in a hundred) makes a change wait a round, which a test of one exchange
/// must not meet by chance.
fn fixed_actor(actor: &str) -> Automerge {
    Automerge::new().with_actor(ActorId::from(actor.as_bytes()))
}

/// Commits at time 0 (see [`fixed_actor`]).
fn commit(tx: Transaction<'_>) {
    tx.commit_with(CommitOptions::default().with_time(0));
}

/// A peer: its copy of each document and its sync state with the hub.
struct Peer {
    id: String,
    conn: ConnId,
    docs: HashMap<String, (Automerge, State)>,
}

impl Peer {
    fn new(id: &str, conn: u64) -> Self {
        Peer {
            id: id.into(),
            conn: ConnId(conn),
            docs: HashMap::new(),
        }
    }

    fn doc(&mut self, doc: &str) -> &mut (Automerge, State) {
        self.docs
            .entry(doc.into())
            .or_insert_with(|| (fixed_actor(&self.id), State::new()))
    }

    fn edit(&mut self, doc: &str, key: &str, value: i64) {
        let (d, _) = self.doc(doc);
        let mut tx = d.transaction();
        tx.put(ROOT, key, value).unwrap();
        commit(tx);
    }

    /// The frame this peer sends for `doc` now (`request` while it has nothing).
    fn frame(&mut self, doc: &str) -> Option<Vec<u8>> {
        let id = self.id.clone();
        let (d, s) = self.doc(doc);
        let kind = if d.get_heads().is_empty() {
            "request"
        } else {
            "sync"
        };
        let msg = d.generate_sync_message(s)?;
        Some(sync_frame(kind, &id, doc, msg))
    }

    /// Applies a sync frame from the hub; returns its message.
    fn receive(&mut self, bytes: &[u8]) -> Message {
        let frame = wire::parse(bytes).unwrap();
        assert_eq!(frame.kind, "sync");
        let msg = frame.sync_message().unwrap().unwrap();
        let (d, s) = self.doc(frame.document_id.as_deref().unwrap());
        d.receive_sync_message(s, msg.clone()).unwrap();
        msg
    }

    fn get(&mut self, doc: &str, key: &str) -> Option<i64> {
        let (d, _) = self.doc(doc);
        d.get(ROOT, key).unwrap().and_then(|(v, _)| v.as_i64())
    }
}

/// A hub with a clock and an access table.
struct Fixture {
    hub: Hub,
    now: u64,
    gate: Table,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            hub: Hub::new(HubConfig {
                window_ms: WINDOW,
                idle_unload_ms: IDLE,
                ..HubConfig::default()
            }),
            now: 1_000,
            gate: Table::default(),
        }
    }

    fn on(&mut self, event: Event) -> Vec<Effect> {
        self.hub.handle(self.now, event, &mut self.gate)
    }

    fn frame(&mut self, conn: ConnId, bytes: Vec<u8>) -> Vec<Effect> {
        self.on(Event::FrameReceived { conn, bytes })
    }

    /// Connects and joins `peer`; asserts the hub's `peer` answer.
    fn connect(&mut self, peer: &Peer) {
        let conn = peer.conn;
        let peer_id = peer.id.clone();
        assert!(self.on(Event::PeerConnected { conn, peer_id }).is_empty());
        let out = self.frame(conn, join(&peer.id));
        assert!(matches!(out.as_slice(), [Effect::Send { conn: c, .. }] if *c == conn));
    }

    /// Moves the clock to `at` and ticks.
    fn tick_at(&mut self, at: u64) -> Vec<Effect> {
        self.now = at;
        self.on(Event::Tick)
    }

    /// Ticks at the hub's next deadline.
    fn tick(&mut self) -> Vec<Effect> {
        let at = self.hub.next_deadline().expect("a deadline");
        self.tick_at(at.max(self.now))
    }

    /// Sends `peer`'s frame for `doc`, if it has one.
    fn send(&mut self, peer: &mut Peer, doc: &str) -> Vec<Effect> {
        match peer.frame(doc) {
            Some(bytes) => self.frame(peer.conn, bytes),
            None => Vec::new(),
        }
    }

    /// Answers every store at once; returns the other effects.
    fn store_all(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
        let mut rest = Vec::new();
        let mut queue = effects;
        while !queue.is_empty() {
            let mut next = Vec::new();
            for e in queue {
                match e {
                    Effect::Store { doc, token, .. } => {
                        next.extend(self.on(Event::Stored { doc, upto: token }))
                    }
                    other => rest.push(other),
                }
            }
            queue = next;
        }
        rest
    }
}

fn sends_to(effects: &[Effect], conn: ConnId) -> Vec<Vec<u8>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { conn: c, bytes } if *c == conn => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

fn kinds(frames: &[Vec<u8>]) -> Vec<String> {
    frames
        .iter()
        .map(|b| wire::parse(b).unwrap().kind)
        .collect()
}

fn closes(effects: &[Effect]) -> Vec<(ConnId, CloseReason)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Close { conn, why } => Some((*conn, why.clone())),
            _ => None,
        })
        .collect()
}

fn stores(effects: &[Effect]) -> Vec<(String, StoreToken)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Store { doc, token, .. } => Some((doc.clone(), *token)),
            _ => None,
        })
        .collect()
}

/// A document with one key, as the store holds it.
fn stored_doc(key: &str, value: i64) -> Automerge {
    let mut d = fixed_actor("store");
    let mut tx = d.transaction();
    tx.put(ROOT, key, value).unwrap();
    commit(tx);
    d
}

/// `peers` joined and synced to `doc` (which holds `k = 1`).
fn synced(fx: &mut Fixture, doc: &str, peers: &mut [&mut Peer]) {
    for p in peers.iter_mut() {
        fx.gate.set(&p.id, doc, Access::ReadWrite);
        fx.connect(p);
        let out = fx.send(p, doc);
        if stores(&out).is_empty() && out.iter().any(|e| matches!(e, Effect::Load { .. })) {
            fx.on(Event::DocLoaded {
                doc: doc.into(),
                content: Some(Box::new(stored_doc("k", 1))),
            });
        }
    }
    // Exchange until quiet. Only flushes are ticked: ticking at an idle
    // deadline would unload the document (the sync protocol's Bloom filters
    // make the number of rounds vary from run to run).
    for _ in 0..20 {
        let out = match fx.hub.next_deadline() {
            Some(at) if at <= fx.now + WINDOW => fx.tick(),
            _ => Vec::new(),
        };
        let out = fx.store_all(out);
        let mut any = false;
        for p in peers.iter_mut() {
            for bytes in sends_to(&out, p.conn) {
                p.receive(&bytes);
            }
            let more = fx.send(p, doc);
            any |= !more.is_empty();
            fx.store_all(more);
        }
        if !any && fx.hub.next_deadline().is_none_or(|at| at > fx.now + WINDOW) {
            break;
        }
    }
    for p in peers.iter_mut() {
        assert_eq!(p.get(doc, "k"), Some(1), "{} has the document", p.id);
    }
}

fn heads_of(msg: &Message) -> Vec<ChangeHash> {
    msg.heads.clone()
}

#[test]
fn the_handshake_answers_peer_and_binds_the_peer_id() {
    let mut fx = Fixture::new();
    let conn = ConnId(1);
    fx.on(Event::PeerConnected {
        conn,
        peer_id: "m1:phone".into(),
    });
    let out = fx.frame(conn, join("m1:phone"));
    let [Effect::Send { bytes, .. }] = out.as_slice() else {
        panic!("one peer frame: {out:?}");
    };
    let Value::Map(map) = ciborium::from_reader::<Value, _>(bytes.as_slice()).unwrap() else {
        panic!("a map");
    };
    let field = |k: &str| map.iter().find(|(f, _)| *f == t(k)).map(|(_, v)| v.clone());
    assert_eq!(field("type"), Some(t("peer")));
    assert_eq!(field("senderId"), Some(t(HUB)));
    assert_eq!(field("targetId"), Some(t("m1:phone")));
    assert_eq!(field("selectedProtocolVersion"), Some(t("1")));
    assert!(matches!(field("peerMetadata"), Some(Value::Map(_))));

    // Another peer id than the token's: closed with 1008 and a sentence.
    let other = ConnId(2);
    fx.on(Event::PeerConnected {
        conn: other,
        peer_id: "m1:phone".into(),
    });
    let out = fx.frame(other, join("m2"));
    assert_eq!(closes(&out), vec![(other, CloseReason::PeerIdMismatch)]);
    assert_eq!(CloseReason::PeerIdMismatch.code(), 1008);
    assert_eq!(fx.hub.stats().connections, 1);
    // A second join on an open connection is a protocol error too.
    let out = fx.frame(conn, join("m1:phone"));
    assert_eq!(closes(&out), vec![(conn, CloseReason::JoinedTwice)]);
}

#[test]
fn a_requested_document_is_loaded_once_and_sent_after_the_load() {
    let mut fx = Fixture::new();
    let doc = doc_id(1);
    let mut a = Peer::new("a", 1);
    let mut b = Peer::new("b", 2);
    for p in [&a, &b] {
        fx.gate
            .set(&p.id, &doc, Access::ReadOnly(ReadOnlyReason::Observer));
        fx.connect(p);
    }
    let out = fx.send(&mut a, &doc);
    assert_eq!(out, vec![Effect::Load { doc: doc.clone() }]);
    let out = fx.send(&mut b, &doc);
    assert!(out.is_empty(), "one load for both: {out:?}");
    assert_eq!(
        fx.hub.next_deadline(),
        None,
        "nothing to do before the load"
    );

    let out = fx.on(Event::DocLoaded {
        doc: doc.clone(),
        content: Some(Box::new(stored_doc("k", 7))),
    });
    assert!(out.is_empty(), "answers wait for the window: {out:?}");
    assert_eq!(fx.hub.next_deadline(), Some(fx.now + WINDOW));
    let out = fx.tick();
    for p in [&mut a, &mut b] {
        let frames = sends_to(&out, p.conn);
        assert_eq!(kinds(&frames), vec!["sync"]);
        p.receive(&frames[0]);
        assert_eq!(p.get(&doc, "k"), Some(7));
    }
}

#[test]
fn a_change_reaches_other_peers_only_after_it_is_stored() {
    let mut fx = Fixture::new();
    let doc = doc_id(2);
    let mut a = Peer::new("a", 1);
    let mut b = Peer::new("b", 2);
    synced(&mut fx, &doc, &mut [&mut a, &mut b]);

    a.edit(&doc, "k", 2);
    let out = fx.send(&mut a, &doc);
    let [(_, token)] = stores(&out)[..] else {
        panic!("one store: {out:?}");
    };
    assert!(sends_to(&out, a.conn).is_empty() && sends_to(&out, b.conn).is_empty());
    // The window passes, the store does not finish: nothing leaves.
    let out = fx.tick_at(fx.now + 10 * WINDOW);
    assert!(out.is_empty(), "held at the barrier: {out:?}");
    // B sends something meanwhile: still nothing, and its message waits.
    b.edit(&doc, "other", 1);
    let out = fx.send(&mut b, &doc);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(fx.hub.stats().waiting_messages, 1);

    let out = fx.on(Event::Stored {
        doc: doc.clone(),
        upto: token,
    });
    // A is acknowledged (heads include its change) and B gets the change;
    // B's waiting change starts the next store.
    let to_a = sends_to(&out, a.conn);
    let to_b = sends_to(&out, b.conn);
    assert_eq!((to_a.len(), to_b.len()), (1, 1), "{out:?}");
    let a_head = a.doc(&doc).0.get_heads();
    assert_eq!(heads_of(&a.receive(&to_a[0])), a_head);
    b.receive(&to_b[0]);
    assert_eq!(b.get(&doc, "k"), Some(2));
    assert_eq!(stores(&out).len(), 1, "B's change is stored next");
    assert_eq!(fx.hub.document(&doc).unwrap().get_heads().len(), 2);
}

#[test]
fn a_writer_hears_its_change_is_stored_even_when_its_heads_crossed_the_answer() {
    let mut fx = Fixture::new();
    let doc = doc_id(12);
    let mut a = Peer::new("a", 1);
    let mut b = Peer::new("b", 2);
    synced(&mut fx, &doc, &mut [&mut a, &mut b]);

    // A's change is being stored; B's change waits for that store.
    a.edit(&doc, "k", 2);
    let out = fx.send(&mut a, &doc);
    let [(_, first)] = stores(&out)[..] else {
        panic!("one store: {out:?}");
    };
    b.edit(&doc, "other", 1);
    assert!(fx.send(&mut b, &doc).is_empty());
    fx.tick_at(fx.now + WINDOW);
    // The first store ends: B hears of A's change (the hub does not have
    // B's yet), and B's change goes to the store.
    let out = fx.on(Event::Stored {
        doc: doc.clone(),
        upto: first,
    });
    let [(_, second)] = stores(&out)[..] else {
        panic!("B's change is stored next: {out:?}");
    };
    b.receive(&sends_to(&out, b.conn)[0]);
    // B now has both changes and says so before the hub answered its own:
    // its heads equal the hub's, and nothing in its message is new to it.
    let out = fx.send(&mut b, &doc);
    assert!(out.is_empty(), "waits for the store: {out:?}");
    let mut out = fx.on(Event::Stored {
        doc: doc.clone(),
        upto: second,
    });
    out.extend(fx.tick());
    // B is still told that the hub has everything: its "all on the server".
    let hub_heads = fx.hub.document(&doc).unwrap().get_heads();
    let to_b = sends_to(&out, b.conn);
    assert_eq!(to_b.len(), 1, "{out:?}");
    assert_eq!(heads_of(&b.receive(&to_b[0])), hub_heads);
    assert_eq!(b.doc(&doc).1.their_heads.as_ref(), Some(&hub_heads));
    // And the exchange ends there.
    assert!(fx.send(&mut b, &doc).is_empty());
}

#[test]
fn peers_that_ask_alike_get_the_same_first_answer_and_sync_on_from_it() {
    let mut fx = Fixture::new();
    let doc = doc_id(13);
    let mut peers: Vec<Peer> = (0..3).map(|i| Peer::new(&format!("p{i}"), i + 1)).collect();
    for p in &peers {
        fx.gate.set(&p.id, &doc, Access::ReadWrite);
        fx.connect(p);
    }
    for p in peers.iter_mut() {
        fx.send(p, &doc);
    }
    fx.on(Event::DocLoaded {
        doc: doc.clone(),
        content: Some(Box::new(stored_doc("k", 1))),
    });
    let out = fx.tick();
    let mut data = Vec::new();
    for p in peers.iter_mut() {
        let frames = sends_to(&out, p.conn);
        assert_eq!(frames.len(), 1, "{out:?}");
        data.push(
            wire::parse(&frames[0])
                .unwrap()
                .sync_message()
                .unwrap()
                .unwrap()
                .encode(),
        );
        p.receive(&frames[0]);
        assert_eq!(p.get(&doc, "k"), Some(1));
    }
    assert!(
        data.windows(2).all(|w| w[0] == w[1]),
        "one answer for all three"
    );
    // Each peer's exchange goes on from the answer it got: a change of one
    // reaches the others, and each hears its own is stored.
    for p in peers.iter_mut() {
        let out = fx.send(p, &doc);
        fx.store_all(out);
    }
    peers[1].edit(&doc, "k", 2);
    let out = fx.send(&mut peers[1], &doc);
    let mut out = fx.store_all(out);
    out.extend(fx.tick());
    for p in peers.iter_mut() {
        for f in sends_to(&out, p.conn) {
            p.receive(&f);
        }
        assert_eq!(p.get(&doc, "k"), Some(2), "{}", p.id);
    }
    let heads = fx.hub.document(&doc).unwrap().get_heads();
    assert_eq!(peers[1].doc(&doc).1.their_heads.as_ref(), Some(&heads));
}

#[test]
fn a_peer_without_access_hears_the_document_is_unavailable_and_nothing_else() {
    let mut fx = Fixture::new();
    let doc = doc_id(3);
    let mut a = Peer::new("a", 1);
    fx.connect(&a);
    a.edit(&doc, "k", 1);
    for _ in 0..2 {
        a.doc(&doc).1 = State::new();
        let out = fx.send(&mut a, &doc);
        assert_eq!(kinds(&sends_to(&out, a.conn)), vec!["doc-unavailable"]);
        assert_eq!(out.len(), 1, "no load, no store: {out:?}");
    }
    assert_eq!(fx.hub.stats().documents, 0);
    assert_eq!(fx.hub.next_deadline(), None);
}

#[test]
fn a_request_for_an_unknown_document_is_unavailable_and_a_writers_sync_creates_it() {
    let mut fx = Fixture::new();
    let doc = doc_id(4);
    let mut reader = Peer::new("reader", 1);
    let mut writer = Peer::new("writer", 2);
    fx.gate.set("reader", &doc, Access::ReadWrite);
    fx.gate.set("writer", &doc, Access::ReadWrite);
    fx.connect(&reader);
    fx.connect(&writer);
    fx.send(&mut reader, &doc);
    let out = fx.on(Event::DocLoaded {
        doc: doc.clone(),
        content: None,
    });
    assert_eq!(kinds(&sends_to(&out, reader.conn)), vec!["doc-unavailable"]);

    writer.edit(&doc, "k", 5);
    let mut out = fx.send(&mut writer, &doc);
    for _ in 0..10 {
        out = fx.store_all(out);
        if fx.hub.next_deadline().is_some() {
            out.extend(fx.tick());
        }
        for bytes in sends_to(&out, writer.conn) {
            writer.receive(&bytes);
        }
        for bytes in sends_to(&out, reader.conn) {
            reader.receive(&bytes);
        }
        out = fx.send(&mut writer, &doc);
    }
    assert!(
        fx.hub
            .document(&doc)
            .is_some_and(|d| !d.get_heads().is_empty())
    );
    // The reader stayed subscribed and hears of the document once it exists.
    assert_eq!(reader.get(&doc, "k"), Some(5));
}

#[test]
fn revoked_access_stops_sending() {
    let mut fx = Fixture::new();
    let doc = doc_id(5);
    let mut a = Peer::new("a", 1);
    let mut b = Peer::new("b", 2);
    synced(&mut fx, &doc, &mut [&mut a, &mut b]);
    assert_eq!(fx.hub.stats().sync_states, 2);

    fx.gate.set("b", &doc, Access::None);
    let out = fx.on(Event::AccessChanged {
        doc: Some(doc.clone()),
    });
    assert_eq!(kinds(&sends_to(&out, b.conn)), vec!["doc-unavailable"]);
    assert_eq!(fx.hub.stats().sync_states, 1);

    a.edit(&doc, "k", 9);
    let out = fx.send(&mut a, &doc);
    let mut out = fx.store_all(out);
    out.extend(fx.tick());
    assert!(sends_to(&out, b.conn).is_empty(), "{out:?}");
    assert_eq!(sends_to(&out, a.conn).len(), 1);
    // And B asking again gets nothing either.
    let out = fx.send(&mut b, &doc);
    assert!(
        kinds(&sends_to(&out, b.conn))
            .iter()
            .all(|k| k == "doc-unavailable")
    );
}

#[test]
fn a_read_only_peers_changes_are_not_applied_and_the_exchange_ends() {
    let mut fx = Fixture::new();
    let doc = doc_id(6);
    let mut a = Peer::new("a", 1);
    synced(&mut fx, &doc, &mut [&mut a]);
    fx.gate
        .set("a", &doc, Access::ReadOnly(ReadOnlyReason::Observer));
    fx.on(Event::AccessChanged { doc: None });
    let before = fx.hub.document(&doc).unwrap().get_heads();

    a.edit(&doc, "k", 2);
    let mut rounds = 0;
    let mut out = fx.send(&mut a, &doc);
    while rounds < 50 {
        assert!(stores(&out).is_empty(), "nothing of a reader is stored");
        if fx.hub.next_deadline().is_some() {
            out.extend(fx.tick());
        }
        let frames = sends_to(&out, a.conn);
        if frames.is_empty() {
            break;
        }
        for bytes in frames {
            a.receive(&bytes);
        }
        out = fx.send(&mut a, &doc);
        rounds += 1;
    }
    assert!(rounds < 50, "the exchange with a refused change must end");
    assert_eq!(fx.hub.document(&doc).unwrap().get_heads(), before);
}

#[test]
fn frames_within_the_window_cost_each_peer_one_message() {
    let mut fx = Fixture::new();
    let doc = doc_id(7);
    let mut a = Peer::new("a", 1);
    let mut b = Peer::new("b", 2);
    synced(&mut fx, &doc, &mut [&mut a, &mut b]);
    let start = fx.now;
    let mut sent = Vec::new();
    for i in 0..10 {
        a.edit(&doc, "k", 10 + i);
        // Ten frames, each with one change.
        let out = fx.send(&mut a, &doc);
        assert_eq!(stores(&out).len(), 1);
        sent.extend(fx.store_all(out));
    }
    assert_eq!(fx.now, start);
    assert!(sends_to(&sent, b.conn).is_empty());
    sent.extend(fx.tick());
    assert_eq!(fx.now, start + WINDOW);
    assert_eq!(sends_to(&sent, b.conn).len(), 1, "{sent:?}");
    assert_eq!(sends_to(&sent, a.conn).len(), 1);
    b.receive(&sends_to(&sent, b.conn)[0]);
    assert_eq!(b.get(&doc, "k"), Some(19));
}

/// Edits by `a` and sends them: returns the token of the store that
/// holds every later message of the document until it finishes.
fn storing(fx: &mut Fixture, doc: &str, a: &mut Peer) -> StoreToken {
    a.edit(doc, "from_a", 1);
    let out = fx.send(a, doc);
    let [(_, token)] = stores(&out)[..] else {
        panic!("one store: {out:?}");
    };
    token
}

/// `p` edits `key` and sends it while a store is in flight.
fn held(fx: &mut Fixture, doc: &str, p: &mut Peer, key: &str, value: i64) {
    p.edit(doc, key, value);
    assert!(fx.send(p, doc).is_empty(), "held at the barrier");
}

#[test]
fn messages_held_by_a_store_are_applied_together_and_stored_in_one_store() {
    let mut fx = Fixture::new();
    let doc = doc_id(9);
    let mut a = Peer::new("a", 1);
    let mut b = Peer::new("b", 2);
    let mut c = Peer::new("c", 3);
    synced(&mut fx, &doc, &mut [&mut a, &mut b, &mut c]);
    let token = storing(&mut fx, &doc, &mut a);
    held(&mut fx, &doc, &mut b, "from_b", 1);
    held(&mut fx, &doc, &mut c, "from_c", 1);
    // B's second message waits behind its first (the next run).
    held(&mut fx, &doc, &mut b, "from_b", 2);
    assert_eq!(fx.hub.stats().waiting_messages, 3);
    let out = fx.on(Event::Stored {
        doc: doc.clone(),
        upto: token,
    });
    assert!(closes(&out).is_empty(), "{out:?}");
    assert_eq!(
        stores(&out).len(),
        1,
        "b's and c's changes in one store: {out:?}"
    );
    let hub = fx.hub.document(&doc).unwrap();
    assert_eq!(
        hub.get_heads().len(),
        3,
        "concurrent: a's change, b's last and c's"
    );
    // Everyone converges on the hub's copy once the store finishes.
    let mut all = fx.store_all(out);
    all.extend(fx.tick());
    for p in [&mut a, &mut b, &mut c] {
        for bytes in sends_to(&all, p.conn) {
            p.receive(&bytes);
        }
    }
    let heads = fx.hub.document(&doc).unwrap().get_heads();
    for p in [&mut a, &mut b, &mut c] {
        assert_eq!(p.doc(&doc).0.get_heads(), heads, "{} has everything", p.id);
    }
    assert_eq!(a.get(&doc, "from_b"), Some(2));
    assert_eq!(a.get(&doc, "from_c"), Some(1));
}

#[test]
fn a_bad_message_among_held_ones_fails_alone() {
    let mut fx = Fixture::new();
    let doc = doc_id(10);
    let mut a = Peer::new("a", 1);
    let mut b = Peer::new("b", 2);
    let mut c = Peer::new("c", 3);
    let mut d = Peer::new("d", 4);
    synced(&mut fx, &doc, &mut [&mut a, &mut b, &mut c, &mut d]);
    // D writes as B's actor with B's next sequence number: a different
    // change under the same (actor, seq), which Automerge refuses.
    let b_copy = b.doc(&doc).0.clone();
    d.doc(&doc).0 = b_copy;
    let token = storing(&mut fx, &doc, &mut a);
    held(&mut fx, &doc, &mut b, "from_b", 1);
    held(&mut fx, &doc, &mut c, "from_c", 1);
    held(&mut fx, &doc, &mut d, "from_d", 1);
    let out = fx.on(Event::Stored {
        doc: doc.clone(),
        upto: token,
    });
    let closed = closes(&out);
    assert!(
        matches!(closed.as_slice(), [(conn, CloseReason::DuplicateSeq { .. })] if *conn == d.conn),
        "{closed:?}"
    );
    assert_eq!(stores(&out).len(), 1, "{out:?}");
    let hub = fx.hub.document(&doc).unwrap();
    assert!(hub.get(ROOT, "from_b").unwrap().is_some());
    assert!(hub.get(ROOT, "from_c").unwrap().is_some());
    assert!(hub.get(ROOT, "from_d").unwrap().is_none());
}

#[test]
fn a_document_without_peers_is_unloaded_after_the_idle_time() {
    let mut fx = Fixture::new();
    let doc = doc_id(8);
    let mut a = Peer::new("a", 1);
    synced(&mut fx, &doc, &mut [&mut a]);
    a.edit(&doc, "k", 3);
    let out = fx.send(&mut a, &doc);
    let token = stores(&out)[0].1;
    let left = fx.now;
    fx.on(Event::PeerDisconnected { conn: a.conn });
    // Not before the store is done, and not before the idle time.
    assert!(fx.tick_at(left + IDLE).is_empty());
    fx.on(Event::Stored {
        doc: doc.clone(),
        upto: token,
    });
    fx.now = left + 1;
    assert_eq!(fx.hub.next_deadline(), Some(left + IDLE));
    assert!(fx.tick_at(left + IDLE - 1).is_empty());
    let out = fx.tick_at(left + IDLE);
    assert_eq!(out, vec![Effect::Unload { doc: doc.clone() }]);
    assert_eq!(fx.hub.stats(), Default::default());
}

#[test]
fn bad_frames_close_the_connection_with_a_sentence() {
    let doc = doc_id(9);
    let bad_doc = cbor(vec![
        ("type", t("sync")),
        ("documentId", t("not-a-document")),
        ("data", Value::Bytes(vec![0x42])),
    ]);
    let bad_data = cbor(vec![
        ("type", t("sync")),
        ("documentId", t(&doc)),
        ("data", Value::Bytes(vec![1, 2, 3])),
    ]);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"\xff\x00 not cbor".to_vec(), 1007),
        (bad_doc, 1007),
        (bad_data, 1007),
    ];
    for (i, (bytes, code)) in cases.into_iter().enumerate() {
        let mut fx = Fixture::new();
        fx.gate.set("a", &doc, Access::ReadWrite);
        let a = Peer::new("a", i as u64);
        fx.connect(&a);
        let out = fx.frame(a.conn, bytes);
        let c = closes(&out);
        assert_eq!(c.len(), 1, "{out:?}");
        assert_eq!(c[0].1.code(), code);
        assert!(c[0].1.sentence().len() <= 123);
        assert_eq!(fx.hub.stats().connections, 0);
    }
    // Before the join, anything but a join is refused.
    let mut fx = Fixture::new();
    fx.on(Event::PeerConnected {
        conn: ConnId(1),
        peer_id: "a".into(),
    });
    let out = fx.frame(ConnId(1), cbor(vec![("type", t("sync"))]));
    assert_eq!(closes(&out), vec![(ConnId(1), CloseReason::NotJoined)]);
    // Unknown types are ignored, not refused.
    let mut fx = Fixture::new();
    let a = Peer::new("a", 1);
    fx.connect(&a);
    let out = fx.frame(a.conn, cbor(vec![("type", t("klad-signatures"))]));
    assert!(out.is_empty());
    assert_eq!(fx.hub.stats().connections, 1);
}

#[test]
fn every_close_sentence_fits_a_close_frame() {
    let reasons = [
        CloseReason::BadFrame(wire::FrameError::NotAMessage),
        CloseReason::BadFrame(wire::FrameError::BadDocumentId),
        CloseReason::BadFrame(wire::FrameError::BadSyncData),
        CloseReason::BadFrame(wire::FrameError::BadSignatures),
        CloseReason::NotJoined,
        CloseReason::JoinedTwice,
        CloseReason::JoinWithoutSender,
        CloseReason::PeerIdMismatch,
        CloseReason::UnsupportedVersion,
        CloseReason::ChangesNotApplied,
        CloseReason::StoreFailed,
    ];
    for r in reasons {
        assert!(r.to_string().len() <= 123, "{r}: {}", r.to_string().len());
        assert!(r.to_string().ends_with('.'));
    }
}

#[test]
fn a_disconnect_forgets_all_state_of_the_connection() {
    let mut fx = Fixture::new();
    let (d1, d2) = (doc_id(10), doc_id(11));
    let mut a = Peer::new("a", 1);
    let mut b = Peer::new("b", 2);
    synced(&mut fx, &d1, &mut [&mut a, &mut b]);
    fx.gate.set("a", &d2, Access::ReadWrite);
    fx.send(&mut a, &d2);
    fx.on(Event::DocLoaded {
        doc: d2.clone(),
        content: None,
    });
    let s = fx.hub.stats();
    assert_eq!((s.connections, s.documents, s.sync_states), (2, 2, 3));

    fx.on(Event::PeerDisconnected { conn: a.conn });
    let s = fx.hub.stats();
    assert_eq!((s.connections, s.documents, s.sync_states), (1, 2, 1));
    fx.on(Event::PeerDisconnected { conn: b.conn });
    let s = fx.hub.stats();
    assert_eq!(
        (s.connections, s.sync_states, s.waiting_messages),
        (0, 0, 0)
    );
    // Frames of a forgotten connection do nothing.
    assert!(fx.frame(a.conn, join("a")).is_empty());
}

#[test]
fn a_failed_store_closes_the_documents_connections() {
    let mut fx = Fixture::new();
    let doc = doc_id(12);
    let mut a = Peer::new("a", 1);
    synced(&mut fx, &doc, &mut [&mut a]);
    a.edit(&doc, "k", 4);
    let out = fx.send(&mut a, &doc);
    assert_eq!(stores(&out).len(), 1);
    let out = fx.on(Event::StoreFailed { doc: doc.clone() });
    assert_eq!(closes(&out), vec![(a.conn, CloseReason::StoreFailed)]);
    assert!(out.contains(&Effect::Unload { doc: doc.clone() }));
    assert_eq!(fx.hub.stats(), Default::default());
}

#[test]
fn ephemeral_messages_go_to_the_documents_other_peers() {
    let mut fx = Fixture::new();
    let doc = doc_id(13);
    let mut a = Peer::new("a", 1);
    let mut b = Peer::new("b", 2);
    synced(&mut fx, &doc, &mut [&mut a, &mut b]);
    let eph = cbor(vec![
        ("type", t("ephemeral")),
        ("senderId", t("a")),
        ("targetId", t(HUB)),
        ("documentId", t(&doc)),
        ("sessionId", t("s")),
        ("count", Value::Integer(1.into())),
        ("data", Value::Bytes(vec![1])),
    ]);
    let out = fx.frame(a.conn, eph);
    assert!(sends_to(&out, a.conn).is_empty());
    let to_b = sends_to(&out, b.conn);
    assert_eq!(kinds(&to_b), vec!["ephemeral"]);
}

/// The changes `edit` makes to a copy of `base`.
fn changes_after(base: &Automerge, key: &str, value: i64) -> Vec<automerge::Change> {
    let mut d = base.fork().with_actor(ActorId::from(b"server".as_slice()));
    let mut tx = d.transaction();
    tx.put(ROOT, key, value).unwrap();
    commit(tx);
    d.get_changes(&base.get_heads())
}

fn written(effects: &[Effect]) -> Vec<(WriteId, bool)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Written { id, stored, .. } => Some((*id, *stored)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_server_write_is_stored_before_it_is_reported_and_synced_to_peers() {
    let doc = doc_id(40);
    let mut fx = Fixture::new();
    let mut a = Peer::new("a", 1);
    synced(&mut fx, &doc, &mut [&mut a]);
    let base = fx.hub.document(&doc).unwrap().clone();
    let out = fx.on(Event::Write {
        doc: doc.clone(),
        id: WriteId(7),
        changes: changes_after(&base, "server", 5),
    });
    // Stored first: nothing is reported or sent before the store finishes.
    let s = stores(&out);
    assert_eq!(s.len(), 1, "{out:?}");
    assert!(written(&out).is_empty());
    assert!(sends_to(&out, a.conn).is_empty());
    let out = fx.on(Event::Stored {
        doc: doc.clone(),
        upto: s[0].1,
    });
    assert_eq!(written(&out), vec![(WriteId(7), true)]);
    let out = fx.tick();
    for bytes in sends_to(&out, a.conn) {
        a.receive(&bytes);
    }
    assert_eq!(a.get(&doc, "server"), Some(5));
}

#[test]
fn a_write_to_an_unloaded_document_loads_it_and_a_failed_store_fails_the_write() {
    let doc = doc_id(41);
    let mut fx = Fixture::new();
    let out = fx.on(Event::Write {
        doc: doc.clone(),
        id: WriteId(1),
        changes: changes_after(&Automerge::new(), "k", 1),
    });
    assert!(matches!(out.as_slice(), [Effect::Load { .. }]), "{out:?}");
    let out = fx.on(Event::DocLoaded {
        doc: doc.clone(),
        content: None,
    });
    assert_eq!(stores(&out).len(), 1);
    // A second write while the first is being stored waits for it.
    let base = fx.hub.document(&doc).unwrap().clone();
    let out = fx.on(Event::Write {
        doc: doc.clone(),
        id: WriteId(2),
        changes: changes_after(&base, "k2", 2),
    });
    assert!(out.is_empty(), "{out:?}");
    let out = fx.on(Event::StoreFailed { doc: doc.clone() });
    let mut w = written(&out);
    w.sort();
    assert_eq!(w, vec![(WriteId(1), false), (WriteId(2), false)]);
    assert!(fx.hub.document(&doc).is_none());
}

#[test]
fn a_repeated_write_is_reported_stored_without_a_store() {
    let doc = doc_id(42);
    let mut fx = Fixture::new();
    let changes = changes_after(&Automerge::new(), "k", 1);
    let out = fx.on(Event::Write {
        doc: doc.clone(),
        id: WriteId(1),
        changes: changes.clone(),
    });
    assert_eq!(out.len(), 1);
    let out = fx.on(Event::DocLoaded {
        doc: doc.clone(),
        content: None,
    });
    fx.store_all(out);
    let out = fx.on(Event::Write {
        doc: doc.clone(),
        id: WriteId(2),
        changes,
    });
    assert_eq!(written(&out), vec![(WriteId(2), true)]);
    assert!(stores(&out).is_empty());
}
