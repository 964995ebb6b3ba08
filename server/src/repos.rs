//! One samod repo per process, started when first needed and stopped when idle.
//!
//! samod 0.16 keeps every document actor (the whole Automerge document) in
//! memory until its repo stops; there is no per-document close. A sync
//! connection belongs to exactly one process (its token names it), so the
//! server runs one repo per process, all on the same storage, durability
//! tracker, share policy and metrics, and stops a process's repo once it has
//! had no connection and no facilitation activity for the idle period.
//! `Repo::stop` terminates every document actor after its pending storage
//! writes are flushed, so unloading loses nothing.
//!
//! Everything that uses a repo holds a [`Lease`] on it; a repo with leases is
//! never stopped. Starting and stopping one process's repo happen under that
//! process's gate (an async mutex), so a lease asked for while the repo is
//! stopping waits until the stop has finished and then starts a fresh repo:
//! two repos of one process never run at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use klad_core::ProcessId;
use klad_core::store::SledStore;
use samod::{AcceptorHandle, PeerId, Repo, Stopped};

use crate::directory::{Directory, Policy};
use crate::durability::Durability;
use crate::metrics::{Metrics, MetricsObserver};
use crate::storage::SamodStore;

/// The peer id of the server in every repo. Each client connects to exactly
/// one repo, so it never sees two peers with this id.
pub use klad_sync::access::SERVER_PEER_ID;

/// How long a stop may take before it is logged as an error.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// What every process repo is built from.
pub struct RepoParts {
    /// The store all repos share.
    pub store: SledStore,
    /// The durability tracker all repos report to.
    pub durability: Arc<Durability>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The membership index (the share policy).
    pub directory: Arc<Directory>,
    /// Fault injection for tests: delay every storage put.
    pub put_delay: Option<Duration>,
}

#[derive(Clone)]
struct Live {
    repo: Repo,
    acceptor: AcceptorHandle,
}

#[derive(Default)]
struct Slot {
    /// Held while this process's repo starts or stops.
    gate: Arc<tokio::sync::Mutex<()>>,
    live: Option<Live>,
    users: usize,
    idle_since: Option<Instant>,
}

/// The process repos of one server.
pub struct Repos {
    parts: RepoParts,
    idle: Duration,
    slots: Mutex<HashMap<ProcessId, Slot>>,
    /// Serialises `Repo::load` (which writes samod's storage id on a fresh store).
    loading: tokio::sync::Mutex<()>,
    stopping: AtomicBool,
    /// Fault injection for tests: hold the gate this long while unloading.
    unload_delay: Option<Duration>,
}

/// A use of one process's repo; while any lease is held the repo stays loaded.
pub struct Lease {
    repos: Arc<Repos>,
    process: ProcessId,
    live: Live,
}

impl Lease {
    /// The repo.
    pub fn repo(&self) -> &Repo {
        &self.live.repo
    }

    /// Where this process's connections are handed to samod.
    pub fn acceptor(&self) -> &AcceptorHandle {
        &self.live.acceptor
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut slots = self.repos.lock();
        if let Some(s) = slots.get_mut(&self.process) {
            s.users = s.users.saturating_sub(1);
            if s.users == 0 {
                s.idle_since = Some(Instant::now());
            }
        }
    }
}

impl Repos {
    /// Process repos built from `parts`, unloaded after `idle` without use.
    pub fn new(parts: RepoParts, idle: Duration, unload_delay: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            parts,
            idle,
            slots: Mutex::new(HashMap::new()),
            loading: tokio::sync::Mutex::new(()),
            stopping: AtomicBool::new(false),
            unload_delay,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProcessId, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a process repo may stay unused before it is stopped.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Number of process repos running now.
    pub fn loaded(&self) -> usize {
        self.lock().values().filter(|s| s.live.is_some()).count()
    }

    fn update_gauge(&self, slots: &HashMap<ProcessId, Slot>) {
        let n = slots.values().filter(|s| s.live.is_some()).count();
        self.parts.metrics.set_processes_loaded(n as i64);
    }

    /// Builds and starts a repo that belongs to no process yet.
    pub async fn fresh(&self) -> Result<Repo, Stopped> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(Stopped);
        }
        let _loading = self.loading.lock().await;
        let p = &self.parts;
        Ok(Repo::build_tokio()
            .with_peer_id(PeerId::from(SERVER_PEER_ID))
            .with_storage(
                SamodStore::new(p.store.clone(), p.durability.clone(), p.metrics.clone())
                    .with_put_delay(p.put_delay),
            )
            .with_share_policy(Policy(p.directory.clone()))
            .with_observer(MetricsObserver(p.metrics.clone()))
            .load()
            .await)
    }

    fn acceptor_for(process: &ProcessId, repo: &Repo) -> Result<AcceptorHandle, Stopped> {
        let url = url::Url::parse(&format!("ws://klad-server/sync?process={process}"))
            .map_err(|_| Stopped)?;
        repo.make_acceptor(url)
    }

    /// Registers `repo` (made with [`Repos::fresh`]) as the repo of the new
    /// process `process`, and leases it.
    pub fn adopt(self: &Arc<Self>, process: &ProcessId, repo: Repo) -> Result<Lease, Stopped> {
        let acceptor = Self::acceptor_for(process, &repo)?;
        let live = Live { repo, acceptor };
        let mut slots = self.lock();
        let slot = slots.entry(process.clone()).or_default();
        if slot.live.is_some() {
            // Process ids are fresh document ids; this cannot happen.
            return Err(Stopped);
        }
        slot.live = Some(live.clone());
        slot.users += 1;
        slot.idle_since = None;
        self.update_gauge(&slots);
        Ok(Lease {
            repos: self.clone(),
            process: process.clone(),
            live,
        })
    }

    /// Leases the repo of `process`, starting it if it is not running (and
    /// waiting for a stop in progress to finish first). `Err` once the server
    /// is shutting down.
    pub async fn lease(self: &Arc<Self>, process: &ProcessId) -> Result<Lease, Stopped> {
        loop {
            let gate = {
                let mut slots = self.lock();
                let slot = slots.entry(process.clone()).or_default();
                if let Some(live) = &slot.live {
                    let live = live.clone();
                    slot.users += 1;
                    slot.idle_since = None;
                    return Ok(Lease {
                        repos: self.clone(),
                        process: process.clone(),
                        live,
                    });
                }
                slot.gate.clone()
            };
            let asked = Instant::now();
            let _gate = gate.lock().await;
            let waited = asked.elapsed();
            if self.lock().get(process).is_some_and(|s| s.live.is_some()) {
                continue;
            }
            if self.stopping.load(Ordering::SeqCst) {
                return Err(Stopped);
            }
            let repo = self.fresh().await?;
            let acceptor = Self::acceptor_for(process, &repo)?;
            let live = Live { repo, acceptor };
            let mut slots = self.lock();
            let slot = slots.entry(process.clone()).or_default();
            slot.live = Some(live.clone());
            slot.users += 1;
            slot.idle_since = None;
            self.update_gauge(&slots);
            tracing::debug!(process = %process, waited = ?waited, "process loaded");
            return Ok(Lease {
                repos: self.clone(),
                process: process.clone(),
                live,
            });
        }
    }

    /// Stops the repo of every process that has been unused for the idle
    /// period. Returns how many were stopped.
    pub async fn unload_idle(&self) -> usize {
        let candidates: Vec<(ProcessId, Arc<tokio::sync::Mutex<()>>)> = {
            let slots = self.lock();
            slots
                .iter()
                .filter(|(_, s)| {
                    s.live.is_some()
                        && s.users == 0
                        && s.idle_since.is_some_and(|t| t.elapsed() >= self.idle)
                })
                .map(|(p, s)| (p.clone(), s.gate.clone()))
                .collect()
        };
        let mut n = 0;
        for (process, gate) in candidates {
            let _gate = gate.lock().await;
            // Taken out under the slots lock, so no lease can be handed out
            // between the check and the take; later leases wait on the gate.
            let live = {
                let mut slots = self.lock();
                let Some(slot) = slots.get_mut(&process) else {
                    continue;
                };
                let idle =
                    slot.users == 0 && slot.idle_since.is_some_and(|t| t.elapsed() >= self.idle);
                if !idle {
                    continue;
                }
                let live = slot.live.take();
                slot.idle_since = None;
                self.update_gauge(&slots);
                live
            };
            let Some(live) = live else { continue };
            if let Some(d) = self.unload_delay {
                tokio::time::sleep(d).await;
            }
            stop_repo(&live.repo, &process).await;
            // Every put has finished (samod stops a document only once it is
            // flushed); a reload records the stored changes again.
            for doc in self.parts.directory.documents_of(&process) {
                self.parts.durability.forget(&doc);
            }
            self.parts.metrics.process_unloaded();
            tracing::info!(process = %process, "idle process unloaded from memory");
            n += 1;
        }
        n
    }

    /// Unloads idle processes until the server stops.
    pub async fn run_unloader(self: Arc<Self>) {
        let tick = (self.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        while !self.stopping.load(Ordering::SeqCst) {
            tokio::time::sleep(tick).await;
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            self.unload_idle().await;
        }
    }

    /// Stops every repo (writing out everything they hold); no new ones start.
    pub async fn stop_all(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let gates: Vec<(ProcessId, Arc<tokio::sync::Mutex<()>>)> = self
            .lock()
            .iter()
            .map(|(p, s)| (p.clone(), s.gate.clone()))
            .collect();
        let mut stops = Vec::new();
        for (process, gate) in gates {
            stops.push(async move {
                // Waits for a start or unload in progress.
                let _gate = gate.lock().await;
                let live = {
                    let mut slots = self.lock();
                    let live = slots.get_mut(&process).and_then(|s| s.live.take());
                    self.update_gauge(&slots);
                    live
                };
                if let Some(live) = live {
                    stop_repo(&live.repo, &process).await;
                }
            });
        }
        futures::future::join_all(stops).await;
    }
}

async fn stop_repo(repo: &Repo, process: &ProcessId) {
    if tokio::time::timeout(STOP_LIMIT, repo.stop()).await.is_err() {
        tracing::error!(
            process = %process,
            "samod did not stop within 30 seconds; some documents may not have been flushed"
        );
    }
}
