//! A seeded, deterministic simulation of the sync hub: peers with real
//! Automerge replicas speak the automerge-repo protocol to the hub over
//! simulated connections (each direction FIFO, the links interleaved at
//! random), while connections drop, the hub restarts (only what got a
//! `Stored` event survives), stores finish late or fail, and peers edit.
//!
//! Checked on every seed: no frame the hub sends carries or acknowledges a
//! change before its store finished; after quiescence every peer that may
//! read a document has exactly the stored document (a read-only peer's own
//! refused edits aside), every change stored was written by a peer that may
//! write the document, and the hub holds no state for closed connections.
//! Prints nothing unless a seed fails; then the seed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use automerge::sync::{Message, State, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, ChangeHash, ROOT};
use ciborium::Value;
use klad_core::rules::ReadOnlyReason;
use klad_sync::access::Access;
use klad_sync::hub::{ConnId, Effect, Event, Hub, HubConfig, StoreToken};
use klad_sync::wire;

mod common;
use common::{cbor, t};

const SEEDS: u64 = 2_000;
const STEPS: usize = 120;
const WINDOW: u64 = 3;
const IDLE: u64 = 40;

/// splitmix64: small, fast, and good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn doc_id(n: usize) -> String {
    common::doc_id(n as u8 + 1)
}

/// One simulated connection: a FIFO each way.
#[derive(Default)]
struct Link {
    to_hub: VecDeque<Vec<u8>>,
    to_peer: VecDeque<Vec<u8>>,
}

/// A peer: replicas that survive reconnects, sync states that do not.
struct Peer {
    id: String,
    docs: Vec<Automerge>,
    states: Vec<State>,
    conn: Option<ConnId>,
    joined: bool,
    /// Whether it may have been read-write on each document at some time.
    ever_writer: Vec<bool>,
}

impl Peer {
    fn frame(&mut self, doc: usize) -> Option<Vec<u8>> {
        let d = &self.docs[doc];
        let kind = if d.get_heads().is_empty() {
            "request"
        } else {
            "sync"
        };
        let msg = d.generate_sync_message(&mut self.states[doc])?;
        Some(cbor(vec![
            ("type", t(kind)),
            ("senderId", t(&self.id)),
            ("targetId", t("klad-server")),
            ("documentId", t(&doc_id(doc))),
            ("data", Value::Bytes(msg.encode())),
        ]))
    }
}

/// Access per (peer, document), fixed for a run.
struct Table(Vec<Vec<Access>>, Vec<String>);

impl klad_sync::hub::Gate for Table {
    fn access(&self, peer: &str, doc: &str) -> Access {
        let p = self.1.iter().position(|id| id == peer);
        let d = (0..self.0.first().map_or(0, Vec::len)).find(|d| doc_id(*d) == doc);
        match (p, d) {
            (Some(p), Some(d)) => self.0[p][d],
            _ => Access::None,
        }
    }
}

struct Sim {
    rng: Rng,
    now: u64,
    hub: Hub,
    gate: Table,
    peers: Vec<Peer>,
    links: BTreeMap<ConnId, (usize, Link)>,
    next_conn: u64,
    /// Stores the hub asked for and that have not finished: (doc, token, changes).
    storing: Vec<(String, StoreToken, Vec<u8>)>,
    loading: Vec<String>,
    /// What survives a restart.
    disk: BTreeMap<String, Vec<u8>>,
    on_disk: BTreeSet<ChangeHash>,
}

fn new_hub() -> Hub {
    Hub::new(HubConfig {
        window_ms: WINDOW,
        idle_unload_ms: IDLE,
        ..HubConfig::default()
    })
}

fn hashes(bytes: &[u8]) -> Vec<ChangeHash> {
    if bytes.is_empty() {
        return Vec::new();
    }
    klad_core::chunks::decode_changes(bytes)
        .unwrap()
        .iter()
        .map(|c| c.hash())
        .collect()
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        // Access per (peer, document) at the start; phase changes flip it.
        let n_peers = 2 + rng.below(3);
        let n_docs = 1 + rng.below(2);
        let ids: Vec<String> = (0..n_peers).map(|i| format!("p{i}")).collect();
        let table: Vec<Vec<Access>> = (0..n_peers)
            .map(|_| {
                (0..n_docs)
                    .map(|_| match rng.below(10) {
                        0 => Access::None,
                        1 | 2 => Access::ReadOnly(ReadOnlyReason::Observer),
                        _ => Access::ReadWrite,
                    })
                    .collect()
            })
            .collect();
        let writers: Vec<Vec<bool>> = table
            .iter()
            .map(|row| row.iter().map(|a| *a == Access::ReadWrite).collect())
            .collect();
        let peers = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Peer {
                id: id.clone(),
                docs: (0..n_docs)
                    .map(|d| Automerge::new().with_actor(ActorId::from(vec![i as u8, d as u8])))
                    .collect(),
                states: (0..n_docs).map(|_| State::new()).collect(),
                conn: None,
                joined: false,
                ever_writer: writers[i].clone(),
            })
            .collect();
        Sim {
            rng,
            now: 0,
            hub: new_hub(),
            gate: Table(table, ids),
            peers,
            links: BTreeMap::new(),
            next_conn: 0,
            storing: Vec::new(),
            loading: Vec::new(),
            disk: BTreeMap::new(),
            on_disk: BTreeSet::new(),
        }
    }

    fn n_docs(&self) -> usize {
        self.peers[0].docs.len()
    }

    fn event(&mut self, event: Event) {
        let effects = self.hub.handle(self.now, event, &mut self.gate);
        for e in effects {
            self.effect(e);
        }
    }

    fn effect(&mut self, e: Effect) {
        match e {
            Effect::Send { conn, bytes } => {
                self.check_barrier(&bytes);
                if let Some((_, link)) = self.links.get_mut(&conn) {
                    link.to_peer.push_back(bytes);
                }
            }
            Effect::Close { conn, .. } => self.cut(conn),
            Effect::Load { doc } => self.loading.push(doc),
            Effect::Store {
                doc,
                token,
                changes,
            } => {
                assert!(
                    !self.storing.iter().any(|(d, _, _)| *d == doc),
                    "two stores of one document in flight"
                );
                self.storing.push((doc, token, changes));
            }
            Effect::Unload { doc } => {
                assert!(
                    !self.storing.iter().any(|(d, _, _)| *d == doc),
                    "unloaded with a store in flight"
                );
            }
            Effect::Written { .. } => panic!("the simulation makes no server writes"),
        }
    }

    /// Nothing the hub sends may carry or acknowledge an unstored change.
    fn check_barrier(&self, bytes: &[u8]) {
        let frame = wire::parse(bytes).unwrap();
        if frame.kind != "sync" {
            return;
        }
        let msg = frame.sync_message().unwrap().unwrap();
        for h in msg.heads.iter() {
            assert!(
                self.on_disk.contains(h),
                "heads acknowledge an unstored change"
            );
        }
        let joined: Vec<u8> = msg.changes.iter().flatten().copied().collect();
        for h in hashes(&joined) {
            assert!(self.on_disk.contains(&h), "an unstored change was sent");
        }
    }

    /// The connection ends (a drop, a close, or a restart).
    fn cut(&mut self, conn: ConnId) {
        if let Some((p, _)) = self.links.remove(&conn) {
            self.peers[p].conn = None;
            self.peers[p].joined = false;
        }
    }

    fn connect(&mut self, p: usize) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let peer = &mut self.peers[p];
        peer.conn = Some(conn);
        peer.joined = false;
        for s in peer.states.iter_mut() {
            *s = State::new();
        }
        let mut link = Link::default();
        link.to_hub.push_back(cbor(vec![
            ("type", t("join")),
            ("senderId", t(&peer.id)),
            ("supportedProtocolVersions", Value::Array(vec![t("1")])),
        ]));
        self.links.insert(conn, (p, link));
        let peer_id = peer.id.clone();
        self.event(Event::PeerConnected { conn, peer_id });
    }

    fn peer_send(&mut self, p: usize, doc: usize) {
        let Some(conn) = self.peers[p].conn.filter(|_| self.peers[p].joined) else {
            return;
        };
        if let Some(bytes) = self.peers[p].frame(doc)
            && let Some((_, link)) = self.links.get_mut(&conn)
        {
            link.to_hub.push_back(bytes);
        }
    }

    /// A frame from the hub reaches its peer.
    fn peer_receives(&mut self, p: usize, bytes: &[u8]) {
        let frame = wire::parse(bytes).unwrap();
        match frame.kind.as_str() {
            "peer" => {
                self.peers[p].joined = true;
                for d in 0..self.n_docs() {
                    self.peer_send(p, d);
                }
            }
            "sync" => {
                let doc_str = frame.document_id.clone().unwrap();
                let d = (0..self.n_docs()).find(|d| doc_id(*d) == doc_str).unwrap();
                let msg: Message = frame.sync_message().unwrap().unwrap();
                let peer = &mut self.peers[p];
                peer.docs[d]
                    .receive_sync_message(&mut peer.states[d], msg)
                    .unwrap();
                self.peer_send(p, d);
            }
            _ => {}
        }
    }

    fn deliver(&mut self) -> bool {
        let busy: Vec<(ConnId, bool)> = self
            .links
            .iter()
            .flat_map(|(c, (_, l))| {
                let mut v = Vec::new();
                if !l.to_hub.is_empty() {
                    v.push((*c, true));
                }
                if !l.to_peer.is_empty() {
                    v.push((*c, false));
                }
                v
            })
            .collect();
        if busy.is_empty() {
            return false;
        }
        let (conn, up) = busy[self.rng.below(busy.len())];
        let Some((p, link)) = self.links.get_mut(&conn) else {
            return true;
        };
        let p = *p;
        if up {
            let bytes = link.to_hub.pop_front().unwrap();
            self.event(Event::FrameReceived { conn, bytes });
        } else {
            let bytes = link.to_peer.pop_front().unwrap();
            self.peer_receives(p, &bytes);
        }
        true
    }

    fn finish_store(&mut self, fail: bool) -> bool {
        if self.storing.is_empty() {
            return false;
        }
        let (doc, token, changes) = self.storing.remove(self.rng.below(self.storing.len()));
        if fail {
            self.event(Event::StoreFailed { doc });
            return true;
        }
        self.on_disk.extend(hashes(&changes));
        self.disk.entry(doc.clone()).or_default().extend(changes);
        self.event(Event::Stored { doc, upto: token });
        true
    }

    fn finish_load(&mut self) -> bool {
        if self.loading.is_empty() {
            return false;
        }
        let doc = self.loading.remove(self.rng.below(self.loading.len()));
        let content = self
            .disk
            .get(&doc)
            .map(|bytes| Box::new(Automerge::load(bytes).unwrap()));
        self.event(Event::DocLoaded { doc, content });
        true
    }

    fn restart(&mut self) {
        let conns: Vec<ConnId> = self.links.keys().copied().collect();
        for c in conns {
            self.cut(c);
        }
        self.storing.clear();
        self.loading.clear();
        self.hub = new_hub();
    }

    fn edit(&mut self, p: usize, d: usize) {
        let n = self.rng.next() as i64;
        let key = format!("k{}", self.rng.below(4));
        let peer = &mut self.peers[p];
        let mut tx = peer.docs[d].transaction();
        tx.put(ROOT, key, n).unwrap();
        // Time 0: a seed's change hashes, and so its run, are the same on
        // every machine.
        tx.commit_with(CommitOptions::default().with_time(0));
        self.peer_send(p, d);
    }

    fn tick_if_due(&mut self) {
        if self.hub.next_deadline().is_some_and(|at| at <= self.now) {
            self.event(Event::Tick);
        }
    }

    fn step(&mut self) {
        let p = self.rng.below(self.peers.len());
        let d = self.rng.below(self.n_docs());
        match self.rng.below(100) {
            0..=44 => {
                self.deliver();
            }
            45..=54 => {
                let fail = self.rng.chance(3);
                self.finish_store(fail);
            }
            55..=59 => {
                self.finish_load();
            }
            60..=71 => {
                // Read-only peers edit rarely (an app would not let them).
                if self.gate.0[p][d] == Access::ReadWrite || self.rng.chance(10) {
                    self.edit(p, d);
                }
            }
            72..=75 => {
                if let Some(conn) = self.peers[p].conn {
                    self.cut(conn);
                    self.event(Event::PeerDisconnected { conn });
                }
            }
            76..=85 => {
                if self.peers[p].conn.is_none() {
                    self.connect(p);
                }
            }
            86 => self.restart(),
            87 => {
                // A phase change: read-only and read-write trade places.
                let flipped = match self.gate.0[p][d] {
                    Access::ReadWrite => Access::ReadOnly(ReadOnlyReason::TextOutsideDrafting),
                    Access::ReadOnly(_) => Access::ReadWrite,
                    Access::None => Access::None,
                };
                self.gate.0[p][d] = flipped;
                self.peers[p].ever_writer[d] |= flipped == Access::ReadWrite;
                self.event(Event::AccessChanged {
                    doc: Some(doc_id(d)),
                });
            }
            _ => self.now += 1 + self.rng.below(4) as u64,
        }
        self.tick_if_due();
    }

    /// Runs until nothing moves: every peer connected, every frame
    /// delivered, every store and load finished, every timer fired.
    fn settle(&mut self) {
        for _ in 0..100_000 {
            for p in 0..self.peers.len() {
                if self.peers[p].conn.is_none() {
                    self.connect(p);
                }
            }
            if self.deliver() || self.finish_store(false) || self.finish_load() {
                self.tick_if_due();
                continue;
            }
            match self.hub.next_deadline() {
                Some(at) => {
                    self.now = self.now.max(at);
                    self.event(Event::Tick);
                }
                None => return,
            }
        }
        panic!("no quiescence");
    }

    /// Every peer leaves and the idle time passes: the hub's running
    /// totals come back to exactly nothing (no drift in the gauges).
    fn everyone_leaves(&mut self) {
        let conns: Vec<ConnId> = self.links.keys().copied().collect();
        for conn in conns {
            self.cut(conn);
            self.event(Event::PeerDisconnected { conn });
        }
        while let Some(at) = self.hub.next_deadline() {
            self.now = self.now.max(at);
            self.event(Event::Tick);
        }
        let s = self.hub.stats();
        assert_eq!(
            (s.connections, s.documents, s.sync_states),
            (0, 0, 0),
            "{s:?}"
        );
        assert_eq!(
            (s.waiting_messages, s.stores_in_flight, s.timers),
            (0, 0, 0)
        );
    }

    fn check(&self) {
        for d in 0..self.n_docs() {
            let stored = self
                .disk
                .get(&doc_id(d))
                .map(|b| Automerge::load(b).unwrap())
                .unwrap_or_default();
            let heads = stored.get_heads();
            for change in stored.get_changes(&[]) {
                let writer = change.actor_id().to_bytes()[0] as usize;
                assert!(
                    self.peers[writer].ever_writer[d],
                    "a stored change of a peer that may not write"
                );
            }
            if let Some(hub_doc) = self.hub.document(&doc_id(d)) {
                assert_eq!(hub_doc.get_heads(), heads, "hub and disk differ");
            }
            // A reader has everything stored (and perhaps its own refused
            // edits); a writer has exactly what is stored.
            for (p, peer) in self.peers.iter().enumerate() {
                let mine = &peer.docs[d];
                match self.gate.0[p][d] {
                    Access::None => {}
                    Access::ReadOnly(_) => {
                        for h in &heads {
                            assert!(
                                mine.get_change_meta_by_hash(h).is_some(),
                                "{} lacks",
                                peer.id
                            );
                        }
                    }
                    Access::ReadWrite => {
                        assert_eq!(mine.get_heads(), heads, "{} doc {d} differs", peer.id);
                        // A connected writer has heard that the hub has it
                        // all (a phone's "everything is on the server").
                        if peer.joined && !heads.is_empty() {
                            assert_eq!(
                                peer.states[d].their_heads.as_ref(),
                                Some(&heads),
                                "{} was never told the hub has doc {d}",
                                peer.id
                            );
                        }
                    }
                }
            }
        }
        let s = self.hub.stats();
        assert_eq!(s.connections, self.links.len());
        assert_eq!((s.waiting_messages, s.stores_in_flight), (0, 0));
    }
}

fn run(seed: u64) {
    let mut sim = Sim::new(seed);
    for p in 0..sim.peers.len() {
        sim.connect(p);
    }
    for _ in 0..STEPS {
        sim.step();
    }
    sim.settle();
    sim.check();
    sim.everyone_leaves();
}

/// The seeds to run: all, or the one in `HUB_SIM_SEED` (to replay a failure).
fn seeds() -> std::ops::Range<u64> {
    match std::env::var("HUB_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => seed..seed + 1,
        None => 0..SEEDS,
    }
}

#[test]
fn peers_and_the_store_converge_and_nothing_unstored_leaves_the_hub() {
    for seed in seeds() {
        if let Err(e) = std::panic::catch_unwind(|| run(seed)) {
            eprintln!("hub simulation failed for seed {seed} (replay: HUB_SIM_SEED={seed})");
            std::panic::resume_unwind(e);
        }
    }
}
