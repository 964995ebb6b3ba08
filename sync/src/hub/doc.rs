//! One document in the hub: its Automerge copy, the peers subscribed to it
//! with their sync states, the messages waiting for a load or a store, the
//! store in flight, and which peers may need a message.
//!
//! Every operation here touches this document and its subscribed peers only.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::sync::{self, ChunkList, Message as SyncMessage, SyncDoc};
use automerge::{Automerge, AutomergeError, ChangeHash, ReadDoc, SaveOptions};

use super::close::CloseReason;
use super::forward::{self, Recent};
use super::frames;
use super::gate::{Admission, Gate, Inbound};
use super::{ConnId, Effect, StoreToken, WriteId};
use crate::access::Access;

/// Which of the two sync frames a message came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SyncKind {
    /// `request`: the peer does not have the document and asks for it.
    Request,
    /// `sync`: the peer has (some of) the document.
    Sync,
}

/// What the hub is doing while it handles one event, shared by the
/// documents the event touches.
pub(super) struct Ctx<'a> {
    /// The time of the event, in milliseconds.
    pub now: u64,
    /// The hub's own peer id.
    pub hub_peer: &'a str,
    /// The coalescing window.
    pub window_ms: u64,
    /// How long a document without peers stays loaded.
    pub idle_unload_ms: u64,
    /// The adapter's decisions.
    pub gate: &'a mut dyn Gate,
    /// What the event produced.
    pub effects: &'a mut Vec<Effect>,
    /// The next store token.
    pub next_token: &'a mut u64,
    /// Connections closed while handling the event: the hub forgets them.
    pub closing: &'a mut Vec<ConnId>,
}

impl Ctx<'_> {
    fn close(&mut self, conn: ConnId, why: CloseReason) {
        self.effects.push(Effect::Close { conn, why });
        self.closing.push(conn);
    }
}

/// What a peer's last message said, to tell news from a repetition.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    heads: Vec<ChangeHash>,
    need: Vec<ChangeHash>,
    have: Vec<Vec<ChangeHash>>,
}

impl Seen {
    fn of(msg: &SyncMessage) -> Self {
        Seen {
            heads: msg.heads.clone(),
            need: msg.need.clone(),
            have: msg.have.iter().map(|h| h.last_sync.clone()).collect(),
        }
    }
}

/// One subscribed peer of a document.
#[derive(Debug)]
struct PeerDoc {
    /// Its peer id (the address of the frames the hub sends it).
    peer: String,
    /// Its access, as last decided.
    access: Access,
    /// The Automerge sync state between the hub's copy and the peer's.
    sync: sync::State,
    /// What its last message said.
    seen: Option<Seen>,
}

/// The hub's first answers to peers that have nothing of the document, for
/// the document's current heads: each is the sync state before and after
/// answering, and the message. Automerge's answer is a function of the
/// sync state and the document alone, so a peer in the same state gets the
/// same answer without generating it again (in a connect storm every member
/// asks for every document: one whole-document save per document instead of
/// one per member and document).
#[derive(Debug, Default)]
struct FirstAnswers {
    heads: Vec<ChangeHash>,
    answers: Vec<(sync::State, sync::State, Vec<u8>)>,
}

/// At most this many first answers are kept per document (peers of one kind
/// ask in one way: one or two are used).
const FIRST_ANSWERS: usize = 4;

/// A first answer larger than this is not kept (bytes).
const FIRST_ANSWER_BYTES: usize = 4 << 20;

/// A message waiting for the document to load or for its store to finish.
#[derive(Debug)]
struct Waiting {
    conn: ConnId,
    kind: SyncKind,
    message: SyncMessage,
}

/// One document of the hub.
#[derive(Debug)]
pub(super) struct Doc {
    id: String,
    /// `None` while loading.
    content: Option<Automerge>,
    peers: BTreeMap<ConnId, PeerDoc>,
    /// Peers that may need a message at the next flush.
    dirty: BTreeSet<ConnId>,
    waiting: VecDeque<Waiting>,
    /// The server's own writes waiting for the load or the store in flight.
    writes_waiting: Vec<(WriteId, Vec<automerge::Change>)>,
    /// The server's own writes whose changes are in the store in flight.
    writes_storing: Vec<WriteId>,
    /// The store in flight: every change of `content` not in it is stored.
    storing: Option<StoreToken>,
    /// When the dirty peers get their messages (once nothing is in flight).
    flush_at: Option<u64>,
    /// When the document leaves memory, if it still has no peers.
    unload_at: Option<u64>,
    /// Answers to peers that have nothing yet, for the current heads.
    first_answers: FirstAnswers,
    /// The changes of the last stores, to forward to settled peers.
    recent: Recent,
    /// Automerge failed (panicked) while applying a message: the copy in
    /// memory cannot be trusted, so the hub drops it (see [`Doc::broken`]).
    broken: bool,
}

/// The timers a document needs: (flush, unload).
pub(super) type Timers = (Option<u64>, Option<u64>);

impl Doc {
    /// A document being loaded.
    pub fn loading(id: String) -> Self {
        Doc {
            id,
            content: None,
            peers: BTreeMap::new(),
            dirty: BTreeSet::new(),
            waiting: VecDeque::new(),
            writes_waiting: Vec::new(),
            writes_storing: Vec::new(),
            storing: None,
            flush_at: None,
            unload_at: None,
            first_answers: FirstAnswers::default(),
            recent: Recent::default(),
            broken: false,
        }
    }

    /// True when Automerge failed while applying a message to this
    /// document: the hub must drop it. Nothing of what failed was stored
    /// (a store follows the apply), so the stored document is whole.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// The document's content, once loaded.
    pub fn content(&self) -> Option<&Automerge> {
        self.content.as_ref()
    }

    /// The timers this document needs now. A flush or unload that must wait
    /// for a load or a store needs none: those events check again.
    pub fn timers(&self) -> Timers {
        if self.content.is_none() || self.storing.is_some() {
            return (None, None);
        }
        (self.flush_at, self.unload_at)
    }

    /// Counts for [`super::Stats`]: (sync states, waiting messages, stores in flight).
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.peers.len(),
            self.waiting.len() + self.writes_waiting.len(),
            usize::from(self.storing.is_some()),
        )
    }

    /// A `request` or `sync` from `conn` (whose access is read or more).
    pub fn receive(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        peer: &str,
        access: Access,
        kind: SyncKind,
        message: SyncMessage,
    ) {
        self.unload_at = None;
        self.peers
            .entry(conn)
            .and_modify(|p| p.access = access)
            .or_insert_with(|| PeerDoc {
                peer: peer.to_owned(),
                access,
                sync: sync::State::new(),
                seen: None,
            });
        let waiting = Waiting {
            conn,
            kind,
            message,
        };
        if self.content.is_none() || self.storing.is_some() {
            self.waiting.push_back(waiting);
        } else {
            self.apply(ctx, vec![waiting]);
        }
    }

    /// The load finished: `content` is what the store holds (`None`: nothing).
    pub fn loaded(&mut self, ctx: &mut Ctx<'_>, content: Option<Box<Automerge>>) {
        if self.content.is_some() {
            return;
        }
        let content = content.map_or_else(Automerge::new, |c| *c);
        // Peers that reach the loaded heads are settled, with nothing new.
        self.recent = Recent::at(content.get_heads());
        self.content = Some(content);
        let waiting: Vec<_> = self.waiting.drain(..).collect();
        self.apply(ctx, waiting);
        self.idle_check(ctx);
    }

    /// A store finished. The flush that waited for it goes out first, then
    /// the messages that waited are applied (one store for all of them).
    pub fn stored(&mut self, ctx: &mut Ctx<'_>, upto: StoreToken) {
        if self.storing.is_none_or(|t| t > upto) {
            return;
        }
        self.storing = None;
        for id in std::mem::take(&mut self.writes_storing) {
            ctx.effects.push(Effect::Written {
                doc: self.id.clone(),
                id,
                stored: true,
            });
        }
        if self.flush_at.is_some_and(|at| at <= ctx.now) {
            self.flush(ctx);
        }
        let waiting: Vec<_> = self.waiting.drain(..).collect();
        self.apply(ctx, waiting);
        self.idle_check(ctx);
    }

    /// The server's own changes: applied now, or after the load or the
    /// store in flight.
    pub fn write(&mut self, ctx: &mut Ctx<'_>, id: WriteId, changes: Vec<automerge::Change>) {
        self.writes_waiting.push((id, changes));
        if self.content.is_some() && self.storing.is_none() {
            self.apply(ctx, Vec::new());
        }
    }

    /// The document is being dropped after a failed store or load: every
    /// write not known to be stored has failed.
    pub fn abandon_writes(&mut self, effects: &mut Vec<Effect>) {
        let ids = self
            .writes_storing
            .drain(..)
            .chain(self.writes_waiting.drain(..).map(|(id, _)| id));
        for id in ids {
            effects.push(Effect::Written {
                doc: self.id.clone(),
                id,
                stored: false,
            });
        }
    }

    /// Applies messages in order (see [`apply_run`]), then the server's
    /// waiting writes; then stores, in one store, every change they added,
    /// and marks every peer dirty if there were any.
    fn apply(&mut self, ctx: &mut Ctx<'_>, batch: Vec<Waiting>) {
        let Some(doc) = self.content.as_mut() else {
            return;
        };
        let before = doc.get_heads();
        let mut batch = VecDeque::from(batch);
        while !batch.is_empty() {
            let run = next_run(&mut batch);
            if let Applied::Broken =
                apply_run(&self.id, doc, &mut self.peers, &mut self.dirty, ctx, run)
            {
                // Nothing more is applied, stored or sent from this copy.
                self.broken = true;
                self.waiting.clear();
                self.dirty.clear();
                self.flush_at = None;
                return;
            }
        }
        // The server's own changes; those that cannot be applied (or wait
        // for dependencies Automerge does not have) fail their write.
        let mut written = Vec::new();
        for (id, changes) in std::mem::take(&mut self.writes_waiting) {
            let hashes: Vec<ChangeHash> = changes.iter().map(|c| c.hash()).collect();
            let applied = doc.apply_changes(changes).is_ok()
                && hashes
                    .iter()
                    .all(|h| doc.get_change_meta_by_hash(h).is_some());
            written.push((id, applied));
        }
        let after = doc.get_heads();
        let storing = after != before;
        let new = if storing {
            doc.get_changes(&before)
        } else {
            Vec::new()
        };
        // Automerge 0.12 applies some changes in a non-canonical encoding
        // under their own hash but hands them back re-encoded, with another
        // hash (found by fuzzing). Stored, such a change would come back as
        // a different change after a restart, under heads nobody was told
        // of; so the copy is dropped instead and nothing of it is stored.
        if !new
            .iter()
            .all(|c| doc.get_change_meta_by_hash(&c.hash()).is_some())
        {
            for (id, _) in written {
                ctx.effects.push(Effect::Written {
                    doc: self.id.clone(),
                    id,
                    stored: false,
                });
            }
            self.broken = true;
            self.dirty.clear();
            self.flush_at = None;
            return;
        }
        for (id, applied) in written {
            if applied && storing {
                self.writes_storing.push(id);
            } else {
                // Applied without a store: the changes were all there, and
                // nothing is in flight when `apply` runs, so they are stored.
                ctx.effects.push(Effect::Written {
                    doc: self.id.clone(),
                    id,
                    stored: applied,
                });
            }
        }
        if storing {
            let changes: Vec<u8> = new
                .iter()
                .flat_map(|c| c.raw_bytes().iter().copied())
                .collect();
            let token = StoreToken(*ctx.next_token);
            *ctx.next_token += 1;
            ctx.effects.push(Effect::Store {
                doc: self.id.clone(),
                token,
                changes,
            });
            self.storing = Some(token);
            self.dirty.extend(self.peers.keys().copied());
            self.recent.record(before, after, new);
        }
        if !self.dirty.is_empty() && self.flush_at.is_none() {
            self.flush_at = Some(ctx.now + ctx.window_ms);
        }
    }

    /// The flush timer fired.
    pub fn flush_due(&mut self, ctx: &mut Ctx<'_>) {
        if self.flush_at.is_some_and(|at| at <= ctx.now) {
            self.flush(ctx);
        }
    }

    /// Sends each dirty peer what its sync state calls for, unless a store
    /// is in flight (then [`Doc::stored`] flushes): the durability barrier.
    fn flush(&mut self, ctx: &mut Ctx<'_>) {
        let Some(doc) = self.content.as_ref() else {
            return;
        };
        if self.storing.is_some() {
            return;
        }
        self.flush_at = None;
        let heads = doc.get_heads();
        if self.first_answers.heads != heads {
            self.first_answers = FirstAnswers {
                heads: heads.clone(),
                answers: Vec::new(),
            };
        }
        for conn in std::mem::take(&mut self.dirty) {
            let Some(p) = self.peers.get_mut(&conn) else {
                continue;
            };
            // A peer that has nothing and has not been answered yet.
            let first =
                !p.sync.have_responded && p.sync.their_heads.as_ref().is_some_and(Vec::is_empty);
            if first
                && let Some((_, after, msg)) = self
                    .first_answers
                    .answers
                    .iter()
                    .find(|(before, _, _)| *before == p.sync)
            {
                p.sync = after.clone();
                let bytes = frames::encode_sync(ctx.hub_peer, &p.peer, &self.id, msg.clone());
                ctx.effects.push(Effect::Send { conn, bytes });
                continue;
            }
            let before = first.then(|| p.sync.clone());
            if let Some(msg) = generate(doc, &heads, &self.recent, &mut p.sync) {
                let msg = msg.encode();
                if let Some(before) = before
                    && self.first_answers.answers.len() < FIRST_ANSWERS
                    && msg.len() <= FIRST_ANSWER_BYTES
                {
                    let answer = (before, p.sync.clone(), msg.clone());
                    self.first_answers.answers.push(answer);
                }
                let bytes = frames::encode_sync(ctx.hub_peer, &p.peer, &self.id, msg);
                ctx.effects.push(Effect::Send { conn, bytes });
            }
        }
    }

    /// Forgets `conn` (disconnected, closed, or no longer allowed to read).
    pub fn remove_peer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        if self.peers.remove(&conn).is_none() {
            return;
        }
        self.dirty.remove(&conn);
        self.waiting.retain(|w| w.conn != conn);
        if self.peers.is_empty() {
            self.unload_at = Some(ctx.now + ctx.idle_unload_ms);
        }
    }

    /// Asks the gate again for every subscribed peer; those that may no
    /// longer read are told the document is unavailable and forgotten.
    /// Returns them.
    pub fn reevaluate(&mut self, ctx: &mut Ctx<'_>) -> Vec<ConnId> {
        let mut revoked = Vec::new();
        for (conn, p) in self.peers.iter_mut() {
            match ctx.gate.access(&p.peer, &self.id) {
                Access::None => revoked.push(*conn),
                Access::ReadWrite if p.access != Access::ReadWrite => {
                    // The peer's changes were refused until now, and its sync
                    // state remembers them as sent: restart the exchange (the
                    // next message asks for a reset) so it sends them again.
                    p.sync.set_read_only(true);
                    p.sync.set_read_only(false);
                    p.access = Access::ReadWrite;
                    self.dirty.insert(*conn);
                }
                access => p.access = access,
            }
        }
        if !self.dirty.is_empty() && self.flush_at.is_none() {
            self.flush_at = Some(ctx.now + ctx.window_ms);
        }
        for conn in &revoked {
            if let Some(p) = self.peers.get(conn) {
                let bytes = frames::encode_unavailable(ctx.hub_peer, &p.peer, &self.id);
                ctx.effects.push(Effect::Send { conn: *conn, bytes });
            }
            self.remove_peer(ctx, *conn);
        }
        revoked
    }

    /// Forwards an `ephemeral` frame from `from` to every other peer that
    /// may read the document.
    pub fn forward_ephemeral(&self, ctx: &mut Ctx<'_>, from: ConnId, bytes: &[u8]) {
        if !self.peers.contains_key(&from) {
            return;
        }
        for (conn, p) in &self.peers {
            if *conn == from || p.access == Access::None {
                continue;
            }
            if let Ok(bytes) = frames::readdress(bytes, &p.peer) {
                ctx.effects.push(Effect::Send { conn: *conn, bytes });
            }
        }
    }

    /// True when the document may leave memory now.
    pub fn idle(&self, now: u64) -> bool {
        self.peers.is_empty()
            && self.content.is_some()
            && self.storing.is_none()
            && self.unload_at.is_some_and(|at| at <= now)
    }

    fn idle_check(&mut self, ctx: &Ctx<'_>) {
        if self.peers.is_empty() && self.unload_at.is_none() {
            self.unload_at = Some(ctx.now + ctx.idle_unload_ms);
        }
    }

    /// The connections subscribed to this document.
    pub fn peer_conns(&self) -> Vec<ConnId> {
        self.peers.keys().copied().collect()
    }
}

/// The message `state` calls for: forwarded from `recent` when the peer is
/// settled (see [`forward`]), else Automerge's own.
fn generate(
    doc: &Automerge,
    heads: &[ChangeHash],
    recent: &Recent,
    state: &mut sync::State,
) -> Option<SyncMessage> {
    #[cfg(debug_assertions)]
    let copy = state.clone();
    let Some(msg) = forward::forward(doc, heads, recent, state) else {
        return doc
            .generate_sync_message(state)
            .map(|msg| without_orphans(doc, msg));
    };
    // Every test and simulation in a debug build checks the forwarded
    // message and sync state against Automerge's own.
    #[cfg(debug_assertions)]
    forward::check(doc, copy, &msg, state);
    msg
}

/// The chunk type of a whole document in Automerge's storage format (the
/// byte after the four magic bytes and the four checksum bytes).
const DOCUMENT_CHUNK: u8 = 0;

/// `msg` without the orphans Automerge appends to a whole document it sends
/// (changes whose dependencies have not arrived: never applied, so never
/// stored). Single changes are taken from the applied ones only.
fn without_orphans(doc: &Automerge, mut msg: SyncMessage) -> SyncMessage {
    let whole = msg
        .changes
        .iter()
        .any(|c| c.get(8) == Some(&DOCUMENT_CHUNK));
    if whole && !doc.get_missing_deps(&[]).is_empty() {
        let saved = doc.save_with_options(SaveOptions {
            deflate: true,
            retain_orphans: false,
        });
        msg.changes = ChunkList::from(saved);
    }
    msg
}

/// What became of one message in [`apply_one`].
enum Applied {
    /// Applied, refused or closed: the document is sound.
    Done,
    /// Automerge panicked while applying it: the document cannot be trusted.
    Broken,
}

/// The longest prefix of `batch` with at most one message per connection
/// (a connection's messages stay in order, each in a later run).
fn next_run(batch: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    let mut conns = BTreeSet::new();
    let mut run = Vec::new();
    while let Some(w) = batch.front() {
        if !conns.insert(w.conn) {
            break;
        }
        run.extend(batch.pop_front());
    }
    run
}

/// Applies a run of messages from different connections (see
/// [`next_run`]).
///
/// Automerge 0.12 applies a set of changes by walking the whole history of
/// every object they touch, however few they are: one keystroke into a
/// long article costs as much as a hundred. So when several messages of
/// the run carry changes (messages held while a store was in flight, the
/// busy case), their admitted changes are applied together in one call,
/// and each message is then received as usual (its changes are known by
/// then, which Automerge checks by hash). Their order does not matter:
/// messages of different connections are concurrent, and Automerge orders
/// changes by their dependencies. Should the joint call fail, each message
/// is then applied on its own, as one at a time would be: the bad one fails
/// alone (what the joint call did apply is known by then). A document that is still
/// empty takes its messages one by one (the first may create it, which
/// changes how the others are answered).
///
/// The gate judges each message against the copy before the joint call, so
/// a change that two messages of the run both carry is judged for each: a
/// phone relaying another's change passes the change's signature with it
/// (see [`crate::authorship`]), so the second is accepted as it would be
/// as a known change.
fn apply_run(
    id: &str,
    doc: &mut Automerge,
    peers: &mut BTreeMap<ConnId, PeerDoc>,
    dirty: &mut BTreeSet<ConnId>,
    ctx: &mut Ctx<'_>,
    run: Vec<Waiting>,
) -> Applied {
    if run.len() < 2 || doc.get_heads().is_empty() {
        for w in run {
            if let Some(a) = admit(id, doc, peers, dirty, ctx, w)
                && let Applied::Broken = receive(id, doc, peers, dirty, ctx, a)
            {
                return Applied::Broken;
            }
        }
        return Applied::Done;
    }
    let admitted: Vec<Admitted> = run
        .into_iter()
        .filter_map(|w| admit(id, doc, peers, dirty, ctx, w))
        .collect();
    let carrying = admitted
        .iter()
        .filter(|a| !a.message.changes.is_empty())
        .count();
    if carrying > 1 {
        let joined: Vec<u8> = admitted
            .iter()
            .flat_map(|a| a.message.changes.iter())
            .flatten()
            .copied()
            .collect();
        // A panic leaves the copy untrustworthy, as in `receive`; which
        // message caused it is unknown, so every peer hears the document
        // is reloaded.
        if catch_unwind(AssertUnwindSafe(|| doc.load_incremental(&joined))).is_err() {
            return Applied::Broken;
        }
    }
    for a in admitted {
        if let Applied::Broken = receive(id, doc, peers, dirty, ctx, a) {
            return Applied::Broken;
        }
    }
    Applied::Done
}

/// A message the gate let through, about to be received.
struct Admitted {
    conn: ConnId,
    message: SyncMessage,
    /// It says something the previous message of its peer did not.
    news: bool,
    /// The document is empty and this peer may not create it: answered
    /// unavailable.
    offer_nothing: bool,
}

/// Asks the gate about one message of `w.conn` (see [`Doc::apply`]):
/// `None` when the gate closed the connection (or it is gone).
fn admit(
    id: &str,
    doc: &Automerge,
    peers: &mut BTreeMap<ConnId, PeerDoc>,
    dirty: &mut BTreeSet<ConnId>,
    ctx: &mut Ctx<'_>,
    w: Waiting,
) -> Option<Admitted> {
    let p = peers.get_mut(&w.conn)?;
    let Waiting {
        conn,
        kind,
        mut message,
    } = w;
    let seen = Seen::of(&message);
    let news = p.seen.as_ref() != Some(&seen);
    p.seen = Some(seen);
    // A document the hub has nothing of is offered to nobody: a request for
    // it, or a sync from a peer that may not create it, is answered
    // unavailable, exactly as for a document the peer may not read. The peer
    // stays subscribed and hears of the document once it has content.
    let nothing = doc.get_heads().is_empty();
    let offer_nothing = nothing && (kind == SyncKind::Request || p.access != Access::ReadWrite);
    if offer_nothing {
        message.changes = ChunkList::empty();
    } else if !message.changes.is_empty() {
        let inbound = Inbound {
            conn,
            peer: &p.peer,
            doc_id: id,
            access: p.access,
            doc,
            message,
        };
        message = match ctx.gate.admit(inbound) {
            Admission::Apply(m) => m,
            Admission::Close {
                code,
                reason,
                label,
            } => {
                peers.remove(&conn);
                dirty.remove(&conn);
                ctx.close(
                    conn,
                    CloseReason::Refused {
                        code,
                        reason,
                        label,
                    },
                );
                return None;
            }
        };
    }
    // Changes can fill in dependencies and so change what the hub needs.
    let news = news || !message.changes.is_empty();
    Some(Admitted {
        conn,
        message,
        news,
        offer_nothing,
    })
}

/// Receives one admitted message into `doc` and the sync state of its peer.
fn receive(
    id: &str,
    doc: &mut Automerge,
    peers: &mut BTreeMap<ConnId, PeerDoc>,
    dirty: &mut BTreeSet<ConnId>,
    ctx: &mut Ctx<'_>,
    a: Admitted,
) -> Applied {
    let Admitted {
        conn,
        message,
        news,
        offer_nothing,
    } = a;
    let Some(p) = peers.get_mut(&conn) else {
        return Applied::Done;
    };
    // Automerge takes a message without changes whose heads equal ours as
    // proof that the peer knows our heads, and then stays silent. Here the
    // peer may have sent it before our answer to its changes (held by the
    // barrier) went out: it has our heads but has not heard that we have
    // its changes, and a phone's "everything is on the server" waits for
    // exactly that. So the heads we last sent stay the ones we did send
    // (a peer that lost everything, with empty heads, still resets them).
    let told = p.sync.last_sent_heads.clone();
    let lost_everything = message.heads.is_empty();
    // Automerge 0.12 panics on some changes that decode but cannot be
    // applied (found by fuzzing: a change whose operations name an actor it
    // does not list). A panic must not take the hub down; the copy it
    // leaves may hold half a change, so the caller drops it.
    let received = catch_unwind(AssertUnwindSafe(|| {
        doc.receive_sync_message(&mut p.sync, message)
    }));
    let Ok(received) = received else {
        peers.remove(&conn);
        dirty.remove(&conn);
        ctx.close(conn, CloseReason::ChangesNotApplied);
        return Applied::Broken;
    };
    if let Err(e) = received {
        peers.remove(&conn);
        dirty.remove(&conn);
        let why = match e {
            AutomergeError::DuplicateSeqNumber(seq, actor) => CloseReason::DuplicateSeq {
                actor: actor.to_hex_string(),
                seq,
            },
            _ => CloseReason::ChangesNotApplied,
        };
        ctx.close(conn, why);
        return Applied::Done;
    }
    if !lost_everything {
        p.sync.last_sent_heads = told;
    }
    if offer_nothing {
        let bytes = frames::encode_unavailable(ctx.hub_peer, &p.peer, id);
        ctx.effects.push(Effect::Send { conn, bytes });
    } else if news {
        dirty.insert(conn);
    }
    Applied::Done
}
