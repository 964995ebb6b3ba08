//! Identity: the server's Ed25519 signing key, the tokens it signs (PASETO
//! v4.public, via `pasetors`), and the local admin secret the command line
//! uses to reach a running server.
//!
//! A token names a member, their process and their role, and expires. It is
//! verified with the server's public key only, so phones can later check each
//! other's tokens offline with `public-key.paserk` from the data directory.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use klad_core::{MemberId, ProcessId, Role};
use pasetors::claims::{Claims, ClaimsValidationRules};
use pasetors::errors::{ClaimValidationError, Error as PasetoError};
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::paserk::FormatAsPaserk;
use pasetors::token::UntrustedToken;
use pasetors::version4::V4;
use pasetors::{Public, public};
use serde::Serialize;

/// Binds tokens to this purpose: a PASETO signed for something else with the
/// same key does not verify as a Klad token.
const IMPLICIT_ASSERTION: &[u8] = b"klad-member-token-v1";

/// File names inside the data directory.
pub const SIGNING_KEY_FILE: &str = "signing-key.paserk";
/// The public key, readable by anyone who needs to verify tokens.
pub const PUBLIC_KEY_FILE: &str = "public-key.paserk";
/// The operator's secret for the admin HTTP API (used by the command line).
pub const ADMIN_SECRET_FILE: &str = "admin-secret";

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenClaims {
    /// The member the token was issued to.
    pub member: MemberId,
    /// Their process.
    pub process: ProcessId,
    /// Their role when the token was issued (the process document is authoritative).
    pub role: Role,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
}

/// Why a token was refused. Each message is the sentence sent back with the 401.
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
        }
    }
}

/// The server's signing key pair.
pub struct Keys {
    secret: AsymmetricSecretKey<V4>,
    public: AsymmetricPublicKey<V4>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys { .. }")
    }
}

/// Writes `contents` to `path` readable only by the owner (mode 0600), via a
/// temporary file and a rename so a crash never leaves half a key.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

fn key_error(path: &Path, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "The signing key {} could not be read or written ({e}). Check the data directory's permissions; if the key is damaged, restore it from a backup (a new key invalidates every token).",
        path.display()
    )
}

impl Keys {
    /// Loads the key pair from `data_dir`, generating it on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Keys> {
        let path = data_dir.join(SIGNING_KEY_FILE);
        if path.exists() {
            return Self::load(data_dir);
        }
        let kp = AsymmetricKeyPair::<V4>::generate().map_err(|e| key_error(&path, e))?;
        let mut secret = String::new();
        kp.secret
            .fmt(&mut secret)
            .map_err(|e| key_error(&path, e))?;
        let mut public = String::new();
        kp.public
            .fmt(&mut public)
            .map_err(|e| key_error(&path, e))?;
        write_private_file(&path, secret.as_bytes()).map_err(|e| key_error(&path, e))?;
        fs::write(data_dir.join(PUBLIC_KEY_FILE), public.as_bytes())
            .map_err(|e| key_error(&path, e))?;
        tracing::info!(path = %path.display(), "generated a new token signing key");
        Ok(Keys {
            secret: kp.secret,
            public: kp.public,
        })
    }

    /// Loads an existing key pair from `data_dir`.
    pub fn load(data_dir: &Path) -> anyhow::Result<Keys> {
        let path = data_dir.join(SIGNING_KEY_FILE);
        let text = fs::read_to_string(&path).map_err(|e| key_error(&path, e))?;
        let secret = AsymmetricSecretKey::<V4>::try_from(text.trim())
            .map_err(|e| key_error(&path, format!("not a k4.secret key: {e:?}")))?;
        let public = AsymmetricPublicKey::<V4>::try_from(&secret)
            .map_err(|e| key_error(&path, format!("{e:?}")))?;
        Ok(Keys { secret, public })
    }

    /// The public key in PASERK form (`k4.public.…`).
    pub fn public_paserk(&self) -> String {
        let mut s = String::new();
        // Formatting into a String cannot fail.
        let _ = self.public.fmt(&mut s);
        s
    }

    /// Signs a token for `member` of `process` with `role`, valid until `expires_at`.
    pub fn issue(
        &self,
        member: &MemberId,
        process: &ProcessId,
        role: Role,
        expires_at: SystemTime,
    ) -> anyhow::Result<String> {
        let mut claims = Claims::new()?;
        claims.expiration(&humantime::format_rfc3339_seconds(expires_at).to_string())?;
        claims.subject(member.as_str())?;
        claims.add_additional("pid", process.as_str())?;
        claims.add_additional("role", role.as_str())?;
        Ok(public::sign(
            &self.secret,
            &claims,
            None,
            Some(IMPLICIT_ASSERTION),
        )?)
    }

    /// Signs a token valid for `ttl` from now.
    pub fn issue_for(
        &self,
        member: &MemberId,
        process: &ProcessId,
        role: Role,
        ttl: Duration,
    ) -> anyhow::Result<(String, SystemTime)> {
        let expires_at = SystemTime::now() + ttl;
        Ok((self.issue(member, process, role, expires_at)?, expires_at))
    }

    /// Verifies a token's signature and expiry and reads its claims.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let untrusted =
            UntrustedToken::<Public, V4>::try_from(token).map_err(|_| TokenError::Malformed)?;
        let trusted = public::verify(
            &self.public,
            &untrusted,
            &ClaimsValidationRules::new(),
            None,
            Some(IMPLICIT_ASSERTION),
        )
        .map_err(|e| match e {
            PasetoError::ClaimValidation(ClaimValidationError::Exp) => TokenError::Expired,
            PasetoError::ClaimValidation(_) | PasetoError::ClaimInvalidJson => {
                TokenError::MissingClaims
            }
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
        let member = MemberId(text("sub")?);
        let process = ProcessId(text("pid")?);
        let role = Role::parse(&text("role")?).ok_or(TokenError::MissingClaims)?;
        let expires_at = humantime::parse_rfc3339_weak(&text("exp")?)
            .ok()
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(TokenClaims {
            member,
            process,
            role,
            expires_at,
        })
    }
}

/// The operator's admin secret, created on first start (mode 0600).
pub fn load_or_create_admin_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = admin_secret_path(data_dir);
    if let Ok(s) = fs::read_to_string(&path) {
        let s = s.trim().to_owned();
        if s.len() >= 32 {
            return Ok(s);
        }
    }
    let key = pasetors::keys::SymmetricKey::<V4>::generate()?;
    let secret: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
    write_private_file(&path, secret.as_bytes()).map_err(|e| key_error(&path, e))?;
    Ok(secret)
}

/// Where the admin secret lives.
pub fn admin_secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ADMIN_SECRET_FILE)
}

/// Compares two secrets in time independent of where they differ.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_fail_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(dir.path()).unwrap();
        let m = MemberId::from("m1");
        let p = ProcessId::from("p1");
        let (t, _) = keys
            .issue_for(&m, &p, Role::Drafter, Duration::from_secs(60))
            .unwrap();
        let c = keys.verify(&t).unwrap();
        assert_eq!(
            (c.member, c.process, c.role),
            (m.clone(), p.clone(), Role::Drafter)
        );

        let past = SystemTime::now() - Duration::from_secs(3600);
        let expired = keys.issue(&m, &p, Role::Drafter, past).unwrap();
        assert_eq!(keys.verify(&expired), Err(TokenError::Expired));

        let other = tempfile::tempdir().unwrap();
        let forger = Keys::load_or_create(other.path()).unwrap();
        let (forged, _) = forger
            .issue_for(&m, &p, Role::Facilitator, Duration::from_secs(60))
            .unwrap();
        assert_eq!(keys.verify(&forged), Err(TokenError::BadSignature));
        assert_eq!(keys.verify("hello"), Err(TokenError::Malformed));
        assert_eq!(keys.verify(""), Err(TokenError::Missing));

        // Reloading gives the same key.
        let again = Keys::load_or_create(dir.path()).unwrap();
        assert!(again.verify(&t).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(SIGNING_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
