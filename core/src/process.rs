//! The process document: title, phase, members and the ids of the other
//! documents. Only the server writes it, on a facilitator's authenticated
//! request; everyone reads it.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ROOT, ReadDoc, ScalarValue};
use serde::{Deserialize, Serialize};

use crate::document::{
    DocKind, get_i64, get_obj, get_str, heads_from_string, heads_to_string, klad_document,
    transact, write_header,
};
use crate::error::{Error, Result};
use crate::history::{NamedVersion, Version};
use crate::ids::{DocId, MemberId, ProcessId};
use crate::reason::Reason;
use crate::rules::{Action, Phase, Role, may};

/// A member of a process, as recorded in the process document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Stable member id.
    pub id: MemberId,
    /// The name shown next to everything they write.
    pub name: String,
    /// Their role in this process.
    pub role: Role,
    /// The id of the document holding their contributions.
    pub contributions_doc: DocId,
    /// Hex Automerge actor ids of their devices, sorted.
    pub devices: Vec<String>,
    /// The Ed25519 public key (hex, 32 bytes) of each device that has one,
    /// by hex actor id: it verifies the detached signatures a device puts on
    /// its changes, so that another phone can relay them.
    #[serde(default)]
    pub device_keys: BTreeMap<String, String>,
}

/// Everything the process document says, read at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Process id.
    pub id: ProcessId,
    /// Title of the ordinance being written.
    pub title: String,
    /// Current phase.
    pub phase: Phase,
    /// The id of the text document.
    pub text_doc: DocId,
    /// Members by id.
    pub members: BTreeMap<MemberId, Member>,
}

/// What a document is, within its process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DocRole {
    /// The process document (written by the server only).
    Process,
    /// The text document.
    Text,
    /// The contributions document of this member.
    Contributions(MemberId),
}

impl ProcessInfo {
    /// Every document of the process, the process document first, then the
    /// text, then each member's contributions (in member id order). The one
    /// list the server, the phones and the tools use.
    pub fn documents(&self) -> Vec<(DocId, DocRole)> {
        let mut out = Vec::with_capacity(self.members.len() + 2);
        out.push((DocId(self.id.to_string()), DocRole::Process));
        out.push((self.text_doc.clone(), DocRole::Text));
        for m in self.members.values() {
            out.push((
                m.contributions_doc.clone(),
                DocRole::Contributions(m.id.clone()),
            ));
        }
        out
    }

    /// Which of the process's documents `doc` is, if any.
    pub fn doc_role(&self, doc: &str) -> Option<DocRole> {
        if doc == self.id.as_str() {
            return Some(DocRole::Process);
        }
        if doc == self.text_doc.as_str() {
            return Some(DocRole::Text);
        }
        self.members
            .values()
            .find(|m| m.contributions_doc.as_str() == doc)
            .map(|m| DocRole::Contributions(m.id.clone()))
    }

    /// The member with `id`, or a sentence saying they are not a member.
    pub fn member(&self, id: &MemberId) -> Result<&Member> {
        self.members.get(id).ok_or_else(|| {
            Error::NotFound(Reason::NoSuchMember {
                member: id.clone(),
                process: self.title.clone(),
            })
        })
    }

    /// The member who owns a device with the given hex actor id.
    pub fn member_for_actor(&self, actor_hex: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.devices.iter().any(|d| d == actor_hex))
    }
}

/// What to record about a new member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMember {
    /// Their id (usually [`MemberId::random`]).
    pub id: MemberId,
    /// Display name; must not be blank.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// The id of their (already created) contributions document.
    pub contributions_doc: DocId,
}

/// The process document.
#[derive(Clone, Debug)]
pub struct ProcessDoc {
    doc: Automerge,
    /// Role and phase lookups, valid for the heads they were read at.
    memo: crate::document::Memo<Option<RoleMemo>>,
}

#[derive(Clone, Debug)]
struct RoleMemo {
    heads: Vec<automerge::ChangeHash>,
    member: MemberId,
    role: Role,
    phase: Phase,
}

klad_document!(ProcessDoc, DocKind::Process);

impl ProcessDoc {
    /// Creates the process document of a new process, in the drafting phase.
    pub fn create(
        now_ms: i64,
        id: &ProcessId,
        title: &str,
        text_doc: &DocId,
    ) -> Result<ProcessDoc> {
        let title = title.trim();
        if title.is_empty() {
            return Err(Error::InvalidInput(Reason::EmptyTitle));
        }
        let mut doc = Automerge::new();
        transact(
            &mut doc,
            now_ms,
            format!("create process \"{title}\""),
            |tx| {
                write_header(tx, DocKind::Process)?;
                tx.put(ROOT, "id", id.as_str())?;
                tx.put(ROOT, "title", title)?;
                tx.put(ROOT, "phase", Phase::Drafting.as_str())?;
                tx.put(ROOT, "text_doc", text_doc.as_str())?;
                tx.put(ROOT, "created_at", ScalarValue::Int(now_ms))?;
                tx.put_object(ROOT, "members", ObjType::Map)?;
                Ok(())
            },
        )?;
        Ok(ProcessDoc {
            doc,
            memo: Default::default(),
        })
    }

    /// Reads the whole process document.
    pub fn info(&self) -> Result<ProcessInfo> {
        let d = &self.doc;
        let missing = |_field: &str| Error::NotFound(Reason::ProcessNotHere);
        let id = get_str(d, &ROOT, "id").ok_or_else(|| missing("id"))?;
        let title = get_str(d, &ROOT, "title").ok_or_else(|| missing("title"))?;
        let phase = get_str(d, &ROOT, "phase")
            .and_then(|p| Phase::parse(&p))
            .ok_or_else(|| missing("phase"))?;
        let text_doc = get_str(d, &ROOT, "text_doc").ok_or_else(|| missing("text document id"))?;
        let members_obj =
            get_obj(d, &ROOT, "members", ObjType::Map).ok_or_else(|| missing("member list"))?;
        let mut members = BTreeMap::new();
        for item in d.map_range(&members_obj, ..) {
            let mid = MemberId(item.key.to_string());
            let obj = item.id();
            let (Some(name), Some(role), Some(cdoc)) = (
                get_str(d, &obj, "name"),
                get_str(d, &obj, "role").and_then(|r| Role::parse(&r)),
                get_str(d, &obj, "contributions_doc"),
            ) else {
                continue;
            };
            let mut devices: Vec<String> = get_obj(d, &obj, "devices", ObjType::Map)
                .map(|dev| d.keys(&dev).collect())
                .unwrap_or_default();
            devices.sort();
            let device_keys = get_obj(d, &obj, "device_keys", ObjType::Map)
                .map(|keys| {
                    d.keys(&keys)
                        .filter_map(|actor| Some((actor.clone(), get_str(d, &keys, &actor)?)))
                        .collect()
                })
                .unwrap_or_default();
            members.insert(
                mid.clone(),
                Member {
                    id: mid,
                    name,
                    role,
                    contributions_doc: DocId(cdoc),
                    devices,
                    device_keys,
                },
            );
        }
        Ok(ProcessInfo {
            id: ProcessId(id),
            title,
            phase,
            text_doc: DocId(text_doc),
            members,
        })
    }

    /// The role of `member` and the current phase, read without parsing the
    /// whole member list (this is on the path of every keystroke batch).
    pub fn role_and_phase(&self, member: &MemberId) -> Result<(Role, Phase)> {
        let heads = self.doc.get_heads();
        if let Some(m) = self.memo.lock().as_ref()
            && m.heads == heads
            && &m.member == member
        {
            return Ok((m.role, m.phase));
        }
        let d = &self.doc;
        let phase = get_str(d, &ROOT, "phase").and_then(|p| Phase::parse(&p));
        let role = get_obj(d, &ROOT, "members", ObjType::Map)
            .and_then(|ms| get_obj(d, &ms, member.as_str(), ObjType::Map))
            .and_then(|m| get_str(d, &m, "role"))
            .and_then(|r| Role::parse(&r));
        match (role, phase) {
            (Some(r), Some(p)) => {
                *self.memo.lock() = Some(RoleMemo {
                    heads,
                    member: member.clone(),
                    role: r,
                    phase: p,
                });
                Ok((r, p))
            }
            (None, Some(_)) => Err(self.info()?.member(member).err().unwrap_or_else(|| {
                Error::Corrupt(Reason::NoValidRole {
                    member: member.clone(),
                })
            })),
            _ => Err(Error::NotFound(Reason::ProcessNotHere)),
        }
    }

    /// When the process was created (ms since the Unix epoch).
    pub fn created_at(&self) -> Option<i64> {
        get_i64(&self.doc, &ROOT, "created_at")
    }

    /// Checks that `by` (a facilitator, or `None` for the server operator on the
    /// command line) may take `action` now.
    fn check_steward(
        &self,
        info: &ProcessInfo,
        by: Option<&MemberId>,
        action: Action,
    ) -> Result<()> {
        if let Some(by) = by {
            let m = info.member(by)?;
            may(m.role, info.phase, action)?;
        }
        Ok(())
    }

    /// Adds a member. `by` is the facilitator asking (or `None` for the operator).
    pub fn add_member(
        &mut self,
        now_ms: i64,
        by: Option<&MemberId>,
        new: &NewMember,
    ) -> Result<()> {
        let info = self.info()?;
        self.check_steward(&info, by, Action::ManageMembers)?;
        let name = new.name.trim();
        if name.is_empty() {
            return Err(Error::InvalidInput(Reason::EmptyMemberName));
        }
        if info.members.contains_key(&new.id) {
            return Err(Error::InvalidInput(Reason::AlreadyMember {
                member: new.id.clone(),
            }));
        }
        let members = get_obj(&self.doc, &ROOT, "members", ObjType::Map)
            .ok_or(Error::Corrupt(Reason::NoMemberList))?;
        transact(
            &mut self.doc,
            now_ms,
            format!("add {} {name}", new.role),
            |tx| {
                let m = tx.put_object(&members, new.id.as_str(), ObjType::Map)?;
                tx.put(&m, "name", name)?;
                tx.put(&m, "role", new.role.as_str())?;
                tx.put(&m, "contributions_doc", new.contributions_doc.as_str())?;
                tx.put(&m, "joined_at", ScalarValue::Int(now_ms))?;
                tx.put_object(&m, "devices", ObjType::Map)?;
                tx.put_object(&m, "device_keys", ObjType::Map)?;
                Ok(())
            },
        )
    }

    /// Records that `actor` is a device of `member`, so that their changes are
    /// attributed to them in blame and history, with the device's Ed25519
    /// public key (`key`, 32 bytes) if it has one. Registering a device again
    /// changes nothing; a key can be added to a device registered without
    /// one, but never replaced (a device keeps its key for life).
    pub fn register_device(
        &mut self,
        now_ms: i64,
        member: &MemberId,
        actor: &ActorId,
        key: Option<&[u8; 32]>,
    ) -> Result<()> {
        let info = self.info()?;
        let me = info.member(member)?;
        let hex = actor.to_hex_string();
        let key_hex = key.map(|k| hex_string(k));
        let mut known = false;
        if let Some(owner) = info.member_for_actor(&hex) {
            if &owner.id != member {
                return Err(Error::InvalidInput(Reason::DeviceTaken {
                    owner: owner.name.clone(),
                }));
            }
            known = true;
        }
        let old_key = me.device_keys.get(&hex);
        match (&key_hex, old_key) {
            (Some(new), Some(old)) if new != old => {
                return Err(Error::InvalidInput(Reason::DeviceKeyChanged));
            }
            (Some(_), Some(_)) | (None, _) if known => return Ok(()),
            _ => {}
        }
        let members = get_obj(&self.doc, &ROOT, "members", ObjType::Map)
            .ok_or(Error::Corrupt(Reason::NoMemberList))?;
        let damaged = || {
            Error::Corrupt(Reason::MemberEntryDamaged {
                member: member.clone(),
            })
        };
        let m = get_obj(&self.doc, &members, member.as_str(), ObjType::Map).ok_or_else(damaged)?;
        let devices = get_obj(&self.doc, &m, "devices", ObjType::Map).ok_or_else(damaged)?;
        // Members added before device keys existed have no key map yet; the
        // server is the only writer, so creating it here cannot race.
        let keys = get_obj(&self.doc, &m, "device_keys", ObjType::Map);
        transact(
            &mut self.doc,
            now_ms,
            format!("register device of {member}"),
            |tx| {
                if !known {
                    tx.put(&devices, hex.as_str(), ScalarValue::Int(now_ms))?;
                }
                if let Some(k) = &key_hex {
                    let keys = match &keys {
                        Some(keys) => keys.clone(),
                        None => tx.put_object(&m, "device_keys", ObjType::Map)?,
                    };
                    tx.put(&keys, hex.as_str(), k.as_str())?;
                }
                Ok(())
            },
        )
    }

    /// Moves the process to `to`, which must be the next phase. `by` is the
    /// facilitator asking (or `None` for the operator).
    pub fn set_phase(&mut self, now_ms: i64, by: Option<&MemberId>, to: Phase) -> Result<()> {
        let info = self.info()?;
        self.check_steward(&info, by, Action::ChangePhase)?;
        if info.phase.next() != Some(to) {
            return Err(Error::InvalidInput(match info.phase.next() {
                Some(next) => Reason::PhaseNotNext {
                    phase: info.phase,
                    next,
                    to,
                },
                None => Reason::PhaseIsLast {
                    phase: info.phase,
                    to,
                },
            }));
        }
        transact(&mut self.doc, now_ms, format!("phase {to}"), |tx| {
            tx.put(ROOT, "phase", to.as_str())?;
            Ok(())
        })
    }
}

impl ProcessDoc {
    /// Gives `version` a name ("Concept voor inspraak"); returns the named
    /// version's id. `by` is the facilitator asking (or `None` for the
    /// operator); [`Action::NameVersion`] decides. The server's operation,
    /// like every write to this document.
    pub fn name_version(
        &mut self,
        now_ms: i64,
        by: Option<&MemberId>,
        name: &str,
        version: &Version,
    ) -> Result<String> {
        let info = self.info()?;
        self.check_steward(&info, by, Action::NameVersion)?;
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::InvalidInput(Reason::EmptyVersionName));
        }
        let id = uuid::Uuid::new_v4().to_string();
        // Processes created before named versions have no map yet; the server
        // is the only writer, so creating it here cannot race.
        let versions = get_obj(&self.doc, &ROOT, "named_versions", ObjType::Map);
        transact(&mut self.doc, now_ms, format!("name version {id}"), |tx| {
            let versions = match &versions {
                Some(v) => v.clone(),
                None => tx.put_object(ROOT, "named_versions", ObjType::Map)?,
            };
            let v = tx.put_object(&versions, id.as_str(), ObjType::Map)?;
            tx.put(&v, "name", name)?;
            if let Some(by) = by {
                tx.put(&v, "by", by.as_str())?;
            }
            tx.put(&v, "at", now_ms)?;
            tx.put(&v, "text", heads_to_string(&version.text).as_str())?;
            let cs = tx.put_object(&v, "contributions", ObjType::Map)?;
            for (m, heads) in &version.contributions {
                tx.put(&cs, m.as_str(), heads_to_string(heads).as_str())?;
            }
            Ok(())
        })?;
        Ok(id)
    }

    /// Every named version, oldest first. An entry that cannot be read (not
    /// written by Klad) is left out.
    pub fn named_versions(&self) -> Vec<NamedVersion> {
        let d = &self.doc;
        let Some(versions) = get_obj(d, &ROOT, "named_versions", ObjType::Map) else {
            return Vec::new();
        };
        let mut out: Vec<NamedVersion> = d
            .keys(&versions)
            .filter_map(|id| {
                let v = get_obj(d, &versions, &id, ObjType::Map)?;
                let cs = get_obj(d, &v, "contributions", ObjType::Map)?;
                let contributions = d
                    .keys(&cs)
                    .map(|m| {
                        let heads = heads_from_string(&get_str(d, &cs, &m)?)?;
                        Some((MemberId(m), heads))
                    })
                    .collect::<Option<_>>()?;
                Some(NamedVersion {
                    name: get_str(d, &v, "name")?,
                    by: get_str(d, &v, "by").map(MemberId),
                    at_ms: get_i64(d, &v, "at")?,
                    version: Version {
                        text: heads_from_string(&get_str(d, &v, "text")?)?,
                        contributions,
                    },
                    id,
                })
            })
            .collect();
        out.sort_by(|a, b| (a.at_ms, &a.id).cmp(&(b.at_ms, &b.id)));
        out
    }

    /// The named version `id`.
    pub fn named_version(&self, id: &str) -> Result<NamedVersion> {
        self.named_versions()
            .into_iter()
            .find(|v| v.id == id)
            .ok_or_else(|| Error::NotFound(Reason::NoSuchNamedVersion { id: id.to_owned() }))
    }
}

/// Lower-case hex of `bytes`.
fn hex_string(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
