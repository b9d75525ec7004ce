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
