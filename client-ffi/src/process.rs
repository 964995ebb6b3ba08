//! One joined process: klad-client's [`Replica`] driven on the phone's sled
//! store, samod syncing it with the server, and the app's listener told.
//!
//! The replica decides; this file only drives it: it stores each [`Write`]
//! the replica hands out in one sled batch and reports the outcome, hands the
//! changes to samod, moves samod's changes into the replica, and schedules the
//! end of each typing window. Every document lives twice in memory: in the
//! replica's session (what operations and views use) and in samod's repo (what
//! syncs). Both directions run under the process lock, so they never interleave.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automerge::{Automerge, Change, ChangeHash};
use futures::StreamExt;
use klad_client::replica::{self, Config, Disk, Effects, Replica, Write};
use klad_core::{ArticleId, ContributionId, MemberId, ProcessDocs, Session, Splice, views};
use klad_store::journal::JournalFile;
use klad_store::{Key, KvStore, StoreError};
use klad_sync::access::peer_id_for;
use klad_sync::connect::SyncQuery;
use klad_sync::token::PublicKey;
use samod::{BackoffConfig, DialerHandle, DocHandle, DocumentId, PeerId, Repo};

use crate::client::{JoinRecord, Shared, key, lock};
use crate::error::{KladError, Result};
use crate::net::{ConnectError, WsDialer, sync_url};
use crate::peer::{GatePolicy, KladPeerLink, PeerGate, PeerTransport};
use crate::storage::{PREFIX, PhoneStorage};
use crate::types::*;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How often typing kept in memory (the disk was full) is tried again.
const SAVE_RETRY: Duration = Duration::from_secs(2);

/// The error a keystroke returns when it is on screen but not saved.
fn not_saved_error(why: &str) -> KladError {
    let sentence = match crate::error::current_language() {
        klad_core::Lang::Nl => format!(
            "Je tekst staat op het scherm, maar kon op deze telefoon niet worden bewaard ({why}). Maak ruimte vrij; de tekst wordt bewaard zodra dat kan. Sluit de app niet tot dan."
        ),
        klad_core::Lang::En => format!(
            "Your text is on screen but could not be saved on this phone ({why}). Free some space; it is saved as soon as it can be. Do not close the app until then."
        ),
    };
    KladError::Storage {
        code: "not-saved".into(),
        sentence,
    }
}

struct State {
    replica: Replica,
    /// The typing journal file.
    journal: JournalFile,
    last_status: Option<SyncStatus>,
    /// Why typing kept in memory could not be saved (while the replica
    /// keeps some).
    not_saved: Option<String>,
}

/// A process this phone has joined. Safe to use from any thread.
#[derive(uniffi::Object)]
pub struct KladProcess {
    pub(crate) inner: Arc<ProcessInner>,
}

pub(crate) struct ProcessInner {
    pub(crate) shared: Arc<Shared>,
    pub process_id: String,
    member: MemberId,
    pub server_url: String,
    pub(crate) token: String,
    state: Mutex<State>,
    pub(crate) repo: Repo,
    /// Who may do what with this process's documents over sync (server, peer links).
    pub(crate) gate: Arc<PeerGate>,
    /// The server's public key, cached when the phone connects; verifies
    /// other phones' tokens on a peer link.
    server_key: Mutex<Option<PublicKey>>,
    dialer: Mutex<Option<Arc<DialerHandle<ConnectError>>>>,
    pub(crate) handles: Mutex<HashMap<String, DocHandle>>,
    finding: Mutex<HashSet<String>>,
    flush_scheduled: AtomicBool,
    /// A task retries saving typing kept in memory.
    save_retrying: AtomicBool,
    stopped: AtomicBool,
}

/// The replica's reads at open, on the phone's store and journal file.
struct PhoneDisk<'a>(&'a Shared, Vec<u8>);

impl Disk for PhoneDisk<'_> {
    fn load(&mut self, doc_id: &str) -> Result<Option<Automerge>, StoreError> {
        Key::new([doc_id])?;
        self.0.docs.load(doc_id)
    }

    fn scan(&mut self, prefix: &Key) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        self.0.kv.scan_prefix(prefix)
    }

    fn journal(&mut self) -> Result<Vec<u8>, StoreError> {
        Ok(std::mem::take(&mut self.1))
    }
}

impl ProcessInner {
    /// Loads the process's documents from disk, replays uncommitted typing,
    /// and starts syncing.
    pub fn open(shared: Arc<Shared>, rec: JoinRecord) -> Result<Arc<ProcessInner>> {
        let member = MemberId::from(rec.member_id.as_str());
        let (journal, journal_bytes) = JournalFile::open(&shared.dir, &rec.process_id)?;
        let replica = Replica::open(
            Config {
                process_id: rec.process_id.clone(),
                member: member.clone(),
                actor: shared.actor.clone(),
                prefix: PREFIX.to_owned(),
            },
            &mut PhoneDisk(&shared, journal_bytes),
        )?;
        let peer_id = peer_id_for(&member, Some(&shared.device));
        let storage = PhoneStorage::new(shared.kv.clone());
        let gate = PeerGate::new(replica.session().docs().process.info().ok());
        let policy = GatePolicy(gate.clone());
        let repo = shared.runtime.block_on(async move {
            Repo::build_tokio()
                .with_storage(storage)
                .with_peer_id(PeerId::from(peer_id.as_str()))
                .with_share_policy(policy)
                .load()
                .await
        });
        let server_key = shared
            .kv
            .get(&key(&[PREFIX, "server-key", &rec.process_id])?)?
            .and_then(|k| PublicKey::from_paserk(&String::from_utf8_lossy(&k)).ok());
        let inner = Arc::new(ProcessInner {
            shared: shared.clone(),
            process_id: rec.process_id.clone(),
            member,
            server_url: rec.server_url,
            token: rec.token,
            state: Mutex::new(State {
                replica,
                journal,
                last_status: None,
                not_saved: None,
            }),
            repo,
            gate,
            server_key: Mutex::new(server_key),
            dialer: Mutex::new(None),
            handles: Mutex::new(HashMap::new()),
            finding: Mutex::new(HashSet::new()),
            flush_scheduled: AtomicBool::new(false),
            save_retrying: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        });
        // Typing that was on disk but not yet committed when the app stopped:
        // each entry knows the version it was typed into, so this commit
        // places it there, whatever arrived since.
        inner.commit()?;
        if shared.online_wanted.load(Ordering::SeqCst) {
            inner.set_online(true);
        }
        inner.find_documents();
        Ok(inner)
    }

    /// True once the process, text and this member's contributions documents are here.
    pub fn is_complete(&self) -> bool {
        lock(&self.state).replica.is_complete()
    }

    pub fn summary(&self) -> ProcessSummary {
        let st = lock(&self.state);
        let info = st.replica.session().docs().process.info().ok();
        ProcessSummary {
            process_id: self.process_id.clone(),
            title: info.as_ref().map(|i| i.title.clone()).unwrap_or_default(),
            member_id: self.member.to_string(),
            role: info
                .as_ref()
                .and_then(|i| i.members.get(&self.member))
                .map(|m| m.role.into()),
            phase: info.as_ref().map(|i| i.phase.into()),
            server_url: self.server_url.clone(),
        }
    }

    // ---- sync ----

    pub fn set_online(self: &Arc<Self>, online: bool) {
        let mut dialer = lock(&self.dialer);
        if !online {
            if let Some(d) = dialer.take() {
                d.close();
            }
        } else if dialer.is_none() && !self.stopped.load(Ordering::SeqCst) {
            let Ok(server) = url::Url::parse(&self.server_url) else {
                return;
            };
            let public_key: String = self
                .shared
                .signing
                .public_key()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let url = sync_url(
                &server,
                &SyncQuery {
                    token: Some(self.token.clone()),
                    device: Some(self.shared.device.clone()),
                    actor: Some(self.shared.actor.to_hex_string()),
                    key: Some(public_key),
                },
            );
            // The first dial can fail on a race inside samod: retry forever, with backoff.
            let backoff = BackoffConfig {
                initial_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(5),
                max_retries: None,
            };
            let _guard = self.shared.runtime.enter();
            let me = Arc::downgrade(self);
            let on_public_key = Arc::new(move |paserk: &str| {
                if let Some(me) = me.upgrade() {
                    me.remember_server_key(paserk);
                }
            });
            let shared = self.shared.clone();
            let sign = Arc::new(move |frame: Vec<u8>| shared.with_signatures(frame));
            if let Ok(d) = self.repo.dial(
                backoff,
                Arc::new(WsDialer {
                    url,
                    on_public_key,
                    sign,
                }),
            ) {
                let d = Arc::new(d);
                let me = self.clone();
                let watched = d.clone();
                self.shared.runtime.spawn(async move {
                    let mut events = watched.events();
                    while events.next().await.is_some() {
                        let me = me.clone();
                        let _ = tokio::task::spawn_blocking(move || me.refresh_all()).await;
                    }
                });
                *dialer = Some(d);
            }
        }
        drop(dialer);
        let me = self.clone();
        self.shared
            .runtime
            .spawn_blocking(move || me.notify_status());
    }

    /// The peer id this phone uses for this process: `<member>:<device>`.
    pub(crate) fn peer_id(&self) -> String {
        peer_id_for(&self.member, Some(&self.shared.device))
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub(crate) fn server_key(&self) -> Option<PublicKey> {
        lock(&self.server_key).clone()
    }

    /// Caches the key the server presented, if it verifies this phone's own
    /// token (a key that does not is not this process's server's).
    fn remember_server_key(&self, paserk: &str) {
        let Ok(k) = PublicKey::from_paserk(paserk) else {
            return;
        };
        if k.verify(&self.token).is_err()
            || self
                .server_key()
                .as_ref()
                .map(PublicKey::to_paserk)
                .as_deref()
                == Some(paserk)
        {
            return;
        }
        if let Ok(kk) = key(&[PREFIX, "server-key", &self.process_id]) {
            // Best effort: without it, peer links wait for the next connection.
            let _ = self.shared.kv.put(&kk, k.to_paserk().as_bytes());
        }
        *lock(&self.server_key) = Some(k);
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(d) = lock(&self.dialer).take() {
            d.close();
        }
        let repo = self.repo.clone();
        let _ = self.shared.runtime.block_on(async move {
            tokio::time::timeout(Duration::from_secs(5), repo.stop()).await
        });
    }

    /// Starts finding every document of the process that has no handle yet.
    fn find_documents(self: &Arc<Self>) {
        let ids: Vec<String> = lock(&self.state)
            .replica
            .documents()
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        for doc_id in ids {
            if lock(&self.handles).contains_key(&doc_id)
                || !lock(&self.finding).insert(doc_id.clone())
            {
                continue;
            }
            let Ok(id) = doc_id.parse::<DocumentId>() else {
                continue;
            };
            let me = self.clone();
            self.shared.runtime.spawn(async move {
                let mut delay = Duration::from_millis(100);
                let handle = loop {
                    if me.stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    match tokio::time::timeout(Duration::from_secs(10), me.repo.find(id.clone()))
                        .await
                    {
                        Ok(Ok(Some(h))) => break h,
                        Ok(Err(_)) => return, // the repo stopped
                        _ => {}
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                };
                lock(&me.handles).insert(doc_id.clone(), handle.clone());
                lock(&me.finding).remove(&doc_id);
                {
                    let me = me.clone();
                    let doc_id = doc_id.clone();
                    let _ = tokio::task::spawn_blocking(move || me.on_doc_event(&doc_id)).await;
                }
                let mut changes = handle.changes();
                let (_, mut peers) = handle.peers();
                loop {
                    tokio::select! {
                        c = changes.next() => if c.is_none() { break },
                        p = peers.next() => if p.is_none() { break },
                    }
                    let me = me.clone();
                    let doc_id = doc_id.clone();
                    let _ = tokio::task::spawn_blocking(move || me.on_doc_event(&doc_id)).await;
                }
            });
        }
    }

    fn refresh_all(self: &Arc<Self>) {
        let ids: Vec<String> = lock(&self.handles).keys().cloned().collect();
        for id in ids {
            self.on_doc_event(&id);
        }
        self.notify_status();
    }

    /// Brings the replica and samod's copy of one document together, and
    /// records what the server has acknowledged.
    fn on_doc_event(self: &Arc<Self>, doc_id: &str) {
        let Some(handle) = lock(&self.handles).get(doc_id).cloned() else {
            return;
        };
        let effects = {
            let mut st = lock(&self.state);
            let Some(mine) = st.replica.document(doc_id) else {
                return;
            };
            let incoming = handle.with_document(|d| {
                // Local changes made before the handle existed go out now.
                let outgoing = d.get_changes_added(mine);
                if !outgoing.is_empty() {
                    let _ = d.apply_changes(outgoing);
                }
                mine.get_changes_added(d)
            });
            // A change that cannot be merged stays in samod's copy and is
            // tried again at the next event.
            let effects = st.replica.merge(doc_id, incoming).unwrap_or_default();
            // What the server says it has (it says so only after storing it).
            let server_conn = lock(&self.dialer).as_ref().and_then(|d| d.connection_id());
            if let Some(conn) = server_conn {
                let (peers, _) = handle.peers();
                if let Some(their) = peers.get(&conn).and_then(|p| p.their_heads.clone())
                    && let Ok(Some((k, v))) = st.replica.acknowledged(doc_id, &their)
                {
                    // Best effort: a lost record only makes the status more cautious.
                    let _ = self.shared.kv.put(&k, &v);
                }
            }
            effects
        };
        self.apply(effects);
    }

    /// Does what the replica asks after an operation (outside the lock).
    fn apply(self: &Arc<Self>, effects: Effects) {
        if let Some(info) = effects.process_info {
            self.gate.set_info(info);
            self.find_documents();
        }
        if effects.schedule_commit {
            self.schedule_flush();
        }
        if effects.documents_changed
            && let Some(l) = self.shared.listener()
        {
            l.documents_changed(self.process_id.clone());
        }
        self.notify_status();
    }

    fn status(&self, st: &mut State) -> SyncStatus {
        let online = lock(&self.dialer)
            .as_ref()
            .is_some_and(|d| d.is_connected());
        let unsynced = st.replica.unsynced();
        SyncStatus {
            online,
            unsynced_changes: unsynced,
            all_on_server: unsynced == 0,
            not_saved: st.not_saved.clone().filter(|_| st.replica.has_kept()),
        }
    }

    fn notify_status(&self) {
        let status = {
            let mut st = lock(&self.state);
            let s = self.status(&mut st);
            if st.last_status.as_ref() == Some(&s) {
                return;
            }
            st.last_status = Some(s.clone());
            s
        };
        if let Some(l) = self.shared.listener() {
            l.sync_status_changed(self.process_id.clone(), status);
        }
    }

    // ---- local writes ----

    /// Stores a write of the replica (its batch, then its journal record),
    /// reports the outcome to it, and hands what it stored to samod.
    fn store(&self, st: &mut State, w: Write) -> Result<Effects> {
        let mut stored = self.shared.docs.write_batch(&w.puts, &w.deletes);
        if stored.is_ok()
            && let Some(record) = &w.journal
        {
            stored = st.journal.append(record);
        }
        let effects = st.replica.written(w, stored)?;
        if let Some(why) = &effects.not_saved {
            st.not_saved = Some(why.clone());
        }
        if effects.truncate_journal {
            st.journal.truncate();
        }
        for (doc_id, changes) in &effects.sync {
            self.push(doc_id, changes.clone());
        }
        Ok(effects)
    }

    fn push(&self, doc_id: &str, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        if let Some(h) = lock(&self.handles).get(doc_id) {
            h.with_document(|d| {
                let _ = d.apply_changes(changes);
            });
        }
        // Without a handle yet, `on_doc_event` hands them over when it arrives.
    }

    /// Runs one session operation: commits typing first, then the operation,
    /// then stores and syncs its change. On disk before it returns.
    fn write<R>(
        self: &Arc<Self>,
        op: impl FnOnce(&mut Session, i64) -> klad_core::Result<R>,
    ) -> Result<R> {
        let (r, effects) = {
            let mut st = lock(&self.state);
            let (r, w) = st.replica.operate(now_ms(), op)?;
            (r, self.store(&mut st, w)?)
        };
        self.apply(effects);
        Ok(r)
    }

    /// Commits pending typing (under the lock), storing it with the removal
    /// of its journal entries.
    fn flush_pending(&self, st: &mut State) -> Result<()> {
        if let Some(w) = st.replica.commit(now_ms())? {
            self.store(st, w)?;
        }
        Ok(())
    }

    pub fn commit(&self) -> Result<()> {
        let mut st = lock(&self.state);
        self.flush_pending(&mut st)
    }

    fn schedule_flush(self: &Arc<Self>) {
        if self.flush_scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        self.shared.runtime.spawn(async move {
            let window = me.shared.typing_window_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(window)).await;
            let _ = tokio::task::spawn_blocking(move || {
                me.flush_scheduled.store(false, Ordering::SeqCst);
                let _ = me.commit();
                me.notify_status();
            })
            .await;
        });
    }

    /// One keystroke (or paste) into an article's heading or body, typed
    /// into `version` of the text (`None`: the text as shown now): checked by
    /// the replica and klad-core, then in the journal before it returns.
    pub(crate) fn type_keystroke(
        self: &Arc<Self>,
        version: Option<Vec<ChangeHash>>,
        id: String,
        heading: bool,
        pos: u32,
        delete: u32,
        insert: String,
    ) -> Result<()> {
        let splice = Splice {
            pos: pos as usize,
            delete: delete as usize,
            insert,
        };
        let effects = {
            let mut st = lock(&self.state);
            let mut effects = Effects::default();
            // At most twice: typing into another version is committed first.
            for _ in 0..2 {
                let w = st.replica.keystroke(
                    now_ms(),
                    version.as_deref(),
                    &id,
                    heading,
                    splice.clone(),
                )?;
                let e = self.store(&mut st, w)?;
                let retry = e.retry_keystroke;
                effects.merge(e);
                if !retry {
                    break;
                }
            }
            effects
        };
        let not_saved = effects.not_saved.clone();
        self.apply(effects);
        match not_saved {
            None => Ok(()),
            Some(why) => {
                self.retry_saving();
                Err(not_saved_error(&why))
            }
        }
    }

    /// Tries every 2 s to save typing kept in memory (the disk was full),
    /// until it is saved or the process stops.
    fn retry_saving(self: &Arc<Self>) {
        if self.save_retrying.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        self.shared.runtime.spawn(async move {
            loop {
                tokio::time::sleep(SAVE_RETRY).await;
                let inner = me.clone();
                let done = tokio::task::spawn_blocking(move || {
                    if inner.stopped.load(Ordering::SeqCst) {
                        return true;
                    }
                    let mut st = lock(&inner.state);
                    if let Ok(Some(w)) = st.replica.save_kept(now_ms()) {
                        // A failure keeps it kept; the next round tries again.
                        let _ = inner.store(&mut st, w);
                    }
                    !st.replica.has_kept()
                })
                .await
                .unwrap_or(true);
                if done {
                    me.save_retrying.store(false, Ordering::SeqCst);
                    me.notify_status();
                    // A keystroke kept meanwhile found this task running.
                    if !me.stopped.load(Ordering::SeqCst) && lock(&me.state).replica.has_kept() {
                        me.retry_saving();
                    }
                    return;
                }
            }
        });
    }

    /// The version of the text as shown now (after committing typing into
    /// an older version), as text: the heads in hex, comma-separated.
    fn text_version(&self, st: &mut State) -> Result<String> {
        if st.replica.is_stale() {
            self.flush_pending(st)?;
        }
        Ok(st
            .replica
            .text_version()
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(","))
    }
}

impl From<replica::Error> for KladError {
    fn from(e: replica::Error) -> Self {
        match e {
            replica::Error::Core(e) => e.into(),
            replica::Error::Store(e) => e.into(),
            replica::Error::Damaged(m) => KladError::storage(m),
        }
    }
}

/// Reads a version handed out by `articles_with_version`.
fn parse_version(v: &str) -> Result<Vec<ChangeHash>> {
    v.split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            h.parse::<ChangeHash>().map_err(|_| {
                KladError::invalid(
                    "The text version is not one this library handed out; read the text again and pass its version.",
                )
            })
        })
        .collect()
}

fn article(id: &str) -> ArticleId {
    ArticleId::from(id)
}

fn contribution(id: &str) -> ContributionId {
    ContributionId::from(id)
}

#[uniffi::export]
impl KladProcess {
    /// The process id.
    pub fn id(&self) -> String {
        self.inner.process_id.clone()
    }

    /// Title, member, role and phase as this phone knows them.
    pub fn summary(&self) -> ProcessSummary {
        self.inner.summary()
    }

    /// The members of the process.
    pub fn members(&self) -> Result<Vec<Member>> {
        let st = lock(&self.inner.state);
        let info = st.replica.session().docs().process.info()?;
        Ok(info
            .members
            .values()
            .map(|m| Member {
                id: m.id.to_string(),
                name: m.name.clone(),
                role: m.role.into(),
                devices: m.devices.clone(),
            })
            .collect())
    }

    /// How this phone stands with the server.
    pub fn sync_status(&self) -> SyncStatus {
        let mut st = lock(&self.inner.state);
        self.inner.status(&mut st)
    }

    /// Opens a sync link with another phone of this process, without a
    /// server, over a transport the app provides (Bluetooth, local Wi-Fi, ...).
    /// Hand every frame the other phone sends to the link's `receive`. Each
    /// side checks the other's invitation with the server's key (cached when
    /// this phone last connected) and refuses changes the other's member may
    /// not make, as the server would.
    pub fn open_peer_link(&self, transport: Arc<dyn PeerTransport>) -> Result<Arc<KladPeerLink>> {
        self.inner.open_peer_link(transport)
    }

    /// Commits pending typing now (one change), instead of at the end of the typing window.
    pub fn commit(&self) -> Result<()> {
        self.inner.commit()?;
        self.inner.notify_status();
        Ok(())
    }

    // ---- the text ----

    /// The articles in order, with typing not yet committed included.
    pub fn articles(&self) -> Result<Vec<Article>> {
        Ok(self.articles_with_version()?.articles)
    }

    /// The articles in order (typing not yet committed included) and the
    /// version of the text they show. Pass the version back with every
    /// keystroke typed into what you show (`edit_body_at`, `edit_heading_at`),
    /// so a change from another phone arriving meanwhile never moves it; read
    /// again (and take the new version) whenever you refresh the screen.
    pub fn articles_with_version(&self) -> Result<TextSnapshot> {
        let mut st = lock(&self.inner.state);
        let version = self.inner.text_version(&mut st)?;
        let mut out: Vec<Article> = views::articles(st.replica.session().docs())
            .into_iter()
            .map(Article::from)
            .collect();
        // Typing not yet committed shows as typed.
        for a in &mut out {
            if let Some(t) = st.replica.typed(&a.id, true) {
                a.heading = t;
            }
            if let Some(t) = st.replica.typed(&a.id, false) {
                a.body = t;
            }
        }
        Ok(TextSnapshot {
            version,
            articles: out,
        })
    }

    /// Adds an article after `after` (or at the start); returns its id.
    pub fn create_article(
        &self,
        after: Option<String>,
        heading: String,
        body: String,
    ) -> Result<String> {
        self.inner
            .write(|s, now| {
                s.create_article(now, after.map(|a| article(&a)).as_ref(), &heading, &body)
            })
            .map(|id| id.0)
    }

    /// Moves an article to just after `after` (or to the start).
    pub fn move_article(&self, id: String, after: Option<String>) -> Result<()> {
        self.inner
            .write(|s, now| s.move_article(now, &article(&id), after.map(|a| article(&a)).as_ref()))
    }

    /// Removes an article (its history stays; comments on it become orphaned).
    pub fn remove_article(&self, id: String) -> Result<()> {
        self.inner
            .write(|s, now| s.remove_article(now, &article(&id)))
    }

    /// One keystroke (or paste) in an article heading, typed into the text as
    /// `articles_with_version` showed it at `version`. Coalesced like `edit_body_at`.
    pub fn edit_heading_at(
        &self,
        version: String,
        id: String,
        pos: u32,
        delete: u32,
        insert: String,
    ) -> Result<()> {
        let v = parse_version(&version)?;
        self.inner
            .type_keystroke(Some(v), id, true, pos, delete, insert)
    }

    /// One keystroke (or paste) in an article body, typed into the text as
    /// `articles_with_version` showed it at `version` (plus your own typing
    /// since): at character `pos`, delete `delete` characters and insert
    /// `insert`. It lands where it was typed even if another phone's change
    /// arrived meanwhile. On disk when it returns; becomes part of one change
    /// per typing window (or at `commit`).
    pub fn edit_body_at(
        &self,
        version: String,
        id: String,
        pos: u32,
        delete: u32,
        insert: String,
    ) -> Result<()> {
        let v = parse_version(&version)?;
        self.inner
            .type_keystroke(Some(v), id, false, pos, delete, insert)
    }

    /// One keystroke in an article heading, at a position in the text as
    /// this phone shows it at the moment of the call. Unsafe while others
    /// edit the same article: a change arriving between reading the text and
    /// this call moves the keystroke. Use `edit_heading_at`; this call stays
    /// for one release.
    pub fn edit_heading(&self, id: String, pos: u32, delete: u32, insert: String) -> Result<()> {
        self.inner
            .type_keystroke(None, id, true, pos, delete, insert)
    }

    /// One keystroke in an article body, at a position in the text as this
    /// phone shows it at the moment of the call. Unsafe while others edit
    /// the same article: a change arriving between reading the text and this
    /// call moves the keystroke. Use `edit_body_at`; this call stays for one
    /// release.
    pub fn edit_body(&self, id: String, pos: u32, delete: u32, insert: String) -> Result<()> {
        self.inner
            .type_keystroke(None, id, false, pos, delete, insert)
    }

    // ---- contributions ----

    /// Comments on characters `start..end` of an article; returns the thread id.
    pub fn comment(
        &self,
        article_id: String,
        start: u32,
        end: u32,
        text: String,
    ) -> Result<String> {
        self.inner
            .write(|s, now| {
                s.comment(
                    now,
                    &article(&article_id),
                    start as usize,
                    end as usize,
                    &text,
                )
            })
            .map(|id| id.0)
    }

    /// Replies in a thread; returns the reply's id.
    pub fn reply(&self, thread: String, text: String) -> Result<String> {
        self.inner
            .write(|s, now| s.reply(now, &contribution(&thread), &text))
            .map(|id| id.0)
    }

    /// Suggests `replacement` for characters `start..end`; returns the thread id.
    pub fn suggest(
        &self,
        article_id: String,
        start: u32,
        end: u32,
        replacement: String,
        text: String,
    ) -> Result<String> {
        self.inner
            .write(|s, now| {
                s.suggest(
                    now,
                    &article(&article_id),
                    start as usize,
                    end as usize,
                    &replacement,
                    &text,
                )
            })
            .map(|id| id.0)
    }

    /// Accepts a suggestion: its wording replaces the passage.
    pub fn accept_suggestion(&self, id: String) -> Result<()> {
        self.inner
            .write(|s, now| s.accept_suggestion(now, &contribution(&id)))
    }

    /// Rejects a suggestion.
    pub fn reject_suggestion(&self, id: String) -> Result<()> {
        self.inner
            .write(|s, now| s.reject_suggestion(now, &contribution(&id)))
    }

    /// Gives a formal answer to a thread; returns the answer's id.
    pub fn answer(&self, thread: String, status: AnswerStatus, reason: String) -> Result<String> {
        self.inner
            .write(|s, now| s.answer(now, &contribution(&thread), status.into(), &reason))
            .map(|id| id.0)
    }

    /// Resolves a thread.
    pub fn resolve(&self, thread: String) -> Result<()> {
        self.inner
            .write(|s, now| s.resolve(now, &contribution(&thread)))
    }

    /// Reopens a resolved thread.
    pub fn reopen(&self, thread: String) -> Result<()> {
        self.inner
            .write(|s, now| s.reopen(now, &contribution(&thread)))
    }

    /// Hides a contribution, with a reason everyone sees.
    pub fn hide(&self, target: String, reason: String) -> Result<()> {
        self.inner
            .write(|s, now| s.hide(now, &contribution(&target), &reason))
    }

    /// Shows a hidden contribution again, with a reason.
    pub fn unhide(&self, target: String, reason: String) -> Result<()> {
        self.inner
            .write(|s, now| s.unhide(now, &contribution(&target), &reason))
    }

    /// Enters a contribution on behalf of `person` (someone without a phone); returns its id.
    pub fn enter_on_behalf(&self, person: String, what: OnBehalf) -> Result<String> {
        self.inner
            .write(|s, now| s.enter_on_behalf(now, &person, what.into()))
            .map(|id| id.0)
    }

    /// Records that the member has now seen everything on this phone.
    pub fn mark_read(&self) -> Result<()> {
        self.inner.write(|s, now| s.mark_read(now))
    }

    // ---- views (typing is committed first, so positions agree) ----

    /// Every thread (or those of one article), in text order.
    pub fn threads(&self, article_id: Option<String>) -> Result<Vec<ThreadView>> {
        self.read(|docs| {
            Ok(
                views::threads(docs, article_id.map(|a| article(&a)).as_ref(), now_ms())?
                    .into_iter()
                    .map(ThreadView::from)
                    .collect(),
            )
        })
    }

    /// Suggestions not yet decided.
    pub fn open_suggestions(&self) -> Result<Vec<ThreadView>> {
        self.read(|docs| {
            Ok(views::open_suggestions(docs, now_ms())?
                .into_iter()
                .map(ThreadView::from)
                .collect())
        })
    }

    /// What changed since the member last marked the process as read.
    pub fn changes_since_read(&self) -> Result<ChangesSinceRead> {
        let me = self.inner.member.clone();
        self.read(|docs| Ok(views::changes_since_read(docs, &me)?.into()))
    }

    /// Who wrote each span of an article's body.
    pub fn blame(&self, article_id: String) -> Result<Vec<BlameSpan>> {
        self.read(|docs| {
            Ok(views::blame(docs, &article(&article_id))?
                .into_iter()
                .map(BlameSpan::from)
                .collect())
        })
    }

    /// Every change to every document of the process, oldest first.
    pub fn history(&self) -> Result<Vec<HistoryEntry>> {
        self.read(|docs| {
            Ok(views::history(docs)?
                .into_iter()
                .map(HistoryEntry::from)
                .collect())
        })
    }
}

impl KladProcess {
    fn read<R>(&self, f: impl FnOnce(&ProcessDocs) -> Result<R>) -> Result<R> {
        let mut st = lock(&self.inner.state);
        self.inner.flush_pending(&mut st)?;
        f(st.replica.session().docs())
    }
}
