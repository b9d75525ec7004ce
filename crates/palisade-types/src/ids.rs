//! Fixed-size identifiers: record ids, author keys, anomaly fingerprints.
//!
//! All are 32 bytes on the wire (no length prefix) and lowercase hex in JSON and logs.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte identifier could not be parsed from hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 lowercase hex characters (32 bytes), got {got:?}")]
pub struct ParseIdError {
    /// What was given (truncated to 80 characters).
    pub got: String,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(self.0))
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, ParseIdError> {
                // One spelling per id: uppercase hex is refused, not folded.
                if s.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(ParseIdError { got: s.chars().take(80).collect() });
                }
                let mut out = [0u8; 32];
                match hex::decode_to_slice(s, &mut out) {
                    Ok(()) => Ok(Self(out)),
                    Err(_) => Err(ParseIdError { got: s.chars().take(80).collect() }),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A record's id: `blake3::derive_key("palisade record-id v1", PAE(payload_type, payload))`.
    /// It covers the signed bytes but not the signature, so dedup works before any signature
    /// check.
    RecordId
);

id_type!(
    /// An author: the 32-byte compressed ed25519 public key that signs the author's feed.
    AuthorKey
);

id_type!(
    /// An anomaly's dedup key: blake3 of its canonical (sorted) labels. See
    /// [`crate::Anomaly::fingerprint`].
    Fingerprint
);
