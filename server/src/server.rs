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
    /// Fault injection for tests: the store's n-th sync of its log, and
    /// every later one, fails (sled only; not after a restart in place).
    pub fault_sync_fail_at: Option<u64>,
    /// Where other nodes reach this one (`http://host:port`), with several
    /// nodes on PostgreSQL; `None`: the listening address.
    pub advertise: Option<String>,
    /// How long a node's lease of a process lasts without renewal.
    pub lease: Duration,
    /// When the store refuses writes until it is opened again (sled, after
    /// the disk failed a write) and the data directory takes writes again:
    /// `true` restarts this program in place (the `klad-server` binary: same
    /// process id, arguments and environment); `false` (a server embedded
    /// in another program, as in tests) stops serving with an error.
    pub restart_in_place: bool,
}

/// The environment variable that counts a server's restarts in place.
const RESTARTS_ENV: &str = "KLAD_STORE_RESTARTS";

/// The environment variable that hands the listening socket (its file
/// descriptor number) to the program a restart in place starts.
const LISTEN_FD_ENV: &str = "KLAD_LISTEN_FD";

/// How much the data directory must take (written and synced) before a
/// server whose store broke restarts to open it again.
const PROBE_BYTES: usize = 8 * 1024 * 1024;

/// How long a broken store is reported before the server restarts to open
/// it again (see [`watch_store`]).
const RESTART_AFTER: Duration = Duration::from_secs(10);

/// How long a restart in place waits for connections to close and stores
/// to finish before it restarts anyway (nothing waiting is acknowledged).
const RESTART_GRACE: Duration = Duration::from_secs(10);

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

/// Watches the store: once it refuses writes until it is opened again (sled,
/// after the disk failed a write or a store call never returned), says so
/// (log, `klad_store_broken`), and once the data directory takes a write
/// and a sync of [`PROBE_BYTES`] again, sends the reason on `broke`. It
/// waits [`RESTART_AFTER`] first (so the state shows in metrics scraped
/// now and then), twice as long after each earlier restart (at most 64
/// times), so a disk that fails again does not make the server restart in
/// a tight loop.
async fn watch_store(
    store: AnyStore,
    data: PathBuf,
    metrics: Arc<Metrics>,
    restarts: u64,
    broke: tokio::sync::oneshot::Sender<String>,
) {
    let why = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(why) = store.broken() {
            break why;
        }
    };
    metrics.set_store_broken(true);
    tracing::error!(reason = %why, data = %data.display(), "the store refuses writes until it is opened again; documents in memory are still served; the server restarts itself once the data directory takes writes again (free disk space)");
    tokio::time::sleep(RESTART_AFTER * (1 << restarts.min(6))).await;
    loop {
        let dir = data.clone();
        match tokio::task::spawn_blocking(move || probe(&dir)).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the data directory does not take writes yet")
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let _ = broke.send(why);
}

/// Writes and syncs [`PROBE_BYTES`] in the data directory, then removes them.
fn probe(data: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = data.join("write-probe");
    let result = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// A second handle on the listening socket (close-on-exec, like every file
/// Rust opens), for [`restart_in_place`].
#[cfg(unix)]
fn listener_fd(listener: &tokio::net::TcpListener) -> anyhow::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    Ok(listener.as_fd().try_clone_to_owned()?)
}

#[cfg(not(unix))]
fn listener_fd(_listener: &tokio::net::TcpListener) -> anyhow::Result<()> {
    Ok(())
}

/// The listening socket an earlier image of this program handed on when it
/// restarted in place (`KLAD_LISTEN_FD`, honoured only with
/// `KLAD_STORE_RESTARTS`, which only a restart in place sets).
#[cfg(unix)]
fn inherited_listener() -> anyhow::Result<Option<tokio::net::TcpListener>> {
    use std::os::fd::FromRawFd;
    let Some(fd) = std::env::var(LISTEN_FD_ENV)
        .ok()
        .filter(|_| std::env::var_os(RESTARTS_ENV).is_some())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return Ok(None);
    };
    // SAFETY: the earlier image left exactly this descriptor open for us: a
    // listening TCP socket nothing else in this program owns.
    let std_listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    std_listener.set_nonblocking(true)?;
    // Close-on-exec again, as every other file.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(Some(tokio::net::TcpListener::from_std(std_listener)?))
}

#[cfg(not(unix))]
fn inherited_listener() -> anyhow::Result<Option<tokio::net::TcpListener>> {
    Ok(None)
}

#[cfg(not(unix))]
fn restart_in_place(_count: u64, _kept: ()) -> anyhow::Error {
    anyhow::anyhow!(
        "The server stopped since its store refuses writes after the disk failed one; start it again to open the store."
    )
}

/// Replaces this program with a fresh start of itself (same arguments and
/// environment, the restart count handed on): the only way to open a sled
/// database again whose final flush blocks. The kernel closes every other
/// file (all are opened close-on-exec), which releases sled's lock; the
/// listening socket is handed on. Returns only if the restart failed.
#[cfg(unix)]
fn restart_in_place(count: u64, kept: std::os::fd::OwnedFd) -> anyhow::Error {
    use std::os::fd::IntoRawFd;
    use std::os::unix::process::CommandExt;
    // The listening socket stays open across the exec (connections wait in
    // its backlog meanwhile) and the new image takes it from `KLAD_LISTEN_FD`.
    let fd = kept.into_raw_fd();
    // SAFETY: fcntl on a descriptor this function now owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "klad-server".into());
    tracing::warn!(
        restart = count,
        "restarting in place to open the store again"
    );
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env(RESTARTS_ENV, count.to_string())
        .env(LISTEN_FD_ENV, fd.to_string())
        .exec();
    anyhow::anyhow!(
        "The server stopped to open its store again but could not restart itself ({err}); start it again."
    )
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

/// Connections the kernel queues for the server before it accepts them
/// (capped by the system's `net.core.somaxconn`). A neighbourhood opening
/// the app at once overflows the usual 128, and a client whose connection
/// was dropped from a full queue tries again only a second later.
const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr` (host:port; the first of its addresses
/// that can be bound), with [`LISTEN_BACKLOG`].
async fn listen(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let bound = (|| {
            let socket = if a.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            // As the standard library does: a restarted server can listen
            // again while connections of the last run linger.
            #[cfg(unix)]
            socket.set_reuseaddr(true)?;
            socket.bind(a)?;
            socket.listen(LISTEN_BACKLOG)
        })();
        match bound {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address names no host that can be reached",
        )
    }))
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    let listener = match inherited_listener()? {
        Some(l) => l,
        None => listen(&cfg.listen).await.map_err(|e| {
            anyhow::anyhow!(
                "Could not listen on {} ({e}). Choose another address with --listen or KLAD_LISTEN.",
                cfg.listen
            )
        })?,
    };
    // Kept for a restart in place, which hands the socket on.
    let kept = listener_fd(&listener)?;
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
    let restarts: u64 = std::env::var(RESTARTS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    engine.metrics.set_store_restarts(restarts);
    if let (Some(n), AnyStore::Sled(s), 0) =
        (cfg.fault_sync_fail_at, engine.facilitation.kv(), restarts)
    {
        tracing::warn!(
            n,
            "fault injection: the store's log sync fails from this sync on (a test setting)"
        );
        s.inject_sync_failure(n);
    }
    let (broke_tx, broke_rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_store(
        engine.facilitation.kv().clone(),
        cfg.data.clone(),
        engine.metrics.clone(),
        restarts,
        broke_tx,
    ));
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
    let broke = Arc::new(std::sync::Mutex::new(None::<String>));
    let shutdown = {
        let shared = shared.clone();
        let broke = broke.clone();
        async move {
            tokio::select! {
                () = shutdown_signal() => {
                    tracing::info!("shutting down: refusing new connections, flushing documents");
                }
                Ok(why) = broke_rx => {
                    tracing::warn!(reason = %why, "the store can be opened again: stopping to restart");
                    *broke.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                }
            }
            shared.shutting_down.store(true, Ordering::Relaxed);
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    watcher.abort();
    let broke = broke.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(why) = broke {
        // Stores still in flight fail fast on the broken store, unless one
        // blocks inside it: the restart does not wait for that.
        let _ = tokio::time::timeout(RESTART_GRACE, engine.stop()).await;
        if !cfg.restart_in_place {
            anyhow::bail!(
                "The store refuses writes since the disk failed one ({why}); restart the server to open it again."
            );
        }
        return Err(restart_in_place(restarts + 1, kept));
    }
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
