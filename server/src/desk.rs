//! The web desk's [`Backend`] (klad-web): the desk reads the server's
//! stored documents and acts through [`Facilitation`], the same calls (and
//! the same checks) as the HTTP API and the command line. Desk sessions are
//! kept in the server's store, under the hash of their cookie.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use automerge::ActorId;
use klad_core::document::KladDocument;
use klad_core::rules::Role;
use klad_core::{
    ContributionsDoc, DocRole, MemberId, ProcessDoc, ProcessDocs, ProcessId, Session, TextDoc,
};
use klad_store::{Key, KvStore};
use klad_sync::access::{Access, peer_id_for};
use klad_sync::authorship::{self, Sender, Signatures};
use klad_web::{
    Act, Backend, DeskError, InvitationProblem, Invited, LastSeen, NewInvitation, NewProcess,
    StoredSession,
};

use crate::auth::TokenError;
use crate::facilitation::{Facilitation, FacilitationError, Invitation, Opener, SERVER_PREFIX};
use crate::http::DEFAULT_TTL;

/// The desk's backend over the server's facilitation and store.
pub struct ServerDesk {
    facilitation: Arc<Facilitation>,
    /// Desk writes one at a time: each reads the member's document from the
    /// store, so the next must see the last one stored.
    writes: tokio::sync::Mutex<()>,
}

impl ServerDesk {
    /// A backend for the desk of this server.
    pub fn new(facilitation: Arc<Facilitation>) -> Self {
        Self {
            facilitation,
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// The member's desk device: the Automerge actor everything they write
    /// at the desk carries, made at their first write and kept in the store
    /// (like a phone's, it becomes theirs in the process document).
    async fn desk_actor(&self, member: &MemberId) -> Result<ActorId, DeskError> {
        let kv = self.facilitation.kv().clone();
        let key = Key::new([SERVER_PREFIX, "desk-device", member.as_str()]).map_err(store_error)?;
        tokio::task::spawn_blocking(move || {
            if let Some(bytes) = kv.get(&key)? {
                return Ok(ActorId::from(bytes));
            }
            let actor = ActorId::random();
            kv.put(&key, actor.to_bytes())?;
            Ok(actor)
        })
        .await
        .map_err(store_error)?
        .map_err(|e: klad_store::StoreError| store_error(e))
    }
}

fn desk_error(e: FacilitationError) -> DeskError {
    match e {
        FacilitationError::BadRequest(m) => DeskError::BadInput(m),
        FacilitationError::Forbidden(m) => DeskError::Refused(m),
        FacilitationError::NotFound(m) => DeskError::NotFound(m),
        FacilitationError::Conflict(m) => DeskError::Conflict(m),
        FacilitationError::Unavailable(m) => DeskError::Unavailable(m),
        FacilitationError::Internal(m) => DeskError::Internal(m),
    }
}

fn store_error(e: impl std::fmt::Display) -> DeskError {
    DeskError::Internal(format!(
        "The server could not read or write its store ({e}). Try again; if it keeps failing, check the server log."
    ))
}

fn core_error(e: klad_core::Error) -> DeskError {
    DeskError::Core(e)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The part of `new` that differs from `old`: characters `start..end` of
/// `old` become `middle` (the common beginning and end stay untouched, so
/// passages others commented on keep their place).
fn differing_part(old: &str, new: &str) -> (usize, usize, String) {
    let a: Vec<char> = old.chars().collect();
    let b: Vec<char> = new.chars().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let middle: String = b[prefix..b.len() - suffix].iter().collect();
    (prefix, a.len() - suffix, middle)
}

fn new_invitation(i: Invitation) -> NewInvitation {
    NewInvitation {
        member: i.member_id,
        name: i.name,
        role: i.role,
        token: i.token,
        expires_at: i.expires_at,
    }
}

/// Where a desk session is stored (the relay reads it to find the process).
pub(crate) fn session_key(id: &str) -> Result<Key, DeskError> {
    Key::new([SERVER_PREFIX, "desk-session", id]).map_err(store_error)
}

impl Backend for ServerDesk {
    fn check_invitation(&self, token: &str) -> Result<Invited, InvitationProblem> {
        let claims = self
            .facilitation
            .keys()
            .verify(token)
            .map_err(|e| match e {
                TokenError::Expired => InvitationProblem::Expired,
                TokenError::Revoked => InvitationProblem::Revoked,
                TokenError::UnknownMember => InvitationProblem::Unknown,
                _ => InvitationProblem::Invalid,
            })?;
        match self.facilitation.directory().membership(&claims.member) {
            Some((pid, _)) if pid == claims.process => {}
            _ => return Err(InvitationProblem::Unknown),
        }
        if self
            .facilitation
            .is_revoked(&claims.member, claims.generation)
        {
            return Err(InvitationProblem::Revoked);
        }
        Ok(Invited {
            process: claims.process,
            member: claims.member,
            role: claims.role,
            generation: claims.generation,
            expires_at: claims.expires_at,
        })
    }

    fn still_valid(&self, member: &MemberId, process: &ProcessId, generation: u64) -> bool {
        matches!(self.facilitation.directory().membership(member), Some((pid, _)) if &pid == process)
            && !self.facilitation.is_revoked(member, generation)
    }

    fn is_empty(&self) -> bool {
        self.facilitation.directory().process_ids().is_empty()
    }

    async fn process_docs(&self, process: &ProcessId) -> Result<ProcessDocs, DeskError> {
        let info = self.facilitation.directory().process(process).ok_or_else(|| {
            DeskError::NotFound(format!(
                "There is no process {process} on this server any more. Ask a facilitator for a new invitation."
            ))
        })?;
        let docs = self.facilitation.doc_store().clone();
        let documents = info.documents();
        let loaded = tokio::task::spawn_blocking(move || {
            documents
                .into_iter()
                .map(|(id, role)| docs.load(id.as_str()).map(|d| (id, role, d)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(store_error)?
        .map_err(store_error)?;
        let mut process_doc = None;
        let mut text = None;
        let mut contributions = BTreeMap::new();
        let missing = |id: &str| {
            DeskError::Internal(format!(
                "The server holds no copy of document {id} of this process. Check the server log; restore the data directory from a backup if documents were lost."
            ))
        };
        for (id, role, doc) in loaded {
            let Some(doc) = doc else {
                // A member's contributions document is written before the
                // member is added, so this is only the process or text.
                if matches!(role, DocRole::Contributions(_)) {
                    continue;
                }
                return Err(missing(id.as_str()));
            };
            let corrupt = |e: klad_core::Error| DeskError::Internal(e.to_string());
            match role {
                DocRole::Process => {
                    process_doc = Some(ProcessDoc::from_automerge(doc).map_err(corrupt)?)
                }
                DocRole::Text => text = Some(TextDoc::from_automerge(doc).map_err(corrupt)?),
                DocRole::Contributions(m) => {
                    contributions
                        .insert(m, ContributionsDoc::from_automerge(doc).map_err(corrupt)?);
                }
            }
        }
        Ok(ProcessDocs {
            process: process_doc.ok_or_else(|| missing(process.as_str()))?,
            text: text.ok_or_else(|| missing(info.text_doc.as_str()))?,
            contributions,
        })
    }

    async fn create_process(
        &self,
        title: &str,
        facilitator: &str,
    ) -> Result<(NewProcess, NewInvitation), DeskError> {
        let facilitation = self.facilitation.clone();
        let (title, name) = (title.to_owned(), facilitator.to_owned());
        // Run to the end in a task of its own, whatever the browser does.
        let (created, invitation) = tokio::spawn(async move {
            facilitation
                .create_process_for(
                    &title,
                    Opener {
                        name: &name,
                        ttl: DEFAULT_TTL,
                    },
                )
                .await
        })
        .await
        .map_err(store_error)?
        .map_err(desk_error)?;
        Ok((
            NewProcess {
                process: created.process_id,
                title: created.title,
            },
            new_invitation(invitation),
        ))
    }

    async fn invite(
        &self,
        process: &ProcessId,
        by: &MemberId,
        name: &str,
        role: Role,
    ) -> Result<NewInvitation, DeskError> {
        let facilitation = self.facilitation.clone();
        let (pid, by, name) = (process.clone(), by.clone(), name.to_owned());
        tokio::spawn(async move {
            facilitation
                .add_member(&pid, Some(&by), &name, role, DEFAULT_TTL, false)
                .await
        })
        .await
        .map_err(store_error)?
        .map(new_invitation)
        .map_err(desk_error)
    }

    async fn act(&self, process: &ProcessId, member: &MemberId, act: Act) -> Result<(), DeskError> {
        let _one_at_a_time = self.writes.lock().await;
        let actor = self.desk_actor(member).await?;
        let docs = self.process_docs(process).await?;
        let info = docs.process.info().map_err(core_error)?;
        let mine = info
            .member(member)
            .map_err(core_error)?
            .contributions_doc
            .clone();
        let before_mine = docs
            .contributions
            .get(member)
            .map(|d| d.automerge().clone())
            .ok_or_else(|| DeskError::Internal(format!("The server holds no copy of your contributions (document {mine}). Check the server log.")))?;
        let before_text = docs.text.automerge().clone();
        let now = now_ms();
        let mut session = Session::new(docs, member.clone(), actor);
        match &act {
            Act::Answer {
                thread,
                status,
                reason,
            } => session.answer(now, thread, *status, reason).map(|_| ()),
            Act::Reply { thread, text } => session.reply(now, thread, text).map(|_| ()),
            Act::Comment {
                article,
                start,
                end,
                text,
            } => session
                .comment(now, article, *start, *end, text)
                .map(|_| ()),
            Act::Suggest {
                article,
                start,
                end,
                replacement,
                text,
            } => session
                .suggest(now, article, *start, *end, replacement, text)
                .map(|_| ()),
            Act::OnBehalf { person, what } => session
                .enter_on_behalf(now, person, what.clone())
                .map(|_| ()),
            Act::Hide { target, reason } => session.hide(now, target, reason),
            Act::Unhide { target, reason } => session.unhide(now, target, reason),
            Act::MarkRead => session.mark_read(now),
            Act::EditBody { article, body } => {
                let current = session.docs().text.body(article).map_err(core_error)?;
                let (start, end, middle) = differing_part(&current, body);
                session.replace_range(now, article, start, end, &middle)
            }
        }
        .map_err(core_error)?;
        let after_mine = session
            .docs()
            .contributions
            .get(member)
            .map(|d| d.automerge().clone())
            .unwrap_or_default();
        let mut writes = Vec::new();
        for (doc_id, before, after) in [
            (
                info.text_doc.clone(),
                &before_text,
                session.docs().text.automerge(),
            ),
            (mine, &before_mine, &after_mine),
        ] {
            let changes: Vec<automerge::Change> = after.get_changes(&before.get_heads());
            if !changes.is_empty() {
                writes.push((doc_id, changes));
            }
        }
        // The same checks as a websocket of this member: their access to
        // each document, then each change's author (klad_sync::authorship).
        let directory = self.facilitation.directory();
        let peer = peer_id_for(member, None);
        let mut new_devices = Vec::new();
        for (doc_id, changes) in &writes {
            if directory.access(doc_id.as_str(), &peer) != Access::ReadWrite {
                return Err(DeskError::Refused(
                    "You may not write here now (your role or the phase does not allow it); nothing was saved.".into(),
                ));
            }
            let registry = directory.registry_of_doc(doc_id.as_str());
            let judged = authorship::inspect_changes(doc_id.to_string(), changes.clone()).judge(
                registry.as_deref(),
                Sender {
                    member,
                    may_register: true,
                },
                &Signatures::default(),
                &HashSet::new(),
            );
            if let Some((_, actor, refusal)) = judged.refused.first() {
                tracing::warn!(%member, document = %doc_id, %actor, reason = refusal.label(), "refused a change written at the desk");
                return Err(DeskError::Refused(
                    "This change could not be accepted as yours (its device belongs to someone else); nothing was saved. Sign out and in again, and tell the facilitator if it happens again.".into(),
                ));
            }
            new_devices.extend(judged.new_devices);
        }
        for new in &new_devices {
            // The desk's device becomes the member's, as a phone's does.
            if directory
                .claim(process, &new.to_hex_string(), member)
                .is_err()
            {
                return Err(DeskError::Refused(
                    "This desk's device is already someone else's; nothing was saved. Tell the facilitator.".into(),
                ));
            }
            self.facilitation
                .register_device(process, member, new, None)
                .await
                .map_err(desk_error)?;
        }
        if writes.is_empty() {
            return Ok(());
        }
        let lease = self
            .facilitation
            .hubs()
            .lease(process)
            .map_err(|e| DeskError::Unavailable(e.to_string()))?;
        for (doc_id, changes) in writes {
            match lease.write(doc_id.as_str(), changes).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(DeskError::Unavailable(
                        "The server could not save this; nothing was changed. Try again in a moment; if it keeps failing, tell the server's operator.".into(),
                    ));
                }
                Err(e) => return Err(DeskError::Unavailable(e.to_string())),
            }
        }
        Ok(())
    }

    async fn set_phase(
        &self,
        process: &ProcessId,
        by: &MemberId,
        phase: klad_core::rules::Phase,
    ) -> Result<(), DeskError> {
        let facilitation = self.facilitation.clone();
        let (pid, by) = (process.clone(), by.clone());
        tokio::spawn(async move { facilitation.set_phase(&pid, Some(&by), phase).await })
            .await
            .map_err(store_error)?
            .map(|_| ())
            .map_err(desk_error)
    }

    async fn name_version(
        &self,
        process: &ProcessId,
        by: &MemberId,
        name: &str,
    ) -> Result<(), DeskError> {
        // The version is what the server has stored now.
        let version = self.process_docs(process).await?.version();
        let facilitation = self.facilitation.clone();
        let (pid, by, name) = (process.clone(), by.clone(), name.to_owned());
        tokio::spawn(async move {
            facilitation
                .name_version(&pid, Some(&by), &name, &version)
                .await
        })
        .await
        .map_err(store_error)?
        .map(|_| ())
        .map_err(desk_error)
    }

    fn last_seen(&self, process: &ProcessId) -> LastSeen {
        let members = self
            .facilitation
            .directory()
            .process(process)
            .map(|info| {
                info.members
                    .keys()
                    .filter_map(|m| self.facilitation.last_seen(m).map(|t| (m.clone(), t)))
                    .collect()
            })
            .unwrap_or_default();
        LastSeen {
            since: self.facilitation.started_at(),
            members,
        }
    }

    async fn save_session(&self, id: &str, session: &StoredSession) -> Result<(), DeskError> {
        let kv = self.facilitation.kv().clone();
        let key = session_key(id)?;
        let bytes = serde_json::to_vec(session).map_err(store_error)?;
        tokio::task::spawn_blocking(move || kv.put(&key, &bytes))
            .await
            .map_err(store_error)?
            .map_err(store_error)
    }

    async fn load_session(&self, id: &str) -> Result<Option<StoredSession>, DeskError> {
        let kv = self.facilitation.kv().clone();
        let key = session_key(id)?;
        let bytes = tokio::task::spawn_blocking(move || kv.get(&key))
            .await
            .map_err(store_error)?
            .map_err(store_error)?;
        // A record this version cannot read is no session (sign in again).
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    async fn delete_session(&self, id: &str) -> Result<(), DeskError> {
        let kv = self.facilitation.kv().clone();
        let key = session_key(id)?;
        tokio::task::spawn_blocking(move || kv.delete(&key))
            .await
            .map_err(store_error)?
            .map_err(store_error)
    }
}
