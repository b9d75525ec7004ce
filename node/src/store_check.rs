//! `palisade store check`: the store's own check ([`palisade_store::Store::check`]) plus the
//! own feed against the signing history, printed for an operator (or as JSON); and
//! `palisade store compact` ([`palisade_store::compact`]).

use anyhow::Context;
use palisade_store::{SigningHistory, Store, StoreConfig, StoreError};

use crate::paths::Paths;
use crate::ConfigError;

/// Runs the check; `Ok(true)` when everything is sound.
pub fn run(paths: &Paths, json: bool) -> anyhow::Result<bool> {
    // The manifest is compared when there is one (a check never creates it).
    let manifest = paths.data_dir.join(palisade_store::MANIFEST_FILE);
    let config = StoreConfig {
        manifest_path: manifest.exists().then_some(manifest),
        auto_compact: palisade_store::AutoCompact::OFF,
        ..StoreConfig::new(paths.db_dir())
    };
    let store = match Store::open(&config) {
        Ok(s) => s,
        Err(e @ StoreError::Locked { .. }) => {
            return Err(ConfigError(format!("{e}; stop the node before `palisade store check`")).into())
        }
        Err(e) => return Err(e).context("opening the store"),
    };
    let mut report = store
        .check(|n| {
            if !json {
                eprintln!("checked {n} records");
            }
        })
        .context("checking the store")?;
    // The own feed against the signing history: a store that holds less than the node signed
    // lost records (they come back by sync); the node refuses to sign until they do.
    let own = store.own_author().context("reading the store's own author")?;
    let history_path = paths.data_dir.join(palisade_store::SIGNING_HISTORY_FILE);
    let mut own_feed = serde_json::Value::Null;
    if let (Some(author), true) = (own, history_path.exists()) {
        let history = SigningHistory::open(&history_path, author).map_err(|e| ConfigError(e.to_string()))?;
        let stored = store.latest_in_feed(&author)?.map_or(0, |(s, _)| s);
        let signed = history.highest().map_or(0, |h| h.seq);
        if stored < signed {
            report.problems += 1;
            report.examples.push(format!(
                "the own feed holds seq {stored} but the signing history says {signed} were signed: \
                 {} records are missing; keep the node connected so peers return them (submissions \
                 are refused until then)",
                signed - stored
            ));
        }
        own_feed =
            serde_json::json!({"author": author.to_string(), "stored_seq": stored, "signed_seq": signed});
    }
    let manifest = store.manifest_check();
    if *manifest != palisade_store::ManifestCheck::Sound {
        report.problems += 1;
        report.examples.push(format!(
            "{manifest}: restore a backup, or start the node with `palisade run --recover-from-peers`"
        ));
    }
    let manifest = store.manifest().map(|m| {
        serde_json::json!({
            "stored_ever": palisade_types::RecordKind::ALL.iter().map(|k| (k.as_str().to_string(), serde_json::Value::from(m.stored_of(*k)))).collect::<serde_json::Map<_, _>>(),
            "own_seq": m.own_seq,
        })
    });
    if json {
        let v = serde_json::json!({
            "manifest": manifest,
            "records": report.records,
            "authors": report.authors,
            "problems": report.problems,
            "examples": report.examples,
            "own_feed": own_feed,
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!("records:  {}", report.records);
        outln!("authors:  {}", report.authors);
        outln!("problems: {}", report.problems);
        for e in &report.examples {
            outln!("  - {e}");
        }
        if report.problems > report.examples.len() as u64 {
            outln!("  ... and {} more", report.problems - report.examples.len() as u64);
        }
    }
    Ok(report.problems == 0)
}

/// `palisade store compact`: the store copied into a fresh database and swapped in.
pub fn compact(paths: &Paths, json: bool) -> anyhow::Result<()> {
    if !json {
        eprintln!("compacting {} (copying every tree, then swapping it in)", paths.db_dir().display());
    }
    let report = match palisade_store::compact(&StoreConfig::new(paths.db_dir())) {
        Ok(r) => r,
        Err(e @ StoreError::Locked { .. }) => {
            return Err(ConfigError(format!("{e}; stop the node before `palisade store compact`")).into())
        }
        Err(e) => {
            return Err(e).context("compacting the store (the store is unchanged unless it says otherwise)")
        }
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        outln!("entries: {}", report.entries);
        outln!("before:  {:.1} MiB", mib(report.before_bytes));
        outln!("after:   {:.1} MiB", mib(report.after_bytes));
    }
    Ok(())
}
