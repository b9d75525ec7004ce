//! The node key file: one ed25519 seed, kept like an ssh private key.
//!
//! The seed is the record-signing (author) key. The libp2p identity is derived from it with
//! blake3 `derive_key("palisade libp2p-identity v1", seed)`, so one file backs up the node
//! while the two keys never sign each other's messages (domain separation).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use palisade_types::ed25519_dalek::SigningKey;
use palisade_types::AuthorKey;

/// File name of the key inside the data directory.
pub const KEY_FILE: &str = "node.key";

/// The node's keys.
pub struct NodeKeys {
    /// Signs records.
    pub author: SigningKey,
    /// The libp2p identity (peer id).
    pub identity: libp2p::identity::Keypair,
}

impl NodeKeys {
    fn from_seed(seed: [u8; 32]) -> anyhow::Result<NodeKeys> {
        let author = SigningKey::from_bytes(&seed);
        let identity_seed = blake3::derive_key("palisade libp2p-identity v1", &seed);
        let identity = libp2p::identity::Keypair::ed25519_from_bytes(identity_seed)
            .context("deriving the libp2p identity key")?;
        Ok(NodeKeys { author, identity })
    }

    /// The author key (public).
    pub fn author_key(&self) -> AuthorKey {
        AuthorKey(self.author.verifying_key().to_bytes())
    }

    /// The peer id.
    pub fn peer_id(&self) -> libp2p::PeerId {
        self.identity.public().to_peer_id()
    }
}

/// Creates a new key file with mode 0600. Fails if it already exists.
pub fn create(path: &Path) -> anyhow::Result<NodeKeys> {
    let mut seed = [0u8; 32];
    getrandom_seed(&mut seed)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    writeln!(file, "# palisade node key: ed25519 seed (hex). Keep it secret; back it up.")?;
    writeln!(file, "{}", hex::encode(seed))?;
    file.sync_all()?;
    NodeKeys::from_seed(seed)
}

fn getrandom_seed(seed: &mut [u8; 32]) -> anyhow::Result<()> {
    use rand_core::RngCore;
    rand_core::OsRng
        .try_fill_bytes(seed)
        .map_err(|e| anyhow::anyhow!("no OS randomness for the node key: {e}"))
}

/// Loads the key file, refusing one that group or others can read.
pub fn load(path: &Path) -> anyhow::Result<NodeKeys> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "key file {} is not a regular file (a directory?): move it away and restore node.key from your backup",
            path.display()
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "key file {} has permissions {:o}: it must not be readable by group or others. Fix: chmod 600 {}",
            path.display(),
            mode,
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
    let mut seed = [0u8; 32];
    hex::decode_to_slice(line, &mut seed).map_err(|_| {
        anyhow::anyhow!(
            "key file {} is not a palisade key (expected one line of 64 hex characters); restore it from a backup or move it away and run `palisade init`",
            path.display()
        )
    })?;
    NodeKeys::from_seed(seed)
}

/// Loads the key, creating it first if missing.
pub fn load_or_create(path: &Path) -> anyhow::Result<(NodeKeys, bool)> {
    if path.exists() {
        Ok((load(path)?, false))
    } else {
        Ok((create(path)?, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_gives_the_same_keys_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(KEY_FILE);
        let a = create(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let b = load(&p).unwrap();
        assert_eq!(a.author_key(), b.author_key());
        assert_eq!(a.peer_id(), b.peer_id());
        assert!(create(&p).is_err(), "never overwrite a key");
    }

    #[test]
    fn readable_key_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(KEY_FILE);
        create(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&p).err().unwrap().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn garbage_key_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(KEY_FILE);
        std::fs::write(&p, "hello\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&p).is_err());
    }
}
