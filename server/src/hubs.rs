//! One sync hub ([`klad_sync::hub::Hub`]) per process, each owned by a tokio
//! task of its own, started when the process is first used and stopped when
//! it has been idle.
//!
//! A connection belongs to exactly one process (its token names it), and so
//! does every document, so sharding by process costs nothing in the protocol
//! and gives: processes run in parallel on all cores, a busy or broken
//! process cannot delay another, and "is this process loaded" (metrics,
//! lazy start, idle unload) has a plain answer.
//!
//! The task receives [`Cmd`]s over a bounded channel (connections and
//! facilitation send them), turns them into hub [`Event`]s, and carries out
//! the hub's [`Effect`]s:
//! - `Send`: onto the connection's bounded outbound queue; a client whose
//!   queue is full is closed with a sentence (it reads too slowly), so a slow
//!   client never grows the server's memory nor holds up the hub;
//! - `Close`: the connection is told its close code and sentence;
//! - `Load`: [`DocStore::load`] on the blocking pool, then `DocLoaded`;
//! - `Store`: the change chunks appended durably as one incremental value
//!   (klad-core's key layout), on the blocking pool, then `Stored` (or, after
//!   retries, `StoreFailed`);
//! - `Written`: the facilitation write waiting for it is answered;
//! - `Unload`: the document left memory (gauges follow the hub's stats).
//!
//! A timer sleeps until [`Hub::next_deadline`] and sends `Tick`.
//!
//! Everything that sends to a process's hub holds a [`Lease`]; a hub with
//! leases, connections or documents is never stopped. The task decides to
//! stop under the registry lock, with no lease and nothing queued, so a
//! command can never be sent to a stopped hub: a lease asked for afterwards
//! starts a fresh task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::{Change, ChangeHash};
use klad_core::{MemberId, ProcessId};
use klad_store::{DocStore, Key, KvStore, StoreError, incremental_value};
use klad_sync::authorship::Signature;
use klad_sync::hub::{
    ConnId, Effect, Event, Hub, HubConfig, POLICY_VIOLATION, Stats, StoreToken, WriteId,
};
use tokio::sync::{mpsc, oneshot};

use crate::cluster::{Cluster, MOVED, MOVED_CODE};
use crate::directory::Directory;
use crate::gate::{HubGate, NewDevice, PeerState};
use crate::metrics::Metrics;
use crate::store::AnyStore;

pub use klad_sync::access::SERVER_PEER_ID;

/// Commands queued towards one process's hub before senders wait (a busy
/// hub slows its connections' reading down instead of growing memory). A
/// connect storm queues a burst of about members × documents frames; while
/// the queue is full, every frame the hub takes wakes a waiting connection
/// on another thread, which costs more than the frame (200 members: 23 µs
/// of server CPU per document sync with 8,192, 28 µs with 1,024). 8,192
/// small frames are a few MiB at most, and tokio allocates the queue as it
/// fills.
const HUB_QUEUE: usize = 8192;

/// Frames queued towards one client. The hub coalesces (one message per
/// document and peer per window), so a client that reads at all stays far
/// below this; one that does not is closed rather than buffered without end.
pub const OUTBOUND_QUEUE: usize = 1024;

/// How long a shutdown waits for the stores in flight.
const FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// How often a failing store is tried before its document is given up.
const STORE_ATTEMPTS: u32 = 5;

/// How long one store or load call may take before it counts as failed and
/// its document is given up (the call itself cannot be cancelled: it
/// finishes, or not, on the blocking pool). sled can block for good on a
/// full disk; a healthy call takes milliseconds.
pub const STORE_CALL_LIMIT: Duration = Duration::from_secs(20);

/// The sentence a client that reads too slowly is closed with.
const SLOW_CLIENT: &str =
    "This connection fell too far behind reading the server's messages; reconnect to sync again.";

/// The close sentence for a connection whose token was revoked (at most 123 bytes).
pub const TOKEN_REVOKED: &str =
    "Your invitation was withdrawn on the server. Ask a facilitator for a new one.";

/// The sentence every connection is closed with at shutdown.
pub const SHUTTING_DOWN: &str = "The server is shutting down; reconnect in a moment.";

/// The websocket close code for a server going away (1001).
pub const GOING_AWAY: u16 = 1001;

/// What every process hub is built from.
pub struct HubParts {
    /// Where documents are stored.
    pub docs: Arc<DocStore<AnyStore>>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The membership index (access, device registries).
    pub directory: Arc<Directory>,
    /// Where new devices found in changes are sent to be registered.
    pub devices: mpsc::UnboundedSender<NewDevice>,
    /// The storage id every hub announces (one store, one id).
    pub storage_id: String,
    /// A document without peers leaves memory after this long; a process
    /// whose documents have all left stops its hub.
    pub idle: Duration,
    /// Fault injection for tests: delay every store.
    pub put_delay: Option<Duration>,
    /// Fault injection for tests: wait this long before a hub that found
    /// itself idle stops (commands arriving meanwhile keep it running).
    pub unload_delay: Option<Duration>,
    /// The leases of several nodes on one database (PostgreSQL): every store
    /// carries this node's fence for the process. `None` on sled.
    pub cluster: Option<Arc<Cluster>>,
}

/// The server is shutting down: no hub starts, no command is taken.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("The server is shutting down; try again when it is back.")]
pub struct Stopped;

/// What a connection or facilitation asks of a process's hub.
#[derive(Debug)]
pub enum Cmd {
    /// A websocket opened for `peer_id` (of `member`).
    Connect {
        /// The connection.
        conn: ConnId,
        /// The peer id its token gives it.
        peer_id: String,
        /// Its member.
        member: MemberId,
        /// The token generation it connected with (see `Cmd::Revoked`).
        generation: u64,
        /// Its outbound queue.
        frames: mpsc::Sender<Vec<u8>>,
        /// Where its close code and sentence go.
        close: oneshot::Sender<(u16, String)>,
    },
    /// A binary frame arrived.
    Frame {
        /// The connection.
        conn: ConnId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// Signatures arrived (a `klad-signatures` frame) for changes to come.
    Signatures {
        /// The connection.
        conn: ConnId,
        /// The signatures.
        list: Vec<(ChangeHash, Signature)>,
    },
    /// The connection ended (or closed itself with its own reason).
    Disconnect {
        /// The connection.
        conn: ConnId,
    },
    /// The server writes these changes to a document; `done` hears whether
    /// they are stored.
    Write {
        /// The document.
        doc: String,
        /// The changes.
        changes: Vec<Change>,
        /// Answered once stored (`true`) or failed (`false`).
        done: oneshot::Sender<bool>,
    },
    /// The process document changed: access is decided again for every
    /// subscription.
    AccessChanged,
    /// `member`'s tokens below generation `valid_from` were revoked: their
    /// connections that came with one are closed.
    Revoked {
        /// The member.
        member: MemberId,
        /// The lowest token generation still valid.
        valid_from: u64,
    },
    /// A lease ended (the hub may be idle now).
    Released,
    /// Another node took the process over: close every connection (they
    /// reconnect to the new owner), answer waiting writes "not stored", stop.
    Moved,
    /// Close every connection with 1001, store everything, stop.
    Shutdown,
}

struct Shard {
    /// Which hub task this is (a process moved away and back gets a new one).
    id: u64,
    tx: mpsc::Sender<Cmd>,
    users: usize,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The process hubs of one server.
pub struct Hubs {
    parts: HubParts,
    shards: Mutex<HashMap<ProcessId, Shard>>,
    stopping: AtomicBool,
    next_conn: AtomicU64,
    next_shard: AtomicU64,
}

/// A use of one process's hub: while it is held, the hub keeps running.
pub struct Lease {
    hubs: Arc<Hubs>,
    process: ProcessId,
    shard: u64,
    tx: mpsc::Sender<Cmd>,
}

impl Lease {
    /// Sends a command to the hub (waiting while its queue is full).
    pub async fn send(&self, cmd: Cmd) -> Result<(), Stopped> {
        self.tx.send(cmd).await.map_err(|_| Stopped)
    }

    /// Writes `changes` to `doc` through the hub and waits until they are
    /// stored. `Ok(false)`: they could not be applied or stored.
    pub async fn write(&self, doc: &str, changes: Vec<Change>) -> Result<bool, Stopped> {
        let (done, stored) = oneshot::channel();
        self.send(Cmd::Write {
            doc: doc.to_owned(),
            changes,
            done,
        })
        .await?;
        stored.await.map_err(|_| Stopped)
    }

    /// The process.
    pub fn process(&self) -> &ProcessId {
        &self.process
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut shards = self.hubs.lock();
        if let Some(s) = shards.get_mut(&self.process).filter(|s| s.id == self.shard) {
            s.users = s.users.saturating_sub(1);
            if s.users == 0 {
                // A nudge, so an idle hub looks again; a full queue means
                // the hub is busy and will look anyway.
                let _ = s.tx.try_send(Cmd::Released);
            }
        }
    }
}

impl Hubs {
    /// Process hubs built from `parts`.
    pub fn new(parts: HubParts) -> Arc<Self> {
        Arc::new(Self {
            parts,
            shards: Mutex::new(HashMap::new()),
            stopping: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
            next_shard: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProcessId, Shard>> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Processes whose hub runs now.
    pub fn loaded(&self) -> usize {
        self.lock().len()
    }

    /// A number for a new connection, unique in this server.
    pub fn next_conn(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    /// Leases the hub of `process`, starting it if it is not running.
    /// `Err` once the server is shutting down.
    pub fn lease(self: &Arc<Self>, process: &ProcessId) -> Result<Lease, Stopped> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(Stopped);
        }
        let mut shards = self.lock();
        if !shards.contains_key(process) {
            let (tx, rx) = mpsc::channel(HUB_QUEUE);
            let id = self.next_shard.fetch_add(1, Ordering::Relaxed);
            let task = tokio::spawn(run(self.clone(), process.clone(), id, rx));
            shards.insert(
                process.clone(),
                Shard {
                    id,
                    tx,
                    users: 0,
                    task: Some(task),
                },
            );
            tracing::debug!(process = %process, "process hub started");
        }
        let n = shards.len();
        let Some(shard) = shards.get_mut(process) else {
            return Err(Stopped);
        };
        shard.users += 1;
        let tx = shard.tx.clone();
        let id = shard.id;
        drop(shards);
        self.parts.metrics.set_processes_loaded(n as i64);
        Ok(Lease {
            hubs: self.clone(),
            process: process.clone(),
            shard: id,
            tx,
        })
    }

    /// The leases of several nodes, when the store is shared.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.parts.cluster.as_ref()
    }

    /// True when the hub of `process` runs on this node.
    pub fn is_running(&self, process: &ProcessId) -> bool {
        self.lock().contains_key(process)
    }

    /// Another node took `process` over: its hub here (if any) closes every
    /// connection with [`MOVED`] and stops, and leaves the registry at once,
    /// so a later use starts a fresh hub that reads the documents again.
    pub fn moved(&self, process: &ProcessId) {
        let Some(shard) = self.lock().remove(process) else {
            return;
        };
        self.parts
            .metrics
            .set_processes_loaded(self.loaded() as i64);
        tokio::spawn(async move {
            // The task ended already if this fails: nothing to close.
            let _ = shard.tx.send(Cmd::Moved).await;
        });
    }

    /// True when nobody holds a lease on the hub `shard` of `process` and nothing is queued.
    fn unused(&self, process: &ProcessId, shard: u64, rx: &mpsc::Receiver<Cmd>) -> bool {
        self.lock()
            .get(process)
            .is_some_and(|s| s.id == shard && s.users == 0 && rx.is_empty())
    }

    /// Removes the hub `shard` of `process` if nobody holds a lease and
    /// nothing is queued; true when removed (the task must end then).
    fn retire(&self, process: &ProcessId, shard: u64, rx: &mpsc::Receiver<Cmd>) -> bool {
        let mut shards = self.lock();
        let idle = shards
            .get(process)
            .is_some_and(|s| s.id == shard && s.users == 0 && rx.is_empty());
        if idle {
            shards.remove(process);
            self.parts.metrics.set_processes_loaded(shards.len() as i64);
        }
        idle
    }

    /// Stops every hub: connections are closed with 1001, every store in
    /// flight finishes; no hub starts afterwards.
    pub async fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let running: Vec<(mpsc::Sender<Cmd>, Option<tokio::task::JoinHandle<()>>)> = self
            .lock()
            .values_mut()
            .map(|s| (s.tx.clone(), s.task.take()))
            .collect();
        for (tx, _) in &running {
            // A hub that ended meanwhile needs no telling.
            let _ = tx.send(Cmd::Shutdown).await;
        }
        for (_, task) in running {
            if let Some(task) = task
                && let Err(e) = task.await
            {
                tracing::error!(error = %e, "a process hub ended abnormally");
            }
        }
        self.lock().clear();
        self.parts.metrics.set_processes_loaded(0);
    }
}

/// One connection as the hub task knows it.
struct ConnOut {
    frames: mpsc::Sender<Vec<u8>>,
    close: oneshot::Sender<(u16, String)>,
    member: MemberId,
    generation: u64,
}

/// A load or store finished.
enum Done {
    Loaded(Event),
    Stored(Event),
}

/// The state of one process's hub task.
struct Task {
    hubs: Arc<Hubs>,
    process: ProcessId,
    hub: Hub,
    started: Instant,
    conns: HashMap<ConnId, ConnOut>,
    peers: HashMap<ConnId, PeerState>,
    writes: HashMap<WriteId, oneshot::Sender<bool>>,
    next_write: u64,
    stats: Stats,
    done_tx: mpsc::UnboundedSender<Done>,
    shutting_down: bool,
}

/// Runs the hub of `process` until it is idle (or the server stops).
async fn run(hubs: Arc<Hubs>, process: ProcessId, shard: u64, mut rx: mpsc::Receiver<Cmd>) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let idle_ms = u64::try_from(hubs.parts.idle.as_millis()).unwrap_or(u64::MAX);
    let mut task = Task {
        hub: Hub::new(HubConfig {
            idle_unload_ms: idle_ms,
            storage_id: Some(hubs.parts.storage_id.clone()),
            ..HubConfig::default()
        }),
        hubs,
        process,
        started: Instant::now(),
        conns: HashMap::new(),
        peers: HashMap::new(),
        writes: HashMap::new(),
        next_write: 0,
        stats: Stats::default(),
        done_tx,
        shutting_down: false,
    };
    let mut shutdown: Option<tokio::time::Instant> = None;
    loop {
        let deadline = task
            .hub
            .next_deadline()
            .map(|at| tokio::time::Instant::from_std(task.started + Duration::from_millis(at)));
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Shutdown) => {
                    shutdown = Some(tokio::time::Instant::now() + FLUSH_LIMIT);
                    task.shutting_down = true;
                    task.close_all();
                }
                Some(Cmd::Moved) => {
                    tracing::info!(process = %task.process, "another node serves this process now; closing its connections here");
                    task.close_all_with(MOVED_CODE, MOVED);
                    break;
                }
                Some(cmd) => task.command(cmd),
                // Every sender is gone: only after the registry dropped us.
                None => break,
            },
            Some(done) = done_rx.recv() => match done {
                Done::Loaded(e) | Done::Stored(e) => task.event(e),
            },
            _ = sleep_until(deadline), if deadline.is_some() => task.event(Event::Tick),
            _ = sleep_until(shutdown), if shutdown.is_some() => {
                tracing::error!(process = %task.process, "stores did not finish within 30 seconds of the shutdown");
                break;
            }
        }
        if shutdown.is_some() {
            if task.flushed() {
                break;
            }
            continue;
        }
        if task.idle() && task.hubs.unused(&task.process, shard, &rx) {
            if let Some(d) = task.hubs.parts.unload_delay {
                tokio::time::sleep(d).await;
            }
            if task.hubs.retire(&task.process, shard, &rx) {
                task.hubs.parts.metrics.process_unloaded();
                tracing::info!(process = %task.process, "idle process unloaded from memory");
                return;
            }
        }
    }
    task.fail_writes();
    let zero = Stats::default();
    task.hubs.parts.metrics.hub_changed(&task.stats, &zero);
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Task {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn parts(&self) -> &HubParts {
        &self.hubs.parts
    }

    /// Nothing in memory, nobody connected, nothing being written.
    fn idle(&self) -> bool {
        self.stats.documents == 0 && self.stats.connections == 0 && self.writes.is_empty()
    }

    /// Every store finished and nothing waits to be stored.
    fn flushed(&self) -> bool {
        self.stats.stores_in_flight == 0
            && self.stats.waiting_messages == 0
            && self.writes.is_empty()
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Connect {
                conn,
                peer_id,
                member,
                generation,
                frames,
                close,
            } => {
                if self.shutting_down {
                    let _ = close.send((GOING_AWAY, SHUTTING_DOWN.to_owned()));
                    return;
                }
                self.conns.insert(
                    conn,
                    ConnOut {
                        frames,
                        close,
                        member: member.clone(),
                        generation,
                    },
                );
                self.peers.insert(
                    conn,
                    PeerState {
                        member,
                        signatures: Default::default(),
                    },
                );
                self.event(Event::PeerConnected { conn, peer_id });
            }
            Cmd::Frame { conn, bytes } => self.event(Event::FrameReceived { conn, bytes }),
            Cmd::Signatures { conn, list } => {
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.signatures.add(list);
                }
            }
            Cmd::Disconnect { conn } => {
                self.conns.remove(&conn);
                self.peers.remove(&conn);
                self.event(Event::PeerDisconnected { conn });
            }
            Cmd::Write { doc, changes, done } => {
                let id = WriteId(self.next_write);
                self.next_write += 1;
                self.writes.insert(id, done);
                self.event(Event::Write { doc, id, changes });
            }
            Cmd::AccessChanged => self.event(Event::AccessChanged { doc: None }),
            Cmd::Revoked { member, valid_from } => {
                let revoked: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.member == member && c.generation < valid_from)
                    .map(|(conn, _)| *conn)
                    .collect();
                for conn in revoked {
                    self.parts()
                        .metrics
                        .connection_closed_by_server("token_revoked");
                    tracing::info!(process = %self.process, member = %member, "closing a connection whose token was revoked");
                    self.close(conn, POLICY_VIOLATION, TOKEN_REVOKED.to_owned());
                    self.event(Event::PeerDisconnected { conn });
                }
            }
            Cmd::Released | Cmd::Shutdown | Cmd::Moved => {}
        }
    }

    /// Closes every connection for the shutdown.
    fn close_all(&mut self) {
        self.close_all_with(GOING_AWAY, SHUTTING_DOWN);
    }

    /// Closes every connection with `code` and `sentence`.
    fn close_all_with(&mut self, code: u16, sentence: &str) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.close(conn, code, sentence.to_owned());
            self.event(Event::PeerDisconnected { conn });
        }
    }

    fn close(&mut self, conn: ConnId, code: u16, sentence: String) {
        self.peers.remove(&conn);
        if let Some(c) = self.conns.remove(&conn) {
            // The connection may have ended meanwhile; then nobody is told.
            let _ = c.close.send((code, sentence));
        }
    }

    /// Hands `event` to the hub and carries out what it says.
    fn event(&mut self, event: Event) {
        let now = self.now_ms();
        if let Event::FrameReceived { conn, bytes } = &event {
            trace_frame("in", *conn, bytes);
        }
        let hubs = self.hubs.clone();
        let parts = &hubs.parts;
        let mut gate = HubGate {
            directory: &parts.directory,
            metrics: &parts.metrics,
            peers: &mut self.peers,
            new_devices: Vec::new(),
        };
        let effects = self.hub.handle(now, event, &mut gate);
        for device in gate.new_devices {
            if parts.devices.send(device).is_err() {
                tracing::error!(
                    "a new device could not be handed over for registration: the server is stopping"
                );
            }
        }
        let mut slow = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send { conn, bytes } => {
                    trace_frame("out", conn, &bytes);
                    let Some(c) = self.conns.get(&conn) else {
                        continue;
                    };
                    match c.frames.try_send(bytes) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => slow.push(conn),
                        // The connection ended; its Disconnect is on its way.
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                }
                Effect::Close { conn, why } => {
                    let label = why.label();
                    parts.metrics.connection_closed_by_server(label);
                    if label == "duplicate_seq" {
                        parts.metrics.unapplied_changes(label, 1);
                    }
                    tracing::warn!(process = %self.process, reason = label, "closing a connection: {why}");
                    self.close(conn, why.code(), why.sentence());
                }
                Effect::Load { doc } => self.load(doc),
                Effect::Store {
                    doc,
                    token,
                    changes,
                } => self.store(doc, token, changes),
                Effect::Written { doc, id, stored } => {
                    if !stored {
                        tracing::error!(process = %self.process, document = %doc, "a server write to a document could not be applied or stored");
                    }
                    if let Some(done) = self.writes.remove(&id) {
                        // The writer may have given up waiting; the write stands.
                        let _ = done.send(stored);
                    }
                }
                Effect::Unload { doc } => {
                    tracing::debug!(process = %self.process, document = %doc, "document unloaded");
                }
            }
        }
        let stats = self.hub.stats();
        parts.metrics.hub_changed(&self.stats, &stats);
        self.stats = stats;
        for conn in slow {
            if !self.conns.contains_key(&conn) {
                continue;
            }
            parts.metrics.slow_client();
            parts.metrics.connection_closed_by_server("slow_client");
            tracing::warn!(process = %self.process, "closing a connection that reads too slowly");
            self.close(conn, POLICY_VIOLATION, SLOW_CLIENT.to_owned());
            self.event(Event::PeerDisconnected { conn });
        }
    }

    fn load(&self, doc: String) {
        let docs = self.parts().docs.clone();
        let metrics = self.parts().metrics.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let id = doc.clone();
            let kv = docs.kv().clone();
            let loaded = tokio::time::timeout(
                STORE_CALL_LIMIT,
                tokio::task::spawn_blocking(move || docs.load(&id)),
            )
            .await;
            let event = match loaded {
                Err(_) => {
                    metrics.storage_error();
                    kv.call_timed_out(STORE_CALL_LIMIT);
                    tracing::error!(document = %doc, limit = ?STORE_CALL_LIMIT, "a document load did not return in time; its connections are closed");
                    Event::StoreFailed { doc }
                }
                Ok(loaded) => match loaded {
                    Ok(Ok(content)) => Event::DocLoaded {
                        doc,
                        content: content.map(Box::new),
                    },
                    Ok(Err(e)) => {
                        metrics.storage_error();
                        tracing::error!(document = %doc, error = %e, "a document could not be loaded; its connections are closed");
                        Event::StoreFailed { doc }
                    }
                    Err(e) => {
                        metrics.storage_error();
                        tracing::error!(document = %doc, error = %e, "a document load panicked or was cancelled");
                        Event::StoreFailed { doc }
                    }
                },
            };
            // The hub task ended (shutdown timed out): nothing to tell.
            let _ = done.send(Done::Loaded(event));
        });
    }

    fn store(&self, doc: String, token: StoreToken, changes: Vec<u8>) {
        let docs = self.parts().docs.clone();
        let cluster = self.parts().cluster.clone();
        let process = self.process.clone();
        let metrics = self.parts().metrics.clone();
        let delay = self.parts().put_delay;
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let changes = Arc::new(changes);
            let mut stored = false;
            for attempt in 1..=STORE_ATTEMPTS {
                let (docs, id, bytes) = (docs.clone(), doc.clone(), changes.clone());
                // Several nodes: only while this node holds the process.
                let fence = match &cluster {
                    None => None,
                    Some(c) => match c.fence(&process) {
                        Some(f) => Some(f),
                        None => {
                            metrics.fenced_write();
                            tracing::warn!(document = %doc, "not storing: this node no longer serves the process");
                            break;
                        }
                    },
                };
                let started = Instant::now();
                let kv = docs.kv().clone();
                let call = tokio::task::spawn_blocking(move || {
                    append(&docs, &id, &bytes, |kv, puts| {
                        kv.write_batch_fenced(fence.as_ref(), puts, &[])
                    })
                });
                let Ok(result) = tokio::time::timeout(STORE_CALL_LIMIT, call).await else {
                    // Another attempt would only pile up behind this one.
                    metrics.storage_error();
                    kv.call_timed_out(STORE_CALL_LIMIT);
                    tracing::error!(document = %doc, attempt, limit = ?STORE_CALL_LIMIT, "a document store did not return in time");
                    break;
                };
                match result {
                    Ok(Ok(())) => {
                        metrics.observe_flush(started.elapsed());
                        stored = true;
                        break;
                    }
                    Ok(Err(Fenced(e))) => {
                        metrics.fenced_write();
                        tracing::warn!(document = %doc, error = %e, "a store was refused: another node serves the process now");
                        break;
                    }
                    Ok(Err(e @ AppendError::Broken(_))) => {
                        // Retrying cannot help until the store is opened again.
                        metrics.storage_error();
                        tracing::error!(document = %doc, attempt, error = %e, "a document store was refused");
                        break;
                    }
                    Ok(Err(e)) => {
                        metrics.storage_error();
                        tracing::error!(document = %doc, attempt, error = %e, "a document store failed");
                    }
                    Err(e) => {
                        metrics.storage_error();
                        tracing::error!(document = %doc, attempt, error = %e, "a document store panicked or was cancelled");
                    }
                }
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            let event = if stored {
                Event::Stored { doc, upto: token }
            } else {
                tracing::error!(document = %doc, "giving up on a store; the document's connections are closed and nothing unsaved was confirmed");
                Event::StoreFailed { doc }
            };
            // The hub task ended (shutdown timed out): nothing to tell.
            let _ = done.send(Done::Stored(event));
        });
    }

    /// Answers every write still waiting: not stored.
    fn fail_writes(&mut self) {
        for (_, done) in self.writes.drain() {
            let _ = done.send(false);
        }
    }
}

/// Logs a frame's type, document and sync heads at trace level.
fn trace_frame(dir: &str, conn: ConnId, bytes: &[u8]) {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    let Ok(f) = klad_sync::wire::parse(bytes) else {
        return;
    };
    let short = |hs: &[ChangeHash]| -> Vec<String> {
        hs.iter().map(|h| h.to_string()[..8].to_owned()).collect()
    };
    let (heads, need, changes) = match f.sync_message() {
        Ok(Some(m)) => (short(&m.heads), short(&m.need), m.changes.len()),
        _ => (Vec::new(), Vec::new(), 0),
    };
    let doc = f.document_id.as_deref().unwrap_or("-");
    tracing::trace!(dir, conn = conn.0, kind = %f.kind, doc, heads = %heads.join(","), need = %need.join(","), changes, "frame");
}

/// Why an append failed.
#[derive(Debug)]
enum AppendError {
    /// The store refused a fenced write: another node serves the process.
    Fenced(StoreError),
    /// The store refuses writes until it is opened again.
    Broken(StoreError),
    /// Anything else, as a sentence.
    Other(String),
}
use AppendError::Fenced;

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fenced(e) | AppendError::Broken(e) => write!(f, "{e}"),
            AppendError::Other(s) => f.write_str(s),
        }
    }
}

/// Appends raw change chunks to a document's stored values, durably, as one
/// incremental value in klad-core's key layout, written by `write` (a plain
/// or a fenced batch).
fn append<S: KvStore>(
    docs: &DocStore<S>,
    doc: &str,
    bytes: &[u8],
    write: impl FnOnce(&S, &[(Key, Vec<u8>)]) -> Result<(), StoreError>,
) -> Result<(), AppendError> {
    let changes = klad_core::chunks::decode_changes(bytes).map_err(|e| {
        AppendError::Other(format!(
            "the hub handed over changes that do not decode: {e}"
        ))
    })?;
    let put = incremental_value(doc, &changes).map_err(|e| AppendError::Other(e.to_string()))?;
    let Some(put) = put else { return Ok(()) };
    let puts = [put];
    docs.write_batch_with(&puts, |kv| write(kv, &puts))
        .map_err(|e| match e {
            StoreError::Fenced { .. } => Fenced(e),
            StoreError::NeedsReopen(_) => AppendError::Broken(e),
            e => AppendError::Other(e.to_string()),
        })
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ROOT, ReadDoc};
    use klad_store::{DocStore, KvStore, MemStore};

    use super::append;

    fn edit(d: &mut Automerge, key: &str) {
        let mut tx = d.transaction();
        tx.put(ROOT, key, 1).unwrap();
        tx.commit();
    }

    #[test]
    fn appended_change_chunks_load_back_as_the_document() {
        let docs = DocStore::new(MemStore::new());
        let mut d = Automerge::new();
        edit(&mut d, "a");
        let first = d.get_heads();
        edit(&mut d, "b");
        edit(&mut d, "c");
        // One store of one change, then one of two (as the hub hands them over).
        let bytes = |since: &[automerge::ChangeHash]| -> Vec<u8> {
            d.get_changes(since)
                .iter()
                .flat_map(|c| c.raw_bytes().to_vec())
                .collect()
        };
        let one: Vec<u8> = d.get_changes(&[]).first().unwrap().raw_bytes().to_vec();
        let plain = |kv: &MemStore, puts: &[(klad_store::Key, Vec<u8>)]| kv.write_batch(puts, &[]);
        append(&docs, "doc", &one, plain).unwrap();
        append(&docs, "doc", &bytes(&first), plain).unwrap();
        let loaded = docs.load("doc").unwrap().unwrap();
        assert_eq!(loaded.get_heads(), d.get_heads());
        assert!(loaded.get(ROOT, "c").unwrap().is_some());
        // Bytes that are not change chunks are refused, nothing is written.
        assert!(append(&docs, "other", b"not changes", plain).is_err());
        assert!(docs.load("other").unwrap().is_none());
    }
}
