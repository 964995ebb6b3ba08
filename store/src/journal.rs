//! The typing journal: its file format, an append-only sequence of records,
//! each `length (u32 LE) · payload · FNV-1a checksum of the payload (u32 LE)`.
//!
//! A keystroke is one record appended and `fdatasync`ed — the cheapest
//! durable write there is, so typing costs about one fsync'd append. A crash
//! can leave the last record torn (or, on some filesystems, a tail of zeros):
//! [`decode`] stops at the first record that is incomplete or fails its
//! checksum. That record is the keystroke whose call had not returned.
//!
//! Which records are already inside a stored change is not the file's
//! business: the batch that stores a commit also stores the highest sequence
//! number it holds (klad-client's replica), and replay skips what it covers.
//!
//! [`JournalFile`] writes records at the end of the last whole record, not
//! with `O_APPEND`: after a failed append the next record overwrites the
//! torn bytes, so the whole records always form the start of the file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::StoreError;

/// One record, framed for appending.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&fnv1a(payload).to_le_bytes());
    out
}

/// The payloads of the whole records at the start of `file`, in order.
pub fn decode(file: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = file;
    while rest.len() >= 8 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len == 0 || rest.len() < len + 8 {
            break;
        }
        let payload = &rest[4..4 + len];
        let sum = u32::from_le_bytes([rest[4 + len], rest[5 + len], rest[6 + len], rest[7 + len]]);
        if sum != fnv1a(payload) {
            break;
        }
        out.push(payload);
        rest = &rest[len + 8..];
    }
    out
}

/// Where the whole records at the start of `file` end: the next record is
/// written there (over a torn tail, if any).
pub fn whole_len(file: &[u8]) -> usize {
    decode(file).iter().map(|r| r.len() + 8).sum()
}

/// 32-bit FNV-1a: enough to tell a torn or zeroed tail from a record.
fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// One process's journal file, written at the end of its last whole record.
pub struct JournalFile {
    file: File,
    path: PathBuf,
    /// Where the last whole record ends.
    end: u64,
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("typing journal {}: {e}", path.display()))
}

impl JournalFile {
    /// Opens (creating) the journal of `process_id` in `dir`; returns it and
    /// the bytes it holds.
    pub fn open(dir: &Path, process_id: &str) -> Result<(JournalFile, Vec<u8>), StoreError> {
        if process_id.is_empty()
            || !process_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StoreError::InvalidKey(format!(
                "the process id {process_id:?} cannot name a journal file"
            )));
        }
        let dir = dir.join("typing");
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        let path = dir.join(format!("{process_id}.journal"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_error(&path, e))?;
        let end = whole_len(&bytes) as u64;
        Ok((JournalFile { file, path, end }, bytes))
    }

    /// Appends one framed record and syncs it to disk.
    pub fn append(&mut self, record: &[u8]) -> Result<(), StoreError> {
        let written = self
            .file
            .seek(SeekFrom::Start(self.end))
            .and_then(|_| self.file.write_all(record))
            .and_then(|_| self.file.sync_data());
        match written {
            Ok(()) => {
                self.end += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Best effort: the next record overwrites the torn bytes anyway.
                let _ = self.file.set_len(self.end);
                Err(io_error(&self.path, e))
            }
        }
    }

    /// Empties the file (best effort: what it holds is stored already).
    pub fn truncate(&mut self) {
        if self.file.set_len(0).is_ok() {
            self.end = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_is_dropped() {
        let mut file = encode(b"{\"seq\":0}");
        file.extend(encode(b"{\"seq\":1}"));
        assert_eq!(decode(&file), vec![&b"{\"seq\":0}"[..], b"{\"seq\":1}"]);
        let whole = file.len();
        file.extend(encode(b"{\"seq\":2}"));
        for cut in whole..file.len() {
            assert_eq!(decode(&file[..cut]).len(), 2, "cut at {cut}");
            assert_eq!(whole_len(&file[..cut]), whole);
        }
        let mut zeros = file[..whole].to_vec();
        zeros.extend([0u8; 64]);
        assert_eq!(decode(&zeros).len(), 2);
        let mut flipped = file.clone();
        flipped[whole + 6] ^= 1;
        assert_eq!(decode(&flipped).len(), 2);
        assert!(decode(&[]).is_empty());
    }

    #[test]
    fn the_file_reopens_at_its_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, bytes) = JournalFile::open(dir.path(), "p1").unwrap();
        assert!(bytes.is_empty());
        j.append(&encode(b"one")).unwrap();
        j.append(&encode(b"two")).unwrap();
        drop(j);
        // A torn record after them, as a crash during an append leaves it.
        let path = dir.path().join("typing").join("p1.journal");
        let mut torn = std::fs::read(&path).unwrap();
        torn.extend_from_slice(&encode(b"three-and-more")[..9]);
        std::fs::write(&path, &torn).unwrap();
        let (mut j, bytes) = JournalFile::open(dir.path(), "p1").unwrap();
        assert_eq!(decode(&bytes), vec![&b"one"[..], b"two"]);
        j.append(&encode(b"four")).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(decode(&bytes), vec![&b"one"[..], b"two", b"four"]);
        j.truncate();
        assert!(std::fs::read(&path).unwrap().is_empty());
        assert!(JournalFile::open(dir.path(), "../p1").is_err());
    }
}
