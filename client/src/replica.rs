//! The phone's replica of one process: the member's session over the
//! process's documents, their typing, what of it is stored, and what the
//! server has acknowledged.
//!
//! The replica does no IO. Every operation that must be on disk before it
//! returns hands back a [`Write`]: the caller stores its entries in one atomic
//! batch and reports the outcome with [`Replica::written`], which applies the
//! operation for good (and says what to sync and tell the app, [`Effects`])
//! or takes it back. One write is outstanding at a time; the caller holds the
//! replica (under its lock) from the operation to `written`.
//!
//! # Invariants
//!
//! - A keystroke is accepted only after its journal record is appended and
//!   synced ([`klad_store::journal`]). The batch that stores a commit also stores
//!   the highest sequence number it holds (`<prefix>/journal-done/<process>`),
//!   and a replay skips the records it covers; the file is emptied only
//!   after that. So every keystroke whose call returned is replayed or in a
//!   stored change, never both, never neither. (Journal entries kept in the
//!   store by earlier versions are removed in the batch of their change.)
//! - A write that fails leaves the documents as they were before the
//!   operation (and the typing pending), and the caller gets the error;
//!   except a keystroke's: the keystroke is taken in memory all the same
//!   (the text is not lost, the effects say why it is not saved,
//!   [`Effects::not_saved`]), and what its write would have stored is kept
//!   and stored with the next keystroke's write, by [`Replica::save_kept`],
//!   or inside the next stored commit — whichever works first. Until then
//!   it is in memory only: the caller must say so.
//! - The text a journal entry was typed against is stored before the entry
//!   ([`Typing`] replays it there after a crash).
//! - Remote changes are merged in memory only; the sync engine stores them.
//!   Pending typing keeps the version it was typed into, so a merge never
//!   moves it.
//! - The unsynced count covers this device's changes the server has not
//!   acknowledged, plus one while typing is pending; it is recounted only when
//!   a document or an acknowledgement may have moved (every write, merge and
//!   acknowledgement moves the replica's generation).

use std::collections::{BTreeMap, HashMap, HashSet};

use automerge::{ActorId, Automerge, Change, ChangeHash};
use klad_core::{
    ContributionsDoc, DocRole, KladDocument, MemberId, ProcessDoc, ProcessDocs, ProcessInfo,
    Session, Splice, TextDoc,
};
use klad_store::{Key, StoreError, incremental_value};

use crate::typing::{Commit, Keystroke, Prepared, Typing};

/// What can go wrong in the replica: a domain error (with klad-core's
/// sentence) or the store's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule, a missing document, bad input: klad-core's sentence.
    #[error(transparent)]
    Core(#[from] klad_core::Error),
    /// Reading or writing the data directory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record of the replica's own in the data directory cannot be read.
    #[error("{0}")]
    Damaged(String),
}

/// Result with the replica's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads what the data directory holds (at open only).
pub trait Disk {
    /// The stored document `doc_id`, if any.
    fn load(&mut self, doc_id: &str) -> Result<Option<Automerge>, StoreError>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan(&mut self, prefix: &Key) -> Result<Vec<(Key, Vec<u8>)>, StoreError>;
    /// The typing journal file's bytes (empty if there is none); see
    /// [`klad_store::journal`].
    fn journal(&mut self) -> Result<Vec<u8>, StoreError>;
}

/// Who and where: the process, the member, this device, and the first key
/// component of the replica's own records.
#[derive(Clone, Debug)]
pub struct Config {
    /// The process id (= its process document's id).
    pub process_id: String,
    /// The member this phone acts for.
    pub member: MemberId,
    /// This device's Automerge actor.
    pub actor: ActorId,
    /// First key component of the journal and acknowledgement records
    /// (never an automerge-repo document id).
    pub prefix: String,
}

/// What to store, then report with [`Replica::written`]: first `puts` and
/// `deletes` in one atomic batch (if any), then `journal` appended to the
/// typing journal file and synced (if any). A write never holds both a
/// commit and a journal record, so either part failing is one failure.
#[must_use = "store the write, then report it with Replica::written"]
#[derive(Debug)]
pub struct Write {
    /// Entries to put.
    pub puts: Vec<(Key, Vec<u8>)>,
    /// Entries to remove.
    pub deletes: Vec<Key>,
    /// A record to append to the typing journal (framed: [`klad_store::journal`]).
    pub journal: Option<Vec<u8>>,
    /// Heads of each writable document before the operation, to go back to
    /// if storing fails.
    undo: Vec<(String, Vec<ChangeHash>)>,
    /// Typing turned into changes by this write, oldest first.
    commits: Vec<Commit>,
    /// Documents stored by this write, with the heads stored up to.
    saved: Vec<(String, Vec<ChangeHash>)>,
    /// Changes for the sync engine once stored.
    sync: Vec<(String, Vec<Change>)>,
    /// A keystroke to accept once stored.
    keystroke: Option<Keystroke>,
    /// A commit made so that the keystroke can be taken next.
    retry: bool,
    /// The write carries the kept parts of keystrokes whose writes failed
    /// (and nothing else but, maybe, one more keystroke).
    carries_kept: bool,
    now_ms: i64,
}

/// Keystrokes taken in memory although their writes failed (a full disk):
/// what those writes would have stored, in order.
#[derive(Debug, Default)]
struct Kept {
    puts: Vec<(Key, Vec<u8>)>,
    saved: Vec<(String, Vec<ChangeHash>)>,
    sync: Vec<(String, Vec<Change>)>,
    /// Journal records, framed, oldest first.
    journal: Vec<u8>,
}

impl Write {
    /// True when there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.deletes.is_empty() && self.journal.is_none()
    }
}

/// What the caller does after an operation.
#[derive(Debug, Default)]
pub struct Effects {
    /// Hand these changes of these documents to the sync engine.
    pub sync: Vec<(String, Vec<Change>)>,
    /// Something the app shows changed: tell it.
    pub documents_changed: bool,
    /// Typing started: call [`Replica::commit`] at the end of the typing
    /// window (the caller's setting), so it becomes one change.
    pub schedule_commit: bool,
    /// The process document changed: the process's documents and members
    /// are now these (find new documents, update the sync gate).
    pub process_info: Option<ProcessInfo>,
    /// Every journal record is inside a stored change: the journal file may
    /// be emptied (best effort; replay skips what is stored anyway).
    pub truncate_journal: bool,
    /// The keystroke asked for could not be taken yet: typing into another
    /// version was committed first. Call [`Replica::keystroke`] again.
    pub retry_keystroke: bool,
    /// The keystroke was taken in memory, but its write failed (why, as a
    /// sentence): tell the user it is not saved, and call
    /// [`Replica::save_kept`] now and then until it is.
    pub not_saved: Option<String>,
}

impl Effects {
    /// Adds `other`'s effects to these (for a caller that made two writes).
    pub fn merge(&mut self, other: Effects) {
        self.sync.extend(other.sync);
        self.documents_changed |= other.documents_changed;
        self.schedule_commit |= other.schedule_commit;
        if other.process_info.is_some() {
            self.process_info = other.process_info;
        }
        self.truncate_journal |= other.truncate_journal;
        self.retry_keystroke = other.retry_keystroke;
        if other.not_saved.is_some() {
            self.not_saved = other.not_saved;
        }
    }
}

/// What the server has acknowledged, and what the unsynced count was
/// computed from.
#[derive(Debug, Default)]
struct Ledger {
    /// Per document: heads the server has acknowledged (after storing them).
    acked: HashMap<String, Vec<ChangeHash>>,
    /// The replica's generation the count was made at, and the count.
    unsynced: Option<(u64, u32)>,
}

/// The phone's replica of one process.
#[derive(Debug)]
pub struct Replica {
    config: Config,
    session: Session,
    /// Heads up to which each document's changes are known to be stored.
    saved: HashMap<String, Vec<ChangeHash>>,
    typing: Typing,
    ledger: Ledger,
    /// The process's documents, as the process document lists them.
    docs: Vec<(String, DocRole)>,
    /// A write is outstanding.
    writing: bool,
    /// Moves whenever a document or the ledger may have changed.
    generation: u64,
    /// Journal entries kept in the store (written before the journal file
    /// existed), removed with the change that holds them.
    legacy: HashSet<u64>,
    /// Keystrokes in memory only (their writes failed), if any.
    kept: Option<Kept>,
}

impl Replica {
    /// The key prefix of the typing journal of `process_id`.
    pub fn journal_prefix(prefix: &str, process_id: &str) -> Result<Key> {
        Ok(Key::new([prefix, "pending", process_id])?)
    }

    /// The key of the highest journal sequence number inside a stored change.
    pub fn journal_done_key(prefix: &str, process_id: &str) -> Result<Key> {
        Ok(Key::new([prefix, "journal-done", process_id])?)
    }

    /// The key prefix of the acknowledgement records of `process_id`.
    pub fn acked_prefix(prefix: &str, process_id: &str) -> Result<Key> {
        Ok(Key::new([prefix, "acked", process_id])?)
    }

    /// Opens the replica from what `disk` holds: the process's documents,
    /// the acknowledgement records and the typing journal (replayed at the
    /// first [`commit`](Replica::commit), which the caller makes right away).
    pub fn open(config: Config, disk: &mut dyn Disk) -> Result<Replica> {
        let mut saved = HashMap::new();
        let process = match disk.load(&config.process_id)? {
            Some(d) => ProcessDoc::from_automerge(d)?,
            None => ProcessDoc::empty(),
        };
        saved.insert(config.process_id.clone(), process.heads());
        let info = process.info().ok();
        let mut text = TextDoc::empty();
        let mut contributions = BTreeMap::new();
        if let Some(info) = &info {
            if let Some(d) = disk.load(info.text_doc.as_str())? {
                text = TextDoc::from_automerge(d)?;
            }
            saved.insert(info.text_doc.to_string(), text.heads());
            for m in info.members.values() {
                if let Some(d) = disk.load(m.contributions_doc.as_str())? {
                    let doc = ContributionsDoc::from_automerge(d)?;
                    saved.insert(m.contributions_doc.to_string(), doc.heads());
                    contributions.insert(m.id.clone(), doc);
                }
            }
        }
        let session = Session::new(
            ProcessDocs {
                process,
                text,
                contributions,
            },
            config.member.clone(),
            config.actor.clone(),
        );
        let mut ledger = Ledger::default();
        let acked = Self::acked_prefix(&config.prefix, &config.process_id)?;
        for (k, v) in disk.scan(&acked)? {
            if let [_, _, _, doc] = k.components() {
                let heads = String::from_utf8_lossy(&v)
                    .split(',')
                    .filter_map(|h| h.parse().ok())
                    .collect();
                ledger.acked.insert(doc.clone(), heads);
            }
        }
        let damaged = |e: serde_json::Error| {
            Error::Damaged(format!(
                "A typing record in the data directory is damaged ({e}). Restore the directory from a backup."
            ))
        };
        // Keystrokes up to `done` are inside stored changes.
        let done_key = Self::journal_done_key(&config.prefix, &config.process_id)?;
        let done: Option<u64> = disk
            .scan(&done_key)?
            .into_iter()
            .find(|(k, _)| *k == done_key)
            .and_then(|(_, v)| String::from_utf8_lossy(&v).parse().ok());
        let mut journal: BTreeMap<u64, Keystroke> = BTreeMap::new();
        let mut legacy = HashSet::new();
        let pending = Self::journal_prefix(&config.prefix, &config.process_id)?;
        for (k, v) in disk.scan(&pending)? {
            let Some(seq) = k.components().get(3).and_then(|s| s.parse::<u64>().ok()) else {
                continue;
            };
            let mut entry: Keystroke = serde_json::from_slice(&v).map_err(damaged)?;
            entry.seq = seq;
            legacy.insert(seq);
            journal.insert(seq, entry);
        }
        for record in klad_store::journal::decode(&disk.journal()?) {
            let entry: Keystroke = serde_json::from_slice(record).map_err(damaged)?;
            if done.is_none_or(|d| entry.seq > d) {
                journal.insert(entry.seq, entry);
            }
        }
        let typing = Typing::restore(
            journal.into_values().collect(),
            &session.docs().text.heads(),
        )
        .with_next_seq(done.map_or(0, |d| d + 1));
        let mut replica = Replica {
            config,
            session,
            saved,
            typing,
            ledger,
            docs: Vec::new(),
            writing: false,
            kept: None,
            generation: 0,
            legacy,
        };
        replica.docs = replica.list_docs(info.as_ref());
        Ok(replica)
    }

    /// The process's documents as `info` (if the process document has
    /// arrived) lists them; before that, only the process document.
    fn list_docs(&self, info: Option<&ProcessInfo>) -> Vec<(String, DocRole)> {
        match info {
            Some(info) => info
                .documents()
                .into_iter()
                .map(|(d, r)| (d.to_string(), r))
                .collect(),
            None => vec![(self.config.process_id.clone(), DocRole::Process)],
        }
    }

    /// The session (documents and views). Commit stale typing
    /// ([`Replica::is_stale`]) before reading the text from it.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The process's documents known so far (ids and roles).
    pub fn documents(&self) -> &[(String, DocRole)] {
        &self.docs
    }

    /// The Automerge document `doc_id` of the process, if it is one of its
    /// documents and here.
    pub fn document(&self, doc_id: &str) -> Option<&Automerge> {
        let role = self.role_of(doc_id)?;
        let docs = self.session.docs();
        Some(match role {
            DocRole::Process => docs.process.automerge(),
            DocRole::Text => docs.text.automerge(),
            DocRole::Contributions(m) => docs.contributions.get(&m)?.automerge(),
        })
    }

    fn role_of(&self, doc_id: &str) -> Option<DocRole> {
        self.docs
            .iter()
            .find(|(id, _)| id == doc_id)
            .map(|(_, r)| r.clone())
    }

    fn text_doc_id(&self) -> Option<String> {
        self.docs
            .iter()
            .find(|(_, r)| *r == DocRole::Text)
            .map(|(id, _)| id.clone())
    }

    /// True once the process, text and this member's contributions documents are here.
    pub fn is_complete(&self) -> bool {
        let docs = self.session.docs();
        !docs.process.is_empty()
            && !docs.text.is_empty()
            && docs
                .contributions
                .get(&self.config.member)
                .is_some_and(|d| !d.is_empty())
    }

    // ---- writes ----

    fn check_idle(&self) -> Result<()> {
        if self.writing {
            return Err(Error::Core(klad_core::Error::InvalidInput(
                klad_core::Reason::WriteInProgress,
            )));
        }
        Ok(())
    }

    /// A new write; `all`: the operation may change any writable document
    /// (otherwise only the text).
    fn begin(&mut self, now_ms: i64, all: bool) -> Result<Write> {
        self.check_idle()?;
        let mut undo = Vec::new();
        for (doc_id, role) in &self.docs {
            if !all && *role != DocRole::Text {
                continue;
            }
            if let Some(doc) = self.document(doc_id) {
                undo.push((doc_id.clone(), doc.get_heads()));
            }
        }
        Ok(Write {
            puts: Vec::new(),
            deletes: Vec::new(),
            journal: None,
            undo,
            commits: Vec::new(),
            saved: Vec::new(),
            sync: Vec::new(),
            keystroke: None,
            retry: false,
            carries_kept: false,
            now_ms,
        })
    }

    /// Takes an unstored write back: the typing is pending again and every
    /// document is as before the operation.
    fn undo(&mut self, w: Write) -> Result<()> {
        self.generation += 1;
        for c in w.commits.into_iter().rev() {
            self.typing.abandon(&mut self.session, c)?;
        }
        let docs = self.session.docs_mut();
        for (doc_id, heads) in w.undo {
            match self.docs.iter().find(|(id, _)| *id == doc_id).map(|d| &d.1) {
                Some(DocRole::Text) => docs.text.rollback(&heads)?,
                Some(DocRole::Contributions(m)) => {
                    if let Some(d) = docs.contributions.get_mut(m) {
                        d.rollback(&heads)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Turns all pending typing into changes, into `w`, with the record that
    /// the journal's keystrokes up to the last of them are stored.
    fn commit_into(&mut self, w: &mut Write) -> Result<()> {
        let mut last = None;
        while !self.typing.is_empty() {
            if self.text_doc_id().is_none() {
                return Err(Error::Core(klad_core::Error::NotFound(
                    klad_core::Reason::TextNotHere,
                )));
            }
            let Some(c) = self.typing.commit(&mut self.session, w.now_ms)? else {
                break;
            };
            for seq in &c.seqs {
                if self.legacy.contains(seq) {
                    w.deletes.push(self.journal_key(*seq)?);
                }
                last = last.max(Some(*seq));
            }
            w.commits.push(c);
        }
        if let Some(seq) = last {
            let key = Self::journal_done_key(&self.config.prefix, &self.config.process_id)?;
            w.puts.push((key, seq.to_string().into_bytes()));
        }
        Ok(())
    }

    /// Adds every writable document's unstored changes to `w`.
    fn persist_into(&self, w: &mut Write, only_text: bool) -> Result<()> {
        for (doc_id, role) in &self.docs {
            if *role == DocRole::Process || (only_text && *role != DocRole::Text) {
                continue;
            }
            let Some(doc) = self.document(doc_id) else {
                continue;
            };
            let since = self.saved.get(doc_id).map_or(&[][..], Vec::as_slice);
            if doc.get_heads() == since {
                continue;
            }
            let changes = doc.get_changes(since);
            if let Some(entry) = incremental_value(doc_id, &changes)? {
                w.puts.push(entry);
            }
            w.saved.push((doc_id.clone(), doc.get_heads()));
            w.sync.push((doc_id.clone(), changes));
        }
        Ok(())
    }

    /// Runs `f` on a write begun at `now_ms`, undoing everything if it fails.
    fn build<R>(
        &mut self,
        now_ms: i64,
        all: bool,
        f: impl FnOnce(&mut Self, &mut Write) -> Result<R>,
    ) -> Result<(R, Write)> {
        let mut w = self.begin(now_ms, all)?;
        match f(self, &mut w) {
            Ok(r) => {
                self.writing = true;
                Ok((r, w))
            }
            Err(e) => {
                self.undo(w)?;
                Err(e)
            }
        }
    }

    /// Commits the pending typing (one change per run of keystrokes in one
    /// field, each placed at the version it was typed into). `None` when
    /// nothing is pending. Also replays the journal after an open.
    pub fn commit(&mut self, now_ms: i64) -> Result<Option<Write>> {
        self.check_idle()?;
        if self.typing.is_empty() {
            return Ok(None);
        }
        let ((), w) = self.build(now_ms, false, |r, w| {
            r.commit_into(w)?;
            r.persist_into(w, true)
        })?;
        Ok(Some(w))
    }

    /// One session operation (a comment, a new article, ...): commits the
    /// typing first, then runs `op`, and stores every change.
    pub fn operate<R>(
        &mut self,
        now_ms: i64,
        op: impl FnOnce(&mut Session, i64) -> klad_core::Result<R>,
    ) -> Result<(R, Write)> {
        self.build(now_ms, true, |r, w| {
            r.commit_into(w)?;
            let out = op(&mut r.session, now_ms)?;
            r.persist_into(w, false)?;
            Ok(out)
        })
    }

    /// One keystroke (or paste) into an article's heading or body, typed
    /// into `version` of the text (`None`: the text as shown now). Checked
    /// here and by klad-core; the write holds its journal record (and the
    /// text it was typed against, if that is not stored yet). When typing
    /// into another version is pending, the write commits that instead and
    /// its effects say [`retry_keystroke`](Effects::retry_keystroke).
    pub fn keystroke(
        &mut self,
        now_ms: i64,
        version: Option<&[ChangeHash]>,
        article: &str,
        heading: bool,
        splice: Splice,
    ) -> Result<Write> {
        let ((), w) = self.build(now_ms, false, |r, w| {
            let prepared = r
                .typing
                .prepare(&r.session, version, article, heading, splice)?;
            let k = match prepared {
                Prepared::Append(k) => k,
                Prepared::CommitFirst => {
                    // Typing into another version is pending: this write
                    // commits it; the caller asks again.
                    r.commit_into(w)?;
                    r.persist_into(w, true)?;
                    w.retry = true;
                    return Ok(());
                }
            };
            if r.typing.is_empty() {
                // A replay applies the entry at the text it names: store it first.
                r.persist_into(w, true)?;
            }
            let bytes = serde_json::to_vec(&k).map_err(|e| {
                Error::Damaged(format!("The keystroke could not be recorded ({e})."))
            })?;
            let record = klad_store::journal::encode(&bytes);
            // Keystrokes kept in memory go first, in order.
            match r.kept.take() {
                Some(kept) => {
                    w.carries_kept = true;
                    let mut puts = kept.puts;
                    puts.append(&mut w.puts);
                    w.puts = puts;
                    let mut saved = kept.saved;
                    saved.append(&mut w.saved);
                    w.saved = saved;
                    let mut sync = kept.sync;
                    sync.append(&mut w.sync);
                    w.sync = sync;
                    let mut journal = kept.journal;
                    journal.extend(record);
                    w.journal = Some(journal);
                }
                None => w.journal = Some(record),
            }
            w.keystroke = Some(k);
            Ok(())
        })?;
        Ok(w)
    }

    /// A write of what keystrokes taken in memory only would have stored
    /// (see [`Effects::not_saved`]), or `None` when nothing is kept. On
    /// failure it stays kept.
    pub fn save_kept(&mut self, now_ms: i64) -> Result<Option<Write>> {
        self.check_idle()?;
        let Some(kept) = self.kept.take() else {
            return Ok(None);
        };
        let ((), mut w) = self.build(now_ms, false, |_, _| Ok(()))?;
        w.carries_kept = true;
        w.puts = kept.puts;
        w.saved = kept.saved;
        w.sync = kept.sync;
        w.journal = Some(kept.journal);
        Ok(Some(w))
    }

    /// True while keystrokes are in memory only (their writes failed).
    pub fn has_kept(&self) -> bool {
        self.kept.is_some()
    }

    /// The outcome of storing `w`: on success the operation holds (and the
    /// effects say what follows); on failure it is taken back and the
    /// store's error returned.
    pub fn written(&mut self, w: Write, stored: Result<(), StoreError>) -> Result<Effects> {
        self.writing = false;
        if let Err(e) = stored {
            if w.keystroke.is_some() && w.commits.is_empty() {
                return self.keep(w, e);
            }
            if w.carries_kept {
                // `save_kept` failed: it stays kept.
                self.kept = Some(Kept {
                    puts: w.puts,
                    saved: w.saved,
                    sync: w.sync,
                    journal: w.journal.unwrap_or_default(),
                });
                return Err(Error::Store(e));
            }
            self.undo(w)?;
            return Err(Error::Store(e));
        }
        let Write {
            commits,
            saved,
            sync,
            keystroke,
            retry,
            ..
        } = w;
        let committed = !commits.is_empty();
        if !commits.is_empty() || !sync.is_empty() {
            self.generation += 1;
        }
        let mut effects = Effects {
            documents_changed: !commits.is_empty() || !sync.is_empty() || keystroke.is_some(),
            sync,
            ..Effects::default()
        };
        for c in commits {
            for seq in &c.seqs {
                self.legacy.remove(seq);
            }
            self.typing.committed(c);
        }
        effects.truncate_journal = committed && self.typing.is_empty();
        effects.retry_keystroke = retry;
        for (doc_id, heads) in saved {
            self.saved.insert(doc_id, heads);
        }
        if let Some(k) = keystroke {
            effects.schedule_commit = self.typing.is_empty();
            self.typing.accept(&self.session.docs().text, k)?;
        }
        if self.typing.is_empty() {
            // Kept keystrokes are typing until committed: a stored commit
            // holds them (and the text they were typed into).
            self.kept = None;
        }
        Ok(effects)
    }

    /// A keystroke's write failed: the keystroke is taken in memory all the
    /// same, and what the write would have stored is kept for later.
    fn keep(&mut self, w: Write, e: StoreError) -> Result<Effects> {
        let Write {
            puts,
            saved,
            sync,
            journal,
            keystroke,
            ..
        } = w;
        self.generation += 1;
        self.kept = Some(Kept {
            puts,
            saved,
            sync,
            journal: journal.unwrap_or_default(),
        });
        let mut effects = Effects {
            documents_changed: true,
            not_saved: Some(e.to_string()),
            ..Effects::default()
        };
        if let Some(k) = keystroke {
            effects.schedule_commit = self.typing.is_empty();
            self.typing.accept(&self.session.docs().text, k)?;
        }
        Ok(effects)
    }

    /// Where the journal keeps keystroke `seq`.
    fn journal_key(&self, seq: u64) -> Result<Key> {
        Ok(Key::new([
            self.config.prefix.as_str(),
            "pending",
            &self.config.process_id,
            &format!("{seq:020}"),
        ])?)
    }

    // ---- the text as shown ----

    /// True when pending typing was typed into an older version of the text
    /// than the one now here: [`commit`](Replica::commit) it before showing
    /// the text, so what is shown is what is stored.
    pub fn is_stale(&self) -> bool {
        self.typing.is_stale(&self.session.docs().text)
    }

    /// The version of the text as shown now (commit stale typing first).
    pub fn text_version(&self) -> Vec<ChangeHash> {
        self.typing.version(&self.session.docs().text)
    }

    /// A field's text with the pending typing applied, if it has any.
    pub fn typed(&self, article: &str, heading: bool) -> Option<String> {
        self.typing
            .typed(&self.session.docs().text, article, heading)
    }

    /// True while typing waits for its commit.
    pub fn typing_pending(&self) -> bool {
        !self.typing.is_empty()
    }

    // ---- sync ----

    /// Merges changes the sync engine received for `doc_id` into the session
    /// (in memory: the sync engine stores them). Pending typing stays where
    /// it was typed.
    pub fn merge(&mut self, doc_id: &str, changes: Vec<Change>) -> Result<Effects> {
        let mut effects = Effects::default();
        let Some(role) = self.role_of(doc_id) else {
            return Ok(effects);
        };
        if changes.is_empty() {
            return Ok(effects);
        }
        let actor = self.config.actor.clone();
        let docs = self.session.docs_mut();
        let doc = match &role {
            DocRole::Process => docs.process.automerge_mut(),
            DocRole::Text => docs.text.automerge_mut(),
            DocRole::Contributions(m) => docs
                .contributions
                .entry(m.clone())
                .or_insert_with(|| {
                    let mut d = ContributionsDoc::empty();
                    d.set_actor(actor.clone());
                    d
                })
                .automerge_mut(),
        };
        let before = doc.get_heads();
        doc.apply_changes(changes).map_err(klad_core::Error::from)?;
        let heads = doc.get_heads();
        if heads == before {
            return Ok(effects);
        }
        effects.documents_changed = true;
        self.generation += 1;
        if role != DocRole::Text {
            // The sync engine stores them. The text's changes are stored by
            // the replica as well before typing is placed on them.
            self.saved.insert(doc_id.to_owned(), heads);
        }
        if role == DocRole::Process {
            let info = self.session.docs().process.info().ok();
            self.docs = self.list_docs(info.as_ref());
            if let Some(info) = &info {
                for m in info.members.values() {
                    self.session
                        .docs_mut()
                        .contributions
                        .entry(m.id.clone())
                        .or_insert_with(|| {
                            let mut d = ContributionsDoc::empty();
                            d.set_actor(actor.clone());
                            d
                        });
                }
            }
            effects.process_info = info;
        }
        Ok(effects)
    }

    /// The server says it has `their` heads of `doc_id` (it says so only
    /// after storing them). Returns the record to store (best effort: a lost
    /// record only makes the count more cautious), if the ledger moved.
    pub fn acknowledged(
        &mut self,
        doc_id: &str,
        their: &[ChangeHash],
    ) -> Result<Option<(Key, Vec<u8>)>> {
        let Some(doc) = self.document(doc_id) else {
            return Ok(None);
        };
        let known: Vec<ChangeHash> = their
            .iter()
            .filter(|h| doc.get_change_meta_by_hash(h).is_some())
            .copied()
            .collect();
        if known.is_empty() {
            return Ok(None);
        }
        // Keep earlier acknowledged heads that the new ones do not cover.
        let after: HashSet<ChangeHash> = doc
            .get_changes_meta(&known)
            .iter()
            .map(|c| c.hash)
            .collect();
        let mut acked = known;
        for h in self.ledger.acked.get(doc_id).cloned().unwrap_or_default() {
            if after.contains(&h) && !acked.contains(&h) {
                acked.push(h);
            }
        }
        acked.sort();
        if self.ledger.acked.get(doc_id) == Some(&acked) {
            return Ok(None);
        }
        let text: Vec<String> = acked.iter().map(|h| h.to_string()).collect();
        let key = Key::new([
            self.config.prefix.as_str(),
            "acked",
            &self.config.process_id,
            doc_id,
        ])?;
        self.ledger.acked.insert(doc_id.to_owned(), acked);
        self.generation += 1;
        Ok(Some((key, text.join(",").into_bytes())))
    }

    /// This device's changes the server has not acknowledged, plus one while
    /// typing is pending. Zero means everything typed here is on the server.
    pub fn unsynced(&mut self) -> u32 {
        // Counting walks this device's unacknowledged changes: do it again
        // only when something moved, not on every keystroke.
        let committed = match self.ledger.unsynced {
            Some((generation, n)) if generation == self.generation => n,
            _ => {
                let mut n = 0u32;
                for (doc_id, role) in &self.docs {
                    if *role == DocRole::Process {
                        continue;
                    }
                    let Some(doc) = self.document(doc_id) else {
                        continue;
                    };
                    let acked = self.ledger.acked.get(doc_id).map_or(&[][..], Vec::as_slice);
                    // Metadata only: materializing every change is far slower.
                    n += doc
                        .get_changes_meta(acked)
                        .iter()
                        .filter(|c| *c.actor == self.config.actor)
                        .count() as u32;
                }
                self.ledger.unsynced = Some((self.generation, n));
                n
            }
        };
        committed + u32::from(!self.typing.is_empty())
    }
}
