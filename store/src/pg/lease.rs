//! Process leases: which node serves a process, with a fencing number.
//!
//! Several klad-server nodes share one database; each process is served by
//! one node at a time, recorded in one row of `<table>_lease`:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS klad_kv_lease (
//!     process TEXT PRIMARY KEY,  -- the process id
//!     node TEXT NOT NULL,        -- the owner's node id (new at every start)
//!     address TEXT NOT NULL,     -- where other nodes reach the owner
//!     fence BIGINT NOT NULL,     -- the fencing number
//!     expires TIMESTAMPTZ NOT NULL
//! );
//! ```
//!
//! - [`PgStore::claim`] takes the row when it is free, expired or already
//!   this node's, in one `INSERT ... ON CONFLICT DO UPDATE ... WHERE`: a
//!   takeover by another node adds one to `fence`, a renewal by the owner
//!   keeps it. Otherwise it says who holds the row.
//! - [`PgStore::renew`] moves the expiry of every row a node holds.
//! - [`PgStore::release`] ends a lease early (expiry now) and keeps the row,
//!   so fencing numbers only ever grow.
//! - [`PgStore::write_batch_fenced`] writes only while the row still holds
//!   the writer's node and fencing number and has not expired, checked in
//!   the write's own transaction (see `write_batch` in the parent module).
//!
//! Times are the database's (`now()`), never a node's clock, so nodes with
//! skewed clocks still agree on who holds a lease. The statements are plain
//! SQL that CockroachDB and YugabyteDB also accept (no advisory locks).

use std::time::Duration;

use super::{Inner, PgStore};
use crate::kv::{Key, StoreError, encode_key};

/// A node's right to write for a process: the process, the node and the
/// fencing number its lease had when the node took it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The process.
    pub process: String,
    /// The node.
    pub node: String,
    /// The fencing number.
    pub number: i64,
}

/// What [`PgStore::claim`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This node holds the lease now.
    Held(Fence),
    /// Another node holds it.
    Taken {
        /// Its node id.
        node: String,
        /// Where other nodes reach it.
        address: String,
        /// Until when, in milliseconds from now (by the database's clock).
        expires_in_ms: i64,
    },
}

pub(super) fn create_sql(t: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {t}_lease (process TEXT PRIMARY KEY, node TEXT NOT NULL, address TEXT NOT NULL, fence BIGINT NOT NULL, expires TIMESTAMPTZ NOT NULL);"
    )
}

/// The statement a fenced write runs first in its transaction: one row
/// touched means the lease is still the writer's.
pub(super) fn fence_sql(t: &str) -> String {
    format!(
        "UPDATE {t}_lease SET fence = fence WHERE process = $1 AND node = $2 AND fence = $3 AND expires > now()"
    )
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Takes the lease of `process` for `node` (reachable at `address`) for
    /// `ttl`, if it is free, expired or already `node`'s; otherwise says who
    /// holds it.
    pub fn claim(
        &self,
        process: &str,
        node: &str,
        address: &str,
        ttl: Duration,
    ) -> Result<Claim, StoreError> {
        let (process, node, address) = (process.to_owned(), node.to_owned(), address.to_owned());
        self.run(move |inner| async move { inner.claim(process, node, address, millis(ttl)).await })
    }

    /// Moves the expiry of every lease `node` holds to `ttl` from now, and
    /// returns them (process and fencing number). A lease missing from the
    /// answer is no longer the node's.
    pub fn renew(&self, node: &str, ttl: Duration) -> Result<Vec<Fence>, StoreError> {
        let node = node.to_owned();
        self.run(move |inner| async move { inner.renew(node, millis(ttl)).await })
    }

    /// Ends `node`'s lease of `process` now (if it holds it), so that
    /// another node may take the process at once. The row and its fencing
    /// number stay.
    pub fn release(&self, process: &str, node: &str) -> Result<(), StoreError> {
        let (process, node) = (process.to_owned(), node.to_owned());
        self.run(move |inner| async move { inner.release(process, node).await })
    }

    /// [`crate::KvStore::write_batch`], but only while `fence` still holds:
    /// the lease row of its process has its node and number and has not
    /// expired, checked in the same transaction. Otherwise nothing is
    /// written and the answer is [`StoreError::Fenced`].
    pub fn write_batch_fenced(
        &self,
        fence: &Fence,
        puts: &[(Key, Vec<u8>)],
        deletes: &[Key],
    ) -> Result<(), StoreError> {
        let puts: Vec<(Vec<u8>, Vec<u8>)> = puts
            .iter()
            .map(|(k, v)| (encode_key(k), v.clone()))
            .collect();
        let deletes: Vec<Vec<u8>> = deletes.iter().map(encode_key).collect();
        let fence = fence.clone();
        self.run(move |inner| async move { inner.write_batch(Some(&fence), puts, deletes).await })
    }

    /// Stores `value` under `key` unless a value is there already, and
    /// returns the value stored afterwards (this one, or the one that was
    /// there). Two nodes racing to create the same thing (the signing key of
    /// a fresh database) both end up with the first one's.
    pub fn put_if_absent(&self, key: &Key, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (key, value) = (encode_key(key), value.to_vec());
        self.run(move |inner| async move { inner.put_if_absent(key, value).await })
    }
}

impl Inner {
    async fn claim(
        &self,
        process: String,
        node: String,
        address: String,
        ttl_ms: i64,
    ) -> Result<Claim, StoreError> {
        let t = &self.table;
        let take = format!(
            "INSERT INTO {t}_lease (process, node, address, fence, expires) \
             VALUES ($1, $2, $3, 1, now() + $4::INT8 * INTERVAL '1 millisecond') \
             ON CONFLICT (process) DO UPDATE SET \
               node = EXCLUDED.node, address = EXCLUDED.address, expires = EXCLUDED.expires, \
               fence = CASE WHEN {t}_lease.node = EXCLUDED.node THEN {t}_lease.fence ELSE {t}_lease.fence + 1 END \
             WHERE {t}_lease.node = EXCLUDED.node OR {t}_lease.expires <= now() \
             RETURNING fence"
        );
        let holder = format!(
            "SELECT node, address, CAST(EXTRACT(EPOCH FROM (expires - now())) * 1000 AS INT8) \
             FROM {t}_lease WHERE process = $1"
        );
        let mut slot = self.connection().await?;
        let conn = self.ready(&mut slot).await?;
        // The holder found may have expired between the two statements:
        // then the next round takes it.
        for _ in 0..3 {
            let row = conn
                .client
                .query_opt(&take, &[&process, &node, &address, &ttl_ms])
                .await
                .map_err(|e| self.query_error(e))?;
            if let Some(row) = row {
                return Ok(Claim::Held(Fence {
                    process,
                    node,
                    number: row.get(0),
                }));
            }
            let row = conn
                .client
                .query_opt(&holder, &[&process])
                .await
                .map_err(|e| self.query_error(e))?;
            if let Some(row) = row {
                let expires_in_ms: i64 = row.get(2);
                if expires_in_ms > 0 {
                    return Ok(Claim::Taken {
                        node: row.get(0),
                        address: row.get(1),
                        expires_in_ms,
                    });
                }
            }
        }
        Err(StoreError::Database {
            address: self.shown.clone(),
            detail: format!("the lease of process {process} changed hands three times in a row"),
        })
    }

    async fn renew(&self, node: String, ttl_ms: i64) -> Result<Vec<Fence>, StoreError> {
        let t = &self.table;
        let sql = format!(
            "UPDATE {t}_lease SET expires = now() + $2::INT8 * INTERVAL '1 millisecond' \
             WHERE node = $1 RETURNING process, fence"
        );
        let mut slot = self.connection().await?;
        let conn = self.ready(&mut slot).await?;
        let rows = conn
            .client
            .query(&sql, &[&node, &ttl_ms])
            .await
            .map_err(|e| self.query_error(e))?;
        Ok(rows
            .into_iter()
            .map(|r| Fence {
                process: r.get(0),
                node: node.clone(),
                number: r.get(1),
            })
            .collect())
    }

    async fn release(&self, process: String, node: String) -> Result<(), StoreError> {
        let t = &self.table;
        let sql = format!(
            "UPDATE {t}_lease SET expires = now() WHERE process = $1 AND node = $2 AND expires > now()"
        );
        let mut slot = self.connection().await?;
        let conn = self.ready(&mut slot).await?;
        conn.client
            .execute(&sql, &[&process, &node])
            .await
            .map_err(|e| self.query_error(e))?;
        Ok(())
    }

    async fn put_if_absent(&self, key: Vec<u8>, value: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let t = &self.table;
        let insert = format!("INSERT INTO {t} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING");
        let mut slot = self.connection().await?;
        let conn = self.ready(&mut slot).await?;
        conn.client
            .execute(&insert, &[&key, &value])
            .await
            .map_err(|e| self.query_error(e))?;
        let row = conn
            .client
            .query_opt(&conn.get, &[&key])
            .await
            .map_err(|e| self.query_error(e))?;
        row.map(|r| r.get(0)).ok_or_else(|| StoreError::Database {
            address: self.shown.clone(),
            detail: "a value inserted a moment ago is missing".to_owned(),
        })
    }
}
