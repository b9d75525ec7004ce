//! Target 5: configuration files.
//!
//! The node's `NodeConfig` (node/src/config.rs) lives in the binary crate, which a fuzz crate
//! cannot depend on. Its `parse` is `toml::from_str` into sections, and the sections that carry
//! limits are library types: `[network]` = [`NetConfig`], `[limits]` = [`GuardConfig`]. This
//! target parses the same TOML text into those two sections (the node-only sections `[store]`,
//! `[admin]`, `[metrics]`, `[log]` are plain strings and numbers checked in node/src/config.rs
//! and its tests) and validates them, and exercises the run-time limit setter the admin API
//! uses (`GuardConfig::with_setting`).
//!
//! Invariants:
//! - parsing and validation never panic;
//! - a config that parses re-serialises to TOML that parses back to an equal config, and it
//!   validates exactly when the original does;
//! - a valid `[network]` section's address lists all parse (`listen_addrs()` etc. drop nothing);
//! - every `(key, value)` that `GuardConfig::entries` prints is accepted back by
//!   `with_setting` and changes nothing (restart-only keys are refused with a message saying so);
//! - `with_setting` with arbitrary text never panics, and what it returns validates.

use palisade_guard::{GuardConfig, RESTART_ONLY_KEYS};
use palisade_net::NetConfig;
use serde::{Deserialize, Serialize};

/// The library sections of `palisade.toml`.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct Sections {
    network: NetConfig,
    limits: GuardConfig,
}

/// Runs one input: TOML text, optionally followed by a NUL byte, a limit key, a NUL byte and
/// a value for `with_setting`.
pub fn run(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0);
    let text = parts.next().unwrap_or_default();
    let setting = match (parts.next(), parts.next()) {
        (Some(k), Some(v)) => {
            Some((String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()))
        }
        _ => None,
    };
    let Ok(text) = std::str::from_utf8(text) else { return };
    if let Ok(sections) = toml::from_str::<Sections>(text) {
        check_sections(&sections);
        if let Some((k, v)) = &setting {
            check_setting(&sections.limits, k, v);
        }
    }
    // Each section alone, as `palisade config check` reads a file with just one of them.
    if let Ok(net) = toml::from_str::<NetConfig>(text) {
        check_net(&net);
    }
    if let Ok(limits) = toml::from_str::<GuardConfig>(text) {
        check_limits(&limits);
    }
}

fn check_sections(s: &Sections) {
    let text = match toml::to_string(s) {
        Ok(t) => t,
        Err(e) => panic!("a parsed config does not serialise back to TOML: {e}"),
    };
    match toml::from_str::<Sections>(&text) {
        Ok(back) => assert_eq!(&back, s, "TOML round trip changed the config:\n{text}"),
        Err(e) => panic!("a re-serialised config does not parse ({e}):\n{text}"),
    }
    check_net(&s.network);
    check_limits(&s.limits);
}

fn check_net(net: &NetConfig) {
    if net.validate().is_ok() {
        assert_eq!(net.listen_addrs().len(), net.listen.len(), "valid listen address dropped");
        assert_eq!(net.bootstrap_addrs().len(), net.bootstrap.len(), "valid bootstrap address dropped");
        assert_eq!(
            net.external_addrs().len(),
            net.external_addresses.len(),
            "valid external address dropped"
        );
    }
}

fn check_limits(limits: &GuardConfig) {
    let valid = limits.validate().is_ok();
    match serde_json::to_string(limits).map(|j| serde_json::from_str::<GuardConfig>(&j)) {
        Ok(Ok(back)) => {
            assert_eq!(&back, limits, "JSON round trip (admin API) changed the limits");
            assert_eq!(back.validate().is_ok(), valid);
        }
        other => panic!("limits do not round-trip through JSON: {other:?}"),
    }
    if !valid {
        return;
    }
    for (key, value) in limits.entries() {
        let field = key.strip_prefix(palisade_guard::KEY_PREFIX).unwrap_or(&key);
        match limits.with_setting(&key, &value) {
            Ok(same) => {
                assert!(!RESTART_ONLY_KEYS.contains(&field), "restart-only key {key} was changed live");
                assert_eq!(
                    &same, limits,
                    "setting {key} to its own printed value {value:?} changed the config"
                );
            }
            Err(e) => {
                assert!(RESTART_ONLY_KEYS.contains(&field), "{key} = {value:?} as printed is refused: {e}");
                assert!(e.allowed.contains("restart"), "restart-only refusal does not say to restart: {e}");
            }
        }
    }
}

fn check_setting(limits: &GuardConfig, key: &str, value: &str) {
    if limits.validate().is_err() {
        return;
    }
    if let Ok(new) = limits.with_setting(key, value) {
        if let Err(e) = new.validate() {
            panic!("with_setting({key:?}, {value:?}) returned an invalid config: {e}");
        }
    }
}
