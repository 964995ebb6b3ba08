//! What the three kinds of Klad document share: a schema header, loading with
//! clear errors, merging, and small typed accessors over Automerge values.

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{
    ActorId, Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value,
};

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Error, Result};
use crate::reason::Reason;

/// The newest schema version this build writes and understands.
pub const SCHEMA_VERSION: u64 = 1;

/// Root key naming the kind of Klad document (`process`, `text`, `contributions`).
pub(crate) const KIND_KEY: &str = "klad";
/// Root key holding the schema version (an unsigned integer).
pub(crate) const VERSION_KEY: &str = "schema_version";

/// The three kinds of Klad document.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    /// Title, phase, members, document ids. Written by the server only.
    Process,
    /// The ordinance's articles. Written by drafters while drafting.
    Text,
    /// One member's contributions. Written by that member only.
    Contributions,
}

impl DocKind {
    /// The stored name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Process => "process",
            DocKind::Text => "text",
            DocKind::Contributions => "contributions",
        }
    }
}

/// Checks the header of a document that claims to be of `kind`.
///
/// An empty document (no changes yet: created locally while waiting for sync)
/// is accepted; a non-empty one must carry the right kind and a schema version
/// no newer than [`SCHEMA_VERSION`].
pub(crate) fn check_header(doc: &Automerge, kind: DocKind) -> Result<()> {
    if doc.get_heads().is_empty() {
        return Ok(());
    }
    let found_kind = get_str(doc, &ROOT, KIND_KEY);
    let version = get_u64(doc, &ROOT, VERSION_KEY);
    match (found_kind.as_deref(), version) {
        (None, _) | (_, None) => Err(Error::Corrupt(Reason::NotKladDocument { kind })),
        (Some(k), _) if k != kind.as_str() => Err(Error::Corrupt(Reason::WrongDocumentKind {
            found: k.to_owned(),
            expected: kind,
        })),
        (_, Some(v)) if v > SCHEMA_VERSION => Err(Error::NewerSchema {
            kind,
            found: v,
            supported: SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
}

/// Loads Automerge bytes, turning a load failure into a sentence.
pub(crate) fn load_bytes(bytes: &[u8], kind: DocKind) -> Result<Automerge> {
    if bytes.is_empty() {
        return Err(Error::Corrupt(Reason::DocumentEmpty { kind }));
    }
    let unreadable = |detail: String| Error::Corrupt(Reason::DocumentUnreadable { kind, detail });
    crate::chunks::check_chunks(bytes).map_err(unreadable)?;
    let doc = catch_unwind(AssertUnwindSafe(|| Automerge::load(bytes)))
        .map_err(|_| unreadable("made the Automerge library fail".into()))?
        .map_err(|e| unreadable(format!("are not a valid Automerge document ({e})")))?;
    check_header(&doc, kind)?;
    Ok(doc)
}

/// Writes the header of a new document of `kind`.
pub(crate) fn write_header(tx: &mut Transaction<'_>, kind: DocKind) -> Result<()> {
    tx.put(ROOT, KIND_KEY, kind.as_str())?;
    tx.put(ROOT, VERSION_KEY, ScalarValue::Uint(SCHEMA_VERSION))?;
    Ok(())
}

/// Commit options for one domain operation: who-independent (the actor is set
/// on the document), with the time and a short message for the history view.
pub(crate) fn commit(now_ms: i64, message: impl Into<String>) -> CommitOptions {
    // Automerge change times are Unix seconds (what JavaScript peers write too).
    CommitOptions::default()
        .with_time(now_ms.div_euclid(1000))
        .with_message(message.into())
}

/// Runs `f` in one transaction committed as one change with `message`.
pub(crate) fn transact<T>(
    doc: &mut Automerge,
    now_ms: i64,
    message: impl Into<String>,
    f: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let message = message.into();
    doc.transact_with(|_| commit(now_ms, message), f)
        .map(|ok| ok.result)
        .map_err(|failure| failure.error)
}

pub(crate) fn get_str<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        (Value::Object(ObjType::Text), id) => doc.text(&id).ok(),
        _ => None,
    }
}

pub(crate) fn get_u64<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<u64> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Uint(u) => Some(*u),
            ScalarValue::Int(i) if *i >= 0 => Some(*i as u64),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn get_i64<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<i64> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Int(i) => Some(*i),
            ScalarValue::Uint(u) => i64::try_from(*u).ok(),
            ScalarValue::Timestamp(t) => Some(*t),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn get_bool<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<bool> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Boolean(b) => Some(*b),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn get_bytes<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<Vec<u8>> {
    match doc.get(obj, key).ok()?? {
        (Value::Scalar(s), _) => match s.as_ref() {
            ScalarValue::Bytes(b) => Some(b.clone()),
            _ => None,
        },
        _ => None,
    }
}

pub(crate) fn get_obj<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str, typ: ObjType) -> Option<ObjId> {
    match doc.get(obj, key).ok()?? {
        (Value::Object(t), id) if t == typ => Some(id),
        _ => None,
    }
}

/// The hex form of a list of heads, sorted, comma-separated (stored in read marks).
pub(crate) fn heads_to_string(heads: &[ChangeHash]) -> String {
    let mut hs: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
    hs.sort();
    hs.join(",")
}

/// Parses [`heads_to_string`]; `None` if any part is not a change hash.
pub(crate) fn heads_from_string(s: &str) -> Option<Vec<ChangeHash>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',').map(|h| h.parse().ok()).collect()
}

/// Operations every Klad document wrapper offers the sync and storage layers.
pub trait KladDocument {
    /// Which kind of document this is.
    const KIND: DocKind;
    /// The Automerge document, read-only.
    fn automerge(&self) -> &Automerge;
    /// The Automerge document for merging changes from elsewhere. Writing
    /// through it bypasses the rules: only sync and storage layers use it.
    fn automerge_mut(&mut self) -> &mut Automerge;

    /// The current heads.
    fn heads(&self) -> Vec<ChangeHash> {
        self.automerge().get_heads()
    }
    /// The whole document as compact bytes.
    fn save(&self) -> Vec<u8> {
        self.automerge().save()
    }
    /// The changes made after `heads`, as bytes (for incremental storage and sync).
    fn save_after(&self, heads: &[ChangeHash]) -> Vec<u8> {
        self.automerge().save_after(heads)
    }
    /// Applies bytes produced by [`KladDocument::save`] or [`KladDocument::save_after`]
    /// elsewhere. Refuses (and keeps nothing of) bytes that are damaged or of a
    /// newer schema.
    fn load_incremental(&mut self, bytes: &[u8]) -> Result<()> {
        let unreadable = |detail: String| {
            Error::Corrupt(Reason::ChangesUnreadable {
                kind: Self::KIND,
                detail,
            })
        };
        crate::chunks::check_chunks(bytes).map_err(unreadable)?;
        let mut probe = self.automerge().clone();
        catch_unwind(AssertUnwindSafe(|| probe.load_incremental(bytes)))
            .map_err(|_| unreadable("made the Automerge library fail".into()))?
            .map_err(|e| unreadable(format!("are not valid Automerge changes ({e})")))?;
        check_header(&probe, Self::KIND)?;
        *self.automerge_mut() = probe;
        Ok(())
    }
    /// Merges everything `other` has into this document.
    fn merge(&mut self, other: &Self) -> Result<()>
    where
        Self: Sized,
    {
        let changes = self.automerge().get_changes_added(other.automerge());
        self.automerge_mut()
            .apply_changes(changes)
            .map_err(Error::from)?;
        check_header(self.automerge(), Self::KIND)
    }
    /// Sets the actor id used for changes made through this wrapper.
    fn set_actor(&mut self, actor: ActorId) {
        self.automerge_mut().set_actor(actor);
    }

    /// Takes the document back to `heads` (an earlier state of it): the
    /// changes made since leave it again, as when storing them failed.
    /// Changes from elsewhere merged since leave it too, so call it only
    /// right after making the changes to undo.
    fn rollback(&mut self, heads: &[ChangeHash]) -> Result<()> {
        if heads == self.automerge().get_heads().as_slice() {
            return Ok(());
        }
        let actor = self.automerge().get_actor().clone();
        let mut then = self
            .automerge()
            .fork_at(heads)
            .map_err(|_| Error::NotFound(Reason::VersionNotHere { kind: Self::KIND }))?;
        then.set_actor(actor);
        *self.automerge_mut() = then;
        Ok(())
    }
}

/// A small cache of lookups into a document (object ids, a member's role),
/// shared safely between threads. Cleared whenever changes from elsewhere are
/// applied; entries that depend on the document's state also carry its heads.
#[derive(Default)]
pub(crate) struct Memo<T>(std::sync::Mutex<T>);

impl<T: Default> Memo<T> {
    pub(crate) fn clear(&self) {
        *self.lock() = T::default();
    }
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        // A panic while holding the lock leaves at worst a stale cache entry
        // that is re-validated on use; recover the guard.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Clone> Clone for Memo<T> {
    fn clone(&self) -> Self {
        Memo(std::sync::Mutex::new(
            self.0.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        ))
    }
}

impl<T> std::fmt::Debug for Memo<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

macro_rules! klad_document {
    ($ty:ident, $kind:expr) => {
        impl $crate::document::KladDocument for $ty {
            const KIND: $crate::document::DocKind = $kind;
            fn automerge(&self) -> &automerge::Automerge {
                &self.doc
            }
            fn automerge_mut(&mut self) -> &mut automerge::Automerge {
                // Changes from elsewhere may change what the memo remembers.
                self.memo.clear();
                &mut self.doc
            }
        }

        impl $ty {
            /// Opens a document from saved bytes, checking its kind and schema version.
            pub fn load(bytes: &[u8]) -> $crate::error::Result<Self> {
                Ok(Self {
                    doc: $crate::document::load_bytes(bytes, $kind)?,
                    memo: Default::default(),
                })
            }
            /// Wraps an Automerge document (for example one held by the sync layer),
            /// checking its kind and schema version.
            pub fn from_automerge(doc: automerge::Automerge) -> $crate::error::Result<Self> {
                $crate::document::check_header(&doc, $kind)?;
                Ok(Self {
                    doc,
                    memo: Default::default(),
                })
            }
            /// An empty placeholder, to be filled by sync.
            pub fn empty() -> Self {
                Self {
                    doc: automerge::Automerge::new(),
                    memo: Default::default(),
                }
            }
            /// True while nothing of the document has arrived on this device.
            pub fn is_empty(&self) -> bool {
                self.doc.get_heads().is_empty()
            }
            /// The document as it was at `heads` (a version of it, as
            /// [`KladDocument::heads`] gave it then), to read the past with the
            /// same methods as the present. Fails with
            /// [`Reason::VersionNotHere`](crate::Reason::VersionNotHere) when
            /// this device lacks a change `heads` names.
            pub fn at(&self, heads: &[automerge::ChangeHash]) -> $crate::error::Result<Self> {
                let doc = self.doc.fork_at(heads).map_err(|_| {
                    $crate::error::Error::NotFound($crate::reason::Reason::VersionNotHere {
                        kind: $kind,
                    })
                })?;
                Ok(Self {
                    doc,
                    memo: Default::default(),
                })
            }
        }
    };
}
pub(crate) use klad_document;
