//! Changing one limit at run time (`PUT /v1/limits/{key}`, `palisade limits set`): the generic
//! `key = value` setter over the whole `[limits]` struct, and the listings of keys and values.

use palisade_types::InvalidSetting;

use super::{key, GuardConfig, KEY_PREFIX, RESTART_ONLY_KEYS};

impl GuardConfig {
    /// Returns a copy with `key` (with or without the `limits.` prefix) set to `value`, after
    /// validating the whole result. Numbers are given as decimal text, lists as JSON arrays or
    /// comma-separated text.
    pub fn with_setting(&self, key_name: &str, value: &str) -> Result<GuardConfig, InvalidSetting> {
        let field = key_name.strip_prefix(KEY_PREFIX).unwrap_or(key_name);
        let unknown = || InvalidSetting::new(key(field), value, "a key listed by `palisade limits show`");
        let mut obj = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => return Err(unknown()),
        };
        let current = obj.get(field).ok_or_else(unknown)?;
        let new_value = match current {
            serde_json::Value::Number(_) => {
                let v = value.trim().replace('_', "");
                if let Ok(i) = v.parse::<i64>() {
                    serde_json::Value::from(i)
                } else if let Ok(u) = v.parse::<u64>() {
                    serde_json::Value::from(u)
                } else {
                    return Err(InvalidSetting::new(key(field), value, "an integer"));
                }
            }
            serde_json::Value::Array(_) => {
                let v = value.trim();
                if v.starts_with('[') {
                    serde_json::from_str::<Vec<String>>(v)
                        .map(serde_json::Value::from)
                        .map_err(|_| InvalidSetting::new(key(field), value, "a JSON array of strings"))?
                } else {
                    serde_json::Value::from(
                        v.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect::<Vec<_>>(),
                    )
                }
            }
            _ => serde_json::Value::from(value),
        };
        if RESTART_ONLY_KEYS.contains(&field) {
            return Err(InvalidSetting::new(
                key(field),
                value,
                "a change in the config file followed by a restart (this limit sizes structures built at start)",
            ));
        }
        obj.insert(field.to_string(), new_value);
        let cfg: GuardConfig = serde_json::from_value(serde_json::Value::Object(obj)).map_err(|e| {
            InvalidSetting::new(key(field), value, format!("a value of the key's type ({e})"))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Keys [`with_setting`](Self::with_setting) can change at run time (without the
    /// `limits.` prefix), in a stable order.
    pub fn runtime_keys() -> Vec<String> {
        match serde_json::to_value(GuardConfig::default()) {
            Ok(serde_json::Value::Object(m)) => {
                m.keys().filter(|k| !RESTART_ONLY_KEYS.contains(&k.as_str())).cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Every key with its current value as text, `limits.`-prefixed, in a stable order.
    pub fn entries(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(self) {
            for (k, v) in m {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                out.push((key(&k), text));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_setting_parses_by_type_and_revalidates() {
        let c = GuardConfig::default();
        let c2 = c.with_setting("limits.peer_messages_per_sec", "7").unwrap();
        assert_eq!(c2.peer_messages_per_sec, 7);
        let c3 = c.with_setting("disconnect_score_points", "-20").unwrap();
        assert_eq!(c3.disconnect_score_points, -20);
        let c4 = c.with_setting("allowlist_ips", "10.0.0.0/8, 127.0.0.1").unwrap();
        assert_eq!(c4.allowlist_ips, vec!["10.0.0.0/8".to_string(), "127.0.0.1".to_string()]);
        let c5 = c.with_setting("allowlist_ips", r#"["::1"]"#).unwrap();
        assert_eq!(c5.allowlist_ips, vec!["::1".to_string()]);

        assert_eq!(
            c.with_setting("peer_messages_per_sec", "0").unwrap_err().key,
            "limits.peer_messages_per_sec"
        );
        assert_eq!(
            c.with_setting("peer_messages_per_sec", "fast").unwrap_err().key,
            "limits.peer_messages_per_sec"
        );
        assert_eq!(
            c.with_setting("peer_messages_per_sec", "-3").unwrap_err().key,
            "limits.peer_messages_per_sec"
        );
        assert_eq!(c.with_setting("no_such_limit", "1").unwrap_err().key, "limits.no_such_limit");
        let e = c.with_setting("max_established_total", "10").unwrap_err();
        assert!(e.allowed.contains("restart"), "{e}");
    }

    #[test]
    fn every_runtime_key_takes_its_current_value_and_no_restart_key_is_listed() {
        let c = GuardConfig::default();
        let keys = GuardConfig::runtime_keys();
        assert!(keys.len() > 20, "{keys:?}");
        let values: std::collections::HashMap<String, String> = c.entries().into_iter().collect();
        for k in &keys {
            assert!(!RESTART_ONLY_KEYS.contains(&k.as_str()), "{k}");
            let current = &values[&format!("{KEY_PREFIX}{k}")];
            c.with_setting(k, current).unwrap_or_else(|e| panic!("{k} = {current}: {e}"));
        }
        for k in RESTART_ONLY_KEYS {
            assert!(values.contains_key(&format!("{KEY_PREFIX}{k}")), "{k} is not a key");
        }
    }
}
