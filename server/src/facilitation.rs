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
use klad_core::store::{DocStore, Key, KvStore, SledStore};
use klad_core::{
    ContributionsDoc, DocId, Member, MemberId, NewMember, ProcessDoc, ProcessId, ProcessInfo,
    TextDoc,
};
use serde::Serialize;

use crate::auth::Keys;
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

impl From<Stopped> for FacilitationError {
    fn from(e: Stopped) -> Self {
        FacilitationError::Internal(e.to_string())
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
    docs: Arc<DocStore<SledStore>>,
    kv: SledStore,
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
}

impl Facilitation {
    /// Wires facilitation to the process hubs and stores.
    pub fn new(
        hubs: Arc<Hubs>,
        docs: Arc<DocStore<SledStore>>,
        kv: SledStore,
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

    /// Fills the directory from the process records in the store, at start.
    /// No process is loaded: each record holds what its process document
    /// said when the server last wrote it, and a process's hub starts when
    /// it is first used. (A record of the first format, holding only the
    /// title, is replaced by reading its process document once.)
    pub async fn load_all(&self) -> anyhow::Result<usize> {
        let kv = self.kv.clone();
        let prefix = Key::new([SERVER_PREFIX, "revoked"])?;
        let revocations = tokio::task::spawn_blocking(move || kv.scan_prefix(&prefix)).await??;
        {
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
        }
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

    /// Writes a change of the process document, records what it says now,
    /// and has the hub decide access again.
    async fn write_process(
        &self,
        lease: &Lease,
        before: &Automerge,
        after: &ProcessDoc,
    ) -> Result<ProcessInfo, FacilitationError> {
        let pid = lease.process().clone();
        self.write(lease, pid.as_str(), before, after.automerge())
            .await?;
        let info = after.info()?;
        self.publish(info.clone()).await?;
        lease.send(Cmd::AccessChanged).await?;
        Ok(info)
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
        let pid = ProcessId(new_document_id());
        let lease = self.hubs.lease(&pid)?;
        let text = TextDoc::create(now, &pid)?;
        let text_id = DocId(new_document_id());
        let empty = Automerge::new();
        self.write(&lease, text_id.as_str(), &empty, text.automerge())
            .await?;
        let created = ProcessDoc::create(now, &pid, title, &text_id)?;
        let info = self.write_process(&lease, &empty, &created).await?;
        self.verified_now(&pid);
        tracing::info!(process = %pid, title = %info.title, "process created");
        Ok(CreatedProcess {
            process_doc: pid.to_string(),
            process_id: pid,
            title: info.title,
            text_doc: text_id.to_string(),
        })
    }

    /// Adds a member (with their contributions document) and signs their token.
    /// `by` is the facilitator asking, `None` for the operator. A name that
    /// a member of the process already has is refused unless `again` (two
    /// people of the same name): inviting someone twice by mistake would
    /// split their words over two members.
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
        // Check before creating a document that would be left over.
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
        let member = MemberId::random();
        let contributions = ContributionsDoc::create(now, pid, &member)?;
        let c_id = DocId(new_document_id());
        self.write(
            &lease,
            c_id.as_str(),
            &Automerge::new(),
            contributions.automerge(),
        )
        .await?;
        let new = NewMember {
            id: member.clone(),
            name: name.to_owned(),
            role,
            contributions_doc: c_id.clone(),
        };
        let mut pd = ProcessDoc::from_automerge(doc.clone())?;
        pd.add_member(now, by, &new)?;
        self.write_process(&lease, &doc, &pd).await?;
        tracing::info!(process = %pid, member = %member, %role, by = %By(by), "member added");
        self.invitation(pid, &new.id, name.trim(), role, &c_id, ttl, 0)
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

    /// Revokes every token `member` holds now: stores the new lowest valid
    /// generation (before anything relies on it), then closes the open
    /// connections that came with a revoked token. Returns that generation.
    /// Callers hold `serial`.
    async fn revoke_tokens(
        &self,
        pid: &ProcessId,
        member: &MemberId,
    ) -> Result<u64, FacilitationError> {
        let next = self.valid_generation(member) + 1;
        let kv = self.kv.clone();
        let key = revocation_key(member)?;
        tokio::task::spawn_blocking(move || kv.put(&key, next.to_string().as_bytes()))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        self.valid_from
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(member.clone(), next);
        let lease = self.hubs.lease(pid)?;
        lease
            .send(Cmd::Revoked {
                member: member.clone(),
                valid_from: next,
            })
            .await?;
        Ok(next)
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
        let generation = if revoke_earlier {
            self.revoke_tokens(pid, &m.id).await?
        } else {
            self.valid_generation(&m.id)
        };
        tracing::info!(process = %pid, member = %m.id, role = %m.role, by = %By(by), earlier_tokens_revoked = revoke_earlier, "token reissued");
        Ok(Reissued {
            invitation: self.invitation(
                pid,
                &m.id,
                &m.name,
                m.role,
                &m.contributions_doc,
                ttl,
                generation,
            )?,
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
        self.revoke_tokens(pid, &m.id).await?;
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
        let info = self.write_process(&lease, &doc, &pd).await?;
        tracing::info!(process = %pid, phase = %to, by = %By(by), "phase changed");
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
        self.write_process(&lease, &doc, &pd).await?;
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

/// Refuses unless `by` (a member; `None`: the operator) may manage members.
fn may_manage_members(info: &ProcessInfo, by: Option<&MemberId>) -> Result<(), FacilitationError> {
    if let Some(by) = by {
        let m = info.member(by)?;
        klad_core::may(m.role, info.phase, klad_core::Action::ManageMembers)
            .map_err(|r| FacilitationError::Forbidden(r.message))?;
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
