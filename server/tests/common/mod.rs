//! Shared test support: a real `klad-server` process on a loopback port, its
//! command line, and samod clients that connect with a member's token.
#![allow(dead_code)]

pub mod pg;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use automerge::{Automerge, ReadDoc};
use futures::{SinkExt, StreamExt, TryStreamExt};
use klad_server::client::{HttpResponse, request};
use samod::{BackoffConfig, DialError, Dialer, DocHandle, DocumentId, PeerId, Repo, Transport};
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_klad-server");

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running server process with its own data directory.
pub struct Server {
    pub child: Option<Child>,
    pub data: PathBuf,
    pub addr: String,
    _dir: Option<tempfile::TempDir>,
    extra: Vec<String>,
}

impl Server {
    /// Starts a server on a fresh data directory and a free port.
    pub async fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut s = Server {
            child: None,
            data,
            addr: "127.0.0.1:0".into(),
            _dir: Some(dir),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.launch().await;
        s
    }

    /// Starts a server on data directory `data` (created by the server)
    /// and a free port.
    pub async fn start_in(data: PathBuf, extra: &[&str]) -> Server {
        let mut s = Server {
            child: None,
            data,
            addr: "127.0.0.1:0".into(),
            _dir: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.launch().await;
        s
    }

    /// Starts (again) on the same data directory and port.
    pub async fn launch(&mut self) {
        let _ = std::fs::remove_file(self.data.join("server.json"));
        let child = Command::new(BIN)
            .arg("--data")
            .arg(&self.data)
            .arg("--listen")
            .arg(&self.addr)
            .args(&self.extra)
            .env(
                "RUST_LOG",
                std::env::var("KLAD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the klad-server binary starts");
        let pid = child.id();
        self.child = Some(child);
        let file = self.data.join("server.json");
        let addr = eventually(Duration::from_secs(30), "server.json", || {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).ok()?).ok()?;
            (v["pid"].as_u64()? == u64::from(pid)).then(|| v["listen"].as_str().unwrap().to_owned())
        })
        .await;
        self.addr = addr;
    }

    /// SIGKILL, no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn restart(&mut self) {
        assert!(self.terminate(), "the server exits cleanly on SIGTERM");
        self.launch().await;
    }

    pub fn ws_url(&self, token: &str) -> String {
        let query = klad_sync::connect::SyncQuery {
            token: Some(token.to_owned()),
            ..Default::default()
        };
        let path = klad_sync::connect::SYNC_PATH;
        format!("ws://{}{path}?{}", self.addr, query.to_query())
    }

    pub async fn http(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> HttpResponse {
        request(&self.addr, method, path, bearer, body.as_ref())
            .await
            .unwrap()
    }

    pub async fn metric(&self, series: &str) -> u64 {
        let text = self.http("GET", "/metrics", None, None).await.body;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|r| r.trim().parse::<f64>().ok())
            })
            .map(|v| v as u64)
            .unwrap_or(0)
    }

    /// Runs the command line on this server's data directory, expecting success.
    pub fn cli(&self, args: &[&str]) -> Value {
        cli(&self.data, args)
    }

    /// Creates a process through the command line.
    pub fn create_process(&self, title: &str) -> Process {
        let v = self.cli(&["process", "create", "--title", title, "--json"]);
        let p = &v["process"];
        Process {
            id: p["process_id"].as_str().unwrap().into(),
            text_doc: p["text_doc"].as_str().unwrap().into(),
        }
    }

    /// Invites a member through the command line.
    pub fn invite(&self, process: &Process, name: &str, role: &str) -> Member {
        let v = self.cli(&[
            "invite",
            "--process",
            &process.id,
            "--name",
            name,
            "--role",
            role,
            "--json",
        ]);
        Member::from_json(&v)
    }
}

/// A child process, killed (and reaped) if the test ends without stopping it.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs the command line on `data` and returns what it did (status, stdout, stderr).
pub fn cli_output(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the klad-server binary runs")
}

pub fn cli(data: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .expect("the klad-server binary runs");
    assert!(
        out.status.success(),
        "klad-server {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[derive(Clone, Debug)]
pub struct Process {
    pub id: String,
    pub text_doc: String,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub id: String,
    pub token: String,
    pub contributions_doc: String,
    pub peer_id: String,
}

impl Member {
    pub fn from_json(v: &Value) -> Member {
        Member {
            id: v["member_id"].as_str().unwrap().into(),
            token: v["token"].as_str().unwrap().into(),
            contributions_doc: v["contributions_doc"].as_str().unwrap().into(),
            peer_id: v["peer_id"].as_str().unwrap().into(),
        }
    }
}

/// Dials the server's websocket with a token (plain `ws://`, loopback only).
struct WsDialer {
    url: url::Url,
    enabled: Arc<std::sync::atomic::AtomicBool>,
}

impl Dialer for WsDialer {
    type Error = std::convert::Infallible;

    fn url(&self) -> url::Url {
        self.url.clone()
    }

    fn connect(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Transport, DialError<Self::Error>>> + Send>> {
        let url = self.url.clone();
        let enabled = self.enabled.load(std::sync::atomic::Ordering::Relaxed);
        Box::pin(async move {
            if !enabled {
                return Err(DialError::transient(std::io::Error::other(
                    "reconnecting is switched off for this client",
                )));
            }
            let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .map_err(DialError::transient)?;
            let (sink, stream) = ws.split();
            let stream = stream.try_filter_map(|m| async move {
                Ok(match m {
                    tokio_tungstenite::tungstenite::Message::Binary(b) => Some(b.to_vec()),
                    _ => None,
                })
            });
            let sink = sink.with(|b: Vec<u8>| async move {
                Ok::<_, tokio_tungstenite::tungstenite::Error>(
                    tokio_tungstenite::tungstenite::Message::Binary(b.into()),
                )
            });
            Ok(Transport::new(Box::pin(stream), Box::pin(sink)))
        })
    }
}

/// A samod client of one member.
pub struct Client {
    pub repo: Repo,
    pub member: Member,
    reconnect: Arc<std::sync::atomic::AtomicBool>,
}

impl Client {
    /// Connects as `member` (peer id = member id).
    pub async fn connect(server: &Server, member: &Member) -> Client {
        Self::connect_as(server, member, &member.peer_id).await
    }

    /// Connects with `member`'s token but claiming `peer_id`.
    pub async fn connect_as(server: &Server, member: &Member, peer_id: &str) -> Client {
        let repo = Repo::build_tokio()
            .with_peer_id(PeerId::from(peer_id))
            .load()
            .await;
        let reconnect = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let dialer = WsDialer {
            url: url::Url::parse(&server.ws_url(&member.token)).unwrap(),
            enabled: reconnect.clone(),
        };
        let backoff = BackoffConfig {
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            max_retries: None,
        };
        let handle = repo.dial(backoff, Arc::new(dialer)).unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), handle.established()).await;
        Client {
            repo,
            member: member.clone(),
            reconnect,
        }
    }

    /// From now on this client never connects again (so it cannot re-send
    /// what a killed server lost).
    pub fn never_reconnect(&self) {
        self.reconnect
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Finds a document on the server, retrying (the first dial can race).
    pub async fn find(&self, doc: &str) -> Option<DocHandle> {
        let id = DocumentId::from_str(doc).unwrap();
        for _ in 0..20 {
            if let Ok(Ok(Some(h))) =
                tokio::time::timeout(Duration::from_secs(5), self.repo.find(id.clone())).await
            {
                return Some(h);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    pub async fn must_find(&self, doc: &str) -> DocHandle {
        self.find(doc)
            .await
            .unwrap_or_else(|| panic!("document {doc} is found"))
    }

    pub async fn stop(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.repo.stop()).await;
    }
}

/// Every (key, string value) at the root of a document.
pub fn root_keys(d: &Automerge) -> Vec<String> {
    d.keys(automerge::ROOT).collect()
}

pub fn json_ok(v: &Value) -> Value {
    json!(v)
}

use klad_core::document::KladDocument;
use klad_core::{ArticleId, MemberId, ProcessDoc, ProcessDocs, Session, TextDoc};
use std::collections::BTreeMap;

/// Runs a klad-core session operation on the text, as `me`, and applies the
/// resulting change to the samod document (as a well-behaved client does).
pub fn edit_text<R>(
    process: &DocHandle,
    text: &DocHandle,
    me: &str,
    f: impl FnOnce(&mut Session) -> klad_core::Result<R>,
) -> R {
    let p = process.with_document(|d| ProcessDoc::from_automerge(d.clone()).unwrap());
    text.with_document(|d| {
        let t = TextDoc::from_automerge(d.clone()).unwrap();
        let docs = ProcessDocs {
            process: p,
            text: t,
            contributions: BTreeMap::new(),
        };
        let mut s = Session::new(docs, MemberId::from(me), d.get_actor().clone());
        let r = f(&mut s).expect("the session operation is allowed");
        let changes = d.get_changes_added(s.docs().text.automerge());
        d.apply_changes(changes).unwrap();
        r
    })
}

/// The articles of a text document as (id, body).
pub fn articles(text: &DocHandle) -> Vec<(ArticleId, String)> {
    text.with_document(|d| {
        let Ok(t) = TextDoc::from_automerge(d.clone()) else {
            return Vec::new();
        };
        t.article_ids()
            .into_iter()
            .map(|id| {
                let b = t.body(&id).unwrap_or_default();
                (id, b)
            })
            .collect()
    })
}

/// Writes a raw change (bypassing klad-core's checks), as a modified client could.
pub fn raw_put(doc: &DocHandle, key: &str, value: &str) {
    doc.with_document(|d| {
        use automerge::transaction::Transactable;
        let mut tx = d.transaction();
        tx.put(automerge::ROOT, key, value).unwrap();
        tx.commit();
    });
}

pub fn has_key(doc: &DocHandle, key: &str) -> bool {
    doc.with_document(|d| d.get(automerge::ROOT, key).ok().flatten().is_some())
}

use ciborium::Value as Cbor;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A hand-driven automerge-repo peer over a raw websocket: it can send what a
/// well-behaved samod client never would (changes to read-only documents,
/// malformed frames, ...).
pub struct RawPeer {
    pub ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    pub peer_id: String,
}

pub fn cbor(entries: Vec<(&str, Cbor)>) -> Vec<u8> {
    let map = Cbor::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Cbor::Text(k.into()), v))
            .collect(),
    );
    let mut out = Vec::new();
    ciborium::into_writer(&map, &mut out).unwrap();
    out
}

impl RawPeer {
    /// Connects and completes the join/peer handshake.
    pub async fn connect(server: &Server, member: &Member, device: Option<&str>) -> RawPeer {
        let mut url = server.ws_url(&member.token);
        let mut peer_id = member.peer_id.clone();
        if let Some(d) = device {
            url.push_str(&format!("&device={d}"));
            peer_id = format!("{peer_id}:{d}");
        }
        let peer_id = peer_id.as_str();
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut p = RawPeer {
            ws,
            peer_id: peer_id.into(),
        };
        p.send(cbor(vec![
            ("type", Cbor::Text("join".into())),
            ("senderId", Cbor::Text(peer_id.into())),
            (
                "supportedProtocolVersions",
                Cbor::Array(vec![Cbor::Text("1".into())]),
            ),
        ]))
        .await;
        let reply = p.recv_binary().await.expect("a peer message");
        let v: Cbor = ciborium::from_reader(&reply[..]).unwrap();
        assert!(
            format!("{v:?}").contains(r#"Text("type"), Text("peer")"#),
            "handshake reply: {v:?}"
        );
        p
    }

    pub async fn send(&mut self, bytes: Vec<u8>) {
        self.ws.send(WsMessage::Binary(bytes.into())).await.unwrap();
    }

    /// Sends a sync message carrying one new change to `doc` (made on a fork
    /// of `base`, which is left untouched).
    pub async fn push_change(&mut self, doc: &str, base: &DocHandle, key: &str) {
        let (heads, change) = base.with_document(|d| {
            use automerge::transaction::Transactable;
            let mut fork = d.fork();
            let mut tx = fork.transaction();
            tx.put(automerge::ROOT, key, "x").unwrap();
            tx.commit();
            let c = fork.get_last_local_change().unwrap().raw_bytes().to_vec();
            (fork.get_heads(), c)
        });
        let msg = automerge::sync::Message {
            heads,
            need: vec![],
            have: vec![],
            changes: vec![change].into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        self.send(cbor(vec![
            ("type", Cbor::Text("sync".into())),
            ("senderId", Cbor::Text(self.peer_id.clone())),
            ("targetId", Cbor::Text("klad-server".into())),
            ("documentId", Cbor::Text(doc.into())),
            ("data", Cbor::Bytes(msg.encode())),
        ]))
        .await;
    }

    /// The next binary frame, or `None` when the server closed (bounded wait).
    pub async fn recv_binary(&mut self) -> Option<Vec<u8>> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await {
                Ok(Some(Ok(WsMessage::Binary(b)))) => return Some(b.to_vec()),
                Ok(Some(Ok(WsMessage::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                    return None;
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn close_reason(&mut self) -> Option<(u16, String)> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.ws.next()).await {
                Ok(Some(Ok(WsMessage::Close(Some(f))))) => {
                    return Some((f.code.into(), f.reason.to_string()));
                }
                Ok(Some(Ok(WsMessage::Close(None)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                    return None;
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

/// A Node.js automerge-repo client (server/interop, packages pinned by its
/// lockfile and installed on first use), read line by line.
pub struct Node {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Node {
    fn spawn(args: &[String]) -> Node {
        use tokio::io::AsyncBufReadExt;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/run-client.sh");
        let mut child = tokio::process::Command::new("sh")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("sh and node are installed");
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Node { child, lines }
    }

    /// `client.mjs`: reads the process and text, puts `marker` in front of the first article.
    pub fn client(server: &Server, member: &Member, process: &Process, marker: &str) -> Node {
        Self::spawn(&[
            server.ws_url(&member.token),
            member.peer_id.clone(),
            process.id.clone(),
            process.text_doc.clone(),
            marker.to_owned(),
        ])
    }

    /// `writer.mjs`: puts `marker` in front of the first article in a change
    /// written with `actor` (hex), connecting with `url`.
    pub fn writer(
        url: &str,
        member: &Member,
        process: &Process,
        actor: &str,
        marker: &str,
    ) -> Node {
        Self::spawn(&[
            "--writer".to_owned(),
            url.to_owned(),
            member.peer_id.clone(),
            process.text_doc.clone(),
            actor.to_owned(),
            marker.to_owned(),
        ])
    }

    /// The next line starting with `prefix` (npm ci on a first run can take minutes).
    pub async fn expect(&mut self, prefix: &str) -> String {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(300), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("the Node client never printed {prefix}"))
                .unwrap()
                .unwrap_or_else(|| panic!("the Node client exited before printing {prefix}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Closes its stdin (it exits) and waits a moment for it.
    pub async fn finish(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// True when `node` runs here.
pub fn node_available() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Tries a websocket upgrade; returns the HTTP status and body of a refusal.
pub async fn refusal(url: &str, bearer: Option<&str>) -> (u16, String) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = bearer {
        req.headers_mut()
            .insert("Authorization", format!("Bearer {t}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => panic!("the upgrade to {url} was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            (resp.status().as_u16(), body)
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The sentence of a JSON error body (`{"error": ...}`).
pub fn error_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("a JSON error body");
    v["error"].as_str().expect("an error sentence").to_owned()
}
