//! Issue 17: the API holds against a hostile local client. Connections are capped per
//! listener, idle and slow-header connections are closed at `header_timeout`, a body that is
//! too large is refused before it is read, a slow body is the client's 408 (never a 5xx), and
//! every answer, from any layer, is counted.

use std::time::{Duration, Instant};

use reqwest_free::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{init_tracing, ApiNode};

mod reqwest_free {
    //! Raw HTTP over the socket: the tests need to misbehave in ways a client library won't.
    pub(crate) use std::path::Path;

    /// Reads until EOF, an error or `limit`; returns what arrived and whether the peer closed.
    pub(crate) async fn read_all(
        s: &mut (impl tokio::io::AsyncRead + Unpin),
        limit: std::time::Duration,
    ) -> (String, bool) {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => return (String::from_utf8_lossy(&out).into(), false),
            }
        }
    }

    pub(crate) async fn connect(socket: &Path) -> tokio::net::UnixStream {
        tokio::net::UnixStream::connect(socket).await.unwrap()
    }
}

fn scrape(node: &ApiNode) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &node.registry).unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_header_connections_are_closed_at_the_header_timeout() {
    init_tracing();
    let node = ApiNode::start_with(40, |c| c.limits.header_timeout = Duration::from_secs(1)).await;
    let started = Instant::now();
    // Says nothing at all.
    let mut silent = connect(&node.socket()).await;
    // Sends its headers one line, then stalls (slowloris).
    let mut slow = connect(&node.socket()).await;
    slow.write_all(b"GET /v1/node HTTP/1.1\r\nHost: palisade\r\n").await.unwrap();
    // Completes one request and would keep the connection for more: one request per
    // connection, so it is answered `Connection: close` and closed at once.
    let mut kept = connect(&node.socket()).await;
    kept.write_all(b"GET /v1/health HTTP/1.1\r\nHost: palisade\r\n\r\n").await.unwrap();
    let (answer, closed) = read_all(&mut kept, Duration::from_millis(900)).await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("connection: close"), "{answer}");
    assert!(closed, "a served connection stays open: {answer}");
    let (answer, closed) = read_all(&mut silent, Duration::from_secs(10)).await;
    assert!(closed && answer.is_empty(), "a connection that asked nothing gets nothing: {answer:?}");
    let (answer, closed) = read_all(&mut slow, Duration::from_secs(10)).await;
    assert!(closed, "the slow-header connection is still open after 10 s");
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("\"header_timeout\""), "{answer}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(8), "{took:?}");
    node.api.health().await.unwrap();
    let text = scrape(&node);
    assert!(
        text.contains(r#"palisade_api_requests_total{route="unmatched",method="GET",status="408"} 1"#),
        "{text}"
    );
    node.stop().await;
}

/// Issue 17: what hyper's parser would refuse with its own empty-bodied 400/414/431 (or a
/// silent close), the head guard answers with the error body, counts, and closes gently (the
/// client reads the whole answer, no reset), with the method label bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_heads_get_the_error_body_and_are_counted() {
    init_tracing();
    let node = ApiNode::start(46).await;
    let huge_headers: String = (0..400).map(|i| format!("X-Pad-{i}: {}\r\n", "z".repeat(1000))).collect();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"G<T /v1/node HTTP/1.1\r\nHost: p\r\n\r\n".to_vec(), "400", "bad_request"),
        (
            b"GET /v1/node HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
            "400",
            "bad_request",
        ),
        (
            b"POST /v1/records HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"
                .to_vec(),
            "400",
            "bad_request",
        ),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), "400", "bad_request"),
        (b"GET /v1/node HTTP/1.1\r\nBad Header: x\r\n\r\n".to_vec(), "400", "bad_request"),
        (
            format!("GET /v1/node HTTP/1.1\r\nHost: p\r\n{huge_headers}\r\n").into_bytes(),
            "431",
            "headers_too_large",
        ),
        (format!("GET /v1/{} HTTP/1.1\r\n\r\n", "x".repeat(200_000)).into_bytes(), "414", "uri_too_long"),
    ];
    let n400 = cases.iter().filter(|c| c.1 == "400").count();
    for (bytes, status, code) in &cases {
        let mut s = connect(&node.socket()).await;
        // The client writes all it has (more than the guard reads, for the oversized ones)
        // while the guard answers; the answer must still reach it whole.
        let (mut rd, mut wr) = s.split();
        let write = async {
            let _ = wr.write_all(bytes).await;
        };
        let read = async { read_all(&mut rd, Duration::from_secs(10)).await };
        let ((), (answer, closed)) = tokio::join!(write, read);
        assert!(closed, "{code}: the connection stays open");
        let short = &answer[..answer.len().min(400)];
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{code}: {short}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{code}: {short}"));
        assert!(head.contains("content-type: application/json"), "{head}");
        let err: palisade_api::model::ErrorBody =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(err.error.code, *code, "{}", err.error.message);
        assert!(!err.error.message.is_empty());
    }
    // A method nobody defined is served (405 here) and counted under `other`, not under its
    // own name: the label set stays bounded whatever tokens clients send.
    for m in ["FOO1", "FOO2", "FOO3"] {
        let mut s = connect(&node.socket()).await;
        s.write_all(format!("{m} /v1/node HTTP/1.1\r\nHost: p\r\n\r\n").as_bytes()).await.unwrap();
        let (answer, _) = read_all(&mut s, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    }
    let text = scrape(&node);
    assert!(
        text.contains(r#"palisade_api_requests_total{route="unmatched",method="GET",status="400"} 2"#),
        "{text}"
    );
    let counted_400: u64 = text
        .lines()
        .filter(|l| {
            l.starts_with("palisade_api_requests_total{route=\"unmatched\"") && l.contains("status=\"400\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted_400, n400 as u64, "{text}");
    assert!(text.contains(r#"status="431"} 1"#) && text.contains(r#"status="414"} 1"#), "{text}");
    assert!(text.contains(r#"method="other",status="405"} 3"#), "{text}");
    assert!(!text.contains("FOO"), "{text}");
    node.api.health().await.unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_get_503_and_the_listener_recovers() {
    init_tracing();
    let node = ApiNode::start_with(41, |c| c.limits.max_connections = 4).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect(&node.socket()).await);
    }
    // The accept loop takes them in order; give it a moment to count all four.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !scrape(&node).contains(r#"palisade_api_connections{listener="unix"} 4"#) {
        assert!(Instant::now() < deadline, "four open connections never counted:\n{}", scrape(&node));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut fifth = connect(&node.socket()).await;
    let (answer, closed) = read_all(&mut fifth, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections") && answer.contains("admin.max_connections"), "{answer}");
    assert!(closed, "a refused connection is closed");
    assert!(scrape(&node).contains(r#"palisade_api_connections_refused_total{listener="unix"} 1"#));
    // One idle client leaves: the next one is served.
    drop(idle.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match node.api.request_raw(axum::http::Method::GET, "/v1/node", None).await {
            Ok(r) if r.status == 200 => break,
            _ => {
                assert!(Instant::now() < deadline, "the freed slot never served a request");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_cap_is_refused_before_the_body() {
    init_tracing();
    let node = ApiNode::start(42).await;
    for (path, length, ct) in [
        ("/v1/records", 1_000_000_000_000u64, "application/json"),
        ("/v1/import", 300_000_000, "application/x-ndjson"),
    ] {
        let mut s = connect(&node.socket()).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: palisade\r\ncontent-type: {ct}\r\ncontent-length: {length}\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no answer to {path} within 5 s"))
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 413"), "{path}: {text}");
        assert!(text.contains("payload_too_large") && text.contains("Content-Length"), "{path}: {text}");
        assert!(started.elapsed() < Duration::from_secs(2), "{path}: {:?}", started.elapsed());
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_is_a_408_client_error_not_a_5xx() {
    init_tracing();
    let node = ApiNode::start_with(43, |c| {
        c.limits.request_timeout = Duration::from_secs(5);
        c.limits.body_timeout = Duration::from_secs(1);
    })
    .await;
    for (path, ct) in [("/v1/records", "application/json"), ("/v1/import", "application/x-ndjson")] {
        // Promise 100 bytes, send one, stall.
        let mut s = connect(&node.socket()).await;
        s.write_all(
            format!("POST {path} HTTP/1.1\r\nHost: palisade\r\ncontent-type: {ct}\r\ncontent-length: 100\r\n\r\n{{")
                .as_bytes(),
        )
        .await
        .unwrap();
        let started = Instant::now();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        assert!(text.contains("\"body_timeout\""), "{path}: {text}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "{path}: {waited:?}"
        );
    }
    let text = scrape(&node);
    assert!(
        text.contains(r#"palisade_api_requests_total{route="/v1/records",method="POST",status="408"} 1"#),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("palisade_api_requests_total") && l.contains("status=\"5")),
        "{text}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_from_every_layer_are_counted() {
    init_tracing();
    let node = ApiNode::start_with(44, |c| {
        c.tcp_listen = Some("127.0.0.1:0".parse().unwrap());
        c.limits.requests_per_sec = 1;
        c.limits.burst_requests = 1;
    })
    .await;
    let addr = node.server.as_ref().unwrap().tcp_addr().unwrap();
    // 401 from the token check, before routing.
    let wrong = palisade_api::ApiClient::tcp(addr, "0".repeat(64));
    assert_eq!(wrong.request_raw(axum::http::Method::GET, "/v1/node", None).await.unwrap().status, 401);
    // The lowercase scheme is the same scheme.
    let token = std::fs::read_to_string(node.server.as_ref().unwrap().token_path().unwrap()).unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /v1/health HTTP/1.1\r\nHost: localhost\r\nAuthorization: bearer {}\r\nConnection: close\r\n\r\n", token.trim())
            .as_bytes(),
    )
    .await
    .unwrap();
    let (answer, _) = read_all(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // 429 from the rate limit.
    let mut saw_429 = false;
    for _ in 0..5 {
        saw_429 |=
            node.api.request_raw(axum::http::Method::GET, "/v1/node", None).await.unwrap().status == 429;
    }
    assert!(saw_429);
    let text = scrape(&node);
    assert!(
        text.contains(r#"palisade_api_requests_total{route="unmatched",method="GET",status="401"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"status="429"}"#), "{text}");
    node.stop().await;
}

/// Issue 17: on the TCP listener, a request for a non-loopback Host (DNS rebinding) or from a
/// web page of another origin is refused before the token is looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tcp_listener_answers_only_loopback_hosts_and_origins() {
    init_tracing();
    let node = ApiNode::start_with(45, |c| c.tcp_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = node.server.as_ref().unwrap().tcp_addr().unwrap();
    let token = std::fs::read_to_string(node.server.as_ref().unwrap().token_path().unwrap()).unwrap();
    let ask = |host: String, origin: Option<&'static str>| {
        let token = token.trim().to_string();
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
            let req = format!(
                "GET /v1/node HTTP/1.1\r\nHost: {host}\r\n{origin}Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            read_all(&mut s, Duration::from_secs(10)).await.0
        }
    };
    let local = format!("127.0.0.1:{}", addr.port());
    assert!(ask(local.clone(), None).await.starts_with("HTTP/1.1 200"));
    assert!(ask(format!("localhost:{}", addr.port()), Some("http://localhost:3000"))
        .await
        .starts_with("HTTP/1.1 200"));
    let rebound = ask("evil.example".into(), None).await;
    assert!(rebound.starts_with("HTTP/1.1 403") && rebound.contains("forbidden_host"), "{rebound}");
    let cross = ask(local, Some("https://evil.example")).await;
    assert!(cross.starts_with("HTTP/1.1 403") && cross.contains("forbidden_origin"), "{cross}");
    node.stop().await;
}

/// Issue 20: every answer carries a request id: the client's when it sends a sane one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_a_request_id() {
    init_tracing();
    let node = ApiNode::start(46).await;
    let mut s = connect(&node.socket()).await;
    s.write_all(
        b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\nX-Request-Id: trace-42\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let (answer, _) = read_all(&mut s, Duration::from_secs(10)).await;
    assert!(answer.to_ascii_lowercase().contains("x-request-id: trace-42"), "{answer}");
    let raw = node.api.request_raw(axum::http::Method::GET, "/v1/health", None).await.unwrap();
    assert!(raw.headers.get("x-request-id").is_some_and(|v| v.len() == 16));
    node.stop().await;
}
