//! `palisade backup create | verify | restore` (issue 15). The document and its reader are
//! `palisade_store::backup`; the node side adds the file handling (a backup is written
//! beside its name, checked, then renamed into place, so a file named FILE is always a
//! complete backup) and, for a restore, the key, the signing history and the manifest.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use palisade_store::{BackupReader, BackupSummary, SigningHistory, Store, StoreConfig, StoreError};

use crate::paths::Paths;
use crate::{ConfigError, DataDamaged};

/// Checks `file` and prints what it holds; `Err(DataDamaged)` when it is not a sound backup.
pub fn verify(file: &Path, json: bool) -> anyhow::Result<()> {
    let summary = read_summary(file)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&summary_json(&summary))?);
    } else {
        outln!("{}: sound", file.display());
        print_summary(&summary);
    }
    Ok(())
}

fn read_summary(file: &Path) -> anyhow::Result<BackupSummary> {
    let input = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    BackupReader::verify(BufReader::new(input))
        .map_err(|e| DataDamaged(format!("{} is not a sound backup: {e}", file.display())).into())
}

fn summary_json(s: &BackupSummary) -> serde_json::Value {
    serde_json::json!({
        "author": s.header.author,
        "created_at_ms": s.header.created_at_ms,
        "store_schema": s.header.store_schema,
        "records": s.end.records,
        "bans": s.end.bans,
        "peers": s.end.peers,
        "highest_signed_seq": s.signed.map(|x| x.seq),
        "blake3": s.end.blake3,
    })
}

fn print_summary(s: &BackupSummary) {
    outln!("author:          {}", s.header.author);
    outln!("created at:      {} ms since the epoch", s.header.created_at_ms);
    outln!("records:         {}", s.end.records);
    outln!("bans, peers:     {}, {}", s.end.bans, s.end.peers);
    match s.signed {
        Some(x) => outln!("signed up to:    seq {}", x.seq),
        None => outln!("signed up to:    (nothing signed)"),
    }
}

/// The partial file a backup is written to before it is checked and renamed to `file`.
fn partial_of(file: &Path) -> PathBuf {
    let mut name = file.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    file.with_file_name(name)
}

/// Writes the running node's backup to `file` (see the module docs).
pub async fn create(api: &palisade_api::ApiClient, file: &Path, json: bool) -> anyhow::Result<u8> {
    let started = Instant::now();
    let partial = partial_of(file);
    let written = write_partial(api, &partial).await;
    let summary = written.and_then(|()| read_summary(&partial));
    let summary = match summary {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, file)
        .with_context(|| format!("renaming {} to {}", partial.display(), file.display()))?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))?;
    }
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    if json {
        let mut v = summary_json(&summary);
        if let Some(o) = v.as_object_mut() {
            o.insert("file".into(), file.display().to_string().into());
            o.insert("bytes".into(), bytes.into());
            o.insert("secs".into(), started.elapsed().as_secs_f64().into());
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!(
            "backup written to {} ({}) in {:.1} s",
            file.display(),
            crate::client::output::bytes(bytes),
            started.elapsed().as_secs_f64()
        );
        print_summary(&summary);
    }
    Ok(0)
}

async fn write_partial(api: &palisade_api::ApiClient, partial: &Path) -> anyhow::Result<()> {
    let mut stream = api.backup().await?;
    let mut out = std::io::BufWriter::new(
        File::create(partial).with_context(|| format!("cannot create {}", partial.display()))?,
    );
    while let Some(chunk) = stream.chunk().await? {
        out.write_all(&chunk).with_context(|| format!("writing {}", partial.display()))?;
    }
    let file = out.into_inner().map_err(|e| e.into_error()).context("writing the backup")?;
    file.sync_all().with_context(|| format!("syncing {}", partial.display()))?;
    Ok(())
}

/// Restores `file` into the stopped node's data directory (see `BackupCommand::Restore`).
pub fn restore(paths: &Paths, file: &Path, json: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let summary = read_summary(file)?;
    let author = summary.author;
    let key_file = paths.key_file();
    if !key_file.exists() {
        return Err(ConfigError(format!(
            "{} is missing: a backup never holds the key. Put the node.key of author {author} there first",
            key_file.display()
        ))
        .into());
    }
    let keys = crate::keys::load(&key_file).map_err(|e| ConfigError(format!("{e:#}")))?;
    if keys.author_key() != author {
        return Err(ConfigError(format!(
            "the backup is of author {author}, but {} is the key of author {}: restore it beside its own key",
            key_file.display(),
            keys.author_key()
        ))
        .into());
    }
    paths.ensure_data_dir()?;
    let store = open_empty_store(paths)?;
    store.set_own_author(&author).context("recording the store's own author")?;
    let input = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut reader = BackupReader::new(BufReader::new(input));
    let report = palisade_net::restore_backup(&store, &mut reader, palisade_net::now_ms(), |n| {
        if !json {
            eprintln!("restored {n} of {} records", summary.end.records);
        }
    })
    .map_err(|e| match e {
        palisade_store::RestoreError::Document(d) => DataDamaged(format!("{}: {d}", file.display())).into(),
        other => anyhow::Error::from(other),
    })?;
    let history_path = paths.data_dir.join(palisade_store::SIGNING_HISTORY_FILE);
    let history = SigningHistory::open(&history_path, author).map_err(|e| ConfigError(e.to_string()))?;
    let kept = history.highest();
    let backed_up = reader.signed().flatten();
    if let Some(signed) = backed_up.filter(|b| kept.is_none_or(|k| b.seq > k.seq)) {
        history.record(signed).context("writing the signing history")?;
    }
    let history_seq = history.highest().map_or(0, |h| h.seq);
    // The store as restored is what the node has now acknowledged.
    store.rebase_manifest().context("writing the store manifest")?;
    let own_seq = store.latest_in_feed(&author)?.map_or(0, |(s, _)| s);
    if json {
        let v = serde_json::json!({
            "records_stored": report.stored,
            "duplicates": report.duplicates,
            "refused": report.refused,
            "refusals": report.refusals,
            "bans": report.bans,
            "peers": report.peers,
            "own_feed_seq": own_seq,
            "signing_history_seq": history_seq,
            "secs": started.elapsed().as_secs_f64(),
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!(
            "restored {} records, {} bans, {} peers into {} in {:.1} s",
            report.stored,
            report.bans,
            report.peers,
            paths.db_dir().display(),
            started.elapsed().as_secs_f64()
        );
        if history_seq > own_seq {
            outln!(
                "the signing history says seq {history_seq} was signed, the restored feed ends at seq {own_seq}: \
                 the node refuses to sign until its peers return the rest (keep it connected)"
            );
        }
        for why in &report.refusals {
            outln!("  refused: {why}");
        }
    }
    if report.refused > 0 {
        return Err(DataDamaged(format!(
            "{} records of the backup were refused (listed above); the others are restored",
            report.refused
        ))
        .into());
    }
    Ok(())
}

/// Opens the data directory's store, which must hold no records (a restore never merges into
/// a store: move a damaged one away first).
fn open_empty_store(paths: &Paths) -> anyhow::Result<Store> {
    let config = StoreConfig {
        manifest_path: Some(paths.data_dir.join(palisade_store::MANIFEST_FILE)),
        auto_compact: palisade_store::AutoCompact::OFF,
        ..StoreConfig::new(paths.db_dir())
    };
    let store = match Store::open(&config) {
        Ok(s) => s,
        Err(e @ StoreError::Locked { .. }) => {
            return Err(ConfigError(format!("{e}; stop the node before `palisade backup restore`")).into())
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "opening the store; if {} is damaged, move it away and run the restore again",
                    paths.db_dir().display()
                )
            })
        }
    };
    let records = store.record_count();
    if records > 0 {
        return Err(ConfigError(format!(
            "{} already holds {records} records: a restore goes into an empty store. Move it away \
             (keep it until the restored node runs) and run the restore again",
            paths.db_dir().display()
        ))
        .into());
    }
    Ok(store)
}
