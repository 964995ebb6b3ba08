//! The automerge-repo frames the hub reads beyond [`crate::wire::parse`]
//! (the `join` handshake, `ephemeral` forwarding) and every frame it writes.
//!
//! Field names and shapes follow automerge-repo's CBOR messages, as the
//! JavaScript repo, samod and our phones read them: a map with `type`,
//! `senderId`, `targetId`, `documentId` (the base58check text form), `data`
//! (bytes), and for `peer` also `selectedProtocolVersion` and `peerMetadata`
//! (`storageId` when there is one, `isEphemeral`).

use ciborium::Value;

use crate::wire::FrameError;

/// The only automerge-repo protocol version the hub speaks.
pub const PROTOCOL_VERSION: &str = "1";

/// What a `join` says.
#[derive(Debug, PartialEq, Eq)]
pub struct Join {
    /// The peer id the peer claims.
    pub sender_id: String,
    /// The protocol versions it offers.
    pub versions: Vec<String>,
}

fn decode_map(bytes: &[u8]) -> Result<Vec<(Value, Value)>, FrameError> {
    match ciborium::from_reader(bytes) {
        Ok(Value::Map(entries)) => Ok(entries),
        _ => Err(FrameError::NotAMessage),
    }
}

fn field<'a>(entries: &'a [(Value, Value)], name: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find_map(|(k, v)| matches!(k, Value::Text(k) if k == name).then_some(v))
}

/// Reads the fields of a `join` frame; `None` when `senderId` is missing.
pub fn parse_join(bytes: &[u8]) -> Result<Option<Join>, FrameError> {
    let entries = decode_map(bytes)?;
    let Some(Value::Text(sender_id)) = field(&entries, "senderId") else {
        return Ok(None);
    };
    let versions = match field(&entries, "supportedProtocolVersions") {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|v| match v {
                Value::Text(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Some(Join {
        sender_id: sender_id.clone(),
        versions,
    }))
}

/// The same frame addressed to `target`: its `targetId` replaced (or added),
/// every other field as the sender wrote it. Used to forward `ephemeral`
/// messages, which automerge-repo addresses to one peer each.
pub fn readdress(bytes: &[u8], target: &str) -> Result<Vec<u8>, FrameError> {
    let mut entries = decode_map(bytes)?;
    let target = Value::Text(target.into());
    match entries
        .iter_mut()
        .find(|(k, _)| matches!(k, Value::Text(k) if k == "targetId"))
    {
        Some((_, v)) => *v = target,
        None => entries.push((Value::Text("targetId".into()), target)),
    }
    Ok(encode(entries))
}

fn text(k: &str, v: &str) -> (Value, Value) {
    (Value::Text(k.into()), Value::Text(v.into()))
}

fn encode(entries: Vec<(Value, Value)>) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing CBOR into a Vec cannot fail.
    let _ = ciborium::into_writer(&Value::Map(entries), &mut out);
    out
}

/// The hub's answer to a `join`.
pub fn encode_peer(hub: &str, target: &str, storage_id: Option<&str>) -> Vec<u8> {
    let mut metadata = Vec::with_capacity(2);
    if let Some(id) = storage_id {
        metadata.push(text("storageId", id));
    }
    metadata.push((Value::Text("isEphemeral".into()), Value::Bool(false)));
    encode(vec![
        text("type", "peer"),
        text("senderId", hub),
        text("selectedProtocolVersion", PROTOCOL_VERSION),
        text("targetId", target),
        (Value::Text("peerMetadata".into()), Value::Map(metadata)),
    ])
}

/// A `sync` frame carrying an encoded Automerge sync message.
pub fn encode_sync(hub: &str, target: &str, document: &str, data: Vec<u8>) -> Vec<u8> {
    encode(vec![
        text("type", "sync"),
        text("documentId", document),
        text("senderId", hub),
        text("targetId", target),
        (Value::Text("data".into()), Value::Bytes(data)),
    ])
}

/// A `doc-unavailable` frame: the hub has nothing of `document` for `target`.
pub fn encode_unavailable(hub: &str, target: &str, document: &str) -> Vec<u8> {
    encode(vec![
        text("type", "doc-unavailable"),
        text("senderId", hub),
        text("targetId", target),
        text("documentId", document),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_fields_and_readdressing() {
        let join = encode(vec![
            text("type", "join"),
            text("senderId", "m:phone"),
            (
                Value::Text("supportedProtocolVersions".into()),
                Value::Array(vec![Value::Text("1".into())]),
            ),
        ]);
        assert_eq!(
            parse_join(&join).unwrap(),
            Some(Join {
                sender_id: "m:phone".into(),
                versions: vec!["1".into()]
            })
        );
        assert_eq!(parse_join(&encode(vec![text("type", "join")])), Ok(None));
        let moved = readdress(&join, "other").unwrap();
        let entries = decode_map(&moved).unwrap();
        assert_eq!(
            field(&entries, "targetId"),
            Some(&Value::Text("other".into()))
        );
        assert_eq!(
            field(&entries, "senderId"),
            Some(&Value::Text("m:phone".into()))
        );
    }
}
