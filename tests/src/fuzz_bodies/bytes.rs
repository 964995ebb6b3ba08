//! Reading structure out of fuzz input, and Automerge's chunk framing, so a
//! body can hand Automerge arbitrary chunk contents with valid checksums (the
//! fuzzer cannot find a SHA-256 checksum by mutation; without this, nothing
//! past the checksum check would ever be reached).

use sha2::{Digest, Sha256};

/// A cursor over fuzz input: every read succeeds (an exhausted input reads
/// as zeros or empty), so any bytes are a valid input.
#[derive(Debug)]
pub struct Input<'a> {
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { rest: data }
    }

    /// The next byte (0 when exhausted).
    pub fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((b, rest)) => {
                self.rest = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next little-endian u16 (zeros when exhausted).
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The next `n` bytes, or fewer at the end.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        head
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

/// The four magic bytes of every Automerge chunk.
pub const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Automerge's chunk types.
pub const DOCUMENT: u8 = 0;
/// A single change.
pub const CHANGE: u8 = 1;
/// A bundle of changes.
pub const BUNDLE: u8 = 3;

fn uleb(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A whole chunk of `kind` holding `body`, with its checksum.
pub fn chunk(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut header = vec![kind];
    uleb(body.len() as u64, &mut header);
    let mut hasher = Sha256::new();
    hasher.update(&header);
    hasher.update(body);
    let sum = hasher.finalize();
    let mut out = Vec::with_capacity(8 + header.len() + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&sum[..4]);
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out
}

/// The type and body of `bytes` when it starts with one whole chunk; the
/// rest of `bytes` after it.
pub fn split_chunk(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    if bytes.len() < 9 || bytes[..4] != MAGIC {
        return None;
    }
    let kind = bytes[8];
    let mut len: u64 = 0;
    let mut pos = 9;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(pos)?;
        pos += 1;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            let end = pos.checked_add(usize::try_from(len).ok()?)?;
            let body = bytes.get(pos..end)?;
            return Some((kind, body, &bytes[end..]));
        }
    }
    None
}

/// How a body turns fuzz bytes into Automerge bytes: as they are, or as the
/// contents of one change, document or bundle chunk with a valid checksum.
pub fn wrap(mode: u8, payload: &[u8]) -> Vec<u8> {
    match mode % 4 {
        0 => payload.to_vec(),
        1 => chunk(CHANGE, payload),
        2 => chunk(DOCUMENT, payload),
        _ => chunk(BUNDLE, payload),
    }
}

/// The mode and payload for [`wrap`] that give back `bytes`, for seeds: a
/// single whole change, document or bundle chunk is kept as its contents
/// (so mutations keep a valid checksum); anything else as it is.
pub fn unwrap(bytes: &[u8]) -> (u8, Vec<u8>) {
    match split_chunk(bytes) {
        Some((CHANGE, body, [])) => (1, body.to_vec()),
        Some((DOCUMENT, body, [])) => (2, body.to_vec()),
        Some((BUNDLE, body, [])) => (3, body.to_vec()),
        _ => (0, bytes.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_a_chunk_body_gives_the_chunk_back() {
        let mut doc = automerge::Automerge::new();
        let mut tx = doc.transaction();
        automerge::transaction::Transactable::put(&mut tx, automerge::ROOT, "k", 1).unwrap();
        tx.commit();
        for bytes in [
            doc.save(),
            doc.get_last_local_change().unwrap().raw_bytes().to_vec(),
            b"not a chunk".to_vec(),
        ] {
            let (mode, payload) = unwrap(&bytes);
            assert_eq!(wrap(mode, &payload), bytes);
        }
    }
}
