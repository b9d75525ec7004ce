//! SIGHUP: read the configuration again (same file, environment and flags as the start) and
//! apply what can change while running: the log filter, `[limits]` (except the connection
//! caps libp2p fixes at start), the trust policies and `store.retain_authors` (the authors
//! the store quota never evicts). Every change is logged with its old
//! and new value; a file that does not validate changes nothing; keys that need a restart are
//! named in a warning.

use palisade_api::ApiServer;
use palisade_guard::{Guard, GuardConfig, RESTART_ONLY_KEYS};
use palisade_store::Store;
use tracing::{info, warn};

use crate::config::NodeConfig;
use crate::daemon::Reload;

/// Applies a re-read configuration to the running node; `current` follows what is in force.
pub fn apply(current: &mut NodeConfig, reload: &Reload, guard: &Guard, api: &ApiServer, store: &Store) {
    let new = match (reload.reread)() {
        Ok(c) => c,
        Err(e) => {
            warn!(
                error = %format!("{e:#}"),
                "SIGHUP: the configuration does not validate; nothing was changed (fix it and send SIGHUP again)"
            );
            return;
        }
    };
    let mut changed = Vec::new();
    for (key, from, to) in limit_changes(&current.limits, &new.limits) {
        if RESTART_ONLY_KEYS.contains(&key.as_str()) {
            warn!(key = %format!("limits.{key}"), from, to, "SIGHUP: this limit takes effect at the next restart");
            continue;
        }
        match guard.set_limit(&key, &to) {
            Ok(()) => changed.push(format!("limits.{key}: {from} -> {to}")),
            Err(e) => warn!(key = %format!("limits.{key}"), error = %e, "SIGHUP: limit not changed"),
        }
    }
    current.limits = guard.limits();
    if new.log.filter != current.log.filter {
        match reload.log.as_ref().map(|l| l.set(&new.log.filter)) {
            Some(Ok(())) => {
                changed.push(format!("log filter: {:?} -> {:?}", current.log.filter, new.log.filter));
                current.log.filter = new.log.filter.clone();
            }
            Some(Err(e)) => warn!(error = %e, "SIGHUP: the log filter was not changed"),
            None => warn!("SIGHUP: the log filter cannot be changed in this process"),
        }
    }
    if new.admin.trust != current.admin.trust {
        match api.set_trust(new.admin.trust.clone()) {
            Ok(()) => {
                changed.push(format!("admin.trust: {} policies", new.admin.trust.len()));
                current.admin.trust = new.admin.trust.clone();
            }
            Err(e) => warn!(error = %e, "SIGHUP: the trust policies were not changed"),
        }
    }
    if new.store.retain_authors != current.store.retain_authors
        || changed.iter().any(|c| c.starts_with("admin.trust"))
    {
        let protected = new.store.protected_authors(&current.admin.trust);
        if new.store.retain_authors != current.store.retain_authors {
            changed.push(format!("store.retain_authors: {} authors", new.store.retain_authors.len()));
            current.store.retain_authors = new.store.retain_authors.clone();
        }
        store.set_protected_authors(protected);
    }
    for section in restart_only_sections(current, &new) {
        warn!(
            section,
            "SIGHUP: this section changed in the configuration; it takes effect at the next restart"
        );
    }
    if changed.is_empty() {
        info!("configuration reloaded: nothing to change");
    } else {
        info!(changes = %changed.join("; "), "configuration reloaded");
    }
}

/// `(key, old, new)` for each `[limits]` key whose value differs, values as `set_limit` takes
/// them (lists as JSON arrays).
fn limit_changes(old: &GuardConfig, new: &GuardConfig) -> Vec<(String, String, String)> {
    let (Ok(old), Ok(new)) = (toml::Table::try_from(old), toml::Table::try_from(new)) else {
        return Vec::new();
    };
    let text = |v: &toml::Value| match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(_) => serde_json::to_string(v).unwrap_or_default(),
        other => other.to_string(),
    };
    new.iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), old.get(k).map(text).unwrap_or_default(), text(v)))
        .collect()
}

/// Sections other than the reloadable parts that differ between `current` and `new`.
fn restart_only_sections(current: &NodeConfig, new: &NodeConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    if current.network != new.network {
        out.push("network");
    }
    let mut store = new.store.clone();
    store.retain_authors = current.store.retain_authors.clone();
    if current.store != store {
        out.push("store");
    }
    let mut admin = new.admin.clone();
    admin.trust = current.admin.trust.clone();
    if current.admin != admin {
        out.push("admin");
    }
    if current.metrics != new.metrics {
        out.push("metrics");
    }
    if current.log.format != new.log.format {
        out.push("log.format");
    }
    if (&current.log.file, current.log.max_file_bytes, current.log.max_files)
        != (&new.log.file, new.log.max_file_bytes, new.log.max_files)
    {
        out.push("log.file");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_changes_name_each_key_with_old_and_new_text() {
        let old = GuardConfig::default();
        let mut new = old.clone();
        new.peer_messages_per_sec = old.peer_messages_per_sec + 7;
        new.allowlist_ips = vec!["10.0.0.0/8".into()];
        let changes = limit_changes(&old, &new);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes.contains(&(
            "peer_messages_per_sec".into(),
            old.peer_messages_per_sec.to_string(),
            new.peer_messages_per_sec.to_string()
        )));
        assert!(changes.contains(&("allowlist_ips".into(), "[]".into(), "[\"10.0.0.0/8\"]".into())));
        assert!(limit_changes(&old, &old).is_empty());
    }
}
