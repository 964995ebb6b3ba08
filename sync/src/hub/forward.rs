//! Forwarding new changes to settled peers without building them again.
//!
//! Automerge 0.12 keeps no change as it arrived: every change it sends is
//! built again from its operation columns, so `generate_sync_message`
//! builds the same new change once for every peer of a document (most of
//! its cost, and about a sixth of the hub's CPU at ten peers per document).
//! The hub already has those changes once, built for the store. For a peer
//! that is settled (its last message gave as its heads the document's heads
//! before one of the last few stores, or its heads now; it needs nothing;
//! it summarised what it has in one filter), the changes Automerge would
//! send are known without walking the history: the changes of the stores
//! since its heads that its filter does not contain, with everything that
//! depends on one of them, less those already sent. So the hub lets
//! Automerge write the rest of the message (heads, filter, need, flags, and
//! the sync state's bookkeeping) with the peer's "read-only" mark set for
//! the call, which makes it leave the changes out, and puts in the
//! changes it holds. Any other peer takes Automerge's own path.

use std::collections::{HashSet, VecDeque};

use automerge::sync::{self, ChunkList, Message as SyncMessage, MessageVersion, SyncDoc};
use automerge::{Automerge, Change, ChangeHash, ReadDoc};

/// At most this many changes are kept for forwarding (a peer further
/// behind takes Automerge's path). Settled peers are at most a store or two
/// behind; each change kept costs its bytes and Automerge's parse of them
/// (about a kilobyte for a keystroke batch) for as long as the document is
/// loaded.
const RECENT_CHANGES: usize = 32;

/// The document's last stores: for each, the heads before it and the
/// changes it added (all changes that are not ancestors of those heads, in
/// the order Automerge applied them: every change after its dependencies).
#[derive(Debug, Default)]
pub(super) struct Recent {
    stores: VecDeque<(Vec<ChangeHash>, Vec<Change>)>,
    /// The heads after the last store.
    after: Vec<ChangeHash>,
    /// The changes in `stores`.
    len: usize,
}

impl Recent {
    /// Nothing kept yet, the document's heads being `heads`.
    pub fn at(heads: Vec<ChangeHash>) -> Self {
        Recent {
            after: heads,
            ..Recent::default()
        }
    }

    /// The document went from `before` to `after` by adding `changes`.
    pub fn record(
        &mut self,
        before: Vec<ChangeHash>,
        after: Vec<ChangeHash>,
        changes: Vec<Change>,
    ) {
        if self.after != before {
            self.stores.clear();
            self.len = 0;
        }
        self.len += changes.len();
        self.stores.push_back((before, changes));
        while self.len > RECENT_CHANGES {
            let Some((_, dropped)) = self.stores.pop_front() else {
                break;
            };
            self.len -= dropped.len();
        }
        self.after = after;
    }

    /// The changes since `heads`, if `heads` are the heads before one of
    /// the stores kept, or after the last (none).
    fn since(&self, heads: &[ChangeHash]) -> Option<impl Iterator<Item = &Change>> {
        let first = if heads == self.after {
            self.stores.len()
        } else {
            self.stores.iter().position(|(before, _)| before == heads)?
        };
        Some(self.stores.range(first..).flat_map(|(_, changes)| changes))
    }
}

/// The message for a settled peer, or `None` when the peer is not settled
/// for `recent` and the caller must use `generate_sync_message`. The inner
/// option is what `generate_sync_message` would return: `None` when there
/// is nothing to send.
pub(super) fn forward(
    doc: &Automerge,
    heads: &[ChangeHash],
    recent: &Recent,
    state: &mut sync::State,
) -> Option<Option<SyncMessage>> {
    let their_heads = state.their_heads.as_deref()?;
    let settled = !their_heads.is_empty()
        && recent.after == heads
        && state.their_need.as_ref().is_some_and(Vec::is_empty)
        && state.have_responded
        && !state.read_only
        && !state.peer_read_only
        && !state.needs_reset;
    if !settled {
        return None;
    }
    let new = recent.since(their_heads)?;
    let [have] = state.their_have.as_deref()? else {
        return None;
    };
    // Automerge answers a filter over changes it does not know with a reset;
    // `get_missing_deps` also names the dependencies of queued changes, in
    // which case this peer simply takes the general path.
    if !doc.get_missing_deps(&have.last_sync).is_empty() {
        return None;
    }
    // The peer has every change up to its heads, so its filter holds every
    // change of ours since its last sync except the new ones (a filter has
    // no false negatives). Of the new ones, those it does not hold are
    // sent, and so is every change that depends on one that is sent
    // (`recent` lists dependencies first, so one pass finds them all).
    let mut send: HashSet<ChangeHash> = HashSet::new();
    let mut chosen: Vec<&Change> = Vec::new();
    for c in new {
        let hash = c.hash();
        if !have.bloom.contains_hash(&hash) || c.deps().iter().any(|d| send.contains(d)) {
            send.insert(hash);
            if !state.sent_hashes.contains(&hash) {
                chosen.push(c);
            }
        }
    }
    // Automerge sends the whole document instead when more than a third of
    // it would go: leave that to it.
    if chosen.len() * 3 > usize::try_from(doc.stats().num_changes).unwrap_or(usize::MAX) {
        return None;
    }
    state.peer_read_only = true;
    let message = doc.generate_sync_message(state);
    state.peer_read_only = false;
    let Some(mut message) = message else {
        return Some(None);
    };
    if !chosen.is_empty() {
        let bytes = chosen.iter().map(|c| c.raw_bytes());
        message.changes = match message.version {
            MessageVersion::V1 => ChunkList::from(bytes.map(<[u8]>::to_vec).collect::<Vec<_>>()),
            MessageVersion::V2 => ChunkList::from(bytes.flatten().copied().collect::<Vec<u8>>()),
        };
        state.sent_hashes.extend(chosen.iter().map(|c| c.hash()));
    }
    Some(Some(message))
}

/// Checks a forwarded message (`forwarded`, leaving `after`) against what
/// Automerge makes of the state `before`: the same message and sync state.
/// One difference is allowed: a peer whose filter leaves out changes its
/// own heads include (no Automerge peer sends that; a crafted message can)
/// gets them again from Automerge, while forwarding goes by the heads.
#[cfg(debug_assertions)]
pub(super) fn check(
    doc: &Automerge,
    before: sync::State,
    forwarded: &Option<SyncMessage>,
    after: &sync::State,
) {
    let their_heads = before.their_heads.clone().unwrap_or_default();
    let mut theirs = before;
    let expected = doc.generate_sync_message(&mut theirs);
    let extra: Vec<ChangeHash> = theirs
        .sent_hashes
        .difference(&after.sent_hashes)
        .copied()
        .collect();
    if extra.is_empty() {
        assert_eq!(
            *forwarded, expected,
            "a forwarded message differs from Automerge's"
        );
        assert_eq!(
            *after, theirs,
            "forwarding left another sync state than Automerge"
        );
        return;
    }
    assert!(
        after.sent_hashes.is_subset(&theirs.sent_hashes),
        "forwarding sent changes Automerge would not"
    );
    let unknown: HashSet<ChangeHash> = doc
        .get_changes(&their_heads)
        .iter()
        .map(Change::hash)
        .collect();
    assert!(
        extra.iter().all(|h| !unknown.contains(h)),
        "forwarding left out changes the peer does not have"
    );
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::{ROOT, sync::SyncDoc};

    use super::*;

    fn edit(doc: &mut Automerge, key: &str, value: &str) {
        let mut tx = doc.transaction();
        tx.put(ROOT, key, value).unwrap();
        tx.commit();
    }

    /// Messages both ways until neither side has anything to say.
    fn settle(a: &mut Automerge, sa: &mut sync::State, b: &mut Automerge, sb: &mut sync::State) {
        for _ in 0..20 {
            let ab = a.generate_sync_message(sa);
            let ba = b.generate_sync_message(sb);
            if ab.is_none() && ba.is_none() {
                return;
            }
            if let Some(m) = ab {
                b.receive_sync_message(sb, m).unwrap();
            }
            if let Some(m) = ba {
                a.receive_sync_message(sa, m).unwrap();
            }
        }
        panic!("the two documents did not settle");
    }

    /// `forward` takes `state` and gives exactly what Automerge gives.
    fn forwards_as_automerge(doc: &Automerge, recent: &Recent, state: &sync::State) {
        let mut ours = state.clone();
        let forwarded = forward(doc, &doc.get_heads(), recent, &mut ours);
        let mut theirs = state.clone();
        let expected = doc.generate_sync_message(&mut theirs);
        assert_eq!(forwarded, Some(expected), "the message differs");
        assert_eq!(ours, theirs, "the sync state differs");
    }

    #[test]
    fn a_peer_whose_filter_contradicts_its_heads_is_believed_by_its_heads() {
        let mut hub = Automerge::new();
        for n in 0..10 {
            edit(&mut hub, "title", &format!("Artikel {n}"));
        }
        let before = hub.get_heads();
        edit(&mut hub, "body", "Nieuwe zin.");
        let mut recent = Recent::at(before.clone());
        recent.record(before.clone(), hub.get_heads(), hub.get_changes(&before));
        // The peer has everything and says so in its heads, but its filter
        // over the changes since `before` is empty: only a crafted message
        // says that.
        let peer = hub.fork();
        let mut peer_state = sync::State::new();
        let mut m = peer.generate_sync_message(&mut peer_state).unwrap();
        m.have = vec![sync::Have {
            last_sync: before,
            bloom: Default::default(),
        }];
        // Received, answered, and received again (the answer's reply).
        let mut state = sync::State::new();
        hub.receive_sync_message(&mut state, m.clone()).unwrap();
        let _ = hub.generate_sync_message(&mut state);
        hub.receive_sync_message(&mut state, m).unwrap();
        let mut ours = state.clone();
        let forwarded = forward(&hub, &hub.get_heads(), &recent, &mut ours).unwrap();
        // Automerge sends the new change again; forwarding does not, and the
        // check accepts exactly that difference.
        let mut theirs = state.clone();
        assert_ne!(forwarded, hub.generate_sync_message(&mut theirs));
        check(&hub, state, &forwarded, &ours);
    }

    /// The hub receives `peer`'s message and records what it added.
    fn receive(hub: &mut Automerge, state: &mut sync::State, recent: &mut Recent, m: SyncMessage) {
        let before = hub.get_heads();
        hub.receive_sync_message(state, m).unwrap();
        let new = hub.get_changes(&before);
        recent.record(before, hub.get_heads(), new);
    }

    #[test]
    fn settled_and_lagging_peers_get_what_automerge_would_send() {
        let mut hub = Automerge::new();
        let mut writer = Automerge::new();
        let mut reader = Automerge::new();
        let (mut hub_w, mut w_hub) = (sync::State::new(), sync::State::new());
        let (mut hub_r, mut r_hub) = (sync::State::new(), sync::State::new());
        // Ten changes: Automerge sends a small document whole when a third
        // of it is new, and leaves forwarding to larger ones.
        for n in 0..10 {
            edit(&mut writer, "title", &format!("Artikel {n}"));
        }
        settle(&mut hub, &mut hub_w, &mut writer, &mut w_hub);
        settle(&mut hub, &mut hub_r, &mut reader, &mut r_hub);
        let mut recent = Recent::at(hub.get_heads());

        // A settled reader: the hub has nothing new for it.
        forwards_as_automerge(&hub, &recent, &hub_r);

        // The writer edits twice; the reader hears of neither yet.
        let lagging = hub_r.clone();
        for (n, text) in ["Eerste zin.", "Tweede zin."].into_iter().enumerate() {
            edit(&mut writer, &format!("body{n}"), text);
            let m = writer.generate_sync_message(&mut w_hub).unwrap();
            receive(&mut hub, &mut hub_w, &mut recent, m);
            forwards_as_automerge(&hub, &recent, &hub_r);
        }
        // One store behind and two stores behind alike.
        forwards_as_automerge(&hub, &recent, &lagging);

        // The forwarded message reaches the reader, which answers; the
        // answer (same heads as the hub's) is forwarded as Automerge would.
        let m = forward(&hub, &hub.get_heads(), &recent, &mut hub_r)
            .unwrap()
            .unwrap();
        assert!(!m.changes.is_empty(), "the new changes were not forwarded");
        reader.receive_sync_message(&mut r_hub, m).unwrap();
        assert_eq!(reader.get_heads(), hub.get_heads());
        let answer = reader.generate_sync_message(&mut r_hub).unwrap();
        hub.receive_sync_message(&mut hub_r, answer).unwrap();
        forwards_as_automerge(&hub, &recent, &hub_r);

        // Sent once, not again: a second call finds the changes sent.
        let mut again = lagging.clone();
        forward(&hub, &hub.get_heads(), &recent, &mut again);
        forwards_as_automerge(&hub, &recent, &again);
    }

    #[test]
    fn a_peer_that_is_not_settled_takes_automerges_path() {
        let mut hub = Automerge::new();
        edit(&mut hub, "title", "Artikel 1");
        let recent = Recent::at(hub.get_heads());
        // A new peer has told the hub nothing.
        assert_eq!(
            forward(&hub, &hub.get_heads(), &recent, &mut sync::State::new()),
            None
        );
        // A peer whose heads the hub's recent stores do not start from.
        let mut other = Automerge::new();
        edit(&mut other, "title", "Iets anders");
        let (mut s_hub, mut s_other) = (sync::State::new(), sync::State::new());
        let m = other.generate_sync_message(&mut s_other).unwrap();
        hub.receive_sync_message(&mut s_hub, m).unwrap();
        let _ = hub.generate_sync_message(&mut s_hub);
        let m = other.generate_sync_message(&mut s_other);
        if let Some(m) = m {
            hub.receive_sync_message(&mut s_hub, m).unwrap();
        }
        assert_eq!(forward(&hub, &hub.get_heads(), &recent, &mut s_hub), None);
    }
}
