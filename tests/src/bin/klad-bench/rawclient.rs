//! A bare automerge-repo client for the storm and idle benchmarks: one
//! websocket, the `join`/`peer` handshake, and per document an Automerge
//! document with its sync state; no samod (a samod repo per client is too
//! heavy for thousands of clients in one generator).
//!
//! A client asks for a document with a `request` (its empty document's sync
//! message), applies every `sync` frame the server sends and answers with
//! its own sync message whenever Automerge has one (a `sync` frame once the
//! document has changes). A phone opens its process the same way: the
//! process document first, then every document [`ProcessInfo::documents`]
//! lists (klad-core reads the list from the process document).
//!
//! The frames are CBOR maps with text keys, as automerge-repo writes them;
//! the few this client sends are encoded here by hand, and incoming ones are
//! read with [`klad_sync::wire::parse`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use automerge::sync::{Message as SyncMessage, State, SyncDoc};
use automerge::{Automerge, ChangeHash};
use futures::{SinkExt, StreamExt};
use klad_core::ProcessDoc;
use klad_core::document::KladDocument;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Starting the two servers and preparing klad-server processes (shared with
/// `klad-load`).
#[allow(dead_code)]
#[path = "../../load/servers.rs"]
pub mod servers;

/// CPU and memory of a process from `/proc` (shared with `klad-load`).
#[allow(dead_code)]
#[path = "../../load/procfs.rs"]
pub mod procfs;

/// The peer id of the JavaScript server (`tests/bench/js-server/server.mjs`).
pub const JS_SERVER_PEER_ID: &str = "js-sync-server";

/// Heads per document id, sorted.
pub type Heads = HashMap<String, Vec<ChangeHash>>;

/// `heads`, sorted (the order Automerge returns them in is not promised).
pub fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// Raises this process's soft limit of open files to its hard limit (child
/// processes, the servers included, inherit it); returns (soft, hard).
pub fn raise_fd_limit() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    (lim.rlim_cur, lim.rlim_max)
}

// --- CBOR, just what the frames this client sends need -------------------

enum V<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
    TextArray(&'a [&'a str]),
    /// A map of text keys to booleans (`peerMetadata`).
    Flags(&'a [(&'a str, bool)]),
}

/// A CBOR data item head: major type and length (or value).
fn head(out: &mut Vec<u8>, major: u8, n: usize) {
    let m = major << 5;
    let n = n as u64;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= 0xff {
        out.push(m | 24);
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn text(out: &mut Vec<u8>, s: &str) {
    head(out, 3, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// A CBOR map with text keys.
fn frame(fields: &[(&str, V<'_>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    head(&mut out, 5, fields.len());
    for (k, v) in fields {
        text(&mut out, k);
        match v {
            V::Text(s) => text(&mut out, s),
            V::Bytes(b) => {
                head(&mut out, 2, b.len());
                out.extend_from_slice(b);
            }
            V::TextArray(list) => {
                head(&mut out, 4, list.len());
                for s in *list {
                    text(&mut out, s);
                }
            }
            V::Flags(list) => {
                head(&mut out, 5, list.len());
                for (k, b) in *list {
                    text(&mut out, k);
                    // CBOR simple values 20 (false) and 21 (true).
                    out.push(if *b { 0xf5 } else { 0xf4 });
                }
            }
        }
    }
    out
}

fn join_frame(me: &str) -> Vec<u8> {
    frame(&[
        ("type", V::Text("join")),
        ("senderId", V::Text(me)),
        ("supportedProtocolVersions", V::TextArray(&["1"])),
        ("peerMetadata", V::Flags(&[("isEphemeral", true)])),
    ])
}

fn sync_frame(kind: &str, me: &str, target: &str, doc: &str, data: &[u8]) -> Vec<u8> {
    frame(&[
        ("type", V::Text(kind)),
        ("senderId", V::Text(me)),
        ("targetId", V::Text(target)),
        ("documentId", V::Text(doc)),
        ("data", V::Bytes(data)),
    ])
}

// --- the client -----------------------------------------------------------

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One document on a client: the client's copy and its sync state with the server.
pub struct Doc {
    pub doc: Automerge,
    state: State,
    /// Asked for with an empty document and nothing received yet: every
    /// such client is in the same state, so the first message's outcome can
    /// be shared ([`Memo`]).
    fresh: bool,
}

/// What a fresh document became after its first message from the server.
struct Outcome {
    doc: Automerge,
    state: State,
    /// The encoded sync message sent back, if any.
    reply: Option<Vec<u8>>,
}

/// The generator's shortcut, shared by the clients of one run: a document
/// asked for with an empty copy (each client's `request` is the same) that
/// then receives the same sync message ends in the same state and answers
/// the same, so the first client computes it with Automerge and the others
/// take a copy. What goes over the wire, and so the server's work, is
/// unchanged; only the generator's CPU (which shares the machine with the
/// server) drops.
/// Likewise, the document list klad-core reads from a process document is
/// read once per version of that document.
#[derive(Default)]
pub struct Memo {
    first: std::sync::Mutex<FirstMessages>,
    lists: std::sync::Mutex<Lists>,
}

/// Per document, the first messages seen and what they led to.
type FirstMessages = HashMap<String, Vec<(Vec<u8>, Arc<Outcome>)>>;

/// Per process document and heads, the documents it lists.
type Lists = HashMap<(String, Vec<ChangeHash>), Arc<Vec<String>>>;

impl Memo {
    fn get(&self, doc: &str, message: &[u8]) -> Option<Arc<Outcome>> {
        let m = self.first.lock().unwrap_or_else(|e| e.into_inner());
        m.get(doc)?
            .iter()
            .find(|(k, _)| k == message)
            .map(|(_, o)| o.clone())
    }

    fn put(&self, doc: &str, message: Vec<u8>, d: &Automerge, s: &State, reply: &Option<Vec<u8>>) {
        let mut m = self.first.lock().unwrap_or_else(|e| e.into_inner());
        let list = m.entry(doc.to_owned()).or_default();
        // A few variants per document at most (the server's first message
        // is the same for every client while the document does not change).
        if list.len() < 4 && !list.iter().any(|(k, _)| *k == message) {
            list.push((
                message,
                Arc::new(Outcome {
                    doc: d.clone(),
                    state: s.clone(),
                    reply: reply.clone(),
                }),
            ));
        }
    }
}

/// When a client considers a document synced.
#[derive(Clone, Copy)]
pub enum Until<'a> {
    /// Its heads equal these (learned beforehand from the server).
    Heads(&'a Heads),
    /// It has changes and the server's last sync message announced the
    /// same heads as ours (for the observer, which knows no heads yet, and
    /// for uploading documents).
    Quiet,
}

/// A connected client.
pub struct Client {
    ws: Ws,
    me: String,
    server: String,
    /// The documents this client asked for.
    pub docs: HashMap<String, Doc>,
    /// Frames received (after the handshake).
    pub frames_in: u64,
    memo: Option<Arc<Memo>>,
}

/// A sentence for a failed websocket connect (with the HTTP answer if any).
fn connect_error(e: tokio_tungstenite::tungstenite::Error) -> anyhow::Error {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(r) => {
            let body = r
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            anyhow!("the server answered HTTP {}: {}", r.status(), body.trim())
        }
        other => anyhow!("could not connect: {other}"),
    }
}

impl Client {
    /// Opens a websocket to `url`, joins as `me` and waits for the server's
    /// `peer` (whose id is `server_peer`).
    pub async fn connect(
        url: &str,
        me: &str,
        server_peer: &str,
        deadline: Instant,
    ) -> anyhow::Result<Client> {
        // Small buffers: thousands of clients share this process.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) = timeout_at(
            deadline,
            tokio_tungstenite::connect_async_with_config(url, Some(config), true),
        )
        .await
        .map_err(|_| anyhow!("the websocket was not open before the deadline"))?
        .map_err(connect_error)?;
        let mut c = Client {
            ws,
            me: me.to_owned(),
            server: server_peer.to_owned(),
            docs: HashMap::new(),
            frames_in: 0,
            memo: None,
        };
        c.ws.send(Message::Binary(join_frame(me).into()))
            .await
            .context("could not send join")?;
        let bytes = c
            .recv(deadline)
            .await?
            .context("no answer to join before the deadline")?;
        let f = klad_sync::wire::parse(&bytes).map_err(|e| anyhow!("answer to join: {e}"))?;
        if f.kind != "peer" {
            bail!("the server answered join with {:?}, not peer", f.kind);
        }
        c.frames_in = 0;
        Ok(c)
    }

    /// [`Client::connect`], tried up to three times (10 s each) before
    /// `deadline`: the JS server, just started, sometimes takes a connection
    /// before its websocket adapter listens for messages, never answers the
    /// `join` and resets the socket at its next keep-alive round.
    pub async fn connect_retrying(
        url: &str,
        me: &str,
        server_peer: &str,
        deadline: Instant,
    ) -> anyhow::Result<Client> {
        let mut tries = 0;
        loop {
            tries += 1;
            let attempt = deadline.min(Instant::now() + Duration::from_secs(10));
            match Client::connect(url, me, server_peer, attempt).await {
                Ok(c) => return Ok(c),
                Err(e) if tries >= 3 || Instant::now() >= deadline => {
                    return Err(e.context(format!("after {tries} tries")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Shares the outcome of first messages with the other clients of `memo`.
    pub fn with_memo(mut self, memo: Arc<Memo>) -> Self {
        self.memo = Some(memo);
        self
    }

    /// The next binary frame; `None` at the deadline.
    async fn recv(&mut self, deadline: Instant) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            match timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => bail!("the server ended the connection"),
                Ok(Some(Err(e))) => bail!("the connection broke: {e}"),
                Ok(Some(Ok(Message::Binary(b)))) => {
                    self.frames_in += 1;
                    return Ok(Some(b.to_vec()));
                }
                Ok(Some(Ok(Message::Close(f)))) => match f {
                    Some(f) => bail!(
                        "the server closed the connection ({}): {}",
                        f.code,
                        f.reason
                    ),
                    None => bail!("the server closed the connection"),
                },
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The frame that carries `doc`'s next sync message, if Automerge has one.
    fn next_frame(&mut self, doc: &str) -> Option<Vec<u8>> {
        let d = self.docs.get_mut(doc)?;
        let msg = d.doc.generate_sync_message(&mut d.state)?;
        let kind = if d.doc.get_heads().is_empty() {
            "request"
        } else {
            "sync"
        };
        Some(sync_frame(kind, &self.me, &self.server, doc, &msg.encode()))
    }

    /// Starts syncing each of `docs` (an empty document asks with `request`;
    /// `initial` copies, if given, are offered with `sync`), in one flush.
    pub async fn open(
        &mut self,
        docs: impl IntoIterator<Item = (String, Option<Automerge>)>,
    ) -> anyhow::Result<()> {
        let mut frames = Vec::new();
        for (id, initial) in docs {
            if self.docs.contains_key(&id) {
                continue;
            }
            self.docs.insert(
                id.clone(),
                Doc {
                    fresh: initial.is_none(),
                    doc: initial.unwrap_or_default(),
                    state: State::new(),
                },
            );
            frames.extend(self.next_frame(&id));
        }
        for f in frames {
            self.ws
                .feed(Message::Binary(f.into()))
                .await
                .context("could not send a request")?;
        }
        self.ws.flush().await.context("could not send a request")?;
        Ok(())
    }

    /// Reads one frame and acts on it: applies a `sync` and answers it.
    /// Returns `None` at the deadline, else the document the frame was
    /// about (`Some(None)` for a frame about none of ours).
    async fn step(&mut self, deadline: Instant) -> anyhow::Result<Option<Option<String>>> {
        let Some(bytes) = self.recv(deadline).await? else {
            return Ok(None);
        };
        let f =
            klad_sync::wire::parse(&bytes).map_err(|e| anyhow!("a frame from the server: {e}"))?;
        match f.kind.as_str() {
            "sync" | "request" => {
                let id = f.document_id.context("a sync frame without documentId")?;
                let data = f.data.context("a sync frame without data")?;
                let Some(d) = self.docs.get_mut(&id) else {
                    // Never asked for (or forgotten): not answered.
                    return Ok(Some(None));
                };
                let memo = if d.fresh { self.memo.clone() } else { None };
                d.fresh = false;
                let reply = match memo.as_ref().and_then(|m| m.get(&id, &data)) {
                    Some(hit) => {
                        d.doc = hit.doc.clone();
                        d.state = hit.state.clone();
                        hit.reply.clone()
                    }
                    None => {
                        let msg = SyncMessage::decode(&data)
                            .map_err(|e| anyhow!("a sync message for {id}: {e}"))?;
                        d.doc
                            .receive_sync_message(&mut d.state, msg)
                            .with_context(|| {
                                format!("applying the server's sync message for {id}")
                            })?;
                        let reply = d
                            .doc
                            .generate_sync_message(&mut d.state)
                            .map(|m| m.encode());
                        if let Some(m) = &memo {
                            m.put(&id, data, &d.doc, &d.state, &reply);
                        }
                        reply
                    }
                };
                if let Some(reply) = reply {
                    let kind = if d.doc.get_heads().is_empty() {
                        "request"
                    } else {
                        "sync"
                    };
                    let bytes = sync_frame(kind, &self.me, &self.server, &id, &reply);
                    self.ws
                        .send(Message::Binary(bytes.into()))
                        .await
                        .context("could not answer a sync message")?;
                }
                return Ok(Some(Some(id)));
            }
            "doc-unavailable" => bail!(
                "the server says document {} is unavailable",
                f.document_id.unwrap_or_default()
            ),
            "error" => bail!("the server sent an error frame"),
            _ => {}
        }
        Ok(Some(None))
    }

    /// Whether `doc` counts as synced.
    pub fn synced(&self, doc: &str, until: Until<'_>) -> bool {
        let Some(d) = self.docs.get(doc) else {
            return false;
        };
        let ours = sorted(d.doc.get_heads());
        match until {
            Until::Heads(expected) => expected.get(doc).is_some_and(|e| *e == ours),
            Until::Quiet => {
                !ours.is_empty()
                    && d.state
                        .their_heads
                        .as_ref()
                        .is_some_and(|t| sorted(t.clone()) == ours)
            }
        }
    }

    /// Reads and answers frames until every one of `docs` is synced; at the
    /// deadline, says how many and which are missing.
    pub async fn sync_until(
        &mut self,
        docs: &[String],
        until: Until<'_>,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        // Only the document a frame was about can have become synced.
        let mut missing: HashSet<&String> =
            docs.iter().filter(|d| !self.synced(d, until)).collect();
        while !missing.is_empty() {
            let touched = if Instant::now() < deadline {
                self.step(deadline).await?
            } else {
                None
            };
            match touched {
                Some(Some(id)) => {
                    if missing.contains(&id) && self.synced(&id, until) {
                        missing.remove(&id);
                    }
                }
                Some(None) => {}
                None => {
                    let empty = missing
                        .iter()
                        .filter(|d| {
                            self.docs
                                .get(d.as_str())
                                .is_none_or(|x| x.doc.get_heads().is_empty())
                        })
                        .count();
                    let first = docs.iter().find(|d| missing.contains(d));
                    bail!(
                        "timed out with {} of {} documents missing ({} of them still empty; first missing: {})",
                        missing.len(),
                        docs.len(),
                        empty,
                        first.map_or("", |d| d.as_str())
                    );
                }
            }
        }
        Ok(())
    }

    /// Opens a process as a phone does: syncs the process document, reads
    /// the process's document list from it with klad-core, then syncs every
    /// document on the list. Returns the list (process document first).
    pub async fn open_process(
        &mut self,
        process_doc: &str,
        until: Until<'_>,
        deadline: Instant,
    ) -> anyhow::Result<Vec<String>> {
        self.open([(process_doc.to_owned(), None)]).await?;
        self.sync_until(&[process_doc.to_owned()], until, deadline)
            .await
            .context("the process document")?;
        let list = self.document_list(process_doc)?;
        self.open(list.iter().map(|d| (d.clone(), None))).await?;
        self.sync_until(&list, until, deadline).await?;
        Ok(list)
    }

    /// The documents the process document lists ([`ProcessInfo::documents`]).
    pub fn document_list(&mut self, process_doc: &str) -> anyhow::Result<Vec<String>> {
        let d = self
            .docs
            .get_mut(process_doc)
            .context("the process document was never opened")?;
        let key = (process_doc.to_owned(), sorted(d.doc.get_heads()));
        if let Some(m) = &self.memo {
            let lists = m.lists.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(list) = lists.get(&key) {
                return Ok(list.to_vec());
            }
        }
        // Borrow the document into klad-core and back, without a copy.
        let mut p = ProcessDoc::from_automerge(std::mem::take(&mut d.doc))?;
        let info = p.info();
        d.doc = std::mem::take(p.automerge_mut());
        let list: Vec<String> = info?
            .documents()
            .into_iter()
            .map(|(id, _)| id.to_string())
            .collect();
        if let Some(m) = &self.memo {
            let mut lists = m.lists.lock().unwrap_or_else(|e| e.into_inner());
            lists.insert(key, Arc::new(list.clone()));
        }
        Ok(list)
    }

    /// Closes the websocket politely (a close frame, then the server's).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
        // Reads until the server's close arrives (or the stream ends).
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// Keeps the connection open, answering what the server sends, until
    /// `stop` says so or `deadline` passes; returns the frames received
    /// meanwhile. With `forget`, the documents are dropped first and
    /// frames are read but not answered (an idle connection that costs the
    /// generator little).
    pub async fn hold(
        mut self,
        mut stop: tokio::sync::watch::Receiver<bool>,
        deadline: Instant,
        forget: bool,
    ) -> anyhow::Result<u64> {
        if forget {
            self.docs = HashMap::new();
        }
        let before = self.frames_in;
        loop {
            if *stop.borrow() {
                break;
            }
            tokio::select! {
                _ = stop.changed() => break,
                r = self.step(deadline) => {
                    if r?.is_none() {
                        break;
                    }
                }
            }
        }
        let frames = self.frames_in - before;
        self.close().await;
        Ok(frames)
    }
}

/// The nearest-rank percentile `p` (0..=100) of `xs`, `None` for none.
pub fn percentile(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v.get(rank.min(v.len()) - 1).copied()
}

/// Distinct error sentences (digits and document ids folded), with counts,
/// most frequent first.
pub fn summarize_errors(errors: &[String]) -> Vec<(usize, String)> {
    let mut counts: Vec<(usize, String)> = Vec::new();
    for e in errors {
        let key: String = e
            .split_whitespace()
            .map(|w| {
                // Document ids (base58, 20+ characters) and member ids, with
                // the punctuation that follows them.
                let id = w.trim_end_matches([')', ',', ';', '.']);
                if id.len() >= 20 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == ':') {
                    format!("<id>{}", &w[id.len()..])
                } else {
                    w.chars()
                        .map(|c| if c.is_ascii_digit() { '#' } else { c })
                        .collect()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        match counts.iter_mut().find(|(_, k)| *k == key) {
            Some((n, _)) => *n += 1,
            None => counts.push((1, key)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.0));
    counts
}
