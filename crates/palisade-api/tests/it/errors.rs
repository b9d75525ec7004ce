//! Error paths: every kind of bad input gets the right status and a JSON error naming the
//! field.

use hyper::Method;
use palisade_api::model::ErrorBody;

use crate::harness::{attestation_json, init_tracing, sha, ApiNode};

async fn expect(
    node: &ApiNode,
    method: Method,
    path: &str,
    body: Option<&str>,
    status: u16,
    code: &str,
) -> String {
    let raw = node.api.request_raw(method.clone(), path, body.map(|b| b.as_bytes().to_vec())).await.unwrap();
    let text = String::from_utf8_lossy(&raw.body).to_string();
    assert_eq!(raw.status, status, "{method} {path}: {text}");
    let err: ErrorBody = serde_json::from_slice(&raw.body)
        .unwrap_or_else(|e| panic!("{method} {path}: not an error body ({e}): {text}"));
    assert_eq!(err.error.code, code, "{method} {path}: {text}");
    err.error.message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_name_the_problem() {
    init_tracing();
    let node = ApiNode::start_with(11, |c| c.limits.max_body_bytes = 64 * 1024).await;
    // Not JSON, empty, not an object.
    expect(&node, Method::POST, "/v1/records", Some("{\"kind\": "), 400, "bad_json").await;
    expect(&node, Method::POST, "/v1/records", Some(""), 400, "bad_json").await;
    expect(&node, Method::POST, "/v1/records", Some("[1, 2]"), 400, "bad_json").await;
    // Kind missing or unknown.
    let m = expect(&node, Method::POST, "/v1/records", Some("{}"), 400, "invalid_field").await;
    assert!(m.contains("`kind`"), "{m}");
    let m =
        expect(&node, Method::POST, "/v1/records", Some(r#"{"kind": "poem"}"#), 400, "invalid_field").await;
    assert!(m.contains("`kind`") && m.contains("poem"), "{m}");
    // A missing field.
    let mut v = attestation_json("pkg:a", &sha(1), "pass");
    v.as_object_mut().unwrap().remove("verdict");
    let m = expect(&node, Method::POST, "/v1/records", Some(&v.to_string()), 400, "invalid_field").await;
    assert!(m.contains("verdict"), "{m}");
    // A field of the wrong shape, deep inside: the path is named.
    let mut v = attestation_json("pkg:a", &sha(1), "pass");
    v["subject"]["digests"] = serde_json::json!(["sha256:zz"]);
    let m = expect(&node, Method::POST, "/v1/records", Some(&v.to_string()), 400, "invalid_field").await;
    assert!(m.contains("subject.digests[0]"), "{m}");
    let mut v = attestation_json("pkg:a", &sha(1), "pass");
    v["verdict"] = serde_json::json!("great");
    let m = expect(&node, Method::POST, "/v1/records", Some(&v.to_string()), 400, "invalid_field").await;
    assert!(m.contains("`verdict`"), "{m}");
    // A typo is refused, not ignored.
    let mut v = attestation_json("pkg:a", &sha(1), "pass");
    v["subject"]["nmae"] = serde_json::json!("x");
    let m = expect(&node, Method::POST, "/v1/records", Some(&v.to_string()), 400, "unknown_field").await;
    assert!(m.contains("subject.nmae"), "{m}");
    // A rule of the record format (static validation) names the field.
    let mut v = attestation_json("pkg:a", &sha(1), "pass");
    v["score"] = serde_json::json!(1001);
    let m = expect(&node, Method::POST, "/v1/records", Some(&v.to_string()), 400, "invalid_field").await;
    assert!(m.contains("score"), "{m}");
    let mut v = attestation_json("", &sha(1), "pass");
    v["subject"]["name"] = serde_json::json!("");
    let m = expect(&node, Method::POST, "/v1/records", Some(&v.to_string()), 400, "invalid_field").await;
    assert!(m.contains("subject.name"), "{m}");
    // Oversized.
    let big = format!("{{\"kind\": \"attestation\", \"pad\": \"{}\"}}", "x".repeat(70 * 1024));
    expect(&node, Method::POST, "/v1/records", Some(&big), 413, "payload_too_large").await;
    // Other JSON endpoints share the extractor.
    expect(&node, Method::POST, "/v1/peers/dial", Some("{}"), 400, "invalid_field").await;
    let m = expect(&node, Method::POST, "/v1/peers/dial", Some(r#"{"addr": "nope"}"#), 400, "invalid_field")
        .await;
    assert!(m.contains("`addr`"), "{m}");
    expect(&node, Method::POST, "/v1/bans", Some(r#"{"target": "peer:xyz"}"#), 400, "invalid_field").await;
    let m = expect(
        &node,
        Method::POST,
        "/v1/bans",
        Some(r#"{"target": "ip:10.0.0.1", "duration_secs": 0}"#),
        400,
        "invalid_field",
    )
    .await;
    assert!(m.contains("duration_secs"), "{m}");
    // Nothing was stored.
    assert_eq!(node.api.node().await.unwrap().records.total, 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ids_cursors_and_limits_name_the_parameter() {
    init_tracing();
    let node = ApiNode::start(12).await;
    let id = "ab".repeat(32);
    expect(&node, Method::GET, &format!("/v1/records/{id}"), None, 404, "not_found").await;
    let m = expect(&node, Method::GET, "/v1/records/xyz", None, 400, "invalid_field").await;
    assert!(m.contains("`id`"), "{m}");
    expect(&node, Method::GET, &format!("/v1/anomalies/{id}"), None, 404, "not_found").await;
    expect(&node, Method::GET, &format!("/v1/feeds/{id}"), None, 404, "not_found").await;
    expect(&node, Method::GET, "/v1/feeds/nothex", None, 400, "invalid_field").await;
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("cursor=zz", "cursor"),
        ("cursor=abcd", "cursor"),
        ("kind=poem", "kind"),
        ("author=12", "author"),
        ("subject=sha256", "subject"),
        ("min_severity=30", "min_severity"),
        ("state=sleepy", "state"),
        ("since_ms=5&until_ms=4", "since_ms"),
        ("since_ms=yesterday", "since_ms"),
    ] {
        let m = expect(&node, Method::GET, &format!("/v1/records?{q}"), None, 400, "invalid_field").await;
        assert!(m.contains(&format!("`{field}`")), "{q}: {m}");
    }
    // A cursor from another query.
    node.api.submit_json(&attestation_json("pkg:a", &sha(1), "pass")).await.unwrap();
    node.api.submit_json(&attestation_json("pkg:b", &sha(2), "pass")).await.unwrap();
    let page: serde_json::Value = node.api.get_json("/v1/records?limit=1&kind=attestation").await.unwrap();
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let m = expect(
        &node,
        Method::GET,
        &format!("/v1/records?cursor={cursor}&author={}", "00".repeat(32)),
        None,
        400,
        "invalid_field",
    )
    .await;
    assert!(m.contains("`cursor`"), "{m}");
    // Regression (found by fuzz/admin_api): export refuses such a cursor with a 400 too,
    // instead of answering 200 and cutting the stream short.
    let m = expect(
        &node,
        Method::GET,
        &format!("/v1/export?cursor={cursor}&author={}", "00".repeat(32)),
        None,
        400,
        "invalid_field",
    )
    .await;
    assert!(m.contains("`cursor`"), "{m}");
    // Unknown parameters are refused.
    let m = expect(&node, Method::GET, "/v1/records?limt=5", None, 400, "invalid_field").await;
    assert!(m.contains("unknown field `limt`"), "{m}");
    expect(&node, Method::GET, "/v1/guard/ledger?limit=0", None, 400, "invalid_field").await;
    expect(&node, Method::GET, "/v1/events?types=weather", None, 400, "invalid_field").await;
    expect(&node, Method::GET, "/v1/export?limit=5", None, 400, "bad_request").await;
    // Unknown routes and methods.
    expect(&node, Method::GET, "/v1/nope", None, 404, "not_found").await;
    expect(&node, Method::DELETE, "/v1/node", None, 405, "method_not_allowed").await;
    // 404s for things that are not there.
    expect(&node, Method::DELETE, "/v1/bans/ip:10.9.9.9", None, 404, "not_found").await;
    let stranger = libp2p::PeerId::random();
    expect(&node, Method::POST, &format!("/v1/peers/{stranger}/disconnect"), Some("{}"), 404, "not_found")
        .await;
    expect(&node, Method::GET, &format!("/v1/subjects/{}/verdict?policy=x", sha(0)), None, 404, "not_found")
        .await;
    expect(&node, Method::GET, "/v1/subjects/nodigest/verdict", None, 400, "invalid_field").await;
    // Limits: a bad value, an unknown key, a restart-only key.
    let m = expect(
        &node,
        Method::PUT,
        "/v1/limits/peer_messages_per_sec",
        Some(r#"{"value": 0}"#),
        400,
        "invalid_setting",
    )
    .await;
    assert!(m.contains("peer_messages_per_sec"), "{m}");
    expect(&node, Method::PUT, "/v1/limits/no_such_limit", Some(r#"{"value": 1}"#), 400, "invalid_setting")
        .await;
    let restart_only = palisade_guard::RESTART_ONLY_KEYS[0];
    expect(
        &node,
        Method::PUT,
        &format!("/v1/limits/{restart_only}"),
        Some(r#"{"value": 1}"#),
        400,
        "invalid_setting",
    )
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_imports_are_refused_with_413() {
    init_tracing();
    let node = ApiNode::start_with(13, |c| c.limits.max_import_bytes = 1000).await;
    let err = node.api.import_bytes(vec![b'\n'; 5000]).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(413), Some("payload_too_large")), "{err}");
    node.stop().await;
}

/// Issue 17: the body's media type is checked (415), a key sent twice is refused rather than
/// the last one silently winning, ids have one spelling (lowercase), and a node never bans
/// itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_types_duplicate_keys_id_case_and_self_bans_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    init_tracing();
    let node = ApiNode::start(12).await;
    // 415: a JSON endpoint given text/plain, and an import given JSON.
    let body = attestation_json("pkg:a", &sha(1), "pass").to_string();
    for (path, ct, payload) in
        [("/v1/records", "text/plain", body.as_str()), ("/v1/import", "application/json", "{}\n")]
    {
        let mut s = tokio::net::UnixStream::connect(node.socket()).await.unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: palisade\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
            payload.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 415"), "{path}: {out}");
        assert!(out.contains("unsupported_media_type"), "{path}: {out}");
    }
    // A duplicate key: `kind` twice would have switched the record kind.
    let twice = body.replacen('{', r#"{"kind": "revocation", "#, 1);
    let m = expect(&node, Method::POST, "/v1/records", Some(&twice), 400, "duplicate_key").await;
    assert!(m.contains("`kind`"), "{m}");
    // Uppercase hex is not the id.
    let upper = "AB".repeat(32);
    expect(&node, Method::GET, &format!("/v1/records/{upper}"), None, 400, "invalid_field").await;
    // A truncated digest is refused rather than answered "not satisfied".
    let m = expect(&node, Method::GET, "/v1/subjects/sha256:9f86/verdict", None, 400, "invalid_field").await;
    assert!(m.contains("32 bytes"), "{m}");
    // The node's own peer id cannot be banned.
    let me = node.handle.peer_id().to_string();
    let m = expect(
        &node,
        Method::POST,
        "/v1/bans",
        Some(&format!(r#"{{"target": "peer:{me}"}}"#)),
        400,
        "invalid_field",
    )
    .await;
    assert!(m.contains("cannot ban itself"), "{m}");
    assert!(node.handle.guard().bans().is_empty());
    // Nothing was stored by any of it.
    assert_eq!(node.api.node().await.unwrap().records.total, 0);
    node.stop().await;
}

/// Issue 17: an oversized request target or header set gets the documented error body (414,
/// 431), counted like every answer, not hyper's empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_targets_and_headers_get_the_error_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    init_tracing();
    let node = ApiNode::start(13).await;
    let long_query = "x".repeat(palisade_api::MAX_URI_BYTES);
    let many_headers: String = (0..palisade_api::MAX_HEADERS).map(|i| format!("X-Pad-{i}: 1\r\n")).collect();
    let big_header = format!("X-Big: {}\r\n", "y".repeat(palisade_api::MAX_HEADER_BYTES));
    for (target, extra, status, code) in [
        (format!("/v1/node?{long_query}"), String::new(), "414", "uri_too_long"),
        ("/v1/node".to_string(), many_headers, "431", "headers_too_large"),
        ("/v1/node".to_string(), big_header, "431", "headers_too_large"),
    ] {
        let mut s = tokio::net::UnixStream::connect(node.socket()).await.unwrap();
        let req = format!("GET {target} HTTP/1.1\r\nHost: palisade\r\n{extra}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with(&format!("HTTP/1.1 {status}")), "{code}: {}", &out[..out.len().min(300)]);
        assert!(out.contains(&format!("\"code\":\"{code}\"")), "{code}: {out}");
    }
    // Just under the limits is answered normally.
    let fits = format!("/v1/node?{}", "x".repeat(palisade_api::MAX_URI_BYTES - "/v1/node?".len()));
    let mut s = tokio::net::UnixStream::connect(node.socket()).await.unwrap();
    s.write_all(format!("GET {fits} HTTP/1.1\r\nHost: palisade\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(!out.starts_with("HTTP/1.1 414"), "{}", &out[..out.len().min(300)]);
    node.stop().await;
}
