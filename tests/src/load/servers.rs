//! Starting and stopping the two servers under test, each on a fresh
//! temporary data directory and a free loopback port, and preparing the
//! documents the clients write to.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures::StreamExt as _;
use klad_server::auth::admin_secret_path;
use klad_server::client::request;
use klad_server::server::{SERVER_FILE, ServerFile};
use serde_json::json;

/// Which server a run is against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Our `klad-server` (release build).
    Klad,
    /// The JavaScript automerge-repo sync server in `tests/bench/js-server`.
    Js,
}

impl Kind {
    /// The name used in the report.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Klad => "klad-server",
            Kind::Js => "js automerge-repo",
        }
    }
}

/// A server process started for one run.
pub struct Server {
    /// Which server.
    pub kind: Kind,
    child: Child,
    /// Its process id (for `/proc`).
    pub pid: u32,
    /// `host:port` on loopback.
    pub addr: String,
    /// The admin secret (klad-server only).
    pub admin_secret: Option<String>,
    /// Where its log (stderr) goes.
    pub log: PathBuf,
    // Removed when the run ends.
    _dir: tempfile::TempDir,
}

/// How long a server may take to come up or to stop.
const START_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(30);

fn temp_dir(kind: Kind) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(match kind {
            Kind::Klad => "klad-load-klad-",
            Kind::Js => "klad-load-js-",
        })
        .tempdir()
        .context("could not create a temporary data directory; check that the temp directory is writable")
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

impl Server {
    /// Starts a release `klad-server` at `bin` on a fresh data directory,
    /// allowing `max_connections` websockets, and waits for its `server.json`.
    pub async fn start_klad(bin: &Path, max_connections: usize) -> anyhow::Result<Server> {
        let dir = temp_dir(Kind::Klad)?;
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let stderr = std::fs::File::create(&log)
            .context("could not create the server's log file in the temporary directory")?;
        let mut child = Command::new(bin)
            .arg("--data")
            .arg(&data)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--max-connections")
            .arg(max_connections.to_string())
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| {
                format!(
                    "could not start {}; build it with `cargo build --release -p klad-server` or pass --klad-server",
                    bin.display()
                )
            })?;
        let pid = child.id();
        let file = data.join(SERVER_FILE);
        let started = Instant::now();
        let addr = loop {
            if let Some(f) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|s| serde_json::from_str::<ServerFile>(&s).ok())
                .filter(|f| f.pid == pid)
            {
                break f.listen;
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "klad-server exited during start-up ({status}); its log ends with:\n{}",
                    log_tail(&log)
                );
            }
            if started.elapsed() > START_LIMIT {
                let _ = child.kill();
                bail!(
                    "klad-server did not write {} within {START_LIMIT:?}; its log ends with:\n{}",
                    file.display(),
                    log_tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let secret = std::fs::read_to_string(admin_secret_path(&data))
            .context("klad-server started but its admin secret is unreadable")?
            .trim()
            .to_owned();
        Ok(Server {
            kind: Kind::Klad,
            child,
            pid,
            addr,
            admin_secret: Some(secret),
            log,
            _dir: dir,
        })
    }

    /// Starts `node server.mjs` from `js_dir` on a fresh data directory and
    /// waits for the port it prints.
    pub async fn start_js(js_dir: &Path) -> anyhow::Result<Server> {
        if !js_dir.join("node_modules").is_dir() {
            bail!(
                "{} has no node_modules; run `npm install` there (scripts/bench-load.sh does it)",
                js_dir.display()
            );
        }
        let dir = temp_dir(Kind::Js)?;
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        let stderr = std::fs::File::create(&log)
            .context("could not create the server's log file in the temporary directory")?;
        let mut child = Command::new("node")
            .arg(js_dir.join("server.mjs"))
            .arg(&data)
            .current_dir(js_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("could not start node; install Node.js 20 or newer")?;
        let pid = child.id();
        let stdout = child.stdout.take().context("node's stdout is missing")?;
        // A thread reads stdout to its end, so the server never blocks on a
        // full pipe; the first "LISTENING <port>" line is handed over.
        let (tx, rx) = std::sync::mpsc::channel::<u16>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .strip_prefix("LISTENING ")
                    .and_then(|p| p.trim().parse().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let started = Instant::now();
        let port = loop {
            if let Ok(port) = rx.try_recv() {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "the JavaScript server exited during start-up ({status}); its log ends with:\n{}",
                    log_tail(&log)
                );
            }
            if started.elapsed() > START_LIMIT {
                let _ = child.kill();
                bail!(
                    "the JavaScript server did not print its port within {START_LIMIT:?}; its log ends with:\n{}",
                    log_tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(Server {
            kind: Kind::Js,
            child,
            pid,
            addr: format!("127.0.0.1:{port}"),
            admin_secret: None,
            log,
            _dir: dir,
        })
    }

    /// The websocket URL a client with `token` (klad-server) connects to.
    pub fn ws_url(&self, token: Option<&str>) -> anyhow::Result<url::Url> {
        let s = match (self.kind, token) {
            (Kind::Klad, Some(t)) => {
                let query = klad_sync::connect::SyncQuery {
                    token: Some(t.to_owned()),
                    ..Default::default()
                };
                let path = klad_sync::connect::SYNC_PATH;
                format!("ws://{}{path}?{}", self.addr, query.to_query())
            }
            (Kind::Klad, None) => bail!("a klad-server client needs a token"),
            (Kind::Js, _) => format!("ws://{}/", self.addr),
        };
        url::Url::parse(&s).with_context(|| format!("{s} is not a valid websocket URL"))
    }

    /// klad-server's Prometheus series (name with labels -> value), or why
    /// there are none. Empty for the JS server.
    pub async fn metrics(&self) -> Result<Vec<(String, f64)>, String> {
        if self.kind != Kind::Klad {
            return Ok(Vec::new());
        }
        let limit = Duration::from_secs(10);
        let r =
            match tokio::time::timeout(limit, request(&self.addr, "GET", "/metrics", None, None))
                .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(format!("GET /metrics failed: {e:#}")),
                Err(_) => return Err(format!("GET /metrics got no answer within {limit:?}")),
            };
        Ok(r.body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect())
    }

    /// Log lines that report a problem (klad-server: WARN and ERROR; node:
    /// anything on stderr), at most `limit` distinct ones, and their count.
    pub fn log_problems(&self, limit: usize) -> (usize, Vec<String>) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut count = 0;
        let mut samples: Vec<String> = Vec::new();
        for line in text
            .lines()
            .map(strip_ansi)
            .filter(|l| !l.trim().is_empty())
        {
            let problem = match self.kind {
                Kind::Klad => line.contains("WARN") || line.contains("ERROR"),
                Kind::Js => true,
            };
            if !problem {
                continue;
            }
            count += 1;
            // Drop the timestamp and number the same message once, whatever
            // connection or document it names.
            let key: String = line
                .split_once("Z ")
                .map_or(line.as_str(), |(_, r)| r)
                .trim()
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect();
            if samples.len() < limit && !samples.contains(&key) {
                samples.push(key);
            }
        }
        (count, samples)
    }

    /// Sends SIGTERM and waits for the exit; kills after 30 s. Returns
    /// whether the server exited by itself with success.
    pub async fn stop(mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if started.elapsed() > STOP_LIMIT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A log line without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Server {
    fn drop(&mut self) {
        // A run that failed half-way must not leave a server behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One drafter invited to a klad-server process.
#[derive(Clone, Debug)]
pub struct Drafter {
    /// The peer id to connect with (the member id).
    pub peer_id: String,
    /// The member token.
    pub token: String,
}

/// A process prepared on klad-server: its text document and its drafters.
#[derive(Clone, Debug)]
pub struct KladProcess {
    /// The automerge-repo id of the text document.
    pub text_doc: String,
    /// The drafters, one per client.
    pub drafters: Vec<Drafter>,
}

/// Creates `processes` processes with `drafters` drafters each through the
/// facilitation API, as the operator; a few processes at a time.
pub async fn create_processes(
    server: &Server,
    processes: usize,
    drafters: usize,
) -> anyhow::Result<Vec<KladProcess>> {
    let secret = server
        .admin_secret
        .clone()
        .context("only klad-server has processes")?;
    let addr = server.addr.clone();
    let made: Vec<anyhow::Result<(usize, KladProcess)>> = futures::stream::iter(0..processes)
        .map(|p| {
            let secret = secret.clone();
            let addr = addr.clone();
            async move {
                create_process(&addr, &secret, p, drafters)
                    .await
                    .map(|k| (p, k))
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let mut out: Vec<(usize, KladProcess)> = made.into_iter().collect::<Result<_, _>>()?;
    out.sort_by_key(|(p, _)| *p);
    Ok(out.into_iter().map(|(_, k)| k).collect())
}

async fn create_process(
    addr: &str,
    secret: &str,
    index: usize,
    drafters: usize,
) -> anyhow::Result<KladProcess> {
    let created = request(
        addr,
        "POST",
        "/api/processes",
        Some(secret),
        Some(&json!({ "title": format!("Load test ordinance {index}") })),
    )
    .await?;
    if created.status != 201 {
        bail!(
            "klad-server refused to create a process (HTTP {}): {}",
            created.status,
            created.body
        );
    }
    let v = created.json()?;
    let pid = v["process"]["process_id"]
        .as_str()
        .ok_or_else(|| anyhow!("the created process has no process_id: {v}"))?
        .to_owned();
    let text_doc = v["process"]["text_doc"]
        .as_str()
        .ok_or_else(|| anyhow!("the created process has no text_doc: {v}"))?
        .to_owned();
    let mut out = Vec::with_capacity(drafters);
    for d in 0..drafters {
        let invited = request(
            addr,
            "POST",
            &format!("/api/processes/{pid}/members"),
            Some(secret),
            Some(
                &json!({ "name": format!("Drafter {index}-{d}"), "role": "drafter", "ttl": "1d" }),
            ),
        )
        .await?;
        if invited.status != 201 {
            bail!(
                "klad-server refused to invite a drafter (HTTP {}): {}",
                invited.status,
                invited.body
            );
        }
        let v = invited.json()?;
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("the invitation has no {k}: {v}"))
        };
        out.push(Drafter {
            peer_id: field("peer_id")?,
            token: field("token")?,
        });
    }
    Ok(KladProcess {
        text_doc,
        drafters: out,
    })
}
