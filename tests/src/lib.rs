//! Shared helpers for Klad's end-to-end tests.

use std::path::PathBuf;

pub mod fuzz_bodies;
pub mod hostile;

/// The test-data directory: `tests/data` in the repository (see its
/// README.md), or `$KLAD_SHARED_DATA` when set (a directory holding the same
/// files).
pub fn test_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KLAD_SHARED_DATA") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// One transaction of an editing trace: patches `(position, deleted, inserted)`
/// applied in order; positions count Unicode code points.
#[derive(Debug, serde::Deserialize)]
pub struct TraceTxn {
    /// The patches of this transaction.
    pub patches: Vec<(usize, usize, String)>,
}

impl Trace {
    /// Every patch of every transaction, in order, as klad-core splices.
    pub fn splices(&self) -> Vec<klad_core::Splice> {
        self.txns
            .iter()
            .flat_map(|t| t.patches.iter())
            .map(|(pos, delete, insert)| klad_core::Splice {
                pos: *pos,
                delete: *delete,
                insert: insert.clone(),
            })
            .collect()
    }
}

/// An editing trace in the format of the editing-traces collection.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    /// Text before the first transaction.
    pub start_content: String,
    /// Text after the last one.
    pub end_content: String,
    /// The transactions.
    pub txns: Vec<TraceTxn>,
}

/// Reads `automerge-paper.json.gz`, a real 259,778-edit typing trace
/// (CC BY 4.0: Joseph Gentle's editing-traces collection, from Martin
/// Kleppmann's automerge-perf data set; see `tests/data/README.md`).
pub fn automerge_paper_trace() -> anyhow::Result<Trace> {
    let path = test_data_dir().join("automerge-paper.json.gz");
    let file = std::fs::File::open(&path).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the editing trace at {} ({e}); it is part of the repository (tests/data), or unset KLAD_SHARED_DATA if it points elsewhere",
            path.display()
        )
    })?;
    let reader = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
    Ok(serde_json::from_reader(reader)?)
}
