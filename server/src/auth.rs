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
use pasetors::claims::Claims;
use pasetors::keys::{AsymmetricKeyPair, AsymmetricPublicKey, AsymmetricSecretKey, Generate};
use pasetors::paserk::FormatAsPaserk;
use pasetors::public;
use pasetors::version4::V4;

pub use klad_sync::token::{
    GENERATION_CLAIM, IMPLICIT_ASSERTION, PublicKey, TokenClaims, TokenError,
};

/// File names inside the data directory.
pub const SIGNING_KEY_FILE: &str = "signing-key.paserk";
/// The public key, readable by anyone who needs to verify tokens.
pub const PUBLIC_KEY_FILE: &str = "public-key.paserk";
/// The operator's secret for the admin HTTP API (used by the command line).
pub const ADMIN_SECRET_FILE: &str = "admin-secret";

/// The server's signing key pair.
pub struct Keys {
    secret: AsymmetricSecretKey<V4>,
    public: PublicKey,
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
            public: kp.public.into(),
        })
    }

    /// Loads the key pair kept in `store` (under [`crate::store::signing_key_key`]),
    /// generating and storing it on first start. Used with a shared store
    /// (PostgreSQL), so that every node signs and verifies with one key.
    ///
    /// Nodes starting on an empty database at the same moment agree on the
    /// first key stored (a conditional put).
    pub fn load_or_create_in(store: &klad_store::PgStore) -> anyhow::Result<Keys> {
        use klad_store::KvStore;
        let key = crate::store::signing_key_key()?;
        let stored_error = |e: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "The token signing key stored in the database is not readable ({e}). Restore it from a backup of the database (a new key invalidates every token)."
            )
        };
        let bytes = match store.get(&key)? {
            Some(bytes) => bytes,
            None => {
                let kp = AsymmetricKeyPair::<V4>::generate()?;
                let mut secret = String::new();
                kp.secret.fmt(&mut secret)?;
                // Nodes starting together on an empty database: the first
                // key stored is everyone's.
                let stored = store.put_if_absent(&key, secret.as_bytes())?;
                if stored == secret.as_bytes() {
                    tracing::info!("generated a new token signing key in the store");
                }
                stored
            }
        };
        let text = String::from_utf8(bytes).map_err(|e| stored_error(&e))?;
        let secret = AsymmetricSecretKey::<V4>::try_from(text.trim())
            .map_err(|e| stored_error(&format!("not a k4.secret key: {e:?}")))?;
        let public = AsymmetricPublicKey::<V4>::try_from(&secret)
            .map_err(|e| stored_error(&format!("{e:?}")))?;
        Ok(Keys {
            secret,
            public: public.into(),
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
        Ok(Keys {
            secret,
            public: public.into(),
        })
    }

    /// The public key in PASERK form (`k4.public.…`).
    pub fn public_paserk(&self) -> String {
        self.public.to_paserk()
    }

    /// Signs a token for `member` of `process` with `role`, valid until
    /// `expires_at`, of the member's token `generation` (see
    /// [`TokenClaims::generation`]).
    pub fn issue(
        &self,
        member: &MemberId,
        process: &ProcessId,
        role: Role,
        expires_at: SystemTime,
        generation: u64,
    ) -> anyhow::Result<String> {
        let mut claims = Claims::new()?;
        claims.expiration(&humantime::format_rfc3339_seconds(expires_at).to_string())?;
        claims.subject(member.as_str())?;
        claims.add_additional("pid", process.as_str())?;
        claims.add_additional("role", role.as_str())?;
        claims.add_additional(GENERATION_CLAIM, generation)?;
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
        generation: u64,
    ) -> anyhow::Result<(String, SystemTime)> {
        let expires_at = SystemTime::now() + ttl;
        Ok((
            self.issue(member, process, role, expires_at, generation)?,
            expires_at,
        ))
    }

    /// Verifies a token's signature and expiry and reads its claims.
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        self.public.verify(token)
    }

    /// A key for `purpose` derived from the signing key (SHA-256 of the
    /// purpose and the secret key): every node that shares the signing key
    /// derives the same one, nobody else can.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(self.secret.as_bytes());
        h.finalize().into()
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

/// With several nodes on one database: the one admin secret they share.
/// The first node stores its own; every node writes the shared one into its
/// data directory, where the local command line reads it, so the command
/// line of any node may call any node (and through it the node that serves
/// a process).
pub fn share_admin_secret(
    store: &klad_store::PgStore,
    data_dir: &Path,
    local: String,
) -> anyhow::Result<String> {
    let key = klad_store::Key::new(["klad-server", "admin-secret"])?;
    let shared = store.put_if_absent(&key, local.as_bytes())?;
    let shared = String::from_utf8(shared)
        .ok()
        .filter(|s| s.len() >= 32)
        .ok_or_else(|| anyhow::anyhow!("The admin secret stored in the database is damaged. Delete the row of key klad-server/admin-secret (every node then takes the next one stored) and start the nodes again."))?;
    if shared != local {
        let path = admin_secret_path(data_dir);
        write_private_file(&path, shared.as_bytes()).map_err(|e| key_error(&path, e))?;
    }
    Ok(shared)
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
            .issue_for(&m, &p, Role::Drafter, Duration::from_secs(60), 2)
            .unwrap();
        let c = keys.verify(&t).unwrap();
        assert_eq!(
            (c.member, c.process, c.role, c.generation),
            (m.clone(), p.clone(), Role::Drafter, 2)
        );

        let past = SystemTime::now() - Duration::from_secs(3600);
        let expired = keys.issue(&m, &p, Role::Drafter, past, 0).unwrap();
        assert_eq!(keys.verify(&expired), Err(TokenError::Expired));

        let other = tempfile::tempdir().unwrap();
        let forger = Keys::load_or_create(other.path()).unwrap();
        let (forged, _) = forger
            .issue_for(&m, &p, Role::Facilitator, Duration::from_secs(60), 0)
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
