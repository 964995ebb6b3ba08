//! Target `token`: member-token parsing and verification
//! (`klad_sync::token`), as the server does it for every connection and a
//! phone for every peer link, and the server's public key as phones read it.
//!
//! The first byte chooses what the rest is (modulo 3):
//! 0. a token as a client sends it: [`PublicKey::verify`] and
//!    [`unverified_claims`];
//! 1. the claims of a token, signed with the server's key (a fixed test key)
//!    so verification reaches the claims: a fuzzer cannot forge a signature;
//! 2. a public key in PASERK form.
//!
//! Invariants: nothing panics; every refusal is a sentence; a token signed
//! by the key is never refused as forged or malformed; a token that
//! verifies says the same member and process as its unverified reading and
//! as its JSON, and an expiry in the future; a key that reads writes back to
//! the same key.

use std::sync::OnceLock;

use klad_sync::authorship::DeviceKey;
use klad_sync::token::{IMPLICIT_ASSERTION, PublicKey, TokenError, unverified_claims};
use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::version4::{PublicToken, V4};

use super::assert_sentence;

/// The seed of the test server's signing key.
const SERVER_SEED: [u8; 32] = [0x5e; 32];

struct Keys {
    secret: AsymmetricSecretKey<V4>,
    public: PublicKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        // An Ed25519 secret key in PASETO's form is the seed and the public
        // key; klad-sync's device keys are the same Ed25519.
        let public = DeviceKey::from_seed(SERVER_SEED).public_key();
        let mut secret = SERVER_SEED.to_vec();
        secret.extend_from_slice(&public);
        Keys {
            secret: AsymmetricSecretKey::<V4>::from(&secret).expect("a valid secret key"),
            public: PublicKey::from(AsymmetricPublicKey::<V4>::from(&public).expect("a key")),
        }
    })
}

/// A token over `claims`, signed with the test server's key.
pub fn sign(claims: &[u8]) -> Option<String> {
    PublicToken::sign(&keys().secret, claims, None, Some(IMPLICIT_ASSERTION)).ok()
}

fn refused(e: &TokenError) {
    assert_sentence(&e.to_string());
    assert!(!e.label().is_empty());
}

fn check_token(token: &str, signed_claims: Option<&[u8]>) {
    let unverified = unverified_claims(token);
    if let Err(e) = &unverified {
        refused(e);
    }
    match keys().public.verify(token) {
        Ok(claims) => {
            assert_eq!(
                unverified.as_ref().ok(),
                Some(&(claims.member.clone(), claims.process.clone())),
                "verified and unverified readings differ"
            );
            // The token's expiry was checked against the clock, so it is
            // in the future and must be read as such.
            assert!(
                claims.expires_at > 0,
                "a valid token reads as expired at 0: {claims:?}"
            );
            if let Some(json) = signed_claims {
                let v: serde_json::Value =
                    serde_json::from_slice(json).expect("verified claims are JSON");
                assert_eq!(v["sub"].as_str(), Some(claims.member.as_str()));
                assert_eq!(v["pid"].as_str(), Some(claims.process.as_str()));
                assert_eq!(v["role"].as_str(), Some(claims.role.as_str()));
            }
        }
        Err(e) => {
            refused(&e);
            // Claims the server signed are text (JSON); for those the
            // sentence must not blame the signature or the token's form.
            if signed_claims.is_some_and(|c| std::str::from_utf8(c).is_ok()) {
                assert!(
                    !matches!(e, TokenError::BadSignature | TokenError::Malformed),
                    "a token signed by the server was refused as {e:?}"
                );
            }
        }
    }
}

/// The body of the `token` target.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => check_token(&String::from_utf8_lossy(rest), None),
        1 => {
            if let Some(token) = sign(rest) {
                check_token(&token, Some(rest));
            }
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            if let Ok(key) = PublicKey::from_paserk(&text) {
                let again =
                    PublicKey::from_paserk(&key.to_paserk()).expect("a key written back reads");
                assert_eq!(again.to_paserk(), key.to_paserk());
            }
        }
    }
}
