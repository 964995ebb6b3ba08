//! One client's websocket, between axum and its process's hub
//! ([`crate::hubs`]).
//!
//! The connection does what needs the socket and nothing else: it refuses
//! text frames and frames over the size limit with a close frame that says
//! why, keeps `klad-signatures` frames for the gate (they sign changes to
//! come), hands every other frame to the hub, writes what the hub queues for
//! it, and closes with the code and sentence the hub gives. Protocol, access,
//! authorship and durability are the hub's and its gate's.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::{SinkExt, StreamExt};
use klad_core::MemberId;
use klad_sync::hub::CloseReason;
use klad_sync::{authorship, wire};
use tokio::sync::{mpsc, oneshot};

use crate::directory::Directory;
use crate::facilitation::Facilitation;
use crate::hubs::{Cmd, GOING_AWAY, Hubs, Lease, OUTBOUND_QUEUE, SHUTTING_DOWN, TOKEN_REVOKED};
use crate::metrics::Metrics;

/// What every connection shares.
pub struct ConnectionShared {
    /// The membership index.
    pub directory: Arc<Directory>,
    /// The process hubs.
    pub hubs: Arc<Hubs>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Largest accepted frame, in bytes.
    pub max_message_bytes: usize,
    /// Set when the server is shutting down.
    pub shutting_down: AtomicBool,
    /// Facilitation (device registration before the upgrade).
    pub facilitation: Arc<Facilitation>,
}

/// How long the server keeps a socket open after its close frame, reading
/// and discarding what the client still sends, until the client's own close
/// arrives. Dropping a socket with unread data resets the connection, and the
/// client would never read the close frame's sentence.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

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

/// What ended the connection's loop.
enum End {
    /// The client went away (or the socket broke).
    Gone,
    /// Close with this code and sentence; `drain`: read until the client's
    /// close (else wait a moment: the stream is unusable).
    Close {
        code: u16,
        sentence: String,
        drain: bool,
    },
}

/// Runs one authenticated connection until it ends, on its process's hub
/// (`lease`, held until the connection has closed). `generation` is its
/// token's (a revocation closes the connections of older ones).
pub async fn run(
    shared: Arc<ConnectionShared>,
    lease: Lease,
    socket: WebSocket,
    member: MemberId,
    generation: u64,
    peer_id: String,
) {
    let (mut ws_tx, mut ws_rx) = socket.split();
    let conn = shared.hubs.next_conn();
    let (frames_tx, mut frames) = mpsc::channel::<Vec<u8>>(OUTBOUND_QUEUE);
    let (close_tx, mut close_rx) = oneshot::channel::<(u16, String)>();
    let metrics = shared.metrics.clone();
    metrics.connection_opened();
    shared.facilitation.seen(&member);
    tracing::info!(member = %member, peer = %peer_id, "connection opened");
    let connected = lease
        .send(Cmd::Connect {
            conn,
            peer_id: peer_id.clone(),
            member: member.clone(),
            generation,
            frames: frames_tx,
            close: close_tx,
        })
        .await;
    let end = if connected.is_err() {
        End::Close {
            code: GOING_AWAY,
            sentence: SHUTTING_DOWN.into(),
            drain: false,
        }
    } else if shared.facilitation.is_revoked(&member, generation) {
        // Revoked between the token check and now: a revocation updates the
        // list before it tells the hub, so either this sees it or the hub's
        // `Revoked` comes after our `Connect` and closes us.
        let _ = lease.send(Cmd::Disconnect { conn }).await;
        shared.metrics.connection_closed_by_server("token_revoked");
        End::Close {
            code: klad_sync::hub::POLICY_VIOLATION,
            sentence: TOKEN_REVOKED.into(),
            drain: true,
        }
    } else {
        loop {
            tokio::select! {
                // A close decided by the hub goes out before anything queued.
                biased;
                closed = &mut close_rx => {
                    // Without a sender the hub is gone: the server stops.
                    let (code, sentence) = closed.unwrap_or((GOING_AWAY, SHUTTING_DOWN.into()));
                    break End::Close { code, sentence, drain: true };
                }
                Some(bytes) = frames.recv() => {
                    let n = bytes.len();
                    if ws_tx.send(Message::Binary(bytes.into())).await.is_err() {
                        break End::Gone;
                    }
                    metrics.message_out(n);
                }
                inbound = ws_rx.next() => {
                    let Some(inbound) = inbound else { break End::Gone };
                    match receive(&shared, &member, inbound) {
                        Ok(None) => {}
                        Ok(Some(bytes)) => {
                            let cmd = match signatures(&bytes) {
                                Some(Ok(list)) => Cmd::Signatures { conn, list },
                                Some(Err(e)) => {
                                    let why = CloseReason::BadFrame(e);
                                    shared.metrics.connection_closed_by_server(why.label());
                                    let _ = lease.send(Cmd::Disconnect { conn }).await;
                                    break End::Close { code: why.code(), sentence: why.sentence(), drain: true };
                                }
                                None => Cmd::Frame { conn, bytes },
                            };
                            if lease.send(cmd).await.is_err() {
                                break End::Close { code: GOING_AWAY, sentence: SHUTTING_DOWN.into(), drain: true };
                            }
                        }
                        Err(end) => {
                            // Closed by the connection itself: the hub forgets it.
                            let _ = lease.send(Cmd::Disconnect { conn }).await;
                            break end;
                        }
                    }
                }
            }
        }
    };
    match end {
        End::Gone => {
            let _ = lease.send(Cmd::Disconnect { conn }).await;
        }
        End::Close {
            code,
            sentence,
            drain,
        } => {
            let _ = ws_tx
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: close_reason(sentence).into(),
                })))
                .await;
            if drain {
                let _ = tokio::time::timeout(CLOSE_LINGER, async {
                    while let Some(Ok(m)) = ws_rx.next().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            } else {
                tokio::time::sleep(CLOSE_LINGER).await;
            }
        }
    }
    let _ = ws_tx.close().await;
    shared.facilitation.seen(&member);
    drop(lease);
    metrics.connection_closed();
    tracing::info!(member = %member, peer = %peer_id, "connection closed");
}

/// Signatures for changes to come, read from a `klad-signatures` frame;
/// `None` for every other frame (an unreadable one too: the hub says why).
type SignatureList = Vec<(automerge::ChangeHash, authorship::Signature)>;

/// The signatures of a `klad-signatures` frame, for the gate.
fn signatures(bytes: &[u8]) -> Option<Result<SignatureList, wire::FrameError>> {
    // Most frames are sync frames: a frame whose bytes do not even contain
    // the type's name is not decoded twice (the hub decodes it).
    let name = authorship::SIGNATURES.as_bytes();
    if !bytes.windows(name.len()).any(|w| w == name) {
        return None;
    }
    let frame = wire::parse(bytes).ok()?;
    if !authorship::is_signatures(&frame) {
        return None;
    }
    Some(authorship::parse_signatures(bytes))
}

/// Checks one websocket message: `Ok(Some(bytes))` to pass on, `Ok(None)`
/// to skip (ping, pong), `Err` to end the connection.
fn receive(
    shared: &ConnectionShared,
    member: &MemberId,
    inbound: Result<Message, axum::Error>,
) -> Result<Option<Vec<u8>>, End> {
    let refuse = |label: &'static str, code: u16, sentence: String, drain: bool| {
        shared.metrics.connection_closed_by_server(label);
        tracing::warn!(member = %member, reason = label, "closing connection: {sentence}");
        End::Close {
            code,
            sentence,
            drain,
        }
    };
    let msg = match inbound {
        Ok(m) => m,
        Err(e) => {
            // axum's own limit (a safety net above ours) or a broken socket.
            let text = e.to_string();
            if !(text.contains("too long") || text.contains("Space limit")) {
                shared
                    .metrics
                    .connection_closed_by_server("transport_error");
                tracing::info!(member = %member, "connection lost: {text}");
                return Err(End::Gone);
            }
            // The stream is unusable after its error, so the rest of the
            // frame cannot be drained: the socket stays open a moment.
            return Err(refuse(
                "message_too_large",
                close_code::SIZE,
                format!(
                    "A message was larger than this server accepts ({} bytes). Send changes in smaller batches.",
                    shared.max_message_bytes
                ),
                false,
            ));
        }
    };
    let bytes = match msg {
        Message::Binary(b) => b,
        Message::Text(_) => {
            return Err(refuse(
                "text_frame",
                close_code::UNSUPPORTED,
                "Klad speaks the automerge-repo binary protocol; text frames are not accepted."
                    .into(),
                true,
            ));
        }
        Message::Close(_) => return Err(End::Gone),
        Message::Ping(_) | Message::Pong(_) => return Ok(None),
    };
    shared.metrics.message_in(bytes.len());
    if bytes.len() > shared.max_message_bytes {
        return Err(refuse(
            "message_too_large",
            close_code::SIZE,
            format!(
                "A message of {} bytes is larger than this server accepts ({} bytes). Send changes in smaller batches.",
                bytes.len(),
                shared.max_message_bytes
            ),
            true,
        ));
    }
    Ok(Some(bytes.to_vec()))
}
