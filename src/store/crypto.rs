//! Envelope encryption of biometric records with AES-256-GCM.
//!
//! Every record gets its own random 256-bit data key; the record is sealed with the data key and
//! the data key is sealed with the master key. Both seals carry the record's binding (tenant, kind
//! and identifier) as associated data, so a record copied under another speaker or tenant fails to
//! open. Sealed layout: `b"VPE1" | wrap nonce (12) | wrapped data key (48) | data nonce (12) | ciphertext`.

use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};

use super::StoreError;

const MAGIC: &[u8; 4] = b"VPE1";
const NONCE_LEN: usize = 12;
const WRAPPED_LEN: usize = 32 + 16;
const HEADER_LEN: usize = 4 + NONCE_LEN + WRAPPED_LEN + NONCE_LEN;

/// Environment variable holding the master key (64 hex digits or standard base64 of 32 bytes).
pub const MASTER_KEY_ENV: &str = "VOICEPRINT_MASTER_KEY";

/// The 256-bit key that wraps every record's data key. Never logged, zeroed on drop.
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        // Best effort; volatile writes keep the compiler from eliding the wipe.
        for b in &mut self.0 {
            // SAFETY: `b` is a valid, aligned, exclusive reference to a byte.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// Where the master key came from, for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The `VOICEPRINT_MASTER_KEY` environment variable.
    Env,
    /// An existing key file.
    File(PathBuf),
    /// A key file created on this run (first start without a key).
    Created(PathBuf),
}

impl MasterKey {
    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// Parses 64 hex digits or base64 of exactly 32 bytes (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        use base64::Engine as _;
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).map_err(|e| StoreError::MasterKey(format!("bad hex: {e}")))?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|_| StoreError::MasterKey("neither 64 hex digits nor base64".into()))?
        };
        let arr: [u8; 32] = bytes.try_into().map_err(|v: Vec<u8>| {
            StoreError::MasterKey(format!("must be 32 bytes, got {}", v.len()))
        })?;
        Ok(Self(arr))
    }

    /// Resolves the master key: `VOICEPRINT_MASTER_KEY` if set, else `key_file` if it exists, else
    /// a new random key written to `key_file` with mode 0600.
    pub fn resolve(key_file: &Path) -> Result<(Self, KeySource), StoreError> {
        if let Ok(v) = std::env::var(MASTER_KEY_ENV)
            && !v.trim().is_empty()
        {
            return Ok((Self::parse(&v)?, KeySource::Env));
        }
        match std::fs::read_to_string(key_file) {
            Ok(text) => Ok((Self::parse(&text)?, KeySource::File(key_file.to_path_buf()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                write_private(key_file, hex::encode(key.0).as_bytes())?;
                Ok((key, KeySource::Created(key_file.to_path_buf())))
            }
            Err(e) => Err(StoreError::Io(key_file.to_path_buf(), e)),
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
    }

    /// Seals `plaintext` bound to `binding` (associated data).
    pub fn seal(&self, binding: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut dk = [0u8; 32];
        OsRng.fill_bytes(&mut dk);
        let mut wrap_nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut wrap_nonce);
        let mut data_nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut data_nonce);
        let wrapped = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&wrap_nonce),
                Payload {
                    msg: &dk,
                    aad: binding,
                },
            )
            .map_err(|_| StoreError::Crypto("wrapping the data key failed"))?;
        let ct = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&dk))
            .encrypt(
                Nonce::from_slice(&data_nonce),
                Payload {
                    msg: plaintext,
                    aad: binding,
                },
            )
            .map_err(|_| StoreError::Crypto("encrypting the record failed"))?;
        dk.fill(0);
        let mut out = Vec::with_capacity(HEADER_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&wrap_nonce);
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&data_nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a record sealed by [`MasterKey::seal`] with the same binding.
    pub fn open(&self, binding: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        if sealed.len() < HEADER_LEN + 16 || &sealed[..4] != MAGIC {
            return Err(StoreError::Crypto("sealed record is malformed"));
        }
        let (wrap_nonce, rest) = sealed[4..].split_at(NONCE_LEN);
        let (wrapped, rest) = rest.split_at(WRAPPED_LEN);
        let (data_nonce, ct) = rest.split_at(NONCE_LEN);
        let mut dk = self
            .cipher()
            .decrypt(
                Nonce::from_slice(wrap_nonce),
                Payload {
                    msg: wrapped,
                    aad: binding,
                },
            )
            .map_err(|_| {
                StoreError::Crypto("data key does not open (wrong master key or record moved)")
            })?;
        let pt = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&dk))
            .decrypt(
                Nonce::from_slice(data_nonce),
                Payload {
                    msg: ct,
                    aad: binding,
                },
            )
            .map_err(|_| StoreError::Crypto("record does not open (tampered or moved)"));
        dk.fill(0);
        pt
    }
}

/// Writes a file readable only by its owner (0600 on Unix), failing if it already exists.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let io = |e| StoreError::Io(path.to_path_buf(), e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_binding() {
        let k = MasterKey::generate();
        let s = k.seal(b"t\0speaker\0alice", b"secret").unwrap();
        assert_eq!(k.open(b"t\0speaker\0alice", &s).unwrap(), b"secret");
        assert!(k.open(b"t\0speaker\0bob", &s).is_err());
        assert!(k.open(b"u\0speaker\0alice", &s).is_err());
        assert!(
            MasterKey::generate()
                .open(b"t\0speaker\0alice", &s)
                .is_err()
        );
        let mut bad = s.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(k.open(b"t\0speaker\0alice", &bad).is_err());
        assert!(k.open(b"x", &s[..10]).is_err());
    }

    #[test]
    fn parse_hex_and_base64() {
        let hexkey = "00".repeat(31) + "ff";
        assert_eq!(MasterKey::parse(&hexkey).unwrap().0[31], 0xff);
        let b64 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert_eq!(MasterKey::parse(b64).unwrap().0, [0u8; 32]);
        assert!(MasterKey::parse("abcd").is_err());
    }

    #[test]
    fn key_file_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("master.key");
        // Only meaningful when the env var is not set in the test environment.
        if std::env::var(MASTER_KEY_ENV).is_ok() {
            return;
        }
        let (k1, src1) = MasterKey::resolve(&p).unwrap();
        assert!(matches!(src1, KeySource::Created(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (k2, src2) = MasterKey::resolve(&p).unwrap();
        assert!(matches!(src2, KeySource::File(_)));
        assert_eq!(k1.0, k2.0);
    }
}
