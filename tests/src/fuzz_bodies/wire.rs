//! Target `wire`: automerge-repo frame decoding as the server and phones do
//! it ([`klad_sync::wire::parse`], the sync message it offers, the changes
//! inside it as the authorship check decodes them), the peer-link frames and
//! the `klad-signatures` frame.
//!
//! Invariants: nothing panics; every refusal is a sentence; an accepted frame
//! re-encodes to the same frame; an accepted sync message re-encodes to the
//! same message and can be written back into the frame (what the gate does
//! when it removes refused changes); accepted link and signature frames
//! round-trip through their encoders.

use std::collections::HashSet;

use automerge::ChangeHash;
use automerge::sync::Message;
use ciborium::Value;
use klad_sync::authorship;
use klad_sync::wire::{self, Frame, LinkFrame};

use super::assert_sentence;

/// The body of the `wire` target.
pub fn run(data: &[u8]) {
    match wire::parse(data) {
        Ok(frame) => accepted_frame(data, frame),
        Err(e) => {
            assert_sentence(&e.to_string());
            assert!(!e.label().is_empty());
        }
    }
    match wire::parse_link(data) {
        Ok(LinkFrame::Hello(hello)) => {
            let again = wire::parse_link(&wire::encode_hello(&hello));
            assert_eq!(again, Ok(LinkFrame::Hello(hello)));
        }
        Ok(LinkFrame::Refused(reason)) => {
            let again = wire::parse_link(&wire::encode_refused(&reason));
            assert_eq!(again, Ok(LinkFrame::Refused(reason)));
        }
        Ok(LinkFrame::Sync) => {}
        Err(e) => assert_sentence(&e.to_string()),
    }
    match authorship::parse_signatures(data) {
        Ok(list) => {
            let again = authorship::parse_signatures(&authorship::encode_signatures("d", &list));
            assert_eq!(again, Ok(list));
        }
        Err(e) => assert_sentence(&e.to_string()),
    }
}

/// The fields of `frame` written as a frame of their own.
fn encode(frame: &Frame) -> Vec<u8> {
    let mut entries = vec![(Value::Text("type".into()), Value::Text(frame.kind.clone()))];
    if let Some(d) = &frame.document_id {
        entries.push((Value::Text("documentId".into()), Value::Text(d.clone())));
    }
    if let Some(b) = &frame.data {
        entries.push((Value::Text("data".into()), Value::Bytes(b.clone())));
    }
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Map(entries), &mut out).expect("CBOR into a Vec");
    out
}

fn accepted_frame(data: &[u8], frame: Frame) {
    assert!(
        !frame.kind.is_empty(),
        "a frame without a type was accepted"
    );
    assert_eq!(
        wire::parse(&encode(&frame)).as_ref(),
        Ok(&frame),
        "a frame's fields do not survive re-encoding"
    );
    let msg = match frame.sync_message() {
        Ok(Some(msg)) => msg,
        Ok(None) => {
            assert!(!frame.is_sync() || frame.data.is_none());
            return;
        }
        Err(e) => return assert_sentence(&e.to_string()),
    };
    // Automerge writes an empty Bloom filter without its parameters, so a
    // message survives re-encoding in its encoding and its contents, not
    // always field by field.
    let encoded = msg.clone().encode();
    let decoded = Message::decode(&encoded).expect("a re-encoded message decodes");
    assert_eq!(
        decoded.clone().encode(),
        encoded,
        "a sync message's encoding is not stable"
    );
    assert_eq!(
        (
            &decoded.heads,
            &decoded.need,
            &decoded.changes,
            &decoded.version
        ),
        (&msg.heads, &msg.need, &msg.changes, &msg.version),
        "a sync message does not survive re-encoding"
    );
    // What the gate does when it keeps every change: the frame written
    // back with the same message reads as the same frame.
    let replaced = wire::replace_sync_data(data, msg.clone())
        .expect("an accepted frame can be written back with its own message");
    let again = wire::parse(&replaced).expect("a rewritten frame parses");
    assert_eq!(
        (&again.kind, &again.document_id),
        (&frame.kind, &frame.document_id)
    );
    let rewritten = again.sync_message().expect("decodes").expect("a message");
    assert_eq!(
        rewritten.encode(),
        encoded,
        "the rewritten frame has another message"
    );
    if msg.changes.is_empty() {
        return;
    }
    let Some(document) = frame.document_id.clone() else {
        return;
    };
    match authorship::inspect_message(document, msg.clone()) {
        Ok(inspected) => {
            let all: HashSet<ChangeHash> = inspected.hashes().into_iter().collect();
            assert_eq!(
                inspected.retain_message(&all),
                msg,
                "keeping every change changed the message"
            );
            let none = inspected.retain_message(&HashSet::new());
            assert!(none.changes.is_empty(), "refusing every change kept some");
            assert_eq!((&none.heads, &none.need), (&msg.heads, &msg.need));
        }
        Err(e) => assert_sentence(&e.to_string()),
    }
}
