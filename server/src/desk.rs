//! The web desk's [`Backend`] (klad-web): the desk reads the server's
//! stored documents and acts through [`Facilitation`], the same calls (and
//! the same checks) as the HTTP API and the command line. Desk sessions are
//! kept in the server's store, under the hash of their cookie.

use std::collections::BTreeMap;
use std::sync::Arc;

use klad_core::rules::Role;
use klad_core::store::{Key, KvStore};
use klad_core::{ContributionsDoc, DocRole, MemberId, ProcessDoc, ProcessDocs, ProcessId, TextDoc};
use klad_web::{
    Backend, DeskError, InvitationProblem, Invited, NewInvitation, NewProcess, StoredSession,
};

use crate::auth::TokenError;
use crate::facilitation::{Facilitation, FacilitationError, Invitation, Opener, SERVER_PREFIX};
use crate::http::DEFAULT_TTL;

/// The desk's backend over the server's facilitation and store.
pub struct ServerDesk {
    facilitation: Arc<Facilitation>,
}

impl ServerDesk {
    /// A backend for the desk of this server.
    pub fn new(facilitation: Arc<Facilitation>) -> Self {
        Self { facilitation }
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

fn new_invitation(i: Invitation) -> NewInvitation {
    NewInvitation {
        member: i.member_id,
        name: i.name,
        role: i.role,
        token: i.token,
        expires_at: i.expires_at,
    }
}

fn session_key(id: &str) -> Result<Key, DeskError> {
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
