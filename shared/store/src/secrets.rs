//! Secrets at rest: AES-256-GCM under `security.master_key`, each value bound (as associated
//! data) to the column and row it belongs to, so ciphertexts cannot be swapped between rows.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set};
use secrecy::{ExposeSecret, SecretString};

use crate::entity::key_check;

const PREFIX: &str = "v1:";

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    mac.update(data);
    mac.finalize().into_bytes().into()
}
const CHECK_PLAINTEXT: &str = "feishu-bridge master key check";

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("security.master_key must be 32 bytes in base64 (got {0} bytes)")]
    KeyLength(usize),
    #[error("security.master_key is not valid base64")]
    KeyEncoding,
    #[error("a stored secret cannot be decrypted: security.master_key is not the key the database was written with")]
    WrongKey,
    #[error("a stored secret is malformed ({0})")]
    Malformed(&'static str),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

/// The master key. Its `Debug` shows nothing.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
    /// HMAC-SHA256 of the key over a fixed label: the root of [`MasterKey::derive`].
    derive_root: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl MasterKey {
    /// Parses the base64 form used in settings.
    pub fn from_base64(key: &SecretString) -> Result<Self, SecretError> {
        let bytes = B64
            .decode(key.expose_secret().trim())
            .map_err(|_| SecretError::KeyEncoding)?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        let cipher =
            Aes256Gcm::new_from_slice(bytes).map_err(|_| SecretError::KeyLength(bytes.len()))?;
        let derive_root = hmac_sha256(bytes, b"feishu-bridge key derivation v1");
        Ok(Self {
            cipher,
            derive_root,
        })
    }

    /// A 32-byte key for one purpose (e.g. signing auth's login-state cookies), derived from
    /// the master key: stable across restarts and replicas, independent per purpose.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        hmac_sha256(&self.derive_root, purpose.as_bytes())
    }

    /// A fresh random key, base64 encoded (for `all` mode's generated key file).
    pub fn generate_base64() -> SecretString {
        let bytes: [u8; 32] = rand::random();
        SecretString::from(B64.encode(bytes))
    }

    /// Encrypts `plaintext` bound to `context` (e.g. `app_bindings.app_secret:cli_...`).
    pub fn seal(&self, plaintext: &str, context: &str) -> String {
        let nonce_bytes: [u8; 12] = rand::random();
        let nonce = Nonce::from_slice(&nonce_bytes);
        // Encryption with a valid key and in-memory buffers cannot fail.
        let ct = self
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Decrypts what [`MasterKey::seal`] produced for the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, SecretError> {
        let b64 = sealed
            .strip_prefix(PREFIX)
            .ok_or(SecretError::Malformed("unknown version"))?;
        let raw = B64
            .decode(b64)
            .map_err(|_| SecretError::Malformed("not base64"))?;
        if raw.len() < 12 + 16 {
            return Err(SecretError::Malformed("too short"));
        }
        let (nonce, ct) = raw.split_at(12);
        let pt = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(pt)
            .map(SecretString::from)
            .map_err(|_| SecretError::Malformed("not UTF-8"))
    }

    /// On first start, stores a check value; afterwards, fails with a clear error when this
    /// key cannot open it (the operator passed a different key).
    pub async fn verify_against(&self, db: &DatabaseConnection) -> Result<(), SecretError> {
        match key_check::Entity::find_by_id(1).one(db).await? {
            Some(row) => {
                let v = self.open(&row.verifier, "key_check")?;
                if v.expose_secret() != CHECK_PLAINTEXT {
                    return Err(SecretError::WrongKey);
                }
                Ok(())
            }
            None => {
                key_check::ActiveModel {
                    id: Set(1),
                    verifier: Set(self.seal(CHECK_PLAINTEXT, "key_check")),
                }
                .insert(db)
                .await?;
                Ok(())
            }
        }
    }
}

/// Reads the master key from `path`, creating it (mode 0600) when missing. Used only by
/// `all` mode when no `security.master_key` is configured.
pub fn load_or_create_key_file(path: &std::path::Path) -> anyhow::Result<(SecretString, bool)> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read master key file {}: {e}", path.display()))?;
        return Ok((SecretString::from(text.trim().to_string()), false));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let key = MasterKey::generate_base64();
    write_private(path, key.expose_secret())?;
    Ok((key, true))
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create master key file {}: {e}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_bytes(&[7u8; 32]).unwrap()
    }

    #[test]
    fn round_trip_and_ciphertext_differs() {
        let k = key();
        let sealed = k.seal("app-secret-value", "ctx");
        assert!(!sealed.contains("app-secret-value"));
        assert_ne!(sealed, k.seal("app-secret-value", "ctx"), "nonces differ");
        assert_eq!(
            k.open(&sealed, "ctx").unwrap().expose_secret(),
            "app-secret-value"
        );
    }

    #[test]
    fn wrong_key_or_context_fails_clearly() {
        let sealed = key().seal("x", "ctx");
        let other = MasterKey::from_bytes(&[8u8; 32]).unwrap();
        let e = other.open(&sealed, "ctx").unwrap_err();
        assert!(matches!(e, SecretError::WrongKey));
        assert!(e.to_string().contains("security.master_key"));
        assert!(matches!(
            key().open(&sealed, "other"),
            Err(SecretError::WrongKey)
        ));
    }

    #[test]
    fn key_parsing() {
        assert!(matches!(
            MasterKey::from_base64(&SecretString::from("c2hvcnQ=")),
            Err(SecretError::KeyLength(5))
        ));
        assert!(matches!(
            MasterKey::from_base64(&SecretString::from("!!")),
            Err(SecretError::KeyEncoding)
        ));
        assert!(MasterKey::from_base64(&MasterKey::generate_base64()).is_ok());
        assert_eq!(format!("{:?}", key()), "MasterKey([REDACTED])");
    }

    #[test]
    fn key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let (k1, created) = load_or_create_key_file(&path).unwrap();
        assert!(created);
        let (k2, created) = load_or_create_key_file(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.expose_secret(), k2.expose_secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
