//! The server itself: socket, TCP + token, readiness, rate limit, guard endpoints, metrics.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use hyper::Method;
use palisade_api::model::{BanRequest, LedgerParams};
use palisade_api::ApiClient;

use crate::harness::{init_tracing, ApiNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_is_0600_and_removed_on_shutdown() {
    init_tracing();
    let node = ApiNode::start(21).await;
    let meta = std::fs::symlink_metadata(node.socket()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(node.api.health().await.unwrap().status, "ok");
    let r = node.api.ready().await.unwrap();
    assert!(r.ready && r.store_open && r.listening && !r.bootstrap_configured, "{r:?}");
    let info = node.api.node().await.unwrap();
    assert_eq!(info.peer_id, node.handle.peer_id().to_string());
    assert_eq!(info.author, node.handle.author());
    assert!(!info.listen_addrs.is_empty());
    assert_eq!(info.feed_head, None);
    let socket = node.socket();
    node.stop().await;
    assert!(!socket.exists());
    let err = ApiClient::unix(&socket).health().await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_bootstrap_peers_are_configured_but_none_connected() {
    init_tracing();
    let node = ApiNode::start_with(22, |c| c.bootstrap_configured = true).await;
    let raw = node.api.request_raw(Method::GET, "/v1/ready", None).await.unwrap();
    assert_eq!(raw.status, 503);
    let r = node.api.ready().await.unwrap();
    assert!(!r.ready && r.listening);
    assert_eq!(r.error.unwrap().code, "not_ready");
    // Once a peer connects, it is ready.
    let mut other = ApiNode::start(23).await;
    other.connect(&node).await;
    node.api.wait_ready(crate::harness::WAIT).await.unwrap();
    other.stop().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_requires_the_token() {
    init_tracing();
    let node = ApiNode::start_with(24, |c| c.tcp_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let server = node.server.as_ref().unwrap();
    let addr = server.tcp_addr().unwrap();
    let token_path = server.token_path().unwrap().to_path_buf();
    assert_eq!(std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777, 0o600);

    let good = ApiClient::tcp_with_token_file(addr, &token_path).unwrap();
    assert_eq!(good.node().await.unwrap().peer_id, node.handle.peer_id().to_string());
    let wrong = ApiClient::tcp(addr, "0".repeat(64));
    let err = wrong.node().await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(401), Some("unauthorized")), "{err}");
    let none = ApiClient::tcp(addr, "");
    let raw = none.request_raw(Method::GET, "/v1/health", None).await.unwrap();
    assert_eq!(raw.status, 401);
    // Without a Bearer header at all (the client above sent "Bearer "): use a raw TCP request.
    let raw = raw_tcp_get(addr, "/v1/node").await;
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("www-authenticate: bearer"), "{raw}");
    // The Unix socket needs no token.
    node.api.node().await.unwrap();
    node.stop().await;
    assert!(!token_path.exists(), "the token is removed at shutdown");
}

async fn raw_tcp_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_rate_limit_answers_429_but_never_for_health() {
    init_tracing();
    let node = ApiNode::start_with(25, |c| {
        c.limits.requests_per_sec = 1;
        c.limits.burst_requests = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(node.api.request_raw(Method::GET, "/v1/node", None).await.unwrap().status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let raw = node.api.request_raw(Method::GET, "/v1/node", None).await.unwrap();
    assert_eq!(raw.status, 429);
    assert_eq!(raw.error_code().as_deref(), Some("rate_limited"));
    assert!(raw.headers.contains_key("retry-after"));
    for _ in 0..10 {
        assert_eq!(node.api.request_raw(Method::GET, "/v1/health", None).await.unwrap().status, 200);
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_limits_ledger_and_counters() {
    init_tracing();
    let node = ApiNode::start(26).await;
    let api = &node.api;
    let peer = libp2p::PeerId::random();
    let ban = api
        .ban(&BanRequest {
            target: peer.to_string(),
            duration_secs: Some(600),
            permanent: false,
            reason: Some("spam".into()),
        })
        .await
        .unwrap();
    assert_eq!(ban.target, format!("peer:{peer}"));
    assert!(ban.until_ms.is_some());
    let perm = api
        .ban(&BanRequest { target: "ip:10.1.2.3".into(), duration_secs: None, permanent: true, reason: None })
        .await
        .unwrap();
    assert_eq!(perm.until_ms, None);
    let bans = api.bans().await.unwrap().bans;
    assert_eq!(bans.len(), 2);
    // The ledger shows both bans, paged by seq.
    let ledger = api.ledger(&LedgerParams::default()).await.unwrap();
    let banned: Vec<_> = ledger.entries.iter().filter(|e| e.action == "banned").collect();
    assert_eq!(banned.len(), 2, "{ledger:#?}");
    assert_eq!(banned[0].detail.as_deref(), Some("spam"));
    // The whole ledger fit in one page: it ends there (`null`), as every paged list does.
    assert_eq!(ledger.next_cursor, None);
    // One entry a page: each page names the next, until a short page ends it.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = api.ledger(&LedgerParams { cursor, limit: Some(1) }).await.unwrap();
        seen.extend(page.entries.iter().map(|e| e.seq));
        match page.next_cursor {
            Some(c) => {
                assert_eq!(page.entries.len(), 1);
                assert_eq!(Some(c), page.entries.last().map(|e| e.seq));
                cursor = Some(c);
            }
            None => break,
        }
    }
    assert_eq!(seen, ledger.entries.iter().map(|e| e.seq).collect::<Vec<_>>());
    let counters = api.counters().await.unwrap();
    assert_eq!(counters.guard.get("banned.peer"), Some(&1));
    assert_eq!(counters.guard.get("banned.ip"), Some(&1));
    // Unban by bare value and by prefixed target.
    api.unban(&peer.to_string()).await.unwrap();
    api.unban("ip:10.1.2.3").await.unwrap();
    assert!(api.bans().await.unwrap().bans.is_empty());
    assert_eq!(api.unban("ip:10.1.2.3").await.unwrap_err().status(), Some(404));

    // Limits: read, change live, read back.
    let limits = api.limits().await.unwrap();
    assert!(limits.limits.contains_key("peer_messages_per_sec"));
    assert!(!limits.restart_only.is_empty());
    let changed = api.set_limit("peer_messages_per_sec", serde_json::json!(321)).await.unwrap();
    assert_eq!(changed.limits["peer_messages_per_sec"], 321);
    let changed = api.set_limit("limits.peer_burst_messages", serde_json::json!("654")).await.unwrap();
    assert_eq!(changed.limits["peer_burst_messages"], 654);
    assert_eq!(node.handle.guard().limits().peer_messages_per_sec, 321);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_metrics_land_in_the_shared_registry() {
    init_tracing();
    let node = ApiNode::start(27).await;
    node.api.node().await.unwrap();
    let _ = node.api.request_raw(Method::GET, "/v1/records/zz", None).await.unwrap();
    let _ = node.api.request_raw(Method::GET, "/v1/nothing", None).await.unwrap();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &node.registry).unwrap();
    for want in [
        r#"palisade_api_requests_total{route="/v1/node",method="GET",status="200"} 1"#,
        r#"palisade_api_requests_total{route="/v1/records/{id}",method="GET",status="400"} 1"#,
        r#"palisade_api_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        r#"palisade_api_request_duration_seconds_bucket{le="#,
        "palisade_api_sse_subscribers 0",
        "palisade_api_rate_limited_total 0",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_a_live_socket_is_refused() {
    init_tracing();
    let node = ApiNode::start(28).await;
    let mut cfg = palisade_api::ApiConfig::new(node.dir.path());
    cfg.socket_path = node.socket();
    let mut registry = prometheus_client::registry::Registry::default();
    let err = palisade_api::ApiServer::start(cfg, node.handle.clone(), &mut registry).await.unwrap_err();
    assert!(matches!(err, palisade_api::ServeError::SocketInUse { .. }), "{err}");
    node.api.health().await.unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_concurrency_cap_get_503_until_one_finishes() {
    use futures::StreamExt;
    init_tracing();
    let node = ApiNode::start_with(29, |c| c.limits.max_concurrent_requests = 1).await;
    // An import whose body never ends holds the only slot. (If one of the probes below holds
    // the slot when the import arrives, the import is the one refused: it tries again.)
    let api = node.api.clone();
    let hold = tokio::spawn(async move {
        loop {
            let body = futures::stream::iter([Ok(bytes::Bytes::from_static(b"\n"))])
                .chain(futures::stream::pending());
            match api.import_stream(body).await {
                Err(e) if e.code() == Some("busy") => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                other => return other,
            }
        }
    });
    let deadline = tokio::time::Instant::now() + crate::harness::WAIT;
    loop {
        let raw = node.api.request_raw(Method::GET, "/v1/node", None).await.unwrap();
        if raw.status == 503 {
            assert_eq!(raw.error_code().as_deref(), Some("busy"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the import never took the slot");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Health is never refused.
    assert_eq!(node.api.request_raw(Method::GET, "/v1/health", None).await.unwrap().status, 200);
    // The client hangs up: the slot comes back.
    hold.abort();
    loop {
        if node.api.request_raw(Method::GET, "/v1/node", None).await.unwrap().status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    node.stop().await;
}
