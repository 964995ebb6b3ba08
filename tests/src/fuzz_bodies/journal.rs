//! Target `journal`: the typing journal's record reader
//! (`klad_store::journal::decode`), which reads whatever a crash left
//! in the file.
//!
//! Invariants: nothing panics; the records read, framed again, are exactly
//! the start of the file up to `whole_len`; a record appended there reads
//! back after them (what the next keystroke does over a torn tail).

use klad_store::journal;

/// The body of the `journal` target.
pub fn run(data: &[u8]) {
    let records = journal::decode(data);
    let whole = journal::whole_len(data);
    assert!(whole <= data.len());
    let framed: Vec<u8> = records.iter().flat_map(|r| journal::encode(r)).collect();
    assert_eq!(
        framed,
        data[..whole],
        "the records read are not the file's start"
    );
    let mut file = data[..whole].to_vec();
    file.extend(journal::encode(b"{\"seq\":1}"));
    let again = journal::decode(&file);
    assert_eq!(again.len(), records.len() + 1);
    assert_eq!(again.last(), Some(&&b"{\"seq\":1}"[..]));
}
