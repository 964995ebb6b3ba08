//! One client's websocket, between axum and samod.
//!
//! The server builds samod's `Transport` itself (instead of
//! `Transport::from_axum`) so that it can:
//! - refuse bad frames with a websocket close frame that says why
//!   (oversized, text, not an automerge-repo message, bad document id);
//! - check every change of every inbound sync message for its author
//!   (klad-sync's [`authorship`]): close the connection on a change written
//!   in another member's name, register a new device, keep signed relays,
//!   and remove what the author may not write (counted and logged);
//! - say so when changes it passed on could not be applied (a duplicate
//!   sequence number, dependencies that never came), instead of stalling;
//! - hold back every outgoing sync message until what it announces is on
//!   disk (the durability barrier, see [`crate::durability`]);
//! - count messages and bytes.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use automerge::{Automerge, ChangeHash, ReadDoc};
use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, stream};
use klad_core::MemberId;
use klad_core::store::SledStore;
use samod::{DocHandle, DocumentId, PeerId, Repo, Transport};

use klad_sync::authorship::{self, Judged, Refusal, Registry, Sender, Signatures};
use klad_sync::wire;

use crate::directory::Directory;
use crate::durability::Durability;
use crate::facilitation::Facilitation;
use crate::metrics::Metrics;
use crate::repos::Lease;

/// What every connection shares.
pub struct ConnectionShared {
    /// The membership index.
    pub directory: Arc<Directory>,
    /// The durability tracker.
    pub durability: Arc<Durability>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Largest accepted frame, in bytes.
    pub max_message_bytes: usize,
    /// Set when the server is shutting down.
    pub shutting_down: AtomicBool,
    /// Registers the new devices the authorship check finds.
    pub facilitation: Arc<Facilitation<SledStore>>,
}

/// How long changes passed on to the sync engine may take to show up in
/// their document before the server says they could not be applied.
/// Generous: a change whose dependencies come in the next round trip is fine.
const APPLY_DEADLINE: Duration = Duration::from_secs(10);

/// Frames queued towards one client before samod has to wait.
const OUTBOUND_QUEUE: usize = 64;

enum Outgoing {
    Frame(Vec<u8>),
    Close(u16, String),
}

/// Why the server closes a connection: the close code, a metric label and
/// the sentence sent in the close frame.
fn refuse(reason: &'static str) -> (u16, &'static str) {
    match reason {
        "message_too_large" => (close_code::SIZE, reason),
        "text_frame" => (close_code::UNSUPPORTED, reason),
        "forged_author"
        | "bad_signature"
        | "duplicate_seq"
        | "missing_dependencies"
        | "not_applied"
        | "device_not_registered" => (close_code::POLICY, reason),
        _ => (close_code::INVALID, reason),
    }
}

/// How long the server keeps a socket open after its close frame, reading
/// and discarding what the client still sends, until the client's own close
/// arrives. Dropping a socket with unread data resets the connection, and the
/// client would never read the close frame's sentence.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Reads and discards frames after the server's close frame, until the
/// client's close arrives or [`CLOSE_LINGER`] has passed.
async fn drain(ws_rx: &mut futures::stream::SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(m)) = ws_rx.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// What a connection keeps between frames for the authorship check.
struct Checker {
    repo: Repo,
    /// Handles of the documents this connection has sent changes to.
    handles: HashMap<String, DocHandle>,
    /// Signatures sent ahead of the changes they sign.
    signatures: Signatures,
}

/// What to do with one inbound frame.
enum Verdict {
    /// Hand these bytes to samod; `applied` names changes to watch for.
    Forward {
        bytes: Vec<u8>,
        applied: Option<(String, Vec<Sent>)>,
    },
    /// The frame was for the server itself (signatures); nothing to forward.
    Consumed,
    /// Close the connection: label and sentence.
    Close(&'static str, String),
}

/// Runs one authenticated connection until it ends, on the repo of its
/// process (`lease`, held until the connection has closed).
pub async fn run(
    shared: Arc<ConnectionShared>,
    lease: Lease,
    socket: WebSocket,
    member: MemberId,
    peer_id: String,
) {
    let (mut ws_tx, ws_rx) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(OUTBOUND_QUEUE);
    // Closes decided later (after the apply deadline): a channel of their own,
    // so a pending check never keeps the connection (and its lease) alive.
    let (late_tx, mut late_rx) = mpsc::unbounded::<Outgoing>();
    let metrics = shared.metrics.clone();
    metrics.connection_opened();
    tracing::info!(member = %member, peer = %peer_id, "connection opened");

    // Inbound: check every frame, then hand its bytes to samod.
    let inbound = {
        let shared = shared.clone();
        let control = out_tx.clone();
        let member = member.clone();
        let late = late_tx;
        let checker = Checker {
            repo: lease.repo().clone(),
            handles: HashMap::new(),
            signatures: Signatures::default(),
        };
        stream::unfold(
            (ws_rx, false, checker),
            move |(mut ws_rx, done, mut checker)| {
                let shared = shared.clone();
                let mut control = control.clone();
                let member = member.clone();
                let late = late.clone();
                async move {
                    if done {
                        return None;
                    }
                    loop {
                        let msg = match ws_rx.next().await? {
                            Ok(m) => m,
                            Err(e) => {
                                // axum's own limit (a safety net above ours) or a broken socket.
                                let text = e.to_string();
                                let too_large = text.contains("too long") || text.contains("Space limit");
                                if !too_large {
                                    // A broken or reset socket: nobody to tell.
                                    shared.metrics.connection_closed_by_server("transport_error");
                                    tracing::info!(member = %member, "connection lost: {text}");
                                    return None;
                                }
                                let sentence = format!(
                                    "A message was larger than this server accepts ({} bytes). Send changes in smaller batches.",
                                    shared.max_message_bytes
                                );
                                close(&shared, &mut control, &member, "message_too_large", sentence).await;
                                // The stream is unusable after its error, so the rest of
                                // the frame cannot be drained: keep the socket open a
                                // moment, so the close frame is read before the socket
                                // goes (closing with unread data resets the connection).
                                tokio::time::sleep(CLOSE_LINGER).await;
                                return None;
                            }
                        };
                        let bytes = match msg {
                            Message::Binary(b) => b,
                            Message::Text(_) => {
                                close(&shared, &mut control, &member, "text_frame",
                                    "Klad speaks the automerge-repo binary protocol; text frames are not accepted.".into()).await;
                                drain(&mut ws_rx).await;
                                return None;
                            }
                            Message::Close(_) => return None,
                            Message::Ping(_) | Message::Pong(_) => continue,
                        };
                        shared.metrics.message_in(bytes.len());
                        if bytes.len() > shared.max_message_bytes {
                            let sentence = format!(
                                "A message of {} bytes is larger than this server accepts ({} bytes). Send changes in smaller batches.",
                                bytes.len(),
                                shared.max_message_bytes
                            );
                            close(&shared, &mut control, &member, "message_too_large", sentence).await;
                            drain(&mut ws_rx).await;
                            return None;
                        }
                        match judge(&shared, &mut checker, &member, bytes.to_vec()).await {
                            Verdict::Forward { bytes, applied } => {
                                if let Some((document, sent)) = applied {
                                    watch_applied(shared.clone(), late, member.clone(), checker.repo.clone(), document, sent);
                                }
                                return Some((Ok::<Vec<u8>, std::io::Error>(bytes), (ws_rx, false, checker)));
                            }
                            Verdict::Consumed => continue,
                            Verdict::Close(label, sentence) => {
                                close(&shared, &mut control, &member, label, sentence).await;
                                drain(&mut ws_rx).await;
                                return None;
                            }
                        }
                    }
                }
            },
        )
        .boxed()
    };

    let sink = out_tx
        .clone()
        .with(|b: Vec<u8>| futures::future::ready(Ok::<_, mpsc::SendError>(Outgoing::Frame(b))));
    drop(out_tx);
    let transport =
        Transport::new(inbound, sink).with_expected_peer_id(PeerId::from(peer_id.as_str()));
    if lease.acceptor().accept(transport).is_err() {
        let _ = ws_tx
            .send(Message::Close(Some(CloseFrame {
                code: close_code::AWAY,
                reason: "The server is shutting down; reconnect in a moment.".into(),
            })))
            .await;
        metrics.connection_closed();
        return;
    }

    // Outbound: wait until what a frame announces is on disk, then send it.
    let mut closed_by_us = false;
    loop {
        let out = tokio::select! {
            o = out_rx.next() => match o {
                Some(o) => o,
                None => break,
            },
            Some(o) = late_rx.next() => o,
        };
        match out {
            Outgoing::Frame(bytes) => {
                if let Ok(frame) = wire::parse(&bytes)
                    && let (Some(doc), Ok(Some(msg))) = (&frame.document_id, frame.sync_message())
                {
                    shared.durability.wait_durable(doc, wire::heads(&msg)).await;
                }
                let n = bytes.len();
                if ws_tx.send(Message::Binary(bytes.into())).await.is_err() {
                    break;
                }
                metrics.message_out(n);
            }
            Outgoing::Close(code, reason) => {
                let _ = ws_tx
                    .send(Message::Close(Some(CloseFrame {
                        code,
                        reason: close_reason(reason).into(),
                    })))
                    .await;
                closed_by_us = true;
                break;
            }
        }
    }
    if !closed_by_us && shared.shutting_down.load(Ordering::Relaxed) {
        let _ = ws_tx
            .send(Message::Close(Some(CloseFrame {
                code: close_code::AWAY,
                reason: "The server is shutting down; reconnect in a moment.".into(),
            })))
            .await;
    }
    let _ = ws_tx.close().await;
    drop(lease);
    metrics.connection_closed();
    tracing::info!(member = %member, peer = %peer_id, "connection closed");
}

async fn close(
    shared: &ConnectionShared,
    control: &mut mpsc::Sender<Outgoing>,
    member: &MemberId,
    label: &'static str,
    sentence: String,
) {
    let (code, label) = refuse(label);
    shared.metrics.connection_closed_by_server(label);
    tracing::warn!(member = %member, reason = label, "closing connection: {sentence}");
    let _ = control.send(Outgoing::Close(code, sentence)).await;
}

fn frame_error(e: wire::FrameError) -> Verdict {
    Verdict::Close(e.label(), format!("Connection closed: {e}."))
}

/// Checks one inbound frame: signatures are kept for the changes they sign;
/// every change of a sync message is checked for its author
/// ([`authorship`]). A change in another member's name closes the
/// connection; new devices are registered to the member; changes the author
/// may not write are removed (with what depends on them), counted and logged,
/// so they never reach samod, its storage or any other peer.
async fn judge(
    shared: &ConnectionShared,
    checker: &mut Checker,
    member: &MemberId,
    bytes: Vec<u8>,
) -> Verdict {
    let frame = match wire::parse(&bytes) {
        Ok(f) => f,
        Err(e) => return frame_error(e),
    };
    if authorship::is_signatures(&frame) {
        return match authorship::parse_signatures(&bytes) {
            Ok(list) => {
                checker.signatures.add(list);
                Verdict::Consumed
            }
            Err(e) => frame_error(e),
        };
    }
    let inspected = match authorship::inspect(&bytes) {
        Ok(Some(i)) => i,
        Ok(None) => {
            return Verdict::Forward {
                bytes,
                applied: None,
            };
        }
        Err(e) => return frame_error(e),
    };
    let document = inspected.document().to_owned();
    let hashes = inspected.hashes();
    let registry = shared.directory.registry_of_doc(&document);
    let handle = match &registry {
        Some(_) => checker.handle(&document).await,
        None => None,
    };
    let known: HashSet<ChangeHash> = handle
        .as_ref()
        .map(|h| h.with_document(|d| inspected.known_in(d)))
        .unwrap_or_default();
    let sender = Sender {
        member,
        may_register: true,
    };
    let judged = inspected.judge(registry.as_deref(), sender, &checker.signatures, &known);
    checker.signatures.used(hashes.iter().copied());
    count_refusals(shared, member, &document, &judged);
    if let Some((hash, actor, refusal)) = judged.forgery() {
        let sentence = forgery_sentence(registry.as_deref(), refusal);
        tracing::warn!(
            member = %member,
            document = %document,
            change = %hash,
            actor = %actor,
            reason = refusal.label(),
            "refused a change written in another member's name; closing the connection"
        );
        return Verdict::Close(refusal.label(), sentence);
    }
    if let Some(registry) = &registry {
        for actor in &judged.new_devices {
            let pid = &registry.info().id;
            if let Err(e) = shared
                .facilitation
                .register_device(pid, member, actor, None)
                .await
            {
                tracing::warn!(member = %member, actor = %actor, error = %e, "could not register a device found in a change");
                return Verdict::Close(
                    "device_not_registered",
                    format!(
                        "A change in this message was written with a device id that could not be registered as yours ({e}). Nothing of it was stored. Write with a new device id of your own."
                    ),
                );
            }
        }
    }
    let accepted: HashSet<ChangeHash> = judged.accepted.iter().map(|(h, _)| *h).collect();
    let applied = handle.filter(|_| !accepted.is_empty()).map(|_| {
        let sent = inspected
            .changes()
            .iter()
            .filter(|c| accepted.contains(&c.hash()))
            .map(|c| Sent {
                hash: c.hash(),
                actor: c.actor_id().to_hex_string(),
                seq: c.seq(),
                deps: c.deps().to_vec(),
            })
            .collect();
        (document.clone(), sent)
    });
    if judged.refused.is_empty() {
        return Verdict::Forward { bytes, applied };
    }
    let keep: HashSet<ChangeHash> = accepted.into_iter().chain(known).collect();
    match inspected.retain(&bytes, &keep) {
        Ok(bytes) => Verdict::Forward { bytes, applied },
        Err(e) => frame_error(e),
    }
}

impl Checker {
    /// samod's handle of `document` (found once per connection).
    async fn handle(&mut self, document: &str) -> Option<DocHandle> {
        if let Some(h) = self.handles.get(document) {
            return Some(h.clone());
        }
        let id = DocumentId::from_str(document).ok()?;
        let h = self.repo.find(id).await.ok()??;
        self.handles.insert(document.to_owned(), h.clone());
        Some(h)
    }
}

/// Counts and logs the refused changes of one message, by reason.
fn count_refusals(shared: &ConnectionShared, member: &MemberId, document: &str, judged: &Judged) {
    let mut by_reason: HashMap<&'static str, usize> = HashMap::new();
    for (_, _, r) in &judged.refused {
        *by_reason.entry(r.label()).or_default() += 1;
    }
    for (reason, changes) in by_reason {
        shared.metrics.refused_changes(reason, changes);
        shared.metrics.refused_write(reason);
        tracing::warn!(
            member = %member,
            document = %document,
            reason,
            changes,
            "refused changes the member may not write"
        );
    }
}

/// The sentence a forger's connection is closed with (short: a close frame
/// carries at most 123 bytes of reason; the log has the details).
fn forgery_sentence(registry: Option<&Registry>, refusal: &Refusal) -> String {
    let (owner, how) = match refusal {
        Refusal::Unsigned { owner } => (owner, "without their signature"),
        Refusal::BadSignature { owner } => (owner, "with a false signature"),
        _ => return "Not stored: a change could not be attributed to its author.".into(),
    };
    let name = registry.map_or_else(|| owner.to_string(), |r| r.name(owner));
    format!(
        "Not stored: a change used the device id of {name} {how}. Write with your own device id."
    )
}

/// The longest close reason a websocket close frame can carry (125 bytes of
/// payload, two of them the code).
const MAX_CLOSE_REASON: usize = 123;

/// `sentence`, cut at a character boundary to fit a close frame.
fn close_reason(sentence: String) -> String {
    if sentence.len() <= MAX_CLOSE_REASON {
        return sentence;
    }
    let mut end = MAX_CLOSE_REASON - '…'.len_utf8();
    while !sentence.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &sentence[..end])
}

/// After `sent` went to samod: checks, once the deadline has passed, that
/// they are in the document; says so (metric, log, close with a sentence)
/// when some are not, instead of letting the document stall silently.
fn watch_applied(
    shared: Arc<ConnectionShared>,
    late: mpsc::UnboundedSender<Outgoing>,
    member: MemberId,
    repo: Repo,
    document: String,
    sent: Vec<Sent>,
) {
    tokio::spawn(async move {
        tokio::time::sleep(APPLY_DEADLINE).await;
        // Looked up again rather than held: a handle must not keep an idle
        // process from unloading. A stopped repo flushed what it had.
        let Ok(id) = DocumentId::from_str(&document) else {
            return;
        };
        let Ok(Ok(Some(handle))) = tokio::time::timeout(APPLY_DEADLINE, repo.find(id)).await else {
            return;
        };
        let problem = handle.with_document(|d| unapplied(d, &sent));
        if let Some((label, n, sentence)) = problem {
            shared.metrics.unapplied_changes(label, n);
            tracing::warn!(
                member = %member,
                document = %document,
                reason = label,
                changes = n,
                "changes a client sent could not be applied: {sentence}"
            );
            let (code, label) = refuse(label);
            shared.metrics.connection_closed_by_server(label);
            // The connection may have ended meanwhile; then nobody is told.
            let _ = late.unbounded_send(Outgoing::Close(code, sentence));
        }
    });
}

/// The first 12 characters of a hex id, for sentences.
fn short(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

/// One change passed on to samod, as far as the apply check needs it.
struct Sent {
    hash: ChangeHash,
    actor: String,
    seq: u64,
    deps: Vec<ChangeHash>,
}

/// Why some of `sent` are not in `doc`: (label, how many, sentence).
fn unapplied(doc: &Automerge, sent: &[Sent]) -> Option<(&'static str, usize, String)> {
    let missing: Vec<&Sent> = sent
        .iter()
        .filter(|c| doc.get_change_by_hash(&c.hash).is_none())
        .collect();
    let first = missing.first()?;
    let n = missing.len();
    // Only on this rare path: every change of the document, to find one of
    // the same device with the same sequence number.
    let by_seq: HashMap<(String, u64), ChangeHash> = doc
        .get_changes_meta(&[])
        .into_iter()
        .map(|m| ((m.actor.to_hex_string(), m.seq), m.hash))
        .collect();
    if let Some(c) = missing.iter().find(|c| {
        by_seq
            .get(&(c.actor.clone(), c.seq))
            .is_some_and(|h| *h != c.hash)
    }) {
        return Some((
            "duplicate_seq",
            n,
            format!(
                "Not stored: device {} used sequence number {} twice ({n} changes). Give this device a new actor id.",
                short(&c.actor),
                c.seq
            ),
        ));
    }
    let sent_hashes: HashSet<ChangeHash> = sent.iter().map(|c| c.hash).collect();
    if let Some(dep) = missing
        .iter()
        .flat_map(|c| c.deps.iter())
        .find(|d| doc.get_change_by_hash(d).is_none() && !sent_hashes.contains(d))
    {
        return Some((
            "missing_dependencies",
            n,
            format!(
                "Not stored: {n} changes depend on change {}, which never arrived. Reconnect to sync again.",
                short(&dep.to_string())
            ),
        ));
    }
    Some((
        "not_applied",
        n,
        format!(
            "Not stored: the server could not apply {n} changes (the first is {}). Reconnect to sync again.",
            short(&first.hash.to_string())
        ),
    ))
}
