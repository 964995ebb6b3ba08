//! The shared backend: [`KvStore`] on PostgreSQL, for several klad-server
//! nodes on one database.
//!
//! # Schema
//!
//! One table of entries and one of facts about it, created on open:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS klad_kv (k BYTEA PRIMARY KEY, v BYTEA NOT NULL);
//! CREATE TABLE IF NOT EXISTS klad_kv_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
//! -- row ('schema_version', '1')
//! CREATE TABLE IF NOT EXISTS klad_kv_lease (...); -- process leases, see `lease`
//! ```
//!
//! Keys are encoded as in sled (each component followed by a NUL byte), and
//! `bytea` compares bytewise, so `ORDER BY k` is [`Key`]'s component-wise
//! order and the keys under a prefix `p` are exactly `p <= k < p'`, where `p'`
//! is `p` with its final NUL byte replaced by `0x01`.
//!
//! Only SQL that PostgreSQL-compatible distributed databases (CockroachDB,
//! YugabyteDB) also accept is used: plain tables with primary keys,
//! `INSERT ... ON CONFLICT` (also `DO UPDATE ... WHERE ... RETURNING`),
//! `UPDATE ... RETURNING`, `DELETE`, range `SELECT ... ORDER BY`,
//! transactions, `now()` and interval arithmetic. No advisory locks, `LISTEN`/`NOTIFY`, large objects or
//! stored procedures (the list is also in `docs/OPERATIONS.md`).
//!
//! # Threads and the async driver
//!
//! [`KvStore`] is synchronous, and the server calls it from
//! `tokio::task::spawn_blocking` but also, briefly, from async code (start-up,
//! the command line). The `postgres` crate's blocking client calls
//! `block_on` on a runtime of its own, which panics on a thread that is
//! already inside a tokio runtime. So `PgStore` owns its runtime on a thread
//! of its own (`klad-postgres`), where `tokio-postgres` connections live; a
//! call hands its work to that runtime and waits on a plain channel. That is
//! safe from any thread, inside a runtime or not, and dropping the last
//! handle only tells the thread to stop (dropping a runtime inside another
//! would panic).
//!
//! # Connections
//!
//! A small fixed pool ([`DEFAULT_CONNECTIONS`]) of connections, each behind
//! an async mutex, is enough: a transaction needs a connection of its own,
//! the server has one store call in flight per document, and the pool has no
//! policy to tune. A connection found closed (the database restarted) is
//! opened again by the next call that picks it. (A pool crate such as
//! deadpool-postgres would bring its own runtime assumptions and options for
//! what is ten lines here.)
//!
//! # TLS
//!
//! Every connection does TLS as the address says, the way libpq's users
//! expect (`?sslmode=require&sslrootcert=/etc/klad/db-ca.pem` in a
//! `postgres://` address, or `sslmode=require sslrootcert=...` in the
//! `key=value` form):
//!
//! | address says | connection |
//! | --- | --- |
//! | `sslmode=disable` | plain TCP |
//! | nothing, or `sslmode=prefer` | TLS if the server offers it, else plain TCP |
//! | `sslmode=require` | TLS, or no connection |
//! | `sslrootcert=<PEM file>`, with `sslmode` `verify-full`, `require`, `prefer` or none | TLS, or no connection; the server's certificate must chain to a CA in the file and name the address's host |
//!
//! Without `sslrootcert` any certificate is accepted, as libpq's `require`
//! does: the session is encrypted (the handshake signatures are checked, so
//! the server holds the key of the certificate it shows), which stops
//! eavesdroppers but not an impostor in the middle, who can show a
//! certificate of its own. `sslrootcert` verifies the server as libpq's
//! `verify-full` does. Without a CA file, `channel_binding=require` (SCRAM
//! logins) at least binds the login to the certificate the client saw, so
//! it fails through an impostor and the password is never sent in the
//! clear. `verify-ca`, `allow`, `sslrootcert=system` and
//! client certificates (`sslcert`, `sslkey`) are not supported; the first
//! three are refused with a sentence, the last two as unknown parameters.
//! TLS is rustls with the ring provider; the CA file is read when the store
//! opens. See `tls` for how the parameters are read.
//!
//! # Durability
//!
//! A write is durable when its `COMMIT` returns (PostgreSQL's default
//! `synchronous_commit = on`; see `docs/OPERATIONS.md`). `put` and `delete`
//! are single statements, each its own transaction; `write_batch` is one
//! transaction. A transaction the database aborts because of a concurrent
//! one (serialization failure, deadlock; common on CockroachDB) is retried a
//! few times. If the connection breaks while `COMMIT` is in flight the
//! outcome is unknown and the call fails: callers retry, which is harmless
//! because Klad's document values are named by their content.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, Statement};

use crate::kv::{Key, KvStore, StoreError, decode_key, encode_key};

mod lease;
mod tls;

pub use self::lease::{Claim, Fence};

/// The table a store uses when none is named.
pub const DEFAULT_TABLE: &str = "klad_kv";
/// Connections a store keeps open at most.
pub const DEFAULT_CONNECTIONS: usize = 4;
/// The version of the schema this code writes and reads.
pub const SCHEMA_VERSION: &str = "1";
/// How often a transaction aborted by a concurrent one is tried.
const ATTEMPTS: usize = 5;
/// How long connecting may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`KvStore`] on a PostgreSQL database (or one that speaks its protocol
/// and SQL, see the module docs).
///
/// Invariants:
/// - `put`, `delete` and `write_batch` return `Ok` only after the database
///   confirmed the `COMMIT` of their transaction;
/// - `write_batch` is one transaction: all of it or none of it, for every
///   reader on every node;
/// - a scan is one `SELECT`, which reads one snapshot, so it never sees half
///   of a batch;
/// - the password of the address never appears in an error or a log.
///
/// Clones share one runtime thread and one pool.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: tokio::runtime::Handle,
    /// Dropped with the last handle: the runtime thread then stops.
    _stop: tokio::sync::oneshot::Sender<()>,
    config: Config,
    /// TLS as the address asks for it (see `tls`).
    tls: tls::Tls,
    /// The address without its password, for messages.
    shown: String,
    table: String,
    pool: Vec<tokio::sync::Mutex<Option<Conn>>>,
    next: AtomicUsize,
}

/// One connection and its prepared statements.
struct Conn {
    client: Client,
    get: Statement,
    put: Statement,
    delete: Statement,
    scan: Statement,
    scan_keys: Statement,
    all_keys: Statement,
    /// Touches a lease row if it still holds a fencing number (see `lease`).
    fence: Statement,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.inner.shown)
            .field("table", &self.inner.table)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`,
    /// or libpq's `key=value` form) and opens the store in its table
    /// [`DEFAULT_TABLE`], creating the tables on first use. TLS follows the
    /// address's `sslmode` and `sslrootcert` (see "TLS" in the module docs).
    ///
    /// Fails with [`StoreError::Address`] for an address that does not parse,
    /// [`StoreError::Tls`] when TLS cannot be set up as the address asks,
    /// [`StoreError::Unreachable`] when the database cannot be reached or
    /// refuses the login, and [`StoreError::Schema`] when the tables were
    /// written by a newer Klad.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with_table(url, DEFAULT_TABLE)
    }

    /// [`Self::open`] on the table `table` (and `<table>_meta`): lowercase
    /// ASCII letters, digits and `_`, starting with a letter or `_`, at most
    /// 48 characters. Several stores can share one database this way (tests
    /// give each store its own table).
    pub fn open_with_table(url: &str, table: &str) -> Result<Self, StoreError> {
        check_table_name(table)?;
        let (url, tls_params) =
            tls::split_address(url).map_err(|detail| StoreError::Address { detail })?;
        let mut config: Config = url.parse().map_err(|e| StoreError::Address {
            detail: format!("{e}"),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("klad");
        }
        let shown = shown_address(&config);
        let tls = tls::Tls::new(tls_params, &mut config, &shown)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| thread_error(&shown, e))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("klad-postgres".into())
            .spawn(move || {
                // Runs the connections until the last handle is dropped.
                runtime.block_on(async move {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| thread_error(&shown, e))?;
        let store = Self {
            inner: Arc::new(Inner {
                runtime: handle,
                _stop: stop,
                config,
                tls,
                shown,
                table: table.to_owned(),
                pool: (0..DEFAULT_CONNECTIONS)
                    .map(|_| tokio::sync::Mutex::new(None))
                    .collect(),
                next: AtomicUsize::new(0),
            }),
        };
        store.run(|inner| async move { inner.create_schema().await })?;
        Ok(store)
    }

    /// The database's address without the password, as messages show it.
    pub fn address(&self) -> &str {
        &self.inner.shown
    }

    /// The table this store keeps its entries in.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// Drops this store's tables and everything in them. For tests and
    /// tools that made a store of their own; the handle is unusable after.
    pub fn drop_tables(self) -> Result<(), StoreError> {
        self.run(|inner| async move {
            let mut slot = inner.connection().await?;
            let conn = inner.ready(&mut slot).await?;
            let t = &inner.table;
            conn.client
                .batch_execute(&format!("DROP TABLE IF EXISTS {t}, {t}_meta, {t}_lease"))
                .await
                .map_err(|e| inner.query_error(e))
        })
    }

    /// Runs `work` on the store's runtime and waits for its result. Safe
    /// from any thread, including a tokio worker (it blocks that thread for
    /// the call, as a sled call does).
    fn run<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = work(Arc::clone(&self.inner));
        self.inner.runtime.spawn(async move {
            // The caller waits on `rx`; if it is gone nobody needs the answer.
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| StoreError::Database {
            address: self.inner.shown.clone(),
            detail: "the store's connection thread stopped".to_owned(),
        })?
    }
}

impl Inner {
    /// A pool slot: a free one if there is, else the next in turn.
    async fn connection(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Conn>>, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.pool.len();
        for i in 0..n {
            if let Ok(guard) = self.pool[(start + i) % n].try_lock() {
                return Ok(guard);
            }
        }
        Ok(self.pool[start % n].lock().await)
    }

    /// The slot's connection, (re)opened if it is missing or closed.
    async fn ready<'a>(&self, slot: &'a mut Option<Conn>) -> Result<&'a mut Conn, StoreError> {
        if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
            *slot = Some(self.connect().await?);
        }
        // Just filled when it was empty.
        slot.as_mut().ok_or_else(|| StoreError::Database {
            address: self.shown.clone(),
            detail: "no connection".to_owned(),
        })
    }

    /// A new connection, with TLS as the address asks, its driver running
    /// on this runtime.
    async fn open_client(&self) -> Result<Client, StoreError> {
        let (client, connection) =
            self.config
                .connect(self.tls.connector())
                .await
                .map_err(|e| match self.tls.failure(&e) {
                    Some(detail) => StoreError::Tls {
                        address: self.shown.clone(),
                        detail,
                    },
                    None => StoreError::Unreachable {
                        address: self.shown.clone(),
                        detail: describe(&e),
                    },
                })?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the
            // next call on its slot sees `is_closed` and reconnects.
            let _ = connection.await;
        });
        Ok(client)
    }

    async fn connect(&self) -> Result<Conn, StoreError> {
        let client = self.open_client().await?;
        let t = &self.table;
        let sql = [
            format!("SELECT v FROM {t} WHERE k = $1"),
            format!(
                "INSERT INTO {t} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
            ),
            format!("DELETE FROM {t} WHERE k = $1"),
            format!("SELECT k, v FROM {t} WHERE k >= $1 AND k < $2 ORDER BY k"),
            format!("SELECT k FROM {t} WHERE k >= $1 AND k < $2 ORDER BY k"),
            format!("SELECT k FROM {t} ORDER BY k"),
            lease::fence_sql(t),
        ];
        let mut prepared = Vec::with_capacity(sql.len());
        for text in &sql {
            prepared.push(
                client
                    .prepare(text)
                    .await
                    .map_err(|e| self.query_error(e))?,
            );
        }
        let [get, put, delete, scan, scan_keys, all_keys, fence]: [Statement; 7] =
            prepared.try_into().map_err(|_| StoreError::Database {
                address: self.shown.clone(),
                detail: "a statement could not be prepared".to_owned(),
            })?;
        Ok(Conn {
            client,
            get,
            put,
            delete,
            scan,
            scan_keys,
            all_keys,
            fence,
        })
    }

    /// Creates the tables if missing and checks the schema version.
    async fn create_schema(&self) -> Result<(), StoreError> {
        let t = &self.table;
        let mut slot = self.connection().await?;
        // The statements need the tables, so this connection is made by hand.
        let client = self.open_client().await?;
        let lease_table = lease::create_sql(t);
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {t} (k BYTEA PRIMARY KEY, v BYTEA NOT NULL);
             CREATE TABLE IF NOT EXISTS {t}_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
             {lease_table}
             INSERT INTO {t}_meta (name, value) VALUES ('schema_version', '{SCHEMA_VERSION}')
                 ON CONFLICT (name) DO NOTHING;"
        );
        // Two nodes creating the same table at once can make PostgreSQL
        // report a duplicate; the second attempt finds the table there.
        let mut result = client.batch_execute(&create).await;
        if result.is_err() {
            result = client.batch_execute(&create).await;
        }
        result.map_err(|e| self.query_error(e))?;
        let row = client
            .query_opt(
                &format!("SELECT value FROM {t}_meta WHERE name = 'schema_version'"),
                &[],
            )
            .await
            .map_err(|e| self.query_error(e))?;
        let version: Option<String> = row.map(|r| r.get(0));
        if version.as_deref() != Some(SCHEMA_VERSION) {
            return Err(StoreError::Schema {
                address: self.shown.clone(),
                table: t.clone(),
                found: version.unwrap_or_else(|| "none".to_owned()),
            });
        }
        drop(client);
        // Warm the first slot so the first real call does not pay for it.
        self.ready(&mut slot).await?;
        Ok(())
    }

    fn query_error(&self, e: tokio_postgres::Error) -> StoreError {
        if e.is_closed() {
            return StoreError::Unreachable {
                address: self.shown.clone(),
                detail: describe(&e),
            };
        }
        StoreError::Database {
            address: self.shown.clone(),
            detail: describe(&e),
        }
    }

    async fn get(&self, key: Vec<u8>) -> Result<Option<Vec<u8>>, StoreError> {
        let mut slot = self.connection().await?;
        let conn = self.ready(&mut slot).await?;
        let row = conn
            .client
            .query_opt(&conn.get, &[&key])
            .await
            .map_err(|e| self.query_error(e))?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn scan(
        &self,
        prefix: Option<Vec<u8>>,
        values: bool,
    ) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        let mut slot = self.connection().await?;
        let conn = self.ready(&mut slot).await?;
        let rows = match &prefix {
            None => conn.client.query(&conn.all_keys, &[]).await,
            Some(low) => {
                let high = upper_bound(low);
                let statement = if values { &conn.scan } else { &conn.scan_keys };
                conn.client.query(statement, &[low, &high]).await
            }
        }
        .map_err(|e| self.query_error(e))?;
        rows.into_iter()
            .map(|row| {
                let k: &[u8] = row.get(0);
                let v: Vec<u8> = if values { row.get(1) } else { Vec::new() };
                Ok((decode_key(k)?, v))
            })
            .collect()
    }

    /// One transaction: the puts, then the deletes (so a key in both ends
    /// up deleted). Retried when the database aborts it for a concurrent one.
    ///
    /// With a `fence`, the transaction first touches the process's lease
    /// row where it still holds this node's fencing number and has not
    /// expired (`UPDATE ... WHERE fence = $n`, which also locks the row
    /// until the commit, so a takeover waits for this write or this write
    /// sees the takeover); no such row, and nothing is written:
    /// [`StoreError::Fenced`].
    async fn write_batch(
        &self,
        fence: Option<&Fence>,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let mut slot = self.connection().await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = self.ready(&mut slot).await?;
            let result = async {
                let tx = conn.client.transaction().await?;
                if let Some(f) = fence {
                    let held = tx
                        .execute(&conn.fence, &[&f.process, &f.node, &f.number])
                        .await?;
                    if held != 1 {
                        // Dropping the transaction rolls it back.
                        return Ok(false);
                    }
                }
                for (k, v) in &puts {
                    tx.execute(&conn.put, &[k, v]).await?;
                }
                for k in &deletes {
                    tx.execute(&conn.delete, &[k]).await?;
                }
                tx.commit().await.map(|()| true)
            }
            .await;
            match result {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    return Err(StoreError::Fenced {
                        process: fence.map(|f| f.process.clone()).unwrap_or_default(),
                    });
                }
                Err(e) if attempt < ATTEMPTS && is_retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                }
                Err(e) => return Err(self.query_error(e)),
            }
        }
    }

    async fn execute_one(&self, put: bool, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        let mut slot = self.connection().await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = self.ready(&mut slot).await?;
            let result = if put {
                conn.client.execute(&conn.put, &[&key, &value]).await
            } else {
                conn.client.execute(&conn.delete, &[&key]).await
            };
            match result {
                Ok(_) => return Ok(()),
                Err(e) if attempt < ATTEMPTS && is_retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                }
                Err(e) => return Err(self.query_error(e)),
            }
        }
    }
}

/// True for the aborts a transaction may simply be tried again after.
fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// The smallest encoded key above every key that starts with `prefix` (an
/// encoded key, which always ends with its NUL terminator).
fn upper_bound(prefix: &[u8]) -> Vec<u8> {
    let mut high = prefix.to_vec();
    if let Some(last) = high.last_mut() {
        // Encoded keys end in 0x00; 0x01 sorts right above everything that
        // continues the prefix.
        *last = 1;
    }
    high
}

fn check_table_name(table: &str) -> Result<(), StoreError> {
    let mut chars = table.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if first_ok && rest_ok && table.len() <= 48 {
        Ok(())
    } else {
        Err(StoreError::Address {
            detail: format!(
                "the table name {table:?} is not usable; use at most 48 lowercase letters, digits and '_', starting with a letter or '_'"
            ),
        })
    }
}

/// `postgres://user@host:port/db`: the address as it may be shown.
fn shown_address(config: &Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    format!(
        "postgres://{}{}/{}",
        config
            .get_user()
            .map(|u| format!("{u}@"))
            .unwrap_or_default(),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// The most useful sentence part of a driver error: the database's own
/// message when it sent one, else the cause.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

fn thread_error(shown: &str, e: std::io::Error) -> StoreError {
    StoreError::Database {
        address: shown.to_owned(),
        detail: format!("the store's connection thread could not be started ({e})"),
    }
}

impl KvStore for PgStore {
    fn get(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        let key = encode_key(key);
        self.run(|inner| async move { inner.get(key).await })
    }

    fn put(&self, key: &Key, value: &[u8]) -> Result<(), StoreError> {
        let (key, value) = (encode_key(key), value.to_vec());
        self.run(|inner| async move { inner.execute_one(true, key, value).await })
    }

    fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let key = encode_key(key);
        self.run(|inner| async move { inner.execute_one(false, key, Vec::new()).await })
    }

    fn scan_prefix(&self, prefix: &Key) -> Result<Vec<(Key, Vec<u8>)>, StoreError> {
        let prefix = encode_key(prefix);
        self.run(|inner| async move { inner.scan(Some(prefix), true).await })
    }

    fn scan_keys(&self, prefix: Option<&Key>) -> Result<Vec<Key>, StoreError> {
        let prefix = prefix.map(encode_key);
        let entries = self.run(|inner| async move { inner.scan(prefix, false).await })?;
        Ok(entries.into_iter().map(|(k, _)| k).collect())
    }

    fn write_batch(&self, puts: &[(Key, Vec<u8>)], deletes: &[Key]) -> Result<(), StoreError> {
        if puts.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        let puts: Vec<(Vec<u8>, Vec<u8>)> = puts
            .iter()
            .map(|(k, v)| (encode_key(k), v.clone()))
            .collect();
        let deletes: Vec<Vec<u8>> = deletes.iter().map(encode_key).collect();
        self.run(|inner| async move { inner.write_batch(None, puts, deletes).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(parts: &[&str]) -> Key {
        Key::new(parts.iter().copied()).unwrap()
    }

    #[test]
    fn prefix_range_holds_exactly_the_keys_under_the_prefix() {
        let low = encode_key(&key(&["a"]));
        let high = upper_bound(&low);
        for (parts, inside) in [
            (&["a"][..], true),
            (&["a", "b"], true),
            (&["a", "\u{1}"], true),
            (&["a", "\u{10ffff}"], true),
            (&["ab"], false),
            (&["a\u{1}"], false),
            (&["A"], false),
            (&["b"], false),
        ] {
            let k = encode_key(&key(parts));
            assert_eq!(
                k >= low && k < high,
                inside,
                "{parts:?} inside [{low:?}, {high:?})"
            );
        }
    }

    #[test]
    fn addresses_are_shown_without_password() {
        let config: Config = "postgres://klad:s3cret@db.example:5433/klad_test"
            .parse()
            .unwrap();
        let shown = shown_address(&config);
        assert_eq!(shown, "postgres://klad@db.example:5433/klad_test");
        let config: Config = "host=localhost user=u password=pw dbname=d"
            .parse()
            .unwrap();
        assert!(!shown_address(&config).contains("pw"));
    }

    #[test]
    fn table_names_are_checked() {
        for good in ["klad_kv", "_t1", "t"] {
            check_table_name(good).unwrap();
        }
        for bad in ["", "1t", "Kv", "kv;drop", "a-b", &"x".repeat(49)] {
            let err = check_table_name(bad).unwrap_err();
            assert!(err.to_string().ends_with('.'), "{err}");
        }
    }

    #[test]
    fn a_malformed_address_is_a_sentence() {
        let err = PgStore::open("postgres://klad:pw@host:notaport/db").unwrap_err();
        assert!(matches!(err, StoreError::Address { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("postgres://") && !msg.contains("pw@"), "{msg}");
    }

    #[test]
    fn an_unreachable_database_names_the_address_and_what_to_check() {
        // Port 1 on loopback: nothing listens there.
        let err = PgStore::open("postgres://klad:pw@127.0.0.1:1/klad_none").unwrap_err();
        assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("postgres://klad@127.0.0.1:1/klad_none"),
            "{msg}"
        );
        assert!(!msg.contains("pw"), "{msg}");
        assert!(msg.contains("Check that"), "{msg}");
    }
}
