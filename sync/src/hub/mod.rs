//! The server's sync hub: the automerge-repo protocol (the `join`/`peer`
//! handshake, `request`, `sync`, `doc-unavailable`, `ephemeral`) between many
//! connected peers and the server's copy of each document, as a state machine
//! without IO.
//!
//! The adapter feeds [`Event`]s into [`Hub::handle`] with the time and a
//! [`Gate`] (its access decisions), carries out the [`Effect`]s it returns
//! (send, close, load, store, unload), and calls [`Event::Tick`] at
//! [`Hub::next_deadline`]. The hub owns no sockets, clock, runtime or
//! randomness, so every behaviour is testable with plain calls.
//!
//! # Invariants
//!
//! - **Durability barrier.** The hub's copy of a document holds stored
//!   changes plus at most one batch of changes whose [`Effect::Store`] is in
//!   flight. While a store is in flight the hub sends nothing about that
//!   document to anyone (no forwarded change, no heads that acknowledge one)
//!   and holds the document's further inbound messages; when its
//!   [`Event::Stored`] arrives, the messages due go out first and the held
//!   messages are applied together (their changes in one Automerge call,
//!   which walks the edited text once however many there are), in one next
//!   store. So nothing a peer
//!   receives depends on a change that is not on disk, and a busy document
//!   still gets a send at every finished store (group commit, no starvation).
//!   A store holds exactly the changes Automerge applied (never bytes it
//!   refused or queued for missing dependencies), so stored data always loads;
//!   queued changes are never sent either (a whole-document send is saved
//!   without them).
//! - **Work proportional to the work.** An event touches one connection and
//!   the documents it names, and for a document only its subscribed peers.
//!   Each document keeps its subscribed connections, each connection its
//!   documents; nothing walks all connections × all documents
//!   ([`Event::AccessChanged`] without a document walks the subscriptions
//!   once, which is its job).
//! - **Coalescing.** A peer is marked for a message when its own message
//!   said something new (it carried changes, or its heads, needs or haves
//!   differ from its previous one) or when the document gained changes. An
//!   [`Event::AccessChanged`] that makes a reader a writer restarts that
//!   peer's exchange, so the changes refused before are sent again. Marked peers of a document get their
//!   messages together, [`HubConfig::window_ms`] after the first mark (and not
//!   before the store in flight finishes): ten inbound frames in a window
//!   cost each peer at most one outbound message. A message that repeats the
//!   previous one is not answered, which also ends the exchange with a peer
//!   whose changes were refused.
//! - **Forwarding is Automerge's answer.** A peer settled at the heads
//!   before one of the document's last stores gets the new changes from the
//!   copies built for the store (`forward.rs`), not built again per peer; the
//!   message and sync state are exactly those Automerge would produce, which
//!   a debug build checks on every forward. (One exception, found by
//!   fuzzing: a crafted message whose filter leaves out changes its own heads
//!   include gets them again from Automerge; forwarding believes the heads.)
//! - **Every writer hears its changes are stored.** After a store, each
//!   peer whose last message from the hub did not carry the hub's current
//!   heads gets them, even when the peer's own message with those heads
//!   crossed the hub's held answer (Automerge alone would take that message
//!   as proof the peer knows, and stay silent). A phone's "everything is on
//!   the server" depends on it.
//! - **No sign of what a peer may not read.** A `request` or `sync` for a
//!   document the [`Gate`] gives no access to is answered `doc-unavailable`
//!   without loading anything, as for a document the server does not have. A
//!   document without changes is offered to nobody; only a read-write peer's
//!   `sync` creates it.
//! - **Memory.** Per connection: its peer id and the set of its documents;
//!   per (connection, document) one Automerge sync state, only for documents
//!   the peer asked for. A document without peers for
//!   [`HubConfig::idle_unload_ms`] leaves memory once nothing is in flight
//!   ([`Effect::Unload`]).
//! - **Bad input closes only its own connection**, with a code and a sentence
//!   ([`CloseReason`]); the hub forgets the connection at once. The one
//!   exception: changes that make Automerge itself fail (panic) while it
//!   applies them leave the document's copy untrustworthy, so the hub drops
//!   the copy (everything confirmed is stored) and closes its peers with
//!   [`CloseReason::DocumentReloaded`]; the hub itself carries on. Unknown message
//!   types are ignored (Klad's `klad-signatures` frames are for the adapter,
//!   which judges changes before the hub applies them: [`Gate::admit`]).
//!
//! The hub never announces documents: peers ask for the ones they want.

mod close;
mod doc;
mod forward;
mod frames;
mod gate;

use std::collections::{BTreeMap, BTreeSet};

use automerge::Automerge;

pub use close::{CloseReason, INTERNAL_ERROR, INVALID_DATA, POLICY_VIOLATION, UNSUPPORTED_DATA};
pub use frames::PROTOCOL_VERSION;
pub use gate::{Admission, Gate, Inbound};

use crate::access::{Access, SERVER_PEER_ID};
use crate::wire::{self, FrameError};
use doc::{Ctx, Doc, SyncKind, Timers};

/// A connection, numbered by the adapter (unique while it is open).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Names one [`Effect::Store`]; tokens grow with every store of a hub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreToken(pub u64);

/// Names one [`Event::Write`] in its [`Effect::Written`] (chosen by the adapter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteId(pub u64);

/// How the hub behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// The hub's peer id in the handshake and in every frame it sends.
    pub peer_id: String,
    /// The storage id announced in the handshake's `peerMetadata`, if any.
    pub storage_id: Option<String>,
    /// How long a document collects reasons to send before it sends (ms).
    pub window_ms: u64,
    /// How long a document without peers stays in memory (ms).
    pub idle_unload_ms: u64,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            peer_id: SERVER_PEER_ID.to_owned(),
            storage_id: None,
            window_ms: 5,
            idle_unload_ms: 60_000,
        }
    }
}

/// What happens to the hub.
#[derive(Debug)]
pub enum Event {
    /// A websocket opened for the authenticated `peer_id` (from the token):
    /// the only peer id its `join` may name.
    PeerConnected {
        /// The connection.
        conn: ConnId,
        /// The peer id the connection must speak as.
        peer_id: String,
    },
    /// A binary frame arrived on a connection.
    FrameReceived {
        /// The connection.
        conn: ConnId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// A connection ended (or the adapter closed it).
    PeerDisconnected {
        /// The connection.
        conn: ConnId,
    },
    /// A [`Effect::Load`] finished: what the store holds of `doc`, loaded
    /// (`None`: nothing; every change in it counts as stored).
    DocLoaded {
        /// The document id.
        doc: String,
        /// Its stored content (boxed: a document is large next to the other events).
        content: Option<Box<Automerge>>,
    },
    /// Every [`Effect::Store`] of `doc` up to `upto` is on disk.
    Stored {
        /// The document id.
        doc: String,
        /// The last finished store.
        upto: StoreToken,
    },
    /// A store of `doc` failed (or its load did): the changes in memory are
    /// not safe, so the hub closes the document's connections, fails its
    /// writes and drops it (peers resend what they have when they reconnect).
    StoreFailed {
        /// The document id.
        doc: String,
    },
    /// The server itself changes a document (facilitation writes the
    /// process document, creates the others): `changes` are applied to the
    /// hub's copy (loading it first), stored through the same barrier as a
    /// peer's, and synced to its peers. [`Effect::Written`] says when they
    /// are on disk.
    Write {
        /// The document id.
        doc: String,
        /// Names the write in [`Effect::Written`].
        id: WriteId,
        /// The changes (made by the server's own actor).
        changes: Vec<automerge::Change>,
    },
    /// Access may have changed (a phase moved, a member left): ask the gate
    /// again for `doc`'s peers, or for every subscription when `None`.
    AccessChanged {
        /// The document, or `None` for all.
        doc: Option<String>,
    },
    /// The time reached [`Hub::next_deadline`].
    Tick,
}

/// What the adapter must do.
#[derive(Debug, PartialEq)]
pub enum Effect {
    /// Send a binary frame on a connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// Close a connection with `why.code()` and `why.sentence()`. The hub
    /// has already forgotten it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        why: CloseReason,
    },
    /// Load a document and answer with [`Event::DocLoaded`].
    Load {
        /// The document id.
        doc: String,
    },
    /// Append these changes to the document's stored data (durably), then
    /// answer with [`Event::Stored`] (or [`Event::StoreFailed`]).
    Store {
        /// The document id.
        doc: String,
        /// Names this store in [`Event::Stored`].
        token: StoreToken,
        /// Raw Automerge change chunks, one after another.
        changes: Vec<u8>,
    },
    /// An [`Event::Write`] finished: its changes are on disk (`stored`), or
    /// they could not be applied or stored (`!stored`; nothing of it was
    /// sent to anyone).
    Written {
        /// The document id.
        doc: String,
        /// The write.
        id: WriteId,
        /// Whether every change of it is stored.
        stored: bool,
    },
    /// The document left the hub's memory; everything of it is stored.
    Unload {
        /// The document id.
        doc: String,
    },
}

/// Sizes of the hub's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open connections.
    pub connections: usize,
    /// Documents in memory (loaded or loading).
    pub documents: usize,
    /// Sync states: (connection, document) subscriptions.
    pub sync_states: usize,
    /// Inbound messages waiting for a load or a store.
    pub waiting_messages: usize,
    /// Stores in flight.
    pub stores_in_flight: usize,
    /// Pending timers.
    pub timers: usize,
}

/// One connection.
#[derive(Debug)]
struct Conn {
    peer_id: String,
    joined: bool,
    docs: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Flush,
    Unload,
}

/// The sync hub. See the module documentation for its invariants.
#[derive(Debug)]
pub struct Hub {
    config: HubConfig,
    conns: BTreeMap<ConnId, Conn>,
    docs: BTreeMap<String, Doc>,
    timers: BTreeSet<(u64, TimerKind, String)>,
    next_token: u64,
    /// Sums of every document's counts (sync states, waiting, storing),
    /// kept up to date by [`Hub::with_doc`] and [`Hub::drop_doc`] so that
    /// [`Hub::stats`] costs nothing per event.
    totals: (usize, usize, usize),
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Self {
        Hub {
            config,
            conns: BTreeMap::new(),
            docs: BTreeMap::new(),
            timers: BTreeSet::new(),
            next_token: 0,
            totals: (0, 0, 0),
        }
    }

    /// Handles one event at time `now_ms`, asking `gate` for access
    /// decisions; returns what the adapter must do, in order.
    pub fn handle(&mut self, now_ms: u64, event: Event, gate: &mut dyn Gate) -> Vec<Effect> {
        let mut run = Run {
            now: now_ms,
            gate,
            effects: Vec::new(),
            closing: Vec::new(),
        };
        match event {
            Event::PeerConnected { conn, peer_id } => self.connected(&mut run, conn, peer_id),
            Event::FrameReceived { conn, bytes } => self.frame(&mut run, conn, &bytes),
            Event::PeerDisconnected { conn } => self.forget_conn(&mut run, conn),
            Event::DocLoaded { doc, content } => {
                self.with_doc(&mut run, &doc, |d, ctx| d.loaded(ctx, content));
            }
            Event::Stored { doc, upto } => {
                self.with_doc(&mut run, &doc, |d, ctx| d.stored(ctx, upto));
            }
            Event::StoreFailed { doc } => self.store_failed(&mut run, &doc),
            Event::Write { doc, id, changes } => self.write(&mut run, doc, id, changes),
            Event::AccessChanged { doc } => self.access_changed(&mut run, doc),
            Event::Tick => self.tick(&mut run),
        }
        while let Some(conn) = run.closing.pop() {
            self.forget_conn(&mut run, conn);
        }
        run.effects
    }

    /// The earliest time the hub wants an [`Event::Tick`], if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.first().map(|(at, _, _)| *at)
    }

    /// The hub's copy of a loaded document: stored changes, plus those of
    /// the store in flight (for the adapter's check of which changes of an
    /// inbound message are already known).
    pub fn document(&self, doc: &str) -> Option<&Automerge> {
        self.docs.get(doc).and_then(Doc::content)
    }

    /// Sizes of the hub's state.
    pub fn stats(&self) -> Stats {
        let (sync_states, waiting_messages, stores_in_flight) = self.totals;
        Stats {
            connections: self.conns.len(),
            documents: self.docs.len(),
            sync_states,
            waiting_messages,
            stores_in_flight,
            timers: self.timers.len(),
        }
    }

    fn connected(&mut self, run: &mut Run<'_>, conn: ConnId, peer_id: String) {
        self.forget_conn(run, conn);
        self.conns.insert(
            conn,
            Conn {
                peer_id,
                joined: false,
                docs: BTreeSet::new(),
            },
        );
    }

    fn close(&mut self, run: &mut Run<'_>, conn: ConnId, why: CloseReason) {
        run.effects.push(Effect::Close { conn, why });
        self.forget_conn(run, conn);
    }

    fn frame(&mut self, run: &mut Run<'_>, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let joined = c.joined;
        let frame = match wire::parse(bytes) {
            Ok(f) => f,
            Err(e) => return self.close(run, conn, CloseReason::BadFrame(e)),
        };
        match (joined, frame.kind.as_str()) {
            (false, "join") => self.join(run, conn, bytes),
            (false, _) => self.close(run, conn, CloseReason::NotJoined),
            (true, "join") => self.close(run, conn, CloseReason::JoinedTwice),
            (true, "request" | "sync") => {
                let kind = if frame.kind == "request" {
                    SyncKind::Request
                } else {
                    SyncKind::Sync
                };
                let Some(doc) = frame.document_id.clone() else {
                    return self.close(run, conn, CloseReason::BadFrame(FrameError::BadDocumentId));
                };
                match frame.sync_message() {
                    Ok(Some(msg)) => self.sync(run, conn, doc, kind, msg),
                    Ok(None) | Err(_) => {
                        self.close(run, conn, CloseReason::BadFrame(FrameError::BadSyncData))
                    }
                }
            }
            (true, "ephemeral") => {
                if let Some(doc) = frame.document_id {
                    self.with_doc(run, &doc, |d, ctx| d.forward_ephemeral(ctx, conn, bytes));
                }
            }
            // leave, doc-unavailable, error, remote-heads-*, and types of
            // other programs (klad-signatures is the adapter's): nothing to do.
            _ => {}
        }
    }

    fn join(&mut self, run: &mut Run<'_>, conn: ConnId, bytes: &[u8]) {
        let join = match frames::parse_join(bytes) {
            Ok(Some(j)) => j,
            Ok(None) => return self.close(run, conn, CloseReason::JoinWithoutSender),
            Err(e) => return self.close(run, conn, CloseReason::BadFrame(e)),
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if join.sender_id != c.peer_id {
            return self.close(run, conn, CloseReason::PeerIdMismatch);
        }
        if !join.versions.iter().any(|v| v == PROTOCOL_VERSION) {
            return self.close(run, conn, CloseReason::UnsupportedVersion);
        }
        c.joined = true;
        let bytes = frames::encode_peer(
            &self.config.peer_id,
            &c.peer_id,
            self.config.storage_id.as_deref(),
        );
        run.effects.push(Effect::Send { conn, bytes });
    }

    fn sync(
        &mut self,
        run: &mut Run<'_>,
        conn: ConnId,
        doc: String,
        kind: SyncKind,
        msg: automerge::sync::Message,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let access = run.gate.access(&c.peer_id, &doc);
        if access == Access::None {
            let bytes = frames::encode_unavailable(&self.config.peer_id, &c.peer_id, &doc);
            run.effects.push(Effect::Send { conn, bytes });
            if c.docs.remove(&doc) {
                self.with_doc(run, &doc, |d, ctx| d.remove_peer(ctx, conn));
            }
            return;
        }
        c.docs.insert(doc.clone());
        let peer = c.peer_id.clone();
        if !self.docs.contains_key(&doc) {
            self.docs.insert(doc.clone(), Doc::loading(doc.clone()));
            run.effects.push(Effect::Load { doc: doc.clone() });
        }
        self.with_doc(run, &doc, |d, ctx| {
            d.receive(ctx, conn, &peer, access, kind, msg)
        });
    }

    /// Forgets a connection and its subscriptions (nothing is sent to it).
    fn forget_conn(&mut self, run: &mut Run<'_>, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        for doc in &c.docs {
            self.with_doc(run, doc, |d, ctx| d.remove_peer(ctx, conn));
        }
    }

    fn write(
        &mut self,
        run: &mut Run<'_>,
        doc: String,
        id: WriteId,
        changes: Vec<automerge::Change>,
    ) {
        if !self.docs.contains_key(&doc) {
            self.docs.insert(doc.clone(), Doc::loading(doc.clone()));
            run.effects.push(Effect::Load { doc: doc.clone() });
        }
        self.with_doc(run, &doc, |d, ctx| d.write(ctx, id, changes));
    }

    fn store_failed(&mut self, run: &mut Run<'_>, doc: &str) {
        let Some(conns) = self.with_doc(run, doc, |d, ctx| {
            d.abandon_writes(ctx.effects);
            d.peer_conns()
        }) else {
            return;
        };
        for conn in conns {
            self.close(run, conn, CloseReason::StoreFailed);
        }
        self.drop_doc(run, doc);
    }

    fn access_changed(&mut self, run: &mut Run<'_>, doc: Option<String>) {
        let docs: Vec<String> = match doc {
            Some(d) => vec![d],
            None => self.docs.keys().cloned().collect(),
        };
        for doc in docs {
            let revoked = self.with_doc(run, &doc, |d, ctx| d.reevaluate(ctx));
            for conn in revoked.into_iter().flatten() {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.docs.remove(&doc);
                }
            }
        }
    }

    fn tick(&mut self, run: &mut Run<'_>) {
        while let Some((at, kind, doc)) = self.timers.first().cloned() {
            if at > run.now {
                break;
            }
            self.timers.remove(&(at, kind.clone(), doc.clone()));
            match kind {
                TimerKind::Flush => {
                    self.with_doc(run, &doc, |d, ctx| d.flush_due(ctx));
                }
                TimerKind::Unload => self.unload_if_idle(run, &doc),
            }
        }
    }

    fn unload_if_idle(&mut self, run: &mut Run<'_>, doc: &str) {
        if self.docs.get(doc).is_some_and(|d| d.idle(run.now)) {
            self.drop_doc(run, doc);
        } else {
            // Puts back whatever timer the document still needs.
            self.with_doc(run, doc, |_, _| ());
        }
    }

    /// Removes a document from memory and tells the adapter.
    fn drop_doc(&mut self, run: &mut Run<'_>, doc: &str) {
        if let Some(d) = self.docs.remove(doc) {
            set_timers(&mut self.timers, doc, d.timers(), false);
            count(&mut self.totals, d.counts(), false);
            run.effects.push(Effect::Unload {
                doc: doc.to_owned(),
            });
        }
    }

    /// Runs `f` on a document (if it is in memory) and keeps the hub's
    /// timers equal to the ones the document needs.
    fn with_doc<R>(
        &mut self,
        run: &mut Run<'_>,
        doc: &str,
        f: impl FnOnce(&mut Doc, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let d = self.docs.get_mut(doc)?;
        set_timers(&mut self.timers, doc, d.timers(), false);
        count(&mut self.totals, d.counts(), false);
        let mut ctx = Ctx {
            now: run.now,
            hub_peer: &self.config.peer_id,
            window_ms: self.config.window_ms,
            idle_unload_ms: self.config.idle_unload_ms,
            gate: &mut *run.gate,
            effects: &mut run.effects,
            next_token: &mut self.next_token,
            closing: &mut run.closing,
        };
        let out = f(d, &mut ctx);
        let broken = d.broken();
        set_timers(&mut self.timers, doc, d.timers(), true);
        count(&mut self.totals, d.counts(), true);
        if broken {
            self.drop_broken(run, doc);
        }
        Some(out)
    }

    /// Drops a document whose copy Automerge failed on (see
    /// [`Doc::broken`]): its writes fail, its peers are closed (they sync
    /// again from the stored copy when they reconnect).
    fn drop_broken(&mut self, run: &mut Run<'_>, doc: &str) {
        let Some(d) = self.docs.get_mut(doc) else {
            return;
        };
        d.abandon_writes(&mut run.effects);
        let conns = d.peer_conns();
        // Dropped first, so closing its peers does not reach it again.
        self.drop_doc(run, doc);
        for conn in conns {
            self.close(run, conn, CloseReason::DocumentReloaded);
        }
    }
}

/// Adds (or takes away) one document's counts to the hub's totals.
fn count(totals: &mut (usize, usize, usize), c: (usize, usize, usize), add: bool) {
    if add {
        totals.0 += c.0;
        totals.1 += c.1;
        totals.2 += c.2;
    } else {
        totals.0 -= c.0;
        totals.1 -= c.1;
        totals.2 -= c.2;
    }
}

/// Inserts (or removes) a document's timers.
fn set_timers(timers: &mut BTreeSet<(u64, TimerKind, String)>, doc: &str, t: Timers, insert: bool) {
    for (at, kind) in [(t.0, TimerKind::Flush), (t.1, TimerKind::Unload)] {
        if let Some(at) = at {
            let key = (at, kind, doc.to_owned());
            if insert {
                timers.insert(key);
            } else {
                timers.remove(&key);
            }
        }
    }
}

/// The state of one [`Hub::handle`] call.
struct Run<'a> {
    now: u64,
    gate: &'a mut dyn Gate,
    effects: Vec<Effect>,
    closing: Vec<ConnId>,
}
