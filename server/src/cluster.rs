//! Several nodes on one PostgreSQL database: which node serves which
//! process.
//!
//! Every process is served by one node at a time, its owner, recorded in a
//! lease row with an expiry and a fencing number (klad-store's
//! [`PgStore::claim`]). A node takes a free or expired lease on the first
//! use of the process, renews every lease it holds every third of the lease
//! time, and gives back the leases of processes it has not used for a while.
//! Every write for a process goes through [`Cluster::fence`]: the store
//! writes only while the lease row still holds this node's fencing number,
//! checked in the write's own transaction, so a node that was paused or cut
//! off past its lease never writes after another node took over.
//!
//! A node that finds a lease gone at renewal tells the process's hub, which
//! closes its connections with [`MOVED`]; clients reconnect (to any node)
//! and reach the new owner through the relay ([`crate::relay`]).
//!
//! On sled there is no cluster: one node owns everything, nothing is fenced.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use klad_core::ProcessId;
use klad_store::{Claim, Fence, PgStore, StoreError};

/// The default lease time.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

/// A lease of a process not used for this long is given back (the
/// process's hub has stopped by then too, unless it has connections).
pub const RELEASE_UNUSED_AFTER: Duration = Duration::from_secs(60);

/// The websocket close code for "the service restarted, reconnect" (1012):
/// connections of a process whose lease moved to another node.
pub const MOVED_CODE: u16 = 1012;

/// The sentence connections of a process whose lease moved are closed with.
pub const MOVED: &str =
    "This process is now served by another server node; reconnect to go on syncing.";

/// Who serves a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// This node. `fresh`: it has just taken the process over, so what it
    /// keeps in memory about the process must be read again.
    Here {
        /// Newly taken.
        fresh: bool,
    },
    /// Another node, reached at `address` (empty: the command line holds
    /// it for a moment and cannot be reached).
    There {
        /// The owner's address (`http://host:port`).
        address: String,
    },
}

#[derive(Clone, Copy, Debug)]
struct Held {
    fence: i64,
    /// Until then this node may route to itself without asking the database.
    until: Instant,
    /// Last asked for.
    used: Instant,
    /// When this node took it (a renewal that started earlier may not
    /// include it yet).
    taken: Instant,
    /// What this node keeps in memory about the process was read again
    /// after taking it ([`Cluster::ready`]); until then every use is told
    /// `fresh`.
    ready: bool,
}

/// This node's leases.
pub struct Cluster {
    store: PgStore,
    node: String,
    address: String,
    ttl: Duration,
    held: Mutex<HashMap<ProcessId, Held>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A node on `store`, reachable by other nodes at `address` (empty for
    /// the command line, which serves nobody), taking leases for `ttl`. The
    /// node's id is new at every start, so a restarted node never mistakes
    /// its old leases for its own.
    pub fn new(store: PgStore, address: String, ttl: Duration) -> Self {
        Self {
            store,
            node: uuid::Uuid::new_v4().to_string(),
            address,
            ttl,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<ProcessId, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Where other nodes reach this one.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The lease time.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Who serves `process`, taking it for this node if it is free or its
    /// lease expired. Asks the database unless this node renewed its lease
    /// recently.
    pub async fn owner(&self, process: &ProcessId) -> Result<Owner, StoreError> {
        let now = Instant::now();
        if let Some(h) = self.held().get_mut(process)
            && h.until > now
        {
            h.used = now;
            return Ok(Owner::Here { fresh: !h.ready });
        }
        let (store, node, address, ttl, pid) = (
            self.store.clone(),
            self.node.clone(),
            self.address.clone(),
            self.ttl,
            process.to_string(),
        );
        let claim = tokio::task::spawn_blocking(move || store.claim(&pid, &node, &address, ttl))
            .await
            .map_err(|e| StoreError::Backend(format!("a lease claim was cancelled ({e})")))??;
        let mut held = self.held();
        match claim {
            Claim::Held(fence) => {
                let before = held.get(process).filter(|h| h.fence == fence.number);
                let fresh = before.is_none_or(|h| !h.ready);
                let taken = before.map_or(now, |h| h.taken);
                held.insert(
                    process.clone(),
                    Held {
                        fence: fence.number,
                        until: now + self.ttl - self.ttl / 4,
                        used: now,
                        taken,
                        ready: !fresh,
                    },
                );
                if fresh {
                    tracing::info!(process = %process, fence = fence.number, "took the lease of a process");
                }
                Ok(Owner::Here { fresh })
            }
            Claim::Taken { address, .. } => {
                held.remove(process);
                Ok(Owner::There { address })
            }
        }
    }

    /// What this node keeps in memory about `process` has been read again
    /// since it took the process: later uses are no longer `fresh`.
    pub fn ready(&self, process: &ProcessId) {
        if let Some(h) = self.held().get_mut(process) {
            h.ready = true;
        }
    }

    /// The fence a write for `process` carries: `None` when this node does
    /// not hold its lease (then it must not write at all).
    pub fn fence(&self, process: &ProcessId) -> Option<Fence> {
        self.held().get(process).map(|h| Fence {
            process: process.to_string(),
            node: self.node.clone(),
            number: h.fence,
        })
    }

    /// Renews every lease this node holds; returns the processes whose
    /// lease is no longer this node's (another node took it over).
    pub async fn renew(&self) -> Result<Vec<ProcessId>, StoreError> {
        if self.held().is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let (store, node, ttl) = (self.store.clone(), self.node.clone(), self.ttl);
        let kept = tokio::task::spawn_blocking(move || store.renew(&node, ttl))
            .await
            .map_err(|e| StoreError::Backend(format!("a lease renewal was cancelled ({e})")))??;
        let kept: HashMap<String, i64> = kept.into_iter().map(|f| (f.process, f.number)).collect();
        let mut held = self.held();
        let mut lost = Vec::new();
        held.retain(|pid, h| match kept.get(pid.as_str()) {
            Some(&number) if number == h.fence => {
                h.until = started + self.ttl - self.ttl / 4;
                true
            }
            // Taken while the renewal was on its way.
            None if h.taken >= started => true,
            _ => {
                lost.push(pid.clone());
                false
            }
        });
        for pid in &lost {
            tracing::warn!(process = %pid, "the lease of a process passed to another node");
        }
        Ok(lost)
    }

    /// Gives back the leases of processes not used for `unused` for which
    /// `busy` says no (no hub runs for them here).
    pub async fn release_unused(&self, unused: Duration, busy: impl Fn(&ProcessId) -> bool) {
        let now = Instant::now();
        let idle: Vec<ProcessId> = {
            let mut held = self.held();
            let idle: Vec<ProcessId> = held
                .iter()
                .filter(|(pid, h)| now.duration_since(h.used) >= unused && !busy(pid))
                .map(|(pid, _)| pid.clone())
                .collect();
            for pid in &idle {
                held.remove(pid);
            }
            idle
        };
        for pid in idle {
            self.release(&pid).await;
        }
    }

    /// Gives back every lease (at shutdown, after the hubs stored everything).
    pub async fn release_all(&self) {
        let all: Vec<ProcessId> = self.held().drain().map(|(pid, _)| pid).collect();
        for pid in all {
            self.release(&pid).await;
        }
    }

    async fn release(&self, pid: &ProcessId) {
        let (store, node, p) = (self.store.clone(), self.node.clone(), pid.to_string());
        match tokio::task::spawn_blocking(move || store.release(&p, &node)).await {
            Ok(Ok(())) => tracing::debug!(process = %pid, "gave back the lease of a process"),
            // It runs out by itself.
            Ok(Err(e)) => {
                tracing::warn!(process = %pid, error = %e, "could not give back a lease")
            }
            Err(e) => tracing::warn!(process = %pid, error = %e, "could not give back a lease"),
        }
    }
}
