//! Issue 4, scenario 4, the refusals: a phone on a peer link refuses what the
//! server would refuse, even from a peer that does not use klad-ffi and so
//! skips its local checks.
//!
//! The victim is a real klad-ffi phone (joined through a real klad-server on
//! loopback, which is how it learns the server's key). The other end of its
//! link is a bare samod repo written here: it speaks the handshake and the
//! automerge-repo protocol, and writes whatever it likes into the documents.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};
use futures::{SinkExt, StreamExt};
use klad_ffi::{KladClient, KladPeerLink, KladProcess, PeerLinkState, PeerTransport};
use klad_sync::authorship;
use klad_sync::wire::{self, Hello};
use samod::{BackoffConfig, DocumentId, PeerId, Repo, Transport};
use serde_json::Value;

mod common;

use common::{Gone, Once, Server, eventually};

/// The victim's side of the in-memory pipe: frames its link sends go to the rogue.
struct ToRogue {
    frames: Mutex<Sender<Vec<u8>>>,
    closed: Mutex<Option<String>>,
}

impl PeerTransport for ToRogue {
    fn send(&self, frame: Vec<u8>) {
        let _ = self.frames.lock().unwrap().send(frame);
    }
    fn closed(&self, reason: String) {
        *self.closed.lock().unwrap() = Some(reason);
    }
}

/// A peer that is not klad-ffi: a bare samod repo behind a hand-made
/// handshake, whose outgoing sync messages for one document can be made to
/// carry changes whatever the other side's read-only flag says.
struct Rogue {
    repo: Repo,
    /// The Automerge actor it writes with.
    actor: automerge::ActorId,
    runtime: tokio::runtime::Runtime,
    tamper: Arc<Mutex<Option<Tamper>>>,
}

/// A document id and the changes to put into every sync message for it.
type Tamper = (String, Vec<Vec<u8>>);

/// `frame` with `changes` put into its sync message, if it is a sync frame of `doc`.
fn with_changes(frame: Vec<u8>, doc: &str, changes: &[Vec<u8>]) -> Vec<u8> {
    use ciborium::Value;
    let Ok(f) = wire::parse(&frame) else {
        return frame;
    };
    if f.kind != "sync" || f.document_id.as_deref() != Some(doc) {
        return frame;
    }
    let Ok(Value::Map(mut entries)) = ciborium::from_reader::<Value, _>(frame.as_slice()) else {
        return frame;
    };
    for (k, v) in entries.iter_mut() {
        if let (Value::Text(k), Value::Bytes(data)) = (k, v)
            && k == "data"
        {
            let mut msg = automerge::sync::Message::decode(data).unwrap();
            msg.changes = changes.to_vec().into();
            *data = msg.encode();
        }
    }
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Map(entries), &mut out).unwrap();
    out
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
            actor: automerge::ActorId::random(),
            runtime,
            tamper: Arc::new(Mutex::new(None)),
        }
    }

    /// Opens a link to `victim` and presents `token`; returns the victim's
    /// link, the transport it reports to, and the frames it sends.
    fn link(
        &self,
        victim: &KladProcess,
        token: &str,
    ) -> (Arc<KladPeerLink>, Arc<ToRogue>, Receiver<Vec<u8>>) {
        let (tx, rx) = channel();
        let to_rogue = Arc::new(ToRogue {
            frames: Mutex::new(tx),
            closed: Mutex::new(None),
        });
        let link = victim.open_peer_link(to_rogue.clone()).unwrap();
        link.receive(wire::encode_hello(&Hello {
            token: token.to_owned(),
            peer_id: self.repo.peer_id().to_string(),
        }))
        .unwrap();
        (link, to_rogue, rx)
    }

    /// Reads the victim's hello, then runs samod over the pipe.
    fn connect(&self, link: Arc<KladPeerLink>, from_victim: Receiver<Vec<u8>>) {
        static LINKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let url = url::Url::parse(&format!(
            "klad-peer://rogue-{}",
            LINKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ))
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
                // A Klad phone consumes change signatures before samod sees
                // them; the rogue's bare samod would stop at the unknown type.
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
        self.runtime.spawn(async move {
            while let Some(mut f) = out_rx.next().await {
                if let Some((doc, changes)) = tamper.lock().unwrap().as_ref() {
                    f = with_changes(f, doc, changes);
                }
                if link.receive(f).is_err() {
                    break;
                }
            }
        });
        let transport =
            Transport::new(in_rx, out_tx).with_expected_peer_id(PeerId::from(h.peer_id.as_str()));
        let _guard = self.runtime.enter();
        if self.repo.peer_id().to_string() < h.peer_id {
            let backoff = BackoffConfig {
                // samod's first attempt can fail before the dialer is registered
                // (without taking the transport): allow a few quick retries.
                initial_delay: std::time::Duration::from_millis(10),
                max_delay: std::time::Duration::from_millis(200),
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
    }

    /// Finds the text document over a link, waits for the article, and
    /// returns the document's handle.
    fn fetch(&self, text_doc: &str, article: &str) -> samod::DocHandle {
        let id: DocumentId = text_doc.parse().unwrap();
        let handle = self.runtime.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
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
        eventually(
            "the article to reach the rogue",
            Duration::from_secs(60),
            || {
                handle.with_document(|d| {
                    let (_, articles) = d.get(ROOT, "articles").ok()??;
                    let (_, a) = d.get(&articles, article).ok()??;
                    let (_, body) = d.get(&a, "body").ok()??;
                    (d.object_type(&body).ok()? == ObjType::Text).then_some(())
                })
            },
        );
        handle
    }

    /// Types into the article's body with its own actor, whatever the rules
    /// say; returns the change.
    fn type_into(&self, handle: &samod::DocHandle, article: &str, insert: &str) -> Vec<u8> {
        handle.with_document(|d| {
            d.set_actor(self.actor.clone());
            let mut tx = d.transaction();
            let (_, articles) = tx.get(ROOT, "articles").unwrap().unwrap();
            let (_, a) = tx.get(&articles, article).unwrap().unwrap();
            let (_, body) = tx.get(&a, "body").unwrap().unwrap();
            tx.splice_text(&body, 0, 0, insert).unwrap();
            tx.commit();
            d.get_last_local_change().unwrap().raw_bytes().to_vec()
        })
    }
}

/// The article's body in a rogue's copy of the text.
fn rogue_body(text: &samod::DocHandle, article: &str) -> Option<String> {
    text.with_document(|d| {
        let (_, articles) = d.get(ROOT, "articles").ok()??;
        let (_, a) = d.get(&articles, article).ok()??;
        let (_, body) = d.get(&a, "body").ok()??;
        d.text(&body).ok()
    })
}

struct Phone {
    _client: Arc<KladClient>,
    process: Arc<KladProcess>,
    _dir: tempfile::TempDir,
}

fn join(server: &Server, invitation: &Value) -> Phone {
    let dir = tempfile::tempdir().unwrap();
    let client = KladClient::open(dir.path().to_string_lossy().into_owned()).unwrap();
    let process = client
        .join(
            server.url(),
            invitation["token"].as_str().unwrap().to_owned(),
            30_000,
        )
        .unwrap();
    Phone {
        _client: client,
        process,
        _dir: dir,
    }
}

const BODY: &str = "Honden aan de lijn in het park.";

struct Setup {
    server: Server,
    anna: Phone,
    process: String,
    text_doc: String,
    article: String,
}

fn setup() -> Setup {
    let server = Server::start();
    let (process, text_doc) = server.create_process("Honden");
    let anna = join(&server, &server.invite(&process, "Anna", "drafter"));
    let article = anna
        .process
        .create_article(None, "Honden".into(), BODY.into())
        .unwrap();
    // Joining connected the phone, which cached the server's key.
    eventually("Anna's phone to be online", Duration::from_secs(30), || {
        anna.process.sync_status().online.then_some(())
    });
    Setup {
        server,
        anna,
        process,
        text_doc,
        article,
    }
}

fn body(p: &KladProcess) -> String {
    p.articles().unwrap()[0].body.clone()
}

#[test]
fn an_officials_text_edit_over_a_peer_link_is_refused_and_a_drafters_is_not() {
    let s = setup();
    let olga = s.server.invite(&s.process, "Olga", "official");
    let bram = s.server.invite(&s.process, "Bram", "drafter");
    // Anna's phone learns about the new members from the server.
    eventually(
        "Anna's phone to know Olga and Bram",
        Duration::from_secs(30),
        || (s.anna.process.members().ok()?.len() == 3).then_some(()),
    );
    let token = |m: &Value| m["token"].as_str().unwrap().to_owned();
    // Each "phone" registers its device with the server, as a phone does when
    // it connects; Anna's phone learns them (a phone refuses changes from
    // devices it does not know, since it cannot register them itself).
    let olga_phone = Rogue::new(&format!("{}:rogue", olga["member_id"].as_str().unwrap()));
    let bram_phone = Rogue::new(&format!("{}:rogue", bram["member_id"].as_str().unwrap()));
    s.server.register_device(&token(&olga), &olga_phone.actor);
    s.server.register_device(&token(&bram), &bram_phone.actor);
    eventually(
        "Anna's phone to know Olga's and Bram's devices",
        Duration::from_secs(30),
        || {
            let members = s.anna.process.members().ok()?;
            let devices: usize = members.iter().map(|m| m.devices.len()).sum();
            (devices >= 3).then_some(())
        },
    );

    // Olga's "phone" reads the text over a link (an official may), then,
    // offline, writes into it with a tampered app, and links again.
    let (link, _, from_victim) = olga_phone.link(&s.anna.process, &token(&olga));
    olga_phone.connect(link.clone(), from_victim);
    eventually("the link to be up", Duration::from_secs(30), || {
        (link.status().state == PeerLinkState::Connected).then_some(())
    });
    assert_eq!(link.status().peer.unwrap().name, "Olga");
    let text = olga_phone.fetch(&s.text_doc, &s.article);
    link.end();
    // Anna's phone told Olga's it takes no changes to the text from her (the
    // sync protocol's read-only flag); a tampered app sends them anyway.
    let change = olga_phone.type_into(&text, &s.article, "Alle ");
    *olga_phone.tamper.lock().unwrap() = Some((s.text_doc.clone(), vec![change]));

    let (link, _, from_victim) = olga_phone.link(&s.anna.process, &token(&olga));
    olga_phone.connect(link.clone(), from_victim);
    let status = eventually(
        "the official's edit to be refused",
        Duration::from_secs(30),
        || {
            let st = link.status();
            (st.refused_changes > 0).then_some(st)
        },
    );
    assert_eq!(
        status.last_refusal.as_deref(),
        Some("Changes from Olga's phone were refused: only drafters change the text.")
    );
    assert_eq!(status.state, PeerLinkState::Connected, "reading may go on");
    // Anna types on: her change reaches Olga, Olga's stays out of Anna's text.
    s.anna
        .process
        .edit_body(s.article.clone(), 0, 0, "Alle ".into())
        .unwrap();
    s.anna.process.commit().unwrap();
    eventually(
        "Anna's edit to reach Olga's phone",
        Duration::from_secs(30),
        || (rogue_body(&text, &s.article)?.matches("Alle ").count() == 2).then_some(()),
    );
    assert_eq!(
        body(&s.anna.process),
        format!("Alle {BODY}"),
        "one 'Alle ', Anna's"
    );
    link.end();

    // The same tampered app with a drafter's invitation is an ordinary edit:
    // it arrives, so the refusal above is the rules at work, not a broken pipe.
    let (link, _, from_victim) = bram_phone.link(&s.anna.process, &token(&bram));
    bram_phone.connect(link.clone(), from_victim);
    let text = bram_phone.fetch(&s.text_doc, &s.article);
    eventually(
        "Bram's phone to have Anna's text",
        Duration::from_secs(30),
        || (rogue_body(&text, &s.article)? == format!("Alle {BODY}")).then_some(()),
    );
    link.end();
    bram_phone.type_into(&text, &s.article, "Echt ");
    let (link, _, from_victim) = bram_phone.link(&s.anna.process, &token(&bram));
    bram_phone.connect(link.clone(), from_victim);
    eventually(
        "the drafter's edit to arrive",
        Duration::from_secs(30),
        || (body(&s.anna.process) == format!("Echt Alle {BODY}")).then_some(()),
    );
    assert_eq!(link.status().refused_changes, 0);
}

#[test]
fn a_token_signed_by_another_key_is_refused_before_anything_syncs() {
    use pasetors::claims::Claims;
    use pasetors::keys::{AsymmetricKeyPair, Generate};
    use pasetors::version4::V4;

    let s = setup();
    let bram = s.server.invite(&s.process, "Bram", "drafter");
    eventually("Anna's phone to know Bram", Duration::from_secs(30), || {
        (s.anna.process.members().ok()?.len() == 2).then_some(())
    });
    // A token with genuine claims for Bram, signed with somebody else's key.
    let forger = AsymmetricKeyPair::<V4>::generate().unwrap();
    let mut claims = Claims::new().unwrap();
    claims.subject(bram["member_id"].as_str().unwrap()).unwrap();
    claims.add_additional("pid", s.process.as_str()).unwrap();
    claims.add_additional("role", "drafter").unwrap();
    let forged = pasetors::public::sign(
        &forger.secret,
        &claims,
        None,
        Some(klad_sync::token::IMPLICIT_ASSERTION),
    )
    .unwrap();
    let peer = format!("{}:forged", bram["member_id"].as_str().unwrap());
    let rogue = Rogue::new(&peer);
    let (link, to_rogue, from_victim) = rogue.link(&s.anna.process, &forged);
    eventually("the rogue to be told", Duration::from_secs(30), || {
        to_rogue.closed.lock().unwrap().clone()
    });
    let st = link.status();
    assert_eq!(st.state, PeerLinkState::Closed);
    assert_eq!(
        st.closed_reason.as_deref(),
        Some(
            "The other phone's invitation was not signed by this process's server (it is forged or altered), so the link was refused."
        )
    );
    assert!(st.peer.is_none());
    assert_eq!(
        to_rogue.closed.lock().unwrap().as_deref(),
        st.closed_reason.as_deref()
    );
    // The rogue got Anna's hello and the refusal, and nothing else.
    let frames: Vec<Vec<u8>> = from_victim.try_iter().collect();
    assert_eq!(frames.len(), 2, "hello and refusal only");
    assert!(matches!(
        wire::parse_link(&frames[1]),
        Ok(wire::LinkFrame::Refused(r)) if r.contains("not signed by this process's server")
    ));
    assert!(
        link.receive(vec![1, 2, 3]).is_err(),
        "a refused link takes nothing more"
    );
}
