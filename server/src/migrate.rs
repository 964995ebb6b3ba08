//! `klad-server migrate --to postgres://...`: moves a data directory's sled
//! store into an empty PostgreSQL database, for a server that outgrows one
//! node.
//!
//! Every entry of the sled store is copied as it is (documents, process
//! records, revocations, desk sessions, the storage id), and so are the two
//! secrets that live in the data directory with sled but in the database
//! with PostgreSQL: the token signing key (so every token issued keeps
//! working) and the admin secret. Then every entry is read back from the
//! database and compared. The sled store is left as it was: it is the backup
//! until the operator is satisfied.
//!
//! The server must be stopped (sled allows one user of the directory; a
//! running server makes the copy refuse with a sentence), and the database
//! must hold no Klad store yet (a copy never mixes two stores).

use std::path::Path;

use klad_store::{Key, KvStore, PgStore, SledStore, StoreError};

use crate::auth::{ADMIN_SECRET_FILE, SIGNING_KEY_FILE};
use crate::server::STORE_DIR;
use crate::store::signing_key_key;

/// Entries copied per transaction.
const BATCH: usize = 256;

/// What a migration copied.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Migrated {
    /// Entries of the sled store copied.
    pub entries: usize,
    /// Their values' bytes.
    pub bytes: u64,
    /// Documents among them.
    pub documents: usize,
    /// Where they went (no password).
    pub database: String,
}

/// Copies the sled store of `data` into the empty PostgreSQL database at
/// `url` and checks the copy.
pub fn to_postgres(data: &Path, url: &str) -> anyhow::Result<Migrated> {
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        anyhow::bail!(
            "migrate --to takes a postgres:// address (postgres://user:password@host:port/database); nothing was copied."
        );
    }
    let store_dir = data.join(STORE_DIR);
    if !store_dir.is_dir() {
        anyhow::bail!(
            "{} holds no sled store ({STORE_DIR}/ is missing); nothing was copied. Name the data directory of the server to move with --data.",
            data.display()
        );
    }
    let sled = SledStore::open(&store_dir).map_err(|e| match e {
        StoreError::Locked { .. } => anyhow::anyhow!(
            "The data directory {} is in use by a running klad-server; stop it first (the copy must see a store nobody writes to). Nothing was copied.",
            data.display()
        ),
        e => e.into(),
    })?;
    let pg = PgStore::open(url)?;
    let existing = pg.scan_keys(None)?;
    if !existing.is_empty() {
        anyhow::bail!(
            "The database {} already holds a Klad store ({} entries); nothing was copied. Copy into a new, empty database (CREATE DATABASE ...), or drop the tables {}, {}_meta and {}_lease if that store is not needed.",
            pg.address(),
            existing.len(),
            pg.table(),
            pg.table(),
            pg.table()
        );
    }
    let secrets = [
        (signing_key_key()?, SIGNING_KEY_FILE),
        (
            Key::new(["klad-server", "admin-secret"])?,
            ADMIN_SECRET_FILE,
        ),
    ];
    let mut extra = Vec::new();
    for (key, file) in &secrets {
        let path = data.join(file);
        match std::fs::read(&path) {
            Ok(bytes) => extra.push((key.clone(), trim(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && *file == ADMIN_SECRET_FILE => {}
            Err(e) => anyhow::bail!(
                "{} could not be read ({e}); nothing was copied. The tokens issued so far need it.",
                path.display()
            ),
        }
    }
    let keys = sled.scan_keys(None)?;
    let mut out = Migrated {
        database: pg.address().to_owned(),
        ..Migrated::default()
    };
    for chunk in keys.chunks(BATCH) {
        let mut puts = Vec::with_capacity(chunk.len());
        for key in chunk {
            // Absent only if removed meanwhile, which a stopped server does not.
            if let Some(value) = sled.get(key)? {
                out.bytes += value.len() as u64;
                puts.push((key.clone(), value));
            }
        }
        pg.write_batch(&puts, &[])?;
        out.entries += puts.len();
    }
    pg.write_batch(&extra, &[])?;
    // Every entry is read back and compared.
    for key in &keys {
        if sled.get(key)? != pg.get(key)? {
            anyhow::bail!(
                "The copy of {key} in {} differs from the sled store; the copy is not usable. Drop its tables and run migrate again.",
                pg.address()
            );
        }
    }
    for (key, value) in &extra {
        if pg.get(key)?.as_deref() != Some(value.as_slice()) {
            anyhow::bail!(
                "The copy of {key} in {} differs from the data directory's; the copy is not usable. Drop its tables and run migrate again.",
                pg.address()
            );
        }
    }
    // A document is stored as several values.
    out.documents = keys
        .iter()
        .filter(|k| {
            matches!(
                k.components().get(1).map(String::as_str),
                Some(klad_store::INCREMENTAL | klad_store::SNAPSHOT)
            )
        })
        .filter_map(|k| k.components().first())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    Ok(out)
}

fn trim(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
        bytes.pop();
    }
    bytes
}
