//! The signing history's interchange document (issue 15): the highest seq an author ever
//! signed, to move a node's protection against signing twice with its key (Lighthouse's
//! EIP-3076 slashing-protection interchange, for one author and one number).
//!
//! ```json
//! {"format": "palisade-signing-history", "version": 1, "author": "<64 hex>",
//!  "highest_signed_seq": 42, "record_id": "<64 hex>"}
//! ```
//!
//! `highest_signed_seq` and `record_id` are `null` for a node that never signed. The
//! document comes from a file an operator hands over: [`Interchange::parse`] checks every
//! field and never panics (fuzz target `signing_history`).

use palisade_types::{AuthorKey, RecordId};
use serde::{Deserialize, Serialize};

use crate::Signed;

/// The document's `format`.
const FORMAT: &str = "palisade-signing-history";
/// The document's `version`.
const VERSION: u32 = 1;
/// Largest document a reader should accept, in bytes (a real one is under 300).
pub const MAX_INTERCHANGE_BYTES: u64 = 64 * 1024;

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
    /// The document of `author`'s history whose highest signed record is `highest`.
    pub fn of(author: AuthorKey, highest: Option<Signed>) -> Interchange {
        Interchange {
            format: FORMAT.into(),
            version: VERSION,
            author: author.to_string(),
            highest_signed_seq: highest.map(|s| s.seq),
            record_id: highest.map(|s| s.id.to_hex()),
        }
    }

    /// The author and the highest signed record, checked.
    pub fn parse(&self) -> Result<(AuthorKey, Option<Signed>), String> {
        if self.format != FORMAT || self.version != VERSION {
            return Err(format!(
                "not a signing-history interchange document: format {:?} version {} (expected {FORMAT:?} version {VERSION})",
                self.format, self.version
            ));
        }
        let author: AuthorKey =
            self.author.parse().map_err(|e| format!("`author` {:?}: {e}", self.author))?;
        let highest = match (self.highest_signed_seq, &self.record_id) {
            (None, None) => None,
            (Some(seq), Some(id)) if seq >= 1 => {
                let id: RecordId = id.parse().map_err(|e| format!("`record_id` {id:?}: {e}"))?;
                Some(Signed { seq, id })
            }
            _ => {
                return Err(
                    "`highest_signed_seq` (at least 1) and `record_id` come together, or are both null"
                        .into(),
                )
            }
        };
        Ok((author, highest))
    }
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
