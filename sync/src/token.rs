//! Member tokens: PASETO v4.public tokens the server signs with its Ed25519
//! key (signing stays in the server), verified here with the public key only,
//! so a phone can check another phone's token offline.
//!
//! A token names a member (`sub`), their process (`pid`) and their role, and
//! expires (`exp`). It also carries the member's token generation (`gen`,
//! 0 when absent): the server withdraws a member's tokens by refusing every
//! generation below a number it keeps (see klad-server's `members revoke`);
//! a phone, which does not know that number, checks only signature and expiry. It is bound to the purpose [`IMPLICIT_ASSERTION`], so a
//! PASETO signed for something else with the same key does not verify.

use std::time::SystemTime;

use klad_core::{MemberId, ProcessId, Role};
use pasetors::claims::ClaimsValidationRules;
use pasetors::errors::{ClaimValidationError, Error as PasetoError};
use pasetors::keys::AsymmetricPublicKey;
use pasetors::paserk::FormatAsPaserk;
use pasetors::token::UntrustedToken;
use pasetors::version4::V4;
use pasetors::{Public, public};

/// The purpose every Klad member token is bound to (PASETO implicit assertion).
pub const IMPLICIT_ASSERTION: &[u8] = b"klad-member-token-v1";

/// The claim holding the member's token generation (a number).
pub const GENERATION_CLAIM: &str = "gen";

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenClaims {
    /// The member the token was issued to.
    pub member: MemberId,
    /// Their process.
    pub process: ProcessId,
    /// Their role when the token was issued (the process document is authoritative).
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
    /// The member's token generation when it was issued (claim `gen`; 0 for
    /// tokens without one). The server refuses generations it has revoked.
    pub generation: u64,
}

/// Why a token was refused. Each message is the sentence the server sends
/// back with its 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// No token at all.
    #[error(
        "No token was given. Pass your invitation token as ?token=... on the websocket URL or as an 'Authorization: Bearer ...' header."
    )]
    Missing,
    /// Not a PASETO v4.public token.
    #[error(
        "The token is not a Klad token (it is malformed or truncated). Copy the whole token from your invitation and try again."
    )]
    Malformed,
    /// The signature does not verify with this server's key.
    #[error(
        "The token was not signed by this server (it is forged, altered or from another server). Ask a facilitator for a new invitation."
    )]
    BadSignature,
    /// The token has expired.
    #[error("The token has expired. Ask a facilitator for a new invitation.")]
    Expired,
    /// The token is signed but lacks Klad's claims.
    #[error(
        "The token does not name a member, process and role. Ask a facilitator for a new invitation."
    )]
    MissingClaims,
    /// The member is not (or no longer) in the process.
    #[error(
        "The token names a member or process this server does not know. Ask a facilitator for a new invitation."
    )]
    UnknownMember,
    /// The server has withdrawn this token (the member's earlier tokens were
    /// revoked, with or without a new one issued).
    #[error(
        "This invitation has been withdrawn on the server, so its token no longer works. Ask a facilitator for a new invitation."
    )]
    Revoked,
}

impl TokenError {
    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::Malformed => "token_malformed",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::MissingClaims => "token_missing_claims",
            TokenError::UnknownMember => "token_unknown_member",
            TokenError::Revoked => "token_revoked",
        }
    }
}

/// The text a public key is not, as a sentence.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "The server's public key is not a PASERK k4.public key; fetch it again from the server (GET /public-key)."
)]
pub struct BadPublicKey;

/// The server's public key, which verifies member tokens.
#[derive(Clone)]
pub struct PublicKey(AsymmetricPublicKey<V4>);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_paserk())
    }
}

impl From<AsymmetricPublicKey<V4>> for PublicKey {
    fn from(k: AsymmetricPublicKey<V4>) -> Self {
        PublicKey(k)
    }
}

impl PublicKey {
    /// Reads a key in PASERK form (`k4.public.…`).
    pub fn from_paserk(text: &str) -> Result<Self, BadPublicKey> {
        AsymmetricPublicKey::<V4>::try_from(text.trim())
            .map(PublicKey)
            .map_err(|_| BadPublicKey)
    }

    /// The key in PASERK form (`k4.public.…`).
    pub fn to_paserk(&self) -> String {
        let mut s = String::new();
        // Formatting into a String cannot fail.
        let _ = self.0.fmt(&mut s);
        s
    }

    /// Verifies a token's signature and expiry (against the system clock)
    /// and reads its claims.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let untrusted =
            UntrustedToken::<Public, V4>::try_from(token).map_err(|_| TokenError::Malformed)?;
        let trusted = public::verify(
            &self.0,
            &untrusted,
            &ClaimsValidationRules::new(),
            None,
            Some(IMPLICIT_ASSERTION),
        )
        .map_err(|e| match e {
            PasetoError::ClaimValidation(ClaimValidationError::Exp) => TokenError::Expired,
            // Errors about the claims come after the signature verified:
            // the token is this server's, its claims are not Klad's (found
            // by fuzzing: an unreadable expiry was called a forgery).
            PasetoError::ClaimValidation(_)
            | PasetoError::ClaimInvalidJson
            | PasetoError::ClaimInvalidUtf8
            | PasetoError::InvalidClaim => TokenError::MissingClaims,
            PasetoError::TokenFormat | PasetoError::Base64 => TokenError::Malformed,
            _ => TokenError::BadSignature,
        })?;
        let claims = trusted.payload_claims().ok_or(TokenError::MissingClaims)?;
        let text = |k: &str| {
            claims
                .get_claim(k)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or(TokenError::MissingClaims)
        };
        let role = Role::parse(&text("role")?).ok_or(TokenError::MissingClaims)?;
        let generation = match claims.get_claim(GENERATION_CLAIM) {
            None => 0,
            Some(v) => v.as_u64().ok_or(TokenError::MissingClaims)?,
        };
        Ok(TokenClaims {
            member: MemberId(text("sub")?),
            process: ProcessId(text("pid")?),
            role,
            expires_at: expiry_secs(&text("exp")?),
            generation,
        })
    }
}

fn expiry_secs(rfc3339: &str) -> u64 {
    humantime::parse_rfc3339_weak(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The member and process a token names, *without* checking its signature:
/// what a phone needs to know which process it is joining, before it has the
/// server's key. Never use this to decide what someone may do.
pub fn unverified_claims(token: &str) -> Result<(MemberId, ProcessId), TokenError> {
    let untrusted =
        UntrustedToken::<Public, V4>::try_from(token.trim()).map_err(|_| TokenError::Malformed)?;
    // A v4.public payload is the claims followed by the 64-byte signature.
    let message = untrusted.untrusted_message();
    let claims = message
        .len()
        .checked_sub(64)
        .map(|n| &message[..n])
        .ok_or(TokenError::Malformed)?;
    let v: serde_json::Value =
        serde_json::from_slice(claims).map_err(|_| TokenError::MissingClaims)?;
    let member = v["sub"].as_str().ok_or(TokenError::MissingClaims)?;
    let process = v["pid"].as_str().ok_or(TokenError::MissingClaims)?;
    Ok((MemberId::from(member), ProcessId::from(process)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pasetors::claims::Claims;
    use pasetors::keys::{AsymmetricKeyPair, Generate};

    fn sign(kp: &AsymmetricKeyPair<V4>, exp: &str, role: &str) -> String {
        let mut c = Claims::new().unwrap();
        c.expiration(exp).unwrap();
        c.subject("m1").unwrap();
        c.add_additional("pid", "p1").unwrap();
        c.add_additional("role", role).unwrap();
        public::sign(&kp.secret, &c, None, Some(IMPLICIT_ASSERTION)).unwrap()
    }

    #[test]
    fn the_generation_claim_is_read_and_must_be_a_number() {
        let kp = AsymmetricKeyPair::<V4>::generate().unwrap();
        let key = PublicKey::from(kp.public.clone());
        let with = |generation: serde_json::Value| {
            let mut c = Claims::new().unwrap();
            c.expiration("2999-01-01T00:00:00Z").unwrap();
            c.subject("m1").unwrap();
            c.add_additional("pid", "p1").unwrap();
            c.add_additional("role", "drafter").unwrap();
            c.add_additional(GENERATION_CLAIM, generation).unwrap();
            public::sign(&kp.secret, &c, None, Some(IMPLICIT_ASSERTION)).unwrap()
        };
        assert_eq!(key.verify(&with(3.into())).unwrap().generation, 3);
        assert_eq!(
            key.verify(&with("three".into())),
            Err(TokenError::MissingClaims)
        );
    }

    #[test]
    fn tokens_verify_with_the_public_key_only() {
        let kp = AsymmetricKeyPair::<V4>::generate().unwrap();
        let key = PublicKey::from_paserk(&PublicKey::from(kp.public.clone()).to_paserk()).unwrap();
        let t = sign(&kp, "2999-01-01T00:00:00Z", "drafter");
        let c = key.verify(&t).unwrap();
        assert_eq!(
            (c.member.as_str(), c.process.as_str(), c.role, c.generation),
            ("m1", "p1", Role::Drafter, 0)
        );
        assert_eq!(
            unverified_claims(&t).unwrap(),
            (MemberId::from("m1"), ProcessId::from("p1"))
        );
        assert_eq!(
            key.verify(&sign(&kp, "2001-01-01T00:00:00Z", "drafter")),
            Err(TokenError::Expired)
        );
        let other = AsymmetricKeyPair::<V4>::generate().unwrap();
        assert_eq!(
            key.verify(&sign(&other, "2999-01-01T00:00:00Z", "drafter")),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            key.verify(&sign(&kp, "2999-01-01T00:00:00Z", "admin")),
            Err(TokenError::MissingClaims)
        );
        assert_eq!(key.verify(""), Err(TokenError::Missing));
        assert_eq!(key.verify("hello"), Err(TokenError::Malformed));
        assert_eq!(
            unverified_claims("v4.public.AAAA"),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            PublicKey::from_paserk("k4.public.nope").err(),
            Some(BadPublicKey)
        );
    }
}
