//! Rule 3 across a relay: a change reaches the server through another
//! member's phone still attributed to the person who wrote it, and a change
//! in someone else's name without their signature is refused, by the server
//! and by a phone on a peer link.
//!
//! Every test runs a real klad-server on loopback inside the test process and
//! real klad-ffi phones joined through it. What does not behave (a tampered
//! client) is written here by hand: a raw websocket speaking the
//! automerge-repo protocol, or a bare samod repo on the other end of a link.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::sync::SyncDoc;
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ObjType, ROOT, ReadDoc};
use ciborium::Value as Cbor;
use futures::{SinkExt, StreamExt};
use klad_ffi::{DocKind, KladClient, KladPeerLink, KladProcess, PeerLinkState, PeerTransport};
use klad_sync::authorship::{self, DeviceKey};
use klad_sync::wire::{self, Hello};
use samod::{BackoffConfig, DocumentId, PeerId, Repo, Transport};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as WsMessage;

mod common;

use common::{Gone, Once, Server, eventually};

const WAIT: Duration = Duration::from_secs(60);

fn token(invitation: &Value) -> String {
    invitation["token"].as_str().unwrap().to_owned()
}

fn member_id(invitation: &Value) -> String {
    invitation["member_id"].as_str().unwrap().to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- phones ----

struct Phone {
    client: Arc<KladClient>,
    process: Arc<KladProcess>,
    _dir: tempfile::TempDir,
}

fn join(server: &Server, invitation: &Value) -> Phone {
    let dir = tempfile::tempdir().unwrap();
    let client = KladClient::open(dir.path().to_string_lossy().into_owned()).unwrap();
    let process = client
        .join(server.url(), token(invitation), 30_000)
        .unwrap();
    Phone {
        client,
        process,
        _dir: dir,
    }
}

impl Phone {
    fn body(&self) -> Option<String> {
        Some(self.process.articles().ok()?.first()?.body.clone())
    }

    /// The devices (actor hex) this phone knows for `member`.
    fn devices_of(&self, member: &str) -> Vec<String> {
        self.process
            .members()
            .ok()
            .and_then(|ms| ms.into_iter().find(|m| m.id == member))
            .map(|m| m.devices)
            .unwrap_or_default()
    }

    /// Turns the phone's connection to the server off and waits until it is.
    fn go_offline(&self) {
        self.client.set_online(false);
        eventually("the phone to be offline", Duration::from_secs(30), || {
            (!self.process.sync_status().online).then_some(())
        });
    }
}

/// Waits until `phone` knows `member`'s registered device; returns its actor.
fn known_device(phone: &Phone, member: &str, whose: &str) -> String {
    eventually(&format!("the phone to know {whose}'s device"), WAIT, || {
        phone.devices_of(member).into_iter().next()
    })
}

// ---- a pipe between two real phones ----

/// One side of an in-memory pipe: what this side's link sends goes to a
/// thread that hands it to the other side's link.
struct Pipe {
    to_other: Mutex<Sender<Vec<u8>>>,
    closed: Mutex<Option<String>>,
}

impl PeerTransport for Pipe {
    fn send(&self, frame: Vec<u8>) {
        let _ = self.to_other.lock().unwrap().send(frame);
    }
    fn closed(&self, reason: String) {
        *self.closed.lock().unwrap() = Some(reason);
    }
}

fn forward(from: Receiver<Vec<u8>>, to: Arc<KladPeerLink>) {
    std::thread::spawn(move || {
        for frame in from {
            if to.receive(frame).is_err() {
                break;
            }
        }
    });
}

/// Links two phones; returns (a's link, b's link).
fn link(a: &KladProcess, b: &KladProcess) -> (Arc<KladPeerLink>, Arc<KladPeerLink>) {
    let (a_to_b, from_a) = channel();
    let (b_to_a, from_b) = channel();
    let pipe = |tx| {
        Arc::new(Pipe {
            to_other: Mutex::new(tx),
            closed: Mutex::new(None),
        })
    };
    let la = a.open_peer_link(pipe(a_to_b)).unwrap();
    let lb = b.open_peer_link(pipe(b_to_a)).unwrap();
    forward(from_a, lb.clone());
    forward(from_b, la.clone());
    (la, lb)
}

const BODY: &str = "Honden aan de lijn in het park.";

// ---- 1. a relay through another phone ----

// Guards a bug found while writing it: a phone on a link kept the signatures
// of relayed changes only (`Author::Signed`), not those of the linked phone's
// own changes (`Author::Sender`), so Bram's phone passed Anna's changes on
// unsigned and the server closed its connection as forged_author, again and
// again. `check_link_frame` (client-ffi/src/peer.rs) now keeps both.
#[test]
fn a_signed_text_change_and_comment_relayed_by_another_phone_reach_the_server_attributed_to_their_author()
 {
    const INSERT: &str = " Ook op het strand.";
    const COMMENT: &str = "Geldt dit ook 's nachts?";
    let server = Server::start();
    let (process, _) = server.create_process("Honden");
    let anna_inv = server.invite(&process, "Anna", "drafter");
    let bram_inv = server.invite(&process, "Bram", "drafter");
    let (anna_id, bram_id) = (member_id(&anna_inv), member_id(&bram_inv));
    let anna = join(&server, &anna_inv);
    let bram = join(&server, &bram_inv);

    // Bram writes the article, so that blame can tell Anna's words from his.
    let article = bram
        .process
        .create_article(None, "Honden".into(), BODY.into())
        .unwrap();
    eventually("the article to reach Anna's phone", WAIT, || {
        (anna.body()? == BODY).then_some(())
    });
    // Each phone knows the other's device (and its key) from the server.
    let anna_actor = known_device(&anna, &anna_id, "Anna");
    eventually("Bram's phone to know Anna's device", WAIT, || {
        bram.devices_of(&anna_id)
            .contains(&anna_actor)
            .then_some(())
    });
    let bram_actor = known_device(&bram, &bram_id, "Bram");
    eventually("Anna's phone to know Bram's device", WAIT, || {
        anna.devices_of(&bram_id)
            .contains(&bram_actor)
            .then_some(())
    });

    // Anna goes offline, types and comments.
    anna.go_offline();
    let before: HashSet<String> = anna
        .process
        .history()
        .unwrap()
        .into_iter()
        .map(|h| h.hash)
        .collect();
    anna.process
        .edit_body(
            article.clone(),
            BODY.chars().count() as u32,
            0,
            INSERT.into(),
        )
        .unwrap();
    anna.process.commit().unwrap();
    let start = BODY.find("in het park").unwrap() as u32;
    anna.process
        .comment(
            article.clone(),
            start,
            start + "in het park".len() as u32,
            COMMENT.into(),
        )
        .unwrap();
    let expected = format!("{BODY}{INSERT}");
    assert_eq!(anna.body().unwrap(), expected);
    // Anna's new changes: one to the text, one to her contributions.
    let annas: Vec<_> = anna
        .process
        .history()
        .unwrap()
        .into_iter()
        .filter(|h| !before.contains(&h.hash))
        .collect();
    assert!(
        annas.iter().any(|h| h.doc == DocKind::Text)
            && annas.iter().any(|h| h.doc == DocKind::Contributions),
        "{annas:?}"
    );
    assert!(
        annas
            .iter()
            .all(|h| h.author.as_deref() == Some(anna_id.as_str())),
        "{annas:?}"
    );

    // Anna's phone and Bram's meet; Bram's phone gets her text and comment.
    let (anna_link, bram_link) = link(&anna.process, &bram.process);
    eventually("the link to be up", Duration::from_secs(30), || {
        (anna_link.status().state == PeerLinkState::Connected
            && bram_link.status().state == PeerLinkState::Connected)
            .then_some(())
    });
    assert_eq!(bram_link.status().peer.unwrap().name, "Anna");
    eventually(
        "Anna's text and comment to reach Bram's phone",
        WAIT,
        || {
            let threads = bram.process.threads(None).ok()?;
            (bram.body()? == expected
                && threads
                    .iter()
                    .any(|t| t.text == COMMENT && t.author.name == "Anna"))
            .then_some(())
        },
    );
    let st = bram_link.status();
    assert_eq!(st.refused_changes, 0, "{st:?}");
    assert_eq!(anna_link.status().refused_changes, 0);
    bram_link.end();
    eventually(
        "Anna's side of the link to close",
        Duration::from_secs(30),
        || (anna_link.status().state == PeerLinkState::Closed).then_some(()),
    );

    // Bram's phone is online: it passes Anna's changes on to the server,
    // with the signatures Anna's phone made. A third phone, joined fresh,
    // gets them from the server.
    let cas = join(&server, &server.invite(&process, "Cas", "observer"));
    let start = Instant::now();
    loop {
        let arrived = cas.body().as_deref() == Some(expected.as_str())
            && cas
                .process
                .threads(None)
                .is_ok_and(|ts| ts.iter().any(|t| t.text == COMMENT));
        if arrived {
            break;
        }
        // Fail with the reason rather than a bare timeout when the server
        // refused the relay.
        let (forged, bad) = (
            server.refused("forged_author"),
            server.refused("bad_signature"),
        );
        assert!(
            forged == 0 && bad == 0,
            "the server refused the changes Bram's phone relayed for Anna \
             (forged_author: {forged}, bad_signature: {bad}): they reached it \
             without Anna's valid signatures"
        );
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for Anna's text and comment to reach Cas's phone through the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Attributed to Anna, not to Bram who relayed them.
    let blame: Vec<(String, Option<String>, String)> = cas
        .process
        .blame(article.clone())
        .unwrap()
        .into_iter()
        .map(|b| (b.text, b.member, b.name))
        .collect();
    assert_eq!(
        blame,
        vec![
            (BODY.to_owned(), Some(bram_id.clone()), "Bram".to_owned()),
            (INSERT.to_owned(), Some(anna_id.clone()), "Anna".to_owned()),
        ]
    );
    let thread = cas
        .process
        .threads(None)
        .unwrap()
        .into_iter()
        .find(|t| t.text == COMMENT)
        .unwrap();
    assert_eq!(thread.author.member, anna_id);
    assert_eq!(thread.author.name, "Anna");
    let history = cas.process.history().unwrap();
    for change in &annas {
        let h = history
            .iter()
            .find(|h| h.hash == change.hash)
            .unwrap_or_else(|| panic!("{} is in the server's history", change.hash));
        assert_eq!(h.author.as_deref(), Some(anna_id.as_str()), "{h:?}");
        assert_eq!(h.name, "Anna", "{h:?}");
        assert_eq!(h.doc, change.doc);
    }
    assert_eq!(server.refused("forged_author"), 0);
    assert_eq!(server.refused("bad_signature"), 0);

    // Anna's phone never talked to the server again: the server got her
    // changes through Bram's phone only.
    let st = anna.process.sync_status();
    assert!(!st.online, "{st:?}");
    assert!(st.unsynced_changes > 0 && !st.all_on_server, "{st:?}");
}

// ---- 2. the server refuses a relay without a valid signature ----

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn cbor(entries: Vec<(&str, Cbor)>) -> Vec<u8> {
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

/// A hand-driven automerge-repo client on a raw websocket.
struct RawPeer {
    ws: Ws,
    peer_id: String,
}

impl RawPeer {
    /// Connects with `token` and completes the join/peer handshake.
    async fn connect(addr: &str, token: &str, peer_id: &str) -> RawPeer {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/sync?token={token}"))
            .await
            .unwrap();
        let mut p = RawPeer {
            ws,
            peer_id: peer_id.to_owned(),
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
        let reply = p.recv().await.expect("the server answers the join");
        assert_eq!(wire::parse(&reply).unwrap().kind, "peer");
        p
    }

    async fn send(&mut self, bytes: Vec<u8>) {
        self.ws.send(WsMessage::Binary(bytes.into())).await.unwrap();
    }

    /// A sync-protocol frame (`request` or `sync`) for `doc`.
    fn frame(&self, kind: &str, doc: &str, msg: automerge::sync::Message) -> Vec<u8> {
        cbor(vec![
            ("type", Cbor::Text(kind.into())),
            ("senderId", Cbor::Text(self.peer_id.clone())),
            ("targetId", Cbor::Text("klad-server".into())),
            ("documentId", Cbor::Text(doc.into())),
            ("data", Cbor::Bytes(msg.encode())),
        ])
    }

    /// The next binary frame; `None` when the connection ends (bounded wait).
    async fn recv(&mut self) -> Option<Vec<u8>> {
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

    /// Syncs `doc` from the server with the plain Automerge sync protocol
    /// until `ready` says it has what the test needs.
    async fn fetch(&mut self, doc: &str, ready: impl Fn(&Automerge) -> bool) -> Automerge {
        let mut local = Automerge::new();
        let mut state = automerge::sync::State::new();
        let first = local.generate_sync_message(&mut state).unwrap();
        let request = self.frame("request", doc, first);
        self.send(request).await;
        let deadline = Instant::now() + WAIT;
        while !ready(&local) {
            assert!(Instant::now() < deadline, "the document {doc} arrives");
            let Some(bytes) = self.recv().await else {
                panic!("the server closed while sending {doc}");
            };
            let frame = wire::parse(&bytes).unwrap();
            if frame.kind != "sync" || frame.document_id.as_deref() != Some(doc) {
                continue;
            }
            let msg = frame.sync_message().unwrap().unwrap();
            local.receive_sync_message(&mut state, msg).unwrap();
            if let Some(reply) = local.generate_sync_message(&mut state) {
                let reply = self.frame("sync", doc, reply);
                self.send(reply).await;
            }
        }
        local
    }

    /// Reads until the server closes; returns the close code and reason.
    async fn close_reason(&mut self) -> Option<(u16, String)> {
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

/// The body of the (first) article in a text document.
fn body_in(doc: &Automerge) -> Option<String> {
    let (_, articles) = doc.get(ROOT, "articles").ok()??;
    let id = doc.keys(&articles).next()?;
    let (_, a) = doc.get(&articles, id).ok()??;
    let (_, body) = doc.get(&a, "body").ok()??;
    doc.text(&body).ok()
}

/// A change to `article`'s body written with `actor`, on a fork of `base`
/// (which is left untouched): its bytes, hash and the fork's heads.
fn change_as(
    base: &Automerge,
    actor: &str,
    article: &str,
    insert: &str,
) -> (Vec<u8>, automerge::ChangeHash, Vec<automerge::ChangeHash>) {
    let mut fork = base.fork().with_actor(ActorId::from_str(actor).unwrap());
    let mut tx = fork.transaction();
    let (_, articles) = tx.get(ROOT, "articles").unwrap().unwrap();
    let (_, a) = tx.get(&articles, article).unwrap().unwrap();
    let (_, body) = tx.get(&a, "body").unwrap().unwrap();
    tx.splice_text(&body, 0, 0, insert).unwrap();
    tx.commit();
    let change = fork.get_last_local_change().unwrap();
    (change.raw_bytes().to_vec(), change.hash(), fork.get_heads())
}

#[test]
fn a_relayed_change_without_its_signature_is_refused_by_the_server() {
    const FORGED: &str = "Nooit. ";
    let server = Server::start();
    let (process, text_doc) = server.create_process("Honden");
    let anna_inv = server.invite(&process, "Anna", "drafter");
    let bram_inv = server.invite(&process, "Bram", "drafter");
    let cas_inv = server.invite(&process, "Cas", "drafter");
    let anna_id = member_id(&anna_inv);
    let anna = join(&server, &anna_inv);
    let cas = join(&server, &cas_inv);
    let article = anna
        .process
        .create_article(None, "Honden".into(), BODY.into())
        .unwrap();
    eventually("the article to reach Cas's phone", WAIT, || {
        (cas.body()? == BODY).then_some(())
    });
    let anna_actor = known_device(&cas, &anna_id, "Anna");
    assert_eq!(anna.devices_of(&anna_id), vec![anna_actor.clone()]);

    // Bram's tampered client fetches the text and writes into it with
    // Anna's device id, passing it off as a relay of Anna's words.
    let bram_peer = member_id(&bram_inv);
    let (mut raw, base) = server.runtime.block_on(async {
        let mut raw = RawPeer::connect(&server.addr, &token(&bram_inv), &bram_peer).await;
        let base = raw
            .fetch(&text_doc, |d| body_in(d).as_deref() == Some(BODY))
            .await;
        (raw, base)
    });
    let (change, hash, heads) = change_as(&base, &anna_actor, &article, FORGED);
    let msg = || automerge::sync::Message {
        heads: heads.clone(),
        need: vec![],
        have: vec![],
        changes: vec![change.clone()].into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    };

    // Without a signature.
    let closed = server.runtime.block_on(async {
        let frame = raw.frame("sync", &text_doc, msg());
        raw.send(frame).await;
        raw.close_reason().await
    });
    let (code, reason) = closed.expect("the server closes the connection with a reason");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("Anna"), "{reason}");
    assert!(reason.contains("signature"), "{reason}");
    assert!(server.refused("forged_author") >= 1);
    assert_eq!(server.refused("bad_signature"), 0);

    // With a signature that is not Anna's device's.
    let closed = server.runtime.block_on(async {
        let mut raw = RawPeer::connect(&server.addr, &token(&bram_inv), &bram_peer).await;
        let wrong = DeviceKey::from_seed([7; 32]).sign(&hash);
        raw.send(authorship::encode_signatures(&text_doc, &[(hash, wrong)]))
            .await;
        let frame = raw.frame("sync", &text_doc, msg());
        raw.send(frame).await;
        raw.close_reason().await
    });
    let (code, reason) = closed.expect("the server closes the connection with a reason");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("Anna"), "{reason}");
    assert!(reason.contains("signature"), "{reason}");
    assert!(server.refused("bad_signature") >= 1);

    // The phones sync on (Cas types, Anna's phone gets it), and the forged
    // words are nowhere.
    cas.process
        .edit_body(
            article.clone(),
            BODY.chars().count() as u32,
            0,
            " Echt.".into(),
        )
        .unwrap();
    cas.process.commit().unwrap();
    let expected = format!("{BODY} Echt.");
    eventually("Cas's edit to reach Anna's phone", WAIT, || {
        (anna.body()? == expected).then_some(())
    });
    assert_eq!(cas.body().unwrap(), expected);
    for phone in [&anna, &cas] {
        assert!(
            !phone
                .process
                .history()
                .unwrap()
                .iter()
                .any(|h| h.hash == hash.to_string()),
            "the forged change is in a phone's history"
        );
    }
}

// ---- 3. a phone refuses a relay without a valid signature ----

/// The victim's side of the link to the rogue: frames go to the rogue.
struct ToRogue {
    frames: Mutex<Sender<Vec<u8>>>,
}

impl PeerTransport for ToRogue {
    fn send(&self, frame: Vec<u8>) {
        let _ = self.frames.lock().unwrap().send(frame);
    }
    fn closed(&self, _reason: String) {}
}

/// What the rogue puts into every sync message of one document: the changes,
/// and a signatures frame to send just before it (if any).
struct Tamper {
    doc: String,
    changes: Vec<Vec<u8>>,
    signatures: Option<Vec<u8>>,
}

/// `frame` with `changes` as its sync message's changes, if it is a sync
/// frame of `doc`.
fn with_changes(frame: &[u8], doc: &str, changes: &[Vec<u8>]) -> Option<Vec<u8>> {
    let f = wire::parse(frame).ok()?;
    if f.kind != "sync" || f.document_id.as_deref() != Some(doc) {
        return None;
    }
    let mut msg = f.sync_message().ok()??;
    msg.changes = changes.to_vec().into();
    wire::replace_sync_data(frame, msg).ok()
}

/// A peer that is not klad-ffi: a bare samod repo behind a hand-made
/// handshake, whose sync messages for one document can be made to carry
/// any changes (and any signatures).
struct Rogue {
    repo: Repo,
    runtime: tokio::runtime::Runtime,
    tamper: Arc<Mutex<Option<Tamper>>>,
}

impl Rogue {
    fn new(peer_id: &str) -> Rogue {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let repo = runtime.block_on(async {
            Repo::build_tokio()
                .with_peer_id(PeerId::from(peer_id))
                .load()
                .await
        });
        Rogue {
            repo,
            runtime,
            tamper: Arc::new(Mutex::new(None)),
        }
    }

    /// Opens a link on `victim`, presents `token`, and runs samod over it.
    fn link(&self, victim: &KladProcess, token: &str) -> Arc<KladPeerLink> {
        static LINKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let (tx, from_victim) = channel();
        let link = victim
            .open_peer_link(Arc::new(ToRogue {
                frames: Mutex::new(tx),
            }))
            .unwrap();
        link.receive(wire::encode_hello(&Hello {
            token: token.to_owned(),
            peer_id: self.repo.peer_id().to_string(),
        }))
        .unwrap();
        let hello = from_victim
            .recv_timeout(Duration::from_secs(30))
            .expect("the victim says hello");
        let wire::LinkFrame::Hello(h) = wire::parse_link(&hello).unwrap() else {
            panic!("the first frame is a hello");
        };
        let (mut in_tx, in_rx) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, Gone>>();
        std::thread::spawn(move || {
            while let Ok(f) = from_victim.recv() {
                // A bare samod repo knows nothing of Klad's signatures frames.
                if wire::parse(&f).is_ok_and(|p| authorship::is_signatures(&p)) {
                    continue;
                }
                if futures::executor::block_on(in_tx.send(Ok(f))).is_err() {
                    break;
                }
            }
        });
        let (out_tx, mut out_rx) = futures::channel::mpsc::unbounded::<Vec<u8>>();
        let tamper = self.tamper.clone();
        let to_victim = link.clone();
        self.runtime.spawn(async move {
            while let Some(f) = out_rx.next().await {
                let mut frames = Vec::new();
                match tamper.lock().unwrap().as_ref() {
                    Some(t) => match with_changes(&f, &t.doc, &t.changes) {
                        Some(tampered) => {
                            frames.extend(t.signatures.clone());
                            frames.push(tampered);
                        }
                        None => frames.push(f),
                    },
                    None => frames.push(f),
                }
                if frames.into_iter().any(|f| to_victim.receive(f).is_err()) {
                    break;
                }
            }
        });
        let url = url::Url::parse(&format!(
            "klad-peer://rogue-{}",
            LINKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ))
        .unwrap();
        let transport =
            Transport::new(in_rx, out_tx).with_expected_peer_id(PeerId::from(h.peer_id.as_str()));
        let _guard = self.runtime.enter();
        if self.repo.peer_id().to_string() < h.peer_id {
            let backoff = BackoffConfig {
                // samod's first attempt can fail before the dialer is registered
                // (without taking the transport): allow a few quick retries.
                initial_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(200),
                max_retries: Some(8),
            };
            let _ = self
                .repo
                .dial(backoff, Arc::new(Once(url, Mutex::new(Some(transport)))))
                .unwrap();
        } else {
            self.repo
                .make_acceptor(url)
                .unwrap()
                .accept(transport)
                .unwrap();
        }
        eventually("the link to be up", Duration::from_secs(30), || {
            (link.status().state == PeerLinkState::Connected).then_some(())
        });
        link
    }

    /// Finds the text document over a link and waits for the article.
    fn fetch(&self, text_doc: &str) -> samod::DocHandle {
        let id: DocumentId = text_doc.parse().unwrap();
        let handle = self.runtime.block_on(async {
            let deadline = Instant::now() + WAIT;
            loop {
                if let Ok(Ok(Some(h))) =
                    tokio::time::timeout(Duration::from_secs(5), self.repo.find(id.clone())).await
                {
                    break h;
                }
                assert!(Instant::now() < deadline, "the text reaches the rogue");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        eventually("the article to reach the rogue", WAIT, || {
            handle.with_document(|d| {
                let (_, articles) = d.get(ROOT, "articles").ok()??;
                let id = d.keys(&articles).next()?;
                let (_, a) = d.get(&articles, id).ok()??;
                let (_, body) = d.get(&a, "body").ok()??;
                (d.object_type(&body).ok()? == ObjType::Text).then_some(())
            })
        });
        handle
    }
}

#[test]
fn a_phone_refuses_a_relayed_change_without_a_valid_signature() {
    let server = Server::start();
    let (process, text_doc) = server.create_process("Honden");
    let anna_inv = server.invite(&process, "Anna", "drafter");
    let bram_inv = server.invite(&process, "Bram", "drafter");
    let cas_inv = server.invite(&process, "Cas", "drafter");
    let (anna_id, bram_id) = (member_id(&anna_inv), member_id(&bram_inv));
    let anna = join(&server, &anna_inv);
    let cas = join(&server, &cas_inv);
    let article = anna
        .process
        .create_article(None, "Honden".into(), BODY.into())
        .unwrap();
    eventually("the article to reach Cas's phone", WAIT, || {
        (cas.body()? == BODY).then_some(())
    });
    let anna_actor = known_device(&cas, &anna_id, "Anna");

    // Bram's tampered app has a device of his own, registered with its key
    // like a phone's, so that Bram's own changes are his.
    let bram_key = DeviceKey::from_seed([9; 32]);
    let bram_actor = "b7a3b7a3b7a3b7a3b7a3b7a3b7a3b7a3";
    server.runtime.block_on(async {
        let url = format!(
            "ws://{}/sync?token={}&actor={bram_actor}&key={}",
            server.addr,
            token(&bram_inv),
            hex(&bram_key.public_key())
        );
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        drop(ws);
    });
    eventually("Cas's phone to know Bram's device", WAIT, || {
        cas.devices_of(&bram_id)
            .iter()
            .any(|d| d == bram_actor)
            .then_some(())
    });
    // Phones link when there is no network; Cas's phone is offline from here.
    cas.go_offline();

    // The rogue reads the text over a link (Bram may), then writes into it
    // with Anna's device id.
    let rogue = Rogue::new(&format!("{bram_id}:rogue"));
    let link = rogue.link(&cas.process, &token(&bram_inv));
    assert_eq!(link.status().peer.unwrap().name, "Bram");
    let text = rogue.fetch(&text_doc);
    link.end();
    let base = text.with_document(|d| d.clone());
    let (forged, hash, _) = change_as(&base, &anna_actor, &article, "Nooit. ");

    // Without a signature.
    *rogue.tamper.lock().unwrap() = Some(Tamper {
        doc: text_doc.clone(),
        changes: vec![forged.clone()],
        signatures: None,
    });
    let link = rogue.link(&cas.process, &token(&bram_inv));
    let st = eventually("the unsigned change to be refused", WAIT, || {
        let st = link.status();
        (st.refused_changes > 0).then_some(st)
    });
    let why = st.last_refusal.clone().unwrap_or_default();
    assert!(
        why.contains("Bram") && why.contains("without Anna's signature"),
        "{why}"
    );
    assert_eq!(st.state, PeerLinkState::Connected, "the link goes on");
    assert_eq!(cas.body().unwrap(), BODY);
    link.end();

    // With a signature that is not Anna's device's.
    let wrong = DeviceKey::from_seed([7; 32]).sign(&hash);
    *rogue.tamper.lock().unwrap() = Some(Tamper {
        doc: text_doc.clone(),
        changes: vec![forged],
        signatures: Some(authorship::encode_signatures(&text_doc, &[(hash, wrong)])),
    });
    let link = rogue.link(&cas.process, &token(&bram_inv));
    let st = eventually("the wrongly signed change to be refused", WAIT, || {
        let st = link.status();
        (st.refused_changes > 0).then_some(st)
    });
    let why = st.last_refusal.clone().unwrap_or_default();
    assert!(
        why.contains("Bram") && why.contains("Anna's device") && why.contains("signature"),
        "{why}"
    );
    assert!(!why.contains("without Anna's signature"), "{why}");
    assert_eq!(cas.body().unwrap(), BODY);
    link.end();

    // The same pipe carries a change from Bram's own device (signed, as a
    // phone signs its own): it arrives, so the refusals above are the
    // authorship check at work, not a broken pipe.
    let (own, own_hash, _) = change_as(&base, bram_actor, &article, "Echt. ");
    *rogue.tamper.lock().unwrap() = Some(Tamper {
        doc: text_doc.clone(),
        changes: vec![own],
        signatures: Some(authorship::encode_signatures(
            &text_doc,
            &[(own_hash, bram_key.sign(&own_hash))],
        )),
    });
    let link = rogue.link(&cas.process, &token(&bram_inv));
    eventually("Bram's own change to arrive", WAIT, || {
        (cas.body()? == format!("Echt. {BODY}")).then_some(())
    });
    assert_eq!(link.status().refused_changes, 0);
    link.end();
    assert!(
        !cas.process
            .history()
            .unwrap()
            .iter()
            .any(|h| h.hash == hash.to_string()),
        "the forged change is not in Cas's history"
    );
    let blame: Vec<(String, Option<String>)> = cas
        .process
        .blame(article)
        .unwrap()
        .into_iter()
        .map(|b| (b.text, b.member))
        .collect();
    assert_eq!(
        blame,
        vec![
            ("Echt. ".to_owned(), Some(bram_id.clone())),
            (BODY.to_owned(), Some(anna_id.clone())),
        ]
    );
}
