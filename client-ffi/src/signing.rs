//! Detached change signatures on the phone (klad-sync's [`authorship`]): the
//! phone signs every change of its own device, and keeps the signatures of
//! other members' changes it accepted from a peer link, so that it can relay
//! those changes (to the server or another phone) with proof of who wrote them.
//!
//! Signatures travel in a `klad-signatures` frame sent just before the sync
//! frame whose changes they sign.

use automerge::ChangeHash;
use klad_store::KvStore;
use klad_sync::authorship::{self, Signature};

use crate::client::{Shared, key};
use crate::storage::PREFIX;

/// Where the signature of another member's change is kept.
fn sig_key(hash: &ChangeHash) -> Option<klad_store::Key> {
    key(&[PREFIX, "sig", &hash.to_string()]).ok()
}

impl Shared {
    /// The frames to send for one frame samod wants to send: when it carries
    /// changes this phone can vouch for (its own, signed now; others', with
    /// the signature it kept), a signatures frame first, then the frame.
    pub(crate) fn with_signatures(&self, frame: Vec<u8>) -> Vec<Vec<u8>> {
        let Ok(Some(inspected)) = authorship::inspect(&frame) else {
            return vec![frame];
        };
        let mut signatures: Vec<(ChangeHash, Signature)> = Vec::new();
        for change in inspected.changes() {
            let hash = change.hash();
            if change.actor_id() == &self.actor {
                signatures.push((hash, self.signing.sign(&hash)));
            } else if let Some(k) = sig_key(&hash)
                && let Ok(Some(bytes)) = self.kv.get(&k)
                && let Ok(sig) = Signature::try_from(bytes.as_slice())
            {
                signatures.push((hash, sig));
            }
        }
        if signatures.is_empty() {
            return vec![frame];
        }
        vec![
            authorship::encode_signatures(inspected.document(), &signatures),
            frame,
        ]
    }

    /// Keeps the signatures of relayed changes this phone accepted, so it can
    /// pass them on with the changes. On disk before the changes reach samod.
    pub(crate) fn keep_signatures(&self, list: &[(ChangeHash, Signature)]) {
        for (hash, sig) in list {
            if let Some(k) = sig_key(hash) {
                // Best effort: without it this phone cannot relay the change
                // further, but the change itself is not lost (its author and
                // the server keep it).
                let _ = self.kv.put(&k, sig);
            }
        }
    }
}
