//! JSON text with a duplicate object key is refused (issue 17): serde_json keeps the last
//! value silently, so `{"kind": "attestation", ..., "kind": "revocation"}` would switch the
//! record kind behind the reader's back. One pass over the text finds the first duplicate,
//! with its path; depth is bounded by serde_json's recursion limit (128).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The path of the first key that appears twice in one object of `bytes`, if any (`None`
/// also when the text is not JSON: the parser after this reports that).
pub(crate) fn first_duplicate_key(bytes: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    (Walk { path: String::new() }).deserialize(&mut de).unwrap_or_default()
}

/// Walks one value at `path`; yields the first duplicate key's path below it.
struct Walk {
    path: String,
}

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            if found.is_none() && !seen.insert(key) {
                found = Some(path.clone());
            }
            let below = map.next_value_seed(Walk { path })?;
            found = found.or(below);
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut i = 0usize;
        while let Some(below) = seq.next_element_seed(Walk { path: format!("{}[{i}]", self.path) })? {
            found = found.or(below);
            i += 1;
        }
        Ok(found)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_found_with_their_path() {
        assert_eq!(first_duplicate_key(br#"{"kind": "a", "x": 1, "kind": "b"}"#).as_deref(), Some("kind"));
        assert_eq!(
            first_duplicate_key(br#"{"subject": {"name": "n", "name": "m"}}"#).as_deref(),
            Some("subject.name")
        );
        assert_eq!(first_duplicate_key(br#"{"l": [{"a": 1}, {"a": 1, "a": 2}]}"#).as_deref(), Some("l[1].a"));
        assert_eq!(first_duplicate_key(br#"{"a": {"b": 1}, "c": {"b": 1}}"#), None);
        assert_eq!(first_duplicate_key(br#"[1, "two", null, true, 2.5, -3]"#), None);
        assert_eq!(first_duplicate_key(b"not json"), None);
    }

    #[test]
    fn deep_nesting_is_refused_by_the_parser_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert_eq!(first_duplicate_key(deep.as_bytes()), None);
    }
}
