//! Automerge's binary chunks, read without trusting them: checking that bytes
//! are whole chunks with valid checksums (before Automerge, which silently
//! ignores a damaged tail, sees them), and decoding the single changes a
//! byte string carries (a sync message's changes, in any of the forms
//! Automerge sends them), so that each change can be checked for its author.
//!
//! The chunk layout is Automerge's storage format: four magic bytes, a
//! four-byte checksum (the start of the SHA-256 of type, length and data),
//! one type byte, an unsigned LEB128 length, then the data.

use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::{Automerge, Change};
use sha2::{Digest, Sha256};

/// The four magic bytes that start every Automerge chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Automerge's chunk type for a whole document (`Automerge::save`).
const DOCUMENT: u8 = 0;
/// Automerge's chunk type for one change.
const CHANGE: u8 = 1;
/// Automerge's chunk type for a deflate-compressed change.
pub const COMPRESSED_CHANGE: u8 = 2;
/// Automerge's chunk type for a bundle of changes.
const BUNDLE: u8 = 3;
/// The highest chunk type Automerge 0.12 knows (0 document, 1 change,
/// 2 compressed change, 3 bundle).
const MAX_CHUNK_TYPE: u8 = BUNDLE;

/// Splits `bytes` into Automerge chunks, `(type, whole chunk)`, checking each
/// checksum. `Err` holds the end of a sentence about what is wrong.
fn split_chunks(bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    if bytes.is_empty() {
        return Err("is empty".into());
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let magic_len = rest.len().min(MAGIC.len());
        if rest[..magic_len] != MAGIC[..magic_len] {
            return Err(format!("has no Automerge chunk at byte {pos}"));
        }
        if rest.len() < 9 {
            return Err(format!("is truncated inside a chunk header at byte {pos}"));
        }
        let checksum = &rest[4..8];
        let chunk_type = rest[8];
        if chunk_type > MAX_CHUNK_TYPE {
            return Err(format!(
                "has an unknown chunk type {chunk_type} at byte {pos}"
            ));
        }
        let (len, len_size) = read_uleb(&rest[9..])
            .ok_or_else(|| format!("has a cut-off or invalid chunk length at byte {pos}"))?;
        let data_start = 9 + len_size;
        let data_end = usize::try_from(len)
            .ok()
            .and_then(|len| data_start.checked_add(len))
            .filter(|end| *end <= rest.len())
            .ok_or_else(|| {
                format!(
                    "is truncated: the chunk at byte {pos} needs {len} bytes but only {} remain",
                    rest.len() - data_start
                )
            })?;
        let valid = if chunk_type == COMPRESSED_CHANGE {
            // The checksum covers the uncompressed change, i.e. its hash.
            Change::try_from(&rest[..data_end])
                .map(|c| c.hash().as_ref()[..4] == *checksum)
                .map_err(|e| format!("has an unreadable compressed change at byte {pos}: {e}"))?
        } else {
            let mut hasher = Sha256::new();
            hasher.update([chunk_type]);
            hasher.update(uleb(len));
            hasher.update(&rest[data_start..data_end]);
            hasher.finalize()[..4] == *checksum
        };
        if !valid {
            return Err(format!(
                "fails its checksum at byte {pos} (the bytes were changed after they were written)"
            ));
        }
        out.push((chunk_type, &rest[..data_end]));
        pos += data_end;
    }
    Ok(out)
}

/// Checks that `bytes` is a sequence of complete Automerge chunks with valid
/// checksums, none of them a bundle. `Err` holds the end of a sentence about
/// what is wrong.
///
/// Needed because `Automerge::load_incremental` silently ignores a damaged
/// or truncated tail. Bundles are refused because decoding a hostile one can
/// make Automerge 0.12 exhaust memory (fuzzing found 361 bytes that took more
/// than 4 GB), and nobody stores one: Klad stores whole documents and change
/// chunks, and so do samod and Automerge's `save`/`save_after`.
pub fn check_chunks(bytes: &[u8]) -> Result<(), String> {
    for (i, (kind, _)) in split_chunks(bytes)?.into_iter().enumerate() {
        if kind == BUNDLE {
            return Err(format!(
                "holds a bundle of changes (chunk number {i}), which Klad never stores"
            ));
        }
    }
    Ok(())
}

/// The single changes in `bytes`, in the order they appear: change chunks
/// (compressed or not) and whole documents (a sync message may carry a
/// whole `save()` when it sends much of a document). Bundles are refused:
/// sync never sends them, and a hostile one can make Automerge's decoder
/// exhaust memory. `Err` holds the
/// end of a sentence about what is wrong; nothing panics, whatever the bytes.
pub fn decode_changes(bytes: &[u8]) -> Result<Vec<Change>, String> {
    let mut changes = Vec::new();
    for (i, (kind, chunk)) in split_chunks(bytes)?.into_iter().enumerate() {
        let decoded = catch_unwind(AssertUnwindSafe(|| {
            match kind {
            CHANGE | COMPRESSED_CHANGE => Change::try_from(chunk)
                .map(|c| vec![c])
                .map_err(|e| e.to_string()),
            // Automerge's sync never sends bundles, and decoding a hostile
            // one can exhaust memory (found by fuzzing: 361 bytes took more
            // than 2 GB), so they are refused before Automerge sees them.
            BUNDLE => Err(
                "is a bundle of changes, which sync messages do not carry (they carry changes and whole documents)"
                    .to_owned(),
            ),
            DOCUMENT => Automerge::load(chunk)
                .map(|d| d.get_changes(&[]))
                .map_err(|e| e.to_string()),
            _ => Err(format!("unknown chunk type {kind}")),
        }
        }));
        match decoded {
            Ok(Ok(c)) => changes.extend(c),
            Ok(Err(e)) => return Err(format!("has an unreadable chunk (number {i}): {e}")),
            Err(_) => {
                return Err(format!(
                    "has a chunk (number {i}) that made the Automerge library fail"
                ));
            }
        }
    }
    Ok(changes)
}

/// Reads an unsigned LEB128 number; `(value, bytes used)`.
fn read_uleb(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        let low = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        if shift == 63 && low > 1 {
            return None;
        }
        value |= low << shift;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The canonical unsigned LEB128 encoding of `value`.
fn uleb(mut value: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;

    fn doc_with(n: usize) -> Automerge {
        let mut doc = Automerge::new();
        for i in 0..n {
            let mut tx = doc.transaction();
            tx.put(automerge::ROOT, "k", i as i64).unwrap();
            tx.commit();
        }
        doc
    }

    #[test]
    fn changes_come_out_of_every_form() {
        let doc = doc_with(3);
        let all: Vec<_> = doc.get_changes(&[]).iter().map(Change::hash).collect();
        // Change chunks one after another (a V1 or V2 sync message).
        let concatenated: Vec<u8> = doc
            .get_changes(&[])
            .iter()
            .flat_map(|c| c.raw_bytes().to_vec())
            .collect();
        let hashes = |b: &[u8]| -> Vec<_> {
            decode_changes(b)
                .unwrap()
                .iter()
                .map(Change::hash)
                .collect()
        };
        assert_eq!(hashes(&concatenated), all);
        // A whole document.
        let mut from_doc = hashes(&doc.save());
        from_doc.sort();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(from_doc, sorted);
        // The tail of a document (save_after).
        let first = doc.get_changes(&[])[0].hash();
        assert_eq!(hashes(&doc.save_after(&[first])), all[1..].to_vec());
        // A bundle is refused with a sentence.
        let bundle = doc.bundle(all.clone()).unwrap();
        assert!(
            decode_changes(bundle.bytes())
                .unwrap_err()
                .contains("bundle")
        );
        // And not taken as stored bytes either.
        assert!(check_chunks(bundle.bytes()).unwrap_err().contains("bundle"));
        let mut stored = doc.save();
        stored.extend_from_slice(bundle.bytes());
        assert!(
            check_chunks(&stored)
                .unwrap_err()
                .contains("chunk number 1")
        );
    }

    #[test]
    fn damage_is_a_sentence_not_a_panic() {
        let doc = doc_with(2);
        let mut bytes = doc.save();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(decode_changes(&bytes).unwrap_err().contains("checksum"));
        assert!(decode_changes(&[1, 2, 3]).is_err());
        assert!(decode_changes(&[]).is_err());
        assert!(decode_changes(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn leb128_round_trips() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let enc = uleb(v);
            assert_eq!(read_uleb(&enc), Some((v, enc.len())));
        }
        assert_eq!(read_uleb(&[0x80]), None);
        assert_eq!(read_uleb(&[0xff; 11]), None);
    }
}
