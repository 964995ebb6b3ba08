//! The client: one data directory, one tokio runtime, the processes joined.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use klad_core::{ActorId, MemberId, ProcessId};
use klad_store::{DocStore, Key, KvStore, SledStore};
use klad_sync::authorship::{DeviceKey, parse_key};
use serde::{Deserialize, Serialize};

use crate::error::{KladError, Result};
use crate::process::{KladProcess, ProcessInner};
use crate::storage::PREFIX;
use crate::types::{ProcessSummary, SyncStatus};

/// Told when something changes, so the app can refresh what it shows.
/// Called from a background thread; keep the work short.
#[uniffi::export(with_foreign)]
pub trait KladListener: Send + Sync {
    /// Documents of `process_id` changed (a local operation or changes from sync).
    fn documents_changed(&self, process_id: String);
    /// The sync status of `process_id` changed.
    fn sync_status_changed(&self, process_id: String, status: SyncStatus);
}

/// How long typing is collected before it becomes one change, unless the app
/// sets another window: short enough to feel live, long enough that samod never
/// sends one message per keystroke.
pub(crate) const DEFAULT_TYPING_WINDOW_MS: u64 = 75;

/// sled's page cache on a phone: a process's documents are a few MiB at most.
const PHONE_CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// This device: its name in peer ids, its Automerge actor and the seed of
/// its Ed25519 signing key (hex; devices from before keys get one on open).
#[derive(Serialize, Deserialize)]
struct DeviceRecord {
    device: String,
    actor: String,
    #[serde(default)]
    signing_seed: Option<String>,
}

/// 32 random bytes for a signing key's seed (uuid's v4 generator is the
/// system's random source).
fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed
}

/// What the phone remembers about a joined process.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct JoinRecord {
    pub process_id: String,
    pub member_id: String,
    pub server_url: String,
    pub token: String,
}

/// What every process of a client shares.
pub(crate) struct Shared {
    /// The data directory.
    pub dir: PathBuf,
    pub kv: SledStore,
    pub docs: DocStore<SledStore>,
    pub runtime: tokio::runtime::Handle,
    pub device: String,
    pub actor: ActorId,
    /// This device's signing key; its public half is registered with the actor.
    pub signing: DeviceKey,
    pub listener: Mutex<Option<Arc<dyn KladListener>>>,
    pub online_wanted: std::sync::atomic::AtomicBool,
    /// How long typing is collected before it becomes one change, in ms.
    pub typing_window_ms: std::sync::atomic::AtomicU64,
}

impl Shared {
    pub fn listener(&self) -> Option<Arc<dyn KladListener>> {
        lock(&self.listener).clone()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every guarded value stays consistent across a panic of its holder
    // (maps and plain state replaced whole), so recover the guard.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn key(parts: &[&str]) -> Result<Key> {
    Ok(Key::new(parts.iter().copied())?)
}

/// The phone client on one data directory. Safe to use from any thread.
#[derive(uniffi::Object)]
pub struct KladClient {
    shared: Arc<Shared>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    processes: Mutex<HashMap<String, Arc<KladProcess>>>,
}

fn claims_of(token: &str) -> Result<(MemberId, ProcessId)> {
    // The server verifies the signature when the phone connects; here the
    // phone only needs to know which process and member the token is for.
    klad_sync::token::unverified_claims(token).map_err(|_| {
        KladError::invalid(
            "The token is not a Klad invitation token (it is malformed or truncated). Copy the whole token from your invitation and try again.",
        )
    })
}

#[uniffi::export]
impl KladClient {
    /// Opens (creating if needed) the client's store in `data_dir`. Only one
    /// client may have a directory open at a time.
    #[uniffi::constructor]
    pub fn open(data_dir: String) -> Result<Arc<Self>> {
        let path = PathBuf::from(&data_dir);
        std::fs::create_dir_all(&path).map_err(|e| {
            KladError::storage(format!(
                "The data directory {data_dir} could not be created ({e}). Choose a directory this app may write."
            ))
        })?;
        let kv = SledStore::open_with_cache(&path, PHONE_CACHE_BYTES)?;
        let docs = DocStore::new(kv.clone());
        let device_key = key(&[PREFIX, "device"])?;
        let mut device: DeviceRecord = match kv.get(&device_key)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                KladError::storage(format!(
                    "The device record in {data_dir} is damaged ({e}). Restore the directory from a backup or join again on a fresh directory."
                ))
            })?,
            None => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                DeviceRecord {
                    device: format!("phone-{}", &id[..12]),
                    actor: ActorId::random().to_hex_string(),
                    signing_seed: None,
                }
            }
        };
        let seed = match device.signing_seed.as_deref().and_then(parse_key) {
            Some(seed) => seed,
            None => {
                let seed = random_seed();
                device.signing_seed = Some(seed.iter().map(|b| format!("{b:02x}")).collect());
                let bytes = serde_json::to_vec(&device).map_err(|e| {
                    KladError::storage(format!(
                        "The device record could not be written ({e}). Restart the app."
                    ))
                })?;
                kv.put(&device_key, &bytes)?;
                seed
            }
        };
        let actor = klad_sync::connect::parse_actor(&device.actor).ok_or_else(|| {
            KladError::storage(
                "The device record in the data directory is damaged (its actor id is not hexadecimal). Restore the directory from a backup.",
            )
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("klad-sync")
            .enable_all()
            .build()
            .map_err(|e| {
                KladError::storage(format!(
                    "The background sync could not be started ({e}). Restart the app."
                ))
            })?;
        let shared = Arc::new(Shared {
            dir: path.clone(),
            kv,
            docs,
            runtime: runtime.handle().clone(),
            device: device.device,
            actor,
            signing: DeviceKey::from_seed(seed),
            listener: Mutex::new(None),
            online_wanted: std::sync::atomic::AtomicBool::new(true),
            typing_window_ms: std::sync::atomic::AtomicU64::new(DEFAULT_TYPING_WINDOW_MS),
        });
        let client = Arc::new(KladClient {
            shared,
            runtime: Mutex::new(Some(runtime)),
            processes: Mutex::new(HashMap::new()),
        });
        // Open every joined process so that it syncs in the background.
        for rec in client.records()? {
            client.open_process(rec)?;
        }
        Ok(client)
    }

    /// The name this device uses towards the server (`<member>:<device>`).
    pub fn device_name(&self) -> String {
        self.shared.device.clone()
    }

    /// Sets (or clears) the listener told about changes.
    pub fn set_listener(&self, listener: Option<Arc<dyn KladListener>>) {
        *lock(&self.shared.listener) = listener;
    }

    /// Joins a process with an invitation token: remembers it, connects to
    /// `server_url` (`http(s)://host:port` or `ws(s)://host:port`) and waits
    /// (at most `timeout_ms`) until the process's documents are on this phone.
    /// Joining a process again with a new token replaces the token.
    pub fn join(
        &self,
        server_url: String,
        token: String,
        timeout_ms: u64,
    ) -> Result<Arc<KladProcess>> {
        let (member, process) = claims_of(&token)?;
        url::Url::parse(&server_url).map_err(|e| {
            KladError::invalid(format!(
                "The server address {server_url:?} is not a URL ({e}); use the form https://host:port."
            ))
        })?;
        let rec = JoinRecord {
            process_id: process.to_string(),
            member_id: member.to_string(),
            server_url,
            token,
        };
        let k = key(&[PREFIX, "joined", &rec.process_id])?;
        self.shared
            .kv
            .put(&k, &serde_json::to_vec(&rec).unwrap_or_default())?;
        if let Some(old) = lock(&self.processes).remove(&rec.process_id) {
            old.inner.stop();
        }
        let p = self.open_process(rec)?;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        while !p.inner.is_complete() {
            if Instant::now() > deadline {
                return Err(KladError::network(format!(
                    "The process could not be fetched from {} in time. Check the connection and the server address; the phone keeps trying in the background.",
                    p.inner.server_url
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(p)
    }

    /// The processes this phone has joined.
    pub fn processes(&self) -> Result<Vec<ProcessSummary>> {
        let open = lock(&self.processes).clone();
        let mut out: Vec<ProcessSummary> = open.values().map(|p| p.inner.summary()).collect();
        out.sort_by(|a, b| a.process_id.cmp(&b.process_id));
        Ok(out)
    }

    /// A joined process.
    pub fn process(&self, process_id: String) -> Result<Arc<KladProcess>> {
        lock(&self.processes).get(&process_id).cloned().ok_or_else(|| {
            KladError::not_found(format!(
                "This phone has not joined the process {process_id}. Join it with an invitation token first."
            ))
        })
    }

    /// Turns syncing with the server on or off for every process (off: the
    /// phone works as if it had no network; changes wait on the phone).
    pub fn set_online(&self, online: bool) {
        self.shared
            .online_wanted
            .store(online, std::sync::atomic::Ordering::SeqCst);
        for p in lock(&self.processes).values() {
            p.inner.set_online(online);
        }
    }

    /// Sets how long keystrokes (`edit_body`, `edit_heading`) are collected
    /// before they become one change and are synced: 75 ms unless set. Longer
    /// windows mean fewer, larger sync messages; keystrokes are on disk at
    /// once either way, and `commit()` ends a window early.
    pub fn set_typing_window(&self, millis: u64) {
        self.shared
            .typing_window_ms
            .store(millis, std::sync::atomic::Ordering::SeqCst);
    }

    /// Commits pending typing, stops syncing and releases the data directory
    /// once every object of this client is gone. The client cannot be used afterwards.
    pub fn shutdown(&self) {
        let processes: Vec<Arc<KladProcess>> =
            lock(&self.processes).drain().map(|(_, p)| p).collect();
        for p in &processes {
            let _ = p.inner.commit();
            p.inner.stop();
        }
        if let Some(rt) = lock(&self.runtime).take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl KladClient {
    fn records(&self) -> Result<Vec<JoinRecord>> {
        let prefix = key(&[PREFIX, "joined"])?;
        let mut out = Vec::new();
        for (_, v) in self.shared.kv.scan_prefix(&prefix)? {
            if let Ok(rec) = serde_json::from_slice::<JoinRecord>(&v) {
                out.push(rec);
            }
        }
        Ok(out)
    }

    fn open_process(&self, rec: JoinRecord) -> Result<Arc<KladProcess>> {
        let inner = ProcessInner::open(self.shared.clone(), rec.clone())?;
        let p = Arc::new(KladProcess { inner });
        lock(&self.processes).insert(rec.process_id, p.clone());
        Ok(p)
    }
}

impl Drop for KladClient {
    fn drop(&mut self) {
        if let Some(rt) = lock(&self.runtime).take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::claims_of;

    #[test]
    fn a_malformed_token_is_invalid_input_with_a_sentence() {
        for bad in ["", "hello", "v4.public.AAAA", "v4.local.abc"] {
            let e = claims_of(bad).unwrap_err();
            assert!(
                matches!(e, crate::KladError::InvalidInput { .. }),
                "{bad}: {e:?}"
            );
            assert!(e.to_string().ends_with('.'), "{e}");
        }
    }
}
