//! The OpenAPI document: checked in, served, and complete.

use crate::harness::{init_tracing, ApiNode};

fn checked_in_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/admin-api.openapi.json")
}

/// `UPDATE_OPENAPI=1 cargo test -p palisade-api openapi` rewrites the checked-in file.
#[test]
fn checked_in_document_matches_the_code() {
    let generated = palisade_api::document_json();
    let path = checked_in_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/admin-api.openapi.json is stale; regenerate it with `UPDATE_OPENAPI=1 cargo test -p palisade-api openapi`"
    );
}

#[test]
fn every_route_is_documented() {
    let doc: serde_json::Value = serde_json::from_str(&palisade_api::document_json()).unwrap();
    for (method, path) in palisade_api::ROUTES {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not in the OpenAPI document");
    }
    let documented: usize =
        doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, palisade_api::ROUTES.len(), "the document lists routes the server lacks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_the_checked_in_one() {
    init_tracing();
    let node = ApiNode::start(50).await;
    let served = node.api.openapi().await.unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(checked_in_path()).unwrap()).unwrap();
    assert_eq!(served, file);
    node.stop().await;
}

/// Every error code the server can produce (the string after a `StatusCode::` in its source,
/// plus the connection cap's and readiness's) is in the README's table, and the table has
/// no code the server does not produce.
#[test]
fn every_error_code_is_in_the_readme_table() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut produced = std::collections::BTreeSet::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, _) in text.match_indices("StatusCode::") {
                // The code is the next string literal after the status, if it is a code.
                let rest = &text[i..];
                let Some(open) = rest.find('"') else { continue };
                if rest[..open].contains(';') || rest[..open].contains(')') {
                    continue;
                }
                let lit: String = rest[open + 1..].chars().take_while(|c| *c != '"').collect();
                if !lit.is_empty() && lit.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    produced.insert(lit);
                }
            }
        }
    }
    produced.extend(["too_many_connections".to_string(), "not_ready".to_string()]);
    let readme = std::fs::read_to_string(root.join("../../README.md")).unwrap();
    let table: std::collections::BTreeSet<String> = readme
        .lines()
        .filter(|l| l.starts_with("| 4") || l.starts_with("| 5"))
        .filter_map(|l| l.split('|').nth(2))
        .flat_map(|cell| cell.split(',').map(|c| c.trim().trim_matches('`').to_string()).collect::<Vec<_>>())
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'))
        .collect();
    assert!(produced.len() > 20, "{produced:?}");
    let undocumented: Vec<_> = produced.difference(&table).collect();
    let stale: Vec<_> = table.difference(&produced).collect();
    assert!(undocumented.is_empty(), "codes the README's error table lacks: {undocumented:?}");
    assert!(stale.is_empty(), "codes in the README's error table the server never produces: {stale:?}");
}
