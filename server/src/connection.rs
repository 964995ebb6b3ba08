//! One client's websocket, between axum and samod.
//!
//! The server builds samod's `Transport` itself (instead of
//! `Transport::from_axum`) so that it can:
//! - refuse bad frames with a websocket close frame that says why
//!   (oversized, text, not an automerge-repo message, bad document id);
//! - count and log changes sent to documents the member may not write;
//! - hold back every outgoing sync message until what it announces is on
//!   disk (the durability barrier, see [`crate::durability`]);
//! - count messages and bytes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, stream};
use klad_core::MemberId;
use samod::{PeerId, Transport};

use klad_sync::access::Inbound;
use klad_sync::wire;

use crate::directory::Directory;
use crate::durability::Durability;
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
}

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
        _ => (close_code::INVALID, reason),
    }
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
    let metrics = shared.metrics.clone();
    metrics.connection_opened();
    tracing::info!(member = %member, peer = %peer_id, "connection opened");

    // Inbound: check every frame, then hand its bytes to samod.
    let inbound = {
        let shared = shared.clone();
        let control = out_tx.clone();
        let peer = peer_id.clone();
        let member = member.clone();
        stream::unfold(
            (ws_rx, false),
            move |(mut ws_rx, done)| {
                let shared = shared.clone();
                let mut control = control.clone();
                let peer = peer.clone();
                let member = member.clone();
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
                                let reason = if text.contains("too long") || text.contains("Space limit") {
                                    "message_too_large"
                                } else {
                                    "transport_error"
                                };
                                shared.metrics.connection_closed_by_server(reason);
                                let (code, _) = refuse(reason);
                                let _ = control
                                    .send(Outgoing::Close(code, format!("Connection closed: {text}.")))
                                    .await;
                                return None;
                            }
                        };
                        let bytes = match msg {
                            Message::Binary(b) => b,
                            Message::Text(_) => {
                                close(&shared, &mut control, &member, "text_frame",
                                    "Klad speaks the automerge-repo binary protocol; text frames are not accepted.".into()).await;
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
                            return None;
                        }
                        match check_inbound(&shared, &peer, &member, &bytes) {
                            Ok(checked) => {
                                let forward = checked.unwrap_or_else(|| bytes.to_vec());
                                return Some((Ok::<Vec<u8>, std::io::Error>(forward), (ws_rx, false)));
                            }
                            Err(e) => {
                                let label = match e {
                                    wire::FrameError::NotAMessage => "malformed_frame",
                                    wire::FrameError::BadDocumentId => "bad_document_id",
                                    wire::FrameError::BadSyncData => "bad_sync_data",
                                };
                                let sentence = format!("Connection closed: {e}.");
                                close(&shared, &mut control, &member, label, sentence).await;
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
    while let Some(out) = out_rx.next().await {
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
                        reason: reason.into(),
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

/// Checks one inbound frame. Changes to a document the member may not write
/// are counted, logged and removed from the frame (returned as `Some`), so
/// they never reach samod, its storage or any other peer.
fn check_inbound(
    shared: &ConnectionShared,
    peer: &str,
    member: &MemberId,
    bytes: &[u8],
) -> Result<Option<Vec<u8>>, wire::FrameError> {
    match klad_sync::access::check_inbound(bytes, |doc| shared.directory.access(doc, peer))? {
        Inbound::Pass => Ok(None),
        Inbound::Stripped {
            document,
            reason,
            changes,
            frame,
        } => {
            shared.metrics.refused_write(reason);
            tracing::warn!(
                member = %member,
                document = %document,
                reason,
                changes,
                "refused changes to a document the member may not write"
            );
            Ok(Some(frame))
        }
    }
}
