//! What facilitators (and the operator on the command line) do: open a
//! process, invite members, give a member a new token or withdraw theirs,
//! move the phase on, read a summary. The process document is only ever
//! written here, through klad-core's `ProcessDoc`.
//!
//! Every write goes through the process's hub ([`crate::hubs`]): the change
//! is applied to the hub's copy, stored through the same durability barrier
//! as a member's, and synced to the connections that read the document; the
//! call returns once it is on disk. After each change of a process document
//! the hub is told that access may have changed, so open connections follow
//! a phase change or a new member at once.
//!
//! Every act either does all of its work or none of it. Whatever can fail
//! (checks, building the new document, reading what it will say, signing a
//! token) happens before the first write; the act's change of the process
//! document is one write and its commit point. Documents written before it
//! (a new member's contributions, a new process's text) are named by no
//! process document until then, so a failure or a panic before it leaves
//! nothing anyone can see; what follows it (the directory, the process
//! record, telling the hub) cannot fail the act: a record that could not be
//! stored is logged and corrected from the document at the next start.
//! Revocations, kept outside documents, have the stored revocation as their
//! commit point in the same way. HTTP handlers run these acts in a task of
//! their own, so a client that hangs up does not cut one short.
//!
//! Reads of a process document come from the store: the server is its only
//! writer (members have read-only access, so the hub applies nothing of
//! theirs), every write is serialised here and returns once stored, so the
//! store always holds the latest version.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use automerge::Automerge;
use klad_core::document::KladDocument;
use klad_core::rules::{Phase, Role};
use klad_core::{
    ContributionsDoc, DocId, Member, MemberId, NewMember, ProcessDoc, ProcessId, ProcessInfo,
    TextDoc,
};
use klad_store::{DocStore, Key, KvStore};

use crate::store::AnyStore;
use serde::Serialize;

use crate::auth::Keys;
use crate::cluster::Owner;
use crate::directory::{Directory, peer_id_for};
use crate::hubs::{Cmd, Hubs, Lease, Stopped};

/// First key component of everything the server stores besides documents.
/// It can never be an automerge-repo document id (those are base58, which
/// has no `l`).
pub const SERVER_PREFIX: &str = "klad-server";

/// An error of a facilitation request, with the HTTP status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum FacilitationError {
    /// The request itself is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with what is there (a member of that name exists).
    #[error("{0}")]
    Conflict(String),
    /// The server is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The server failed.
    #[error("{0}")]
    Internal(String),
}

impl From<klad_core::Error> for FacilitationError {
    fn from(e: klad_core::Error) -> Self {
        // The HTTP API answers in English sentences (its JSON, its logs).
        let message = e.to_string();
        match e {
            klad_core::Error::NotAllowed(_) => FacilitationError::Forbidden(message),
            klad_core::Error::NotFound(_) => FacilitationError::NotFound(message),
            klad_core::Error::InvalidInput(_) => FacilitationError::BadRequest(message),
            _ => FacilitationError::Internal(message),
        }
    }
}

impl From<Stopped> for FacilitationError {
    fn from(e: Stopped) -> Self {
        FacilitationError::Unavailable(e.to_string())
    }
}

fn internal(e: impl std::fmt::Display) -> FacilitationError {
    FacilitationError::Internal(format!(
        "The server could not complete the request ({e}). Check the server log."
    ))
}

/// A new process and its documents.
#[derive(Clone, Debug, Serialize)]
pub struct CreatedProcess {
    /// The process id (also the id of the process document).
    pub process_id: ProcessId,
    /// The title.
    pub title: String,
    /// The process document's automerge-repo id.
    pub process_doc: String,
    /// The text document's automerge-repo id.
    pub text_doc: String,
}

/// A new member and the token that lets them in.
#[derive(Clone, Debug, Serialize)]
pub struct Invitation {
    /// Their process.
    pub process_id: ProcessId,
    /// Their member id.
    pub member_id: MemberId,
    /// Their display name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// Their contributions document's automerge-repo id.
    pub contributions_doc: String,
    /// The peer id their client must use (or `<peer_id>:<device>`).
    pub peer_id: String,
    /// Their token.
    pub token: String,
    /// When the token expires (seconds since the Unix epoch).
    pub expires_at: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn process_list_key(pid: &ProcessId) -> Result<Key, FacilitationError> {
    Key::new([SERVER_PREFIX, "process", pid.as_str()]).map_err(internal)
}

/// Where the lowest token generation still valid for a member is kept
/// (absent: 0, every token of theirs is valid).
fn revocation_key(member: &MemberId) -> Result<Key, FacilitationError> {
    Key::new([SERVER_PREFIX, "revoked", member.as_str()]).map_err(internal)
}

/// Who asked for a facilitation act, as logs show it: a member id, or
/// `operator` (the admin secret or the command line).
struct By<'a>(Option<&'a MemberId>);

impl std::fmt::Display for By<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(m) => write!(f, "{m}"),
            None => f.write_str("operator"),
        }
    }
}

/// Names compare as people read them: ignoring case and runs of spaces.
fn same_name(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    norm(a) == norm(b)
}

/// A new token for an existing member.
#[derive(Clone, Debug, Serialize)]
pub struct Reissued {
    /// The member and their new token.
    #[serde(flatten)]
    pub invitation: Invitation,
    /// True when every earlier token of theirs was revoked; false when those
    /// keep working until they expire.
    pub earlier_tokens_revoked: bool,
}

/// A member whose tokens were all withdrawn.
#[derive(Clone, Debug, Serialize)]
pub struct Revoked {
    /// Their process.
    pub process_id: ProcessId,
    /// Their member id.
    pub member_id: MemberId,
    /// Their display name.
    pub name: String,
    /// Their role.
    pub role: Role,
}

/// A new automerge-repo document id (16 random bytes).
fn new_document_id() -> String {
    klad_sync::wire::document_id(*uuid::Uuid::new_v4().as_bytes())
}

/// Facilitation over the process hubs, the document store and a directory.
pub struct Facilitation {
    hubs: Arc<Hubs>,
    docs: Arc<DocStore<AnyStore>>,
    kv: AnyStore,
    directory: Arc<Directory>,
    keys: Arc<Keys>,
    /// Serialises writes to process documents.
    serial: tokio::sync::Mutex<()>,
    /// Processes whose directory entry has been checked against their
    /// document since the server started (see [`Facilitation::verify`]).
    verified: std::sync::Mutex<HashSet<ProcessId>>,
    /// Per member, the lowest token generation still valid (members with
    /// none revoked are absent). Kept in the store; read at start.
    valid_from: std::sync::Mutex<HashMap<MemberId, u64>>,
    /// Fault injection for tests: a new member or process of this name
    /// panics between its first write and its commit point.
    fault_panic_name: Option<String>,
    /// When each member was last connected (seconds since the epoch), since
    /// `started`: kept in memory only, so connecting costs no disk write.
    last_seen: std::sync::Mutex<HashMap<MemberId, u64>>,
    /// When this server started (seconds since the epoch).
    started: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What the facilitator who opens a process needs to become its first member.
pub struct Opener<'a> {
    /// Their name (as in the process they came from).
    pub name: &'a str,
    /// Their token's lifetime.
    pub ttl: Duration,
}

impl Facilitation {
    /// Wires facilitation to the process hubs and stores.
    pub fn new(
        hubs: Arc<Hubs>,
        docs: Arc<DocStore<AnyStore>>,
        kv: AnyStore,
        directory: Arc<Directory>,
        keys: Arc<Keys>,
    ) -> Self {
        Self {
            hubs,
            docs,
            kv,
            directory,
            keys,
            serial: tokio::sync::Mutex::new(()),
            verified: std::sync::Mutex::new(HashSet::new()),
            valid_from: std::sync::Mutex::new(HashMap::new()),
            fault_panic_name: None,
            last_seen: std::sync::Mutex::new(HashMap::new()),
            started: now_secs(),
        }
    }

    /// Fault injection for tests (never in production): adding a member
    /// called `name`, or opening a process titled `name`, panics after the
    /// act's first write and before its commit point, as a bug there would.
    pub fn with_fault_panic_name(mut self, name: Option<String>) -> Self {
        self.fault_panic_name = name;
        self
    }

    /// Panics if `name` is the fault injection's name (see
    /// [`Self::with_fault_panic_name`]).
    fn fault_point(&self, name: &str) {
        if self.fault_panic_name.as_deref() == Some(name.trim()) {
            // Deliberate: the tests' stand-in for a bug between two writes.
            panic!("fault injection: a panic before the commit point ({name:?})");
        }
    }

    /// The process hubs.
    pub fn hubs(&self) -> &Arc<Hubs> {
        &self.hubs
    }

    /// The signing keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The directory.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Notes that `member` is connected now (at connect and at disconnect).
    pub fn seen(&self, member: &MemberId) {
        self.last_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(member.clone(), now_secs());
    }

    /// When `member` was last connected, if since this server started.
    pub fn last_seen(&self, member: &MemberId) -> Option<u64> {
        self.last_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(member)
            .copied()
    }

    /// When this server started (seconds since the epoch).
    pub fn started_at(&self) -> u64 {
        self.started
    }

    /// The document store (the web desk reads documents from it).
    pub fn doc_store(&self) -> &Arc<DocStore<AnyStore>> {
        &self.docs
    }

    /// The key/value store (the web desk keeps its sessions in it).
    pub fn kv(&self) -> &AnyStore {
        &self.kv
    }

    /// Fills the directory from the process records in the store, at start.
    /// No process is loaded: each record holds what its process document
    /// said when the server last wrote it, and a process's hub starts when
    /// it is first used. (A record of the first format, holding only the
    /// title, is replaced by reading its process document once.)
    pub async fn load_all(&self) -> anyhow::Result<usize> {
        self.load_revocations().await?;
        let kv = self.kv.clone();
        let prefix = Key::new([SERVER_PREFIX, "process"])?;
        let records = tokio::task::spawn_blocking(move || kv.scan_prefix(&prefix)).await??;
        let _serialised = self.serial.lock().await;
        let mut n = 0;
        for (key, value) in records {
            let Some(pid) = key.components().get(2).cloned() else {
                continue;
            };
            let pid = ProcessId(pid);
            match serde_json::from_slice::<ProcessInfo>(&value) {
                Ok(info) if info.id == pid => {
                    self.directory.upsert(info);
                    n += 1;
                    continue;
                }
                _ => {}
            }
            match self.read_process(&pid).await {
                Ok(d) => {
                    let info = read_info(&d)?;
                    self.publish(info).await?;
                    self.verified_now(&pid);
                    n += 1;
                }
                Err(e) => {
                    tracing::error!(process = %pid, error = %e, "a listed process could not be loaded");
                }
            }
        }
        Ok(n)
    }

    /// Reads every token revocation from the store.
    async fn load_revocations(&self) -> anyhow::Result<()> {
        let kv = self.kv.clone();
        let prefix = Key::new([SERVER_PREFIX, "revoked"])?;
        let revocations = tokio::task::spawn_blocking(move || kv.scan_prefix(&prefix)).await??;
        let mut valid_from = self.valid_from.lock().unwrap_or_else(|e| e.into_inner());
        for (key, value) in revocations {
            let generation = std::str::from_utf8(&value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok());
            match (key.components().get(2), generation) {
                (Some(member), Some(g)) => {
                    valid_from.insert(MemberId(member.clone()), g);
                }
                // Refusing nothing would let withdrawn tokens back in.
                _ => anyhow::bail!(
                    "The store holds a damaged token revocation ({:?}). Restore the data directory from a backup.",
                    key.components()
                ),
            }
        }
        Ok(())
    }

    /// True when `pid` is a process of this server: the directory knows it,
    /// or (created by another node since this one started) its record is
    /// in the store.
    pub async fn is_known(&self, pid: &ProcessId) -> bool {
        if self.directory.process(pid).is_some() {
            return true;
        }
        let Ok(key) = process_list_key(pid) else {
            return false;
        };
        let kv = self.kv.clone();
        matches!(
            tokio::task::spawn_blocking(move || kv.get(&key)).await,
            Ok(Ok(Some(_)))
        )
    }

    /// This node has just taken `pid` over from another node (several
    /// nodes on one database): what it kept in memory about the process may
    /// be behind what the other node wrote, so the process document is read
    /// again (it updates the directory) and so are the revocations.
    pub async fn take_over(&self, pid: &ProcessId) -> Result<(), FacilitationError> {
        let _serialised = self.serial.lock().await;
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(pid);
        self.load_revocations().await.map_err(internal)?;
        match self.verify_serialised(pid).await {
            // A process being created has no document yet.
            Err(FacilitationError::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    /// Makes sure this node serves `pid` before it writes for it: with
    /// several nodes, takes the process's lease if it is free; refuses when
    /// another node serves it (a request reaches that node through the
    /// relay; the command line is told to go there). Callers hold `serial`.
    async fn own(&self, pid: &ProcessId) -> Result<(), FacilitationError> {
        let Some(cluster) = self.hubs.cluster() else {
            return Ok(());
        };
        match cluster.owner(pid).await.map_err(internal)? {
            Owner::Here { fresh } => {
                if fresh {
                    self.verified
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(pid);
                    self.load_revocations().await.map_err(internal)?;
                }
                Ok(())
            }
            Owner::There { address } if address.is_empty() => {
                Err(FacilitationError::Unavailable(format!(
                    "Process {pid} is being changed from the command line at this moment; try again in a few seconds."
                )))
            }
            Owner::There { address } => Err(FacilitationError::Unavailable(format!(
                "Process {pid} is served by the server node at {address}; send this there (any node relays HTTP requests and connections to it), or try again in a few seconds."
            ))),
        }
    }

    /// The fence a write for `pid` carries (several nodes), see [`Self::own`].
    fn fence(&self, pid: &ProcessId) -> Option<klad_store::Fence> {
        self.hubs.cluster().and_then(|c| c.fence(pid))
    }

    /// Writes `key` for the process `pid`: fenced with several nodes.
    async fn put_for(
        &self,
        pid: &ProcessId,
        key: Key,
        bytes: Vec<u8>,
    ) -> Result<(), FacilitationError> {
        let kv = self.kv.clone();
        let fence = self.fence(pid);
        if self.hubs.cluster().is_some() && fence.is_none() {
            return Err(FacilitationError::Unavailable(format!(
                "This server node no longer serves process {pid}; nothing was changed. Try again: the node that serves it now takes the request."
            )));
        }
        tokio::task::spawn_blocking(move || {
            kv.write_batch_fenced(fence.as_ref(), &[(key, bytes)], &[])
        })
        .await
        .map_err(internal)?
        .map_err(internal)
    }

    /// Records what a process document says: in the store first (so that the
    /// next start knows it without loading the process), then in the directory.
    async fn publish(&self, info: ProcessInfo) -> Result<(), FacilitationError> {
        self.store_record(&info).await?;
        self.directory.upsert(info);
        Ok(())
    }

    fn is_verified(&self, pid: &ProcessId) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(pid)
    }

    fn verified_now(&self, pid: &ProcessId) {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid.clone());
    }

    /// The stored process document of `pid`.
    async fn read_process(&self, pid: &ProcessId) -> Result<Automerge, FacilitationError> {
        let docs = self.docs.clone();
        let id = pid.to_string();
        tokio::task::spawn_blocking(move || docs.load(&id))
            .await
            .map_err(internal)?
            .map_err(internal)?
            .ok_or_else(|| {
                FacilitationError::NotFound(format!(
                    "There is no process {pid} on this server. Check the process id."
                ))
            })
    }

    /// Makes sure the directory agrees with the process document, once per
    /// process after a start. A record is written right after its document
    /// changes; a server killed in between starts with a record one change
    /// behind, and the document (what every member syncs) wins. Called
    /// before a connection or request uses the process.
    pub async fn verify(&self, pid: &ProcessId) -> Result<(), FacilitationError> {
        if self.is_verified(pid) {
            return Ok(());
        }
        let _serialised = self.serial.lock().await;
        self.verify_serialised(pid).await
    }

    /// [`Self::verify`], for callers that hold `serial`.
    async fn verify_serialised(&self, pid: &ProcessId) -> Result<(), FacilitationError> {
        if self.is_verified(pid) {
            return Ok(());
        }
        let info = read_info(&self.read_process(pid).await?)?;
        if self.directory.process(pid).as_ref() != Some(&info) {
            tracing::warn!(process = %pid, "the process record lagged its document; the document wins");
            self.publish(info).await?;
        }
        self.verified_now(pid);
        Ok(())
    }

    /// Leases the hub of a known process and reads its process document.
    /// Callers hold `serial`.
    async fn open(&self, pid: &ProcessId) -> Result<(Lease, Automerge), FacilitationError> {
        self.own(pid).await?;
        if let Some(cluster) = self.hubs.cluster() {
            // Another node may have created it after this one started.
            self.verify_serialised(pid).await?;
            cluster.ready(pid);
        }
        if self.directory.process(pid).is_none() {
            return Err(FacilitationError::NotFound(format!(
                "There is no process {pid} on this server. Check the process id."
            )));
        }
        let lease = self.hubs.lease(pid)?;
        self.verify_serialised(pid).await?;
        let doc = self.read_process(pid).await?;
        Ok((lease, doc))
    }

    /// Writes the changes `after` has over `before` to `doc` through the hub,
    /// and waits until they are stored.
    async fn write(
        &self,
        lease: &Lease,
        doc: &str,
        before: &Automerge,
        after: &Automerge,
    ) -> Result<(), FacilitationError> {
        let changes = after.get_changes(&before.get_heads());
        if lease.write(doc, changes).await? {
            Ok(())
        } else {
            Err(FacilitationError::Internal(
                "The server could not save the change; nothing was changed. Check the server log and try again.".into(),
            ))
        }
    }

    /// Writes a change of the process document: the commit point of an act.
    /// What the document says afterwards is read first (it can fail); once
    /// the change is stored nothing fails: the directory takes it, the
    /// process record is stored, and the hub decides access again.
    async fn commit_process(
        &self,
        lease: &Lease,
        before: &Automerge,
        after: &ProcessDoc,
    ) -> Result<ProcessInfo, FacilitationError> {
        let info = after.info()?;
        let pid = lease.process().clone();
        self.write(lease, pid.as_str(), before, after.automerge())
            .await?;
        self.committed(lease, &info).await;
        Ok(info)
    }

    /// What follows a stored change of a process document. None of it can
    /// fail the act, whose change is on disk: the directory (in memory)
    /// takes it first; a process record that could not be stored is logged,
    /// and the next start finds it one change behind the document, which
    /// wins ([`Self::verify`]); a hub that is stopping closes every
    /// connection anyway.
    async fn committed(&self, lease: &Lease, info: &ProcessInfo) {
        self.directory.upsert(info.clone());
        if let Err(e) = self.store_record(info).await {
            tracing::error!(process = %info.id, error = %e, "the process record could not be stored; the process document is, and wins at the next start");
        }
        if lease.send(Cmd::AccessChanged).await.is_err() {
            tracing::debug!(process = %info.id, "the hub stopped before it heard of a change of access");
        }
    }

    /// Stores the process record of `info` (what the next start reads).
    async fn store_record(&self, info: &ProcessInfo) -> Result<(), FacilitationError> {
        let key = process_list_key(&info.id)?;
        let bytes = serde_json::to_vec(info).map_err(internal)?;
        self.put_for(&info.id, key, bytes).await
    }

    /// Opens a new process in the drafting phase, with no members.
    pub async fn create_process(&self, title: &str) -> Result<CreatedProcess, FacilitationError> {
        Ok(self.open_process(title, None).await?.0)
    }

    /// Opens a new process whose first member is `opener`, a facilitator
    /// (of another process) who asked for it, with a token of theirs. The
    /// process and its first facilitator are written together, or neither is.
    pub async fn create_process_for(
        &self,
        title: &str,
        opener: Opener<'_>,
    ) -> Result<(CreatedProcess, Invitation), FacilitationError> {
        match self.open_process(title, Some(opener)).await? {
            (created, Some(invitation)) => Ok((created, invitation)),
            (_, None) => Err(internal("the new process has no first facilitator")),
        }
    }

    /// [`Self::create_process`] and [`Self::create_process_for`]: the text
    /// document and the opener's contributions are written first, named by
    /// nothing until the process document (the commit point) is written.
    async fn open_process(
        &self,
        title: &str,
        opener: Option<Opener<'_>>,
    ) -> Result<(CreatedProcess, Option<Invitation>), FacilitationError> {
        if title.trim().is_empty() {
            return Err(FacilitationError::BadRequest(
                "A process needs a title; give the ordinance a name.".into(),
            ));
        }
        let _serialised = self.serial.lock().await;
        let now = now_ms();
        let pid = ProcessId(new_document_id());
        // A new id: its lease is free.
        self.own(&pid).await?;
        let text = TextDoc::create(now, &pid)?;
        let text_id = DocId(new_document_id());
        let mut created = ProcessDoc::create(now, &pid, title, &text_id)?;
        let first = match opener {
            None => None,
            Some(o) => {
                let (new, contributions) = new_member(now, &pid, o.name, Role::Facilitator)?;
                created.add_member(now, None, &new)?;
                let invitation = self.invitation(
                    &pid,
                    &new.id,
                    o.name.trim(),
                    Role::Facilitator,
                    &new.contributions_doc,
                    o.ttl,
                    0,
                )?;
                Some((new.contributions_doc, contributions, invitation))
            }
        };
        let lease = self.hubs.lease(&pid)?;
        let empty = Automerge::new();
        self.write(&lease, text_id.as_str(), &empty, text.automerge())
            .await?;
        if let Some((c_id, contributions, _)) = &first {
            self.write(&lease, c_id.as_str(), &empty, contributions.automerge())
                .await?;
        }
        self.fault_point(title);
        let info = self.commit_process(&lease, &empty, &created).await?;
        self.verified_now(&pid);
        if let Some(cluster) = self.hubs.cluster() {
            cluster.ready(&pid);
        }
        tracing::info!(process = %pid, title = %info.title, "process created");
        let created = CreatedProcess {
            process_doc: pid.to_string(),
            process_id: pid,
            title: info.title,
            text_doc: text_id.to_string(),
        };
        Ok((created, first.map(|(_, _, invitation)| invitation)))
    }

    /// Adds a member (with their contributions document) and signs their token.
    /// `by` is the facilitator asking, `None` for the operator. A name that
    /// a member of the process already has is refused unless `again` (two
    /// people of the same name): inviting someone twice by mistake would
    /// split their words over two members. The token is signed before
    /// anything is written, and the member is added to the process document
    /// in the one write that commits the act.
    pub async fn add_member(
        &self,
        pid: &ProcessId,
        by: Option<&MemberId>,
        name: &str,
        role: Role,
        ttl: Duration,
        again: bool,
    ) -> Result<Invitation, FacilitationError> {
        let _serialised = self.serial.lock().await;
        let (lease, doc) = self.open(pid).await?;
        let info = self
            .directory
            .process(pid)
            .ok_or_else(|| FacilitationError::NotFound(format!("There is no process {pid}.")))?;
        may_manage_members(&info, by)?;
        if name.trim().is_empty() {
            return Err(FacilitationError::BadRequest(
                "A member needs a name that others will see next to their words; give a non-empty name.".into(),
            ));
        }
        if !again && let Some(existing) = info.members.values().find(|m| same_name(&m.name, name)) {
            return Err(FacilitationError::Conflict(format!(
                "{} is already a member of this process ({}, member id {}); nothing was changed. To give them a new token, run `klad-server members reissue --process {pid} --member {}`. If this is another person with the same name, invite again with --again (over HTTP: \"again\": true).",
                existing.name, existing.role, existing.id, existing.id
            )));
        }
        let now = now_ms();
        let (new, contributions) = new_member(now, pid, name, role)?;
        let mut pd = ProcessDoc::from_automerge(doc.clone())?;
        pd.add_member(now, by, &new)?;
        let invitation = self.invitation(
            pid,
            &new.id,
            name.trim(),
            role,
            &new.contributions_doc,
            ttl,
            0,
        )?;
        self.write(
            &lease,
            new.contributions_doc.as_str(),
            &Automerge::new(),
            contributions.automerge(),
        )
        .await?;
        self.fault_point(name);
        self.commit_process(&lease, &doc, &pd).await?;
        tracing::info!(process = %pid, member = %new.id, %role, by = %By(by), "member added");
        Ok(invitation)
    }

    /// Signs a token of `generation` for a member and puts the invitation together.
    #[allow(clippy::too_many_arguments)]
    fn invitation(
        &self,
        pid: &ProcessId,
        member: &MemberId,
        name: &str,
        role: Role,
        contributions_doc: &DocId,
        ttl: Duration,
        generation: u64,
    ) -> Result<Invitation, FacilitationError> {
        let (token, expires) = self
            .keys
            .issue_for(member, pid, role, ttl, generation)
            .map_err(internal)?;
        Ok(Invitation {
            process_id: pid.clone(),
            peer_id: peer_id_for(member, None),
            member_id: member.clone(),
            name: name.to_owned(),
            role,
            contributions_doc: contributions_doc.to_string(),
            token,
            expires_at: expires
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        })
    }

    /// The member of `pid` whose id is `id_or_name`, or else the one whose
    /// name it is (a sentence when none or several are).
    pub fn find_member(
        &self,
        pid: &ProcessId,
        id_or_name: &str,
    ) -> Result<Member, FacilitationError> {
        let info = self.summary(pid)?;
        let wanted = id_or_name.trim();
        if let Some(m) = info.members.get(&MemberId(wanted.to_owned())) {
            return Ok(m.clone());
        }
        let named: Vec<&Member> = info
            .members
            .values()
            .filter(|m| same_name(&m.name, wanted))
            .collect();
        match named.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(FacilitationError::NotFound(format!(
                "There is no member {wanted:?} in the process \"{}\". `klad-server members list --process {pid}` lists them.",
                info.title
            ))),
            several => Err(FacilitationError::BadRequest(format!(
                "{} members of this process are called {wanted:?}; name one by member id: {}.",
                several.len(),
                several
                    .iter()
                    .map(|m| format!("{} ({})", m.id, m.role))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The lowest token generation still valid for `member`.
    fn valid_generation(&self, member: &MemberId) -> u64 {
        self.valid_from
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(member)
            .copied()
            .unwrap_or(0)
    }

    /// True when `member`'s tokens of `generation` have been revoked.
    pub fn is_revoked(&self, member: &MemberId, generation: u64) -> bool {
        generation < self.valid_generation(member)
    }

    /// Revokes every token of `member` below generation `next` (one above
    /// the lowest valid now): stores it (the commit point), then refuses
    /// those tokens from now on and has the hub close the connections that
    /// came with one. Callers hold `serial`.
    async fn revoke_tokens(
        &self,
        pid: &ProcessId,
        member: &MemberId,
        next: u64,
    ) -> Result<(), FacilitationError> {
        let key = revocation_key(member)?;
        self.put_for(pid, key, next.to_string().into_bytes())
            .await?;
        self.valid_from
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(member.clone(), next);
        // Stored and refused from now on; a hub that is stopping closes every
        // connection anyway.
        let closed = match self.hubs.lease(pid) {
            Ok(lease) => lease
                .send(Cmd::Revoked {
                    member: member.clone(),
                    valid_from: next,
                })
                .await
                .is_ok(),
            Err(Stopped) => false,
        };
        if !closed {
            tracing::debug!(process = %pid, member = %member, "the hub stopped before it heard of a revocation");
        }
        Ok(())
    }

    /// Signs a new token for a member who is already in the process (theirs
    /// was lost, or expired). Earlier tokens keep working until they expire,
    /// unless `revoke_earlier`: then they are refused from now on and open
    /// connections that came with them are closed.
    pub async fn reissue(
        &self,
        pid: &ProcessId,
        by: Option<&MemberId>,
        id_or_name: &str,
        ttl: Duration,
        revoke_earlier: bool,
    ) -> Result<Reissued, FacilitationError> {
        let _serialised = self.serial.lock().await;
        self.verify_serialised(pid).await?;
        may_manage_members(&self.summary(pid)?, by)?;
        let m = self.find_member(pid, id_or_name)?;
        let generation = self
            .valid_generation(&m.id)
            .saturating_add(u64::from(revoke_earlier));
        // Signed first: earlier tokens are never withdrawn without the new
        // one that replaces them.
        let invitation = self.invitation(
            pid,
            &m.id,
            &m.name,
            m.role,
            &m.contributions_doc,
            ttl,
            generation,
        )?;
        if revoke_earlier {
            self.revoke_tokens(pid, &m.id, generation).await?;
        }
        tracing::info!(process = %pid, member = %m.id, role = %m.role, by = %By(by), earlier_tokens_revoked = revoke_earlier, "token reissued");
        Ok(Reissued {
            invitation,
            earlier_tokens_revoked: revoke_earlier,
        })
    }

    /// Withdraws every token `id_or_name` holds: they are refused from now
    /// on (at `/sync` and on this API), and open connections that came with
    /// them are closed. The member stays in the process with everything they
    /// wrote; [`Self::reissue`] gives them a token again.
    pub async fn revoke(
        &self,
        pid: &ProcessId,
        by: Option<&MemberId>,
        id_or_name: &str,
    ) -> Result<Revoked, FacilitationError> {
        let _serialised = self.serial.lock().await;
        self.verify_serialised(pid).await?;
        may_manage_members(&self.summary(pid)?, by)?;
        let m = self.find_member(pid, id_or_name)?;
        self.revoke_tokens(pid, &m.id, self.valid_generation(&m.id).saturating_add(1))
            .await?;
        tracing::info!(process = %pid, member = %m.id, role = %m.role, by = %By(by), "tokens revoked");
        Ok(Revoked {
            process_id: pid.clone(),
            member_id: m.id,
            name: m.name,
            role: m.role,
        })
    }

    /// Moves the process to `to`. Open connections get their new access at once.
    pub async fn set_phase(
        &self,
        pid: &ProcessId,
        by: Option<&MemberId>,
        to: Phase,
    ) -> Result<ProcessInfo, FacilitationError> {
        let _serialised = self.serial.lock().await;
        let (lease, doc) = self.open(pid).await?;
        let mut pd = ProcessDoc::from_automerge(doc.clone())?;
        pd.set_phase(now_ms(), by, to)?;
        let info = self.commit_process(&lease, &doc, &pd).await?;
        tracing::info!(process = %pid, phase = %to, by = %By(by), "phase changed");
        Ok(info)
    }

    /// Names `version` of the process's text and contributions ("Concept
    /// voor inspraak"), as the facilitator `by`; returns the new name's id.
    pub async fn name_version(
        &self,
        pid: &ProcessId,
        by: Option<&MemberId>,
        name: &str,
        version: &klad_core::Version,
    ) -> Result<String, FacilitationError> {
        let _serialised = self.serial.lock().await;
        let (lease, doc) = self.open(pid).await?;
        let mut pd = ProcessDoc::from_automerge(doc.clone())?;
        let id = pd.name_version(now_ms(), by, name, version)?;
        self.commit_process(&lease, &doc, &pd).await?;
        tracing::info!(process = %pid, version = %id, by = %By(by), "version named");
        Ok(id)
    }

    /// Records `actor` (hex Automerge actor id) as a device of `member`, with
    /// the device's Ed25519 public key if it has one, so that blame and
    /// history attribute that device's changes to them and its signatures
    /// can be checked. Does nothing if it is already theirs (with that key);
    /// refuses an actor id that belongs to someone else, or a second key.
    pub async fn register_device(
        &self,
        pid: &ProcessId,
        member: &MemberId,
        actor: &automerge::ActorId,
        key: Option<&[u8; 32]>,
    ) -> Result<(), FacilitationError> {
        let hex = actor.to_hex_string();
        if let Some(owner) = self.directory.claimant(pid, &hex)
            && &owner != member
        {
            return Err(FacilitationError::BadRequest(
                "This device id is already another member's; write with a device id of your own."
                    .into(),
            ));
        }
        let registered = |info: &ProcessInfo| -> Result<bool, FacilitationError> {
            let m = info.member(member)?;
            Ok(m.devices.contains(&hex)
                && key.is_none_or(|k| m.device_keys.get(&hex) == Some(&hex_of(k))))
        };
        if registered(&self.summary(pid)?)? {
            return Ok(());
        }
        let _serialised = self.serial.lock().await;
        if registered(&self.summary(pid)?)? {
            return Ok(());
        }
        let (lease, doc) = self.open(pid).await?;
        let mut pd = ProcessDoc::from_automerge(doc.clone())?;
        pd.register_device(now_ms(), member, actor, key)?;
        self.commit_process(&lease, &doc, &pd).await?;
        tracing::info!(process = %pid, member = %member, actor = %hex, signing_key = key.is_some(), "device registered");
        Ok(())
    }

    /// What the process document says now.
    pub fn summary(&self, pid: &ProcessId) -> Result<ProcessInfo, FacilitationError> {
        self.directory.process(pid).ok_or_else(|| {
            FacilitationError::NotFound(format!(
                "There is no process {pid} on this server. Check the process id."
            ))
        })
    }
}

/// A new member's id, contributions document and entry in the process
/// document, made before anything is written.
fn new_member(
    now: i64,
    pid: &ProcessId,
    name: &str,
    role: Role,
) -> Result<(NewMember, ContributionsDoc), FacilitationError> {
    let id = MemberId::random();
    let contributions = ContributionsDoc::create(now, pid, &id)?;
    let new = NewMember {
        id,
        name: name.to_owned(),
        role,
        contributions_doc: DocId(new_document_id()),
    };
    Ok((new, contributions))
}

/// Refuses unless `by` (a member; `None`: the operator) may manage members.
fn may_manage_members(info: &ProcessInfo, by: Option<&MemberId>) -> Result<(), FacilitationError> {
    if let Some(by) = by {
        let m = info.member(by)?;
        klad_core::may(m.role, info.phase, klad_core::Action::ManageMembers)
            .map_err(|r| FacilitationError::Forbidden(r.to_string()))?;
    }
    Ok(())
}

/// Lower-case hex, as the process document records keys.
fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_info(d: &Automerge) -> klad_core::Result<ProcessInfo> {
    ProcessDoc::from_automerge(d.clone())?.info()
}
