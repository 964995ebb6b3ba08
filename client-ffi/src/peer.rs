//! Phone-to-phone sync without a server: a peer link over any byte transport
//! the app has (Bluetooth, local Wi-Fi, a cable), with the same checks the
//! server makes.
//!
//! A link carries whole frames, in order, both ways. It opens with a
//! handshake of Klad's own: each side sends a `klad-hello` frame with its
//! member token and the peer id it will use. Each side verifies the other's
//! token with the server's public key (cached when this phone connected to the
//! server), checks that it names the same process and a member this phone
//! knows, and then runs the automerge-repo protocol (samod) over the link, its
//! peer id bound to the verified member. Every frame the other phone sends is
//! checked on this phone's own copy of the process document: every change is checked for its author (klad-sync's
//! [`authorship`]: the linked member's own devices, or another member's device
//! with that device's signature) and for what its author may write; refused
//! changes (and what depends on them) are removed before samod sees them,
//! counted, and reported in the link's status. A phone never accepts from a
//! peer what the server would refuse. Signatures of relayed changes are kept,
//! so this phone can pass them on to the server or another phone.
//!
//! The side whose peer id sorts first dials, the other accepts, so the app
//! does not need to decide who starts.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use automerge::ChangeHash;
use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt, stream};
use klad_core::{MemberId, ProcessInfo};
use klad_sync::access::{self, Access, SERVER_PEER_ID};
use klad_sync::authorship::{self, Refusal, Registry, Sender, Signatures};
use klad_sync::token::{PublicKey, TokenError};
use klad_sync::wire::{self, Hello, LinkFrame};
use samod::{
    AcceptorHandle, BackoffConfig, DialError, Dialer, DialerHandle, DocumentId, PeerId,
    ShareConfig, Transport,
};
use tokio::sync::watch;

use crate::client::lock;
use crate::error::{KladError, Result};
use crate::process::ProcessInner;
use crate::types::{Member, PeerLinkState, PeerLinkStatus};

/// Carries a peer link's frames to the other phone; implemented by the app.
/// Called from a background thread of the link, one call at a time, in order.
#[uniffi::export(with_foreign)]
pub trait PeerTransport: Send + Sync {
    /// Delivers one frame to the other phone, whole and in order (the other
    /// phone hands it to its link's `receive`).
    fn send(&self, frame: Vec<u8>);
    /// The link has ended, with a sentence saying why (refused, closed by the
    /// other phone, or closed here). No frame is sent after this.
    fn closed(&self, reason: String);
}

/// What this phone decides about every peer of one process's repo: the
/// server gets read-write (it enforces the rules itself), a phone on a
/// verified link gets what its member may do, anybody else nothing.
pub(crate) struct PeerGate {
    info: RwLock<Option<ProcessInfo>>,
    /// The same, indexed for the authorship check.
    registry: RwLock<Option<Arc<Registry>>>,
    /// Verified peers on open links: peer id → member and how many links
    /// (a phone may reconnect before its old link has been cleaned up).
    peers: Mutex<HashMap<String, (MemberId, usize)>>,
    generation: watch::Sender<u64>,
}

impl PeerGate {
    pub fn new(info: Option<ProcessInfo>) -> Arc<Self> {
        Arc::new(PeerGate {
            registry: RwLock::new(info.clone().map(|i| Arc::new(Registry::new(i)))),
            info: RwLock::new(info),
            peers: Mutex::new(HashMap::new()),
            generation: watch::Sender::new(0),
        })
    }

    /// Records the process document as it is now (members, phase).
    pub fn set_info(&self, info: ProcessInfo) {
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new(Registry::new(info.clone())));
        *self.info.write().unwrap_or_else(|e| e.into_inner()) = Some(info);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn info(&self) -> Option<ProcessInfo> {
        self.info.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The process document as it is now, indexed for the authorship check.
    pub fn registry(&self) -> Option<Arc<Registry>> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A link to `peer` (speaking for `member`) has been verified.
    fn add_peer(&self, peer: &str, member: MemberId) {
        lock(&self.peers)
            .entry(peer.to_owned())
            .and_modify(|(m, n)| {
                *m = member.clone();
                *n += 1;
            })
            .or_insert((member, 1));
        self.generation.send_modify(|g| *g += 1);
    }

    /// A link to `peer` has ended.
    fn remove_peer(&self, peer: &str) {
        {
            let mut peers = lock(&self.peers);
            if let Some((_, n)) = peers.get_mut(peer) {
                *n -= 1;
                if *n == 0 {
                    peers.remove(peer);
                }
            }
        }
        self.generation.send_modify(|g| *g += 1);
    }

    /// What `peer` may do with `doc` right now.
    pub fn access(&self, doc: &str, peer: &str) -> Access {
        if peer == SERVER_PEER_ID {
            return Access::ReadWrite;
        }
        let Some((member, _)) = lock(&self.peers).get(peer).cloned() else {
            return Access::None;
        };
        match self.info.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(info) => access::access(info, doc, &member),
            None => Access::None,
        }
    }

    fn decision(&self, doc: &str, peer: &str) -> ShareConfig {
        // Phones announce what a peer may read, so both sides start syncing.
        self.access(doc, peer).share_config(true)
    }
}

/// samod's share policy over the [`PeerGate`]: the current decision at once,
/// a new one whenever the process document or the set of links changes.
#[derive(Clone)]
pub(crate) struct GatePolicy(pub Arc<PeerGate>);

impl samod::SharePolicy for GatePolicy {
    fn share(
        &self,
        doc_id: DocumentId,
        peer_id: PeerId,
    ) -> impl Stream<Item = ShareConfig> + Send + 'static {
        let gate = self.0.clone();
        let (doc, peer) = (doc_id.to_string(), peer_id.to_string());
        let first = gate.decision(&doc, &peer);
        let rx = gate.generation.subscribe();
        stream::once(async move { first }).chain(stream::unfold(
            (rx, gate, doc, peer),
            |(mut rx, gate, doc, peer)| async move {
                rx.changed().await.ok()?;
                let c = gate.decision(&doc, &peer);
                Some((c, (rx, gate, doc, peer)))
            },
        ))
    }
}

/// What a link reports, besides its frames.
enum Out {
    Frame(Vec<u8>),
    Closed(String),
}

struct LinkState {
    state: PeerLinkState,
    peer: Option<Member>,
    refused_changes: u32,
    last_refusal: Option<String>,
    closed_reason: Option<String>,
}

/// A sync link with another phone, over the app's own transport. Safe to use
/// from any thread. Hand every frame the other phone sends to [`Self::receive`].
#[derive(uniffi::Object)]
pub struct KladPeerLink {
    inner: Arc<LinkInner>,
}

struct LinkInner {
    id: u64,
    inbound: Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>,
    out: Mutex<Option<std::sync::mpsc::Sender<Out>>>,
    state: Mutex<LinkState>,
}

static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

impl LinkInner {
    fn send(&self, frame: Vec<u8>) {
        if let Some(out) = lock(&self.out).as_ref() {
            let _ = out.send(Out::Frame(frame));
        }
    }

    /// Ends the link (once): tells the app why and stops taking frames.
    fn finish(&self, reason: String) {
        {
            let mut st = lock(&self.state);
            if st.state == PeerLinkState::Closed {
                return;
            }
            st.state = PeerLinkState::Closed;
            st.closed_reason = Some(reason.clone());
        }
        lock(&self.inbound).take();
        if let Some(out) = lock(&self.out).take() {
            let _ = out.send(Out::Closed(reason));
        }
    }

    /// Refuses the link: tells the other phone why, then ends it here.
    fn refuse(&self, here: String, there: &str) {
        self.send(wire::encode_refused(there));
        self.finish(here);
    }
}

/// The other phone, as its verified hello says.
struct VerifiedPeer {
    peer_id: String,
    member: Member,
    member_id: MemberId,
}

/// A refusal: the sentence for this phone and the one sent to the other phone.
struct LinkRefusal {
    here: String,
    there: String,
}

fn refusal(here: impl Into<String>, there: impl Into<String>) -> LinkRefusal {
    LinkRefusal {
        here: here.into(),
        there: there.into(),
    }
}

/// Checks the other phone's hello against this phone's process.
fn verify_hello(
    frame: &[u8],
    key: Option<&PublicKey>,
    info: Option<&ProcessInfo>,
    own_peer_id: &str,
) -> std::result::Result<VerifiedPeer, LinkRefusal> {
    let hello: Hello = match wire::parse_link(frame) {
        Ok(LinkFrame::Hello(h)) => h,
        Ok(LinkFrame::Refused(reason)) => return Err(refusal(reason, "")),
        _ => {
            return Err(refusal(
                "The other side did not open the link with a Klad handshake; it is not a Klad phone, or runs an incompatible version.",
                "The other phone refused the link: it expected a Klad handshake first. Update the app and try again.",
            ));
        }
    };
    let (Some(key), Some(info)) = (key, info) else {
        return Err(refusal(
            "This phone cannot check the other phone's invitation yet: it needs the server's key and the member list, which it gets by connecting to the server once. Connect, then try the link again.",
            "The other phone refused the link: it cannot check invitations until it has connected to the server once. Connect it, then try again.",
        ));
    };
    let claims = key.verify(&hello.token).map_err(|e| match e {
        TokenError::BadSignature => refusal(
            "The other phone's invitation was not signed by this process's server (it is forged or altered), so the link was refused.",
            "The other phone refused the link: your invitation was not signed by this process's server.",
        ),
        TokenError::Expired => refusal(
            "The other phone's invitation has expired, so the link was refused; its owner needs a new invitation from a facilitator.",
            "The other phone refused the link: your invitation has expired. Ask a facilitator for a new one.",
        ),
        _ => refusal(
            "The other phone did not present a valid Klad invitation, so the link was refused.",
            "The other phone refused the link: your invitation is not a valid Klad token.",
        ),
    })?;
    if claims.process != info.id {
        return Err(refusal(
            "The other phone has joined a different process; a link only syncs phones of the same process.",
            "The other phone refused the link: it has joined a different process.",
        ));
    }
    if access::member_of_peer(&hello.peer_id) != claims.member {
        return Err(refusal(
            "The other phone's peer id does not belong to the member its invitation names, so the link was refused.",
            "The other phone refused the link: the peer id does not match your invitation.",
        ));
    }
    if hello.peer_id == own_peer_id {
        return Err(refusal(
            "The other end of the link is this phone itself.",
            "The other end of the link is this phone itself.",
        ));
    }
    let Some(m) = info.members.get(&claims.member) else {
        return Err(refusal(
            "This phone does not know the member the other phone's invitation names; connect to the server once to update the member list, then try again.",
            "The other phone refused the link: it does not know you as a member yet. It must connect to the server once before it can link with you.",
        ));
    };
    Ok(VerifiedPeer {
        peer_id: hello.peer_id,
        member: Member {
            id: m.id.to_string(),
            name: m.name.clone(),
            role: m.role.into(),
            devices: m.devices.clone(),
        },
        member_id: claims.member,
    })
}

/// The sentence for changes refused from a peer.
fn refused_sentence(peer: &Member, registry: Option<&Registry>, refusal: &Refusal) -> String {
    let name = |m: &MemberId| registry.map_or_else(|| m.to_string(), |r| r.name(m));
    let why = match refusal {
        Refusal::NotAllowed {
            access: Access::ReadOnly(r),
            author,
        } if author.as_str() == peer.id => r.explanation().to_owned(),
        Refusal::NotAllowed {
            access: Access::ReadOnly(r),
            author,
        } => format!("they were written by {}, and {}", name(author), r.explanation()),
        Refusal::NotAllowed { .. } => "that document is not part of this process".into(),
        Refusal::Unsigned { owner } => format!(
            "they were written on {}'s device and came without {}'s signature",
            name(owner),
            name(owner)
        ),
        Refusal::BadSignature { owner } => format!(
            "they were written on {}'s device but carry a signature that is not theirs",
            name(owner)
        ),
        Refusal::UnknownDevice => {
            "they were written on a device this phone does not know yet (connect to the server to update the member list)".into()
        }
        Refusal::DependsOnRefused => "they build on other refused changes".into(),
    };
    format!("Changes from {}'s phone were refused: {why}.", peer.name)
}

/// Hands samod the one transport a link has; a reconnect is impossible (the
/// app opens a new link instead).
struct LinkDialer {
    url: url::Url,
    transport: Mutex<Option<Transport>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the peer link has closed; open a new one")]
struct LinkClosed;

impl Dialer for LinkDialer {
    type Error = LinkClosed;

    fn url(&self) -> url::Url {
        self.url.clone()
    }

    fn connect(&self) -> BoxFuture<'static, std::result::Result<Transport, DialError<LinkClosed>>> {
        let t = lock(&self.transport).take();
        Box::pin(async move { t.ok_or(DialError::PermanentFailure(LinkClosed)) })
    }
}

/// The samod side of a verified link: dialed or accepted.
enum Connection {
    Dialed(DialerHandle<LinkClosed>),
    Accepted(AcceptorHandle),
}

impl Connection {
    fn close(&self) {
        match self {
            Connection::Dialed(d) => d.close(),
            Connection::Accepted(a) => a.close(),
        }
    }
}

impl ProcessInner {
    /// Opens a peer link over `transport`: sends this phone's hello and
    /// starts waiting for the other phone's.
    pub(crate) fn open_peer_link(
        self: &Arc<Self>,
        transport: Arc<dyn PeerTransport>,
    ) -> Result<Arc<KladPeerLink>> {
        if self.is_stopped() {
            return Err(KladError::network(
                "This process has been closed on this phone; open the client again to link.",
            ));
        }
        let (out_tx, out_rx) = std::sync::mpsc::channel::<Out>();
        let (in_tx, in_rx) = mpsc::unbounded::<Vec<u8>>();
        let inner = Arc::new(LinkInner {
            id: NEXT_LINK.fetch_add(1, Ordering::Relaxed),
            inbound: Mutex::new(Some(in_tx)),
            out: Mutex::new(Some(out_tx)),
            state: Mutex::new(LinkState {
                state: PeerLinkState::Handshaking,
                peer: None,
                refused_changes: 0,
                last_refusal: None,
                closed_reason: None,
            }),
        });
        // The app's transport is called from one thread, in order, so a slow
        // radio never blocks sync and frames never overtake each other.
        std::thread::Builder::new()
            .name(format!("klad-link-{}", inner.id))
            .spawn(move || {
                for out in out_rx {
                    match out {
                        Out::Frame(f) => transport.send(f),
                        Out::Closed(reason) => {
                            transport.closed(reason);
                            break;
                        }
                    }
                }
            })
            .map_err(|e| {
                KladError::storage(format!(
                    "The peer link could not be started ({e}). Close other links or restart the app."
                ))
            })?;
        inner.send(wire::encode_hello(&Hello {
            token: self.token.clone(),
            peer_id: self.peer_id(),
        }));
        let me = self.clone();
        let link = inner.clone();
        self.shared
            .runtime
            .spawn(async move { me.run_link(link, in_rx).await });
        Ok(Arc::new(KladPeerLink { inner }))
    }

    async fn run_link(
        self: Arc<Self>,
        link: Arc<LinkInner>,
        mut frames: mpsc::UnboundedReceiver<Vec<u8>>,
    ) {
        let Some(first) = frames.next().await else {
            link.finish("The link was closed before the other phone introduced itself.".into());
            return;
        };
        let own_peer_id = self.peer_id();
        let key = self.server_key();
        let info = self.gate.info();
        let peer = match verify_hello(&first, key.as_ref(), info.as_ref(), &own_peer_id) {
            Ok(p) => p,
            Err(r) if r.there.is_empty() => return link.finish(r.here),
            Err(r) => return link.refuse(r.here, &r.there),
        };
        {
            let mut st = lock(&link.state);
            st.state = PeerLinkState::Connected;
            st.peer = Some(peer.member.clone());
        }
        self.gate.add_peer(&peer.peer_id, peer.member_id.clone());

        // samod's transport: checked frames in, its frames out to the app.
        let (to_samod, samod_in) = mpsc::unbounded::<std::result::Result<Vec<u8>, LinkClosed>>();
        let (samod_out, mut from_samod) = mpsc::unbounded::<Vec<u8>>();
        let transport = Transport::new(samod_in, samod_out)
            .with_expected_peer_id(PeerId::from(peer.peer_id.as_str()));
        let Ok(url) = url::Url::parse(&format!("klad-peer://link-{}", link.id)) else {
            return link.finish("The peer link could not be started.".into());
        };
        let connection = {
            let _guard = self.shared.runtime.enter();
            if own_peer_id < peer.peer_id {
                let dialer = Arc::new(LinkDialer {
                    url,
                    transport: Mutex::new(Some(transport)),
                });
                let backoff = BackoffConfig {
                    // samod's first attempt can fail before the dialer is registered
                    // (without taking the transport): allow a few quick retries.
                    initial_delay: std::time::Duration::from_millis(10),
                    max_delay: std::time::Duration::from_millis(200),
                    max_retries: Some(8),
                };
                self.repo.dial(backoff, dialer).map(Connection::Dialed)
            } else {
                self.repo.make_acceptor(url).and_then(|a| {
                    a.accept(transport)?;
                    Ok(Connection::Accepted(a))
                })
            }
        };
        let Ok(connection) = connection else {
            self.gate.remove_peer(&peer.peer_id);
            return link.finish("This process has been closed on this phone.".into());
        };
        {
            let link = link.clone();
            let shared = self.shared.clone();
            self.shared.runtime.spawn(async move {
                while let Some(f) = from_samod.next().await {
                    for f in shared.with_signatures(f) {
                        link.send(f);
                    }
                }
                link.finish("The link's sync connection ended.".into());
            });
        }

        let mut signatures = Signatures::default();
        while let Some(frame) = frames.next().await {
            match wire::parse_link(&frame) {
                Ok(LinkFrame::Sync) => {}
                Ok(LinkFrame::Refused(reason)) => {
                    link.finish(reason);
                    break;
                }
                Ok(LinkFrame::Hello(_)) => {
                    link.refuse(
                        "The other phone sent a second handshake; the link was closed.".into(),
                        "The other phone closed the link: a second handshake is not allowed.",
                    );
                    break;
                }
                Err(e) => {
                    link.refuse(
                        format!("The other phone sent a frame that is not Klad sync data ({e}); the link was closed."),
                        "The other phone closed the link: it received a frame that is not Klad sync data.",
                    );
                    break;
                }
            }
            let forward = match self.check_link_frame(&frame, &peer, &mut signatures) {
                Ok(Some(f)) => f,
                Ok(None) => continue,
                Err(e) => {
                    link.refuse(
                        format!("The other phone sent sync data this phone cannot read ({e}); the link was closed."),
                        "The other phone closed the link: it received sync data it cannot read.",
                    );
                    break;
                }
            };
            if let Some((n, sentence)) = forward.1 {
                let mut st = lock(&link.state);
                st.refused_changes = st.refused_changes.saturating_add(n as u32);
                st.last_refusal = Some(sentence);
            }
            let forward = forward.0;
            if to_samod.unbounded_send(Ok(forward)).is_err() {
                break;
            }
        }
        link.finish("The link was closed.".into());
        drop(to_samod);
        connection.close();
        self.gate.remove_peer(&peer.peer_id);
    }
}

/// A frame to hand to samod, and (how many changes, why) when some of its
/// changes were refused.
type Checked = (Vec<u8>, Option<(usize, String)>);

impl ProcessInner {
    /// Checks one sync frame from a linked phone: signatures are kept for the
    /// changes they sign (`Ok(None)`: nothing to hand to samod); every change
    /// is checked for its author and what they may write, with this phone's
    /// copy of the process document. Refused changes are removed.
    fn check_link_frame(
        &self,
        frame: &[u8],
        peer: &VerifiedPeer,
        signatures: &mut Signatures,
    ) -> std::result::Result<Option<Checked>, wire::FrameError> {
        let parsed = wire::parse(frame)?;
        if authorship::is_signatures(&parsed) {
            signatures.add(authorship::parse_signatures(frame)?);
            return Ok(None);
        }
        let Some(inspected) = authorship::inspect(frame)? else {
            return Ok(Some((frame.to_vec(), None)));
        };
        let hashes = inspected.hashes();
        let known: HashSet<ChangeHash> = lock(&self.handles)
            .get(inspected.document())
            .cloned()
            .map(|h| h.with_document(|d| inspected.known_in(d)))
            .unwrap_or_default();
        let registry = self.gate.registry();
        let sender = Sender {
            member: &peer.member_id,
            // Only the server writes the process document.
            may_register: false,
        };
        let judged = inspected.judge(registry.as_deref(), sender, signatures, &known);
        // Keep the valid signatures of the changes this phone accepted (the
        // linked phone's own as well as those it relayed), so this phone can
        // pass them on: to the server they are other members' changes.
        let accepted: HashSet<ChangeHash> = judged.accepted.iter().map(|(h, _)| *h).collect();
        let relayable: Vec<_> = inspected
            .changes()
            .iter()
            .filter(|c| accepted.contains(&c.hash()))
            .filter_map(|c| {
                let hash = c.hash();
                let sig = signatures.get(&hash)?;
                let key = registry
                    .as_deref()?
                    .device(&c.actor_id().to_hex_string())?
                    .key?;
                authorship::verify(&key, &hash, sig).then_some((hash, *sig))
            })
            .collect();
        self.shared.keep_signatures(&relayable);
        signatures.used(hashes);
        let Some((_, _, first)) = judged.refused.first() else {
            return Ok(Some((frame.to_vec(), None)));
        };
        let sentence = refused_sentence(&peer.member, registry.as_deref(), first);
        let keep: HashSet<ChangeHash> = judged
            .accepted
            .iter()
            .map(|(h, _)| *h)
            .chain(known)
            .collect();
        let forward = inspected.retain(frame, &keep)?;
        Ok(Some((forward, Some((judged.refused.len(), sentence)))))
    }
}

#[uniffi::export]
impl KladPeerLink {
    /// Hands the link one frame the other phone sent (in order, whole).
    /// Returns at once; the frame is checked and applied in the background.
    pub fn receive(&self, frame: Vec<u8>) -> Result<()> {
        match lock(&self.inner.inbound).as_ref() {
            Some(tx) if tx.unbounded_send(frame).is_ok() => Ok(()),
            _ => Err(KladError::network(
                "This peer link has closed; open a new link to sync with the other phone.",
            )),
        }
    }

    /// Where the link stands: handshaking, connected (with whom), or closed
    /// (why), and how many changes from the other phone were refused.
    pub fn status(&self) -> PeerLinkStatus {
        let st = lock(&self.inner.state);
        PeerLinkStatus {
            state: st.state,
            peer: st.peer.clone(),
            refused_changes: st.refused_changes,
            last_refusal: st.last_refusal.clone(),
            closed_reason: st.closed_reason.clone(),
        }
    }

    /// Ends the link: the other phone is told, and the transport's `closed`
    /// is called. What was synced stays. (Not `close`: in Kotlin that name
    /// frees the object itself.)
    pub fn end(&self) {
        self.inner
            .send(wire::encode_refused("The other phone closed the link."));
        self.inner
            .finish("The link was closed on this phone.".into());
    }
}
