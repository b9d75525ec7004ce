//! The error every crate's config validation returns, so the node can report one shape:
//! which key, what value, what is allowed.

/// A configuration value is out of its allowed range or breaks a relation with another key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value} for `{key}`: allowed is {allowed}")]
pub struct InvalidSetting {
    /// Full key path, e.g. `limits.peer_messages_per_sec`.
    pub key: String,
    /// The value given, as text.
    pub value: String,
    /// What is allowed, e.g. `1..=10000` or `<= network.gossip_max_transmit_bytes (65536)`.
    pub allowed: String,
}

impl InvalidSetting {
    /// Builds the error.
    pub fn new(key: impl Into<String>, value: impl ToString, allowed: impl Into<String>) -> InvalidSetting {
        InvalidSetting { key: key.into(), value: value.to_string(), allowed: allowed.into() }
    }

    /// Checks `min <= value <= max` for an integer setting.
    pub fn check_range<T: PartialOrd + std::fmt::Display>(
        key: &str,
        value: T,
        min: T,
        max: T,
    ) -> Result<(), InvalidSetting> {
        if value < min || value > max {
            return Err(InvalidSetting::new(key, value, format!("{min}..={max}")));
        }
        Ok(())
    }
}
