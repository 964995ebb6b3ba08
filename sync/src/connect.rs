//! How a client reaches the server's sync endpoint: the path, the query
//! parameters, the upgrade header that carries the server's key, and the form
//! of an actor id. The server parses these and the phones, tests and tools
//! build them from this one place.

use automerge::ActorId;
use serde::{Deserialize, Serialize};

/// The websocket endpoint.
pub const SYNC_PATH: &str = "/sync";

/// The response header of a sync upgrade that carries the server's public
/// key (PASERK `k4.public…`), the same as `GET /public-key`.
pub const PUBLIC_KEY_HEADER: &str = "x-klad-public-key";

/// The query of a sync URL: `?token=..&device=..&actor=..&key=..`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncQuery {
    /// The member token (or an `Authorization: Bearer` header instead).
    pub token: Option<String>,
    /// The device's name, 1 to 64 of `A-Z a-z 0-9 _ -` (see
    /// [`crate::access::valid_device`]); part of the peer id.
    pub device: Option<String>,
    /// Hex Automerge actor id the device writes with; registered under the
    /// member so their changes are attributed to them ([`parse_actor`]).
    pub actor: Option<String>,
    /// Hex Ed25519 public key (32 bytes) of the device, registered with its
    /// actor so that other members' phones can relay its signed changes.
    pub key: Option<String>,
}

impl SyncQuery {
    /// The query string (without `?`), percent-encoded.
    pub fn to_query(&self) -> String {
        let mut out = String::new();
        for (name, value) in [
            ("token", &self.token),
            ("device", &self.device),
            ("actor", &self.actor),
            ("key", &self.key),
        ] {
            let Some(value) = value else { continue };
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(name);
            out.push('=');
            encode_into(&mut out, value);
        }
        out
    }
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
fn encode_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// An Automerge actor id in hex, 1 to 32 bytes (2 to 64 digits), read with
/// Automerge's own parser.
pub fn parse_actor(hex: &str) -> Option<ActorId> {
    if !(2..=64).contains(&hex.len()) {
        return None;
    }
    hex.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_encoded_and_skips_absent_fields() {
        let q = SyncQuery {
            token: Some("v4.public.ab+c/d=".into()),
            device: None,
            actor: Some("0a1b".into()),
            key: None,
        };
        assert_eq!(q.to_query(), "token=v4.public.ab%2Bc%2Fd%3D&actor=0a1b");
    }

    #[test]
    fn actor_ids_are_two_to_sixty_four_hex_digits() {
        assert_eq!(parse_actor("0a1b").unwrap().to_bytes(), [0x0a, 0x1b]);
        assert!(parse_actor("").is_none());
        assert!(parse_actor("0").is_none());
        assert!(parse_actor("abc").is_none());
        assert!(parse_actor("zz").is_none());
        assert!(parse_actor(&"ab".repeat(32)).is_some());
        assert!(parse_actor(&"ab".repeat(33)).is_none());
    }
}
