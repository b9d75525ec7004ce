//! `palisade keys history export|import`: the signing history in an interchange document, to
//! move a node's protection with its key (Lighthouse's EIP-3076 slashing-protection
//! interchange, for one author and one number).
//!
//! ```json
//! {"format": "palisade-signing-history", "version": 1, "author": "<64 hex>",
//!  "highest_signed_seq": 42, "record_id": "<64 hex>"}
//! ```
//!
//! `highest_signed_seq` and `record_id` are `null` for a node that never signed. An import
//! never lowers the history (a higher local seq is kept and said), refuses a document of
//! another author than the node's key, and needs the node stopped (the running node writes
//! the file).

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use palisade_store::{Signed, SigningHistory, Store, StoreConfig, StoreError, SIGNING_HISTORY_FILE};
use palisade_types::{AuthorKey, RecordId};
use serde::{Deserialize, Serialize};

use crate::paths::Paths;
use crate::ConfigError;

/// The document's `format`.
const FORMAT: &str = "palisade-signing-history";
/// The document's `version`.
const VERSION: u32 = 1;
/// Largest document read (a real one is under 300 bytes).
const MAX_DOCUMENT_BYTES: u64 = 64 * 1024;

/// The interchange document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interchange {
    /// Always `palisade-signing-history`.
    pub format: String,
    /// Always 1.
    pub version: u32,
    /// The author (64 hex).
    pub author: String,
    /// The highest seq ever signed, or `null`.
    pub highest_signed_seq: Option<u64>,
    /// Its record id (64 hex), or `null`.
    pub record_id: Option<String>,
}

impl Interchange {
    fn of(author: AuthorKey, highest: Option<Signed>) -> Interchange {
        Interchange {
            format: FORMAT.into(),
            version: VERSION,
            author: author.to_string(),
            highest_signed_seq: highest.map(|s| s.seq),
            record_id: highest.map(|s| s.id.to_hex()),
        }
    }

    /// The author and the highest signed record, checked.
    fn parse(&self) -> anyhow::Result<(AuthorKey, Option<Signed>)> {
        if self.format != FORMAT || self.version != VERSION {
            anyhow::bail!(
                "not a signing-history interchange document: format {:?} version {} (expected {FORMAT:?} version {VERSION})",
                self.format,
                self.version
            );
        }
        let author: AuthorKey =
            self.author.parse().map_err(|e| anyhow::anyhow!("`author` {:?}: {e}", self.author))?;
        let highest = match (self.highest_signed_seq, &self.record_id) {
            (None, None) => None,
            (Some(seq), Some(id)) if seq >= 1 => {
                let id: RecordId = id.parse().map_err(|e| anyhow::anyhow!("`record_id` {id:?}: {e}"))?;
                Some(Signed { seq, id })
            }
            _ => anyhow::bail!(
                "`highest_signed_seq` (at least 1) and `record_id` come together, or are both null"
            ),
        };
        Ok((author, highest))
    }
}

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
        .take(MAX_DOCUMENT_BYTES)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let doc: Interchange = serde_json::from_str(&text).map_err(|e| {
        ConfigError(format!("{} is not a signing-history interchange document: {e}", file.display()))
    })?;
    let (author, highest) = doc.parse().map_err(|e| ConfigError(format!("{}: {e:#}", file.display())))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip_and_bad_ones_are_refused() {
        let author = AuthorKey([3; 32]);
        let doc = Interchange::of(author, Some(Signed { seq: 42, id: RecordId([9; 32]) }));
        let text = serde_json::to_string(&doc).unwrap();
        let back: Interchange = serde_json::from_str(&text).unwrap();
        assert_eq!(back.parse().unwrap(), (author, Some(Signed { seq: 42, id: RecordId([9; 32]) })));
        assert_eq!(Interchange::of(author, None).parse().unwrap(), (author, None));
        for bad in [
            Interchange { version: 2, ..doc.clone() },
            Interchange { format: "eip-3076".into(), ..doc.clone() },
            Interchange { record_id: None, ..doc.clone() },
            Interchange { highest_signed_seq: Some(0), ..doc.clone() },
            Interchange { author: "xyz".into(), ..doc.clone() },
            Interchange { record_id: Some("00".into()), ..doc.clone() },
        ] {
            assert!(bad.parse().is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<Interchange>(&text.replace("\"version\"", "\"extra\":1,\"version\""))
            .is_err());
    }
}
