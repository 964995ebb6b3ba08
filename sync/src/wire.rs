//! Just enough of the automerge-repo wire format (CBOR maps) to check frames
//! before samod sees them and to find the heads in frames being sent; and the
//! two frames of Klad's own that open a peer link between phones.

use automerge::ChangeHash;
use automerge::sync::Message as SyncMessage;
use ciborium::Value;

/// The fields of one frame the server cares about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// The message type (`join`, `peer`, `request`, `sync`, `doc-unavailable`, ...).
    pub kind: String,
    /// The document the message is about, if any.
    pub document_id: Option<String>,
    /// The sync payload of `request` and `sync` messages.
    pub data: Option<Vec<u8>>,
}

/// Why a frame is not acceptable.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Not CBOR, or not a map with a `type`.
    #[error("the frame is not an automerge-repo message (a CBOR map with a \"type\" field)")]
    NotAMessage,
    /// A document id that is not an automerge-repo document id.
    #[error("the frame names a document id that is not a valid automerge-repo document id")]
    BadDocumentId,
    /// A sync payload that Automerge cannot decode.
    #[error("the frame's sync data is not an Automerge sync message")]
    BadSyncData,
    /// The changes inside a sync message cannot be read.
    #[error("the changes in the frame's sync message cannot be read: the data {0}")]
    BadChanges(String),
    /// A signatures frame that is not a list of (change hash, signature) pairs.
    #[error(
        "the frame's change signatures are not a list of 32-byte change hashes with 64-byte Ed25519 signatures"
    )]
    BadSignatures,
}

impl FrameError {
    /// The metric/log label.
    pub fn label(&self) -> &'static str {
        match self {
            FrameError::NotAMessage => "malformed_frame",
            FrameError::BadDocumentId => "bad_document_id",
            FrameError::BadSyncData => "bad_sync_data",
            FrameError::BadChanges(_) => "bad_changes",
            FrameError::BadSignatures => "bad_signatures",
        }
    }
}

/// Decodes a frame's header fields.
pub fn parse(bytes: &[u8]) -> Result<Frame, FrameError> {
    let value: Value = ciborium::from_reader(bytes).map_err(|_| FrameError::NotAMessage)?;
    let Value::Map(entries) = value else {
        return Err(FrameError::NotAMessage);
    };
    let mut frame = Frame::default();
    for (k, v) in entries {
        let Value::Text(k) = k else { continue };
        match (k.as_str(), v) {
            ("type", Value::Text(t)) => frame.kind = t,
            ("documentId", Value::Text(d)) => frame.document_id = Some(d),
            ("documentId", _) => return Err(FrameError::BadDocumentId),
            ("data", Value::Bytes(b)) => frame.data = Some(b),
            _ => {}
        }
    }
    if frame.kind.is_empty() {
        return Err(FrameError::NotAMessage);
    }
    if let Some(d) = &frame.document_id
        && d.parse::<samod_core::DocumentId>().is_err()
    {
        return Err(FrameError::BadDocumentId);
    }
    Ok(frame)
}

/// The automerge-repo id (base58check text) of a document with these 16
/// random bytes; the caller brings the randomness.
pub fn document_id(bytes: [u8; 16]) -> String {
    // Cannot fail: any 16 bytes are a UUID.
    samod_core::DocumentId::try_from(bytes.to_vec())
        .map(|d| d.to_string())
        .unwrap_or_default()
}

impl Frame {
    /// True for the messages that carry Automerge sync data.
    pub fn is_sync(&self) -> bool {
        matches!(self.kind.as_str(), "sync" | "request")
    }

    /// The decoded sync message of a `sync`/`request` frame.
    pub fn sync_message(&self) -> Result<Option<SyncMessage>, FrameError> {
        match (&self.data, self.is_sync()) {
            (Some(d), true) => SyncMessage::decode(d)
                .map(Some)
                .map_err(|_| FrameError::BadSyncData),
            _ => Ok(None),
        }
    }
}

/// The same frame with its sync data replaced by `msg` (every other field
/// stays as the sender wrote it).
pub fn replace_sync_data(bytes: &[u8], msg: SyncMessage) -> Result<Vec<u8>, FrameError> {
    let value: Value = ciborium::from_reader(bytes).map_err(|_| FrameError::NotAMessage)?;
    let Value::Map(mut entries) = value else {
        return Err(FrameError::NotAMessage);
    };
    let data = msg.encode();
    for (k, v) in entries.iter_mut() {
        if matches!(k, Value::Text(t) if t == "data") {
            *v = Value::Bytes(data.clone());
        }
    }
    let mut out = Vec::with_capacity(bytes.len());
    ciborium::into_writer(&Value::Map(entries), &mut out).map_err(|_| FrameError::NotAMessage)?;
    Ok(out)
}

/// The heads a sync message announces.
pub fn heads(msg: &SyncMessage) -> &[ChangeHash] {
    &msg.heads
}

/// The `type` of the first frame each side of a peer link sends.
pub const HELLO: &str = "klad-hello";
/// The `type` of the frame a side sends when it refuses the link.
pub const REFUSED: &str = "klad-refused";
/// The version of the peer-link handshake.
pub const LINK_VERSION: u64 = 1;

/// The first frame of a peer link: who this side is, proven by its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's member token, signed by the process's server.
    pub token: String,
    /// The peer id the sender will use in the automerge-repo handshake.
    pub peer_id: String,
}

/// A frame on a peer link, as far as the link itself is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkFrame {
    /// The other side introduces itself.
    Hello(Hello),
    /// The other side refused the link, with its sentence.
    Refused(String),
    /// Anything else: an automerge-repo frame for samod (checked separately).
    Sync,
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

/// Encodes a [`Hello`] frame.
pub fn encode_hello(hello: &Hello) -> Vec<u8> {
    encode(vec![
        text("type", HELLO),
        (
            Value::Text("version".into()),
            Value::Integer(LINK_VERSION.into()),
        ),
        text("token", &hello.token),
        text("peerId", &hello.peer_id),
    ])
}

/// Encodes a refusal with the sentence the other side should show.
pub fn encode_refused(reason: &str) -> Vec<u8> {
    encode(vec![text("type", REFUSED), text("reason", reason)])
}

/// Reads a peer-link frame: a hello, a refusal, or (any other type) a sync frame.
pub fn parse_link(bytes: &[u8]) -> Result<LinkFrame, FrameError> {
    let value: Value = ciborium::from_reader(bytes).map_err(|_| FrameError::NotAMessage)?;
    let Value::Map(entries) = value else {
        return Err(FrameError::NotAMessage);
    };
    let field = |name: &str| {
        entries.iter().find_map(|(k, v)| match (k, v) {
            (Value::Text(k), Value::Text(v)) if k == name => Some(v.clone()),
            _ => None,
        })
    };
    match field("type").as_deref() {
        Some(HELLO) => Ok(LinkFrame::Hello(Hello {
            token: field("token").ok_or(FrameError::NotAMessage)?,
            peer_id: field("peerId").ok_or(FrameError::NotAMessage)?,
        })),
        Some(REFUSED) => Ok(LinkFrame::Refused(field("reason").unwrap_or_default())),
        Some(_) => Ok(LinkFrame::Sync),
        None => Err(FrameError::NotAMessage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    #[test]
    fn frames_parse_or_fail_clearly() {
        let doc = samod_core::DocumentId::try_from(vec![7u8; 16]).unwrap();
        let ok = encode(&Value::Map(vec![
            (Value::Text("type".into()), Value::Text("sync".into())),
            (
                Value::Text("documentId".into()),
                Value::Text(doc.to_string()),
            ),
            (Value::Text("data".into()), Value::Bytes(vec![1, 2])),
        ]));
        let f = parse(&ok).unwrap();
        assert!(f.is_sync());
        assert_eq!(f.document_id.as_deref(), Some(doc.to_string().as_str()));
        assert_eq!(f.sync_message(), Err(FrameError::BadSyncData));
        assert_eq!(parse(b"\xff\x00garbage"), Err(FrameError::NotAMessage));
        let bad_doc = encode(&Value::Map(vec![
            (Value::Text("type".into()), Value::Text("sync".into())),
            (
                Value::Text("documentId".into()),
                Value::Text("not-a-doc".into()),
            ),
        ]));
        assert_eq!(parse(&bad_doc), Err(FrameError::BadDocumentId));
    }

    #[test]
    fn replacing_sync_data_keeps_the_other_fields() {
        use automerge::transaction::Transactable;
        let mut doc = automerge::Automerge::new();
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "k", "v").unwrap();
        tx.commit();
        let change = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
        let mut msg = SyncMessage {
            heads: doc.get_heads(),
            need: vec![],
            have: vec![],
            changes: vec![change].into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        let frame = encode(&Value::Map(vec![
            (Value::Text("type".into()), Value::Text("sync".into())),
            (Value::Text("senderId".into()), Value::Text("p".into())),
            (
                Value::Text("data".into()),
                Value::Bytes(msg.clone().encode()),
            ),
        ]));
        msg.changes = automerge::sync::ChunkList::empty();
        let replaced = parse(&replace_sync_data(&frame, msg).unwrap()).unwrap();
        let m = replaced.sync_message().unwrap().unwrap();
        assert!(m.changes.is_empty());
        assert_eq!(m.heads, doc.get_heads());
        assert_eq!(replaced.kind, "sync");
    }

    #[test]
    fn link_frames_round_trip() {
        let hello = Hello {
            token: "v4.public.abc".into(),
            peer_id: "m:phone-1".into(),
        };
        assert_eq!(
            parse_link(&encode_hello(&hello)),
            Ok(LinkFrame::Hello(hello))
        );
        assert_eq!(
            parse_link(&encode_refused("No.")),
            Ok(LinkFrame::Refused("No.".into()))
        );
        let sync = super::encode(vec![text("type", "sync")]);
        assert_eq!(parse_link(&sync), Ok(LinkFrame::Sync));
        assert_eq!(parse_link(b"garbage"), Err(FrameError::NotAMessage));
        let no_token = super::encode(vec![text("type", HELLO)]);
        assert_eq!(parse_link(&no_token), Err(FrameError::NotAMessage));
    }
}
