//! `palisade keys history export|import`: the signing history as the interchange document of
//! [`palisade_store::Interchange`]. An import never lowers the history (a higher local seq is
//! kept and said), refuses a document of another author than the node's key, and needs the
//! node stopped (the running node writes the file).

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use palisade_store::{
    Interchange, SigningHistory, Store, StoreConfig, StoreError, MAX_INTERCHANGE_BYTES, SIGNING_HISTORY_FILE,
};
use palisade_types::AuthorKey;

use crate::paths::Paths;
use crate::ConfigError;

fn node_author(paths: &Paths) -> anyhow::Result<AuthorKey> {
    let keys = crate::keys::load(&paths.key_file()).map_err(|e| ConfigError(format!("{e:#}")))?;
    Ok(keys.author_key())
}

/// The node's history as a document (an absent file is a node that never signed).
pub fn export(paths: &Paths) -> anyhow::Result<Interchange> {
    let author = node_author(paths)?;
    let path = paths.data_dir.join(SIGNING_HISTORY_FILE);
    if !path.exists() {
        return Ok(Interchange::of(author, None));
    }
    let history = SigningHistory::open(&path, author).map_err(|e| ConfigError(e.to_string()))?;
    Ok(Interchange::of(author, history.highest()))
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// The highest signed seq before.
    pub before: Option<u64>,
    /// The highest signed seq now.
    pub after: Option<u64>,
}

/// Merges the document at `file` into the node's history (never lowering it).
pub fn import(paths: &Paths, file: &Path) -> anyhow::Result<Imported> {
    let mut text = String::new();
    std::fs::File::open(file)
        .with_context(|| format!("cannot open {}", file.display()))?
        .take(MAX_INTERCHANGE_BYTES)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let doc: Interchange = serde_json::from_str(&text).map_err(|e| {
        ConfigError(format!("{} is not a signing-history interchange document: {e}", file.display()))
    })?;
    let (author, highest) = doc.parse().map_err(|e| ConfigError(format!("{}: {e}", file.display())))?;
    let own = node_author(paths)?;
    if author != own {
        return Err(ConfigError(format!(
            "{} is the signing history of author {author}, but this node's key is author {own}: import it beside the key it belongs to",
            file.display()
        ))
        .into());
    }
    // The running node writes the history: importing beside it could be undone by its next
    // write. Its store lock says whether it runs.
    match Store::open(&StoreConfig::new(paths.db_dir())) {
        Ok(_) => {}
        Err(e @ StoreError::Locked { .. }) => {
            return Err(
                ConfigError(format!("{e}; stop the node before `palisade keys history import`")).into()
            )
        }
        Err(e) => return Err(e).context("opening the store to check that the node is stopped"),
    }
    let path = paths.data_dir.join(SIGNING_HISTORY_FILE);
    let history = SigningHistory::open(&path, own).map_err(|e| ConfigError(e.to_string()))?;
    let before = history.highest().map(|s| s.seq);
    if let Some(signed) = highest {
        history.record(signed).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Imported { before, after: history.highest().map(|s| s.seq) })
}
