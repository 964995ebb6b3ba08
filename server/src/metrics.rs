//! Prometheus counters, rendered as text at `/metrics`. Plain atomics: the
//! server exposes a handful of series and needs no metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the storage flush latency histogram buckets.
const FLUSH_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0,
];

/// All counters of one server.
#[derive(Default)]
pub struct Metrics {
    connections_total: AtomicU64,
    connections_open: AtomicI64,
    documents_loaded: AtomicI64,
    sync_states: AtomicI64,
    stores_in_flight: AtomicI64,
    waiting_messages: AtomicI64,
    processes_loaded: AtomicI64,
    slow_clients: AtomicU64,
    process_unloads: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    storage_errors: AtomicU64,
    store_broken: AtomicI64,
    store_restarts: AtomicU64,
    fenced_writes: AtomicU64,
    relayed: AtomicU64,
    http_panics: AtomicU64,
    flush_buckets: [AtomicU64; FLUSH_BUCKETS.len()],
    flush_count: AtomicU64,
    flush_sum_us: AtomicU64,
    refused_writes: Mutex<BTreeMap<String, u64>>,
    refused_changes: Mutex<BTreeMap<String, u64>>,
    unapplied_changes: Mutex<BTreeMap<String, u64>>,
    rejected_connections: Mutex<BTreeMap<String, u64>>,
    closed_connections: Mutex<BTreeMap<String, u64>>,
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, reason: &str) {
    bump_by(map, reason, 1);
}

fn bump_by(map: &Mutex<BTreeMap<String, u64>>, reason: &str, n: u64) {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    *m.entry(reason.to_owned()).or_default() += n;
}

fn read(map: &Mutex<BTreeMap<String, u64>>, reason: &str) -> u64 {
    let m = map.lock().unwrap_or_else(|e| e.into_inner());
    m.get(reason).copied().unwrap_or(0)
}

impl Metrics {
    /// A connection was accepted (after authentication).
    pub fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    /// An accepted connection ended.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> i64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    /// A connection attempt was refused before the upgrade (bad token, limit).
    pub fn connection_rejected(&self, reason: &str) {
        bump(&self.rejected_connections, reason);
    }

    /// The server closed a connection for `reason` (oversized, malformed, ...).
    pub fn connection_closed_by_server(&self, reason: &str) {
        bump(&self.closed_connections, reason);
    }

    /// A frame arrived from a client.
    pub fn message_in(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A frame was sent to a client.
    pub fn message_out(&self, bytes: usize) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A message had changes refused for `reason` (counted once per message).
    pub fn refused_write(&self, reason: &str) {
        bump(&self.refused_writes, reason);
    }

    /// Refused writes so far for `reason`.
    pub fn refused_writes(&self, reason: &str) -> u64 {
        read(&self.refused_writes, reason)
    }

    /// `n` single changes were refused for `reason` (the authorship check:
    /// `forged_author`, `bad_signature`, or a document rule's label).
    pub fn refused_changes(&self, reason: &str, n: usize) {
        bump_by(&self.refused_changes, reason, n as u64);
    }

    /// Single changes refused so far for `reason`.
    pub fn refused_changes_total(&self, reason: &str) -> u64 {
        read(&self.refused_changes, reason)
    }

    /// `n` changes a client sent could not be applied (`duplicate_seq`,
    /// `missing_dependencies`, `not_applied`).
    pub fn unapplied_changes(&self, reason: &str, n: usize) {
        bump_by(&self.unapplied_changes, reason, n as u64);
    }

    /// Number of process hubs running now.
    pub fn set_processes_loaded(&self, n: i64) {
        self.processes_loaded.store(n, Ordering::Relaxed);
    }

    /// Processes whose hub is running now.
    pub fn processes_loaded(&self) -> i64 {
        self.processes_loaded.load(Ordering::Relaxed)
    }

    /// One hub's sizes changed from `before` to `after` (documents in
    /// memory, sync states, stores in flight, messages waiting): the gauges
    /// sum every process's hub.
    pub fn hub_changed(&self, before: &klad_sync::hub::Stats, after: &klad_sync::hub::Stats) {
        let delta = |g: &AtomicI64, b: usize, a: usize| {
            if a != b {
                g.fetch_add(a as i64 - b as i64, Ordering::Relaxed);
            }
        };
        delta(&self.documents_loaded, before.documents, after.documents);
        delta(&self.sync_states, before.sync_states, after.sync_states);
        delta(
            &self.stores_in_flight,
            before.stores_in_flight,
            after.stores_in_flight,
        );
        delta(
            &self.waiting_messages,
            before.waiting_messages,
            after.waiting_messages,
        );
    }

    /// A client read too slowly: its outbound queue was full and it was closed.
    pub fn slow_client(&self) {
        self.slow_clients.fetch_add(1, Ordering::Relaxed);
    }

    /// An idle process was unloaded from memory.
    pub fn process_unloaded(&self) {
        self.process_unloads.fetch_add(1, Ordering::Relaxed);
    }

    /// A storage call failed.
    pub fn storage_error(&self) {
        self.storage_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The store refuses writes until it is opened again (`true`), or the
    /// server has just started on it (`false`).
    pub fn set_store_broken(&self, broken: bool) {
        self.store_broken
            .store(i64::from(broken), Ordering::Relaxed);
    }

    /// This process restarted itself `n` times so far to open its store
    /// again (the count is handed on across the restarts).
    pub fn set_store_restarts(&self, n: u64) {
        self.store_restarts.store(n, Ordering::Relaxed);
    }

    /// A write for a process was refused because another node serves it now.
    pub fn fenced_write(&self) {
        self.fenced_writes.fetch_add(1, Ordering::Relaxed);
    }

    /// A request or connection was relayed to the node that serves its process.
    pub fn relayed(&self) {
        self.relayed.fetch_add(1, Ordering::Relaxed);
    }

    /// Storage errors so far.
    pub fn storage_errors(&self) -> u64 {
        self.storage_errors.load(Ordering::Relaxed)
    }

    /// An HTTP request panicked (it was answered with a 500 and a sentence).
    pub fn http_panic(&self) {
        self.http_panics.fetch_add(1, Ordering::Relaxed);
    }

    /// HTTP requests that panicked so far.
    pub fn http_panics(&self) -> u64 {
        self.http_panics.load(Ordering::Relaxed)
    }

    /// A store (with its flush) took `d`.
    pub fn observe_flush(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (i, bound) in FLUSH_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.flush_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.flush_count.fetch_add(1, Ordering::Relaxed);
        self.flush_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let g = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "klad_connections_total",
            "Websocket connections accepted after authentication.",
            g(&self.connections_total),
        );
        counter(
            "klad_messages_in_total",
            "Frames received from clients.",
            g(&self.messages_in),
        );
        counter(
            "klad_messages_out_total",
            "Frames sent to clients.",
            g(&self.messages_out),
        );
        counter(
            "klad_bytes_in_total",
            "Bytes received from clients.",
            g(&self.bytes_in),
        );
        counter(
            "klad_bytes_out_total",
            "Bytes sent to clients.",
            g(&self.bytes_out),
        );
        counter(
            "klad_process_unloads_total",
            "Idle processes unloaded from memory (their hub stopped).",
            g(&self.process_unloads),
        );
        counter(
            "klad_slow_clients_total",
            "Connections closed because their outbound queue was full (the client read too slowly).",
            g(&self.slow_clients),
        );
        counter(
            "klad_storage_errors_total",
            "Storage calls that failed.",
            g(&self.storage_errors),
        );
        counter(
            "klad_store_restarts_total",
            "Times the server restarted itself in place to open its store again after the disk failed a write (sled), since it was started.",
            g(&self.store_restarts),
        );
        counter(
            "klad_fenced_writes_total",
            "Writes refused because another node took the process's lease over (several nodes on PostgreSQL).",
            g(&self.fenced_writes),
        );
        counter(
            "klad_relayed_total",
            "Requests and sync connections relayed to the node that serves their process.",
            g(&self.relayed),
        );
        counter(
            "klad_http_panics_total",
            "HTTP requests that panicked (a bug; each was answered with a 500 and logged).",
            g(&self.http_panics),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let _ = writeln!(
                out,
                "# HELP klad_tokio_tasks Tasks alive in the server's async runtime (connections, hubs, stores).\n# TYPE klad_tokio_tasks gauge\nklad_tokio_tasks {}",
                rt.metrics().num_alive_tasks()
            );
        }
        let _ = writeln!(
            out,
            "# HELP klad_connections_open Websocket connections open now.\n# TYPE klad_connections_open gauge\nklad_connections_open {}",
            self.connections_open.load(Ordering::Relaxed)
        );
        for (name, help, v) in [
            (
                "klad_documents_loaded",
                "Documents held in memory by the hubs (loaded or loading).",
                &self.documents_loaded,
            ),
            (
                "klad_sync_states",
                "Sync states in the hubs: (connection, document) subscriptions.",
                &self.sync_states,
            ),
            (
                "klad_stores_in_flight",
                "Document stores written but not yet on disk.",
                &self.stores_in_flight,
            ),
            (
                "klad_waiting_messages",
                "Inbound messages and server writes waiting for a load or a store.",
                &self.waiting_messages,
            ),
            (
                "klad_processes_loaded",
                "Processes whose hub is running.",
                &self.processes_loaded,
            ),
            (
                "klad_store_broken",
                "1 while the store refuses writes since the disk failed one (sled; the server restarts itself in place once the data directory takes writes again), else 0.",
                &self.store_broken,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        for (name, help, map) in [
            (
                "klad_refused_writes_total",
                "Inbound messages that had changes refused, once per message and reason (klad_refused_changes_total counts the changes). They are never stored or forwarded.",
                &self.refused_writes,
            ),
            (
                "klad_refused_changes_total",
                "Single changes refused by the per-change check, by reason (forged_author: another member's device without their signature; bad_signature; or the document rule that refused the author). Never stored or forwarded.",
                &self.refused_changes,
            ),
            (
                "klad_unapplied_changes_total",
                "Changes a client sent that the server could not apply, by reason (duplicate_seq, missing_dependencies, not_applied); the sending connection is closed with a sentence.",
                &self.unapplied_changes,
            ),
            (
                "klad_rejected_connections_total",
                "Connection attempts refused before the websocket upgrade, by reason.",
                &self.rejected_connections,
            ),
            (
                "klad_server_closed_connections_total",
                "Connections the server closed, by reason.",
                &self.closed_connections,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let m = map.lock().unwrap_or_else(|e| e.into_inner());
            for (reason, v) in m.iter() {
                let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {v}");
            }
        }
        let name = "klad_storage_flush_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to write and flush one document store.\n# TYPE {name} histogram"
        );
        for (i, bound) in FLUSH_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                g(&self.flush_buckets[i])
            );
        }
        let count = g(&self.flush_count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            g(&self.flush_sum_us) as f64 / 1_000_000.0
        );
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}
