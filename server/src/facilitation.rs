//! What facilitators (and the operator on the command line) do: open a
//! process, invite members, move the phase on, read a summary. The process
//! document is only ever written here, through klad-core's `ProcessDoc`.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use automerge::Automerge;
use klad_core::document::KladDocument;
use klad_core::rules::{Phase, Role};
use klad_core::store::{Key, KvStore};
use klad_core::{
    ContributionsDoc, DocId, MemberId, NewMember, ProcessDoc, ProcessId, ProcessInfo, TextDoc,
};
use samod::{DocHandle, DocumentId, Repo};
use serde::Serialize;

use crate::auth::Keys;
use crate::directory::{Directory, peer_id_for};
use crate::repos::{Lease, Repos};
use crate::storage::SERVER_PREFIX;

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
    /// The server failed.
    #[error("{0}")]
    Internal(String),
}

impl From<klad_core::Error> for FacilitationError {
    fn from(e: klad_core::Error) -> Self {
        match e {
            klad_core::Error::NotAllowed(m) => FacilitationError::Forbidden(m),
            klad_core::Error::NotFound(m) => FacilitationError::NotFound(m),
            klad_core::Error::InvalidInput(m) => FacilitationError::BadRequest(m),
            other => FacilitationError::Internal(other.to_string()),
        }
    }
}

fn stopped() -> FacilitationError {
    FacilitationError::Internal("The server is shutting down; try again when it is back.".into())
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

/// Facilitation over the process repos, a key/value store and a directory.
/// Every operation leases its process's repo (so it is loaded, or loaded
/// again) for as long as it runs.
pub struct Facilitation<S: KvStore> {
    repos: Arc<Repos>,
    kv: S,
    directory: Arc<Directory>,
    keys: Arc<Keys>,
    /// Serialises writes to process documents.
    serial: tokio::sync::Mutex<()>,
    /// Processes whose directory entry has been checked against their
    /// document since the server started (see [`Facilitation::verify`]).
    verified: std::sync::Mutex<HashSet<ProcessId>>,
}

impl<S: KvStore> Facilitation<S> {
    /// Wires facilitation to the process repos and stores.
    pub fn new(repos: Arc<Repos>, kv: S, directory: Arc<Directory>, keys: Arc<Keys>) -> Self {
        Self {
            repos,
            kv,
            directory,
            keys,
            serial: tokio::sync::Mutex::new(()),
            verified: std::sync::Mutex::new(HashSet::new()),
        }
    }

    /// The process repos.
    pub fn repos(&self) -> &Arc<Repos> {
        &self.repos
    }

    /// The signing keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The directory.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Fills the directory from the process records in the store, at start.
    /// No process is loaded: each record holds what its process document
    /// said when the server last wrote it, and a process's repo starts when
    /// it is first used. (A record of the first format, holding only the
    /// title, is replaced by loading its process once.)
    pub async fn load_all(&self) -> anyhow::Result<usize> {
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
            // The lease ends with this iteration: the process stays loaded
            // until it has been idle for the idle period.
            let lease = self.repos.lease(&pid).await.map_err(|_| stopped())?;
            match find(lease.repo(), &pid).await {
                Ok(handle) => {
                    let info = handle.with_document(|d| read_info(d))?;
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

    /// Records what a process document says: in the store first (so that the
    /// next start knows it without loading the process), then in the directory.
    async fn publish(&self, info: ProcessInfo) -> Result<(), FacilitationError> {
        let kv = self.kv.clone();
        let key = process_list_key(&info.id)?;
        let bytes = serde_json::to_vec(&info).map_err(internal)?;
        tokio::task::spawn_blocking(move || kv.put(&key, &bytes))
            .await
            .map_err(internal)?
            .map_err(internal)?;
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

    /// Makes sure the directory agrees with the process document, once per
    /// process after a start. A record is written right after its document
    /// changes; a server killed in between starts with a record one change
    /// behind, and the document (what every member syncs) wins. Called with
    /// the process leased, before a connection or request uses it.
    pub async fn verify(&self, pid: &ProcessId, lease: &Lease) -> Result<(), FacilitationError> {
        if self.is_verified(pid) {
            return Ok(());
        }
        let _serialised = self.serial.lock().await;
        self.verify_serialised(pid, lease).await
    }

    /// [`Self::verify`], for callers that hold `serial`.
    async fn verify_serialised(
        &self,
        pid: &ProcessId,
        lease: &Lease,
    ) -> Result<(), FacilitationError> {
        if self.is_verified(pid) {
            return Ok(());
        }
        let handle = find(lease.repo(), pid).await?;
        let info = handle.with_document(|d| read_info(d))?;
        if self.directory.process(pid).as_ref() != Some(&info) {
            tracing::warn!(process = %pid, "the process record lagged its document; the document wins");
            self.publish(info).await?;
        }
        self.verified_now(pid);
        Ok(())
    }

    /// Leases the repo of a known process and finds its process document in it.
    async fn handle(&self, pid: &ProcessId) -> Result<(Lease, DocHandle), FacilitationError> {
        if self.directory.process(pid).is_none() {
            return Err(FacilitationError::NotFound(format!(
                "There is no process {pid} on this server. Check the process id."
            )));
        }
        let lease = self.repos.lease(pid).await.map_err(|_| stopped())?;
        // Callers hold `serial`.
        self.verify_serialised(pid, &lease).await?;
        let h = find(lease.repo(), pid).await?;
        Ok((lease, h))
    }

    /// Opens a new process in the drafting phase, with no members.
    pub async fn create_process(&self, title: &str) -> Result<CreatedProcess, FacilitationError> {
        if title.trim().is_empty() {
            return Err(FacilitationError::BadRequest(
                "A process needs a title; give the ordinance a name.".into(),
            ));
        }
        let _serialised = self.serial.lock().await;
        let now = now_ms();
        // A new process gets a repo of its own; its id is that of the
        // process document created in it.
        let repo = self.repos.fresh().await.map_err(|_| stopped())?;
        let process = match repo.create(Automerge::new()).await {
            Ok(p) => p,
            Err(_) => {
                repo.stop().await;
                return Err(stopped());
            }
        };
        let pid = ProcessId(process.document_id().to_string());
        let lease = match self.repos.adopt(&pid, repo.clone()) {
            Ok(l) => l,
            Err(_) => {
                repo.stop().await;
                return Err(stopped());
            }
        };
        let text = TextDoc::create(now, &pid)?;
        let text_handle = lease
            .repo()
            .create(text.automerge().clone())
            .await
            .map_err(|_| stopped())?;
        let text_id = DocId(text_handle.document_id().to_string());
        let created = ProcessDoc::create(now, &pid, title, &text_id)?;
        let info = process.with_document(|d| {
            let mut theirs = created.automerge().clone();
            d.merge(&mut theirs).map_err(klad_core::Error::from)?;
            read_info(d)
        })?;
        self.publish(info.clone()).await?;
        self.verified_now(&pid);
        drop(lease);
        tracing::info!(process = %pid, title = %info.title, "process created");
        Ok(CreatedProcess {
            process_doc: pid.to_string(),
            process_id: pid,
            title: info.title,
            text_doc: text_id.to_string(),
        })
    }

    /// Adds a member (with their contributions document) and signs their token.
    /// `by` is the facilitator asking, `None` for the operator.
    pub async fn add_member(
        &self,
        pid: &ProcessId,
        by: Option<&MemberId>,
        name: &str,
        role: Role,
        ttl: Duration,
    ) -> Result<Invitation, FacilitationError> {
        let _serialised = self.serial.lock().await;
        let (lease, handle) = self.handle(pid).await?;
        // Check before creating a document that would be left over.
        let info = self
            .directory
            .process(pid)
            .ok_or_else(|| FacilitationError::NotFound(format!("There is no process {pid}.")))?;
        if let Some(by) = by {
            let m = info.member(by)?;
            klad_core::may(m.role, info.phase, klad_core::Action::ManageMembers)
                .map_err(|r| FacilitationError::Forbidden(r.message))?;
        }
        if name.trim().is_empty() {
            return Err(FacilitationError::BadRequest(
                "A member needs a name that others will see next to their words; give a non-empty name.".into(),
            ));
        }
        let now = now_ms();
        let member = MemberId::random();
        let contributions = ContributionsDoc::create(now, pid, &member)?;
        let c_handle = lease
            .repo()
            .create(contributions.automerge().clone())
            .await
            .map_err(|_| stopped())?;
        let c_id = DocId(c_handle.document_id().to_string());
        let new = NewMember {
            id: member.clone(),
            name: name.to_owned(),
            role,
            contributions_doc: c_id.clone(),
        };
        let info = handle.with_document(|d| edit_process(d, |pd| pd.add_member(now, by, &new)))?;
        self.publish(info).await?;
        let (token, expires) = self
            .keys
            .issue_for(&member, pid, role, ttl)
            .map_err(internal)?;
        tracing::info!(process = %pid, member = %member, %role, by = ?by, "member added");
        Ok(Invitation {
            process_id: pid.clone(),
            peer_id: peer_id_for(&member, None),
            member_id: member,
            name: name.trim().to_owned(),
            role,
            contributions_doc: c_id.to_string(),
            token,
            expires_at: expires
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
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
        let (_lease, handle) = self.handle(pid).await?;
        let info =
            handle.with_document(|d| edit_process(d, |pd| pd.set_phase(now_ms(), by, to)))?;
        self.publish(info.clone()).await?;
        tracing::info!(process = %pid, phase = %to, by = ?by, "phase changed");
        Ok(info)
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
        let (_lease, handle) = self.handle(pid).await?;
        let info = handle.with_document(|d| {
            edit_process(d, |pd| pd.register_device(now_ms(), member, actor, key))
        })?;
        self.publish(info).await?;
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

async fn find(repo: &Repo, pid: &ProcessId) -> Result<DocHandle, FacilitationError> {
    let not_found = || {
        FacilitationError::NotFound(format!(
            "There is no process {pid} on this server. Check the process id."
        ))
    };
    let id = DocumentId::from_str(pid.as_str()).map_err(|_| not_found())?;
    repo.find(id)
        .await
        .map_err(|_| stopped())?
        .ok_or_else(not_found)
}

/// Lower-case hex, as the process document records keys.
fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_info(d: &Automerge) -> klad_core::Result<ProcessInfo> {
    ProcessDoc::from_automerge(d.clone())?.info()
}

/// Runs a klad-core operation on a copy of the process document and applies
/// the change it made to samod's document, so samod stores and syncs it.
fn edit_process(
    d: &mut Automerge,
    op: impl FnOnce(&mut ProcessDoc) -> klad_core::Result<()>,
) -> klad_core::Result<ProcessInfo> {
    let mut pd = ProcessDoc::from_automerge(d.clone())?;
    op(&mut pd)?;
    // `a.get_changes_added(b)` is the changes in `b` that `a` lacks.
    let new = d.get_changes_added(pd.automerge());
    d.apply_changes(new)?;
    read_info(d)
}
