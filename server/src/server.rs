//! Putting the parts together: open the data directory, run a sync hub per
//! process on it (see [`crate::hubs`]), serve HTTP, shut down cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use klad_store::{DocStore, KvStore};
use serde::{Deserialize, Serialize};

use crate::auth::{Keys, SIGNING_KEY_FILE, load_or_create_admin_secret, share_admin_secret};
use crate::cluster::{Cluster, DEFAULT_LEASE, RELEASE_UNUSED_AFTER};
use crate::connection::ConnectionShared;
use crate::directory::Directory;
use crate::facilitation::Facilitation;
use crate::gate::NewDevice;
use crate::http::{AppState, router};
use crate::hubs::{HubParts, Hubs};
use crate::metrics::Metrics;
use crate::relay::Relay;
use crate::store::{AnyStore, StoreLocation};

/// The file a running server writes into its data directory so that the
/// command line can reach it (removed on a clean shutdown).
pub const SERVER_FILE: &str = "server.json";
/// The sled database's directory inside the data directory.
pub const STORE_DIR: &str = "store";

/// What `server.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerFile {
    /// The address the server listens on.
    pub listen: String,
    /// The server's process id.
    pub pid: u32,
}

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to listen on (`127.0.0.1:7700`; port 0 picks a free port).
    pub listen: String,
    /// The data directory.
    pub data: PathBuf,
    /// Where everything is stored (sled in the data directory by default).
    pub store: StoreLocation,
    /// Largest accepted websocket message, in bytes.
    pub max_message_bytes: usize,
    /// Most websocket connections open at once.
    pub max_connections: usize,
    /// Fault injection for tests: delay every storage put (never in production).
    pub fault_put_delay: Option<Duration>,
    /// A document without connections for this long leaves memory; a
    /// process with no document left is unloaded.
    pub idle_unload: Duration,
    /// Fault injection for tests: wait this long between finding a process's
    /// hub idle and stopping it (widens the window in which a connection
    /// arrives while the hub is stopping).
    pub fault_unload_delay: Option<Duration>,
    /// Fault injection for tests: a member or process of this name panics
    /// between its first write and its commit point (never in production).
    pub fault_panic_name: Option<String>,
    /// Where other nodes reach this one (`http://host:port`), with several
    /// nodes on PostgreSQL; `None`: the listening address.
    pub advertise: Option<String>,
    /// How long a node's lease of a process lasts without renewal.
    pub lease: Duration,
}

/// How the engine is opened.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Fault injection for tests: delay every storage put.
    pub put_delay: Option<Duration>,
    /// Idle period after which a document without connections leaves memory.
    pub idle_unload: Duration,
    /// Fault injection for tests: delay before an idle hub stops.
    pub unload_delay: Option<Duration>,
    /// Fault injection for tests: see [`ServeConfig::fault_panic_name`].
    pub panic_name: Option<String>,
    /// Where everything is stored.
    pub store: StoreLocation,
    /// Where other nodes reach this one (PostgreSQL only; empty for the
    /// command line, which serves nobody).
    pub advertise: String,
    /// How long a lease of a process lasts without renewal (PostgreSQL only).
    pub lease: Duration,
}

/// The default idle period before a process is unloaded.
pub const DEFAULT_IDLE_UNLOAD: Duration = Duration::from_secs(300);

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            put_delay: None,
            idle_unload: DEFAULT_IDLE_UNLOAD,
            unload_delay: None,
            panic_name: None,
            store: StoreLocation::DataDir,
            advertise: String::new(),
            lease: DEFAULT_LEASE,
        }
    }
}

/// A store compacts a document once it has this many stored values
/// (snapshot plus appended change chunks).
const COMPACT_AFTER_CHUNKS: usize = 64;

/// The hubs and everything around them, opened on one data directory.
pub struct Engine {
    /// One sync hub per process, started on demand.
    pub hubs: Arc<Hubs>,
    /// Facilitation (process documents).
    pub facilitation: Arc<Facilitation>,
    /// The membership index.
    pub directory: Arc<Directory>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The leases of several nodes (PostgreSQL); `None` on sled.
    pub cluster: Option<Arc<Cluster>>,
    /// Registers the devices the gate finds in changes.
    registrar: tokio::task::JoinHandle<()>,
    /// Renews the leases (several nodes).
    renewer: Option<tokio::task::JoinHandle<()>>,
}

/// Checks that `data` is an existing data directory (a store and a signing
/// key), without creating or changing anything: the command line's
/// facilitation commands work only on one (serving creates it).
///
/// With a PostgreSQL store only the directory itself must exist (it holds
/// no store and no key then).
pub fn existing_data_dir(data: &Path, store: &StoreLocation) -> anyhow::Result<()> {
    let shown = std::path::absolute(data).unwrap_or_else(|_| data.to_path_buf());
    if !data.exists() {
        anyhow::bail!(
            "There is no data directory at {} ({}); nothing was done. Start the server once (`klad-server`, or `cargo run --bin klad-server` in the repository), which creates it, or name an existing one with --data <dir> (or KLAD_DATA).",
            data.display(),
            shown.display()
        );
    }
    if *store == StoreLocation::DataDir
        && (!data.join(STORE_DIR).is_dir() || !data.join(SIGNING_KEY_FILE).is_file())
    {
        anyhow::bail!(
            "{} ({}) is not a klad-server data directory: it has no {STORE_DIR}/ and {SIGNING_KEY_FILE}; nothing was done. Name the server's data directory with --data <dir> (or KLAD_DATA).",
            data.display(),
            shown.display()
        );
    }
    Ok(())
}

/// Opens the data directory (creating it) and fills the directory from the
/// process records (no process is loaded until it is used). Fails with klad-core's "already in use" error when
/// another process has the store open.
pub async fn open_engine(data: &Path) -> anyhow::Result<Engine> {
    open_engine_with(data, EngineConfig::default()).await
}

/// [`open_engine`], with an idle period and fault injection for tests.
pub async fn open_engine_with(data: &Path, cfg: EngineConfig) -> anyhow::Result<Engine> {
    std::fs::create_dir_all(data).map_err(|e| {
        anyhow::anyhow!(
            "The data directory {} could not be created ({e}). Choose a directory this user may write.",
            data.display()
        )
    })?;
    let store = AnyStore::open(&cfg.store, data)?;
    let docs = Arc::new(DocStore::with_auto_compaction(
        store.clone(),
        COMPACT_AFTER_CHUNKS,
    )?);
    let storage_id = load_or_create_storage_id(&store)?;
    let (keys, cluster) = match &store {
        AnyStore::Sled(_) => (Keys::load_or_create(data)?, None),
        AnyStore::Postgres(pg) => (
            Keys::load_or_create_in(pg)?,
            Some(Arc::new(Cluster::new(
                pg.clone(),
                cfg.advertise.clone(),
                cfg.lease,
            ))),
        ),
    };
    let keys = Arc::new(keys);
    let shown = store.describe();
    let metrics = Arc::new(Metrics::default());
    let directory = Arc::new(Directory::new());
    let (devices, found) = tokio::sync::mpsc::unbounded_channel();
    let hubs = Hubs::new(HubParts {
        docs: docs.clone(),
        metrics: metrics.clone(),
        directory: directory.clone(),
        devices,
        storage_id,
        idle: cfg.idle_unload,
        put_delay: cfg.put_delay,
        unload_delay: cfg.unload_delay,
        cluster: cluster.clone(),
    });
    let facilitation = Arc::new(
        Facilitation::new(hubs.clone(), docs, store, directory.clone(), keys)
            .with_fault_panic_name(cfg.panic_name),
    );
    let n = facilitation.load_all().await?;
    let registrar = tokio::spawn(register_devices(facilitation.clone(), found));
    let renewer = cluster
        .clone()
        .map(|c| tokio::spawn(renew_leases(c, hubs.clone())));
    if let Some(c) = &cluster {
        tracing::info!(node = %c.node(), address = %c.address(), lease = ?c.ttl(), "one of several nodes on one database");
    }
    tracing::info!(processes = n, data = %data.display(), store = %shown, "data directory opened");
    Ok(Engine {
        hubs,
        facilitation,
        directory,
        metrics,
        cluster,
        registrar,
        renewer,
    })
}

/// The key of the server's automerge-repo storage id (samod's name for it,
/// so a store written by the samod-based server keeps its id).
const STORAGE_ID_KEY: &str = "storage-adapter-id";

/// The storage id the hubs announce in their `peer` message. Peers key the
/// sync state they keep, and the server's heads they report as "saved on the
/// server", by it; it stays the same as long as the store does.
fn load_or_create_storage_id(store: &AnyStore) -> anyhow::Result<String> {
    let key = klad_store::Key::new([STORAGE_ID_KEY])?;
    if let Some(bytes) = store.get(&key)?
        && let Ok(id) = String::from_utf8(bytes)
    {
        return Ok(id);
    }
    let id = uuid::Uuid::new_v4().to_string();
    match store {
        AnyStore::Sled(_) => {
            store.put(&key, id.as_bytes())?;
            Ok(id)
        }
        // Two nodes starting on an empty database agree on the first id.
        AnyStore::Postgres(pg) => Ok(String::from_utf8(pg.put_if_absent(&key, id.as_bytes())?)
            .map_err(|_| {
                anyhow::anyhow!("The store's id is not text; restore the database from a backup.")
            })?),
    }
}

/// Renews this node's leases every third of the lease time; tells the hubs
/// of processes another node took over, and gives back leases unused for a
/// while.
async fn renew_leases(cluster: Arc<Cluster>, hubs: Arc<Hubs>) {
    let every = cluster.ttl() / 3;
    loop {
        tokio::time::sleep(every).await;
        match cluster.renew().await {
            Ok(lost) => {
                for process in lost {
                    hubs.moved(&process);
                }
            }
            // The leases run out unless the next renewal works; writes are
            // fenced either way.
            Err(e) => tracing::error!(error = %e, "could not renew this node's leases"),
        }
        cluster
            .release_unused(RELEASE_UNUSED_AFTER, |p| hubs.is_running(p))
            .await;
    }
}

/// Registers each device the gate found in a change (an actor nobody had
/// registered, now the sender's) in its process document.
async fn register_devices(
    facilitation: Arc<Facilitation>,
    mut found: tokio::sync::mpsc::UnboundedReceiver<NewDevice>,
) {
    while let Some(d) = found.recv().await {
        if let Err(e) = facilitation
            .register_device(&d.process, &d.member, &d.actor, None)
            .await
        {
            tracing::error!(process = %d.process, member = %d.member, actor = %d.actor, error = %e, "could not register a device found in a change");
        }
    }
}

impl Engine {
    /// Stops every process's hub: connections are closed with 1001 and every
    /// store in flight finishes.
    pub async fn stop(self) {
        self.hubs.stop_all().await;
        self.registrar.abort();
        if let Some(r) = self.renewer {
            r.abort();
        }
        // Everything is stored: other nodes may take the processes at once.
        if let Some(c) = &self.cluster {
            c.release_all().await;
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&cfg.listen).await.map_err(|e| {
        anyhow::anyhow!(
            "Could not listen on {} ({e}). Choose another address with --listen or KLAD_LISTEN.",
            cfg.listen
        )
    })?;
    let addr: SocketAddr = listener.local_addr()?;
    let advertise = match &cfg.advertise {
        Some(a) => a.trim_end_matches('/').to_owned(),
        None if matches!(cfg.store, StoreLocation::Postgres(_)) && addr.ip().is_unspecified() => {
            anyhow::bail!(
                "This node listens on {addr}, which other nodes cannot use to reach it. Say where they reach it with --advertise http://<host>:{} (or KLAD_ADVERTISE).",
                addr.port()
            )
        }
        None => format!("http://{addr}"),
    };
    let engine = open_engine_with(
        &cfg.data,
        EngineConfig {
            put_delay: cfg.fault_put_delay,
            idle_unload: cfg.idle_unload,
            unload_delay: cfg.fault_unload_delay,
            panic_name: cfg.fault_panic_name.clone(),
            store: cfg.store.clone(),
            advertise,
            lease: cfg.lease,
        },
    )
    .await?;
    if let Some(name) = &cfg.fault_panic_name {
        tracing::warn!(%name, "fault injection: inviting or opening this name panics halfway (a test setting)");
    }
    if let Some(d) = cfg.fault_put_delay {
        tracing::warn!(delay = ?d, "fault injection: every storage write is delayed (a test setting)");
    }
    let mut admin_secret = load_or_create_admin_secret(&cfg.data)?;
    if let AnyStore::Postgres(pg) = engine.facilitation.kv() {
        admin_secret = share_admin_secret(pg, &cfg.data, admin_secret)?;
    }
    // The first run: a one-time link that opens the web desk with the right
    // to open the first process and invite its facilitator.
    let setup_secret = engine
        .directory
        .process_ids()
        .is_empty()
        .then(klad_web::session::random_secret);
    let shared = Arc::new(ConnectionShared {
        directory: engine.directory.clone(),
        hubs: engine.hubs.clone(),
        metrics: engine.metrics.clone(),
        max_message_bytes: cfg.max_message_bytes,
        shutting_down: AtomicBool::new(false),
        facilitation: engine.facilitation.clone(),
    });
    let state = Arc::new(AppState {
        shared: shared.clone(),
        facilitation: engine.facilitation.clone(),
        admin_secret,
        max_connections: cfg.max_connections,
        desk: klad_web::DeskConfig {
            setup_secret: setup_secret.clone(),
            always_secure: false,
        },
        relay: engine.cluster.clone().map(|c| {
            Arc::new(Relay::new(
                c,
                engine.facilitation.clone(),
                engine.metrics.clone(),
            ))
        }),
    });
    let server_file = cfg.data.join(SERVER_FILE);
    std::fs::write(
        &server_file,
        serde_json::to_vec_pretty(&ServerFile {
            listen: addr.to_string(),
            pid: std::process::id(),
        })?,
    )?;
    tracing::info!(%addr, "klad-server listening; sync at ws://{addr}/sync");
    println!("klad-server listening on {addr}");
    if let Some(secret) = &setup_secret {
        let host = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        println!(
            "No process yet. Open this link once to open the first process in the web desk and invite its facilitator (it works until then, and a restart makes a new one):\n  http://{host}{}",
            klad_web::setup_path(secret)
        );
    }

    let app = router(state);
    let shutdown = {
        let shared = shared.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: refusing new connections, flushing documents");
            shared.shutting_down.store(true, Ordering::Relaxed);
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    engine.stop().await;
    // Stopping the hubs closes every connection; give them a moment to send
    // their close frames before the runtime goes away.
    let closing = std::time::Instant::now();
    while shared.metrics.open_connections() > 0 && closing.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = std::fs::remove_file(&server_file);
    tracing::info!("stopped cleanly");
    Ok(())
}
