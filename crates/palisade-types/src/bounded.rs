//! Length-bounded strings, byte strings and lists.
//!
//! The decoder reads a length prefix and refuses it if it exceeds the bound, before allocating.
//! `serde` deserialisation (the admin API's JSON) checks the same bound, so a value that exists
//! in memory always fits the wire format.

use std::fmt;
use std::ops::Deref;

use bincode::de::read::Reader;
use bincode::de::{BorrowDecoder, Decoder};
use bincode::enc::write::Writer;
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{BorrowDecode, Decode, Encode};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value was longer than its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("length {len} exceeds the maximum of {max}")]
pub struct TooLong {
    /// Actual length (bytes for strings, entries for lists).
    pub len: usize,
    /// The bound.
    pub max: usize,
}

fn decode_len<D: Decoder>(decoder: &mut D, max: usize) -> Result<usize, DecodeError> {
    let len = u64::decode(decoder)?;
    if len > max as u64 {
        return Err(DecodeError::OtherString(format!("length prefix {len} exceeds the maximum of {max}")));
    }
    // `len <= max` and `max` is a usize, so this cannot truncate.
    Ok(len as usize)
}

fn decode_bytes<D: Decoder>(decoder: &mut D, max: usize) -> Result<Vec<u8>, DecodeError> {
    let len = decode_len(decoder, max)?;
    decoder.claim_bytes_read(len)?;
    let mut buf = vec![0u8; len];
    decoder.reader().read(&mut buf)?;
    Ok(buf)
}

/// A UTF-8 string of at most `MAX` bytes.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundedString<const MAX: usize>(String);

impl<const MAX: usize> BoundedString<MAX> {
    /// Wraps `s` if it fits.
    pub fn new(s: impl Into<String>) -> Result<Self, TooLong> {
        let s = s.into();
        if s.len() > MAX {
            return Err(TooLong { len: s.len(), max: MAX });
        }
        Ok(Self(s))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Unwraps the string.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl<const MAX: usize> Deref for BoundedString<MAX> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> fmt::Debug for BoundedString<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<const MAX: usize> fmt::Display for BoundedString<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> TryFrom<&str> for BoundedString<MAX> {
    type Error = TooLong;
    fn try_from(s: &str) -> Result<Self, TooLong> {
        Self::new(s)
    }
}

impl<const MAX: usize> TryFrom<String> for BoundedString<MAX> {
    type Error = TooLong;
    fn try_from(s: String) -> Result<Self, TooLong> {
        Self::new(s)
    }
}

impl<const MAX: usize> Encode for BoundedString<MAX> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        (self.0.len() as u64).encode(encoder)?;
        encoder.writer().write(self.0.as_bytes())
    }
}

impl<Context, const MAX: usize> Decode<Context> for BoundedString<MAX> {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let bytes = decode_bytes(decoder, MAX)?;
        String::from_utf8(bytes).map(Self).map_err(|e| DecodeError::Utf8 { inner: e.utf8_error() })
    }
}

impl<'de, Context, const MAX: usize> BorrowDecode<'de, Context> for BoundedString<MAX> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        Self::decode(decoder)
    }
}

impl<const MAX: usize> Serialize for BoundedString<MAX> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de, const MAX: usize> Deserialize<'de> for BoundedString<MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(s).map_err(|e| serde::de::Error::custom(format!("string {e} bytes")))
    }
}

/// A byte string of at most `MAX` bytes. JSON form: lowercase hex.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundedBytes<const MAX: usize>(Vec<u8>);

impl<const MAX: usize> BoundedBytes<MAX> {
    /// Wraps `bytes` if they fit.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, TooLong> {
        let bytes = bytes.into();
        if bytes.len() > MAX {
            return Err(TooLong { len: bytes.len(), max: MAX });
        }
        Ok(Self(bytes))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Unwraps the bytes.
    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

impl<const MAX: usize> Deref for BoundedBytes<MAX> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl<const MAX: usize> fmt::Debug for BoundedBytes<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(&self.0))
    }
}

impl<const MAX: usize> Encode for BoundedBytes<MAX> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        (self.0.len() as u64).encode(encoder)?;
        encoder.writer().write(&self.0)
    }
}

impl<Context, const MAX: usize> Decode<Context> for BoundedBytes<MAX> {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        decode_bytes(decoder, MAX).map(Self)
    }
}

impl<'de, Context, const MAX: usize> BorrowDecode<'de, Context> for BoundedBytes<MAX> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        Self::decode(decoder)
    }
}

impl<const MAX: usize> Serialize for BoundedBytes<MAX> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de, const MAX: usize> Deserialize<'de> for BoundedBytes<MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        if s.len() > MAX * 2 {
            return Err(serde::de::Error::custom(format!(
                "hex string of {} bytes exceeds the maximum of {} ({} raw bytes)",
                s.len(),
                MAX * 2,
                MAX
            )));
        }
        let bytes = hex::decode(&s).map_err(|e| serde::de::Error::custom(format!("bad hex: {e}")))?;
        Self::new(bytes).map_err(|e| serde::de::Error::custom(format!("bytes: {e}")))
    }
}

/// A list of at most `MAX` entries.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundedVec<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> Default for BoundedVec<T, MAX> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T, const MAX: usize> BoundedVec<T, MAX> {
    /// Wraps `items` if there are at most `MAX`.
    pub fn new(items: Vec<T>) -> Result<Self, TooLong> {
        if items.len() > MAX {
            return Err(TooLong { len: items.len(), max: MAX });
        }
        Ok(Self(items))
    }

    /// The entries.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// Unwraps the entries.
    pub fn into_inner(self) -> Vec<T> {
        self.0
    }
}

impl<T, const MAX: usize> Deref for BoundedVec<T, MAX> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: fmt::Debug, const MAX: usize> fmt::Debug for BoundedVec<T, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<T: Encode, const MAX: usize> Encode for BoundedVec<T, MAX> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        (self.0.len() as u64).encode(encoder)?;
        for item in &self.0 {
            item.encode(encoder)?;
        }
        Ok(())
    }
}

impl<Context, T: Decode<Context>, const MAX: usize> Decode<Context> for BoundedVec<T, MAX> {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        let len = decode_len(decoder, MAX)?;
        decoder.claim_container_read::<T>(len)?;
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            // Give back the claim for this entry: its own decode claims what it really reads.
            decoder.unclaim_bytes_read(std::mem::size_of::<T>());
            items.push(T::decode(decoder)?);
        }
        Ok(Self(items))
    }
}

impl<'de, Context, T: Decode<Context>, const MAX: usize> BorrowDecode<'de, Context> for BoundedVec<T, MAX> {
    fn borrow_decode<D: BorrowDecoder<'de, Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        Self::decode(decoder)
    }
}

impl<T: Serialize, const MAX: usize> Serialize for BoundedVec<T, MAX> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for BoundedVec<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Stop reading after MAX + 1 entries so a huge JSON array cannot grow memory.
        struct Visitor<T, const MAX: usize>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const MAX: usize> serde::de::Visitor<'de> for Visitor<T, MAX> {
            type Value = BoundedVec<T, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a list of at most {MAX} entries")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX));
                while let Some(item) = seq.next_element()? {
                    if items.len() == MAX {
                        return Err(serde::de::Error::custom(format!(
                            "list has more than the maximum of {MAX} entries"
                        )));
                    }
                    items.push(item);
                }
                Ok(BoundedVec(items))
            }
        }
        deserializer.deserialize_seq(Visitor::<T, MAX>(std::marker::PhantomData))
    }
}
